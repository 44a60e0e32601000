//! The forwarding hot path: a call to a plain `http://` upstream with no body or a small one of
//! declared length, written and read on the calling task over this worker's keep-alive connections.
//!
//! hyper's pooled client (which keeps every other forward: large or chunked bodies, TLS) drives each
//! connection from a task of its own, so a call crosses two task hand-offs and a copy of its headers
//! into another map type; under callgrind that was about a quarter of a forwarded call's instructions.
//! Here the request (head and body) is written in one `write`, the answer's head parsed by httparse
//! from the connection's buffer, and a small answer of declared length read whole before it is passed
//! on.
//!
//! The answer's framing follows RFC 9112 §6.3: no body for `HEAD`, 1xx, 204 and 304; `chunked`
//! decoded; `Content-Length`; otherwise until the upstream closes. A connection goes back to the pool
//! only when its answer was read exactly to its end and the upstream keeps it open, and is taken again
//! only if nothing arrived on it meanwhile. A pooled connection the upstream has closed at the moment
//! it is used fails before any answer byte; an idempotent call is then sent once more on a new
//! connection, any other answers 502.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::body::SizedStream;
use actix_web::dev::RequestHead;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::web::{Bytes, BytesMut};
use futures_util::Stream;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::GstContext;
use super::forward::{
    BUFFERED_ANSWER_BYTES, answer_status, bodiless, connection_options, forwardable, passes_back,
    session_facts, timed_out, unavailable,
};
use crate::error::ApiError;
use crate::request_id;

/// Idle connections kept per worker (nginx's `keepalive 64`, per worker as there).
const MAX_IDLE: usize = 64;
/// An idle connection older than this is closed rather than reused (hyper's pool: 30 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer head read.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Header fields parsed in an answer head.
const MAX_HEADERS: usize = 100;
/// The longest chunk-size line (with extensions) and the most trailer bytes read.
const MAX_CHUNK_LINE_BYTES: usize = 4 * 1024;
const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Reads a streamed body makes in one poll without data to pass on, before it lets the worker run
/// other tasks (and its timers) and comes back.
const READS_PER_POLL: usize = 16;
/// Spare timers and request buffers kept per worker, for the calls' deadlines and request bytes.
const MAX_SPARES: usize = 256;
/// A request buffer larger than this (a large body's) is not kept for another call.
const MAX_SPARE_BUFFER_BYTES: usize = 16 * 1024;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;

