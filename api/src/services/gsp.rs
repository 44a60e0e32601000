//! The GSP's side: client authentication, OTP consent, session tokens, refresh, logout, GSTIN search.
//!
//! Each use case is one write transaction that starts by appending its audit event: that takes the
//! audit chain's lock first, so the checks that follow (OTP rate, session cap, single use of an OTP or
//! refresh token) cannot race with a concurrent request on either backend. An outcome that must be
//! stored although the call fails (a wrong OTP, a reused refresh token) commits and is turned into the
//! refusal afterwards.

use chrono::{DateTime, TimeDelta, Utc};
use gsp_gateway_domain::secret::{constant_time_eq, random_token, sha256_hex};
use gsp_gateway_domain::{
    ApiAccess, Gstin, OTP_LIFETIME_MINUTES, OtpChallenge, OtpCode, OtpVerdict, Username,
};
use gsp_gateway_storage::repo::access;
use gsp_gateway_storage::repo::audit::{self, NewAuditEvent};
use gsp_gateway_storage::repo::gsp_clients::{self, GspClientRow};
use gsp_gateway_storage::repo::otp::{self, ChallengeRow, InboxRow};
use gsp_gateway_storage::repo::refresh_tokens::{self, RefreshTokenRow};
use gsp_gateway_storage::repo::sessions::{self, SessionRow};
use gsp_gateway_storage::repo::taxpayers::{self, TaxpayerRow};
use gsp_gateway_storage::{DbConn, StorageError, from_db, to_db, write_tx, write_tx_as};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::evc;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};
use crate::json::rfc3339;
use crate::settings::{OtpDelivery, Settings};

/// An authenticated GSP client.
#[derive(Debug, Clone)]
pub struct GspClient {
    /// Client id.
    pub client_id: String,
    /// Display name.
    pub name: String,
}

/// The refusal for missing or wrong client credentials.
pub fn invalid_client(detail: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidClient, detail.to_owned()).with_header(
        actix_web::http::header::WWW_AUTHENTICATE,
        "Basic realm=\"gsp\", charset=\"UTF-8\"",
    )
}

/// Checks `client_id`/`client_secret` against the stored hash (constant time); refuses disabled clients.
pub fn authenticate_client(conn: &mut DbConn, client_id: &str, secret: &str) -> Result<GspClient, ApiError> {
    let row: Option<GspClientRow> = gsp_clients::find(conn, client_id)?;
    // Hash even for unknown ids, so the answer takes as long either way.
    let presented = sha256_hex(secret);
    let stored = row
        .as_ref()
        .map_or_else(|| sha256_hex("no-such-client"), |r| r.secret_hash.clone());
    match row {
        Some(row) if constant_time_eq(&presented, &stored) && row.enabled => Ok(GspClient {
            client_id: row.client_id,
            name: row.name,
        }),
        Some(row) if constant_time_eq(&presented, &stored) && !row.enabled => {
            Err(invalid_client("this GSP client is disabled"))
        }
        _ => Err(invalid_client("the client credentials are wrong")),
    }
}

/// `POST /v1/gsp/otp` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct OtpRequest {
    /// The taxpayer's GSTIN.
    #[schema(schema_with = crate::openapi::gstin_schema)]
    pub gstin: String,
    /// The taxpayer's portal username (must belong to the GSTIN).
    #[schema(schema_with = crate::openapi::username_schema)]
    pub username: String,
}

/// An OTP was sent.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OtpAccepted {
    /// The challenge id.
    pub otp_request_id: String,
    /// Seconds the OTP stays valid.
    #[schema(example = 600)]
    pub expires_in: i64,
    /// The channel it went through: `inbox`, `webhook` or `log`.
    #[schema(schema_with = crate::openapi::delivery_schema)]
    pub delivery: &'static str,
}

