//! The taxpayer page in a real headless Chromium.
//!
//! The browser test drives Debian's Chromium through chromedriver, which it starts on a free port and
//! stops at the end; `.ci/browser.sh` installs both and runs it with `--ignored browser::`. Every wait
//! polls for what a person would see, up to `WAIT`: no fixed sleep decides an outcome. Screenshots of
//! the main states land in `target/browser-screenshots/`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::helpers::{Auth, Backend, TestApp, TestGsp, TestTaxpayer, spawn_app};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long a wait for the page may take before the test fails.
const WAIT: Duration = Duration::from_secs(10);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(100);

#[tokio::test]
async fn page_and_assets_carry_their_content_types_and_a_strict_csp() {
    let app = spawn_app(Backend::Sqlite).await;
    for (path, content_type, marker) in [
        ("/", "text/html; charset=utf-8", "Manage API Access"),
        (
            "/static/app.js",
            "text/javascript; charset=utf-8",
            "/v1/taxpayer/api-access",
        ),
        ("/static/app.css", "text/css; charset=utf-8", ".otp-code"),
        ("/static/favicon.svg", "image/svg+xml", "<svg"),
    ] {
        let resp = app.get(path, Auth::None).await;
        assert_eq!(resp.status.as_u16(), 200, "{path}");
        assert_eq!(resp.header("content-type"), Some(content_type), "{path}");
        assert!(resp.text.contains(marker), "{path} lacks {marker:?}");
        let csp = resp.header("content-security-policy").unwrap_or_default();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: CSP {csp:?} lacks {directive:?}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{path}: {csp}"
        );
        assert_eq!(resp.header("x-content-type-options"), Some("nosniff"), "{path}");
    }

    let page = app.get("/", Auth::None).await.text;
    assert!(
        !page.contains("<script>") && !page.contains(" style="),
        "the page has inline script or style"
    );
    for id in [
        "login-username",
        "enable-yes",
        "enable-no",
        "duration",
        "confirm",
        "access-status",
        "otp-list",
    ] {
        assert!(page.contains(&format!("id=\"{id}\"")), "the page lacks #{id}");
    }

    let resp = app.post("/", Auth::None, json!({})).await;
    resp.assert_problem(405, "method_not_allowed");
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver (run by .ci/browser.sh)"]
async fn taxpayer_manages_api_access_otps_and_sessions_in_chromium() {
    let app = spawn_app(Backend::Sqlite).await;
    let taxpayer = app.create_taxpayer(0).await;
    let gsp = app.create_gsp("Quick Returns GSP").await;

    let shots = Screenshots::new();
    let driver = ChromeDriver::start(&shots.dir).await;
    let client = driver.session().await;

    // The flow runs as its own task so that a failed assertion still leaves us the browser: the
    // page at the moment of failure is saved, and Chromium is shut down before the panic goes on.
    let flow = tokio::spawn(manage_access_flow(
        app,
        taxpayer,
        gsp,
        client.clone(),
        shots.clone(),
    ));
    let outcome = flow.await;
    if outcome.is_err() {
        shots.take(&client, "failure").await;
    }
    let _ = client.close().await;
    drop(driver);
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

async fn manage_access_flow(
    app: TestApp,
    taxpayer: TestTaxpayer,
    gsp: TestGsp,
    page: Client,
    shots: Screenshots,
) {
    page.goto(&format!("{}/", app.address)).await.unwrap();
    wait_visible(&page, "#login-form").await;
    shots.take(&page, "01-login").await;

    // The API's own words for a refused login reach the taxpayer.
    fill(&page, "#login-username", &taxpayer.username).await;
    fill(&page, "#login-password", "not-the-password").await;
    click(&page, "#login-submit").await;
    let refused = wait_text(&page, "#login-error", |t| !t.is_empty(), "the login error").await;
    assert!(refused.len() > 10, "a bare error: {refused:?}");
    assert!(is_visible(&page, "#login-form").await, "still on the login form");
    shots.take(&page, "02-login-refused").await;

    fill(&page, "#login-username", &taxpayer.username).await;
    fill(&page, "#login-password", &taxpayer.password).await;
    click(&page, "#login-submit").await;
    wait_text(
        &page,
        "#access-status",
        |t| t == "disabled",
        "status disabled after login",
    )
    .await;
    wait_text(
        &page,
        "#taxpayer-gstin",
        |t| t == taxpayer.gstin,
        "the GSTIN in the header",
    )
    .await;
    assert!(!is_visible(&page, "#login-form").await, "the login form is gone");
    assert!(
        !page
            .find(Locator::Css("#duration"))
            .await
            .unwrap()
            .is_enabled()
            .await
            .unwrap(),
        "the duration is not offered while Enable API Request is No"
    );
    shots.take(&page, "03-logged-in-disabled").await;

    // Enable API Request: Yes, 1 day, Confirm.
    click(&page, "#enable-yes").await;
    page.find(Locator::Css("#duration"))
        .await
        .unwrap()
        .select_by_value("24")
        .await
        .unwrap();
    click(&page, "#confirm").await;
    wait_text(&page, "#access-status", |t| t == "enabled", "status enabled").await;
    let ends = wait_text(
        &page,
        "#access-expires",
        |t| t != "—" && !t.is_empty(),
        "the end time",
    )
    .await;
    let left = wait_text(
        &page,
        "#access-remaining",
        |t| t.ends_with("left"),
        "the time left",
    )
    .await;
    assert!(
        left.starts_with("23 hours") || left == "1 day left",
        "one day minus a moment: {left:?}"
    );
    let shown_end = attr(&page, "#access-expires", "data-expires-at").await;
    let api_token = taxpayer_token(&app, &taxpayer).await;
    let access = app.get("/v1/taxpayer/api-access", Auth::Bearer(&api_token)).await;
    let access = access.ok(200);
    assert_eq!(access["status"], "enabled");
    assert_eq!(access["duration_hours"], 24);
    assert_eq!(
        access["expires_at"].as_str(),
        Some(shown_end.as_str()),
        "the page shows the API's end ({ends})"
    );
    let window = timestamp(&access["expires_at"]) - timestamp(&access["enabled_at"]);
    assert_eq!(window, TimeDelta::hours(24));
    shots.take(&page, "04-enabled-1-day").await;

    // A GSP asks for an OTP; the page's inbox shows it without the taxpayer doing anything.
    let basic = Auth::Basic(&gsp.client_id, &gsp.client_secret);
    app.post(
        "/v1/gsp/otp",
        basic.clone(),
        json!({"gstin": taxpayer.gstin, "username": taxpayer.username}),
    )
    .await
    .ok(202);
    wait_text(
        &page,
        "[data-testid=otp-gsp]",
        |t| t == gsp.name,
        "the OTP request in the inbox",
    )
    .await;
    let code = wait_text(&page, "[data-testid=otp-code]", |t| !t.is_empty(), "the OTP code").await;
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "a 6-digit OTP: {code:?}"
    );
    let inbox = app
        .get("/v1/taxpayer/otp-requests", Auth::Bearer(&api_token))
        .await;
    assert_eq!(
        inbox.ok(200)[0]["code"],
        code.as_str(),
        "the page shows the inbox's code"
    );
    shots.take(&page, "05-otp-in-inbox").await;

    // The GSP exchanges the code for a session that works.
    let tokens = app
        .post(
            "/v1/gsp/token",
            basic.clone(),
            json!({"grant_type": "otp", "gstin": taxpayer.gstin, "username": taxpayer.username, "otp": code}),
        )
        .await;
    let tokens = tokens.ok(200).clone();
    let session_token = tokens["access_token"].as_str().unwrap().to_owned();
    let session_id = tokens["session_id"].as_str().unwrap().to_owned();
    app.get("/v1/gst/taxpayer", Auth::Bearer(&session_token))
        .await
        .ok(200);

    let row = format!("tr[data-testid=session-row][data-session-id=\"{session_id}\"]");
    click(&page, "#sessions-refresh").await;
    wait_text(
        &page,
        &format!("{row} [data-testid=session-gsp]"),
        |t| t == gsp.name,
        "the session's GSP",
    )
    .await;
    wait_text(
        &page,
        &format!("{row} [data-testid=session-status]"),
        |t| t == "active",
        "an active session",
    )
    .await;
    wait_gone(&page, "[data-testid=otp-item]", "the used OTP leaving the inbox").await;
    scroll_to(&page, "#sessions-card").await;
    shots.take(&page, "06-session-listed").await;

    // An EVC OTP (the GST System dialect's filing signature) says which return it signs.
    app.open_evc_otp(&gsp, &session_id, "R3B").await;
    wait_text(
        &page,
        "[data-testid=otp-form]",
        |t| t == "R3B",
        "the form the EVC OTP signs",
    )
    .await;
    let evc_text = wait_text(
        &page,
        "[data-testid=otp-item]",
        |t| t.contains("EVC"),
        "the EVC OTP",
    )
    .await;
    assert!(
        evc_text.contains(&taxpayer.gstin[2..12]),
        "the PAN is shown: {evc_text:?}"
    );
    scroll_to(&page, "#otp-card").await;
    shots.take(&page, "06b-evc-otp-in-inbox").await;

    // Revoke: the GSP's very next call is refused.
    click(&page, &format!("{row} button[data-testid=revoke]")).await;
    wait_text(
        &page,
        &format!("{row} [data-testid=session-status]"),
        |t| t == "revoked",
        "the session revoked",
    )
    .await;
    wait_gone(
        &page,
        &format!("{row} button[data-testid=revoke]"),
        "the Revoke button of a revoked session",
    )
    .await;
    app.get("/v1/gst/taxpayer", Auth::Bearer(&session_token))
        .await
        .assert_problem(401, "session_revoked");
    wait_gone(
        &page,
        "[data-testid=otp-item]",
        "the revoked session's EVC OTP leaving the inbox",
    )
    .await;
    let revoked = wait_text(
        &page,
        "#app-message",
        |t| t.contains("revoked"),
        "the revoke message",
    )
    .await;
    assert!(revoked.contains(&gsp.name), "{revoked:?}");
    scroll_to(&page, "#sessions-card").await;
    shots.take(&page, "07-session-revoked").await;

    // Enable API Request: No, Confirm.
    click(&page, "#enable-no").await;
    click(&page, "#confirm").await;
    wait_text(&page, "#access-status", |t| t == "disabled", "status disabled").await;
    wait_text(
        &page,
        "#access-expires",
        |t| t == "—",
        "no end time while disabled",
    )
    .await;
    let access = app.get("/v1/taxpayer/api-access", Auth::Bearer(&api_token)).await;
    assert_eq!(access.ok(200)["status"], "disabled");
    wait_text(&page, "#activity-list", |t| !t.is_empty(), "the activity list").await;
    let events = page
        .find_all(Locator::Css("[data-testid=activity-item]"))
        .await
        .unwrap();
    assert!(
        events.len() >= 4,
        "enable, OTP, session, revoke and disable are listed: {}",
        events.len()
    );
    scroll_to(&page, "body").await;
    shots.take(&page, "08-disabled").await;
    scroll_to(&page, "#activity-card").await;
    shots.take(&page, "09-activity").await;

    // The same page on a phone-sized screen.
    page.set_window_size(390, 1600).await.unwrap();
    scroll_to(&page, "body").await;
    let overflow = page
        .execute(
            "return document.documentElement.scrollWidth > window.innerWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(overflow, Value::Bool(false), "no sideways scrolling on a phone");
    shots.take(&page, "10-phone").await;
}

/// A taxpayer token of the test's own, to read the API's view of what the page shows.
async fn taxpayer_token(app: &TestApp, taxpayer: &TestTaxpayer) -> String {
    let login = app
        .post(
            "/v1/taxpayer/login",
            Auth::None,
            json!({"username": taxpayer.username, "password": taxpayer.password}),
        )
        .await;
    login.ok(200)["access_token"].as_str().unwrap().to_owned()
}

fn timestamp(value: &Value) -> DateTime<Utc> {
    value.as_str().unwrap().parse().unwrap()
}

// ---- Page helpers: each looks again until the page shows what it should, or fails after `WAIT`.

async fn find_now(page: &Client, css: &str) -> Option<fantoccini::elements::Element> {
    page.find(Locator::Css(css)).await.ok()
}

async fn is_visible(page: &Client, css: &str) -> bool {
    match find_now(page, css).await {
        Some(element) => element.is_displayed().await.unwrap_or(false),
        None => false,
    }
}

async fn wait_visible(page: &Client, css: &str) {
    let deadline = Instant::now() + WAIT;
    while !is_visible(page, css).await {
        assert!(
            Instant::now() < deadline,
            "{css} did not become visible within {WAIT:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the visible text of the first element matching `css` satisfies `want`, and returns it.
async fn wait_text(page: &Client, css: &str, want: impl Fn(&str) -> bool, what: &str) -> String {
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    loop {
        if let Some(element) = find_now(page, css).await
            && let Ok(text) = element.text().await
        {
            let text = text.trim().to_owned();
            if want(&text) {
                return text;
            }
            last = Some(text);
        }
        assert!(
            Instant::now() < deadline,
            "waited {WAIT:?} for {what} ({css}); last text: {last:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

async fn wait_gone(page: &Client, css: &str, what: &str) {
    let deadline = Instant::now() + WAIT;
    while find_now(page, css).await.is_some() {
        assert!(
            Instant::now() < deadline,
            "waited {WAIT:?} for {what} ({css}) to go"
        );
        tokio::time::sleep(POLL).await;
    }
}

async fn click(page: &Client, css: &str) {
    wait_visible(page, css).await;
    page.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
}

async fn fill(page: &Client, css: &str, text: &str) {
    wait_visible(page, css).await;
    let field = page.find(Locator::Css(css)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

/// Brings a part of the page into the viewport, so that its screenshot shows it.
async fn scroll_to(page: &Client, css: &str) {
    page.execute(
        "document.querySelector(arguments[0]).scrollIntoView({block: 'start'});",
        vec![json!(css)],
    )
    .await
    .unwrap();
}

async fn attr(page: &Client, css: &str, name: &str) -> String {
    let element = page.find(Locator::Css(css)).await.unwrap();
    element
        .attr(name)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{css} has no {name}"))
}

// ---- Screenshots and the browser ----------------------------------------------------------------

/// Where the screenshots go: `target/browser-screenshots/` of the workspace.
#[derive(Clone)]
struct Screenshots {
    dir: PathBuf,
}

impl Screenshots {
    fn new() -> Self {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/browser-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    async fn take(&self, page: &Client, name: &str) {
        match page.screenshot().await {
            Ok(png) => std::fs::write(self.dir.join(format!("{name}.png")), png).unwrap(),
            Err(error) => eprintln!("screenshot {name} failed: {error}"),
        }
    }
}

/// A chromedriver on a free port, with a throwaway Chromium profile; both go when it is dropped.
struct ChromeDriver {
    child: Child,
    port: u16,
    profile: PathBuf,
}

impl ChromeDriver {
    async fn start(log_dir: &Path) -> Self {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: apt-get install chromium chromium-driver"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!(
                "--log-path={}",
                log_dir.join("chromedriver.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so dropping it also ends any Chromium a failed test leaves behind.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{CHROMEDRIVER} did not start: {e}"));
        let profile =
            std::env::temp_dir().join(format!("gsp-gateway-chromium-{}", uuid::Uuid::new_v4().simple()));
        let driver = Self { child, port, profile };

        let status = format!("{}/status", driver.url());
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = match reqwest::get(&status).await {
                Ok(resp) => resp
                    .json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer on port {port}"
            );
            tokio::time::sleep(POLL).await;
        }
        driver
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn session(&self) -> Client {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1000",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([format!("--user-data-dir={}", self.profile.display())])
        .collect::<Vec<_>>();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        // The workspace enables two rustls crypto providers (the gateway's ring, fantoccini's aws-lc-rs),
        // so rustls cannot pick a default by itself: name one for this process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        ClientBuilder::rustls()
            .unwrap()
            .capabilities(capabilities)
            .connect(&self.url())
            .await
            .unwrap_or_else(|e| panic!("no Chromium session through chromedriver: {e}"))
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
