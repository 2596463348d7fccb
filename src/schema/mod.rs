//! The GraphQL schema: domain modules contribute their root fields as objects merged into
//! [`Query`], [`Mutation`] and [`Subscription`], and their types into `Node` ([`node`]); this
//! module only assembles them and sets the limits every operation runs under. It sits above the
//! features; the pieces they share sit below them, in `crate::graphql`. The HTTP side (handlers,
//! pipeline, GraphiQL) is in `http`.

use async_graphql::{
    MergedObject, MergedSubscription, Object, Request, Response, Schema, SchemaBuilder,
    ServerError, Variables, futures_util::stream::BoxStream, parser::types::ExecutableDocument,
};

pub mod introspection;
pub mod node;

use crate::{
    auth::{self, Authentication},
    onboarding::graphql::{OnboardingMutation, OnboardingQuery, OnboardingSubscription},
    releases::graphql::{
        ReleasesMutation, ReleasesQuery, ReleasesSubscription,
        compiled::{TreePlan, Unanswered},
    },
};

/// The schema served at `/graphql`, as every entrance (HTTP, REST, sockets) runs it: each
/// document is checked first, before anything executes, by
/// - the caller check (`auth::graphql::require_caller`): a document selecting any root field
///   that reads or writes data needs an authenticated caller, whatever a gate bug lets through;
/// - the introspection budget (`introspection::within_budget`).
///
/// Both run here, once per document, and not as schema extensions: any extension makes
/// async-graphql wrap every resolved field in the extension chain (a type lookup and two boxed
/// futures per field), which cost about a tenth of a 1,211-node tree read.
pub struct AppSchema(Schema<Query, Mutation, Subscription>);

impl AppSchema {
    /// The schema `builder` makes, behind the checks.
    pub fn new(builder: SchemaBuilder<Query, Mutation, Subscription>) -> Self {
        Self(builder.finish())
    }

    /// Checks the document of `request` (parsed once, here; the executor reuses the parse).
    fn admit(request: &mut Request) -> Result<(), ServerError> {
        let authentication = request
            .data
            .get(&std::any::TypeId::of::<Authentication>())
            .and_then(|data| data.downcast_ref::<Authentication>())
            .cloned()
            .unwrap_or(Authentication::Anonymous);
        Self::with_document(request, |document, _, variables| {
            auth::graphql::require_caller(document, &authentication)?;
            introspection::within_budget(document, variables)
        })?
    }

    /// Runs `check` on the request's parsed document (parsed once) with its operation name and
    /// variables, which are moved out meanwhile rather than copied: the document borrows the
    /// request, and variables can be large.
    fn with_document<T>(
        request: &mut Request,
        check: impl FnOnce(&ExecutableDocument, Option<&str>, &Variables) -> T,
    ) -> Result<T, ServerError> {
        let variables = std::mem::take(&mut request.variables);
        let operation = request.operation_name.take();
        let checked = request
            .parsed_query()
            .map(|document| check(document, operation.as_deref(), &variables));
        request.variables = variables;
        request.operation_name = operation;
        checked
    }

    /// Executes a query or mutation whose document passes the checks.
    pub async fn execute(&self, mut request: Request) -> Response {
        match Self::admit(&mut request) {
            Ok(()) => self.0.execute(request).await,
            Err(error) => Response::from_errors(vec![error]),
        }
    }

    /// Answers a plain release-tree read as bytes, written straight from the tree
    /// (`releases::graphql::compiled`), after the same checks as [`Self::execute`].
    /// `Unanswered::Executor` leaves `request` to [`Self::execute`]: a document that fails the
    /// checks, does not compile, or cannot be answered there exactly as the executor would.
    pub async fn answer_compiled(
        &self,
        request: &mut Request,
        max_bytes: usize,
    ) -> Result<Vec<u8>, Unanswered> {
        // Compiled first: most documents are not tree reads, and those go to the executor
        // with their checks still to run once, there.
        let plan = Self::with_document(request, TreePlan::compile)
            .ok()
            .flatten()
            .filter(|plan| plan.complexity() <= MAX_COMPLEXITY)
            .ok_or(Unanswered::Executor)?;
        Self::admit(request).map_err(|_| Unanswered::Executor)?;
        plan.answer(&mut request.data, max_bytes).await
    }

    /// Executes a subscription (or any operation, as a stream) whose document passes the
    /// checks; a refused one is a stream of its one error.
    pub fn execute_stream(&self, mut request: Request) -> BoxStream<'static, Response> {
        use async_graphql::futures_util::StreamExt as _;
        match Self::admit(&mut request) {
            Ok(()) => self.0.execute_stream(request).boxed(),
            Err(error) => async_graphql::futures_util::stream::once(std::future::ready(
                Response::from_errors(vec![error]),
            ))
            .boxed(),
        }
    }
}

