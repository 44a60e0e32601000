//! Data calls under `/taxpayerapi/v{X.Y}/…`: the same enforcement as `/v1/gst/` (access window,
//! session, rate limits, from memory), payloads decrypted and their HMAC checked, then forwarded to
//! the upstream as plain JSON or answered by the sandbox, and the answer encrypted under a fresh REK.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use actix_web::dev::RequestHead;
use actix_web::http::header::{self as http_header, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpResponse, web};
use gsp_gateway_domain::authorize;
use gsp_gateway_domain::secret::sha256;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::crypto::{self, AesKey};
use super::dialect::{self, GstnError, StatusCd, check_state_code, header, headers, verify_client};
use super::evc;
use crate::gateway::DialectToken;
use crate::gateway::forward::{UpstreamClient, set_session_facts};
use crate::gateway::view::{CachedClient, SandboxReference};
use crate::state::AppState;

/// What the enforcement established about a dialect data call.
pub(super) struct Admitted {
    pub(super) client: Arc<CachedClient>,
    pub(super) token: Arc<DialectToken>,
    pub(super) sek: AesKey,
    /// How the client's software reads `status_cd`.
    numeric_status_cd: bool,
}

pub(super) async fn admit(
    state: &AppState,
    req: &RequestHead,
    query: &Query<'_>,
) -> Result<Admitted, GstnError> {
    let headers = req.headers();
    let client = verify_client(state, headers).await?;
    let token_text = header(headers, &headers::AUTH_TOKEN)
        .filter(|t| !t.is_empty())
        .ok_or_else(GstnError::invalid_session)?;
    let token = state
        .view
        .dialect_token(&state.db, &sha256(token_text))
        .await?
        .filter(|t| t.client_id == client.client_id)
        .ok_or_else(GstnError::invalid_session)?;
    // The token names its taxpayer; a call that names another (or none) is refused, not re-aimed.
    let gstin = header(headers, &headers::GSTIN).ok_or_else(|| GstnError::missing("gstin"))?;
    let username = header(headers, &headers::USERNAME).ok_or_else(|| GstnError::missing("username"))?;
    let queried = query
        .all("gstin")
        .all(|value| value.eq_ignore_ascii_case(&token.gstin));
    if !gstin.eq_ignore_ascii_case(&token.gstin)
        || !username.eq_ignore_ascii_case(&token.username)
        || !queried
    {
        return Err(GstnError::invalid_session());
    }
    check_state_code(headers, &token.gstin)?;
    let now = state.clock.now();
    let (session, access) = state
        .view
        .lookup(&state.db, &token.session_id)
        .await?
        .ok_or_else(GstnError::invalid_session)?;
    authorize(&session.state, &access, now).map_err(|e| GstnError::from(crate::error::ApiError::from(e)))?;
    if token.expires_at <= now {
        return Err(GstnError::new("AUTH4038", "Session Expired"));
    }
    let verdict = state.limits.check(&session.id, &session.client_id);
    if !verdict.allowed {
        crate::gateway::note_rate_limited(verdict.policy);
        return Err(GstnError::rate_limited(
            format!(
                "the {} rate limit is exhausted; retry after {} s",
                verdict.policy, verdict.reset_secs
            ),
            verdict.reset_secs,
        ));
    }
    state.view.mark_used(&token.session_id, &session, now);
    let sek = token.sek_key.ok_or_else(GstnError::invalid_session)?;
    Ok(Admitted {
        numeric_status_cd: dialect::numeric_status_cd(&state.settings, Some(&client)),
        client,
        token,
        sek,
    })
}

/// The query string's parameters, in order (the dialect's GETs carry a handful; borrowed unless
/// percent-encoded).
pub(super) struct Query<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'a> Query<'a> {
    pub(super) fn parse(text: &'a str) -> Self {
        Self(form_urlencoded::parse(text.as_bytes()).collect())
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_ref())
    }

    /// Every value of `name`, in order.
    fn all<'q>(&'q self, name: &'q str) -> impl Iterator<Item = &'q str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_ref())
    }
}

