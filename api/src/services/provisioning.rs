//! Operator provisioning: taxpayers and GSP clients.

use chrono::{DateTime, TimeDelta, Utc};
use gsp_gateway_domain::secret::{new_client_id, new_client_secret, sha256_hex};
use gsp_gateway_domain::{Gstin, PasswordHash, PasswordPolicy, Username};
use gsp_gateway_storage::repo::audit::{self, NewAuditEvent};
use gsp_gateway_storage::repo::gsp_clients::{self, GspClientRow};
use gsp_gateway_storage::repo::taxpayers::{self, TaxpayerRow};
use gsp_gateway_storage::{DbConn, from_db, to_db, write_tx, write_tx_as};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::evc;
use crate::error::{ApiError, ErrorCode};

/// A new taxpayer, as the operator provisions it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTaxpayer {
    /// 15-character GSTIN with a valid check character (trimmed and upper-cased).
    #[schema(schema_with = crate::openapi::gstin_schema)]
    pub gstin: String,
    /// GST Portal username: 4-32 letters, digits, `.`, `_`, `-`, starting with a letter.
    #[schema(schema_with = crate::openapi::username_schema)]
    pub username: String,
    /// Initial password: 8-128 characters with a letter, a digit and a symbol, not containing the username.
    #[schema(schema_with = crate::openapi::new_password_schema)]
    pub password: String,
    /// Legal name of business.
    #[schema(schema_with = crate::openapi::legal_name_schema)]
    pub legal_name: String,
    /// Trade name.
    #[schema(schema_with = crate::openapi::trade_name_schema)]
    pub trade_name: Option<String>,
    /// E-mail of the primary authorised signatory.
    #[schema(schema_with = crate::openapi::email_schema)]
    pub email: Option<String>,
    /// Mobile of the primary authorised signatory (10 digits).
    #[schema(schema_with = crate::openapi::mobile_schema)]
    pub mobile: Option<String>,
}

/// A provisioned taxpayer (never the password).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaxpayerView {
    /// GSTIN.
    #[schema(example = "24AAUPV7468F1ZW")]
    pub gstin: String,
    /// Username.
    #[schema(example = "asha.traders")]
    pub username: String,
    /// Legal name.
    #[schema(example = "Asha Traders Private Limited")]
    pub legal_name: String,
    /// Trade name (null when none was given).
    #[schema(required = true, example = "Asha Traders")]
    pub trade_name: Option<String>,
    /// E-mail (null when none was given).
    #[schema(required = true, example = "accounts@asha.example")]
    pub email: Option<String>,
    /// Mobile (null when none was given).
    #[schema(required = true, example = "9876543210")]
    pub mobile: Option<String>,
    /// State code (first two digits of the GSTIN).
    #[schema(example = "24")]
    pub state_code: String,
    /// When provisioned.
    #[serde(serialize_with = "crate::json::utc_seconds")]
    pub created_at: DateTime<Utc>,
    /// When the current password expires.
    #[serde(serialize_with = "crate::json::utc_seconds")]
    pub password_expires_at: DateTime<Utc>,
}

/// A new GSP client.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGsp {
    /// Display name shown to taxpayers (1-100 characters).
    #[schema(schema_with = crate::openapi::gsp_name_schema)]
    pub name: String,
}

/// A provisioned GSP client. The secret is shown once: only its hash is stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GspCredentials {
    /// Client id (HTTP Basic user name).
    #[schema(example = "l7xx0f5c2a3b4d5e6f708192a3b4c5d6e7f8")]
    pub client_id: String,
    /// Client secret (HTTP Basic password), 256 random bits. Store it now: it cannot be shown again.
    pub client_secret: String,
    /// Display name.
    pub name: String,
    /// When provisioned.
    #[serde(serialize_with = "crate::json::utc_seconds")]
    pub created_at: DateTime<Utc>,
}

/// A validated new taxpayer with its password already hashed (hashing is slow: done before the transaction).
#[derive(Debug)]
pub struct CheckedTaxpayer {
    gstin: Gstin,
    username: Username,
    input: NewTaxpayer,
}

