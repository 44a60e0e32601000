//! Faults: the database going away under traffic, and coming back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::helpers::*;

/// A TCP proxy in front of PostgreSQL that the test can cut and restore.
struct CuttableProxy {
    port: u16,
    open: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl CuttableProxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (accept_open, accept_links) = (open.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !accept_open.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                accept_links.lock().await.push(link);
            }
        });
        Self { port, open, links }
    }

    async fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set TEST_POSTGRES_URL and run with --ignored"]
async fn postgres_going_away_answers_503_quickly_and_recovers_by_itself() {
    let (direct_url, guard) = fresh_database(Backend::Postgres);
    let (prefix, rest) = direct_url.split_once('@').unwrap();
    let (host_port, db) = rest.split_once('/').unwrap();
    let proxy = CuttableProxy::start(host_port.to_owned()).await;
    let proxied = format!("{prefix}@127.0.0.1:{}/{db}", proxy.port);
    let app = spawn_on(proxied, Arc::new(guard), gsp_gateway_api::Clock::system(), |s| {
        s.db_timeout_ms = 1_000
    })
    .await;
    let taxpayer = app.create_taxpayer(0).await;
    let gsp = app.create_gsp("Acme GSP").await;
    app.enable_access(&taxpayer, 24).await;
    let session = app.open_session(&gsp, &taxpayer).await;
    app.get("/health/ready", Auth::None).await.ok(200);
    // Let the change feed apply the set-up's own events first (they clear cached entries), then warm
    // the session, so it is served from memory while the database is away.
    let head = app
        .state
        .db
        .run(gsp_gateway_storage::repo::audit::head)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.state.view.feed_position() < head {
        assert!(Instant::now() < deadline, "the change feed did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.gst("/v1/gst/taxpayer", &session.access_token).await.ok(200);

    proxy.cut().await;
    for _ in 0..3 {
        let started = Instant::now();
        let ready = app.get("/health/ready", Auth::None).await;
        ready.assert_problem(503, "service_unavailable");
        let started_api = Instant::now();
        let api = app
            .get(
                &format!("/v1/gsp/search/{}", taxpayer.gstin),
                Auth::Basic(&gsp.client_id, &gsp.client_secret),
            )
            .await;
        api.assert_problem(503, "service_unavailable");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "answers within the configured timeout, not hangs"
        );
        assert!(
            started_api.elapsed() < Duration::from_millis(2_500),
            "{:?}",
            started_api.elapsed()
        );
        assert!(
            !api.text.contains("postgres") && !api.text.contains("connection"),
            "no internal detail: {}",
            api.text
        );
    }
    // Sessions already in memory keep being enforced without the database.
    app.gst("/v1/gst/taxpayer", &session.access_token).await.ok(200);

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = app.get("/health/ready", Auth::None).await;
        if ready.status.as_u16() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "did not recover: {}", ready.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.get(
        &format!("/v1/gsp/search/{}", taxpayer.gstin),
        Auth::Basic(&gsp.client_id, &gsp.client_secret),
    )
    .await
    .ok(200);
    app.disable_access(&taxpayer).await;
    app.gst("/v1/gst/taxpayer", &session.access_token)
        .await
        .assert_problem(403, "api_access_disabled");
}

/// Write transactions name READ COMMITTED: on a server whose default is SERIALIZABLE (as some
/// PostgreSQL-compatible databases have), contended writes still queue on the audit chain's row lock
/// instead of failing. Ten concurrent wrong OTPs are each counted, as at the default level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set TEST_POSTGRES_URL and run with --ignored"]
async fn contended_writes_queue_under_a_serializable_server_default() {
    let app = spawn_app_with(Backend::Postgres, |s| {
        s.database_url
            .push_str("?options=-c%20default_transaction_isolation%3Dserializable");
    })
    .await;
    let level: String = app
        .state
        .db
        .run(|c| {
            use diesel::prelude::*;
            #[derive(QueryableByName)]
            struct Level {
                #[diesel(sql_type = diesel::sql_types::Text)]
                default_transaction_isolation: String,
            }
            let rows: Vec<Level> = diesel::sql_query("SHOW default_transaction_isolation").load(c)?;
            Ok(rows
                .into_iter()
                .next()
                .map(|l| l.default_transaction_isolation)
                .unwrap_or_default())
        })
        .await
        .unwrap();
    assert_eq!(level, "serializable", "the server default the test is about");
    let taxpayer = app.create_taxpayer(0).await;
    let gsp = app.create_gsp("Acme GSP").await;
    let (_, answers, remaining) = app.wrong_otps_at_once(&gsp, &taxpayer).await;
    let codes: Vec<&str> = answers.iter().map(|r| r.code()).collect();
    assert_eq!(remaining, vec![1, 2, 3, 4], "{codes:?}");
    let count = |code: &str| codes.iter().filter(|c| **c == code).count();
    assert_eq!(
        (count("otp_attempts_exceeded"), count("otp_expired")),
        (1, 5),
        "{codes:?}"
    );
}
