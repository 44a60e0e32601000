//! The HTTP contract (version 1), statement by statement: what no other test pinned.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use gsp_gateway_api::error::ErrorCode;
use gsp_gateway_storage::schema::{gsp_clients, otp_challenges, otp_inbox, sessions, taxpayers};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::taxpayer::{at, disable, enable};

on_both_backends!(
    every_refusal_is_a_problem_with_the_contracts_members_and_gstn_code,
    a_server_error_tells_nothing_of_its_cause,
    success_bodies_carry_every_member_the_contract_names,
    an_expired_window_keeps_its_facts_and_switching_off_clears_them,
    re_enabling_while_enabled_moves_the_end_of_live_sessions,
    the_access_token_lives_its_configured_time_and_never_past_the_window,
    otp_requests_check_access_then_rate_then_the_session_cap,
    an_otp_rate_limit_says_when_to_retry_in_seconds_rounded_up,
    the_client_limit_spans_a_gsps_sessions_and_is_named_when_nearest,
    a_session_bursts_40_then_makes_20_calls_a_second_by_default,
    a_token_of_one_kind_is_refused_where_another_is_required,
    gsp_calls_trim_and_upper_case_the_gstin_and_take_only_regular_ones,
    the_inbox_holds_the_newest_otp_of_a_gsp_for_its_taxpayer_only,
    switching_access_off_revokes_the_sessions_of_every_gsp,
    a_revoke_or_logout_reaches_another_instance_within_the_default_second,
    openapi_json_is_the_generated_document_and_docs_are_served_offline,
);

/// The contract's table of errors: `code`, status, `gstn_code`.
const ERRORS: &[(&str, u16, Option<&str>)] = &[
    ("invalid_request", 400, Some("GEN5007")),
    ("unsupported_media_type", 415, None),
    ("payload_too_large", 413, None),
    ("validation_failed", 422, Some("GEN5001")),
    ("invalid_gstin", 422, Some("SWEB_9035")),
    ("invalid_duration", 422, None),
    ("not_found", 404, None),
    ("method_not_allowed", 405, None),
    ("conflict", 409, None),
    ("invalid_client", 401, Some("AUT4033")),
    ("invalid_credentials", 401, Some("SWEB9002")),
    ("password_expired", 403, Some("SWEB9033")),
    ("account_locked", 423, Some("SWEB9035")),
    ("taxpayer_not_found", 404, Some("AUTH4032")),
    ("api_access_disabled", 403, Some("AUTH4037")),
    ("api_access_expired", 403, Some("AUTH4037")),
    ("invalid_otp", 401, Some("AUTH4034")),
    ("otp_expired", 401, Some("AUTH4033")),
    ("otp_attempts_exceeded", 429, None),
    ("session_limit_reached", 409, Some("AUTH403")),
    ("token_missing", 401, Some("AUTH4033")),
    ("token_invalid", 401, Some("AUTH4033")),
    ("token_expired", 401, Some("AUTH4038")),
    ("session_expired", 401, Some("AUTH4038")),
    ("session_revoked", 401, Some("AUTH4033")),
    ("refresh_token_reused", 401, Some("AUTH4033")),
    ("rate_limited", 429, None),
    ("upstream_unavailable", 502, None),
    ("upstream_timeout", 504, None),
    ("service_unavailable", 503, None),
    ("internal_error", 500, None),
];

/// The `RateLimit-Policy` of the default settings.
const DEFAULT_POLICY: &str = "\"session\";q=40;w=1, \"client\";q=400;w=1";

fn contract_row(code: &str) -> (u16, Option<&'static str>) {
    ERRORS
        .iter()
        .find(|(c, ..)| *c == code)
        .map(|(_, status, gstn)| (*status, *gstn))
        .unwrap_or_else(|| panic!("`{code}` is not in the contract's table"))
}

/// Asserts the problem members the contract lists, with the table's status and `gstn_code` (absent
/// where the table has none), and notes the code as seen.
#[track_caller]
fn conforms(seen: &mut BTreeSet<String>, resp: &Resp, code: &str) {
    let (status, gstn_code) = contract_row(code);
    resp.assert_problem(status, code);
    for member in ["type", "title", "detail"] {
        assert!(
            resp.body[member].as_str().is_some_and(|s| !s.is_empty()),
            "{code}: no {member}: {}",
            resp.text
        );
    }
    assert_eq!(
        resp.body.get("gstn_code").and_then(Value::as_str),
        gstn_code,
        "{}",
        resp.text
    );
    seen.insert(code.to_owned());
}

/// Asserts a 422 `validation_failed` naming `field` in `detail` and as the one `errors` entry.
#[track_caller]
fn names_the_field(resp: &Resp, field: &str) {
    assert!(
        resp.body["detail"].as_str().is_some_and(|d| d.contains(field)),
        "{}",
        resp.text
    );
    let errors = resp.body["errors"].as_array().expect("an errors member");
    assert_eq!(errors.len(), 1, "{}", resp.text);
    let entry = errors[0].as_object().unwrap();
    assert_eq!(
        entry.keys().map(String::as_str).collect::<Vec<_>>(),
        ["field", "message"]
    );
    assert_eq!(entry["field"], field);
    assert!(entry["message"].as_str().is_some_and(|m| !m.is_empty()));
}

