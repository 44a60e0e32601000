//! Taxpayers: identity, credentials and login lockout.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::schema::taxpayers;
use crate::{DbConn, StorageError};

/// A stored taxpayer.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = taxpayers)]
pub struct TaxpayerRow {
    /// Internal id (UUID).
    pub id: String,
    /// The GSTIN, normalised.
    pub gstin: String,
    /// The portal username.
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// When the password was last set.
    pub password_changed_at: NaiveDateTime,
    /// Legal name of business.
    pub legal_name: String,
    /// Trade name, if any.
    pub trade_name: Option<String>,
    /// E-mail of the authorised signatory.
    pub email: Option<String>,
    /// Mobile of the authorised signatory.
    pub mobile: Option<String>,
    /// `Active`, `Cancelled`, ...
    pub registration_status: String,
    /// Consecutive failed logins.
    pub failed_logins: i32,
    /// Logins refused until then.
    pub locked_until: Option<NaiveDateTime>,
    /// When the taxpayer was provisioned (the registration date the sandbox reports).
    pub created_at: NaiveDateTime,
}

/// Inserts a taxpayer; a duplicate GSTIN or username is `Conflict`.
pub fn insert(conn: &mut DbConn, row: &TaxpayerRow) -> Result<(), StorageError> {
    diesel::insert_into(taxpayers::table).values(row).execute(conn)?;
    Ok(())
}

/// The taxpayer with this username.
pub fn find_by_username(conn: &mut DbConn, username: &str) -> Result<Option<TaxpayerRow>, StorageError> {
    Ok(taxpayers::table
        .filter(taxpayers::username.eq(username))
        .select(TaxpayerRow::as_select())
        .first(conn)
        .optional()?)
}

/// The taxpayer with this GSTIN.
pub fn find_by_gstin(conn: &mut DbConn, gstin: &str) -> Result<Option<TaxpayerRow>, StorageError> {
    Ok(taxpayers::table
        .filter(taxpayers::gstin.eq(gstin))
        .select(TaxpayerRow::as_select())
        .first(conn)
        .optional()?)
}

/// The taxpayer with this id.
pub fn find(conn: &mut DbConn, id: &str) -> Result<Option<TaxpayerRow>, StorageError> {
    Ok(taxpayers::table
        .find(id)
        .select(TaxpayerRow::as_select())
        .first(conn)
        .optional()?)
}

/// Stores the failure count and lockout after a failed login.
pub fn set_login_failures(
    conn: &mut DbConn,
    id: &str,
    failed_logins: i32,
    locked_until: Option<NaiveDateTime>,
) -> Result<(), StorageError> {
    diesel::update(taxpayers::table.find(id))
        .set((
            taxpayers::failed_logins.eq(failed_logins),
            taxpayers::locked_until.eq(locked_until),
        ))
        .execute(conn)?;
    Ok(())
}

/// Replaces the password hash and clears any lockout.
pub fn set_password(
    conn: &mut DbConn,
    id: &str,
    password_hash: &str,
    changed_at: NaiveDateTime,
) -> Result<(), StorageError> {
    diesel::update(taxpayers::table.find(id))
        .set((
            taxpayers::password_hash.eq(password_hash),
            taxpayers::password_changed_at.eq(changed_at),
            taxpayers::failed_logins.eq(0),
            taxpayers::locked_until.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)?;
    Ok(())
}

/// Counts one more failed login and returns the new count (atomic under concurrent attempts).
pub fn increment_failed_logins(conn: &mut DbConn, id: &str) -> Result<i32, StorageError> {
    diesel::update(taxpayers::table.find(id))
        .set(taxpayers::failed_logins.eq(taxpayers::failed_logins + 1))
        .execute(conn)?;
    Ok(taxpayers::table
        .find(id)
        .select(taxpayers::failed_logins)
        .first(conn)?)
}
