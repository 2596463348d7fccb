//! temporal-bff: a GraphQL backend-for-frontend that shows release rollouts and organization
//! onboarding, reading Temporal workflows and Postgres projections.
//!
//! The binary (`src/main.rs`) only parses the command line; everything it runs lives here so
//! the integration tests exercise exactly what production runs: [`build_app`] assembles the
//! HTTP router, [`serve`] binds it and shuts down gracefully (both in [`server`]).

pub mod auth;
pub mod background;
pub mod cli;
pub mod config;
pub mod contracts;
pub mod db;
#[cfg(feature = "dev")]
pub mod devstack;
pub mod error;
pub mod events;
pub mod graphql;
pub mod http;
pub mod lru;
pub mod metrics;
pub mod onboarding;
pub mod outbox;
pub mod releases;
pub mod schema;
pub mod server;
pub mod telemetry;
pub mod temporal;
pub mod types;
#[cfg(feature = "worker")]
pub mod worker;

use std::{ops::Deref, sync::Arc};

pub use config::Config;
pub use server::{
    Bound, Routers, StartupError, bind, build_app, build_state, run_server, serve, shutdown_signal,
};

/// Everything a request handler may need, built once at start-up.
pub struct App {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The Postgres pool (connected eagerly at start-up).
    pub db: sqlx::PgPool,
    /// The Temporal client, which may be (re)connecting in the background.
    pub temporal: temporal::TemporalHandle,
    /// Process-wide counters (`/metrics`).
    pub metrics: Arc<metrics::Metrics>,
    /// Live release trees, shared across requests.
    pub live: Arc<releases::live::LiveHierarchy>,
    /// Closed releases kept in memory, dropped when the database says they changed.
    pub release_cache: Arc<releases::cache::TreeCache>,
    /// Finds and records release workflows that closed without writing their end.
    pub closes: Arc<releases::closed::Closes>,
    /// Releases followed by subscriptions, read once per change and shared.
    pub release_hub: Arc<releases::hub::ReleaseHub>,
    /// WebSockets open per user.
    pub sockets: http::ws::Sockets,
    /// Starts organization bootstraps (GraphQL and REST).
    pub starter: onboarding::start::BootstrapStarter,
    /// Verifies bearer tokens and the users behind them.
    pub authenticator: Arc<auth::Authenticator>,
    /// The GraphQL schema.
    pub schema: schema::AppSchema,
    /// Automatic persisted queries' documents, by hash.
    pub persisted: http::persisted::PersistedQueries,
    /// `GET` answers that can be told unchanged without running them.
    pub answers: http::conditional::Answers,
    /// The GraphiQL page (`GET /graphql`).
    pub graphiql: http::graphiql::Page,
    /// GraphQL executions running at once (two per core, half of them per caller); the rest
    /// wait their turn.
    pub execution_slots: http::admission::Slots,
    /// Requests in flight on the API routes (`MAX_IN_FLIGHT`); past it, `429`.
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// Answers to introspection-only documents, encoded, by document (the schema never
    /// changes while the process runs).
    pub introspection_answers: lru::Lru<axum::body::Bytes>,
}

/// The state every handler shares: one `Arc` clone per request.
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}