/// Validates the fields of a new taxpayer (everything but hashing).
pub fn check_taxpayer(input: NewTaxpayer) -> Result<CheckedTaxpayer, ApiError> {
    let gstin = Gstin::parse(&input.gstin)?;
    let username = Username::parse(&input.username)?;
    PasswordPolicy
        .check(&input.password, username.as_str())
        .map_err(|e| ApiError::weak_password("password", e.to_string()))?;
    text_field("legal_name", &input.legal_name, 1, 200)?;
    if let Some(trade) = &input.trade_name {
        text_field("trade_name", trade, 1, 200)?;
    }
    if let Some(email) = &input.email {
        let plausible = email.len() <= 254
            && email
                .split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'));
        if !plausible {
            return Err(ApiError::field(
                ErrorCode::ValidationFailed,
                "email",
                "not an e-mail address",
            ));
        }
    }
    if let Some(mobile) = &input.mobile {
        let digits = mobile.strip_prefix("+91").unwrap_or(mobile);
        if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::field(
                ErrorCode::ValidationFailed,
                "mobile",
                "a mobile number has 10 digits",
            ));
        }
    }
    Ok(CheckedTaxpayer {
        gstin,
        username,
        input,
    })
}

fn text_field(field: &str, value: &str, min: usize, max: usize) -> Result<(), ApiError> {
    // The limit counts every character sent (as the schema's maxLength does); the minimum, non-space ones.
    let n = value.chars().count();
    if value.trim().chars().count() < min || n > max || value.chars().any(char::is_control) {
        return Err(ApiError::field(
            ErrorCode::ValidationFailed,
            field,
            format!("must be {min} to {max} printable characters"),
        ));
    }
    Ok(())
}

impl CheckedTaxpayer {
    /// The password to hash.
    pub fn password(&self) -> String {
        self.input.password.clone()
    }
}

/// Stores a checked taxpayer with its password hash, and audits it, in one transaction.
pub fn create_taxpayer(
    conn: &mut DbConn,
    taxpayer: CheckedTaxpayer,
    password_hash: &PasswordHash,
    now: DateTime<Utc>,
    password_lifetime_days: u32,
    audit_event: NewAuditEvent,
) -> Result<TaxpayerView, ApiError> {
    let row = TaxpayerRow {
        id: uuid::Uuid::new_v4().to_string(),
        gstin: taxpayer.gstin.to_string(),
        username: taxpayer.username.as_str().to_owned(),
        password_hash: password_hash.as_str().to_owned(),
        password_changed_at: to_db(now),
        legal_name: taxpayer.input.legal_name.trim().to_owned(),
        trade_name: taxpayer.input.trade_name.map(|t| t.trim().to_owned()),
        email: taxpayer.input.email,
        mobile: taxpayer.input.mobile,
        registration_status: "Active".into(),
        failed_logins: 0,
        locked_until: None,
        created_at: to_db(now),
    };
    write_tx(conn, |conn| {
        taxpayers::insert(conn, &row)?;
        audit::append(
            conn,
            NewAuditEvent {
                action: "taxpayer.created".into(),
                gstin: Some(row.gstin.clone()),
                detail: json!({"username": row.username}),
                ..audit_event
            },
            now,
        )?;
        Ok(())
    })?;
    Ok(taxpayer_view(&row, password_lifetime_days))
}

/// The public view of a stored taxpayer.
pub fn taxpayer_view(row: &TaxpayerRow, password_lifetime_days: u32) -> TaxpayerView {
    TaxpayerView {
        gstin: row.gstin.clone(),
        username: row.username.clone(),
        legal_name: row.legal_name.clone(),
        trade_name: row.trade_name.clone(),
        email: row.email.clone(),
        mobile: row.mobile.clone(),
        state_code: row.gstin[..2].to_owned(),
        created_at: from_db(row.created_at),
        password_expires_at: from_db(row.password_changed_at)
            + TimeDelta::days(i64::from(password_lifetime_days)),
    }
}

