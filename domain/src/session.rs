//! A GSP's session on a taxpayer's behalf, and the decision whether a call may pass.

use chrono::{DateTime, Utc};

use crate::{ApiAccess, DomainError};

/// The lifecycle state of one session (consent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionState {
    /// When the session ends unless revoked first: the end of the taxpayer's window.
    pub expires_at: DateTime<Utc>,
    /// When the session was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// How a session looks at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    /// Usable.
    Active,
    /// Revoked by the taxpayer, by logout, by refresh-token reuse or by disabling access.
    Revoked,
    /// Ended with its access window.
    Expired,
}

impl SessionStatus {
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

impl SessionState {
    /// The status at `now`.
    pub fn status_at(&self, now: DateTime<Utc>) -> SessionStatus {
        if self.revoked_at.is_some() {
            SessionStatus::Revoked
        } else if now >= self.expires_at {
            SessionStatus::Expired
        } else {
            SessionStatus::Active
        }
    }
}

/// May a call made in `session` for a taxpayer whose access is `access` pass at `now`?
///
/// The order is the contract's: the live access window first (so a GSP whose sessions ended because
/// the taxpayer switched access off is told exactly that), then the session itself.
pub fn authorize(session: &SessionState, access: &ApiAccess, now: DateTime<Utc>) -> Result<(), DomainError> {
    access.open_until(now)?;
    match session.status_at(now) {
        SessionStatus::Active => Ok(()),
        SessionStatus::Revoked => Err(DomainError::SessionRevoked),
        SessionStatus::Expired => Err(DomainError::SessionExpired),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::AccessDuration;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-27T00:00:00Z")
            .unwrap()
            .to_utc()
    }

    #[test]
    fn access_is_checked_before_the_session() {
        let revoked = SessionState {
            expires_at: t0() + TimeDelta::hours(6),
            revoked_at: Some(t0()),
        };
        assert_eq!(
            authorize(&revoked, &ApiAccess::Disabled, t0()),
            Err(DomainError::ApiAccessDisabled)
        );
        let access = ApiAccess::enable(AccessDuration::from_hours(6).unwrap(), t0());
        assert_eq!(
            authorize(&revoked, &access, t0()),
            Err(DomainError::SessionRevoked)
        );
        assert_eq!(
            authorize(&revoked, &access, t0() + TimeDelta::hours(7)),
            Err(DomainError::ApiAccessExpired)
        );
    }

    #[test]
    fn an_active_session_in_an_open_window_passes() {
        let access = ApiAccess::enable(AccessDuration::from_hours(24).unwrap(), t0());
        let session = SessionState {
            expires_at: t0() + TimeDelta::hours(24),
            revoked_at: None,
        };
        assert_eq!(authorize(&session, &access, t0() + TimeDelta::hours(1)), Ok(()));
        let short = SessionState {
            expires_at: t0() + TimeDelta::hours(1),
            revoked_at: None,
        };
        assert_eq!(
            authorize(&short, &access, t0() + TimeDelta::hours(2)),
            Err(DomainError::SessionExpired)
        );
    }
}
