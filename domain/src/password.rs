//! Taxpayer passwords: the strength policy and argon2id hashing.

use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, PasswordHash as Phc};
use rand::rngs::OsRng;

use crate::DomainError;

/// What the gateway accepts as a new password, after the GST Portal's rule:
/// 8 to 128 characters with a letter, a digit and a symbol, not containing the username.
#[derive(Debug, Clone, Copy, Default)]
pub struct PasswordPolicy;

impl PasswordPolicy {
    /// Refuses a password that breaks the policy, naming the rule it breaks.
    pub fn check(self, password: &str, username: &str) -> Result<(), DomainError> {
        let length = password.chars().count();
        if length < 8 {
            return Err(DomainError::WeakPassword("at least 8 characters"));
        }
        if length > 128 {
            return Err(DomainError::WeakPassword("at most 128 characters"));
        }
        if !password.chars().any(char::is_alphabetic) {
            return Err(DomainError::WeakPassword("at least one letter"));
        }
        if !password.chars().any(|c| c.is_ascii_digit()) {
            return Err(DomainError::WeakPassword("at least one digit"));
        }
        if password.chars().all(char::is_alphanumeric) {
            return Err(DomainError::WeakPassword("at least one symbol"));
        }
        if !username.is_empty() && password.to_lowercase().contains(&username.to_lowercase()) {
            return Err(DomainError::WeakPassword("must not contain the username"));
        }
        Ok(())
    }
}

/// An argon2id hash in PHC string form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Hashes `password` with argon2id and a fresh salt. CPU-heavy: call it off the async workers.
    pub fn create(password: &str) -> Result<Self, DomainError> {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| Self(h.to_string()))
            .map_err(|e| DomainError::Credential(e.to_string()))
    }

    /// Wraps a stored PHC string.
    pub fn from_stored(phc: String) -> Self {
        Self(phc)
    }

    /// True when `password` matches. CPU-heavy: call it off the async workers.
    pub fn verify(&self, password: &str) -> Result<bool, DomainError> {
        let parsed = Phc::new(&self.0).map_err(|e| DomainError::Credential(e.to_string()))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    }

    /// The PHC string, for storage.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_the_broken_rule() {
        let p = PasswordPolicy;
        assert_eq!(
            p.check("Sh0rt!", "asha"),
            Err(DomainError::WeakPassword("at least 8 characters"))
        );
        assert_eq!(
            p.check("NoDigitsHere!", "asha"),
            Err(DomainError::WeakPassword("at least one digit"))
        );
        assert_eq!(
            p.check("NoSymbols123", "asha"),
            Err(DomainError::WeakPassword("at least one symbol"))
        );
        assert_eq!(
            p.check("12345678!", "asha"),
            Err(DomainError::WeakPassword("at least one letter"))
        );
        assert_eq!(
            p.check("ASHA-2026-pass", "asha"),
            Err(DomainError::WeakPassword("must not contain the username"))
        );
        assert_eq!(p.check("Gst-Portal-2026", "asha"), Ok(()));
    }

    #[test]
    fn argon2id_hash_verifies_only_the_same_password() {
        let hash = PasswordHash::create("Gst-Portal-2026").unwrap();
        assert!(hash.as_str().starts_with("$argon2id$"));
        assert_eq!(hash.verify("Gst-Portal-2026"), Ok(true));
        assert_eq!(hash.verify("Gst-Portal-2027"), Ok(false));
        assert!(PasswordHash::from_stored("garbage".into()).verify("x").is_err());
    }
}
