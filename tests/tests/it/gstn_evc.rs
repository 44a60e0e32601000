//! EVC filing in the GST System dialect: `EVCOTP` sends the taxpayer a code that signs one filing,
//! and `RETFILE` with `st:"EVC"` uses it up (gstn-dialect.md §2, §3.7).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use diesel::prelude::*;
use gsp_gateway_storage::schema::{audit_events, otp_challenges};
use serde_json::{Value, json};

use crate::gstn_dialect::{GstnClient, aes_encrypt, dialect_app_with, error_cd, hmac};
use crate::helpers::*;

on_both_backends!(
    a_return_is_filed_with_the_evc_otp_the_taxpayer_received,
    an_evc_otp_belongs_to_one_session_and_five_wrong_codes_void_it,
    an_evc_signed_filing_reaches_the_upstream_with_its_signatory,
    the_webhook_channel_delivers_each_code_with_what_it_is_for,
    access_off_or_a_disabled_gsp_voids_the_evc_code,
    evcotp_counts_against_the_authenticate_throttle,
    an_unsigned_filing_never_reaches_the_upstream,
    each_session_end_records_the_evc_code_it_voids,
);

const GSTR1: &str = "/taxpayerapi/v1.1/returns/gstr1";

/// The return a filing carries (GSTR-1's summary, as GSP software sends it).
fn summary(gstin: &str) -> Value {
    json!({"gstin": gstin, "ret_period": "112025", "sec_sum": [{"sec_nm": "B2B", "ttl_rec": 1}]})
}

/// A RETFILE envelope signed by EVC: `sign` keyed by `sign_sid`, `sid` sent as `sid`.
fn evc_envelope(client: &GstnClient<'_>, payload: &Value, sid: &str, sign_sid: &str) -> Value {
    evc_envelope_of(client, &serde_json::to_vec(payload).unwrap(), sid, sign_sid)
}

/// [`evc_envelope`] of any bytes.
fn evc_envelope_of(client: &GstnClient<'_>, plain: &[u8], sid: &str, sign_sid: &str) -> Value {
    let b = B64.encode(plain);
    json!({
        "action": "RETFILE",
        "data": B64.encode(aes_encrypt(&client.sek.unwrap(), b.as_bytes())),
        "sign": B64.encode(hmac(sign_sid.as_bytes(), b.as_bytes())),
        "st": "EVC",
        "sid": sid,
    })
}

impl GstnClient<'_> {
    /// `GET …/authenticate?action=EVCOTP&gstin=&pan=&form_type=` with the data-call headers.
    async fn evc_otp(&self, pan: &str, form_type: &str) -> (u16, Value) {
        let url = format!(
            "{}/taxpayerapi/v1.0/authenticate?action=EVCOTP&gstin={}&pan={pan}&form_type={form_type}",
            self.app.address, self.taxpayer.gstin
        );
        let resp = self
            .data_headers(self.app.client.get(url), self.auth_token.as_deref().unwrap())
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    /// Files the taxpayer's GSTR-1 signed with `sid` = `PAN|OTP`.
    async fn file(&self, sid: &str) -> Value {
        self.file_signed(sid, sid).await
    }

    async fn file_signed(&self, sid: &str, sign_sid: &str) -> Value {
        let body = evc_envelope(self, &summary(&self.taxpayer.gstin), sid, sign_sid);
        self.send_filing(reqwest::Method::POST, GSTR1, body).await
    }

    async fn send_filing(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        self.send_envelope(method, path, Some(body), self.auth_token.as_deref().unwrap())
            .await
    }

    /// Signs in with the OTP the taxpayer received (no sandbox OTP).
    async fn sign_in_from_inbox(&mut self, gsp: &TestGsp) {
        assert_eq!(self.otp_request().await.1["status_cd"], "1");
        let code = inbox_code(self.app, &self.taxpayer, gsp, "session").await;
        assert_eq!(self.auth_token(&code).await.1["status_cd"], "1");
    }
}

