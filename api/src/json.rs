//! Request extractors whose every failure is a problem with the contract's code.
//!
//! `ApiJson` replaces actix's `Json`: 415 for a wrong content type, 413 past the body limit,
//! 400 `invalid_request` for malformed JSON, 422 `validation_failed` naming the field for a missing or
//! mistyped one (the path comes from `serde_path_to_error`).

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::{Payload, RequestHead};
use actix_web::error::{PathError, PayloadError, QueryPayloadError};
use actix_web::web::{Bytes, BytesMut};
use actix_web::{FromRequest, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorCode};

/// The largest body accepted, stored as app data.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A JSON body deserialized into `T`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req.app_data::<BodyLimit>().map_or(1024 * 1024, |l| l.0);
        let content_type_ok = is_json(req);
        let declared = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let payload = payload.take();
        Box::pin(async move {
            if !content_type_ok {
                return Err(ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    "the body must be JSON, sent with Content-Type: application/json",
                ));
            }
            if declared.is_some_and(|n| n > limit) {
                return Err(too_large(limit));
            }
            parse(&read_body(payload, limit).await?).map(ApiJson)
        })
    }
}

/// A request body read whole, refused once it passes `limit` bytes.
pub async fn read_body(
    mut payload: impl futures_util::Stream<Item = Result<Bytes, PayloadError>> + Unpin,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            PayloadError::Overflow => too_large(limit),
            _ => ApiError::new(ErrorCode::InvalidRequest, "the request body could not be read"),
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// 413 `payload_too_large`.
pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("the body is larger than {limit} bytes"),
    )
}

fn is_json(req: &HttpRequest) -> bool {
    let Some(value) = req.headers().get(actix_web::http::header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(value) = value.to_str() else { return false };
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a JSON body into `T` with the contract's 400/422 split.
pub fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    // Syntax first, so a malformed body is 400 even when its start has the right shape.
    if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("the body is not well-formed JSON: {error}"),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(value) => Ok(value),
        Err(error) => {
            let path = error.path().to_string();
            let inner = error.into_inner();
            match inner.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("the body is not well-formed JSON: {inner}"),
                )),
                serde_json::error::Category::Io => Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    "the request body could not be read",
                )),
                serde_json::error::Category::Data => Err(field_problem(&path, &inner.to_string(), "body")),
            }
        }
    }
}

/// A JSON value (already parsed) deserialized into `T`; a mismatch is 422 naming the field.
pub fn from_value<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value)
        .map_err(|error| field_problem(&error.path().to_string(), &error.inner().to_string(), "body"))
}

/// 422 `validation_failed` for a value that did not deserialize at `path` (`.` for the top level,
/// where a missing field names itself and anything else names `whole`).
fn field_problem(path: &str, message: &str, whole: &str) -> ApiError {
    let message = strip_position(message);
    let field = if path == "." || path.is_empty() {
        missing_field(&message).unwrap_or_else(|| whole.to_owned())
    } else {
        missing_field(&message).map_or(path.to_owned(), |f| format!("{path}.{f}"))
    };
    ApiError::field(ErrorCode::ValidationFailed, &field, message)
}

/// Query parameters deserialized into `T`. Unlike actix's `Query`, a parameter that does not
/// deserialize is named (422 `validation_failed` with its name in `errors`).
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned> FromRequest for ApiQuery<T> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(parse_query(req.query_string()).map(ApiQuery))
    }
}

impl<T> std::ops::Deref for ApiQuery<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// A query string deserialized into `T`; see [`ApiQuery`].
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let pairs = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(pairs)
        .map_err(|error| field_problem(&error.path().to_string(), &error.inner().to_string(), "query"))
}

fn strip_position(message: &str) -> String {
    message.split(" at line ").next().unwrap_or(message).to_owned()
}

fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_owned())
}

/// `QueryConfig` error handler: 422 naming the parameter.
pub fn query_error(error: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    query_problem(error).into()
}

/// A query string that does not deserialize: 422 `validation_failed` naming the parameter.
pub fn query_problem(error: QueryPayloadError) -> ApiError {
    let message = strip_position(&error.to_string());
    let message = message
        .strip_prefix("Query deserialize error: ")
        .unwrap_or(&message)
        .to_owned();
    let field = missing_field(&message).unwrap_or_else(|| "query".to_owned());
    ApiError::field(ErrorCode::ValidationFailed, &field, message)
}

