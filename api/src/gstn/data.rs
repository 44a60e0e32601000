//! Data calls under `/taxpayerapi/v{X.Y}/…`: the same enforcement as `/v1/gst/` (access window,
//! session, rate limits, from memory), payloads decrypted and their HMAC checked, then forwarded to
//! the upstream as plain JSON or answered by the sandbox, and the answer encrypted under a fresh REK.

use std::sync::Arc;

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};
use gsp_gateway_domain::authorize;
use gsp_gateway_domain::secret::sha256_hex;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::crypto::{self, AesKey};
use super::dialect::{self, GstnError, check_client, check_state_code, header};
use crate::gateway::DialectToken;
use crate::gateway::view::SandboxReference;
use crate::state::AppState;

/// What the enforcement established about a dialect data call.
struct Admitted {
    token: Arc<DialectToken>,
    sek: AesKey,
}

async fn admit(state: &AppState, req: &HttpRequest) -> Result<Admitted, GstnError> {
    let headers = req.headers();
    let client = check_client(state, headers).await?;
    let token_text = header(headers, "auth-token")
        .filter(|t| !t.is_empty())
        .ok_or_else(GstnError::invalid_session)?;
    let token = state
        .view
        .dialect_token(&state.db, &sha256_hex(token_text))
        .await?
        .filter(|t| t.client_id == client.client_id)
        .ok_or_else(GstnError::invalid_session)?;
    let gstin = header(headers, "gstin").ok_or_else(|| GstnError::missing("gstin"))?;
    if !gstin.eq_ignore_ascii_case(&token.gstin) {
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
        return Err(GstnError::with_status(
            actix_web::http::StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "the {} rate limit is exhausted; retry after {} s",
                verdict.policy, verdict.reset_secs
            ),
        ));
    }
    state.view.mark_used(&token.session_id, &session, now);
    let sek = decode_key(&token.sek)?;
    Ok(Admitted { token, sek })
}

fn decode_key(text: &str) -> Result<AesKey, GstnError> {
    let bytes = crypto::b64_decode(text).map_err(|_| GstnError::invalid_session())?;
    <AesKey>::try_from(bytes.as_slice()).map_err(|_| GstnError::invalid_session())
}

/// An encrypted write body.
#[derive(Debug, Deserialize)]
struct EncryptedBody {
    action: Option<String>,
    data: Option<String>,
    hmac: Option<String>,
}

/// The handler for every data call.
pub async fn data_call(
    state: &AppState,
    req: &HttpRequest,
    version: &str,
    resource: &str,
    body: &[u8],
) -> HttpResponse {
    match serve(state, req, version, resource, body).await {
        Ok((sek, answer)) => {
            let encrypted = crypto::encrypt_response(&sek, answer.to_string().as_bytes());
            let mut fields = Map::new();
            fields.insert("data".into(), json!(encrypted.data));
            fields.insert("rek".into(), json!(encrypted.rek));
            fields.insert("hmac".into(), json!(encrypted.hmac));
            dialect::success(&state.settings, fields)
        }
        Err(error) => dialect::failure(&state.settings, &error),
    }
}

async fn serve(
    state: &AppState,
    req: &HttpRequest,
    version: &str,
    resource: &str,
    body: &[u8],
) -> Result<(AesKey, Value), GstnError> {
    let admitted = admit(state, req).await?;
    let query: Map<String, Value> = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map(|q| {
            q.into_inner()
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect()
        })
        .unwrap_or_default();
    let (action, payload) = if matches!(*req.method(), Method::PUT | Method::POST) {
        let envelope: EncryptedBody =
            serde_json::from_slice(body).map_err(|_| GstnError::new("GEN5007", "Malformed request"))?;
        let action = envelope.action.ok_or_else(|| GstnError::missing("action"))?;
        let data = envelope.data.ok_or_else(|| GstnError::missing("data"))?;
        let hmac = envelope.hmac.ok_or_else(|| GstnError::missing("hmac"))?;
        let plain = crypto::decrypt_request(&admitted.sek, &data, &hmac).map_err(|error| match error {
            crypto::CryptoError::HmacMismatch => {
                GstnError::new("GEN5007", "Malformed request: hmac does not match data")
            }
            _ => GstnError::new(
                "GEN5007",
                "Malformed request: data cannot be decrypted with the session key",
            ),
        })?;
        let payload: Value = serde_json::from_slice(&plain)
            .map_err(|_| GstnError::new("GEN5007", "Malformed request: data is not JSON"))?;
        (action, Some(payload))
    } else {
        let action = query
            .get("action")
            .and_then(Value::as_str)
            .ok_or_else(|| GstnError::missing("action"))?
            .to_owned();
        (action, None)
    };
    let answer = if state.settings.upstream_url.is_some() {
        forward(state, req, version, resource, &admitted.token, payload).await?
    } else {
        sandbox(
            state,
            req,
            resource,
            &action.to_ascii_uppercase(),
            &query,
            payload.as_ref(),
            &admitted.token,
        )?
    };
    Ok((admitted.sek, answer))
}

