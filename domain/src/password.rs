//! Taxpayer passwords: the strength policy and argon2id hashing.

use argon2::password_hash::{Output, ParamsString, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash as Phc, Version};
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

/// The capacity of argon2's working memory (19 MiB at the default parameters), in bytes: above glibc's
/// largest mmap threshold (32 MiB), so the buffer is always a mapping of its own, handed back to the
/// system when the hash is done. Allocated the usual way, a freed 19 MiB buffer stays in an allocator
/// arena where other threads' small allocations split it, and a flood of logins left hundreds of MiB of
/// RSS behind (540 MB after 400 concurrent wrong logins for 15 s; this way 77 MB at the peak, 38 MB
/// right after). Only the pages argon2 uses are touched.
const MAPPED_BYTES: usize = 33 << 20;

/// Runs argon2 with `params` over `password` and `salt` into `out`.
fn argon2id_into(
    algorithm: Algorithm,
    version: Version,
    params: Params,
    password: &str,
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    let mut memory = Vec::with_capacity(blocks.max(MAPPED_BYTES / std::mem::size_of::<Block>()));
    memory.resize(blocks, Block::default());
    argon2.hash_password_into_with_memory(password.as_bytes(), salt, out, &mut memory)
}

fn credential(error: impl std::fmt::Display) -> DomainError {
    DomainError::Credential(error.to_string())
}

impl PasswordHash {
    /// Hashes `password` with argon2id (the crate's default parameters) and a fresh salt. CPU-heavy:
    /// call it off the async workers.
    pub fn create(password: &str) -> Result<Self, DomainError> {
        let salt = SaltString::generate(&mut OsRng);
        let mut salt_bytes = [0u8; 64];
        let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(credential)?;
        let params = Params::DEFAULT;
        let hash = Output::init_with(params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN), |out| {
            argon2id_into(
                Algorithm::Argon2id,
                Version::V0x13,
                params.clone(),
                password,
                salt_bytes,
                out,
            )
            .map_err(|_| argon2::password_hash::Error::Crypto)
        })
        .map_err(credential)?;
        let phc = Phc {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params).map_err(credential)?,
            salt: Some(salt.as_salt()),
            hash: Some(hash),
        };
        Ok(Self(phc.to_string()))
    }

    /// Wraps a stored PHC string.
    pub fn from_stored(phc: String) -> Self {
        Self(phc)
    }

    /// True when `password` matches (compared in constant time). CPU-heavy: call it off the async
    /// workers.
    pub fn verify(&self, password: &str) -> Result<bool, DomainError> {
        let parsed = Phc::new(&self.0).map_err(credential)?;
        let algorithm = Algorithm::try_from(parsed.algorithm).map_err(credential)?;
        let version = parsed
            .version
            .map_or(Ok(Version::default()), Version::try_from)
            .map_err(credential)?;
        let params = Params::try_from(&parsed).map_err(credential)?;
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return Err(DomainError::Credential(
                "the stored hash has no salt or no hash".into(),
            ));
        };
        let mut salt_bytes = [0u8; 64];
        let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(credential)?;
        let computed = Output::init_with(expected.len(), |out| {
            argon2id_into(algorithm, version, params, password, salt_bytes, out)
                .map_err(|_| argon2::password_hash::Error::Crypto)
        })
        .map_err(credential)?;
        // `Output`'s equality is constant-time.
        Ok(computed == expected)
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

    /// Hashing into our own working memory changes nothing on the wire: hashes stored before verify,
    /// and new ones verify with the argon2 crate's own verifier.
    #[test]
    fn hashes_are_those_of_the_argon2_crate_both_ways() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let salt = SaltString::generate(&mut OsRng);
        let stored = Argon2::default()
            .hash_password(b"Gst-Portal-2026", &salt)
            .unwrap()
            .to_string();
        let verifies_only_its_password = |stored: String| {
            let stored = PasswordHash::from_stored(stored);
            assert_eq!(stored.verify("Gst-Portal-2026"), Ok(true));
            assert_eq!(stored.verify("Gst-Portal-2027"), Ok(false));
        };
        verifies_only_its_password(stored);

        let created = PasswordHash::create("Gst-Portal-2026").unwrap();
        let parsed = Phc::new(created.as_str()).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"Gst-Portal-2026", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"Gst-Portal-2027", &parsed)
                .is_err()
        );
        assert!(created.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));

        // A hash stored with other parameters (more memory than the default) verifies too.
        let params = Params::new(24 * 1024, 1, 1, None).unwrap();
        let stronger = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"Gst-Portal-2026", &salt)
            .unwrap()
            .to_string();
        verifies_only_its_password(stronger);
    }
}
