//! EVC filing in the dialect (gstn-dialect.md §2, §3.7):
//!
//! - `GET …/authenticate?action=EVCOTP&gstin=&pan=&form_type=` with the data-call headers (an open
//!   session) sends the taxpayer a code that signs one filing of `form_type` for `pan`;
//! - `RETFILE` with `st:"EVC"`, `sid:"PAN|OTP"` and `sign` = HMAC-SHA256(key = `sid`, `B`) instead of
//!   `hmac` is accepted once the code is right, and uses it up.
//!
//! Refusals use the codes GSP software branches on (§6.4): EVCREQUEST for "an EVC OTP is needed"
//! (none pending, used, expired or voided), AUTH4034 for a wrong one. DSC filing is not served.

use actix_web::HttpResponse;
use actix_web::dev::RequestHead;
use actix_web::http::Method;
use gsp_gateway_domain::{OtpCode, Pan};
use serde_json::{Map, Value};

use super::crypto;
use super::data::{Admitted, Query, admit};
use super::dialect::{self, GstnError};
use crate::services::evc::{self as svc, EvcOtpRequest, EvcOutcome, EvcSignature};
use crate::services::gsp::{EvcScope, GspClient};
use crate::state::AppState;

/// The longest `form_type` accepted (the GST System's are short: `R1`, `R3B`, `GSTR9C`, …).
const FORM_TYPE_MAX: usize = 16;

/// The handler of `EVCOTP`.
pub async fn evc_otp(state: &AppState, req: &RequestHead) -> HttpResponse {
    let answer = request_code(state, req).await;
    let numeric = dialect::numeric_status_cd_of(state, req.headers()).await;
    match answer {
        Ok(()) => dialect::success(numeric, Map::new()),
        Err(error) => dialect::failure(numeric, &error),
    }
}

fn gsp_client(admitted: &Admitted) -> GspClient {
    GspClient {
        client_id: admitted.client.client_id.clone(),
        name: admitted.client.name.clone(),
    }
}

/// A PAN as the GST System writes it (upper case), or GEN5001.
fn parse_pan(text: &str) -> Result<Pan, GstnError> {
    Pan::parse(&text.trim().to_ascii_uppercase())
        .map_err(|_| GstnError::new("GEN5001", "Invalid request parameters: pan is not a PAN"))
}

fn parse_form_type(text: &str) -> Result<String, GstnError> {
    let form_type = text.trim();
    if form_type.is_empty()
        || form_type.len() > FORM_TYPE_MAX
        || !form_type.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(GstnError::new(
            "GEN5001",
            "Invalid request parameters: form_type is letters and digits (R1, R3B, …)",
        ));
    }
    Ok(form_type.to_ascii_uppercase())
}

async fn request_code(state: &AppState, req: &RequestHead) -> Result<(), GstnError> {
    let query = Query::parse(req.uri.query().unwrap_or_default());
    let admitted = admit(state, req, &query).await?;
    super::authenticate::throttle(state, &admitted.client.client_id)?;
    let pan = parse_pan(query.get("pan").ok_or_else(|| GstnError::missing("pan"))?)?;
    let form_type = parse_form_type(
        query
            .get("form_type")
            .ok_or_else(|| GstnError::missing("form_type"))?,
    )?;
    let code = state
        .settings
        .gstn_sandbox_otp
        .as_deref()
        .map_or_else(OtpCode::generate, OtpCode::fixed);
    let client = gsp_client(&admitted);
    let request = EvcOtpRequest {
        session_id: admitted.token.session_id.clone(),
        purpose: EvcScope {
            pan: pan.as_str().to_owned(),
            form_type,
        },
    };
    let (settings, otp_client, caller, now) = (
        state.settings.clone(),
        client.clone(),
        dialect::caller(state, req),
        state.clock.now(),
    );
    let opened = state
        .db
        .run(move |conn| {
            Ok(svc::open_evc_otp(
                conn,
                &otp_client,
                &request,
                code,
                &settings,
                &caller,
                now,
            ))
        })
        .await??;
    crate::routes::gsp::deliver_otp(state, &client, &opened).await?;
    Ok(())
}

/// A filing's signature fields, as sent.
pub struct Signed<'a> {
    /// `st`: `EVC` (or `DSC`, which is refused).
    pub st: &'a str,
    /// `sign`.
    pub sign: Option<&'a str>,
    /// `sid` = `PAN|OTP`.
    pub sid: Option<&'a str>,
}

/// What the upstream is told about a filing signed by EVC.
#[derive(Debug, Clone)]
pub struct EvcSigned {
    /// The signatory's PAN.
    pub pan: String,
    /// The form the code was asked for.
    pub form_type: String,
}

/// A signature whose `sign` matched `data`, its code not yet checked.
pub(super) struct Presented {
    pan: Pan,
    otp: String,
}

