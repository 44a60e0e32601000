//! Tokens the gateway issues: EdDSA (Ed25519) JWTs with a `kid`, verified per RFC 8725.
//!
//! Session tokens (for GSPs) and taxpayer tokens share the key ring but never each other's
//! `aud` and `typ`, so one kind is never accepted where the other is required. Expiry is checked
//! against the gateway's [`Clock`], not the system's, so tests can move time.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, TimeDelta, Utc};
use ed25519_dalek::SigningKey;
use gsp_gateway_storage::repo::keys::{self, KeyRow};
use gsp_gateway_storage::{DbConn, StorageError, from_db, to_db};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The purpose of JWT signing keys in `signing_keys`.
pub const JWT_PURPOSE: &str = "jwt";
/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: i64 = 10;
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Which kind of token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A GSP's session token (acts for a taxpayer under `/v1/gst/`).
    Session,
    /// A taxpayer's own token (Manage API Access).
    Taxpayer,
}

impl TokenKind {
    /// The `aud` claim.
    pub fn audience(self) -> &'static str {
        match self {
            Self::Session => "gsp-gateway:gst-api",
            Self::Taxpayer => "gsp-gateway:taxpayer",
        }
    }

    /// The `typ` claim.
    pub fn typ(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Taxpayer => "taxpayer",
        }
    }
}

/// The claims of every token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer (configured).
    pub iss: String,
    /// Audience: which API accepts it.
    pub aud: String,
    /// Kind of token.
    pub typ: String,
    /// Subject: the taxpayer's GSTIN.
    pub sub: String,
    /// Session id (session tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// GSP client id (session tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cid: Option<String>,
    /// The password it was issued under (taxpayer tokens): a tag of the stored hash, so changing the
    /// password ends the token. See [`password_tag`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pwd: Option<String>,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expires at.
    pub exp: i64,
    /// Unique token id.
    pub jti: String,
}

/// The `pwd` claim of a taxpayer token: 16 hex characters of the SHA-256 of the stored password hash.
/// Every password change stores a new hash (a fresh salt), so the tag changes with it; it says nothing
/// about the password.
pub fn password_tag(password_hash: &str) -> String {
    let mut tag = gsp_gateway_domain::secret::sha256_hex(password_hash);
    tag.truncate(16);
    tag
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Malformed, forged, of another kind, or signed by a key we do not hold.
    Invalid,
    /// Past its `exp`.
    Expired,
}

struct Key {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    x: String,
    retired: bool,
}

#[derive(Default)]
struct KeySet {
    active: Option<Arc<Key>>,
    by_kid: HashMap<String, Arc<Key>>,
    published: Vec<Arc<Key>>,
}

/// The gateway's signing keys: the active one signs, every published one verifies.
pub struct KeyRing {
    issuer: String,
    set: RwLock<Arc<KeySet>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// A public key as a JWK.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Jwk {
    /// `OKP`.
    pub kty: &'static str,
    /// `Ed25519`.
    pub crv: &'static str,
    /// The public key, Base64url.
    pub x: String,
    /// Key id.
    pub kid: String,
    /// `EdDSA`.
    pub alg: &'static str,
    /// `sig`.
    #[serde(rename = "use")]
    pub use_: &'static str,
}

/// A new Ed25519 key as a storable row.
pub fn new_key_row(now: DateTime<Utc>) -> KeyRow {
    let signing = SigningKey::generate(&mut rand::rngs::OsRng);
    let mut der = PKCS8_ED25519_PREFIX.to_vec();
    der.extend_from_slice(signing.as_bytes());
    KeyRow {
        kid: format!("ed-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        purpose: JWT_PURPOSE.into(),
        algorithm: "EdDSA".into(),
        private_key: STANDARD.encode(der),
        public_key: URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes()),
        created_at: to_db(now),
        retired_at: None,
        publish_until: None,
    }
}

