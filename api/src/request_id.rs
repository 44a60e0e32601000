//! Request ids: echoed from `X-Request-Id` when sane, generated otherwise; carried by every log line
//! of the request, every problem body and the response header.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::Error;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{RequestHead, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use tracing::Instrument;

use crate::metrics::RequestTimer;

/// The request-id header.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id: a client's may have up to this many characters.
const MAX_ID_LEN: usize = 64;

/// A request id, held inline: made, scoped and read on every request without an allocation.
#[derive(Clone, Copy)]
pub struct RequestId {
    len: u8,
    bytes: [u8; MAX_ID_LEN],
}

impl RequestId {
    /// `id` (letters, digits, `-`, `_` and `.`; at most [`MAX_ID_LEN`] of them: see [`acceptable`]).
    fn new(id: &[u8]) -> Self {
        let mut bytes = [0; MAX_ID_LEN];
        let len = id.len().min(MAX_ID_LEN);
        bytes[..len].copy_from_slice(&id[..len]);
        Self {
            len: len as u8,
            bytes,
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("-")
    }
}

impl std::ops::Deref for RequestId {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

tokio::task_local! {
    static CURRENT: RequestId;
}

/// The id of the request being served, or `-` outside one.
pub fn current() -> String {
    CURRENT
        .try_with(|id| id.as_str().to_owned())
        .unwrap_or_else(|_| "-".to_owned())
}

/// Calls `f` with the id of the request being served (`-` outside one), without copying it.
pub fn with_current<R>(mut f: impl FnMut(&str) -> R) -> R {
    CURRENT.try_with(|id| f(id)).unwrap_or_else(|_| f("-"))
}

/// A new id: a random per-process prefix and a counter (unique without a system call per request),
/// as 32 lowercase hex digits.
fn generate() -> RequestId {
    static PREFIX: OnceLock<[u8; 16]> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| hex_digits(uuid::Uuid::new_v4().as_u64_pair().0));
    let mut id = [0; 32];
    id[..16].copy_from_slice(prefix);
    id[16..].copy_from_slice(&hex_digits(COUNTER.fetch_add(1, Ordering::Relaxed)));
    RequestId::new(&id)
}

/// The 16 lowercase hex digits of `word`.
fn hex_digits(word: u64) -> [u8; 16] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0; 16];
    for (pair, byte) in digits.chunks_exact_mut(2).zip(word.to_be_bytes()) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
    digits
}

fn acceptable(candidate: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&candidate.len())
        && candidate
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A client-supplied header for the log: printable ASCII, at most 64 characters, `-` when absent.
fn client_tag(head: &RequestHead, name: &str) -> String {
    let value = head
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .unwrap_or("-");
    value
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(64)
        .collect()
}

/// What the access line of a request says besides its status and time: method, path and, for a
/// dialect call, the client's `txn` and `ip-usr`.
type AccessFields = (Method, String, Option<(String, String)>);

/// One request being served: its id (taken from `X-Request-Id` when sane, generated otherwise),
/// scoped for everything that serves it; its [`RequestTimer`]; its access line. Both ways a request is
/// served use it: the [`assign`] middleware around the routed application, and the gateway's own path
/// for `/v1/gst/` ([`crate::gateway::front`]).
pub struct Served {
    id: RequestId,
    span: tracing::Span,
    timer: RequestTimer,
    access: Option<AccessFields>,
}

impl Served {
    /// Starts serving the request of `head`, counted under `route` (the metrics' route label).
    pub fn begin(head: &RequestHead, route: Cow<'static, str>) -> Self {
        let id = head
            .headers()
            .get(&HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| acceptable(v))
            .map_or_else(generate, |v| RequestId::new(v.as_bytes()));
        // What the access line says, taken only when it is written (it is off below `info`).
        let access = tracing::enabled!(target: "gsp_gateway::access", tracing::Level::INFO).then(|| {
            let path = head.uri.path().to_owned();
            // GST System software tags its calls with `txn` and the user's address `ip-usr`: the access
            // line of a dialect call carries them, so a call can be found by what the client logged.
            let dialect_tags = path
                .starts_with("/taxpayerapi/")
                .then(|| (client_tag(head, "txn"), client_tag(head, "ip-usr")));
            (head.method.clone(), path, dialect_tags)
        });
        let span = tracing::info_span!("request", request_id = %id);
        Self {
            timer: RequestTimer::start(route, &head.method),
            id,
            span,
            access,
        }
    }

    /// `serving`, with this request's id current and its span entered whenever it runs.
    pub fn scope<F: Future>(&self, serving: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self.id, serving).instrument(self.span.clone())
    }

    /// The request is answered with `status`: counts and times it, sets `X-Request-Id` among
    /// `headers`, writes the access line.
    pub fn end(self, status: StatusCode, headers: &mut HeaderMap) {
        let elapsed = self.timer.finish(status);
        if let Ok(value) = HeaderValue::from_str(self.id.as_str()) {
            headers.insert(HEADER, value);
        }
        if let Some((method, path, dialect_tags)) = self.access {
            let status = status.as_u16();
            let micros = elapsed.as_micros() as u64;
            self.span.in_scope(|| match dialect_tags {
                Some((txn, ip_usr)) => tracing::info!(
                    target: "gsp_gateway::access", %method, %path, status, micros, txn, ip_usr, "served"
                ),
                None => {
                    tracing::info!(target: "gsp_gateway::access", %method, %path, status, micros, "served")
                }
            });
        }
    }
}

/// Middleware around the routed application: serves each request as [`Served`].
pub async fn assign(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let served = Served::begin(req.head(), crate::metrics::route_label(&req));
    let mut req = req;
    // HEAD is GET without the body (RFC 9110 §9.3.2): routed as GET, it is answered with GET's head,
    // and actix-http, which took the method off the wire, writes no body. Counted as HEAD.
    if req.method() == actix_web::http::Method::HEAD {
        req.head_mut().method = actix_web::http::Method::GET;
    }
    // Handlers and this crate's middleware answer errors as responses; only a foreign middleware's
    // error could escape here, and actix renders that itself.
    let result = served
        .scope(async move { next.call(req).await.map(ServiceResponse::map_into_boxed_body) })
        .await;
    match result {
        Ok(mut response) => {
            served.end(response.status(), response.headers_mut());
            Ok(response)
        }
        Err(error) => {
            served.end(error.as_response_error().status_code(), &mut HeaderMap::new());
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_32_hex_digits_with_one_prefix_and_a_counter() {
        let (a, b) = (generate(), generate());
        for id in [&a, &b] {
            assert_eq!(id.len(), 32, "{id}");
            assert!(
                id.bytes()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
                "{id}"
            );
            assert!(acceptable(id));
        }
        assert_eq!(a[..16], b[..16], "one prefix per process");
        assert_eq!(&hex_digits(0x0123_4567_89ab_cdef), b"0123456789abcdef");
        assert_eq!(&hex_digits(u64::MAX), b"ffffffffffffffff");
        let count = |id: &str| u64::from_str_radix(&id[16..], 16).unwrap();
        assert!(count(&b) > count(&a), "{a} then {b}");
    }
}