/// The success envelope of a data response: `{"status_cd":"1","data":…,"rek":…,"hmac":…}`. Written
/// by hand, the Base64 straight into the body: its alphabet needs no JSON escaping.
fn encrypted_answer(status: StatusCd, answer: &crypto::EncryptedResponseBytes) -> Vec<u8> {
    let mut json =
        Vec::with_capacity((answer.data.len() + answer.rek.len() + answer.hmac.len()) * 4 / 3 + 64);
    json.extend_from_slice(b"{\"status_cd\":");
    json.extend_from_slice(status.json().as_bytes());
    for (name, bytes) in [
        ("data", answer.data.as_slice()),
        ("rek", answer.rek.as_slice()),
        ("hmac", answer.hmac.as_slice()),
    ] {
        json.extend_from_slice(b",\"");
        json.extend_from_slice(name.as_bytes());
        json.extend_from_slice(b"\":\"");
        crypto::b64_append(bytes, &mut json);
        json.push(b'"');
    }
    json.push(b'}');
    json
}

/// An encrypted write body: `hmac` over the data, or a filing's signature (`st`, `sign`, `sid`).
#[derive(Debug, Deserialize)]
struct EncryptedBody {
    action: Option<String>,
    data: Option<String>,
    hmac: Option<String>,
    st: Option<String>,
    sign: Option<String>,
    sid: Option<String>,
}

/// An `action` in upper case, as the GST System writes them (copied only when it is not), or GEN5007
/// unless it is letters and digits: `"RETFILE "` must not pass for something other than `RETFILE`
/// here and be read as `RETFILE` upstream.
fn action_of(text: Cow<'_, str>) -> Result<Cow<'_, str>, GstnError> {
    if text.is_empty() || text.len() > 32 || !text.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(GstnError::new("GEN5007", "Malformed request: action"));
    }
    Ok(if text.bytes().any(|b| b.is_ascii_lowercase()) {
        Cow::Owned(text.to_ascii_uppercase())
    } else {
        text
    })
}

fn to_json(value: &impl Serialize) -> Result<web::Bytes, GstnError> {
    serde_json::to_vec(value)
        .map(web::Bytes::from)
        .map_err(|_| GstnError::internal())
}

/// The handler for every data call.
pub async fn data_call(
    state: &AppState,
    upstream: &UpstreamClient,
    req: &RequestHead,
    version: &str,
    resource: &str,
    body: &[u8],
) -> HttpResponse {
    let answered = serve(state, upstream, req, version, resource, body)
        .await
        .map(|(admitted, answer)| {
            encrypted_answer(
                StatusCd::new(admitted.numeric_status_cd, true),
                &crypto::encrypt_response_bytes(&admitted.sek, &crypto::fresh_key(), &answer),
            )
        });
    match answered {
        Ok(json) => HttpResponse::Ok()
            .insert_header((
                http_header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ))
            .body(json),
        Err(error) => dialect::failure(dialect::numeric_status_cd_of(state, req.headers()).await, &error),
    }
}

/// Admits the call, then answers it: the JSON to encrypt, with what admitted it (the session key to
/// encrypt it with).
async fn serve(
    state: &AppState,
    upstream: &UpstreamClient,
    req: &RequestHead,
    version: &str,
    resource: &str,
    body: &[u8],
) -> Result<(Admitted, web::Bytes), GstnError> {
    let query = Query::parse(req.uri.query().unwrap_or_default());
    let admitted = admit(state, req, &query).await?;
    let mut evc_signed = None;
    let mut presented = None;
    let (action, payload) = if matches!(req.method, Method::PUT | Method::POST) {
        let envelope: EncryptedBody =
            serde_json::from_slice(body).map_err(|_| GstnError::new("GEN5007", "Malformed request"))?;
        let action = action_of(Cow::Owned(
            envelope.action.ok_or_else(|| GstnError::missing("action"))?,
        ))?
        .into_owned();
        let data = envelope.data.ok_or_else(|| GstnError::missing("data"))?;
        let plain = match envelope.st.as_deref() {
            Some(st) => {
                let signed = evc::Signed {
                    st,
                    sign: envelope.sign.as_deref(),
                    sid: envelope.sid.as_deref(),
                };
                let (plain, code) = evc::open_signed(&admitted, &action, &data, signed)?;
                presented = Some(code);
                plain
            }
            // A return is filed signed; without a signature the GST System asks for the EVC OTP.
            None if action == "RETFILE" => {
                return Err(GstnError::new(
                    "EVCREQUEST",
                    "RETFILE needs a signature: request an EVC OTP (action EVCOTP) and send st EVC, sid and sign",
                ));
            }
            None => {
                let hmac = envelope.hmac.ok_or_else(|| GstnError::missing("hmac"))?;
                crypto::decrypt_request(&admitted.sek, &data, &hmac).map_err(|error| match error {
                    crypto::CryptoError::HmacMismatch => {
                        GstnError::new("GEN5007", "Malformed request: hmac does not match data")
                    }
                    _ => GstnError::new(
                        "GEN5007",
                        "Malformed request: data cannot be decrypted with the session key",
                    ),
                })?
            }
        };
        let payload: Value = serde_json::from_slice(&plain)
            .map_err(|_| GstnError::new("GEN5007", "Malformed request: data is not JSON"))?;
        if let Some(presented) = presented {
            evc_signed = Some(evc::consume(state, req, &admitted, presented, resource, &payload).await?);
        }
        (Cow::Owned(action), Some(payload))
    } else {
        let action = action_of(Cow::Borrowed(
            query.get("action").ok_or_else(|| GstnError::missing("action"))?,
        ))?;
        // A filing is a signed POST; read as a GET it would reach the upstream unsigned.
        if action == "RETFILE" {
            return Err(GstnError::new("GEN5007", "RETFILE is sent by POST"));
        }
        (action, None)
    };
    let answer = if upstream.is_configured() {
        let call = Call {
            version,
            resource,
            action: &action,
            evc: evc_signed.as_ref(),
        };
        to_json(&forward(upstream, req, &call, &admitted.token, payload).await?)?
    } else {
        sandbox(
            state,
            req,
            resource,
            &action,
            &query,
            payload.as_ref(),
            &admitted.token,
        )?
    };
    Ok((admitted, answer))
}

