//! `POST /graphql` and GraphiQL on `GET /graphql`.
//!
//! Before anything in a document runs: the caller is authenticated (token, then the user as
//! they are now), the document is parsed once and judged by the gate (`auth::gate`), and a
//! request that needs a token and has none is answered `UNAUTHENTICATED` with no `data` at all.
//! After execution every error carries a code, and the encoded answer is capped in size.

use std::{io::Write, sync::Arc};

use async_graphql::{ErrorExtensions, Response, ServerError, http::GraphiQLSource};
use axum::{
    Extension,
    body::Bytes,
    extract::{FromRequest, State},
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse},
};
use tower_http::request_id::RequestId as HttpRequestId;

use crate::{
    AppState,
    auth::{
        Authentication,
        gate::{self, Verdict},
        graphql::ClientAddr,
    },
    error::ApiError,
    graphql::context::RequestId,
    http::client::{Caller, ClientIp},
    metrics::RequestStats,
    onboarding::graphql::OnboardingLoader,
    releases::graphql::ReleaseLoader,
};

/// `POST /graphql`: authenticates the caller, judges the document, then executes it.
#[tracing::instrument(skip_all, fields(graphql.operation = tracing::field::Empty, auth.user = tracing::field::Empty))]
pub async fn graphql_handler(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    request_id: Option<Extension<HttpRequestId>>,
    Caller(authentication): Caller,
    GraphQLBody(mut request): GraphQLBody,
) -> axum::response::Response {
    let span = tracing::Span::current();
    let operation_name = request.operation_name.clone();
    if let Some(name) = operation_name.as_deref().filter(|n| is_plain_name(n)) {
        span.record("graphql.operation", name);
    }
    match &authentication {
        Authentication::Authenticated(principal) => {
            span.record("auth.user", principal.user_id.as_str());
        }
        Authentication::Invalid(why) => tracing::info!(auth.rejected = *why, "token refused"),
        Authentication::Anonymous | Authentication::Unverified => {}
    }

    let (verdict, parse_error) = match request.parsed_query() {
        Ok(document) => (gate::judge(Some(document), operation_name.as_deref()), None),
        Err(error) => (gate::judge(None, operation_name.as_deref()), Some(error)),
    };
    if let Some(error) = &parse_error {
        // Position and kind only: the message quotes the document, which may hold a password.
        let at = error.locations.first();
        tracing::info!(
            error.code = "BAD_USER_INPUT",
            error.kind = "syntax",
            error.line = at.map(|p| p.line),
            error.column = at.map(|p| p.column),
            "request rejected: the document does not parse"
        );
    }
    let refusal = match (verdict, authentication.principal()) {
        (Verdict::TooMany(limit), _) => Some(ApiError::BadUserInput {
            message: limit.message(),
            field: None,
        }),
        (Verdict::NeedsToken, Err(error)) => Some(error),
        _ => None,
    };
    if let Some(refusal) = refusal {
        return encode(refused(&refusal), state.config.max_response_bytes);
    }
    if let Some(error) = parse_error {
        return encode(
            Response::from_errors(vec![with_code(error, "BAD_USER_INPUT")]),
            state.config.max_response_bytes,
        );
    }

    // Admission: data operations take turns for an execution slot, so the CPU-heavy ones
    // (whole trees) cannot crowd a login or a small read out of the scheduler. Logins and
    // introspection are cheap and skip the line.
    let _slot = match verdict {
        Verdict::Public => None,
        _ => state.execution_slots.acquire().await.ok(),
    };
    let stats = Arc::new(RequestStats::new(Arc::clone(&state.metrics)));
    let releases = ReleaseLoader::new(
        state.db.clone(),
        Arc::clone(&state.live),
        Arc::clone(&state.release_cache),
        Arc::clone(&stats),
    );
    let onboarding =
        OnboardingLoader::new(state.db.clone(), state.temporal.clone(), Arc::clone(&stats));
    let request_id = request_id
        .and_then(|Extension(id)| id.header_value().to_str().ok().map(str::to_owned))
        .unwrap_or_default();
    let response = state
        .schema
        .execute(
            request
                .data(authentication)
                .data(releases)
                .data(onboarding)
                .data(RequestId(request_id))
                .data(ClientAddr(client))
                .data(Arc::clone(&stats)),
        )
        .await;
    let (sql, temporal) = stats.totals();
    tracing::info!(
        graphql.sql_statements = sql,
        graphql.temporal_queries = temporal,
        "graphql request done"
    );
    encode(with_codes(response), state.config.max_response_bytes)
}

