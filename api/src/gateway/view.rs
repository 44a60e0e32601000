//! The in-memory view of sessions and access windows that the enforcement middleware reads.
//!
//! Entries are loaded from the database on first use and then served from memory. This instance's own
//! writes update the view before their response is sent; other instances' writes arrive through the
//! change feed (`feed.rs`). A load that raced with an invalidation is not cached (the generation check),
//! so a stale "active" can never be stored after a revocation.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use gsp_gateway_domain::{ApiAccess, SessionState};
use gsp_gateway_storage::repo::{access, sessions};
use gsp_gateway_storage::{Db, StorageError, to_db, write_tx};

use crate::services::gsp::Registration;

/// What the middleware needs to know of a session.
#[derive(Debug)]
pub struct SessionEntry {
    /// The session's id (the rate limiter's key, shared rather than copied per request).
    pub id: Arc<str>,
    /// The taxpayer it acts for.
    pub gstin: Arc<str>,
    /// The GSP client holding it.
    pub client_id: Arc<str>,
    /// Expiry and revocation.
    pub state: SessionState,
    last_used_minute: AtomicI64,
}

/// The view.
#[derive(Debug, Default)]
pub struct GatewayView {
    // Read on every gateway call, by keys from verified tokens and the database: hashed with foldhash
    // rather than SipHash.
    sessions: DashMap<String, Arc<SessionEntry>, foldhash::fast::RandomState>,
    access: DashMap<Arc<str>, ApiAccess, foldhash::fast::RandomState>,
    generation: AtomicU64,
    feed_position: AtomicI64,
    touched: Mutex<HashSet<String>>,
    registrations: DashMap<Arc<str>, Arc<CachedRegistration>>,
    dialect_tokens: DashMap<[u8; 32], Arc<DialectToken>>,
    clients: DashMap<String, Arc<CachedClient>>,
    sandbox_references: DashMap<String, Arc<SandboxReference>>,
}

/// A GSP client's stored credentials, cached for the dialect's per-call client check.
#[derive(Debug)]
pub struct CachedClient {
    /// The client id.
    pub client_id: String,
    /// SHA-256 of the secret (decoded from its stored hex; `None` if that is corrupt, which refuses
    /// every secret).
    pub secret_digest: Option<[u8; 32]>,
    /// Display name.
    pub name: String,
    /// Disabled clients are refused.
    pub enabled: bool,
    /// How the dialect writes `status_cd` for this client (`None`: the server's setting).
    pub numeric_status_cd: Option<bool>,
}

/// A return saved in the dialect sandbox, for RETSTATUS.
#[derive(Debug)]
pub struct SandboxReference {
    /// The taxpayer.
    pub gstin: String,
    /// The tax period (MMYYYY).
    pub ret_period: String,
    /// The saving action (`RETSAVE`).
    pub action: String,
}

/// A taxpayer's registration details, with their JSON already written (the sandbox's hot answer).
#[derive(Debug)]
pub struct CachedRegistration {
    /// The details.
    pub registration: Registration,
    /// Their JSON.
    pub json: actix_web::web::Bytes,
}

/// What a GST System dialect `auth-token` stands for.
#[derive(Debug)]
pub struct DialectToken {
    /// The session.
    pub session_id: String,
    /// The taxpayer's GSTIN.
    pub gstin: String,
    /// The taxpayer's portal username (the `username` header of every data call).
    pub username: String,
    /// The GSP client holding it.
    pub client_id: String,
    /// When this token expires (refreshable until the session ends).
    pub expires_at: DateTime<Utc>,
    /// The session key, which encrypts payloads (`None` if the stored one is corrupt, which refuses
    /// every call). Only the decoded key is kept, and the app key not at all: less key material in
    /// memory.
    pub sek_key: Option<crate::gstn::AesKey>,
}