/// Makes sure an active JWT key exists (first start); returns the live keys.
pub fn ensure_active_key(conn: &mut DbConn, now: DateTime<Utc>) -> Result<Vec<KeyRow>, StorageError> {
    gsp_gateway_storage::write_tx(conn, |conn| {
        let live = keys::live(conn, JWT_PURPOSE, to_db(now))?;
        if live.iter().any(|k| k.retired_at.is_none()) {
            return Ok(live);
        }
        keys::insert(conn, &new_key_row(now))?;
        keys::live(conn, JWT_PURPOSE, to_db(now))
    })
}

impl KeyRing {
    /// An empty ring for `issuer`; load it with [`KeyRing::replace`].
    pub fn new(issuer: String) -> Self {
        Self {
            issuer,
            set: RwLock::new(Arc::new(KeySet::default())),
        }
    }

    /// Replaces the keys with `rows` (newest first); rows that cannot be decoded are skipped and logged.
    pub fn replace(&self, rows: &[KeyRow]) {
        let mut set = KeySet::default();
        for row in rows {
            let Some(key) = decode_row(row) else {
                tracing::error!(kid = %row.kid, "unusable signing key skipped");
                continue;
            };
            let key = Arc::new(key);
            if !key.retired && set.active.is_none() {
                set.active = Some(key.clone());
            }
            set.by_kid.insert(key.kid.clone(), key.clone());
            set.published.push(key);
        }
        if let Ok(mut guard) = self.set.write() {
            *guard = Arc::new(set);
        }
    }

    fn snapshot(&self) -> Arc<KeySet> {
        self.set.read().map(|g| g.clone()).unwrap_or_default()
    }

    /// True when `kid` is one of ours.
    pub fn knows(&self, kid: &str) -> bool {
        self.snapshot().by_kid.contains_key(kid)
    }

    /// The `kid` of the key that signs now.
    pub fn active_kid(&self) -> Option<String> {
        self.snapshot().active.as_ref().map(|k| k.kid.clone())
    }

    /// The published public keys, as JWKs.
    pub fn jwks(&self) -> Vec<Jwk> {
        self.snapshot()
            .published
            .iter()
            .map(|k| Jwk {
                kty: "OKP",
                crv: "Ed25519",
                x: k.x.clone(),
                kid: k.kid.clone(),
                alg: "EdDSA",
                use_: "sig",
            })
            .collect()
    }

