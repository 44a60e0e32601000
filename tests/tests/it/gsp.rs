//! GSP sessions: client credentials, OTP consent, EdDSA session tokens, refresh, logout, GSTIN search.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::TimeDelta;
use diesel::prelude::*;
use gsp_gateway_api::services::provisioning;
use gsp_gateway_domain::secret::sha256_hex;
use gsp_gateway_storage::repo::gsp_clients;
use gsp_gateway_storage::schema::{otp_challenges, otp_inbox, refresh_tokens, sessions};
use serde_json::{Value, json};

use crate::helpers::*;

on_both_backends!(
    the_whole_flow_from_consent_to_logout,
    client_credentials_are_checked,
    otp_requests_are_refused_in_the_contract_order,
    otp_requests_are_rate_limited_per_taxpayer_and_gsp,
    the_session_cap_refuses_a_fourth_session,
    wrong_otps_count_down_and_void_the_challenge,
    an_otp_expires_replaces_and_is_single_use,
    refresh_tokens_are_single_use_and_reuse_revokes,
    refresh_ends_with_the_access_window,
    forged_and_bent_tokens_are_refused,
    tokens_survive_a_restart_and_a_key_rotation,
    gstin_search_verifies_registrations,
    every_step_appears_in_the_taxpayer_activity,
    secrets_are_stored_hashed,
    disabling_a_gsp_ends_its_sessions_everywhere,
    a_rotated_secret_replaces_the_old_one_at_once,
    a_client_disabled_after_it_authenticated_gets_no_session,
    concurrent_wrong_otps_are_each_counted,
    a_session_issued_while_access_is_switched_off_does_not_survive,
    an_expired_otp_leaves_the_inbox_without_being_read,
    switching_access_off_voids_the_pending_otps,
);

async fn setup(backend: Backend) -> (TestApp, TestTaxpayer, TestGsp) {
    let app = spawn_app(backend).await;
    let taxpayer = app.create_taxpayer(0).await;
    let gsp = app.create_gsp("Acme GSP").await;
    (app, taxpayer, gsp)
}

async fn the_whole_flow_from_consent_to_logout(backend: Backend) {
    let (app, taxpayer, gsp) = setup(backend).await;
    app.enable_access(&taxpayer, 24).await;
    let otp = app.request_otp(&gsp, &taxpayer).await;
    let body = otp.ok(202);
    assert_eq!(body["expires_in"], 600);
    assert_eq!(body["delivery"], "inbox");
    let code = app.otp_from_inbox(&taxpayer, &gsp).await;
    assert_eq!(code.len(), 6);

    let token = app.exchange_otp(&gsp, &taxpayer, &code).await;
    let body = token.ok(200).clone();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 6 * 3600);
    assert_eq!(token.header("cache-control"), Some("no-store"));
    let session = TestSession::from(&body);
    let taxpayer_token = app.login(&taxpayer).await;
    let inbox = app
        .get("/v1/taxpayer/otp-requests", Auth::Bearer(&taxpayer_token))
        .await;
    assert_eq!(inbox.ok(200), &json!([]), "a used OTP leaves the inbox");

    let details = app.gst("/v1/gst/taxpayer", &session.access_token).await;
    assert_eq!(details.ok(200)["gstin"], taxpayer.gstin.as_str());

    let first = app.refresh(&gsp, &session.refresh_token).await;
    let first = TestSession::from(first.ok(200));
    assert_eq!(first.session_id, session.session_id);
    assert_ne!(first.refresh_token, session.refresh_token);
    let second = TestSession::from(app.refresh(&gsp, &first.refresh_token).await.ok(200));
    app.gst("/v1/gst/taxpayer", &second.access_token).await.ok(200);

    app.post("/v1/gsp/logout", Auth::Bearer(&second.access_token), json!({}))
        .await
        .ok(204);
    app.gst("/v1/gst/taxpayer", &second.access_token)
        .await
        .assert_problem(401, "session_revoked");
    app.post("/v1/gsp/logout", Auth::Bearer(&second.access_token), json!({}))
        .await
        .assert_problem(401, "session_revoked");
    app.refresh(&gsp, &second.refresh_token)
        .await
        .assert_problem(401, "session_revoked");

    let sessions = app
        .get("/v1/taxpayer/sessions", Auth::Bearer(&taxpayer_token))
        .await;
    let list = sessions.ok(200).as_array().unwrap().clone();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["status"], "revoked");
    assert_eq!(list[0]["gsp"]["name"], "Acme GSP");
}

