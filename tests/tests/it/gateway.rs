//! The enforcement middleware and the gateway: live revocation, rate limits, forwarding.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::TimeDelta;
use diesel::prelude::*;
use gsp_gateway_storage::repo::audit;
use gsp_gateway_storage::schema::sessions;
use serde_json::Value;

use crate::helpers::*;

on_both_backends!(
    refusals_follow_the_contract_order,
    switching_access_off_refuses_the_very_next_call,
    revoking_one_session_leaves_the_others_working,
    an_expired_window_refuses_without_any_write,
    a_burst_past_the_limit_gets_429_with_ratelimit_headers,
    the_sandbox_serves_taxpayer_and_returns,
    forwarding_carries_the_session_facts_and_not_authorization,
    an_upstream_that_is_down_hangs_or_fails_gives_502_or_504,
    forwarding_streams_bodies_up_to_the_limit_and_keeps_lengths,
    forwarding_speaks_tls_to_an_https_upstream,
    forwarding_keeps_upstream_connections_alive_across_framings,
    forwarding_withstands_an_upstream_that_misbehaves,
    connect_and_trace_are_refused_after_the_enforcement,
    no_call_started_after_switch_off_is_admitted,
    a_revocation_through_one_instance_reaches_another,
    usage_is_recorded_to_the_minute_without_a_write_per_call,
);

async fn live_session(backend: Backend) -> (TestApp, TestTaxpayer, TestGsp, TestSession) {
    live_session_with(backend, |_| {}).await
}

async fn live_session_with(
    backend: Backend,
    configure: impl FnOnce(&mut gsp_gateway_api::Settings),
) -> (TestApp, TestTaxpayer, TestGsp, TestSession) {
    let app = spawn_app_with(backend, configure).await;
    let taxpayer = app.create_taxpayer(0).await;
    let gsp = app.create_gsp("Acme GSP").await;
    app.enable_access(&taxpayer, 24).await;
    let session = app.open_session(&gsp, &taxpayer).await;
    (app, taxpayer, gsp, session)
}