/// Asserts a success answer with a JSON body, and returns the body.
#[track_caller]
fn json_ok(resp: &Resp, status: u16) -> &Value {
    let body = resp.ok(status);
    assert_eq!(
        resp.header("content-type"),
        Some("application/json"),
        "{}",
        resp.text
    );
    body
}

#[track_caller]
fn has_members(value: &Value, names: &[&str]) {
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| value.get(name).is_none())
        .collect();
    assert!(missing.is_empty(), "{missing:?} missing in {value}");
}

/// A timestamp as the contract writes them (`2026-11-27T05:26:34Z`), read.
#[track_caller]
fn stamp(value: &Value) -> DateTime<Utc> {
    let text = value.as_str().unwrap_or_default();
    assert!(
        text.len() == 20 && text.ends_with('Z') && !text.contains('.'),
        "not an RFC 3339 UTC timestamp in whole seconds: {value}"
    );
    at(value)
}

/// The claims of a JWT, unverified.
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// Asserts the RateLimit header fields of a `/v1/gst/` answer: `policy` exactly, and a `RateLimit`
/// that names one of its policies with `r` and `t`.
#[track_caller]
fn carries_ratelimit_fields(resp: &Resp, policy: &str) {
    assert_eq!(
        resp.header("ratelimit-policy"),
        Some(policy),
        "{:?}",
        resp.headers
    );
    let value = resp.header("ratelimit").unwrap_or_default();
    let well_formed = ["\"session\";r=", "\"client\";r="]
        .iter()
        .find_map(|name| value.strip_prefix(name))
        .and_then(|rest| rest.split_once(";t="))
        .is_some_and(|(r, t)| r.parse::<u32>().is_ok() && t.parse::<u64>().is_ok());
    assert!(well_formed, "RateLimit: {value:?}");
}

/// The session's end, as stored, in whole seconds.
async fn stored_end(app: &TestApp, session_id: &str) -> i64 {
    let id = session_id.to_owned();
    let end: chrono::NaiveDateTime = app
        .with_db(move |c| sessions::table.find(id).select(sessions::expires_at).first(c))
        .await;
    end.and_utc().timestamp()
}

/// The taxpayer's sessions as listed, and the one with `session_id`.
async fn listed(app: &TestApp, taxpayer: &TestTaxpayer, session_id: &str) -> Value {
    let token = app.login(taxpayer).await;
    let list = app.get("/v1/taxpayer/sessions", Auth::Bearer(&token)).await;
    list.ok(200)
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session_id"] == session_id)
        .cloned()
        .unwrap_or_else(|| panic!("{session_id} not listed: {}", list.text))
}

