//! The taxpayer's side: login with lockout, password change, Manage API Access, sessions, inbox.

use chrono::{DateTime, TimeDelta, Utc};
use gsp_gateway_domain::{AccessDuration, AccessStatus, ApiAccess, PasswordHash, PasswordPolicy};
use gsp_gateway_storage::repo::audit::{self, NewAuditEvent};
use gsp_gateway_storage::repo::taxpayers::{self, TaxpayerRow};
use gsp_gateway_storage::repo::{access, otp, sessions};
use gsp_gateway_storage::{DbConn, from_db, to_db, write_tx, write_tx_as};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::evc;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};
use crate::json::rfc3339;
use crate::settings::Settings;

/// Login credentials.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct LoginRequest {
    /// Portal username.
    #[schema(example = "asha.traders")]
    pub username: String,
    /// Password.
    #[schema(example = "Gst-Portal-2026", format = Password)]
    pub password: String,
}

/// A taxpayer token.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LoginResponse {
    /// Bearer token for `/v1/taxpayer/*` (never accepted elsewhere).
    pub access_token: String,
    /// `Bearer`.
    #[schema(schema_with = crate::openapi::bearer_schema)]
    pub token_type: &'static str,
    /// Seconds until the token expires.
    #[schema(example = 1800)]
    pub expires_in: i64,
    /// When the password must be changed.
    #[serde(serialize_with = "crate::json::utc_seconds")]
    pub password_expires_at: DateTime<Utc>,
}

/// A password change.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct PasswordChange {
    /// Portal username.
    #[schema(example = "asha.traders")]
    pub username: String,
    /// The current (possibly expired) password.
    #[schema(format = Password)]
    pub current_password: String,
    /// The new password: 8-128 characters with a letter, a digit and a symbol, not containing the username.
    #[schema(schema_with = crate::openapi::new_password_schema)]
    pub new_password: String,
}

/// Switch API access on (`enabled: true` with `duration_hours` 6-720) or off (`enabled: false`).
/// Its schema (`EnableApiAccess` or `DisableApiAccess`) is written out in `crate::openapi`.
#[derive(Debug, Clone, Deserialize)]
pub struct AccessChange {
    /// Enable API Request: yes or no.
    pub enabled: bool,
    /// Whole hours from 6 (6 hours) to 720 (30 days); required when enabling, ignored when disabling.
    #[serde(default)]
    pub duration_hours: Option<Value>,
}

/// The taxpayer's API access as of the request.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiAccessView {
    /// The taxpayer.
    #[schema(example = "24AAUPV7468F1ZW")]
    pub gstin: String,
    /// Switched on (even if the window has run out).
    pub enabled: bool,
    /// `enabled`, `disabled` or `expired`, computed at the time of the request.
    #[schema(schema_with = crate::openapi::access_status_schema)]
    pub status: &'static str,
    /// The chosen duration in hours, 6-720 (null while disabled).
    #[schema(required = true, minimum = 6, maximum = 720, example = 24)]
    pub duration_hours: Option<u16>,
    /// When the window opened (null while disabled).
    #[schema(required = true)]
    #[serde(serialize_with = "crate::json::utc_seconds_opt")]
    pub enabled_at: Option<DateTime<Utc>>,
    /// When the window ends (null while disabled).
    #[schema(required = true)]
    #[serde(serialize_with = "crate::json::utc_seconds_opt")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A GSP as a taxpayer sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GspRef {
    /// Client id.
    pub client_id: String,
    /// Display name.
    pub name: String,
}

/// One GSP session (consent).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionView {
    /// Session id.
    pub session_id: String,
    /// Who holds it.
    pub gsp: GspRef,
    /// When the OTP was exchanged.
    #[serde(serialize_with = "crate::json::utc_seconds")]
    pub created_at: DateTime<Utc>,
    /// Last call made with it (to the minute).
    #[serde(serialize_with = "crate::json::utc_seconds")]
    pub last_used_at: DateTime<Utc>,
    /// When it ends (the end of the access window).
    #[serde(serialize_with = "crate::json::utc_seconds")]
    pub expires_at: DateTime<Utc>,
    /// `active`, `revoked` or `expired`.
    #[schema(schema_with = crate::openapi::session_status_schema)]
    pub status: &'static str,
}