async fn refusals_follow_the_contract_order(backend: Backend) {
    let (app, taxpayer, _gsp, session) = live_session(backend).await;
    app.gst("/v1/gst/taxpayer", "")
        .await
        .assert_problem(401, "token_missing");
    app.get("/v1/gst/taxpayer", Auth::None)
        .await
        .assert_problem(401, "token_missing");
    app.gst("/v1/gst/taxpayer", "garbage")
        .await
        .assert_problem(401, "token_invalid");
    // Bytes that are not text are no bearer token, on a connection that remembers a valid one too.
    app.gst("/v1/gst/taxpayer", &session.access_token).await.ok(200);
    let not_text = app
        .client
        .get(format!("{}/v1/gst/taxpayer", app.address))
        .header(
            "authorization",
            reqwest::header::HeaderValue::from_bytes(b"Bearer \xffeyJ.not.text").unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(not_text.status(), 401);
    let problem: serde_json::Value = not_text.json().await.unwrap();
    assert_eq!(problem["code"], "token_missing", "{problem}");
    // Access is checked before the session: after switch-off the GSP is told why.
    app.disable_access(&taxpayer).await;
    let off = app.gst("/v1/gst/taxpayer", &session.access_token).await;
    off.assert_problem(403, "api_access_disabled");
    assert_eq!(off.body["gstn_code"], "AUTH4037");
    app.enable_access(&taxpayer, 24).await;
    app.gst("/v1/gst/taxpayer", &session.access_token)
        .await
        .assert_problem(401, "session_revoked");
    app.advance(TimeDelta::hours(6) + TimeDelta::minutes(1));
    app.gst("/v1/gst/taxpayer", &session.access_token)
        .await
        .assert_problem(401, "token_expired");
}

async fn switching_access_off_refuses_the_very_next_call(backend: Backend) {
    let (app, taxpayer, _gsp, session) = live_session(backend).await;
    let ok = app.gst("/v1/gst/taxpayer", &session.access_token).await;
    ok.ok(200);
    app.disable_access(&taxpayer).await;
    app.gst("/v1/gst/taxpayer", &session.access_token)
        .await
        .assert_problem(403, "api_access_disabled");
    assert_eq!(
        app.revoked_reason(&session.session_id).await.as_deref(),
        Some("access_disabled")
    );
}

async fn revoking_one_session_leaves_the_others_working(backend: Backend) {
    let (app, taxpayer, gsp, first) = live_session(backend).await;
    let second = app.open_session(&gsp, &taxpayer).await;
    app.gst("/v1/gst/taxpayer", &first.access_token).await.ok(200);
    app.gst("/v1/gst/taxpayer", &second.access_token).await.ok(200);
    let token = app.login(&taxpayer).await;
    app.delete(
        &format!("/v1/taxpayer/sessions/{}", first.session_id),
        Auth::Bearer(&token),
    )
    .await
    .ok(204);
    app.delete(
        &format!("/v1/taxpayer/sessions/{}", first.session_id),
        Auth::Bearer(&token),
    )
    .await
    .ok(204);
    app.gst("/v1/gst/taxpayer", &first.access_token)
        .await
        .assert_problem(401, "session_revoked");
    app.gst("/v1/gst/taxpayer", &second.access_token).await.ok(200);
    let other = app.create_taxpayer(1).await;
    let other_token = app.login(&other).await;
    app.delete(
        &format!("/v1/taxpayer/sessions/{}", second.session_id),
        Auth::Bearer(&other_token),
    )
    .await
    .assert_problem(404, "not_found");
    app.gst("/v1/gst/taxpayer", &second.access_token).await.ok(200);
}

async fn an_expired_window_refuses_without_any_write(backend: Backend) {
    let app = spawn_app(backend).await;
    let taxpayer = app.create_taxpayer(0).await;
    let gsp = app.create_gsp("Acme GSP").await;
    app.enable_access(&taxpayer, 6).await;
    let session = app.open_session(&gsp, &taxpayer).await;
    app.gst("/v1/gst/taxpayer", &session.access_token).await.ok(200);
    let head_before = app.state.db.run(audit::head).await.unwrap();
    app.advance(TimeDelta::hours(6));
    // The token itself expires with the window; a token issued just before shows the window check.
    let expired = app.gst("/v1/gst/taxpayer", &session.access_token).await;
    assert!(
        matches!(expired.code(), "api_access_expired" | "token_expired"),
        "{}",
        expired.text
    );
    let now = app.clock.now();
    let (fresh, _) = app
        .state
        .keys
        .issue(
            gsp_gateway_api::tokens::TokenKind::Session,
            &taxpayer.gstin,
            Some(&session.session_id),
            Some(&gsp.client_id),
            now - TimeDelta::minutes(1),
            now + TimeDelta::hours(1),
        )
        .unwrap();
    app.gst("/v1/gst/taxpayer", &fresh)
        .await
        .assert_problem(403, "api_access_expired");
    assert_eq!(
        app.state.db.run(audit::head).await.unwrap(),
        head_before,
        "no event was written"
    );
    let id = session.session_id.clone();
    let revoked: Option<chrono::NaiveDateTime> = app
        .state
        .db
        .run(move |c| Ok(sessions::table.find(id).select(sessions::revoked_at).first(c)?))
        .await
        .unwrap();
    assert_eq!(revoked, None, "nothing was revoked: the window simply ran out");
}

async fn a_burst_past_the_limit_gets_429_with_ratelimit_headers(backend: Backend) {
    let (app, _taxpayer, _gsp, session) = live_session_with(backend, |s| {
        s.session_rate_per_second = 1;
        s.session_burst = 3;
    })
    .await;
    let first = app.gst("/v1/gst/taxpayer", &session.access_token).await;
    first.ok(200);
    assert_eq!(
        first.header("ratelimit-policy"),
        Some("\"session\";q=3;w=1, \"client\";q=400;w=1")
    );
    assert_eq!(first.header("ratelimit"), Some("\"session\";r=2;t=0"));
    // A burst sent at once: two more fit the bucket, the rest are refused (however slow the machine,
    // at most one more token per elapsed second can have been added).
    let started = std::time::Instant::now();
    let burst: Vec<Resp> =
        futures_util::future::join_all((0..8).map(|_| app.gst("/v1/gst/taxpayer", &session.access_token)))
            .await;
    let admitted = burst.iter().filter(|r| r.status.as_u16() == 200).count() as u64;
    assert!(
        admitted >= 2 && admitted <= 2 + started.elapsed().as_secs() + 1,
        "{admitted} admitted"
    );
    let limited = burst
        .iter()
        .find(|r| r.status.as_u16() == 429)
        .expect("the burst was limited");
    limited.assert_problem(429, "rate_limited");
    assert_eq!(limited.header("retry-after"), Some("1"));
    assert_eq!(limited.header("ratelimit"), Some("\"session\";r=0;t=1"));
    assert!(limited.header("ratelimit-policy").is_some());
    // The admitted call that emptied the bucket already says when the next one fits.
    assert!(
        burst
            .iter()
            .filter(|r| r.status.as_u16() == 200)
            .any(|r| r.header("ratelimit") == Some("\"session\";r=0;t=1")),
        "the last admitted call reads r=0;t=1"
    );
    let refused = app.gst("/v1/gst/taxpayer", "garbage").await;
    assert!(refused.header("ratelimit-policy").is_some() && refused.header("ratelimit").is_some());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.gst("/v1/gst/taxpayer", &session.access_token).await.ok(200);
}

async fn the_sandbox_serves_taxpayer_and_returns(backend: Backend) {
    let (app, taxpayer, _gsp, session) = live_session(backend).await;
    let details = app.gst("/v1/gst/taxpayer", &session.access_token).await;
    let body = details.ok(200);
    assert_eq!(body["gstin"], taxpayer.gstin.as_str());
    assert_eq!(body["legal_name"], "Taxpayer 0 Private Limited");
    let returns = app.gst("/v1/gst/returns?fy=2025-26", &session.access_token).await;
    let body = returns.ok(200);
    assert_eq!(body["fy"], "2025-26");
    assert_eq!(body["returns"].as_array().unwrap().len(), 24);
    assert_eq!(body["returns"][0]["ret_period"], "042025");
    app.gst("/v1/gst/returns?fy=2025", &session.access_token)
        .await
        .assert_problem(422, "validation_failed");
    app.gst("/v1/gst/returns", &session.access_token)
        .await
        .assert_problem(422, "validation_failed");
    app.gst("/v1/gst/nothing-here", &session.access_token)
        .await
        .assert_problem(404, "not_found");
    app.gst("/v1/gst/nothing-here", "garbage")
        .await
        .assert_problem(401, "token_invalid");
}

/// Forwarding carries the session's facts and the caller's end-to-end fields, and not `Authorization`,
/// the caller's own session facts or hop-by-hop fields: for a GET and a PUT with a small body (the lean
/// path), and a PUT with a body past 64 KiB (hyper's client).
async fn forwarding_carries_the_session_facts_and_not_authorization(backend: Backend) {
    let upstream = spawn_upstream().await;
    let (app, taxpayer, gsp, session) = live_session_with(backend, |s| s.upstream_url = Some(upstream)).await;
    let url = format!("{}/v1/gst/returns/gstr1?ret_period=112025", app.address);
    let large = format!("{{\"b2b\":\"{}\"}}", "x".repeat(70_000));
    for sent in [None, Some("{\"b2b\":[]}"), Some(large.as_str())] {
        let with_body = sent.is_some();
        let request = match sent {
            Some(body) => app
                .client
                .put(&url)
                .header("content-type", "application/json")
                .body(body.to_owned()),
            None => app.client.get(&url),
        };
        let resp = request
            .bearer_auth(&session.access_token)
            .header("x-request-id", "fwd-test-1")
            .header("x-taxpayer-gstin", "27AAPFU0939F1ZV")
            .header("x-session-id", "not-my-session")
            // The same fields with underscores, which CGI-style upstreams read as the real ones.
            .header("X_Taxpayer_Gstin", "27AAPFU0939F1ZV")
            .header("x_gsp_client_id", "not-my-client")
            .header("X_Session_Id", "not-my-session")
            .header("x_request_id", "not-my-request")
            // What the GST System dialect's face tells the upstream of a call it checked (an EVC
            // signature): never taken from a caller of /v1/gst/.
            .header("X-Gstn-Signed-With", "EVC")
            .header("x-gstn-action", "RETFILE")
            .header("x_gstn_signatory_pan", "AAPFU0939F")
            .header("ret_period", "112025")
            .header("app_key", "a-gst-system-field")
            .header("connection", "keep-alive, x-hop-only")
            .header("x-hop-only", "for the gateway")
            .header("x-end-to-end", "for the upstream")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
        assert_eq!(resp.headers()["x-upstream"], "yes");
        assert!(resp.headers().contains_key("ratelimit"));
        assert_eq!(
            resp.headers()["x-request-id"],
            "fwd-test-1",
            "the caller's id comes back"
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["method"], if with_body { "PUT" } else { "GET" });
        assert_eq!(body["path"], "/returns/gstr1");
        assert_eq!(body["query"], "ret_period=112025");
        assert_eq!(body["body"], sent.unwrap_or(""));
        let headers = &body["headers"];
        assert_eq!(
            headers["x-taxpayer-gstin"],
            taxpayer.gstin.as_str(),
            "a caller cannot choose the taxpayer"
        );
        assert_eq!(headers["x-gsp-client-id"], gsp.client_id.as_str());
        assert_eq!(headers["x-session-id"], session.session_id.as_str());
        assert_eq!(headers["x-request-id"], "fwd-test-1");
        assert!(headers.get("authorization").is_none(), "{headers}");
        assert!(
            headers.get("x-hop-only").is_none(),
            "a field named by Connection is hop-by-hop: {headers}"
        );
        assert_eq!(headers["x-end-to-end"], "for the upstream");
        for spoofed in [
            "x_taxpayer_gstin",
            "x_gsp_client_id",
            "x_session_id",
            "x_request_id",
            "x-gstn-signed-with",
            "x-gstn-action",
            "x_gstn_signatory_pan",
        ] {
            assert!(headers.get(spoofed).is_none(), "{spoofed}: {headers}");
        }
        assert_eq!(
            headers["ret_period"], "112025",
            "other underscores pass: {headers}"
        );
        assert_eq!(headers["app_key"], "a-gst-system-field");
        assert!(
            headers["host"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{headers}"
        );
        if let Some(sent) = sent {
            assert_eq!(
                headers["content-length"],
                sent.len().to_string().as_str(),
                "a declared length is kept: {headers}"
            );
        } else {
            assert!(headers.get("content-length").is_none(), "{headers}");
        }
        assert!(headers.get("transfer-encoding").is_none(), "{headers}");
    }
    // Refusals happen before forwarding.
    app.disable_access(&taxpayer).await;
    app.gst("/v1/gst/taxpayer", &session.access_token)
        .await
        .assert_problem(403, "api_access_disabled");
}

/// A scripted HTTP/1.1 upstream on a raw socket (no HTTP library), counting the connections it accepts.
/// `/chunked` answers in three chunks with a trailer, `/big` 200,000 bytes of declared length,
/// `/until-close` without a length (the body ends when it closes), `/hang-up` answers and then closes
/// the connection without saying so. Misbehaviours: `/late-extra` answers, then sends a second answer
/// nobody asked for; `/endless-chunk-line` starts a chunk-size line that never ends; `/not-modified`
/// is a 304 with a length; `/switch` a 101; `/chunked-with-length` is chunked with a `Content-Length`
/// that does not match; `/ratelimit` carries rate-limit fields of its own. `/body-length` answers `{"length":<request body bytes>}`,
/// anything else `{"n":<connections so far>}`.
async fn spawn_raw_upstream() -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let head_end = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break end + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => buf.extend_from_slice(&chunk[..read]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    buf.drain(..head_end);
                    // A request body is read and dropped.
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < length {
                        let mut chunk = [0u8; 4096];
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => buf.extend_from_slice(&chunk[..read]),
                        }
                    }
                    buf.drain(..length);
                    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    let answer: Vec<u8> = match path.as_str() {
                        "/chunked" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                            6\r\nfirst \r\n7;x=y\r\nsecond \r\n5\r\nthird\r\n0\r\nx-trailer: dropped\r\n\r\n"
                            .to_vec(),
                        "/big" => {
                            let mut answer = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 200000\r\n\r\n".to_vec();
                            answer.resize(answer.len() + 200_000, b'a');
                            answer
                        }
                        "/until-close" => {
                            let _ = socket
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nread until the end")
                                .await;
                            return;
                        }
                        "/late-extra" => {
                            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            b"HTTP/1.1 200 OK\r\nx-injected: yes\r\ncontent-length: 6\r\n\r\nPOISON".to_vec()
                        }
                        "/endless-chunk-line" => {
                            let _ = socket
                                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1;")
                                .await;
                            while socket.write_all(&[b'a'; 16 * 1024]).await.is_ok() {}
                            return;
                        }
                        "/body-length" => {
                            let body = format!("{{\"length\":{length}}}");
                            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len()).into_bytes()
                        }
                        "/not-modified" => b"HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\ncontent-length: 777\r\n\r\n".to_vec(),
                        "/chunked-with-length" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 100000\r\n\r\n\
                            6\r\nfirst \r\n7\r\nsecond \r\n5\r\nthird\r\n0\r\n\r\n"
                            .to_vec(),
                        "/ratelimit" => b"HTTP/1.1 200 OK\r\nratelimit: \"upstream\";r=0;t=60\r\n\
                            RateLimit-Policy: \"upstream\";q=1;w=60\r\ncontent-length: 2\r\n\r\nok"
                            .to_vec(),
                        "/switch" => b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n".to_vec(),
                        "/hang-up" => {
                            let _ = socket
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                                .await;
                            return;
                        }
                        _ => {
                            let body = format!("{{\"n\":{n}}}");
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            )
                            .into_bytes()
                        }
                    };
                    if socket.write_all(&answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (address, accepted)
}

