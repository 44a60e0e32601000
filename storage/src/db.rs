//! Connections, the pool and the async door to it.
//!
//! The backend is chosen from the URL scheme: `sqlite://PATH` or `postgres://…`. Every repository
//! function takes `&mut DbConn`; async code reaches one only through [`Db::run`].

use std::sync::Arc;
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, MultiConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use tokio::sync::Semaphore;

use crate::StorageError;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// One connection to either backend; queries are written once against this type.
#[derive(MultiConnection)]
pub enum DbConn {
    /// The embedded default.
    Sqlite(SqliteConnection),
    /// The production database.
    Postgres(PgConnection),
}

/// Where the database is, parsed from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A SQLite file (`sqlite://PATH`).
    Sqlite(String),
    /// A PostgreSQL URL (`postgres://…` or `postgresql://…`).
    Postgres(String),
}

impl DatabaseUrl {
    /// Chooses the backend from the scheme; an unknown scheme is an error.
    pub fn parse(url: &str) -> Result<Self, StorageError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StorageError::Unavailable("sqlite:// needs a file path".into()));
            }
            Ok(Self::Sqlite(path.to_owned()))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(url.to_owned()))
        } else {
            Err(StorageError::Unavailable(format!(
                "unknown database URL scheme in {:?}: use sqlite://PATH or postgres://…",
                redact(url)
            )))
        }
    }

    /// The backend's name, for logs.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    fn connect(&self, connect_timeout: Duration) -> Result<DbConn, StorageError> {
        match self {
            Self::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(path)?;
                conn.batch_execute(
                    "PRAGMA foreign_keys = ON; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;",
                )?;
                Ok(DbConn::Sqlite(conn))
            }
            Self::Postgres(url) => {
                let url = if url.contains("connect_timeout=") {
                    url.clone()
                } else {
                    let sep = if url.contains('?') { '&' } else { '?' };
                    format!("{url}{sep}connect_timeout={}", connect_timeout.as_secs().max(1))
                };
                Ok(DbConn::Postgres(PgConnection::establish(&url)?))
            }
        }
    }
}

/// The URL without its password, safe to log.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Runs the embedded migrations of the URL's backend; returns how many were applied.
pub fn migrate(url: &DatabaseUrl) -> Result<usize, StorageError> {
    let applied = match url.connect(Duration::from_secs(5))? {
        DbConn::Sqlite(mut c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
        DbConn::Postgres(mut c) => c.run_pending_migrations(POSTGRES_MIGRATIONS).map(|v| v.len()),
    };
    applied.map_err(|e| StorageError::Database(format!("migration failed: {e}")))
}

/// r2d2 manager that opens connections of the URL's backend.
#[derive(Debug)]
pub struct ConnectionManager {
    url: DatabaseUrl,
    connect_timeout: Duration,
}

impl r2d2::ManageConnection for ConnectionManager {
    type Connection = DbConn;
    type Error = StorageError;

    fn connect(&self) -> Result<DbConn, StorageError> {
        self.url.connect(self.connect_timeout)
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), StorageError> {
        conn.batch_execute("SELECT 1").map_err(StorageError::from)
    }

    /// A connection whose transaction could not be closed (a failed rollback, a panic inside the work)
    /// is dropped, not pooled: it would hold SQLite's write lock or the audit chain's row lock.
    fn has_broken(&self, conn: &mut DbConn) -> bool {
        std::thread::panicking()
            || <<DbConn as Connection>::TransactionManager as TransactionManager<DbConn>>::is_broken_transaction_manager(conn)
    }
}

/// How the pool is sized and how long a caller waits for a connection.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Connections in the pool (and permits of [`Db::run`]).
    pub max_size: u32,
    /// How long a checkout (including connecting) may take before the database counts as unavailable.
    pub checkout_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_size: 8,
            checkout_timeout: Duration::from_secs(3),
        }
    }
}

/// The pool, and the async door to it.
#[derive(Clone)]
pub struct Db {
    pool: r2d2::Pool<ConnectionManager>,
    permits: Arc<Semaphore>,
    backend: &'static str,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("backend", &self.backend)
            .field("state", &self.pool.state())
            .finish()
    }
}

/// A snapshot of the pool for metrics.
#[derive(Debug, Clone, Copy)]
pub struct PoolStatus {
    /// Connections open.
    pub connections: u32,
    /// Connections idle.
    pub idle: u32,
    /// Callers waiting for a permit.
    pub waiting: usize,
    /// The pool's size.
    pub max_size: u32,
}

