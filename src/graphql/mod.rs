//! GraphQL wiring: the schema object, the HTTP handlers and GraphiQL.
//!
//! Domain modules contribute their root fields as objects merged into [`Query`]; this module
//! only assembles them and sets the limits every operation runs under.

use async_graphql::{
    EmptyMutation, EmptySubscription, MergedObject, Object, Schema, http::GraphiQLSource,
};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::{
    extract::State,
    response::{Html, IntoResponse},
};

use crate::AppState;

/// The schema type served at `/graphql`.
pub type AppSchema = Schema<Query, EmptyMutation, EmptySubscription>;

/// Deepest selection nesting accepted (the release tree is 6 levels; fragments add a few).
const MAX_DEPTH: usize = 16;
/// Largest complexity accepted, so a single request cannot ask for unbounded work.
const MAX_COMPLEXITY: usize = 5_000;

/// The root query: every domain's fields merged.
#[derive(MergedObject, Default)]
pub struct Query(ServiceQuery);

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

/// Builds the schema with its limits.
pub fn build_schema() -> AppSchema {
    Schema::build(Query::default(), EmptyMutation, EmptySubscription)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .finish()
}

/// The schema in SDL, as `temporal-bff schema` prints it and `schema.graphql` holds it.
pub fn sdl() -> String {
    build_schema().sdl()
}

/// `POST /graphql`: executes one operation.
pub async fn graphql_handler(
    State(state): State<AppState>,
    request: GraphQLRequest,
) -> GraphQLResponse {
    state.schema.execute(request.into_inner()).await.into()
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