/// What an upstream sends out of turn never reaches a caller: an answer nobody asked for (the connection
/// is dropped, the next call gets its own answer), an endless chunk-size line (the caller's answer breaks
/// at once, long before the timeout, and other calls go on), a 101. A 304 with a length reaches the
/// caller as a 304, by either forwarding path, and the caller's connection stays usable. A path with
/// dot segments is not forwarded.
async fn forwarding_withstands_an_upstream_that_misbehaves(backend: Backend) {
    let (upstream, accepted) = spawn_raw_upstream().await;
    let (app, _t, _g, session) = live_session_with(backend, |s| {
        s.upstream_url = Some(upstream);
        s.workers = Some(1);
        s.upstream_timeout_ms = 20_000;
    })
    .await;
    let call = |method: reqwest::Method, path: &'static str| {
        let app = &app;
        let token = session.access_token.clone();
        async move {
            let mut req = app
                .client
                .request(method.clone(), format!("{}/v1/gst{path}", app.address))
                .bearer_auth(token);
            if method == reqwest::Method::PUT {
                req = req.body("x".repeat(70_000));
            }
            req.send().await.unwrap()
        }
    };
    let get = |path| call(reqwest::Method::GET, path);

    assert_eq!(get("/late-extra").await.bytes().await.unwrap(), &b"ok"[..]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = get("/taxpayer").await;
    assert!(resp.headers().get("x-injected").is_none());
    assert_eq!(
        resp.bytes().await.unwrap(),
        &b"{\"n\":2}"[..],
        "its own answer, on a new connection"
    );

    let started = std::time::Instant::now();
    let flooded = app
        .client
        .get(format!("{}/v1/gst/endless-chunk-line", app.address))
        .bearer_auth(&session.access_token)
        .send()
        .await;
    // Broken before its head went out, or in its body.
    match flooded {
        Ok(resp) => assert!(resp.bytes().await.is_err(), "the answer breaks"),
        Err(error) => assert!(!error.is_timeout(), "{error}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "at the line's limit, not the 20 s timeout"
    );
    assert_eq!(get("/taxpayer").await.status().as_u16(), 200);

    get("/switch")
        .await
        .json::<Value>()
        .await
        .map(|p| assert_eq!(p["code"], "upstream_unavailable"))
        .unwrap();

    // GET takes the lean path, a PUT of 70,000 bytes hyper's client.
    for method in [reqwest::Method::GET, reqwest::Method::PUT] {
        let resp = call(method.clone(), "/not-modified").await;
        assert_eq!(resp.status().as_u16(), 304, "{method}");
        assert_eq!(resp.headers()["etag"], "\"v1\"");
        assert!(resp.bytes().await.unwrap().is_empty());
        assert_eq!(
            get("/taxpayer").await.status().as_u16(),
            200,
            "the caller's connection is still in step after a {method} 304"
        );

        // A length beside a transfer coding is ignored (RFC 9112 §6.3): the chunks are the body.
        let resp = call(method.clone(), "/chunked-with-length").await;
        assert_eq!(resp.status().as_u16(), 200, "{method}");
        assert!(resp.headers().get("content-length").is_none(), "{method}");
        assert_eq!(
            resp.bytes().await.unwrap(),
            &b"first second third"[..],
            "{method}"
        );

        // The upstream's rate-limit fields give way to the gateway's.
        let resp = call(method.clone(), "/ratelimit").await;
        assert_eq!(resp.status().as_u16(), 200, "{method}");
        for name in ["ratelimit", "ratelimit-policy"] {
            let values: Vec<_> = resp.headers().get_all(name).iter().collect();
            assert_eq!(values.len(), 1, "{method} {name}: {values:?}");
            let value = values[0].to_str().unwrap();
            assert!(!value.contains("upstream"), "{method} {name}: {value}");
        }
    }

    let before = accepted.load(Ordering::SeqCst);
    for path in [
        "/v1/gst/returns/../../admin",
        "/v1/gst/returns/..%2f..%2fadmin",
        "/v1/gst/a/..;/admin",
    ] {
        let mut raw = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://"))
            .await
            .unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
            session.access_token
        );
        tokio::io::AsyncWriteExt::write_all(&mut raw, request.as_bytes())
            .await
            .unwrap();
        let mut answer = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut raw, &mut answer)
            .await
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("\"code\":\"invalid_request\""), "{answer}");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        before,
        "nothing reached the upstream"
    );
}

