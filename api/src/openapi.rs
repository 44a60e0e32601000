//! The OpenAPI document, generated from the handlers' annotations. `gsp-gateway openapi` prints it;
//! the committed `openapi.yaml` is checked against it by a test.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Serialize;
use serde_json::{Value, json};
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::schema::{Discriminator, KnownFormat, OneOfBuilder, Schema, SchemaFormat};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, RefOr, Response, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use crate::error::{ErrorCode, FieldError, PROBLEM_JSON};

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
    /// The GST System's nearest error code, where one exists (absent otherwise).
    #[schema(example = "SWEB_9035", nullable = false)]
    pub gstn_code: Option<String>,
    /// The request id (also in `X-Request-Id`): quote it when reporting a problem.
    #[schema(example = "5f0c6f2e9d3b4a7c8e1f2a3b4c5d6e7f")]
    pub request_id: String,
    /// Field-level problems (`validation_failed`, `invalid_gstin`, `invalid_duration`): which field, and
    /// what is wrong with it.
    #[schema(nullable = false)]
    pub errors: Option<Vec<FieldError>>,
    /// Wrong OTPs still allowed before the challenge is void (`invalid_otp`).
    #[schema(nullable = false, minimum = 1, maximum = 4, example = 3)]
    pub attempts_remaining: Option<u8>,
    /// When the account unlocks (`account_locked`).
    #[schema(nullable = false)]
    pub locked_until: Option<chrono::DateTime<chrono::Utc>>,
    /// When the password expired (`password_expired`).
    #[schema(nullable = false)]
    pub password_expired_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The allowed range of `duration_hours` (`invalid_duration`).
    #[schema(required = false, nullable = false, value_type = Object, example = json!({"minimum": 6, "maximum": 720}))]
    pub allowed: Option<Value>,
    /// Why a password was refused (`validation_failed`): `weak_password` (the password policy) or
    /// `password_unchanged` (the new password equals the current one).
    #[schema(nullable = false, example = "weak_password")]
    pub reason: Option<String>,
    /// The session that was revoked (`refresh_token_reused`).
    #[schema(nullable = false)]
    pub session_id: Option<String>,
    /// `unavailable` (`service_unavailable` from `GET /health/ready`).
    #[schema(nullable = false, example = "unavailable")]
    pub database: Option<String>,
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
        description = include_str!("openapi_intro.md"),
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
    components(
        schemas(Problem, ErrorCode, FieldError),
        responses(MalformedJson, PayloadTooLarge, UnsupportedMediaType, ServiceUnavailable),
    ),
    modifiers(&Security, &Enrich),
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

/// The document as a JSON value (for tests that read it).
pub fn document() -> Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null)
}

/// A realistic `detail` for a code's example.
fn example_detail(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InvalidRequest => {
            "the body is not well-formed JSON: EOF while parsing an object at line 1 column 12"
        }
        ErrorCode::UnsupportedMediaType => "the body must be JSON, sent with Content-Type: application/json",
        ErrorCode::PayloadTooLarge => "the body is larger than 1048576 bytes",
        ErrorCode::ValidationFailed => "username: missing field `username`",
        ErrorCode::InvalidGstin => "gstin: invalid GSTIN: the check character does not match",
        ErrorCode::InvalidDuration => {
            "duration_hours: the API access duration is a whole number of hours from 6 to 720"
        }
        ErrorCode::NotFound => "no such resource",
        ErrorCode::MethodNotAllowed => "DELETE is not allowed on /v1/taxpayer/api-access",
        ErrorCode::Conflict => "a resource with these unique fields already exists",
        ErrorCode::InvalidClient => "the client credentials are wrong",
        ErrorCode::InvalidCredentials => "the username or password is wrong",
        ErrorCode::PasswordExpired => "the password has expired; change it with POST /v1/taxpayer/password",
        ErrorCode::AccountLocked => "too many failed logins; try again after 2026-11-27 05:41:34 UTC",
        ErrorCode::TaxpayerNotFound => "no taxpayer with this GSTIN and username",
        ErrorCode::ApiAccessDisabled => {
            "API access is not available: the taxpayer has not enabled API access on the portal"
        }
        ErrorCode::ApiAccessExpired => {
            "API access is not available: the taxpayer's chosen API access duration has ended"
        }
        ErrorCode::InvalidOtp => "the OTP is wrong",
        ErrorCode::OtpExpired => "no pending OTP: request a new one",
        ErrorCode::OtpAttemptsExceeded => "too many wrong OTPs: the OTP is void; request a new one",
        ErrorCode::SessionLimitReached => "this GSP already holds 3 active sessions for this taxpayer",
        ErrorCode::TokenMissing => "send Authorization: Bearer <token>",
        ErrorCode::TokenInvalid => "the token is not valid here",
        ErrorCode::TokenExpired => "the token has expired",
        ErrorCode::SessionExpired => "the session ended with the taxpayer's access window",
        ErrorCode::SessionRevoked => "the session was revoked",
        ErrorCode::RefreshTokenReused => "the refresh token was already used; the session is revoked",
        ErrorCode::RateLimited => "too many requests for this session; retry after the Retry-After delay",
        ErrorCode::UpstreamUnavailable => "the upstream GST service failed",
        ErrorCode::UpstreamTimeout => "the upstream GST service did not answer in time",
        ErrorCode::ServiceUnavailable => {
            "the database is unavailable, or the server too busy; try again shortly"
        }
        ErrorCode::InternalError => "the server failed; the request id identifies it in the log",
    }
}

