//! Taxpayers manage API access: login and lockout, passwords, the 6-hour-to-30-day window, audit chain.

use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;
use gsp_gateway_storage::repo::audit;
use gsp_gateway_storage::schema::{audit_events, taxpayers};
use serde_json::{Value, json};

use crate::helpers::*;

on_both_backends!(
    enabling_for_six_hours_opens_a_window_that_expires,
    durations_outside_the_portal_range_are_refused,
    re_enabling_starts_a_new_window,
    wrong_passwords_lock_the_account_for_fifteen_minutes,
    concurrent_wrong_passwords_lock_after_five_all_the_same,
    an_expired_password_must_be_changed,
    password_changes_follow_the_policy,
    a_lock_set_while_a_password_change_runs_is_not_lifted,
    of_two_concurrent_password_changes_one_is_stored,
    a_taxpayer_token_only_opens_its_own_taxpayer_api,
    activity_and_audit_chain_record_every_change,
    tampering_with_the_audit_log_is_detected,
    a_saturated_server_queues_then_sheds_logins,
    the_audit_records_a_forwarded_client_only_from_a_trusted_proxy,
);

/// The taxpayer's consecutive failed logins, as stored.
async fn failed_logins(app: &TestApp, taxpayer: &TestTaxpayer) -> i32 {
    let gstin = taxpayer.gstin.clone();
    app.state
        .db
        .run(move |c| {
            Ok(taxpayers::table
                .filter(taxpayers::gstin.eq(gstin))
                .select(taxpayers::failed_logins)
                .first(c)?)
        })
        .await
        .unwrap()
}

/// Logs in and returns the taxpayer token.
pub async fn login(app: &TestApp, taxpayer: &TestTaxpayer) -> String {
    let resp = app
        .post(
            "/v1/taxpayer/login",
            Auth::None,
            json!({"username": taxpayer.username, "password": taxpayer.password}),
        )
        .await;
    let body = resp.ok(200);
    assert_eq!(body["token_type"], "Bearer");
    body["access_token"].as_str().unwrap().to_owned()
}

/// Switches access on for `hours`.
pub async fn enable(app: &TestApp, token: &str, hours: i64) -> Value {
    app.put(
        "/v1/taxpayer/api-access",
        Auth::Bearer(token),
        json!({"enabled": true, "duration_hours": hours}),
    )
    .await
    .ok(200)
    .clone()
}

/// Switches access off.
pub async fn disable(app: &TestApp, token: &str) -> Value {
    app.put(
        "/v1/taxpayer/api-access",
        Auth::Bearer(token),
        json!({"enabled": false}),
    )
    .await
    .ok(200)
    .clone()
}

pub fn at(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().unwrap())
        .unwrap()
        .to_utc()
}

async fn enabling_for_six_hours_opens_a_window_that_expires(backend: Backend) {
    let app = spawn_app(backend).await;
    let taxpayer = app.create_taxpayer(0).await;
    let token = login(&app, &taxpayer).await;

    let initial = app.get("/v1/taxpayer/api-access", Auth::Bearer(&token)).await;
    assert_eq!(
        initial.ok(200),
        &json!({"gstin": taxpayer.gstin, "enabled": false, "status": "disabled", "duration_hours": null, "enabled_at": null, "expires_at": null})
    );

    let before = app.clock.now();
    let access = enable(&app, &token, 6).await;
    let after = app.clock.now();
    assert_eq!(access["status"], "enabled");
    assert_eq!(access["duration_hours"], 6);
    // Timestamps as the contract writes them: whole seconds, UTC (`2026-11-27T05:26:34Z`).
    for field in ["enabled_at", "expires_at"] {
        let text = access[field].as_str().unwrap();
        assert!(
            text.len() == 20 && text.ends_with('Z') && !text.contains('.'),
            "{field}: {text}"
        );
    }
    let enabled_at = at(&access["enabled_at"]);
    assert!(enabled_at > before - TimeDelta::seconds(1) && enabled_at <= after);
    let expires_at = at(&access["expires_at"]);
    assert_eq!(expires_at - enabled_at, TimeDelta::hours(6));

    app.advance(TimeDelta::hours(6) - TimeDelta::seconds(2));
    let token = login(&app, &taxpayer).await;
    let still = app.get("/v1/taxpayer/api-access", Auth::Bearer(&token)).await;
    assert_eq!(still.ok(200)["status"], "enabled");
    app.advance(TimeDelta::seconds(3));
    let expired = app.get("/v1/taxpayer/api-access", Auth::Bearer(&token)).await;
    let body = expired.ok(200);
    assert_eq!(body["status"], "expired");
    assert_eq!(body["enabled"], true);
    assert_eq!(body["duration_hours"], 6, "an expired window keeps its facts");
    assert_eq!(at(&body["expires_at"]), expires_at);
}