/// The taxpayer's inbox message from `gsp` for `purpose`, if any.
async fn inbox_message(
    app: &TestApp,
    taxpayer: &TestTaxpayer,
    gsp: &TestGsp,
    purpose: &str,
) -> Option<Value> {
    let token = app.login(taxpayer).await;
    let inbox = app.get("/v1/taxpayer/otp-requests", Auth::Bearer(&token)).await;
    inbox
        .ok(200)
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["gsp_name"] == gsp.name.as_str() && m["purpose"] == purpose)
        .cloned()
}

async fn inbox_code(app: &TestApp, taxpayer: &TestTaxpayer, gsp: &TestGsp, purpose: &str) -> String {
    let message = inbox_message(app, taxpayer, gsp, purpose)
        .await
        .unwrap_or_else(|| panic!("a {purpose} OTP in the inbox"));
    message["code"].as_str().unwrap().to_owned()
}

/// The EVC challenges as stored: (state, attempts_left, session_id, pan, form_type, code_hash), oldest first.
type EvcRow = (
    String,
    i32,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);

async fn evc_challenges(app: &TestApp) -> Vec<EvcRow> {
    app.state
        .db
        .run(|c| {
            Ok(otp_challenges::table
                .filter(otp_challenges::purpose.eq("evc"))
                .order(otp_challenges::created_at.asc())
                .select((
                    otp_challenges::state,
                    otp_challenges::attempts_left,
                    otp_challenges::session_id,
                    otp_challenges::pan,
                    otp_challenges::form_type,
                    otp_challenges::code_hash,
                ))
                .load(c)?)
        })
        .await
        .unwrap()
}

/// An app without the sandbox's fixed OTP: every code is random and reaches the taxpayer's inbox.
async fn evc_app(backend: Backend, upstream: Option<String>) -> (TestApp, TestTaxpayer, TestGsp) {
    let (app, taxpayer, gsp) = dialect_app_with(backend, |s| {
        s.gstn_sandbox_otp = None;
        s.upstream_url = upstream;
    })
    .await;
    app.enable_access(&taxpayer, 24).await;
    (app, taxpayer, gsp)
}

fn wrong(code: &str) -> &'static str {
    if code == "000000" { "000001" } else { "000000" }
}