/// One GraphQL request from a `POST` body: `Content-Type: application/json` only (no form
/// posts a browser could send cross-site, no multipart uploads written to disk), one JSON
/// object (no batches). Anything else is refused with a GraphQL error before it is looked at.
pub struct GraphQLBody(pub async_graphql::Request);

impl<S: Send + Sync> FromRequest<S> for GraphQLBody {
    type Rejection = axum::response::Response;

    async fn from_request(
        request: axum::extract::Request,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(rejected(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the request as Content-Type: application/json",
            ));
        }
        // The body limit applies here: an oversized body is answered 413.
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        match serde_json::from_slice::<async_graphql::Request>(&bytes) {
            Ok(request) => Ok(Self(request)),
            Err(_) => Err(rejected(
                StatusCode::BAD_REQUEST,
                "the body must be one JSON object with a `query` string (batches are not accepted)",
            )),
        }
    }
}

/// A transport-level refusal, with the GraphQL error shape so clients read it the same way.
fn rejected(status: StatusCode, message: &str) -> axum::response::Response {
    let error = ApiError::BadUserInput {
        message: message.to_owned(),
        field: None,
    };
    let mut response = encode(refused(&error), usize::MAX);
    *response.status_mut() = status;
    response
}

/// A GraphQL name (`[_A-Za-z][_0-9A-Za-z]*`), short enough to log.
fn is_plain_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c == '_' || c.is_ascii_alphabetic())
        && name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// An answer with only `error` and no `data`.
fn refused(error: &ApiError) -> Response {
    let mut error = error
        .extend()
        .into_server_error(async_graphql::Pos::default());
    // About the request as a whole: no place in the document to point at.
    error.locations.clear();
    Response::from_errors(vec![error])
}

fn with_code(mut error: ServerError, code: &str) -> ServerError {
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", code);
    error
}

/// Gives every error a code. Errors async-graphql raises itself during validation (unknown
/// fields, wrong variable types, depth and complexity limits) have no path: they are the
/// client's request (`BAD_USER_INPUT`). An error *with* a path but no code came from a
/// resolver that did not classify it: that is ours, so it is logged and shown as `INTERNAL`.
fn with_codes(mut response: Response) -> Response {
    for error in &mut response.errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_some() {
            continue;
        }
        if error.path.is_empty() {
            tracing::info!(error.code = "BAD_USER_INPUT", error.message = %error.message, "request rejected by GraphQL validation");
            extensions.set("code", "BAD_USER_INPUT");
        } else {
            tracing::error!(error.code = "INTERNAL", error.cause = %error.message, "resolver failed without a code");
            extensions.set("code", "INTERNAL");
            error.message = "internal error".to_owned();
        }
    }
    response
}

/// Encodes `response` as JSON, refusing (with `BAD_USER_INPUT`) an answer larger than
/// `max_bytes` instead of sending it: encoding stops as soon as the limit is passed.
fn encode(response: Response, max_bytes: usize) -> axum::response::Response {
    let mut body = CappedBuffer::new(max_bytes);
    let encoded = serde_json::to_writer(&mut body, &response);
    let bytes = match (encoded, body.overflowed) {
        (Ok(()), false) => body.bytes,
        (_, true) => {
            let error = ApiError::BadUserInput {
                message: format!(
                    "the answer would be larger than {max_bytes} bytes; ask for fewer fields or smaller pages"
                ),
                field: None,
            };
            serde_json::to_vec(&refused(&error)).unwrap_or_default()
        }
        (Err(error), false) => {
            let error = ApiError::internal(error);
            serde_json::to_vec(&refused(&error)).unwrap_or_default()
        }
    };
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response()
}

/// A byte buffer that refuses to grow past its cap.
struct CappedBuffer {
    bytes: Vec<u8>,
    cap: usize,
    overflowed: bool,
}

impl CappedBuffer {
    fn new(cap: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(cap.min(64 * 1024)),
            cap,
            overflowed: false,
        }
    }
}

impl Write for CappedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.cap {
            self.overflowed = true;
            return Err(std::io::Error::other("response too large"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `GET /graphql`: the GraphiQL explorer.
pub async fn graphiql() -> impl IntoResponse {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .title("temporal-bff")
            .finish(),
    )
}