/// One worker's connections to one upstream.
#[derive(Debug)]
pub struct Pool {
    /// `host` or `host:port`, as the `Host` field gives it.
    authority: String,
    /// Where to connect.
    host: String,
    port: u16,
    /// The upstream URL's path prefix (no trailing slash).
    prefix: String,
    connect_timeout: Duration,
    /// Idle connections, the most recently used last.
    idle: RefCell<VecDeque<(Conn, Instant)>>,
    /// Whether the task that closes stale idle connections runs.
    sweeping: Cell<bool>,
    /// Timers of finished calls, to be set again (see [`Pool::timer`]).
    timers: RefCell<Vec<Pin<Box<Sleep>>>>,
    /// Buffers of finished calls' requests, to be written again (see [`Pool::buffer`]).
    buffers: RefCell<Vec<Vec<u8>>>,
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Pool {
    /// A timer set to `deadline`: a finished call's, set again (for a later deadline tokio moves an
    /// armed timer with one atomic update), or a new one. A new timer per call cost its registration in
    /// the timer wheel and its removal.
    fn timer(&self, deadline: Instant) -> Pin<Box<Sleep>> {
        match self.timers.borrow_mut().pop() {
            Some(mut timer) => {
                timer.as_mut().reset(deadline);
                timer
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        }
    }

    /// Keeps a finished call's timer for the next call.
    fn spare(&self, timer: Pin<Box<Sleep>>) {
        let mut timers = self.timers.borrow_mut();
        if timers.len() < MAX_SPARES {
            timers.push(timer);
        }
    }

    /// An empty buffer for a request's bytes: a finished call's, or a new one.
    fn buffer(&self) -> Vec<u8> {
        self.buffers.borrow_mut().pop().unwrap_or_default()
    }

    /// Keeps a finished call's request buffer for the next call (not a large body's).
    fn give_back(&self, mut buffer: Vec<u8>) {
        let mut buffers = self.buffers.borrow_mut();
        if buffers.len() < MAX_SPARES && buffer.capacity() <= MAX_SPARE_BUFFER_BYTES {
            buffer.clear();
            buffers.push(buffer);
        }
    }

    /// A pool for `authority` (host and optional port) under `prefix`.
    pub fn new(authority: &http::uri::Authority, prefix: &str, connect_timeout: Duration) -> Self {
        Self {
            authority: authority.as_str().to_owned(),
            host: authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: authority.port_u16().unwrap_or(80),
            prefix: prefix.to_owned(),
            connect_timeout,
            idle: RefCell::new(VecDeque::new()),
            sweeping: Cell::new(false),
            timers: RefCell::new(Vec::new()),
            buffers: RefCell::new(Vec::new()),
        }
    }

    /// The most recently used idle connection, if it is fresh enough at `now`.
    fn checkout(&self, now: Instant) -> Option<Conn> {
        let mut idle = self.idle.borrow_mut();
        while let Some((conn, since)) = idle.pop_back() {
            if now.saturating_duration_since(since) >= IDLE_TIMEOUT {
                // The freshest is stale: so are all the others.
                idle.clear();
                return None;
            }
            if quiet(&conn) {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps a connection, idle since `since`, for the next call; past [`MAX_IDLE`], the longest idle
    /// one is closed. A call gives the time it began: a clock read fewer, and its connection counts as
    /// idle for longer than it was, so it is closed early rather than late.
    fn checkin(&self, conn: Conn, since: Instant) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() >= MAX_IDLE {
            idle.pop_front();
        }
        idle.push_back((conn, since));
    }

    /// Closes the connections idle for longer than [`IDLE_TIMEOUT`]: the upstream may have closed them
    /// already, and they would wait half-closed until the next call.
    fn sweep(&self) {
        let mut idle = self.idle.borrow_mut();
        while idle
            .front()
            .is_some_and(|(_, since)| since.elapsed() >= IDLE_TIMEOUT)
        {
            idle.pop_front();
        }
    }

    /// Starts, once per pool, a task on this worker that sweeps the idle connections until the pool goes.
    fn keep_swept(pool: &Rc<Self>) {
        if pool.sweeping.replace(true) {
            return;
        }
        let pool = Rc::downgrade(pool);
        actix_web::rt::spawn(async move {
            loop {
                tokio::time::sleep(IDLE_TIMEOUT / 3).await;
                let Some(pool) = pool.upgrade() else { return };
                pool.sweep();
            }
        });
    }

    async fn connect(&self) -> Result<Conn, ApiError> {
        let connecting = TcpStream::connect((self.host.as_str(), self.port));
        let stream = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "upstream unavailable");
                return Err(unavailable());
            }
            Err(_) => {
                tracing::warn!("upstream connect timed out");
                return Err(unavailable());
            }
        };
        // Small heads, written whole: Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
        })
    }
}

/// True when nothing has arrived on an idle connection: no bytes (an answer to no request, which would
/// be taken for the next call's) and no end. Asks the reactor first, so a connection it has seen no
/// event on costs no system call; one it has (perhaps only the end of the last answer) is read once.
fn quiet(conn: &Conn) -> bool {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match conn.stream.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        Poll::Ready(Ok(())) => matches!(
            conn.stream.try_read(&mut [0u8; 1]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        ),
    }
}

/// The largest request body this path carries (read whole, then sent with the head in one write, as
/// nginx buffers small bodies); larger or chunked ones stream through hyper's client.
pub const MAX_REQUEST_BODY_BYTES: usize = 64 * 1024;

/// True when `req` takes this path: a standard method, and no body or one of declared length (its
/// `Content-Length`, as parsed: `declared`) up to [`MAX_REQUEST_BODY_BYTES`].
pub fn suits(req: &RequestHead, declared: Option<usize>) -> bool {
    use actix_web::http::Method;
    let standard = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ];
    standard.contains(&req.method)
        && !req.headers().contains_key(header::TRANSFER_ENCODING)
        && match declared {
            Some(length) => length <= MAX_REQUEST_BODY_BYTES,
            // A length that does not parse goes to hyper's client, which refuses it.
            None => !req.headers().contains_key(header::CONTENT_LENGTH),
        }
}

/// Methods that may be sent again when a pooled connection turns out closed (RFC 9110 §9.2.2).
fn idempotent(method: &actix_web::http::Method) -> bool {
    use actix_web::http::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
    ]
    .contains(method)
}