/// Deepest selection nesting accepted (the release tree is 6 levels; fragments add a few).
pub const MAX_DEPTH: usize = 16;
/// Largest complexity accepted. Connections and lists multiply (see [`connection`]): the whole
/// 10×10×10 release tree with every field costs about 11,400, so one passes and two do not.
pub const MAX_COMPLEXITY: usize = 15_000;

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
pub struct Mutation(
    auth::graphql::AuthMutation,
    OnboardingMutation,
    ReleasesMutation,
);

/// The root subscription (graphql-transport-ws on `/graphql/ws`): every domain's merged.
#[derive(MergedSubscription, Default)]
pub struct Subscription(ReleasesSubscription, OnboardingSubscription);

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

/// The schema with its limits; the caller adds the services resolvers use as data, and serves
/// it as an [`AppSchema`], which adds the document checks.
pub fn schema_builder() -> SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .limit_depth(MAX_DEPTH)
    .limit_complexity(MAX_COMPLEXITY)
}

/// The schema in SDL, as `temporal-bff schema` prints it and `schema.graphql` holds it.
pub fn sdl() -> String {
    schema_builder().finish().sdl()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY_FIELD: &str = "id key name status startedAt completedAt message \
        progress { total succeeded failed inProgress pending percent }";

    fn whole_tree(alias: &str) -> String {
        format!(
            "{alias}: release(id: \"release:r\") {{ {EVERY_FIELD} source asOf waves {{ {EVERY_FIELD} position \
             clusters {{ {EVERY_FIELD} region bundle {{ {EVERY_FIELD} version \
             apps {{ id key name version status message startedAt completedAt }} }} }} }} }}"
        )
    }

    async fn too_complex(query: &str) -> bool {
        // A caller, so the limits are what stops the document (not the missing token).
        let caller = auth::Authentication::Authenticated(auth::Principal {
            user_id: "u".into(),
            email: "u@example.com".into(),
            org_id: None,
            role: None,
            permissions: Default::default(),
        });
        let request = async_graphql::Request::new(query).data(caller);
        let response = schema_builder().finish().execute(request).await;
        response
            .errors
            .iter()
            .any(|e| e.message.contains("too complex"))
    }

    #[tokio::test]
    async fn one_whole_ten_by_ten_by_ten_tree_is_allowed_and_two_are_too_complex() {
        let one = format!("{{ {} }}", whole_tree("a"));
        let two = format!("{{ {} {} }}", whole_tree("a"), whole_tree("b"));

        assert!(!too_complex(&one).await, "one tree must pass");
        assert!(too_complex(&two).await, "two trees must not");
    }

    /// Whether the schema, limited to `limit`, refuses `query` as too complex.
    async fn too_complex_under(query: &str, limit: usize) -> bool {
        let request = async_graphql::Request::new(query);
        let response = schema_builder()
            .limit_complexity(limit)
            .finish()
            .execute(request)
            .await;
        response
            .errors
            .iter()
            .any(|e| e.message.contains("too complex"))
    }

    #[tokio::test]
    async fn a_compiled_tree_plan_counts_the_complexity_the_validation_counts() {
        let every = "__typename id key name status startedAt completedAt message";
        let progress = "progress { __typename total succeeded failed inProgress pending percent }";
        for query in [
            whole_tree("r"),
            format!(
                "r: release(id: \"release:r\") {{ {every} {progress} source asOf waves {{ {every} \
                 {progress} duration position clusters {{ {every} {progress} duration region \
                 bundle {{ {every} {progress} duration version apps {{ {every} duration version }} }} \
                 apps {{ id }} }} }} }}"
            ),
            "release(id: \"release:r\") { waves { id } }".to_owned(),
            "release(id: \"release:r\") { id tree(status: [FAILED]) { key clusters { key \
             bundle { key } apps { key status } } } waves { id } }"
                .to_owned(),
        ] {
            let query = format!("{{ {query} }}");
            let document = async_graphql::parser::parse_query(&query).expect("it parses");
            let plan =
                TreePlan::compile(&document, None, &Default::default()).expect("it compiles");
            let counted = plan.complexity();

            assert!(
                !too_complex_under(&query, counted).await,
                "{query} under {counted}"
            );
            assert!(
                too_complex_under(&query, counted - 1).await,
                "{query} under {counted} - 1"
            );
        }
    }

    #[tokio::test]
    async fn a_page_of_a_hundred_trees_is_too_complex() {
        let query = "{ releases(first: 100) { edges { node { waves { clusters { bundle { apps { id } } } } } } } }";

        assert!(too_complex(query).await);
    }
}
