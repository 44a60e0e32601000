//! Forwarding `/v1/gst/…` to the configured upstream GST service: method (not CONNECT or TRACE, which
//! the enforcement refuses), path under the prefix, query and body streamed; `Authorization` and
//! hop-by-hop headers dropped; the session's facts added. The upstream's answers pass through, except
//! its failures (5xx), which become 502 `upstream_unavailable`, and its own `RateLimit` fields, which
//! give way to the gateway's.
//!
//! The client is hyper's pooled HTTP/1.1 client, one per worker thread (connections live on the runtime
//! that uses them), speaking TLS (rustls) to an https:// upstream. One deadline covers the whole exchange:
//! the answer's head and every chunk of its body.

use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::SizedStream;
use actix_web::dev::{Payload, RequestHead};
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderName};
use actix_web::{HttpResponse, web};
use futures_util::{Stream, StreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, BodyStream, Empty, Full, StreamBody};
use hyper::body::Body as _;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::GaiResolver;
use hyper_util::rt::TokioExecutor;
use tokio::time::{Instant, Sleep};

use super::GstContext;
use crate::error::{ApiError, ErrorCode};
use crate::json::too_large;
use crate::request_id;
use crate::settings::Settings;

type OutBody = UnsyncBoxBody<web::Bytes, std::io::Error>;

/// Hop-by-hop fields (RFC 9110 §7.6.1), `host` (the client sets the upstream's), and `expect` (answered
/// here: the body is streamed to the upstream anyway).
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "expect",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// The field names a `Connection` header lists: hop-by-hop for this message only (RFC 9110 §7.6.1).
/// `keep-alive`, which nearly every upstream answer lists, is left out: its field is hop-by-hop
/// anyway, and the answer's list then costs no allocation.
pub(super) fn connection_options<'a>(values: impl Iterator<Item = &'a [u8]>) -> Vec<String> {
    values
        .flat_map(|v| v.split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|name| !name.is_empty() && !name.eq_ignore_ascii_case(b"keep-alive"))
        .map(|name| String::from_utf8_lossy(name).to_ascii_lowercase())
        .collect()
}

/// True when a request field passes to the upstream.
pub(super) fn forwardable(name: &HeaderName, listed: &[String]) -> bool {
    let name = name.as_str();
    !listed.iter().any(|l| l == name)
        && name != "authorization"
        && name != "content-length"
        && !HOP_BY_HOP.contains(&name)
        && !names_gateway_fact(name)
}

/// True when a (lower-case) field name is one the gateway sets from the session or the dialect, or could be taken for
/// one: `_` is read as `-`, as CGI-style upstreams do when they map both to the same variable
/// (`X_Taxpayer_Gstin` is `HTTP_X_TAXPAYER_GSTIN` there, like `X-Taxpayer-Gstin`). Other fields with
/// underscores (`ret_period`, `app_key`) pass.
fn names_gateway_fact(name: &str) -> bool {
    let reads_as = |reserved: &str, whole: bool| {
        let (name, reserved) = (name.as_bytes(), reserved.as_bytes());
        (if whole {
            name.len() == reserved.len()
        } else {
            name.len() >= reserved.len()
        }) && name
            .iter()
            .zip(reserved)
            .all(|(n, r)| n == r || (*n == b'_' && *r == b'-'))
    };
    // `X-Gstn-*` is what the dialect's face tells the upstream about a call it decrypted and checked
    // (its action, an EVC signature): a caller of `/v1/gst/` must not be able to claim it.
    reads_as("x-taxpayer-", false)
        || reads_as("x-gsp-", false)
        || reads_as("x-gstn-", false)
        || reads_as("x-session-id", true)
        || reads_as("x-request-id", true)
}

/// True when an answer field (lower case, not `content-length`) passes back to the caller. The
/// upstream's own `RateLimit` and `RateLimit-Policy` do not: every answer under `/v1/gst/` carries the
/// gateway's (see [`super::enforce::gateway`]).
pub(super) fn passes_back(name: &str, listed: &[String]) -> bool {
    !HOP_BY_HOP.contains(&name)
        && name != "ratelimit"
        && name != "ratelimit-policy"
        && !listed.iter().any(|l| l == name)
}

