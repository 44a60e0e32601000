//! How long a taxpayer's API access stays on.

use chrono::TimeDelta;

use crate::DomainError;

/// A whole number of hours from 6 (the GST Portal's minimum) to 720 (30 days).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccessDuration(u16);

impl AccessDuration {
    /// The shortest window the portal offers.
    pub const MIN_HOURS: u16 = 6;
    /// The longest window the portal offers: 30 days.
    pub const MAX_HOURS: u16 = 720;

    /// Accepts 6..=720 whole hours.
    pub fn from_hours(hours: i64) -> Result<Self, DomainError> {
        match u16::try_from(hours) {
            Ok(h) if (Self::MIN_HOURS..=Self::MAX_HOURS).contains(&h) => Ok(Self(h)),
            _ => Err(DomainError::InvalidDuration),
        }
    }

    /// The number of hours.
    pub fn hours(self) -> u16 {
        self.0
    }

    /// The duration as a time delta.
    pub fn as_delta(self) -> TimeDelta {
        TimeDelta::hours(i64::from(self.0))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn bounds_are_six_hours_and_thirty_days() {
        assert_eq!(AccessDuration::from_hours(5), Err(DomainError::InvalidDuration));
        assert_eq!(AccessDuration::from_hours(6).map(AccessDuration::hours), Ok(6));
        assert_eq!(
            AccessDuration::from_hours(720).map(AccessDuration::hours),
            Ok(720)
        );
        assert_eq!(AccessDuration::from_hours(721), Err(DomainError::InvalidDuration));
        assert_eq!(AccessDuration::from_hours(-6), Err(DomainError::InvalidDuration));
    }

    proptest! {
        #[test]
        fn accepts_exactly_the_portal_range(hours in -10_000i64..10_000) {
            prop_assert_eq!(AccessDuration::from_hours(hours).is_ok(), (6..=720).contains(&hours));
        }
    }
}