/// A pending OTP delivered to the taxpayer's inbox.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OtpMessage {
    /// The OTP request id.
    pub id: String,
    /// The GSP that asked.
    #[schema(example = "Acme GSP")]
    pub gsp_name: String,
    /// The 6-digit code to give (only) to that GSP.
    #[schema(example = "493817")]
    pub code: String,
    /// When it was requested.
    #[serde(serialize_with = "crate::json::utc_seconds")]
    pub created_at: DateTime<Utc>,
    /// Until when it works.
    #[serde(serialize_with = "crate::json::utc_seconds")]
    pub expires_at: DateTime<Utc>,
    /// What giving the code allows: `session` (the GSP acts for you until your access window ends) or
    /// `evc` (the GSP files one return signed by EVC, in the GST System dialect).
    #[schema(schema_with = crate::openapi::otp_purpose_schema)]
    pub purpose: String,
    /// For an `evc` code: the form it signs (`R1`, `R3B`, …); null for a `session` code.
    #[schema(example = json!(null))]
    pub form_type: Option<String>,
    /// For an `evc` code: the signatory's PAN; null for a `session` code.
    #[schema(example = json!(null))]
    pub pan: Option<String>,
}

/// Audit facts of a taxpayer's own action.
pub fn taxpayer_event(taxpayer: &TaxpayerRow, caller: &Caller, action: &str, detail: Value) -> NewAuditEvent {
    NewAuditEvent {
        actor: format!("taxpayer:{}", taxpayer.username),
        action: action.into(),
        gstin: Some(taxpayer.gstin.clone()),
        ip: caller.ip.clone(),
        request_id: Some(caller.request_id.clone()),
        detail,
        ..Default::default()
    }
}

/// The taxpayer the token names; a token for a taxpayer who no longer exists, or one issued under
/// another password than the current one, is invalid.
pub fn require_taxpayer(
    conn: &mut DbConn,
    gstin: &str,
    password_tag: Option<&str>,
) -> Result<TaxpayerRow, ApiError> {
    let row = taxpayers::find_by_gstin(conn, gstin)?
        .ok_or_else(|| ApiError::new(ErrorCode::TokenInvalid, "the token's taxpayer does not exist"))?;
    let current = crate::tokens::password_tag(&row.password_hash);
    if !password_tag.is_some_and(|tag| gsp_gateway_domain::secret::constant_time_eq(tag, &current)) {
        return Err(ApiError::new(
            ErrorCode::TokenInvalid,
            "the password was changed after this token was issued; log in again",
        ));
    }
    Ok(row)
}

/// The stored password hash of `username`, with the facts login needs.
pub fn lookup_login(conn: &mut DbConn, username: &str) -> Result<Option<TaxpayerRow>, ApiError> {
    Ok(taxpayers::find_by_username(conn, username.trim())?)
}

/// What a password check concluded, to be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    /// The password matched.
    Matched,
    /// It did not.
    Wrong,
}

/// Refuses a locked account.
pub fn ensure_unlocked(row: &TaxpayerRow, now: DateTime<Utc>) -> Result<(), ApiError> {
    match lock_in_force(row, now) {
        Some(until) => Err(locked(until, now)),
        None => Ok(()),
    }
}

/// The end of the account's lock, while it holds at `now`.
fn lock_in_force(row: &TaxpayerRow, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    row.locked_until.map(from_db).filter(|until| *until > now)
}

fn locked(until: DateTime<Utc>, now: DateTime<Utc>) -> ApiError {
    ApiError::new(
        ErrorCode::AccountLocked,
        format!("too many failed logins; try again after {until}"),
    )
    .with("locked_until", json!(rfc3339(&until)))
    .with_retry_after(until - now)
}