/// Request headers of the GST System that an upstream may need, passed on as sent.
const PASSED_ON: [&str; 6] = [
    "ret_period",
    "ret_prd",
    "rtn_typ",
    "userrole",
    "api_version",
    "txn",
];

/// The header that names a forwarded call's `action` (a write's is in its encrypted envelope, not in
/// the JSON passed on; a read's is also in the query).
const ACTION_HEADER: &str = "x-gstn-action";

/// What a data call asks for: `/taxpayerapi/{version}/{resource}`, with its `action`, and for a
/// filing the EVC signature the gateway checked.
struct Call<'a> {
    version: &'a str,
    resource: &'a str,
    action: &'a str,
    evc: Option<&'a evc::EvcSigned>,
}

/// The headers that tell the upstream a filing was signed by EVC, and for which PAN and form (the
/// gateway checked the code; the upstream never sees it).
const SIGNED_WITH_HEADER: &str = "x-gstn-signed-with";
const SIGNATORY_PAN_HEADER: &str = "x-gstn-signatory-pan";
const FORM_TYPE_HEADER: &str = "x-gstn-form-type";

/// Forwards the decrypted call to the upstream as plain JSON, its `action` in `X-Gstn-Action`, and
/// returns the upstream's JSON answer. An answer in the dialect's failure envelope
/// (`{"status_cd":"0","error":{"error_cd","message"}}`, any status below 500) is passed on as that
/// refusal, so GSP software sees the upstream's own code (RET13508 "no documents", say).
async fn forward(
    upstream: &UpstreamClient,
    req: &RequestHead,
    call: &Call<'_>,
    token: &DialectToken,
    payload: Option<Value>,
) -> Result<Value, GstnError> {
    let Call {
        version,
        resource,
        action,
        evc,
    } = *call;
    if crate::gateway::forward::has_dot_segment(resource) {
        return Err(crate::gateway::forward::dot_segment_refused().into());
    }
    let mut target = format!("/taxpayerapi/{version}/{resource}");
    if !req.uri.query().unwrap_or_default().is_empty() {
        target.push('?');
        target.push_str(req.uri.query().unwrap_or_default());
    }
    let method = http::Method::from_bytes(req.method.as_str().as_bytes())
        .map_err(|_| GstnError::new("GEN5007", "Unsupported method"))?;
    let mut headers = http::HeaderMap::new();
    set_session_facts(&mut headers, &token.gstin, &token.client_id, &token.session_id);
    let action = http::HeaderValue::from_str(action)
        .map_err(|_| GstnError::new("GEN5007", "Malformed request: action"))?;
    headers.insert(http::HeaderName::from_static(ACTION_HEADER), action);
    if let Some(evc) = evc {
        // Both checked: a PAN's shape and a form type's letters and digits are valid header values.
        for (name, value) in [
            (SIGNED_WITH_HEADER, "EVC"),
            (SIGNATORY_PAN_HEADER, evc.pan.as_str()),
            (FORM_TYPE_HEADER, evc.form_type.as_str()),
        ] {
            let value = http::HeaderValue::from_str(value).map_err(|_| GstnError::internal())?;
            headers.insert(http::HeaderName::from_static(name), value);
        }
    }
    for name in PASSED_ON {
        if let Some(value) = header(req.headers(), name).and_then(|v| http::HeaderValue::from_str(v).ok()) {
            headers.insert(http::HeaderName::from_static(name), value);
        }
    }
    let body = match payload {
        Some(payload) => {
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            Some(to_json(&payload)?)
        }
        None => None,
    };
    let (status, answer) = upstream
        .exchange(method, &target, headers, body)
        .await
        .map_err(|error| {
            tracing::warn!(?error, "dialect upstream unavailable");
            GstnError::unavailable()
        })?;
    if status.is_server_error() {
        tracing::warn!(status = status.as_u16(), "dialect upstream failed");
        return Err(GstnError::unavailable());
    }
    let answer: Value = serde_json::from_slice(&answer).map_err(|_| {
        tracing::warn!(status = status.as_u16(), "dialect upstream answered no JSON");
        GstnError::unavailable()
    })?;
    if let Some(refusal) = upstream_refusal(&answer) {
        return Err(refusal);
    }
    if !status.is_success() {
        return Err(GstnError::with_status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "TEC4001",
            format!("The upstream refused the call ({})", status.as_u16()),
        ));
    }
    Ok(answer)
}

