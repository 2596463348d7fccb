//! `POST /graphql` and `GET /graphql`: reading the request (a JSON body; or the query string,
//! with persisted-query hashes and `If-None-Match`; GraphiQL when it holds no query) and its
//! context, then [`pipeline::answer`] does the rest.

use std::collections::HashMap;

use axum::{
    Extension,
    body::Bytes,
    extract::{FromRequest, RawQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
};

use super::{
    context::{RequestContext, Requester, Transport},
    encode::refusal_response,
    pipeline::{self, Method},
};
use crate::{AppState, error::ApiError, types::TraceParent};

/// `POST /graphql`: authenticates the caller, judges the document, then executes it.
#[tracing::instrument(skip_all, fields(graphql.operation = tracing::field::Empty, auth.user = tracing::field::Empty))]
pub async fn graphql_post(
    State(state): State<AppState>,
    requester: Requester,
    trace: Option<Extension<TraceParent>>,
    GraphQLBody(request): GraphQLBody,
) -> axum::response::Response {
    let context =
        RequestContext::new(&state, requester, Transport::Http).traced(trace.map(|Extension(t)| t));
    pipeline::answer(&state, context, request, Method::Post).await
}

/// `GET /graphql`: with `query` or `extensions` in the query string, a GraphQL query (never a
/// mutation) answered with an `ETag`, so a polling dashboard gets `304` while nothing changed;
/// without them, GraphiQL (404 with `GRAPHIQL=false`).
#[tracing::instrument(skip_all, fields(graphql.operation = tracing::field::Empty, auth.user = tracing::field::Empty))]
pub async fn graphql_get(
    State(state): State<AppState>,
    requester: Requester,
    trace: Option<Extension<TraceParent>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> axum::response::Response {
    let Some(request) = query.as_deref().and_then(get_request) else {
        if !state.config.graphiql {
            return StatusCode::NOT_FOUND.into_response();
        }
        return state.graphiql.response();
    };
    let request = match request {
        Ok(request) => request,
        Err(message) => return rejected(StatusCode::BAD_REQUEST, message),
    };
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let context =
        RequestContext::new(&state, requester, Transport::Http).traced(trace.map(|Extension(t)| t));
    pipeline::answer(&state, context, request, Method::Get { if_none_match }).await
}

/// A GraphQL request from a query string (`query`, `operationName`, `variables` and
/// `extensions`, the last two as JSON); `None` when it holds neither `query` nor `extensions`.
pub fn get_request(query_string: &str) -> Option<Result<async_graphql::Request, &'static str>> {
    let params: HashMap<String, String> = url::form_urlencoded::parse(query_string.as_bytes())
        .into_owned()
        .collect();
    if !params.contains_key("query") && !params.contains_key("extensions") {
        return None;
    }
    let json = |name: &str| -> Result<Option<serde_json::Value>, &'static str> {
        params
            .get(name)
            .map(|raw| {
                serde_json::from_str(raw)
                    .map_err(|_| "variables and extensions must be JSON objects")
            })
            .transpose()
    };
    let request = (|| {
        let mut body =
            serde_json::json!({ "query": params.get("query").cloned().unwrap_or_default() });
        if let Some(name) = params.get("operationName") {
            body["operationName"] = serde_json::json!(name);
        }
        if let Some(variables) = json("variables")? {
            body["variables"] = variables;
        }
        if let Some(extensions) = json("extensions")? {
            body["extensions"] = extensions;
        }
        serde_json::from_value::<async_graphql::Request>(body)
            .map_err(|_| "variables and extensions must be JSON objects")
    })();
    Some(request)
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
    refusal_response(status, &error)
}
