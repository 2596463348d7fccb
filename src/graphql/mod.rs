//! GraphQL wiring: the schema object, the HTTP handlers and GraphiQL.
//!
//! Domain modules contribute their root fields as objects merged into [`Query`]; this module
//! only assembles them and sets the limits every operation runs under.

use async_graphql::{
    EmptySubscription, ErrorExtensions, MergedObject, Object, Response, Schema, SchemaBuilder,
    http::GraphiQLSource,
};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::{
    extract::State,
    http::{HeaderMap, header::AUTHORIZATION},
    response::{Html, IntoResponse},
};

pub mod node;

use std::sync::Arc;

use crate::{
    AppState,
    auth::{self, Authentication},
    error::ApiError,
    metrics::RequestStats,
    onboarding::graphql::{OnboardingLoader, OnboardingMutation, OnboardingQuery},
    releases::graphql::{ReleaseLoader, ReleasesQuery},
};

/// `totalCount` of a connection.
#[derive(async_graphql::SimpleObject)]
pub struct ConnectionTotal {
    /// How many items match, over all pages.
    pub total_count: i64,
}

/// The request's `x-request-id`, used as the correlation ID of what it writes.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The schema type served at `/graphql`.
pub type AppSchema = Schema<Query, Mutation, EmptySubscription>;

/// Deepest selection nesting accepted (the release tree is 6 levels; fragments add a few).
const MAX_DEPTH: usize = 16;
/// Largest complexity accepted, so a single request cannot ask for unbounded work.
const MAX_COMPLEXITY: usize = 5_000;

/// The root query: every domain's fields merged.
#[derive(MergedObject, Default)]
pub struct Query(
    ServiceQuery,
    auth::graphql::AuthQuery,
    node::NodeQuery,
    ReleasesQuery,
    OnboardingQuery,
);

/// The root mutation: every domain's mutations merged.
#[derive(MergedObject, Default)]
pub struct Mutation(auth::graphql::AuthMutation, OnboardingMutation);

/// Fields about the service itself.
#[derive(Default)]
pub struct ServiceQuery;

#[Object]
impl ServiceQuery {
    /// The server's version (the crate version it was built from).
    async fn version(&self) -> &'static str {
        env!("CARGO_PKG_VERSION")
    }
}

/// The schema with its limits; the caller adds the services resolvers use as data.
pub fn schema_builder() -> SchemaBuilder<Query, Mutation, EmptySubscription> {
    Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
}

/// The schema in SDL, as `temporal-bff schema` prints it and `schema.graphql` holds it.
pub fn sdl() -> String {
    schema_builder().finish().sdl()
}

/// `POST /graphql`: authenticates the caller, then executes one operation.
///
/// Every operation but `login` (and introspection) needs a valid bearer token; without one the
/// answer is `UNAUTHENTICATED` and nothing is executed.
#[tracing::instrument(skip_all, fields(graphql.operation = tracing::field::Empty, auth.user = tracing::field::Empty))]
pub async fn graphql_handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> GraphQLResponse {
    let request = request.into_inner();
    let span = tracing::Span::current();
    if let Some(name) = &request.operation_name {
        span.record("graphql.operation", name.as_str());
    }
    let header = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let authentication = state.tokens.authenticate(header);
    match &authentication {
        Authentication::Authenticated(principal) => {
            span.record("auth.user", principal.user_id.as_str());
        }
        Authentication::Invalid(why) => tracing::info!(auth.rejected = *why, "token refused"),
        Authentication::Anonymous => {}
    }
    if !matches!(authentication, Authentication::Authenticated(_))
        && auth::needs_authentication(&request.query, request.operation_name.as_deref())
    {
        return Response::from_errors(vec![
            ApiError::Unauthenticated
                .extend()
                .into_server_error(async_graphql::Pos::default()),
        ])
        .into();
    }
    let stats = Arc::new(RequestStats::new(Arc::clone(&state.metrics)));
    let releases = ReleaseLoader::new(
        state.db.clone(),
        Arc::clone(&state.live),
        Arc::clone(&stats),
    );
    let onboarding =
        OnboardingLoader::new(state.db.clone(), state.temporal.clone(), Arc::clone(&stats));
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let response = state
        .schema
        .execute(
            request
                .data(authentication)
                .data(releases)
                .data(onboarding)
                .data(RequestId(request_id))
                .data(Arc::clone(&stats)),
        )
        .await;
    let (sql, temporal) = stats.totals();
    tracing::info!(
        graphql.sql_statements = sql,
        graphql.temporal_queries = temporal,
        "graphql request done"
    );
    with_codes(response).into()
}

/// Gives a code to the errors async-graphql raises itself (syntax, unknown fields, wrong
/// variable types, depth and complexity limits): every one is the client's request.
fn with_codes(mut response: Response) -> Response {
    for error in &mut response.errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            tracing::info!(error.message = %error.message, "request rejected by GraphQL validation");
            extensions.set("code", "BAD_USER_INPUT");
        }
    }
    response
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
