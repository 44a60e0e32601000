//! The gateway as an operating-system process: graceful SIGTERM, a SIGKILL in the middle of a
//! disable-access transaction, secrets kept out of the logs, several instances on one PostgreSQL, and the
//! operator disabling and re-keying a GSP from the command line.
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
            if let Ok(resp) = reqwest::blocking::get(format!("{}/health/ready", self.base))
                && resp.status().is_success()
            {
                return;
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

/// OTP request, the code from the taxpayer's inbox, token: returns the code and the token answer.
fn consent(
    base: &str,
    basic: (&str, &str),
    taxpayer_token: &str,
    gstin: &str,
    username: &str,
) -> (String, Value) {
    let basic = Some(basic);
    let body = json!({"gstin": gstin, "username": username});
    let (status, answer) = call(
        reqwest::Method::POST,
        format!("{base}/v1/gsp/otp"),
        None,
        basic,
        Some(body),
    );
    assert_eq!(status, 202, "{answer}");
    let url = format!("{base}/v1/taxpayer/otp-requests");
    let (_, inbox) = call(reqwest::Method::GET, url, Some(taxpayer_token), None, None);
    let otp = inbox[0]["code"].as_str().unwrap().to_owned();
    let grant = json!({"grant_type": "otp", "gstin": gstin, "username": username, "otp": otp});
    let (status, tokens) = call(
        reqwest::Method::POST,
        format!("{base}/v1/gsp/token"),
        None,
        basic,
        Some(grant),
    );
    assert_eq!(status, 200, "{tokens}");
    (otp, tokens)
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
    let taxpayer_token = set_access(
        base,
        &password,
        username,
        json!({"enabled": true, "duration_hours": 24}),
    );
    let (otp, tokens) = consent(
        base,
        (&client_id, &client_secret),
        &taxpayer_token,
        gstin,
        username,
    );
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
    // A GST System dialect call: its access line carries the client's `txn` and `ip-usr`.
    let dialect = client()
        .post(format!("{}/taxpayerapi/v1.0/authenticate", gateway.base))
        .header("txn", "LAPN24235325555")
        .header("ip-usr", "203.0.113.7")
        .json(&json!({"action": "OTPREQUEST", "username": "log.tester", "app_key": "x"}))
        .send()
        .unwrap();
    assert_eq!(dialect.status().as_u16(), 403, "no client id");
    std::thread::sleep(Duration::from_millis(200));
    let log = gateway.log_text();
    let tagged = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "served" && l["path"] == "/taxpayerapi/v1.0/authenticate")
        .unwrap_or_else(|| panic!("no access line for the dialect call:\n{log}"));
    assert_eq!(tagged["txn"], "LAPN24235325555", "{tagged}");
    assert_eq!(tagged["ip_usr"], "203.0.113.7", "{tagged}");
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

fn fresh_postgres_database() -> Option<(String, String, String)> {
    use diesel::prelude::*;
    let admin_url = std::env::var("TEST_POSTGRES_URL").ok()?;
    let name = format!("gspgw_multi_{}", std::process::id());
    let mut conn = diesel::PgConnection::establish(&admin_url).expect("connect to TEST_POSTGRES_URL");
    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut conn)
        .unwrap();
    diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .unwrap();
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(b, _)| b)
        .to_owned();
    Some((format!("{base}/{name}"), admin_url, name))
}

fn drop_postgres_database(admin_url: &str, name: &str) {
    use diesel::prelude::*;
    if let Ok(mut conn) = diesel::PgConnection::establish(admin_url) {
        let _ =
            diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&mut conn);
    }
}

fn otp_session(base: &str, flow: &Flow, gstin: &str, username: &str) -> String {
    let credentials = json!({"username": username, "password": flow.password});
    let (_, login) = call(
        reqwest::Method::POST,
        format!("{base}/v1/taxpayer/login"),
        None,
        None,
        Some(credentials),
    );
    let taxpayer_token = login["access_token"].as_str().unwrap().to_owned();
    let basic = (flow.client_id.as_str(), flow.client_secret.as_str());
    let (_, tokens) = consent(base, basic, &taxpayer_token, gstin, username);
    tokens["access_token"].as_str().unwrap().to_owned()
}