/// The request: line under the prefix, `Host`, the caller's end-to-end fields, the session's facts, the
/// body's length when there is one (or the method expects one), and the body.
fn request_bytes(
    pool: &Pool,
    ctx: &GstContext,
    req: &RequestHead,
    (path, query): (&str, &str),
    body: &[u8],
) -> Vec<u8> {
    use actix_web::http::Method;
    let mut head = pool.buffer();
    head.reserve(512 + body.len());
    head.extend_from_slice(req.method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(pool.prefix.as_bytes());
    head.extend_from_slice(path.as_bytes());
    if !query.is_empty() {
        head.push(b'?');
        head.extend_from_slice(query.as_bytes());
    }
    head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    head.extend_from_slice(pool.authority.as_bytes());
    head.extend_from_slice(b"\r\n");
    let mut field = |name: &[u8], value: &[u8]| {
        head.extend_from_slice(name);
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    };
    let listed = connection_options(
        req.headers()
            .get_all(actix_web::http::header::CONNECTION)
            .map(|v| v.as_bytes()),
    );
    for (name, value) in req.headers() {
        if forwardable(name, &listed) {
            field(name.as_str().as_bytes(), value.as_bytes());
        }
    }
    request_id::with_current(|request_id| {
        for (name, value) in session_facts(&ctx.gstin, &ctx.client_id, &ctx.session_id, request_id) {
            // Our own values, each checked where it is made: a GSTIN, a generated client id, a UUID, a
            // request id of letters, digits, `-`, `_` and `.` (`request_id::acceptable`).
            debug_assert!(is_field_value(value.as_bytes()), "{name}: {value:?}");
            field(name.as_bytes(), value.as_bytes());
        }
    });
    if !body.is_empty() || [Method::POST, Method::PUT, Method::PATCH].contains(&req.method) {
        let mut length = itoa::Buffer::new();
        field(b"content-length", length.format(body.len()).as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    head.extend_from_slice(body);
    head
}

/// Whether `value` may be sent as a field value: what `HeaderValue::from_bytes` accepts (visible
/// characters, spaces and tabs), checked without building one.
#[cfg_attr(not(debug_assertions), allow(dead_code))]
fn is_field_value(value: &[u8]) -> bool {
    value.iter().all(|&b| (b >= 0x20 && b != 0x7f) || b == b'\t')
}

/// How an answer's body ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked(Chunk),
    UntilClose,
}

/// An answer head, parsed and owned.
struct Head {
    status: StatusCode,
    /// The fields passed back, their values where they lie in the head's bytes.
    spans: Vec<(HeaderName, std::ops::Range<usize>)>,
    /// The same fields with their values, once [`Head::take_values`] has them from those bytes.
    fields: Vec<(HeaderName, HeaderValue)>,
    /// The declared `Content-Length`, unless a `Transfer-Encoding` is declared too.
    length: Option<u64>,
    framing: Framing,
    keep_alive: bool,
}

impl Head {
    /// The values of the fields passed back, shared with `wire` (the head's bytes) rather than copied.
    fn take_values(&mut self, wire: &Bytes) -> Result<(), &'static str> {
        self.fields = std::mem::take(&mut self.spans)
            .into_iter()
            .map(|(name, span)| {
                HeaderValue::from_maybe_shared(wire.slice(span))
                    .map(|value| (name, value))
                    .map_err(|_| "invalid field value")
            })
            .collect::<Result<_, _>>()?;
        Ok(())
    }
}

/// Why reading an answer head failed.
enum HeadError {
    /// The connection ended (or broke) before a single byte of the answer: a pooled connection the
    /// upstream had closed.
    ClosedBeforeAnswer,
    Failed(ApiError),
}

fn failed(reason: &str) -> HeadError {
    tracing::warn!(reason, "upstream answer unusable");
    HeadError::Failed(unavailable())
}

/// Reads the answer head into `conn.buf` and parses it; 1xx answers are skipped.
async fn read_head(conn: &mut Conn, head_request: bool) -> Result<Head, HeadError> {
    let mut received_any = !conn.buf.is_empty();
    loop {
        // Nothing to parse before the first read, and the field slots are left for httparse to fill
        // rather than written empty first: about 600 instructions a call (bench/instructions.sh).
        let parsed = if conn.buf.is_empty() {
            None
        } else {
            let mut fields = [const { MaybeUninit::uninit() }; MAX_HEADERS];
            let mut answer = httparse::Response::new(&mut []);
            match httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut answer,
                &conn.buf,
                &mut fields,
            ) {
                Ok(httparse::Status::Complete(length)) => {
                    Some(owned_head(&answer, head_request, &conn.buf).map(|h| (length, h)))
                }
                Ok(httparse::Status::Partial) => None,
                Err(_) => return Err(failed("malformed head")),
            }
        };
        match parsed {
            Some(Ok((length, mut head))) => {
                let wire = conn.buf.split_to(length).freeze();
                if head.status.is_informational() {
                    if head.status == StatusCode::SWITCHING_PROTOCOLS {
                        return Err(failed("switched protocols unasked"));
                    }
                    continue;
                }
                head.take_values(&wire).map_err(failed)?;
                return Ok(head);
            }
            Some(Err(reason)) => return Err(failed(reason)),
            None => {}
        }
        if conn.buf.len() >= MAX_HEAD_BYTES {
            return Err(failed("head too large"));
        }
        conn.buf.reserve(READ_CHUNK);
        match tokio::io::AsyncReadExt::read_buf(&mut conn.stream, &mut conn.buf).await {
            Ok(0) | Err(_) if !received_any => return Err(HeadError::ClosedBeforeAnswer),
            Ok(0) => return Err(failed("closed mid-head")),
            Err(error) => {
                tracing::warn!(error = %error, "upstream read failed");
                return Err(HeadError::Failed(unavailable()));
            }
            Ok(_) => received_any = true,
        }
    }
}

