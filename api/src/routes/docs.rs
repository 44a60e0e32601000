//! The OpenAPI document, browsable docs and the JWKS.

use actix_web::{HttpResponse, web};
use serde::Serialize;

use crate::state::AppState;
use crate::tokens::Jwk;

/// A JSON Web Key Set.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Jwks {
    /// The public keys that verify session and taxpayer tokens.
    pub keys: Vec<Jwk>,
}

/// The public keys that verify the gateway's tokens (`kid` on every key).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "service", operation_id = "get_jwks",
    responses((status = 200, description = "Current and recently retired public keys", body = Jwks)))]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=300"))
        .json(Jwks {
            keys: state.keys.jwks(),
        })
}

/// `/docs` → `/docs/` (Swagger UI lives under the trailing slash).
pub async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header(("Location", "/docs/"))
        .finish()
}
