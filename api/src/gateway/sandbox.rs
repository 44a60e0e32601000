//! The built-in sandbox that answers `/v1/gst/` when no upstream is configured: the session taxpayer's
//! registration and return filing status, from memory after the first load.

use std::sync::Arc;

use actix_web::HttpResponse;
use actix_web::dev::RequestHead;
use actix_web::http::Method;
use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::GstContext;
use crate::error::{ApiError, ErrorCode};
use crate::gateway::view::CachedRegistration;
use crate::json::{method_not_allowed_on, parse_query};
use crate::openapi::{Problem, ServiceUnavailable};
use crate::services::gsp::Registration;
use crate::state::AppState;

/// Answers a call the enforcement admitted: `GET /v1/gst/taxpayer`, `GET /v1/gst/returns?fy=` (and
/// HEAD of them); other methods on those paths 405, other paths 404.
pub async fn serve(state: &AppState, ctx: &GstContext, head: &RequestHead) -> Result<HttpResponse, ApiError> {
    let full = head.uri.path();
    let path = full.strip_prefix("/v1/gst").unwrap_or_default();
    if !matches!(path, "/taxpayer" | "/returns") {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("the sandbox has no {} {full}", head.method),
        ));
    }
    // HEAD is answered as GET; actix-http writes no body for it.
    if head.method != Method::GET && head.method != Method::HEAD {
        return Err(method_not_allowed_on(head, full));
    }
    if path == "/taxpayer" {
        taxpayer(state, ctx).await
    } else {
        let query: ReturnsQuery = parse_query(head.uri.query().unwrap_or_default())?;
        returns(state, ctx, &query).await
    }
}

async fn registration(state: &AppState, gstin: &Arc<str>) -> Result<Arc<CachedRegistration>, ApiError> {
    if let Some(found) = state.view.registration(gstin) {
        return Ok(found);
    }
    let key = gstin.to_string();
    let registration = state
        .db
        .run(move |conn| Ok(crate::services::gsp::search(conn, &key)))
        .await??;
    let json = serde_json::to_vec(&registration).map_err(ApiError::internal)?;
    let found = Arc::new(CachedRegistration {
        registration,
        json: json.into(),
    });
    state.view.remember_registration(gstin.clone(), found.clone());
    Ok(found)
}

/// The session taxpayer's registration details.
///
/// Like every call under `/v1/gst/`, it passes the enforcement layer first: a valid session token, the
/// taxpayer's API access on and unexpired (checked live), the session not revoked, the rate limits. Every
/// answer carries the `RateLimit` and `RateLimit-Policy` headers.
#[utoipa::path(get, path = "/v1/gst/taxpayer", tag = "gateway", operation_id = "get_gst_taxpayer",
    security(("session_token" = [])),
    responses(
        (status = 200, description = "Registration details of the session's taxpayer (sandbox, or the upstream's answer)", body = Registration),
        (status = 401, description = "`token_missing`, `token_invalid`, `token_expired`, `session_revoked` (by the taxpayer, logout or refresh-token reuse), `session_expired`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`api_access_disabled`, `api_access_expired`: the taxpayer switched API access off, or its window ended", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: the session's or the GSP client's rate limit is exhausted; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`upstream_unavailable`: the upstream GST service could not be reached or failed (answered 5xx; its body is not passed on)", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = ServiceUnavailable),
        (status = 504, description = "`upstream_timeout`: the upstream GST service did not answer in time", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn taxpayer(state: &AppState, ctx: &GstContext) -> Result<HttpResponse, ApiError> {
    let found = registration(state, &ctx.gstin).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(found.json.clone()))
}

/// The financial year to report.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReturnsQuery {
    /// Financial year as `YYYY-YY`, April to March, e.g. `2025-26` (from 2017-18, when GST began).
    /// `format: financial-year`: the second year follows the first.
    #[param(
        format = "financial-year",
        pattern = "^[0-9]{4}-[0-9]{2}$",
        example = "2025-26"
    )]
    pub fy: String,
}

