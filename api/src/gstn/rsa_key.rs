//! The gateway's own RSA-2048 key, to which GSTN-dialect clients encrypt their `app_key`.
//!
//! # Why the `rsa` crate 0.10 (and what it does not promise)
//! The dialect fixes RSAES-PKCS1-v1_5 (gstn-dialect.md §3), and decrypting PKCS#1 v1.5 on a server
//! that answers strangers is the textbook padding-oracle target (Bleichenbacher 1998; its timing
//! variant, the 2023 "Marvin" attack). Two things must hold: the modular exponentiation must not
//! leak through timing, and the padding check's outcome must not be observable, neither in the
//! answer nor in the time taken.
//!
//! `rsa` 0.10.0 (2026-11-08) is the release that addresses both, per its changelog:
//! - modpow moved from `num-bigint-dig` to `crypto-bigint` (constant-time Montgomery
//!   exponentiation), with random blinding on every decryption (the `getrandom` default feature);
//! - PKCS#1 v1.5 decryption implements **implicit rejection** from draft-irtf-cfrg-rsa-guidance
//!   §7.2 (what OpenSSL 3.2+ does): invalid padding yields a deterministic pseudo-random message
//!   derived from the private key and the ciphertext instead of an error, selected in constant time,
//!   and tested against the draft's vectors. It returns an error only for public conditions
//!   (ciphertext length, a ciphertext not below the modulus, RNG failure).
//!
//! The alternatives were worse here: `rsa` 0.9 is RUSTSEC-2023-0071 (variable-time modpow, explicit
//! padding errors); Debian bookworm's OpenSSL is 3.0.19, which rejects bad padding explicitly
//! ("padding check failed") and refuses `rsa_pkcs1_implicit_rejection` (3.2+ only), so the `openssl`
//! crate would have meant hand-writing the depadding around `RSA_NO_PADDING`; `aws-lc-rs`'s
//! `Pkcs1PrivateDecryptingKey::decrypt` returns `Unspecified` on bad padding (explicit rejection,
//! the oracle crosses the API) and needs a C build of AWS-LC. `rsa` is pure Rust and builds offline.
//!
//! Limits, stated plainly:
//! - 0.10.0 is three weeks old. RUSTSEC-2023-0071 still listed no patched version in September
//!   2026 and upstream's padding tracking issue (RustCrypto/RSA#626) was open then; the crate's own
//!   `pkcs1v15` module doc still carries the old warning. `cargo audit` may keep flagging it until
//!   the advisory records 0.10. Watch both and upgrade promptly.
//! - Implicit rejection leaves the *length* of the (real or synthetic) plaintext public. The
//!   gateway needs exactly 32 bytes; a synthetic message is 32 bytes long for about 1 in 246
//!   ciphertexts, so a garbage block occasionally yields a garbage 32-byte key. That key then fails
//!   where the protocol authenticates it (the AES-encrypted OTP, the HMAC of data calls), which is
//!   exactly how implicit rejection is meant to be used.
//! - [`GstnKeys::decrypt_app_key`] always decrypts with every live key (the active one and any in
//!   their grace period) and keeps every 32-byte result as a candidate, so the time grows with the
//!   number of live keys and may show how many of them yielded 32 bytes (lengths are public under
//!   implicit rejection anyway) and which certificate the client used. During a grace period the
//!   synthetic-length coincidence above makes the *active* key yield a garbage candidate for about
//!   0.4% of blocks wrapped with the retired key, next to the real one; so the caller picks among
//!   the [`AppKeyCandidates`] by what the protocol authenticates: AUTHTOKEN the one under which
//!   the encrypted OTP decrypts to digits, LOGOUT the one equal to the session's stored key.
//! - Every failure, from bad Base64 to a wrong-length key, is the single
//!   [`CryptoError::AppKeyRejected`]: answer all of them with one code and one message.
//!
//! # The certificate
//! Clients load the key from an X.509 certificate (PEM or DER) and some refuse expired ones, so the
//! key is published as a self-signed certificate. Its validity is anchored to the key's creation
//! and re-issued every 335 days with a 365-day lifetime (backdated one day), so restarts and
//! several instances serve byte-identical certificates and at least 30 days always remain.
//!
//! Decryption costs about 3 ms per live key in a release build (here, 2 cores: medians of 2.90,
//! 2.92 and 2.92 ms for a valid 32-byte key, a valid 16-byte one and a garbage block; a sanity
//! check, not a Marvin-toolkit analysis). Call [`GstnKeys::decrypt_app_key`] off the async workers
//! (`state::blocking`).

