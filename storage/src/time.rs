//! Timestamps are stored as naive UTC on both backends.

use chrono::{DateTime, NaiveDateTime, Utc};

/// A UTC instant as stored (microsecond precision, like PostgreSQL's).
pub fn to_db(at: DateTime<Utc>) -> NaiveDateTime {
    let naive = at.naive_utc();
    naive.with_nanosecond_truncated()
}

/// A stored timestamp back as a UTC instant.
pub fn from_db(at: NaiveDateTime) -> DateTime<Utc> {
    at.and_utc()
}

trait TruncateMicros {
    fn with_nanosecond_truncated(self) -> Self;
}

impl TruncateMicros for NaiveDateTime {
    fn with_nanosecond_truncated(self) -> Self {
        use chrono::Timelike;
        let micros = self.nanosecond() / 1_000;
        self.with_nanosecond(micros * 1_000).unwrap_or(self)
    }
}
