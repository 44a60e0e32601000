//! The taxpayer API: login, password, Manage API Access, sessions, OTP inbox, activity.

use std::sync::OnceLock;

use actix_web::{HttpResponse, web};
use chrono::TimeDelta;
use gsp_gateway_domain::PasswordHash;

use crate::auth::{Caller, Taxpayer};
use crate::error::ApiError;
use crate::json::{ApiJson, ApiQuery};
use crate::openapi::{MalformedJson, PayloadTooLarge, Problem, ServiceUnavailable, UnsupportedMediaType};
use crate::services::activity::{self, AuditPage};
use crate::services::taxpayer::{
    self as svc, AccessChange, ApiAccessView, LoginRequest, LoginResponse, OtpMessage, PasswordChange,
    SessionView,
};
use crate::state::AppState;
use gsp_gateway_storage::DbConn;
use gsp_gateway_storage::repo::taxpayers::TaxpayerRow;

/// A hash to verify against when the username is unknown, so timing does not reveal which usernames exist.
fn decoy_hash() -> &'static Option<PasswordHash> {
    static DECOY: OnceLock<Option<PasswordHash>> = OnceLock::new();
    DECOY.get_or_init(|| PasswordHash::create("decoy-password-1!").ok())
}

/// Checks `password` for `username` with lockout; returns the taxpayer on success.
async fn authenticate(
    state: &web::Data<AppState>,
    caller: &Caller,
    username: String,
    password: String,
) -> Result<gsp_gateway_storage::repo::taxpayers::TaxpayerRow, ApiError> {
    let now = state.clock.now();
    let lookup = username.clone();
    let row = state
        .db
        .run(move |conn| Ok(svc::lookup_login(conn, &lookup)))
        .await??;
    let Some(row) = row else {
        state
            .heavy
            .run(move || decoy_hash().as_ref().map(|h| h.verify(&password)))
            .await?;
        return Err(svc::wrong_credentials());
    };
    svc::ensure_unlocked(&row, now)?;
    let hash = PasswordHash::from_stored(row.password_hash.clone());
    let matched = state.heavy.run(move || hash.verify(&password)).await??;
    let settings = state.settings.clone();
    let caller = caller.clone();
    if !matched {
        let refusal = state
            .db
            .run(move |conn| Ok(svc::record_failure(conn, &row, &caller, &settings, now)))
            .await??;
        return Err(refusal);
    }
    Ok(row)
}

/// Runs `work` with the taxpayer the token names, in one database call.
async fn for_taxpayer<T: Send + 'static>(
    state: &AppState,
    taxpayer: Taxpayer,
    work: impl FnOnce(&mut DbConn, &TaxpayerRow) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    state
        .db
        .run(move |conn| {
            Ok(
                svc::require_taxpayer(conn, &taxpayer.gstin, taxpayer.password_tag.as_deref())
                    .and_then(|row| work(conn, &row)),
            )
        })
        .await?
}

/// Log in as a taxpayer.
///
/// Returns the taxpayer token (`taxpayer_token`) for the `/v1/taxpayer/*` operations. Failures 1-4 answer 401;
/// the 5th consecutive failure locks the account (default 15 minutes) and answers 423; a successful login
/// resets the count.
#[utoipa::path(post, path = "/v1/taxpayer/login", tag = "taxpayer", operation_id = "taxpayer_login",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "A taxpayer token", body = LoginResponse),
        (status = 400, response = MalformedJson),
        (status = 401, description = "`invalid_credentials`: the username or password is wrong (failures 1-4)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`password_expired`: change it with POST /v1/taxpayer/password", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "`validation_failed`: `username` or `password` is missing or not a string", body = Problem, content_type = "application/problem+json"),
        (status = 423, description = "`account_locked`: the 5th consecutive failure locks the account (default 15 minutes); `locked_until` says until when", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn login(
    state: web::Data<AppState>,
    caller: Caller,
    body: ApiJson<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let LoginRequest { username, password } = body.0;
    let row = authenticate(&state, &caller, username, password).await?;
    let now = state.clock.now();
    let settings = state.settings.clone();
    let success_row = row.clone();
    let password_expires_at = state
        .db
        .run(move |conn| Ok(svc::record_success(conn, &success_row, &caller, &settings, now)))
        .await??;
    let ttl = state.settings.taxpayer_token_ttl_secs as i64;
    let (token, _) = state
        .keys
        .issue_taxpayer(&row.gstin, &row.password_hash, now, now + TimeDelta::seconds(ttl))
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(LoginResponse {
            access_token: token,
            token_type: "Bearer",
            expires_in: ttl,
            password_expires_at,
        }))
}

