//! GSP sessions (consents): one a successful OTP exchange, ended by the window, revocation or logout.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use gsp_gateway_domain::SessionState;

use super::otp;
use crate::schema::{gsp_clients, sessions, taxpayers};
use crate::{DbConn, StorageError, from_db};

/// A stored session.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions)]
pub struct SessionRow {
    /// Session id (UUID), the `sid` claim.
    pub id: String,
    /// The taxpayer it acts for.
    pub taxpayer_id: String,
    /// The GSP client holding it.
    pub gsp_client_id: String,
    /// `rest` or `gstn` (the GST System dialect).
    pub channel: String,
    /// When the OTP was exchanged.
    pub created_at: NaiveDateTime,
    /// Last call made with it (kept to the minute).
    pub last_used_at: NaiveDateTime,
    /// Its end: the taxpayer's window end.
    pub expires_at: NaiveDateTime,
    /// When it was revoked.
    pub revoked_at: Option<NaiveDateTime>,
    /// Why: `taxpayer`, `logout`, `refresh_token_reused`, `access_disabled`.
    pub revoked_reason: Option<String>,
    /// SHA-256 of the dialect's opaque auth token.
    pub gstn_token_hash: Option<String>,
    /// The dialect's app key (Base64).
    pub gstn_app_key: Option<String>,
    /// The dialect's session key (Base64).
    pub gstn_sek: Option<String>,
    /// When the dialect's current auth token expires.
    pub gstn_token_expires_at: Option<NaiveDateTime>,
}

impl SessionRow {
    /// The lifecycle state the domain reasons about.
    pub fn state(&self) -> SessionState {
        SessionState {
            expires_at: from_db(self.expires_at),
            revoked_at: self.revoked_at.map(from_db),
        }
    }
}

/// A session with the names a taxpayer needs to recognise it.
#[derive(Debug, Clone)]
pub struct SessionListing {
    /// The session.
    pub session: SessionRow,
    /// The GSP's display name.
    pub gsp_name: String,
}

/// The routing facts of a session: whose it is.
#[derive(Debug, Clone)]
pub struct SessionOwner {
    /// The session.
    pub session: SessionRow,
    /// The taxpayer's GSTIN.
    pub gstin: String,
    /// The taxpayer's portal username.
    pub username: String,
}

/// Inserts a session.
pub fn insert(conn: &mut DbConn, row: &SessionRow) -> Result<(), StorageError> {
    diesel::insert_into(sessions::table).values(row).execute(conn)?;
    Ok(())
}

/// The session with this id.
pub fn find(conn: &mut DbConn, id: &str) -> Result<Option<SessionRow>, StorageError> {
    Ok(sessions::table
        .find(id)
        .select(SessionRow::as_select())
        .first(conn)
        .optional()?)
}

/// The session and its taxpayer's GSTIN and username.
pub fn find_with_owner(conn: &mut DbConn, id: &str) -> Result<Option<SessionOwner>, StorageError> {
    let found = sessions::table
        .inner_join(taxpayers::table)
        .filter(sessions::id.eq(id))
        .select((SessionRow::as_select(), taxpayers::gstin, taxpayers::username))
        .first::<(SessionRow, String, String)>(conn)
        .optional()?;
    Ok(found.map(|(session, gstin, username)| SessionOwner {
        session,
        gstin,
        username,
    }))
}

/// The dialect session whose auth token hashes to `token_hash`.
pub fn find_by_gstn_token(conn: &mut DbConn, token_hash: &str) -> Result<Option<SessionOwner>, StorageError> {
    let found = sessions::table
        .inner_join(taxpayers::table)
        .filter(sessions::gstn_token_hash.eq(token_hash))
        .select((SessionRow::as_select(), taxpayers::gstin, taxpayers::username))
        .first::<(SessionRow, String, String)>(conn)
        .optional()?;
    Ok(found.map(|(session, gstin, username)| SessionOwner {
        session,
        gstin,
        username,
    }))
}

/// Every session of the taxpayer, newest first, with the GSP's name.
pub fn list_for_taxpayer(conn: &mut DbConn, taxpayer_id: &str) -> Result<Vec<SessionListing>, StorageError> {
    let rows = sessions::table
        .inner_join(gsp_clients::table)
        .filter(sessions::taxpayer_id.eq(taxpayer_id))
        .order((sessions::created_at.desc(), sessions::id.desc()))
        .select((SessionRow::as_select(), gsp_clients::name))
        .load::<(SessionRow, String)>(conn)?;
    Ok(rows
        .into_iter()
        .map(|(session, gsp_name)| SessionListing { session, gsp_name })
        .collect())
}

/// How many unrevoked, unexpired sessions this GSP holds for this taxpayer at `now`.
pub fn count_active(
    conn: &mut DbConn,
    taxpayer_id: &str,
    gsp_client_id: &str,
    now: NaiveDateTime,
) -> Result<i64, StorageError> {
    Ok(sessions::table
        .filter(sessions::taxpayer_id.eq(taxpayer_id))
        .filter(sessions::gsp_client_id.eq(gsp_client_id))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(now))
        .count()
        .get_result(conn)?)
}

/// How many sessions are active at `now`, across all taxpayers (a gauge for operators).
pub fn count_all_active(conn: &mut DbConn, now: NaiveDateTime) -> Result<i64, StorageError> {
    Ok(sessions::table
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(now))
        .count()
        .get_result(conn)?)
}