/// `POST /v1/gsp/token` body: an OTP grant or a refresh-token grant. Its schema (`OtpGrant` and
/// `RefreshTokenGrant` with a `grant_type` discriminator) is written out in `crate::openapi`.
#[derive(Debug, Clone)]
pub enum TokenRequest {
    /// Exchange the taxpayer's OTP for a new session.
    Otp {
        /// The taxpayer's GSTIN.
        gstin: String,
        /// The taxpayer's portal username.
        username: String,
        /// The 6-digit OTP the taxpayer received.
        otp: String,
    },
    /// Refresh a session without a new OTP while the access window lasts.
    RefreshToken {
        /// The refresh token from the previous token response (single use).
        refresh_token: String,
    },
}

impl TokenRequest {
    /// Reads a token request: `grant_type` picks the grant, whose fields are then checked by name. (A
    /// serde-tagged enum would report a mistyped field without its name.)
    pub fn from_json(body: &Value) -> Result<Self, ApiError> {
        #[derive(Deserialize)]
        struct Grant {
            grant_type: String,
        }
        #[derive(Deserialize)]
        struct Otp {
            gstin: String,
            username: String,
            otp: String,
        }
        #[derive(Deserialize)]
        struct Refresh {
            refresh_token: String,
        }
        let Grant { grant_type } = crate::json::from_value(body)?;
        match grant_type.as_str() {
            "otp" => {
                let Otp { gstin, username, otp } = crate::json::from_value(body)?;
                Ok(Self::Otp { gstin, username, otp })
            }
            "refresh_token" => {
                let Refresh { refresh_token } = crate::json::from_value(body)?;
                Ok(Self::RefreshToken { refresh_token })
            }
            other => Err(ApiError::field(
                ErrorCode::ValidationFailed,
                "grant_type",
                format!("unknown grant_type `{other}`, expected `otp` or `refresh_token`"),
            )),
        }
    }
}

/// A session token pair.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenResponse {
    /// Bearer token for `/v1/gst/*` (EdDSA JWT).
    pub access_token: String,
    /// `Bearer`.
    #[schema(schema_with = crate::openapi::bearer_schema)]
    pub token_type: &'static str,
    /// Seconds until the access token expires (6 hours, never past `session_expires_at`).
    #[schema(example = 21600)]
    pub expires_in: i64,
    /// Single-use refresh token; each refresh returns a new one.
    pub refresh_token: String,
    /// The session (consent) id.
    pub session_id: String,
    /// The end of the taxpayer's access window: refresh works until then.
    #[serde(serialize_with = "crate::json::utc_seconds")]
    pub session_expires_at: DateTime<Utc>,
}

/// Public registration details (GSTIN verification).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Registration {
    /// GSTIN.
    #[schema(example = "24AAUPV7468F1ZW")]
    pub gstin: String,
    /// Legal name of business.
    #[schema(example = "Asha Traders Private Limited")]
    pub legal_name: String,
    /// Trade name (null when none is registered).
    #[schema(required = true, example = "Asha Traders")]
    pub trade_name: Option<String>,
    /// State code.
    #[schema(example = "24")]
    pub state_code: String,
    /// Registration status (`Active`, `Cancelled`).
    #[schema(example = "Active")]
    pub status: String,
    /// Date of registration.
    pub registered_on: chrono::NaiveDate,
}

/// The public registration details of a stored taxpayer.
pub fn registration(row: &TaxpayerRow) -> Registration {
    Registration {
        gstin: row.gstin.clone(),
        legal_name: row.legal_name.clone(),
        trade_name: row.trade_name.clone(),
        state_code: row.gstin[..2].to_owned(),
        status: row.registration_status.clone(),
        registered_on: row.created_at.date(),
    }
}

/// Audit facts of a GSP's action for a taxpayer (the dialect's `txn` goes into the detail).
pub fn gsp_event(
    client: &GspClient,
    taxpayer: &TaxpayerRow,
    caller: &Caller,
    action: &str,
    detail: Value,
) -> NewAuditEvent {
    let detail = match (&caller.txn, detail) {
        (Some(txn), Value::Object(mut map)) => {
            map.insert("txn".into(), Value::String(txn.clone()));
            Value::Object(map)
        }
        (_, detail) => detail,
    };
    NewAuditEvent {
        actor: format!("gsp:{}", client.client_id),
        action: action.into(),
        gstin: Some(taxpayer.gstin.clone()),
        gsp_client_id: Some(client.client_id.clone()),
        ip: caller.ip.clone(),
        request_id: Some(caller.request_id.clone()),
        detail,
        ..Default::default()
    }
}