/// Validates a new GSP's name.
pub fn check_gsp(input: &NewGsp) -> Result<(), ApiError> {
    text_field("name", &input.name, 1, 100)
}

/// Creates a GSP client with a fresh secret, stored only as its hash.
pub fn create_gsp(
    conn: &mut DbConn,
    input: NewGsp,
    now: DateTime<Utc>,
    audit_event: NewAuditEvent,
) -> Result<GspCredentials, ApiError> {
    let client_id = new_client_id();
    let client_secret = new_client_secret();
    let row = GspClientRow {
        client_id: client_id.clone(),
        name: input.name.trim().to_owned(),
        secret_hash: sha256_hex(&client_secret),
        enabled: true,
        created_at: to_db(now),
        gstn_numeric_status_cd: None,
    };
    write_tx(conn, |conn| {
        gsp_clients::insert(conn, &row)?;
        audit::append(
            conn,
            NewAuditEvent {
                action: "gsp.created".into(),
                gsp_client_id: Some(client_id.clone()),
                detail: json!({"name": row.name}),
                ..audit_event
            },
            now,
        )?;
        Ok(())
    })?;
    Ok(GspCredentials {
        client_id,
        client_secret,
        name: row.name,
        created_at: from_db(row.created_at),
    })
}

/// A GSP client after the operator disabled or re-enabled it.
#[derive(Debug, Clone, Serialize)]
pub struct GspStatus {
    /// Client id.
    pub client_id: String,
    /// Display name.
    pub name: String,
    /// Whether its credentials are accepted.
    pub enabled: bool,
    /// The sessions this change ended (disabling ends them all).
    pub revoked_sessions: Vec<String>,
}

fn unknown_gsp(client_id: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no GSP client {client_id}"))
}

/// One operator change to a GSP client, in one write transaction: the client (404 when unknown),
/// `change` to it, and the `action` event that records it (which the change feed carries to every
/// instance). Write transactions run one at a time, so a session issue, which re-reads its client in
/// its own, comes wholly before or wholly after this.
fn change_gsp<T>(
    conn: &mut DbConn,
    client_id: &str,
    action: &str,
    now: DateTime<Utc>,
    audit_event: NewAuditEvent,
    change: impl FnOnce(&mut DbConn, &GspClientRow, &NewAuditEvent) -> Result<T, ApiError>,
) -> Result<(GspClientRow, T), ApiError> {
    write_tx_as(conn, |conn| {
        let row = gsp_clients::find(conn, client_id)?.ok_or_else(|| unknown_gsp(client_id))?;
        let changed = change(conn, &row, &audit_event)?;
        audit::append(
            conn,
            NewAuditEvent {
                action: action.into(),
                gsp_client_id: Some(row.client_id.clone()),
                ..audit_event
            },
            now,
        )?;
        Ok((row, changed))
    })
}

/// Disables a GSP client: its credentials are refused from now on and every session it holds ends, in
/// one transaction. Each ended session is recorded for its taxpayer, so it shows in their activity.
pub fn disable_gsp(
    conn: &mut DbConn,
    client_id: &str,
    now: DateTime<Utc>,
    audit_event: NewAuditEvent,
) -> Result<GspStatus, ApiError> {
    let (row, revoked) = change_gsp(
        conn,
        client_id,
        "gsp.disabled",
        now,
        audit_event,
        |conn, row, event| {
            gsp_clients::set_enabled(conn, &row.client_id, false)?;
            let reason = "gsp_disabled";
            let revoked = gsp_gateway_storage::repo::sessions::revoke_all_for_client(
                conn,
                &row.client_id,
                reason,
                to_db(now),
            )?;
            for (session_id, gstin) in &revoked.sessions {
                audit::append(
                    conn,
                    NewAuditEvent {
                        action: "session.revoked".into(),
                        gstin: Some(gstin.clone()),
                        gsp_client_id: Some(row.client_id.clone()),
                        session_id: Some(session_id.clone()),
                        detail: json!({"by": "operator", "reason": reason}),
                        ..event.clone()
                    },
                    now,
                )?;
            }
            let operator = |action: &str, detail: Value| NewAuditEvent {
                action: action.into(),
                detail,
                ..event.clone()
            };
            evc::record_voided(conn, &revoked.voided_evc, reason, &operator, now)?;
            Ok(revoked.sessions)
        },
    )?;
    Ok(GspStatus {
        client_id: row.client_id,
        name: row.name,
        enabled: false,
        revoked_sessions: revoked.into_iter().map(|(id, _)| id).collect(),
    })
}