/// The caller's status for an upstream's: its own, except that a failure (5xx) is 502.
pub(super) fn answer_status(code: u16) -> Result<actix_web::http::StatusCode, ApiError> {
    // An informational status here is a 101 (a switch of protocols nobody asked for).
    let status = actix_web::http::StatusCode::from_u16(code)
        .ok()
        .filter(|s| !s.is_informational())
        .ok_or_else(|| {
            tracing::warn!(status = code, "upstream answered an unusable status");
            ApiError::new(
                ErrorCode::UpstreamUnavailable,
                "the upstream answered an invalid status",
            )
        })?;
    if status.is_server_error() {
        // The upstream failed: 502 as a problem, like every error here, and its body (which may carry
        // its internals) is not passed on.
        tracing::warn!(status = code, "upstream failed");
        return Err(ApiError::new(
            ErrorCode::UpstreamUnavailable,
            format!("the upstream GST service failed (HTTP {code})"),
        ));
    }
    Ok(status)
}

/// True when a path has a `.` or `..` segment, percent-encoded or not. Forwarded as is, it could reach
/// outside the upstream URL's prefix once the upstream normalises it (RFC 3986 §5.2.4). Read the way
/// lenient servers do: `%2f`, `\` and `%5c` also separate segments, and `;` parameters are ignored.
pub fn has_dot_segment(path: &str) -> bool {
    if !path.contains(['.', '%']) {
        return false;
    }
    let path = path
        .to_ascii_lowercase()
        .replace("%2e", ".")
        .replace("%2f", "/")
        .replace("%5c", "/")
        .replace('\\', "/");
    path.split('/').any(|segment| {
        let segment = segment.split(';').next().unwrap_or_default();
        segment == "." || segment == ".."
    })
}

/// The refusal of a path with dot segments.
pub fn dot_segment_refused() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidRequest,
        "the request path has a '.' or '..' segment and is not forwarded",
    )
}

/// The caller's answer to a call whose upstream answer has no body: a HEAD keeps the length of the body
/// a GET would have had (or, without one, says it would be chunked); 204 and 304 go without a length,
/// which actix could only send with a body.
pub(super) fn bodiless(
    mut response: actix_web::HttpResponseBuilder,
    status: actix_web::http::StatusCode,
    head_request: bool,
    length: Option<u64>,
) -> HttpResponse {
    let empty = futures_util::stream::empty::<Result<web::Bytes, actix_web::Error>>;
    if !head_request || matches!(status.as_u16(), 204 | 304) {
        return response.finish();
    }
    match length {
        Some(length) => response.body(SizedStream::new(length, empty())),
        None => response.body(actix_web::body::BodyStream::new(empty())),
    }
}

/// Where the upstream is: scheme and authority, and a path prefix (without its trailing slash).
#[derive(Debug, Clone)]
struct Base {
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    prefix: String,
}

impl Base {
    /// The upstream URI of `target` (path and query) under the prefix.
    fn uri(&self, target: &str) -> Option<http::Uri> {
        http::Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(format!("{}{target}", self.prefix))
            .build()
            .ok()
    }
}

/// Sets the session's facts on a forwarded request: who it acts for, which GSP, which session, and the
/// request id. The caller's own values of these fields never pass (see [`forwardable`]).
pub fn set_session_facts(headers: &mut http::HeaderMap, gstin: &str, client_id: &str, session_id: &str) {
    let request_id = request_id::current();
    for (name, value) in session_facts(gstin, client_id, session_id, &request_id) {
        if let Ok(value) = http::HeaderValue::from_str(value) {
            headers.insert(http::HeaderName::from_static(name), value);
        }
    }
}

/// The fields that tell the upstream whom a forwarded call acts for, with their values.
pub(super) fn session_facts<'a>(
    gstin: &'a str,
    client_id: &'a str,
    session_id: &'a str,
    request_id: &'a str,
) -> [(&'static str, &'a str); 4] {
    [
        ("x-taxpayer-gstin", gstin),
        ("x-gsp-client-id", client_id),
        ("x-session-id", session_id),
        ("x-request-id", request_id),
    ]
}

/// Checks an upstream URL: `http://` or `https://`, a host, an optional port and path prefix, no query
/// and no user info (`user:password@` would end up in the `Host` field, and credentials for the upstream
/// do not belong in a URL that is logged and shown).
pub fn check_upstream_url(url: &str) -> Result<(), String> {
    parse_base(url).map(|_| ())
}

