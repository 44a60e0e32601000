//! `spawn_app`: each test gets its own gateway on port 0 and its own fresh database.

use std::sync::Arc;

use actix_web::web;
use chrono::TimeDelta;
use diesel::{Connection, RunQueryDsl};
use gsp_gateway_api::settings::Settings;
use gsp_gateway_api::state::AppState;
use gsp_gateway_api::{Application, Clock};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The admin token every test app is configured with.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// A valid password.
pub const PASSWORD: &str = "Gst-Portal-2026";

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one test per backend from `async fn name(backend: Backend)`.
/// The PostgreSQL variants are ignored unless run with `--ignored` and `TEST_POSTGRES_URL`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs PostgreSQL: set TEST_POSTGRES_URL and run with --ignored"]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            )*
        }
    };
}

/// Deletes the test's database when the test ends.
pub enum DbGuard {
    Sqlite(std::path::PathBuf),
    Postgres { admin_url: String, name: String },
}

impl Drop for DbGuard {
    fn drop(&mut self) {
        match self {
            Self::Sqlite(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Self::Postgres { admin_url, name } => {
                if let Ok(mut conn) = diesel::PgConnection::establish(admin_url) {
                    let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .execute(&mut conn);
                }
            }
        }
    }
}

/// A fresh database URL for one test.
pub fn fresh_database(backend: Backend) -> (String, DbGuard) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    match backend {
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join(format!("gsp-gateway-test-{id}"));
            std::fs::create_dir_all(&dir).unwrap();
            (
                format!("sqlite://{}", dir.join("gateway.db").display()),
                DbGuard::Sqlite(dir),
            )
        }
        Backend::Postgres => {
            let admin_url = std::env::var("TEST_POSTGRES_URL")
                .expect("TEST_POSTGRES_URL must point at a PostgreSQL server (e.g. postgres://postgres@127.0.0.1:5432/test)");
            let name = format!("gspgw_test_{id}");
            let mut conn = diesel::PgConnection::establish(&admin_url).expect("connect to TEST_POSTGRES_URL");
            diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
                .execute(&mut conn)
                .expect("create test database");
            let base = admin_url.rsplit_once('/').map_or(admin_url.as_str(), |(b, _)| b);
            (
                format!("{base}/{name}"),
                DbGuard::Postgres {
                    admin_url: admin_url.clone(),
                    name,
                },
            )
        }
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    /// The problem `code`, or "" when the body has none.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an error answer: status, problem+json, `code`, and a request id.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        assert_eq!(self.code(), code, "unexpected code; body: {}", self.text);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.text
        );
        assert_eq!(self.body["status"], status);
        assert!(
            self.body["request_id"].as_str().is_some_and(|r| r.len() > 8),
            "{}",
            self.text
        );
    }

    /// Asserts a success status and returns the body.
    #[track_caller]
    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        &self.body
    }
}

/// How a request authenticates.
#[derive(Debug, Clone)]
pub enum Auth<'a> {
    None,
    Bearer(&'a str),
    Basic(&'a str, &'a str),
}

/// A running gateway and a client for it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub clock: Clock,
    pub state: web::Data<AppState>,
    pub database_url: String,
    _guard: Arc<DbGuard>,
}

/// A provisioned taxpayer.
#[derive(Debug, Clone)]
pub struct TestTaxpayer {
    pub gstin: String,
    pub username: String,
    pub password: String,
}

/// A provisioned GSP.
#[derive(Debug, Clone)]
pub struct TestGsp {
    pub client_id: String,
    pub client_secret: String,
    pub name: String,
}

/// Starts a gateway with the test defaults.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Starts a gateway with settings changed by `configure`.
pub async fn spawn_app_with(backend: Backend, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let (database_url, guard) = fresh_database(backend);
    spawn_on(database_url, Arc::new(guard), Clock::system(), configure).await
}