use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use gsp_gateway_domain::OtpCode;
use gsp_gateway_storage::repo::audit::{self, NewAuditEvent};
use gsp_gateway_storage::repo::keys::{self, KeyRow};
use gsp_gateway_storage::{DbConn, StorageError, from_db, to_db, write_tx};
use rsa::PrivateKey;
use rsa::pkcs1v15::{Signature, SigningKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::der::{Encode, EncodePem};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use x509_cert::time::{Time, Validity};

use super::crypto::{self, AesKey, CryptoError};

/// The `purpose` of these keys in `signing_keys`.
pub const PURPOSE: &str = "gstn_rsa";
/// The `algorithm` recorded with them.
pub const ALGORITHM: &str = "RSA-2048";
/// Modulus size: clients expect a 256-byte block (344 Base64 characters).
pub const KEY_BITS: usize = 2048;
/// How long a rotated-out key still decrypts, since clients cache certificates.
pub const GRACE: TimeDelta = TimeDelta::hours(24);
/// The certificate's subject (RFC 4514; the CN names what it is for).
pub const CERTIFICATE_SUBJECT: &str = "CN=gsp-gateway GSTN dialect,O=gsp-gateway";
/// The audit action of a rotation (the change feed can reload on it).
pub const ROTATED_ACTION: &str = "gstn_key.rotated";

const CERT_LIFETIME_DAYS: i64 = 365;
const CERT_REISSUE_DAYS: i64 = 335;
const CERT_BACKDATE_DAYS: i64 = 1;

/// Why the GSTN key could not be made, loaded or published.
#[derive(Debug, thiserror::Error)]
pub enum GstnKeyError {
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Key generation or encoding failed.
    #[error("GSTN RSA key: {0}")]
    Key(String),
    /// The certificate could not be built.
    #[error("GSTN certificate: {0}")]
    Certificate(String),
    /// No stored key of purpose `gstn_rsa` is active and usable.
    #[error("no usable active GSTN RSA key")]
    NoActiveKey,
}

/// A new RSA-2048 key as a storable row: PKCS#8 PEM private key, SPKI PEM public key.
pub fn new_key_row(now: DateTime<Utc>) -> Result<KeyRow, GstnKeyError> {
    let key =
        PrivateKey::new(&mut getrandom::SysRng, KEY_BITS).map_err(|e| GstnKeyError::Key(e.to_string()))?;
    let private_pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| GstnKeyError::Key(e.to_string()))?;
    let public_pem = key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| GstnKeyError::Key(e.to_string()))?;
    Ok(KeyRow {
        kid: format!("gstn-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        purpose: PURPOSE.into(),
        algorithm: ALGORITHM.into(),
        private_key: private_pem.as_str().to_owned(),
        public_key: public_pem,
        created_at: to_db(now),
        retired_at: None,
        publish_until: None,
    })
}

/// The stored GSTN keys still usable at `now` (active, or retired within [`GRACE`]), newest first.
pub fn live_keys(conn: &mut DbConn, now: DateTime<Utc>) -> Result<Vec<KeyRow>, StorageError> {
    keys::live(conn, PURPOSE, to_db(now))
}

/// Makes sure an active GSTN key exists (first start generates one); returns the live keys.
pub fn ensure_gstn_key(conn: &mut DbConn, now: DateTime<Utc>) -> Result<Vec<KeyRow>, GstnKeyError> {
    let has_active = |rows: &[KeyRow]| rows.iter().any(|k| k.retired_at.is_none());
    let live = live_keys(conn, now)?;
    if has_active(&live) {
        return Ok(live);
    }
    // Generation takes a fraction of a second: do it before taking the write lock. Two instances
    // starting together may both generate; only the first insert wins.
    let row = new_key_row(now)?;
    Ok(write_tx(conn, |conn| {
        if !has_active(&live_keys(conn, now)?) {
            keys::insert(conn, &row)?;
        }
        live_keys(conn, now)
    })?)
}

