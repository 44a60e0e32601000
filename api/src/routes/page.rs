//! The taxpayer's Manage API Access page, served at `/` from assets embedded in the binary.
//!
//! The page is static and talks only to the public taxpayer API, so it needs no templating and no
//! build step; compiling the files in keeps a deployment to one binary that fetches nothing at run time.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

/// Same origin for everything, no inline script or style, no framing, no form posts: the page shows
/// OTPs and holds a login token, so an injected script or a clickjacking frame must get nothing.
/// `form-action 'none'` also stops a browser without JavaScript from sending a password in a URL.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'";

/// One embedded file and the path it is served at.
#[derive(Debug)]
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../static/index.html"),
    },
    Asset {
        path: "/static/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../static/app.js"),
    },
    Asset {
        path: "/static/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../static/app.css"),
    },
    Asset {
        path: "/static/favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../static/favicon.svg"),
    },
];

/// Registers the page and its assets.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for asset in ASSETS {
        cfg.service(super::resource(asset.path).route(web::get().to(move || serve(asset))));
    }
}

async fn serve(asset: &'static Asset) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(asset.content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header(("Cross-Origin-Opener-Policy", "same-origin"))
        // Revalidate every time, so a new release's page never runs an old script.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(asset.body)
}
