//! The old REST route, `POST /api/v1/workflows/organization-bootstrap`, kept for the existing
//! frontend: the same service, token and permission as the GraphQL mutation, the old response
//! shape `{ workflowId, organizationId, status }`, and JSON errors `{ error, details }`.

use axum::{
    Extension, Json,
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;
use tower_http::request_id::RequestId;

use crate::onboarding::{request::RawRequest, start::BootstrapRequestStatus};
use crate::{
    AppState, auth::permissions, error::ApiError, http::client::Caller, types::TraceParent,
};

/// `POST /api/v1/workflows/organization-bootstrap`.
#[tracing::instrument(skip_all)]
pub async fn start_bootstrap(
    State(state): State<AppState>,
    Caller(caller): Caller,
    request_id: Option<Extension<RequestId>>,
    trace: Option<Extension<TraceParent>>,
    body: Bytes,
) -> Response {
    let correlation = request_id
        .and_then(|Extension(id)| id.header_value().to_str().ok().map(str::to_owned))
        .unwrap_or_default();
    let trace = trace.map(|Extension(trace)| trace);
    match start(&state, &caller, &correlation, trace, &body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn start(
    state: &AppState,
    caller: &crate::auth::Authentication,
    correlation: &str,
    trace: Option<TraceParent>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let principal = caller.principal()?;
    principal.require(permissions::CREATE_ROOT_ORGANIZATION)?;
    let raw: RawRequest = serde_json::from_slice(body).map_err(|e| ApiError::BadUserInput {
        // serde's message names the field and position, never anything of ours.
        message: format!("invalid request body: {e}"),
        field: None,
    })?;
    let request = raw.parse()?;
    let outcome = state
        .starter
        .start(principal, request, correlation, trace)
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