/// The refusal in an upstream answer written in the dialect's failure envelope (`status_cd` `"0"` or
/// `0`): its `error_cd` when that is a short code of letters, digits, `_` and `-`, else TEC4001 (a
/// failure the gateway cannot name is not passed on as a success).
fn upstream_refusal(answer: &Value) -> Option<GstnError> {
    let status_cd = answer.get("status_cd")?;
    if status_cd.as_str() != Some("0") && status_cd.as_u64() != Some(0) {
        return None;
    }
    let error = answer.get("error");
    let code = error
        .and_then(|e| e.get("error_cd"))
        .and_then(Value::as_str)
        .filter(|code| {
            (1..=32).contains(&code.len())
                && code
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    let Some(code) = code else {
        tracing::warn!("dialect upstream answered a failure without a usable error_cd");
        return Some(GstnError::with_status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "TEC4001",
            "The upstream refused the call",
        ));
    };
    let message: String = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(512)
        .collect();
    Some(GstnError::upstream(code.to_owned(), message))
}

fn ret_period<'a>(req: &'a RequestHead, query: &'a Query<'a>) -> Result<&'a str, GstnError> {
    let period = query
        .get("ret_period")
        .or_else(|| query.get("rtnprd"))
        .or_else(|| header(req.headers(), "ret_period"))
        .or_else(|| header(req.headers(), "ret_prd"))
        .ok_or_else(|| GstnError::missing("ret_period"))?;
    let valid = period.len() == 6
        && period.bytes().all(|b| b.is_ascii_digit())
        && matches!(period[..2].parse::<u8>(), Ok(1..=12));
    // Not RET11402: GSP software reads that code as "re-authenticate" (gstn-dialect.md §6.4).
    if valid {
        Ok(period)
    } else {
        Err(GstnError::new(
            "GEN5001",
            "Invalid request parameters: ret_period must be MMYYYY",
        ))
    }
}

/// The GSTR-1 sections the sandbox serves by GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Section {
    B2b,
    ReturnSummary,
}

/// The sandbox's GSTR-1 section answers are a function of the GSTIN and the period alone: each
/// worker keeps the JSON it wrote (a bounded number of them), as the REST sandbox keeps registrations.
const SECTION_CACHE_ENTRIES: usize = 4096;

/// A cache key: the section, the GSTIN (15 characters) and the period (6 digits), on the stack.
type SectionKey = [u8; 22];

fn section_key(section: Section, gstin: &str, period: &str) -> Option<SectionKey> {
    let (gstin, period) = (gstin.as_bytes(), period.as_bytes());
    if gstin.len() != 15 || period.len() != 6 {
        return None;
    }
    let mut key = [0u8; 22];
    key[0] = section as u8;
    key[1..16].copy_from_slice(gstin);
    key[16..].copy_from_slice(period);
    Some(key)
}