async fn durations_outside_the_portal_range_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let taxpayer = app.create_taxpayer(0).await;
    let token = login(&app, &taxpayer).await;
    for bad in [
        json!(5),
        json!(721),
        json!(6.5),
        json!("6"),
        json!(null),
        json!(-6),
        json!(true),
    ] {
        let resp = app
            .put(
                "/v1/taxpayer/api-access",
                Auth::Bearer(&token),
                json!({"enabled": true, "duration_hours": bad}),
            )
            .await;
        resp.assert_problem(422, "invalid_duration");
        assert_eq!(resp.body["errors"][0]["field"], "duration_hours");
        assert!(
            resp.body["detail"].as_str().unwrap().contains("6 to 720"),
            "names the range: {}",
            resp.text
        );
    }
    app.put(
        "/v1/taxpayer/api-access",
        Auth::Bearer(&token),
        json!({"enabled": true}),
    )
    .await
    .assert_problem(422, "invalid_duration");
    app.put(
        "/v1/taxpayer/api-access",
        Auth::Bearer(&token),
        json!({"duration_hours": 6}),
    )
    .await
    .assert_problem(422, "validation_failed");
    app.post_raw(
        "/v1/taxpayer/login",
        Auth::None,
        "application/json",
        b"{\"username\"".to_vec(),
    )
    .await
    .assert_problem(400, "invalid_request");
    let stored = app.get("/v1/taxpayer/api-access", Auth::Bearer(&token)).await;
    assert_eq!(
        stored.ok(200)["status"],
        "disabled",
        "no refused request changed anything"
    );

    for edge in [6, 720] {
        assert_eq!(enable(&app, &token, edge).await["duration_hours"], edge);
    }
    let off = disable(&app, &token).await;
    assert_eq!(off["status"], "disabled");
    assert_eq!(off["expires_at"], json!(null));
}

async fn re_enabling_starts_a_new_window(backend: Backend) {
    let app = spawn_app(backend).await;
    let taxpayer = app.create_taxpayer(0).await;
    let token = login(&app, &taxpayer).await;
    let first = enable(&app, &token, 24).await;
    app.advance(TimeDelta::hours(2));
    let token = login(&app, &taxpayer).await;
    let second = enable(&app, &token, 6).await;
    assert!(at(&second["enabled_at"]) - at(&first["enabled_at"]) >= TimeDelta::hours(2));
    assert_eq!(
        at(&second["expires_at"]) - at(&second["enabled_at"]),
        TimeDelta::hours(6)
    );
}

