//! One-time passwords: the taxpayer's consent to one GSP session.

use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;
use rand::rngs::OsRng;

use crate::secret::{constant_time_eq, sha256_hex};

/// How many wrong codes a challenge survives: the fifth wrong one voids it.
pub const OTP_ATTEMPTS: u8 = 5;
/// How long an OTP is valid.
pub const OTP_LIFETIME_MINUTES: i64 = 10;

/// A 6-digit one-time code.
#[derive(Clone, PartialEq, Eq)]
pub struct OtpCode(String);

impl std::fmt::Debug for OtpCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OtpCode(******)")
    }
}

impl OtpCode {
    /// A fresh code from the operating system's CSPRNG.
    pub fn generate() -> Self {
        Self(format!("{:06}", OsRng.gen_range(0..1_000_000u32)))
    }

    /// A fixed code (the sandbox's, or one read back in tests).
    pub fn fixed(code: &str) -> Self {
        Self(code.to_owned())
    }

    /// Whether `text` has the form of a code: six ASCII digits.
    pub fn is_well_formed(text: &str) -> bool {
        text.len() == 6 && text.bytes().all(|b| b.is_ascii_digit())
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The stored form of this code for the challenge `challenge_id`.
    pub fn hash_for(&self, challenge_id: &str) -> String {
        sha256_hex(&format!("{challenge_id}:{}", self.0))
    }
}

/// A pending OTP challenge as stored: the hash of its code, when it expires, attempts left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtpChallenge {
    /// The challenge id (part of the hash input).
    pub id: String,
    /// `OtpCode::hash_for(id)`.
    pub code_hash: String,
    /// The end of the code's validity (exclusive).
    pub expires_at: DateTime<Utc>,
    /// Wrong codes still allowed before the challenge is void.
    pub attempts_left: u8,
}

/// The outcome of presenting a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpVerdict {
    /// The code is right: consume the challenge.
    Accepted,
    /// Wrong code; `attempts_remaining` more may be tried.
    Wrong {
        /// Attempts left after this one.
        attempts_remaining: u8,
    },
    /// Wrong code and no attempts left: void the challenge.
    Exhausted,
    /// The challenge ran out before the code was presented.
    Expired,
}

impl OtpChallenge {
    /// Opens a challenge for `code` at `now`.
    pub fn open(id: String, code: &OtpCode, now: DateTime<Utc>) -> Self {
        let code_hash = code.hash_for(&id);
        Self {
            id,
            code_hash,
            expires_at: now + TimeDelta::minutes(OTP_LIFETIME_MINUTES),
            attempts_left: OTP_ATTEMPTS,
        }
    }

    /// True when `code` is this challenge's (whatever its state; compared in constant time).
    pub fn is_code(&self, code: &str) -> bool {
        constant_time_eq(&OtpCode::fixed(code).hash_for(&self.id), &self.code_hash)
    }

    /// Checks `code` at `now`. The caller stores the consequence (consume, decrement or void).
    pub fn verify(&self, code: &str, now: DateTime<Utc>) -> OtpVerdict {
        if now >= self.expires_at {
            return OtpVerdict::Expired;
        }
        if self.is_code(code) {
            return OtpVerdict::Accepted;
        }
        match self.attempts_left.saturating_sub(1) {
            0 => OtpVerdict::Exhausted,
            attempts_remaining => OtpVerdict::Wrong { attempts_remaining },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-27T00:00:00Z")
            .unwrap()
            .to_utc()
    }

    #[test]
    fn codes_are_six_digits() {
        for _ in 0..100 {
            let code = OtpCode::generate();
            assert_eq!(code.as_str().len(), 6);
            assert!(code.as_str().bytes().all(|b| b.is_ascii_digit()));
            assert!(OtpCode::is_well_formed(code.as_str()));
        }
        assert_eq!(format!("{:?}", OtpCode::fixed("123456")), "OtpCode(******)");
        for text in ["12345", "1234567", "12345a", "", "１２３４５６"] {
            assert!(!OtpCode::is_well_formed(text), "{text}");
        }
    }

    #[test]
    fn five_wrong_codes_count_down_then_exhaust() {
        let mut challenge = OtpChallenge::open("c1".into(), &OtpCode::fixed("123456"), t0());
        for expected in [4, 3, 2, 1] {
            assert_eq!(
                challenge.verify("000000", t0()),
                OtpVerdict::Wrong {
                    attempts_remaining: expected
                }
            );
            challenge.attempts_left -= 1;
        }
        assert_eq!(challenge.verify("000000", t0()), OtpVerdict::Exhausted);
        assert_eq!(challenge.verify("123456", t0()), OtpVerdict::Accepted);
    }

    #[test]
    fn a_code_expires_after_ten_minutes() {
        let challenge = OtpChallenge::open("c1".into(), &OtpCode::fixed("123456"), t0());
        assert_eq!(
            challenge.verify("123456", t0() + TimeDelta::seconds(599)),
            OtpVerdict::Accepted
        );
        assert_eq!(
            challenge.verify("123456", t0() + TimeDelta::minutes(10)),
            OtpVerdict::Expired
        );
        assert_ne!(challenge.code_hash, OtpCode::fixed("123456").hash_for("c2"));
    }
}