/// CONNECT (which hyper would send in authority form, without the path) and TRACE are not forwarded:
/// 405 `method_not_allowed` once the enforcement has admitted the call, with the rate-limit fields and
/// the `Allow` RFC 9110 requires (a documented path's methods; on any other path, every method the
/// gateway forwards); a bad token is still 401. The sandbox refuses them alike.
async fn connect_and_trace_are_refused_after_the_enforcement(backend: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const FORWARDED: &str = "get, head, post, put, patch, delete, options";
    // An undocumented path and a documented one: with an upstream both are forwarded, for every
    // method but these two.
    let paths = ["/v1/gst/returns/gstr1?ret_period=112025", "/v1/gst/taxpayer"];
    let (upstream, accepted) = spawn_raw_upstream().await;
    let (app, _t, _g, session) = live_session_with(backend, |s| s.upstream_url = Some(upstream)).await;
    let sandbox = spawn_app(backend).await;
    let raw = |address: String, request: String| async move {
        let mut socket = tokio::net::TcpStream::connect(address.trim_start_matches("http://"))
            .await
            .unwrap();
        socket.write_all(request.as_bytes()).await.unwrap();
        // A CONNECT's body runs to the end of the stream: read the answer without waiting for it.
        let mut answer = Vec::new();
        let read = async {
            let mut chunk = [0u8; 4096];
            while !String::from_utf8_lossy(&answer).contains("\"code\"") {
                match socket.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&chunk[..n]),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), read).await.unwrap();
        String::from_utf8_lossy(&answer).to_ascii_lowercase()
    };
    let request = |method: &str, path: &str, token: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\nhost: gateway\r\n\
             authorization: Bearer {token}\r\nconnection: close\r\n\r\n"
        )
    };
    for path in paths {
        for method in ["CONNECT", "TRACE"] {
            let answer = raw(app.address.clone(), request(method, path, &session.access_token)).await;
            assert!(answer.starts_with("http/1.1 405"), "{method} {path}: {answer}");
            assert!(
                answer.contains("content-type: application/problem+json"),
                "{answer}"
            );
            assert!(answer.contains("\"code\":\"method_not_allowed\""), "{answer}");
            assert!(
                answer.contains(&format!("\r\nallow: {FORWARDED}\r\n")),
                "{method} {path}: {answer}"
            );
            assert!(answer.contains("\r\nratelimit: "), "{answer}");
            assert!(answer.contains("\r\nratelimit-policy: "), "{answer}");

            let answer = raw(app.address.clone(), request(method, path, "garbage")).await;
            assert!(answer.starts_with("http/1.1 401"), "{method} {path}: {answer}");
            assert!(answer.contains("\"code\":\"token_invalid\""), "{answer}");
        }
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "nothing reached the upstream");

    let taxpayer = sandbox.create_taxpayer(0).await;
    let gsp = sandbox.create_gsp("Acme GSP").await;
    sandbox.enable_access(&taxpayer, 24).await;
    let session = sandbox.open_session(&gsp, &taxpayer).await;
    // The sandbox serves GET (and HEAD) on its own paths (405 with that `Allow`) and nothing elsewhere (404).
    for (path, status, code) in [
        (paths[0], 404, "not_found"),
        (paths[1], 405, "method_not_allowed"),
    ] {
        for method in ["CONNECT", "TRACE"] {
            let answer = raw(
                sandbox.address.clone(),
                request(method, path, &session.access_token),
            )
            .await;
            assert!(
                answer.starts_with(&format!("http/1.1 {status}")),
                "{method} {path}: {answer}"
            );
            assert!(answer.contains(&format!("\"code\":\"{code}\"")), "{answer}");
            if status == 405 {
                assert!(
                    answer.contains("\r\nallow: get, head\r\n"),
                    "{method} {path}: {answer}"
                );
            }
            assert!(answer.contains("\r\nratelimit: "), "{answer}");
        }
    }
}