async fn a_return_is_filed_with_the_evc_otp_the_taxpayer_received(backend: Backend) {
    let (app, taxpayer, gsp) = evc_app(backend, None).await;
    let mut client = GstnClient::new(&app, gsp.clone(), taxpayer.clone()).await;
    client.sign_in_from_inbox(&gsp).await;
    let pan = &taxpayer.gstin[2..12];

    // A return is filed signed: unsigned, or signed with no code asked for, the client is told to
    // ask for the EVC OTP.
    let unsigned = client
        .data(
            reqwest::Method::POST,
            GSTR1,
            Some(("RETFILE", summary(&taxpayer.gstin))),
        )
        .await;
    assert_eq!(error_cd(&unsigned), "EVCREQUEST", "{unsigned}");
    assert_eq!(
        error_cd(&client.file(&format!("{pan}|123456")).await),
        "EVCREQUEST"
    );

    // Bad parameters are GEN5001 and send nothing.
    for (bad_pan, form_type) in [("ABCDE12345", "R1"), (pan, ""), (pan, "R%201")] {
        let (status, answer) = client.evc_otp(bad_pan, form_type).await;
        assert_eq!((status, error_cd(&answer)), (200, "GEN5001"), "{answer}");
    }
    assert!(evc_challenges(&app).await.is_empty());

    // The code reaches the taxpayer's inbox, saying what it signs; only its hash is stored.
    assert_eq!(
        client.evc_otp(&pan.to_lowercase(), "r1").await,
        (200, json!({"status_cd": "1"}))
    );
    let message = inbox_message(&app, &taxpayer, &gsp, "evc")
        .await
        .expect("the EVC OTP");
    assert_eq!(
        (&message["form_type"], &message["pan"]),
        (&json!("R1"), &json!(pan))
    );
    assert!(
        inbox_message(&app, &taxpayer, &gsp, "session").await.is_none(),
        "the session's OTP was used"
    );
    let code = message["code"].as_str().unwrap().to_owned();
    let stored = evc_challenges(&app).await;
    assert_eq!(stored.len(), 1);
    let (state, attempts, session_id, stored_pan, form_type, hash) = &stored[0];
    assert_eq!((state.as_str(), *attempts), ("pending", 5));
    assert!(session_id.is_some());
    assert_eq!(
        (stored_pan.as_deref(), form_type.as_deref()),
        (Some(pan), Some("R1"))
    );
    assert!(!hash.contains(&code));
    assert_eq!(
        app.activity_event(&taxpayer, "evc_otp.requested").await["detail"]["form_type"],
        "R1"
    );

    // A filing refused for what it is costs neither the code nor an attempt, even with the right
    // code: sent by PUT, not JSON, of another form, or for another taxpayer.
    let sid = format!("{pan}|{code}");
    let good = summary(&taxpayer.gstin);
    let other_gstin = ["24AAUPV7468F1ZW", "27AAPFU0939F1ZV"]
        .into_iter()
        .find(|g| *g != taxpayer.gstin)
        .unwrap();
    let other_taxpayer = summary(other_gstin);
    for (method, path, body, expected) in [
        (
            reqwest::Method::PUT,
            GSTR1,
            evc_envelope(&client, &good, &sid, &sid),
            "GEN5007",
        ),
        (
            reqwest::Method::POST,
            GSTR1,
            evc_envelope_of(&client, b"<xml/>", &sid, &sid),
            "GEN5007",
        ),
        (
            reqwest::Method::POST,
            "/taxpayerapi/v1.1/returns/gstr3b",
            evc_envelope(&client, &good, &sid, &sid),
            "GEN5001",
        ),
        (
            reqwest::Method::POST,
            GSTR1,
            evc_envelope(&client, &other_taxpayer, &sid, &sid),
            "GEN5001",
        ),
        (
            reqwest::Method::POST,
            "/taxpayerapi/v1.1/ledgers/cash",
            evc_envelope(&client, &good, &sid, &sid),
            "GEN5001",
        ),
    ] {
        let answer = client.send_filing(method.clone(), path, body).await;
        assert_eq!(error_cd(&answer), expected, "{method} {path}: {answer}");
    }
    let stored = evc_challenges(&app).await;
    assert_eq!((&stored[0].0[..], stored[0].1), ("pending", 5));

    // A sign that does not match the data, or another PAN, costs no attempt.

    let forged = client.file_signed(&sid, &format!("{pan}|{}", wrong(&code))).await;
    assert_eq!(error_cd(&forged), "GEN5007", "{forged}");
    let other_pan = client.file(&format!("AAAPA1111A|{code}")).await;
    assert_eq!(error_cd(&other_pan), "GEN5001", "{other_pan}");
    assert_eq!(evc_challenges(&app).await[0].1, 5);

    // A wrong code costs one.
    let wrong_code = client.file(&format!("{pan}|{}", wrong(&code))).await;
    assert_eq!(error_cd(&wrong_code), "AUTH4034", "{wrong_code}");
    assert!(
        wrong_code["error"]["message"]
            .as_str()
            .unwrap()
            .contains("4 attempts"),
        "{wrong_code}"
    );
    assert_eq!(evc_challenges(&app).await[0].1, 4);

    // The right one files the return, once.
    let filed = client.file(&sid).await;
    let ack = filed["ack_num"].as_str().expect("an acknowledgement number");
    assert!(ack.starts_with(&format!("AA{}", &taxpayer.gstin[..2])), "{ack}");
    assert_eq!(evc_challenges(&app).await[0].0, "used");
    assert!(inbox_message(&app, &taxpayer, &gsp, "evc").await.is_none());
    let signed = app.activity_event(&taxpayer, "return.signed").await;
    assert_eq!(
        (
            &signed["detail"]["signed_with"],
            &signed["detail"]["pan"],
            &signed["detail"]["form_type"],
            &signed["detail"]["action"],
        ),
        (&json!("EVC"), &json!(pan), &json!("R1"), &json!("RETFILE"))
    );
    assert_eq!(error_cd(&client.file(&sid).await), "EVCREQUEST", "used up");
    let metrics = app.get("/metrics", Auth::None).await.text;
    for series in [
        "gateway_otp_issued_total{purpose=\"evc\"}",
        "gateway_otp_issued_total{purpose=\"session\"}",
        "gateway_otp_failures_total{reason=\"evc_wrong_code\"}",
        "gateway_otp_failures_total{reason=\"evc_no_pending_otp\"}",
    ] {
        assert!(metrics.contains(series), "{series}");
    }

    // DSC filing is not served; another st is bad input.
    for (st, expected) in [("DSC", "GEN5007"), ("AADHAAR", "GEN5001")] {
        let mut body = evc_envelope(&client, &summary(&taxpayer.gstin), &sid, &sid);
        body["st"] = json!(st);
        let answer = client
            .send_envelope(
                reqwest::Method::POST,
                GSTR1,
                Some(body),
                client.auth_token.as_deref().unwrap(),
            )
            .await;
        assert_eq!(error_cd(&answer), expected, "{st}: {answer}");
    }

    // A pending code ends with its session: the taxpayer revokes it, the code is void and gone.
    assert_eq!(client.evc_otp(pan, "R1").await.1["status_cd"], "1");
    let session_id = evc_challenges(&app).await[1].2.clone().unwrap();
    let token = app.login(&taxpayer).await;
    let revoked = app
        .delete(
            &format!("/v1/taxpayer/sessions/{session_id}"),
            Auth::Bearer(&token),
        )
        .await;
    assert_eq!(revoked.status.as_u16(), 204);
    assert_eq!(evc_challenges(&app).await[1].0, "voided");
    assert!(inbox_message(&app, &taxpayer, &gsp, "evc").await.is_none());
}