async fn every_refusal_is_a_problem_with_the_contracts_members_and_gstn_code(backend: Backend) {
    // The gateway knows exactly the contract's codes, each with the table's status and gstn_code.
    let known: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let table: Vec<&str> = ERRORS.iter().map(|(c, ..)| *c).collect();
    assert_eq!(known, table);
    for code in ErrorCode::ALL {
        let (status, gstn_code) = contract_row(code.as_str());
        assert_eq!(code.status().as_u16(), status, "{}", code.as_str());
        assert_eq!(code.gstn_code(), gstn_code, "{}", code.as_str());
    }

    // And answers them so on the wire.
    let app = spawn_app_with(backend, |s| {
        s.session_cap = 1;
        s.session_rate_per_second = 1;
        s.session_burst = 1;
    })
    .await;
    let taxpayer = app.create_taxpayer(0).await;
    let other = app.create_taxpayer(1).await;
    let gsp = app.create_gsp("Acme GSP").await;
    let basic = Auth::Basic(&gsp.client_id, &gsp.client_secret);
    let admin = Auth::Bearer(ADMIN_TOKEN);
    let mut seen = BTreeSet::new();
    let seen = &mut seen;

    let login = "/v1/taxpayer/login";
    let resp = app
        .post_raw(login, Auth::None, "application/json", b"{\"username\"".to_vec())
        .await;
    conforms(seen, &resp, "invalid_request");
    let resp = app
        .post_raw(login, Auth::None, "text/plain", b"{}".to_vec())
        .await;
    conforms(seen, &resp, "unsupported_media_type");
    let resp = app
        .post_raw(login, Auth::None, "application/json", vec![b' '; 1024 * 1024 + 1])
        .await;
    conforms(seen, &resp, "payload_too_large");
    let resp = app
        .post(login, Auth::None, json!({"username": taxpayer.username}))
        .await;
    conforms(seen, &resp, "validation_failed");
    names_the_field(&resp, "password");
    let wrong = json!({"username": taxpayer.username, "password": "Wrong-Password-1"});
    let resp = app.post(login, Auth::None, wrong).await;
    conforms(seen, &resp, "invalid_credentials");
    let wrong = json!({"username": other.username, "password": "Wrong-Password-1"});
    for _ in 0..4 {
        app.post(login, Auth::None, wrong.clone())
            .await
            .assert_problem(401, "invalid_credentials");
    }
    let resp = app.post(login, Auth::None, wrong).await;
    conforms(seen, &resp, "account_locked");

    let resp = app.get("/no/such/route", Auth::None).await;
    conforms(seen, &resp, "not_found");
    let resp = app.delete("/health/live", Auth::None).await;
    conforms(seen, &resp, "method_not_allowed");
    let duplicate = json!({"gstin": taxpayer.gstin, "username": "someone.else", "password": PASSWORD, "legal_name": "Again"});
    let resp = app.post("/v1/admin/taxpayers", admin.clone(), duplicate).await;
    conforms(seen, &resp, "conflict");
    let resp = app.get("/v1/gsp/search/22AAAAA0000A1Z5", basic.clone()).await;
    conforms(seen, &resp, "invalid_gstin");

    let token = app.login(&taxpayer).await;
    let resp = app
        .get("/v1/taxpayer/activity?limit=abc", Auth::Bearer(&token))
        .await;
    conforms(seen, &resp, "validation_failed");
    names_the_field(&resp, "limit");
    let resp = app
        .put(
            "/v1/taxpayer/api-access",
            Auth::Bearer(&token),
            json!({"enabled": true, "duration_hours": 5}),
        )
        .await;
    conforms(seen, &resp, "invalid_duration");

    let resp = app
        .request_otp(
            &TestGsp {
                client_secret: "wrong".into(),
                ..gsp.clone()
            },
            &taxpayer,
        )
        .await;
    conforms(seen, &resp, "invalid_client");
    let resp = app
        .post(
            "/v1/gsp/otp",
            basic.clone(),
            json!({"gstin": taxpayer.gstin, "username": "nobody.here"}),
        )
        .await;
    conforms(seen, &resp, "taxpayer_not_found");
    let resp = app.request_otp(&gsp, &taxpayer).await;
    conforms(seen, &resp, "api_access_disabled");

    enable(&app, &token, 24).await;
    app.request_otp(&gsp, &taxpayer).await.ok(202);
    let code = app.otp_from_inbox(&taxpayer, &gsp).await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    for _ in 0..4 {
        let resp = app.exchange_otp(&gsp, &taxpayer, wrong).await;
        conforms(seen, &resp, "invalid_otp");
    }
    let resp = app.exchange_otp(&gsp, &taxpayer, wrong).await;
    conforms(seen, &resp, "otp_attempts_exceeded");
    let resp = app.exchange_otp(&gsp, &taxpayer, &code).await;
    conforms(seen, &resp, "otp_expired");

    let session = app.open_session(&gsp, &taxpayer).await;
    let resp = app.request_otp(&gsp, &taxpayer).await;
    conforms(seen, &resp, "session_limit_reached");
    let resp = app.get("/v1/gst/taxpayer", Auth::None).await;
    conforms(seen, &resp, "token_missing");
    let resp = app.gst("/v1/gst/taxpayer", "garbage").await;
    conforms(seen, &resp, "token_invalid");
    app.gst("/v1/gst/taxpayer", &session.access_token).await.ok(200);
    // A burst of one per second: the next call within the second is refused.
    let mut limited = None;
    for _ in 0..5 {
        let resp = app.gst("/v1/gst/taxpayer", &session.access_token).await;
        if resp.status.as_u16() == 429 {
            limited = Some(resp);
            break;
        }
    }
    conforms(seen, &limited.expect("a call was limited"), "rate_limited");
    let next = TestSession::from(app.refresh(&gsp, &session.refresh_token).await.ok(200));
    let resp = app.refresh(&gsp, &session.refresh_token).await;
    conforms(seen, &resp, "refresh_token_reused");
    let resp = app.gst("/v1/gst/taxpayer", &next.access_token).await;
    conforms(seen, &resp, "session_revoked");

    // A session of the first window, which ran out: refresh is over for it even in a new window.
    let old_window = app.open_session(&gsp, &taxpayer).await;
    app.advance(TimeDelta::minutes(31));
    let resp = app.get("/v1/taxpayer/api-access", Auth::Bearer(&token)).await;
    conforms(seen, &resp, "token_expired");
    app.advance(TimeDelta::hours(24));
    let resp = app.request_otp(&gsp, &taxpayer).await;
    conforms(seen, &resp, "api_access_expired");
    app.enable_access(&taxpayer, 24).await;
    let resp = app.refresh(&gsp, &old_window.refresh_token).await;
    conforms(seen, &resp, "session_expired");

    app.advance(TimeDelta::days(120));
    let right = json!({"username": taxpayer.username, "password": taxpayer.password});
    let resp = app.post(login, Auth::None, right).await;
    conforms(seen, &resp, "password_expired");

    app.with_db(|c| c.batch_execute("DROP TABLE audit_chain")).await;
    let resp = app.get("/health/ready", Auth::None).await;
    conforms(seen, &resp, "service_unavailable");

    // The rest (upstream failures, internal errors) are answered by tests of their own.
    let unseen: Vec<&str> = table.iter().copied().filter(|c| !seen.contains(*c)).collect();
    assert_eq!(
        unseen,
        ["upstream_unavailable", "upstream_timeout", "internal_error"]
    );
}

async fn a_server_error_tells_nothing_of_its_cause(backend: Backend) {
    let app = spawn_app(backend).await;
    let drop = match backend {
        Backend::Sqlite => "DROP TABLE audit_events",
        Backend::Postgres => "DROP TABLE audit_events CASCADE",
    };
    app.with_db(move |c| c.batch_execute(drop)).await;
    let failed = app
        .post(
            "/v1/admin/gsps",
            Auth::Bearer(ADMIN_TOKEN),
            json!({"name": "Acme GSP"}),
        )
        .await;
    let mut seen = BTreeSet::new();
    conforms(&mut seen, &failed, "internal_error");
    let text = failed.text.to_ascii_lowercase();
    for internal in [
        "audit_events",
        "table",
        "relation",
        "sqlite",
        "postgres",
        "diesel",
        "sql",
    ] {
        assert!(!text.contains(internal), "{internal}: {}", failed.text);
    }
    let stored: i64 = app.with_db(|c| gsp_clients::table.count().get_result(c)).await;
    assert_eq!(stored, 0, "the failed provisioning left nothing behind");
}