fn parse_base(url: &str) -> Result<Base, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("upstream URL {url:?} is not a URL: {e}"))?;
    let scheme = uri
        .scheme()
        .filter(|s| **s == http::uri::Scheme::HTTP || **s == http::uri::Scheme::HTTPS)
        .cloned()
        .ok_or_else(|| format!("upstream URL {url:?}: only http:// and https:// are supported"))?;
    if uri.query().is_some() {
        return Err(format!("upstream URL {url:?} must not carry a query"));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("upstream URL {url:?} names no host"))?;
    if authority.as_str().contains('@') {
        // Not echoed: the part before the host is a password.
        return Err(format!(
            "the upstream URL must not carry user info (user:password@ before {}): the gateway sends no \
             credentials to the upstream",
            authority.host()
        ));
    }
    Ok(Base {
        scheme,
        authority,
        prefix: uri.path().trim_end_matches('/').to_owned(),
    })
}

/// The TLS configuration towards an https:// upstream: the system's CA certificates, and those of
/// `upstream_ca_file` (PEM) when set. Built once; every worker's client shares it.
pub fn tls_config(settings: &Settings) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let https = settings
        .upstream_url
        .as_deref()
        .is_some_and(|url| url.starts_with("https://"));
    let mut added = 0;
    if https {
        (added, _) = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    }
    if let Some(path) = settings.upstream_ca_file.as_deref() {
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("upstream CA file {path}: {e}"))?;
        if certs.is_empty() {
            return Err(format!("upstream CA file {path}: no certificate in it"));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("upstream CA file {path}: {e}"))?;
        }
    } else if https && added == 0 {
        tracing::warn!("no system CA certificates found: an https:// upstream will not be trusted");
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

type Connector = hyper_rustls::HttpsConnector<ConnectWithin<HttpConnector>>;

/// The TCP connector towards the upstream: name resolution by `resolver` and the connection, both within
/// `connect_timeout`.
fn tcp_connector<R>(resolver: R, connect_timeout: Duration) -> ConnectWithin<HttpConnector<R>> {
    let mut tcp = HttpConnector::new_with_resolver(resolver);
    // Divided among the addresses a name resolves to; the outer bound below also counts the time the
    // name took, so after a slow resolution a dead first address may use up what is left. A resolution
    // that hangs keeps its blocking thread after the timeout (getaddrinfo cannot be cancelled).
    tcp.set_connect_timeout(Some(connect_timeout));
    tcp.set_nodelay(true);
    tcp.enforce_http(false);
    ConnectWithin {
        inner: tcp,
        timeout: connect_timeout,
    }
}

/// A connector whose connections, name resolution included, are made within `timeout`. hyper's own
/// connect timeout starts once the name is resolved: a resolver that hangs would hold the call until
/// the total upstream timeout (504) where an upstream that cannot be reached is 502 after the connect
/// timeout. The lean path ([`super::h1`]) bounds resolution and connection alike.
#[derive(Debug, Clone)]
struct ConnectWithin<C> {
    inner: C,
    timeout: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<C> tower_service::Service<http::Uri> for ConnectWithin<C>
where
    C: tower_service::Service<http::Uri>,
    C::Response: Send + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send + 'static,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = tokio::time::timeout(self.timeout, self.inner.call(uri));
        Box::pin(async move {
            match connecting.await {
                Ok(connected) => connected.map_err(Into::into),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "upstream name resolution and connect timed out",
                )
                .into()),
            }
        })
    }
}

/// The HTTP client towards the upstream: one per worker thread.
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    client: Client<Connector, OutBody>,
    /// This worker's own keep-alive connections to a plain-http upstream (see [`super::h1`]).
    h1: Option<Rc<super::h1::Pool>>,
    base: Option<Base>,
    timeout: Duration,
    max_body: usize,
}

