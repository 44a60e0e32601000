//! The GSP client API: OTP request, token (OTP and refresh grants), logout, GSTIN search.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use base64::Engine;
use chrono::TimeDelta;
use futures_util::future::LocalBoxFuture;
use serde_json::json;

use crate::auth::{Caller, bearer, token_missing, token_refused};
use crate::error::{ApiError, ErrorCode};
use crate::json::ApiJson;
use crate::openapi::{MalformedJson, PayloadTooLarge, Problem, ServiceUnavailable, UnsupportedMediaType};
use crate::services::gsp::{
    self as svc, GspClient, IssuedSession, OtpAccepted, OtpRequest, Registration, TokenRequest,
    TokenResponse, invalid_client,
};
use crate::settings::OtpDelivery;
use crate::state::AppState;
use crate::tokens::{Claims, TokenKind};
use gsp_gateway_domain::OtpCode;

fn basic_credentials(req: &HttpRequest) -> Option<(String, String)> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

impl FromRequest for GspClient {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let credentials = basic_credentials(req);
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("application state missing"))?;
            let (id, secret) = credentials.ok_or_else(|| {
                invalid_client("send the client credentials with HTTP Basic authentication")
            })?;
            state
                .db
                .run(move |conn| Ok(svc::authenticate_client(conn, &id, &secret)))
                .await?
        })
    }
}

/// A GSP client's request with a JSON body. The credentials are checked before the body is read, as
/// the contract orders it: a caller with wrong credentials is told `invalid_client`, never how its body
/// breaks the rules. (A plain argument list would extract both at once, and the body may fail first.)
pub struct Credentialed<T> {
    client: GspClient,
    body: T,
}

impl<T: serde::de::DeserializeOwned + 'static> FromRequest for Credentialed<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let client = GspClient::from_request(req, &mut Payload::None);
        let body = ApiJson::<T>::from_request(req, payload);
        Box::pin(async move {
            let client = client.await?;
            let ApiJson(body) = body.await?;
            Ok(Self { client, body })
        })
    }
}

/// A verified GSP session token (signature and claims; the session's live state is checked by the caller).
#[derive(Debug)]
pub struct SessionToken(pub Claims);

impl FromRequest for SessionToken {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready((|| {
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or_else(|| ApiError::internal("application state missing"))?;
            let token = bearer(req).ok_or_else(|| token_missing("gst"))?;
            let claims = state
                .keys
                .verify(token, TokenKind::Session, state.clock.now())
                .map_err(|e| token_refused(e, "gst"))?;
            Ok(SessionToken(claims))
        })())
    }
}

