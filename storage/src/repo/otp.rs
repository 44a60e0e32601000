//! OTP challenges (hashed codes) and the taxpayer's inbox (the delivered messages).

use chrono::NaiveDateTime;
use diesel::prelude::*;
use gsp_gateway_domain::OtpChallenge;

use crate::schema::{otp_challenges, otp_inbox, taxpayers};
use crate::{DbConn, StorageError, from_db};

/// The challenge is waiting for its code.
pub const PENDING: &str = "pending";
/// The code was exchanged for a session.
pub const USED: &str = "used";
/// Ended unused: too many wrong codes, access switched off, its session ended (EVC), or its
/// delivery failed.
pub const VOIDED: &str = "voided";
/// A newer request from the same GSP replaced it.
pub const REPLACED: &str = "replaced";

/// What a challenge's code is for: opening a GSP session (the contract's OTP).
pub const FOR_SESSION: &str = "session";
/// What a challenge's code is for: signing one filing by EVC, within a session (the GST System
/// dialect's `EVCOTP`).
pub const FOR_EVC: &str = "evc";

/// A stored OTP challenge.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = otp_challenges)]
pub struct ChallengeRow {
    /// Challenge id (`otp_request_id`).
    pub id: String,
    /// Addressed to.
    pub taxpayer_id: String,
    /// Requested by.
    pub gsp_client_id: String,
    /// `OtpCode::hash_for(id)`.
    pub code_hash: String,
    /// When requested.
    pub created_at: NaiveDateTime,
    /// When the code stops working.
    pub expires_at: NaiveDateTime,
    /// Wrong codes still allowed.
    pub attempts_left: i32,
    /// `pending`, `used`, `voided` or `replaced`.
    pub state: String,
    /// [`FOR_SESSION`] or [`FOR_EVC`].
    pub purpose: String,
    /// EVC: the session that asked (the only one that may sign with the code).
    pub session_id: Option<String>,
    /// EVC: the signatory's PAN.
    pub pan: Option<String>,
    /// EVC: the form the code signs (`R1`, `R3B`, …), as the GSP named it.
    pub form_type: Option<String>,
}

impl ChallengeRow {
    /// The domain challenge.
    pub fn to_domain(&self) -> OtpChallenge {
        OtpChallenge {
            id: self.id.clone(),
            code_hash: self.code_hash.clone(),
            expires_at: from_db(self.expires_at),
            attempts_left: u8::try_from(self.attempts_left.max(0)).unwrap_or(0),
        }
    }
}

/// A delivered OTP message in the taxpayer's inbox.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = otp_inbox)]
pub struct InboxRow {
    /// The challenge it belongs to.
    pub challenge_id: String,
    /// Addressee.
    pub taxpayer_id: String,
    /// Who asked.
    pub gsp_name: String,
    /// The code itself (the message, as an SMS would carry it).
    pub code: String,
    /// When sent.
    pub created_at: NaiveDateTime,
    /// Until when the code works.
    pub expires_at: NaiveDateTime,
    /// [`FOR_SESSION`] or [`FOR_EVC`].
    pub purpose: String,
    /// EVC: the signatory's PAN.
    pub pan: Option<String>,
    /// EVC: the form the code signs.
    pub form_type: Option<String>,
}

/// Replaces the pair's pending session challenge (and its inbox message); returns the replaced ids.
pub fn replace_pending(
    conn: &mut DbConn,
    taxpayer_id: &str,
    gsp_client_id: &str,
) -> Result<Vec<String>, StorageError> {
    let ids: Vec<String> = otp_challenges::table
        .filter(otp_challenges::taxpayer_id.eq(taxpayer_id))
        .filter(otp_challenges::gsp_client_id.eq(gsp_client_id))
        .filter(otp_challenges::purpose.eq(FOR_SESSION))
        .filter(otp_challenges::state.eq(PENDING))
        .select(otp_challenges::id)
        .load(conn)?;
    mark_replaced(conn, ids)
}

/// Replaces the session's pending EVC challenge (and its inbox message); returns the replaced ids.
pub fn replace_pending_evc(conn: &mut DbConn, session_id: &str) -> Result<Vec<String>, StorageError> {
    let ids: Vec<String> = otp_challenges::table
        .filter(otp_challenges::session_id.eq(session_id))
        .filter(otp_challenges::purpose.eq(FOR_EVC))
        .filter(otp_challenges::state.eq(PENDING))
        .select(otp_challenges::id)
        .load(conn)?;
    mark_replaced(conn, ids)
}

fn mark_replaced(conn: &mut DbConn, ids: Vec<String>) -> Result<Vec<String>, StorageError> {
    if !ids.is_empty() {
        diesel::delete(otp_inbox::table.filter(otp_inbox::challenge_id.eq_any(&ids))).execute(conn)?;
        diesel::update(otp_challenges::table.filter(otp_challenges::id.eq_any(&ids)))
            .set(otp_challenges::state.eq(REPLACED))
            .execute(conn)?;
    }
    Ok(ids)
}

