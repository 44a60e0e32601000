//! The one error type of the HTTP layer, written as RFC 9457 `application/problem+json`.
//!
//! Which error to use where:
//! - handlers, extractors and middleware return [`ApiError`]; build one with [`ApiError::new`] from an
//!   [`ErrorCode`] and a detail a client can act on;
//! - `StorageError` and `DomainError` convert with `?`: a storage conflict becomes 409, an unreachable
//!   database 503, anything unexpected 500 with its cause logged and never sent.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use gsp_gateway_domain::DomainError;
use gsp_gateway_storage::StorageError;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::request_id;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = ($code:literal, $status:literal, $gstn:expr, $title:literal), )*) => {
        /// The stable, machine-readable `code` of every problem the gateway answers.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in the contract's order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The `code` string.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// The HTTP status it is answered with.
            pub fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::from_u16($status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),)*
                }
            }

            /// The GST System's nearest error code, where one exists.
            pub fn gstn_code(self) -> Option<&'static str> {
                match self { $(ErrorCode::$variant => $gstn,)* }
            }

            /// A short, fixed, human-readable summary.
            pub fn title(self) -> &'static str {
                match self { $(ErrorCode::$variant => $title,)* }
            }
        }
    };
}

error_codes! {
    /// 400: the body is not well-formed JSON.
    InvalidRequest = ("invalid_request", 400, Some("GEN5007"), "Malformed request"),
    /// 415: the body is not `application/json`.
    UnsupportedMediaType = ("unsupported_media_type", 415, None, "Unsupported media type"),
    /// 413: the body is larger than the configured limit.
    PayloadTooLarge = ("payload_too_large", 413, None, "Payload too large"),
    /// 422: a field is missing or has the wrong type or value.
    ValidationFailed = ("validation_failed", 422, Some("GEN5001"), "Validation failed"),
    /// 422: the GSTIN fails its format or check character.
    InvalidGstin = ("invalid_gstin", 422, Some("SWEB_9035"), "Invalid GSTIN"),
    /// 422: `duration_hours` is not a whole number from 6 to 720.
    InvalidDuration = ("invalid_duration", 422, None, "Invalid API access duration"),
    /// 404: no such resource (or route).
    NotFound = ("not_found", 404, None, "Not found"),
    /// 405: the route exists, but not for this method.
    MethodNotAllowed = ("method_not_allowed", 405, None, "Method not allowed"),
    /// 409: the resource already exists.
    Conflict = ("conflict", 409, None, "Conflict"),
    /// 401: missing or wrong GSP client credentials.
    InvalidClient = ("invalid_client", 401, Some("AUT4033"), "Invalid client credentials"),
    /// 401: wrong taxpayer username or password.
    InvalidCredentials = ("invalid_credentials", 401, Some("SWEB9002"), "Invalid username or password"),
    /// 403: the password is older than its lifetime.
    PasswordExpired = ("password_expired", 403, Some("SWEB9033"), "Password expired"),
    /// 423: too many failed logins.
    AccountLocked = ("account_locked", 423, Some("SWEB9035"), "Account locked"),
    /// 404: the GSTIN and username do not belong together.
    TaxpayerNotFound = ("taxpayer_not_found", 404, Some("AUTH4032"), "Taxpayer not found"),
    /// 403: the taxpayer has not enabled API access.
    ApiAccessDisabled = ("api_access_disabled", 403, Some("AUTH4037"), "API access disabled"),
    /// 403: the taxpayer's API access window has ended.
    ApiAccessExpired = ("api_access_expired", 403, Some("AUTH4037"), "API access expired"),
    /// 401: wrong OTP.
    InvalidOtp = ("invalid_otp", 401, Some("AUTH4034"), "Invalid OTP"),
    /// 401: no pending OTP challenge (expired, used, voided or replaced).
    OtpExpired = ("otp_expired", 401, Some("AUTH4033"), "OTP expired"),
    /// 429: too many wrong OTPs; the challenge is void.
    OtpAttemptsExceeded = ("otp_attempts_exceeded", 429, None, "Too many wrong OTPs"),
    /// 409: the GSP already holds the maximum of active sessions for this taxpayer.
    SessionLimitReached = ("session_limit_reached", 409, Some("AUTH403"), "Session limit reached"),
    /// 401: no bearer token.
    TokenMissing = ("token_missing", 401, Some("AUTH4033"), "Token missing"),
    /// 401: the token is malformed, forged, of the wrong kind or unknown.
    TokenInvalid = ("token_invalid", 401, Some("AUTH4033"), "Token invalid"),
    /// 401: the token has expired.
    TokenExpired = ("token_expired", 401, Some("AUTH4038"), "Token expired"),
    /// 401: the session ended with its access window.
    SessionExpired = ("session_expired", 401, Some("AUTH4038"), "Session expired"),
    /// 401: the session was revoked.
    SessionRevoked = ("session_revoked", 401, Some("AUTH4033"), "Session revoked"),
    /// 401: a used refresh token was presented again; the session is revoked.
    RefreshTokenReused = ("refresh_token_reused", 401, Some("AUTH4033"), "Refresh token reused"),
    /// 429: too many requests.
    RateLimited = ("rate_limited", 429, None, "Too many requests"),
    /// 502: the upstream GST service failed.
    UpstreamUnavailable = ("upstream_unavailable", 502, None, "Upstream unavailable"),
    /// 504: the upstream GST service did not answer in time.
    UpstreamTimeout = ("upstream_timeout", 504, None, "Upstream timeout"),
    /// 503: the database cannot be reached.
    ServiceUnavailable = ("service_unavailable", 503, None, "Service unavailable"),
    /// 500: anything unexpected; the cause is in the server log.
    InternalError = ("internal_error", 500, None, "Internal error"),
}

