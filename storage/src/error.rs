//! `StorageError`: diesel and pool errors, mapped once at this boundary.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use thiserror::Error;

/// What a repository call can fail with.
#[derive(Debug, Error)]
pub enum StorageError {
    /// A unique or foreign-key constraint refused the write (`constraint` names it when the backend says).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database cannot be reached (pool checkout timed out, connection broken).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A stored value could not be turned back into a domain value.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// Anything else the database said.
    #[error("database error: {0}")]
    Database(String),
}

impl From<DieselError> for StorageError {
    fn from(error: DieselError) -> Self {
        match &error {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                Self::Conflict(info.constraint_name().unwrap_or(info.message()).to_owned())
            }
            DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info) => {
                Self::Conflict(info.constraint_name().unwrap_or(info.message()).to_owned())
            }
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
                Self::Unavailable(info.message().to_owned())
            }
            DieselError::DatabaseError(DatabaseErrorKind::UnableToSendCommand, info) => {
                Self::Unavailable(info.message().to_owned())
            }
            DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, info) => {
                Self::Unavailable(info.message().to_owned())
            }
            DieselError::DatabaseError(_, info) if looks_unavailable(info.message()) => {
                Self::Unavailable(info.message().to_owned())
            }
            _ => Self::Database(error.to_string()),
        }
    }
}

impl From<r2d2::Error> for StorageError {
    fn from(error: r2d2::Error) -> Self {
        Self::Unavailable(error.to_string())
    }
}

impl From<diesel::ConnectionError> for StorageError {
    fn from(error: diesel::ConnectionError) -> Self {
        Self::Unavailable(error.to_string())
    }
}

/// A lost connection, or contention that a retry resolves (a PostgreSQL deadlock victim, SQLite still
/// locked after its busy timeout): answered 503 (retry shortly), not 500.
fn looks_unavailable(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "server closed the connection",
        "connection refused",
        "terminating connection",
        "no connection",
        "deadlock detected",
        "database is locked",
        "database table is locked",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database_error(kind: DatabaseErrorKind, message: &str) -> StorageError {
        DieselError::DatabaseError(kind, Box::new(message.to_owned())).into()
    }

    /// Contention a retry resolves is "unavailable" (503), not an internal error.
    #[test]
    fn contention_is_unavailable_not_a_database_error() {
        for (kind, message) in [
            (
                DatabaseErrorKind::SerializationFailure,
                "could not serialize access due to concurrent update",
            ),
            (DatabaseErrorKind::Unknown, "deadlock detected"),
            (DatabaseErrorKind::Unknown, "database is locked"),
        ] {
            assert!(
                matches!(database_error(kind, message), StorageError::Unavailable(_)),
                "{message}"
            );
        }
        assert!(matches!(
            database_error(DatabaseErrorKind::Unknown, "syntax error at or near"),
            StorageError::Database(_)
        ));
    }
}