/// Ask for an OTP to be sent to the taxpayer.
///
/// Checked in this order: client credentials, GSTIN and username belong together, the taxpayer's API access is
/// on and unexpired, the OTP request rate, the session cap. The OTP reaches the taxpayer through the configured
/// channel (by default their inbox, GET /v1/taxpayer/otp-requests); exchange it with POST /v1/gsp/token.
#[utoipa::path(post, path = "/v1/gsp/otp", tag = "gsp", operation_id = "request_otp",
    security(("gsp_client" = [])),
    request_body = OtpRequest,
    responses(
        (status = 202, description = "A 6-digit OTP, valid 10 minutes, was sent to the taxpayer; it replaces this GSP's earlier pending one", body = OtpAccepted),
        (status = 400, response = MalformedJson),
        (status = 401, description = "`invalid_client`: the HTTP Basic client credentials are missing or wrong", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`api_access_disabled`, `api_access_expired`: the taxpayer has not switched API access on, or its window has ended", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`taxpayer_not_found`: GSTIN and username do not belong together", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`session_limit_reached`: this GSP already holds the maximum of active sessions for this taxpayer (default 3)", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "`invalid_gstin`, `validation_failed` (a field is missing or not a string, or the username breaks its rules)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: default 5 OTP requests per 15 minutes per taxpayer and GSP; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`upstream_unavailable`: the OTP could not be delivered (webhook channel)", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn request_otp(
    state: web::Data<AppState>,
    caller: Caller,
    request: Credentialed<OtpRequest>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let settings = state.settings.clone();
    let Credentialed {
        client,
        body: request,
    } = request;
    let otp_client = client.clone();
    let code = OtpCode::generate();
    let opened = state
        .db
        .run(move |conn| {
            Ok(svc::open_otp(
                conn,
                &otp_client,
                &request,
                code,
                &settings,
                &caller,
                now,
            ))
        })
        .await??;
    deliver_otp(&state, &client, &opened).await?;
    Ok(HttpResponse::Accepted().json(OtpAccepted {
        otp_request_id: opened.challenge_id,
        expires_in: (opened.expires_at - now).num_seconds(),
        delivery: svc::delivery_name(state.settings.otp_delivery),
    }))
}

/// Sends an opened OTP through the configured channel; a failed webhook voids it and is the caller's error.
pub async fn deliver_otp(
    state: &AppState,
    client: &GspClient,
    opened: &svc::OpenedOtp,
) -> Result<(), ApiError> {
    match state.settings.otp_delivery {
        OtpDelivery::Inbox => {}
        OtpDelivery::Log => {
            // Development only: the code is readable by whoever reads the log.
            let form_type = opened.evc.as_ref().map(|evc| evc.form_type.as_str());
            tracing::warn!(target: "gsp_gateway::otp_log", gstin = %opened.gstin, gsp = %client.name,
                code = %opened.code.as_str(), evc_form_type = form_type,
                "OTP (log delivery channel, development only)");
        }
        OtpDelivery::Webhook => {
            if let Err(cause) = deliver_webhook(state, client, opened).await {
                tracing::warn!(%cause, "OTP webhook delivery failed");
                let challenge = opened.challenge_id.clone();
                state
                    .db
                    .run(move |conn| svc::void_undelivered(conn, &challenge))
                    .await?;
                return Err(ApiError::new(
                    ErrorCode::UpstreamUnavailable,
                    "the OTP could not be delivered to the taxpayer; try again later",
                ));
            }
        }
    }
    crate::metrics::otp_issued(if opened.evc.is_some() { "evc" } else { "session" });
    Ok(())
}

/// The webhook's message: the contract's `{gstin, gsp_name, code, expires_at}`, plus `purpose`
/// (`session` or `evc`) and, for an EVC OTP, the `form_type` and `pan` it signs for.
fn webhook_message(client: &GspClient, opened: &svc::OpenedOtp) -> serde_json::Value {
    let mut message = json!({
        "gstin": opened.gstin,
        "gsp_name": client.name,
        "code": opened.code.as_str(),
        "expires_at": crate::json::rfc3339(&opened.expires_at),
        "purpose": if opened.evc.is_some() { "evc" } else { "session" },
    });
    if let Some(evc) = &opened.evc {
        message["form_type"] = json!(evc.form_type);
        message["pan"] = json!(evc.pan);
    }
    message
}

async fn deliver_webhook(
    state: &AppState,
    client: &GspClient,
    opened: &svc::OpenedOtp,
) -> Result<(), String> {
    let url = state
        .settings
        .otp_webhook_url
        .as_deref()
        .ok_or("no webhook URL configured")?;
    let response = state
        .http
        .post(url)
        .timeout(std::time::Duration::from_millis(
            state.settings.otp_webhook_timeout_ms,
        ))
        .json(&webhook_message(client, opened))
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("webhook answered {}", response.status()))
    }
}

fn token_response(state: &AppState, issued: IssuedSession) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let expires_at =
        (now + TimeDelta::seconds(state.settings.access_token_ttl_secs as i64)).min(issued.expires_at);
    let (token, _) = state
        .keys
        .issue(
            TokenKind::Session,
            &issued.gstin,
            Some(&issued.session_id),
            Some(&issued.client_id),
            now,
            expires_at,
        )
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(TokenResponse {
            access_token: token,
            token_type: "Bearer",
            expires_in: (expires_at - now).num_seconds(),
            refresh_token: issued.refresh_token,
            session_id: issued.session_id,
            session_expires_at: issued.expires_at,
        }))
}

