//! API access windows, one row a taxpayer.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use gsp_gateway_domain::{AccessDuration, ApiAccess};

use crate::schema::api_access;
use crate::{DbConn, StorageError, from_db, to_db};

/// A stored access setting.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = api_access, treat_none_as_null = true)]
pub struct AccessRow {
    /// The taxpayer.
    pub taxpayer_id: String,
    /// Switched on?
    pub enabled: bool,
    /// Chosen duration in hours (null while disabled).
    pub duration_hours: Option<i32>,
    /// Window start (null while disabled).
    pub enabled_at: Option<NaiveDateTime>,
    /// Window end (null while disabled).
    pub expires_at: Option<NaiveDateTime>,
    /// Last change.
    pub updated_at: NaiveDateTime,
}

impl AccessRow {
    /// The domain value this row stores.
    pub fn to_domain(&self) -> Result<ApiAccess, StorageError> {
        match (
            self.enabled,
            self.duration_hours,
            self.enabled_at,
            self.expires_at,
        ) {
            (false, ..) => Ok(ApiAccess::Disabled),
            (true, Some(hours), Some(enabled_at), Some(expires_at)) => Ok(ApiAccess::Enabled {
                duration: AccessDuration::from_hours(i64::from(hours))
                    .map_err(|e| StorageError::Corrupt(format!("api_access.duration_hours: {e}")))?,
                enabled_at: from_db(enabled_at),
                expires_at: from_db(expires_at),
            }),
            _ => Err(StorageError::Corrupt(format!(
                "api_access row of {} is incomplete",
                self.taxpayer_id
            ))),
        }
    }
}

/// The taxpayer's access; a taxpayer who never switched it on is `Disabled`.
pub fn get(conn: &mut DbConn, taxpayer_id: &str) -> Result<ApiAccess, StorageError> {
    let row = api_access::table
        .find(taxpayer_id)
        .select(AccessRow::as_select())
        .first(conn)
        .optional()?;
    row.map_or(Ok(ApiAccess::Disabled), |r| r.to_domain())
}

/// Stores `access` for the taxpayer.
pub fn put(
    conn: &mut DbConn,
    taxpayer_id: &str,
    access: &ApiAccess,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), StorageError> {
    let row = match access {
        ApiAccess::Disabled => AccessRow {
            taxpayer_id: taxpayer_id.to_owned(),
            enabled: false,
            duration_hours: None,
            enabled_at: None,
            expires_at: None,
            updated_at: to_db(now),
        },
        ApiAccess::Enabled {
            duration,
            enabled_at,
            expires_at,
        } => AccessRow {
            taxpayer_id: taxpayer_id.to_owned(),
            enabled: true,
            duration_hours: Some(i32::from(duration.hours())),
            enabled_at: Some(to_db(*enabled_at)),
            expires_at: Some(to_db(*expires_at)),
            updated_at: to_db(now),
        },
    };
    let updated = diesel::update(api_access::table.find(taxpayer_id))
        .set(&row)
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(api_access::table)
            .values(&row)
            .execute(conn)?;
    }
    Ok(())
}
