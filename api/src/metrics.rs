//! Prometheus metrics, rendered as text at `GET /metrics`.
//!
//! One recorder serves the whole process (the `metrics` facade is global); [`install`] is idempotent,
//! so every `Application` built in one process (the tests start many) shares it. Every label is
//! bounded: routes are matched patterns such as `/v1/taxpayer/sessions/{session_id}`, `/v1/gst/{path}`
//! for every gateway call and `/taxpayerapi/{version}/{resource}` for every dialect call (or `unmatched`),
//! never raw paths; methods outside the standard set are `other`; codes, reasons and scopes are fixed
//! strings of this crate.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use actix_web::dev::ServiceRequest;
use actix_web::http::{Method, StatusCode, header};
use actix_web::{HttpResponse, web};
use metrics::{
    Counter, Histogram, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

/// The media type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const REQUESTS: &str = "http_requests_total";
const REQUEST_DURATION: &str = "http_request_duration_seconds";
const REFUSALS: &str = "gateway_refusals_total";
const OTP_ISSUED: &str = "gateway_otp_issued_total";
const OTP_FAILURES: &str = "gateway_otp_failures_total";
const RATE_LIMITED: &str = "gateway_rate_limited_total";
const ACTIVE_SESSIONS: &str = "gateway_active_sessions";
const POOL_IN_USE: &str = "gateway_db_pool_connections_in_use";
const POOL_IDLE: &str = "gateway_db_pool_connections_idle";
const POOL_WAITING: &str = "gateway_db_pool_waiting";
const POOL_MAX: &str = "gateway_db_pool_max_connections";
const CHANGE_FEED_LAG: &str = "gateway_change_feed_lag_seconds";

/// Latency buckets in seconds: sub-millisecond sandbox answers up to the 30 s upstream timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Histogram samples are drained into buckets at least this often, scraped or not, so memory stays bounded.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Why the metrics recorder could not be installed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot install the metrics recorder: {0}")]
pub struct InstallError(String);

static HANDLE: OnceLock<Result<PrometheusHandle, InstallError>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once; later calls return the same handle.
pub fn install() -> Result<PrometheusHandle, InstallError> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), LATENCY_BUCKETS)
                .map_err(|e| InstallError(e.to_string()))?
                .install_recorder()
                .map_err(|e| InstallError(e.to_string()))?;
            describe();
            spawn_upkeep(handle.clone());
            Ok(handle)
        })
        .clone()
}

/// A plain thread, not a task: the recorder outlives any one runtime (tests start and drop many).
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                handle.run_upkeep();
            }
        });
    if let Err(error) = spawned {
        // Rendering drains histograms too; without the thread only an unscraped process grows.
        tracing::warn!(%error, "metrics upkeep thread not started");
    }
}

fn describe() {
    describe_counter!(
        REQUESTS,
        "HTTP requests answered, by matched route, method and status."
    );
    describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Time from receiving a request to its response head, by matched route and method."
    );
    describe_counter!(
        REFUSALS,
        "Problems (application/problem+json) answered, by error code."
    );
    describe_counter!(
        OTP_ISSUED,
        "OTPs issued to taxpayers, by purpose (session or evc)."
    );
    describe_counter!(OTP_FAILURES, "Failed OTP verifications, by reason.");
    describe_counter!(RATE_LIMITED, "Requests refused by a rate limit, by scope.");
    describe_gauge!(
        ACTIVE_SESSIONS,
        "GSP sessions active, as last counted by this instance."
    );
    describe_gauge!(POOL_IN_USE, "Database connections checked out.");
    describe_gauge!(POOL_IDLE, "Database connections open and idle.");
    describe_gauge!(
        POOL_WAITING,
        "1 while callers wait for a database connection, else 0."
    );
    describe_gauge!(POOL_MAX, "The database pool's size.");
    describe_gauge!(
        CHANGE_FEED_LAG,
        metrics::Unit::Seconds,
        "Age of the newest change-feed event this instance has applied when it was applied."
    );
}

/// `GET /metrics`: every metric of this process in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "service", operation_id = "get_metrics",
    responses((status = 200, description = "Prometheus text exposition format (version 0.0.4) of this instance",
        body = String, content_type = "text/plain; version=0.0.4")))]
pub async fn render(state: web::Data<AppState>) -> HttpResponse {
    let pool = state.db.status();
    set_pool(
        pool.connections.saturating_sub(pool.idle),
        pool.idle,
        pool.waiting,
    );
    gauge!(POOL_MAX).set(f64::from(pool.max_size));
    let text = match install() {
        Ok(handle) => handle.render(),
        Err(error) => {
            tracing::warn!(%error, "metrics unavailable");
            String::new()
        }
    };
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, CONTENT_TYPE))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(text)
}

/// One request being served: counted and timed when it is answered, labelled by matched route
/// pattern, method and status. Started and finished with the request's id
/// ([`crate::request_id::Served`]), so that serving a request takes one layer, not two.
#[derive(Debug)]
pub struct RequestTimer {
    started: Instant,
    route: Cow<'static, str>,
    method: &'static str,
}

