//! The house: health, operator provisioning, problem+json for every failure, the OpenAPI document.

use diesel::prelude::*;
use gsp_gateway_api::cli::{AdminCommand, Command};
use gsp_gateway_domain::secret::sha256_hex;
use gsp_gateway_storage::repo::gsp_clients;
use gsp_gateway_storage::schema::taxpayers;
use serde_json::json;

use crate::helpers::*;

on_both_backends!(
    health_endpoints_answer_ok,
    creating_a_taxpayer_succeeds_then_conflicts,
    a_gstin_with_a_wrong_check_character_is_refused,
    taxpayer_fields_are_validated,
    the_taxpayer_password_is_stored_as_argon2id_only,
    a_gsp_secret_is_stored_only_as_its_hash,
    the_cli_creates_gsps_with_hashed_secrets,
    admin_api_needs_the_admin_token,
    malformed_input_gets_the_contract_problem_codes,
    audit_lists_newest_first_and_filters_by_gstin,
    every_mistyped_field_or_parameter_is_named,
);

async fn health_endpoints_answer_ok(backend: Backend) {
    let app = spawn_app(backend).await;
    let live = app.get("/health/live", Auth::None).await;
    assert_eq!(live.ok(200), &json!({"status": "ok"}));
    let ready = app.get("/health/ready", Auth::None).await;
    assert_eq!(ready.ok(200), &json!({"status": "ok", "database": "ok"}));
    assert!(live.header("x-request-id").is_some_and(|id| id.len() >= 16));
    let echoed = app
        .client
        .get(format!("{}/health/live", app.address))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-me-123");

    // Ready means readable: a database that answers but lacks the gateway's tables is not ready.
    app.state
        .db
        .run(|c| {
            use diesel::connection::SimpleConnection;
            Ok(c.batch_execute("DROP TABLE audit_chain")?)
        })
        .await
        .unwrap();
    let unready = app.get("/health/ready", Auth::None).await;
    unready.assert_problem(503, "service_unavailable");
    assert_eq!(unready.body["database"], "unavailable");
}

async fn creating_a_taxpayer_succeeds_then_conflicts(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = json!({"gstin": " 24aaupv7468f1zw ", "username": "asha.traders", "password": PASSWORD,
                      "legal_name": "Asha Traders Private Limited", "email": "a@asha.example", "mobile": "9876543210"});
    let created = app
        .post("/v1/admin/taxpayers", Auth::Bearer(ADMIN_TOKEN), body.clone())
        .await;
    let view = created.ok(201);
    assert_eq!(view["gstin"], "24AAUPV7468F1ZW");
    assert_eq!(view["state_code"], "24");
    assert!(view.get("password").is_none() && !created.text.contains(PASSWORD));

    app.post("/v1/admin/taxpayers", Auth::Bearer(ADMIN_TOKEN), body.clone())
        .await
        .assert_problem(409, "conflict");
    let same_username = json!({"gstin": "27AAPFU0939F1ZV", "username": "asha.traders", "password": PASSWORD, "legal_name": "Other"});
    app.post("/v1/admin/taxpayers", Auth::Bearer(ADMIN_TOKEN), same_username)
        .await
        .assert_problem(409, "conflict");

    let count: i64 = app
        .state
        .db
        .run(|c| Ok(taxpayers::table.count().get_result(c)?))
        .await
        .unwrap();
    assert_eq!(count, 1, "the conflicting inserts wrote nothing");
}

async fn a_gstin_with_a_wrong_check_character_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let resp = app
        .post(
            "/v1/admin/taxpayers",
            Auth::Bearer(ADMIN_TOKEN),
            json!({"gstin": "22AAAAA0000A1Z5", "username": "placeholder", "password": PASSWORD, "legal_name": "X"}),
        )
        .await;
    resp.assert_problem(422, "invalid_gstin");
    assert_eq!(resp.body["gstn_code"], "SWEB_9035");
    assert_eq!(resp.body["errors"][0]["field"], "gstin");
    let count: i64 = app
        .state
        .db
        .run(|c| Ok(taxpayers::table.count().get_result(c)?))
        .await
        .unwrap();
    assert_eq!(count, 0);
}

async fn taxpayer_fields_are_validated(backend: Backend) {
    let app = spawn_app(backend).await;
    let base = json!({"gstin": "24AAUPV7468F1ZW", "username": "asha.traders", "password": PASSWORD, "legal_name": "Asha"});
    let cases = [
        ("username", json!("a b"), None),
        ("password", json!("short"), Some("weak_password")),
        ("password", json!("asha.traders-2026!"), Some("weak_password")),
        ("legal_name", json!(""), None),
        ("email", json!("not-an-email"), None),
        ("mobile", json!("12345"), None),
        ("gstin", json!(42), None),
    ];
    for (field, value, reason) in cases {
        let mut body = base.clone();
        body[field] = value;
        let resp = app
            .post("/v1/admin/taxpayers", Auth::Bearer(ADMIN_TOKEN), body)
            .await;
        resp.assert_problem(422, "validation_failed");
        assert_eq!(resp.body["errors"][0]["field"], field, "{}", resp.text);
        assert_eq!(resp.body["reason"].as_str(), reason, "{}", resp.text);
    }
    let mut missing = base.clone();
    missing.as_object_mut().unwrap().remove("legal_name");
    let resp = app
        .post("/v1/admin/taxpayers", Auth::Bearer(ADMIN_TOKEN), missing)
        .await;
    resp.assert_problem(422, "validation_failed");
    assert_eq!(resp.body["errors"][0]["field"], "legal_name");
}

