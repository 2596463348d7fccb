//! `POST /graphql`, `GET /graphql` (queries with `ETag`s, persisted queries; GraphiQL when the
//! query string holds no query).
//!
//! Before anything in a document runs: the caller is authenticated (token, then the user as
//! they are now), the document is parsed once and judged by the gate (`auth::gate`), and a
//! request that needs a token and has none is answered `UNAUTHENTICATED` with no `data` at all.
//! After execution every error carries a code, and the encoded answer is capped in size.

use std::{collections::HashMap, io::Write, sync::Arc};

use async_graphql::{ErrorExtensions, Response, ServerError, parser::types::OperationType};
use axum::{
    Extension,
    body::Bytes,
    extract::{FromRequest, RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::IntoResponse,
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
    http::{
        client::{Caller, ClientIp},
        conditional::{self, request_key},
        persisted::Lookup,
    },
    metrics::RequestStats,
    onboarding::graphql::OnboardingLoader,
    releases::{cache::CachedReads, graphql::ReleaseLoader},
    types::{TraceParent, is_plain_name},
};

/// How a request came.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Transport {
    /// `POST`: queries and mutations.
    Post,
    /// `GET`: queries only, answered with an `ETag`; `if_none_match` is the client's.
    Get { if_none_match: Option<String> },
}

/// A `GET` to answer conditionally: who asks (as far as an answer can show it), the request's
/// key for remembered answers, and the client's `If-None-Match`.
struct Poll {
    scope: String,
    key: String,
    if_none_match: Option<String>,
}

/// Who asks, from where, under which request ID.
pub(super) struct Asker {
    pub(super) authentication: Authentication,
    pub(super) client: std::net::IpAddr,
    pub(super) request_id: String,
}

/// `request` with what its resolvers read besides the document: the caller, per-request
/// loaders counting into `stats` (and noting cached reads in `reads`), the request ID and the
/// client address. HTTP requests and subscriptions get the same.
pub(super) fn with_request_data(
    state: &AppState,
    request: async_graphql::Request,
    asker: Asker,
    stats: &Arc<RequestStats>,
    reads: &Arc<CachedReads>,
) -> async_graphql::Request {
    let releases = ReleaseLoader::new(
        state.db.clone(),
        Arc::clone(&state.live),
        Arc::clone(&state.closes),
        Arc::clone(&state.release_cache),
        Arc::clone(stats),
        Arc::clone(reads),
    );
    let onboarding =
        OnboardingLoader::new(state.db.clone(), state.temporal.clone(), Arc::clone(stats));
    request
        .data(asker.authentication)
        .data(releases)
        .data(onboarding)
        .data(RequestId(asker.request_id))
        .data(ClientAddr(asker.client))
        .data(Arc::clone(stats))
}

/// `POST /graphql`: authenticates the caller, judges the document, then executes it.
#[tracing::instrument(skip_all, fields(graphql.operation = tracing::field::Empty, auth.user = tracing::field::Empty))]
pub async fn graphql_post(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    request_id: Option<Extension<HttpRequestId>>,
    Caller(authentication): Caller,
    trace: Option<Extension<TraceParent>>,
    GraphQLBody(request): GraphQLBody,
) -> axum::response::Response {
    let request = with_trace(request, trace);
    let asker = Asker {
        authentication,
        client,
        request_id: request_id_text(request_id),
    };
    answer(&state, asker, request, Transport::Post).await
}

/// `GET /graphql`: with `query` or `extensions` in the query string, a GraphQL query (never a
/// mutation) answered with an `ETag`, so a polling dashboard gets `304` while nothing changed;
/// without them, GraphiQL (404 with `GRAPHIQL=false`).
#[tracing::instrument(skip_all, fields(graphql.operation = tracing::field::Empty, auth.user = tracing::field::Empty))]
pub async fn graphql_get(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    request_id: Option<Extension<HttpRequestId>>,
    Caller(authentication): Caller,
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
        Ok(request) => with_trace(request, trace),
        Err(message) => return rejected(StatusCode::BAD_REQUEST, message),
    };
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let asker = Asker {
        authentication,
        client,
        request_id: request_id_text(request_id),
    };
    answer(&state, asker, request, Transport::Get { if_none_match }).await
}