async fn an_evc_otp_belongs_to_one_session_and_five_wrong_codes_void_it(backend: Backend) {
    let (app, taxpayer, gsp) = evc_app(backend, None).await;
    let pan = &taxpayer.gstin[2..12];
    let mut first = GstnClient::new(&app, gsp.clone(), taxpayer.clone()).await;
    first.sign_in_from_inbox(&gsp).await;
    let mut second = GstnClient::new(&app, gsp.clone(), taxpayer.clone()).await;
    second.sign_in_from_inbox(&gsp).await;

    // The second session's code does not sign the first session's filing.
    assert_eq!(second.evc_otp(pan, "R1").await.1["status_cd"], "1");
    let code = inbox_code(&app, &taxpayer, &gsp, "evc").await;
    let sid = format!("{pan}|{code}");
    assert_eq!(error_cd(&first.file(&sid).await), "EVCREQUEST");
    // Nor does it open a session on the REST face.
    app.exchange_otp(&gsp, &taxpayer, &code)
        .await
        .assert_problem(401, "otp_expired");

    // Four wrong codes leave it pending; the fifth voids it, and then even the right one is refused.
    let wrong_sid = format!("{pan}|{}", wrong(&code));
    for left in (1..=4).rev() {
        let answer = second.file(&wrong_sid).await;
        assert_eq!(error_cd(&answer), "AUTH4034", "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("{left} attempt"))
        );
    }
    assert_eq!(error_cd(&second.file(&wrong_sid).await), "EVCREQUEST");
    assert_eq!(error_cd(&second.file(&sid).await), "EVCREQUEST");
    let stored = evc_challenges(&app).await;
    assert_eq!((stored[0].0.as_str(), stored[0].1), ("voided", 0));
    assert!(inbox_message(&app, &taxpayer, &gsp, "evc").await.is_none());

    // A new request replaces the pending one; the replaced code, already delivered, is "no code" and
    // costs the new one no attempt.
    assert_eq!(second.evc_otp(pan, "R1").await.1["status_cd"], "1");
    let replaced = inbox_code(&app, &taxpayer, &gsp, "evc").await;
    assert_eq!(second.evc_otp(pan, "gstr1").await.1["status_cd"], "1");
    let states: Vec<String> = evc_challenges(&app).await.into_iter().map(|r| r.0).collect();
    assert_eq!(states, ["voided", "replaced", "pending"]);
    if replaced != inbox_code(&app, &taxpayer, &gsp, "evc").await {
        let answer = second.file(&format!("{pan}|{replaced}")).await;
        assert_eq!(error_cd(&answer), "EVCREQUEST", "{answer}");
        assert_eq!(evc_challenges(&app).await[2].1, 5);
    }

    // The OTP request rate (5 per 15 minutes) counts EVC codes apart from session codes.
    assert_eq!(second.evc_otp(pan, "R1").await.1["status_cd"], "1");
    assert_eq!(second.evc_otp(pan, "R1").await.1["status_cd"], "1");
    let (status, throttled) = second.evc_otp(pan, "R1").await;
    assert_eq!(
        (status, error_cd(&throttled)),
        (429, "rate_limited"),
        "{throttled}"
    );
    // A session OTP request replaces the GSP's pending session OTP, not a pending EVC code.
    app.request_otp(&gsp, &taxpayer).await.ok(202);
    assert_eq!(evc_challenges(&app).await.last().unwrap().0, "pending");

    // Logging out voids the session's pending code and clears the inbox.
    assert!(evc_challenges(&app).await.iter().any(|r| r.0 == "pending"));
    assert_eq!(second.logout().await.1["status_cd"], "1");
    let stored = evc_challenges(&app).await;
    assert!(stored.iter().all(|r| r.0 != "pending"), "{stored:?}");
    assert!(inbox_message(&app, &taxpayer, &gsp, "evc").await.is_none());
}