/// Makes a new GSTN key active; the old one keeps decrypting for [`GRACE`]. Returns the new `kid`.
pub fn rotate_gstn_key(conn: &mut DbConn, now: DateTime<Utc>) -> Result<String, GstnKeyError> {
    let row = new_key_row(now)?;
    Ok(write_tx(conn, |conn| {
        keys::retire_active(conn, PURPOSE, to_db(now), to_db(now + GRACE))?;
        keys::insert(conn, &row)?;
        audit::append(
            conn,
            NewAuditEvent {
                actor: "operator".into(),
                action: ROTATED_ACTION.into(),
                detail: serde_json::json!({
                    "kid": row.kid,
                    "retired_decrypts_until": from_db(to_db(now + GRACE)),
                }),
                ..Default::default()
            },
            now,
        )?;
        Ok(row.kid.clone())
    })?)
}

/// What the certificate endpoints serve: the active key's certificate and public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The active key's id.
    pub kid: String,
    /// The self-signed X.509 certificate, PEM.
    pub certificate_pem: String,
    /// The same certificate, DER (a `.cer` file).
    pub certificate_der: Vec<u8>,
    /// The SubjectPublicKeyInfo, PEM (`-----BEGIN PUBLIC KEY-----`).
    pub public_key_pem: String,
    /// The certificate's notBefore.
    pub not_before: DateTime<Utc>,
    /// The certificate's notAfter.
    pub not_after: DateTime<Utc>,
}

struct LoadedKey {
    kid: String,
    key: PrivateKey,
}

#[derive(Default)]
struct Ring {
    /// Active key first, then retired ones still in their grace period.
    keys: Vec<LoadedKey>,
    published: Option<Arc<Published>>,
    /// What the ring was built from (kids, retirement, certificate period), to skip rebuilds.
    fingerprint: String,
}

/// The GSTN dialect's RSA keys: the active one is published, every live one decrypts.
pub struct GstnKeys {
    ring: RwLock<Arc<Ring>>,
}

