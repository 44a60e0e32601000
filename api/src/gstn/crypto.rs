//! The GSTN dialect's symmetric crypto, byte-exact with GSTN clients (gstn-dialect.md §3).
//!
//! Everything here is a pure function of its inputs, except [`fresh_key`] and the functions that
//! call it, which draw from the OS RNG. The RSA side (the app key) is in [`super::rsa_key`].
//!
//! Three 32-byte AES-256 keys appear on the wire, always under AES-256-ECB with PKCS#7 padding and
//! always Base64 (standard alphabet, `=` padded):
//! - the **app key**, chosen by the client, sent under RSA (or under the SEK on REFRESHTOKEN);
//! - the **SEK**, chosen by the gateway per AUTHTOKEN/REFRESHTOKEN, sent under the app key;
//! - the **REK**, chosen by the gateway per data response, sent under the SEK.
//!
//! Payloads are never encrypted as JSON: the JSON is Base64-encoded first (`B`), and both the AES
//! and the HMAC work on the ASCII of `B`. The HMAC of a request is checked over the decrypted `B`
//! *as received*, so a client's line-wrapped or otherwise unusual Base64 still verifies.
//!
//! Which GSTN error code each [`CryptoError`] becomes depends on the call (an OTP, a data request,
//! a refresh), so the mapping is left to the dialect's handlers; each variant's doc names the
//! usual answer.

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyInit};
use aes::{Aes256Dec, Aes256Enc};
use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Length of every AES key of the dialect (app key, SEK, REK) and of an HMAC-SHA256 tag.
pub const KEY_LEN: usize = 32;

/// An AES-256 key: an app key, a SEK or a REK.
pub type AesKey = [u8; KEY_LEN];

type HmacSha256 = Hmac<Sha256>;
const AES_BLOCK: usize = 16;

/// Why a dialect value could not be decrypted or verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A field is not standard Base64 (GEN5007 on a data call).
    #[error("not valid Base64")]
    Base64,
    /// The ciphertext is not whole AES blocks, or its PKCS#7 padding is wrong: almost always the
    /// wrong key (an OTP under another app key is AUTH4033; a data call's `data` is GEN5007, since a
    /// SEK lives exactly as long as its auth token, so the token was current and the payload is
    /// the client's mistake).
    #[error("ciphertext length or padding is wrong (wrong key?)")]
    Padding,
    /// A decrypted key is not exactly 32 bytes (a REFRESHTOKEN `app_key`: AUTH4036).
    #[error("expected a {expected}-byte key, got {actual} bytes")]
    KeyLength {
        /// Always [`KEY_LEN`].
        expected: usize,
        /// What the plaintext had.
        actual: usize,
    },
    /// The request's `hmac` (or EVC `sign`) does not match `B` (AUTH4039/GEN5007; see §6.4).
    #[error("HMAC mismatch")]
    HmacMismatch,
    /// A decrypted value that must be text (the OTP) is not UTF-8 (treat as a wrong OTP).
    #[error("decrypted value is not text")]
    NotText,
    /// The RSA-wrapped `app_key` is unusable, for whatever reason: not Base64, not one RSA block,
    /// not 32 bytes after decryption, or encrypted to a key the gateway does not hold. One variant
    /// on purpose, so no answer tells these apart (a padding oracle); answer TEC4002, which makes
    /// clients (IC) re-fetch the certificate. See [`super::rsa_key`].
    #[error("invalid app key")]
    AppKeyRejected,
}

/// The Base64 encoder: the STANDARD alphabet with padding, vectorised where the CPU allows (AVX2,
/// NEON), byte-identical to the scalar one. A data answer encodes four fields.
static ENCODER: LazyLock<base64::engine::Simd> =
    LazyLock::new(|| base64::engine::Simd::standard(base64::engine::general_purpose::PAD));

/// Standard Base64 with padding, as every GSTN client sends it.
pub fn b64_encode(bytes: &[u8]) -> String {
    ENCODER.encode(bytes)
}