/// Calls reuse one upstream connection across answers of every framing read to their end (and small bodies);
/// an answer that ends with the connection is not followed by another on it, and a pooled connection
/// the upstream closed while idle is replaced without the caller noticing.
async fn forwarding_keeps_upstream_connections_alive_across_framings(backend: Backend) {
    let (upstream, accepted) = spawn_raw_upstream().await;
    // One worker: upstream connections are pooled per worker.
    let (app, _t, _g, session) = live_session_with(backend, |s| {
        s.upstream_url = Some(upstream);
        s.workers = Some(1);
    })
    .await;
    let send = |path: &'static str| {
        app.client
            .get(format!("{}/v1/gst{path}", app.address))
            .bearer_auth(&session.access_token)
            .send()
    };
    let get = |path: &'static str| {
        let response = send(path);
        async move {
            let resp = response.await.unwrap();
            let status = resp.status().as_u16();
            let length = resp
                .headers()
                .get("content-length")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, length, resp.bytes().await.unwrap())
        }
    };
    for _ in 0..5 {
        let (status, _, body) = get("/taxpayer").await;
        assert_eq!(
            (status, &body[..]),
            (200, &b"{\"n\":1}"[..]),
            "one connection, reused"
        );
    }
    let (status, _, body) = get("/chunked").await;
    assert_eq!(
        (status, &body[..]),
        (200, &b"first second third"[..]),
        "chunks decoded, trailer dropped"
    );
    let untyped = send("/chunked").await.unwrap();
    assert_eq!(
        untyped.headers().get("content-type"),
        None,
        "no content type made up for a streamed answer without one"
    );
    let (status, length, body) = get("/big").await;
    assert_eq!(
        (status, length.as_deref(), body.len()),
        (200, Some("200000"), 200_000)
    );
    assert!(body.iter().all(|b| *b == b'a'));
    assert_eq!(
        get("/taxpayer").await.2,
        &b"{\"n\":1}"[..],
        "still the first connection"
    );
    // Small bodies of declared length travel the same way, on the same connection.
    for (method, body, length) in [
        (reqwest::Method::PUT, "{\"b2b\":[]}", 10),
        (reqwest::Method::POST, "", 0),
    ] {
        let resp = app
            .client
            .request(method, format!("{}/v1/gst/body-length", app.address))
            .bearer_auth(&session.access_token)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.json::<Value>().await.unwrap()["length"], length);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    let (status, _, body) = get("/until-close").await;
    assert_eq!((status, &body[..]), (200, &b"read until the end"[..]));
    assert_eq!(
        get("/taxpayer").await.2,
        &b"{\"n\":2}"[..],
        "a new connection after one that ended"
    );

    assert_eq!(get("/hang-up").await.2, &b"ok"[..]);
    let (status, _, body) = get("/taxpayer").await;
    assert_eq!(
        (status, &body[..]),
        (200, &b"{\"n\":3}"[..]),
        "the closed pooled connection is replaced: no 502"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

async fn an_upstream_that_is_down_hangs_or_fails_gives_502_or_504(backend: Backend) {
    let hanging = spawn_upstream().await;
    let (app, _t, _g, session) = live_session_with(backend, |s| {
        s.upstream_url = Some(hanging);
        s.upstream_timeout_ms = 300;
    })
    .await;
    app.gst("/v1/gst/slow", &session.access_token)
        .await
        .assert_problem(504, "upstream_timeout");
    // An upstream that fails is a 502 problem, without the upstream's own words.
    let failed = app.gst("/v1/gst/fail", &session.access_token).await;
    failed.assert_problem(502, "upstream_unavailable");
    assert!(!failed.text.contains("secret internals"), "{}", failed.text);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (app, _t, _g, session) = live_session_with(backend, |s| s.upstream_url = Some(dead)).await;
    app.gst("/v1/gst/taxpayer", &session.access_token)
        .await
        .assert_problem(502, "upstream_unavailable");
}

async fn forwarding_streams_bodies_up_to_the_limit_and_keeps_lengths(backend: Backend) {
    let upstream = spawn_upstream().await;
    let (app, _t, _g, session) = live_session_with(backend, |s| {
        s.upstream_url = Some(upstream);
        s.max_body_bytes = 256 * 1024;
        s.upstream_timeout_ms = 1_000;
    })
    .await;
    let url = format!("{}/v1/gst/returns/gstr1", app.address);
    let put = |body: reqwest::Body| {
        app.client
            .put(&url)
            .bearer_auth(&session.access_token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    // A body at the limit arrives whole; the answer keeps the upstream's length (no chunking).
    let whole = "x".repeat(256 * 1024);
    let resp = put(whole.clone().into()).await.unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    assert!(
        resp.headers().get("transfer-encoding").is_none(),
        "{:?}",
        resp.headers()
    );
    let length: usize = resp.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert!(length > whole.len());
    assert_eq!(body["body"].as_str().map(str::len), Some(whole.len()));

    // One byte more is refused before anything is forwarded, declared or streamed.
    let over = "x".repeat(256 * 1024 + 1);
    let resp = put(over.clone().into()).await.unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["code"], "payload_too_large");
    let chunks = || {
        let pieces: Vec<Result<String, std::io::Error>> = over
            .as_bytes()
            .chunks(16 * 1024)
            .map(|c| Ok(String::from_utf8(c.to_vec()).unwrap()))
            .collect();
        reqwest::Body::wrap_stream(futures_util::stream::iter(pieces))
    };
    let resp = put(chunks()).await.unwrap();
    assert_eq!(resp.status().as_u16(), 413, "a chunked body over the limit");
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["code"], "payload_too_large");
    // A GET's chunked body, read whole before forwarding, meets the same limit.
    let resp = app
        .client
        .get(&url)
        .bearer_auth(&session.access_token)
        .header("transfer-encoding", "chunked")
        .body(chunks())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413, "a chunked GET body over the limit");
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["code"], "payload_too_large");

    // A chunked body reaches the upstream whatever the method: a GET's read whole and sent with its
    // length (an upstream that ignores GET bodies must not read chunks as a request), a PUT's chunked.
    for (method, framing, value) in [
        (reqwest::Method::GET, "content-length", "27"),
        (reqwest::Method::PUT, "transfer-encoding", "chunked"),
    ] {
        let chunks = ["{\"gstin\":", "\"27AAPFU0939F1ZV\"}"].map(Ok::<_, std::io::Error>);
        let resp = app
            .client
            .request(method.clone(), &url)
            .bearer_auth(&session.access_token)
            // Said outright: hyper, under reqwest, sends a GET of unknown length without its body.
            .header("transfer-encoding", "chunked")
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201, "{method}");
        let echoed: Value = resp.json().await.unwrap();
        assert_eq!(echoed["body"], "{\"gstin\":\"27AAPFU0939F1ZV\"}", "{method}");
        assert_eq!(echoed["headers"][framing], value, "{method}");
    }

    // An upstream that stalls mid-body is cut off at the deadline: the client sees the answer break
    // rather than hang.
    let resp = app
        .client
        .get(format!("{}/v1/gst/stall", app.address))
        .bearer_auth(&session.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let started = std::time::Instant::now();
    assert!(resp.bytes().await.is_err(), "a stalled body must not complete");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "cut off at the 1 s deadline, not the upstream's 5 s"
    );

    // A small answer of declared length is read whole before it is passed on: one that stalls is a
    // clean 504 rather than a broken answer.
    let started = std::time::Instant::now();
    app.gst("/v1/gst/stall?sized", &session.access_token)
        .await
        .assert_problem(504, "upstream_timeout");
    assert!(started.elapsed() < Duration::from_secs(4));

    // HEAD keeps the upstream's length and carries no body.
    let resp = app
        .client
        .head(format!("{}/v1/gst/taxpayer", app.address))
        .bearer_auth(&session.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let length: usize = resp.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(length > 0, "the GET's length, not the empty body's");
    assert!(resp.bytes().await.unwrap().is_empty());
}

