//! `POST /taxpayerapi/v{X.Y}/authenticate`: OTPREQUEST, AUTHTOKEN, REFRESHTOKEN and LOGOUT, on top of
//! the same taxpayers, access windows, sessions and audit as the REST face.

use actix_web::dev::RequestHead;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, TimeDelta, Utc};
use gsp_gateway_domain::secret::{random_hex, sha256_hex};
use gsp_gateway_domain::{ApiAccess, OtpCode};
use gsp_gateway_storage::repo::audit::{self, NewAuditEvent};
use gsp_gateway_storage::repo::sessions::{self, GstnKeys};
use gsp_gateway_storage::repo::{access, taxpayers};
use gsp_gateway_storage::{DbConn, from_db, to_db, write_tx_as};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::crypto::{self, AesKey};
use super::dialect::{self, GstnError, check_client, check_state_code};
use super::rsa_key::AppKeyCandidates;
use crate::auth::Caller;
use crate::services::gsp::{self as svc, DialectKeys, GspClient, OtpGrant, OtpRequest};
use crate::state::AppState;

/// The body of every authenticate action (all strings on the wire).
#[derive(Debug, Deserialize)]
struct AuthenticateBody {
    action: Option<String>,
    username: Option<String>,
    app_key: Option<String>,
    otp: Option<String>,
    auth_token: Option<String>,
}

fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, GstnError> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| GstnError::missing(name))
}

/// The handler: dispatches on `action`.
pub async fn authenticate(state: &AppState, req: &RequestHead, body: web::Bytes) -> HttpResponse {
    let answer = dispatch(state, req, &body).await;
    let numeric = dialect::numeric_status_cd_of(state, req.headers()).await;
    match answer {
        Ok(fields) => dialect::success(numeric, fields),
        Err(error) => dialect::failure(numeric, &error),
    }
}

async fn dispatch(state: &AppState, req: &RequestHead, body: &[u8]) -> Result<Map<String, Value>, GstnError> {
    let client = check_client(state, req.headers()).await?;
    // Before any RSA decryption or write: a GSP client looping on authenticate is throttled, and
    // cannot crowd taxpayers' logins out of the heavy-work threads.
    throttle(state, &client.client_id)?;
    let body: AuthenticateBody =
        serde_json::from_slice(body).map_err(|_| GstnError::new("GEN5007", "Malformed request"))?;
    let caller = dialect::caller(state, req);
    let action = required(&body.action, "action")?.to_ascii_uppercase();
    let username = required(&body.username, "username")?.to_owned();
    let lookup = username.clone();
    let taxpayer = state
        .db
        .run(move |conn| taxpayers::find_by_username(conn, &lookup))
        .await?
        .ok_or_else(|| GstnError::new("AUTH4032", "Invalid User"))?;
    check_state_code(req.headers(), &taxpayer.gstin)?;
    match action.as_str() {
        "OTPREQUEST" => otp_request(state, &client, &caller, &taxpayer, &body).await,
        "AUTHTOKEN" => auth_token(state, client, caller, taxpayer, &body).await,
        "REFRESHTOKEN" => refresh_token(state, client, caller, taxpayer, &body).await,
        "LOGOUT" => logout(state, &client, caller, &taxpayer, &body).await,
        _ => Err(GstnError::new("GEN5007", format!("Unsupported action {action}"))),
    }
}

/// 429 once the GSP client's authenticate calls (EVCOTP included) exceed their rate.
pub fn throttle(state: &AppState, client_id: &str) -> Result<(), GstnError> {
    let verdict = state.limits.check_authenticate(&std::sync::Arc::from(client_id));
    if verdict.allowed {
        return Ok(());
    }
    crate::gateway::note_rate_limited(verdict.policy);
    Err(GstnError::rate_limited(
        format!(
            "Too many authenticate calls from this client; retry after {} s",
            verdict.reset_secs
        ),
        verdict.reset_secs,
    ))
}

/// Refuses an access window the live system would refuse: off, run out, or chosen no longer than a token lives.
fn check_window(
    access: &ApiAccess,
    now: DateTime<Utc>,
    token_minutes: u32,
) -> Result<DateTime<Utc>, GstnError> {
    let end = access
        .open_until(now)
        .map_err(|_| GstnError::access_unavailable())?;
    match access {
        ApiAccess::Enabled { duration, .. } if u32::from(duration.hours()) * 60 > token_minutes => Ok(end),
        _ => Err(GstnError::access_unavailable()),
    }
}

async fn window(state: &AppState, taxpayer_id: &str) -> Result<DateTime<Utc>, GstnError> {
    let id = taxpayer_id.to_owned();
    let access = state.db.run(move |conn| access::get(conn, &id)).await?;
    check_window(
        &access,
        state.clock.now(),
        state.settings.gstn_token_expiry_minutes,
    )
}