impl std::fmt::Debug for GstnKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ring = self.snapshot();
        f.debug_struct("GstnKeys")
            .field(
                "kids",
                &ring.keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Default for GstnKeys {
    fn default() -> Self {
        Self::new()
    }
}

impl GstnKeys {
    /// An empty ring; load it with [`GstnKeys::replace`].
    pub fn new() -> Self {
        Self {
            ring: RwLock::new(Arc::new(Ring::default())),
        }
    }

    /// A ring loaded from `rows` (newest first, as [`live_keys`] returns them).
    pub fn from_rows(rows: &[KeyRow], now: DateTime<Utc>) -> Result<Self, GstnKeyError> {
        let keys = Self::new();
        keys.replace(rows, now)?;
        Ok(keys)
    }

    fn snapshot(&self) -> Arc<Ring> {
        self.ring.read().map(|g| g.clone()).unwrap_or_default()
    }

    /// Loads `rows` (newest first) and publishes the active key's certificate for `now`; returns
    /// whether anything changed. Undecodable rows are skipped and logged. Without a usable active
    /// key the ring is left as it was.
    pub fn replace(&self, rows: &[KeyRow], now: DateTime<Utc>) -> Result<bool, GstnKeyError> {
        let active = rows
            .iter()
            .find(|r| r.retired_at.is_none())
            .ok_or(GstnKeyError::NoActiveKey)?;
        let fingerprint = format!(
            "{}|{}",
            rows.iter()
                .map(|r| format!("{}:{}", r.kid, r.retired_at.is_some()))
                .collect::<Vec<_>>()
                .join(","),
            certificate_period(from_db(active.created_at), now)
        );
        if self.snapshot().fingerprint == fingerprint {
            return Ok(false);
        }
        let mut loaded = Vec::with_capacity(rows.len());
        let mut published = None;
        // Active first, so it wins when two keys both yield 32 bytes.
        for row in std::iter::once(active).chain(rows.iter().filter(|r| r.retired_at.is_some())) {
            let key = match decode_row(row) {
                Ok(key) => key,
                Err(error) => {
                    tracing::error!(kid = %row.kid, %error, "unusable GSTN key skipped");
                    continue;
                }
            };
            if row.retired_at.is_none() {
                published = Some(Arc::new(publish(&key, &row.kid, from_db(row.created_at), now)?));
            }
            loaded.push(LoadedKey {
                kid: row.kid.clone(),
                key,
            });
        }
        let Some(published) = published else {
            return Err(GstnKeyError::NoActiveKey);
        };
        let ring = Ring {
            keys: loaded,
            published: Some(published),
            fingerprint,
        };
        if let Ok(mut guard) = self.ring.write() {
            *guard = Arc::new(ring);
        }
        Ok(true)
    }

    /// The active key's certificate and public key, once loaded.
    pub fn published(&self) -> Option<Arc<Published>> {
        self.snapshot().published.clone()
    }

    /// The ids of the keys that decrypt now, active first.
    pub fn kids(&self) -> Vec<String> {
        self.snapshot().keys.iter().map(|k| k.kid.clone()).collect()
    }

    /// Decrypts an RSA-wrapped `app_key` field (Base64 of one 256-byte block) with every live key
    /// and returns the 32-byte results, active key first.
    ///
    /// Every failure is [`CryptoError::AppKeyRejected`]; see the module doc for why and for the
    /// limits. CPU-bound (milliseconds per live key): call it on the blocking pool.
    pub fn decrypt_app_key(&self, app_key_field: &str) -> Result<AppKeyCandidates, CryptoError> {
        let ring = self.snapshot();
        let ciphertext = crypto::b64_decode(app_key_field).map_err(|_| CryptoError::AppKeyRejected)?;
        // Every key decrypts every block. The plaintext's length is public under implicit
        // rejection; its bytes are not, and a wrong key's 32 bytes are kept like the right one's.
        let mut keys = ring.keys.iter().filter_map(|loaded| {
            let plain = loaded.key.pkcs1v15_decrypt(&ciphertext).ok()?;
            <AesKey>::try_from(plain.as_slice()).ok()
        });
        let first = keys.next().ok_or(CryptoError::AppKeyRejected)?;
        Ok(AppKeyCandidates {
            first,
            others: keys.collect(),
        })
    }
}

/// The 32-byte keys an `app_key` block decrypts to: one, or during a rotation's grace period
/// possibly two (the real key and an implicit-rejection synthetic one). Never empty.
#[derive(Clone)]
pub struct AppKeyCandidates {
    first: AesKey,
    others: Vec<AesKey>,
}

impl std::fmt::Debug for AppKeyCandidates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AppKeyCandidates({} keys)", 1 + self.others.len())
    }
}

impl AppKeyCandidates {
    fn iter(&self) -> impl Iterator<Item = &AesKey> {
        std::iter::once(&self.first).chain(&self.others)
    }

    /// All of them, in the ring's order (active key first).
    pub fn to_vec(&self) -> Vec<AesKey> {
        self.iter().copied().collect()
    }

    /// Whether `key` is one of them (each compared in constant time).
    pub fn contains(&self, key: &AesKey) -> bool {
        self.iter()
            .fold(Choice::from(0), |found, candidate| found | candidate.ct_eq(key))
            .into()
    }

    /// AUTHTOKEN's choice: the key under which `otp_field` decrypts to an OTP (six digits, as every
    /// OTP the gateway issues is), with that OTP. Failing that, the first key under which it
    /// decrypts to text at all (which will then not match, and counts as a wrong attempt, as with a
    /// single key); failing that, the first key and its error.
    pub fn for_otp(&self, otp_field: &str) -> (AesKey, Result<String, CryptoError>) {
        let mut text = None;
        for key in self.iter() {
            if let Ok(otp) = crypto::decrypt_otp(key, otp_field) {
                if OtpCode::is_well_formed(&otp) {
                    return (*key, Ok(otp));
                }
                text.get_or_insert((*key, otp));
            }
        }
        match text {
            Some((key, otp)) => (key, Ok(otp)),
            None => (self.first, crypto::decrypt_otp(&self.first, otp_field)),
        }
    }

