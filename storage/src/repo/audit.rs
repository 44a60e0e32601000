//! The audit log: append-only, hash-chained, and the change feed other instances poll.
//!
//! Each event stores the hash of the one before it, and its own hash over its fields and that link.
//! Editing a row breaks its own hash; deleting one breaks the next link (and the gapless ids).
//! Appends lock the single `audit_chain` row first, so ids are assigned in commit order and
//! `id > last_seen` is a reliable change feed.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use sha2::{Digest, Sha256};

use crate::schema::{audit_chain, audit_events};
use crate::{DbConn, StorageError, from_db, to_db};

/// The hash the first event links to.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened, before it is appended.
#[derive(Debug, Clone, Default)]
pub struct NewAuditEvent {
    /// When.
    pub at: Option<DateTime<Utc>>,
    /// Who: `taxpayer:<username>`, `gsp:<client_id>`, `operator`, `system`.
    pub actor: String,
    /// What: `access.enabled`, `session.revoked`, ...
    pub action: String,
    /// The taxpayer concerned.
    pub gstin: Option<String>,
    /// The GSP concerned.
    pub gsp_client_id: Option<String>,
    /// The session concerned.
    pub session_id: Option<String>,
    /// The caller's IP.
    pub ip: Option<String>,
    /// The request that caused it.
    pub request_id: Option<String>,
    /// Anything else, as JSON.
    pub detail: serde_json::Value,
}

/// A stored event.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_events)]
pub struct AuditRow {
    /// Gapless, increasing id.
    pub id: i64,
    /// When.
    pub at: NaiveDateTime,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// Taxpayer.
    pub gstin: Option<String>,
    /// GSP client.
    pub gsp_client_id: Option<String>,
    /// Session.
    pub session_id: Option<String>,
    /// Caller IP.
    pub ip: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
    /// JSON detail.
    pub detail: String,
    /// Hash of the previous event.
    pub prev_hash: String,
    /// Hash of this event.
    pub hash: String,
}

impl AuditRow {
    fn computed_hash(&self) -> String {
        let at = from_db(self.at).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        let fields = [
            self.prev_hash.as_str(),
            &self.id.to_string(),
            &at,
            &self.actor,
            &self.action,
            self.gstin.as_deref().unwrap_or("\u{0}"),
            self.gsp_client_id.as_deref().unwrap_or("\u{0}"),
            self.session_id.as_deref().unwrap_or("\u{0}"),
            self.ip.as_deref().unwrap_or("\u{0}"),
            self.request_id.as_deref().unwrap_or("\u{0}"),
            &self.detail,
        ];
        let mut hasher = Sha256::new();
        for field in fields {
            hasher.update((field.len() as u64).to_be_bytes());
            hasher.update(field.as_bytes());
        }
        hex::encode(hasher.finalize())
    }
}

/// Appends an event. Call it inside the transaction whose change it records.
pub fn append(conn: &mut DbConn, event: NewAuditEvent, now: DateTime<Utc>) -> Result<AuditRow, StorageError> {
    diesel::update(audit_chain::table.find(1))
        .set(audit_chain::last_id.eq(audit_chain::last_id + 1))
        .execute(conn)?;
    let (id, prev_hash): (i64, String) = audit_chain::table
        .find(1)
        .select((audit_chain::last_id, audit_chain::last_hash))
        .first(conn)?;
    let mut row = AuditRow {
        id,
        at: to_db(event.at.unwrap_or(now)),
        actor: event.actor,
        action: event.action,
        gstin: event.gstin,
        gsp_client_id: event.gsp_client_id,
        session_id: event.session_id,
        ip: event.ip,
        request_id: event.request_id,
        detail: event.detail.to_string(),
        prev_hash,
        hash: String::new(),
    };
    row.hash = row.computed_hash();
    diesel::insert_into(audit_events::table)
        .values(&row)
        .execute(conn)?;
    diesel::update(audit_chain::table.find(1))
        .set(audit_chain::last_hash.eq(&row.hash))
        .execute(conn)?;
    Ok(row)
}

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only this taxpayer's.
    pub gstin: Option<String>,
    /// Only ids below this (paging backwards).
    pub before: Option<i64>,
    /// At most this many.
    pub limit: i64,
}