async fn wrong_passwords_lock_the_account_for_fifteen_minutes(backend: Backend) {
    let app = spawn_app(backend).await;
    let taxpayer = app.create_taxpayer(0).await;
    let wrong = json!({"username": taxpayer.username, "password": "Wrong-Password-1"});
    for _ in 0..4 {
        app.post("/v1/taxpayer/login", Auth::None, wrong.clone())
            .await
            .assert_problem(401, "invalid_credentials");
    }
    let locked = app.post("/v1/taxpayer/login", Auth::None, wrong.clone()).await;
    locked.assert_problem(423, "account_locked");
    assert_eq!(locked.body["gstn_code"], "SWEB9035");
    assert_eq!(locked.header("retry-after"), Some("900"));
    let right = json!({"username": taxpayer.username, "password": taxpayer.password});
    // Whole seconds rounded up: 898.5 s are left.
    app.advance(TimeDelta::milliseconds(1500));
    let still = app.post("/v1/taxpayer/login", Auth::None, right.clone()).await;
    still.assert_problem(423, "account_locked");
    assert_eq!(still.header("retry-after"), Some("899"));
    app.post("/v1/taxpayer/login", Auth::None, wrong.clone())
        .await
        .assert_problem(423, "account_locked");

    app.advance(TimeDelta::minutes(15));
    app.post("/v1/taxpayer/login", Auth::None, right.clone())
        .await
        .ok(200);
    // The success reset the count: four more failures are 401 again.
    for _ in 0..4 {
        app.post("/v1/taxpayer/login", Auth::None, wrong.clone())
            .await
            .assert_problem(401, "invalid_credentials");
    }
    let failures = failed_logins(&app, &taxpayer).await;
    assert_eq!(failures, 4);

    app.post(
        "/v1/taxpayer/login",
        Auth::None,
        json!({"username": "nobody.here", "password": "x"}),
    )
    .await
    .assert_problem(401, "invalid_credentials");
}

async fn an_expired_password_must_be_changed(backend: Backend) {
    let app = spawn_app(backend).await;
    let taxpayer = app.create_taxpayer(0).await;
    app.advance(TimeDelta::days(120));
    let resp = app
        .post(
            "/v1/taxpayer/login",
            Auth::None,
            json!({"username": taxpayer.username, "password": taxpayer.password}),
        )
        .await;
    resp.assert_problem(403, "password_expired");
    assert_eq!(resp.body["gstn_code"], "SWEB9033");
    app.post(
        "/v1/taxpayer/password",
        Auth::None,
        json!({"username": taxpayer.username, "current_password": taxpayer.password, "new_password": "Fresh-Start-2027"}),
    )
    .await
    .ok(204);
    let renewed = TestTaxpayer {
        password: "Fresh-Start-2027".into(),
        ..taxpayer.clone()
    };
    login(&app, &renewed).await;
    app.post(
        "/v1/taxpayer/login",
        Auth::None,
        json!({"username": taxpayer.username, "password": taxpayer.password}),
    )
    .await
    .assert_problem(401, "invalid_credentials");
}

async fn password_changes_follow_the_policy(backend: Backend) {
    let app = spawn_app(backend).await;
    let taxpayer = app.create_taxpayer(0).await;
    let change = |current: &str, new: &str| json!({"username": taxpayer.username, "current_password": current, "new_password": new});
    for (new, reason) in [("weak", "weak_password"), (PASSWORD, "password_unchanged")] {
        let refused = app
            .post("/v1/taxpayer/password", Auth::None, change(PASSWORD, new))
            .await;
        refused.assert_problem(422, "validation_failed");
        assert_eq!(refused.body["reason"], reason, "{}", refused.text);
        assert_eq!(refused.body["errors"][0]["field"], "new_password");
    }
    app.post(
        "/v1/taxpayer/password",
        Auth::None,
        change("Not-The-Password-1", "Whatever-2027"),
    )
    .await
    .assert_problem(401, "invalid_credentials");
    let before = login(&app, &taxpayer).await;
    app.get("/v1/taxpayer/api-access", Auth::Bearer(&before))
        .await
        .ok(200);

    // A changed password ends the taxpayer tokens issued before it (a stolen one included), also
    // one issued in the same second, on every taxpayer call.
    app.post(
        "/v1/taxpayer/password",
        Auth::None,
        change(PASSWORD, "Fresh-Start-2027"),
    )
    .await
    .ok(204);
    let refused = app.get("/v1/taxpayer/api-access", Auth::Bearer(&before)).await;
    refused.assert_problem(401, "token_invalid");
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("password was changed")
    );
    for path in [
        "/v1/taxpayer/activity",
        "/v1/taxpayer/sessions",
        "/v1/taxpayer/otp-requests",
    ] {
        app.get(path, Auth::Bearer(&before))
            .await
            .assert_problem(401, "token_invalid");
    }
    let after = login(
        &app,
        &TestTaxpayer {
            password: "Fresh-Start-2027".into(),
            ..taxpayer.clone()
        },
    )
    .await;
    app.get("/v1/taxpayer/api-access", Auth::Bearer(&after))
        .await
        .ok(200);
}

