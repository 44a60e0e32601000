//! The operator API: provisioning and the audit log. Off (404) unless an admin token is configured.

use actix_web::{HttpResponse, web};
use gsp_gateway_domain::{Gstin, PasswordHash};
use gsp_gateway_storage::repo::audit::NewAuditEvent;

use crate::auth::{Caller, Operator};
use crate::error::ApiError;
use crate::json::{ApiJson, ApiQuery};
use crate::openapi::{MalformedJson, PayloadTooLarge, Problem, ServiceUnavailable, UnsupportedMediaType};
use crate::services::activity::{self, AuditPage, PageParams};
use crate::services::provisioning::{self, GspCredentials, NewGsp, NewTaxpayer, TaxpayerView};
use crate::state::AppState;

fn operator_event(caller: &Caller) -> NewAuditEvent {
    NewAuditEvent {
        actor: "operator".into(),
        ip: caller.ip.clone(),
        request_id: Some(caller.request_id.clone()),
        ..Default::default()
    }
}

/// Provision a taxpayer.
///
/// Creates the taxpayer with API access switched off and the given initial password, which starts its
/// lifetime (default 120 days) now. The GSTIN is trimmed and upper-cased, then checked (format and check character).
#[utoipa::path(post, path = "/v1/admin/taxpayers", tag = "operator", operation_id = "create_taxpayer",
    security(("admin_token" = [])),
    request_body = NewTaxpayer,
    responses(
        (status = 201, description = "Created; the password is never returned", body = TaxpayerView),
        (status = 400, response = MalformedJson),
        (status = 401, description = "`token_missing`, `token_invalid`: the admin token is missing or wrong", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: the admin API is off (no admin token is configured)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`conflict`: a taxpayer with this GSTIN or username exists", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "`invalid_gstin`, `validation_failed` (a field is missing, mistyped or out of its rules; `errors` names it; a password refused by the password policy has `reason` `weak_password`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn create_taxpayer(
    _: Operator,
    caller: Caller,
    state: web::Data<AppState>,
    body: ApiJson<NewTaxpayer>,
) -> Result<HttpResponse, ApiError> {
    let checked = provisioning::check_taxpayer(body.0)?;
    let password = checked.password();
    let hash = state.heavy.run(move || PasswordHash::create(&password)).await??;
    let now = state.clock.now();
    let lifetime = state.settings.password_lifetime_days;
    let event = operator_event(&caller);
    let view: TaxpayerView = state
        .db
        .run(move |conn| {
            Ok(provisioning::create_taxpayer(
                conn, checked, &hash, now, lifetime, event,
            ))
        })
        .await??;
    Ok(HttpResponse::Created().json(view))
}

/// Provision a GSP client.
///
/// Returns the client id and secret the GSP authenticates with (HTTP Basic). Only the secret's hash is
/// stored: the secret is in this response only.
#[utoipa::path(post, path = "/v1/admin/gsps", tag = "operator", operation_id = "create_gsp",
    security(("admin_token" = [])),
    request_body = NewGsp,
    responses(
        (status = 201, description = "Created; `client_secret` is shown this once", body = GspCredentials),
        (status = 400, response = MalformedJson),
        (status = 401, description = "`token_missing`, `token_invalid`: the admin token is missing or wrong", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: the admin API is off (no admin token is configured)", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "`validation_failed`: `name` is missing, empty or longer than 100 characters", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn create_gsp(
    _: Operator,
    caller: Caller,
    state: web::Data<AppState>,
    body: ApiJson<NewGsp>,
) -> Result<HttpResponse, ApiError> {
    provisioning::check_gsp(&body.0)?;
    let now = state.clock.now();
    let event = operator_event(&caller);
    let created = state
        .db
        .run(move |conn| Ok(provisioning::create_gsp(conn, body.0, now, event)))
        .await??;
    // The secret is shown once: no cache (a proxy's or the operator's tool's) may keep it.
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .json(created))
}

/// Read the audit log, newest first, optionally for one GSTIN.
///
/// Every provisioning step, taxpayer action and GSP call that changes state is an event. Page backwards by
/// passing `next_before` as `before` until it is null.
#[utoipa::path(get, path = "/v1/admin/audit", tag = "operator", operation_id = "list_audit_events",
    security(("admin_token" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "A page of events, newest first", body = AuditPage),
        (status = 401, description = "`token_missing`, `token_invalid`: the admin token is missing or wrong", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: the admin API is off (no admin token is configured)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_gstin` (the `gstin` filter), `validation_failed` (`limit` or `before` out of range or not a number)", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn list_audit(
    _: Operator,
    state: web::Data<AppState>,
    params: ApiQuery<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let params = params.0;
    let gstin = params
        .gstin
        .as_deref()
        .map(Gstin::parse)
        .transpose()?
        .map(String::from);
    let query = activity::query(gstin, params.limit, params.before)?;
    let page = state.db.run(move |conn| activity::page(conn, &query)).await?;
    Ok(HttpResponse::Ok().json(page))
}