async fn client_credentials_are_checked(backend: Backend) {
    let (app, taxpayer, gsp) = setup(backend).await;
    app.enable_access(&taxpayer, 24).await;
    let body = json!({"gstin": taxpayer.gstin, "username": taxpayer.username});
    let missing = app.post("/v1/gsp/otp", Auth::None, body.clone()).await;
    missing.assert_problem(401, "invalid_client");
    assert!(
        missing
            .header("www-authenticate")
            .is_some_and(|h| h.starts_with("Basic"))
    );
    assert_eq!(missing.body["gstn_code"], "AUT4033");
    app.post("/v1/gsp/otp", Auth::Basic(&gsp.client_id, "wrong"), body.clone())
        .await
        .assert_problem(401, "invalid_client");
    app.post(
        "/v1/gsp/otp",
        Auth::Basic("l7xxunknown", &gsp.client_secret),
        body.clone(),
    )
    .await
    .assert_problem(401, "invalid_client");
    // Credentials come first: wrong ones are told so, whatever the body (which is not read).
    let wrong = Auth::Basic(&gsp.client_id, "wrong");
    for (path, broken) in [
        ("/v1/gsp/otp", json!({"gstin": "x"})),
        ("/v1/gsp/token", json!({"grant_type": "otp", "otp": 123456})),
        ("/v1/gsp/token", json!({"grant_type": "password"})),
    ] {
        app.post(path, wrong.clone(), broken)
            .await
            .assert_problem(401, "invalid_client");
    }
    app.post_raw("/v1/gsp/otp", wrong.clone(), "text/plain", b"{".to_vec())
        .await
        .assert_problem(401, "invalid_client");
    app.get(&format!("/v1/gsp/search/{}", taxpayer.gstin), Auth::None)
        .await
        .assert_problem(401, "invalid_client");
    let id = gsp.client_id.clone();
    app.state
        .db
        .run(move |c| gsp_clients::set_enabled(c, &id, false))
        .await
        .unwrap();
    let disabled = app.request_otp(&gsp, &taxpayer).await;
    disabled.assert_problem(401, "invalid_client");
    assert!(disabled.body["detail"].as_str().unwrap().contains("disabled"));
}

async fn otp_requests_are_refused_in_the_contract_order(backend: Backend) {
    let (app, taxpayer, gsp) = setup(backend).await;
    let other = app.create_taxpayer(1).await;
    let basic = Auth::Basic(&gsp.client_id, &gsp.client_secret);
    app.post(
        "/v1/gsp/otp",
        basic.clone(),
        json!({"gstin": taxpayer.gstin, "username": other.username}),
    )
    .await
    .assert_problem(404, "taxpayer_not_found");
    app.post(
        "/v1/gsp/otp",
        basic.clone(),
        json!({"gstin": "22AAAAA0000A1Z5", "username": other.username}),
    )
    .await
    .assert_problem(422, "invalid_gstin");
    app.post("/v1/gsp/otp", basic.clone(), json!({"gstin": taxpayer.gstin}))
        .await
        .assert_problem(422, "validation_failed");
    let disabled = app.request_otp(&gsp, &taxpayer).await;
    disabled.assert_problem(403, "api_access_disabled");
    assert_eq!(disabled.body["gstn_code"], "AUTH4037");
    app.enable_access(&taxpayer, 6).await;
    app.advance(TimeDelta::hours(6));
    app.request_otp(&gsp, &taxpayer)
        .await
        .assert_problem(403, "api_access_expired");
    let count: i64 = app
        .state
        .db
        .run(|c| Ok(otp_challenges::table.count().get_result(c)?))
        .await
        .unwrap();
    assert_eq!(count, 0, "refused requests open no challenge");
}

async fn otp_requests_are_rate_limited_per_taxpayer_and_gsp(backend: Backend) {
    let (app, taxpayer, gsp) = setup(backend).await;
    let other_gsp = app.create_gsp("Other GSP").await;
    app.enable_access(&taxpayer, 24).await;
    for _ in 0..5 {
        app.request_otp(&gsp, &taxpayer).await.ok(202);
    }
    let limited = app.request_otp(&gsp, &taxpayer).await;
    limited.assert_problem(429, "rate_limited");
    let retry: i64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    app.request_otp(&other_gsp, &taxpayer).await.ok(202);
    app.advance(TimeDelta::minutes(15));
    app.request_otp(&gsp, &taxpayer).await.ok(202);
    // Each request replaced the previous: one pending challenge per GSP.
    let pending: i64 = app
        .state
        .db
        .run(|c| {
            Ok(otp_challenges::table
                .filter(otp_challenges::state.eq("pending"))
                .count()
                .get_result(c)?)
        })
        .await
        .unwrap();
    assert_eq!(pending, 2);
}