/// The taxpayer a GSP names by GSTIN and username; 404 `taxpayer_not_found` unless both belong together.
pub fn find_taxpayer(conn: &mut DbConn, gstin: &str, username: &str) -> Result<TaxpayerRow, ApiError> {
    let gstin = Gstin::parse(gstin)?;
    let username = Username::parse(username)?;
    match taxpayers::find_by_gstin(conn, gstin.as_str())? {
        Some(row) if row.username == username.as_str() => Ok(row),
        _ => Err(ApiError::new(
            ErrorCode::TaxpayerNotFound,
            "no taxpayer with this GSTIN and username",
        )),
    }
}

/// The end of the taxpayer's open access window, or the contract's 403.
pub fn open_window(
    conn: &mut DbConn,
    taxpayer: &TaxpayerRow,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, ApiError> {
    let access: ApiAccess = access::get(conn, &taxpayer.id)?;
    Ok(access.open_until(now)?)
}

/// An OTP that was opened and must now be delivered.
#[derive(Debug)]
pub struct OpenedOtp {
    /// The challenge.
    pub challenge_id: String,
    /// The code (only for the delivery channel; never logged elsewhere).
    pub code: OtpCode,
    /// Until when it works.
    pub expires_at: DateTime<Utc>,
    /// The taxpayer.
    pub gstin: String,
    /// For an EVC OTP: what it signs.
    pub evc: Option<EvcScope>,
}

/// What an EVC OTP signs: the form, for the signatory's PAN.
#[derive(Debug, Clone)]
pub struct EvcScope {
    /// The signatory's PAN.
    pub pan: String,
    /// The form (`R1`, `R3B`, …).
    pub form_type: String,
}

/// Opens an OTP challenge for the taxpayer, replacing this GSP's pending one, in the contract's order of checks.
pub fn open_otp(
    conn: &mut DbConn,
    client: &GspClient,
    request: &OtpRequest,
    code: OtpCode,
    settings: &Settings,
    caller: &Caller,
    now: DateTime<Utc>,
) -> Result<OpenedOtp, ApiError> {
    let taxpayer = find_taxpayer(conn, &request.gstin, &request.username)?;
    let challenge = OtpChallenge::open(uuid::Uuid::new_v4().to_string(), &code, now);
    let delivery = delivery_name(settings.otp_delivery);
    write_tx_as(conn, |conn| {
        audit::append(
            conn,
            gsp_event(
                client,
                &taxpayer,
                caller,
                "otp.requested",
                json!({"gsp_name": client.name, "otp_request_id": challenge.id, "delivery": delivery, "expires_at": rfc3339(&challenge.expires_at)}),
            ),
            now,
        )?;
        if let Some(refusal) = check_otp_allowed(conn, client, &taxpayer, settings, now)? {
            return Err(refusal);
        }
        otp::replace_pending(conn, &taxpayer.id, &client.client_id)?;
        store_challenge(
            conn,
            &NewChallenge {
                client,
                taxpayer_id: &taxpayer.id,
                challenge: &challenge,
                code: &code,
                evc: None,
            },
            settings,
            now,
        )?;
        Ok::<_, ApiError>(())
    })?;
    Ok(OpenedOtp {
        challenge_id: challenge.id,
        code,
        expires_at: challenge.expires_at,
        gstin: taxpayer.gstin,
        evc: None,
    })
}

/// A challenge to store: for a session OTP, or for an EVC OTP of a session.
pub struct NewChallenge<'a> {
    /// The GSP that asked.
    pub client: &'a GspClient,
    /// The addressee.
    pub taxpayer_id: &'a str,
    /// The challenge (its code hashed).
    pub challenge: &'a OtpChallenge,
    /// The code, for the inbox's message.
    pub code: &'a OtpCode,
    /// For an EVC OTP: the session that asked, and what the code signs.
    pub evc: Option<(&'a str, &'a EvcScope)>,
}

