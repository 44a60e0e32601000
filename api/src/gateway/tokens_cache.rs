//! Verified session-token claims, cached by the SHA-256 of the token until the token expires, so a
//! signature is checked once per token rather than once per request; and, in front of that cache, the
//! last token of each client connection, which a GSP sends again on every call of a keep-alive
//! connection: such a call costs one comparison of the token's bytes, not a hash and a shared map.

use std::cell::RefCell;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use sha2::{Digest, Sha256};

use crate::tokens::{Claims, KeyRing, LEEWAY_SECS, TokenError, TokenKind};

/// The cache. Bounded: past `capacity` entries it drops the expired ones, and if that is not enough, all.
#[derive(Debug)]
pub struct ClaimsCache {
    entries: DashMap<[u8; 32], Arc<Claims>, BuildHasherDefault<DigestHasher>>,
    capacity: usize,
    /// Counts [`ClaimsCache::clear`]s: a connection's token verified before the last one is checked
    /// again.
    generation: AtomicU64,
}

impl ClaimsCache {
    /// A cache of at most `capacity` tokens.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: DashMap::default(),
            capacity,
            generation: AtomicU64::new(0),
        }
    }

    /// The claims of a valid session token: from the cache, or verified and cached.
    pub fn verify(&self, keys: &KeyRing, token: &str, now: DateTime<Utc>) -> Result<Arc<Claims>, TokenError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = self.entries.get(&digest).map(|c| c.clone()) {
            if expired(&claims, now) {
                self.entries.remove(&digest);
                return Err(TokenError::Expired);
            }
            return Ok(claims);
        }
        // Keys replaced while this token was checked against the old ones (`clear` bumps the
        // generation before it empties the map): its entry is not kept, or it would outlive them.
        let generation = self.generation.load(Ordering::SeqCst);
        let claims = Arc::new(keys.verify(token, TokenKind::Session, now)?);
        if self.entries.len() >= self.capacity {
            self.evict_expired(now);
            if self.entries.len() >= self.capacity {
                self.entries.clear();
            }
        }
        self.entries.insert(digest, claims.clone());
        if self.generation.load(Ordering::SeqCst) != generation {
            self.entries.remove(&digest);
        }
        Ok(claims)
    }

    /// Drops expired tokens.
    pub fn evict_expired(&self, now: DateTime<Utc>) {
        let cutoff = now.timestamp() - LEEWAY_SECS;
        self.entries.retain(|_, claims| claims.exp > cutoff);
    }

    /// Forgets every cached token, the connections' included (keys changed).
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
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

fn expired(claims: &Claims, now: DateTime<Utc>) -> bool {
    claims.exp <= now.timestamp() - LEEWAY_SECS
}

/// The last session token verified on one client connection, with its claims (connection data, set
/// up by `HttpServer::on_connect`). Calls on one connection are served one at a time.
#[derive(Default)]
pub struct ConnectionToken(RefCell<Option<Remembered>>);

impl std::fmt::Debug for ConnectionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.debug_struct("ConnectionToken")
            .field("remembers", &self.0.borrow().is_some())
            .finish()
    }
}

struct Remembered {
    token: Box<str>,
    claims: Arc<Claims>,
    generation: u64,
}

impl ConnectionToken {
    /// The claims of the session token `token` (the bytes of the `Authorization` field after
    /// `Bearer`): this connection's last token again, compared as bytes, or through `cache`. `None`
    /// when the bytes are not text, which no token is (checked only for a token not remembered).
    pub fn verify(
        &self,
        cache: &ClaimsCache,
        keys: &KeyRing,
        token: &[u8],
        now: DateTime<Utc>,
    ) -> Option<Result<Arc<Claims>, TokenError>> {
        let generation = cache.generation.load(Ordering::SeqCst);
        if let Some(last) = &*self.0.borrow()
            && same_token(last.token.as_bytes(), token)
            && last.generation == generation
            && !expired(&last.claims, now)
        {
            return Some(Ok(last.claims.clone()));
        }
        let token = std::str::from_utf8(token).ok()?;
        let verified = cache.verify(keys, token, now);
        if let Ok(claims) = &verified {
            *self.0.borrow_mut() = Some(Remembered {
                token: token.into(),
                claims: claims.clone(),
                generation,
            });
        }
        Some(verified)
    }
}