impl RequestTimer {
    /// Starts timing a request to `route` (its label: [`route_label`], [`GATEWAY_ROUTE`]).
    pub fn start(route: Cow<'static, str>, method: &Method) -> Self {
        Self {
            started: Instant::now(),
            route,
            method: method_label(method),
        }
    }

    /// Counts and times the answered request; how long it took.
    pub fn finish(self, status: StatusCode) -> Duration {
        let elapsed = self.started.elapsed();
        let (duration, requests) = request_handles(self.route, self.method, status.as_u16());
        duration.record(elapsed.as_secs_f64());
        requests.increment(1);
        elapsed
    }
}

/// The route label of a request the routed application serves: the pattern it matched, or
/// [`UNMATCHED_ROUTE`]. (The gateway's front labels the calls it serves unrouted: [`GATEWAY_ROUTE`],
/// [`DIALECT_ROUTE`].)
pub fn route_label(req: &ServiceRequest) -> Cow<'static, str> {
    req.match_pattern()
        .map_or(Cow::Borrowed(UNMATCHED_ROUTE), Cow::Owned)
}

/// The route label of every call under `/v1/gst/`.
pub const GATEWAY_ROUTE: &str = "/v1/gst/{path}";
/// The route label of the GST System dialect's calls (`/taxpayerapi/v…`).
pub const DIALECT_ROUTE: &str = "/taxpayerapi/{version}/{resource}";
/// The route label of a request no route matched.
pub const UNMATCHED_ROUTE: &str = "unmatched";

type RequestKey = (Cow<'static, str>, &'static str, u16);

thread_local! {
    /// The handles of `http_request_duration_seconds` and `http_requests_total` by label set, per
    /// worker thread: registering a labelled metric on every request allocates its key and searches
    /// the registry. Bounded: labels are routes × methods × statuses.
    static REQUEST_HANDLES: RefCell<HashMap<RequestKey, (Histogram, Counter), foldhash::fast::RandomState>> =
        RefCell::new(HashMap::default());
}

fn request_handles(route: Cow<'static, str>, method: &'static str, status: u16) -> (Histogram, Counter) {
    let key = (route, method, status);
    REQUEST_HANDLES.with(|handles| {
        if let Some(found) = handles.borrow().get(&key) {
            return found.clone();
        }
        let (route, method, status) = key;
        let created = (
            histogram!(REQUEST_DURATION, "route" => route.clone(), "method" => method),
            counter!(REQUESTS, "route" => route.clone(), "method" => method, "status" => status.to_string()),
        );
        handles
            .borrow_mut()
            .insert((route, method, status), created.clone());
        created
    })
}

/// Standard methods by name; anything else (any token is a valid method) would be unbounded.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts one problem answered with `code` (an `ErrorCode` string).
pub fn refusal(code: &'static str) {
    counter!(REFUSALS, "code" => code).increment(1);
}

/// Counts one OTP issued; `purpose` is `session` or `evc`.
pub fn otp_issued(purpose: &'static str) {
    counter!(OTP_ISSUED, "purpose" => purpose).increment(1);
}

/// Counts one failed OTP verification; `reason` is a fixed string such as `invalid_otp`.
pub fn otp_failed(reason: &'static str) {
    counter!(OTP_FAILURES, "reason" => reason).increment(1);
}

/// Counts one request refused by a rate limit; `scope` is a fixed string such as `session`.
pub fn rate_limited(scope: &'static str) {
    counter!(RATE_LIMITED, "scope" => scope).increment(1);
}

/// Sets the number of active GSP sessions.
pub fn set_active_sessions(n: u64) {
    gauge!(ACTIVE_SESSIONS).set(n as f64);
}

/// Sets the database pool gauges: connections checked out, idle, and whether callers wait.
pub fn set_pool(in_use: u32, idle: u32, waiting: usize) {
    gauge!(POOL_IN_USE).set(f64::from(in_use));
    gauge!(POOL_IDLE).set(f64::from(idle));
    gauge!(POOL_WAITING).set(waiting as f64);
}

/// Sets how far behind the database this instance's view of other instances' writes was.
pub fn set_change_feed_lag(seconds: f64) {
    gauge!(CHANGE_FEED_LAG).set(seconds);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_is_idempotent_and_renders_recorded_metrics() {
        let first = install().expect("first install");
        let second = install().expect("second install reuses the recorder");
        refusal("not_found");
        otp_failed("invalid_otp");
        let text = second.render();
        assert!(
            text.contains("gateway_refusals_total{code=\"not_found\"}"),
            "{text}"
        );
        assert!(
            first
                .render()
                .contains("gateway_otp_failures_total{reason=\"invalid_otp\"}")
        );
    }

    #[test]
    fn unusual_methods_share_one_label() {
        let custom = Method::from_bytes(b"PURGE").expect("a valid token");
        assert_eq!(method_label(&custom), "other");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
    }
}
