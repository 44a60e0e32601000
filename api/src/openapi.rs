//! The OpenAPI document, generated from the handlers' annotations. `gsp-gateway openapi` prints it;
//! the committed `openapi.yaml` is checked against it by a test.

use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::error::{ErrorCode, FieldError};

/// An RFC 9457 problem: every error the gateway answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    #[schema(example = "https://gsp-gateway.dev/problems/invalid_gstin")]
    pub type_: String,
    /// A short summary of the problem type.
    #[schema(example = "Invalid GSTIN")]
    pub title: String,
    /// The HTTP status.
    #[schema(example = 422)]
    pub status: u16,
    /// What went wrong in this request.
    #[schema(example = "gstin: invalid GSTIN: the check character does not match")]
    pub detail: String,
    /// The stable machine-readable code.
    pub code: ErrorCode,
    /// The GST System's nearest error code, where one exists.
    #[schema(example = "SWEB_9035")]
    pub gstn_code: Option<String>,
    /// The request id (also in `X-Request-Id`).
    #[schema(example = "5f0c6f2e9d3b4a7c8e1f2a3b4c5d6e7f")]
    pub request_id: String,
    /// Field-level problems (422).
    pub errors: Option<Vec<FieldError>>,
    /// Wrong OTPs still allowed (`invalid_otp`).
    pub attempts_remaining: Option<u8>,
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str, format: Option<&str>| {
            let mut http = Http::new(HttpAuthScheme::Bearer);
            http.bearer_format = format.map(str::to_owned);
            http.description = Some(description.to_owned());
            SecurityScheme::Http(http)
        };
        components.add_security_scheme(
            "admin_token",
            bearer(
                "The operator token configured with --admin-token (GSP_GATEWAY_ADMIN_TOKEN).",
                None,
            ),
        );
        components.add_security_scheme(
            "taxpayer_token",
            bearer("A taxpayer token from POST /v1/taxpayer/login.", Some("JWT")),
        );
        components.add_security_scheme(
            "session_token",
            bearer("A GSP session token from POST /v1/gsp/token.", Some("JWT")),
        );
        let mut basic = Http::new(HttpAuthScheme::Basic);
        basic.description =
            Some("GSP client credentials: client_id as user name, client_secret as password.".into());
        components.add_security_scheme("gsp_client", SecurityScheme::Http(basic));
    }
}

/// The whole document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "gsp-gateway",
        description = "The GST API-access gateway: taxpayers switch API access on for 6 hours to 30 days (Manage API Access), \
GSP software obtains OTP-consented sessions and calls the GST API through an enforcement layer that refuses any call \
once access is off, expired or the session is revoked. Every error is application/problem+json with a stable `code`.",
        license(name = "Apache-2.0"),
    ),
    paths(
        crate::routes::health::live,
        crate::routes::health::ready,
        crate::routes::docs::jwks,
        crate::routes::admin::create_taxpayer,
        crate::routes::admin::create_gsp,
        crate::routes::admin::list_audit,
        crate::routes::taxpayer::login,
        crate::routes::taxpayer::change_password,
        crate::routes::taxpayer::get_api_access,
        crate::routes::taxpayer::set_api_access,
        crate::routes::taxpayer::list_sessions,
        crate::routes::taxpayer::revoke_session,
        crate::routes::taxpayer::otp_requests,
        crate::routes::taxpayer::activity,
        crate::routes::gsp::request_otp,
        crate::routes::gsp::issue_token,
        crate::routes::gsp::logout,
        crate::routes::gsp::search,
        crate::gateway::sandbox::taxpayer,
        crate::gateway::sandbox::returns,
        crate::routes::gstn_cert::certificate_pem,
        crate::routes::gstn_cert::certificate_der,
        crate::routes::gstn_cert::public_key_pem,
    ),
    components(schemas(Problem, ErrorCode, FieldError)),
    modifiers(&Security),
    tags(
        (name = "service", description = "Health, documentation and keys"),
        (name = "operator", description = "Provisioning and audit (admin token)"),
        (name = "taxpayer", description = "Manage API Access, sessions, OTP inbox and activity (taxpayer token)"),
        (name = "gsp", description = "GSP client credentials: OTP, tokens, GSTIN search"),
        (name = "gateway", description = "The GST API behind the enforcement layer (session token)"),
        (name = "gstn", description = "The GST System's own wire dialect: the certificate GSP software encrypts its app key to"),
    )
)]
pub struct ApiDoc;

/// The document as YAML (what `openapi.yaml` holds).
pub fn yaml() -> Result<String, String> {
    ApiDoc::openapi().to_yaml().map_err(|e| e.to_string())
}