impl UpstreamClient {
    /// A pooled client with the configured connect and total timeouts; `tls` is used for https://.
    pub fn new(settings: &Settings, tls: Arc<rustls::ClientConfig>) -> Self {
        let connect_timeout = Duration::from_millis(settings.upstream_connect_timeout_ms);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp_connector(GaiResolver::new(), connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let base = settings.upstream_url.as_deref().and_then(|u| parse_base(u).ok());
        let h1 = base
            .as_ref()
            .filter(|b| b.scheme == http::uri::Scheme::HTTP)
            .map(|b| Rc::new(super::h1::Pool::new(&b.authority, &b.prefix, connect_timeout)));
        Self {
            client,
            h1,
            base,
            timeout: Duration::from_millis(settings.upstream_timeout_ms),
            max_body: settings.max_body_bytes,
        }
    }
}

impl UpstreamClient {
    /// True when an upstream is configured (otherwise the sandbox answers).
    pub fn is_configured(&self) -> bool {
        self.base.is_some()
    }
}

/// Why a whole-answer exchange with the upstream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeError {
    /// Not reachable, or the exchange broke.
    Unavailable,
    /// No complete answer within the upstream timeout.
    Timeout,
    /// The answer is larger than [`MAX_ANSWER_BYTES`].
    TooLarge,
}

/// The largest answer [`UpstreamClient::exchange`] reads into memory.
pub const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

impl UpstreamClient {
    /// One exchange whose answer is read whole (the dialect re-encrypts it): `target` is the path and
    /// query under the upstream's prefix. The upstream timeout covers the head and the whole body.
    pub async fn exchange(
        &self,
        method: http::Method,
        target: &str,
        headers: http::HeaderMap,
        body: Option<web::Bytes>,
    ) -> Result<(http::StatusCode, web::Bytes), ExchangeError> {
        let base = self.base.as_ref().ok_or(ExchangeError::Unavailable)?;
        let uri = base.uri(target).ok_or(ExchangeError::Unavailable)?;
        let body = match body {
            Some(bytes) => http_body_util::Full::new(bytes)
                .map_err(|never| match never {})
                .boxed_unsync(),
            None => Empty::new().map_err(|never| match never {}).boxed_unsync(),
        };
        let mut outgoing = http::Request::new(body);
        *outgoing.method_mut() = method;
        *outgoing.uri_mut() = uri;
        *outgoing.headers_mut() = headers;
        let exchange = async {
            let answer = self.client.request(outgoing).await.map_err(|e| {
                tracing::warn!(error = %e, "upstream unavailable");
                ExchangeError::Unavailable
            })?;
            let status = answer.status();
            let body = http_body_util::Limited::new(answer.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        ExchangeError::TooLarge
                    } else {
                        tracing::warn!(error = %e, "upstream body failed");
                        ExchangeError::Unavailable
                    }
                })?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ExchangeError::Timeout)?
    }
}

pub(super) fn unavailable() -> ApiError {
    ApiError::new(
        ErrorCode::UpstreamUnavailable,
        "the upstream GST service could not be reached",
    )
}

pub(super) fn timed_out() -> ApiError {
    ApiError::new(
        ErrorCode::UpstreamTimeout,
        "the upstream GST service did not answer in time",
    )
}