async fn an_evc_signed_filing_reaches_the_upstream_with_its_signatory(backend: Backend) {
    let upstream = spawn_upstream().await;
    let (app, taxpayer, gsp) = evc_app(backend, Some(upstream)).await;
    let pan = &taxpayer.gstin[2..12];
    let mut client = GstnClient::new(&app, gsp.clone(), taxpayer.clone()).await;
    client.sign_in_from_inbox(&gsp).await;

    // A refused filing never reaches the upstream: the echo would answer status_cd 1.
    assert_eq!(
        error_cd(&client.file(&format!("{pan}|123456")).await),
        "EVCREQUEST"
    );

    // A code lives 10 minutes.
    assert_eq!(client.evc_otp(pan, "R1").await.1["status_cd"], "1");
    let late = inbox_code(&app, &taxpayer, &gsp, "evc").await;
    app.advance(chrono::TimeDelta::minutes(11));
    assert_eq!(
        error_cd(&client.file(&format!("{pan}|{late}")).await),
        "EVCREQUEST"
    );

    // The action and st are read in any case, as the GST System does.
    assert_eq!(client.evc_otp(pan, "R1").await.1["status_cd"], "1");
    let code = inbox_code(&app, &taxpayer, &gsp, "evc").await;
    let sid = format!("{pan}|{code}");
    let mut body = evc_envelope(&client, &summary(&taxpayer.gstin), &sid, &sid);
    body["action"] = json!("retfile");
    body["st"] = json!("evc");
    let got = client.send_filing(reqwest::Method::POST, GSTR1, body).await;
    assert_eq!(
        (&got["method"], &got["path"]),
        (&json!("POST"), &json!("/taxpayerapi/v1.1/returns/gstr1")),
        "{got}"
    );
    let headers = &got["headers"];
    assert_eq!(headers["x-gstn-action"], "RETFILE");
    assert_eq!(headers["x-gstn-signed-with"], "EVC");
    assert_eq!(headers["x-gstn-signatory-pan"], pan);
    assert_eq!(headers["x-gstn-form-type"], "R1");
    assert_eq!(headers["x-taxpayer-gstin"], taxpayer.gstin.as_str());
    let body = got["body"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(body).unwrap(),
        summary(&taxpayer.gstin)
    );
    assert!(
        !got.to_string().contains(&code),
        "the code never reaches the upstream: {got}"
    );
}