/// Stores a new pending challenge and, with the inbox channel, its message (inside the caller's
/// transaction).
pub fn store_challenge(
    conn: &mut DbConn,
    new: &NewChallenge<'_>,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<(), StorageError> {
    let NewChallenge {
        client,
        taxpayer_id,
        challenge,
        code,
        evc,
    } = *new;
    let purpose = if evc.is_some() {
        otp::FOR_EVC
    } else {
        otp::FOR_SESSION
    };
    let pan = evc.map(|(_, evc)| evc.pan.clone());
    let form_type = evc.map(|(_, evc)| evc.form_type.clone());
    otp::insert(
        conn,
        &ChallengeRow {
            id: challenge.id.clone(),
            taxpayer_id: taxpayer_id.to_owned(),
            gsp_client_id: client.client_id.clone(),
            code_hash: challenge.code_hash.clone(),
            created_at: to_db(now),
            expires_at: to_db(challenge.expires_at),
            attempts_left: i32::from(challenge.attempts_left),
            state: otp::PENDING.into(),
            purpose: purpose.into(),
            session_id: evc.map(|(session_id, _)| session_id.to_owned()),
            pan: pan.clone(),
            form_type: form_type.clone(),
        },
    )?;
    if settings.otp_delivery == OtpDelivery::Inbox {
        otp::deliver_to_inbox(
            conn,
            &InboxRow {
                challenge_id: challenge.id.clone(),
                taxpayer_id: taxpayer_id.to_owned(),
                gsp_name: client.name.clone(),
                code: code.as_str().to_owned(),
                created_at: to_db(now),
                expires_at: to_db(challenge.expires_at),
                purpose: purpose.into(),
                pan,
                form_type,
            },
        )?;
    }
    Ok(())
}

fn check_otp_allowed(
    conn: &mut DbConn,
    client: &GspClient,
    taxpayer: &TaxpayerRow,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<Option<ApiError>, StorageError> {
    if let Err(refusal) = access::get(conn, &taxpayer.id)?.open_until(now) {
        return Ok(Some(refusal.into()));
    }
    if let Some(refusal) = otp_rate_refusal(conn, client, &taxpayer.id, otp::FOR_SESSION, settings, now)? {
        return Ok(Some(refusal));
    }
    let active = sessions::count_active(conn, &taxpayer.id, &client.client_id, to_db(now))?;
    if active >= i64::from(settings.session_cap) {
        return Ok(Some(session_limit(settings)));
    }
    Ok(None)
}

/// 429 `rate_limited` (with `Retry-After`) when the pair asked for `otp_rate_limit` OTPs for `purpose`
/// within the rate window.
pub fn otp_rate_refusal(
    conn: &mut DbConn,
    client: &GspClient,
    taxpayer_id: &str,
    purpose: &str,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<Option<ApiError>, StorageError> {
    let window = TimeDelta::minutes(i64::from(settings.otp_rate_window_minutes));
    let since = to_db(now - window);
    let recent = otp::count_since(conn, taxpayer_id, &client.client_id, purpose, since)?;
    if recent < i64::from(settings.otp_rate_limit) {
        return Ok(None);
    }
    let oldest =
        otp::oldest_since(conn, taxpayer_id, &client.client_id, purpose, since)?.map_or(now, from_db);
    Ok(Some(
        ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "at most {} OTP requests per {} minutes for one taxpayer and GSP",
                settings.otp_rate_limit, settings.otp_rate_window_minutes
            ),
        )
        .with_retry_after((oldest + window) - now),
    ))
}

fn session_limit(settings: &Settings) -> ApiError {
    ApiError::new(
        ErrorCode::SessionLimitReached,
        format!(
            "maximum sessions allowed for this taxpayer with this GSP ({}) exceeded; log out or let the taxpayer revoke one",
            settings.session_cap
        ),
    )
}