/// RSA-decrypts the app key off the async workers (a private-key operation per live key).
async fn decrypt_app_key(state: &AppState, field: &Option<String>) -> Result<AppKeyCandidates, GstnError> {
    let field = required(field, "app_key")?.to_owned();
    let keys = state.gstn.clone();
    state
        .heavy
        .run(move || keys.decrypt_app_key(&field))
        .await?
        .map_err(|_| GstnError::undecryptable_app_key())
}

async fn otp_request(
    state: &AppState,
    client: &GspClient,
    caller: &Caller,
    taxpayer: &gsp_gateway_storage::repo::taxpayers::TaxpayerRow,
    body: &AuthenticateBody,
) -> Result<Map<String, Value>, GstnError> {
    decrypt_app_key(state, &body.app_key).await?;
    window(state, &taxpayer.id).await?;
    let code = state
        .settings
        .gstn_sandbox_otp
        .as_deref()
        .map_or_else(OtpCode::generate, OtpCode::fixed);
    let request = OtpRequest {
        gstin: taxpayer.gstin.clone(),
        username: taxpayer.username.clone(),
    };
    let (settings, otp_client, otp_caller, now) = (
        state.settings.clone(),
        client.clone(),
        caller.clone(),
        state.clock.now(),
    );
    let opened = state
        .db
        .run(move |conn| {
            Ok(svc::open_otp(
                conn,
                &otp_client,
                &request,
                code,
                &settings,
                &otp_caller,
                now,
            ))
        })
        .await??;
    crate::routes::gsp::deliver_otp(state, client, &opened).await?;
    Ok(Map::new())
}

/// The minutes answered as `expiry`, and when the new auth token expires.
fn token_lifetime(state: &AppState, now: DateTime<Utc>, window_end: DateTime<Utc>) -> (i64, DateTime<Utc>) {
    let expires_at =
        (now + TimeDelta::minutes(i64::from(state.settings.gstn_token_expiry_minutes))).min(window_end);
    let minutes = if state.settings.gstn_expiry_from_access {
        (window_end - now).num_minutes()
    } else {
        (expires_at - now).num_minutes()
    };
    (minutes.max(1), expires_at)
}

fn token_fields(auth_token: String, expiry: i64, sek_field: String) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("auth_token".into(), json!(auth_token));
    fields.insert("expiry".into(), json!(expiry));
    fields.insert("sek".into(), json!(sek_field));
    fields
}

async fn auth_token(
    state: &AppState,
    client: GspClient,
    caller: Caller,
    taxpayer: gsp_gateway_storage::repo::taxpayers::TaxpayerRow,
    body: &AuthenticateBody,
) -> Result<Map<String, Value>, GstnError> {
    let candidates = decrypt_app_key(state, &body.app_key).await?;
    let (app_key, otp) = candidates.for_otp(required(&body.otp, "otp")?);
    let otp = otp.map_err(|_| GstnError::invalid_session())?;
    let window_end = window(state, &taxpayer.id).await?;
    let now = state.clock.now();
    let (expiry, token_expires_at) = token_lifetime(state, now, window_end);
    let auth_token = random_hex(16);
    let sek = crypto::fresh_key();
    let grant = OtpGrant {
        gstin: taxpayer.gstin.clone(),
        username: taxpayer.username.clone(),
        otp,
        dialect: Some(DialectKeys {
            token_hash: sha256_hex(&auth_token),
            token_expires_at,
            app_key: crypto::b64_encode(&app_key),
            sek: crypto::b64_encode(&sek),
        }),
    };
    let settings = state.settings.clone();
    state
        .db
        .run(move |conn| Ok(svc::exchange_otp(conn, &client, &grant, &settings, &caller, now)))
        .await??;
    Ok(token_fields(
        auth_token,
        expiry,
        crypto::encrypt_sek(&app_key, &sek),
    ))
}

fn parse_key(text: &str) -> Result<AesKey, GstnError> {
    let bytes = crypto::b64_decode(text).map_err(|_| GstnError::invalid_session())?;
    <AesKey>::try_from(bytes.as_slice()).map_err(|_| GstnError::invalid_session())
}

struct Refreshed {
    session_id: String,
}

