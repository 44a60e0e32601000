//! Memory soak for the enforcement gateway: many distinct sessions used once each, then constant
//! load, while the gateway's resident memory is sampled. Driven by `bench/soak.sh`, which starts a
//! release gateway; run by hand:
//!
//!     cargo run --release -p gsp-gateway-api --example soak -- BASE_URL DATABASE_URL GATEWAY_PID SESSIONS MINUTES
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark driver fails loudly"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use gsp_gateway_api::tokens::{KeyRing, TokenKind};
use gsp_gateway_storage::repo::{keys, sessions, taxpayers};
use gsp_gateway_storage::{DatabaseUrl, Db, PoolOptions, to_db, write_tx};
use serde_json::{Value, json};

const ADMIN: &str = "soak-admin-token-0123456789";

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

async fn post(client: &reqwest::Client, url: String, auth: Option<&str>, body: Value) -> Value {
    let mut req = client.post(url).json(&body);
    if let Some(token) = auth {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap().json().await.unwrap()
}

async fn fire(client: &reqwest::Client, base: &str, tokens: &[String], concurrency: usize) -> (usize, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let tokens = Arc::new(tokens.to_vec());
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, base, tokens, next, ok) = (
            client.clone(),
            base.to_owned(),
            tokens.clone(),
            next.clone(),
            ok.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(token) = tokens.get(i) else { break };
                if let Ok(resp) = client
                    .get(format!("{base}/v1/gst/taxpayer"))
                    .bearer_auth(token)
                    .send()
                    .await
                {
                    if resp.status().is_success() {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = resp.bytes().await;
                }
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    (ok.load(Ordering::Relaxed), tokens.len())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, base, database_url, pid, count, minutes] = args.as_slice() else {
        eprintln!("usage: soak BASE_URL DATABASE_URL GATEWAY_PID SESSIONS MINUTES");
        std::process::exit(2);
    };
    let (pid, count, minutes): (u32, usize, u64) = (
        pid.parse().unwrap(),
        count.parse().unwrap(),
        minutes.parse().unwrap(),
    );
    let client = reqwest::Client::new();

    // A taxpayer with a 30-day window and one GSP, through the API.
    post(&client, format!("{base}/v1/admin/taxpayers"), Some(ADMIN), json!({"gstin": "24AAUPV7468F1ZW", "username": "soak.user", "password": "Soak-Pass-2026", "legal_name": "Soak Traders"})).await;
    let gsp = post(
        &client,
        format!("{base}/v1/admin/gsps"),
        Some(ADMIN),
        json!({"name": "Soak GSP"}),
    )
    .await;
    let client_id = gsp["client_id"].as_str().unwrap().to_owned();
    let login = post(
        &client,
        format!("{base}/v1/taxpayer/login"),
        None,
        json!({"username": "soak.user", "password": "Soak-Pass-2026"}),
    )
    .await;
    let tp = login["access_token"].as_str().unwrap();
    client
        .put(format!("{base}/v1/taxpayer/api-access"))
        .bearer_auth(tp)
        .json(&json!({"enabled": true, "duration_hours": 720}))
        .send()
        .await
        .unwrap();

    // Sessions written straight to the database (the OTP flow would be rate-limited and slow),
    // and tokens signed with the gateway's own key.
    let db = Db::new(
        &DatabaseUrl::parse(database_url).unwrap(),
        &PoolOptions::default(),
    );
    let now = Utc::now();
    let started = Instant::now();
    let cid = client_id.clone();
    let ids: Vec<String> = db
        .run(move |conn| {
            let taxpayer = taxpayers::find_by_username(conn, "soak.user")?.expect("provisioned");
            let mut ids = Vec::with_capacity(count);
            for chunk in 0..count.div_ceil(5_000) {
                write_tx(conn, |conn| {
                    for _ in 0..5_000.min(count - chunk * 5_000) {
                        let id = uuid::Uuid::new_v4().to_string();
                        sessions::insert(
                            conn,
                            &sessions::SessionRow {
                                id: id.clone(),
                                taxpayer_id: taxpayer.id.clone(),
                                gsp_client_id: cid.clone(),
                                channel: "rest".into(),
                                created_at: to_db(now),
                                last_used_at: to_db(now),
                                expires_at: to_db(now + TimeDelta::hours(700)),
                                revoked_at: None,
                                revoked_reason: None,
                                gstn_token_hash: None,
                                gstn_app_key: None,
                                gstn_sek: None,
                                gstn_token_expires_at: None,
                            },
                        )?;
                        ids.push(id);
                    }
                    Ok(())
                })?;
            }
            Ok(ids)
        })
        .await
        .unwrap();
    let rows = db
        .run(move |conn| keys::live(conn, "jwt", to_db(now)))
        .await
        .unwrap();
    let ring = KeyRing::new("gsp-gateway".into());
    ring.replace(&rows);
    let tokens: Vec<String> = ids
        .iter()
        .map(|sid| {
            ring.issue(
                TokenKind::Session,
                "24AAUPV7468F1ZW",
                Some(sid),
                Some(&client_id),
                now,
                now + TimeDelta::hours(6),
            )
            .unwrap()
            .0
        })
        .collect();
    println!(
        "prepared {} sessions and tokens in {:.1} s; gateway RSS {:.1} MiB",
        tokens.len(),
        started.elapsed().as_secs_f64(),
        rss_mib(pid)
    );

    let started = Instant::now();
    let (ok, total) = fire(&client, base, &tokens, 64).await;
    println!(
        "each session used once: {ok}/{total} admitted in {:.1} s; gateway RSS {:.1} MiB",
        started.elapsed().as_secs_f64(),
        rss_mib(pid)
    );

    // Sampled after every round; reported once a minute as the lowest and highest reading in it, so
    // growth shows as rising minima rather than hiding in the sawtooth of freed and reused pages.
    let load_started = Instant::now();
    let end = load_started + Duration::from_secs(minutes * 60);
    let (mut round, mut minute) = (0, 0);
    let (mut low, mut high) = (f64::MAX, 0.0f64);
    while Instant::now() < end {
        let slice: Vec<String> = tokens
            .iter()
            .skip((round * 2_000) % tokens.len())
            .take(2_000)
            .cloned()
            .collect();
        fire(&client, base, &slice, 32).await;
        round += 1;
        let rss = rss_mib(pid);
        (low, high) = (low.min(rss), high.max(rss));
        let now_minute = load_started.elapsed().as_secs() / 60;
        if now_minute > minute || Instant::now() >= end {
            println!(
                "constant load, minute {:>2}: gateway RSS {low:.1}-{high:.1} MiB",
                minute + 1
            );
            (minute, low, high) = (now_minute, f64::MAX, 0.0);
        }
    }
    println!(
        "after {minutes} min of constant load: gateway RSS {:.1} MiB",
        rss_mib(pid)
    );
}