/// Inserts a challenge.
pub fn insert(conn: &mut DbConn, row: &ChallengeRow) -> Result<(), StorageError> {
    diesel::insert_into(otp_challenges::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// The pair's pending session challenge (expired or not).
pub fn find_pending(
    conn: &mut DbConn,
    taxpayer_id: &str,
    gsp_client_id: &str,
) -> Result<Option<ChallengeRow>, StorageError> {
    Ok(otp_challenges::table
        .filter(otp_challenges::taxpayer_id.eq(taxpayer_id))
        .filter(otp_challenges::gsp_client_id.eq(gsp_client_id))
        .filter(otp_challenges::purpose.eq(FOR_SESSION))
        .filter(otp_challenges::state.eq(PENDING))
        .order(otp_challenges::created_at.desc())
        .select(ChallengeRow::as_select())
        .first(conn)
        .optional()?)
}

/// The pair's session challenges opened since `since` that are no longer pending (used, voided or
/// replaced).
pub fn closed_since(
    conn: &mut DbConn,
    taxpayer_id: &str,
    gsp_client_id: &str,
    since: NaiveDateTime,
) -> Result<Vec<ChallengeRow>, StorageError> {
    Ok(otp_challenges::table
        .filter(otp_challenges::taxpayer_id.eq(taxpayer_id))
        .filter(otp_challenges::gsp_client_id.eq(gsp_client_id))
        .filter(otp_challenges::purpose.eq(FOR_SESSION))
        .filter(otp_challenges::state.ne(PENDING))
        .filter(otp_challenges::created_at.gt(since))
        .select(ChallengeRow::as_select())
        .load(conn)?)
}

/// How many challenges for `purpose` the pair opened since `since` (the OTP request rate).
pub fn count_since(
    conn: &mut DbConn,
    taxpayer_id: &str,
    gsp_client_id: &str,
    purpose: &str,
    since: NaiveDateTime,
) -> Result<i64, StorageError> {
    Ok(otp_challenges::table
        .filter(otp_challenges::taxpayer_id.eq(taxpayer_id))
        .filter(otp_challenges::gsp_client_id.eq(gsp_client_id))
        .filter(otp_challenges::purpose.eq(purpose))
        .filter(otp_challenges::created_at.gt(since))
        .count()
        .get_result(conn)?)
}

/// The oldest challenge for `purpose` of the pair since `since` (to say when the rate allows another).
pub fn oldest_since(
    conn: &mut DbConn,
    taxpayer_id: &str,
    gsp_client_id: &str,
    purpose: &str,
    since: NaiveDateTime,
) -> Result<Option<NaiveDateTime>, StorageError> {
    Ok(otp_challenges::table
        .filter(otp_challenges::taxpayer_id.eq(taxpayer_id))
        .filter(otp_challenges::gsp_client_id.eq(gsp_client_id))
        .filter(otp_challenges::purpose.eq(purpose))
        .filter(otp_challenges::created_at.gt(since))
        .select(otp_challenges::created_at)
        .order(otp_challenges::created_at.asc())
        .first(conn)
        .optional()?)
}

/// The session's pending EVC challenge (expired or not).
pub fn find_pending_evc(conn: &mut DbConn, session_id: &str) -> Result<Option<ChallengeRow>, StorageError> {
    Ok(otp_challenges::table
        .filter(otp_challenges::session_id.eq(session_id))
        .filter(otp_challenges::purpose.eq(FOR_EVC))
        .filter(otp_challenges::state.eq(PENDING))
        .order(otp_challenges::created_at.desc())
        .select(ChallengeRow::as_select())
        .first(conn)
        .optional()?)
}

/// The session's EVC challenges opened since `since` that are no longer pending.
pub fn closed_evc_since(
    conn: &mut DbConn,
    session_id: &str,
    since: NaiveDateTime,
) -> Result<Vec<ChallengeRow>, StorageError> {
    Ok(otp_challenges::table
        .filter(otp_challenges::session_id.eq(session_id))
        .filter(otp_challenges::purpose.eq(FOR_EVC))
        .filter(otp_challenges::state.ne(PENDING))
        .filter(otp_challenges::created_at.gt(since))
        .select(ChallengeRow::as_select())
        .load(conn)?)
}

/// Counts a wrong code.
pub fn set_attempts_left(conn: &mut DbConn, id: &str, attempts_left: i32) -> Result<(), StorageError> {
    diesel::update(otp_challenges::table.find(id))
        .set(otp_challenges::attempts_left.eq(attempts_left))
        .execute(conn)?;
    Ok(())
}

/// Moves a pending challenge to `state` and deletes its inbox message; false if it was not pending.
pub fn close(conn: &mut DbConn, id: &str, state: &str) -> Result<bool, StorageError> {
    diesel::delete(otp_inbox::table.filter(otp_inbox::challenge_id.eq(id))).execute(conn)?;
    let n = diesel::update(
        otp_challenges::table
            .find(id)
            .filter(otp_challenges::state.eq(PENDING)),
    )
    .set((
        otp_challenges::state.eq(state),
        otp_challenges::attempts_left.eq(0),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Puts a message in the taxpayer's inbox.
pub fn deliver_to_inbox(conn: &mut DbConn, row: &InboxRow) -> Result<(), StorageError> {
    diesel::insert_into(otp_inbox::table).values(row).execute(conn)?;
    Ok(())
}

/// The taxpayer's unexpired messages, newest first; expired ones are deleted on the way.
pub fn inbox(
    conn: &mut DbConn,
    taxpayer_id: &str,
    now: NaiveDateTime,
) -> Result<Vec<InboxRow>, StorageError> {
    diesel::delete(
        otp_inbox::table
            .filter(otp_inbox::taxpayer_id.eq(taxpayer_id))
            .filter(otp_inbox::expires_at.le(now)),
    )
    .execute(conn)?;
    Ok(otp_inbox::table
        .filter(otp_inbox::taxpayer_id.eq(taxpayer_id))
        .order((otp_inbox::created_at.desc(), otp_inbox::challenge_id.desc()))
        .select(InboxRow::as_select())
        .load(conn)?)
}

/// Voids every pending challenge of the taxpayer and deletes their inbox messages (access switched
/// off: an OTP asked for before must not open a session after access is switched on again); returns
/// how many were voided.
pub fn void_all_pending(conn: &mut DbConn, taxpayer_id: &str) -> Result<usize, StorageError> {
    diesel::delete(otp_inbox::table.filter(otp_inbox::taxpayer_id.eq(taxpayer_id))).execute(conn)?;
    Ok(diesel::update(
        otp_challenges::table
            .filter(otp_challenges::taxpayer_id.eq(taxpayer_id))
            .filter(otp_challenges::state.eq(PENDING)),
    )
    .set((
        otp_challenges::state.eq(VOIDED),
        otp_challenges::attempts_left.eq(0),
    ))
    .execute(conn)?)
}

/// Whose pending EVC challenges end: one session's, every session's of a GSP client, or every
/// session's of a taxpayer.
#[derive(Debug, Clone, Copy)]
pub enum EvcOwner<'a> {
    /// One session.
    Session(&'a str),
    /// Every session of this GSP client (disabled: all of them are revoked).
    Client(&'a str),
    /// Every session of this taxpayer (access switched off: all of them are revoked).
    Taxpayer(&'a str),
}

/// A pending EVC challenge that [`void_pending_evc`] voided: what its audit event names.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct VoidedEvc {
    /// Challenge id (`otp_request_id`).
    pub id: String,
    /// The GSP client that asked.
    pub gsp_client_id: String,
    /// The session that asked.
    pub session_id: Option<String>,
    /// The taxpayer's GSTIN.
    pub gstin: String,
    /// The form the code was to sign.
    pub form_type: Option<String>,
}

/// Voids the pending EVC challenges of sessions that ended and deletes their inbox messages (a
/// session's filing codes end with it); returns those it voided, oldest first. Selected by owner, not
/// by a list of session ids: a client's sessions may be many, its pending EVC codes are few.
pub fn void_pending_evc(conn: &mut DbConn, owner: EvcOwner<'_>) -> Result<Vec<VoidedEvc>, StorageError> {
    let pending = otp_challenges::table
        .inner_join(taxpayers::table)
        .filter(otp_challenges::purpose.eq(FOR_EVC))
        .filter(otp_challenges::state.eq(PENDING))
        .order((otp_challenges::created_at.asc(), otp_challenges::id.asc()))
        .select((
            otp_challenges::id,
            otp_challenges::gsp_client_id,
            otp_challenges::session_id,
            taxpayers::gstin,
            otp_challenges::form_type,
        ))
        .into_boxed();
    let voided: Vec<VoidedEvc> = match owner {
        EvcOwner::Session(id) => pending.filter(otp_challenges::session_id.eq(id)),
        EvcOwner::Client(id) => pending.filter(otp_challenges::gsp_client_id.eq(id)),
        EvcOwner::Taxpayer(id) => pending.filter(otp_challenges::taxpayer_id.eq(id)),
    }
    .load(conn)?;
    if voided.is_empty() {
        return Ok(voided);
    }
    let ids: Vec<&str> = voided.iter().map(|v| v.id.as_str()).collect();
    diesel::delete(otp_inbox::table.filter(otp_inbox::challenge_id.eq_any(&ids))).execute(conn)?;
    diesel::update(otp_challenges::table.filter(otp_challenges::id.eq_any(&ids)))
        .set((
            otp_challenges::state.eq(VOIDED),
            otp_challenges::attempts_left.eq(0),
        ))
        .execute(conn)?;
    Ok(voided)
}

/// Deletes every expired inbox message (housekeeping).
pub fn purge_expired_inbox(conn: &mut DbConn, now: NaiveDateTime) -> Result<usize, StorageError> {
    Ok(diesel::delete(otp_inbox::table.filter(otp_inbox::expires_at.le(now))).execute(conn)?)
}