async fn a_taxpayer_token_only_opens_its_own_taxpayer_api(backend: Backend) {
    let app = spawn_app(backend).await;
    let taxpayer = app.create_taxpayer(0).await;
    let token = login(&app, &taxpayer).await;
    app.get("/v1/taxpayer/api-access", Auth::None)
        .await
        .assert_problem(401, "token_missing");
    app.get("/v1/taxpayer/api-access", Auth::Bearer("not.a.jwt"))
        .await
        .assert_problem(401, "token_invalid");
    app.post("/v1/admin/gsps", Auth::Bearer(&token), json!({"name": "x"}))
        .await
        .assert_problem(401, "token_invalid");
    app.get("/v1/gst/taxpayer", Auth::Bearer(&token))
        .await
        .assert_problem(401, "token_invalid");
    app.post("/v1/gsp/logout", Auth::Bearer(&token), json!({}))
        .await
        .assert_problem(401, "token_invalid");
    app.post(
        "/v1/gsp/otp",
        Auth::Bearer(&token),
        json!({"gstin": taxpayer.gstin, "username": taxpayer.username}),
    )
    .await
    .assert_problem(401, "invalid_client");
    app.delete(
        &format!("/v1/taxpayer/sessions/{}", uuid::Uuid::new_v4()),
        Auth::Bearer(&token),
    )
    .await
    .assert_problem(404, "not_found");
    app.advance(TimeDelta::minutes(31));
    app.get("/v1/taxpayer/api-access", Auth::Bearer(&token))
        .await
        .assert_problem(401, "token_expired");
}

async fn activity_and_audit_chain_record_every_change(backend: Backend) {
    let app = spawn_app(backend).await;
    let taxpayer = app.create_taxpayer(0).await;
    let other = app.create_taxpayer(1).await;
    app.post(
        "/v1/taxpayer/login",
        Auth::None,
        json!({"username": taxpayer.username, "password": "Wrong-1-pass"}),
    )
    .await
    .assert_problem(401, "invalid_credentials");
    let token = login(&app, &taxpayer).await;
    enable(&app, &token, 12).await;
    app.put(
        "/v1/taxpayer/api-access",
        Auth::Bearer(&token),
        json!({"enabled": false}),
    )
    .await
    .ok(200);
    login(&app, &other).await;

    let activity = app
        .get("/v1/taxpayer/activity?limit=10", Auth::Bearer(&token))
        .await;
    let actions: Vec<&str> = activity.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "access.disabled",
            "access.enabled",
            "login.succeeded",
            "login.failed",
            "taxpayer.created"
        ]
    );
    let items = activity.body["items"].as_array().unwrap();
    assert!(
        items.iter().all(|e| e["gstin"] == taxpayer.gstin.as_str()),
        "only this taxpayer's events"
    );
    assert_eq!(items[1]["detail"]["duration_hours"], 12);
    assert_eq!(items[0]["actor"], format!("taxpayer:{}", taxpayer.username));
    assert!(items[0]["ip"].as_str().is_some() && items[0]["request_id"].as_str().is_some());

    let report = app.state.db.run(audit::verify_chain).await.unwrap();
    assert_eq!(report.first_broken, None);
    assert_eq!(report.checked, 7);
}

