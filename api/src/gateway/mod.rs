//! The GST API gateway under `/v1/gst/`: the enforcement middleware, its in-memory view, rate limits,
//! the built-in sandbox and the upstream forwarder.

pub mod enforce;
pub mod feed;
pub mod forward;
pub mod front;
pub mod h1;
pub mod limits;
pub mod sandbox;
pub mod tokens_cache;
pub mod view;

pub use enforce::{GstContext, gateway};
pub use front::Front;
pub use limits::Limits;
pub use tokens_cache::{ClaimsCache, ConnectionToken};
pub use view::{DialectToken, GatewayView};

/// Notes a rate-limit refusal (logged at debug, counted in the metrics).
pub fn note_rate_limited(policy: &'static str) {
    tracing::debug!(policy, "rate limited");
    crate::metrics::rate_limited(policy);
}
