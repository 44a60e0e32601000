//! The GST System dialect's envelope, error codes and per-call checks, shared by the authenticate
//! actions and the data calls.
//!
//! Business and session errors answer HTTP 200 with `{"status_cd":"0","error":{"error_cd","message"}}`,
//! client-credential errors HTTP 403 (AUT4031..AUT4034), throttling 429 and server faults 5xx, as GSP
//! software written for the GST System expects (gstn-dialect.md §4).

use std::borrow::Cow;
use std::sync::Arc;

use actix_web::HttpResponse;
use actix_web::dev::RequestHead;
use actix_web::http::StatusCode;
use actix_web::http::header::HeaderMap;

use actix_web::http::header::AsHeaderName;
use gsp_gateway_domain::secret::{constant_time_eq_bytes, sha256};
use gsp_gateway_storage::StorageError;
use serde_json::{Map, Value, json};

use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};
use crate::gateway::view::CachedClient;
use crate::services::gsp::GspClient;
use crate::settings::Settings;
use crate::state::AppState;

/// A refusal in the dialect's terms.
#[derive(Debug, Clone)]
pub struct GstnError {
    /// HTTP status (200 for business errors, as the live system).
    pub status: StatusCode,
    /// `error_cd`: one of the gateway's own, or an upstream GST service's (see [`GstnError::upstream`]).
    pub code: Cow<'static, str>,
    /// `message`.
    pub message: String,
    /// Seconds to wait before retrying (sent as `Retry-After` with a 429).
    pub retry_after: Option<u64>,
}

impl GstnError {
    /// A business or session error (HTTP 200).
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self::with_status(StatusCode::OK, code, message)
    }

    /// An error with its own HTTP status.
    pub fn with_status(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: Cow::Borrowed(code),
            message: message.into(),
            retry_after: None,
        }
    }

    /// A business error the upstream GST service answered in the dialect's own envelope, passed on as
    /// the live system would answer it (HTTP 200).
    pub fn upstream(code: String, message: String) -> Self {
        Self {
            status: StatusCode::OK,
            code: Cow::Owned(code),
            message,
            retry_after: None,
        }
    }

    /// The code's label in the refusal metrics: the gateway's own codes by name, the upstream's under
    /// one label (their number is not the gateway's to bound).
    pub fn metric_label(&self) -> &'static str {
        match self.code {
            Cow::Borrowed(code) => code,
            Cow::Owned(_) => "upstream",
        }
    }

    /// AUTH4033 "Invalid Session": also the live system's answer to a wrong or used OTP.
    pub fn invalid_session() -> Self {
        Self::new("AUTH4033", "Invalid Session")
    }

    /// TEC4002: an RSA-wrapped app key that yields no usable key. The usual cause is a client still
    /// on a certificate the gateway no longer decrypts with, and TEC4002 is what makes GSP software
    /// fetch the current one (gstn-dialect.md §3.2, §6.4). One answer for every reason, so it tells
    /// nothing about the padding.
    pub fn undecryptable_app_key() -> Self {
        Self::new(
            "TEC4002",
            "Invalid Data Format: the app_key cannot be decrypted; fetch the current certificate",
        )
    }

    /// AUTH4036: an app key that cannot be used although nothing says the certificate is stale: a
    /// REFRESHTOKEN key that does not decrypt under the SEK to 32 bytes, or a LOGOUT key that is not the
    /// session's.
    pub fn invalid_app_key() -> Self {
        Self::new("AUTH4036", "Invalid App Key")
    }

    /// AUTH4037, with the message GSP software knows.
    pub fn access_unavailable() -> Self {
        Self::new(
            "AUTH4037",
            "API access is not available or user expiry Duration is less than or equal to auth token expiry duration",
        )
    }

    /// TEC4001: a fault of the gateway's own (no detail).
    pub fn internal() -> Self {
        Self::with_status(StatusCode::INTERNAL_SERVER_ERROR, "TEC4001", "Internal error")
    }

    /// 429 `rate_limited` (the GST System has no code of its own for it), retry after `seconds`.
    pub fn rate_limited(message: impl Into<String>, seconds: u64) -> Self {
        Self {
            retry_after: Some(seconds.max(1)),
            ..Self::with_status(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
        }
    }

    /// GEN5008 (HTTP 500, as gstn-dialect.md §4 gives it): the service behind is unavailable.
    pub fn unavailable() -> Self {
        Self::with_status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "GEN5008",
            "Service unavailable; try again later",
        )
    }

    /// GEN5001: a mandatory field or header is missing.
    pub fn missing(what: &str) -> Self {
        Self::new("GEN5001", format!("Missing mandatory parameter: {what}"))
    }
}