/// The contract's name of a delivery channel.
pub fn delivery_name(delivery: OtpDelivery) -> &'static str {
    match delivery {
        OtpDelivery::Inbox => "inbox",
        OtpDelivery::Webhook => "webhook",
        OtpDelivery::Log => "log",
    }
}

/// Voids an OTP whose delivery failed, so a code nobody received cannot linger.
pub fn void_undelivered(conn: &mut DbConn, challenge_id: &str) -> Result<(), StorageError> {
    write_tx(conn, |conn| {
        otp::close(conn, challenge_id, otp::VOIDED)?;
        Ok(())
    })
}

/// A session and refresh token to answer with.
#[derive(Debug)]
pub struct IssuedSession {
    /// Session id.
    pub session_id: String,
    /// The taxpayer.
    pub gstin: String,
    /// The GSP client.
    pub client_id: String,
    /// A fresh refresh token (only its hash is stored).
    pub refresh_token: String,
    /// The session's end.
    pub expires_at: DateTime<Utc>,
}

enum OtpOutcome {
    Created(IssuedSession),
    Wrong(u8),
    Exhausted,
    Expired,
}

fn new_refresh_token(
    conn: &mut DbConn,
    session_id: &str,
    client_id: &str,
    now: DateTime<Utc>,
) -> Result<String, StorageError> {
    let token = random_token(32);
    refresh_tokens::insert(
        conn,
        &RefreshTokenRow {
            token_hash: sha256_hex(&token),
            session_id: session_id.to_owned(),
            gsp_client_id: client_id.to_owned(),
            issued_at: to_db(now),
            used_at: None,
        },
    )?;
    Ok(token)
}

fn otp_expired() -> ApiError {
    ApiError::new(
        ErrorCode::OtpExpired,
        "no pending OTP: it expired, was used, voided or replaced; request a new one",
    )
}

/// Where a presented code is looked for among a challenge's predecessors: a code of an earlier
/// challenge (replaced, used or voided, but already delivered) is "no pending challenge", and costs
/// the pending one no attempt.
#[derive(Debug, Clone, Copy)]
pub enum EarlierChallenges<'a> {
    /// The pair's session challenges ([`otp::closed_since`]).
    OfPair {
        /// The taxpayer.
        taxpayer_id: &'a str,
        /// The GSP client.
        gsp_client_id: &'a str,
    },
    /// One session's EVC challenges ([`otp::closed_evc_since`]).
    OfSession(&'a str),
}

/// What differs between checking a session OTP and an EVC OTP against its pending challenge.
pub struct CodeCheck<'a> {
    /// Where an earlier challenge's code is looked for.
    pub earlier: EarlierChallenges<'a>,
    /// The audit event of a wrong code (`otp.failed`, `evc_otp.failed`).
    pub failed: &'static str,
    /// The audit event of the wrong code that voids the challenge (`otp.voided`, `evc_otp.voided`).
    pub voided: &'static str,
    /// What the detail of those events starts with (the EVC's `otp_request_id`).
    pub detail: Map<String, Value>,
    /// The audit event of an action with its detail: actor, taxpayer, GSP and session.
    pub event: &'a dyn Fn(&str, Value) -> NewAuditEvent,
}

/// A code's verdict, its cost (an attempt, or the challenge) stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeChecked {
    /// The code is right; the caller uses the challenge up.
    Accepted,
    /// The challenge expired, or the code is an earlier challenge's: no pending challenge.
    NotPending,
    /// A wrong code; this many tries are left.
    Wrong(u8),
    /// A wrong code and none left: the challenge is void.
    Exhausted,
}

