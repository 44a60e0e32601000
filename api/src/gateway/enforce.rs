//! The enforcement middleware in front of every `/v1/gst/` call, in the contract's order:
//! token → live access window → session → rate limits → handler. No database on the hot path:
//! claims come from the verified-token cache, sessions and windows from the in-memory view.

use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, ResponseError, web};
use gsp_gateway_domain::authorize;

use super::limits::Verdict;
use crate::auth::{token_missing, token_refused};
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Who a call under `/v1/gst/` acts for, as established by the middleware.
#[derive(Debug, Clone)]
pub struct GstContext {
    /// The taxpayer.
    pub gstin: Arc<str>,
    /// The GSP client.
    pub client_id: Arc<str>,
    /// The session.
    pub session_id: Arc<str>,
}

fn bearer_of(req: &ServiceRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

async fn admit(state: &AppState, req: &ServiceRequest) -> Result<(GstContext, Verdict), ApiError> {
    let token = bearer_of(req).ok_or_else(|| token_missing("gst"))?;
    let now = state.clock.now();
    let claims = state
        .claims
        .verify(&state.keys, token, now)
        .map_err(|e| token_refused(e, "gst"))?;
    let (Some(sid), Some(cid)) = (claims.sid.as_deref(), claims.cid.as_deref()) else {
        return Err(token_refused(crate::tokens::TokenError::Invalid, "gst"));
    };
    let (session, access) = state
        .view
        .lookup(&state.db, sid)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::TokenInvalid, "the token names no known session"))?;
    if &*session.client_id != cid || *session.gstin != claims.sub {
        return Err(ApiError::new(
            ErrorCode::TokenInvalid,
            "the token does not match its session",
        ));
    }
    authorize(&session.state, &access, now)?;
    let verdict = state.limits.check(&session.id, &session.client_id);
    if !verdict.allowed {
        crate::gateway::note_rate_limited(verdict.policy);
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "the {} rate limit is exhausted; retry after {} s",
                verdict.policy, verdict.reset_secs
            ),
        )
        .with_header(header::RETRY_AFTER, &verdict.reset_secs.to_string())
        .with_header(RATELIMIT, &verdict.header()));
    }
    state.view.mark_used(sid, &session, now);
    let context = GstContext {
        gstin: session.gstin.clone(),
        client_id: session.client_id.clone(),
        session_id: session.id.clone(),
    };
    Ok((context, verdict))
}

fn set(headers: &mut actix_web::http::header::HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// The middleware.
pub async fn enforce(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(req.into_response(ApiError::internal("application state missing").error_response()));
    };
    match admit(&state, &req).await {
        Ok((context, verdict)) => {
            req.extensions_mut().insert(context);
            let mut response = next.call(req).await?.map_into_boxed_body();
            let headers = response.headers_mut();
            set(headers, RATELIMIT_POLICY, state.limits.policy_header());
            set(headers, RATELIMIT, &verdict.header());
            Ok(response)
        }
        Err(refusal) => {
            let mut response = refusal.error_response();
            let headers = response.headers_mut();
            set(headers, RATELIMIT_POLICY, state.limits.policy_header());
            if !headers.contains_key(RATELIMIT) {
                set(headers, RATELIMIT, &state.limits.uncounted().header());
            }
            Ok(req.into_response(response))
        }
    }
}
