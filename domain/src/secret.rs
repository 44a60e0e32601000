//! Random secrets and their stored forms.
//!
//! High-entropy secrets (client secrets, refresh tokens) are stored as SHA-256: with 256 bits of
//! randomness there is nothing for a slow hash to protect. OTPs are hashed together with the id of
//! their challenge, so equal codes never share a hash.

use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// `n` random bytes from the operating system's CSPRNG, as lower-case hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    OsRng.fill_bytes(&mut bytes);
    to_hex(&bytes)
}

/// `n` random bytes from the operating system's CSPRNG, as URL-safe Base64 without padding.
pub fn random_token(n: usize) -> String {
    use base64::Engine;
    let mut bytes = vec![0u8; n];
    OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of `value`, as lower-case hex.
pub fn sha256_hex(value: &str) -> String {
    to_hex(&sha256(value))
}

/// SHA-256 of `value`.
pub fn sha256(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// Lower-case hex (a table lookup per nibble: the dialect hashes a token and a secret per call).
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Compares two strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A new GSP client id, shaped like the GST System's (`l7xx` and 32 hex digits).
pub fn new_client_id() -> String {
    format!("l7xx{}", random_hex(16))
}

/// A new GSP client secret: 256 random bits as 64 hex digits.
pub fn new_client_secret() -> String {
    random_hex(32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_their_promised_shape() {
        let id = new_client_id();
        assert_eq!(id.len(), 36);
        assert!(id.starts_with("l7xx"));
        assert_eq!(new_client_secret().len(), 64);
        assert_ne!(new_client_secret(), new_client_secret());
        assert_eq!(random_token(32).len(), 43);
    }

    #[test]
    fn hex_and_hashes_match_the_reference_encodings() {
        assert_eq!(to_hex(&[0x00, 0x7f, 0x80, 0xff, 0x1a]), "007f80ff1a");
        assert_eq!(to_hex(&[]), "");
        // FIPS 180-2 test vector.
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hex::encode(sha256("gsp-gateway")), sha256_hex("gsp-gateway"));
        assert!(constant_time_eq_bytes(b"same", b"same"));
        assert!(!constant_time_eq_bytes(b"same", b"sane"));
        assert!(!constant_time_eq_bytes(b"same", b"same!"));
    }

    #[test]
    fn sha256_and_constant_time_comparison() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
    }
}