async fn the_taxpayer_password_is_stored_as_argon2id_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let taxpayer = app.create_taxpayer(0).await;
    let stored: String = app
        .state
        .db
        .run(move |c| {
            Ok(taxpayers::table
                .filter(taxpayers::gstin.eq(taxpayer.gstin))
                .select(taxpayers::password_hash)
                .first(c)?)
        })
        .await
        .unwrap();
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert!(!stored.contains(PASSWORD));
}

async fn a_gsp_secret_is_stored_only_as_its_hash(backend: Backend) {
    let app = spawn_app(backend).await;
    let gsp = app.create_gsp("Acme GSP").await;
    assert!(gsp.client_id.starts_with("l7xx"));
    assert_eq!(gsp.client_secret.len(), 64, "256 bits as hex");
    let id = gsp.client_id.clone();
    let row = app
        .state
        .db
        .run(move |c| gsp_clients::find(c, &id))
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(row.secret_hash, sha256_hex(&gsp.client_secret));
    assert_ne!(row.secret_hash, gsp.client_secret);
    assert!(row.enabled);
    app.post("/v1/admin/gsps", Auth::Bearer(ADMIN_TOKEN), json!({"name": ""}))
        .await
        .assert_problem(422, "validation_failed");
}

async fn the_cli_creates_gsps_with_hashed_secrets(backend: Backend) {
    let app = spawn_app(backend).await;
    let settings = gsp_gateway_api::Settings {
        database_url: app.database_url.clone(),
        ..Default::default()
    };
    let code = gsp_gateway_api::cli::execute(
        Command::Admin(AdminCommand::CreateGsp {
            name: "Cli GSP".into(),
        }),
        settings,
    )
    .await
    .expect("the command runs");
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let rows: Vec<(String, String)> = app
        .state
        .db
        .run(|c| {
            use gsp_gateway_storage::schema::gsp_clients::dsl::*;
            Ok(gsp_clients
                .filter(name.eq("Cli GSP"))
                .select((client_id, secret_hash))
                .load(c)?)
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].1.len(), 64, "a SHA-256 hex digest");
}

async fn admin_api_needs_the_admin_token(backend: Backend) {
    let app = spawn_app(backend).await;
    app.post("/v1/admin/gsps", Auth::None, json!({"name": "x"}))
        .await
        .assert_problem(401, "token_missing");
    app.post(
        "/v1/admin/gsps",
        Auth::Bearer("wrong-token-0123456789"),
        json!({"name": "x"}),
    )
    .await
    .assert_problem(401, "token_invalid");
    app.get("/v1/admin/audit", Auth::Basic("operator", ADMIN_TOKEN))
        .await
        .assert_problem(401, "token_missing");

    let closed = spawn_app_with(backend, |s| s.admin_token = None).await;
    closed
        .post("/v1/admin/gsps", Auth::Bearer(ADMIN_TOKEN), json!({"name": "x"}))
        .await
        .assert_problem(404, "not_found");
}

async fn malformed_input_gets_the_contract_problem_codes(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.max_body_bytes = 4096).await;
    let admin = Auth::Bearer(ADMIN_TOKEN);
    app.post_raw(
        "/v1/admin/gsps",
        admin.clone(),
        "application/json",
        b"{\"name\":".to_vec(),
    )
    .await
    .assert_problem(400, "invalid_request");
    app.post_raw(
        "/v1/admin/gsps",
        admin.clone(),
        "text/plain",
        b"{\"name\":\"x\"}".to_vec(),
    )
    .await
    .assert_problem(415, "unsupported_media_type");
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(5000));
    app.post_raw(
        "/v1/admin/gsps",
        admin.clone(),
        "application/json",
        big.into_bytes(),
    )
    .await
    .assert_problem(413, "payload_too_large");
    let resp = app
        .post("/v1/admin/gsps", admin.clone(), json!({"name": 7}))
        .await;
    resp.assert_problem(422, "validation_failed");
    assert_eq!(resp.body["errors"][0]["field"], "name");
    app.get("/no/such/route", Auth::None)
        .await
        .assert_problem(404, "not_found");
    app.get("/v1/admin/gsps", admin.clone())
        .await
        .assert_problem(405, "method_not_allowed");
    app.delete("/health/live", Auth::None)
        .await
        .assert_problem(405, "method_not_allowed");
    app.get("/v1/admin/audit?limit=0", admin.clone())
        .await
        .assert_problem(422, "validation_failed");
    app.get("/v1/admin/audit?limit=abc", admin.clone())
        .await
        .assert_problem(422, "validation_failed");
    app.get("/v1/admin/audit?gstin=22AAAAA0000A1Z5", admin)
        .await
        .assert_problem(422, "invalid_gstin");
}