/// A webhook receiver: records every JSON body POSTed to it; `/fail` answers 500.
async fn spawn_webhook() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = received.clone();
    let server = HttpServer::new(move || {
        let store = store.clone();
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Json<Value>| {
            let store = store.clone();
            async move {
                store.lock().unwrap().push(body.into_inner());
                if req.path() == "/fail" {
                    HttpResponse::InternalServerError().finish()
                } else {
                    HttpResponse::NoContent().finish()
                }
            }
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    (format!("http://127.0.0.1:{port}"), received)
}

async fn the_webhook_channel_delivers_each_code_with_what_it_is_for(backend: Backend) {
    use gsp_gateway_api::settings::OtpDelivery;
    let (url, received) = spawn_webhook().await;
    let hook = format!("{url}/sms");
    let (app, taxpayer, gsp) = dialect_app_with(backend, |s| {
        s.gstn_sandbox_otp = None;
        s.otp_delivery = OtpDelivery::Webhook;
        s.otp_webhook_url = Some(hook);
    })
    .await;
    app.enable_access(&taxpayer, 24).await;
    let pan = &taxpayer.gstin[2..12];

    // A session OTP: the contract's four fields, and `purpose`; nothing in the inbox.
    let accepted = app.request_otp(&gsp, &taxpayer).await;
    assert_eq!(accepted.ok(202)["delivery"], "webhook");
    let message = received.lock().unwrap().pop().expect("the webhook was called");
    assert_eq!(
        (&message["gstin"], &message["gsp_name"], &message["purpose"]),
        (&json!(taxpayer.gstin), &json!(gsp.name), &json!("session"))
    );
    assert!(message["expires_at"].as_str().unwrap().ends_with('Z'));
    assert!(inbox_message(&app, &taxpayer, &gsp, "session").await.is_none());
    let code = message["code"].as_str().unwrap();
    app.exchange_otp(&gsp, &taxpayer, code).await.ok(200);

    // An EVC OTP says what it signs.
    let mut client = GstnClient::new(&app, gsp.clone(), taxpayer.clone()).await;
    assert_eq!(client.otp_request().await.1["status_cd"], "1");
    let session_code = received.lock().unwrap().pop().unwrap()["code"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(client.auth_token(&session_code).await.1["status_cd"], "1");
    assert_eq!(client.evc_otp(pan, "GSTR1").await.1["status_cd"], "1");
    let evc = received.lock().unwrap().pop().unwrap();
    assert_eq!(
        (&evc["purpose"], &evc["form_type"], &evc["pan"]),
        (&json!("evc"), &json!("GSTR1"), &json!(pan))
    );
    let filed = client
        .file(&format!("{pan}|{}", evc["code"].as_str().unwrap()))
        .await;
    assert!(filed["ack_num"].is_string(), "{filed}");

    // A webhook that fails: 502, and the code nobody received is void.
    let failing = format!("{url}/fail");
    let (app, taxpayer, gsp) = dialect_app_with(backend, |s| {
        s.otp_delivery = OtpDelivery::Webhook;
        s.otp_webhook_url = Some(failing);
    })
    .await;
    app.enable_access(&taxpayer, 24).await;
    app.request_otp(&gsp, &taxpayer)
        .await
        .assert_problem(502, "upstream_unavailable");
    let states: Vec<String> = app
        .state
        .db
        .run(|c| Ok(otp_challenges::table.select(otp_challenges::state).load(c)?))
        .await
        .unwrap();
    assert_eq!(states, ["voided"]);
}

async fn access_off_or_a_disabled_gsp_voids_the_evc_code(backend: Backend) {
    use gsp_gateway_api::services::provisioning;
    let (app, taxpayer, gsp) = evc_app(backend, None).await;
    let pan = &taxpayer.gstin[2..12];
    let mut client = GstnClient::new(&app, gsp.clone(), taxpayer.clone()).await;
    client.sign_in_from_inbox(&gsp).await;

    // Access off: the code is void, gone from the inbox, and counted in the event.
    assert_eq!(client.evc_otp(pan, "R1").await.1["status_cd"], "1");
    app.disable_access(&taxpayer).await;
    assert_eq!(evc_challenges(&app).await[0].0, "voided");
    assert!(inbox_message(&app, &taxpayer, &gsp, "evc").await.is_none());
    assert_eq!(
        app.activity_event(&taxpayer, "access.disabled").await["detail"]["voided_otps"],
        1
    );

    // The operator disables the GSP: the same.
    app.enable_access(&taxpayer, 24).await;
    let mut client = GstnClient::new(&app, gsp.clone(), taxpayer.clone()).await;
    client.sign_in_from_inbox(&gsp).await;
    assert_eq!(client.evc_otp(pan, "R1").await.1["status_cd"], "1");
    assert_eq!(evc_challenges(&app).await[1].0, "pending");
    let id = gsp.client_id.clone();
    app.as_operator(move |c, e| provisioning::disable_gsp(c, &id, chrono::Utc::now(), e))
        .await
        .unwrap();
    assert_eq!(evc_challenges(&app).await[1].0, "voided");
    assert!(inbox_message(&app, &taxpayer, &gsp, "evc").await.is_none());
}

async fn evcotp_counts_against_the_authenticate_throttle(backend: Backend) {
    let (app, taxpayer, gsp) = dialect_app_with(backend, |s| {
        s.gstn_sandbox_otp = Some("102030".into());
        s.gstn_authenticate_rate_per_second = 1;
        s.gstn_authenticate_burst = 3;
    })
    .await;
    app.enable_access(&taxpayer, 24).await;
    let pan = &taxpayer.gstin[2..12];
    let mut client = GstnClient::new(&app, gsp.clone(), taxpayer.clone()).await;
    client.sign_in().await; // OTPREQUEST and AUTHTOKEN: two of the three
    let mut sent = 0;
    let mut throttled = None;
    for _ in 0..5 {
        let (status, answer) = client.evc_otp(pan, "R1").await;
        if status == 429 {
            throttled = Some(answer);
            break;
        }
        assert_eq!(answer["status_cd"], "1", "{answer}");
        sent += 1;
    }
    let throttled = throttled.expect("a 429 within five EVCOTPs at one per second");
    assert_eq!(error_cd(&throttled), "rate_limited");
    assert_eq!(
        evc_challenges(&app).await.len(),
        sent,
        "a throttled EVCOTP stores nothing"
    );
}

async fn an_unsigned_filing_never_reaches_the_upstream(backend: Backend) {
    let upstream = spawn_upstream().await;
    let (app, taxpayer, gsp) = evc_app(backend, Some(upstream)).await;
    let mut client = GstnClient::new(&app, gsp.clone(), taxpayer.clone()).await;
    client.sign_in_from_inbox(&gsp).await;
    // The echo upstream would answer each with status_cd 1.
    for action in ["RETFILE", "retfile", "RETFILE ", "RET FILE", "RETFILE\t"] {
        let answer = client
            .data(
                reqwest::Method::POST,
                GSTR1,
                Some((action, summary(&taxpayer.gstin))),
            )
            .await;
        let code = error_cd(&answer);
        assert!(code == "EVCREQUEST" || code == "GEN5007", "{action:?}: {answer}");
    }
    let read = client
        .data(
            reqwest::Method::GET,
            &format!("{GSTR1}?action=RETFILE&ret_period=112025"),
            None,
        )
        .await;
    assert_eq!(error_cd(&read), "GEN5007", "{read}");
}

/// How a session ends.
#[derive(Debug, Clone, Copy)]
enum SessionEnd {
    Taxpayer,
    Logout,
    RefreshReused,
    AccessOff,
    GspDisabled,
}

impl SessionEnd {
    /// Ends the session; returns the session's `revoked_reason` and the actor of its end.
    async fn end(
        self,
        app: &TestApp,
        taxpayer: &TestTaxpayer,
        gsp: &TestGsp,
        session: &TestSession,
    ) -> (&'static str, String) {
        use gsp_gateway_api::services::provisioning;
        let gsp_actor = format!("gsp:{}", gsp.client_id);
        let taxpayer_actor = format!("taxpayer:{}", taxpayer.username);
        match self {
            Self::Taxpayer => {
                let token = app.login(taxpayer).await;
                let path = format!("/v1/taxpayer/sessions/{}", session.session_id);
                assert_eq!(app.delete(&path, Auth::Bearer(&token)).await.status.as_u16(), 204);
                ("taxpayer", taxpayer_actor)
            }
            Self::Logout => {
                app.post("/v1/gsp/logout", Auth::Bearer(&session.access_token), json!({}))
                    .await
                    .ok(204);
                ("logout", gsp_actor)
            }
            Self::RefreshReused => {
                app.refresh(gsp, &session.refresh_token).await.ok(200);
                app.refresh(gsp, &session.refresh_token)
                    .await
                    .assert_problem(401, "refresh_token_reused");
                ("refresh_token_reused", gsp_actor)
            }
            Self::AccessOff => {
                app.disable_access(taxpayer).await;
                app.enable_access(taxpayer, 24).await;
                ("access_disabled", taxpayer_actor)
            }
            Self::GspDisabled => {
                let id = gsp.client_id.clone();
                app.as_operator(move |c, e| provisioning::disable_gsp(c, &id, chrono::Utc::now(), e))
                    .await
                    .unwrap();
                let id = gsp.client_id.clone();
                app.as_operator(move |c, e| provisioning::enable_gsp(c, &id, chrono::Utc::now(), e))
                    .await
                    .unwrap();
                ("gsp_disabled", "operator".to_owned())
            }
        }
    }
}

/// An audit event's (actor, gstin, gsp_client_id, session_id, detail).
type AuditFacts<Detail> = (String, Option<String>, Option<String>, Option<String>, Detail);

/// The `evc_otp.voided` events as stored, oldest first.
type VoidedEvent = AuditFacts<Value>;

async fn voided_events(app: &TestApp) -> Vec<VoidedEvent> {
    let rows: Vec<AuditFacts<String>> = app
        .state
        .db
        .run(|c| {
            Ok(audit_events::table
                .filter(audit_events::action.eq("evc_otp.voided"))
                .order(audit_events::id.asc())
                .select((
                    audit_events::actor,
                    audit_events::gstin,
                    audit_events::gsp_client_id,
                    audit_events::session_id,
                    audit_events::detail,
                ))
                .load(c)?)
        })
        .await
        .unwrap();
    rows.into_iter()
        .map(|(actor, gstin, gsp, session, detail)| {
            (actor, gstin, gsp, session, serde_json::from_str(&detail).unwrap())
        })
        .collect()
}

/// The id of the session's pending EVC challenge.
async fn pending_evc_id(app: &TestApp, session_id: &str) -> String {
    let session_id = session_id.to_owned();
    app.state
        .db
        .run(move |c| {
            Ok(otp_challenges::table
                .filter(otp_challenges::session_id.eq(session_id))
                .filter(otp_challenges::state.eq("pending"))
                .select(otp_challenges::id)
                .first(c)?)
        })
        .await
        .unwrap()
}

async fn each_session_end_records_the_evc_code_it_voids(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.otp_rate_limit = 100).await;
    let taxpayer = app.create_taxpayer(1).await;
    let gsp = app.create_gsp("Voiding GSP").await;
    app.enable_access(&taxpayer, 24).await;
    let ends = [
        SessionEnd::Taxpayer,
        SessionEnd::Logout,
        SessionEnd::RefreshReused,
        SessionEnd::AccessOff,
        SessionEnd::GspDisabled,
    ];
    for end in ends {
        // No pending code: the end records no voided code.
        let before = voided_events(&app).await.len();
        let session = app.open_session(&gsp, &taxpayer).await;
        end.end(&app, &taxpayer, &gsp, &session).await;
        assert_eq!(voided_events(&app).await.len(), before, "{end:?} without a code");

        // A pending code: one evc_otp.voided, by whoever ended the session, naming the code.
        let session = app.open_session(&gsp, &taxpayer).await;
        app.open_evc_otp(&gsp, &session.session_id, "R3B").await;
        let challenge_id = pending_evc_id(&app, &session.session_id).await;
        let (ended_by, actor) = end.end(&app, &taxpayer, &gsp, &session).await;
        let events = voided_events(&app).await;
        assert_eq!(events.len(), before + 1, "{end:?}: {events:?}");
        assert_eq!(
            events.last().unwrap(),
            &(
                actor,
                Some(taxpayer.gstin.clone()),
                Some(gsp.client_id.clone()),
                Some(session.session_id.clone()),
                json!({
                    "otp_request_id": challenge_id,
                    "form_type": "R3B",
                    "reason": "session ended",
                    "ended_by": ended_by,
                }),
            ),
            "{end:?}"
        );
        let shown = app.activity_event(&taxpayer, "evc_otp.voided").await;
        assert_eq!(
            (&shown["session_id"], &shown["detail"]["ended_by"]),
            (&json!(session.session_id), &json!(ended_by)),
            "{end:?}: {shown}"
        );
    }
}
