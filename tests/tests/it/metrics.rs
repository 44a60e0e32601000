//! `GET /metrics`: Prometheus text with request counters by matched route, latency histograms and
//! refusals by code.
//!
//! The recorder is one per process and the tests run in parallel, so counts are asserted as lower
//! bounds: at least the requests this test made.

use std::collections::BTreeMap;

use crate::helpers::*;

on_both_backends!(
    metrics_count_requests_by_route_and_status,
    metrics_never_label_with_the_raw_path,
);

/// One sample of the exposition: name, labels, value.
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text format (enough of it for label values without escaped quotes or commas).
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line has a value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}').expect("labels close");
                    let labels = inner
                        .split(',')
                        .filter(|pair| !pair.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once('=').expect("label=value");
                            (k.to_owned(), v.trim_matches('"').to_owned())
                        })
                        .collect();
                    (name, labels)
                }
                None => (series, BTreeMap::new()),
            };
            Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().expect("a numeric value"),
            }
        })
        .collect()
}

/// The value of the one series `name{labels}` (labels matched exactly), or 0 when absent.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let wanted: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples
        .iter()
        .filter(|s| s.name == name && s.labels == wanted)
        .map(|s| s.value)
        .sum()
}

async fn scrape(app: &TestApp) -> (Vec<Sample>, String) {
    let resp = app.get("/metrics", Auth::None).await;
    assert_eq!(resp.status.as_u16(), 200, "{}", resp.text);
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    (samples(&resp.text), resp.text)
}

async fn metrics_count_requests_by_route_and_status(backend: Backend) {
    let app = spawn_app(backend).await;
    for _ in 0..3 {
        app.get("/health/live", Auth::None).await.ok(200);
    }
    app.get("/health/ready", Auth::None).await.ok(200);
    app.get("/no/such/route", Auth::None)
        .await
        .assert_problem(404, "not_found");
    app.post("/health/live", Auth::None, serde_json::json!({}))
        .await
        .assert_problem(405, "method_not_allowed");
    // Every gateway call and every dialect call is counted under its scope's one route.
    app.get("/v1/gst/taxpayer", Auth::None)
        .await
        .assert_problem(401, "token_missing");
    let dialect = app
        .client
        .delete(format!("{}/taxpayerapi/v1.0/authenticate", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(dialect.status().as_u16(), 405);

    let (samples, text) = scrape(&app).await;
    let requests = |route: &str, method: &str, status: &str| {
        value(
            &samples,
            "http_requests_total",
            &[("route", route), ("method", method), ("status", status)],
        )
    };
    assert!(requests("/health/live", "GET", "200") >= 3.0, "{text}");
    assert!(requests("/health/ready", "GET", "200") >= 1.0, "{text}");
    assert!(requests("unmatched", "GET", "404") >= 1.0, "{text}");
    assert!(requests("/health/live", "POST", "405") >= 1.0, "{text}");
    assert!(requests("/v1/gst/{path}", "GET", "401") >= 1.0, "{text}");
    assert!(
        requests("/taxpayerapi/{version}/{resource}", "DELETE", "405") >= 1.0,
        "{text}"
    );
    assert!(
        value(&samples, "gateway_refusals_total", &[("code", "not_found")]) >= 1.0,
        "{text}"
    );
    assert!(
        value(
            &samples,
            "gateway_refusals_total",
            &[("code", "method_not_allowed")]
        ) >= 1.0,
        "{text}"
    );

    let live = [("route", "/health/live"), ("method", "GET")];
    let count = value(&samples, "http_request_duration_seconds_count", &live);
    assert!(count >= 3.0, "{text}");
    let mut with_inf = live.to_vec();
    with_inf.push(("le", "+Inf"));
    assert_eq!(
        value(&samples, "http_request_duration_seconds_bucket", &with_inf),
        count,
        "the +Inf bucket holds every observation: {text}"
    );
    let sum = value(&samples, "http_request_duration_seconds_sum", &live);
    assert!(sum > 0.0 && sum < count * 5.0, "plausible latencies: {text}");

    // The pool gauges are refreshed at every scrape.
    assert!(
        samples
            .iter()
            .any(|s| s.name == "gateway_db_pool_max_connections" && s.value >= 1.0),
        "{text}"
    );
    assert!(text.contains("# TYPE http_requests_total counter"), "{text}");
    assert!(
        text.contains("# TYPE http_request_duration_seconds histogram"),
        "{text}"
    );

    // The scrape itself is counted on the next one.
    let (again, text) = scrape(&app).await;
    assert!(
        value(
            &again,
            "http_requests_total",
            &[("route", "/metrics"), ("method", "GET"), ("status", "200")]
        ) >= 1.0,
        "{text}"
    );
}

async fn metrics_never_label_with_the_raw_path(backend: Backend) {
    let app = spawn_app(backend).await;
    let marker = uuid::Uuid::new_v4().simple().to_string();
    app.get(&format!("/unknown-{marker}"), Auth::None)
        .await
        .assert_problem(404, "not_found");
    let resp = app
        .client
        .request(
            reqwest::Method::from_bytes(b"PURGE").unwrap(),
            format!("{}/health/live", app.address),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);

    let (samples, text) = scrape(&app).await;
    assert!(!text.contains(&marker), "a raw path leaked into a label: {text}");
    assert!(
        !text.contains("PURGE"),
        "an unbounded method leaked into a label: {text}"
    );
    assert!(
        value(
            &samples,
            "http_requests_total",
            &[("route", "/health/live"), ("method", "other"), ("status", "405")]
        ) >= 1.0,
        "{text}"
    );
}
