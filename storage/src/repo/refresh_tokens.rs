//! Refresh tokens: stored as SHA-256, single use. A used one stays, so its reuse can be recognised.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::schema::refresh_tokens;
use crate::{DbConn, StorageError};

/// A stored refresh token.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_tokens)]
pub struct RefreshTokenRow {
    /// SHA-256 (hex) of the token.
    pub token_hash: String,
    /// The session it refreshes.
    pub session_id: String,
    /// The client it was issued to.
    pub gsp_client_id: String,
    /// When it was issued.
    pub issued_at: NaiveDateTime,
    /// When it was used (it can be used once).
    pub used_at: Option<NaiveDateTime>,
}

/// Inserts a refresh token.
pub fn insert(conn: &mut DbConn, row: &RefreshTokenRow) -> Result<(), StorageError> {
    diesel::insert_into(refresh_tokens::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// The token with this hash.
pub fn find(conn: &mut DbConn, token_hash: &str) -> Result<Option<RefreshTokenRow>, StorageError> {
    Ok(refresh_tokens::table
        .find(token_hash)
        .select(RefreshTokenRow::as_select())
        .first(conn)
        .optional()?)
}

/// Marks the token used; false when it already was (a concurrent refresh won).
pub fn mark_used(conn: &mut DbConn, token_hash: &str, at: NaiveDateTime) -> Result<bool, StorageError> {
    let n = diesel::update(
        refresh_tokens::table
            .find(token_hash)
            .filter(refresh_tokens::used_at.is_null()),
    )
    .set(refresh_tokens::used_at.eq(at))
    .execute(conn)?;
    Ok(n == 1)
}
