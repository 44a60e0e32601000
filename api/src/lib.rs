//! gsp-gateway's HTTP service: settings, the application, handlers, middleware and the command line.

pub mod auth;
pub mod cli;
pub mod clock;
pub mod error;
pub mod gateway;
pub mod gstn;
pub mod json;
pub mod metrics;
pub mod openapi;
pub mod request_id;
pub mod routes;
pub mod services;
pub mod settings;
pub mod startup;
pub mod state;
pub mod tokens;

pub use clock::Clock;
pub use settings::Settings;
pub use startup::Application;
