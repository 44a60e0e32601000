//! Manage API Access: the taxpayer's window during which GSPs may act for them.

use chrono::{DateTime, Utc};

use crate::{AccessDuration, DomainError};

/// What a taxpayer's API access looks like at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessStatus {
    /// Switched on and the window is still open.
    Enabled,
    /// Switched off (or never switched on).
    Disabled,
    /// Switched on, but the chosen duration has run out.
    Expired,
}

impl AccessStatus {
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::Disabled => "disabled",
            Self::Expired => "expired",
        }
    }
}

/// A taxpayer's API access setting: off, or on for a window `[enabled_at, expires_at)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiAccess {
    /// Access is off.
    Disabled,
    /// Access was switched on for `duration`, from `enabled_at` to `expires_at`.
    Enabled {
        /// The chosen duration.
        duration: AccessDuration,
        /// When the window opened.
        enabled_at: DateTime<Utc>,
        /// When the window closes (exclusive).
        expires_at: DateTime<Utc>,
    },
}

impl ApiAccess {
    /// Opens a new window of `duration` at `now`, replacing any earlier one.
    pub fn enable(duration: AccessDuration, now: DateTime<Utc>) -> Self {
        Self::Enabled {
            duration,
            enabled_at: now,
            expires_at: now + duration.as_delta(),
        }
    }

    /// The status at `now`: a window that ends at T is enabled at T-1s and expired at T.
    pub fn status_at(&self, now: DateTime<Utc>) -> AccessStatus {
        match self {
            Self::Disabled => AccessStatus::Disabled,
            Self::Enabled { expires_at, .. } if now < *expires_at => AccessStatus::Enabled,
            Self::Enabled { .. } => AccessStatus::Expired,
        }
    }

    /// The end of the open window, or why there is none.
    pub fn open_until(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>, DomainError> {
        match self {
            Self::Disabled => Err(DomainError::ApiAccessDisabled),
            Self::Enabled { expires_at, .. } if now < *expires_at => Ok(*expires_at),
            Self::Enabled { .. } => Err(DomainError::ApiAccessExpired),
        }
    }

    /// The window's end, if access was switched on.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::Disabled => None,
            Self::Enabled { expires_at, .. } => Some(*expires_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-27T05:26:34Z")
            .unwrap()
            .to_utc()
    }

    #[test]
    fn a_window_ending_at_t_is_enabled_just_before_and_expired_at_t() {
        let access = ApiAccess::enable(AccessDuration::from_hours(6).unwrap(), t0());
        let end = t0() + TimeDelta::hours(6);
        assert_eq!(access.expires_at(), Some(end));
        assert_eq!(
            access.status_at(end - TimeDelta::seconds(1)),
            AccessStatus::Enabled
        );
        assert_eq!(access.status_at(end), AccessStatus::Expired);
        assert_eq!(access.open_until(end), Err(DomainError::ApiAccessExpired));
        assert_eq!(access.open_until(t0()), Ok(end));
    }

    #[test]
    fn disabled_access_is_never_open() {
        assert_eq!(ApiAccess::Disabled.status_at(t0()), AccessStatus::Disabled);
        assert_eq!(
            ApiAccess::Disabled.open_until(t0()),
            Err(DomainError::ApiAccessDisabled)
        );
    }
}