async fn success_bodies_carry_every_member_the_contract_names(backend: Backend) {
    let app = spawn_app(backend).await;
    let taxpayer = app.create_taxpayer(0).await;
    let created = app
        .post(
            "/v1/admin/gsps",
            Auth::Bearer(ADMIN_TOKEN),
            json!({"name": "Acme GSP"}),
        )
        .await;
    let body = json_ok(&created, 201);
    has_members(body, &["client_id", "client_secret", "name", "created_at"]);
    assert_eq!(body["name"], "Acme GSP");
    stamp(&body["created_at"]);
    let gsp = TestGsp {
        client_id: body["client_id"].as_str().unwrap().into(),
        client_secret: body["client_secret"].as_str().unwrap().into(),
        name: "Acme GSP".into(),
    };

    let body = &app.login_body(&taxpayer).await;
    has_members(
        body,
        &["access_token", "token_type", "expires_in", "password_expires_at"],
    );
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_i64().is_some_and(|s| s > 0));
    let changed: chrono::NaiveDateTime = app
        .with_db(|c| taxpayers::table.select(taxpayers::password_changed_at).first(c))
        .await;
    assert_eq!(
        stamp(&body["password_expires_at"]).timestamp(),
        (changed.and_utc() + TimeDelta::days(120)).timestamp(),
        "the password lifetime is 120 days"
    );
    let token = body["access_token"].as_str().unwrap().to_owned();
    let access = enable(&app, &token, 24).await;

    let accepted = app.request_otp(&gsp, &taxpayer).await;
    let body = json_ok(&accepted, 202);
    has_members(body, &["otp_request_id", "expires_in", "delivery"]);
    assert_eq!(
        (&body["expires_in"], &body["delivery"]),
        (&json!(600), &json!("inbox"))
    );
    let otp_request_id = body["otp_request_id"].as_str().unwrap().to_owned();
    let inbox = app.get("/v1/taxpayer/otp-requests", Auth::Bearer(&token)).await;
    let message = &json_ok(&inbox, 200)[0];
    has_members(message, &["id", "gsp_name", "code", "created_at", "expires_at"]);
    assert_eq!(message["id"], otp_request_id.as_str());
    assert_eq!(message["gsp_name"], "Acme GSP");
    let code = message["code"].as_str().unwrap();
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "{code}"
    );
    assert_eq!(
        stamp(&message["expires_at"]) - stamp(&message["created_at"]),
        TimeDelta::minutes(10)
    );

    let issued = app.exchange_otp(&gsp, &taxpayer, code).await;
    let body = json_ok(&issued, 200).clone();
    has_members(
        &body,
        &[
            "access_token",
            "token_type",
            "expires_in",
            "refresh_token",
            "session_id",
            "session_expires_at",
        ],
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(
        stamp(&body["session_expires_at"]),
        stamp(&access["expires_at"]),
        "the session ends with the access window"
    );

    let session = listed(&app, &taxpayer, body["session_id"].as_str().unwrap()).await;
    has_members(
        &session,
        &[
            "session_id",
            "gsp",
            "created_at",
            "last_used_at",
            "expires_at",
            "status",
        ],
    );
    assert_eq!(
        session["gsp"],
        json!({"client_id": gsp.client_id, "name": "Acme GSP"})
    );
    assert_eq!(session["status"], "active");
    stamp(&session["created_at"]);
    stamp(&session["last_used_at"]);
    assert_eq!(stamp(&session["expires_at"]), stamp(&body["session_expires_at"]));

    let event_members = [
        "id",
        "at",
        "actor",
        "action",
        "gstin",
        "gsp_client_id",
        "session_id",
        "ip",
        "request_id",
        "detail",
    ];
    let token = app.login(&taxpayer).await;
    for (path, auth) in [
        ("/v1/taxpayer/activity", Auth::Bearer(&token)),
        ("/v1/admin/audit", Auth::Bearer(ADMIN_TOKEN)),
    ] {
        let page = app.get(path, auth).await;
        let body = json_ok(&page, 200);
        has_members(body, &["items", "next_before"]);
        let items = body["items"].as_array().unwrap();
        assert!(!items.is_empty(), "{path}");
        for event in items {
            has_members(event, &event_members);
            stamp(&event["at"]);
        }
        let created = items
            .iter()
            .find(|e| e["action"] == "session.created")
            .unwrap_or_else(|| panic!("{path}: no session.created"));
        assert_eq!(
            (&created["gsp_client_id"], &created["session_id"]),
            (&json!(gsp.client_id), &session["session_id"]),
        );
    }

    let found = app
        .get(
            &format!("/v1/gsp/search/{}", taxpayer.gstin),
            Auth::Basic(&gsp.client_id, &gsp.client_secret),
        )
        .await;
    let body = json_ok(&found, 200);
    has_members(
        body,
        &[
            "gstin",
            "legal_name",
            "trade_name",
            "state_code",
            "status",
            "registered_on",
        ],
    );
    assert_eq!(body["trade_name"], "Taxpayer 0");
    let registered = body["registered_on"].as_str().unwrap();
    assert!(
        chrono::NaiveDate::parse_from_str(registered, "%Y-%m-%d").is_ok(),
        "{registered}"
    );
}

