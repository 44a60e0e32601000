//! gsp-gateway's persistence: one diesel schema over SQLite and PostgreSQL.
//!
//! Repositories (in [`repo`]) are synchronous functions over `&mut DbConn` that return
//! `Result<_, StorageError>`; diesel errors are mapped once, in [`StorageError`]'s `From` impls.
//! Async callers go through [`Db::run`]. Writes that belong together go through [`write_tx`].

mod db;
mod error;
pub mod repo;
pub mod schema;
mod time;

pub use db::{
    ConnectionManager, DatabaseUrl, Db, DbConn, PoolOptions, PoolStatus, migrate, ping, redact, write_tx,
    write_tx_as,
};
pub use error::StorageError;
pub use time::{from_db, to_db};
