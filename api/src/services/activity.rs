//! Reading the audit log: the operator's view and each taxpayer's own activity.

use chrono::{DateTime, Utc};
use gsp_gateway_storage::repo::audit::{self, AuditQuery, AuditRow};
use gsp_gateway_storage::{DbConn, StorageError, from_db};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorCode};

/// One audit event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEvent {
    /// Increasing id; page with `before`.
    #[schema(example = 42)]
    pub id: i64,
    /// When it happened.
    #[serde(serialize_with = "crate::json::utc_seconds")]
    pub at: DateTime<Utc>,
    /// Who: `taxpayer:<username>`, `gsp:<client_id>`, `operator` or `system`.
    #[schema(example = "taxpayer:asha.traders")]
    pub actor: String,
    /// What: `access.enabled`, `access.disabled`, `otp.requested`, `session.created`, `session.refreshed`,
    /// `session.revoked`, `session.logged_out`, `refresh_token.reused`, `login.failed`, ...
    #[schema(example = "access.enabled")]
    pub action: String,
    /// The taxpayer concerned (null when none).
    #[schema(required = true, example = "24AAUPV7468F1ZW")]
    pub gstin: Option<String>,
    /// The GSP client concerned (null when none).
    #[schema(required = true)]
    pub gsp_client_id: Option<String>,
    /// The session concerned (null when none).
    #[schema(required = true)]
    pub session_id: Option<String>,
    /// The caller's IP address (null when unknown).
    #[schema(required = true, example = "203.0.113.7")]
    pub ip: Option<String>,
    /// The request that caused it (null for the gateway's own events).
    #[schema(required = true)]
    pub request_id: Option<String>,
    /// Details of the event.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// A page of audit events, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditPage {
    /// The events.
    pub items: Vec<AuditEvent>,
    /// Pass as `before` for the next (older) page; null on the last page.
    #[schema(required = true, example = 42)]
    pub next_before: Option<i64>,
}

/// Paging parameters.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Only this taxpayer's events (operator only).
    #[param(schema_with = crate::openapi::gstin_filter_schema)]
    pub gstin: Option<String>,
    /// At most this many events, 1-200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// Only events with an id below this.
    #[param(minimum = 1)]
    pub before: Option<i64>,
}

impl From<AuditRow> for AuditEvent {
    fn from(row: AuditRow) -> Self {
        Self {
            id: row.id,
            at: from_db(row.at),
            actor: row.actor,
            action: row.action,
            gstin: row.gstin,
            gsp_client_id: row.gsp_client_id,
            session_id: row.session_id,
            ip: row.ip,
            request_id: row.request_id,
            detail: serde_json::from_str(&row.detail).unwrap_or(serde_json::Value::String(row.detail)),
        }
    }
}

/// Checks paging parameters; returns the query for `gstin`.
pub fn query(gstin: Option<String>, limit: Option<i64>, before: Option<i64>) -> Result<AuditQuery, ApiError> {
    let limit = limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::field(
            ErrorCode::ValidationFailed,
            "limit",
            "must be from 1 to 200",
        ));
    }
    if before.is_some_and(|b| b < 1) {
        return Err(ApiError::field(
            ErrorCode::ValidationFailed,
            "before",
            "must be a positive event id",
        ));
    }
    Ok(AuditQuery { gstin, before, limit })
}

/// One page of events.
///
/// One event more than the page is read: `next_before` is set only when an older event exists, so the
/// last page says so (`null`) rather than sending the client to an empty one.
pub fn page(conn: &mut DbConn, query: &AuditQuery) -> Result<AuditPage, StorageError> {
    let mut rows = audit::list(
        conn,
        &AuditQuery {
            limit: query.limit + 1,
            ..query.clone()
        },
    )?;
    let more = rows.len() as i64 > query.limit;
    rows.truncate(query.limit as usize);
    let next_before = if more { rows.last().map(|r| r.id) } else { None };
    Ok(AuditPage {
        items: rows.into_iter().map(AuditEvent::from).collect(),
        next_before,
    })
}