/// Where `part`, a slice of `whole` (or empty), lies in it.
fn span_in(whole: &[u8], part: &[u8]) -> std::ops::Range<usize> {
    if part.is_empty() {
        return 0..0;
    }
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    debug_assert!(start + part.len() <= whole.len());
    start..start + part.len()
}

/// A `Content-Length` value (RFC 9110 §8.6): digits only, or a list of one repeated value; at most
/// `i64::MAX`.
fn content_length(value: &[u8]) -> Option<u64> {
    let mut length = None;
    for item in value.split(|b| *b == b',') {
        let digits = item.trim_ascii();
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
        if n > i64::MAX as u64 || length.is_some_and(|seen| seen != n) {
            return None;
        }
        length = Some(n);
    }
    length
}

/// The parsed `answer`, whose fields lie in `wire`.
fn owned_head(
    answer: &httparse::Response<'_, '_>,
    head_request: bool,
    wire: &[u8],
) -> Result<Head, &'static str> {
    let code = answer.code.ok_or("no status")?;
    let status = StatusCode::from_u16(code).map_err(|_| "invalid status")?;
    let listed = connection_options(
        answer
            .headers
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case("connection"))
            .map(|f| f.value),
    );
    let mut keep_alive = answer.version == Some(1) && !listed.iter().any(|o| o == "close");
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut spans = Vec::with_capacity(answer.headers.len());
    for field in answer.headers.iter() {
        // The framing fields and `Connection` (every answer has some) are told by their bytes; the
        // others are parsed once, into the type the answer is built from (well-known names need no
        // allocation).
        let raw = field.name.as_bytes();
        if raw.eq_ignore_ascii_case(b"content-length") {
            let value = content_length(field.value).ok_or("invalid content-length")?;
            if length.is_some_and(|seen| seen != value) {
                return Err("conflicting content-length");
            }
            length = Some(value);
        } else if raw.eq_ignore_ascii_case(b"transfer-encoding") {
            // Only the final coding says how the body ends.
            let last = field.value.rsplit(|b| *b == b',').next().unwrap_or_default();
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if !raw.eq_ignore_ascii_case(b"connection") {
            let name = HeaderName::from_bytes(raw).map_err(|_| "invalid field name")?;
            if passes_back(name.as_str(), &listed) {
                spans.push((name, span_in(wire, field.value)));
            }
        }
    }
    let framing = if head_request || status.is_informational() || matches!(code, 204 | 304) {
        Framing::Empty
    } else if let Some(chunked) = chunked {
        // A length beside a transfer coding is ignored, and the connection not trusted after.
        keep_alive &= length.is_none();
        if chunked {
            Framing::Chunked(Chunk::Size)
        } else {
            Framing::UntilClose
        }
    } else if let Some(length) = length {
        Framing::Length(length)
    } else {
        Framing::UntilClose
    };
    if framing == Framing::UntilClose {
        keep_alive = false;
    }
    Ok(Head {
        status,
        spans,
        fields: Vec::new(),
        // Beside a transfer coding a length means nothing, also as the length a HEAD's GET would have had.
        length: length.filter(|_| chunked.is_none()),
        framing,
        keep_alive,
    })
}