async fn audit_lists_newest_first_and_filters_by_gstin(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.create_taxpayer(0).await;
    app.create_taxpayer(1).await;
    app.create_gsp("Acme").await;
    let page = app
        .get("/v1/admin/audit?limit=2", Auth::Bearer(ADMIN_TOKEN))
        .await;
    let body = page.ok(200);
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["action"], "gsp.created");
    assert!(items[0]["id"].as_i64() > items[1]["id"].as_i64());
    let next = body["next_before"].as_i64().expect("more pages");
    let older = app
        .get(
            &format!("/v1/admin/audit?before={next}"),
            Auth::Bearer(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(older.ok(200)["items"].as_array().unwrap().len(), 1);
    assert_eq!(older.body["next_before"], json!(null));
    // A last page that is exactly full says it is the last.
    let exact = app
        .get(
            &format!("/v1/admin/audit?before={next}&limit=1"),
            Auth::Bearer(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(exact.ok(200)["items"].as_array().unwrap().len(), 1);
    assert_eq!(exact.body["next_before"], json!(null), "{}", exact.text);

    let mine = app
        .get(
            &format!("/v1/admin/audit?gstin={}", first.gstin),
            Auth::Bearer(ADMIN_TOKEN),
        )
        .await;
    let items = mine.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["action"], "taxpayer.created");
    assert_eq!(items[0]["gstin"], first.gstin.as_str());
    assert_eq!(items[0]["actor"], "operator");
    assert!(items[0]["request_id"].is_string());

    // The event carries the id of the request that made it (echoed here, so known).
    let created = app
        .client
        .post(format!("{}/v1/admin/gsps", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .header("x-request-id", "audit-trace-42")
        .json(&json!({"name": "Traced GSP"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["x-request-id"], "audit-trace-42");
    let newest = app
        .get("/v1/admin/audit?limit=1", Auth::Bearer(ADMIN_TOKEN))
        .await;
    let event = &newest.ok(200)["items"][0];
    assert_eq!(event["action"], "gsp.created");
    assert_eq!(event["request_id"], "audit-trace-42");
}

#[tokio::test]
async fn committed_openapi_yaml_matches_the_code() {
    let generated = gsp_gateway_api::openapi::yaml().expect("the document renders");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed.trim_end() == generated.trim_end(),
        "openapi.yaml is out of date: run `cargo run -p gsp-gateway-api -- openapi > openapi.yaml`"
    );
}

/// A 422 names the field or query parameter at fault, also in a grant picked by its `grant_type`.
async fn every_mistyped_field_or_parameter_is_named(backend: Backend) {
    let app = spawn_app(backend).await;
    let taxpayer = app.create_taxpayer(0).await;
    let gsp = app.create_gsp("Acme").await;
    let basic = Auth::Basic(&gsp.client_id, &gsp.client_secret);
    let named = |resp: Resp, field: &str| {
        resp.assert_problem(422, "validation_failed");
        assert_eq!(resp.body["errors"][0]["field"], field, "{}", resp.text);
    };
    let otp_grant = json!({"grant_type": "otp", "gstin": taxpayer.gstin, "username": taxpayer.username});
    for (body, field) in [
        (
            json!({"grant_type": "otp", "gstin": taxpayer.gstin, "username": taxpayer.username, "otp": 123456}),
            "otp",
        ),
        (
            json!({"grant_type": "otp", "gstin": 24, "username": taxpayer.username, "otp": "123456"}),
            "gstin",
        ),
        (otp_grant, "otp"),
        (
            json!({"grant_type": "refresh_token", "refresh_token": 7}),
            "refresh_token",
        ),
        (json!({"grant_type": "password"}), "grant_type"),
        (json!({"otp": "123456"}), "grant_type"),
        (json!(["otp"]), "body"),
    ] {
        named(app.post("/v1/gsp/token", basic.clone(), body).await, field);
    }
    let taxpayer_token = app.login(&taxpayer).await;
    for (query, field) in [
        ("limit=abc", "limit"),
        ("before=x1", "before"),
        ("limit=0", "limit"),
    ] {
        let path = format!("/v1/taxpayer/activity?{query}");
        named(app.get(&path, Auth::Bearer(&taxpayer_token)).await, field);
        let path = format!("/v1/admin/audit?{query}");
        named(app.get(&path, Auth::Bearer(ADMIN_TOKEN)).await, field);
    }
}