thread_local! {
    static SECTIONS: RefCell<HashMap<SectionKey, web::Bytes>> = RefCell::new(HashMap::new());
}

fn section(section: Section, gstin: &str, period: &str) -> Result<web::Bytes, GstnError> {
    let key = section_key(section, gstin, period);
    if let Some(json) = key.and_then(|key| SECTIONS.with_borrow(|cache| cache.get(&key).cloned())) {
        return Ok(json);
    }
    let json = match section {
        Section::B2b => to_json(&b2b(gstin, period)),
        Section::ReturnSummary => to_json(&return_summary(gstin, period)),
    }?;
    if let Some(key) = key {
        SECTIONS.with_borrow_mut(|cache| {
            if cache.len() >= SECTION_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(key, json.clone());
        });
    }
    Ok(json)
}

/// GSTR-1 `B2B`: one supplier's invoices (one invoice per period in the sandbox).
#[derive(Serialize)]
struct B2bSection<'a> {
    b2b: [B2bSupplier<'a>; 1],
}

#[derive(Serialize)]
struct B2bSupplier<'a> {
    ctin: &'a str,
    cfs: &'a str,
    inv: [B2bInvoice<'a>; 1],
}

#[derive(Serialize)]
struct B2bInvoice<'a> {
    inum: String,
    idt: String,
    val: f64,
    pos: &'a str,
    rchrg: &'a str,
    inv_typ: &'a str,
    itms: [B2bItem; 1],
}

#[derive(Serialize)]
struct B2bItem {
    num: u32,
    itm_det: ItemDetail,
}

#[derive(Serialize)]
struct ItemDetail {
    rt: f64,
    txval: f64,
    iamt: f64,
    csamt: f64,
}

/// GSTR-1 `RETSUM`: the return's summary by section.
#[derive(Serialize)]
struct ReturnSummary<'a> {
    gstin: &'a str,
    ret_period: &'a str,
    summ_typ: &'a str,
    sec_sum: [SectionSummary<'a>; 1],
}

#[derive(Serialize)]
struct SectionSummary<'a> {
    sec_nm: &'a str,
    ttl_rec: u32,
    ttl_val: f64,
    ttl_tax: f64,
    ttl_igst: f64,
}

/// The sandbox's B2B section: one invoice from one supplier in the period.
fn b2b<'a>(gstin: &'a str, period: &'a str) -> B2bSection<'a> {
    B2bSection {
        b2b: [B2bSupplier {
            ctin: "27AAPFU0939F1ZV",
            cfs: "Y",
            inv: [B2bInvoice {
                inum: format!("S{}{}", &period[..2], gstin.get(2..7).unwrap_or_default()),
                idt: format!("15-{}-{}", &period[..2], &period[2..]),
                val: 11800.0,
                pos: "27",
                rchrg: "N",
                inv_typ: "R",
                itms: [B2bItem {
                    num: 1,
                    itm_det: ItemDetail {
                        rt: 18.0,
                        txval: 10000.0,
                        iamt: 1800.0,
                        csamt: 0.0,
                    },
                }],
            }],
        }],
    }
}

/// The sandbox's return summary: the B2B section's totals.
fn return_summary<'a>(gstin: &'a str, period: &'a str) -> ReturnSummary<'a> {
    ReturnSummary {
        gstin,
        ret_period: period,
        summ_typ: "L",
        sec_sum: [SectionSummary {
            sec_nm: "B2B",
            ttl_rec: 1,
            ttl_val: 11800.0,
            ttl_tax: 10000.0,
            ttl_igst: 1800.0,
        }],
    }
}

