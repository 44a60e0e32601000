//! Who is calling: extractors for the operator, taxpayers, and the caller's audit facts.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use gsp_gateway_domain::secret::constant_time_eq;

use crate::error::{ApiError, ErrorCode};
use crate::request_id::RequestId;
use crate::state::AppState;
use crate::tokens::{TokenError, TokenKind};

/// The bearer token of the request, if it has one.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn state(req: &HttpRequest) -> Result<&web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal("application state missing"))
}

/// 401 `token_missing` with the challenge header.
pub fn token_missing(realm: &str) -> ApiError {
    ApiError::new(ErrorCode::TokenMissing, "send Authorization: Bearer <token>")
        .with_header(header::WWW_AUTHENTICATE, &format!("Bearer realm=\"{realm}\""))
}

/// 401 for a refused token of `kind`.
pub fn token_refused(error: TokenError, realm: &str) -> ApiError {
    let (code, detail) = match error {
        TokenError::Invalid => (ErrorCode::TokenInvalid, "the token is not valid here"),
        TokenError::Expired => (ErrorCode::TokenExpired, "the token has expired"),
    };
    ApiError::new(code, detail).with_header(
        header::WWW_AUTHENTICATE,
        &format!("Bearer realm=\"{realm}\", error=\"invalid_token\""),
    )
}

/// The operator, proven by the configured admin token.
#[derive(Debug)]
pub struct Operator;

impl FromRequest for Operator {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready((|| {
            let state = state(req)?;
            let Some(expected) = state.settings.admin_token.as_deref() else {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    "the admin API is not enabled on this gateway",
                ));
            };
            let token = bearer(req).ok_or_else(|| token_missing("admin"))?;
            if constant_time_eq(token, expected) {
                Ok(Operator)
            } else {
                Err(
                    ApiError::new(ErrorCode::TokenInvalid, "the admin token is wrong").with_header(
                        header::WWW_AUTHENTICATE,
                        "Bearer realm=\"admin\", error=\"invalid_token\"",
                    ),
                )
            }
        })())
    }
}

/// A logged-in taxpayer, proven by a taxpayer token.
#[derive(Debug, Clone)]
pub struct Taxpayer {
    /// The taxpayer's GSTIN (the token's `sub`).
    pub gstin: String,
}

impl FromRequest for Taxpayer {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready((|| {
            let state = state(req)?;
            let token = bearer(req).ok_or_else(|| token_missing("taxpayer"))?;
            let claims = state
                .keys
                .verify(token, TokenKind::Taxpayer, state.clock.now())
                .map_err(|e| token_refused(e, "taxpayer"))?;
            Ok(Taxpayer { gstin: claims.sub })
        })())
    }
}

/// What the audit log records of any caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The client's address (from the connection, or the proxy's forwarding headers).
    pub ip: Option<String>,
    /// The request id.
    pub request_id: String,
    /// The GST System dialect's `txn` header (recorded, never required unique).
    pub txn: Option<String>,
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let ip = req.connection_info().realip_remote_addr().map(|a| {
            a.parse::<std::net::SocketAddr>()
                .map(|s| s.ip().to_string())
                .unwrap_or_else(|_| a.to_owned())
        });
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .map_or_else(crate::request_id::current, |r| r.0.clone());
        ready(Ok(Caller {
            ip,
            request_id,
            txn: None,
        }))
    }
}