/// Decodes standard Base64, ignoring embedded CR/LF (commons-codec and Ruby wrap long lines).
pub fn b64_decode(text: impl AsRef<[u8]>) -> Result<Vec<u8>, CryptoError> {
    let text = text.as_ref();
    if text.iter().any(|b| matches!(b, b'\r' | b'\n')) {
        let joined: Vec<u8> = text
            .iter()
            .copied()
            .filter(|b| !matches!(b, b'\r' | b'\n'))
            .collect();
        STANDARD.decode(joined).map_err(|_| CryptoError::Base64)
    } else {
        STANDARD.decode(text).map_err(|_| CryptoError::Base64)
    }
}

/// AES-256-ECB with PKCS#7 padding (Java's `AES/ECB/PKCS5Padding`). Encryption and decryption use
/// one-way ciphers (`Aes256Enc`, `Aes256Dec`): `Aes256` would expand both key schedules, and every
/// data response expands two fresh keys.
pub fn aes_encrypt(key: &AesKey, plaintext: &[u8]) -> Vec<u8> {
    ecb::Encryptor::<Aes256Enc>::new(key.into()).encrypt_padded_vec_mut::<Pkcs7>(plaintext)
}

/// The inverse of [`aes_encrypt`].
pub fn aes_decrypt(key: &AesKey, ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(AES_BLOCK) {
        return Err(CryptoError::Padding);
    }
    ecb::Decryptor::<Aes256Dec>::new(key.into())
        .decrypt_padded_vec_mut::<Pkcs7>(ciphertext)
        .map_err(|_| CryptoError::Padding)
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (longer ones are hashed first), so this cannot fail.
    <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

/// HMAC-SHA256 of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; KEY_LEN] {
    let mut mac = mac(key);
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Checks a Base64 HMAC-SHA256 `tag` of `message` in constant time.
pub fn verify_hmac(key: &[u8], message: &[u8], tag_b64: &str) -> Result<(), CryptoError> {
    let tag = b64_decode(tag_b64).map_err(|_| CryptoError::HmacMismatch)?;
    let mut mac = mac(key);
    mac.update(message);
    mac.verify_slice(&tag).map_err(|_| CryptoError::HmacMismatch)
}

/// 32 fresh random bytes from a CSPRNG: a SEK or a REK.
pub fn fresh_key() -> AesKey {
    // A REK is drawn for every data response: the thread-local CSPRNG (ChaCha, seeded and reseeded
    // from the OS) spares a system call per response.
    let mut key = [0u8; KEY_LEN];
    rand::thread_rng().fill_bytes(&mut key);
    key
}

fn to_key(bytes: &[u8]) -> Result<AesKey, CryptoError> {
    AesKey::try_from(bytes).map_err(|_| CryptoError::KeyLength {
        expected: KEY_LEN,
        actual: bytes.len(),
    })
}

/// AUTHTOKEN's `otp` field: the OTP string the client encrypted under its app key.
pub fn decrypt_otp(app_key: &AesKey, otp_field: &str) -> Result<String, CryptoError> {
    let plain = aes_decrypt(app_key, &b64_decode(otp_field)?)?;
    String::from_utf8(plain).map_err(|_| CryptoError::NotText)
}

/// The client's side of [`decrypt_otp`] (tests and tools).
pub fn encrypt_otp(app_key: &AesKey, otp: &str) -> String {
    b64_encode(&aes_encrypt(app_key, otp.as_bytes()))
}

/// The `sek` response field of AUTHTOKEN/REFRESHTOKEN: the SEK under the app key (64 characters).
pub fn encrypt_sek(app_key: &AesKey, sek: &AesKey) -> String {
    b64_encode(&aes_encrypt(app_key, sek))
}

/// The client's side of [`encrypt_sek`] (tests and tools).
pub fn decrypt_sek(app_key: &AesKey, sek_field: &str) -> Result<AesKey, CryptoError> {
    to_key(&aes_decrypt(app_key, &b64_decode(sek_field)?)?)
}

/// REFRESHTOKEN's `app_key` field: the (possibly new) app key under the current SEK.
pub fn decrypt_refresh_app_key(sek: &AesKey, app_key_field: &str) -> Result<AesKey, CryptoError> {
    to_key(&aes_decrypt(sek, &b64_decode(app_key_field)?)?)
}

/// The client's side of [`decrypt_refresh_app_key`] (tests and tools).
pub fn encrypt_refresh_app_key(sek: &AesKey, app_key: &AesKey) -> String {
    b64_encode(&aes_encrypt(sek, app_key))
}

/// A data request body's encrypted fields, as a client builds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedRequest {
    /// Base64(AES(SEK, B)).
    pub data: String,
    /// Base64(HMAC-SHA256(SEK, B)).
    pub hmac: String,
}

