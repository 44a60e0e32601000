//! What every handler can reach: settings, database, clock, keys.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use actix_web::http::header;

use gsp_gateway_storage::Db;

use crate::clock::Clock;
use crate::gateway::{ClaimsCache, GatewayView, Limits};
use crate::settings::Settings;
use crate::tokens::KeyRing;

/// Shared application state (held in `web::Data`).
#[derive(Debug)]
pub struct AppState {
    /// Settings, fixed at start-up.
    pub settings: Arc<Settings>,
    /// The database.
    pub db: Db,
    /// The clock every rule reads.
    pub clock: Clock,
    /// Signing keys.
    pub keys: Arc<KeyRing>,
    /// Sessions and access windows in memory, for the enforcement middleware.
    pub view: Arc<GatewayView>,
    /// Outgoing HTTP (OTP webhook, upstream forwarding).
    pub http: reqwest::Client,
    /// Verified session-token claims.
    pub claims: Arc<ClaimsCache>,
    /// Gateway rate limits.
    pub limits: Arc<Limits>,
    /// The GSTN dialect's RSA keys and certificate.
    pub gstn: Arc<crate::gstn::GstnKeys>,
    /// Password hashing and RSA decryption, bounded.
    pub heavy: Arc<HeavyWork>,
    /// Whose forwarding headers name the client in the audit log.
    pub trusted_proxies: Arc<crate::auth::TrustedProxies>,
}

/// CPU- and memory-heavy work that strangers can set off: an argon2id hash (19 MiB and tens of
/// milliseconds each, for every login attempt, known username or not) and the dialect's RSA
/// decryption. It runs on one dedicated thread per core, never on the async workers; a bounded
/// number of jobs wait for a thread and the rest are answered 503 at once.
///
/// Measured with 400 concurrent wrong logins for 15 s (`wrk -c400`, release build, 2 cores): on
/// tokio's blocking pool, unbounded, the process reached 5.7 GB RSS (a hash per blocking thread);
/// bounded by a semaphore but still on that pool, 740 MB; on these threads, 540 MB while argon2
/// allocated its memory per hash (glibc's arenas fragment and keep it); with that memory kept per
/// thread and reused (`gsp_gateway_domain::PasswordHash`), 77 MB.
#[derive(Debug)]
pub struct HeavyWork {
    jobs: mpsc::SyncSender<Job>,
    threads: usize,
    waiting: Arc<AtomicUsize>,
}

type Job = Box<dyn FnOnce() + Send>;

impl HeavyWork {
    /// `threads` worker threads (at least 1), `max_waiting` jobs queued behind them.
    pub fn new(threads: usize, max_waiting: usize) -> Self {
        let threads = threads.clamp(1, 256);
        let (jobs, queue) = mpsc::sync_channel::<Job>(max_waiting);
        let queue = Arc::new(Mutex::new(queue));
        let waiting = Arc::new(AtomicUsize::new(0));
        for n in 0..threads {
            let (queue, waiting) = (queue.clone(), waiting.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("heavy-work-{n}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for the next job; a poisoned lock
                        // still guards a usable receiver.
                        let next = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        let Ok(job) = next else { break }; // every sender gone: shut down
                        waiting.fetch_sub(1, Ordering::Relaxed);
                        job();
                    }
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start a heavy-work thread");
            }
        }
        Self {
            jobs,
            threads,
            waiting,
        }
    }

    /// One thread per core, `max_waiting` jobs queued.
    pub fn per_core(max_waiting: usize) -> Self {
        Self::new(
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            max_waiting,
        )
    }

    /// Runs `work` on a heavy-work thread: 503 `service_unavailable` (retry after a second) when every
    /// thread is busy and the queue is full. A job runs to its end even if its request goes away.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, crate::error::ApiError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // A caller that went away no longer wants the result.
            let _ = done.send(work());
        });
        self.waiting.fetch_add(1, Ordering::Relaxed);
        if self.jobs.try_send(job).is_err() {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(crate::error::ApiError::new(
                crate::error::ErrorCode::ServiceUnavailable,
                "the server is busy; retry shortly",
            )
            .with_header(header::RETRY_AFTER, "1"));
        }
        result.await.map_err(crate::error::ApiError::internal)
    }

    /// Jobs waiting for a thread now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Occupies every thread until the returned guard is dropped (tests: a saturated server).
    pub async fn hold_all(&self) -> Result<HeldThreads, crate::error::ApiError> {
        let mut release = Vec::with_capacity(self.threads);
        let mut started = Vec::with_capacity(self.threads);
        for _ in 0..self.threads {
            let (hold, held) = mpsc::channel::<()>();
            let (start, running) = tokio::sync::oneshot::channel::<()>();
            let mut job: Job = Box::new(move || {
                let _ = start.send(());
                let _ = held.recv(); // until the guard drops its sender
            });
            self.waiting.fetch_add(1, Ordering::Relaxed);
            // The queue may be shorter than the number of threads: wait for room.
            while let Err(refused) = self.jobs.try_send(job) {
                match refused {
                    mpsc::TrySendError::Full(again) => job = again,
                    mpsc::TrySendError::Disconnected(_) => {
                        return Err(crate::error::ApiError::internal("no heavy-work thread"));
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            release.push(hold);
            started.push(running);
        }
        for running in started {
            running.await.map_err(crate::error::ApiError::internal)?;
        }
        Ok(HeldThreads { _release: release })
    }
}

/// Every heavy-work thread, occupied until this is dropped.
#[derive(Debug)]
pub struct HeldThreads {
    _release: Vec<mpsc::Sender<()>>,
}