/// The problem body a code is answered with (the request id is an example).
pub fn example_problem(code: ErrorCode) -> Value {
    let mut body = json!({
        "type": format!("https://gsp-gateway.dev/problems/{}", code.as_str()),
        "title": code.title(),
        "status": code.status().as_u16(),
        "detail": example_detail(code),
        "code": code.as_str(),
        "request_id": "5f0c6f2e9d3b4a7c8e1f2a3b4c5d6e7f",
    });
    if let Some(gstn) = code.gstn_code() {
        body["gstn_code"] = json!(gstn);
    }
    let extra = match code {
        ErrorCode::ValidationFailed => {
            json!({"errors": [{"field": "username", "message": "missing field `username`"}]})
        }
        ErrorCode::InvalidGstin => {
            json!({"errors": [{"field": "gstin", "message": "invalid GSTIN: the check character does not match"}]})
        }
        ErrorCode::InvalidDuration => json!({
            "errors": [{"field": "duration_hours", "message": "the API access duration is a whole number of hours from 6 to 720"}],
            "allowed": {"minimum": 6, "maximum": 720},
        }),
        ErrorCode::InvalidOtp => json!({"attempts_remaining": 3}),
        ErrorCode::AccountLocked => json!({"locked_until": "2026-11-27T05:41:34Z"}),
        ErrorCode::PasswordExpired => json!({"password_expired_at": "2026-11-20T00:00:00Z"}),
        _ => json!({}),
    };
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    body
}

/// The backticked error codes a response description names, in order.
pub fn codes_named_in(description: &str) -> Vec<ErrorCode> {
    description
        .split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|word| ErrorCode::ALL.iter().copied().find(|c| c.as_str() == word))
        .fold(Vec::new(), |mut codes, code| {
            if !codes.contains(&code) {
                codes.push(code);
            }
            codes
        })
}

fn header_ref(name: &str) -> RefOr<Header> {
    RefOr::Ref(Ref::new(format!("#/components/headers/{name}")))
}

/// An `application/problem+json` response naming `codes`, with one example each.
fn problem_response(description: &str, codes: &[ErrorCode]) -> Response {
    let examples = codes.iter().map(|code| {
        (
            code.as_str(),
            ExampleBuilder::new()
                .summary(code.title())
                .value(Some(example_problem(*code)))
                .build(),
        )
    });
    let mut response = ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .examples_from_iter(examples)
                .build(),
        )
        .build();
    add_headers(&mut response, codes, false);
    response
}

