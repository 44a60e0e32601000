//! The GSTN dialect's public key, as the certificate files GSP software loads in place of GSTN's.
//!
//! Operators download one of these once and point their client's configuration at it: IC loads an
//! X.509 PEM, RS/CE/SG a DER `.cer`, RS's BouncyCastle path an SPKI PEM (gstn-dialect.md §3.2).

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use crate::error::ApiError;
use crate::gstn::Published;
use crate::state::AppState;

/// Clients cache the files; a rotated key keeps decrypting for a day, so minutes are plenty.
const CACHE_CONTROL: &str = "public, max-age=300";

/// A DER-encoded X.509 certificate.
#[derive(Debug, utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct DerCertificate(pub Vec<u8>);

/// Registers the three files.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/taxpayerapi/certificate.pem").route(web::get().to(certificate_pem)))
        .service(super::resource("/taxpayerapi/certificate.cer").route(web::get().to(certificate_der)))
        .service(super::resource("/taxpayerapi/public-key.pem").route(web::get().to(public_key_pem)));
}

fn published(state: &AppState) -> Result<Arc<Published>, ApiError> {
    state
        .gstn
        .published()
        .ok_or_else(|| ApiError::internal("no GSTN key is loaded"))
}

fn file(
    content_type: &'static str,
    name: &str,
    kid: &str,
    body: impl actix_web::body::MessageBody + 'static,
) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, CACHE_CONTROL))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ))
        .insert_header(("X-Key-Id", kid.to_owned()))
        .body(body)
}

/// The X.509 certificate of the key that wraps `app_key`, PEM.
#[utoipa::path(get, path = "/taxpayerapi/certificate.pem", tag = "gstn", operation_id = "get_gstn_certificate_pem",
    responses((status = 200, description = "Self-signed certificate (PEM) of the RSA-2048 key for the GSTN dialect's `app_key`; \
replaces GSTN's public certificate in a client's configuration. `X-Key-Id` names the key.",
        body = String, content_type = "application/x-pem-file")))]
pub async fn certificate_pem(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let published = published(&state)?;
    Ok(file(
        "application/x-pem-file",
        "gsp-gateway-gstn.pem",
        &published.kid,
        published.certificate_pem.clone(),
    ))
}

/// The same certificate, DER (a `.cer` file).
#[utoipa::path(get, path = "/taxpayerapi/certificate.cer", tag = "gstn", operation_id = "get_gstn_certificate_der",
    responses((status = 200, description = "The certificate of `/taxpayerapi/certificate.pem`, DER-encoded",
        body = DerCertificate, content_type = "application/pkix-cert")))]
pub async fn certificate_der(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let published = published(&state)?;
    Ok(file(
        "application/pkix-cert",
        "gsp-gateway-gstn.cer",
        &published.kid,
        published.certificate_der.clone(),
    ))
}

/// The bare public key (SubjectPublicKeyInfo), PEM.
#[utoipa::path(get, path = "/taxpayerapi/public-key.pem", tag = "gstn", operation_id = "get_gstn_public_key",
    responses((status = 200, description = "The certificate's public key as an SPKI PEM (`BEGIN PUBLIC KEY`)",
        body = String, content_type = "application/x-pem-file")))]
pub async fn public_key_pem(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let published = published(&state)?;
    Ok(file(
        "application/x-pem-file",
        "gsp-gateway-gstn-public-key.pem",
        &published.kid,
        published.public_key_pem.clone(),
    ))
}