impl Db {
    /// Builds the pool without connecting: a database that is down at start-up answers 503 until it is up.
    pub fn new(url: &DatabaseUrl, options: &PoolOptions) -> Self {
        // SQLite allows one writer at a time; more connections than this only add lock waits.
        let max_size = match url {
            DatabaseUrl::Sqlite(_) => options.max_size.min(4),
            DatabaseUrl::Postgres(_) => options.max_size,
        }
        .max(1);
        let manager = ConnectionManager {
            url: url.clone(),
            connect_timeout: options.checkout_timeout,
        };
        let pool = r2d2::Pool::builder()
            .max_size(max_size)
            .min_idle(Some(0))
            .connection_timeout(options.checkout_timeout)
            // A PostgreSQL connection can die under us (restart, network); check it before use.
            .test_on_check_out(matches!(url, DatabaseUrl::Postgres(_)))
            .error_handler(Box::new(r2d2::LoggingErrorHandler))
            .build_unchecked(manager);
        Self {
            pool,
            permits: Arc::new(Semaphore::new(max_size as usize)),
            backend: url.backend(),
        }
    }

    /// The backend's name.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Runs `work` with a pooled connection on the blocking pool, bounded by the pool's size.
    pub async fn run<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConn) -> Result<T, StorageError> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StorageError::Unavailable("database pool closed".into()))?;
        let pool = self.pool.clone();
        let span = tracing::Span::current();
        let joined = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let _permit = permit;
            let mut conn = pool.get()?;
            work(&mut conn)
        })
        .await;
        joined.map_err(|e| StorageError::Database(format!("database task failed: {e}")))?
    }

    /// The pool's state now.
    pub fn status(&self) -> PoolStatus {
        let state = self.pool.state();
        let available = self.permits.available_permits();
        let max_size = self.pool.max_size();
        PoolStatus {
            connections: state.connections,
            idle: state.idle_connections,
            waiting: if available == 0 { 1 } else { 0 },
            max_size,
        }
    }
}

/// Runs `work` in one write transaction: all of it commits, or none.
///
/// Write transactions run one at a time, on both backends, so what one reads is still true when it
/// writes (an OTP's attempts left, a lockout count, whether access is on while a session is issued).
/// SQLite transactions start `IMMEDIATE`, taking the database's write lock up front (two writers never
/// both read and then fail to upgrade, which `busy_timeout` cannot resolve). PostgreSQL transactions
/// start by locking the audit chain's single row, which every audited change takes anyway, so under
/// READ COMMITTED no two of them interleave their reads and writes.
pub fn write_tx<T>(
    conn: &mut DbConn,
    work: impl FnOnce(&mut DbConn) -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    write_tx_as(conn, work)
}

/// [`write_tx`] for work that fails with the caller's own error type: any `Err` rolls back.
pub fn write_tx_as<T, E: From<StorageError>>(
    conn: &mut DbConn,
    work: impl FnOnce(&mut DbConn) -> Result<T, E>,
) -> Result<T, E> {
    match conn {
        DbConn::Sqlite(inner) => AnsiTransactionManager::begin_transaction_sql(inner, "BEGIN IMMEDIATE")
            .map_err(StorageError::from)?,
        // READ COMMITTED named, not taken from the server's default: under REPEATABLE READ or
        // SERIALIZABLE the row lock below would fail contended transactions instead of queueing them.
        DbConn::Postgres(inner) => {
            AnsiTransactionManager::begin_transaction_sql(inner, "BEGIN ISOLATION LEVEL READ COMMITTED")
                .map_err(StorageError::from)?;
            if let Err(error) = conn.batch_execute("SELECT 1 FROM audit_chain WHERE id = 1 FOR UPDATE") {
                if let Err(rollback) = <DbConn as Connection>::TransactionManager::rollback_transaction(conn)
                {
                    tracing::warn!(%rollback, "rollback failed");
                }
                return Err(StorageError::from(error).into());
            }
        }
    }
    match work(conn) {
        Ok(value) => {
            <DbConn as Connection>::TransactionManager::commit_transaction(conn)
                .map_err(StorageError::from)?;
            Ok(value)
        }
        Err(error) => {
            if let Err(rollback) = <DbConn as Connection>::TransactionManager::rollback_transaction(conn) {
                tracing::warn!(%rollback, "rollback failed");
            }
            Err(error)
        }
    }
}

/// A round trip to the database (readiness).
pub fn ping(conn: &mut DbConn) -> Result<(), StorageError> {
    // A real row rather than `SELECT 1`: a database that answers but cannot be read (a damaged SQLite
    // file, a schema that was never migrated) is not ready either.
    crate::repo::audit::head(conn).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_follows_the_scheme() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://gsp.db").ok(),
            Some(DatabaseUrl::Sqlite("gsp.db".into()))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///tmp/gsp.db").ok(),
            Some(DatabaseUrl::Sqlite("/tmp/gsp.db".into()))
        );
        assert!(matches!(
            DatabaseUrl::parse("postgres://u@h/db"),
            Ok(DatabaseUrl::Postgres(_))
        ));
        assert!(matches!(
            DatabaseUrl::parse("postgresql://u@h/db"),
            Ok(DatabaseUrl::Postgres(_))
        ));
        assert!(DatabaseUrl::parse("mysql://u@h/db").is_err());
        assert!(DatabaseUrl::parse("gsp.db").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/gsp"),
            "postgres://app:***@db:5432/gsp"
        );
        assert_eq!(redact("sqlite://gsp.db"), "sqlite://gsp.db");
    }
}