macro_rules! shared_problems {
    ($( $(#[$doc:meta])* $name:ident => ($description:literal, [$($code:ident),+]), )*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy)]
            pub struct $name;

            impl<'r> utoipa::ToResponse<'r> for $name {
                fn response() -> (&'r str, RefOr<Response>) {
                    (stringify!($name), problem_response($description, &[$(ErrorCode::$code),+]).into())
                }
            }
        )*
    };
}

shared_problems! {
    /// 400 for every operation with a JSON body.
    MalformedJson => ("`invalid_request`: the body is not well-formed JSON (a syntax error).", [InvalidRequest]),
    /// 413 for every operation with a JSON body.
    PayloadTooLarge => ("`payload_too_large`: the body is larger than the configured limit (default 1 MiB).", [PayloadTooLarge]),
    /// 415 for every operation with a JSON body.
    UnsupportedMediaType => ("`unsupported_media_type`: the body must be sent with `Content-Type: application/json`.", [UnsupportedMediaType]),
    /// 503 for every operation that reads or writes the database.
    ServiceUnavailable => ("`service_unavailable`: the database cannot be reached, or (logins, password changes, GST System app keys) every password-hashing turn is taken and the queue is full; retry after `Retry-After` seconds.", [ServiceUnavailable]),
}

/// Adds the headers a response carries: `X-Request-Id` always, and the ones its codes come with.
fn add_headers(response: &mut Response, codes: &[ErrorCode], gateway: bool) {
    response
        .headers
        .entry("X-Request-Id".into())
        .or_insert_with(|| header_ref("X-Request-Id"));
    let has = |code: ErrorCode| codes.contains(&code);
    if has(ErrorCode::RateLimited) || has(ErrorCode::ServiceUnavailable) || has(ErrorCode::AccountLocked) {
        response
            .headers
            .insert("Retry-After".into(), header_ref("Retry-After"));
    }
    let challenges = [
        ErrorCode::InvalidClient,
        ErrorCode::TokenMissing,
        ErrorCode::TokenInvalid,
        ErrorCode::TokenExpired,
    ];
    if challenges.iter().any(|c| has(*c)) {
        response
            .headers
            .insert("WWW-Authenticate".into(), header_ref("WWW-Authenticate"));
    }
    if gateway {
        response
            .headers
            .insert("RateLimit".into(), header_ref("RateLimit"));
        response
            .headers
            .insert("RateLimit-Policy".into(), header_ref("RateLimit-Policy"));
    }
}

fn header(description: &str, schema: ObjectBuilder, example: Value) -> RefOr<Header> {
    let mut header = HeaderBuilder::new()
        .schema(Some(schema))
        .description(Some(description))
        .build();
    header.example = Some(example);
    RefOr::T(header)
}

/// Completes what the annotations leave out: the shared headers, the headers and examples of every
/// problem response (from the codes its description names), and the rate-limit headers of `/v1/gst/`.
struct Enrich;

impl Modify for Enrich {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let string = || ObjectBuilder::new().schema_type(Type::String);
        components.headers.insert(
            "X-Request-Id".into(),
            header(
                "The request id (the `request_id` of a problem); sent back as given when the request had one.",
                string(),
                json!("5f0c6f2e9d3b4a7c8e1f2a3b4c5d6e7f"),
            ),
        );
        components.headers.insert(
            "Retry-After".into(),
            header(
                "Whole seconds to wait before retrying (at least 1).",
                ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)),
                json!(1),
            ),
        );
        components.headers.insert(
            "WWW-Authenticate".into(),
            header(
                "The authentication challenge (`Basic realm=\"gsp\"` or `Bearer realm=...`).",
                string(),
                json!("Bearer realm=\"gst\", error=\"invalid_token\""),
            ),
        );
        components.headers.insert(
            "RateLimit-Policy".into(),
            header(
                "The rate-limit policies (draft-ietf-httpapi-ratelimit-headers-10): the session's and the GSP client's burst per second.",
                string(),
                json!("\"session\";q=40;w=1, \"client\";q=400;w=1"),
            ),
        );
        components.headers.insert(
            "RateLimit".into(),
            header(
                "The policy nearest to exhaustion: requests remaining (`r`) and seconds until one more is allowed (`t`).",
                string(),
                json!("\"session\";r=39;t=0"),
            ),
        );
        for (path, item) in &mut openapi.paths.paths {
            let gateway = path.starts_with("/v1/gst/");
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                for response in operation.responses.responses.values_mut() {
                    let RefOr::T(response) = response else { continue };
                    let codes = codes_named_in(&response.description);
                    if let Some(RefOr::T(content)) = response.content.get_mut(PROBLEM_JSON)
                        && content.examples.is_empty()
                        && content.example.is_none()
                    {
                        for code in &codes {
                            content.examples.insert(
                                code.as_str().into(),
                                RefOr::T(
                                    ExampleBuilder::new()
                                        .summary(code.title())
                                        .value(Some(example_problem(*code)))
                                        .build(),
                                ),
                            );
                        }
                    }
                    add_headers(response, &codes, gateway);
                }
            }
        }
    }
}