/// Re-enables a disabled GSP client. Its ended sessions stay ended: taxpayers consent again by OTP.
pub fn enable_gsp(
    conn: &mut DbConn,
    client_id: &str,
    now: DateTime<Utc>,
    audit_event: NewAuditEvent,
) -> Result<GspStatus, ApiError> {
    let (row, ()) = change_gsp(
        conn,
        client_id,
        "gsp.enabled",
        now,
        audit_event,
        |conn, row, _| {
            gsp_clients::set_enabled(conn, &row.client_id, true)?;
            Ok(())
        },
    )?;
    Ok(GspStatus {
        client_id: row.client_id,
        name: row.name,
        enabled: true,
        revoked_sessions: Vec::new(),
    })
}

/// Gives a GSP client a new secret (shown once); the old one is refused from now on. Its sessions go on:
/// they were granted by taxpayers, not by the secret. Disable the client to end them.
pub fn rotate_gsp_secret(
    conn: &mut DbConn,
    client_id: &str,
    now: DateTime<Utc>,
    audit_event: NewAuditEvent,
) -> Result<GspCredentials, ApiError> {
    let client_secret = new_client_secret();
    let (row, ()) = change_gsp(
        conn,
        client_id,
        "gsp.secret_rotated",
        now,
        audit_event,
        |conn, row, _| {
            gsp_clients::set_secret_hash(conn, &row.client_id, &sha256_hex(&client_secret))?;
            Ok(())
        },
    )?;
    Ok(GspCredentials {
        client_id: row.client_id,
        client_secret,
        name: row.name,
        created_at: from_db(row.created_at),
    })
}

/// How the GST System dialect writes `status_cd` for one GSP client, after a change.
#[derive(Debug, Serialize)]
pub struct GspStatusCd {
    /// Client id.
    pub client_id: String,
    /// Display name.
    pub name: String,
    /// `"number"` (1/0), `"string"` ("1"/"0") or `"server"` (the server's `gstn_numeric_status_cd`).
    pub status_cd: &'static str,
}

/// The name of a `status_cd` choice, as the CLI and the audit log write it.
pub fn status_cd_name(numeric: Option<bool>) -> &'static str {
    match numeric {
        Some(true) => "number",
        Some(false) => "string",
        None => "server",
    }
}

/// Sets how the dialect writes `status_cd` for a GSP client's software: some GST System clients compare
/// it with numbers, most with strings (gstn-dialect.md §4). `None` follows the server's setting.
pub fn set_gsp_status_cd(
    conn: &mut DbConn,
    client_id: &str,
    numeric: Option<bool>,
    now: DateTime<Utc>,
    audit_event: NewAuditEvent,
) -> Result<GspStatusCd, ApiError> {
    let status_cd = status_cd_name(numeric);
    let mut audit_event = audit_event;
    match audit_event.detail.as_object_mut() {
        Some(detail) => {
            detail.insert("status_cd".into(), status_cd.into());
        }
        None => audit_event.detail = json!({"status_cd": status_cd}),
    }
    let (row, ()) = change_gsp(
        conn,
        client_id,
        "gsp.status_cd_changed",
        now,
        audit_event,
        |conn, row, _| {
            gsp_clients::set_numeric_status_cd(conn, &row.client_id, numeric)?;
            Ok(())
        },
    )?;
    Ok(GspStatusCd {
        client_id: row.client_id,
        name: row.name,
        status_cd,
    })
}
