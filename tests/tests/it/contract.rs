//! The contract, proven from outside: `openapi.yaml` lists what every operation can answer, and the
//! gateway answers nothing else. `.ci/schemathesis.sh` fuzzes the same promise; the regressions it
//! found are pinned here.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, Auth, Backend, TestApp, spawn_app};

/// Operations that never touch the database (no 503).
const NO_DATABASE: &[&str] = &[
    "health_live",
    "get_jwks",
    "get_gstn_certificate_pem",
    "get_gstn_certificate_der",
    "get_gstn_public_key",
];

struct Operation {
    method: String,
    path: String,
    body: Value,
}

impl Operation {
    fn id(&self) -> &str {
        self.body["operationId"].as_str().unwrap_or("")
    }

    fn statuses(&self) -> Vec<u16> {
        self.body["responses"]
            .as_object()
            .map(|r| r.keys().filter_map(|k| k.parse().ok()).collect())
            .unwrap_or_default()
    }

    fn schemes(&self) -> Vec<String> {
        self.body["security"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|requirement| requirement.as_object())
            .flat_map(|requirement| requirement.keys().cloned())
            .collect()
    }
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, body) in item.as_object().unwrap() {
            found.push(Operation {
                method: method.to_uppercase(),
                path: path.clone(),
                body: body.clone(),
            });
        }
    }
    found
}

/// A response, with a `$ref` into `components.responses` resolved.
fn resolve<'a>(doc: &'a Value, response: &'a Value) -> &'a Value {
    match response["$ref"].as_str() {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/responses/");
            &doc["components"]["responses"][name]
        }
        None => response,
    }
}

#[test]
fn every_operation_documents_its_shared_refusals() {
    let doc = gsp_gateway_api::openapi::document();
    let operations = operations(&doc);
    assert!(
        operations.len() >= 20,
        "the document lists the contract's operations"
    );
    for op in &operations {
        let id = op.id();
        assert!(!id.is_empty(), "{} {} has an operationId", op.method, op.path);
        assert!(op.body["summary"].is_string(), "{id} has a summary");
        assert!(op.body["tags"].is_array(), "{id} has a tag");
        let statuses = op.statuses();
        assert!(
            statuses.iter().any(|s| (200..300).contains(s)),
            "{id} documents its success"
        );
        if op.body.get("requestBody").is_some() {
            for status in [400, 413, 415, 422] {
                assert!(
                    statuses.contains(&status),
                    "{id} has a JSON body but does not document {status}"
                );
            }
        }
        if !op.schemes().is_empty() {
            assert!(
                statuses.contains(&401),
                "{id} is authenticated but does not document 401"
            );
        }
        if !NO_DATABASE.contains(&id) {
            assert!(
                statuses.contains(&503),
                "{id} uses the database but does not document 503"
            );
        }
    }
}

#[test]
fn every_problem_response_names_its_codes_and_they_have_its_status() {
    let doc = gsp_gateway_api::openapi::document();
    for op in operations(&doc) {
        for (status, response) in op.body["responses"].as_object().unwrap() {
            let status: u16 = status.parse().unwrap();
            if status < 400 {
                continue;
            }
            let response = resolve(&doc, response);
            let description = response["description"].as_str().unwrap_or("");
            let content = &response["content"]["application/problem+json"];
            assert!(
                content.is_object(),
                "{} {status} is not application/problem+json",
                op.id()
            );
            let codes = gsp_gateway_api::openapi::codes_named_in(description);
            assert!(
                !codes.is_empty(),
                "{} {status} names no `code`: {description}",
                op.id()
            );
            for code in codes {
                assert_eq!(
                    code.status().as_u16(),
                    status,
                    "{} {status} names `{}`, which is answered with {}",
                    op.id(),
                    code.as_str(),
                    code.status()
                );
                let example = &content["examples"][code.as_str()]["value"];
                assert_eq!(
                    example["code"],
                    code.as_str(),
                    "{} {status} has an example of each code",
                    op.id()
                );
                assert_eq!(example["status"], status);
            }
        }
    }
}

