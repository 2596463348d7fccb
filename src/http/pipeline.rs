//! What every GraphQL request over HTTP goes through, in order: a persisted query's document is
//! looked up; the caller is judged against the document by the gate (`auth::gate`: a request
//! that needs a token and has none is answered `UNAUTHENTICATED` with no `data` at all); a `GET`
//! is answered `304` when nothing it read changed (`conditional`); the request waits for an
//! execution slot (`admission`); the schema executes it (or a kept introspection answer is
//! sent); every error gets a code and the answer is encoded under the size cap (`encode`).
//! Each request ends with one log line and its metrics.

use async_graphql::{Response, ServerError, parser::types::OperationType};
use axum::{
    body::Bytes,
    http::{HeaderValue, StatusCode, header},
};

use super::{
    conditional::{self, request_key},
    context::RequestContext,
    encode::{
        encode, encode_response, error_codes, json_response, refused, too_large, with_code,
        with_codes,
    },
    persisted::Lookup,
};
use crate::{
    AppState,
    auth::{
        Authentication,
        gate::{self, Verdict},
    },
    error::ApiError,
    releases::graphql::compiled::Unanswered,
    types::is_plain_name,
};

/// How an HTTP request came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// `POST`: queries and mutations.
    Post,
    /// `GET`: queries only, answered with an `ETag`; `if_none_match` is the client's.
    Get { if_none_match: Option<String> },
}

/// A query whose answer may be kept (`conditional`): who asks (as far as an answer can show
/// it), and the request's key.
struct Keep {
    scope: String,
    key: String,
}

impl Method {
    /// An answer with tag `etag`: for a `GET`, with its `ETag` (or `304` when the client holds
    /// it); for a `POST`, the body as it is.
    fn respond(&self, etag: &str, body: Bytes) -> axum::response::Response {
        match self {
            Self::Get { if_none_match } => {
                conditional::answer(etag, if_none_match.as_deref(), json_response(body))
            }
            Self::Post => json_response(body),
        }
    }
}

/// Answers one GraphQL request over HTTP, then logs its one line (operation and caller from
/// the span, duration, SQL and Temporal counts, error codes) and records its metrics.
pub async fn answer(
    state: &AppState,
    context: RequestContext,
    request: async_graphql::Request,
    method: Method,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let transport = context.transport;
    let named = request.operation_name.clone();
    let mut report = Report::default();
    let response = run(state, context, request, method, &mut report).await;
    let elapsed = started.elapsed();
    let operation = named.or_else(|| report.operation.take());
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
        request.transport = transport.as_str(),
        graphql.duration_ms = elapsed.as_secs_f64() * 1e3,
        graphql.sql_statements = report.sql,
        graphql.temporal_queries = report.temporal,
        graphql.error_codes = %report.codes.join(","),
        http.status = response.status().as_u16(),
        "graphql request done"
    );
    response
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
    context: RequestContext,
    mut request: async_graphql::Request,
    method: Method,
    report: &mut Report,
) -> axum::response::Response {
    let authentication = &context.caller.authentication;
    let max_bytes = state.config.max_response_bytes;
    let span = tracing::Span::current();
    let operation_name = request.operation_name.clone();
    if let Some(name) = operation_name.as_deref().filter(|n| is_plain_name(n)) {
        span.record("graphql.operation", name);
    }
    match authentication {
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
    if matches!(method, Method::Get { .. }) && kind != Some(OperationType::Query) {
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

    let keep = (kind == Some(OperationType::Query)).then(|| {
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
        Keep { scope, key }
    });
    if let Some(keep) = &keep
        && let Some(kept) = state.answers.kept(&keep.key, &state.release_cache)
    {
        report.executed_for_caller = authentication.principal().is_ok();
        state.metrics.answer_kept();
        return method.respond(&kept.etag, kept.body);
    }

    // Admission: every operation but a login takes turns for an execution slot, so the
    // CPU-heavy ones (whole trees, introspection) cannot crowd a small read out of the
    // scheduler. Logins have their own bounds (the login service's waiting room and hashing
    // queue), so a flood of them cannot take the slots signed-in callers need.
    let is_login = verdict == Verdict::Public && kind == Some(OperationType::Mutation);
    let _slot = if is_login {
        None
    } else {
        Some(state.execution_slots.admit(&context.caller_key()).await)
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
    let mut request = context.attach(state, request);
    let (body, cacheable) = match state.schema.answer_compiled(&mut request, max_bytes).await {
        Ok(body) => {
            state.metrics.answer_compiled();
            (Bytes::from(body), true)
        }
        Err(unanswered) => {
            let response = match unanswered {
                Unanswered::TooLarge => too_large(max_bytes),
                Unanswered::Answered(response) => *response,
                Unanswered::Executor => state.schema.execute(request).await,
            };
            let response = with_codes(response);
            report.note(&response);
            let cacheable = response.errors.is_empty();
            (Bytes::from(encode(response, max_bytes)), cacheable)
        }
    };
    (report.sql, report.temporal) = context.stats.totals();
    let only_kept_reads = context.stats.only_kept_reads();
    // An introspection is kept by its document alone (any caller gets the same schema), so it
    // is kept there and not per caller below.
    let introspection = introspection_key.is_some();
    if let Some(key) = introspection_key.filter(|_| cacheable) {
        state
            .introspection_answers
            .insert(key, body.clone(), body.len());
    }
    match keep {
        Some(Keep { scope, key }) if cacheable => {
            // Only answers made wholly of kept closed releases can be sent again later without
            // running: anything read from the database or Temporal may change unseen.
            let remember = only_kept_reads && !introspection;
            // A POST answer carries no ETag: its tag is only for one kept or sent by GET (a
            // hash of a whole tree's answer is about 0.2 ms of its 4 ms read).
            if !remember && method == Method::Post {
                return json_response(body);
            }
            let etag = conditional::etag(&scope, &body);
            if remember {
                state
                    .answers
                    .remember(key, &etag, body.clone(), context.reads.take());
            }
            method.respond(&etag, body)
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