async fn an_expired_window_keeps_its_facts_and_switching_off_clears_them(backend: Backend) {
    let app = spawn_app(backend).await;
    let taxpayer = app.create_taxpayer(0).await;
    let token = app.login(&taxpayer).await;
    let on = enable(&app, &token, 6).await;
    app.advance(TimeDelta::hours(6) + TimeDelta::seconds(1));
    let token = app.login(&taxpayer).await;
    let expired = app.get("/v1/taxpayer/api-access", Auth::Bearer(&token)).await;
    assert_eq!(
        expired.ok(200),
        &json!({"gstin": taxpayer.gstin, "enabled": true, "status": "expired", "duration_hours": 6,
                "enabled_at": on["enabled_at"], "expires_at": on["expires_at"]})
    );

    let disabled = json!({"gstin": taxpayer.gstin, "enabled": false, "status": "disabled",
                          "duration_hours": null, "enabled_at": null, "expires_at": null});
    assert_eq!(disable(&app, &token).await, disabled);
    let read = app.get("/v1/taxpayer/api-access", Auth::Bearer(&token)).await;
    assert_eq!(read.ok(200), &disabled);
    let stored = app
        .with_db(|c| {
            let id: String = taxpayers::table.select(taxpayers::id).first(c)?;
            gsp_gateway_storage::repo::access::get(c, &id)
        })
        .await;
    assert_eq!(stored, gsp_gateway_domain::ApiAccess::Disabled);
}

async fn re_enabling_while_enabled_moves_the_end_of_live_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    let taxpayer = app.create_taxpayer(0).await;
    let gsp = app.create_gsp("Acme GSP").await;
    let token = app.login(&taxpayer).await;
    let first = enable(&app, &token, 6).await;
    let issued = app.consent(&gsp, &taxpayer).await;
    assert_eq!(stamp(&issued["session_expires_at"]), stamp(&first["expires_at"]));
    let live = TestSession::from(&issued);
    let ended = app.open_session(&gsp, &taxpayer).await;
    app.post("/v1/gsp/logout", Auth::Bearer(&ended.access_token), json!({}))
        .await
        .ok(204);

    // A longer window an hour later: the live session now ends with it; the ended one stays ended.
    app.advance(TimeDelta::hours(1));
    let token = app.login(&taxpayer).await;
    let longer = enable(&app, &token, 24).await;
    let longer_end = stamp(&longer["expires_at"]);
    assert_eq!(stored_end(&app, &live.session_id).await, longer_end.timestamp());
    assert_eq!(
        stored_end(&app, &ended.session_id).await,
        stamp(&first["expires_at"]).timestamp(),
        "a revoked session is not moved"
    );
    let shown = listed(&app, &taxpayer, &live.session_id).await;
    assert_eq!(stamp(&shown["expires_at"]), longer_end);

    // Past the first window's end, the session refreshes and works.
    app.advance(TimeDelta::hours(6));
    let refreshed = app.refresh(&gsp, &live.refresh_token).await;
    let body = refreshed.ok(200).clone();
    assert_eq!(stamp(&body["session_expires_at"]), longer_end);
    let next = TestSession::from(&body);
    app.gst("/v1/gst/taxpayer", &next.access_token).await.ok(200);

    // A shorter window pulls the end in, and the session ends with it.
    let token = app.login(&taxpayer).await;
    let shorter = enable(&app, &token, 6).await;
    let shorter_end = stamp(&shorter["expires_at"]);
    assert!(shorter_end < longer_end);
    assert_eq!(stored_end(&app, &live.session_id).await, shorter_end.timestamp());
    app.advance(TimeDelta::hours(6));
    let shown = listed(&app, &taxpayer, &live.session_id).await;
    assert_eq!(stamp(&shown["expires_at"]), shorter_end);
    assert_eq!(shown["status"], "expired");
    let ended_shown = listed(&app, &taxpayer, &ended.session_id).await;
    assert_eq!(ended_shown["status"], "revoked");
    app.refresh(&gsp, &next.refresh_token)
        .await
        .assert_problem(403, "api_access_expired");
}

async fn the_access_token_lives_its_configured_time_and_never_past_the_window(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.access_token_ttl_secs = 3600).await;
    let taxpayer = app.create_taxpayer(0).await;
    let gsp = app.create_gsp("Acme GSP").await;
    app.enable_access(&taxpayer, 6).await;
    let issued = app.consent(&gsp, &taxpayer).await;
    assert_eq!(issued["expires_in"], 3600);
    let token = claims(issued["access_token"].as_str().unwrap());
    assert_eq!(
        token["exp"].as_i64().unwrap() - token["iat"].as_i64().unwrap(),
        3600
    );

    // Half an hour before the window ends, a new session's first token ends with the window.
    app.advance(TimeDelta::hours(5) + TimeDelta::minutes(30));
    let late = app.consent(&gsp, &taxpayer).await;
    let expires_in = late["expires_in"].as_i64().unwrap();
    assert!((1800 - 5..=1800).contains(&expires_in), "{expires_in}");
    let token = claims(late["access_token"].as_str().unwrap());
    assert!(
        token["exp"].as_i64().unwrap() <= stamp(&late["session_expires_at"]).timestamp() + 1,
        "{token} after {}",
        late["session_expires_at"]
    );
}