    /// LOGOUT's check: whether the Base64 key stored with the session is one of them.
    pub fn contains_b64(&self, stored: &str) -> bool {
        crypto::b64_decode(stored)
            .ok()
            .and_then(|bytes| <AesKey>::try_from(bytes.as_slice()).ok())
            .is_some_and(|key| self.contains(&key))
    }
}

fn decode_row(row: &KeyRow) -> Result<PrivateKey, GstnKeyError> {
    if row.algorithm != ALGORITHM {
        return Err(GstnKeyError::Key(format!(
            "unexpected algorithm {}",
            row.algorithm
        )));
    }
    PrivateKey::from_pkcs8_pem(&row.private_key).map_err(|e| GstnKeyError::Key(e.to_string()))
}

/// Which certificate period `now` falls in for a key created at `created_at`.
fn certificate_period(created_at: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (now - created_at).num_days().max(0) / CERT_REISSUE_DAYS
}

/// Self-signed, not a CA, for key encipherment: Java's `Cipher.init(cert)` refuses a certificate
/// whose critical key usage lacks it.
struct DialectProfile {
    subject: Name,
}

impl BuilderProfile for DialectProfile {
    fn get_issuer(&self, subject: &Name) -> Name {
        subject.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let mut extensions = Vec::new();
        let ski = SubjectKeyIdentifier::try_from(spk)?;
        extensions.push(ski.to_extension(tbs.subject(), &extensions)?);
        let basic = BasicConstraints {
            ca: false,
            path_len_constraint: None,
        };
        extensions.push(basic.to_extension(tbs.subject(), &extensions)?);
        let usage = KeyUsage(KeyUsages::KeyEncipherment | KeyUsages::DataEncipherment);
        extensions.push(usage.to_extension(tbs.subject(), &extensions)?);
        Ok(extensions)
    }
}

fn x509_time(at: DateTime<Utc>) -> Result<Time, GstnKeyError> {
    let secs = u64::try_from(at.timestamp()).map_err(|e| GstnKeyError::Certificate(e.to_string()))?;
    x509_cert::der::DateTime::from_unix_duration(Duration::from_secs(secs))
        .map(Time::from)
        .map_err(|e| GstnKeyError::Certificate(e.to_string()))
}

/// Builds the certificate of `key` for the period `now` falls in.
fn publish(
    key: &PrivateKey,
    kid: &str,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Published, GstnKeyError> {
    let cert_error = |e: &dyn std::fmt::Display| GstnKeyError::Certificate(e.to_string());
    let period = certificate_period(created_at, now);
    let anchor = created_at + TimeDelta::days(period * CERT_REISSUE_DAYS);
    let not_before = anchor - TimeDelta::days(CERT_BACKDATE_DAYS);
    let not_after = anchor + TimeDelta::days(CERT_LIFETIME_DAYS);
    // Derived, not random, so every instance and restart issues the same bytes.
    let serial = Sha256::digest(format!("{kid}:{period}").as_bytes());
    let serial = SerialNumber::new(&serial[..16]).map_err(|e| cert_error(&e))?;
    let subject = Name::from_str(CERTIFICATE_SUBJECT).map_err(|e| cert_error(&e))?;
    let public = key.to_public_key();
    let spki = SubjectPublicKeyInfoOwned::from_key(&public).map_err(|e| cert_error(&e))?;
    let validity = Validity::new(x509_time(not_before)?, x509_time(not_after)?);
    let builder = CertificateBuilder::new(DialectProfile { subject }, serial, validity, spki)
        .map_err(|e| cert_error(&e))?;
    let signer = SigningKey::<rsa::sha2::Sha256>::new(key.clone());
    let certificate = builder
        .build::<_, Signature>(&signer)
        .map_err(|e| cert_error(&e))?;
    Ok(Published {
        kid: kid.to_owned(),
        certificate_pem: certificate.to_pem(LineEnding::LF).map_err(|e| cert_error(&e))?,
        certificate_der: certificate.to_der().map_err(|e| cert_error(&e))?,
        public_key_pem: public
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| cert_error(&e))?,
        not_before,
        not_after,
    })
}

