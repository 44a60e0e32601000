//! HTTP handlers, one module a part of the contract. Handlers are thin: parse, call a service, map.

pub mod admin;
pub mod docs;
pub mod gsp;
pub mod gstn_cert;
pub mod health;
pub mod page;
pub mod taxpayer;

use actix_web::{Resource, web};

use crate::json::method_not_allowed;

/// A resource whose unmatched methods answer 405 `method_not_allowed`.
pub fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}
