//! The enforcement in front of every `/v1/gst/` call, in the contract's order:
//! token → live access window → session → rate limits → handler. No database on the hot path:
//! claims come from the verified-token cache, sessions and windows from the in-memory view.
//!
//! It is one function that admits and then dispatches, called by the gateway's front
//! ([`super::front`]) for every GSP call, rather than an actix middleware around routed resources:
//! that costs less per call than middleware layers, a router and request extensions.

use std::sync::Arc;

use actix_web::dev::{Payload, RequestHead};
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderName};
use actix_web::{HttpResponse, ResponseError};
use gsp_gateway_domain::authorize;

use super::forward::UpstreamClient;
use super::limits::Verdict;
use super::tokens_cache::ConnectionToken;
use crate::auth::{token_missing, token_refused};
use crate::error::{ApiError, ErrorCode};
use crate::json::method_not_allowed_with;
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

/// The token of `Authorization: Bearer <token>`, as bytes: a JWT is plain ASCII, and this runs on
/// every gateway call (a connection's remembered token is compared before any other check).
fn bearer_of(head: &RequestHead) -> Option<&[u8]> {
    let value = head.headers().get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

async fn admit(
    state: &AppState,
    head: &RequestHead,
    connection: Option<&ConnectionToken>,
) -> Result<(GstContext, Verdict), ApiError> {
    let token = bearer_of(head).ok_or_else(|| token_missing("gst"))?;
    let now = state.clock.now();
    // Bytes that are not text are no bearer token, as for every other realm.
    let verified = match connection {
        Some(connection) => connection.verify(&state.claims, &state.keys, token, now),
        None => std::str::from_utf8(token)
            .ok()
            .map(|token| state.claims.verify(&state.keys, token, now)),
    };
    let claims = verified
        .ok_or_else(|| token_missing("gst"))?
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
        .with_header(RATELIMIT, verdict.header_value().to_str().unwrap_or_default()));
    }
    state.view.mark_used(sid, &session, now);
    let context = GstContext {
        gstin: session.gstin.clone(),
        client_id: session.client_id.clone(),
        session_id: session.id.clone(),
    };
    Ok((context, verdict))
}

/// The methods the gateway forwards (every one but CONNECT and TRACE): the `Allow` of its 405 for
/// CONNECT and TRACE when an upstream is configured, on any path (all of them are forwarded).
const FORWARDED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// Every call under `/v1/gst/`: admitted by the enforcement, then forwarded upstream or answered by the
/// sandbox. Every answer, a refusal included, carries the RateLimit header fields. `connection` is
/// the client connection's remembered token.
pub async fn gateway(
    state: &AppState,
    upstream: &UpstreamClient,
    head: &RequestHead,
    connection: Option<&ConnectionToken>,
    payload: Payload,
) -> HttpResponse {
    let (mut response, verdict) = match admit(state, head, connection).await {
        Ok((context, verdict)) => {
            // Refused after the enforcement, so a bad token is still 401 and the call counts against the
            // rate limits like any other: CONNECT would reach the upstream in authority form (hyper drops
            // the path), TRACE would echo the session's facts back.
            // Without an upstream, the sandbox refuses them as every method but GET: 405 with its
            // documented methods on its own paths, 404 elsewhere.
            let served = if !upstream.is_configured() {
                super::sandbox::serve(state, &context, head).await
            } else if matches!(head.method, Method::CONNECT | Method::TRACE) {
                Err(method_not_allowed_with(head, FORWARDED_METHODS))
            } else {
                super::forward::forward(upstream, &context, head, payload).await
            };
            (served.unwrap_or_else(|e| e.error_response()), Some(verdict))
        }
        Err(refusal) => (refusal.error_response(), None),
    };
    let headers = response.headers_mut();
    headers.insert(RATELIMIT_POLICY, state.limits.policy_header());
    // Set already only on the gateway's own 429: an upstream's `RateLimit` is not passed back.
    if !headers.contains_key(RATELIMIT) {
        let verdict = verdict.unwrap_or_else(|| state.limits.uncounted());
        headers.insert(RATELIMIT, verdict.header_value());
    }
    response
}
