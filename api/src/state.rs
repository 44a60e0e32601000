//! What every handler can reach: settings, database, clock, keys.

use std::sync::Arc;

use gsp_gateway_storage::Db;

use crate::clock::Clock;
use crate::gateway::{ClaimsCache, GatewayView, Limits};
use crate::settings::Settings;
use crate::tokens::KeyRing;

/// Shared application state (held in `web::Data`).
#[derive(Debug)]
pub struct AppState {
    /// Settings, fixed at start-up.
    pub settings: Arc<Settings>,
    /// The database.
    pub db: Db,
    /// The clock every rule reads.
    pub clock: Clock,
    /// Signing keys.
    pub keys: Arc<KeyRing>,
    /// Sessions and access windows in memory, for the enforcement middleware.
    pub view: Arc<GatewayView>,
    /// Outgoing HTTP (OTP webhook, upstream forwarding).
    pub http: reqwest::Client,
    /// Verified session-token claims.
    pub claims: Arc<ClaimsCache>,
    /// Gateway rate limits.
    pub limits: Arc<Limits>,
    /// The GSTN dialect's RSA keys and certificate.
    pub gstn: Arc<crate::gstn::GstnKeys>,
}

/// Runs CPU-heavy work (password hashing) off the async workers.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, crate::error::ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(crate::error::ApiError::internal)
}