/// `PathConfig` error handler: 404, a path that names nothing.
pub fn path_error(error: PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::new(ErrorCode::NotFound, format!("no such resource: {error}")).into()
}

/// Default service: 404 `not_found` for unknown routes.
pub async fn route_not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        ErrorCode::NotFound,
        format!("no route for {} {}", req.method(), req.path()),
    ))
}

/// Default service of a resource: 405 `method_not_allowed`, with the `Allow` header RFC 9110 requires
/// (the methods the OpenAPI document gives the resource).
pub async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let pattern = req.match_pattern().unwrap_or_else(|| req.path().to_owned());
    Err(method_not_allowed_on(req.head(), &pattern))
}

/// 405 `method_not_allowed` for a request to the OpenAPI path `pattern`, with its `Allow` header.
pub fn method_not_allowed_on(head: &RequestHead, pattern: &str) -> ApiError {
    match crate::openapi::allowed_methods(pattern) {
        Some(allow) => method_not_allowed_with(head, &allow),
        None => ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("{} is not allowed on {}", head.method, head.uri.path()),
        ),
    }
}

/// 405 `method_not_allowed` with `allow` (a comma-separated method list) in its `Allow` header.
pub fn method_not_allowed_with(head: &RequestHead, allow: &str) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!(
            "{} is not allowed on {}; allowed: {allow}",
            head.method,
            head.uri.path()
        ),
    )
    .with_header(actix_web::http::header::ALLOW, allow)
}

/// A timestamp as the contract writes them: RFC 3339 in UTC, whole seconds (`2026-11-27T05:26:34Z`).
/// The fraction is dropped, never rounded up: an `expires_at` never reads later than the real end.
pub fn rfc3339(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `serialize_with` for a timestamp field; see [`rfc3339`].
pub fn utc_seconds<S: serde::Serializer>(
    at: &chrono::DateTime<chrono::Utc>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(at))
}

/// `serialize_with` for an optional timestamp field; see [`rfc3339`].
pub fn utc_seconds_opt<S: serde::Serializer>(
    at: &Option<chrono::DateTime<chrono::Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => s.serialize_str(&rfc3339(at)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Login {
        username: String,
        password: String,
    }

    #[test]
    fn syntax_errors_are_400_and_shape_errors_422_with_the_field() {
        let e = parse::<Login>(&Bytes::from_static(b"{\"username\":")).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidRequest);
        let e = parse::<Login>(&Bytes::from_static(b"{\"username\":\"a\"}")).unwrap_err();
        assert_eq!(e.code(), ErrorCode::ValidationFailed);
        assert_eq!(e.body()["errors"][0]["field"], "password");
        let e = parse::<Login>(&Bytes::from_static(b"{\"username\":1,\"password\":\"x\"}")).unwrap_err();
        assert_eq!(e.body()["errors"][0]["field"], "username");
        let e = parse::<Login>(&Bytes::from_static(b"[]")).unwrap_err();
        assert_eq!(e.code(), ErrorCode::ValidationFailed);
        let e =
            parse::<Login>(&Bytes::from_static(b"{\"username\":\"a\",\"password\":\"b\"} x")).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidRequest);
    }

    #[test]
    fn timestamps_are_whole_seconds_cut_not_rounded() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-27T05:26:34.999+00:00")
            .unwrap()
            .to_utc();
        assert_eq!(rfc3339(&at), "2026-11-27T05:26:34Z");
        #[derive(serde::Serialize)]
        struct Times {
            #[serde(serialize_with = "utc_seconds")]
            at: chrono::DateTime<chrono::Utc>,
            #[serde(serialize_with = "utc_seconds_opt")]
            maybe: Option<chrono::DateTime<chrono::Utc>>,
        }
        let both = serde_json::to_value(Times { at, maybe: Some(at) }).unwrap();
        assert_eq!(
            both,
            serde_json::json!({"at": "2026-11-27T05:26:34Z", "maybe": "2026-11-27T05:26:34Z"})
        );
        let none = serde_json::to_value(Times { at, maybe: None }).unwrap();
        assert_eq!(none["maybe"], serde_json::Value::Null);
    }
}