impl From<ApiError> for GstnError {
    fn from(error: ApiError) -> Self {
        match error.code() {
            ErrorCode::ApiAccessDisabled | ErrorCode::ApiAccessExpired => Self::access_unavailable(),
            ErrorCode::SessionLimitReached => Self::new(
                "AUTH403",
                "Maximum session allowed for user with this GSP account exceeded.",
            ),
            ErrorCode::TaxpayerNotFound => Self::new("AUTH4032", "Invalid User"),
            ErrorCode::InvalidOtp
            | ErrorCode::OtpExpired
            | ErrorCode::OtpAttemptsExceeded
            | ErrorCode::SessionRevoked
            | ErrorCode::TokenInvalid
            | ErrorCode::TokenMissing
            | ErrorCode::RefreshTokenReused => Self::invalid_session(),
            ErrorCode::SessionExpired | ErrorCode::TokenExpired => Self::new("AUTH4038", "Session Expired"),
            ErrorCode::RateLimited => {
                let seconds = error
                    .header(&actix_web::http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .unwrap_or(1);
                Self::rate_limited(format!("Too many requests; retry after {seconds} s"), seconds)
            }
            ErrorCode::InvalidGstin => Self::new("SWEB_9035", "Invalid GSTIN"),
            ErrorCode::ValidationFailed | ErrorCode::InvalidDuration => {
                Self::new("GEN5001", "Invalid request parameters")
            }
            ErrorCode::InvalidRequest | ErrorCode::UnsupportedMediaType => {
                Self::new("GEN5007", "Malformed request")
            }
            ErrorCode::PayloadTooLarge => {
                Self::with_status(StatusCode::PAYLOAD_TOO_LARGE, "GEN5007", "Request body too large")
            }
            ErrorCode::InvalidClient => {
                Self::with_status(StatusCode::FORBIDDEN, "AUT4033", "Invalid Client Id")
            }
            ErrorCode::ServiceUnavailable | ErrorCode::UpstreamUnavailable | ErrorCode::UpstreamTimeout => {
                Self::unavailable()
            }
            _ => Self::internal(),
        }
    }
}

impl From<StorageError> for GstnError {
    fn from(error: StorageError) -> Self {
        ApiError::from(error).into()
    }
}

/// `status_cd`: `"1"`/`"0"`, or `1`/`0` for software that compares it with numbers.
#[derive(Debug, Clone, Copy)]
pub struct StatusCd {
    numeric: bool,
    ok: bool,
}

impl StatusCd {
    /// Success (`ok`) or failure, as a number or a string.
    pub fn new(numeric: bool, ok: bool) -> Self {
        Self { numeric, ok }
    }

    /// The value as JSON.
    fn value(self) -> Value {
        match (self.numeric, self.ok) {
            (true, ok) => Value::from(u8::from(ok)),
            (false, true) => Value::from("1"),
            (false, false) => Value::from("0"),
        }
    }

    /// The value as JSON text.
    pub fn json(self) -> &'static str {
        match (self.numeric, self.ok) {
            (true, true) => "1",
            (true, false) => "0",
            (false, true) => "\"1\"",
            (false, false) => "\"0\"",
        }
    }
}

/// Whether `status_cd` is a number for this client's software: its own choice (`admin
/// set-gsp-status-cd`), else the server's `gstn_numeric_status_cd`.
pub fn numeric_status_cd(settings: &Settings, client: Option<&CachedClient>) -> bool {
    client
        .and_then(|c| c.numeric_status_cd)
        .unwrap_or(settings.gstn_numeric_status_cd)
}

/// [`numeric_status_cd`] for the client a request names in `clientid`, for answers written before (or
/// without) its secret being checked: this chooses only how the answer is written. An unknown client, or
/// a database that cannot say, gets the server's setting.
pub async fn numeric_status_cd_of(state: &AppState, headers: &HeaderMap) -> bool {
    let client = match header(headers, &self::headers::CLIENT_ID).filter(|id| !id.is_empty()) {
        Some(id) => state.view.client(&state.db, id).await.ok().flatten(),
        None => None,
    };
    numeric_status_cd(&state.settings, client.as_deref())
}