/// Events, newest first.
pub fn list(conn: &mut DbConn, query: &AuditQuery) -> Result<Vec<AuditRow>, StorageError> {
    let mut q = audit_events::table.select(AuditRow::as_select()).into_boxed();
    if let Some(gstin) = &query.gstin {
        q = q.filter(audit_events::gstin.eq(gstin.clone()));
    }
    if let Some(before) = query.before {
        q = q.filter(audit_events::id.lt(before));
    }
    Ok(q.order(audit_events::id.desc()).limit(query.limit).load(conn)?)
}

/// One entry of the change feed.
#[derive(Debug, Clone, Queryable)]
pub struct Change {
    /// Event id (the feed position).
    pub id: i64,
    /// When it happened.
    pub at: NaiveDateTime,
    /// What happened.
    pub action: String,
    /// Taxpayer concerned.
    pub gstin: Option<String>,
    /// GSP client concerned.
    pub gsp_client_id: Option<String>,
    /// Session concerned.
    pub session_id: Option<String>,
}

/// Events after `after`, oldest first, at most `limit`.
pub fn changes_since(conn: &mut DbConn, after: i64, limit: i64) -> Result<Vec<Change>, StorageError> {
    Ok(audit_events::table
        .filter(audit_events::id.gt(after))
        .order(audit_events::id.asc())
        .limit(limit)
        .select((
            audit_events::id,
            audit_events::at,
            audit_events::action,
            audit_events::gstin,
            audit_events::gsp_client_id,
            audit_events::session_id,
        ))
        .load(conn)?)
}

/// The newest event id (0 for an empty log).
pub fn head(conn: &mut DbConn) -> Result<i64, StorageError> {
    Ok(audit_chain::table
        .find(1)
        .select(audit_chain::last_id)
        .first(conn)?)
}

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Events checked.
    pub checked: u64,
    /// The first broken link, if any: the event id where it shows, and why.
    pub first_broken: Option<(i64, String)>,
}

/// Walks the whole chain from the first event.
pub fn verify_chain(conn: &mut DbConn) -> Result<ChainReport, StorageError> {
    let mut expected_id = 1i64;
    let mut prev_hash = GENESIS_HASH.to_owned();
    let mut checked = 0u64;
    loop {
        let batch: Vec<AuditRow> = audit_events::table
            .filter(audit_events::id.ge(expected_id))
            .order(audit_events::id.asc())
            .limit(1000)
            .select(AuditRow::as_select())
            .load(conn)?;
        if batch.is_empty() {
            break;
        }
        for row in batch {
            let broken = if row.id != expected_id {
                Some(format!("event {expected_id} is missing"))
            } else if row.prev_hash != prev_hash {
                Some("its link to the previous event does not match".to_owned())
            } else if row.computed_hash() != row.hash {
                Some("its content does not match its hash".to_owned())
            } else {
                None
            };
            if let Some(reason) = broken {
                return Ok(ChainReport {
                    checked,
                    first_broken: Some((row.id, reason)),
                });
            }
            checked += 1;
            prev_hash = row.hash;
            expected_id += 1;
        }
    }
    let (last_id, last_hash): (i64, String) = audit_chain::table
        .find(1)
        .select((audit_chain::last_id, audit_chain::last_hash))
        .first(conn)?;
    if last_id != expected_id - 1 || last_hash != prev_hash {
        return Ok(ChainReport {
            checked,
            first_broken: Some((
                expected_id,
                format!("the log ends before event {last_id}, the chain head"),
            )),
        });
    }
    Ok(ChainReport {
        checked,
        first_broken: None,
    })
}
