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
/// decryption. It runs on dedicated threads (one per core, at most [`MAX_HEAVY_THREADS`]), never on
/// the async workers; up to `max_waiting` jobs wait for a thread and the rest are answered 503 at once.
///
/// Measured with 400 concurrent wrong logins for 15 s (`wrk -c400`, release build, 2 cores): on
/// tokio's blocking pool, unbounded, the process reached 5.7 GB RSS (a hash per blocking thread);
/// bounded by a semaphore but still on that pool, 740 MB; on these threads, 540 MB while argon2's
/// 19 MiB came from the allocator's arenas (which fragment and keep it); with that memory a mapping of
/// its own, handed back after each hash (`gsp_gateway_domain::PasswordHash`), 77 MB at the peak and
/// 38 MB right after.
#[derive(Debug)]
pub struct HeavyWork {
    jobs: mpsc::Sender<Job>,
    threads: usize,
    /// Jobs admitted and not finished (queued or running); at most `threads + max_waiting`.
    admitted: Arc<AtomicUsize>,
    /// Jobs admitted and not yet picked up by a thread.
    queued: Arc<AtomicUsize>,
    max_waiting: usize,
}

/// The most heavy-work threads: each hash needs 19 MiB while it runs, and a container without a CPU
/// limit reports all of its host's cores.
pub const MAX_HEAVY_THREADS: usize = 8;

type Job = Box<dyn FnOnce() + Send>;

/// Uncounts an admitted job however it ends (done, panicked, or dropped unrun when no thread takes it).
struct Admitted(Arc<AtomicUsize>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl HeavyWork {
    /// `threads` worker threads (1 to [`MAX_HEAVY_THREADS`]), `max_waiting` jobs queued behind them.
    pub fn new(threads: usize, max_waiting: usize) -> std::io::Result<Self> {
        let threads = threads.clamp(1, MAX_HEAVY_THREADS);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let queued = Arc::new(AtomicUsize::new(0));
        for n in 0..threads {
            let (queue, queued) = (queue.clone(), queued.clone());
            std::thread::Builder::new()
                .name(format!("heavy-work-{n}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for the next job; a poisoned lock
                        // still guards a usable receiver.
                        let next = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        let Ok(job) = next else { break }; // every sender gone: shut down
                        queued.fetch_sub(1, Ordering::Relaxed);
                        // A job that panics fails its own request (its result sender is dropped),
                        // not this thread: the pool keeps its size.
                        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                            tracing::error!("a heavy-work job panicked");
                        }
                    }
                })?;
        }
        Ok(Self {
            jobs,
            threads,
            admitted: Arc::new(AtomicUsize::new(0)),
            queued,
            max_waiting,
        })
    }

    /// One thread per core (at most [`MAX_HEAVY_THREADS`]), `max_waiting` jobs queued.
    pub fn per_core(max_waiting: usize) -> std::io::Result<Self> {
        Self::new(
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            max_waiting,
        )
    }

    /// Admits a job if a thread or a queue place is free; the guard uncounts it when dropped.
    fn admit(&self) -> Option<Admitted> {
        let limit = self.threads + self.max_waiting;
        if self.admitted.fetch_add(1, Ordering::Relaxed) >= limit {
            self.admitted.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Admitted(self.admitted.clone()))
    }

    /// Queues `work`, which is handed its admission to end (a job that panics ends it as it unwinds).
    fn submit(
        &self,
        admitted: Admitted,
        work: impl FnOnce(Admitted) + Send + 'static,
    ) -> Result<(), crate::error::ApiError> {
        self.queued.fetch_add(1, Ordering::Relaxed);
        let job: Job = Box::new(move || work(admitted));
        self.jobs.send(job).map_err(|_| {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            crate::error::ApiError::internal("no heavy-work thread")
        })
    }

    /// Runs `work` on a heavy-work thread: 503 `service_unavailable` (retry after a second) when every
    /// thread is busy and the queue is full. A job runs to its end even if its request goes away.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, crate::error::ApiError> {
        let Some(admitted) = self.admit() else {
            return Err(crate::error::ApiError::new(
                crate::error::ErrorCode::ServiceUnavailable,
                "the server is busy; retry shortly",
            )
            .with_header(header::RETRY_AFTER, "1"));
        };
        let (done, result) = tokio::sync::oneshot::channel();
        self.submit(admitted, move |admitted| {
            let value = work();
            // Uncounted before the result is handed over: a caller that runs its next job at once
            // finds this place free.
            drop(admitted);
            // A caller that went away no longer wants the result.
            let _ = done.send(value);
        })?;
        result.await.map_err(crate::error::ApiError::internal)
    }

    /// Jobs waiting for a thread now.
    pub fn waiting(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Occupies every thread until the returned guard is dropped (tests: a saturated server).
    pub async fn hold_all(&self) -> Result<HeldThreads, crate::error::ApiError> {
        let mut release = Vec::with_capacity(self.threads);
        let mut started = Vec::with_capacity(self.threads);
        for _ in 0..self.threads {
            let admitted = self
                .admit()
                .ok_or_else(|| crate::error::ApiError::internal("the heavy-work threads are busy"))?;
            let (hold, held) = mpsc::channel::<()>();
            let (start, running) = tokio::sync::oneshot::channel::<()>();
            self.submit(admitted, move |_admitted| {
                let _ = start.send(());
                let _ = held.recv(); // until the guard drops its sender
            })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[tokio::test]
    async fn a_panicking_job_fails_alone_and_the_thread_lives_on() {
        // No queue: an admission the panic leaked would refuse the next job.
        let heavy = HeavyWork::new(1, 0).unwrap();
        let failed = heavy.run(|| -> u32 { panic!("a job that panics") }).await;
        assert_eq!(failed.unwrap_err().code(), ErrorCode::InternalError);
        assert_eq!(heavy.run(|| 7).await.unwrap(), 7, "the one thread still works");
    }

    #[tokio::test]
    async fn a_full_queue_answers_at_once() {
        let heavy = HeavyWork::new(2, 0).unwrap();
        // With no queue, as many jobs as threads are still admitted at once.
        let (a, b) = tokio::join!(heavy.run(|| 1), heavy.run(|| 2));
        assert_eq!((a.unwrap(), b.unwrap()), (1, 2));
        let held = heavy.hold_all().await.unwrap();
        let busy = heavy.run(|| 3).await.unwrap_err();
        assert_eq!(busy.code(), ErrorCode::ServiceUnavailable);
        assert_eq!(heavy.waiting(), 0);
        drop(held);
        // The held jobs end and uncount themselves as they finish.
        let mut ran = None;
        for _ in 0..200 {
            if let Ok(value) = heavy.run(|| 4).await {
                ran = Some(value);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(ran, Some(4));
    }
}
