//! The GST System's own dialect, played by an independent GSP client: RSA through the `openssl`
//! command line with the published key, AES-256-ECB and HMAC-SHA256 written here from the spec.

use std::io::Write;
use std::process::{Command, Stdio};

use aes::Aes256;
use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::TimeDelta;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde_json::{Value, json};

use crate::helpers::*;

on_both_backends!(
    a_gst_system_client_runs_the_whole_dialect_flow,
    dialect_refusals_use_the_gst_system_codes,
    switching_access_off_on_the_rest_face_refuses_the_next_dialect_call,
    dialect_calls_are_forwarded_upstream_as_plain_json,
    a_rotated_secret_or_a_disabled_gsp_is_refused_by_the_dialect,
    a_throttled_otp_request_says_when_to_retry,
    an_upstream_that_is_down_is_gen5008_with_500,
    each_gsp_chooses_how_status_cd_is_written,
    a_client_on_the_rotated_out_certificate_signs_in_and_out_during_the_grace,
    a_gsp_looping_on_authenticate_is_throttled_per_client,
);

pub(crate) type Key = [u8; 32];

/// A GSTR-1 summary call without a `gstin` query parameter (the header names the taxpayer).
const RETSUM: &str = "/taxpayerapi/v1.1/returns/gstr1?action=RETSUM&ret_period=112025";

pub(crate) fn aes_encrypt(key: &Key, plain: &[u8]) -> Vec<u8> {
    ecb::Encryptor::<Aes256>::new(key.into()).encrypt_padded_vec_mut::<Pkcs7>(plain)
}

pub(crate) fn aes_decrypt(key: &Key, cipher: &[u8]) -> Vec<u8> {
    ecb::Decryptor::<Aes256>::new(key.into())
        .decrypt_padded_vec_mut::<Pkcs7>(cipher)
        .expect("padding")
}

pub(crate) fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn random_key() -> Key {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    key
}

/// A GSP client written against the GST System, pointed at the gateway.
pub(crate) struct GstnClient<'a> {
    pub(crate) app: &'a TestApp,
    gsp: TestGsp,
    pub(crate) taxpayer: TestTaxpayer,
    public_key_pem: std::path::PathBuf,
    app_key: Key,
    pub(crate) sek: Option<Key>,
    pub(crate) auth_token: Option<String>,
}

impl<'a> GstnClient<'a> {
    pub(crate) async fn new(app: &'a TestApp, gsp: TestGsp, taxpayer: TestTaxpayer) -> Self {
        let pem = app
            .client
            .get(format!("{}/taxpayerapi/public-key.pem", app.address))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let path = std::env::temp_dir().join(format!("gstn-{}.pem", uuid::Uuid::new_v4()));
        std::fs::write(&path, pem).unwrap();
        Self {
            app,
            gsp,
            taxpayer,
            public_key_pem: path,
            app_key: random_key(),
            sek: None,
            auth_token: None,
        }
    }

    /// Downloads the published key again, as GSP software does when it is told TEC4002.
    async fn fetch_certificate(&mut self) {
        let fresh = GstnClient::new(self.app, self.gsp.clone(), self.taxpayer.clone()).await;
        self.public_key_pem = fresh.public_key_pem;
    }

