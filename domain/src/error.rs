//! The one error type of the domain.

use thiserror::Error;

/// Everything a rule of the domain can refuse. The api maps each variant to a problem `code`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    /// The GSTIN is malformed or its check character is wrong.
    #[error("invalid GSTIN: {0}")]
    InvalidGstin(&'static str),
    /// The PAN is not five letters, four digits and a letter.
    #[error("invalid PAN: {0}")]
    InvalidPan(&'static str),
    /// Not a state code the GST System assigns.
    #[error("invalid state code")]
    InvalidStateCode,
    /// An API access duration outside 6..=720 whole hours.
    #[error("duration_hours must be a whole number of hours from 6 to 720 (6 hours to 30 days)")]
    InvalidDuration,
    /// A username that breaks the username rules.
    #[error("invalid username: {0}")]
    InvalidUsername(&'static str),
    /// A new password that breaks the password policy.
    #[error("weak password: {0}")]
    WeakPassword(&'static str),
    /// A new password equal to the current one.
    #[error("the new password must differ from the current one")]
    PasswordUnchanged,
    /// The taxpayer has not enabled API access.
    #[error("the taxpayer has not enabled API access")]
    ApiAccessDisabled,
    /// The taxpayer's API access window has run out.
    #[error("the taxpayer's API access window has ended")]
    ApiAccessExpired,
    /// The session was revoked (by the taxpayer, by logout, by refresh-token reuse or by disabling access).
    #[error("the session has been revoked")]
    SessionRevoked,
    /// The session ended with the access window it belonged to.
    #[error("the session has expired")]
    SessionExpired,
    /// A stored secret could not be processed (a corrupt hash, for instance).
    #[error("stored credential is unusable: {0}")]
    Credential(String),
}