/// Revokes one session if it is not revoked yet: the EVC codes it voided with it (its pending one)
/// when this call revoked it, `None` when it was revoked already.
pub fn revoke(
    conn: &mut DbConn,
    id: &str,
    reason: &str,
    now: NaiveDateTime,
) -> Result<Option<Vec<otp::VoidedEvc>>, StorageError> {
    let n = diesel::update(sessions::table.find(id).filter(sessions::revoked_at.is_null()))
        .set((sessions::revoked_at.eq(now), sessions::revoked_reason.eq(reason)))
        .execute(conn)?;
    if n == 1 {
        return Ok(Some(otp::void_pending_evc(conn, otp::EvcOwner::Session(id))?));
    }
    Ok(None)
}

/// Revokes every unrevoked session of the taxpayer; returns the ids it revoked. The caller voids the
/// taxpayer's pending OTPs: its EVC codes (`otp::void_pending_evc`, to record each) and the rest
/// (`otp::void_all_pending`), and counts them.
pub fn revoke_all_for_taxpayer(
    conn: &mut DbConn,
    taxpayer_id: &str,
    reason: &str,
    now: NaiveDateTime,
) -> Result<Vec<String>, StorageError> {
    let ids: Vec<String> = sessions::table
        .filter(sessions::taxpayer_id.eq(taxpayer_id))
        .filter(sessions::revoked_at.is_null())
        .select(sessions::id)
        .load(conn)?;
    diesel::update(
        sessions::table
            .filter(sessions::taxpayer_id.eq(taxpayer_id))
            .filter(sessions::revoked_at.is_null()),
    )
    .set((sessions::revoked_at.eq(now), sessions::revoked_reason.eq(reason)))
    .execute(conn)?;
    Ok(ids)
}

/// What revoking a GSP client's sessions ended.
#[derive(Debug, Clone)]
pub struct ClientRevoked {
    /// The sessions it revoked, as (session id, GSTIN).
    pub sessions: Vec<(String, String)>,
    /// The pending EVC codes of the client's sessions, voided.
    pub voided_evc: Vec<otp::VoidedEvc>,
}

/// Revokes every unrevoked session a GSP client holds, and voids its pending EVC codes.
pub fn revoke_all_for_client(
    conn: &mut DbConn,
    client_id: &str,
    reason: &str,
    now: NaiveDateTime,
) -> Result<ClientRevoked, StorageError> {
    let revoked: Vec<(String, String)> = sessions::table
        .inner_join(taxpayers::table)
        .filter(sessions::gsp_client_id.eq(client_id))
        .filter(sessions::revoked_at.is_null())
        .select((sessions::id, taxpayers::gstin))
        .load(conn)?;
    diesel::update(
        sessions::table
            .filter(sessions::gsp_client_id.eq(client_id))
            .filter(sessions::revoked_at.is_null()),
    )
    .set((sessions::revoked_at.eq(now), sessions::revoked_reason.eq(reason)))
    .execute(conn)?;
    let voided_evc = otp::void_pending_evc(conn, otp::EvcOwner::Client(client_id))?;
    Ok(ClientRevoked {
        sessions: revoked,
        voided_evc,
    })
}

/// Moves the end of the taxpayer's live sessions to `expires_at` (re-enabling moves the window).
pub fn move_live_ends(
    conn: &mut DbConn,
    taxpayer_id: &str,
    expires_at: NaiveDateTime,
    now: NaiveDateTime,
) -> Result<usize, StorageError> {
    Ok(diesel::update(
        sessions::table
            .filter(sessions::taxpayer_id.eq(taxpayer_id))
            .filter(sessions::revoked_at.is_null())
            .filter(sessions::expires_at.gt(now)),
    )
    .set(sessions::expires_at.eq(expires_at))
    .execute(conn)?)
}

/// Records that the sessions were used at `at` (batched by the gateway, at most once a minute each).
pub fn touch(conn: &mut DbConn, ids: &[String], at: NaiveDateTime) -> Result<(), StorageError> {
    for chunk in ids.chunks(500) {
        diesel::update(
            sessions::table
                .filter(sessions::id.eq_any(chunk))
                .filter(sessions::last_used_at.lt(at)),
        )
        .set(sessions::last_used_at.eq(at))
        .execute(conn)?;
    }
    Ok(())
}

/// The GST System dialect's keys of a session.
#[derive(Debug, Clone)]
pub struct GstnKeys<'a> {
    /// SHA-256 of the opaque auth token.
    pub token_hash: &'a str,
    /// When that token expires.
    pub token_expires_at: NaiveDateTime,
    /// The client's app key (Base64).
    pub app_key: &'a str,
    /// The session key (Base64).
    pub sek: &'a str,
}

/// Makes a session a dialect session, or replaces its dialect keys (AUTHTOKEN, REFRESHTOKEN).
pub fn set_gstn_keys(conn: &mut DbConn, id: &str, keys: &GstnKeys<'_>) -> Result<(), StorageError> {
    diesel::update(sessions::table.find(id))
        .set((
            sessions::channel.eq("gstn"),
            sessions::gstn_token_hash.eq(keys.token_hash),
            sessions::gstn_token_expires_at.eq(keys.token_expires_at),
            sessions::gstn_app_key.eq(keys.app_key),
            sessions::gstn_sek.eq(keys.sek),
        ))
        .execute(conn)?;
    Ok(())
}
