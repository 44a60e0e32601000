//! EVC filing (gstn-dialect.md §3.7): a one-time code the taxpayer receives to sign one filing.
//!
//! A GSP asks for it within one of its sessions (the dialect's `EVCOTP`), naming the form and the
//! signatory's PAN. The code reaches the taxpayer like a session OTP (inbox, webhook or log), with
//! what it signs. The filing (`RETFILE` with `st:"EVC"`) presents `sid = "PAN|OTP"`; only that session
//! may use the code, once, with at most [`OTP_ATTEMPTS`](gsp_gateway_domain::otp::OTP_ATTEMPTS) wrong
//! tries.

use chrono::{DateTime, Utc};
use gsp_gateway_domain::{OtpChallenge, OtpCode, authorize};
use gsp_gateway_storage::repo::audit::{self, NewAuditEvent};
use gsp_gateway_storage::repo::otp;
use gsp_gateway_storage::repo::{access, sessions, taxpayers};
use gsp_gateway_storage::{DbConn, StorageError, write_tx_as};
use serde_json::json;

use super::gsp::{
    self as gsp_svc, CodeCheck, CodeChecked, EarlierChallenges, EvcScope, GspClient, NewChallenge, OpenedOtp,
};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};
use crate::json::rfc3339;
use crate::settings::Settings;

/// An EVC OTP asked for within a session.
#[derive(Debug, Clone)]
pub struct EvcOtpRequest {
    /// The session that asks (and alone may sign with the code).
    pub session_id: String,
    /// What the code signs: the form, for the signatory's PAN.
    pub purpose: EvcScope,
}

/// The session, still live, with its taxpayer; 401 `session_revoked` / `session_expired` or the
/// access window's 403 otherwise (re-read inside the write transaction).
fn live_session(
    conn: &mut DbConn,
    client: &GspClient,
    session_id: &str,
    now: DateTime<Utc>,
) -> Result<taxpayers::TaxpayerRow, ApiError> {
    let session = sessions::find(conn, session_id)?
        .filter(|s| s.gsp_client_id == client.client_id)
        .ok_or_else(|| ApiError::new(ErrorCode::SessionRevoked, "no such session"))?;
    let taxpayer = taxpayers::find(conn, &session.taxpayer_id)?
        .ok_or_else(|| ApiError::new(ErrorCode::SessionRevoked, "no such session"))?;
    authorize(&session.state(), &access::get(conn, &taxpayer.id)?, now)?;
    Ok(taxpayer)
}

/// Opens an EVC challenge for the session, replacing its pending one, and puts the message in the
/// taxpayer's inbox when that is the delivery channel. The OTP request rate applies per taxpayer and
/// GSP, counted apart from session OTPs.
pub fn open_evc_otp(
    conn: &mut DbConn,
    client: &GspClient,
    request: &EvcOtpRequest,
    code: OtpCode,
    settings: &Settings,
    caller: &Caller,
    now: DateTime<Utc>,
) -> Result<OpenedOtp, ApiError> {
    let challenge = OtpChallenge::open(uuid::Uuid::new_v4().to_string(), &code, now);
    let EvcScope { pan, form_type } = &request.purpose;
    let taxpayer = write_tx_as(conn, |conn| {
        let taxpayer = live_session(conn, client, &request.session_id, now)?;
        if let Some(refusal) =
            gsp_svc::otp_rate_refusal(conn, client, &taxpayer.id, otp::FOR_EVC, settings, now)?
        {
            return Err(refusal);
        }
        audit::append(
            conn,
            NewAuditEvent {
                session_id: Some(request.session_id.clone()),
                ..gsp_svc::gsp_event(
                    client,
                    &taxpayer,
                    caller,
                    "evc_otp.requested",
                    json!({
                        "gsp_name": client.name,
                        "otp_request_id": challenge.id,
                        "form_type": form_type,
                        "pan": pan,
                        "delivery": gsp_svc::delivery_name(settings.otp_delivery),
                        "expires_at": rfc3339(&challenge.expires_at),
                    }),
                )
            },
            now,
        )?;
        otp::replace_pending_evc(conn, &request.session_id)?;
        gsp_svc::store_challenge(
            conn,
            &NewChallenge {
                client,
                taxpayer_id: &taxpayer.id,
                challenge: &challenge,
                code: &code,
                evc: Some((&request.session_id, &request.purpose)),
            },
            settings,
            now,
        )?;
        Ok(taxpayer)
    })?;
    Ok(OpenedOtp {
        challenge_id: challenge.id,
        code,
        expires_at: challenge.expires_at,
        gstin: taxpayer.gstin,
        evc: Some(request.purpose.clone()),
    })
}

/// A filing's EVC signature, as presented: `sid = "PAN|OTP"`.
#[derive(Debug, Clone)]
pub struct EvcSignature {
    /// The session that files.
    pub session_id: String,
    /// The PAN named in `sid`.
    pub pan: String,
    /// The code named in `sid`.
    pub otp: String,
    /// The form the filing files, as [`form_code`] writes it (`R3B` for `returns/gstr3b`).
    pub form: String,
    /// The API path it was sent to (`returns/gstr3b`, …).
    pub resource: String,
}