/// Records a wrong password: counts it, locks the account at the threshold, audits it. Returns the refusal.
pub fn record_failure(
    conn: &mut DbConn,
    row: &TaxpayerRow,
    caller: &Caller,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<ApiError, ApiError> {
    let threshold = settings.lockout_threshold.max(1) as i32;
    let locked_until = now + TimeDelta::minutes(i64::from(settings.lockout_minutes));
    let outcome = write_tx(conn, |conn| {
        // Read again inside the transaction: a login running alongside may have locked the account
        // since this one checked, and then this attempt is refused as locked, not counted afresh.
        let current = taxpayers::find(conn, &row.id)?;
        if let Some(until) = current.as_ref().and_then(|r| lock_in_force(r, now)) {
            return Ok(Err(until));
        }
        let failures = taxpayers::increment_failed_logins(conn, &row.id)?;
        let locks = failures >= threshold;
        audit::append(
            conn,
            taxpayer_event(
                row,
                caller,
                "login.failed",
                json!({"consecutive_failures": failures}),
            ),
            now,
        )?;
        if locks {
            taxpayers::set_login_failures(conn, &row.id, 0, Some(to_db(locked_until)))?;
            audit::append(
                conn,
                taxpayer_event(
                    row,
                    caller,
                    "account.locked",
                    json!({"locked_until": rfc3339(&locked_until)}),
                ),
                now,
            )?;
        }
        Ok(Ok(locks))
    })?;
    Ok(match outcome {
        Err(until) => locked(until, now),
        Ok(true) => locked(locked_until, now),
        Ok(false) => wrong_credentials(),
    })
}

/// 401 `invalid_credentials`: the same answer for an unknown username and a wrong password.
pub fn wrong_credentials() -> ApiError {
    ApiError::new(ErrorCode::InvalidCredentials, "the username or password is wrong")
}

/// After a correct password: clears the failure count, refuses an expired password, audits the login.
pub fn record_success(
    conn: &mut DbConn,
    row: &TaxpayerRow,
    caller: &Caller,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, ApiError> {
    let expires = password_expires_at(row, settings);
    let locked_since = write_tx(conn, |conn| {
        // A correct password does not undo a lock that failures alongside it set meanwhile.
        let current = taxpayers::find(conn, &row.id)?;
        if let Some(until) = current.as_ref().and_then(|r| lock_in_force(r, now)) {
            return Ok(Some(until));
        }
        if current.is_some_and(|r| r.failed_logins != 0 || r.locked_until.is_some()) {
            taxpayers::set_login_failures(conn, &row.id, 0, None)?;
        }
        if expires > now {
            audit::append(
                conn,
                taxpayer_event(row, caller, "login.succeeded", json!({})),
                now,
            )?;
        }
        Ok(None)
    })?;
    if let Some(until) = locked_since {
        return Err(locked(until, now));
    }
    if expires <= now {
        return Err(ApiError::new(
            ErrorCode::PasswordExpired,
            "the password has expired; change it with POST /v1/taxpayer/password",
        )
        .with("password_expired_at", json!(rfc3339(&expires))));
    }
    Ok(expires)
}

/// When the taxpayer's password expires.
pub fn password_expires_at(row: &TaxpayerRow, settings: &Settings) -> DateTime<Utc> {
    from_db(row.password_changed_at) + TimeDelta::days(i64::from(settings.password_lifetime_days))
}

/// Validates a new password against the policy and the current one.
pub fn check_new_password(change: &PasswordChange) -> Result<(), ApiError> {
    if change.new_password == change.current_password {
        return Err(gsp_gateway_domain::DomainError::PasswordUnchanged.into());
    }
    PasswordPolicy.check(&change.new_password, change.username.trim())?;
    Ok(())
}

/// Stores a new password hash and audits it, unless the account was locked (423) or its password
/// changed (401, as for a wrong current password) since `row`, whose hash the current password
/// matched, was read.
pub fn store_password(
    conn: &mut DbConn,
    row: &TaxpayerRow,
    hash: &PasswordHash,
    caller: &Caller,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    write_tx_as(conn, |conn| {
        // Read again inside the transaction: while argon2 ran on another thread, failed logins may
        // have locked the account (which the new password must not lift), or another change may have
        // replaced the password that was verified. The stale case is not counted as a failed login:
        // the password was right when it was checked.
        let current = taxpayers::find(conn, &row.id)?;
        if let Some(until) = current.as_ref().and_then(|r| lock_in_force(r, now)) {
            return Err(locked(until, now));
        }
        if current.is_none_or(|r| r.password_hash != row.password_hash) {
            return Err(wrong_credentials());
        }
        taxpayers::set_password(conn, &row.id, hash.as_str(), to_db(now))?;
        audit::append(
            conn,
            taxpayer_event(row, caller, "password.changed", json!({})),
            now,
        )?;
        Ok(())
    })
}

/// The API access view at `now`.
pub fn access_view(gstin: &str, access: &ApiAccess, now: DateTime<Utc>) -> ApiAccessView {
    let status = access.status_at(now);
    match access {
        ApiAccess::Disabled => ApiAccessView {
            gstin: gstin.into(),
            enabled: false,
            status: AccessStatus::Disabled.as_str(),
            duration_hours: None,
            enabled_at: None,
            expires_at: None,
        },
        ApiAccess::Enabled {
            duration,
            enabled_at,
            expires_at,
        } => ApiAccessView {
            gstin: gstin.into(),
            enabled: true,
            status: status.as_str(),
            duration_hours: Some(duration.hours()),
            enabled_at: Some(*enabled_at),
            expires_at: Some(*expires_at),
        },
    }
}

/// Reads `duration_hours` as the contract wants it: a whole number from 6 to 720, nothing else.
/// JSON does not tell `24` from `24.0`, and neither does the schema's `integer`: both are 24 hours;
/// `24.5`, strings, booleans and null are not.
pub fn parse_duration(value: Option<&Value>) -> Result<AccessDuration, ApiError> {
    let hours = match value {
        Some(Value::Number(n)) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 1e9)
                .map(|f| f as i64)
        }),
        _ => None,
    };
    let hours = hours.ok_or(gsp_gateway_domain::DomainError::InvalidDuration)?;
    Ok(AccessDuration::from_hours(hours)?)
}

