//! Per-session and per-client rate limits (governor, keyed), and the IETF RateLimit header fields
//! (draft-ietf-httpapi-ratelimit-headers-10).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::HeaderValue;
use foldhash::fast::RandomState;
use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::settings::Settings;

/// Keyed by session or client id (from verified tokens), hashed with foldhash rather than SipHash.
type Keyed = RateLimiter<
    Arc<str>,
    DefaultKeyedStateStore<Arc<str>, RandomState>,
    DefaultClock,
    StateInformationMiddleware,
>;

/// One policy: a keyed limiter and its configured burst.
pub struct Policy {
    name: &'static str,
    burst: u32,
    limiter: Keyed,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("burst", &self.burst)
            .finish()
    }
}

/// What one policy said about a request.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    /// The policy's name.
    pub policy: &'static str,
    /// Its burst (quota).
    pub quota: u32,
    /// Requests left now.
    pub remaining: u32,
    /// Seconds until one more request is allowed: 0 while some remain, else at least 1.
    pub reset_secs: u64,
    /// False when the request is refused.
    pub allowed: bool,
}

impl Policy {
    fn new(name: &'static str, per_second: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst_nz = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let limiter = RateLimiter::dashmap_with_hasher(
            Quota::per_second(rate).allow_burst(burst_nz),
            RandomState::default(),
        )
        .with_middleware::<StateInformationMiddleware>();
        Self {
            name,
            burst: burst.max(1),
            limiter,
        }
    }

    fn check(&self, key: &Arc<str>) -> Verdict {
        match self.limiter.check_key(key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                // The last request of a burst: the next is allowed once one cell is replenished.
                let reset_secs = if remaining == 0 {
                    ceil_secs(snapshot.quota().replenish_interval())
                } else {
                    0
                };
                Verdict {
                    policy: self.name,
                    quota: self.burst,
                    remaining,
                    reset_secs,
                    allowed: true,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Verdict {
                    policy: self.name,
                    quota: self.burst,
                    remaining: 0,
                    reset_secs: ceil_secs(wait),
                    allowed: false,
                }
            }
        }
    }

    fn untouched(&self) -> Verdict {
        Verdict {
            policy: self.name,
            quota: self.burst,
            remaining: self.burst,
            reset_secs: 0,
            allowed: true,
        }
    }
}

fn ceil_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// The gateway's two policies, and the GST System dialect's authenticate calls per GSP client.
#[derive(Debug)]
pub struct Limits {
    session: Policy,
    client: Policy,
    authenticate: Policy,
    policy_header: HeaderValue,
}

impl Limits {
    /// Builds the limiters from the settings.
    pub fn new(settings: &Settings) -> Self {
        let session = Policy::new(
            "session",
            settings.session_rate_per_second,
            settings.session_burst,
        );
        let client = Policy::new("client", settings.client_rate_per_second, settings.client_burst);
        let authenticate = Policy::new(
            "authenticate",
            settings.gstn_authenticate_rate_per_second,
            settings.gstn_authenticate_burst,
        );
        let policy_header = HeaderValue::from_str(&format!(
            "\"session\";q={};w=1, \"client\";q={};w=1",
            session.burst, client.burst
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(""));
        Self {
            session,
            client,
            authenticate,
            policy_header,
        }
    }

    /// Counts a GST System authenticate call of `client_id` (each costs an RSA decryption or a write,
    /// so they are limited apart from, and well below, data calls).
    pub fn check_authenticate(&self, client_id: &Arc<str>) -> Verdict {
        self.authenticate.check(client_id)
    }

    /// Counts a request of `session_id` by `client_id`; the verdict nearest to exhaustion.
    pub fn check(&self, session_id: &Arc<str>, client_id: &Arc<str>) -> Verdict {
        let session = self.session.check(session_id);
        if !session.allowed {
            return session;
        }
        let client = self.client.check(client_id);
        if !client.allowed {
            return client;
        }
        // Nearest to exhaustion: the smaller share of its quota left.
        if u64::from(client.remaining) * u64::from(session.quota)
            < u64::from(session.remaining) * u64::from(client.quota)
        {
            client
        } else {
            session
        }
    }

    /// The verdict reported for a request refused before it was counted.
    pub fn uncounted(&self) -> Verdict {
        self.session.untouched()
    }

    /// `RateLimit-Policy` value (built once; cloning it shares the bytes).
    pub fn policy_header(&self) -> HeaderValue {
        self.policy_header.clone()
    }

    /// Forgets keys that have been idle long enough to be back at full burst (bounds memory).
    pub fn retain_recent(&self) {
        for policy in [&self.session, &self.client, &self.authenticate] {
            policy.limiter.retain_recent();
            policy.limiter.shrink_to_fit();
        }
    }

    /// Keys currently tracked.
    pub fn tracked(&self) -> usize {
        self.session.limiter.len() + self.client.limiter.len() + self.authenticate.limiter.len()
    }
}

impl Verdict {
    /// `RateLimit` value as a header value, written without a formatter (it is on every gateway answer).
    pub fn header_value(&self) -> HeaderValue {
        let (mut remaining, mut reset) = (itoa::Buffer::new(), itoa::Buffer::new());
        let (remaining, reset) = (remaining.format(self.remaining), reset.format(self.reset_secs));
        // Exactly as long as its capacity: `Bytes` then takes the vector as it is, without a second
        // allocation for a shared header.
        let mut text = Vec::with_capacity(self.policy.len() + remaining.len() + reset.len() + 8);
        text.push(b'"');
        text.extend_from_slice(self.policy.as_bytes());
        text.extend_from_slice(b"\";r=");
        text.extend_from_slice(remaining.as_bytes());
        text.extend_from_slice(b";t=");
        text.extend_from_slice(reset.as_bytes());
        debug_assert_eq!(text.len(), text.capacity());
        HeaderValue::from_maybe_shared(actix_web::web::Bytes::from(text))
            .unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}
