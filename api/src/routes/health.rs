//! Liveness and readiness.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use serde_json::json;

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// `{"status":"ok"}` and, for readiness, the database's state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`.
    #[schema(example = "ok")]
    pub status: String,
    /// `ok` when the database answers (readiness only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "ok")]
    pub database: Option<String>,
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "service", operation_id = "health_live",
    responses((status = 200, description = "The process is serving", body = Health)))]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The gateway can serve: the database answers.
#[utoipa::path(get, path = "/health/ready", tag = "service", operation_id = "health_ready",
    responses(
        (status = 200, description = "Ready: `{\"status\": \"ok\", \"database\": \"ok\"}`", body = Health),
        (status = 503, description = "`service_unavailable`: the database is unreachable (`database` is `unavailable`)", body = crate::openapi::Problem, content_type = "application/problem+json"),
    ))]
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.db.run(gsp_gateway_storage::ping).await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check failed");
        ApiError::new(ErrorCode::ServiceUnavailable, "the database is unreachable")
            .with("database", json!("unavailable"))
            .with_header(actix_web::http::header::RETRY_AFTER, "1")
    })?;
    Ok(HttpResponse::Ok().json(json!({"status": "ok", "database": "ok"})))
}