/// The client's side: RSA-PKCS1v15-encrypts `app_key` to the key in `public_key_pem` (an SPKI PEM,
/// as `/taxpayerapi/public-key.pem` serves it) and returns the Base64 `app_key` field.
pub fn encrypt_app_key(public_key_pem: &str, app_key: &[u8]) -> Result<String, GstnKeyError> {
    use rsa::pkcs8::DecodePublicKey;
    let public =
        rsa::PublicKey::from_public_key_pem(public_key_pem).map_err(|e| GstnKeyError::Key(e.to_string()))?;
    let block = public
        .pkcs1v15_encrypt(app_key)
        .map_err(|e| GstnKeyError::Key(e.to_string()))?;
    Ok(crypto::b64_encode(&block))
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use rsa::pkcs1v15::VerifyingKey;
    use rsa::pkcs8::DecodePublicKey;
    use rsa::signature::Verifier;
    use x509_cert::Certificate;
    use x509_cert::der::{Decode, DecodePem};

    use super::*;

    /// Key generation is the slow part; the tests share two keys.
    fn rows() -> &'static (KeyRow, KeyRow) {
        static ROWS: OnceLock<(KeyRow, KeyRow)> = OnceLock::new();
        ROWS.get_or_init(|| {
            let now = Utc::now();
            (new_key_row(now).unwrap(), new_key_row(now).unwrap())
        })
    }

    fn active_ring() -> (GstnKeys, KeyRow) {
        let (row, _) = rows().clone();
        let keys = GstnKeys::from_rows(std::slice::from_ref(&row), Utc::now()).unwrap();
        (keys, row)
    }

    #[test]
    fn an_app_key_round_trips_through_the_published_public_key() {
        let (keys, row) = active_ring();
        let published = keys.published().unwrap();
        assert_eq!(published.public_key_pem, row.public_key);
        assert_eq!(published.kid, row.kid);
        let app_key = crypto::fresh_key();
        let field = encrypt_app_key(&published.public_key_pem, &app_key).unwrap();
        assert_eq!(field.len(), 344);
        assert_eq!(crypto::b64_decode(&field).unwrap().len(), 256);
        assert_eq!(
            keys.decrypt_app_key(&field).map(|c| c.to_vec()),
            Ok(vec![app_key])
        );
        // PKCS#1 v1.5 is randomised: a second encryption differs and decrypts the same.
        let again = encrypt_app_key(&published.public_key_pem, &app_key).unwrap();
        assert_ne!(again, field);
        assert_eq!(
            keys.decrypt_app_key(&again).map(|c| c.to_vec()),
            Ok(vec![app_key])
        );
    }

    #[test]
    fn an_ascii_app_key_is_accepted_verbatim() {
        let (keys, _) = active_ring();
        let published = keys.published().unwrap();
        let field = encrypt_app_key(&published.public_key_pem, b"1k6ogtiOoRUL76qYOsr6JQ287Q423BJx").unwrap();
        assert_eq!(
            keys.decrypt_app_key(&field).map(|c| c.to_vec()),
            Ok(vec![*b"1k6ogtiOoRUL76qYOsr6JQ287Q423BJx"])
        );
    }

    #[test]
    fn every_unusable_app_key_gets_the_same_error() {
        let (keys, _) = active_ring();
        let pem = keys.published().unwrap().public_key_pem.clone();
        let (_, stranger) = rows();
        let refused = vec![
            // Well-padded, but 16 or 33 bytes.
            encrypt_app_key(&pem, &[1u8; 16]).unwrap(),
            encrypt_app_key(&pem, &[2u8; 33]).unwrap(),
            encrypt_app_key(&pem, b"").unwrap(),
            // Not Base64, not one block, empty.
            "not base64!".to_owned(),
            crypto::b64_encode(&[9u8; 128]),
            String::new(),
            // All-ones is above the modulus.
            crypto::b64_encode(&[0xffu8; 256]),
        ];
        for field in &refused {
            assert_eq!(
                keys.decrypt_app_key(field).map(|c| c.to_vec()),
                Err(CryptoError::AppKeyRejected),
                "{field:.40}"
            );
        }
        // A block for another key decrypts to a synthetic message: mostly not 32 bytes (the same
        // error), and never the client's key.
        let mut rejected = 0;
        for _ in 0..8 {
            let field = encrypt_app_key(&stranger.public_key, &[3u8; 32]).unwrap();
            match keys.decrypt_app_key(&field) {
                Err(CryptoError::AppKeyRejected) => rejected += 1,
                Ok(candidates) => assert!(!candidates.contains(&[3u8; 32])),
                Err(other) => panic!("{other:?}"),
            }
        }
        assert!(rejected >= 6, "{rejected} of 8 rejected");
    }

    #[test]
    fn garbage_blocks_are_answered_deterministically() {
        let (keys, _) = active_ring();
        // A synthetic plaintext depends only on the key and the block: the same block always gets
        // the same answer, so retrying a garbage block teaches nothing.
        for seed in 0u8..24 {
            let mut block = [seed; 256];
            block[0] = 0x01;
            let field = crypto::b64_encode(&block);
            let first = keys.decrypt_app_key(&field).map(|c| c.to_vec());
            assert_eq!(keys.decrypt_app_key(&field).map(|c| c.to_vec()), first);
        }
    }

    /// The second key active, the first retired just now and in its grace period.
    fn rotated_ring() -> (GstnKeys, KeyRow, KeyRow) {
        let (old, new) = rows().clone();
        let now = Utc::now();
        let mut retired = old.clone();
        retired.retired_at = Some(to_db(now));
        retired.publish_until = Some(to_db(now + GRACE));
        let keys = GstnKeys::from_rows(&[new.clone(), retired], now).unwrap();
        (keys, old, new)
    }

    #[test]
    fn a_retired_key_still_decrypts_during_its_grace_period() {
        let (keys, old, new) = rotated_ring();
        assert_eq!(keys.kids(), vec![new.kid.clone(), old.kid.clone()]);
        assert_eq!(keys.published().unwrap().kid, new.kid);
        let app_key = crypto::fresh_key();
        for pem in [&old.public_key, &new.public_key] {
            let field = encrypt_app_key(pem, &app_key).unwrap();
            assert!(keys.decrypt_app_key(&field).unwrap().contains(&app_key));
        }
    }

    #[test]
    fn a_block_for_the_retired_key_is_picked_out_when_the_active_key_also_yields_32_bytes() {
        let (keys, old, _) = rotated_ring();
        // About 1 block in 246 for the retired key also decrypts to a synthetic 32-byte message
        // under the active key, which is tried first; find one (the odds of 5,000 misses are e^-20).
        let (app_key, candidates) = (0..5_000)
            .find_map(|_| {
                let app_key = crypto::fresh_key();
                let candidates = keys
                    .decrypt_app_key(&encrypt_app_key(&old.public_key, &app_key).unwrap())
                    .unwrap();
                assert!(candidates.contains(&app_key));
                (candidates.to_vec().len() == 2).then_some((app_key, candidates))
            })
            .expect("a synthetic 32-byte message under the active key");
        let [synthetic, real] = candidates.to_vec()[..] else {
            panic!("two candidates")
        };
        assert_eq!(real, app_key);
        assert_ne!(synthetic, app_key);
        // AUTHTOKEN: the OTP decrypts to digits only under the real key.
        let (chosen, otp) = candidates.for_otp(&crypto::encrypt_otp(&app_key, "575757"));
        assert_eq!((chosen, otp), (app_key, Ok("575757".to_owned())));
        // Text that is no OTP is still read under the real key: a wrong attempt, as with one key.
        let (chosen, otp) = candidates.for_otp(&crypto::encrypt_otp(&app_key, "not digits"));
        assert_eq!((chosen, otp), (app_key, Ok("not digits".to_owned())));
        // LOGOUT: the stored key is among them; another is not.
        assert!(candidates.contains_b64(&crypto::b64_encode(&app_key)));
        assert!(!candidates.contains_b64(&crypto::b64_encode(&crypto::fresh_key())));
        assert!(!candidates.contains_b64("not base64"));
        // An OTP under neither key: the first candidate's reading, which is refused or mismatches.
        let (chosen, _) = candidates.for_otp(&crypto::encrypt_otp(&crypto::fresh_key(), "575757"));
        assert_eq!(chosen, synthetic);
        assert!(candidates.for_otp("not base64").1.is_err());
    }

    #[test]
    fn a_ring_without_an_active_key_is_refused_and_unchanged() {
        let (keys, row) = active_ring();
        let mut retired = row.clone();
        retired.retired_at = Some(to_db(Utc::now()));
        assert!(matches!(
            keys.replace(&[retired], Utc::now()),
            Err(GstnKeyError::NoActiveKey)
        ));
        assert_eq!(keys.kids(), vec![row.kid]);
    }

    #[test]
    fn reloading_the_same_rows_keeps_the_same_certificate() {
        let (keys, row) = active_ring();
        let before = keys.published().unwrap();
        assert!(!keys.replace(std::slice::from_ref(&row), Utc::now()).unwrap());
        let other = GstnKeys::from_rows(std::slice::from_ref(&row), Utc::now()).unwrap();
        assert_eq!(
            other.published().unwrap(),
            before,
            "another instance serves the same bytes"
        );
    }

    #[test]
    fn the_certificate_is_the_published_key_self_signed_and_currently_valid() {
        let (keys, row) = active_ring();
        let published = keys.published().unwrap();
        let from_pem = Certificate::from_pem(published.certificate_pem.as_bytes()).unwrap();
        let from_der = Certificate::from_der(&published.certificate_der).unwrap();
        assert_eq!(from_pem, from_der);
        assert!(
            published
                .certificate_pem
                .starts_with("-----BEGIN CERTIFICATE-----\n")
        );

        let tbs = from_der.tbs_certificate();
        let spki_der = tbs.subject_public_key_info().to_der().unwrap();
        let expected = rsa::PublicKey::from_public_key_pem(&row.public_key)
            .unwrap()
            .to_public_key_der()
            .unwrap();
        assert_eq!(spki_der, expected.as_bytes());
        assert_eq!(tbs.subject().to_string(), CERTIFICATE_SUBJECT);
        assert_eq!(tbs.issuer(), tbs.subject());

        let now = Utc::now();
        let not_before = tbs.validity().not_before.to_unix_duration().as_secs() as i64;
        let not_after = tbs.validity().not_after.to_unix_duration().as_secs() as i64;
        assert!(not_before <= (now - TimeDelta::hours(23)).timestamp());
        assert!(not_after >= (now + TimeDelta::days(360)).timestamp());
        assert_eq!(not_after, published.not_after.timestamp());

        let verifying = VerifyingKey::<rsa::sha2::Sha256>::new(
            rsa::PublicKey::from_public_key_pem(&row.public_key).unwrap(),
        );
        let signature = Signature::try_from(from_der.signature().raw_bytes()).unwrap();
        verifying.verify(&tbs.to_der().unwrap(), &signature).unwrap();
    }

    #[test]
    fn the_certificate_is_reissued_before_it_expires() {
        let (row, _) = rows();
        let key = decode_row(row).unwrap();
        let created = from_db(row.created_at);
        let first = publish(&key, &row.kid, created, created).unwrap();
        let later = publish(&key, &row.kid, created, created + TimeDelta::days(340)).unwrap();
        assert_ne!(first.certificate_der, later.certificate_der);
        assert!(later.not_after - (created + TimeDelta::days(340)) >= TimeDelta::days(30));
        for day in (0..800).step_by(7) {
            let at = created + TimeDelta::days(day);
            let cert = publish(&key, &row.kid, created, at).unwrap();
            assert!(cert.not_before <= at && cert.not_after - at >= TimeDelta::days(30));
        }
    }
}