/// Decrypts a data request (`data`, `hmac`) under the SEK and returns the JSON bytes the client
/// serialised, unparsed. The HMAC is checked over `B` exactly as decrypted, before decoding it.
pub fn decrypt_request(sek: &AesKey, data: &str, hmac: &str) -> Result<Vec<u8>, CryptoError> {
    let b = aes_decrypt(sek, &b64_decode(data)?)?;
    verify_hmac(sek, &b, hmac)?;
    b64_decode(&b)
}

/// The client's side of [`decrypt_request`] (tests and tools).
pub fn encrypt_request(sek: &AesKey, json: &[u8]) -> EncryptedRequest {
    let b = b64_encode(json);
    EncryptedRequest {
        data: b64_encode(&aes_encrypt(sek, b.as_bytes())),
        hmac: b64_encode(&hmac_sha256(sek, b.as_bytes())),
    }
}

/// EVC filing's `sign`: Base64(HMAC-SHA256(key = UTF-8 of `sid` = "PAN|OTP", message = `B`)).
pub fn evc_sign(sid: &str, b: &[u8]) -> String {
    b64_encode(&hmac_sha256(sid.as_bytes(), b))
}

/// Decrypts an EVC filing (`data` under the SEK, `sign` keyed by `sid`) and returns the JSON bytes.
pub fn decrypt_evc_request(sek: &AesKey, data: &str, sign: &str, sid: &str) -> Result<Vec<u8>, CryptoError> {
    let b = aes_decrypt(sek, &b64_decode(data)?)?;
    verify_hmac(sid.as_bytes(), &b, sign)?;
    b64_decode(&b)
}

/// A data response's encrypted fields (the body adds `"status_cd":"1"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedResponse {
    /// Base64(AES(REK, B')).
    pub data: String,
    /// Base64(AES(SEK, REK)).
    pub rek: String,
    /// Base64(HMAC-SHA256(REK, B')).
    pub hmac: String,
}

/// Encrypts a data response's JSON under a fresh REK (clients expect a new one every time).
pub fn encrypt_response(sek: &AesKey, json: &[u8]) -> EncryptedResponse {
    encrypt_response_with_rek(sek, &fresh_key(), json)
}

/// [`encrypt_response`] with a given REK; deterministic, for test vectors.
pub fn encrypt_response_with_rek(sek: &AesKey, rek: &AesKey, json: &[u8]) -> EncryptedResponse {
    let raw = encrypt_response_bytes(sek, rek, json);
    EncryptedResponse {
        data: b64_encode(&raw.data),
        rek: b64_encode(&raw.rek),
        hmac: b64_encode(&raw.hmac),
    }
}

/// A data response's encrypted fields before their Base64 (which the envelope writes in place).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedResponseBytes {
    /// AES(REK, B').
    pub data: Vec<u8>,
    /// AES(SEK, REK).
    pub rek: Vec<u8>,
    /// HMAC-SHA256(REK, B').
    pub hmac: [u8; KEY_LEN],
}

/// The fields of [`encrypt_response_with_rek`], as bytes.
pub fn encrypt_response_bytes(sek: &AesKey, rek: &AesKey, json: &[u8]) -> EncryptedResponseBytes {
    // `B'` is written into a buffer with room for the padding, MAC'd, then encrypted in place.
    let b_len = base64::encoded_len(json.len(), true).unwrap_or(0);
    let mut buffer = vec![0u8; b_len + AES_BLOCK];
    let written = ENCODER.encode_slice(json, &mut buffer).unwrap_or(0);
    let hmac = hmac_sha256(rek, &buffer[..written]);
    let data = match ecb::Encryptor::<Aes256Enc>::new(rek.into())
        .encrypt_padded_mut::<Pkcs7>(&mut buffer, written)
    {
        Ok(ciphertext) => {
            let length = ciphertext.len();
            buffer.truncate(length);
            buffer
        }
        // Unreachable: the buffer has a whole block of room for the padding.
        Err(_) => aes_encrypt(rek, &buffer[..written]),
    };
    EncryptedResponseBytes {
        data,
        rek: aes_encrypt(sek, rek),
        hmac,
    }
}