/// Exchange an OTP for a session, or refresh a session.
///
/// `grant_type: otp` opens a session (consent) with the OTP the taxpayer received; `grant_type: refresh_token`
/// refreshes it without an OTP while the taxpayer's access window lasts. The access token lives 6 hours by
/// default and never past `session_expires_at`; each refresh returns a new single-use refresh token.
#[utoipa::path(post, path = "/v1/gsp/token", tag = "gsp", operation_id = "issue_token",
    security(("gsp_client" = [])),
    request_body(content = TokenRequest, examples(
        ("otp" = (summary = "Exchange the taxpayer's OTP for a new session",
            value = json!({"grant_type": "otp", "gstin": "24AAUPV7468F1ZW", "username": "asha.traders", "otp": "493817"}))),
        ("refresh_token" = (summary = "Refresh the session without a new OTP",
            value = json!({"grant_type": "refresh_token", "refresh_token": "k3Yx9bQp0w2Zr7Lm4Nv8Tc1Hd6Fs5Ja"}))),
    )),
    responses(
        (status = 200, description = "A session token pair", body = TokenResponse),
        (status = 400, response = MalformedJson),
        (status = 401, description = "`invalid_client`, `invalid_otp` (with `attempts_remaining`), `otp_expired` (no pending OTP: expired, used, voided or replaced), `token_invalid` (unknown refresh token, or another client's), `refresh_token_reused` (the session is revoked), `session_revoked`, `session_expired`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`api_access_disabled`, `api_access_expired`: a new OTP is needed once access is on again", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`taxpayer_not_found`: GSTIN and username do not belong together", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`session_limit_reached`: this GSP already holds the maximum of active sessions for this taxpayer", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "`invalid_gstin`, `validation_failed` (unknown `grant_type`, a missing or mistyped field, or a username that breaks its rules)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`otp_attempts_exceeded`: the 5th wrong code voids the OTP; request a new one", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn issue_token(
    state: web::Data<AppState>,
    caller: Caller,
    request: Credentialed<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let settings = state.settings.clone();
    let Credentialed { client, body } = request;
    let issued = match TokenRequest::from_json(&body)? {
        TokenRequest::Otp { gstin, username, otp } => {
            let grant = svc::OtpGrant {
                gstin,
                username,
                otp,
                dialect: None,
            };
            let result = state
                .db
                .run(move |conn| Ok(svc::exchange_otp(conn, &client, &grant, &settings, &caller, now)))
                .await?;
            if let Err(error) = &result {
                note_otp_failure(error);
            }
            result?
        }
        TokenRequest::RefreshToken { refresh_token } => {
            let result = state
                .db
                .run(move |conn| Ok(svc::refresh(conn, &client, &refresh_token, &caller, now)))
                .await?;
            if let Err(error) = &result
                && error.code() == ErrorCode::RefreshTokenReused
                && let Some(session_id) = error.extra("session_id").and_then(|v| v.as_str())
            {
                state.view.session_revoked(session_id);
            }
            result?
        }
    };
    token_response(&state, issued)
}

/// Counts a failed OTP verification in the metrics.
fn note_otp_failure(error: &ApiError) {
    let reason = match error.code() {
        ErrorCode::InvalidOtp => "wrong_code",
        ErrorCode::OtpExpired => "no_pending_otp",
        ErrorCode::OtpAttemptsExceeded => "attempts_exceeded",
        _ => return,
    };
    crate::metrics::otp_failed(reason);
}

/// End the session (its tokens stop working at once).
///
/// Revokes the session of the presented session token; its refresh token stops working too.
#[utoipa::path(post, path = "/v1/gsp/logout", tag = "gsp", operation_id = "logout",
    security(("session_token" = [])),
    responses(
        (status = 204, description = "The session is revoked"),
        (status = 401, description = "`token_missing`, `token_invalid`, `token_expired`, `session_revoked` (already logged out or revoked)", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn logout(
    state: web::Data<AppState>,
    token: SessionToken,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let (Some(session_id), Some(client_id)) = (token.0.sid.clone(), token.0.cid.clone()) else {
        return Err(ApiError::new(
            ErrorCode::TokenInvalid,
            "the token is not valid here",
        ));
    };
    let id = session_id.clone();
    state
        .db
        .run(move |conn| Ok(svc::logout(conn, &id, &client_id, &caller, now)))
        .await??;
    state.view.session_revoked(&session_id);
    Ok(HttpResponse::NoContent().finish())
}

/// Verify a GSTIN: its public registration details.
///
/// No taxpayer session is needed (GSTIN verification).
#[utoipa::path(get, path = "/v1/gsp/search/{gstin}", tag = "gsp", operation_id = "search_gstin",
    security(("gsp_client" = [])),
    params(("gstin" = String, Path, description = "The GSTIN to verify: 2-digit state code, 10-character PAN, entity code, `Z` and the mod-36 check character",
        format = "gstin", pattern = "^(0[1-9]|[12][0-9]|3[0-8]|9[679])[A-Z]{5}[0-9]{4}[A-Z][1-9A-Z]Z[0-9A-Z]$", example = "24AAUPV7468F1ZW")),
    responses(
        (status = 200, description = "Registration details", body = Registration),
        (status = 401, description = "`invalid_client`: the HTTP Basic client credentials are missing or wrong", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no registration with this GSTIN", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_gstin`: the GSTIN fails its format or check character", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn search(
    state: web::Data<AppState>,
    _client: GspClient,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let gstin = path.into_inner();
    let found = state.db.run(move |conn| Ok(svc::search(conn, &gstin))).await??;
    Ok(HttpResponse::Ok().json(found))
}