/// The request body, handed from actix's worker-bound payload to the client through a channel, and
/// cut off (with `overflowed` set) once it passes `limit` bytes.
fn request_body(
    head: &RequestHead,
    mut payload: Payload,
    limit: usize,
    overflowed: Arc<AtomicBool>,
) -> OutBody {
    let has_body = head.headers().contains_key(header::CONTENT_LENGTH)
        || head.headers().contains_key(header::TRANSFER_ENCODING);
    if !has_body {
        return Empty::new().map_err(|never| match never {}).boxed_unsync();
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<web::Bytes, std::io::Error>>(8);
    actix_web::rt::spawn(async move {
        let mut seen = 0usize;
        while let Some(chunk) = payload.next().await {
            let item = chunk
                .map_err(|e| std::io::Error::other(e.to_string()))
                .and_then(|bytes| {
                    seen += bytes.len();
                    if seen > limit {
                        overflowed.store(true, Ordering::Relaxed);
                        Err(std::io::Error::other("request body over the limit"))
                    } else {
                        Ok(bytes)
                    }
                });
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|item| (item.map(hyper::body::Frame::data), rx))
    });
    StreamBody::new(frames).boxed_unsync()
}

/// The caller's body: read whole already, or still to be streamed.
enum Incoming {
    Whole(web::Bytes),
    Streamed(Payload),
}

/// Forwards the request upstream and streams the answer back.
pub async fn forward(
    upstream: &UpstreamClient,
    ctx: &GstContext,
    head: &RequestHead,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let Some(base) = upstream.base.as_ref() else {
        return Err(ApiError::internal("forwarding without an upstream"));
    };
    let tail = head.uri.path().strip_prefix("/v1/gst").unwrap_or("");
    if has_dot_segment(tail) {
        return Err(dot_segment_refused());
    }
    let path = if tail.is_empty() { "/" } else { tail };
    let query = head.uri.query().unwrap_or_default();
    let declared = head
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > upstream.max_body) {
        return Err(too_large(upstream.max_body));
    }
    // A GET or HEAD with a chunked body is read whole and sent with its length, as nginx does: an
    // upstream that ignores bodies on these methods must not take the chunks for the next request.
    // (A `Transfer-Encoding` field, not `head.chunked()`: that is actix's flag for chunking an answer,
    // set on every request, and would send a bodiless GET with `content-length: 0`.)
    let read_whole = declared.is_none()
        && head.headers().contains_key(header::TRANSFER_ENCODING)
        && [Method::GET, Method::HEAD].contains(&head.method);
    let incoming = if read_whole || upstream.h1.is_some() && super::h1::suits(head, declared) {
        let body = crate::json::read_body(payload, upstream.max_body).await?;
        if let Some(pool) = &upstream.h1 {
            return super::h1::forward(pool.clone(), upstream.timeout, ctx, head, (path, query), &body).await;
        }
        Incoming::Whole(body)
    } else {
        Incoming::Streamed(payload)
    };
    let mut target = String::with_capacity(path.len() + query.len() + 1);
    target.push_str(path);
    if !query.is_empty() {
        target.push('?');
        target.push_str(query);
    }
    let uri = base.uri(&target).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            "the request target cannot be forwarded",
        )
    })?;
    let method = http::Method::from_bytes(head.method.as_str().as_bytes())
        .map_err(|_| ApiError::new(ErrorCode::MethodNotAllowed, "unsupported method"))?;
    let overflowed = Arc::new(AtomicBool::new(false));
    let (body, declared) = match incoming {
        Incoming::Whole(bytes) => {
            let length = bytes.len();
            (
                Full::new(bytes).map_err(|never| match never {}).boxed_unsync(),
                Some(length),
            )
        }
        Incoming::Streamed(payload) => (
            request_body(head, payload, upstream.max_body, overflowed.clone()),
            declared,
        ),
    };
    let mut outgoing = http::Request::new(body);
    *outgoing.method_mut() = method;
    *outgoing.uri_mut() = uri;
    let listed = connection_options(head.headers().get_all(header::CONNECTION).map(|v| v.as_bytes()));
    let headers = outgoing.headers_mut();
    for (name, value) in head.headers() {
        if forwardable(name, &listed)
            && let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_str().as_bytes()),
                http::HeaderValue::from_bytes(value.as_bytes()),
            )
        {
            headers.append(name, value);
        }
    }
    if let Some(length) = declared {
        // A declared length is kept, so the upstream gets the body as sent rather than re-chunked.
        headers.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(length));
    }
    set_session_facts(headers, &ctx.gstin, &ctx.client_id, &ctx.session_id);

    let mut deadline = Box::pin(tokio::time::sleep_until(Instant::now() + upstream.timeout));
    let answer = tokio::select! {
        answer = upstream.client.request(outgoing) => answer.map_err(|e| {
            if overflowed.load(Ordering::Relaxed) {
                return too_large(upstream.max_body);
            }
            tracing::warn!(error = %e, "upstream unavailable");
            unavailable()
        })?,
        () = deadline.as_mut() => return Err(timed_out()),
    };
    if overflowed.load(Ordering::Relaxed) {
        // The upstream answered before reading the whole body; it never saw all of it.
        return Err(too_large(upstream.max_body));
    }

    let status = answer_status(answer.status().as_u16())?;
    let mut response = HttpResponse::build(status);
    let mut length = None;
    let listed = connection_options(
        answer
            .headers()
            .get_all(http::header::CONNECTION)
            .iter()
            .map(|v| v.as_bytes()),
    );
    for (name, value) in answer.headers() {
        let name = name.as_str();
        if name == "content-length" {
            length = value.to_str().ok().and_then(|v| v.parse::<u64>().ok());
        } else if passes_back(name, &listed) {
            response.append_header((name, value.as_bytes()));
        }
    }
    let head_request = head.method == Method::HEAD;
    if head_request || matches!(status.as_u16(), 204 | 304) {
        // The length a GET would have had, unless a transfer coding beside it makes it meaningless.
        let length = length.filter(|_| !answer.headers().contains_key(http::header::TRANSFER_ENCODING));
        return Ok(bodiless(response, status, head_request, length));
    }
    // The body's length as hyper frames it: exact only when `Content-Length` frames it, which it does not
    // beside a `Transfer-Encoding` (RFC 9112 §6.3), whatever the field says.
    let length = answer.body().size_hint().exact();
    // A small answer of declared length is read whole before its head goes out, as nginx buffers
    // answers: one write towards the client, and an upstream that stalls mid-body gets a clean 504.
    if let Some(length) = length.filter(|n| *n <= BUFFERED_ANSWER_BYTES) {
        let body = tokio::select! {
            body = http_body_util::Limited::new(answer.into_body(), length as usize).collect() => body
                .map_err(|e| {
                    tracing::warn!(error = %e, "upstream body failed");
                    unavailable()
                })?
                .to_bytes(),
            () = deadline.as_mut() => return Err(timed_out()),
        };
        return Ok(response.body(body));
    }
    let body = Deadlined {
        body: BodyStream::new(answer.into_body()),
        deadline,
    };
    Ok(match length {
        Some(length) => response.body(SizedStream::new(length, body)),
        // Not `streaming`, which would add a content type the upstream did not send.
        None => response.body(actix_web::body::BodyStream::new(body)),
    })
}