/// Starts a gateway on an existing database (a restart, or a second instance).
pub async fn spawn_on(
    database_url: String,
    guard: Arc<DbGuard>,
    clock: Clock,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut settings = Settings {
        bind: "127.0.0.1:0".into(),
        database_url: database_url.clone(),
        admin_token: Some(ADMIN_TOKEN.into()),
        workers: Some(2),
        db_timeout_ms: 1_500,
        ..Settings::default()
    };
    configure(&mut settings);
    let app = Application::build(settings, clock.clone())
        .await
        .expect("the app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        clock,
        state,
        database_url,
        _guard: guard,
    }
}

static GSTINS: &[&str] = &[
    "24AAUPV7468F1ZW",
    "27AAPFU0939F1ZV",
    "29AAGCB7383J1Z4",
    "07AAACR5055K1Z9",
    "33AABCT3518Q1Z3",
];

impl TestApp {
    /// The guard that keeps this app's database alive (share it with a second instance).
    pub fn guard(&self) -> Arc<DbGuard> {
        self._guard.clone()
    }

    /// Sends a request.
    pub async fn request(&self, method: Method, path: &str, auth: Auth<'_>, body: Option<Value>) -> Resp {
        let mut req = self.client.request(method, format!("{}{path}", self.address));
        req = match auth {
            Auth::None => req,
            Auth::Bearer(token) => req.bearer_auth(token),
            Auth::Basic(user, password) => req.basic_auth(user, Some(password)),
        };
        if let Some(body) = body {
            req = req.json(&body);
        }
        read(req.send().await.expect("request sent")).await
    }

    /// GET.
    pub async fn get(&self, path: &str, auth: Auth<'_>) -> Resp {
        self.request(Method::GET, path, auth, None).await
    }

    /// POST with a JSON body.
    pub async fn post(&self, path: &str, auth: Auth<'_>, body: Value) -> Resp {
        self.request(Method::POST, path, auth, Some(body)).await
    }

    /// PUT with a JSON body.
    pub async fn put(&self, path: &str, auth: Auth<'_>, body: Value) -> Resp {
        self.request(Method::PUT, path, auth, Some(body)).await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str, auth: Auth<'_>) -> Resp {
        self.request(Method::DELETE, path, auth, None).await
    }

    /// POST raw bytes with a content type.
    pub async fn post_raw(&self, path: &str, auth: Auth<'_>, content_type: &str, body: Vec<u8>) -> Resp {
        let mut req = self
            .client
            .post(format!("{}{path}", self.address))
            .header("content-type", content_type)
            .body(body);
        if let Auth::Bearer(token) = auth {
            req = req.bearer_auth(token);
        }
        read(req.send().await.expect("request sent")).await
    }

    /// Provisions taxpayer number `n` (0-4) through the operator API.
    pub async fn create_taxpayer(&self, n: usize) -> TestTaxpayer {
        let taxpayer = TestTaxpayer {
            gstin: GSTINS[n].into(),
            username: format!("taxpayer{n}"),
            password: PASSWORD.into(),
        };
        self.post(
            "/v1/admin/taxpayers",
            Auth::Bearer(ADMIN_TOKEN),
            json!({"gstin": taxpayer.gstin, "username": taxpayer.username, "password": taxpayer.password,
                   "legal_name": format!("Taxpayer {n} Private Limited"), "trade_name": format!("Taxpayer {n}")}),
        )
        .await
        .ok(201);
        taxpayer
    }

    /// Provisions a GSP client through the operator API.
    pub async fn create_gsp(&self, name: &str) -> TestGsp {
        let resp = self
            .post("/v1/admin/gsps", Auth::Bearer(ADMIN_TOKEN), json!({"name": name}))
            .await;
        let body = resp.ok(201);
        assert_eq!(
            resp.header("cache-control"),
            Some("no-store"),
            "the secret is shown once"
        );
        TestGsp {
            client_id: body["client_id"].as_str().unwrap().into(),
            client_secret: body["client_secret"].as_str().unwrap().into(),
            name: name.into(),
        }
    }