/// Appends the Base64 of `bytes` to `out` (no intermediate string).
pub fn b64_append(bytes: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + base64::encoded_len(bytes.len(), true).unwrap_or(0), 0);
    let written = ENCODER.encode_slice(bytes, &mut out[start..]).unwrap_or(0);
    out.truncate(start + written);
}

/// The client's side of [`encrypt_response`]: checks `hmac` when given and returns the JSON bytes.
pub fn decrypt_response(
    sek: &AesKey,
    data: &str,
    rek: &str,
    hmac: Option<&str>,
) -> Result<Vec<u8>, CryptoError> {
    let rek = to_key(&aes_decrypt(sek, &b64_decode(rek)?)?)?;
    let b = aes_decrypt(&rek, &b64_decode(data)?)?;
    if let Some(hmac) = hmac {
        verify_hmac(&rek, &b, hmac)?;
    }
    b64_decode(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vectorised_encoder_writes_what_the_scalar_one_writes() {
        let mut bytes = Vec::new();
        for length in 0..600u32 {
            let text = b64_encode(&bytes);
            assert_eq!(text, STANDARD.encode(&bytes), "length {length}");
            let mut appended = b"prefix".to_vec();
            b64_append(&bytes, &mut appended);
            assert_eq!(&appended[6..], text.as_bytes());
            bytes.push((length.wrapping_mul(2_654_435_761) >> 13) as u8);
        }
    }

    fn key(b64: &str) -> AesKey {
        to_key(&b64_decode(b64).unwrap()).unwrap()
    }

    /// TV1: GSTN's own sample (SmartGST `AESEncryption.testData()`), the GSTR-1 B2B response.
    mod tv1 {
        pub const APP_KEY: &str = "41+sD/gm9DWQeZbJm98qb3ss9Eu96XkClU5a4hyfaAw=";
        pub const SEK_FIELD: &str = "yDWrI0m6juY+MKsPNtWkBYJAVsE0XIQvAJwv+P2T9DgOLzbTmU1E5NkewRcnIsK2";
        pub const SEK: &str = "WPYDKz5DVjGTW9UVNoWJBW2p09hOzub5nc9UYX/ejCo=";
        pub const REK_FIELD: &str = "QdwtOmbHgs5+T6XguaXrJtXyc1EpapQzuV5wWgEiDbUdShGCyOtl6JelLUI/R5xt";
        pub const REK: &str = "GEoP/gZDnqeTNTAxUcmUTxAYUx+E2vRcCKYv6wD5Qfc=";
        pub const HMAC: &str = "NtNi0UsXEhx/5uspy6687fi+g3BBYNIefFpkTeftwNM=";
        pub const DATA: &str = concat!(
            "czI9UduToC0S2M/Z8NxmD6AaiCHqK/wN4cLnpjje1LCgo7hXhoGvSUac0BB9umkBnWEO+osui4ZZHZIHrO8bvMlQI5mmyuqDxqLTg5IkgYCzUnDWGV6qP/6e",
            "i2J8eCKLxqv0XALN228h0QhNK4nr3Q9n4HVGngdXJf1dSIcxNVXQaJTctti1w7n6bm5Ht2FlMVKsIT7O8bwD9OyJtV0Z0jZa45DoWMxIwbRQKTnBCzC7+gCW",
            "SBriGW1Bsc4AGMzQks8qE0y1rQscgtPp8D6/eHjIT5e3jwn9EWYZdgDb+y1sCaUL77AEvKm9inM3fyfj3yw11I31NX79KVFzKCOFA3gfuz2RhTZ5QnxuUABG",
            "uHXDrLKaYkkxa6f0GPBDJmUqs5/R1w2YjpOzdDG+i0zRjPvIdSpM4wzVt0dB449TplAftdPkLCmVKBovrLe8OwE58nI5j63Kr8JMFc/V8XBFDpRDZl4EgdLe",
            "KWX4rop67GeWUVjdIyyAuiOiXTi/v9r1EGpFzybDJE2Z9S2/ntK5iVsPT6Bn4MaqkTiOG5D3eh5aDNuM3mToDC6LSD7PkX9Ekt1R/T1dLeKDOnEo5aQqCcqm",
            "/v5A9AZw86nyzFPfdjLfl9TOem4/hSP8Xslx645jnhUlr3kkshw5LzRpx5KaC32PC+eOcRq6MEeVF6vStvA/XA/9dRazxwvPnS4z09gtSdZRozls1UmNjBkh",
            "Soh4tDSU0lQXIsrmr/tGtLSsj1fH7h5De+qBvhyvY3LOw6CGfq3dKUFcE0n4yLosMIm2xbtVzROGdNXgDmUPUmk9wXHLc5UA8GNY9rq1z1ypCBbYpHLCQ9NH",
            "LncweF2FOK2obqF3kioypUbPxndgtd4cbVReXf9XBL9YkkxDCvNjH44bz0ciVnhg9jwGETLU6z40/s3ew8dDrNCbUmrGK42YxB44Ljwk5RQBRa5uMJnrFKiR",
            "8dnUJZai12moHO6GzIg5yiYEEa65rbzgdJOozcjTXgLl2Mf1uR4jN3Y7+u/e4OcYNHlF2Jd/7EGH+sJ9aOIYsq0K8f82o4jbbInhSg37pv2Kf5fm6urd4UoQ",
            "UJ01fGGOHytSegKX2wO9vlKhHyrbu1+zMnfjEXabjENTlLWS5npkDhO7CaVsK4XsxTucsSdXKg3w7n82C05acOwrvewHCMNWD1IZuuKKcHWLhd7khs0gGRSQ",
            "R4eKbN17fuYg2aTkQM/n1/8/NZP35UsMt+w9zpewE1wQr6C4guFoiIS1IUReJwFqCBAHsyXCnSdVjZlzZu40KYGWjR3TmkG4vVZA22cxsq83Oc/aykrflL0f",
            "1QI6txyfqSZAlpNEqKHerDR/iGAgwYa5f9y8Id7hnyK1lU0NnkAbKbBh9GWuvtBiNL7AvrDNMLt2lStyuDhh0TTscAqFv26jjAtz2MoEZ9HPvoBPDAsxq0HG",
            "FeoypyeQKZI0/xTh+iVcsMxgqY5FeOEiWEW/cBBJZOP402+319jDlDoSRerbUKwP63TLxE/zL2j4YyxHTEWi9PUiF+JosUHmza9PiyTdbIxyrhxXDfKVoQ==",
        );
    }

    /// TV2: GK `AESEncryption.encJsonAndGenHmac()`, the RETSTATUS response, plus values derived
    /// from its keys (gstn-dialect.md §7).
    mod tv2 {
        pub const APP_KEY: &str = "Q/XkhYUUbvfg6wCdxrPzPqMb4SPMrYRXQ5w2WVnxw90=";
        pub const SEK_FIELD: &str = "IitOPD+s6MRQtBmmzRMYvAGT7XA/U+ykDwTEhfF6AstlAT3Ti4NDH8dpsE6sildD";
        pub const SEK: &str = "YYypEFcRW0s1E6bmiCDVKCA21spLoqeu/51MXdtyLSM=";
        pub const REK_FIELD: &str = "Jtw85O5bL3eaYLfnhNBFuIvWRibX/5zmbpOW9ch08QGMpFBFDxLo5x4HtRXrf1BR";
        pub const REK: &str = "PsUjL9nvxg+FC7TkNBOi08X0RDv8QF35Tfk66IZAe6M=";
        pub const DATA: &str = "gvw+17329dm9VYUdpUSMkhdrhf5kYe1rTJHQ+Cpwm3avjZraBHSU2OsrPMWyPS0q4HpeT06pT7cwnibOeB9QID2s3FuKJPFZM1fFbKrPdJ8=";
        pub const B: &str = "eyJmb3JtX3R5cCI6IlIxIiwic3RhdHVzX2NkIjoiUCIsImFjdGlvbiI6IlNVQk1JVCJ9";
        pub const JSON: &str = r#"{"form_typ":"R1","status_cd":"P","action":"SUBMIT"}"#;
        pub const OTP_FIELD: &str = "2Tp8ISt8bsVxWGvLn5T4Wg==";
        pub const REQUEST_JSON: &str = r#"{"gstin":"27BABMH5613A1ZJ","ret_period":"102017"}"#;
        pub const REQUEST_B: &str = "eyJnc3RpbiI6IjI3QkFCTUg1NjEzQTFaSiIsInJldF9wZXJpb2QiOiIxMDIwMTcifQ==";
        pub const REQUEST_DATA: &str = "IPdEi5nnYC51r2GwkViZgrtIAztPdwSM4EotWd6QNlzGhrBoY1gVNTl2HOD7aGOpVrJvXFkL8c8nWhuHe7uqQVglQr55/I64QUYmTge7K/Y=";
        pub const REQUEST_HMAC: &str = "cMi7+gU+ffhTpejuKNUUDeMU30HE3acUYT497lazrvM=";
        pub const EVC_SID: &str = "AHWPB0871H|9925F4";
        pub const EVC_SIGN: &str = "QzC0p177rWVMp5aS71RNt4M64dzFkDmobu6tKR2292Q=";
        pub const REFRESH_APP_KEY: &str = "mWKconBiNI4/+218zT9jD0tLOYd9oOGVv7pS88m7Jq+MpFBFDxLo5x4HtRXrf1BR";
    }

    /// TV3: AK, an app key that is a 32-character ASCII string.
    mod tv3 {
        pub const APP_KEY: &[u8; 32] = b"1k6ogtiOoRUL76qYOsr6JQ287Q423BJx";
        pub const SEK_FIELD: &str = "R1QecOqyaFc8jmFtsyspVmEtWU71geKV83OXYWrXDag2l+p2ZiQ64JrPO8OpzLAl";
        pub const SEK: &str = "/e7VwPe1AY3KaIX7n96R3ZIBoG3ecBx9AGs/hRXVBFA=";
    }

    #[test]
    fn tv1_gstns_sample_response_decrypts_and_reencrypts_byte_identically() {
        assert_eq!(tv1::DATA.len(), 1560);
        let app_key = key(tv1::APP_KEY);
        let sek = decrypt_sek(&app_key, tv1::SEK_FIELD).unwrap();
        assert_eq!(b64_encode(&sek), tv1::SEK);
        assert_eq!(encrypt_sek(&app_key, &sek), tv1::SEK_FIELD);

        let json = decrypt_response(&sek, tv1::DATA, tv1::REK_FIELD, Some(tv1::HMAC)).unwrap();
        assert!(json.starts_with(br#"{"b2b":[{"ctin":"37ABCDE9552F3Z4","inv":[{"inum":"S008400","#));
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["b2b"].as_array().map(Vec::len), Some(2));

        let rek = key(tv1::REK);
        let b = aes_decrypt(&rek, &b64_decode(tv1::DATA).unwrap()).unwrap();
        assert_eq!(b.len(), 1156);
        assert_eq!(
            encrypt_response_with_rek(&sek, &rek, &json),
            EncryptedResponse {
                data: tv1::DATA.into(),
                rek: tv1::REK_FIELD.into(),
                hmac: tv1::HMAC.into(),
            }
        );
    }

    #[test]
    fn tv2_retstatus_response_decrypts_and_reencrypts_byte_identically() {
        let app_key = key(tv2::APP_KEY);
        let sek = decrypt_sek(&app_key, tv2::SEK_FIELD).unwrap();
        assert_eq!(b64_encode(&sek), tv2::SEK);
        assert_eq!(encrypt_sek(&app_key, &sek), tv2::SEK_FIELD);

        let rek = key(tv2::REK);
        assert_eq!(
            aes_decrypt(&rek, &b64_decode(tv2::DATA).unwrap()).unwrap(),
            tv2::B.as_bytes()
        );
        let json = decrypt_response(&sek, tv2::DATA, tv2::REK_FIELD, None).unwrap();
        assert_eq!(json, tv2::JSON.as_bytes());
        let again = encrypt_response_with_rek(&sek, &rek, tv2::JSON.as_bytes());
        assert_eq!(again.data, tv2::DATA);
        assert_eq!(again.rek, tv2::REK_FIELD);
        assert_eq!(
            decrypt_response(&sek, &again.data, &again.rek, Some(&again.hmac)).unwrap(),
            tv2::JSON.as_bytes()
        );
    }

    #[test]
    fn tv2_otp_102030_round_trips_under_the_app_key() {
        let app_key = key(tv2::APP_KEY);
        assert_eq!(decrypt_otp(&app_key, tv2::OTP_FIELD).unwrap(), "102030");
        assert_eq!(encrypt_otp(&app_key, "102030"), tv2::OTP_FIELD);
        assert_eq!(tv2::OTP_FIELD.len(), 24);
    }

    #[test]
    fn tv2_data_request_decrypts_to_the_clients_json_and_reencrypts_identically() {
        let sek = key(tv2::SEK);
        let json = decrypt_request(&sek, tv2::REQUEST_DATA, tv2::REQUEST_HMAC).unwrap();
        assert_eq!(json, tv2::REQUEST_JSON.as_bytes());
        assert_eq!(
            aes_decrypt(&sek, &b64_decode(tv2::REQUEST_DATA).unwrap()).unwrap(),
            tv2::REQUEST_B.as_bytes()
        );
        assert_eq!(
            encrypt_request(&sek, tv2::REQUEST_JSON.as_bytes()),
            EncryptedRequest {
                data: tv2::REQUEST_DATA.into(),
                hmac: tv2::REQUEST_HMAC.into(),
            }
        );
        assert_eq!(tv2::REQUEST_HMAC.len(), 44);
    }

    #[test]
    fn tv2_evc_sign_is_keyed_by_pan_and_otp() {
        let sek = key(tv2::SEK);
        assert_eq!(evc_sign(tv2::EVC_SID, tv2::REQUEST_B.as_bytes()), tv2::EVC_SIGN);
        assert_eq!(
            decrypt_evc_request(&sek, tv2::REQUEST_DATA, tv2::EVC_SIGN, tv2::EVC_SID).unwrap(),
            tv2::REQUEST_JSON.as_bytes()
        );
        assert_eq!(
            decrypt_evc_request(&sek, tv2::REQUEST_DATA, tv2::EVC_SIGN, "AHWPB0871H|000000"),
            Err(CryptoError::HmacMismatch)
        );
    }

    #[test]
    fn tv2_refreshtoken_app_key_is_the_app_key_under_the_sek() {
        let sek = key(tv2::SEK);
        let app_key = key(tv2::APP_KEY);
        assert_eq!(
            decrypt_refresh_app_key(&sek, tv2::REFRESH_APP_KEY).unwrap(),
            app_key
        );
        assert_eq!(encrypt_refresh_app_key(&sek, &app_key), tv2::REFRESH_APP_KEY);
        // The padding block of a 32-byte plaintext is constant, so it matches the REK field's.
        assert_eq!(tv2::REFRESH_APP_KEY[44..], tv2::REK_FIELD[44..]);
    }

    #[test]
    fn tv3_an_ascii_app_key_is_used_as_its_bytes() {
        let sek = decrypt_sek(tv3::APP_KEY, tv3::SEK_FIELD).unwrap();
        assert_eq!(b64_encode(&sek), tv3::SEK);
        assert_eq!(encrypt_sek(tv3::APP_KEY, &sek), tv3::SEK_FIELD);
    }

    #[test]
    fn a_sek_field_is_always_64_characters() {
        for _ in 0..16 {
            assert_eq!(encrypt_sek(&fresh_key(), &fresh_key()).len(), 64);
        }
        let response = encrypt_response(&fresh_key(), b"{}");
        assert_eq!(response.rek.len(), 64);
        assert_eq!(response.hmac.len(), 44);
    }

    #[test]
    fn a_fresh_rek_is_drawn_for_every_response() {
        let sek = key(tv2::SEK);
        let first = encrypt_response(&sek, tv2::JSON.as_bytes());
        let second = encrypt_response(&sek, tv2::JSON.as_bytes());
        assert_ne!(first.rek, second.rek);
        assert_ne!(first.data, second.data);
        for r in [first, second] {
            assert_eq!(
                decrypt_response(&sek, &r.data, &r.rek, Some(&r.hmac)).unwrap(),
                tv2::JSON.as_bytes()
            );
        }
    }

    #[test]
    fn base64_with_embedded_line_breaks_decodes() {
        let wrapped = format!("{}\r\n{}\n", &tv2::REQUEST_DATA[..40], &tv2::REQUEST_DATA[40..]);
        assert_eq!(
            b64_decode(&wrapped).unwrap(),
            b64_decode(tv2::REQUEST_DATA).unwrap()
        );
        assert_eq!(b64_decode("not base64!"), Err(CryptoError::Base64));
        assert_eq!(b64_decode("QUJD"), Ok(b"ABC".to_vec()));
    }

    #[test]
    fn the_hmac_covers_b_as_received_even_when_line_wrapped() {
        let sek = key(tv2::SEK);
        // An old commons-codec client wraps B at 76 characters with CRLF.
        let wrapped = format!("{}\r\n{}", &tv2::REQUEST_B[..20], &tv2::REQUEST_B[20..]);
        let data = b64_encode(&aes_encrypt(&sek, wrapped.as_bytes()));
        let good = b64_encode(&hmac_sha256(&sek, wrapped.as_bytes()));
        assert_eq!(
            decrypt_request(&sek, &data, &good).unwrap(),
            tv2::REQUEST_JSON.as_bytes()
        );
        // An HMAC over the unwrapped text is not the one the client sent.
        assert_eq!(
            decrypt_request(&sek, &data, tv2::REQUEST_HMAC),
            Err(CryptoError::HmacMismatch)
        );
    }

    #[test]
    fn a_tampered_or_misdirected_request_is_refused() {
        let sek = key(tv2::SEK);
        assert_eq!(
            decrypt_request(
                &sek,
                tv2::REQUEST_DATA,
                "cMi7+gU+ffhTpejuKNUUDeMU30HE3acUYT497lazrvN="
            ),
            Err(CryptoError::HmacMismatch)
        );
        assert_eq!(
            decrypt_request(&sek, tv2::REQUEST_DATA, "short"),
            Err(CryptoError::HmacMismatch)
        );
        assert_eq!(
            decrypt_request(&sek, tv2::REQUEST_DATA, ""),
            Err(CryptoError::HmacMismatch)
        );
        // Another session's SEK: the padding (or, rarely, the HMAC) gives it away.
        let other = key(tv1::SEK);
        assert!(matches!(
            decrypt_request(&other, tv2::REQUEST_DATA, tv2::REQUEST_HMAC),
            Err(CryptoError::Padding | CryptoError::HmacMismatch)
        ));
        assert_eq!(
            decrypt_request(&sek, "QUJD", tv2::REQUEST_HMAC),
            Err(CryptoError::Padding)
        );
        assert_eq!(
            decrypt_request(&sek, "", tv2::REQUEST_HMAC),
            Err(CryptoError::Padding)
        );
        assert_eq!(
            decrypt_request(&sek, "%%%", tv2::REQUEST_HMAC),
            Err(CryptoError::Base64)
        );
    }

    #[test]
    fn a_refresh_app_key_of_the_wrong_length_is_refused() {
        let sek = key(tv2::SEK);
        let short = b64_encode(&aes_encrypt(&sek, &[7u8; 16]));
        assert_eq!(
            decrypt_refresh_app_key(&sek, &short),
            Err(CryptoError::KeyLength {
                expected: 32,
                actual: 16
            })
        );
    }

    #[test]
    fn an_otp_under_another_app_key_is_refused_or_garbled() {
        let wrong = key(tv1::APP_KEY);
        assert_ne!(decrypt_otp(&wrong, tv2::OTP_FIELD), Ok("102030".into()));
    }
}
