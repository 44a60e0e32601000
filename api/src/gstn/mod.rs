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
pub mod evc;
pub mod rsa_key;

use std::sync::Arc;
use std::time::Duration;

pub use crypto::{AesKey, CryptoError};
pub use rsa_key::{GstnKeyError, GstnKeys, Published};

use actix_web::dev::{Payload, RequestHead};

use crate::state::AppState;

/// True for the dialect's versioned calls, `/taxpayerapi/v…`: the gateway's front
/// ([`crate::gateway::front`]) hands them to [`dispatch`] unrouted.
pub fn is_dialect_call(path: &str) -> bool {
    path.starts_with("/taxpayerapi/v")
}

/// Registers the rest of `/taxpayerapi` (the certificate's routes are registered before it): answered
/// by [`dispatch`] too, so that a path the dialect does not know is refused in its envelope.
pub fn configure(cfg: &mut actix_web::web::ServiceConfig) {
    use actix_web::web;
    async fn routed(
        state: web::Data<AppState>,
        upstream: web::Data<crate::gateway::forward::UpstreamClient>,
        req: actix_web::HttpRequest,
        payload: web::Payload,
    ) -> actix_web::HttpResponse {
        dispatch(&state, &upstream, req.head(), payload.into_inner()).await
    }
    cfg.service(web::scope("/taxpayerapi").default_service(web::to(routed)));
}

/// `v` and two dot-separated numbers, as the GST System's API versions are written.
fn is_version(segment: &str) -> bool {
    let Some((major, minor)) = segment.strip_prefix('v').and_then(|v| v.split_once('.')) else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit());
    digits(major) && digits(minor)
}

/// Routes `/taxpayerapi/v{X.Y}/…` by hand: a plain split instead of a regex per request.
pub async fn dispatch(
    state: &AppState,
    upstream: &crate::gateway::forward::UpstreamClient,
    req: &RequestHead,
    payload: Payload,
) -> actix_web::HttpResponse {
    // GSTR uploads are the largest bodies the gateway sees; past the limit, 413 in the dialect's envelope.
    let body = match crate::json::read_body(payload, state.settings.max_body_bytes).await {
        Ok(body) => body,
        Err(error) => {
            let numeric = dialect::numeric_status_cd_of(state, req.headers()).await;
            return dialect::failure(numeric, &error.into());
        }
    };
    // GST System software reads every answer here as the dialect's envelope, refusals of unknown
    // paths and methods included.
    use actix_web::http::{Method, StatusCode};
    let rest = req.uri.path().strip_prefix("/taxpayerapi/").unwrap_or("");
    let (version, resource) = rest.split_once('/').unwrap_or((rest, ""));
    if !is_version(version) || resource.is_empty() {
        let unknown = dialect::GstnError::with_status(
            StatusCode::NOT_FOUND,
            "GEN5007",
            format!("No such API: {} {}", req.method, req.uri.path()),
        );
        let numeric = dialect::numeric_status_cd_of(state, req.headers()).await;
        return dialect::failure(numeric, &unknown);
    }
    if resource == "authenticate" || resource == "authenticate/" {
        if req.method == Method::GET {
            if is_evc_otp(req.uri.query().unwrap_or_default()) {
                return evc::evc_otp(state, req).await;
            }
            // GET serves one action; any other is refused as POST refuses an unknown one.
            let unsupported = dialect::GstnError::new(
                "GEN5007",
                "Unsupported action: authenticate by GET is action=EVCOTP",
            );
            let numeric = dialect::numeric_status_cd_of(state, req.headers()).await;
            return dialect::failure(numeric, &unsupported);
        }
        if req.method != Method::POST {
            return method_refused(
                state,
                req,
                "authenticate: send POST (or GET with action=EVCOTP)",
                "GET, POST",
            )
            .await;
        }
        return authenticate::authenticate(state, req, body).await;
    }
    // Reads are GETs and writes PUTs or POSTs (gstn-dialect.md §5); nothing else reaches an upstream.
    if !matches!(req.method, Method::GET | Method::PUT | Method::POST) {
        return method_refused(state, req, "data calls: send GET, PUT or POST", "GET, PUT, POST").await;
    }
    data::data_call(state, upstream, req, version, resource, &body).await
}

/// Whether an authenticate query asks for an EVC OTP (the one authenticate action sent by GET).
fn is_evc_otp(query: &str) -> bool {
    form_urlencoded::parse(query.as_bytes())
        .any(|(name, value)| name == "action" && value.eq_ignore_ascii_case("EVCOTP"))
}

/// 405 GEN5007 in the dialect's envelope, with `Allow`.
async fn method_refused(
    state: &AppState,
    req: &RequestHead,
    what: &str,
    allow: &'static str,
) -> actix_web::HttpResponse {
    let refused = dialect::GstnError::with_status(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        "GEN5007",
        format!("{} is not allowed on {what}", req.method),
    );
    let numeric = dialect::numeric_status_cd_of(state, req.headers()).await;
    let mut answer = dialect::failure(numeric, &refused);
    answer.headers_mut().insert(
        actix_web::http::header::ALLOW,
        actix_web::http::header::HeaderValue::from_static(allow),
    );
    answer
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

#[cfg(test)]
mod tests {
    use super::is_version;

    #[test]
    fn versions_are_v_and_two_numbers() {
        for good in ["v0.1", "v1.0", "v2.1", "v10.12"] {
            assert!(is_version(good), "{good}");
        }
        for bad in ["1.0", "v1", "v1.", "v.1", "v1.0.1", "va.b", "authenticate", ""] {
            assert!(!is_version(bad), "{bad}");
        }
    }
}