/// Forwards a call that [`suits`] this path, with its `body` read whole; `target` is the path (under the
/// upstream's prefix) and the query, written as they are, without a string that joins them.
pub async fn forward(
    pool: Rc<Pool>,
    timeout: Duration,
    ctx: &GstContext,
    req: &RequestHead,
    target: (&str, &str),
    body: &[u8],
) -> Result<HttpResponse, ApiError> {
    Pool::keep_swept(&pool);
    let head_request = req.method == actix_web::http::Method::HEAD;
    let resend = idempotent(&req.method);
    let request = request_bytes(&pool, ctx, req, target, body);
    // The call's one clock read: its deadline, and the time its connection is taken and given back.
    let began = Instant::now();
    let mut timer = pool.timer(began + timeout);
    let exchange = async {
        let mut pooled = pool.checkout(began);
        loop {
            let reused = pooled.is_some();
            let mut conn = match pooled.take() {
                Some(conn) => conn,
                None => pool.connect().await?,
            };
            let written = conn.stream.write_all(&request).await;
            let head = match written {
                Ok(()) => read_head(&mut conn, head_request).await,
                Err(_) => Err(HeadError::ClosedBeforeAnswer),
            };
            match head {
                Ok(head) => return Ok::<_, ApiError>((conn, head)),
                // A pooled connection the upstream closed while it was idle: once more, on a new one,
                // when the method allows it (the upstream may, rarely, have seen the first).
                Err(HeadError::ClosedBeforeAnswer) if reused && resend => {}
                Err(HeadError::ClosedBeforeAnswer) => {
                    tracing::warn!("upstream closed the connection without answering");
                    return Err(unavailable());
                }
                Err(HeadError::Failed(error)) => return Err(error),
            }
        }
    };
    let exchanged = before(&mut timer, exchange).await;
    pool.give_back(request);
    let (mut conn, head) = exchanged??;

    let status = answer_status(head.status.as_u16())?;
    let mut response = HttpResponse::build(status);
    for field in head.fields {
        response.append_header(field);
    }
    match head.framing {
        Framing::Empty => {
            pool.spare(timer);
            if head.keep_alive && conn.buf.is_empty() {
                pool.checkin(conn, began);
            }
            Ok(bodiless(response, status, head_request, head.length))
        }
        Framing::Length(length) if length <= BUFFERED_ANSWER_BYTES => {
            let length = usize::try_from(length).unwrap_or(usize::MAX);
            let read_whole = async {
                while conn.buf.len() < length {
                    conn.buf.reserve(length - conn.buf.len());
                    match tokio::io::AsyncReadExt::read_buf(&mut conn.stream, &mut conn.buf).await {
                        Ok(0) | Err(_) => {
                            tracing::warn!("upstream body ended early");
                            return Err(unavailable());
                        }
                        Ok(_) => {}
                    }
                }
                Ok(())
            };
            before(&mut timer, read_whole).await??;
            pool.spare(timer);
            let body = conn.buf.split_to(length).freeze();
            if head.keep_alive && conn.buf.is_empty() {
                pool.checkin(conn, began);
            }
            Ok(response.body(body))
        }
        framing => {
            let body = AnswerBody {
                conn: Some(conn),
                framing,
                keep_alive: head.keep_alive,
                pool,
                deadline: timer,
            };
            Ok(match framing {
                Framing::Length(length) => response.body(SizedStream::new(length, body)),
                _ => response.body(actix_web::body::BodyStream::new(body)),
            })
        }
    }
}

/// `work`, unless `timer` goes off first (504).
async fn before<F: Future>(timer: &mut Pin<Box<Sleep>>, work: F) -> Result<F::Output, ApiError> {
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(done) = work.as_mut().poll(cx) {
            return Poll::Ready(Ok(done));
        }
        timer.as_mut().poll(cx).map(|()| Err(timed_out()))
    })
    .await
}

/// Where a chunked body's decoding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data: this many bytes to go.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// Reading (and dropping) trailer fields, up to the empty line: this many bytes so far.
    Trailers(usize),
    /// The last chunk and its trailers are read.
    Done,
}

/// What the buffer yields next.
enum Decoded {
    Data(Bytes),
    NeedMore,
    Finished,
}

