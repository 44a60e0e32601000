//! The GST API gateway under `/v1/gst/`: the enforcement middleware, its in-memory view, rate limits,
//! the built-in sandbox and the upstream forwarder.

pub mod enforce;
pub mod feed;
pub mod forward;
pub mod limits;
pub mod sandbox;
pub mod tokens_cache;
pub mod view;

pub use enforce::{GstContext, enforce};
pub use limits::Limits;
pub use tokens_cache::ClaimsCache;
pub use view::{DialectToken, GatewayView};

/// Notes a rate-limit refusal (logged at debug, counted in the metrics).
pub fn note_rate_limited(policy: &'static str) {
    tracing::debug!(policy, "rate limited");
    crate::metrics::rate_limited(policy);
}

/// Registers the `/v1/gst` scope: enforcement first, then the sandbox or the forwarder.
pub fn configure(cfg: &mut actix_web::web::ServiceConfig, upstream: bool) {
    use actix_web::middleware::from_fn;
    use actix_web::web;
    let scope = web::scope("/v1/gst").wrap(from_fn(enforce));
    let scope = if upstream {
        scope.default_service(web::to(forward::forward))
    } else {
        scope
            .service(crate::routes::resource("/taxpayer").route(web::get().to(sandbox::taxpayer)))
            .service(crate::routes::resource("/returns").route(web::get().to(sandbox::returns)))
            .default_service(web::to(sandbox::unknown))
    };
    cfg.service(scope);
}