/// The built-in sandbox of the dialect: GSTR-1 sections, RETSAVE and RETSTATUS, per the spec's shapes.
fn sandbox(
    state: &AppState,
    req: &RequestHead,
    resource: &str,
    action: &str,
    query: &Query,
    payload: Option<&Value>,
    token: &DialectToken,
) -> Result<web::Bytes, GstnError> {
    let resource = resource.trim_end_matches('/');
    match (req.method.clone(), resource, action) {
        (Method::GET, "returns/gstr1", "B2B") => section(Section::B2b, &token.gstin, ret_period(req, query)?),
        (Method::GET, "returns/gstr1", "RETSUM") => {
            section(Section::ReturnSummary, &token.gstin, ret_period(req, query)?)
        }
        (Method::PUT, "returns/gstr1", "RETSAVE") => {
            let payload = payload.ok_or_else(|| GstnError::missing("data"))?;
            let gstin = payload
                .get("gstin")
                .and_then(Value::as_str)
                .ok_or_else(|| GstnError::missing("gstin"))?;
            if !gstin.eq_ignore_ascii_case(&token.gstin) {
                return Err(GstnError::new(
                    "GEN5001",
                    "Invalid request parameters: the return's gstin is not the session's",
                ));
            }
            let period = payload
                .get("fp")
                .and_then(Value::as_str)
                .ok_or_else(|| GstnError::missing("fp"))?
                .to_owned();
            let reference_id =
                format!("GSPGW{}", &uuid::Uuid::new_v4().simple().to_string()[..15]).to_uppercase();
            state.view.remember_sandbox_reference(
                reference_id.clone(),
                SandboxReference {
                    gstin: token.gstin.clone(),
                    ret_period: period,
                    action: "SAVE".into(),
                },
            );
            to_json(&json!({"reference_id": reference_id}))
        }
        // Reached only signed, by POST to `returns/<form>`, for the session's taxpayer: [`serve`]
        // refuses an unsigned RETFILE, and `evc::consume` checks the filing, then the code.
        (Method::POST, resource, "RETFILE") if resource.starts_with("returns/") => {
            let ack_num = format!(
                "AA{}{}",
                &token.gstin[..2],
                &uuid::Uuid::new_v4().simple().to_string()[..13]
            )
            .to_uppercase();
            to_json(&json!({"ack_num": ack_num}))
        }
        (Method::GET, "returns", "RETSTATUS") => {
            let reference_id = query
                .get("ref_id")
                .or_else(|| query.get("trans_id"))
                .ok_or_else(|| GstnError::missing("ref_id"))?;
            let saved = state
                .view
                .sandbox_reference(reference_id)
                .filter(|r| r.gstin == token.gstin)
                .ok_or_else(|| GstnError::new("RET11409", "Invalid reference id"))?;
            to_json(
                &json!({"form_typ": "R1", "status_cd": "P", "action": saved.action, "ret_period": saved.ret_period}),
            )
        }
        _ => Err(GstnError::new(
            "GEN5007",
            format!(
                "The sandbox does not serve {} {resource} action {action}",
                req.method
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_carries_the_same_fields_as_the_base64_encryption() {
        let (sek, rek) = ([3u8; 32], [9u8; 32]);
        let json = br#"{"gstin":"24AAUPV7468F1ZW","ret_period":"112025"}"#;
        let expected = crypto::encrypt_response_with_rek(&sek, &rek, json);
        for numeric in [false, true] {
            let status = StatusCd::new(numeric, true);
            let body = encrypted_answer(status, &crypto::encrypt_response_bytes(&sek, &rek, json));
            let envelope: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                envelope,
                json!({
                    "status_cd": if numeric { json!(1) } else { json!("1") },
                    "data": expected.data,
                    "rek": expected.rek,
                    "hmac": expected.hmac,
                })
            );
        }
    }

    #[test]
    fn section_answers_are_kept_per_gstin_period_and_section() {
        let gstin = "24AAUPV7468F1ZW";
        let first = section(Section::ReturnSummary, gstin, "112025").unwrap();
        let again = section(Section::ReturnSummary, gstin, "112025").unwrap();
        assert_eq!(
            first.as_ptr(),
            again.as_ptr(),
            "the second answer is the kept one"
        );
        let summary: Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(summary["gstin"], gstin);
        assert_eq!(summary["ret_period"], "112025");

        let other_period = section(Section::ReturnSummary, gstin, "122025").unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&other_period).unwrap()["ret_period"],
            "122025"
        );
        let b2b: Value = serde_json::from_slice(&section(Section::B2b, gstin, "112025").unwrap()).unwrap();
        assert_eq!(b2b["b2b"][0]["inv"][0]["inum"], "S11AAUPV");
        assert_eq!(b2b["b2b"][0]["inv"][0]["idt"], "15-11-2025");

        // Not a 15-character GSTIN: answered, not kept.
        let odd = section(Section::ReturnSummary, "24AAUPV", "112025").unwrap();
        let odd_again = section(Section::ReturnSummary, "24AAUPV", "112025").unwrap();
        assert_eq!(odd, odd_again);
        assert_ne!(odd.as_ptr(), odd_again.as_ptr());
    }
}