/// Decodes as much of a chunked body as `buf` holds, up to the next data.
fn decode_chunked(state: &mut Chunk, buf: &mut BytesMut) -> Result<Decoded, &'static str> {
    loop {
        match *state {
            // httparse reads a line without a digit ("\r\n", " \r\n", ";x\r\n") as size 0, the last
            // chunk: a garbled body would end early and look complete. The grammar wants 1*HEXDIG first.
            Chunk::Size if buf.first().is_some_and(|b| !b.is_ascii_hexdigit()) => {
                return Err("chunk size without a digit");
            }
            Chunk::Size => match httparse::parse_chunk_size(buf) {
                Ok(httparse::Status::Complete((used, size))) => {
                    let _ = buf.split_to(used);
                    *state = if size == 0 {
                        Chunk::Trailers(0)
                    } else {
                        Chunk::Data(size)
                    };
                }
                Ok(httparse::Status::Partial) if buf.len() > MAX_CHUNK_LINE_BYTES => {
                    return Err("chunk-size line too long");
                }
                Ok(httparse::Status::Partial) => return Ok(Decoded::NeedMore),
                Err(_) => return Err("malformed chunk size"),
            },
            Chunk::Data(left) => {
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                let left = left - take as u64;
                *state = if left == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left)
                };
                return Ok(Decoded::Data(buf.split_to(take).freeze()));
            }
            Chunk::DataEnd => {
                if buf.len() < 2 {
                    return Ok(Decoded::NeedMore);
                }
                if &buf[..2] != b"\r\n" {
                    return Err("chunk data not followed by CRLF");
                }
                let _ = buf.split_to(2);
                *state = Chunk::Size;
            }
            Chunk::Trailers(read) => {
                let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
                    if read + buf.len() > MAX_TRAILER_BYTES {
                        return Err("trailers too large");
                    }
                    return Ok(Decoded::NeedMore);
                };
                let _ = buf.split_to(end + 2);
                *state = if end == 0 {
                    Chunk::Done
                } else if read + end + 2 > MAX_TRAILER_BYTES {
                    return Err("trailers too large");
                } else {
                    Chunk::Trailers(read + end + 2)
                };
            }
            Chunk::Done => return Ok(Decoded::Finished),
        }
    }
}

/// An answer body streamed from its connection, which returns to the pool once the body has been read
/// exactly to its end. The exchange's deadline covers it.
struct AnswerBody {
    conn: Option<Conn>,
    framing: Framing,
    keep_alive: bool,
    pool: Rc<Pool>,
    deadline: Pin<Box<Sleep>>,
}

impl AnswerBody {
    /// The next data already in the buffer, or `NeedMore`.
    fn take(&mut self) -> Result<Decoded, &'static str> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(Decoded::Finished);
        };
        match &mut self.framing {
            Framing::Empty => Ok(Decoded::Finished),
            Framing::Length(0) => Ok(Decoded::Finished),
            Framing::Length(left) => {
                if conn.buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let take = usize::try_from(*left).unwrap_or(usize::MAX).min(conn.buf.len());
                *left -= take as u64;
                Ok(Decoded::Data(conn.buf.split_to(take).freeze()))
            }
            Framing::Chunked(state) => decode_chunked(state, &mut conn.buf),
            Framing::UntilClose => Ok(if conn.buf.is_empty() {
                Decoded::NeedMore
            } else {
                Decoded::Data(conn.buf.split().freeze())
            }),
        }
    }

    /// The body is complete: the connection goes back if it can carry another exchange.
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.keep_alive
            && conn.buf.is_empty()
        {
            self.pool.checkin(conn, Instant::now());
        }
    }

    fn broken(&mut self, reason: &str) -> Poll<Option<Result<Bytes, actix_web::Error>>> {
        tracing::warn!(reason, "upstream body failed");
        self.conn = None;
        Poll::Ready(Some(Err(actix_web::error::ErrorBadGateway(
            "upstream body failed",
        ))))
    }
}