async fn otp_requests_check_access_then_rate_then_the_session_cap(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.otp_rate_limit = 3).await;
    let taxpayer = app.create_taxpayer(0).await;
    let gsp = app.create_gsp("Acme GSP").await;
    app.enable_access(&taxpayer, 24).await;
    for _ in 0..3 {
        app.open_session(&gsp, &taxpayer).await;
    }
    // Both the rate and the cap are exhausted: the rate is checked first.
    app.request_otp(&gsp, &taxpayer)
        .await
        .assert_problem(429, "rate_limited");
    // Access (switched off) is checked before the rate (still exhausted).
    app.disable_access(&taxpayer).await;
    app.request_otp(&gsp, &taxpayer)
        .await
        .assert_problem(403, "api_access_disabled");
    let challenges: i64 = app.with_db(|c| otp_challenges::table.count().get_result(c)).await;
    assert_eq!(challenges, 3, "the refused requests opened no challenge");
}

async fn an_otp_rate_limit_says_when_to_retry_in_seconds_rounded_up(backend: Backend) {
    let app = spawn_app(backend).await;
    let taxpayer = app.create_taxpayer(0).await;
    let gsp = app.create_gsp("Acme GSP").await;
    app.enable_access(&taxpayer, 24).await;
    for _ in 0..5 {
        app.request_otp(&gsp, &taxpayer).await.ok(202);
    }
    let oldest: chrono::NaiveDateTime = app
        .with_db(|c| {
            otp_challenges::table
                .select(otp_challenges::created_at)
                .order(otp_challenges::created_at)
                .first(c)
        })
        .await;
    // The sixth request is allowed once the oldest of the five leaves the 15-minute window.
    let free_at = oldest.and_utc() + TimeDelta::minutes(15);
    let micros = |d: TimeDelta| d.num_microseconds().unwrap();
    let ceil_secs = |d: TimeDelta| (micros(d) + 999_999).div_euclid(1_000_000);
    for (left, expected) in [
        (TimeDelta::milliseconds(1500), 2),
        (TimeDelta::milliseconds(300), 1),
    ] {
        app.advance(free_at - left - app.clock.now());
        let before = app.clock.now();
        let limited = app.request_otp(&gsp, &taxpayer).await;
        let after = app.clock.now();
        limited.assert_problem(429, "rate_limited");
        assert_eq!(
            (ceil_secs(free_at - before), ceil_secs(free_at - after)),
            (expected, expected),
            "the request took too long to tell ({before} .. {after})"
        );
        assert_eq!(
            limited.header("retry-after"),
            Some(expected.to_string().as_str()),
            "{left:?} left"
        );
    }
}

async fn the_client_limit_spans_a_gsps_sessions_and_is_named_when_nearest(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.client_rate_per_second = 1;
        s.client_burst = 3;
    })
    .await;
    let first_taxpayer = app.create_taxpayer(0).await;
    let second_taxpayer = app.create_taxpayer(1).await;
    let gsp = app.create_gsp("Acme GSP").await;
    let other_gsp = app.create_gsp("Other GSP").await;
    for t in [&first_taxpayer, &second_taxpayer] {
        app.enable_access(t, 24).await;
    }
    let first = app.open_session(&gsp, &first_taxpayer).await;
    let second = app.open_session(&gsp, &second_taxpayer).await;
    let bystander = app.open_session(&other_gsp, &first_taxpayer).await;
    let policy = "\"session\";q=40;w=1, \"client\";q=3;w=1";

    let resp = app.gst("/v1/gst/taxpayer", &first.access_token).await;
    resp.ok(200);
    assert_eq!(resp.header("ratelimit-policy"), Some(policy));
    assert_eq!(
        resp.header("ratelimit"),
        Some("\"client\";r=2;t=0"),
        "2 of 3 left for the client is nearer exhaustion than 39 of 40 for the session"
    );
    // The other session of the same GSP draws on the same client budget.
    let started = Instant::now();
    let burst: Vec<Resp> =
        futures_util::future::join_all((0..6).map(|_| app.gst("/v1/gst/taxpayer", &second.access_token)))
            .await;
    let admitted = burst.iter().filter(|r| r.status.as_u16() == 200).count() as u64;
    assert!(
        admitted <= 2 + started.elapsed().as_secs() + 1,
        "{admitted} admitted"
    );
    let limited = burst
        .iter()
        .find(|r| r.status.as_u16() == 429)
        .expect("the client limit refused some");
    limited.assert_problem(429, "rate_limited");
    assert_eq!(limited.header("ratelimit"), Some("\"client\";r=0;t=1"));
    assert_eq!(limited.header("retry-after"), Some("1"));
    carries_ratelimit_fields(limited, policy);

    // Another GSP's budget is its own.
    let resp = app.gst("/v1/gst/taxpayer", &bystander.access_token).await;
    resp.ok(200);
    assert_eq!(resp.header("ratelimit"), Some("\"client\";r=2;t=0"));
}