/// The methods the document gives a route pattern, for the `Allow` header of a 405. actix's
/// `{name:regex}` segments match the document's `{name}`. Routes outside the document: the page and its
/// assets, `/metrics` and `/docs` serve `GET` (and `HEAD`) only; for anything else under `/v1/` or `/taxpayerapi/` that
/// the document does not list, `None` (no `Allow` is better than a wrong one).
pub fn allowed_methods(pattern: &str) -> Option<String> {
    static TABLE: OnceLock<HashMap<String, String>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        ApiDoc::openapi()
            .paths
            .paths
            .into_iter()
            .map(|(path, item)| {
                let methods = [
                    ("GET", item.get.is_some()),
                    // Every GET is served for HEAD too (`request_id::assign`, the sandbox).
                    ("HEAD", item.get.is_some()),
                    ("PUT", item.put.is_some()),
                    ("POST", item.post.is_some()),
                    ("DELETE", item.delete.is_some()),
                    ("PATCH", item.patch.is_some()),
                ]
                .into_iter()
                .filter_map(|(method, present)| present.then_some(method))
                .collect::<Vec<_>>()
                .join(", ");
                (path, methods)
            })
            .collect()
    });
    let template = plain_template(pattern);
    if let Some(methods) = table.get(&template) {
        return Some(methods.clone());
    }
    let api = template.starts_with("/v1/") || template.starts_with("/taxpayerapi/");
    (!api).then(|| "GET, HEAD".to_owned())
}

/// `/a/{id:[0-9]+}` → `/a/{id}`.
fn plain_template(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '{' {
            continue;
        }
        let mut depth = 1;
        let mut in_regex = false;
        for c in chars.by_ref() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ':' if depth == 1 => in_regex = true,
                _ => {}
            }
            if depth == 0 {
                out.push('}');
                break;
            }
            if !in_regex {
                out.push(c);
            }
        }
    }
    out
}

/// The pattern of a regular GSTIN (state code, PAN, entity code, `Z`, check character).
pub const GSTIN_PATTERN: &str = "^(0[1-9]|[12][0-9]|3[0-8]|9[679])[A-Z]{5}[0-9]{4}[A-Z][1-9A-Z]Z[0-9A-Z]$";
/// The pattern of a portal username.
pub const USERNAME_PATTERN: &str = "^[A-Za-z][A-Za-z0-9._-]{3,31}$";
/// Printable text with at least one non-space character (no control characters).
pub const TEXT_PATTERN: &str = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$";

/// A GSTIN field. `format: gstin` names the check-character rule a pattern cannot express.
pub fn gstin_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::Custom("gstin".into())))
        .pattern(Some(GSTIN_PATTERN))
        .description(Some(
            "A regular GSTIN: 2-digit state code, 10-character PAN, entity code, `Z` and the mod-36 check \
             character. Input is trimmed and upper-cased before it is checked.",
        ))
        .examples(["24AAUPV7468F1ZW"])
}

/// A portal username field.
pub fn username_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(USERNAME_PATTERN))
        .description(Some(
            "The taxpayer's GST Portal username: 4-32 letters, digits, `.`, `_` or `-`, starting with a letter.",
        ))
        .examples(["asha.traders"])
}

/// A new password under the policy.
pub fn new_password_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Password)))
        .min_length(Some(8))
        .max_length(Some(128))
        .description(Some(
            "8-128 characters with a letter, a digit and a symbol, not containing the username.",
        ))
        .examples(["Gst-Portal-2026"])
}