/// A form's name as `form_type` is compared: upper case, `GSTR` shortened to `R` (the GST System's
/// `form_type` for GSTR-3B is `R3B`; its API path is `returns/gstr3b`).
pub fn form_code(form: &str) -> String {
    let form = form.to_ascii_uppercase();
    match form.strip_prefix("GSTR") {
        Some(rest) if !rest.is_empty() => format!("R{rest}"),
        _ => form,
    }
}

/// What checking an EVC signature's code found. Every outcome but [`EvcOutcome::Signed`] is a
/// refusal; a wrong code's cost (an attempt, or the code) is stored before it is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvcOutcome {
    /// The code was right and is used up: the filing may go on.
    Signed {
        /// The form the code was asked for.
        form_type: String,
    },
    /// No pending code for this session (never asked, used, replaced, voided or expired).
    NoCode,
    /// The PAN in `sid` is not the one the code was sent for (no attempt is counted).
    OtherPan,
    /// The filing is of another form than the code was sent to sign (no attempt is counted).
    OtherForm {
        /// The form the code signs.
        form_type: String,
    },
    /// A wrong code; this many tries are left.
    Wrong(u8),
    /// A wrong code and none left: the code is void.
    Exhausted,
}

/// Checks the signature's code against the session's pending EVC challenge and stores the
/// consequence, in one transaction: used up, one attempt fewer, or void.
pub fn sign_with_evc(
    conn: &mut DbConn,
    client: &GspClient,
    signature: &EvcSignature,
    caller: &Caller,
    now: DateTime<Utc>,
) -> Result<EvcOutcome, ApiError> {
    write_tx_as(conn, |conn| {
        let taxpayer = live_session(conn, client, &signature.session_id, now)?;
        let Some(row) = otp::find_pending_evc(conn, &signature.session_id)? else {
            return Ok(EvcOutcome::NoCode);
        };
        let challenge = row.to_domain();
        if now >= challenge.expires_at {
            return Ok(EvcOutcome::NoCode);
        }
        if !row
            .pan
            .as_deref()
            .is_some_and(|pan| pan.eq_ignore_ascii_case(&signature.pan))
        {
            return Ok(EvcOutcome::OtherPan);
        }
        let form_type = row.form_type.clone().unwrap_or_default();
        if form_code(&form_type) != signature.form {
            return Ok(EvcOutcome::OtherForm { form_type });
        }
        let event = |action: &str, detail: serde_json::Value| NewAuditEvent {
            session_id: Some(signature.session_id.clone()),
            ..gsp_svc::gsp_event(client, &taxpayer, caller, action, detail)
        };
        let mut detail = serde_json::Map::new();
        detail.insert("otp_request_id".into(), json!(row.id));
        let check = CodeCheck {
            earlier: EarlierChallenges::OfSession(&signature.session_id),
            failed: "evc_otp.failed",
            voided: "evc_otp.voided",
            detail,
            event: &event,
        };
        match gsp_svc::check_code(conn, &row, &signature.otp, &check, now)? {
            CodeChecked::NotPending => Ok(EvcOutcome::NoCode),
            CodeChecked::Wrong(attempts_remaining) => Ok(EvcOutcome::Wrong(attempts_remaining)),
            CodeChecked::Exhausted => Ok(EvcOutcome::Exhausted),
            CodeChecked::Accepted => {
                if !otp::close(conn, &row.id, otp::USED)? {
                    return Ok(EvcOutcome::NoCode);
                }
                audit::append(
                    conn,
                    event(
                        "return.signed",
                        json!({
                            "gsp_name": client.name,
                            "otp_request_id": row.id,
                            "signed_with": "EVC",
                            "pan": row.pan,
                            "form_type": form_type,
                            "action": "RETFILE",
                            "resource": signature.resource,
                        }),
                    ),
                    now,
                )?;
                Ok(EvcOutcome::Signed { form_type })
            }
        }
    })
}

/// Records each EVC code that the end of its session voided (`evc_otp.voided`), inside the transaction
/// that ended it: `event` gives the actor of the end, `ended_by` its reason (the session's
/// `revoked_reason`); the taxpayer, GSP and session are the code's.
pub fn record_voided(
    conn: &mut DbConn,
    voided: &[otp::VoidedEvc],
    ended_by: &str,
    event: &dyn Fn(&str, serde_json::Value) -> NewAuditEvent,
    now: DateTime<Utc>,
) -> Result<(), StorageError> {
    for code in voided {
        let detail = json!({
            "otp_request_id": code.id,
            "form_type": code.form_type,
            "reason": "session ended",
            "ended_by": ended_by,
        });
        audit::append(
            conn,
            NewAuditEvent {
                gstin: Some(code.gstin.clone()),
                gsp_client_id: Some(code.gsp_client_id.clone()),
                session_id: code.session_id.clone(),
                ..event("evc_otp.voided", detail)
            },
            now,
        )?;
    }
    Ok(())
}