    /// Moves the app's clock forward.
    pub fn advance(&self, by: TimeDelta) {
        self.clock.advance(by);
    }
}

async fn read(response: reqwest::Response) -> Resp {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
        text,
    }
}

/// A GSP's session tokens.
#[derive(Debug, Clone)]
pub struct TestSession {
    pub access_token: String,
    pub refresh_token: String,
    pub session_id: String,
}

impl TestApp {
    /// Logs the taxpayer in; returns the taxpayer token.
    pub async fn login(&self, taxpayer: &TestTaxpayer) -> String {
        self.login_body(taxpayer).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Logs the taxpayer in; returns the login response's body.
    pub async fn login_body(&self, taxpayer: &TestTaxpayer) -> Value {
        let resp = self
            .post(
                "/v1/taxpayer/login",
                Auth::None,
                json!({"username": taxpayer.username, "password": taxpayer.password}),
            )
            .await;
        resp.ok(200).clone()
    }

    /// What `work` returns, run on a connection to the app's database.
    pub async fn with_db<T: Send + 'static, E>(
        &self,
        work: impl FnOnce(&mut gsp_gateway_storage::DbConn) -> Result<T, E> + Send + 'static,
    ) -> T
    where
        gsp_gateway_storage::StorageError: From<E>,
    {
        self.state.db.run(move |c| Ok(work(c)?)).await.unwrap()
    }

    /// Switches the taxpayer's API access on for `hours`.
    pub async fn enable_access(&self, taxpayer: &TestTaxpayer, hours: i64) {
        let token = self.login(taxpayer).await;
        self.put(
            "/v1/taxpayer/api-access",
            Auth::Bearer(&token),
            json!({"enabled": true, "duration_hours": hours}),
        )
        .await
        .ok(200);
    }

    /// Switches the taxpayer's API access off.
    pub async fn disable_access(&self, taxpayer: &TestTaxpayer) {
        let token = self.login(taxpayer).await;
        self.put(
            "/v1/taxpayer/api-access",
            Auth::Bearer(&token),
            json!({"enabled": false}),
        )
        .await
        .ok(200);
    }

    /// The GSP asks for an OTP.
    pub async fn request_otp(&self, gsp: &TestGsp, taxpayer: &TestTaxpayer) -> Resp {
        self.post(
            "/v1/gsp/otp",
            Auth::Basic(&gsp.client_id, &gsp.client_secret),
            json!({"gstin": taxpayer.gstin, "username": taxpayer.username}),
        )
        .await
    }

    /// The newest OTP in the taxpayer's inbox from `gsp`.
    pub async fn otp_from_inbox(&self, taxpayer: &TestTaxpayer, gsp: &TestGsp) -> String {
        let token = self.login(taxpayer).await;
        let inbox = self.get("/v1/taxpayer/otp-requests", Auth::Bearer(&token)).await;
        let messages = inbox.ok(200).as_array().unwrap().clone();
        let message = messages
            .iter()
            .find(|m| m["gsp_name"] == gsp.name.as_str())
            .expect("an OTP from this GSP");
        message["code"].as_str().unwrap().to_owned()
    }

    /// Ten wrong codes at once against one fresh challenge (access on for 24 hours first): the right
    /// code, the answers, and the `attempts_remaining` of the `invalid_otp` ones, sorted.
    pub async fn wrong_otps_at_once(
        &self,
        gsp: &TestGsp,
        taxpayer: &TestTaxpayer,
    ) -> (String, Vec<Resp>, Vec<i64>) {
        self.enable_access(taxpayer, 24).await;
        self.request_otp(gsp, taxpayer).await.ok(202);
        let otp = self.otp_from_inbox(taxpayer, gsp).await;
        let wrong = if otp == "000000" { "000001" } else { "000000" };
        let answers =
            futures_util::future::join_all((0..10).map(|_| self.exchange_otp(gsp, taxpayer, wrong))).await;
        let mut remaining: Vec<i64> = answers
            .iter()
            .filter(|r| r.code() == "invalid_otp")
            .map(|r| r.body["attempts_remaining"].as_i64().unwrap())
            .collect();
        remaining.sort();
        (otp, answers, remaining)
    }