impl GatewayView {
    /// An empty view.
    pub fn new() -> Self {
        Self::default()
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The taxpayer switched access on or off: the new setting holds from now, and the taxpayer's
    /// sessions are reloaded (their end moved, or they were revoked).
    pub fn access_changed(&self, gstin: &str, access: ApiAccess, revoked: &[String]) {
        self.bump();
        for id in revoked {
            self.sessions.remove(id);
        }
        self.sessions.retain(|_, entry| &*entry.gstin != gstin);
        self.access.insert(Arc::from(gstin), access);
    }

    /// A session was revoked (by the taxpayer, logout or refresh-token reuse).
    pub fn session_revoked(&self, session_id: &str) {
        self.bump();
        self.sessions.remove(session_id);
        self.forget_dialect_tokens(session_id);
    }

    /// A GSP client was disabled, re-enabled or given a new secret: its cached credentials go, and so
    /// do its sessions and dialect tokens, to be reloaded (a disabled client's were revoked).
    pub fn client_changed(&self, client_id: &str) {
        self.bump();
        self.clients.remove(client_id);
        self.sessions.retain(|_, entry| &*entry.client_id != client_id);
        self.dialect_tokens
            .retain(|_, token| token.client_id != client_id);
    }

    /// Forgets the dialect tokens of a session (its token was refreshed or it ended).
    pub fn forget_dialect_tokens(&self, session_id: &str) {
        self.dialect_tokens
            .retain(|_, token| token.session_id != session_id);
    }

    /// The dialect token with this SHA-256, from memory or (once) from the database.
    pub async fn dialect_token(
        &self,
        db: &Db,
        token_hash: &[u8; 32],
    ) -> Result<Option<Arc<DialectToken>>, StorageError> {
        if let Some(found) = self.dialect_tokens.get(token_hash).map(|t| t.clone()) {
            return Ok(Some(found));
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let hash = gsp_gateway_domain::secret::to_hex(token_hash);
        let Some(owner) = db
            .run(move |conn| sessions::find_by_gstn_token(conn, &hash))
            .await?
        else {
            return Ok(None);
        };
        let session = owner.session;
        let (Some(sek), Some(_), Some(expires_at)) = (
            session.gstn_sek,
            session.gstn_app_key,
            session.gstn_token_expires_at,
        ) else {
            return Ok(None);
        };
        let sek_key = crate::gstn::crypto::b64_decode(&sek)
            .ok()
            .and_then(|bytes| crate::gstn::AesKey::try_from(bytes.as_slice()).ok());
        let token = Arc::new(DialectToken {
            sek_key,
            session_id: session.id,
            gstin: owner.gstin,
            username: owner.username,
            client_id: session.gsp_client_id,
            expires_at: expires_at.and_utc(),
        });
        if self.generation.load(Ordering::SeqCst) == generation {
            if self.dialect_tokens.len() > 200_000 {
                self.dialect_tokens.clear();
            }
            self.dialect_tokens.insert(*token_hash, token.clone());
        }
        Ok(Some(token))
    }

    /// Forgets everything about a taxpayer (another instance changed it).
    pub fn forget_taxpayer(&self, gstin: &str) {
        self.bump();
        self.access.remove(gstin);
        self.sessions.retain(|_, entry| &*entry.gstin != gstin);
        self.dialect_tokens.retain(|_, token| token.gstin != gstin);
    }

    /// The session and its taxpayer's access, from memory or (once) from the database.
    pub async fn lookup(
        &self,
        db: &Db,
        session_id: &str,
    ) -> Result<Option<(Arc<SessionEntry>, ApiAccess)>, StorageError> {
        if let Some(entry) = self.sessions.get(session_id).map(|e| e.clone())
            && let Some(access) = self.access.get(&*entry.gstin).map(|a| *a)
        {
            return Ok(Some((entry, access)));
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let id = session_id.to_owned();
        let loaded = db
            .run(move |conn| {
                let Some(owner) = sessions::find_with_owner(conn, &id)? else {
                    return Ok(None);
                };
                let access = access::get(conn, &owner.session.taxpayer_id)?;
                Ok(Some((owner, access)))
            })
            .await?;
        let Some((owner, access)) = loaded else {
            return Ok(None);
        };
        let entry = Arc::new(SessionEntry {
            id: Arc::from(session_id),
            gstin: Arc::from(owner.gstin.as_str()),
            client_id: Arc::from(owner.session.gsp_client_id.as_str()),
            state: owner.session.state(),
            last_used_minute: AtomicI64::new(owner.session.last_used_at.and_utc().timestamp() / 60),
        });
        if self.generation.load(Ordering::SeqCst) == generation {
            self.access.insert(entry.gstin.clone(), access);
            self.sessions.insert(session_id.to_owned(), entry.clone());
        }
        Ok(Some((entry, access)))
    }

    /// Notes that the session was used at `now`; the database hears of it at most once a minute.
    pub fn mark_used(&self, session_id: &str, entry: &SessionEntry, now: DateTime<Utc>) {
        let minute = now.timestamp() / 60;
        if entry.last_used_minute.swap(minute, Ordering::Relaxed) != minute
            && let Ok(mut touched) = self.touched.lock()
        {
            touched.insert(session_id.to_owned());
        }
    }

    /// Writes the pending `last_used_at` updates.
    pub async fn flush_usage(&self, db: &Db, now: DateTime<Utc>) -> Result<usize, StorageError> {
        let ids: Vec<String> = match self.touched.lock() {
            Ok(mut touched) => touched.drain().collect(),
            Err(_) => return Ok(0),
        };
        if ids.is_empty() {
            return Ok(0);
        }
        let n = ids.len();
        let minute = now.timestamp() - now.timestamp() % 60;
        let at = DateTime::from_timestamp(minute, 0).unwrap_or(now);
        // A write transaction like any other: on PostgreSQL its row locks would otherwise interleave
        // with a revocation's (which locks the same sessions in another order) and could deadlock it.
        db.run(move |conn| write_tx(conn, |conn| sessions::touch(conn, &ids, to_db(at))))
            .await?;
        Ok(n)
    }

    /// Drops entries of sessions that ended before `cutoff`, so memory stays bounded.
    pub fn evict_ended(&self, cutoff: DateTime<Utc>) {
        self.sessions
            .retain(|_, entry| entry.state.revoked_at.is_none() && entry.state.expires_at > cutoff);
        let live: HashSet<Arc<str>> = self.sessions.iter().map(|e| e.gstin.clone()).collect();
        self.access.retain(|gstin, _| live.contains(gstin));
    }

    /// The cached registration details of a taxpayer (the sandbox's answer).
    pub fn registration(&self, gstin: &str) -> Option<Arc<CachedRegistration>> {
        self.registrations.get(gstin).map(|r| r.clone())
    }

    /// Caches registration details (they change only by re-provisioning).
    pub fn remember_registration(&self, gstin: Arc<str>, registration: Arc<CachedRegistration>) {
        if self.registrations.len() > 100_000 {
            self.registrations.clear();
        }
        self.registrations.insert(gstin, registration);
    }

    /// A GSP client's credentials, from memory or (once) from the database.
    pub async fn client(&self, db: &Db, client_id: &str) -> Result<Option<Arc<CachedClient>>, StorageError> {
        if let Some(found) = self.clients.get(client_id).map(|c| c.clone()) {
            return Ok(Some(found));
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let id = client_id.to_owned();
        let Some(row) = db
            .run(move |conn| gsp_gateway_storage::repo::gsp_clients::find(conn, &id))
            .await?
        else {
            return Ok(None);
        };
        let mut digest = [0u8; 32];
        let decoded = hex::decode_to_slice(&row.secret_hash, &mut digest).is_ok();
        let cached = Arc::new(CachedClient {
            client_id: row.client_id,
            secret_digest: decoded.then_some(digest),
            name: row.name,
            enabled: row.enabled,
            numeric_status_cd: row.gstn_numeric_status_cd,
        });
        if self.generation.load(Ordering::SeqCst) == generation {
            if self.clients.len() > 10_000 {
                self.clients.clear();
            }
            self.clients.insert(client_id.to_owned(), cached.clone());
        }
        Ok(Some(cached))
    }

    /// Remembers a return saved in the dialect sandbox.
    pub fn remember_sandbox_reference(&self, reference_id: String, reference: SandboxReference) {
        if self.sandbox_references.len() > 100_000 {
            self.sandbox_references.clear();
        }
        self.sandbox_references.insert(reference_id, Arc::new(reference));
    }

    /// A return saved in the dialect sandbox.
    pub fn sandbox_reference(&self, reference_id: &str) -> Option<Arc<SandboxReference>> {
        self.sandbox_references.get(reference_id).map(|r| r.clone())
    }

    /// Records how far the change feed has been applied.
    pub fn set_feed_position(&self, event_id: i64) {
        self.feed_position.store(event_id, Ordering::SeqCst);
    }

    /// The id of the last audit event the change feed applied.
    pub fn feed_position(&self) -> i64 {
        self.feed_position.load(Ordering::SeqCst)
    }

    /// Number of cached sessions.
    pub fn cached_sessions(&self) -> usize {
        self.sessions.len()
    }
}