/// `request` with the trace context its resolvers hand on to Temporal (workflow starts).
fn with_trace(
    request: async_graphql::Request,
    trace: Option<Extension<TraceParent>>,
) -> async_graphql::Request {
    match trace {
        Some(Extension(trace)) => request.data(trace),
        None => request,
    }
}

fn request_id_text(request_id: Option<Extension<HttpRequestId>>) -> String {
    request_id
        .and_then(|Extension(id)| id.header_value().to_str().ok().map(str::to_owned))
        .unwrap_or_default()
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

/// Answers one GraphQL request over HTTP, then logs its one line (operation and caller from
/// the span, duration, SQL and Temporal counts, error codes) and records its metrics.
async fn answer(
    state: &AppState,
    asker: Asker,
    request: async_graphql::Request,
    transport: Transport,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let named = request.operation_name.clone();
    let mut report = Report::default();
    let response = run(state, asker, request, transport, &mut report).await;
    let elapsed = started.elapsed();
    let operation = named.or(report.operation.take());
    // Only an operation a signed-in caller ran gets its name as a label: anyone can name
    // a refused one, and the label slots are few.
    if report.executed_for_caller {
        state
            .metrics
            .graphql_operation(operation.as_deref(), &report.codes, elapsed.as_secs_f64());
    } else {
        state
            .metrics
            .graphql_without_caller(&report.codes, elapsed.as_secs_f64());
    }
    tracing::info!(
        graphql.duration_ms = elapsed.as_secs_f64() * 1e3,
        graphql.sql_statements = report.sql,
        graphql.temporal_queries = report.temporal,
        graphql.error_codes = %report.codes.join(","),
        http.status = response.status().as_u16(),
        "graphql request done"
    );
    response
}

/// The `extensions.code` of each of `response`'s errors (unknown ones as `OTHER`).
pub(super) fn error_codes(response: &Response) -> impl Iterator<Item = &'static str> + '_ {
    response.errors.iter().filter_map(|error| {
        match error.extensions.as_ref().and_then(|e| e.get("code")) {
            Some(async_graphql::Value::String(code)) => Some(crate::error::known_code(code)),
            _ => None,
        }
    })
}

/// What a GraphQL request ended with, for its log line and metrics.
#[derive(Default)]
struct Report {
    /// The lone operation's name, when the request named none.
    operation: Option<String>,
    codes: Vec<&'static str>,
    sql: u64,
    temporal: u64,
    /// Admitted to run (or to be answered from kept answers) for a signed-in caller.
    executed_for_caller: bool,
}

impl Report {
    /// Notes the codes of `response`'s errors.
    fn note(&mut self, response: &Response) {
        self.codes.extend(error_codes(response));
    }

    /// Notes `response`'s codes and encodes it.
    fn encode(&mut self, response: Response, max_bytes: usize) -> axum::response::Response {
        self.note(&response);
        encode_response(response, max_bytes)
    }
}

/// Answers one request, whichever way it came.
async fn run(
    state: &AppState,
    asker: Asker,
    mut request: async_graphql::Request,
    transport: Transport,
    report: &mut Report,
) -> axum::response::Response {
    let Asker {
        authentication,
        client,
        request_id,
    } = asker;
    let max_bytes = state.config.max_response_bytes;
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

    // A persisted query's document, before anything looks at the document.
    let hash = request
        .extensions
        .get("persistedQuery")
        .and_then(|ext| match ext {
            async_graphql::Value::Object(fields) => fields.get("sha256Hash").cloned(),
            _ => None,
        })
        .and_then(|hash| match hash {
            async_graphql::Value::String(hash) => Some(hash),
            _ => None,
        });
    // Stored documents are for signed-in callers only: answering an anonymous hash with
    // "found" or "not found" would tell whether someone registered that document.
    if hash.is_some()
        && let Err(error) = authentication.principal()
    {
        return report.encode(refused(&error), max_bytes);
    }
    let may_register = authentication.principal().is_ok();
    match state
        .persisted
        .resolve(hash.as_deref(), &request.query, may_register)
    {
        Lookup::None => {}
        Lookup::Found(document) => request.query = document,
        Lookup::NotFound => return report.encode(persisted_not_found(), max_bytes),
        Lookup::Mismatch => {
            return report.encode(
                refused(&ApiError::bad_input(
                    "extensions.persistedQuery.sha256Hash",
                    "the query's SHA-256 is not the hash sent with it",
                )),
                max_bytes,
            );
        }
    }

    let (verdict, parse_error, kind) = match request.parsed_query() {
        Ok(document) => {
            if operation_name.is_none() {
                report.operation = lone_operation_name(document).map(str::to_owned);
                if let Some(name) = &report.operation {
                    span.record("graphql.operation", name.as_str());
                }
            }
            (
                gate::judge(Some(document), operation_name.as_deref()),
                None,
                gate::operation_type(document, operation_name.as_deref()),
            )
        }
        Err(error) => (
            gate::judge(None, operation_name.as_deref()),
            Some(error),
            None,
        ),
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
        // A public query is introspection (a public mutation is a login): `INTROSPECTION=false`
        // keeps the schema from callers without a token.
        (Verdict::Public, Err(error))
            if kind == Some(OperationType::Query) && !state.config.introspection =>
        {
            Some(error)
        }
        _ => None,
    };
    if let Some(refusal) = refusal {
        return report.encode(refused(&refusal), max_bytes);
    }
    if let Some(error) = parse_error {
        return report.encode(
            Response::from_errors(vec![with_code(error, "BAD_USER_INPUT")]),
            max_bytes,
        );
    }
    if matches!(transport, Transport::Get { .. }) && kind != Some(OperationType::Query) {
        let mut response = report.encode(
            refused(&ApiError::BadUserInput {
                message: "GET runs queries only: send mutations with POST".to_owned(),
                field: None,
            }),
            max_bytes,
        );
        *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
        return response;
    }

    let poll = match transport {
        Transport::Get { if_none_match } => {
            // Who asks, as far as an answer can show it: part of the ETag and of the key.
            let scope = authentication
                .principal()
                .map(|p| format!("{p:?}"))
                .unwrap_or_default();
            let variables = serde_json::to_string(&request.variables).unwrap_or_default();
            let key = request_key(
                &scope,
                operation_name.as_deref(),
                &request.query,
                &variables,
            );
            if let Some(response) =
                state
                    .answers
                    .not_modified(&key, if_none_match.as_deref(), &state.release_cache)
            {
                return response;
            }
            Some(Poll {
                scope,
                key,
                if_none_match,
            })
        }
        Transport::Post => None,
    };

    // Admission: every operation but a login takes turns for an execution slot, so the
    // CPU-heavy ones (whole trees, introspection) cannot crowd a small read out of the
    // scheduler. Logins have their own bounds (the login service's waiting room and hashing
    // queue), so a flood of them cannot take the slots signed-in callers need.
    let is_login = verdict == Verdict::Public && kind == Some(OperationType::Mutation);
    let _slot = if is_login {
        None
    } else {
        Some(
            state
                .execution_slots
                .admit(&super::admission::caller_key(&authentication, client))
                .await,
        )
    };
    report.executed_for_caller = authentication.principal().is_ok();
    // Introspection answers depend only on the document: kept as bytes, sent without running.
    let introspection_key = (verdict == Verdict::Public && kind == Some(OperationType::Query))
        .then(|| introspection_key(&request));
    if let Some(body) = introspection_key
        .as_deref()
        .and_then(|key| state.introspection_answers.get(key))
    {
        state.metrics.introspection_kept();
        return json_response(body);
    }
    let stats = Arc::new(RequestStats::new(Arc::clone(&state.metrics)));
    let reads = Arc::new(CachedReads::default());
    let asker = Asker {
        authentication,
        client,
        request_id,
    };
    let response = state
        .schema
        .execute(with_request_data(state, request, asker, &stats, &reads))
        .await;
    let (sql, temporal) = stats.totals();
    (report.sql, report.temporal) = (sql, temporal);
    let response = with_codes(response);
    report.note(&response);
    let cacheable = response.errors.is_empty();
    let body = Bytes::from(encode(response, max_bytes));
    if let Some(key) = introspection_key.filter(|_| cacheable) {
        state
            .introspection_answers
            .insert(key, body.clone(), body.len());
    }
    match poll {
        Some(poll) if cacheable => {
            let etag = conditional::etag(&poll.scope, &body);
            // Only answers made wholly of kept closed releases can be told unchanged later
            // without running: anything read from the database or Temporal may change unseen.
            if sql == 0 && temporal == 0 {
                state.answers.remember(poll.key, &etag, reads.take());
            }
            conditional::answer(&etag, poll.if_none_match.as_deref(), json_response(body))
        }
        _ => json_response(body),
    }
}

/// The key of an introspection answer: the document, the operation and the variables.
fn introspection_key(request: &async_graphql::Request) -> String {
    let variables = serde_json::to_string(&request.variables).unwrap_or_default();
    let name = request.operation_name.as_deref().unwrap_or_default();
    super::persisted::sha256_hex(&format!("{}\0{name}\0{variables}", request.query))
}

/// Apollo's answer to an unknown persisted-query hash, which its clients recognise.
fn persisted_not_found() -> Response {
    let mut error = ServerError::new("PersistedQueryNotFound", None);
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", "PERSISTED_QUERY_NOT_FOUND");
    Response::from_errors(vec![error])
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

/// `error` alone, as a GraphQL answer with HTTP `status`.
pub(super) fn refusal_response(status: StatusCode, error: &ApiError) -> axum::response::Response {
    let mut response = encode_response(refused(error), usize::MAX);
    *response.status_mut() = status;
    response
}

/// A GraphQL name (`[_A-Za-z][_0-9A-Za-z]*`), short enough to log.
/// The name of `document`'s one operation when the request named none (a named operation is
/// kept by name even when alone): what the log line and the metrics call it.
fn lone_operation_name(
    document: &async_graphql::parser::types::ExecutableDocument,
) -> Option<&str> {
    match &document.operations {
        async_graphql::parser::types::DocumentOperations::Multiple(operations)
            if operations.len() == 1 =>
        {
            operations.keys().next().map(|name| name.as_str())
        }
        _ => None,
    }
}

/// An answer with only `error` and no `data`.
pub(super) fn refused(error: &ApiError) -> Response {
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
pub(super) fn with_codes(mut response: Response) -> Response {
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
fn encode(response: Response, max_bytes: usize) -> Vec<u8> {
    let mut body = CappedBuffer::new(max_bytes);
    let encoded = serde_json::to_writer(&mut body, &response);
    match (encoded, body.overflowed) {
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
    }
}

/// An encoded answer as an HTTP response.
fn json_response(body: impl IntoResponse) -> axum::response::Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// [`encode`], as an HTTP response.
fn encode_response(response: Response, max_bytes: usize) -> axum::response::Response {
    json_response(encode(response, max_bytes))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn name_of(query: &str) -> Option<String> {
        let document = async_graphql::parser::parse_query(query).ok()?;
        lone_operation_name(&document).map(str::to_owned)
    }

    #[test]
    fn a_lone_named_operation_is_known_by_its_name() {
        assert_eq!(name_of("query Tree { version }").as_deref(), Some("Tree"));
        assert_eq!(
            name_of("# a comment\n  mutation   Login($e: String) { version }").as_deref(),
            Some("Login")
        );
        assert_eq!(name_of("{ version }"), None);
        assert_eq!(name_of("query { version }"), None);
        assert_eq!(name_of("query A { version } query B { version }"), None);
    }
}
