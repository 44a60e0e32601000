//! The operator API: provisioning and the audit log. Off (404) unless an admin token is configured.

use actix_web::{HttpResponse, web};
use gsp_gateway_domain::{Gstin, PasswordHash};
use gsp_gateway_storage::repo::audit::NewAuditEvent;

use crate::auth::{Caller, Operator};
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::openapi::Problem;
use crate::services::activity::{self, AuditPage, PageParams};
use crate::services::provisioning::{self, GspCredentials, NewGsp, NewTaxpayer, TaxpayerView};
use crate::state::{AppState, blocking};

fn operator_event(caller: &Caller) -> NewAuditEvent {
    NewAuditEvent {
        actor: "operator".into(),
        ip: caller.ip.clone(),
        request_id: Some(caller.request_id.clone()),
        ..Default::default()
    }
}

/// Provision a taxpayer.
#[utoipa::path(post, path = "/v1/admin/taxpayers", tag = "operator", operation_id = "create_taxpayer",
    security(("admin_token" = [])),
    request_body = NewTaxpayer,
    responses(
        (status = 201, description = "Created; the password is never returned", body = TaxpayerView),
        (status = 401, description = "`token_missing`, `token_invalid`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: the admin API is off", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`conflict`: the GSTIN or username exists", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_gstin`, `validation_failed`, `weak_password`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_taxpayer(
    _: Operator,
    caller: Caller,
    state: web::Data<AppState>,
    body: ApiJson<NewTaxpayer>,
) -> Result<HttpResponse, ApiError> {
    let checked = provisioning::check_taxpayer(body.0)?;
    let password = checked.password();
    let hash = blocking(move || PasswordHash::create(&password)).await??;
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
#[utoipa::path(post, path = "/v1/admin/gsps", tag = "operator", operation_id = "create_gsp",
    security(("admin_token" = [])),
    request_body = NewGsp,
    responses(
        (status = 201, description = "Created; `client_secret` is shown this once", body = GspCredentials),
        (status = 401, description = "`token_missing`, `token_invalid`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: the admin API is off", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
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
    Ok(HttpResponse::Created().json(created))
}

/// Read the audit log, newest first, optionally for one GSTIN.
#[utoipa::path(get, path = "/v1/admin/audit", tag = "operator", operation_id = "list_audit_events",
    security(("admin_token" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "A page of events", body = AuditPage),
        (status = 401, description = "`token_missing`, `token_invalid`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: the admin API is off", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_gstin`, `validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_audit(
    _: Operator,
    state: web::Data<AppState>,
    params: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
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
