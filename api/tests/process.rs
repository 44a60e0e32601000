//! The gateway as an operating-system process: graceful SIGTERM, a SIGKILL in the middle of a
//! disable-access transaction, secrets kept out of the logs, and several instances on one PostgreSQL.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly where its setup does"
)]

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_gsp-gateway");
const ADMIN: &str = "process-test-admin-token";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Gateway {
    child: Child,
    base: String,
    log: std::path::PathBuf,
}

impl Gateway {
    fn start(database_url: &str, log_dir: &std::path::Path, extra: &[(&str, &str)]) -> Self {
        let port = free_port();
        let log = log_dir.join(format!("gateway-{port}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(BINARY);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GSP_GATEWAY_BIND", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", database_url)
            .env("GSP_GATEWAY_ADMIN_TOKEN", ADMIN)
            .env("GSP_GATEWAY_WORKERS", "2")
            .stdout(Stdio::null())
            .stderr(Stdio::from(file));
        for (key, value) in extra {
            command.env(key, value);
        }
        let child = command.spawn().unwrap();
        let gateway = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        gateway.wait_ready();
        gateway
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(resp) = reqwest::blocking::get(format!("{}/health/ready", self.base)) {
                if resp.status().is_success() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "gateway did not become ready; log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn log_text(&self) -> String {
        let mut text = String::new();
        std::fs::File::open(&self.log)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn call(
    method: reqwest::Method,
    url: String,
    auth: Option<&str>,
    basic: Option<(&str, &str)>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client().request(method, url);
    if let Some(token) = auth {
        req = req.bearer_auth(token);
    }
    if let Some((user, pass)) = basic {
        req = req.basic_auth(user, Some(pass));
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

/// Provisions a taxpayer and a GSP, enables access for a day, opens a session; returns what the log must not show.
struct Flow {
    password: String,
    client_id: String,
    client_secret: String,
    otp: String,
    access_token: String,
    refresh_token: String,
    taxpayer_token: String,
}

fn full_flow(base: &str, gstin: &str, username: &str) -> Flow {
    let password = "Gst-Portal-2026-Secret".to_owned();
    let (status, _) = call(
        reqwest::Method::POST,
        format!("{base}/v1/admin/taxpayers"),
        Some(ADMIN),
        None,
        Some(
            json!({"gstin": gstin, "username": username, "password": password, "legal_name": "Process Test Pvt Ltd"}),
        ),
    );
    assert_eq!(status, 201);
    let (_, gsp) = call(
        reqwest::Method::POST,
        format!("{base}/v1/admin/gsps"),
        Some(ADMIN),
        None,
        Some(json!({"name": "Process GSP"})),
    );
    let (client_id, client_secret) = (
        gsp["client_id"].as_str().unwrap().to_owned(),
        gsp["client_secret"].as_str().unwrap().to_owned(),
    );
    let (_, login) = call(
        reqwest::Method::POST,
        format!("{base}/v1/taxpayer/login"),
        None,
        None,
        Some(json!({"username": username, "password": password})),
    );
    let taxpayer_token = login["access_token"].as_str().unwrap().to_owned();
    let (status, _) = call(
        reqwest::Method::PUT,
        format!("{base}/v1/taxpayer/api-access"),
        Some(&taxpayer_token),
        None,
        Some(json!({"enabled": true, "duration_hours": 24})),
    );
    assert_eq!(status, 200);
    let basic = Some((client_id.as_str(), client_secret.as_str()));
    let (status, _) = call(
        reqwest::Method::POST,
        format!("{base}/v1/gsp/otp"),
        None,
        basic,
        Some(json!({"gstin": gstin, "username": username})),
    );
    assert_eq!(status, 202);
    let (_, inbox) = call(
        reqwest::Method::GET,
        format!("{base}/v1/taxpayer/otp-requests"),
        Some(&taxpayer_token),
        None,
        None,
    );
    let otp = inbox[0]["code"].as_str().unwrap().to_owned();
    let (status, tokens) = call(
        reqwest::Method::POST,
        format!("{base}/v1/gsp/token"),
        None,
        basic,
        Some(json!({"grant_type": "otp", "gstin": gstin, "username": username, "otp": otp})),
    );
    assert_eq!(status, 200, "{tokens}");
    let access_token = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();
    let (status, _) = call(
        reqwest::Method::GET,
        format!("{base}/v1/gst/taxpayer"),
        Some(&access_token),
        None,
        None,
    );
    assert_eq!(status, 200);
    Flow {
        password,
        client_id,
        client_secret,
        otp,
        access_token,
        refresh_token,
        taxpayer_token,
    }
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gsp-gateway-process-{name}-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn uuid_like() -> String {
    format!(
        "{:x}{:x}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() ^ u128::from(free_port())
    )
}

#[test]
fn logs_carry_request_ids_and_never_a_secret() {
    let dir = temp_dir("logs");
    let url = format!("sqlite://{}", dir.join("g.db").display());
    let gateway = Gateway::start(&url, &dir, &[("GSP_GATEWAY_LOG_FORMAT", "json")]);
    let flow = full_flow(&gateway.base, "24AAUPV7468F1ZW", "log.tester");
    let (status, _) = call(
        reqwest::Method::POST,
        format!("{}/v1/gsp/token", gateway.base),
        None,
        Some((&flow.client_id, &flow.client_secret)),
        Some(json!({"grant_type": "refresh_token", "refresh_token": flow.refresh_token})),
    );
    assert_eq!(status, 200);
    std::thread::sleep(Duration::from_millis(200));
    let log = gateway.log_text();
    let served: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "served")
        .collect();
    assert!(served.len() >= 8, "one access line per request:\n{log}");
    for line in &served {
        assert!(
            line["span"]["request_id"]
                .as_str()
                .is_some_and(|id| id.len() >= 16),
            "{line}"
        );
    }
    for (what, secret) in [
        ("password", flow.password.as_str()),
        ("client secret", flow.client_secret.as_str()),
        ("OTP", flow.otp.as_str()),
        ("session token", flow.access_token.as_str()),
        ("refresh token", flow.refresh_token.as_str()),
        ("taxpayer token", flow.taxpayer_token.as_str()),
        ("admin token", ADMIN),
    ] {
        assert!(!log.contains(secret), "the log shows the {what}");
    }
}

#[test]
fn sigterm_lets_in_flight_requests_finish_and_exits_zero() {
    // An upstream that answers after 1.5 s keeps a request in flight while the signal arrives.
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_url = format!("http://{}", upstream.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in upstream.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                use std::io::Write;
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer);
                std::thread::sleep(Duration::from_millis(1500));
                let body = "{\"slow\":true}";
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    let dir = temp_dir("sigterm");
    let url = format!("sqlite://{}", dir.join("g.db").display());
    let gateway = Gateway::start(&url, &dir, &[]);
    let flow = full_flow(&gateway.base, "24AAUPV7468F1ZW", "term.tester");
    drop(gateway);
    let mut gateway = Gateway::start(&url, &dir, &[("GSP_GATEWAY_UPSTREAM_URL", &upstream_url)]);
    let base = gateway.base.clone();
    let token = flow.access_token.clone();
    let in_flight = std::thread::spawn(move || {
        call(
            reqwest::Method::GET,
            format!("{base}/v1/gst/slow"),
            Some(&token),
            None,
            None,
        )
    });
    std::thread::sleep(Duration::from_millis(400));
    gateway.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    let refused = std::net::TcpStream::connect_timeout(
        &gateway.base.trim_start_matches("http://").parse().unwrap(),
        Duration::from_millis(500),
    );
    let (status, body) = in_flight.join().unwrap();
    assert_eq!(status, 200, "the in-flight request completed: {body}");
    assert_eq!(body["slow"], true);
    assert!(
        refused.is_err(),
        "new connections are refused once shutdown began"
    );
    let exit = gateway.child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "exit code; log:\n{}", gateway.log_text());
}

#[test]
fn a_sigkill_during_disable_access_leaves_the_old_or_the_new_state() {
    use diesel::prelude::*;
    let dir = temp_dir("sigkill");
    let url = format!("sqlite://{}", dir.join("g.db").display());
    let gateway = Gateway::start(&url, &dir, &[("GSP_GATEWAY_SESSION_CAP", "1000")]);
    let flow = full_flow(&gateway.base, "24AAUPV7468F1ZW", "kill.tester");
    let base = gateway.base.clone();
    // Many sessions make the disabling transaction long enough to be interrupted.
    let mut conn = diesel::SqliteConnection::establish(dir.join("g.db").to_str().unwrap()).unwrap();
    let (taxpayer_id, client_id): (String, String) =
        diesel::sql_query("SELECT taxpayer_id, gsp_client_id FROM sessions LIMIT 1")
            .get_result::<Pair>(&mut conn)
            .map(|p| (p.taxpayer_id, p.gsp_client_id))
            .unwrap();
    for i in 0..3000 {
        diesel::sql_query(format!(
            "INSERT INTO sessions (id, taxpayer_id, gsp_client_id, channel, created_at, last_used_at, expires_at) \
             VALUES ('bulk-{i}', '{taxpayer_id}', '{client_id}', 'rest', '2026-01-01 00:00:00', '2026-01-01 00:00:00', '2999-01-01 00:00:00')"
        ))
        .execute(&mut conn)
        .unwrap();
    }
    drop(conn);
    drop(gateway);
    let mut outcomes = Vec::new();
    for delay_ms in [0u64, 2, 5, 10, 20, 40] {
        let mut gateway = Gateway::start(&url, &dir, &[]);
        let (_, login) = call(
            reqwest::Method::POST,
            format!("{}/v1/taxpayer/login", gateway.base),
            None,
            None,
            Some(json!({"username": "kill.tester", "password": flow.password})),
        );
        let token = login["access_token"].as_str().unwrap().to_owned();
        call(
            reqwest::Method::PUT,
            format!("{}/v1/taxpayer/api-access", gateway.base),
            Some(&token),
            None,
            Some(json!({"enabled": true, "duration_hours": 24})),
        );
        // Re-activate every session so each trial starts from "enabled, sessions live".
        let mut conn = diesel::SqliteConnection::establish(dir.join("g.db").to_str().unwrap()).unwrap();
        diesel::sql_query("UPDATE sessions SET revoked_at = NULL, revoked_reason = NULL")
            .execute(&mut conn)
            .unwrap();
        drop(conn);
        let url_put = format!("{}/v1/taxpayer/api-access", gateway.base);
        let sender = std::thread::spawn(move || {
            let _ = client()
                .put(url_put)
                .bearer_auth(token)
                .json(&json!({"enabled": false}))
                .send();
        });
        std::thread::sleep(Duration::from_millis(delay_ms));
        gateway.child.kill().unwrap();
        gateway.child.wait().unwrap();
        let _ = sender.join();
        let mut conn = diesel::SqliteConnection::establish(dir.join("g.db").to_str().unwrap()).unwrap();
        let enabled: bool = diesel::sql_query("SELECT enabled AS flag FROM api_access")
            .get_result::<Flag>(&mut conn)
            .unwrap()
            .flag;
        let live: i64 = diesel::sql_query("SELECT COUNT(*) AS n FROM sessions WHERE revoked_at IS NULL")
            .get_result::<Count>(&mut conn)
            .unwrap()
            .n;
        let revoked: i64 =
            diesel::sql_query("SELECT COUNT(*) AS n FROM sessions WHERE revoked_at IS NOT NULL")
                .get_result::<Count>(&mut conn)
                .unwrap()
                .n;
        assert!(
            (enabled && revoked == 0) || (!enabled && live == 0),
            "half a transaction after a kill at {delay_ms} ms: enabled={enabled}, live={live}, revoked={revoked}"
        );
        outcomes.push(if enabled { "old" } else { "new" });
        let _ = base.len();
    }
    println!("outcomes by kill delay: {outcomes:?}");
}

#[derive(diesel::QueryableByName)]
struct Pair {
    #[diesel(sql_type = diesel::sql_types::Text)]
    taxpayer_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    gsp_client_id: String,
}

#[derive(diesel::QueryableByName)]
struct Flag {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    flag: bool,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}