impl Stream for AnswerBody {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        for _ in 0..READS_PER_POLL {
            match this.take() {
                Ok(Decoded::Data(data)) => {
                    if this.framing == Framing::Length(0) {
                        // The last bytes of a sized body: the server may not poll again for the end.
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(data)));
                }
                Ok(Decoded::Finished) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Err(reason) => return this.broken(reason),
                Ok(Decoded::NeedMore) => {}
            }
            if this.deadline.as_mut().poll(cx).is_ready() {
                tracing::warn!("upstream body timed out");
                this.conn = None;
                return Poll::Ready(Some(Err(actix_web::error::ErrorGatewayTimeout(
                    "upstream body timed out",
                ))));
            }
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            if let Err(error) = ready!(conn.stream.poll_read_ready(cx)) {
                tracing::warn!(error = %error, "upstream read failed");
                return this.broken("read failed");
            }
            conn.buf.reserve(READ_CHUNK);
            match conn.stream.try_read_buf(&mut conn.buf) {
                Ok(0) if this.framing == Framing::UntilClose => {
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => return this.broken("closed before the body's end"),
                Ok(_) => {}
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(error) => {
                    tracing::warn!(error = %error, "upstream read failed");
                    return this.broken("read failed");
                }
            }
        }
        // An upstream that keeps sending without completing anything must not hold the worker.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(wire: &[u8], split: usize) -> Result<(Vec<u8>, Chunk, usize), &'static str> {
        let mut state = Chunk::Size;
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in wire.chunks(split.max(1)) {
            buf.extend_from_slice(piece);
            while let Decoded::Data(data) = decode_chunked(&mut state, &mut buf)? {
                out.extend_from_slice(&data);
            }
        }
        Ok((out, state, buf.len()))
    }

    #[test]
    fn chunked_bodies_decode_however_they_arrive() {
        let wire = b"5\r\nhello\r\n1;ext=1\r\n \r\nB\r\nchunked wor\r\n0\r\nx-trailer: yes\r\n\r\n";
        for split in [1, 2, 3, 7, wire.len()] {
            let (body, state, left) = decode_all(wire, split).unwrap();
            assert_eq!(body, b"hello chunked wor", "split {split}");
            assert_eq!(state, Chunk::Done);
            assert_eq!(left, 0);
        }
        // Bytes after the end stay in the buffer (the connection is then not reused).
        let (_, state, left) = decode_all(b"0\r\n\r\nHTTP/1.1", 64).unwrap();
        assert_eq!((state, left), (Chunk::Done, 8));
    }

    #[test]
    fn endless_chunk_lines_and_trailers_are_refused() {
        let mut line = b"1;".to_vec();
        line.resize(MAX_CHUNK_LINE_BYTES + 8, b'a');
        assert_eq!(decode_all(&line, 1024).unwrap_err(), "chunk-size line too long");
        let mut spaces = b"1".to_vec();
        spaces.resize(MAX_CHUNK_LINE_BYTES + 8, b' ');
        assert!(decode_all(&spaces, 1024).is_err());
        let mut trailers = b"0\r\n".to_vec();
        while trailers.len() < MAX_TRAILER_BYTES + 64 {
            trailers.extend_from_slice(b"x-t: 1\r\n");
        }
        assert_eq!(decode_all(&trailers, 100).unwrap_err(), "trailers too large");
    }

    #[test]
    fn malformed_chunks_are_refused() {
        for wire in [
            &b"zz\r\n"[..],
            b"3\r\nabcX\r\n",
            b"3\r\nabc\r\nq\r\n",
            // A size line without a digit is not the last chunk.
            b"\r\n",
            b"5\r\nhello\r\n\r\n\r\n",
            b"5\r\nhello\r\n \r\n\r\n",
            b"5\r\nhello\r\n;x\r\n\r\n",
            b"5\r\nhello\r\n\t0\r\n\r\n",
        ] {
            for split in [1, 64] {
                assert!(
                    decode_all(wire, split).is_err(),
                    "{:?} in pieces of {split}",
                    String::from_utf8_lossy(wire)
                );
            }
        }
    }

    fn head(wire: &str, head_request: bool) -> Result<Head, &'static str> {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut answer = httparse::Response::new(&mut fields);
        assert!(answer.parse(wire.as_bytes()).unwrap().is_complete());
        let mut head = owned_head(&answer, head_request, wire.as_bytes())?;
        head.take_values(&Bytes::copy_from_slice(wire.as_bytes()))?;
        Ok(head)
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let framing = |wire: &str, head_request| head(wire, head_request).map(|h| (h.framing, h.keep_alive));
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n", false),
            Ok((Framing::Length(12), true))
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n", true),
            Ok((Framing::Empty, true)),
            "HEAD has no body"
        );
        assert_eq!(
            framing("HTTP/1.1 204 No Content\r\n\r\n", false),
            Ok((Framing::Empty, true))
        );
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
                false
            ),
            Ok((Framing::Chunked(Chunk::Size), true))
        );
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
                false
            ),
            Ok((Framing::Chunked(Chunk::Size), false)),
            "a length beside a coding is ignored, the connection not reused"
        );
        for head_request in [false, true] {
            let coded = head(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
                head_request,
            );
            assert_eq!(
                coded.map(|h| h.length),
                Ok(None),
                "nor passed on (HEAD: {head_request})"
            );
        }
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n", false),
            Ok((Framing::UntilClose, false))
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\n\r\n", false),
            Ok((Framing::UntilClose, false))
        );
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\n",
                false
            ),
            Ok((Framing::Length(1), false))
        );
        assert_eq!(
            framing("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n", false),
            Ok((Framing::Length(1), false))
        );
        assert!(
            framing(
                "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
                false
            )
            .is_err()
        );
        assert!(framing("HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", false).is_err());
        for bad in ["+2", "18446744073709551615", "2, 3", "", "0x10", "2,"] {
            let wire = format!("HTTP/1.1 200 OK\r\ncontent-length: {bad}\r\n\r\n");
            assert!(framing(&wire, false).is_err(), "{bad:?}");
        }
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\ncontent-length: 2\r\n\r\n",
                false
            ),
            Ok((Framing::Length(2), true)),
            "one value repeated is that value"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_are_bounded_and_swept() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: http::uri::Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let pool = Pool::new(&authority, "", Duration::from_secs(1));
        let idle = |pool: &Pool| pool.idle.borrow().len();
        for _ in 0..MAX_IDLE + 2 {
            let conn = pool.connect().await.unwrap();
            pool.checkin(conn, Instant::now());
        }
        assert_eq!(idle(&pool), MAX_IDLE, "the longest idle ones are closed");

        tokio::time::advance(IDLE_TIMEOUT / 2).await;
        let recent = pool.connect().await.unwrap();
        pool.checkin(recent, Instant::now());
        tokio::time::advance(IDLE_TIMEOUT / 2 + Duration::from_secs(1)).await;
        pool.sweep();
        assert_eq!(idle(&pool), 1, "only the connection used since is kept");

        let conn = pool
            .checkout(Instant::now())
            .expect("a fresh idle connection is reused");
        pool.checkin(conn, Instant::now());
        tokio::time::advance(IDLE_TIMEOUT).await;
        assert!(pool.checkout(Instant::now()).is_none(), "a stale one is not");
        assert_eq!(idle(&pool), 0);
    }

    #[test]
    fn request_buffers_are_reused_empty_unless_a_large_body_grew_them() {
        let authority: http::uri::Authority = "127.0.0.1:9".parse().unwrap();
        let pool = Pool::new(&authority, "", Duration::from_secs(1));
        let mut used = pool.buffer();
        used.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let address = used.as_ptr();
        pool.give_back(used);
        let again = pool.buffer();
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), address, "the same allocation");
        pool.give_back(Vec::with_capacity(MAX_SPARE_BUFFER_BYTES + 1));
        assert!(
            pool.buffer().capacity() <= MAX_SPARE_BUFFER_BYTES,
            "a large one is not kept"
        );
        for _ in 0..MAX_SPARES + 10 {
            pool.give_back(Vec::with_capacity(64));
        }
        assert_eq!(pool.buffers.borrow().len(), MAX_SPARES);
    }

    #[tokio::test(start_paused = true)]
    async fn a_spare_timer_goes_off_at_its_new_deadline_only() {
        let authority: http::uri::Authority = "127.0.0.1:9".parse().unwrap();
        let pool = Pool::new(&authority, "", Duration::from_secs(1));
        let pending = |timer: &mut Pin<Box<Sleep>>| {
            let waker = futures_util::task::noop_waker();
            timer.as_mut().poll(&mut Context::from_waker(&waker)).is_pending()
        };
        let mut first = pool.timer(Instant::now() + Duration::from_secs(1));
        assert!(pending(&mut first), "armed");
        pool.spare(first);
        let mut again = pool.timer(Instant::now() + Duration::from_secs(5));
        assert!(pool.timers.borrow().is_empty(), "the spare one is taken");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(pending(&mut again), "not at the old deadline");
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(!pending(&mut again), "at the new one");
        let work = before(&mut again, std::future::pending::<()>()).await;
        assert_eq!(work.unwrap_err().code(), crate::error::ErrorCode::UpstreamTimeout);
    }

    #[test]
    fn field_values_are_checked_as_header_values_are() {
        for value in [
            &b"24AAUPV7468F1ZW"[..],
            b"a b\tc",
            b"",
            b"\x80caf\xc3\xa9",
            b"x\r\n",
            b"\x7f",
            b"\0",
        ] {
            assert_eq!(
                is_field_value(value),
                HeaderValue::from_bytes(value).is_ok(),
                "{value:?}"
            );
        }
    }

    #[test]
    fn hop_by_hop_listed_and_rate_limit_fields_stay_behind() {
        let head = head(
            "HTTP/1.1 200 OK\r\nConnection: x-private\r\nX-Private: 1\r\nKeep-Alive: timeout=5\r\nX-Kept: yes\r\n\
             RateLimit: \"upstream\";r=0;t=9\r\nratelimit-policy: \"upstream\";q=1;w=9\r\ncontent-length: 0\r\n\
             X-Empty:\r\nX-Last: end\r\n\r\n",
            false,
        )
        .unwrap();
        let names: Vec<&str> = head.fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x-kept", "x-empty", "x-last"]);
        let values: Vec<&[u8]> = head.fields.iter().map(|(_, v)| v.as_bytes()).collect();
        assert_eq!(values, [&b"yes"[..], b"", b"end"]);
    }
}