    /// The newest event `action` in the taxpayer's own activity.
    pub async fn activity_event(&self, taxpayer: &TestTaxpayer, action: &str) -> Value {
        let token = self.login(taxpayer).await;
        let activity = self.get("/v1/taxpayer/activity", Auth::Bearer(&token)).await;
        activity.ok(200)["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == action)
            .cloned()
            .unwrap_or_else(|| panic!("no {action} in the activity"))
    }

    /// `gsp` asks, within `session_id`, for an EVC OTP signing `form_type` for the taxpayer's own PAN
    /// (the service the GST System dialect's EVCOTP calls).
    pub async fn open_evc_otp(&self, gsp: &TestGsp, session_id: &str, form_type: &str) {
        use gsp_gateway_api::services::{evc, gsp as gsp_svc};
        let client = gsp_svc::GspClient {
            client_id: gsp.client_id.clone(),
            name: gsp.name.clone(),
        };
        let request = evc::EvcOtpRequest {
            session_id: session_id.to_owned(),
            purpose: gsp_svc::EvcScope {
                pan: String::new(),
                form_type: form_type.to_owned(),
            },
        };
        let (settings, now) = (self.state.settings.clone(), self.state.clock.now());
        let caller = gsp_gateway_api::auth::Caller {
            ip: None,
            request_id: "test".into(),
            txn: None,
        };
        self.state
            .db
            .run(move |conn| {
                let gstin = gsp_gateway_storage::repo::sessions::find_with_owner(conn, &request.session_id)?
                    .expect("the session")
                    .gstin;
                let request = evc::EvcOtpRequest {
                    purpose: gsp_svc::EvcScope {
                        pan: gstin[2..12].to_owned(),
                        ..request.purpose
                    },
                    ..request
                };
                Ok(evc::open_evc_otp(
                    conn,
                    &client,
                    &request,
                    gsp_gateway_domain::OtpCode::generate(),
                    &settings,
                    &caller,
                    now,
                ))
            })
            .await
            .unwrap()
            .unwrap();
    }

    /// The GSP exchanges an OTP.
    pub async fn exchange_otp(&self, gsp: &TestGsp, taxpayer: &TestTaxpayer, otp: &str) -> Resp {
        self.post(
            "/v1/gsp/token",
            Auth::Basic(&gsp.client_id, &gsp.client_secret),
            json!({"grant_type": "otp", "gstin": taxpayer.gstin, "username": taxpayer.username, "otp": otp}),
        )
        .await
    }

    /// The GSP refreshes.
    pub async fn refresh(&self, gsp: &TestGsp, refresh_token: &str) -> Resp {
        self.post(
            "/v1/gsp/token",
            Auth::Basic(&gsp.client_id, &gsp.client_secret),
            json!({"grant_type": "refresh_token", "refresh_token": refresh_token}),
        )
        .await
    }

    /// OTP request, code from the inbox, token: a live session (access must be on).
    pub async fn open_session(&self, gsp: &TestGsp, taxpayer: &TestTaxpayer) -> TestSession {
        TestSession::from(&self.consent(gsp, taxpayer).await)
    }

    /// OTP request, code from the inbox, token: the token response's body.
    pub async fn consent(&self, gsp: &TestGsp, taxpayer: &TestTaxpayer) -> Value {
        self.request_otp(gsp, taxpayer).await.ok(202);
        let otp = self.otp_from_inbox(taxpayer, gsp).await;
        self.exchange_otp(gsp, taxpayer, &otp).await.ok(200).clone()
    }

    /// Why a session was revoked, as stored (None while it is not).
    pub async fn revoked_reason(&self, session_id: &str) -> Option<String> {
        use diesel::prelude::*;
        use gsp_gateway_storage::schema::sessions;
        let id = session_id.to_owned();
        self.state
            .db
            .run(move |c| {
                Ok(sessions::table
                    .find(id)
                    .select(sessions::revoked_reason)
                    .first(c)?)
            })
            .await
            .unwrap()
    }

    /// An operator's change made in the database, as the command line makes it: from outside this
    /// instance, which learns of it through the change feed.
    pub async fn as_operator<T: Send + 'static>(
        &self,
        work: impl FnOnce(
            &mut gsp_gateway_storage::DbConn,
            gsp_gateway_storage::repo::audit::NewAuditEvent,
        ) -> Result<T, gsp_gateway_api::error::ApiError>
        + Send
        + 'static,
    ) -> Result<T, gsp_gateway_api::error::ApiError> {
        let event = gsp_gateway_storage::repo::audit::NewAuditEvent {
            actor: "operator".into(),
            ..Default::default()
        };
        self.state
            .db
            .run(move |conn| Ok(work(conn, event)))
            .await
            .unwrap()
    }