async fn the_session_cap_refuses_a_fourth_session(backend: Backend) {
    let (app, taxpayer, gsp) = setup(backend).await;
    app.enable_access(&taxpayer, 24).await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(app.open_session(&gsp, &taxpayer).await);
    }
    let capped = app.request_otp(&gsp, &taxpayer).await;
    capped.assert_problem(409, "session_limit_reached");
    assert_eq!(capped.body["gstn_code"], "AUTH403");
    app.post(
        "/v1/gsp/logout",
        Auth::Bearer(&sessions[0].access_token),
        json!({}),
    )
    .await
    .ok(204);
    app.open_session(&gsp, &taxpayer).await;
}

async fn wrong_otps_count_down_and_void_the_challenge(backend: Backend) {
    let (app, taxpayer, gsp) = setup(backend).await;
    app.enable_access(&taxpayer, 24).await;
    app.request_otp(&gsp, &taxpayer).await.ok(202);
    let code = app.otp_from_inbox(&taxpayer, &gsp).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for remaining in [4, 3, 2, 1] {
        let resp = app.exchange_otp(&gsp, &taxpayer, wrong).await;
        resp.assert_problem(401, "invalid_otp");
        assert_eq!(resp.body["attempts_remaining"], remaining);
        assert_eq!(resp.body["gstn_code"], "AUTH4034");
    }
    app.exchange_otp(&gsp, &taxpayer, wrong)
        .await
        .assert_problem(429, "otp_attempts_exceeded");
    app.exchange_otp(&gsp, &taxpayer, &code)
        .await
        .assert_problem(401, "otp_expired");
    let state: String = app
        .state
        .db
        .run(|c| Ok(otp_challenges::table.select(otp_challenges::state).first(c)?))
        .await
        .unwrap();
    assert_eq!(state, "voided");
    let sessions: i64 = app
        .state
        .db
        .run(|c| Ok(sessions::table.count().get_result(c)?))
        .await
        .unwrap();
    assert_eq!(sessions, 0);
}

async fn an_otp_expires_replaces_and_is_single_use(backend: Backend) {
    let (app, taxpayer, gsp) = setup(backend).await;
    app.enable_access(&taxpayer, 24).await;
    app.request_otp(&gsp, &taxpayer).await.ok(202);
    let first = app.otp_from_inbox(&taxpayer, &gsp).await;
    app.request_otp(&gsp, &taxpayer).await.ok(202);
    let second = app.otp_from_inbox(&taxpayer, &gsp).await;
    if first != second {
        // The replaced code is for no pending challenge: otp_expired, and the new challenge loses no
        // attempt over it.
        app.exchange_otp(&gsp, &taxpayer, &first)
            .await
            .assert_problem(401, "otp_expired");
        let wrong = if second == "000000" { "000001" } else { "000000" };
        let counted = app.exchange_otp(&gsp, &taxpayer, wrong).await;
        counted.assert_problem(401, "invalid_otp");
        assert_eq!(counted.body["attempts_remaining"], 4);
    }
    app.exchange_otp(&gsp, &taxpayer, &second).await.ok(200);
    app.exchange_otp(&gsp, &taxpayer, &second)
        .await
        .assert_problem(401, "otp_expired");
    // A used code stays "no pending challenge" while a newer challenge is pending.
    app.request_otp(&gsp, &taxpayer).await.ok(202);
    let newer = app.otp_from_inbox(&taxpayer, &gsp).await;
    if newer != second {
        app.exchange_otp(&gsp, &taxpayer, &second)
            .await
            .assert_problem(401, "otp_expired");
    }
    app.exchange_otp(&gsp, &taxpayer, &newer).await.ok(200);

    app.request_otp(&gsp, &taxpayer).await.ok(202);
    let third = app.otp_from_inbox(&taxpayer, &gsp).await;
    app.advance(TimeDelta::minutes(10));
    app.exchange_otp(&gsp, &taxpayer, &third)
        .await
        .assert_problem(401, "otp_expired");
    let token = app.login(&taxpayer).await;
    assert_eq!(
        app.get("/v1/taxpayer/otp-requests", Auth::Bearer(&token))
            .await
            .ok(200),
        &json!([])
    );
}

