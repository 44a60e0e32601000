//! The GST API gateway under `/v1/gst/`: the enforcement middleware, its in-memory view, rate limits,
//! the built-in sandbox and the upstream forwarder.

pub mod enforce;
pub mod feed;
pub mod forward;
pub mod h1;
pub mod limits;
pub mod sandbox;
pub mod tokens_cache;
pub mod view;

pub use enforce::{GstContext, gateway};
pub use limits::Limits;
pub use tokens_cache::{ClaimsCache, ConnectionToken};
pub use view::{DialectToken, GatewayView};

/// Notes a rate-limit refusal (logged at debug, counted in the metrics).
pub fn note_rate_limited(policy: &'static str) {
    tracing::debug!(policy, "rate limited");
    crate::metrics::rate_limited(policy);
}

/// Registers the `/v1/gst` scope: one handler that enforces, then forwards or answers from the sandbox.
pub fn configure(cfg: &mut actix_web::web::ServiceConfig) {
    use actix_web::web;
    cfg.service(web::scope("/v1/gst").default_service(web::to(enforce::gateway)));
}
