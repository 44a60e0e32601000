//! Forwarding `/v1/gst/…` to the configured upstream GST service: method, path under the prefix, query
//! and body streamed; `Authorization` and hop-by-hop headers dropped; the session's facts added.

use actix_web::http::header::{self, HeaderName};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use futures_util::StreamExt;

use super::GstContext;
use crate::error::{ApiError, ErrorCode};
use crate::request_id;
use crate::state::AppState;

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

fn forwardable(name: &HeaderName) -> bool {
    name != header::AUTHORIZATION
        && name != header::CONTENT_LENGTH
        && !HOP_BY_HOP.contains(&name.as_str())
        && !name.as_str().starts_with("x-taxpayer-")
        && !name.as_str().starts_with("x-gsp-")
        && name.as_str() != "x-session-id"
}

/// The HTTP client towards the upstream: one per worker thread, so pooled connections live on the
/// runtime that uses them.
#[derive(Debug, Clone)]
pub struct UpstreamClient(pub reqwest::Client);

impl UpstreamClient {
    /// A client with the configured connect timeout.
    pub fn new(settings: &crate::settings::Settings) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_millis(
                settings.upstream_connect_timeout_ms,
            ))
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Self(client)
    }
}

/// Forwards the request upstream and streams the answer back.
pub async fn forward(
    state: web::Data<AppState>,
    upstream: web::Data<UpstreamClient>,
    req: HttpRequest,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let ctx = req
        .extensions()
        .get::<GstContext>()
        .cloned()
        .ok_or_else(|| ApiError::internal("gateway context missing"))?;
    let Some(base) = state.settings.upstream_url.as_deref() else {
        return Err(ApiError::internal("forwarding without an upstream"));
    };
    let tail = req.path().strip_prefix("/v1/gst").unwrap_or("");
    let mut url = format!("{}{}", base.trim_end_matches('/'), tail);
    if !req.query_string().is_empty() {
        url.push('?');
        url.push_str(req.query_string());
    }
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .map_err(|_| ApiError::new(ErrorCode::MethodNotAllowed, "unsupported method"))?;
    let mut outgoing = upstream
        .0
        .request(method, url)
        .timeout(std::time::Duration::from_millis(
            state.settings.upstream_timeout_ms,
        ));
    for (name, value) in req.headers() {
        if forwardable(name) {
            outgoing = outgoing.header(name.as_str(), value.as_bytes());
        }
    }
    outgoing = outgoing
        .header("x-taxpayer-gstin", &*ctx.gstin)
        .header("x-gsp-client-id", &*ctx.client_id)
        .header("x-session-id", &*ctx.session_id)
        .header("x-request-id", request_id::current());
    let has_body = req.headers().contains_key(header::CONTENT_LENGTH)
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    if has_body {
        // actix's payload is bound to this worker thread; a channel hands its chunks to the client.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<web::Bytes, std::io::Error>>(8);
        actix_web::rt::spawn(async move {
            while let Some(chunk) = payload.next().await {
                let item = chunk.map_err(|e| std::io::Error::other(e.to_string()));
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        let stream =
            futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        outgoing = outgoing.body(reqwest::Body::wrap_stream(stream));
    }
    let upstream = outgoing.send().await.map_err(|e| {
        if e.is_timeout() {
            ApiError::new(
                ErrorCode::UpstreamTimeout,
                "the upstream GST service did not answer in time",
            )
        } else {
            tracing::warn!(error = %e.without_url(), "upstream unavailable");
            ApiError::new(
                ErrorCode::UpstreamUnavailable,
                "the upstream GST service could not be reached",
            )
        }
    })?;
    let status = actix_web::http::StatusCode::from_u16(upstream.status().as_u16()).map_err(|_| {
        ApiError::new(
            ErrorCode::UpstreamUnavailable,
            "the upstream answered an invalid status",
        )
    })?;
    let mut response = HttpResponse::build(status);
    for (name, value) in upstream.headers() {
        let lower = name.as_str();
        if !HOP_BY_HOP.contains(&lower) && lower != "content-length" {
            response.append_header((lower, value.as_bytes()));
        }
    }
    let body = upstream
        .bytes_stream()
        .map(|chunk| chunk.map_err(|e| std::io::Error::other(e.without_url().to_string())));
    Ok(response.streaming(body))
}