async fn refresh_tokens_are_single_use_and_reuse_revokes(backend: Backend) {
    let (app, taxpayer, gsp) = setup(backend).await;
    let other_gsp = app.create_gsp("Other GSP").await;
    app.enable_access(&taxpayer, 24).await;
    let session = app.open_session(&gsp, &taxpayer).await;
    app.refresh(&gsp, "not-a-refresh-token")
        .await
        .assert_problem(401, "token_invalid");
    app.refresh(&other_gsp, &session.refresh_token)
        .await
        .assert_problem(401, "token_invalid");
    app.gst("/v1/gst/taxpayer", &session.access_token).await.ok(200);

    let next = TestSession::from(app.refresh(&gsp, &session.refresh_token).await.ok(200));
    let reused = app.refresh(&gsp, &session.refresh_token).await;
    reused.assert_problem(401, "refresh_token_reused");
    app.gst("/v1/gst/taxpayer", &next.access_token)
        .await
        .assert_problem(401, "session_revoked");
    app.refresh(&gsp, &next.refresh_token)
        .await
        .assert_problem(401, "session_revoked");
    assert_eq!(
        app.revoked_reason(&session.session_id).await.as_deref(),
        Some("refresh_token_reused")
    );
}

async fn refresh_ends_with_the_access_window(backend: Backend) {
    let (app, taxpayer, gsp) = setup(backend).await;
    app.enable_access(&taxpayer, 12).await;
    let session = app.open_session(&gsp, &taxpayer).await;
    app.advance(TimeDelta::hours(7));
    let later = app.refresh(&gsp, &session.refresh_token).await;
    let body = later.ok(200).clone();
    let expires_in = body["expires_in"].as_i64().unwrap();
    assert!(
        (5 * 3600 - 5..=5 * 3600).contains(&expires_in),
        "never past the window's end: {expires_in}"
    );
    app.advance(TimeDelta::hours(5));
    let over = app.refresh(&gsp, body["refresh_token"].as_str().unwrap()).await;
    over.assert_problem(403, "api_access_expired");
    assert!(
        over.body["detail"].as_str().unwrap().contains("new OTP"),
        "{}",
        over.text
    );
}

fn forge(header: Value, claims: Value, signature: &str) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        signature
    )
}

async fn forged_and_bent_tokens_are_refused(backend: Backend) {
    let (app, taxpayer, gsp) = setup(backend).await;
    app.enable_access(&taxpayer, 24).await;
    let session = app.open_session(&gsp, &taxpayer).await;
    let parts: Vec<&str> = session.access_token.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    for claim in [
        "iss", "aud", "typ", "sub", "sid", "cid", "iat", "nbf", "exp", "jti",
    ] {
        assert!(claims.get(claim).is_some(), "claim {claim}");
    }
    let jwks = app.get("/.well-known/jwks.json", Auth::None).await;
    let x = jwks.ok(200)["keys"][0]["x"].as_str().unwrap().to_owned();
    assert_eq!(jwks.body["keys"][0]["kid"], header["kid"]);

    let mut bad: Vec<(&str, String)> = Vec::new();
    bad.push((
        "alg none",
        forge(
            json!({"alg": "none", "typ": "JWT", "kid": header["kid"]}),
            claims.clone(),
            "",
        ),
    ));
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: header["kid"].as_str().map(str::to_owned),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(x.as_bytes()),
    )
    .unwrap();
    bad.push(("HS256 with the public key", hs));
    let mut unknown_kid = header.clone();
    unknown_kid["kid"] = json!("ed-unknown");
    bad.push(("unknown kid", forge(unknown_kid, claims.clone(), parts[2])));
    let mut no_kid = header.clone();
    no_kid.as_object_mut().unwrap().remove("kid");
    bad.push(("no kid", forge(no_kid, claims.clone(), parts[2])));
    let mut changed = claims.clone();
    changed["sub"] = json!("27AAPFU0939F1ZV");
    bad.push(("changed payload", forge(header.clone(), changed, parts[2])));
    for (what, token) in &bad {
        app.gst("/v1/gst/taxpayer", token)
            .await
            .assert_problem(401, "token_invalid");
        assert!(!what.is_empty());
    }
    let taxpayer_token = app.login(&taxpayer).await;
    app.gst("/v1/gst/taxpayer", &taxpayer_token)
        .await
        .assert_problem(401, "token_invalid");
    app.post("/v1/gsp/logout", Auth::Bearer(&taxpayer_token), json!({}))
        .await
        .assert_problem(401, "token_invalid");

    // Tokens signed with the gateway's own key but with bent claims, via its key ring.
    let keys = &app.state.keys;
    let now = app.clock.now();
    let issue = |kind, aud_iss_ok: bool, from: chrono::DateTime<chrono::Utc>, until| {
        let (token, _) = keys
            .issue(
                kind,
                &taxpayer.gstin,
                Some(&session.session_id),
                Some(&gsp.client_id),
                from,
                until,
            )
            .unwrap();
        assert!(aud_iss_ok);
        token
    };
    let expired = issue(
        gsp_gateway_api::tokens::TokenKind::Session,
        true,
        now - TimeDelta::hours(7),
        now - TimeDelta::hours(1),
    );
    app.gst("/v1/gst/taxpayer", &expired)
        .await
        .assert_problem(401, "token_expired");
    let future = issue(
        gsp_gateway_api::tokens::TokenKind::Session,
        true,
        now + TimeDelta::hours(1),
        now + TimeDelta::hours(2),
    );
    app.gst("/v1/gst/taxpayer", &future)
        .await
        .assert_problem(401, "token_invalid");
    let other_issuer = gsp_gateway_api::tokens::KeyRing::new("someone-else".into());
    let rows = app
        .state
        .db
        .run(move |c| gsp_gateway_storage::repo::keys::live(c, "jwt", gsp_gateway_storage::to_db(now)))
        .await
        .unwrap();
    other_issuer.replace(&rows);
    let (foreign, _) = other_issuer
        .issue(
            gsp_gateway_api::tokens::TokenKind::Session,
            &taxpayer.gstin,
            Some(&session.session_id),
            Some(&gsp.client_id),
            now,
            now + TimeDelta::hours(1),
        )
        .unwrap();
    app.gst("/v1/gst/taxpayer", &foreign)
        .await
        .assert_problem(401, "token_invalid");
    app.gst("/v1/gst/taxpayer", &session.access_token).await.ok(200);
}