    /// RSA-PKCS#1 v1.5 with the openssl command line: an implementation the gateway does not share.
    fn rsa_app_key(&self, key: &[u8]) -> String {
        let mut child = Command::new("openssl")
            .args(["pkeyutl", "-encrypt", "-pubin", "-inkey"])
            .arg(&self.public_key_pem)
            .args(["-pkeyopt", "rsa_padding_mode:pkcs1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("openssl is installed");
        child.stdin.take().unwrap().write_all(key).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout.len(), 256, "one 2048-bit RSA block");
        B64.encode(out.stdout)
    }

    fn headers(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.header("clientid", &self.gsp.client_id)
            .header("client-secret", &self.gsp.client_secret)
            .header("state-cd", &self.taxpayer.gstin[..2])
            .header("ip-usr", "203.0.113.7")
            .header("txn", "LAPN24235325555")
            .header("Content-Type", "application/json")
    }

    async fn authenticate(&self, body: Value) -> (u16, Value) {
        let req = self.headers(
            self.app
                .client
                .post(format!("{}/taxpayerapi/v1.0/authenticate", self.app.address)),
        );
        let resp = req.json(&body).send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    pub(crate) async fn otp_request(&self) -> (u16, Value) {
        self.authenticate(json!({"action": "OTPREQUEST", "username": self.taxpayer.username, "app_key": self.rsa_app_key(&self.app_key)}))
            .await
    }

    pub(crate) async fn auth_token(&mut self, otp: &str) -> (u16, Value) {
        let body = json!({
            "action": "AUTHTOKEN",
            "username": self.taxpayer.username,
            "app_key": self.rsa_app_key(&self.app_key),
            "otp": B64.encode(aes_encrypt(&self.app_key, otp.as_bytes())),
        });
        let (status, answer) = self.authenticate(body).await;
        if answer["status_cd"] == "1" {
            self.take_tokens(&answer);
        }
        (status, answer)
    }

    /// OTPREQUEST, then AUTHTOKEN with the sandbox OTP: an open session.
    pub(crate) async fn sign_in(&mut self) {
        self.otp_request().await;
        assert_eq!(self.auth_token("102030").await.1["status_cd"], "1");
    }

    fn take_tokens(&mut self, answer: &Value) {
        let sek = aes_decrypt(
            &self.app_key,
            &B64.decode(answer["sek"].as_str().unwrap()).unwrap(),
        );
        self.sek = Some(sek.try_into().expect("a 32-byte SEK"));
        self.auth_token = Some(answer["auth_token"].as_str().unwrap().to_owned());
    }

    async fn refresh_with_new_app_key(&mut self) -> (u16, Value) {
        let new_key = random_key();
        let sek = self.sek.unwrap();
        let body = json!({
            "action": "REFRESHTOKEN",
            "username": self.taxpayer.username,
            "auth_token": self.auth_token,
            "app_key": B64.encode(aes_encrypt(&sek, &new_key)),
        });
        let (status, answer) = self.authenticate(body).await;
        if answer["status_cd"] == "1" {
            self.app_key = new_key;
            self.take_tokens(&answer);
        }
        (status, answer)
    }

    pub(crate) async fn logout(&self) -> (u16, Value) {
        self.authenticate(json!({
            "action": "LOGOUT",
            "username": self.taxpayer.username,
            "auth_token": self.auth_token,
            "app_key": self.rsa_app_key(&self.app_key),
        }))
        .await
    }

    pub(crate) fn data_headers(&self, req: reqwest::RequestBuilder, token: &str) -> reqwest::RequestBuilder {
        self.headers(req)
            .header("auth-token", token)
            .header("username", &self.taxpayer.username)
            .header("gstin", &self.taxpayer.gstin)
            .header("ret_period", "112025")
    }

    /// A data call; returns the decrypted JSON of a success, or the envelope of a failure.
    /// A GSTR-1 summary ([`RETSUM`]), the simplest data call.
    async fn retsum(&self) -> Value {
        self.data(reqwest::Method::GET, RETSUM, None).await
    }

    pub(crate) async fn data(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        payload: Option<(&str, Value)>,
    ) -> Value {
        self.data_with_token(
            method,
            path_and_query,
            payload,
            self.auth_token.as_deref().unwrap(),
        )
        .await
    }

    pub(crate) async fn data_with_token(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        payload: Option<(&str, Value)>,
        token: &str,
    ) -> Value {
        let body = payload.map(|(action, json)| {
            let sek = self.sek.unwrap();
            let b = B64.encode(serde_json::to_vec_pretty(&json).unwrap());
            json!({
                "action": action,
                "data": B64.encode(aes_encrypt(&sek, b.as_bytes())),
                "hmac": B64.encode(hmac(&sek, b.as_bytes())),
            })
        });
        self.send_envelope(method, path_and_query, body, token).await
    }

    /// Sends a data call with `body` as the envelope; returns the decrypted JSON of a success, or the
    /// envelope of a failure.
    pub(crate) async fn send_envelope(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<Value>,
        token: &str,
    ) -> Value {
        let sek = self.sek.unwrap();
        let mut req = self.data_headers(
            self.app
                .client
                .request(method, format!("{}{path_and_query}", self.app.address)),
            token,
        );
        if let Some(body) = body {
            req = req.json(&body);
        }
        let answer: Value = req.send().await.unwrap().json().await.unwrap();
        if answer["status_cd"] != "1" {
            return answer;
        }
        let rek: Key = aes_decrypt(&sek, &B64.decode(answer["rek"].as_str().unwrap()).unwrap())
            .try_into()
            .unwrap();
        let b_prime = aes_decrypt(&rek, &B64.decode(answer["data"].as_str().unwrap()).unwrap());
        assert_eq!(
            B64.encode(hmac(&rek, &b_prime)),
            answer["hmac"].as_str().unwrap(),
            "response HMAC"
        );
        serde_json::from_slice(&B64.decode(&b_prime).unwrap()).unwrap()
    }
}

async fn dialect_app(backend: Backend) -> (TestApp, TestTaxpayer, TestGsp) {
    dialect_app_with(backend, |_| {}).await
}

pub(crate) async fn dialect_app_with(
    backend: Backend,
    configure: impl FnOnce(&mut gsp_gateway_api::Settings),
) -> (TestApp, TestTaxpayer, TestGsp) {
    let app = spawn_app_with(backend, |s| {
        s.gstn_sandbox_otp = Some("102030".into());
        configure(s);
    })
    .await;
    let taxpayer = app.create_taxpayer(1).await;
    let gsp = app.create_gsp("Legacy GSP").await;
    (app, taxpayer, gsp)
}

pub(crate) fn error_cd(answer: &Value) -> &str {
    assert_eq!(answer["status_cd"], "0", "{answer}");
    answer["error"]["error_cd"].as_str().unwrap_or("")
}

async fn a_gst_system_client_runs_the_whole_dialect_flow(backend: Backend) {
    let (app, taxpayer, gsp) = dialect_app(backend).await;
    app.enable_access(&taxpayer, 24).await;
    let mut client = GstnClient::new(&app, gsp.clone(), taxpayer.clone()).await;

    assert_eq!(client.otp_request().await, (200, json!({"status_cd": "1"})));
    let (status, answer) = client.auth_token("102030").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status_cd"], "1", "{answer}");
    assert_eq!(answer["expiry"], 360);
    let token = client.auth_token.clone().unwrap();
    assert!(
        token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{token}"
    );
    assert_eq!(answer["sek"].as_str().unwrap().len(), 64);

    let saved = client
        .data(
            reqwest::Method::PUT,
            "/taxpayerapi/v2.1/returns/gstr1",
            Some((
                "RETSAVE",
                json!({"gstin": taxpayer.gstin, "fp": "112025", "gt": 0.0, "cur_gt": 0.0, "b2b": []}),
            )),
        )
        .await;
    let reference = saved["reference_id"].as_str().expect("a reference id").to_owned();
    let status = client
        .data(
            reqwest::Method::GET,
            &format!(
                "/taxpayerapi/v1.0/returns?action=RETSTATUS&gstin={}&ret_period=112025&ref_id={reference}",
                taxpayer.gstin
            ),
            None,
        )
        .await;
    assert_eq!(status["status_cd"], "P", "{status}");
    assert_eq!(status["form_typ"], "R1");
    let b2b = client
        .data(
            reqwest::Method::GET,
            &format!(
                "/taxpayerapi/v3.0/returns/gstr1?action=B2B&gstin={}&ret_period=112025",
                taxpayer.gstin
            ),
            None,
        )
        .await;
    assert!(b2b["b2b"][0]["inv"].is_array(), "{b2b}");

    let old_token = token.clone();
    let (_, refreshed) = client.refresh_with_new_app_key().await;
    assert_eq!(refreshed["status_cd"], "1", "{refreshed}");
    assert_ne!(client.auth_token.as_deref(), Some(old_token.as_str()));
    let summary = client
        .data(
            reqwest::Method::GET,
            &format!(
                "/taxpayerapi/v1.1/returns/gstr1?action=RETSUM&gstin={}&ret_period=112025",
                taxpayer.gstin
            ),
            None,
        )
        .await;
    assert_eq!(summary["gstin"], taxpayer.gstin.as_str(), "{summary}");
    let stale = client
        .data_with_token(reqwest::Method::GET, RETSUM, None, &old_token)
        .await;
    assert_eq!(error_cd(&stale), "AUTH4033");

    // The consent is a session like any other, with the dialect's txn in the taxpayer's activity.
    let taxpayer_token = app.login(&taxpayer).await;
    let sessions = app
        .get("/v1/taxpayer/sessions", Auth::Bearer(&taxpayer_token))
        .await;
    assert_eq!(sessions.ok(200)[0]["status"], "active");
    assert_eq!(sessions.body[0]["gsp"]["name"], "Legacy GSP");
    let activity = app
        .get("/v1/taxpayer/activity", Auth::Bearer(&taxpayer_token))
        .await;
    let items = activity.ok(200)["items"].as_array().unwrap().clone();
    let created = items
        .iter()
        .find(|e| e["action"] == "session.created")
        .expect("session.created");
    assert_eq!(created["detail"]["txn"], "LAPN24235325555");
    assert_eq!(created["ip"], "203.0.113.7");

    assert_eq!(client.logout().await, (200, json!({"status_cd": "1"})));
    let after = client.retsum().await;
    assert_eq!(error_cd(&after), "AUTH4033");
}

/// `keys rotate-gstn` publishes a new certificate; software that loaded the old one keeps working
/// for the grace period: OTPREQUEST, AUTHTOKEN, a data call and LOGOUT all decrypt its app key. After
/// it, TEC4002 tells the software to fetch the new certificate.
/// (The rare block for which the new key also yields 32 bytes is found and tested in rsa_key.rs.)
async fn a_client_on_the_rotated_out_certificate_signs_in_and_out_during_the_grace(backend: Backend) {
    let (app, taxpayer, gsp) = dialect_app(backend).await;
    app.enable_access(&taxpayer, 720).await;
    let mut client = GstnClient::new(&app, gsp, taxpayer).await;
    let settings = gsp_gateway_api::Settings {
        database_url: app.database_url.clone(),
        ..Default::default()
    };
    let command = gsp_gateway_api::cli::Command::Keys(gsp_gateway_api::cli::KeysCommand::RotateGstn);
    gsp_gateway_api::cli::execute(command, settings).await.unwrap();
    gsp_gateway_api::gstn::reload(&app.state).await.unwrap();
    assert_eq!(
        app.state.gstn.kids().len(),
        2,
        "the new key and the old one in its grace"
    );

    // Several rounds, each with fresh RSA padding and a fresh app key.
    for _ in 0..3 {
        client.app_key = random_key();
        assert_eq!(client.otp_request().await, (200, json!({"status_cd": "1"})));
        let (status, answer) = client.auth_token("102030").await;
        assert_eq!((status, &answer["status_cd"]), (200, &json!("1")), "{answer}");
        let summary = client.retsum().await;
        assert_eq!(summary["ret_period"], "112025", "{summary}");
        assert_eq!(client.logout().await, (200, json!({"status_cd": "1"})));
    }

    // After the grace the old certificate's blocks are refused with TEC4002, and the client recovers
    // by fetching the current certificate. (Under implicit rejection about 1 block in 246 yields some
    // 32-byte key, which OTPREQUEST cannot tell from a real one: so two answers of three.)
    app.advance(gsp_gateway_api::gstn::rsa_key::GRACE + TimeDelta::minutes(1));
    gsp_gateway_api::gstn::reload(&app.state).await.unwrap();
    assert_eq!(app.state.gstn.kids().len(), 1, "the old key is gone");
    let mut refused = Vec::new();
    for _ in 0..3 {
        client.app_key = random_key();
        let (_, answer) = client.otp_request().await;
        refused.push(
            answer["error"]["error_cd"]
                .as_str()
                .unwrap_or("accepted")
                .to_owned(),
        );
    }
    assert!(
        refused.iter().filter(|code| *code == "TEC4002").count() >= 2,
        "{refused:?}"
    );
    client.fetch_certificate().await;
    client.sign_in().await;
    assert_eq!(client.retsum().await["ret_period"], "112025");

    // LOGOUT with a key that decrypts but is not the session's is AUTH4036, and the session lives on.
    let other_key = client.rsa_app_key(&random_key());
    let (status, answer) = client
        .authenticate(json!({"action": "LOGOUT", "username": client.taxpayer.username, "auth_token": client.auth_token, "app_key": other_key}))
        .await;
    assert_eq!((status, error_cd(&answer)), (200, "AUTH4036"));
    assert_eq!(client.retsum().await["ret_period"], "112025");
    assert_eq!(client.logout().await, (200, json!({"status_cd": "1"})));
}

async fn dialect_refusals_use_the_gst_system_codes(backend: Backend) {
    let (app, taxpayer, gsp) = dialect_app(backend).await;
    let client = GstnClient::new(&app, gsp.clone(), taxpayer.clone()).await;
    let url = format!("{}/taxpayerapi/v0.2/authenticate/", app.address);
    let body = json!({"action": "OTPREQUEST", "username": taxpayer.username, "app_key": client.rsa_app_key(&client.app_key)});
    for (clientid, secret, code) in [
        (None, Some(gsp.client_secret.as_str()), "AUT4031"),
        (Some(gsp.client_id.as_str()), None, "AUT4032"),
        (Some("l7xxunknown"), Some(gsp.client_secret.as_str()), "AUT4033"),
        (Some(gsp.client_id.as_str()), Some("0000"), "AUT4034"),
    ] {
        let mut req = app
            .client
            .post(&url)
            .header("state-cd", &taxpayer.gstin[..2])
            .json(&body);
        if let Some(id) = clientid {
            req = req.header("clientid", id);
        }
        if let Some(secret) = secret {
            req = req.header("client-secret", secret);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 403);
        assert_eq!(error_cd(&resp.json().await.unwrap()), code);
    }
    let (status, answer) = client.otp_request().await;
    assert_eq!((status, error_cd(&answer)), (200, "AUTH4037"), "access off");
    app.enable_access(&taxpayer, 6).await;
    assert_eq!(
        error_cd(&client.otp_request().await.1),
        "AUTH4037",
        "6 hours is not more than the 360-minute token"
    );
    app.enable_access(&taxpayer, 24).await;
    let wrong_state = app
        .client
        .post(format!("{}/taxpayerapi/v1.0/authenticate", app.address))
        .header("clientid", &gsp.client_id)
        .header("client-secret", &gsp.client_secret)
        .header("state-cd", "07")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(error_cd(&wrong_state.json().await.unwrap()), "AUTH4041");
    let (_, unknown) = client
        .authenticate(json!({"action": "OTPREQUEST", "username": "nobody.here", "app_key": "x"}))
        .await;
    assert_eq!(error_cd(&unknown), "AUTH4032");
    // Every RSA-wrapped key that yields no 32-byte key gets TEC4002, the code that makes GSP software
    // fetch the current certificate: a block not below any modulus, a cut-off block, a well-padded
    // 16-byte key. (A block under another key is tested with the rotation, below.)
    for (what, app_key) in [
        ("not below the modulus", B64.encode([0xFFu8; 256])),
        ("cut off", client.rsa_app_key(&[1u8; 32])[..10].to_owned()),
        ("a 16-byte key", client.rsa_app_key(&[1u8; 16])),
    ] {
        let (status, answer) = client
            .authenticate(json!({"action": "OTPREQUEST", "username": taxpayer.username, "app_key": app_key}))
            .await;
        assert_eq!(
            (status, error_cd(&answer)),
            (200, "TEC4002"),
            "{what}: every unusable key is answered the same way"
        );
    }

    let mut sessions = Vec::new();
    for _ in 0..3 {
        let mut c = GstnClient::new(&app, gsp.clone(), taxpayer.clone()).await;
        assert_eq!(c.otp_request().await.1["status_cd"], "1");
        let wrong = c.auth_token("999999").await.1;
        assert_eq!(
            error_cd(&wrong),
            "AUTH4033",
            "a wrong OTP is an invalid session, as the live system says"
        );
        assert_eq!(c.auth_token("102030").await.1["status_cd"], "1");
        sessions.push(c);
    }
    assert_eq!(error_cd(&client.otp_request().await.1), "AUTH403");

    let c = &sessions[0];
    let sek = c.sek.unwrap();
    let b = B64.encode(b"{\"gstin\":\"x\"}");
    let tampered = c
        .data_headers(app.client.put(format!("{}/taxpayerapi/v2.1/returns/gstr1", app.address)), c.auth_token.as_deref().unwrap())
        .json(&json!({"action": "RETSAVE", "data": B64.encode(aes_encrypt(&sek, b.as_bytes())), "hmac": B64.encode([0u8; 32])}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_cd(&tampered.json().await.unwrap()),
        "GEN5007",
        "a bad hmac is refused, never passed on"
    );
    // A body over the configured limit (1 MiB) is answered in the dialect's envelope, not by the
    // framework's plain-text 413.
    let oversized = c
        .data_headers(
            app.client
                .put(format!("{}/taxpayerapi/v2.1/returns/gstr1", app.address)),
            c.auth_token.as_deref().unwrap(),
        )
        .json(&json!({"action": "RETSAVE", "data": "A".repeat(1024 * 1024), "hmac": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(oversized.status().as_u16(), 413);
    let answer: Value = oversized.json().await.unwrap();
    assert_eq!(
        (answer["status_cd"].as_str(), error_cd(&answer)),
        (Some("0"), "GEN5007")
    );
    // A data call names the token's taxpayer: its username and GSTIN (header and query) alike.
    let token = c.auth_token.as_deref().unwrap();
    let named = |username: Option<&str>, query: &str| {
        let url = format!("{}{RETSUM}{query}", app.address);
        let mut req = c
            .headers(app.client.get(url))
            .header("auth-token", token)
            .header("gstin", &taxpayer.gstin);
        if let Some(username) = username {
            req = req.header("username", username);
        }
        req.send()
    };
    let own = format!("&gstin={}", taxpayer.gstin);
    for (username, query, expected) in [
        (None, "", "GEN5001"),
        (Some("someone.else"), "", "AUTH4033"),
        (
            Some(taxpayer.username.as_str()),
            "&gstin=07AAACH7409R1ZZ",
            "AUTH4033",
        ),
    ] {
        let answer: Value = named(username, query).await.unwrap().json().await.unwrap();
        assert_eq!(
            answer["error"]["error_cd"], expected,
            "{username:?} {query}: {answer}"
        );
    }
    let answer: Value = named(Some(taxpayer.username.as_str()), &own)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status_cd"], "1", "{answer}");

    // Unknown paths and methods are answered in the envelope too.
    let unknown = app
        .client
        .get(format!("{}/taxpayerapi/1.0/authenticate", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    assert_eq!(error_cd(&unknown.json().await.unwrap()), "GEN5007");
    // Authenticate is POST, or GET for EVCOTP alone.
    let get = app
        .client
        .get(format!(
            "{}/taxpayerapi/v1.0/authenticate?action=OTPREQUEST",
            app.address
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status().as_u16(), 200);
    assert_eq!(error_cd(&get.json().await.unwrap()), "GEN5007");
    let put = app
        .client
        .put(format!("{}/taxpayerapi/v1.0/authenticate", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 405);
    assert_eq!(put.headers()["allow"], "GET, POST");
    assert_eq!(error_cd(&put.json().await.unwrap()), "GEN5007");

    // Bad input is GEN5001, not RET11402, which GSP software reads as "re-authenticate".
    let bad_period = c
        .data(
            reqwest::Method::GET,
            "/taxpayerapi/v1.1/returns/gstr1?action=RETSUM&ret_period=132025",
            None,
        )
        .await;
    assert_eq!(error_cd(&bad_period), "GEN5001", "{bad_period}");
    let another = ["27AAPFU0939F1ZV", "24AAUPV7468F1ZW"]
        .into_iter()
        .find(|gstin| *gstin != taxpayer.gstin)
        .unwrap();
    let other_gstin = c
        .data(
            reqwest::Method::PUT,
            "/taxpayerapi/v1.1/returns/gstr1",
            Some(("RETSAVE", json!({"gstin": another, "fp": "112025"}))),
        )
        .await;
    assert_eq!(error_cd(&other_gstin), "GEN5001", "{other_gstin}");
    assert_eq!(c.retsum().await["ret_period"], "112025", "the session lives on");

    app.advance(TimeDelta::hours(7));
    let expired = c.retsum().await;
    assert_eq!(error_cd(&expired), "AUTH4038");
}

async fn switching_access_off_on_the_rest_face_refuses_the_next_dialect_call(backend: Backend) {
    let (app, taxpayer, gsp) = dialect_app(backend).await;
    app.enable_access(&taxpayer, 24).await;
    let mut client = GstnClient::new(&app, gsp, taxpayer.clone()).await;
    client.sign_in().await;
    let ok = client.retsum().await;
    assert_eq!(ok["ret_period"], "112025");
    app.disable_access(&taxpayer).await;
    let refused = client.retsum().await;
    assert_eq!(error_cd(&refused), "AUTH4037");
}

/// With an upstream, a data call reaches it decrypted, as plain JSON with the session's facts, and its
/// JSON answer comes back encrypted under a fresh REK.
async fn dialect_calls_are_forwarded_upstream_as_plain_json(backend: Backend) {
    let upstream = spawn_upstream().await;
    let (app, taxpayer, gsp) = dialect_app_with(backend, |s| s.upstream_url = Some(upstream)).await;
    app.enable_access(&taxpayer, 24).await;
    let mut client = GstnClient::new(&app, gsp.clone(), taxpayer.clone()).await;
    client.sign_in().await;

    let got = client.retsum().await;
    assert_eq!(got["method"], "GET", "{got}");
    assert_eq!(got["path"], "/taxpayerapi/v1.1/returns/gstr1");
    assert_eq!(got["query"], "action=RETSUM&ret_period=112025");
    let headers = &got["headers"];
    assert_eq!(headers["x-taxpayer-gstin"], taxpayer.gstin.as_str());
    assert_eq!(headers["x-gsp-client-id"], gsp.client_id.as_str());
    assert_eq!(
        headers["ret_period"], "112025",
        "the GST System's headers are passed on"
    );
    assert!(
        headers.get("auth-token").is_none() && headers.get("client-secret").is_none(),
        "{headers}"
    );

    let saved = client
        .data(
            reqwest::Method::PUT,
            "/taxpayerapi/v1.1/returns/gstr1",
            Some((
                "RETSAVE",
                json!({"gstin": taxpayer.gstin, "fp": "112025", "b2b": []}),
            )),
        )
        .await;
    assert_eq!(saved["method"], "PUT", "{saved}");
    let forwarded: Value = serde_json::from_str(saved["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        forwarded,
        json!({"gstin": taxpayer.gstin, "fp": "112025", "b2b": []}),
        "decrypted, as plain JSON"
    );
    assert_eq!(saved["headers"]["content-type"], "application/json");
    assert_eq!(
        (
            &got["headers"]["x-gstn-action"],
            &saved["headers"]["x-gstn-action"]
        ),
        (&json!("RETSUM"), &json!("RETSAVE")),
        "the action is passed on"
    );

    // Writes that differ only in their action reach the upstream told apart.
    for action in ["RESET", "RETSUBMIT"] {
        let posted = client
            .data(
                reqwest::Method::POST,
                "/taxpayerapi/v1.1/returns/gstr1",
                Some((action, json!({"gstin": taxpayer.gstin, "ret_period": "112025"}))),
            )
            .await;
        assert_eq!(posted["method"], "POST", "{posted}");
        assert_eq!(posted["headers"]["x-gstn-action"], action);
    }

    // The upstream's own refusal reaches the client in the dialect's envelope, with its code.
    let empty = client
        .data(
            reqwest::Method::GET,
            "/taxpayerapi/v1.1/returns/gstr1?action=B2B&ret_period=112025&gstn_error=RET13508",
            None,
        )
        .await;
    assert_eq!(
        empty,
        json!({"status_cd": "0", "error": {"error_cd": "RET13508", "message": "No document found"}})
    );
    // One the gateway cannot name is a technical error, never a success.
    let unnamed = client
        .data(
            reqwest::Method::GET,
            "/taxpayerapi/v1.1/returns/gstr1?action=B2B&ret_period=112025&gstn_error=%3Cb%3E",
            None,
        )
        .await;
    assert_eq!(error_cd(&unnamed), "TEC4001", "{unnamed}");

    // Reads are GETs and writes PUTs or POSTs; other methods never reach the upstream.
    for method in [reqwest::Method::DELETE, reqwest::Method::TRACE] {
        let refused = client
            .data_headers(
                app.client
                    .request(method.clone(), format!("{}{RETSUM}", app.address)),
                client.auth_token.as_deref().unwrap(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status().as_u16(), 405, "{method}");
        assert_eq!(refused.headers()["allow"], "GET, PUT, POST");
        let answer: Value = refused.json().await.unwrap();
        assert_eq!(error_cd(&answer), "GEN5007", "{answer}");
    }
}

/// The `error_cd` of a RETSUM call once it is `expected`, or the last one after two seconds (a change
/// made outside this instance reaches it through the change feed).
async fn refusal(client: &GstnClient<'_>, expected: &str) -> String {
    let mut code = String::new();
    for _ in 0..80 {
        let answer = client.retsum().await;
        code = answer["error"]["error_cd"].as_str().unwrap_or("").to_owned();
        if code == expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    code
}

/// The operator rotates a GSP's secret, then disables the GSP (as the CLI does, from outside this
/// instance): the dialect refuses the old secret, then the client, within the propagation time.
async fn a_rotated_secret_or_a_disabled_gsp_is_refused_by_the_dialect(backend: Backend) {
    use gsp_gateway_api::services::provisioning;
    let (app, taxpayer, gsp) = dialect_app(backend).await;
    app.enable_access(&taxpayer, 24).await;
    let mut client = GstnClient::new(&app, gsp.clone(), taxpayer.clone()).await;
    client.sign_in().await;
    assert_eq!(client.retsum().await["ret_period"], "112025");

    let id = gsp.client_id.clone();
    let rotated = app
        .as_operator(move |c, e| provisioning::rotate_gsp_secret(c, &id, chrono::Utc::now(), e))
        .await
        .unwrap();
    assert_eq!(
        refusal(&client, "AUT4034").await,
        "AUT4034",
        "the old secret is refused"
    );
    client.gsp.client_secret = rotated.client_secret;
    assert_eq!(
        client.retsum().await["ret_period"],
        "112025",
        "the session goes on with the new secret"
    );

    let id = gsp.client_id.clone();
    app.as_operator(move |c, e| provisioning::disable_gsp(c, &id, chrono::Utc::now(), e))
        .await
        .unwrap();
    assert_eq!(
        refusal(&client, "AUT4033").await,
        "AUT4033",
        "a disabled GSP is refused"
    );
}

/// The sixth OTPREQUEST in 15 minutes is refused with the wait the OTP rate gives, not a blind second.
async fn a_throttled_otp_request_says_when_to_retry(backend: Backend) {
    let (app, taxpayer, gsp) = dialect_app(backend).await;
    app.enable_access(&taxpayer, 24).await;
    let client = GstnClient::new(&app, gsp, taxpayer).await;
    for _ in 0..5 {
        assert_eq!(client.otp_request().await.1["status_cd"], "1");
    }
    let resp = client
        .headers(
            app.client
                .post(format!("{}/taxpayerapi/v1.0/authenticate", app.address)),
        )
        .json(&json!({"action": "OTPREQUEST", "username": client.taxpayer.username, "app_key": client.rsa_app_key(&client.app_key)}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let wait: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((60..=900).contains(&wait), "Retry-After {wait}");
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(error_cd(&answer), "rate_limited");
}

/// Authenticate calls are limited per GSP client, before any RSA work: past the burst one answers 429
/// `rate_limited` with `Retry-After`, and another GSP is not affected.
async fn a_gsp_looping_on_authenticate_is_throttled_per_client(backend: Backend) {
    let (app, taxpayer, gsp) = dialect_app_with(backend, |s| {
        s.gstn_authenticate_rate_per_second = 1;
        s.gstn_authenticate_burst = 3;
    })
    .await;
    app.enable_access(&taxpayer, 24).await;
    let client = GstnClient::new(&app, gsp, taxpayer.clone()).await;
    for _ in 0..3 {
        assert_eq!(client.otp_request().await, (200, json!({"status_cd": "1"})));
    }
    // The limiter refills one call a second, in real time: a slow machine may let one more through
    // (answered TEC4002 for its key), so a few tries, each immediate.
    let mut throttled = None;
    for _ in 0..6 {
        let (status, answer) = client
            .authenticate(
                json!({"action": "OTPREQUEST", "username": taxpayer.username, "app_key": "not even base64"}),
            )
            .await;
        if status == 429 {
            throttled = Some(answer);
            break;
        }
        assert_eq!(error_cd(&answer), "TEC4002", "{answer}");
    }
    let answer = throttled.expect("the burst is used up");
    assert_eq!(error_cd(&answer), "rate_limited", "{answer}");

    let other = GstnClient::new(&app, app.create_gsp("Other GSP").await, taxpayer).await;
    assert_eq!(other.otp_request().await, (200, json!({"status_cd": "1"})));
}

/// An upstream that cannot be reached is GEN5008 at HTTP 500, as gstn-dialect.md §4 gives it.
async fn an_upstream_that_is_down_is_gen5008_with_500(backend: Backend) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (app, taxpayer, gsp) = dialect_app_with(backend, |s| s.upstream_url = Some(dead)).await;
    app.enable_access(&taxpayer, 24).await;
    let mut client = GstnClient::new(&app, gsp, taxpayer).await;
    client.sign_in().await;
    let resp = client
        .data_headers(
            app.client.get(format!("{}{RETSUM}", app.address)),
            client.auth_token.as_deref().unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 500);
    assert_eq!(error_cd(&resp.json().await.unwrap()), "GEN5008");
}

/// A RETSUM call's raw answer, and one with a token that names no session (a refusal).
async fn raw_answers(client: &GstnClient<'_>) -> (Value, Value) {
    let url = format!("{}{RETSUM}", client.app.address);
    let mut answers = Vec::new();
    for token in [
        client.auth_token.as_deref().unwrap(),
        "0123456789abcdef0123456789abcdef",
    ] {
        let resp = client
            .data_headers(client.app.client.get(&url), token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        answers.push(resp.json::<Value>().await.unwrap());
    }
    let refused = answers.pop().unwrap();
    (answers.pop().unwrap(), refused)
}

/// [`raw_answers`] once the success's `status_cd` is `expected`, trying for two seconds (a change made
/// outside this instance reaches it through the change feed).
async fn raw_answers_once(client: &GstnClient<'_>, expected: Value) -> Option<(Value, Value)> {
    for _ in 0..80 {
        let answers = raw_answers(client).await;
        if answers.0["status_cd"] == expected {
            return Some(answers);
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    None
}

/// The operator sets one GSP's `status_cd` to numbers (as `admin set-gsp-status-cd` does, from outside
/// this instance): that GSP's answers, successes and refusals, authenticate and data calls, carry 1/0
/// within the propagation time; another GSP's keep "1"/"0"; `server` restores the server's strings.
async fn each_gsp_chooses_how_status_cd_is_written(backend: Backend) {
    use gsp_gateway_api::services::provisioning;
    let (app, taxpayer, gsp) = dialect_app(backend).await;
    app.enable_access(&taxpayer, 24).await;
    let mut client = GstnClient::new(&app, gsp.clone(), taxpayer.clone()).await;
    client.sign_in().await;
    let other_gsp = app.create_gsp("String GSP").await;
    let mut other = GstnClient::new(&app, other_gsp, taxpayer.clone()).await;
    other.sign_in().await;
    let (ok, refused) = raw_answers(&client).await;
    assert_eq!(
        (&ok["status_cd"], &refused["status_cd"]),
        (&json!("1"), &json!("0"))
    );

    let set = |numeric: Option<bool>| {
        let id = gsp.client_id.clone();
        app.as_operator(move |c, e| provisioning::set_gsp_status_cd(c, &id, numeric, chrono::Utc::now(), e))
    };
    let changed = set(Some(true)).await.unwrap();
    assert_eq!(changed.status_cd, "number");
    let id = gsp.client_id.clone();
    let (row, events) = app
        .as_operator(move |c, _| {
            let row = gsp_gateway_storage::repo::gsp_clients::find(c, &id)?.unwrap();
            let query = gsp_gateway_storage::repo::audit::AuditQuery {
                gstin: None,
                before: None,
                limit: 100,
            };
            let events = gsp_gateway_storage::repo::audit::list(c, &query)?;
            Ok((row, events))
        })
        .await
        .unwrap();
    assert_eq!(row.gstn_numeric_status_cd, Some(true));
    let event = events
        .iter()
        .find(|e| e.action == "gsp.status_cd_changed")
        .expect("the change is audited");
    assert_eq!(event.gsp_client_id.as_deref(), Some(gsp.client_id.as_str()));

    let (ok, refused) = raw_answers_once(&client, json!(1))
        .await
        .expect("the change reaches this instance within the propagation time");
    assert_eq!(refused["status_cd"], json!(0));
    assert_eq!(refused["error"]["error_cd"], "AUTH4033");
    assert!(ok["rek"].is_string() && ok["hmac"].is_string(), "{ok}");
    let (_, otp) = client.otp_request().await;
    assert_eq!(otp["status_cd"], json!(1));
    let (_, malformed) = client.authenticate(json!({"action": "OTPREQUEST"})).await;
    assert_eq!(malformed["status_cd"], json!(0), "{malformed}");
    let (ok, refused) = raw_answers(&other).await;
    assert_eq!(
        (&ok["status_cd"], &refused["status_cd"]),
        (&json!("1"), &json!("0")),
        "another GSP keeps strings"
    );

    assert_eq!(set(None).await.unwrap().status_cd, "server");
    assert!(
        raw_answers_once(&client, json!("1")).await.is_some(),
        "back to the server's strings"
    );
    client.sign_in().await;

    let unknown = app
        .as_operator(|c, e| {
            provisioning::set_gsp_status_cd(c, "l7xxunknown", Some(true), chrono::Utc::now(), e)
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code().as_str(), "not_found");
}