/// A `const` keyword (OpenAPI 3.1), which utoipa's builders lack.
fn constant(value: Value) -> Option<Extensions> {
    Some(Extensions::from_iter([("const", value)]))
}

fn object_ref(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

/// The two variants of a tagged body, each a named schema, with a discriminator when it is a string.
fn tagged_union(description: &str, tag: &str, variants: &[(&str, &str)]) -> RefOr<Schema> {
    let mut union = OneOfBuilder::new().description(Some(description));
    for (_, name) in variants {
        union = union.item(object_ref(name));
    }
    if !tag.is_empty() {
        let mut discriminator = Discriminator::new(tag);
        for (value, name) in variants {
            discriminator
                .mapping
                .insert((*value).to_owned(), format!("#/components/schemas/{name}"));
        }
        union = union.discriminator(Some(discriminator));
    }
    union.into()
}

impl PartialSchema for crate::services::gsp::TokenRequest {
    fn schema() -> RefOr<Schema> {
        tagged_union(
            "`POST /v1/gsp/token` body, by `grant_type`: `otp` exchanges the taxpayer's OTP for a new session; \
             `refresh_token` refreshes a session without a new OTP while the access window lasts.",
            "grant_type",
            &[("otp", "OtpGrant"), ("refresh_token", "RefreshTokenGrant")],
        )
    }
}

impl ToSchema for crate::services::gsp::TokenRequest {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        let grant = |value: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some("The grant."))
                .default(Some(json!(value)))
                .extensions(constant(json!(value)))
        };
        schemas.push((
            "OtpGrant".into(),
            ObjectBuilder::new()
                .description(Some("Exchange the taxpayer's OTP for a new session."))
                .property("grant_type", grant("otp"))
                .required("grant_type")
                .property("gstin", gstin_schema())
                .required("gstin")
                .property("username", username_schema())
                .required("username")
                .property(
                    "otp",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .description(Some("The 6-digit OTP the taxpayer received."))
                        .examples(["493817"]),
                )
                .required("otp")
                .into(),
        ));
        schemas.push((
            "RefreshTokenGrant".into(),
            ObjectBuilder::new()
                .description(Some(
                    "Refresh a session without a new OTP while the access window lasts. The refresh token is single-use: \
                     presenting it again revokes the session (`refresh_token_reused`).",
                ))
                .property("grant_type", grant("refresh_token"))
                .required("grant_type")
                .property(
                    "refresh_token",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .description(Some("The refresh token of the previous token response."))
                        .examples(["rt_3q2+7w..."]),
                )
                .required("refresh_token")
                .into(),
        ));
    }
}

impl PartialSchema for crate::services::taxpayer::AccessChange {
    fn schema() -> RefOr<Schema> {
        tagged_union(
            "Switch API access on (`{\"enabled\": true, \"duration_hours\": 24}`) or off (`{\"enabled\": false}`).",
            "",
            &[("true", "EnableApiAccess"), ("false", "DisableApiAccess")],
        )
    }
}

impl ToSchema for crate::services::taxpayer::AccessChange {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        let enabled = |value: bool| {
            ObjectBuilder::new()
                .schema_type(Type::Boolean)
                .description(Some("Enable API Request: yes or no."))
                .default(Some(json!(value)))
                .extensions(constant(json!(value)))
        };
        schemas.push((
            "EnableApiAccess".into(),
            ObjectBuilder::new()
                .description(Some(
                    "Switch API access on for 6 hours to 30 days, starting now (also when already on).",
                ))
                .property("enabled", enabled(true))
                .required("enabled")
                .property(
                    "duration_hours",
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(6))
                        .maximum(Some(720))
                        .description(Some("Whole hours from 6 (6 hours) to 720 (30 days)."))
                        .examples([24]),
                )
                .required("duration_hours")
                .into(),
        ));
        schemas.push((
            "DisableApiAccess".into(),
            ObjectBuilder::new()
                .description(Some(
                    "Switch API access off: the window ends now and every GSP session of this taxpayer is revoked. \
                     A `duration_hours` sent along is ignored.",
                ))
                .property("enabled", enabled(false))
                .required("enabled")
                .into(),
        ));
    }
}

fn string_enum(values: &[&str], description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .description(Some(description))
        .examples([values[0]])
}