/// Answers up to this size (by their `Content-Length`) are buffered rather than streamed.
pub(super) const BUFFERED_ANSWER_BYTES: u64 = 64 * 1024;

/// The upstream's answer body, cut off with an error when the exchange's deadline passes.
struct Deadlined {
    body: BodyStream<hyper::body::Incoming>,
    deadline: Pin<Box<Sleep>>,
}

impl Stream for Deadlined {
    type Item = Result<web::Bytes, actix_web::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match Pin::new(&mut self.body).poll_next(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => return Poll::Ready(Some(Ok(data))),
                    Err(_trailers) => continue,
                },
                Poll::Ready(Some(Err(error))) => {
                    tracing::warn!(error = %error, "upstream body failed");
                    return Poll::Ready(Some(Err(actix_web::error::ErrorBadGateway(
                        "upstream body failed",
                    ))));
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {}
            }
            return match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    tracing::warn!("upstream body timed out");
                    Poll::Ready(Some(Err(actix_web::error::ErrorGatewayTimeout(
                        "upstream body timed out",
                    ))))
                }
                Poll::Pending => Poll::Pending,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{
        check_upstream_url, connection_options, forwardable, has_dot_segment, passes_back, tls_config,
    };

    #[test]
    fn connection_options_are_lower_case_names_without_keep_alive() {
        let values: [&[u8]; 2] = [b"Keep-Alive, X-Private ,close", b" ,UPGRADE"];
        assert_eq!(
            connection_options(values.into_iter()),
            ["x-private", "close", "upgrade"]
        );
        // The answer nearly every upstream gives lists nothing (and allocates nothing).
        let keep_alive: [&[u8]; 1] = [b"keep-alive"];
        assert_eq!(connection_options(keep_alive.into_iter()).capacity(), 0);
        // Its field stays behind all the same.
        let keep = actix_web::http::header::HeaderName::from_static("keep-alive");
        assert!(!forwardable(&keep, &[]));
        assert!(!passes_back("keep-alive", &[]));
    }

    #[test]
    fn dot_segments_are_found_however_they_are_written() {
        for dotted in [
            "/a/../b",
            "/..",
            "/a/./b",
            "/a/%2e%2E/b",
            "/a/.%2e",
            "/%2E/x",
            "/a/b/..",
            "/raw/..%2fadmin",
            "/%2e%2e%2fadmin",
            "/raw/..\\admin",
            "/raw/..%5Cadmin",
            "/raw/..;/x",
            "/%2e%2e;x/y",
        ] {
            assert!(has_dot_segment(dotted), "{dotted}");
        }
        for plain in [
            "/taxpayer",
            "/returns/gstr1",
            "/a/..b/c",
            "/a/.hidden",
            "/v1.1/x",
            "/a%2eb",
            "/a;v=1.2/b",
            "",
        ] {
            assert!(!has_dot_segment(plain), "{plain}");
        }
    }
    use crate::Settings;

    #[test]
    fn an_unreadable_or_empty_ca_file_stops_start_up() {
        let empty = std::env::temp_dir().join(format!("gsp-gateway-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        for path in ["/nonexistent/ca.pem".to_owned(), empty.display().to_string()] {
            let settings = Settings {
                upstream_url: Some("https://gst.internal".into()),
                upstream_ca_file: Some(path.clone()),
                ..Default::default()
            };
            let refusal = tls_config(&settings).expect_err(&path);
            assert!(refusal.contains(&path), "{refusal}");
        }
        std::fs::remove_file(empty).unwrap();
        assert!(
            tls_config(&Settings::default()).is_ok(),
            "no upstream, nothing to trust"
        );
    }

    #[test]
    fn http_and_https_upstreams_without_a_query_are_accepted() {
        for good in [
            "http://127.0.0.1:9000",
            "http://gst.internal/api/",
            "http://[::1]:8080/v2",
            "https://gst.internal",
            "https://gst.internal:8443/prefix",
        ] {
            assert!(check_upstream_url(good).is_ok(), "{good}");
        }
        for bad in [
            "https://",
            "ftp://gst.internal",
            "gst.internal:80",
            "http://h/p?x=1",
            "",
        ] {
            assert!(check_upstream_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_session_facts_cannot_be_sent_with_underscores() {
        use actix_web::http::header::HeaderName;
        let passes = |name: &str| super::forwardable(&HeaderName::from_bytes(name.as_bytes()).unwrap(), &[]);
        for spoofed in [
            "X-Taxpayer-Gstin",
            "X_Taxpayer_Gstin",
            "x_taxpayer-gstin",
            "x_taxpayer_other",
            "X_GSP_CLIENT_ID",
            "x-gsp_client_id",
            "X_Session_Id",
            "x_request_id",
            "X-Request_Id",
        ] {
            assert!(!passes(spoofed), "{spoofed}");
        }
        for kept in [
            "ret_period",
            "app_key",
            "state_cd",
            "x_session_ids",
            "x_request",
            "x_gspx",
            "x-taxpayer",
        ] {
            assert!(passes(kept), "{kept}");
        }
    }

    #[test]
    fn user_info_in_the_upstream_url_stops_start_up() {
        for url in [
            "http://user:secret@gst.internal/",
            "https://user@gst.internal:8443/prefix",
            "http://:secret@127.0.0.1:9000",
        ] {
            let settings = Settings {
                upstream_url: Some(url.into()),
                ..Default::default()
            };
            let refusal = settings.validate().expect_err(url);
            assert!(refusal.contains("user info"), "{refusal}");
            assert!(
                !refusal.contains("secret"),
                "the password is not echoed: {refusal}"
            );
        }
    }
}

/// `forward` through hyper's client (as for an `https://` upstream) against a scripted upstream on a raw
/// socket: what goes out, and how the answer's framing comes back.
#[cfg(test)]
mod hyper_path {
    use actix_web::test::TestRequest;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An upstream that answers every request with `answer` on a connection of its own, and reports
    /// each request head it reads.
    async fn scripted(
        answer: &'static [u8],
    ) -> (UpstreamClient, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let settings = Settings {
            upstream_url: Some(format!("http://{}", listener.local_addr().unwrap())),
            ..Default::default()
        };
        let mut client = UpstreamClient::new(&settings, tls_config(&settings).unwrap());
        client.h1 = None;
        let (heads, seen) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = Vec::new();
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let mut chunk = [0u8; 4096];
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = heads.send(String::from_utf8_lossy(&buf).to_ascii_lowercase());
                let _ = socket.write_all(answer).await;
            }
        });
        (client, seen)
    }

    async fn call(client: &UpstreamClient, req: TestRequest) -> HttpResponse {
        let (req, payload) = req.uri("/v1/gst/x").to_http_parts();
        let ctx = GstContext {
            gstin: "27AAPFU0939F1ZV".into(),
            client_id: "client".into(),
            session_id: "session".into(),
        };
        forward(client, &ctx, req.head(), payload)
            .await
            .unwrap_or_else(|e| actix_web::ResponseError::error_response(&e))
    }

    #[actix_web::test]
    async fn a_call_without_a_body_is_sent_without_a_length() {
        let (client, mut seen) = scripted(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        for req in [TestRequest::get(), TestRequest::default().method(Method::HEAD)] {
            let answer = call(&client, req).await;
            assert_eq!(answer.status(), 200);
            let head = seen.recv().await.unwrap();
            assert!(!head.contains("content-length"), "{head}");
            assert!(!head.contains("transfer-encoding"), "{head}");
        }
    }

    #[actix_web::test]
    async fn a_length_beside_a_transfer_coding_is_ignored() {
        // Chunks of 5 and 6 bytes beside a length shorter (buffered) or longer (streamed) than them.
        for wire in [
            &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 100000\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        ] {
            let (client, _seen) = scripted(wire).await;
            let answer = call(&client, TestRequest::get()).await;
            assert_eq!(answer.status(), 200);
            assert!(answer.headers().get("content-length").is_none());
            let body = actix_web::body::to_bytes(answer.into_body()).await.unwrap();
            assert_eq!(&body[..], b"hello world");
        }
        // A HEAD's answer passes no length on either: it says nothing of what a GET would get.
        let (client, _seen) =
            scripted(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 100000\r\n\r\n")
                .await;
        let answer = call(&client, TestRequest::default().method(Method::HEAD)).await;
        assert_eq!(answer.status(), 200);
        assert_eq!(
            actix_web::body::MessageBody::size(answer.body()),
            actix_web::body::BodySize::Stream
        );
        // Without the coding, the length is the answer's (as before).
        let (client, _seen) = scripted(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n").await;
        let answer = call(&client, TestRequest::default().method(Method::HEAD)).await;
        assert_eq!(
            actix_web::body::MessageBody::size(answer.body()),
            actix_web::body::BodySize::Sized(100_000)
        );
    }
}

/// The upstream connector's timeout: name resolution and connection within the connect timeout.
#[cfg(test)]
mod connect_within {
    use std::net::SocketAddr;

    use hyper_util::client::legacy::connect::dns::Name;
    use tower_service::Service;

    use super::*;

    /// A resolver that never answers, as one does whose DNS server drops the queries.
    #[derive(Debug, Clone)]
    struct Hanging;

    impl Service<Name> for Hanging {
        type Response = std::vec::IntoIter<SocketAddr>;
        type Error = std::io::Error;
        type Future = std::future::Pending<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Name) -> Self::Future {
            std::future::pending()
        }
    }

    const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    /// The total upstream timeout (the default), after which `forward` answers 504.
    const TOTAL_TIMEOUT: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn a_resolver_that_hangs_fails_the_connect_after_the_connect_timeout() {
        let uri: http::Uri = "http://upstream.test:8080/x".parse().unwrap();
        // hyper's connect timeout alone starts after the name is resolved: the call would wait for the
        // total timeout.
        let mut bare = HttpConnector::new_with_resolver(Hanging);
        bare.set_connect_timeout(Some(CONNECT_TIMEOUT));
        assert!(
            tokio::time::timeout(TOTAL_TIMEOUT, bare.call(uri.clone()))
                .await
                .is_err()
        );

        // Through the client as `forward` calls it: a connect error (502) after the connect timeout.
        let client = Client::builder(TokioExecutor::new()).build(tcp_connector(Hanging, CONNECT_TIMEOUT));
        let mut request = http::Request::new(Empty::<web::Bytes>::new());
        *request.uri_mut() = uri;
        let started = Instant::now();
        let answer = tokio::time::timeout(TOTAL_TIMEOUT, client.request(request))
            .await
            .expect("the connect fails before the total timeout");
        let error = answer.expect_err("no address, no connection");
        assert!(error.is_connect(), "{error:?}");
        let waited = started.elapsed();
        assert!(
            waited >= CONNECT_TIMEOUT && waited < CONNECT_TIMEOUT + Duration::from_millis(100),
            "{waited:?}"
        );
        let cause = std::error::Error::source(&error).map(ToString::to_string);
        assert!(
            cause.as_deref().is_some_and(|c| c.contains("timed out")),
            "{cause:?}"
        );
    }

    #[tokio::test]
    async fn a_name_that_resolves_is_connected_as_before() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut connector = tcp_connector(GaiResolver::new(), CONNECT_TIMEOUT);
        let uri: http::Uri = format!("http://localhost:{port}/").parse().unwrap();
        let (connected, accepted) = tokio::join!(connector.call(uri), listener.accept());
        let connected = connected.expect("localhost resolves and accepts");
        let peer = accepted.unwrap().1;
        assert_eq!(connected.inner().local_addr().unwrap(), peer);
    }
}