/// Whether two tokens are the same, in time that depends on their length only: the remembered token
/// may be another caller's, as a proxy in front carries many callers' calls on one connection. Word by
/// word (a byte-wise constant-time comparison of a 600-byte token costs more than the hash it saves).
fn same_token(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let ((a_words, a_rest), (b_words, b_rest)) = (a.as_chunks::<8>(), b.as_chunks::<8>());
    let mut difference = 0u64;
    for (x, y) in a_words.iter().zip(b_words) {
        difference |= u64::from_ne_bytes(*x) ^ u64::from_ne_bytes(*y);
    }
    for (x, y) in a_rest.iter().zip(b_rest) {
        difference |= u64::from(x ^ y);
    }
    std::hint::black_box(difference) == 0
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

    use chrono::TimeDelta;

    use super::*;
    use crate::tokens::{new_key_row, test_ring as ring};

    fn session_token(ring: &KeyRing, sid: &str, now: DateTime<Utc>) -> String {
        ring.issue(
            TokenKind::Session,
            "24AAUPV7468F1ZW",
            Some(sid),
            Some("c1"),
            now,
            now + TimeDelta::hours(6),
        )
        .unwrap()
        .0
    }

    /// Keys, a cache and a connection that has verified a token of session `s1`, and that token.
    fn remembering(now: DateTime<Utc>) -> (KeyRing, ClaimsCache, ConnectionToken, String, Arc<Claims>) {
        let (keys, cache, connection) = (ring(now), ClaimsCache::new(10), ConnectionToken::default());
        let token = session_token(&keys, "s1", now);
        let claims = connection
            .verify(&cache, &keys, token.as_bytes(), now)
            .unwrap()
            .unwrap();
        (keys, cache, connection, token, claims)
    }

    #[test]
    fn a_connection_remembers_its_token_until_it_expires() {
        let now = Utc::now();
        let (keys, cache, connection, token, claims) = remembering(now);
        cache.entries.clear();
        // Remembered by the connection: the shared cache is not asked again.
        assert_eq!(
            connection.verify(&cache, &keys, token.as_bytes(), now).unwrap(),
            Ok(claims.clone())
        );
        assert!(cache.is_empty());
        assert_eq!(
            connection
                .verify(&cache, &keys, token.as_bytes(), now + TimeDelta::hours(7))
                .unwrap(),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn bytes_that_are_not_text_are_no_token() {
        let now = Utc::now();
        let (keys, cache, connection, token, _) = remembering(now);
        let mut garbled = token.into_bytes();
        garbled[0] = 0xff;
        assert_eq!(connection.verify(&cache, &keys, &garbled, now), None);
    }

    #[test]
    fn another_token_on_the_connection_is_verified_afresh() {
        let now = Utc::now();
        let (keys, cache, connection, first, _) = remembering(now);
        let second = session_token(&keys, "s2", now);
        let claims = connection
            .verify(&cache, &keys, second.as_bytes(), now)
            .unwrap()
            .unwrap();
        assert_eq!(claims.sid.as_deref(), Some("s2"));
        // A forgery that keeps the first token's signature is refused, not taken for it.
        connection
            .verify(&cache, &keys, first.as_bytes(), now)
            .unwrap()
            .unwrap();
        let signature = first.rsplit_once('.').unwrap().1;
        let forged = format!("{}.{signature}", second.rsplit_once('.').unwrap().0);
        assert_eq!(
            connection.verify(&cache, &keys, forged.as_bytes(), now).unwrap(),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn a_token_remembered_before_the_keys_changed_is_checked_again() {
        let now = Utc::now();
        let (keys, cache, connection, token, _) = remembering(now);
        // The key that signed it is withdrawn (as `feed::reload_keys` does).
        keys.replace(&[new_key_row(now)]);
        cache.clear();
        assert_eq!(
            connection.verify(&cache, &keys, token.as_bytes(), now).unwrap(),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn tokens_are_the_same_only_byte_for_byte() {
        let token = b"eyJhbGciOiJFZERTQSJ9.eyJzaWQiOiJzMSJ9.c2lnbmF0dXJl";
        assert!(same_token(token, token));
        for at in [0, 7, 8, token.len() - 1] {
            let mut other = *token;
            other[at] ^= 1;
            assert!(!same_token(token, &other), "differs at {at}");
        }
        assert!(!same_token(token, &token[..token.len() - 1]));
        assert!(same_token(b"", b""));
    }

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