/// Checks `code` against the pending challenge `row` and stores what a wrong one costs (inside the
/// caller's transaction): its audit event, then one attempt fewer or the challenge voided.
pub fn check_code(
    conn: &mut DbConn,
    row: &ChallengeRow,
    code: &str,
    check: &CodeCheck<'_>,
    now: DateTime<Utc>,
) -> Result<CodeChecked, StorageError> {
    let verdict = row.to_domain().verify(code, now);
    if matches!(verdict, OtpVerdict::Wrong { .. } | OtpVerdict::Exhausted) {
        let recent = to_db(now - TimeDelta::minutes(OTP_LIFETIME_MINUTES));
        let earlier = match check.earlier {
            EarlierChallenges::OfPair {
                taxpayer_id,
                gsp_client_id,
            } => otp::closed_since(conn, taxpayer_id, gsp_client_id, recent)?,
            EarlierChallenges::OfSession(session_id) => otp::closed_evc_since(conn, session_id, recent)?,
        };
        if earlier.iter().any(|c| c.to_domain().is_code(code)) {
            return Ok(CodeChecked::NotPending);
        }
    }
    let detail = |key: &str, value: Value| {
        let mut detail = check.detail.clone();
        detail.insert(key.into(), value);
        Value::Object(detail)
    };
    match verdict {
        OtpVerdict::Expired => Ok(CodeChecked::NotPending),
        OtpVerdict::Wrong { attempts_remaining } => {
            audit::append(
                conn,
                (check.event)(
                    check.failed,
                    detail("attempts_remaining", json!(attempts_remaining)),
                ),
                now,
            )?;
            otp::set_attempts_left(conn, &row.id, i32::from(attempts_remaining))?;
            Ok(CodeChecked::Wrong(attempts_remaining))
        }
        OtpVerdict::Exhausted => {
            audit::append(
                conn,
                (check.event)(check.voided, detail("reason", json!("too many wrong codes"))),
                now,
            )?;
            otp::close(conn, &row.id, otp::VOIDED)?;
            Ok(CodeChecked::Exhausted)
        }
        OtpVerdict::Accepted => Ok(CodeChecked::Accepted),
    }
}

/// The OTP grant's fields.
#[derive(Debug, Clone)]
pub struct OtpGrant {
    /// The taxpayer's GSTIN.
    pub gstin: String,
    /// The taxpayer's username.
    pub username: String,
    /// The code the taxpayer received.
    pub otp: String,
    /// For a GST System dialect session: its keys, stored with the session in the same transaction.
    pub dialect: Option<DialectKeys>,
}

/// The GST System dialect's keys of a new session.
#[derive(Debug, Clone)]
pub struct DialectKeys {
    /// SHA-256 of the auth token.
    pub token_hash: String,
    /// When the auth token expires (capped at the session's end here).
    pub token_expires_at: DateTime<Utc>,
    /// The client's app key, Base64.
    pub app_key: String,
    /// The session key, Base64.
    pub sek: String,
}