/// Calls the sandbox `n` times at once with `token`; how many were admitted.
async fn admitted_of(app: &TestApp, token: &str, n: usize) -> usize {
    let answers = futures_util::future::join_all((0..n).map(|_| app.gst("/v1/gst/taxpayer", token))).await;
    for refused in answers.iter().filter(|r| r.status.as_u16() != 200) {
        refused.assert_problem(429, "rate_limited");
    }
    answers.iter().filter(|r| r.status.as_u16() == 200).count()
}

async fn a_session_bursts_40_then_makes_20_calls_a_second_by_default(backend: Backend) {
    let app = spawn_app(backend).await;
    let taxpayer = app.create_taxpayer(0).await;
    let gsp = app.create_gsp("Acme GSP").await;
    app.enable_access(&taxpayer, 24).await;
    let session = app.open_session(&gsp, &taxpayer).await;
    let started = Instant::now();
    let first = admitted_of(&app, &session.access_token, 60).await;
    // The burst, and no more than what refilled while the 60 calls ran (a loaded machine is slow).
    let refilled = 20.0 * started.elapsed().as_secs_f64() + 1.0;
    assert!(
        first >= 40 && first as f64 <= 40.0 + refilled,
        "{first} of 60 admitted at once"
    );
    // The bucket is empty now: a second refills 20 calls.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = admitted_of(&app, &session.access_token, 40).await;
    // The burst, and 20 a second for as long as the calls ran (no faster).
    let most = 40.0 + 20.0 * started.elapsed().as_secs_f64() + 1.0;
    assert!(
        second >= 20 && (first + second) as f64 <= most,
        "{first} at once, then {second} of 40 a second later"
    );
}

async fn a_token_of_one_kind_is_refused_where_another_is_required(backend: Backend) {
    let app = spawn_app(backend).await;
    let taxpayer = app.create_taxpayer(0).await;
    let gsp = app.create_gsp("Acme GSP").await;
    app.enable_access(&taxpayer, 24).await;
    let session = app.open_session(&gsp, &taxpayer).await;
    let session_token = Auth::Bearer(&session.access_token);

    for path in [
        "/v1/taxpayer/api-access",
        "/v1/taxpayer/sessions",
        "/v1/admin/audit",
    ] {
        app.get(path, session_token.clone())
            .await
            .assert_problem(401, "token_invalid");
    }
    app.put(
        "/v1/taxpayer/api-access",
        session_token.clone(),
        json!({"enabled": false}),
    )
    .await
    .assert_problem(401, "token_invalid");
    for path in ["/v1/gst/taxpayer", "/v1/taxpayer/api-access"] {
        app.get(path, Auth::Bearer(ADMIN_TOKEN))
            .await
            .assert_problem(401, "token_invalid");
    }
    // An access token is no refresh token: refused, and nothing is revoked.
    app.refresh(&gsp, &session.access_token)
        .await
        .assert_problem(401, "token_invalid");
    assert_eq!(app.revoked_reason(&session.session_id).await, None);
    app.gst("/v1/gst/taxpayer", &session.access_token).await.ok(200);
    app.refresh(&gsp, &session.refresh_token).await.ok(200);
    let token = app.login(&taxpayer).await;
    let access = app.get("/v1/taxpayer/api-access", Auth::Bearer(&token)).await;
    assert_eq!(
        access.ok(200)["status"],
        "enabled",
        "the refused switch-off changed nothing"
    );
}

async fn gsp_calls_trim_and_upper_case_the_gstin_and_take_only_regular_ones(backend: Backend) {
    let app = spawn_app(backend).await;
    let taxpayer = app.create_taxpayer(0).await;
    let gsp = app.create_gsp("Acme GSP").await;
    let basic = Auth::Basic(&gsp.client_id, &gsp.client_secret);
    app.enable_access(&taxpayer, 24).await;
    let sloppy = format!(" {} ", taxpayer.gstin.to_lowercase());
    app.post(
        "/v1/gsp/otp",
        basic.clone(),
        json!({"gstin": sloppy, "username": taxpayer.username}),
    )
    .await
    .ok(202);
    let otp = app.otp_from_inbox(&taxpayer, &gsp).await;
    let issued = app
        .post(
            "/v1/gsp/token",
            basic.clone(),
            json!({"grant_type": "otp", "gstin": sloppy, "username": taxpayer.username, "otp": otp}),
        )
        .await;
    let session = TestSession::from(issued.ok(200));
    let details = app.gst("/v1/gst/taxpayer", &session.access_token).await;
    assert_eq!(details.ok(200)["gstin"], taxpayer.gstin.as_str());
    let found = app
        .get(
            &format!("/v1/gsp/search/%20{}%20", taxpayer.gstin.to_lowercase()),
            basic.clone(),
        )
        .await;
    assert_eq!(found.ok(200)["gstin"], taxpayer.gstin.as_str());

    // The right check character, but a 14th character other than `Z`: not a regular registration.
    let resp = app.get("/v1/gsp/search/24AAUPV7468F1YY", basic).await;
    resp.assert_problem(422, "invalid_gstin");
    assert!(
        resp.body["detail"].as_str().unwrap().contains("regular"),
        "{}",
        resp.text
    );
}