/// One return of one period.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReturnStatus {
    /// `GSTR1` or `GSTR3B`.
    #[schema(example = "GSTR3B")]
    pub return_type: &'static str,
    /// Tax period `MMYYYY`.
    #[schema(example = "042025")]
    pub ret_period: String,
    /// `Filed` or `Not Filed`.
    #[schema(example = "Filed")]
    pub status: &'static str,
    /// Filing date (null when not filed).
    #[schema(required = true)]
    pub filed_on: Option<NaiveDate>,
    /// Acknowledgement reference number (null when not filed).
    #[schema(required = true, example = "AA240425110000000")]
    pub arn: Option<String>,
}

/// Return filing status for a financial year.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReturnsStatus {
    /// The taxpayer.
    pub gstin: String,
    /// The financial year.
    #[schema(example = "2025-26")]
    pub fy: String,
    /// Monthly GSTR-1 and GSTR-3B, April to March.
    pub returns: Vec<ReturnStatus>,
}

fn parse_fy(fy: &str) -> Option<i32> {
    let (start, end) = fy.split_once('-')?;
    let start: i32 = start.parse().ok().filter(|y| (2017..=2100).contains(y))?;
    let end: i32 = end.parse().ok()?;
    (end == (start + 1) % 100 && fy.len() == 7).then_some(start)
}

/// The session taxpayer's return filing status for a financial year.
///
/// Monthly GSTR-1 and GSTR-3B from April to March. Passes the same enforcement layer as every `/v1/gst/` call.
#[utoipa::path(get, path = "/v1/gst/returns", tag = "gateway", operation_id = "get_gst_returns",
    security(("session_token" = [])),
    params(ReturnsQuery),
    responses(
        (status = 200, description = "Filing status (sandbox, or the upstream's answer)", body = ReturnsStatus),
        (status = 401, description = "`token_missing`, `token_invalid`, `token_expired`, `session_revoked` (by the taxpayer, logout or refresh-token reuse), `session_expired`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`api_access_disabled`, `api_access_expired`: the taxpayer switched API access off, or its window ended", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: `fy` is missing or not a financial year like 2025-26", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: the session's or the GSP client's rate limit is exhausted; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`upstream_unavailable`: the upstream GST service could not be reached or failed (answered 5xx; its body is not passed on)", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = ServiceUnavailable),
        (status = 504, description = "`upstream_timeout`: the upstream GST service did not answer in time", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn returns(
    state: &AppState,
    ctx: &GstContext,
    query: &ReturnsQuery,
) -> Result<HttpResponse, ApiError> {
    let start = parse_fy(&query.fy)
        .ok_or_else(|| ApiError::field(ErrorCode::ValidationFailed, "fy", "a financial year like 2025-26"))?;
    let cached = registration(state, &ctx.gstin).await?;
    let found = &cached.registration;
    let today = state.clock.now().date_naive();
    let mut returns = Vec::with_capacity(24);
    for offset in 0..12u32 {
        let month = (3 + offset) % 12 + 1;
        let year = if month >= 4 { start } else { start + 1 };
        let Some(period_start) = NaiveDate::from_ymd_opt(year, month, 1) else {
            continue;
        };
        let next = if month == 12 {
            NaiveDate::from_ymd_opt(year + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(year, month + 1, 1)
        };
        let Some(next) = next else { continue };
        for (return_type, due_day) in [("GSTR1", 11u32), ("GSTR3B", 20u32)] {
            let due = next.with_day(due_day).unwrap_or(next);
            let filed = period_start >= found.registered_on.with_day(1).unwrap_or(found.registered_on)
                && due <= today;
            returns.push(ReturnStatus {
                return_type,
                ret_period: format!("{month:02}{year}"),
                status: if filed { "Filed" } else { "Not Filed" },
                filed_on: filed.then_some(due),
                arn: filed.then(|| {
                    format!(
                        "AA{}{:02}{}{:07}",
                        &found.gstin[..2],
                        month,
                        year % 100,
                        due.ordinal() * 1000 + due_day
                    )
                }),
            });
        }
    }
    Ok(HttpResponse::Ok().json(ReturnsStatus {
        gstin: found.gstin.clone(),
        fy: query.fy.clone(),
        returns,
    }))
}