    /// A gateway call with a session token.
    pub async fn gst(&self, path: &str, token: &str) -> Resp {
        self.get(path, Auth::Bearer(token)).await
    }
}

impl From<&Value> for TestSession {
    fn from(body: &Value) -> Self {
        Self {
            access_token: body["access_token"].as_str().unwrap().into(),
            refresh_token: body["refresh_token"].as_str().unwrap().into(),
            session_id: body["session_id"].as_str().unwrap().into(),
        }
    }
}

/// A test upstream: echoes what it received; `/slow` never answers in time; `/stall` sends its head
/// and the start of its body, then stalls.
pub async fn spawn_upstream() -> String {
    use std::time::Duration;

    use actix_web::{App, HttpRequest, HttpResponse, HttpServer};

    async fn echo(req: HttpRequest, body: web::Bytes) -> HttpResponse {
        if req.path() == "/slow" {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        if req.path() == "/fail" {
            return HttpResponse::InternalServerError()
                .content_type("text/plain")
                .body("upstream stack trace: secret internals");
        }
        if req.path() == "/stall" {
            let start = futures_util::stream::once(async {
                Ok::<_, actix_web::Error>(web::Bytes::from_static(b"{\"partial\":"))
            });
            let rest = futures_util::stream::once(async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok::<_, actix_web::Error>(web::Bytes::from_static(b"true}"))
            });
            let body = futures_util::StreamExt::chain(start, rest);
            return if req.query_string() == "sized" {
                HttpResponse::Ok().body(actix_web::body::SizedStream::new(16, body))
            } else {
                HttpResponse::Ok().streaming(body)
            };
        }
        // A GST System style refusal, for the dialect: `?…&gstn_error=CODE`.
        if let Some(code) = req
            .query_string()
            .split('&')
            .find_map(|pair| pair.strip_prefix("gstn_error="))
        {
            return HttpResponse::Ok().json(
                json!({"status_cd": "0", "error": {"error_cd": code, "message": "No document found"}}),
            );
        }
        let headers: serde_json::Map<String, Value> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), json!(v.to_str().unwrap_or(""))))
            .collect();
        HttpResponse::Created().insert_header(("x-upstream", "yes")).json(
            json!({"method": req.method().as_str(), "path": req.path(), "query": req.query_string(),
                         "headers": headers, "body": String::from_utf8_lossy(&body)}),
        )
    }
    let server = HttpServer::new(|| {
        App::new()
            .app_data(web::PayloadConfig::new(8 * 1024 * 1024))
            .default_service(web::to(echo))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    format!("http://127.0.0.1:{port}")
}
