//! The taxpayer's Manage API Access page, served at `/` from assets embedded in the binary.

use actix_web::{HttpResponse, web};

/// Registers the page and its assets.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/").route(web::get().to(index)));
}

async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body("<!doctype html><title>gsp-gateway</title><p>Manage API Access: coming soon.</p>")
}