struct Raw {
    status: StatusCode,
    content_type: String,
    allow: Option<String>,
    body: Value,
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    auth: &Auth<'_>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Raw {
    let mut req = app
        .client
        .request(method, format!("{}{path}", app.address))
        .body(body);
    if let Some(content_type) = content_type {
        req = req.header("content-type", content_type);
    }
    req = match auth {
        Auth::None => req,
        Auth::Bearer(token) => req.bearer_auth(token),
        Auth::Basic(user, password) => req.basic_auth(user, Some(password)),
    };
    let response = req.send().await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (status, content_type, allow) = (
        response.status(),
        header("content-type").unwrap_or_default(),
        header("allow"),
    );
    let body = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null);
    Raw {
        status,
        content_type,
        allow,
        body,
    }
}

async fn json_body_refusals_are_the_documented_ones(backend: Backend) {
    let app = spawn_app(backend).await;
    let taxpayer = app.create_taxpayer(0).await;
    let gsp = app.create_gsp("Contract GSP").await;
    let token = app.login(&taxpayer).await;
    let doc = gsp_gateway_api::openapi::document();
    let mut checked = 0;
    for op in operations(&doc)
        .into_iter()
        .filter(|op| op.body.get("requestBody").is_some())
    {
        let schemes = op.schemes();
        let auth = match schemes.first().map(String::as_str) {
            Some("admin_token") => Auth::Bearer(ADMIN_TOKEN),
            Some("taxpayer_token") => Auth::Bearer(&token),
            Some("gsp_client") => Auth::Basic(&gsp.client_id, &gsp.client_secret),
            None => Auth::None,
            Some(other) => panic!("{}: no credential for {other}", op.id()),
        };
        let method = Method::from_bytes(op.method.as_bytes()).unwrap();
        let cases: [(Option<&str>, Vec<u8>, u16, &str); 4] = [
            (None, b"{}".to_vec(), 415, "unsupported_media_type"),
            (
                Some("application/json"),
                b"{\"a\":".to_vec(),
                400,
                "invalid_request",
            ),
            (
                Some("application/json"),
                vec![b' '; 1024 * 1024 + 1],
                413,
                "payload_too_large",
            ),
            (Some("application/json"), b"[]".to_vec(), 422, "validation_failed"),
        ];
        for (content_type, body, status, code) in cases {
            let resp = send(&app, method.clone(), &op.path, &auth, content_type, body).await;
            assert_eq!(resp.status.as_u16(), status, "{}: {}", op.id(), resp.body);
            assert_eq!(resp.body["code"], code, "{}", op.id());
            assert_eq!(resp.content_type, "application/problem+json", "{}", op.id());
            assert!(
                op.statuses().contains(&status),
                "{} answers {status} but does not document it",
                op.id()
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 7,
        "every operation with a JSON body was checked ({checked})"
    );
}

async fn method_not_allowed_names_the_allowed_methods(backend: Backend) {
    let app = spawn_app(backend).await;
    let trace = Method::from_bytes(b"TRACE").unwrap();
    for (method, path, allow) in [
        (trace.clone(), "/v1/taxpayer/api-access", "GET, HEAD, PUT"),
        (Method::PATCH, "/health/live", "GET, HEAD"),
        (Method::DELETE, "/v1/admin/taxpayers", "POST"),
        (Method::GET, "/v1/gsp/token", "POST"),
        (trace.clone(), "/v1/taxpayer/sessions/any-session", "DELETE"),
        (Method::POST, "/metrics", "GET, HEAD"),
    ] {
        let resp = send(&app, method.clone(), path, &Auth::None, None, Vec::new()).await;
        assert_eq!(resp.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(resp.body["code"], "method_not_allowed");
        assert_eq!(resp.allow.as_deref(), Some(allow), "{method} {path}");
    }
    // Under /v1/gst the enforcement layer runs first; with a live session the sandbox answers 405.
    let taxpayer = app.create_taxpayer(1).await;
    let gsp = app.create_gsp("Contract GSP").await;
    app.enable_access(&taxpayer, 24).await;
    let session = app.open_session(&gsp, &taxpayer).await;
    let resp = send(
        &app,
        Method::DELETE,
        "/v1/gst/returns",
        &Auth::Bearer(&session.access_token),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(resp.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.allow.as_deref(), Some("GET, HEAD"));
}

/// HEAD of any GET (RFC 9110 §9.3.2: every general-purpose server supports it): GET's status and
/// header fields, no body; counted as HEAD. A route without GET still answers 405.
async fn head_is_answered_as_get_without_its_body(backend: Backend) {
    let app = spawn_app(backend).await;
    let taxpayer = app.create_taxpayer(0).await;
    let gsp = app.create_gsp("Contract GSP").await;
    let token = app.login(&taxpayer).await;
    app.enable_access(&taxpayer, 24).await;
    let session = app.open_session(&gsp, &taxpayer).await;
    for (path, bearer) in [
        ("/health/live", None),
        ("/health/ready", None),
        ("/.well-known/jwks.json", None),
        ("/openapi.json", None),
        ("/taxpayerapi/public-key.pem", None),
        ("/v1/taxpayer/api-access", Some(token.as_str())),
        ("/v1/gst/taxpayer", Some(session.access_token.as_str())),
        ("/v1/gst/returns?fy=2025-26", Some(session.access_token.as_str())),
    ] {
        let call = |method: Method| {
            let req = app.client.request(method, format!("{}{path}", app.address));
            match bearer {
                Some(token) => req.bearer_auth(token),
                None => req,
            }
        };
        let get = call(Method::GET).send().await.unwrap();
        let head = call(Method::HEAD).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::OK, "HEAD {path}");
        for field in ["content-type", "content-length"] {
            assert_eq!(
                head.headers().get(field),
                get.headers().get(field),
                "HEAD {path}: {field}"
            );
        }
        assert!(
            head.headers().contains_key("content-length"),
            "HEAD {path}: {:?}",
            head.headers()
        );
        if path.starts_with("/v1/gst/") {
            assert!(head.headers().contains_key("ratelimit"), "HEAD {path}");
        }
        assert!(!get.bytes().await.unwrap().is_empty(), "GET {path}");
        assert!(head.bytes().await.unwrap().is_empty(), "HEAD {path}");
    }
    // A refusal is a refusal for HEAD too, and a route without GET has no HEAD either.
    let refused = app
        .client
        .head(format!("{}/v1/gst/taxpayer", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let resp = send(&app, Method::HEAD, "/v1/gsp/token", &Auth::None, None, Vec::new()).await;
    assert_eq!(resp.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.allow.as_deref(), Some("POST"));

    let metrics = app.get("/metrics", Auth::None).await;
    assert!(
        metrics
            .text
            .lines()
            .any(|line| line.starts_with("http_requests_total{")
                && line.contains("route=\"/health/live\"")
                && line.contains("method=\"HEAD\"")
                && line.contains("status=\"200\"")),
        "{}",
        metrics.text
    );
}

async fn a_whole_number_of_hours_may_be_written_as_a_float(backend: Backend) {
    let app = spawn_app(backend).await;
    let taxpayer = app.create_taxpayer(0).await;
    let token = app.login(&taxpayer).await;
    // JSON (and the schema's `integer`) does not tell 482 from 482.0.
    for (hours, expected) in [(json!(482.0), 482), (json!(6e0), 6), (json!(720), 720)] {
        let resp = app
            .put(
                "/v1/taxpayer/api-access",
                Auth::Bearer(&token),
                json!({"enabled": true, "duration_hours": hours}),
            )
            .await;
        assert_eq!(resp.ok(200)["duration_hours"], expected);
    }
    for bad in [json!(24.5), json!(720.5), json!(5.0), json!(1e10), json!("24")] {
        app.put(
            "/v1/taxpayer/api-access",
            Auth::Bearer(&token),
            json!({"enabled": true, "duration_hours": bad}),
        )
        .await
        .assert_problem(422, "invalid_duration");
    }
}

async fn names_are_limited_by_every_character_sent(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = Auth::Bearer(ADMIN_TOKEN);
    app.post("/v1/admin/gsps", admin.clone(), json!({"name": "x".repeat(100)}))
        .await
        .ok(201);
    // The schema's maxLength counts the spaces too, and so does the gateway.
    app.post(
        "/v1/admin/gsps",
        admin.clone(),
        json!({"name": format!(" {} ", "x".repeat(99))}),
    )
    .await
    .assert_problem(422, "validation_failed");
    app.post("/v1/admin/gsps", admin.clone(), json!({"name": "   "}))
        .await
        .assert_problem(422, "validation_failed");
    app.post("/v1/admin/gsps", admin, json!({"name": "Acme\u{7}GSP"}))
        .await
        .assert_problem(422, "validation_failed");
}

on_both_backends!(
    json_body_refusals_are_the_documented_ones,
    method_not_allowed_names_the_allowed_methods,
    head_is_answered_as_get_without_its_body,
    a_whole_number_of_hours_may_be_written_as_a_float,
    names_are_limited_by_every_character_sent,
);