async fn tokens_survive_a_restart_and_a_key_rotation(backend: Backend) {
    let (app, taxpayer, gsp) = setup(backend).await;
    app.enable_access(&taxpayer, 24).await;
    let session = app.open_session(&gsp, &taxpayer).await;
    let restarted = spawn_on(app.database_url.clone(), app.guard(), app.clock.clone(), |_| {}).await;
    restarted
        .gst("/v1/gst/taxpayer", &session.access_token)
        .await
        .ok(200);

    let old_kid = restarted.state.keys.active_kid().unwrap();
    let settings = gsp_gateway_api::Settings {
        database_url: app.database_url.clone(),
        ..Default::default()
    };
    gsp_gateway_api::cli::execute(
        gsp_gateway_api::cli::Command::Keys(gsp_gateway_api::cli::KeysCommand::Rotate),
        settings,
    )
    .await
    .unwrap();
    // The change feed tells running instances about the new key.
    let mut rotated = false;
    for _ in 0..40 {
        if restarted.state.keys.active_kid().as_deref() != Some(old_kid.as_str()) {
            rotated = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(rotated, "the running instance picked up the rotation");
    restarted
        .gst("/v1/gst/taxpayer", &session.access_token)
        .await
        .ok(200);
    let refreshed = TestSession::from(restarted.refresh(&gsp, &session.refresh_token).await.ok(200));
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(refreshed.access_token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_ne!(header["kid"], old_kid.as_str());
    let jwks = restarted.get("/.well-known/jwks.json", Auth::None).await;
    let kids: Vec<&str> = jwks.ok(200)["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(kids.contains(&old_kid.as_str()) && kids.len() == 2, "{kids:?}");
    restarted
        .gst("/v1/gst/taxpayer", &refreshed.access_token)
        .await
        .ok(200);
}

async fn gstin_search_verifies_registrations(backend: Backend) {
    let (app, taxpayer, gsp) = setup(backend).await;
    let basic = Auth::Basic(&gsp.client_id, &gsp.client_secret);
    let found = app
        .get(
            &format!("/v1/gsp/search/{}", taxpayer.gstin.to_lowercase()),
            basic.clone(),
        )
        .await;
    let body = found.ok(200);
    assert_eq!(body["gstin"], taxpayer.gstin.as_str());
    assert_eq!(body["legal_name"], "Taxpayer 0 Private Limited");
    assert_eq!(body["state_code"], "24");
    assert_eq!(body["status"], "Active");
    app.get("/v1/gsp/search/27AAPFU0939F1ZV", basic.clone())
        .await
        .assert_problem(404, "not_found");
    app.get("/v1/gsp/search/22AAAAA0000A1Z5", basic)
        .await
        .assert_problem(422, "invalid_gstin");
}

async fn every_step_appears_in_the_taxpayer_activity(backend: Backend) {
    let (app, taxpayer, gsp) = setup(backend).await;
    app.enable_access(&taxpayer, 24).await;
    let session = app.open_session(&gsp, &taxpayer).await;
    let next = TestSession::from(app.refresh(&gsp, &session.refresh_token).await.ok(200));
    app.refresh(&gsp, &session.refresh_token)
        .await
        .assert_problem(401, "refresh_token_reused");
    assert!(!next.access_token.is_empty());
    let token = app.login(&taxpayer).await;
    let activity = app.get("/v1/taxpayer/activity", Auth::Bearer(&token)).await;
    let actions: Vec<String> = activity.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    for expected in [
        "otp.requested",
        "session.created",
        "session.refreshed",
        "refresh_token.reused",
    ] {
        assert!(actions.iter().any(|a| a == expected), "{expected} in {actions:?}");
    }
    let otp_event = activity.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "otp.requested")
        .unwrap();
    assert_eq!(otp_event["detail"]["gsp_name"], "Acme GSP");
    assert_eq!(otp_event["gsp_client_id"], gsp.client_id.as_str());
}

async fn secrets_are_stored_hashed(backend: Backend) {
    let (app, taxpayer, gsp) = setup(backend).await;
    app.enable_access(&taxpayer, 24).await;
    app.request_otp(&gsp, &taxpayer).await.ok(202);
    let code = app.otp_from_inbox(&taxpayer, &gsp).await;
    let (id, code_hash): (String, String) = app
        .state
        .db
        .run(|c| {
            Ok(otp_challenges::table
                .select((otp_challenges::id, otp_challenges::code_hash))
                .first(c)?)
        })
        .await
        .unwrap();
    assert_ne!(code_hash, code);
    assert_eq!(code_hash, sha256_hex(&format!("{id}:{code}")));
    let session = TestSession::from(app.exchange_otp(&gsp, &taxpayer, &code).await.ok(200));
    let stored: Vec<String> = app
        .state
        .db
        .run(|c| Ok(refresh_tokens::table.select(refresh_tokens::token_hash).load(c)?))
        .await
        .unwrap();
    assert_eq!(stored, vec![sha256_hex(&session.refresh_token)]);
}

/// Calls until `call` answers `status`, for at most the propagation time (a change made outside this
/// instance reaches it through the change feed); returns that answer.
async fn within_propagation<F, Fut>(status: u16, call: F) -> Resp
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Resp>,
{
    let started = std::time::Instant::now();
    loop {
        let resp = call().await;
        if resp.status.as_u16() == status || started.elapsed() > std::time::Duration::from_secs(2) {
            return resp;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

async fn disabling_a_gsp_ends_its_sessions_everywhere(backend: Backend) {
    let (app, taxpayer, gsp) = setup(backend).await;
    let other_taxpayer = app.create_taxpayer(1).await;
    let other_gsp = app.create_gsp("Other GSP").await;
    for t in [&taxpayer, &other_taxpayer] {
        app.enable_access(t, 24).await;
    }
    let first = app.open_session(&gsp, &taxpayer).await;
    let second = app.open_session(&gsp, &other_taxpayer).await;
    let bystander = app.open_session(&other_gsp, &taxpayer).await;
    for s in [&first, &second, &bystander] {
        app.gst("/v1/gst/taxpayer", &s.access_token).await.ok(200);
    }

    let id = gsp.client_id.clone();
    let status = app
        .as_operator(move |c, e| provisioning::disable_gsp(c, &id, chrono::Utc::now(), e))
        .await
        .unwrap();
    assert!(!status.enabled);
    let mut ended = status.revoked_sessions.clone();
    ended.sort();
    let mut expected = vec![first.session_id.clone(), second.session_id.clone()];
    expected.sort();
    assert_eq!(ended, expected);

    // Both of its sessions are refused (the change reaches this instance through the feed); the other
    // GSP's session with the same taxpayer goes on.
    for s in [&first, &second] {
        within_propagation(401, || app.gst("/v1/gst/taxpayer", &s.access_token))
            .await
            .assert_problem(401, "session_revoked");
        assert_eq!(
            app.revoked_reason(&s.session_id).await.as_deref(),
            Some("gsp_disabled")
        );
    }
    app.gst("/v1/gst/taxpayer", &bystander.access_token).await.ok(200);
    assert_eq!(app.revoked_reason(&bystander.session_id).await, None);

    // Its credentials are refused: no OTP, no refresh, no search.
    let refused = app.request_otp(&gsp, &taxpayer).await;
    refused.assert_problem(401, "invalid_client");
    assert!(refused.body["detail"].as_str().unwrap().contains("disabled"));
    app.refresh(&gsp, &first.refresh_token)
        .await
        .assert_problem(401, "invalid_client");

    // The taxpayer sees why the session ended.
    let token = app.login(&taxpayer).await;
    let activity = app.get("/v1/taxpayer/activity", Auth::Bearer(&token)).await;
    let revoked = activity.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "session.revoked" && e["session_id"] == first.session_id.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("no session.revoked in {}", activity.text));
    assert_eq!(revoked["detail"]["reason"], "gsp_disabled", "{revoked}");

    // Re-enabled, it needs a new consent: the ended sessions stay ended.
    let id = gsp.client_id.clone();
    app.as_operator(move |c, e| provisioning::enable_gsp(c, &id, chrono::Utc::now(), e))
        .await
        .unwrap();
    app.gst("/v1/gst/taxpayer", &first.access_token)
        .await
        .assert_problem(401, "session_revoked");
    let renewed = app.open_session(&gsp, &taxpayer).await;
    app.gst("/v1/gst/taxpayer", &renewed.access_token).await.ok(200);

    // An unknown client is a clear error, and nothing is written.
    let unknown = app
        .as_operator(|c, e| provisioning::disable_gsp(c, "l7xxunknown", chrono::Utc::now(), e))
        .await
        .unwrap_err();
    assert_eq!(unknown.code().as_str(), "not_found");
}

async fn a_rotated_secret_replaces_the_old_one_at_once(backend: Backend) {
    let (app, taxpayer, gsp) = setup(backend).await;
    app.enable_access(&taxpayer, 24).await;
    let session = app.open_session(&gsp, &taxpayer).await;
    let id = gsp.client_id.clone();
    let rotated = app
        .as_operator(move |c, e| provisioning::rotate_gsp_secret(c, &id, chrono::Utc::now(), e))
        .await
        .unwrap();
    assert_eq!(rotated.client_id, gsp.client_id);
    assert_ne!(rotated.client_secret, gsp.client_secret);
    let stored = {
        let id = gsp.client_id.clone();
        app.state
            .db
            .run(move |c| gsp_clients::find(c, &id))
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(stored.secret_hash, sha256_hex(&rotated.client_secret));

    app.request_otp(&gsp, &taxpayer)
        .await
        .assert_problem(401, "invalid_client");
    let renewed = TestGsp {
        client_secret: rotated.client_secret,
        ..gsp.clone()
    };
    app.request_otp(&renewed, &taxpayer).await.ok(202);
    // The session the taxpayer granted goes on, and refreshes with the new secret.
    app.gst("/v1/gst/taxpayer", &session.access_token).await.ok(200);
    app.refresh(&renewed, &session.refresh_token).await.ok(200);
}

/// The issuing transaction re-reads its client: a GSP disabled between its credential check and the
/// session's creation gets no session.
async fn a_client_disabled_after_it_authenticated_gets_no_session(backend: Backend) {
    use gsp_gateway_api::services::gsp::{self as gsp_service, GspClient, OtpGrant};
    let (app, taxpayer, gsp) = setup(backend).await;
    app.enable_access(&taxpayer, 24).await;
    app.request_otp(&gsp, &taxpayer).await.ok(202);
    let otp = app.otp_from_inbox(&taxpayer, &gsp).await;
    let authenticated = GspClient {
        client_id: gsp.client_id.clone(),
        name: gsp.name.clone(),
    };
    let id = gsp.client_id.clone();
    app.state
        .db
        .run(move |c| gsp_clients::set_enabled(c, &id, false))
        .await
        .unwrap();
    let grant = OtpGrant {
        gstin: taxpayer.gstin.clone(),
        username: taxpayer.username.clone(),
        otp,
        dialect: None,
    };
    let settings = app.state.settings.clone();
    let refused = app
        .state
        .db
        .run(move |c| {
            Ok(gsp_service::exchange_otp(
                c,
                &authenticated,
                &grant,
                &settings,
                &gsp_gateway_api::auth::Caller {
                    ip: None,
                    request_id: "test".into(),
                    txn: None,
                },
                chrono::Utc::now(),
            ))
        })
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.code().as_str(), "invalid_client");
    let id = gsp.client_id.clone();
    let sessions_of_client: i64 = app
        .state
        .db
        .run(move |c| {
            Ok(sessions::table
                .filter(sessions::gsp_client_id.eq(id))
                .count()
                .get_result(c)?)
        })
        .await
        .unwrap();
    assert_eq!(sessions_of_client, 0, "nothing half-written");
}

/// Ten wrong codes at once against one challenge: each is counted (4, 3, 2, 1 left, then void), none
/// is lost to a race, and the right code afterwards finds no challenge.
async fn concurrent_wrong_otps_are_each_counted(backend: Backend) {
    let (app, taxpayer, gsp) = setup(backend).await;
    let (otp, answers, remaining) = app.wrong_otps_at_once(&gsp, &taxpayer).await;
    assert_eq!(remaining, vec![1, 2, 3, 4]);
    let codes = |code: &str| answers.iter().filter(|r| r.code() == code).count();
    assert_eq!((codes("otp_attempts_exceeded"), codes("otp_expired")), (1, 5));
    app.exchange_otp(&gsp, &taxpayer, &otp)
        .await
        .assert_problem(401, "otp_expired");
}

/// An OTP exchange racing the taxpayer's switch-off: whichever commits first, no active session is
/// left while access is off (it is either refused or revoked by the switch-off).
async fn a_session_issued_while_access_is_switched_off_does_not_survive(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.otp_rate_limit = 100).await;
    let taxpayer = app.create_taxpayer(0).await;
    let gsp = app.create_gsp("Acme GSP").await;
    let token = app.login(&taxpayer).await;
    for trial in 0..12 {
        app.enable_access(&taxpayer, 24).await;
        app.request_otp(&gsp, &taxpayer).await.ok(202);
        let otp = app.otp_from_inbox(&taxpayer, &gsp).await;
        let (issued, switched_off) = tokio::join!(
            app.exchange_otp(&gsp, &taxpayer, &otp),
            app.put(
                "/v1/taxpayer/api-access",
                Auth::Bearer(&token),
                json!({"enabled": false}),
            )
        );
        switched_off.ok(200);
        let sessions = app.get("/v1/taxpayer/sessions", Auth::Bearer(&token)).await;
        let active = sessions
            .ok(200)
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["status"] == "active")
            .count();
        assert_eq!(active, 0, "trial {trial}: exchange answered {}", issued.status);
        if issued.status.as_u16() == 200 {
            let session = TestSession::from(&issued.body);
            app.enable_access(&taxpayer, 24).await;
            app.gst("/v1/gst/taxpayer", &session.access_token)
                .await
                .assert_problem(401, "session_revoked");
            app.disable_access(&taxpayer).await;
        }
    }
}

/// OTP messages in the inbox and challenges by state, as stored.
async fn otp_rows(app: &TestApp) -> (i64, Vec<String>) {
    app.state
        .db
        .run(|c| {
            let messages = otp_inbox::table.count().get_result(c)?;
            let states = otp_challenges::table
                .select(otp_challenges::state)
                .order(otp_challenges::created_at)
                .load(c)?;
            Ok((messages, states))
        })
        .await
        .unwrap()
}

/// The inbox holds an OTP's message until the OTP expires, and then deletes it (housekeeping), also when
/// the taxpayer never looks.
async fn an_expired_otp_leaves_the_inbox_without_being_read(backend: Backend) {
    let (app, taxpayer, gsp) = setup(backend).await;
    app.enable_access(&taxpayer, 24).await;
    app.request_otp(&gsp, &taxpayer).await.ok(202);
    gsp_gateway_api::gateway::feed::housekeep(&app.state).await;
    assert_eq!(otp_rows(&app).await.0, 1, "a live OTP's message stays");
    app.advance(TimeDelta::minutes(10));
    gsp_gateway_api::gateway::feed::housekeep(&app.state).await;
    assert_eq!(otp_rows(&app).await.0, 0, "the expired code is gone");
}

/// Switching access off voids the OTPs asked for before (and deletes their messages) in the same
/// transaction: an old code does not open a session once access is switched on again.
async fn switching_access_off_voids_the_pending_otps(backend: Backend) {
    let (app, taxpayer, gsp) = setup(backend).await;
    app.enable_access(&taxpayer, 24).await;
    app.request_otp(&gsp, &taxpayer).await.ok(202);
    let code = app.otp_from_inbox(&taxpayer, &gsp).await;
    app.disable_access(&taxpayer).await;
    assert_eq!(otp_rows(&app).await, (0, vec!["voided".to_owned()]));
    app.enable_access(&taxpayer, 24).await;
    app.exchange_otp(&gsp, &taxpayer, &code)
        .await
        .assert_problem(401, "otp_expired");
    let disabled = app.activity_event(&taxpayer, "access.disabled").await;
    assert_eq!(disabled["detail"]["voided_otps"], 1, "{disabled}");
}