async fn the_inbox_holds_the_newest_otp_of_a_gsp_for_its_taxpayer_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let taxpayer = app.create_taxpayer(0).await;
    let other = app.create_taxpayer(1).await;
    let gsp = app.create_gsp("Acme GSP").await;
    app.enable_access(&taxpayer, 24).await;
    app.request_otp(&gsp, &taxpayer).await.ok(202);
    let newer = app.request_otp(&gsp, &taxpayer).await;
    let newer_id = newer.ok(202)["otp_request_id"].as_str().unwrap().to_owned();

    let token = app.login(&taxpayer).await;
    let inbox = app.get("/v1/taxpayer/otp-requests", Auth::Bearer(&token)).await;
    let ids: Vec<&str> = inbox
        .ok(200)
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [newer_id.as_str()], "the replaced OTP's message is gone");
    let stored: i64 = app.with_db(|c| otp_inbox::table.count().get_result(c)).await;
    assert_eq!(stored, 1);

    let other_token = app.login(&other).await;
    let theirs = app
        .get("/v1/taxpayer/otp-requests", Auth::Bearer(&other_token))
        .await;
    assert_eq!(theirs.ok(200), &json!([]), "another taxpayer reads none of it");
}

async fn switching_access_off_revokes_the_sessions_of_every_gsp(backend: Backend) {
    let app = spawn_app(backend).await;
    let taxpayer = app.create_taxpayer(0).await;
    let first_gsp = app.create_gsp("Acme GSP").await;
    let second_gsp = app.create_gsp("Other GSP").await;
    app.enable_access(&taxpayer, 24).await;
    let first = app.open_session(&first_gsp, &taxpayer).await;
    let second = app.open_session(&second_gsp, &taxpayer).await;
    app.disable_access(&taxpayer).await;
    for (gsp, session) in [(&first_gsp, &first), (&second_gsp, &second)] {
        assert_eq!(
            app.revoked_reason(&session.session_id).await.as_deref(),
            Some("access_disabled")
        );
        assert_eq!(
            listed(&app, &taxpayer, &session.session_id).await["status"],
            "revoked"
        );
        let refused = app.gst("/v1/gst/taxpayer", &session.access_token).await;
        refused.assert_problem(403, "api_access_disabled");
        carries_ratelimit_fields(&refused, DEFAULT_POLICY);
        app.refresh(gsp, &session.refresh_token)
            .await
            .assert_problem(403, "api_access_disabled");
    }
    // Switched on again, the ended sessions stay ended (and say so, with the rate-limit fields).
    app.enable_access(&taxpayer, 24).await;
    for session in [&first, &second] {
        let refused = app.gst("/v1/gst/taxpayer", &session.access_token).await;
        refused.assert_problem(401, "session_revoked");
        carries_ratelimit_fields(&refused, DEFAULT_POLICY);
    }
}

/// Calls `b` with the session's token until it is refused, for at most the contract's default
/// propagation time from `started`; that refusal must be `session_revoked`.
async fn refused_within_a_second(b: &TestApp, session: &TestSession, started: Instant, what: &str) {
    while started.elapsed() < Duration::from_secs(1) {
        let resp = b.gst("/v1/gst/taxpayer", &session.access_token).await;
        if resp.status.as_u16() != 200 {
            resp.assert_problem(401, "session_revoked");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("instance B still admits the session 1 s after the {what}");
}

async fn a_revoke_or_logout_reaches_another_instance_within_the_default_second(backend: Backend) {
    let a = spawn_app(backend).await;
    let taxpayer = a.create_taxpayer(0).await;
    let gsp = a.create_gsp("Acme GSP").await;
    a.enable_access(&taxpayer, 24).await;
    let revoked = a.open_session(&gsp, &taxpayer).await;
    let logged_out = a.open_session(&gsp, &taxpayer).await;
    let b = spawn_on(a.database_url.clone(), a.guard(), a.clock.clone(), |_| {}).await;
    for session in [&revoked, &logged_out] {
        b.gst("/v1/gst/taxpayer", &session.access_token).await.ok(200);
    }
    let token = a.login(&taxpayer).await;

    let started = Instant::now();
    a.delete(
        &format!("/v1/taxpayer/sessions/{}", revoked.session_id),
        Auth::Bearer(&token),
    )
    .await
    .ok(204);
    refused_within_a_second(&b, &revoked, started, "revoke").await;

    let started = Instant::now();
    a.post(
        "/v1/gsp/logout",
        Auth::Bearer(&logged_out.access_token),
        json!({}),
    )
    .await
    .ok(204);
    refused_within_a_second(&b, &logged_out, started, "logout").await;
}

async fn openapi_json_is_the_generated_document_and_docs_are_served_offline(backend: Backend) {
    let app = spawn_app(backend).await;
    let served = app.get("/openapi.json", Auth::None).await;
    assert_eq!(
        served.ok(200),
        &gsp_gateway_api::openapi::document(),
        "the document openapi.yaml is generated from"
    );
    let docs = app.get("/docs", Auth::None).await;
    assert!(docs.status.is_redirection(), "{}", docs.status);
    assert_eq!(docs.header("location"), Some("/docs/"));
    let page = app.get("/docs/", Auth::None).await;
    assert_eq!(page.status.as_u16(), 200);
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        page.headers
    );
    let html = page.text.to_ascii_lowercase();
    for outside in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(!html.contains(outside), "the docs load {outside}…: {}", page.text);
    }
    // Its assets come from the gateway itself.
    let initializer = app.get("/docs/swagger-initializer.js", Auth::None).await;
    assert_eq!(initializer.status.as_u16(), 200, "{}", initializer.text);
    assert!(initializer.text.contains("/openapi.json"), "{}", initializer.text);
}