async fn tampering_with_the_audit_log_is_detected(backend: Backend) {
    let app = spawn_app(backend).await;
    let taxpayer = app.create_taxpayer(0).await;
    let token = login(&app, &taxpayer).await;
    enable(&app, &token, 24).await;
    app.put(
        "/v1/taxpayer/api-access",
        Auth::Bearer(&token),
        json!({"enabled": false}),
    )
    .await
    .ok(200);
    let intact = app.state.db.run(audit::verify_chain).await.unwrap();
    assert_eq!(intact.first_broken, None);
    assert_eq!(intact.checked, 4);

    // Someone rewrites history: the enable event now claims 720 hours.
    app.state
        .db
        .run(|c| {
            diesel::update(audit_events::table.filter(audit_events::id.eq(3)))
                .set(audit_events::detail.eq("{\"duration_hours\":720}"))
                .execute(c)?;
            Ok(())
        })
        .await
        .unwrap();
    let edited = app.state.db.run(audit::verify_chain).await.unwrap();
    assert_eq!(edited.first_broken.as_ref().map(|b| b.0), Some(3), "{edited:?}");

    // The command line says the same, with a failing exit code.
    let settings = gsp_gateway_api::Settings {
        database_url: app.database_url.clone(),
        ..Default::default()
    };
    let code = gsp_gateway_api::cli::execute(
        gsp_gateway_api::cli::Command::Audit(gsp_gateway_api::cli::AuditCommand::Verify),
        settings,
    )
    .await
    .unwrap();
    assert_eq!(code, std::process::ExitCode::from(1));

    // Deleting a row (after putting the edit back cannot be done without the hash) is detected too.
    let fresh = spawn_app(backend).await;
    let t = fresh.create_taxpayer(0).await;
    let tok = login(&fresh, &t).await;
    enable(&fresh, &tok, 24).await;
    fresh
        .state
        .db
        .run(|c| {
            diesel::delete(audit_events::table.filter(audit_events::id.eq(2))).execute(c)?;
            Ok(())
        })
        .await
        .unwrap();
    let deleted = fresh.state.db.run(audit::verify_chain).await.unwrap();
    assert_eq!(deleted.first_broken.as_ref().map(|b| b.0), Some(3), "{deleted:?}");
    // Deleting the newest event breaks the link to the chain head.
    fresh
        .state
        .db
        .run(|c| {
            diesel::delete(audit_events::table.filter(audit_events::id.ge(2))).execute(c)?;
            Ok(())
        })
        .await
        .unwrap();
    let truncated = fresh.state.db.run(audit::verify_chain).await.unwrap();
    assert!(truncated.first_broken.is_some(), "{truncated:?}");
}

/// Twenty wrong passwords at once, with the right one among them: four are counted (401), the fifth
/// locks, everything after is 423, and the right password does not slip through or unlock.
async fn concurrent_wrong_passwords_lock_after_five_all_the_same(backend: Backend) {
    let app = spawn_app(backend).await;
    let taxpayer = app.create_taxpayer(0).await;
    let wrong = json!({"username": taxpayer.username, "password": "Wrong-Password-1"});
    let right = json!({"username": taxpayer.username, "password": taxpayer.password});
    let mut bodies = vec![wrong; 20];
    bodies.insert(10, right.clone());
    let answers = futures_util::future::join_all(
        bodies
            .into_iter()
            .map(|body| app.post("/v1/taxpayer/login", Auth::None, body)),
    )
    .await;
    let count = |status: u16| answers.iter().filter(|r| r.status.as_u16() == status).count();
    let (ok, refused, locked) = (count(200), count(401), count(423));
    assert_eq!(ok + refused + locked, 21, "no other answer");
    // However the right password was ordered among them, at most four wrong ones were counted before
    // the lock, and a success in between resets the count once.
    assert!(
        refused <= 8 && locked >= 12,
        "{ok} × 200, {refused} × 401, {locked} × 423"
    );
    if ok == 0 {
        assert_eq!((refused, locked), (4, 17));
    }
    app.post("/v1/taxpayer/login", Auth::None, right)
        .await
        .assert_problem(423, "account_locked");
}

/// The taxpayer's stored password hash, lock and failure count, and how many `password.changed` events
/// the audit log holds for it.
async fn stored_password(
    app: &TestApp,
    taxpayer: &TestTaxpayer,
) -> (String, Option<chrono::NaiveDateTime>, i32, i64) {
    let gstin = taxpayer.gstin.clone();
    app.state
        .db
        .run(move |c| {
            let (hash, locked_until, failures) = taxpayers::table
                .filter(taxpayers::gstin.eq(&gstin))
                .select((
                    taxpayers::password_hash,
                    taxpayers::locked_until,
                    taxpayers::failed_logins,
                ))
                .first(c)?;
            let changes = audit_events::table
                .filter(audit_events::gstin.eq(&gstin))
                .filter(audit_events::action.eq("password.changed"))
                .count()
                .get_result(c)?;
            Ok((hash, locked_until, failures, changes))
        })
        .await
        .unwrap()
}