/// What a change of access did, for the in-memory view.
#[derive(Debug, Clone)]
pub struct AccessChanged {
    /// The new setting.
    pub access: ApiAccess,
    /// Sessions this change revoked.
    pub revoked_sessions: Vec<String>,
}

/// Enables (a new window from `now`) or disables (revoking every session) API access, in one transaction.
pub fn change_access(
    conn: &mut DbConn,
    row: &TaxpayerRow,
    duration: Option<AccessDuration>,
    caller: &Caller,
    now: DateTime<Utc>,
) -> Result<AccessChanged, ApiError> {
    let changed = write_tx(conn, |conn| match duration {
        Some(duration) => {
            let access = ApiAccess::enable(duration, now);
            let expires_at = access.expires_at().unwrap_or(now);
            access::put(conn, &row.id, &access, now)?;
            let moved = sessions::move_live_ends(conn, &row.id, to_db(expires_at), to_db(now))?;
            audit::append(
                conn,
                taxpayer_event(
                    row,
                    caller,
                    "access.enabled",
                    json!({"duration_hours": duration.hours(), "expires_at": rfc3339(&expires_at), "live_sessions_moved": moved}),
                ),
                now,
            )?;
            Ok(AccessChanged {
                access,
                revoked_sessions: Vec::new(),
            })
        }
        None => {
            access::put(conn, &row.id, &ApiAccess::Disabled, now)?;
            let reason = "access_disabled";
            let revoked = sessions::revoke_all_for_taxpayer(conn, &row.id, reason, to_db(now))?;
            let voided_evc = otp::void_pending_evc(conn, otp::EvcOwner::Taxpayer(&row.id))?;
            let voided_otps = voided_evc.len() + otp::void_all_pending(conn, &row.id)?;
            let event = |action: &str, detail: Value| taxpayer_event(row, caller, action, detail);
            audit::append(
                conn,
                event(
                    "access.disabled",
                    json!({"revoked_sessions": revoked, "voided_otps": voided_otps}),
                ),
                now,
            )?;
            evc::record_voided(conn, &voided_evc, reason, &event, now)?;
            Ok(AccessChanged {
                access: ApiAccess::Disabled,
                revoked_sessions: revoked,
            })
        }
    })?;
    Ok(changed)
}

/// The taxpayer's sessions, newest first, with their status at `now`.
pub fn list_sessions(
    conn: &mut DbConn,
    row: &TaxpayerRow,
    now: DateTime<Utc>,
) -> Result<Vec<SessionView>, ApiError> {
    Ok(sessions::list_for_taxpayer(conn, &row.id)?
        .into_iter()
        .map(|listing| SessionView {
            status: listing.session.state().status_at(now).as_str(),
            session_id: listing.session.id,
            gsp: GspRef {
                client_id: listing.session.gsp_client_id,
                name: listing.gsp_name,
            },
            created_at: from_db(listing.session.created_at),
            last_used_at: from_db(listing.session.last_used_at),
            expires_at: from_db(listing.session.expires_at),
        })
        .collect())
}

/// Revokes one of the taxpayer's sessions (again is harmless); 404 for anyone else's.
pub fn revoke_session(
    conn: &mut DbConn,
    row: &TaxpayerRow,
    session_id: &str,
    caller: &Caller,
    now: DateTime<Utc>,
) -> Result<bool, ApiError> {
    let not_found = || ApiError::new(ErrorCode::NotFound, "no such session");
    let session = sessions::find(conn, session_id)?.ok_or_else(not_found)?;
    if session.taxpayer_id != row.id {
        return Err(not_found());
    }
    let revoked = write_tx(conn, |conn| {
        let reason = "taxpayer";
        let Some(voided) = sessions::revoke(conn, session_id, reason, to_db(now))? else {
            return Ok(false);
        };
        let event = |action: &str, detail: Value| NewAuditEvent {
            gsp_client_id: Some(session.gsp_client_id.clone()),
            session_id: Some(session_id.to_owned()),
            ..taxpayer_event(row, caller, action, detail)
        };
        audit::append(conn, event("session.revoked", json!({"by": "taxpayer"})), now)?;
        evc::record_voided(conn, &voided, reason, &event, now)?;
        Ok(true)
    })?;
    Ok(revoked)
}

/// The taxpayer's pending, unexpired OTP messages.
pub fn inbox(conn: &mut DbConn, row: &TaxpayerRow, now: DateTime<Utc>) -> Result<Vec<OtpMessage>, ApiError> {
    Ok(otp::inbox(conn, &row.id, to_db(now))?
        .into_iter()
        .map(|m| OtpMessage {
            id: m.challenge_id,
            gsp_name: m.gsp_name,
            code: m.code,
            created_at: from_db(m.created_at),
            expires_at: from_db(m.expires_at),
            purpose: m.purpose,
            form_type: m.form_type,
            pan: m.pan,
        })
        .collect())
}