/// Change the password (also when it has expired).
///
/// Authenticates with the current password like a login (wrong ones count towards the lockout), so it needs
/// no token and works for an expired password.
#[utoipa::path(post, path = "/v1/taxpayer/password", tag = "taxpayer", operation_id = "change_password",
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed; the new password's lifetime starts now"),
        (status = 400, response = MalformedJson),
        (status = 401, description = "`invalid_credentials`: the username or current password is wrong (also when another change replaced it while this one ran)", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "`validation_failed`: a field is missing or not a string, or the new password is refused (`reason`: `weak_password` for the password policy, `password_unchanged`)", body = Problem, content_type = "application/problem+json"),
        (status = 423, description = "`account_locked`: too many failed attempts (also when they locked the account while this change ran)", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn change_password(
    state: web::Data<AppState>,
    caller: Caller,
    body: ApiJson<PasswordChange>,
) -> Result<HttpResponse, ApiError> {
    let change = body.0;
    let row = authenticate(
        &state,
        &caller,
        change.username.clone(),
        change.current_password.clone(),
    )
    .await?;
    svc::check_new_password(&change)?;
    let new_password = change.new_password.clone();
    let hash = state
        .heavy
        .run(move || PasswordHash::create(&new_password))
        .await??;
    let now = state.clock.now();
    state
        .db
        .run(move |conn| Ok(svc::store_password(conn, &row, &hash, &caller, now)))
        .await??;
    Ok(HttpResponse::NoContent().finish())
}

/// Read Manage API Access.
///
/// `status` is computed at the time of the request: a window that has run out reads `expired`.
#[utoipa::path(get, path = "/v1/taxpayer/api-access", tag = "taxpayer", operation_id = "get_api_access",
    security(("taxpayer_token" = [])),
    responses(
        (status = 200, description = "The access setting, with `status` computed now", body = ApiAccessView),
        (status = 401, description = "`token_missing`, `token_invalid`, `token_expired`: send a current taxpayer token from POST /v1/taxpayer/login", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn get_api_access(
    state: web::Data<AppState>,
    taxpayer: Taxpayer,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let view = for_taxpayer(&state, taxpayer, move |conn, row| {
        let access = gsp_gateway_storage::repo::access::get(conn, &row.id)?;
        Ok(svc::access_view(&row.gstin, &access, now))
    })
    .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Switch API access on for 6 hours to 30 days, or off (which ends every GSP session at once).
///
/// Enabling starts a new window now, also when already enabled, and moves the end of live sessions with it.
/// Disabling ends the window at once and revokes every GSP session of this taxpayer.
#[utoipa::path(put, path = "/v1/taxpayer/api-access", tag = "taxpayer", operation_id = "set_api_access",
    security(("taxpayer_token" = [])),
    request_body(content = AccessChange, examples(
        ("enable" = (summary = "Switch API access on for one day",
            value = json!({"enabled": true, "duration_hours": 24}))),
        ("disable" = (summary = "Switch API access off (ends every GSP session)", value = json!({"enabled": false}))),
    )),
    responses(
        (status = 200, description = "The new setting", body = ApiAccessView),
        (status = 400, response = MalformedJson),
        (status = 401, description = "`token_missing`, `token_invalid`, `token_expired`: send a current taxpayer token from POST /v1/taxpayer/login", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "`invalid_duration` (enabling without a whole number of hours from 6 to 720), `validation_failed` (`enabled` is missing or not a boolean)", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn set_api_access(
    state: web::Data<AppState>,
    taxpayer: Taxpayer,
    caller: Caller,
    body: ApiJson<AccessChange>,
) -> Result<HttpResponse, ApiError> {
    let change = body.0;
    let duration = if change.enabled {
        Some(svc::parse_duration(change.duration_hours.as_ref())?)
    } else {
        None
    };
    let now = state.clock.now();
    let (gstin, changed) = for_taxpayer(&state, taxpayer, move |conn, row| {
        let changed = svc::change_access(conn, row, duration, &caller, now)?;
        Ok((row.gstin.clone(), changed))
    })
    .await?;
    state
        .view
        .access_changed(&gstin, changed.access, &changed.revoked_sessions);
    Ok(HttpResponse::Ok().json(svc::access_view(&gstin, &changed.access, now)))
}

/// List the GSP sessions (consents), newest first.
#[utoipa::path(get, path = "/v1/taxpayer/sessions", tag = "taxpayer", operation_id = "list_sessions",
    security(("taxpayer_token" = [])),
    responses(
        (status = 200, description = "Every session, current and past, with its status now", body = Vec<SessionView>),
        (status = 401, description = "`token_missing`, `token_invalid`, `token_expired`: send a current taxpayer token from POST /v1/taxpayer/login", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn list_sessions(state: web::Data<AppState>, taxpayer: Taxpayer) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let list = for_taxpayer(&state, taxpayer, move |conn, row| {
        svc::list_sessions(conn, row, now)
    })
    .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// Revoke one GSP session; it stops working at once.
///
/// The GSP's next call with that session's token answers 401 `session_revoked`; its refresh token stops working too.
#[utoipa::path(delete, path = "/v1/taxpayer/sessions/{session_id}", tag = "taxpayer", operation_id = "revoke_session",
    security(("taxpayer_token" = [])),
    params(("session_id" = String, Path, description = "The session to revoke (`session_id` of GET /v1/taxpayer/sessions)",
        example = "0b6f3c1e-2a4d-4c8e-9f1a-3b5d7e9f1a2c")),
    responses(
        (status = 204, description = "Revoked (revoking again is harmless)"),
        (status = 401, description = "`token_missing`, `token_invalid`, `token_expired`: send a current taxpayer token from POST /v1/taxpayer/login", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such session of this taxpayer", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn revoke_session(
    state: web::Data<AppState>,
    taxpayer: Taxpayer,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let session_id = path.into_inner();
    let now = state.clock.now();
    let id = session_id.clone();
    for_taxpayer(&state, taxpayer, move |conn, row| {
        svc::revoke_session(conn, row, &id, &caller, now)
    })
    .await?;
    state.view.session_revoked(&session_id);
    Ok(HttpResponse::NoContent().finish())
}

/// Pending OTPs addressed to this taxpayer (the inbox delivery channel).
///
/// The way an SMS reaches the taxpayer's phone: a message stays here until its OTP is used, replaced or expires.
#[utoipa::path(get, path = "/v1/taxpayer/otp-requests", tag = "taxpayer", operation_id = "list_otp_requests",
    security(("taxpayer_token" = [])),
    responses(
        (status = 200, description = "Pending, unexpired OTPs, newest first", body = Vec<OtpMessage>),
        (status = 401, description = "`token_missing`, `token_invalid`, `token_expired`: send a current taxpayer token from POST /v1/taxpayer/login", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn otp_requests(state: web::Data<AppState>, taxpayer: Taxpayer) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let list = for_taxpayer(&state, taxpayer, move |conn, row| svc::inbox(conn, row, now)).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(list))
}

/// Paging of the activity list.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ActivityParams {
    /// At most this many events, 1-200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// Only events with an id below this.
    #[param(minimum = 1)]
    pub before: Option<i64>,
}

/// The taxpayer's own activity, newest first.
///
/// Access enabled and disabled, OTPs requested, sessions created, refreshed and revoked, failed logins.
/// Page backwards by passing `next_before` as `before` until it is null.
#[utoipa::path(get, path = "/v1/taxpayer/activity", tag = "taxpayer", operation_id = "list_activity",
    security(("taxpayer_token" = [])),
    params(ActivityParams),
    responses(
        (status = 200, description = "A page of this taxpayer's events", body = AuditPage),
        (status = 401, description = "`token_missing`, `token_invalid`, `token_expired`: send a current taxpayer token from POST /v1/taxpayer/login", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: `limit` or `before` out of range or not a number", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn activity(
    state: web::Data<AppState>,
    taxpayer: Taxpayer,
    params: ApiQuery<ActivityParams>,
) -> Result<HttpResponse, ApiError> {
    let query = activity::query(Some(taxpayer.gstin.clone()), params.limit, params.before)?;
    let page = for_taxpayer(&state, taxpayer, move |conn, _| Ok(activity::page(conn, &query)?)).await?;
    Ok(HttpResponse::Ok().json(page))
}