fn refresh_in_db(
    conn: &mut DbConn,
    client: &GspClient,
    caller: &Caller,
    presented_hash: &str,
    new_keys: &GstnKeys<'_>,
    token_minutes: u32,
    now: DateTime<Utc>,
) -> Result<Refreshed, GstnError> {
    write_tx_as(conn, |conn| {
        let owner =
            sessions::find_by_gstn_token(conn, presented_hash)?.ok_or_else(GstnError::invalid_session)?;
        let session = owner.session;
        if session.gsp_client_id != client.client_id {
            return Err(GstnError::invalid_session());
        }
        let taxpayer = taxpayers::find(conn, &session.taxpayer_id)?.ok_or_else(GstnError::invalid_session)?;
        check_window(&access::get(conn, &taxpayer.id)?, now, token_minutes)?;
        if session.revoked_at.is_some() {
            return Err(GstnError::invalid_session());
        }
        if from_db(session.expires_at) <= now {
            return Err(GstnError::new("AUTH4038", "Session Expired"));
        }
        audit::append(
            conn,
            NewAuditEvent {
                session_id: Some(session.id.clone()),
                ..svc::gsp_event(
                    client,
                    &taxpayer,
                    caller,
                    "session.refreshed",
                    json!({"dialect": "gstn"}),
                )
            },
            now,
        )?;
        let keys = GstnKeys {
            token_expires_at: new_keys.token_expires_at.min(session.expires_at),
            ..new_keys.clone()
        };
        sessions::set_gstn_keys(conn, &session.id, &keys)?;
        Ok(Refreshed {
            session_id: session.id,
        })
    })
}

async fn refresh_token(
    state: &AppState,
    client: GspClient,
    caller: Caller,
    taxpayer: gsp_gateway_storage::repo::taxpayers::TaxpayerRow,
    body: &AuthenticateBody,
) -> Result<Map<String, Value>, GstnError> {
    let presented = required(&body.auth_token, "auth_token")?;
    let presented_hash = sha256_hex(presented);
    let hash = presented_hash.clone();
    let owner = state
        .db
        .run(move |conn| sessions::find_by_gstn_token(conn, &hash))
        .await?
        .filter(|o| o.gstin == taxpayer.gstin)
        .ok_or_else(GstnError::invalid_session)?;
    let sek = parse_key(owner.session.gstn_sek.as_deref().unwrap_or(""))?;
    let app_key = crypto::decrypt_refresh_app_key(&sek, required(&body.app_key, "app_key")?)
        .map_err(|_| GstnError::invalid_app_key())?;
    let now = state.clock.now();
    let window_end = window(state, &taxpayer.id).await?;
    let (expiry, token_expires_at) = token_lifetime(state, now, window_end);
    let auth_token = random_hex(16);
    let new_sek = crypto::fresh_key();
    let (token_hash, app_key_b64, sek_b64) = (
        sha256_hex(&auth_token),
        crypto::b64_encode(&app_key),
        crypto::b64_encode(&new_sek),
    );
    let token_minutes = state.settings.gstn_token_expiry_minutes;
    let refreshed = state
        .db
        .run(move |conn| {
            let keys = GstnKeys {
                token_hash: &token_hash,
                token_expires_at: to_db(token_expires_at),
                app_key: &app_key_b64,
                sek: &sek_b64,
            };
            Ok(refresh_in_db(
                conn,
                &client,
                &caller,
                &presented_hash,
                &keys,
                token_minutes,
                now,
            ))
        })
        .await??;
    state.view.forget_dialect_tokens(&refreshed.session_id);
    Ok(token_fields(
        auth_token,
        expiry,
        crypto::encrypt_sek(&app_key, &new_sek),
    ))
}

async fn logout(
    state: &AppState,
    client: &GspClient,
    caller: Caller,
    taxpayer: &gsp_gateway_storage::repo::taxpayers::TaxpayerRow,
    body: &AuthenticateBody,
) -> Result<Map<String, Value>, GstnError> {
    let presented = sha256_hex(required(&body.auth_token, "auth_token")?);
    let owner = state
        .db
        .run(move |conn| sessions::find_by_gstn_token(conn, &presented))
        .await?
        .filter(|o| o.gstin == taxpayer.gstin && o.session.gsp_client_id == client.client_id)
        .ok_or_else(GstnError::invalid_session)?;
    // The live system checks the app key + auth token pair: compare the decrypted keys.
    let candidates = decrypt_app_key(state, &body.app_key).await?;
    let stored = owner.session.gstn_app_key.as_deref().unwrap_or("");
    if !candidates.contains_b64(stored) {
        return Err(GstnError::invalid_app_key());
    }
    let (session_id, client_id, now) = (
        owner.session.id.clone(),
        client.client_id.clone(),
        state.clock.now(),
    );
    let id = session_id.clone();
    state
        .db
        .run(move |conn| Ok(svc::logout(conn, &id, &client_id, &caller, now)))
        .await??;
    state.view.session_revoked(&session_id);
    Ok(Map::new())
}