/// An https upstream: `openssl s_server -WWW` (an implementation the gateway does not share) serving
/// files of a temporary directory under a self-signed certificate for 127.0.0.1.
struct TlsUpstream {
    dir: std::path::PathBuf,
    server: std::process::Child,
    port: u16,
}

impl TlsUpstream {
    async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("gsp-gateway-tls-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("registration.json"), "{\"gstin\":\"from-tls\"}").unwrap();
        std::fs::write(
            dir.join("leaf.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        // A CA, and a server certificate for 127.0.0.1 that it signed.
        for args in [
            "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=gsp-gateway-test-ca",
            "req -newkey rsa:2048 -nodes -keyout key.pem -out leaf.csr -subj /CN=127.0.0.1",
            "x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 2 -extfile leaf.ext",
        ] {
            let made = std::process::Command::new("openssl")
                .current_dir(&dir)
                .args(args.split(' '))
                .output()
                .expect("openssl is installed");
            assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = std::process::Command::new("openssl")
            .current_dir(&dir)
            .args([
                "s_server", "-quiet", "-WWW", "-cert", "cert.pem", "-key", "key.pem",
            ])
            .args(["-accept", &format!("127.0.0.1:{port}")])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { dir, server, port }
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn forwarding_speaks_tls_to_an_https_upstream(backend: Backend) {
    let upstream = TlsUpstream::start().await;
    let url = format!("https://127.0.0.1:{}", upstream.port);
    let ca = upstream.dir.join("ca.pem").display().to_string();
    let (app, _t, _g, session) = live_session_with(backend, |s| {
        s.upstream_url = Some(url.clone());
        s.upstream_ca_file = Some(ca);
    })
    .await;
    let resp = app.gst("/v1/gst/registration.json", &session.access_token).await;
    assert_eq!(resp.status.as_u16(), 200, "{}", resp.text);
    assert_eq!(resp.body["gstin"], "from-tls");
    assert!(resp.header("ratelimit").is_some());

    // Without the upstream's CA the certificate is not trusted: nothing is sent, 502.
    let (app, _t, _g, session) = live_session_with(backend, |s| s.upstream_url = Some(url)).await;
    app.gst("/v1/gst/registration.json", &session.access_token)
        .await
        .assert_problem(502, "upstream_unavailable");
}

async fn no_call_started_after_switch_off_is_admitted(backend: Backend) {
    let (app, taxpayer, _gsp, session) = live_session_with(backend, |s| {
        s.session_rate_per_second = 100_000;
        s.session_burst = 100_000;
        s.client_rate_per_second = 100_000;
        s.client_burst = 100_000;
    })
    .await;
    let app = Arc::new(app);
    let switched_off = Arc::new(AtomicBool::new(false));
    let violations = Arc::new(AtomicUsize::new(0));
    let admitted = Arc::new(AtomicUsize::new(0));
    let mut callers = Vec::new();
    for _ in 0..8 {
        let (app, token, switched_off, violations, admitted) = (
            app.clone(),
            session.access_token.clone(),
            switched_off.clone(),
            violations.clone(),
            admitted.clone(),
        );
        callers.push(tokio::spawn(async move {
            for _ in 0..60 {
                let started_after_switch_off = switched_off.load(Ordering::SeqCst);
                let resp = app.gst("/v1/gst/taxpayer", &token).await;
                if resp.status.as_u16() == 200 {
                    admitted.fetch_add(1, Ordering::SeqCst);
                    if started_after_switch_off {
                        violations.fetch_add(1, Ordering::SeqCst);
                    }
                } else {
                    assert_eq!(resp.code(), "api_access_disabled", "{}", resp.text);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.disable_access(&taxpayer).await;
    switched_off.store(true, Ordering::SeqCst);
    for caller in callers {
        caller.await.unwrap();
    }
    assert!(
        admitted.load(Ordering::SeqCst) > 0,
        "some calls ran before the switch-off"
    );
    assert_eq!(
        violations.load(Ordering::SeqCst),
        0,
        "a call that started after the switch-off was admitted"
    );
}

async fn a_revocation_through_one_instance_reaches_another(backend: Backend) {
    let (a, taxpayer, _gsp, session) = live_session_with(backend, |s| s.change_feed_interval_ms = 100).await;
    let b = spawn_on(a.database_url.clone(), a.guard(), a.clock.clone(), |s| {
        s.change_feed_interval_ms = 100
    })
    .await;
    b.gst("/v1/gst/taxpayer", &session.access_token).await.ok(200);
    let started = std::time::Instant::now();
    a.disable_access(&taxpayer).await;
    let mut refused = false;
    while started.elapsed() < Duration::from_secs(1) {
        let resp = b.gst("/v1/gst/taxpayer", &session.access_token).await;
        if resp.status.as_u16() == 403 {
            assert_eq!(resp.code(), "api_access_disabled");
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        refused,
        "instance B still admitted the session 1 s after the switch-off on A"
    );
}

async fn usage_is_recorded_to_the_minute_without_a_write_per_call(backend: Backend) {
    let (app, _taxpayer, _gsp, session) = live_session(backend).await;
    let head = app.state.db.run(audit::head).await.unwrap();
    for _ in 0..5 {
        app.gst("/v1/gst/taxpayer", &session.access_token).await.ok(200);
    }
    assert_eq!(app.state.db.run(audit::head).await.unwrap(), head);
    app.advance(TimeDelta::minutes(2));
    app.gst("/v1/gst/taxpayer", &session.access_token).await.ok(200);
    let flushed = app
        .state
        .view
        .flush_usage(&app.state.db, app.clock.now())
        .await
        .unwrap();
    assert_eq!(flushed, 1);
    let id = session.session_id.clone();
    let last_used: chrono::NaiveDateTime = app
        .state
        .db
        .run(move |c| Ok(sessions::table.find(id).select(sessions::last_used_at).first(c)?))
        .await
        .unwrap();
    let now = app.clock.now();
    assert!(
        now.naive_utc() - last_used < TimeDelta::seconds(61),
        "{last_used} vs {now}"
    );
    assert_eq!(last_used.and_utc().timestamp() % 60, 0, "kept to the minute");
}
