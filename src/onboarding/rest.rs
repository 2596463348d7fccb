//! The old REST route, `POST /api/v1/workflows/organization-bootstrap`, kept for the existing
//! frontend: the same service, token and permission as the GraphQL mutation, the old response
//! shape `{ workflowId, organizationId, status }`, and JSON errors `{ error, details }`.

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header::AUTHORIZATION},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{request::RawRequest, start::BootstrapRequestStatus};
use crate::{
    AppState,
    auth::{Authentication, permissions},
    error::ApiError,
};

fn error(status: StatusCode, message: &str, details: Value) -> Response {
    (
        status,
        Json(json!({ "error": message, "details": details })),
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, details) = match &self {
            ApiError::Unauthenticated => (StatusCode::UNAUTHORIZED, Value::Null),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, Value::Null),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, Value::Null),
            ApiError::BadUserInput { field, .. } => {
                (StatusCode::BAD_REQUEST, json!({ "field": field }))
            }
            ApiError::RateLimited { retry_after_secs } => (
                StatusCode::TOO_MANY_REQUESTS,
                json!({ "retryAfter": retry_after_secs }),
            ),
            ApiError::Unavailable(_) | ApiError::Internal(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, Value::Null)
            }
        };
        self.log();
        let message = match &self {
            ApiError::Internal(_) => "temporarily unavailable".to_owned(),
            other => other.to_string(),
        };
        error(status, &message, details)
    }
}

/// `POST /api/v1/workflows/organization-bootstrap`.
#[tracing::instrument(skip_all)]
pub async fn start_bootstrap(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match start(&state, &headers, &body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn start(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Response, ApiError> {
    let header = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let principal = match state.tokens.authenticate(header) {
        Authentication::Authenticated(principal) => principal,
        _ => return Err(ApiError::Unauthenticated),
    };
    principal.require(permissions::CREATE_ROOT_ORGANIZATION)?;
    let raw: RawRequest = serde_json::from_slice(body).map_err(|e| ApiError::BadUserInput {
        // serde's message names the field and position, never anything of ours.
        message: format!("invalid request body: {e}"),
        field: None,
    })?;
    let request = raw.parse()?;
    let correlation = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let outcome = state
        .starter
        .start(&principal, request, correlation)
        .await?;
    let (code, status) = match outcome.status {
        BootstrapRequestStatus::Started => (StatusCode::CREATED, "initiated"),
        BootstrapRequestStatus::Queued => (StatusCode::ACCEPTED, "queued"),
        BootstrapRequestStatus::AlreadyExists => (StatusCode::OK, "exists"),
    };
    Ok((
        code,
        Json(json!({
            "workflowId": outcome.workflow_id,
            "organizationId": outcome.organization_id,
            "status": status,
        })),
    )
        .into_response())
}