/// Waits until `n` password hashes wait for a thread (the turns are held).
async fn until_hashes_wait(app: &TestApp, n: usize) {
    for _ in 0..400 {
        if app.state.heavy.waiting() == n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("{} hashes wait, not {n}", app.state.heavy.waiting());
}

/// A password change checks the lock before it verifies the current password, and argon2 takes a while:
/// failed logins alongside may lock the account in between. The change then answers 423
/// `account_locked` like a login, and neither stores the new password nor lifts the lock.
async fn a_lock_set_while_a_password_change_runs_is_not_lifted(backend: Backend) {
    let app = spawn_app(backend).await;
    let taxpayer = app.create_taxpayer(0).await;
    let (hash_before, ..) = stored_password(&app, &taxpayer).await;
    let turns = app.state.heavy.hold_all().await.unwrap();
    let change = app.post(
        "/v1/taxpayer/password",
        Auth::None,
        json!({"username": taxpayer.username, "current_password": taxpayer.password, "new_password": "Fresh-Start-2027"}),
    );
    let locked_until = app.clock.now() + TimeDelta::minutes(15);
    let lock_meanwhile = async {
        // The change found the account unlocked and waits to verify the current password.
        until_hashes_wait(&app, 1).await;
        let gstin = taxpayer.gstin.clone();
        app.state
            .db
            .run(move |c| {
                // What the fifth failed login in a row writes.
                diesel::update(taxpayers::table.filter(taxpayers::gstin.eq(gstin)))
                    .set((
                        taxpayers::failed_logins.eq(0),
                        taxpayers::locked_until.eq(Some(gsp_gateway_storage::to_db(locked_until))),
                    ))
                    .execute(c)?;
                Ok(())
            })
            .await
            .unwrap();
        drop(turns);
    };
    let (refused, ()) = tokio::join!(change, lock_meanwhile);
    refused.assert_problem(423, "account_locked");
    assert_eq!(refused.body["gstn_code"], "SWEB9035");
    assert!(refused.header("retry-after").is_some(), "{:?}", refused.headers);
    assert!(refused.body["locked_until"].is_string(), "{}", refused.text);

    let (hash, lock, failures, changes) = stored_password(&app, &taxpayer).await;
    assert_eq!(hash, hash_before, "the new password was not stored");
    assert_eq!(
        lock,
        Some(gsp_gateway_storage::to_db(locked_until)),
        "the lock holds"
    );
    assert_eq!((failures, changes), (0, 0));
    let right = json!({"username": taxpayer.username, "password": taxpayer.password});
    app.post("/v1/taxpayer/login", Auth::None, right.clone())
        .await
        .assert_problem(423, "account_locked");

    app.advance(TimeDelta::minutes(15));
    app.post("/v1/taxpayer/login", Auth::None, right).await.ok(200);
    app.post(
        "/v1/taxpayer/login",
        Auth::None,
        json!({"username": taxpayer.username, "password": "Fresh-Start-2027"}),
    )
    .await
    .assert_problem(401, "invalid_credentials");
}

/// Two changes that verified the same current password while the other ran: the first to store wins,
/// the second is answered as a wrong current password (401 `invalid_credentials`) and writes nothing.
async fn of_two_concurrent_password_changes_one_is_stored(backend: Backend) {
    let app = spawn_app(backend).await;
    let taxpayer = app.create_taxpayer(0).await;
    let (hash_before, ..) = stored_password(&app, &taxpayer).await;
    let change = |new: &str| {
        app.post(
            "/v1/taxpayer/password",
            Auth::None,
            json!({"username": taxpayer.username, "current_password": taxpayer.password, "new_password": new}),
        )
    };
    let turns = app.state.heavy.hold_all().await.unwrap();
    let release = async {
        // Both read the same password hash and wait to verify against it.
        until_hashes_wait(&app, 2).await;
        drop(turns);
    };
    let (first, second, ()) = tokio::join!(change("Fresh-Start-2027"), change("Other-Start-2028"), release);
    let (stored, refused, winner, loser) = match (first.status.as_u16(), second.status.as_u16()) {
        (204, _) => (first, second, "Fresh-Start-2027", "Other-Start-2028"),
        (_, 204) => (second, first, "Other-Start-2028", "Fresh-Start-2027"),
        _ => panic!("neither change stored: {} / {}", first.text, second.text),
    };
    stored.ok(204);
    refused.assert_problem(401, "invalid_credentials");

    let (hash, lock, failures, changes) = stored_password(&app, &taxpayer).await;
    assert_ne!(hash, hash_before);
    assert_eq!(
        (lock, failures, changes),
        (None, 0, 1),
        "one change stored and audited; the refused one counted as no failed login"
    );
    login(
        &app,
        &TestTaxpayer {
            password: winner.into(),
            ..taxpayer.clone()
        },
    )
    .await;
    for password in [loser, PASSWORD] {
        app.post(
            "/v1/taxpayer/login",
            Auth::None,
            json!({"username": taxpayer.username, "password": password}),
        )
        .await
        .assert_problem(401, "invalid_credentials");
    }
}

/// Password hashing is bounded (one hash per core, a short queue): while every turn is taken a login
/// waits in the queue and completes when a turn frees; with the queue full, the next is answered 503
/// `service_unavailable` with `Retry-After` at once, and nothing is recorded for it.
async fn a_saturated_server_queues_then_sheds_logins(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.heavy_work_queue = 1).await;
    let taxpayer = app.create_taxpayer(0).await;
    let right = json!({"username": taxpayer.username, "password": taxpayer.password});
    let wrong = json!({"username": taxpayer.username, "password": "Wrong-Password-1"});
    let turns = app.state.heavy.hold_all().await.unwrap();

    let queued = app.post("/v1/taxpayer/login", Auth::None, right.clone());
    let shed_then_release = async {
        until_hashes_wait(&app, 1).await;
        assert_eq!(app.state.heavy.waiting(), 1, "the first login waits for a turn");
        let shed = app.post("/v1/taxpayer/login", Auth::None, wrong.clone()).await;
        drop(turns);
        shed
    };
    let (queued, shed) = tokio::join!(queued, shed_then_release);
    shed.assert_problem(503, "service_unavailable");
    assert_eq!(shed.header("retry-after"), Some("1"));
    queued.ok(200);

    let failures = failed_logins(&app, &taxpayer).await;
    assert_eq!(failures, 0, "a shed attempt is not a failed login");
    assert_eq!(app.state.heavy.waiting(), 0);
    app.post("/v1/taxpayer/login", Auth::None, wrong)
        .await
        .assert_problem(401, "invalid_credentials");
}

/// The address a failed login is recorded with: the one `X-Forwarded-For` names when the connection
/// comes from a trusted proxy (the tests connect from loopback, trusted by default), the connection's
/// own when no proxy is trusted.
async fn the_audit_records_a_forwarded_client_only_from_a_trusted_proxy(backend: Backend) {
    for (trusted, expected) in [(None, "198.51.100.7"), (Some(Vec::new()), "127.0.0.1")] {
        let app = spawn_app_with(backend, |s| {
            if let Some(list) = trusted {
                s.trusted_proxies = list;
            }
        })
        .await;
        let taxpayer = app.create_taxpayer(0).await;
        let failed = app
            .client
            .post(format!("{}/v1/taxpayer/login", app.address))
            .header("X-Forwarded-For", "198.51.100.7")
            .json(&json!({"username": taxpayer.username, "password": "Wrong-Password-1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(failed.status().as_u16(), 401);
        let event = app.activity_event(&taxpayer, "login.failed").await;
        assert_eq!(event["ip"], expected, "{event}");
    }
}