    /// Signs a token of `kind` for `sub`, valid from `now` until `expires_at`.
    pub fn issue(
        &self,
        kind: TokenKind,
        sub: &str,
        sid: Option<&str>,
        cid: Option<&str>,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(String, Claims), String> {
        self.sign(Claims {
            sid: sid.map(str::to_owned),
            cid: cid.map(str::to_owned),
            ..self.claims(kind, sub, now, expires_at)
        })
    }

    /// Signs a taxpayer token for `gstin`, bound to the password whose stored hash is `password_hash`.
    pub fn issue_taxpayer(
        &self,
        gstin: &str,
        password_hash: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(String, Claims), String> {
        self.sign(Claims {
            pwd: Some(password_tag(password_hash)),
            ..self.claims(TokenKind::Taxpayer, gstin, now, expires_at)
        })
    }

    fn claims(&self, kind: TokenKind, sub: &str, now: DateTime<Utc>, expires_at: DateTime<Utc>) -> Claims {
        Claims {
            iss: self.issuer.clone(),
            aud: kind.audience().into(),
            typ: kind.typ().into(),
            sub: sub.into(),
            sid: None,
            cid: None,
            pwd: None,
            iat: now.timestamp(),
            nbf: now.timestamp(),
            exp: expires_at.timestamp(),
            jti: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    fn sign(&self, claims: Claims) -> Result<(String, Claims), String> {
        let set = self.snapshot();
        let key = set.active.as_ref().ok_or("no active signing key")?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        header.typ = Some("JWT".into());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding).map_err(|e| e.to_string())?;
        Ok((token, claims))
    }

    /// Verifies a token of `kind` at `now`: signature by one of our keys chosen by `kid`, `alg` EdDSA
    /// only, `iss`, `aud`, `typ`, `exp` and `nbf` (with [`LEEWAY_SECS`]).
    pub fn verify(&self, token: &str, kind: TokenKind, now: DateTime<Utc>) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid);
        }
        let kid = header.kid.ok_or(TokenError::Invalid)?;
        let set = self.snapshot();
        let key = set.by_kid.get(&kid).ok_or(TokenError::Invalid)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_audience(&[kind.audience()]);
        validation.set_issuer(&[self.issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map_err(|_| TokenError::Invalid)?
            .claims;
        if claims.typ != kind.typ() {
            return Err(TokenError::Invalid);
        }
        if kind == TokenKind::Session && (claims.sid.is_none() || claims.cid.is_none()) {
            return Err(TokenError::Invalid);
        }
        let now = now.timestamp();
        if claims.nbf > now + LEEWAY_SECS {
            return Err(TokenError::Invalid);
        }
        if claims.exp <= now - LEEWAY_SECS {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

fn decode_row(row: &KeyRow) -> Option<Key> {
    if row.algorithm != "EdDSA" {
        return None;
    }
    let der = STANDARD.decode(&row.private_key).ok()?;
    let public = URL_SAFE_NO_PAD.decode(&row.public_key).ok()?;
    if public.len() != 32 {
        return None;
    }
    Some(Key {
        kid: row.kid.clone(),
        encoding: EncodingKey::from_ed_der(&der),
        decoding: DecodingKey::from_ed_der(&public),
        x: row.public_key.clone(),
        retired: row.retired_at.is_some(),
    })
}

/// Retires the active key (kept published for `keep_published`) and makes a new one active.
pub fn rotate(
    conn: &mut DbConn,
    now: DateTime<Utc>,
    keep_published: TimeDelta,
) -> Result<String, StorageError> {
    gsp_gateway_storage::write_tx(conn, |conn| {
        keys::retire_active(conn, JWT_PURPOSE, to_db(now), to_db(now + keep_published))?;
        let row = new_key_row(now);
        keys::insert(conn, &row)?;
        gsp_gateway_storage::repo::audit::append(
            conn,
            gsp_gateway_storage::repo::audit::NewAuditEvent {
                actor: "operator".into(),
                action: "keys.rotated".into(),
                detail: serde_json::json!({"kid": row.kid, "retired_published_until": from_db(to_db(now + keep_published))}),
                ..Default::default()
            },
            now,
        )?;
        Ok(row.kid)
    })
}

/// A key ring holding one new key (for tests here and in the claims cache).
#[cfg(test)]
pub(crate) fn test_ring(now: DateTime<Utc>) -> KeyRing {
    let ring = KeyRing::new("gsp-gateway".into());
    ring.replace(&[new_key_row(now)]);
    ring
}

#[cfg(test)]
mod tests {
    use super::test_ring as ring;
    use super::*;

    #[test]
    fn a_token_verifies_only_as_its_own_kind_and_until_it_expires() {
        let now = Utc::now();
        let ring = ring(now);
        let (token, claims) = ring
            .issue(
                TokenKind::Session,
                "24AAUPV7468F1ZW",
                Some("s1"),
                Some("c1"),
                now,
                now + TimeDelta::hours(6),
            )
            .unwrap();
        assert_eq!(ring.verify(&token, TokenKind::Session, now), Ok(claims));
        assert_eq!(
            ring.verify(&token, TokenKind::Taxpayer, now),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            ring.verify(&token, TokenKind::Session, now + TimeDelta::hours(7)),
            Err(TokenError::Expired)
        );
        assert_eq!(
            ring.verify(&token, TokenKind::Session, now - TimeDelta::hours(1)),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn another_rings_token_is_invalid() {
        let now = Utc::now();
        let (token, _) = ring(now)
            .issue(
                TokenKind::Taxpayer,
                "x",
                None,
                None,
                now,
                now + TimeDelta::hours(1),
            )
            .unwrap();
        assert_eq!(
            ring(now).verify(&token, TokenKind::Taxpayer, now),
            Err(TokenError::Invalid)
        );
    }
}
