//! temporal-bff: a GraphQL backend-for-frontend that shows release rollouts and organization
//! onboarding, reading Temporal workflows and Postgres projections.
//!
//! The binary (`src/main.rs`) only parses the command line; everything it runs lives here so
//! the integration tests exercise exactly what production runs:
//! [`build_app`] assembles the HTTP router, [`serve`] binds it and shuts down gracefully.

pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod demo;
pub mod devstack;
pub mod error;
pub mod events;
pub mod graphql;
pub mod http;
pub mod metrics;
pub mod onboarding;
pub mod releases;
pub mod telemetry;
pub mod temporal;
pub mod types;

use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

pub use config::Config;

/// Everything a request handler may need, cheap to clone.
#[derive(Clone)]
pub struct AppState {
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
    /// Starts organization bootstraps (GraphQL and REST).
    pub starter: onboarding::start::BootstrapStarter,
    /// Verifies bearer tokens.
    pub tokens: auth::token::TokenService,
    /// The GraphQL schema.
    pub schema: graphql::AppSchema,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Postgres could not be reached or used at start-up.
    #[error("cannot connect to Postgres: {0}")]
    Database(#[source] sqlx::Error),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address that was tried.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
}

/// Connects to the backing services and builds the state every handler shares.
///
/// Postgres is connected eagerly (an unreachable database stops start-up); Temporal is connected
/// in the background so the service starts, and reports not-ready, while Temporal is down.
pub async fn build_state(config: Config) -> Result<AppState, StartupError> {
    let db = db::connect(&config).await.map_err(StartupError::Database)?;
    let temporal = temporal::TemporalHandle::spawn(&config);
    let tokens = auth::token::TokenService::new(&config);
    let login = auth::LoginService::new(
        db.clone(),
        auth::password::Hasher::new(),
        tokens.clone(),
        auth::throttle::ThrottlePolicy {
            max_failures: config.login_max_failures,
            window: std::time::Duration::from_secs(15 * 60),
            lockout: config.login_lockout,
        },
    );
    let live = Arc::new(releases::live::LiveHierarchy::new(
        temporal.clone(),
        config.temporal_query_timeout,
        config.hierarchy_cache_ttl,
    ));
    let config = Arc::new(config);
    let wake = Arc::new(tokio::sync::Notify::new());
    let starter = onboarding::start::BootstrapStarter::new(
        db.clone(),
        temporal.clone(),
        Arc::clone(&config),
        Arc::clone(&wake),
    );
    // Starts queued bootstraps when Temporal is reachable; runs as long as the process.
    onboarding::dispatcher::spawn(starter.clone(), wake, config.dispatch_max_backoff);
    let schema = graphql::schema_builder()
        .data(login)
        .data(db.clone())
        .data(starter.clone())
        .finish();
    Ok(AppState {
        config,
        starter,
        db,
        temporal,
        metrics: Arc::default(),
        live,
        tokens,
        schema,
    })
}

/// Builds the whole HTTP application for `config`: what `serve` runs and what tests call.
pub async fn build_app(config: Config) -> Result<Router, StartupError> {
    Ok(http::router(build_state(config).await?))
}

/// Serves `app` on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn run_server(
    listener: TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartupError> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(StartupError::Serve)
}

/// Builds the app for `config` and binds `HOST:PORT`, ready for [`run_server`].
pub async fn bind(config: Config) -> Result<(TcpListener, Router), StartupError> {
    let addr = std::net::SocketAddr::new(config.host, config.port);
    let app = build_app(config).await?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    tracing::info!(http.addr = %addr, "listening; GraphiQL at http://{addr}/graphql");
    Ok((listener, app))
}

/// The `serve` command: binds `HOST:PORT` and runs until SIGTERM or SIGINT.
pub async fn serve(config: Config) -> Result<(), StartupError> {
    let (listener, app) = bind(config).await?;
    run_server(listener, app, shutdown_signal()).await
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
