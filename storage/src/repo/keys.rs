//! Signing and decryption keys, persisted so restarts keep tokens valid.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::schema::signing_keys;
use crate::{DbConn, StorageError};

/// A stored key. `private_key` never leaves the gateway.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = signing_keys)]
pub struct KeyRow {
    /// Key id (`kid`).
    pub kid: String,
    /// `jwt` (session and taxpayer tokens) or `gstn_rsa` (the dialect's app-key decryption).
    pub purpose: String,
    /// `EdDSA`, `RSA`.
    pub algorithm: String,
    /// Private key material (PKCS#8, Base64 or PEM).
    pub private_key: String,
    /// Public key material.
    pub public_key: String,
    /// When created; the newest unretired key of a purpose is the active one.
    pub created_at: NaiveDateTime,
    /// When it stopped signing.
    pub retired_at: Option<NaiveDateTime>,
    /// Published (JWKS) until then; after that it can be forgotten.
    pub publish_until: Option<NaiveDateTime>,
}

/// Inserts a key.
pub fn insert(conn: &mut DbConn, row: &KeyRow) -> Result<(), StorageError> {
    diesel::insert_into(signing_keys::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// Keys of `purpose` still worth holding at `now` (active, or retired but still published), newest first.
pub fn live(conn: &mut DbConn, purpose: &str, now: NaiveDateTime) -> Result<Vec<KeyRow>, StorageError> {
    Ok(signing_keys::table
        .filter(signing_keys::purpose.eq(purpose))
        .filter(
            signing_keys::publish_until
                .is_null()
                .or(signing_keys::publish_until.gt(now)),
        )
        .order((signing_keys::created_at.desc(), signing_keys::kid.desc()))
        .select(KeyRow::as_select())
        .load(conn)?)
}

/// Retires every active key of `purpose`, keeping it published until `publish_until`.
pub fn retire_active(
    conn: &mut DbConn,
    purpose: &str,
    now: NaiveDateTime,
    publish_until: NaiveDateTime,
) -> Result<usize, StorageError> {
    Ok(diesel::update(
        signing_keys::table
            .filter(signing_keys::purpose.eq(purpose))
            .filter(signing_keys::retired_at.is_null()),
    )
    .set((
        signing_keys::retired_at.eq(now),
        signing_keys::publish_until.eq(publish_until),
    ))
    .execute(conn)?)
}
