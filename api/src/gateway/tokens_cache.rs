//! Verified session-token claims, cached by the SHA-256 of the token until the token expires, so a
//! signature is checked once per token rather than once per request.

use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use sha2::{Digest, Sha256};

use crate::tokens::{Claims, KeyRing, LEEWAY_SECS, TokenError, TokenKind};

/// The cache. Bounded: past `capacity` entries it drops the expired ones, and if that is not enough, all.
#[derive(Debug)]
pub struct ClaimsCache {
    entries: DashMap<[u8; 32], Arc<Claims>, BuildHasherDefault<DigestHasher>>,
    capacity: usize,
}

impl ClaimsCache {
    /// A cache of at most `capacity` tokens.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: DashMap::default(),
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

/// Hashes a key that is a SHA-256 digest by taking eight of its bytes: they are as evenly spread as any
/// hash of them would be, and only verified tokens are ever inserted, so no caller can crowd one bucket.
#[derive(Debug, Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its length (a `usize`, through `write_usize`) and then its bytes.
        if let Some(first) = bytes.first_chunk::<8>() {
            self.0 = u64::from_ne_bytes(*first);
        }
    }

    fn write_usize(&mut self, _length: usize) {}

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn a_digest_hashes_as_its_first_eight_bytes() {
        let build = BuildHasherDefault::<DigestHasher>::default();
        let digest: [u8; 32] = Sha256::digest(b"a token").into();
        let first = u64::from_ne_bytes(digest[..8].try_into().unwrap());
        assert_eq!(build.hash_one(digest), first);
        let other: [u8; 32] = Sha256::digest(b"another token").into();
        assert_ne!(build.hash_one(other), first);
    }
}