/// Exchanges an OTP for a new session (`grant_type=otp`).
pub fn exchange_otp(
    conn: &mut DbConn,
    client: &GspClient,
    grant: &OtpGrant,
    settings: &Settings,
    caller: &Caller,
    now: DateTime<Utc>,
) -> Result<IssuedSession, ApiError> {
    let taxpayer = find_taxpayer(conn, &grant.gstin, &grant.username)?;
    let code = grant.otp.as_str();
    let outcome = write_tx_as(conn, |conn| {
        let window_end = access::get(conn, &taxpayer.id)?.open_until(now)?;
        let Some(row) = otp::find_pending(conn, &taxpayer.id, &client.client_id)? else {
            return Err(otp_expired());
        };
        let session_id = uuid::Uuid::new_v4().to_string();
        let event = |action: &str, detail: Value| NewAuditEvent {
            session_id: Some(session_id.clone()),
            ..gsp_event(client, &taxpayer, caller, action, detail)
        };
        // A wrong code's events name no session: none was opened.
        let check = CodeCheck {
            earlier: EarlierChallenges::OfPair {
                taxpayer_id: &taxpayer.id,
                gsp_client_id: &client.client_id,
            },
            failed: "otp.failed",
            voided: "otp.voided",
            detail: Map::new(),
            event: &|action, detail| NewAuditEvent {
                session_id: None,
                ..event(action, detail)
            },
        };
        match check_code(conn, &row, code, &check, now)? {
            CodeChecked::NotPending => Ok(OtpOutcome::Expired),
            CodeChecked::Wrong(attempts_remaining) => Ok(OtpOutcome::Wrong(attempts_remaining)),
            CodeChecked::Exhausted => Ok(OtpOutcome::Exhausted),
            CodeChecked::Accepted => {
                audit::append(
                    conn,
                    event(
                        "session.created",
                        json!({"gsp_name": client.name, "expires_at": rfc3339(&window_end), "otp_request_id": row.id}),
                    ),
                    now,
                )?;
                // Re-read inside the transaction (write transactions run one at a time): a client
                // disabled since it authenticated gets no session.
                if !gsp_clients::find(conn, &client.client_id)?.is_some_and(|c| c.enabled) {
                    return Err(invalid_client("this GSP client is disabled"));
                }
                let active = sessions::count_active(conn, &taxpayer.id, &client.client_id, to_db(now))?;
                if active >= i64::from(settings.session_cap) {
                    return Err(session_limit(settings));
                }
                if !otp::close(conn, &row.id, otp::USED)? {
                    return Err(otp_expired());
                }
                sessions::insert(
                    conn,
                    &SessionRow {
                        id: session_id.clone(),
                        taxpayer_id: taxpayer.id.clone(),
                        gsp_client_id: client.client_id.clone(),
                        channel: "rest".into(),
                        created_at: to_db(now),
                        last_used_at: to_db(now),
                        expires_at: to_db(window_end),
                        revoked_at: None,
                        revoked_reason: None,
                        gstn_token_hash: None,
                        gstn_app_key: None,
                        gstn_sek: None,
                        gstn_token_expires_at: None,
                    },
                )?;
                let refresh_token = new_refresh_token(conn, &session_id, &client.client_id, now)?;
                if let Some(keys) = &grant.dialect {
                    sessions::set_gstn_keys(
                        conn,
                        &session_id,
                        &sessions::GstnKeys {
                            token_hash: &keys.token_hash,
                            token_expires_at: to_db(keys.token_expires_at.min(window_end)),
                            app_key: &keys.app_key,
                            sek: &keys.sek,
                        },
                    )?;
                }
                Ok(OtpOutcome::Created(IssuedSession {
                    session_id: session_id.clone(),
                    gstin: taxpayer.gstin.clone(),
                    client_id: client.client_id.clone(),
                    refresh_token,
                    expires_at: window_end,
                }))
            }
        }
    })?;
    match outcome {
        OtpOutcome::Created(issued) => Ok(issued),
        OtpOutcome::Expired => Err(otp_expired()),
        OtpOutcome::Wrong(attempts_remaining) => {
            Err(ApiError::new(ErrorCode::InvalidOtp, "the OTP is wrong")
                .with("attempts_remaining", json!(attempts_remaining)))
        }
        OtpOutcome::Exhausted => Err(ApiError::new(
            ErrorCode::OtpAttemptsExceeded,
            "too many wrong OTPs: the OTP is void; request a new one",
        )),
    }
}

enum RefreshOutcome {
    Refreshed(IssuedSession),
    Reused(String),
}