/// `{"status_cd":"1", …fields}`.
pub fn success(numeric: bool, fields: Map<String, Value>) -> HttpResponse {
    let mut body = Map::new();
    body.insert("status_cd".into(), StatusCd::new(numeric, true).value());
    body.extend(fields);
    HttpResponse::Ok().json(Value::Object(body))
}

/// `{"status_cd":"0","error":{…}}` with the error's HTTP status.
pub fn failure(numeric: bool, error: &GstnError) -> HttpResponse {
    crate::metrics::refusal(error.metric_label());
    let body = json!({"status_cd": StatusCd::new(numeric, false).value(), "error": {"error_cd": error.code, "message": error.message}});
    let mut response = HttpResponse::build(error.status);
    if error.status == StatusCode::TOO_MANY_REQUESTS {
        let mut seconds = itoa::Buffer::new();
        response.insert_header((
            actix_web::http::header::RETRY_AFTER,
            seconds.format(error.retry_after.unwrap_or(1)),
        ));
    }
    response.json(body)
}

/// The dialect's request headers, named once (a name given as text is parsed on every lookup).
pub mod headers {
    use actix_web::http::header::HeaderName;

    /// `clientid`.
    pub const CLIENT_ID: HeaderName = HeaderName::from_static("clientid");
    /// `client-secret`.
    pub const CLIENT_SECRET: HeaderName = HeaderName::from_static("client-secret");
    /// `auth-token`.
    pub const AUTH_TOKEN: HeaderName = HeaderName::from_static("auth-token");
    /// `gstin`.
    pub const GSTIN: HeaderName = HeaderName::from_static("gstin");
    /// `username`.
    pub const USERNAME: HeaderName = HeaderName::from_static("username");
    /// `state-cd`.
    pub const STATE_CD: HeaderName = HeaderName::from_static("state-cd");
}

/// A request header as text (names are matched case-insensitively by HTTP).
pub fn header(headers: &HeaderMap, name: impl AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// Checks `clientid`/`client-secret` against the cached credentials (constant-time comparison of the
/// secret's SHA-256 with the stored one).
pub async fn verify_client(state: &AppState, headers: &HeaderMap) -> Result<Arc<CachedClient>, GstnError> {
    let forbidden = |code, message: &str| GstnError::with_status(StatusCode::FORBIDDEN, code, message);
    let client_id = header(headers, &self::headers::CLIENT_ID)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| forbidden("AUT4031", "clientid is missing in request header"))?;
    let secret = header(headers, &self::headers::CLIENT_SECRET)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| forbidden("AUT4032", "client-secret is missing in request header"))?;
    let client = state
        .view
        .client(&state.db, client_id)
        .await?
        .filter(|c| c.enabled)
        .ok_or_else(|| forbidden("AUT4033", "Invalid Client Id"))?;
    let matches = client
        .secret_digest
        .is_some_and(|stored| constant_time_eq_bytes(&sha256(secret), &stored));
    if !matches {
        return Err(forbidden("AUT4034", "Invalid Client Secret"));
    }
    Ok(client)
}

/// [`verify_client`], as the GSP client the services take.
pub async fn check_client(state: &AppState, headers: &HeaderMap) -> Result<GspClient, GstnError> {
    let client = verify_client(state, headers).await?;
    Ok(GspClient {
        client_id: client.client_id.clone(),
        name: client.name.clone(),
    })
}

/// Refuses a `state-cd` header that is not the GSTIN's state (AUTH4041).
pub fn check_state_code(headers: &HeaderMap, gstin: &str) -> Result<(), GstnError> {
    match header(headers, &self::headers::STATE_CD) {
        Some(code) if gstin.get(..2) == Some(code) => Ok(()),
        Some(_) => Err(GstnError::new(
            "AUTH4041",
            "Invalid Parameter state-cd in request header",
        )),
        None => Err(GstnError::missing("state-cd")),
    }
}

/// The audit facts of a dialect call: `ip-usr` when the client sends one, and `txn`.
pub fn caller(state: &AppState, req: &RequestHead) -> Caller {
    let request_id = crate::request_id::current();
    let headers = req.headers();
    let ip = header(headers, "ip-usr")
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .or_else(|| crate::auth::client_ip_of(state, req).map(|ip| ip.to_string()));
    let txn = header(headers, "txn")
        .filter(|v| !v.is_empty())
        .map(|t| t.chars().take(64).collect());
    Caller { ip, request_id, txn }
}