/// `ApiAccess.status`.
pub fn access_status_schema() -> ObjectBuilder {
    string_enum(
        &["enabled", "disabled", "expired"],
        "`enabled`, `disabled` or `expired`, computed at the time of the request: a window that has run out reads `expired`.",
    )
}

/// `SessionView.status`.
pub fn session_status_schema() -> ObjectBuilder {
    string_enum(
        &["active", "revoked", "expired"],
        "`active`, `revoked` (by the taxpayer, logout, refresh-token reuse or switching access off) or `expired`.",
    )
}

/// `OtpMessage.purpose`.
pub fn otp_purpose_schema() -> ObjectBuilder {
    string_enum(
        &["session", "evc"],
        "`session`: the code opens a GSP session that lasts until your access window ends; `evc`: the code signs one filing (EVC) of `form_type` for `pan`.",
    )
}

/// `OtpAccepted.delivery`.
pub fn delivery_schema() -> ObjectBuilder {
    string_enum(
        &["inbox", "webhook", "log"],
        "The channel the OTP went through: `inbox` (GET /v1/taxpayer/otp-requests), `webhook` or `log` (development only).",
    )
}

/// `token_type`.
pub fn bearer_schema() -> ObjectBuilder {
    string_enum(
        &["Bearer"],
        "Always `Bearer`: send the token as `Authorization: Bearer <access_token>`.",
    )
}

/// A display name or other free text of at most `max` characters.
fn text_schema(max: usize, description: &str, example: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(TEXT_PATTERN))
        .description(Some(description))
        .examples([example])
}

/// `NewTaxpayer.legal_name`.
pub fn legal_name_schema() -> ObjectBuilder {
    text_schema(
        200,
        "Legal name of business: 1-200 printable characters.",
        "Asha Traders Private Limited",
    )
}

/// A string under `constraints`, or null: the constraints stay on the string alone.
fn or_null(description: &str, constraints: ObjectBuilder) -> RefOr<Schema> {
    OneOfBuilder::new()
        .description(Some(description))
        .item(constraints)
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .into()
}

/// `NewTaxpayer.trade_name` (null or absent for none).
pub fn trade_name_schema() -> RefOr<Schema> {
    or_null(
        "Trade name: 1-200 printable characters; null or absent for none.",
        text_schema(200, "Trade name.", "Asha Traders"),
    )
}

/// `NewGsp.name`.
pub fn gsp_name_schema() -> ObjectBuilder {
    text_schema(
        100,
        "Display name shown to taxpayers: 1-100 printable characters.",
        "Acme GSP",
    )
}

/// `NewTaxpayer.email` (null or absent for none).
pub fn email_schema() -> RefOr<Schema> {
    or_null(
        "E-mail of the primary authorised signatory; null or absent for none.",
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Email)))
            .max_length(Some(254))
            .examples(["accounts@asha.example"]),
    )
}

/// `NewTaxpayer.mobile` (null or absent for none).
pub fn mobile_schema() -> RefOr<Schema> {
    or_null(
        "Mobile of the primary authorised signatory: 10 digits, optionally after +91; null or absent for none.",
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(r"^(\+91)?[0-9]{10}$"))
            .examples(["9876543210"]),
    )
}

/// An optional GSTIN filter (query parameter).
pub fn gstin_filter_schema() -> ObjectBuilder {
    gstin_schema().description(Some(
        "Only this taxpayer's events (a GSTIN, trimmed and upper-cased).",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_header_comes_from_the_document() {
        assert_eq!(
            allowed_methods("/v1/taxpayer/api-access").as_deref(),
            Some("GET, HEAD, PUT")
        );
        assert_eq!(
            allowed_methods("/v1/taxpayer/sessions/{session_id}").as_deref(),
            Some("DELETE")
        );
        assert_eq!(allowed_methods("/metrics").as_deref(), Some("GET, HEAD"));
        assert_eq!(allowed_methods("/v1/not/documented"), None);
        assert_eq!(
            plain_template(r"/x/{version:v[0-9]+\.[0-9]{1,2}}/y"),
            "/x/{version}/y"
        );
        assert_eq!(plain_template("/a/{id}/b"), "/a/{id}/b");
    }
}