/// Logs the taxpayer in and changes their API access; returns the taxpayer token.
fn set_access(base: &str, password: &str, username: &str, body: Value) -> String {
    let credentials = json!({"username": username, "password": password});
    let (_, login) = call(
        reqwest::Method::POST,
        format!("{base}/v1/taxpayer/login"),
        None,
        None,
        Some(credentials),
    );
    let token = login["access_token"].as_str().unwrap().to_owned();
    let url = format!("{base}/v1/taxpayer/api-access");
    let (status, _) = call(reqwest::Method::PUT, url, Some(&token), None, Some(body));
    assert_eq!(status, 200);
    token
}

/// Three gateways on one PostgreSQL. Run it by hand with `scripts/multi-instance.sh`.
#[test]
#[ignore = "needs PostgreSQL: set TEST_POSTGRES_URL and run with --ignored"]
fn three_instances_share_sessions_revocations_and_keys() {
    let Some((url, admin_url, name)) = fresh_postgres_database() else {
        panic!("TEST_POSTGRES_URL is not set")
    };
    let dir = temp_dir("multi");
    let config = dir.join("gateway.toml");
    std::fs::write(&config, "otp_rate_limit = 1000\nsession_cap = 1000\n").unwrap();
    let config = config.display().to_string();
    let env = [
        ("GSP_GATEWAY_CONFIG", config.as_str()),
        ("GSP_GATEWAY_CHANGE_FEED_INTERVAL_MS", "250"),
    ];
    let a = Gateway::start(&url, &dir, &env);
    let b = Gateway::start(&url, &dir, &env);
    let c = Gateway::start(&url, &dir, &env);
    let (gstin, username) = ("27AAPFU0939F1ZV", "multi.tester");
    let flow = full_flow(&a.base, gstin, username);

    // A session created through A works on B and C.
    for other in [&b, &c] {
        let (status, body) = call(
            reqwest::Method::GET,
            format!("{}/v1/gst/taxpayer", other.base),
            Some(&flow.access_token),
            None,
            None,
        );
        assert_eq!(status, 200, "{body}");
    }

    // Disabling through B makes C refuse within the propagation time: 50 trials.
    let mut delays = Vec::new();
    for trial in 0..50 {
        if trial > 0 {
            set_access(
                &b.base,
                &flow.password,
                username,
                json!({"enabled": true, "duration_hours": 24}),
            );
        }
        let token = otp_session(&a.base, &flow, gstin, username);
        let (status, _) = call(
            reqwest::Method::GET,
            format!("{}/v1/gst/taxpayer", c.base),
            Some(&token),
            None,
            None,
        );
        assert_eq!(status, 200);
        // Let C's change feed catch up with the set-up, so the session is served from C's memory
        // and only the feed can tell C about the switch-off.
        std::thread::sleep(Duration::from_millis(600));
        let (status, _) = call(
            reqwest::Method::GET,
            format!("{}/v1/gst/taxpayer", c.base),
            Some(&token),
            None,
            None,
        );
        assert_eq!(status, 200);
        set_access(&b.base, &flow.password, username, json!({"enabled": false}));
        let switched_off = Instant::now();
        loop {
            let (status, body) = call(
                reqwest::Method::GET,
                format!("{}/v1/gst/taxpayer", c.base),
                Some(&token),
                None,
                None,
            );
            if status == 403 {
                assert_eq!(body["code"], "api_access_disabled");
                break;
            }
            assert!(
                switched_off.elapsed() < Duration::from_secs(2),
                "C still admits the session after 2 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        delays.push(switched_off.elapsed());
    }
    delays.sort();
    let median = delays[delays.len() / 2];
    let worst = delays[delays.len() - 1];
    println!(
        "propagation B -> C over {} trials (change feed every 250 ms): median {} ms, worst {} ms",
        delays.len(),
        median.as_millis(),
        worst.as_millis()
    );
    assert!(
        worst < Duration::from_secs(1),
        "the configured propagation bound is 1 s; worst was {worst:?}"
    );

    // Key rotation on one instance is honoured by the others.
    set_access(
        &b.base,
        &flow.password,
        username,
        json!({"enabled": true, "duration_hours": 24}),
    );
    let token_before = otp_session(&a.base, &flow, gstin, username);
    let (_, jwks) = call(
        reqwest::Method::GET,
        format!("{}/.well-known/jwks.json", c.base),
        None,
        None,
        None,
    );
    let old_kid = jwks["keys"][0]["kid"].as_str().unwrap().to_owned();
    let status = Command::new(BINARY)
        .env("DATABASE_URL", &url)
        .args(["keys", "rotate"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(1000));
    for gateway in [&a, &b, &c] {
        let (_, jwks) = call(
            reqwest::Method::GET,
            format!("{}/.well-known/jwks.json", gateway.base),
            None,
            None,
            None,
        );
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids.len(), 2, "{} publishes both keys: {kids:?}", gateway.base);
        assert!(kids.contains(&old_kid.as_str()));
    }
    let token_after = otp_session(&b.base, &flow, gstin, username);
    let header: Value =
        serde_json::from_slice(&base64_url_decode(token_after.split('.').next().unwrap())).unwrap();
    assert_ne!(header["kid"], old_kid.as_str(), "B signs with the new key");
    for gateway in [&a, &c] {
        for token in [&token_before, &token_after] {
            let (status, body) = call(
                reqwest::Method::GET,
                format!("{}/v1/gst/taxpayer", gateway.base),
                Some(token),
                None,
                None,
            );
            assert_eq!(status, 200, "{body}");
        }
    }
    drop((a, b, c));
    drop_postgres_database(&admin_url, &name);
}

fn base64_url_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in text.bytes() {
        let Some(value) = ALPHABET.iter().position(|&a| a == byte) else {
            continue;
        };
        buffer = (buffer << 6) | value as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}

/// Runs `gsp-gateway admin …` on the database: its exit status, standard output and error.
fn admin_cli(database_url: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BINARY)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .arg("admin")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Calls `url` with the bearer token until it answers `status`, for at most two seconds.
fn answers_within(url: &str, token: &str, status: u16) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let answer = call(reqwest::Method::GET, url.to_owned(), Some(token), None, None);
        if answer.0 == status || Instant::now() > deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn the_operator_disables_re_enables_and_re_keys_a_gsp_from_the_command_line() {
    let dir = temp_dir("gsp-lifecycle");
    let url = format!("sqlite://{}", dir.join("g.db").display());
    let gateway = Gateway::start(&url, &dir, &[]);
    let flow = full_flow(&gateway.base, "24AAUPV7468F1ZW", "cli.operator");
    let taxpayer_api = format!("{}/v1/gst/taxpayer", gateway.base);
    assert_eq!(
        call(
            reqwest::Method::GET,
            taxpayer_api.clone(),
            Some(&flow.access_token),
            None,
            None
        )
        .0,
        200
    );

    let (ok, out, err) = admin_cli(&url, &["disable-gsp", "--client-id", &flow.client_id]);
    assert!(ok, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["enabled"], false);
    assert_eq!(
        status["revoked_sessions"].as_array().map(Vec::len),
        Some(1),
        "{out}"
    );
    // The running gateway learns of it through the change feed.
    let (code, problem) = answers_within(&taxpayer_api, &flow.access_token, 401);
    assert_eq!(
        (code, problem["code"].as_str()),
        (401, Some("session_revoked")),
        "{problem}"
    );

    let (ok, out, err) = admin_cli(&url, &["enable-gsp", "--client-id", &flow.client_id]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["enabled"], true);

    let (ok, out, err) = admin_cli(&url, &["rotate-gsp-secret", "--client-id", &flow.client_id]);
    assert!(ok, "{err}");
    let rotated: Value = serde_json::from_str(&out).unwrap();
    let new_secret = rotated["client_secret"].as_str().unwrap();
    assert_ne!(new_secret, flow.client_secret);
    let otp = |secret: &str| {
        call(
            reqwest::Method::POST,
            format!("{}/v1/gsp/otp", gateway.base),
            None,
            Some((&flow.client_id, secret)),
            Some(json!({"gstin": "24AAUPV7468F1ZW", "username": "cli.operator"})),
        )
    };
    let (code, problem) = otp(&flow.client_secret);
    assert_eq!(
        (code, problem["code"].as_str()),
        (401, Some("invalid_client")),
        "{problem}"
    );
    assert_eq!(otp(new_secret).0, 202);

    let (ok, _, err) = admin_cli(&url, &["disable-gsp", "--client-id", "l7xxnosuchclient"]);
    assert!(!ok);
    assert!(err.contains("no GSP client l7xxnosuchclient"), "{err}");
}