async fn forward(
    state: &AppState,
    req: &HttpRequest,
    version: &str,
    resource: &str,
    token: &DialectToken,
    payload: Option<Value>,
) -> Result<Value, GstnError> {
    let base = state
        .settings
        .upstream_url
        .as_deref()
        .unwrap_or_default()
        .trim_end_matches('/');
    let mut url = format!("{base}/taxpayerapi/{version}/{resource}");
    if !req.query_string().is_empty() {
        url.push('?');
        url.push_str(req.query_string());
    }
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .map_err(|_| GstnError::new("GEN5007", "Unsupported method"))?;
    let mut outgoing = state
        .http
        .request(method, url)
        .timeout(std::time::Duration::from_millis(
            state.settings.upstream_timeout_ms,
        ))
        .header("x-taxpayer-gstin", &token.gstin)
        .header("x-gsp-client-id", &token.client_id)
        .header("x-session-id", &token.session_id)
        .header("x-request-id", crate::request_id::current());
    for name in [
        "ret_period",
        "ret_prd",
        "rtn_typ",
        "userrole",
        "api_version",
        "txn",
    ] {
        if let Some(value) = header(req.headers(), name) {
            outgoing = outgoing.header(name, value);
        }
    }
    if let Some(payload) = payload {
        outgoing = outgoing.json(&payload);
    }
    let response = outgoing.send().await.map_err(|e| {
        tracing::warn!(error = %e.without_url(), "dialect upstream unavailable");
        GstnError::with_status(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "GEN5008",
            "Service unavailable; try again later",
        )
    })?;
    let status = response.status();
    let answer: Value = response.json().await.map_err(|_| {
        GstnError::with_status(
            actix_web::http::StatusCode::BAD_GATEWAY,
            "GEN5008",
            "The upstream answered no JSON",
        )
    })?;
    if !status.is_success() {
        return Err(GstnError::new(
            "TEC4001",
            format!("The upstream refused the call ({})", status.as_u16()),
        ));
    }
    Ok(answer)
}

fn ret_period(req: &HttpRequest, query: &Map<String, Value>) -> Result<String, GstnError> {
    let period = query
        .get("ret_period")
        .or_else(|| query.get("rtnprd"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            header(req.headers(), "ret_period")
                .or_else(|| header(req.headers(), "ret_prd"))
                .map(str::to_owned)
        })
        .ok_or_else(|| GstnError::missing("ret_period"))?;
    let valid = period.len() == 6
        && period.bytes().all(|b| b.is_ascii_digit())
        && matches!(period[..2].parse::<u8>(), Ok(1..=12));
    if valid {
        Ok(period)
    } else {
        Err(GstnError::new("RET11402", "Invalid return period"))
    }
}

/// The built-in sandbox of the dialect: GSTR-1 sections, RETSAVE and RETSTATUS, per the spec's shapes.
fn sandbox(
    state: &AppState,
    req: &HttpRequest,
    resource: &str,
    action: &str,
    query: &Map<String, Value>,
    payload: Option<&Value>,
    token: &DialectToken,
) -> Result<Value, GstnError> {
    let resource = resource.trim_end_matches('/');
    match (req.method().clone(), resource, action) {
        (Method::GET, "returns/gstr1", "B2B") => {
            let period = ret_period(req, query)?;
            Ok(json!({"b2b": [{
                "ctin": "27AAPFU0939F1ZV",
                "cfs": "Y",
                "inv": [{
                    "inum": format!("S{}{}", &period[..2], &token.gstin[2..7]),
                    "idt": format!("15-{}-{}", &period[..2], &period[2..]),
                    "val": 11800.0,
                    "pos": "27",
                    "rchrg": "N",
                    "inv_typ": "R",
                    "itms": [{"num": 1, "itm_det": {"rt": 18.0, "txval": 10000.0, "iamt": 1800.0, "csamt": 0.0}}]
                }]
            }]}))
        }
        (Method::GET, "returns/gstr1", "RETSUM") => {
            let period = ret_period(req, query)?;
            Ok(json!({
                "gstin": token.gstin,
                "ret_period": period,
                "summ_typ": "L",
                "sec_sum": [{"sec_nm": "B2B", "ttl_rec": 1, "ttl_val": 11800.0, "ttl_tax": 10000.0, "ttl_igst": 1800.0}]
            }))
        }
        (Method::PUT, "returns/gstr1", "RETSAVE") => {
            let payload = payload.ok_or_else(|| GstnError::missing("data"))?;
            let gstin = payload
                .get("gstin")
                .and_then(Value::as_str)
                .ok_or_else(|| GstnError::missing("gstin"))?;
            if !gstin.eq_ignore_ascii_case(&token.gstin) {
                return Err(GstnError::new(
                    "RET11402",
                    "The return's GSTIN is not the session's",
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
            Ok(json!({"reference_id": reference_id}))
        }
        (Method::GET, "returns", "RETSTATUS") => {
            let reference_id = query
                .get("ref_id")
                .or_else(|| query.get("trans_id"))
                .and_then(Value::as_str)
                .ok_or_else(|| GstnError::missing("ref_id"))?;
            let saved = state
                .view
                .sandbox_reference(reference_id)
                .filter(|r| r.gstin == token.gstin)
                .ok_or_else(|| GstnError::new("RET11409", "Invalid reference id"))?;
            Ok(
                json!({"form_typ": "R1", "status_cd": "P", "action": saved.action, "ret_period": saved.ret_period}),
            )
        }
        _ => Err(GstnError::new(
            "GEN5007",
            format!(
                "The sandbox does not serve {} {resource} action {action}",
                req.method()
            ),
        )),
    }
}