/// Refreshes a session with a single-use refresh token (`grant_type=refresh_token`).
/// Presenting a used token revokes the whole session.
pub fn refresh(
    conn: &mut DbConn,
    client: &GspClient,
    token: &str,
    caller: &Caller,
    now: DateTime<Utc>,
) -> Result<IssuedSession, ApiError> {
    let invalid = || ApiError::new(ErrorCode::TokenInvalid, "unknown refresh token");
    let hash = sha256_hex(token);
    let outcome = write_tx_as(conn, |conn| {
        let Some(row) = refresh_tokens::find(conn, &hash)? else {
            return Err(invalid());
        };
        if row.gsp_client_id != client.client_id {
            return Err(invalid());
        }
        let Some(owner) = sessions::find_with_owner(conn, &row.session_id)? else {
            return Err(invalid());
        };
        let Some(taxpayer) = taxpayers::find(conn, &owner.session.taxpayer_id)? else {
            return Err(invalid());
        };
        let event = |action: &str, detail: Value| NewAuditEvent {
            session_id: Some(owner.session.id.clone()),
            ..gsp_event(client, &taxpayer, caller, action, detail)
        };
        if row.used_at.is_some() || !refresh_tokens::mark_used(conn, &hash, to_db(now))? {
            audit::append(
                conn,
                event(
                    "refresh_token.reused",
                    json!({"session_revoked": owner.session.revoked_at.is_none()}),
                ),
                now,
            )?;
            let reason = "refresh_token_reused";
            if let Some(voided) = sessions::revoke(conn, &owner.session.id, reason, to_db(now))? {
                evc::record_voided(conn, &voided, reason, &event, now)?;
            }
            return Ok(RefreshOutcome::Reused(owner.session.id.clone()));
        }
        let window_end = access::get(conn, &taxpayer.id)?
            .open_until(now)
            .map_err(|refusal| {
                let code = ApiError::from(refusal.clone()).code();
                ApiError::new(code, format!("{refusal}; refresh is over, a new OTP is needed"))
            })?;
        if owner.session.revoked_at.is_some() {
            return Err(ApiError::new(
                ErrorCode::SessionRevoked,
                "the session was revoked; a new OTP is needed",
            ));
        }
        if from_db(owner.session.expires_at) <= now {
            return Err(ApiError::new(
                ErrorCode::SessionExpired,
                "the session has ended; a new OTP is needed",
            ));
        }
        audit::append(conn, event("session.refreshed", json!({})), now)?;
        let refresh_token = new_refresh_token(conn, &owner.session.id, &client.client_id, now)?;
        Ok(RefreshOutcome::Refreshed(IssuedSession {
            session_id: owner.session.id.clone(),
            gstin: taxpayer.gstin.clone(),
            client_id: client.client_id.clone(),
            refresh_token,
            expires_at: window_end.min(from_db(owner.session.expires_at)),
        }))
    })?;
    match outcome {
        RefreshOutcome::Refreshed(issued) => Ok(issued),
        RefreshOutcome::Reused(session_id) => Err(ApiError::new(
            ErrorCode::RefreshTokenReused,
            "this refresh token was already used: the session is revoked; a new OTP is needed",
        )
        .with("session_id", json!(session_id))),
    }
}

/// Logs a session out. Returns the revoked session's id.
pub fn logout(
    conn: &mut DbConn,
    session_id: &str,
    client_id: &str,
    caller: &Caller,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let revoked = || ApiError::new(ErrorCode::SessionRevoked, "the session has been revoked");
    let owner = sessions::find_with_owner(conn, session_id)?.ok_or_else(revoked)?;
    if owner.session.gsp_client_id != client_id {
        return Err(ApiError::new(
            ErrorCode::TokenInvalid,
            "the token is not valid here",
        ));
    }
    let taxpayer = taxpayers::find(conn, &owner.session.taxpayer_id)?.ok_or_else(revoked)?;
    let client = GspClient {
        client_id: client_id.to_owned(),
        name: String::new(),
    };
    let done = write_tx(conn, |conn| {
        let reason = "logout";
        let Some(voided) = sessions::revoke(conn, session_id, reason, to_db(now))? else {
            return Ok(false);
        };
        let event = |action: &str, detail: Value| NewAuditEvent {
            session_id: Some(session_id.to_owned()),
            ..gsp_event(&client, &taxpayer, caller, action, detail)
        };
        audit::append(conn, event("session.logged_out", json!({})), now)?;
        evc::record_voided(conn, &voided, reason, &event, now)?;
        Ok(true)
    })?;
    if done { Ok(()) } else { Err(revoked()) }
}

/// GSTIN verification: the public registration details of a known GSTIN.
pub fn search(conn: &mut DbConn, gstin: &str) -> Result<Registration, ApiError> {
    let gstin = Gstin::parse(gstin)?;
    taxpayers::find_by_gstin(conn, gstin.as_str())?
        .map(|row| registration(&row))
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no registration with this GSTIN"))
}
