//! GSP clients: the tax software allowed to ask taxpayers for sessions.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::schema::gsp_clients;
use crate::{DbConn, StorageError};

/// A stored GSP client. The secret is kept only as its SHA-256.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = gsp_clients)]
pub struct GspClientRow {
    /// The public client id.
    pub client_id: String,
    /// Display name, shown to taxpayers.
    pub name: String,
    /// SHA-256 (hex) of the client secret.
    pub secret_hash: String,
    /// A disabled client is refused everywhere.
    pub enabled: bool,
    /// When it was provisioned.
    pub created_at: NaiveDateTime,
    /// `status_cd` as a number (true) or a string (false) in the GST System dialect; `None` follows the
    /// server's setting.
    pub gstn_numeric_status_cd: Option<bool>,
}

/// Inserts a client.
pub fn insert(conn: &mut DbConn, row: &GspClientRow) -> Result<(), StorageError> {
    diesel::insert_into(gsp_clients::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// The client with this id.
pub fn find(conn: &mut DbConn, client_id: &str) -> Result<Option<GspClientRow>, StorageError> {
    Ok(gsp_clients::table
        .find(client_id)
        .select(GspClientRow::as_select())
        .first(conn)
        .optional()?)
}

/// Enables or disables a client; false when there is no such client.
pub fn set_enabled(conn: &mut DbConn, client_id: &str, enabled: bool) -> Result<bool, StorageError> {
    let n = diesel::update(gsp_clients::table.find(client_id))
        .set(gsp_clients::enabled.eq(enabled))
        .execute(conn)?;
    Ok(n == 1)
}

/// Replaces a client's secret hash; false when there is no such client.
pub fn set_secret_hash(conn: &mut DbConn, client_id: &str, secret_hash: &str) -> Result<bool, StorageError> {
    let n = diesel::update(gsp_clients::table.find(client_id))
        .set(gsp_clients::secret_hash.eq(secret_hash))
        .execute(conn)?;
    Ok(n == 1)
}

/// Sets how the dialect writes `status_cd` for a client (`None`: the server's setting); false when there
/// is no such client.
pub fn set_numeric_status_cd(
    conn: &mut DbConn,
    client_id: &str,
    numeric: Option<bool>,
) -> Result<bool, StorageError> {
    let n = diesel::update(gsp_clients::table.find(client_id))
        .set(gsp_clients::gstn_numeric_status_cd.eq(numeric))
        .execute(conn)?;
    Ok(n == 1)
}