/// Opens a signed filing: `st`, the action, `sid`, and `sign` over `data`. Returns the decrypted JSON
/// bytes and the code presented, which [`consume`] checks once the filing itself is known to be good.
/// Nothing here costs an attempt: a `sign` that does not match is a malformed request.
pub(super) fn open_signed(
    admitted: &Admitted,
    action: &str,
    data: &str,
    signed: Signed<'_>,
) -> Result<(Vec<u8>, Presented), GstnError> {
    if signed.st.eq_ignore_ascii_case("DSC") {
        return Err(GstnError::new(
            "GEN5007",
            "DSC filing is not served by this gateway: file with st EVC",
        ));
    }
    if !signed.st.eq_ignore_ascii_case("EVC") {
        return Err(GstnError::new(
            "GEN5001",
            "Invalid request parameters: st must be EVC",
        ));
    }
    if action != "RETFILE" {
        return Err(GstnError::new(
            "GEN5001",
            "Invalid request parameters: an EVC signature belongs to RETFILE",
        ));
    }
    let sign = signed.sign.ok_or_else(|| GstnError::missing("sign"))?;
    let sid = signed.sid.ok_or_else(|| GstnError::missing("sid"))?;
    let (pan, otp) = sid
        .split_once('|')
        .filter(|(pan, otp)| !pan.is_empty() && !otp.is_empty())
        .ok_or_else(|| GstnError::new("GEN5001", "Invalid request parameters: sid is PAN|OTP"))?;
    let pan = parse_pan(pan)?;
    let plain = crypto::decrypt_evc_request(&admitted.sek, data, sign, sid).map_err(|error| match error {
        crypto::CryptoError::HmacMismatch => {
            GstnError::new("GEN5007", "Malformed request: sign does not match data")
        }
        _ => GstnError::new(
            "GEN5007",
            "Malformed request: data cannot be decrypted with the session key",
        ),
    })?;
    Ok((
        plain,
        Presented {
            pan,
            otp: otp.to_owned(),
        },
    ))
}

/// The form a filing's resource files, as `form_type` names it: `returns/gstr3b` is `R3B`,
/// `returns/itc04` is `ITC04`; `None` for a resource that is not `returns/<form>`.
fn form_of_resource(resource: &str) -> Option<String> {
    let form = resource.trim_end_matches('/').strip_prefix("returns/")?;
    if form.is_empty() || !form.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    Some(svc::form_code(form))
}

/// Checks the filing the code is to sign (POSTed to `returns/<form>` of the code's form, for the
/// session's taxpayer), then the code, which is used up: a filing refused for what it is costs the
/// taxpayer neither the code nor an attempt. Once used, the code is gone even if the upstream then
/// fails; the GSP asks for a new one.
pub(super) async fn consume(
    state: &AppState,
    req: &RequestHead,
    admitted: &Admitted,
    presented: Presented,
    resource: &str,
    payload: &Value,
) -> Result<EvcSigned, GstnError> {
    if req.method != Method::POST {
        return Err(GstnError::new("GEN5007", "RETFILE is sent by POST"));
    }
    let form = form_of_resource(resource).ok_or_else(|| {
        GstnError::new(
            "GEN5001",
            "Invalid request parameters: a filing signed by EVC goes to returns/<form>",
        )
    })?;
    let gstin = payload
        .get("gstin")
        .and_then(Value::as_str)
        .ok_or_else(|| GstnError::missing("gstin"))?;
    if !gstin.eq_ignore_ascii_case(&admitted.token.gstin) {
        return Err(GstnError::new(
            "GEN5001",
            "Invalid request parameters: the return's gstin is not the session's",
        ));
    }
    let Presented { pan, otp } = presented;
    let signature = EvcSignature {
        session_id: admitted.token.session_id.clone(),
        pan: pan.as_str().to_owned(),
        otp,
        form,
        resource: resource.to_owned(),
    };
    let (client, caller, now) = (
        gsp_client(admitted),
        dialect::caller(state, req),
        state.clock.now(),
    );
    let outcome = state
        .db
        .run(move |conn| Ok(svc::sign_with_evc(conn, &client, &signature, &caller, now)))
        .await??;
    match outcome {
        EvcOutcome::NoCode => crate::metrics::otp_failed("evc_no_pending_otp"),
        EvcOutcome::Wrong(_) => crate::metrics::otp_failed("evc_wrong_code"),
        EvcOutcome::Exhausted => crate::metrics::otp_failed("evc_attempts_exceeded"),
        EvcOutcome::Signed { .. } | EvcOutcome::OtherPan | EvcOutcome::OtherForm { .. } => {}
    }
    match outcome {
        EvcOutcome::Signed { form_type } => Ok(EvcSigned {
            pan: pan.as_str().to_owned(),
            form_type,
        }),
        EvcOutcome::NoCode => Err(GstnError::new(
            "EVCREQUEST",
            "No EVC OTP is pending for this session: request one (action EVCOTP)",
        )),
        EvcOutcome::OtherPan => Err(GstnError::new(
            "GEN5001",
            "Invalid request parameters: the PAN in sid is not the one the EVC OTP was sent for",
        )),
        EvcOutcome::OtherForm { form_type } => Err(GstnError::new(
            "GEN5001",
            format!("Invalid request parameters: the EVC OTP was sent to sign {form_type}, not this return"),
        )),
        EvcOutcome::Wrong(1) => Err(GstnError::new("AUTH4034", "Invalid OTP; 1 attempt remaining")),
        EvcOutcome::Wrong(left) => Err(GstnError::new(
            "AUTH4034",
            format!("Invalid OTP; {left} attempts remaining"),
        )),
        EvcOutcome::Exhausted => Err(GstnError::new(
            "EVCREQUEST",
            "Too many wrong OTPs: this EVC OTP is void; request a new one (action EVCOTP)",
        )),
    }
}
