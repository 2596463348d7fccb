//! The release BFF's REST routes (`/api/…`), kept for the dashboard that already calls them:
//! what they share. Each route runs a fixed GraphQL document through the same schema, with
//! the same per-request loaders, caches and caller check as `/graphql` ([`run`]), so no query
//! exists twice; its answer is reshaped into the old JSON (snake_case keys). Errors are
//! FastAPI's: `{ "detail": … }` with 401, 403, 404, 422 (a list of `{loc, msg, type}` for
//! bad parameters), 429 and 503. The OpenAPI 3.1 document of every route is assembled in
//! [`openapi`].
//!
//! The routes live here, beside the transport, not in the features: they run the whole
//! GraphQL schema, which sits above every feature.

pub mod auth;
pub mod onboarding;
pub mod openapi;
pub mod releases;

use axum::{
    Json, Router,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::{
    context::{RequestContext, Requester, Transport},
    encode::{encode, error_codes, with_codes},
};
use crate::AppState;

/// Every `/api/…` route.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/auth/login", post(auth::login))
        .route("/api/auth/me", get(auth::me))
        .route("/api/releases", get(releases::list))
        .route("/api/releases/{release_id}", get(releases::one))
        .route(
            "/api/releases/{release_id}/hierarchy",
            get(releases::hierarchy),
        )
        .route("/api/releases/{release_id}/nodes", get(releases::nodes))
        // Global IDs hold slashes: the rest of the path is the ID.
        .route("/api/entities/{*entity_id}", get(releases::entity))
        .route("/api/openapi.json", get(openapi::openapi))
        .route(
            "/api/v1/workflows/organization-bootstrap",
            post(onboarding::start_bootstrap),
        )
}

/// A REST error, as FastAPI answers it.
#[derive(Debug)]
pub struct Detail {
    status: StatusCode,
    detail: Value,
    retry_after: Option<i64>,
}

/// `{ "detail": "…" }`: what went wrong.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// What went wrong, for a person.
    pub detail: String,
}

/// `{ "detail": [{ loc, msg, type }] }`: which parameters are wrong (422).
#[derive(Serialize, ToSchema)]
pub struct ValidationErrors {
    /// One entry per bad parameter.
    pub detail: Vec<ValidationError>,
}

/// One bad parameter.
#[derive(Serialize, ToSchema)]
pub struct ValidationError {
    /// Where: `["query", "page_size"]`, `["path", "release_id"]`, `["body", "username"]`.
    pub loc: Vec<String>,
    /// What is wrong.
    pub msg: String,
    /// A machine-readable kind, e.g. `value_error`.
    #[serde(rename = "type")]
    pub kind: String,
}

impl Detail {
    /// `status` with a plain message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            detail: Value::String(message.into()),
            retry_after: None,
        }
    }

    /// 422 for parameter `name` in `place` (`query`, `path`, `body`).
    pub fn invalid(place: &str, name: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            detail: json!([{ "loc": [place, name], "msg": message.into(), "type": "value_error" }]),
            retry_after: None,
        }
    }

    /// 404 with `message`.
    pub fn not_found(message: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// The REST answer to a GraphQL error with `code` (from `extensions.code`).
    fn from_graphql(error: &Value) -> Self {
        let code = error["extensions"]["code"].as_str().unwrap_or("INTERNAL");
        let message = error["message"].as_str().unwrap_or("internal error");
        let status = match code {
            "UNAUTHENTICATED" => StatusCode::UNAUTHORIZED,
            "FORBIDDEN" => StatusCode::FORBIDDEN,
            "NOT_FOUND" => StatusCode::NOT_FOUND,
            "BAD_USER_INPUT" => StatusCode::UNPROCESSABLE_ENTITY,
            "RATE_LIMITED" => StatusCode::TOO_MANY_REQUESTS,
            "UNAVAILABLE" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let field = error["extensions"]["field"].as_str();
        let mut detail = match (status, field) {
            (StatusCode::UNPROCESSABLE_ENTITY, Some(field)) => {
                Self::invalid("query", field, message)
            }
            _ => Self::new(status, message),
        };
        detail.retry_after = error["extensions"]["retryAfter"].as_i64();
        detail
    }
}

impl IntoResponse for Detail {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "detail": self.detail }))).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            headers.insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// Runs the fixed GraphQL `document` with `variables` for `caller`, exactly as `/graphql`
/// would (same loaders, caches, budget and caller check): its `data`, or its first error as a
/// REST answer.
pub async fn run(
    state: &AppState,
    caller: Requester,
    document: &str,
    variables: Value,
) -> Result<Value, Detail> {
    let started = std::time::Instant::now();
    let request = async_graphql::Request::new(document)
        .variables(async_graphql::Variables::from_json(variables));
    let user = caller
        .authentication
        .principal()
        .map(|p| p.user_id.clone())
        .unwrap_or_default();
    let context = RequestContext::new(state, caller, Transport::Rest);
    let response = {
        let _slot = state.execution_slots.admit(&context.caller_key()).await;
        state.schema.execute(context.attach(state, request)).await
    };
    let response = with_codes(response);
    let (sql, temporal) = context.stats.totals();
    // The route's one line, as `/graphql` logs (the route is the span's `http.path`).
    tracing::info!(
        auth.user = %user,
        request.transport = context.transport.as_str(),
        graphql.duration_ms = started.elapsed().as_secs_f64() * 1e3,
        graphql.sql_statements = sql,
        graphql.temporal_queries = temporal,
        graphql.error_codes = %error_codes(&response).collect::<Vec<_>>().join(","),
        "rest request done"
    );
    // The same size cap as `/graphql`: past it, the answer is the refusal.
    let body = serde_json::from_slice::<Value>(&encode(response, state.config.max_response_bytes))
        .unwrap_or(Value::Null);
    match body["errors"].get(0) {
        Some(error) => Err(Detail::from_graphql(error)),
        None => Ok(body["data"].clone()),
    }
}

/// `value` with every object key turned from camelCase into snake_case (GraphQL's names into
/// the old REST ones).
pub fn snake_keys(value: Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(key, value)| (snake_case(&key), snake_keys(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(snake_keys).collect()),
        other => other,
    }
}

fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Reshapes GraphQL `data` (already snake_cased) into a REST shape: the shapes are the
/// OpenAPI document's, so an answer that does not fit them is our bug.
pub fn reshape<T: serde::de::DeserializeOwned + Serialize>(data: Value) -> Result<Json<T>, Detail> {
    serde_json::from_value(snake_keys(data))
        .map(Json)
        .map_err(|error| {
            tracing::error!(%error, "a REST answer does not fit its documented shape");
            Detail::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        })
}