/// One field-level problem of a 422.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field's path, e.g. `duration_hours`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// A problem to answer with.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    detail: String,
    extra: Map<String, Value>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// A problem with `code` and a detail a client can act on (never internal causes).
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            extra: Map::new(),
            headers: Vec::new(),
        }
    }

    /// 422 `validation_failed` for a password that breaks the password policy, with `reason`
    /// `weak_password` (the contract's table has no code of its own for it).
    pub fn weak_password(field: &str, detail: impl Into<String>) -> Self {
        Self::field(ErrorCode::ValidationFailed, field, detail).with("reason", json!("weak_password"))
    }

    /// A 422 naming the offending field.
    pub fn field(code: ErrorCode, field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(code, format!("{field}: {message}")).with(
            "errors",
            json!([FieldError {
                field: field.to_owned(),
                message
            }]),
        )
    }

    /// A 500 whose cause goes to the log only.
    pub fn internal(cause: impl fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(
            ErrorCode::InternalError,
            "the server failed; the request id identifies it in the log",
        )
    }

    /// Adds a member to the problem body.
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_owned(), value);
        self
    }

    /// A header this problem's answer carries.
    pub fn header(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    /// Adds `Retry-After`: `wait` in whole seconds, rounded up and at least 1, as the contract writes it
    /// (a truncated figure would send the client back a moment early, to be refused again).
    pub fn with_retry_after(self, wait: chrono::TimeDelta) -> Self {
        let seconds = (wait.num_seconds() + i64::from(wait.subsec_nanos() > 0)).max(1);
        self.with_header(header::RETRY_AFTER, &seconds.to_string())
    }

    /// A member added with [`ApiError::with`].
    pub fn extra(&self, key: &str) -> Option<&Value> {
        self.extra.get(key)
    }

    /// The code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The problem body, with the current request's id.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert(
            "type".into(),
            json!(format!("https://gsp-gateway.dev/problems/{}", self.code.as_str())),
        );
        body.insert("title".into(), json!(self.code.title()));
        body.insert("status".into(), json!(self.code.status().as_u16()));
        body.insert("detail".into(), json!(self.detail));
        body.insert("code".into(), json!(self.code.as_str()));
        if let Some(gstn) = self.code.gstn_code() {
            body.insert("gstn_code".into(), json!(gstn));
        }
        body.insert("request_id".into(), json!(request_id::current()));
        for (k, v) in &self.extra {
            body.insert(k.clone(), v.clone());
        }
        Value::Object(body)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        crate::metrics::refusal(self.code.as_str());
        let mut response = HttpResponse::build(self.code.status());
        response.insert_header((header::CONTENT_TYPE, PROBLEM_JSON));
        for (name, value) in &self.headers {
            response.insert_header((name.clone(), value.clone()));
        }
        response.body(self.body().to_string())
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::Conflict(what) => {
                tracing::debug!(%what, "conflict");
                Self::new(
                    ErrorCode::Conflict,
                    "a resource with these unique fields already exists",
                )
            }
            StorageError::Unavailable(cause) => {
                tracing::warn!(%cause, "database unavailable");
                Self::new(
                    ErrorCode::ServiceUnavailable,
                    "the database is unavailable; try again shortly",
                )
                .with_header(header::RETRY_AFTER, "1")
            }
            other => Self::internal(other),
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        let detail = error.to_string();
        match error {
            DomainError::InvalidGstin(_) => Self::field(ErrorCode::InvalidGstin, "gstin", detail),
            DomainError::InvalidDuration => Self::field(ErrorCode::InvalidDuration, "duration_hours", detail)
                .with("allowed", json!({"minimum": 6, "maximum": 720})),
            DomainError::InvalidPan(_) | DomainError::InvalidStateCode => {
                Self::new(ErrorCode::ValidationFailed, detail)
            }
            DomainError::InvalidUsername(_) => Self::field(ErrorCode::ValidationFailed, "username", detail),
            DomainError::WeakPassword(_) => Self::weak_password("new_password", detail),
            DomainError::PasswordUnchanged => {
                Self::field(ErrorCode::ValidationFailed, "new_password", detail)
                    .with("reason", json!("password_unchanged"))
            }
            DomainError::ApiAccessDisabled => Self::new(
                ErrorCode::ApiAccessDisabled,
                "API access is not available: the taxpayer has not enabled API access on the portal",
            ),
            DomainError::ApiAccessExpired => Self::new(
                ErrorCode::ApiAccessExpired,
                "API access is not available: the taxpayer's chosen API access duration has ended",
            ),
            DomainError::SessionRevoked => Self::new(ErrorCode::SessionRevoked, detail),
            DomainError::SessionExpired => Self::new(ErrorCode::SessionExpired, detail),
            DomainError::Credential(cause) => Self::internal(cause),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_to_their_stable_strings() {
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code).ok(), Some(json!(code.as_str())));
        }
        assert_eq!(ErrorCode::SessionLimitReached.gstn_code(), Some("AUTH403"));
        assert_eq!(ErrorCode::RateLimited.status(), StatusCode::TOO_MANY_REQUESTS);
    }
}
