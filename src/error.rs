//! The error type at the GraphQL boundary.
//!
//! Every failure a client can see is one [`ApiError`] variant with a stable `extensions.code`.
//! Internal causes (sqlx, Temporal) are logged once here and replaced by a generic message, so
//! no database or gRPC text ever reaches a client.
//!
//! Resolvers return `async_graphql::Result` and convert with `async_graphql::ResultExt::extend`
//! (`fallible().await.extend()?`): a bare `?` would keep the message but drop the code. REST
//! handlers return the error itself (`IntoResponse`).

use async_graphql::ErrorExtensions;
use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

/// A client-visible error with a stable code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No valid bearer token.
    #[error("authentication required")]
    Unauthenticated,
    /// Authenticated, but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// The thing asked for does not exist (where `null` is not the answer).
    #[error("{0}")]
    NotFound(String),
    /// The input is wrong; `field` names the offending input field when there is one.
    #[error("{message}")]
    BadUserInput {
        /// What is wrong, for a person.
        message: String,
        /// The input path, e.g. `input.subdomain`.
        field: Option<String>,
    },
    /// Too many attempts; try again after `retry_after_secs`.
    #[error("too many attempts; try again in {retry_after_secs} seconds")]
    RateLimited {
        /// Seconds until the next attempt is allowed.
        retry_after_secs: i64,
    },
    /// A dependency is down and the request cannot be answered now.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else. The cause is logged, never shown.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// Every `extensions.code` the service returns.
pub const CODES: [&str; 8] = [
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "NOT_FOUND",
    "BAD_USER_INPUT",
    "RATE_LIMITED",
    "UNAVAILABLE",
    "INTERNAL",
    "PERSISTED_QUERY_NOT_FOUND",
];

/// `code` as one of [`CODES`], or `OTHER`: a metric label that cannot grow without bound.
pub fn known_code(code: &str) -> &'static str {
    CODES
        .into_iter()
        .find(|known| *known == code)
        .unwrap_or("OTHER")
}

impl ApiError {
    /// The stable `extensions.code` of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::NotFound(_) => "NOT_FOUND",
            Self::BadUserInput { .. } => "BAD_USER_INPUT",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::Unavailable(_) => "UNAVAILABLE",
            Self::Internal(_) => "INTERNAL",
        }
    }

    /// A bad-input error about one input field.
    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadUserInput {
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// Wraps an internal failure; the cause is logged when the error is converted.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self::Internal(cause.into())
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        Self::database(&std::sync::Arc::new(error))
    }
}

impl ApiError {
    /// A database failure: `UNAVAILABLE` when Postgres cannot be reached or used right now
    /// (see [`crate::db::is_unavailable`]; the cause is logged, not shown), else internal.
    pub fn database(error: &std::sync::Arc<sqlx::Error>) -> Self {
        if crate::db::is_unavailable(error) {
            // The boundary logs the answer once; the driver's words only at debug.
            tracing::debug!(error.cause = %error, "database unavailable");
            Self::Unavailable("the database is unavailable; try again shortly".to_owned())
        } else {
            Self::internal(std::sync::Arc::clone(error))
        }
    }
}

impl ApiError {
    /// Logs the error once, at the boundary that answers it (GraphQL or REST): client mistakes
    /// at info, outages at warn, our failures at error with their cause.
    pub fn log(&self) {
        match self {
            Self::Internal(cause) => {
                tracing::error!(error.code = self.code(), error.cause = ?cause, "request failed")
            }
            Self::Unavailable(_) => {
                tracing::warn!(error.code = self.code(), error.message = %self, "request failed")
            }
            _ => {
                tracing::info!(error.code = self.code(), error.message = %self, "request rejected")
            }
        }
    }
}

impl ErrorExtensions for ApiError {
    fn extend(&self) -> async_graphql::Error {
        self.log();
        async_graphql::Error::new(self.to_string()).extend_with(|_, ext| {
            ext.set("code", self.code());
            match self {
                Self::BadUserInput {
                    field: Some(field), ..
                } => ext.set("field", field.as_str()),
                Self::RateLimited { retry_after_secs } => ext.set("retryAfter", *retry_after_secs),
                _ => {}
            }
        })
    }
}

/// The REST routes' error answer: `{ "error": message, "details": … }` with a status that
/// matches the code (the old start route's shape). Internal causes are logged, never sent.
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
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, Value::Null),
            // A bug is not worth retrying: 500, as the other REST routes answer.
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, Value::Null),
        };
        self.log();
        let message = self.to_string();
        (
            status,
            Json(json!({ "error": message, "details": details })),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_cause_from_clients() {
        let error = ApiError::internal(anyhow::anyhow!("relation \"users\" does not exist"));

        let gql = error.extend();

        assert_eq!(gql.message, "internal error");
        let ext = format!("{:?}", gql.extensions);
        assert!(ext.contains("INTERNAL") && !ext.contains("users"), "{ext}");
    }

    #[test]
    fn an_internal_error_on_a_rest_route_is_a_500_that_invites_no_retry_and_hides_its_cause() {
        let error = ApiError::internal(anyhow::anyhow!("relation \"users\" does not exist"));

        let response = error.into_response();

        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().get("retry-after").is_none());
    }

    #[test]
    fn bad_input_names_the_field_in_extensions() {
        let gql = ApiError::bad_input("input.subdomain", "subdomain is reserved").extend();

        let ext = format!("{:?}", gql.extensions);
        assert!(
            ext.contains("BAD_USER_INPUT") && ext.contains("input.subdomain"),
            "{ext}"
        );
    }
}

/// Why a background check of workflows against the projections (the reconcilers of
/// `releases::closed` and `onboarding::closed`) could not finish; logged, then tried again.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Temporal did not answer in time, or refused.
    #[error("temporal: {0}")]
    Temporal(#[from] crate::temporal::TemporalError),
    /// The database refused.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}
