//! The GST API gateway under `/v1/gst/`: the enforcement middleware, its in-memory view, rate limits,
//! the built-in sandbox and the upstream forwarder.

pub mod view;

pub use view::GatewayView;
