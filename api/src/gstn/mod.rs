//! The GST System's own wire dialect (gstn-dialect.md): its crypto and the gateway's RSA key.
//!
//! - [`crypto`]: AES-256-ECB, HMAC-SHA256 and Base64 exactly as GSTN clients use them, and the
//!   dialect's composite operations (OTP, SEK, REFRESHTOKEN app key, data request and response,
//!   EVC sign).
//! - [`rsa_key`]: the RSA-2048 key clients wrap their app key with, its certificate, rotation.
//!
//! The authenticate actions and data calls build on these; the certificate is served by
//! `routes::gstn_cert`.

pub mod authenticate;
pub mod crypto;
pub mod data;
pub mod dialect;
pub mod rsa_key;

use std::sync::Arc;
use std::time::Duration;

pub use crypto::{AesKey, CryptoError};
pub use rsa_key::{GstnKeyError, GstnKeys, Published};

use crate::state::AppState;

/// Registers the dialect's routes: authenticate (with or without a trailing slash) and data calls.
pub fn configure(cfg: &mut actix_web::web::ServiceConfig) {
    use actix_web::web;
    const VERSION: &str = r"{version:v[0-9]+\.[0-9]+}";
    // One scope, so the version regex is only tried for paths under /taxpayerapi.
    let mut scope = web::scope("/taxpayerapi");
    for suffix in ["authenticate", "authenticate/"] {
        scope = scope.service(
            crate::routes::resource(&format!("/{VERSION}/{suffix}")).route(web::post().to(authenticate::authenticate)),
        );
    }
    cfg.service(scope.service(web::resource(format!("/{VERSION}/{{resource:.+}}")).to(data::data_call)));
}

/// How often the key ring is re-read: picks up rotations made elsewhere (the CLI, another
/// instance), the end of a grace period and certificate re-issue.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(300);

/// Loads the live GSTN keys into `keys`, generating the first one on a fresh database.
pub async fn load(
    db: &gsp_gateway_storage::Db,
    keys: &GstnKeys,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), GstnKeyError> {
    let rows = db
        .run(move |conn| Ok(rsa_key::ensure_gstn_key(conn, now)))
        .await??;
    keys.replace(&rows, now)?;
    Ok(())
}

impl From<GstnKeyError> for crate::startup::StartupError {
    fn from(error: GstnKeyError) -> Self {
        match error {
            GstnKeyError::Storage(e) => Self::Database(e),
            other => Self::Config(other.to_string()),
        }
    }
}

/// Re-reads the keys from the database now (e.g. on a `gstn_key.rotated` change).
pub async fn reload(state: &AppState) -> Result<bool, GstnKeyError> {
    let now = state.clock.now();
    let rows = state.db.run(move |conn| rsa_key::live_keys(conn, now)).await?;
    state.gstn.replace(&rows, now)
}

/// Reloads the keys every [`RELOAD_INTERVAL`], forever.
pub async fn keep_fresh(state: Arc<AppState>) {
    let mut ticker = tokio::time::interval(RELOAD_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate, and the keys were just loaded.
    ticker.tick().await;
    loop {
        ticker.tick().await;
        match reload(&state).await {
            Ok(true) => tracing::info!(kids = ?state.gstn.kids(), "GSTN keys reloaded"),
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "GSTN key reload failed"),
        }
    }
}
