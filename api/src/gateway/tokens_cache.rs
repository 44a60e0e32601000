//! Verified session-token claims, cached by the SHA-256 of the token until the token expires, so a
//! signature is checked once per token rather than once per request.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use sha2::{Digest, Sha256};

use crate::tokens::{Claims, KeyRing, LEEWAY_SECS, TokenError, TokenKind};

/// The cache. Bounded: past `capacity` entries it drops the expired ones, and if that is not enough, all.
#[derive(Debug)]
pub struct ClaimsCache {
    entries: DashMap<[u8; 32], Arc<Claims>>,
    capacity: usize,
}

impl ClaimsCache {
    /// A cache of at most `capacity` tokens.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: DashMap::new(),
            capacity,
        }
    }

    /// The claims of a valid session token: from the cache, or verified and cached.
    pub fn verify(&self, keys: &KeyRing, token: &str, now: DateTime<Utc>) -> Result<Arc<Claims>, TokenError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = self.entries.get(&digest).map(|c| c.clone()) {
            if claims.exp <= now.timestamp() - LEEWAY_SECS {
                self.entries.remove(&digest);
                return Err(TokenError::Expired);
            }
            return Ok(claims);
        }
        let claims = Arc::new(keys.verify(token, TokenKind::Session, now)?);
        if self.entries.len() >= self.capacity {
            self.evict_expired(now);
            if self.entries.len() >= self.capacity {
                self.entries.clear();
            }
        }
        self.entries.insert(digest, claims.clone());
        Ok(claims)
    }

    /// Drops expired tokens.
    pub fn evict_expired(&self, now: DateTime<Utc>) {
        let cutoff = now.timestamp() - LEEWAY_SECS;
        self.entries.retain(|_, claims| claims.exp > cutoff);
    }

    /// Forgets every cached token (keys changed).
    pub fn clear(&self) {
        self.entries.clear();
    }

    /// Number of cached tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
