//! Building and running the server: the state every handler shares and the background tasks
//! beside it (owned by one [`Background`]), the router, binding, and a graceful, bounded
//! shutdown.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::Router;
use tokio::net::TcpListener;

use crate::{
    App, AppState, Config, auth,
    background::{Background, Tasks},
    db, http, metrics, onboarding, outbox, releases, schema, temporal,
};

/// Bytes of encoded introspection answers kept per process (GraphiQL's is about 100 KB).
const INTROSPECTION_ANSWER_BYTES: usize = 2 * 1024 * 1024;
/// Bytes of persisted-query documents kept per process.
const PERSISTED_QUERY_BYTES: usize = 4 * 1024 * 1024;

/// GraphQL operations executing at once, per core (see `http::graphql`).
const EXECUTION_SLOTS_PER_CORE: usize = 2;

/// Cores this process may use.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// How often expired login-throttle rows are deleted.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(60);

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
    /// The HTTP client for the token issuers' keys (`AUTH_ISSUERS`) cannot be built.
    #[error("cannot build the client for the token issuers' keys: {0}")]
    Keys(#[source] reqwest::Error),
    /// The server failed while running.
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
}

/// Connects to the backing services and builds the state every handler shares, with the
/// background tasks that serve it (running from now on; stop them with
/// [`Background::shutdown`]).
///
/// Postgres is connected eagerly (an unreachable database stops start-up); Temporal is connected
/// in the background so the service starts, and reports not-ready, while Temporal is down.
pub async fn build_state(config: Config) -> Result<(AppState, Background), StartupError> {
    let db = db::connect(&config.db)
        .await
        .map_err(StartupError::Database)?;
    let mut background = Background::new();
    let temporal = temporal::TemporalHandle::new(&config);
    background.spawn_until_stopped("temporal.connect", {
        let temporal = temporal.clone();
        move || temporal.clone().connect_until_up()
    });
    let tokens = auth::token::TokenService::new(&config);
    let metrics = Arc::new(metrics::Metrics::default());
    metrics.register(Box::new(background.restarts()));
    let hasher = auth::password::Hasher::new();
    metrics.register(Box::new(hasher.queue_depth()));
    metrics.register(Box::new(temporal.calls()));
    metrics.register(Box::new(temporal.circuit_gauge()));
    let login = auth::LoginService::new(
        db.clone(),
        hasher,
        tokens.clone(),
        auth::throttle::ThrottlePolicy {
            max_failures: config.auth.login_max_failures,
            max_failures_per_email: config.auth.login_max_failures_per_email,
            max_failures_per_address: config.auth.login_max_failures_per_address,
            window: Duration::from_secs(15 * 60),
            lockout: config.auth.login_lockout,
            max_lockout: Duration::from_secs(3600),
        },
        Arc::clone(&metrics),
    )
    .enabled(config.auth.local_login);
    let external = Arc::new(
        auth::external::ExternalIssuers::new(&config.auth.issuers, Arc::clone(&metrics))
            .map_err(StartupError::Keys)?,
    );
    if external.fetches_keys() {
        background.spawn_until_stopped("auth.jwks", {
            let external = Arc::clone(&external);
            move || Arc::clone(&external).refresh()
        });
    }
    let authenticator = Arc::new(auth::Authenticator::new(
        tokens,
        external,
        db.clone(),
        config.auth.user_cache_ttl,
    ));
    let live = Arc::new(releases::live::LiveHierarchy::new(
        temporal.clone(),
        config.temporal.query_timeout,
        config.hierarchy_cache_ttl,
    ));
    let release_cache = Arc::new(releases::cache::TreeCache::new(config.release_cache_bytes));
    let closes = releases::closed::Closes::new(db.clone(), temporal.clone(), Arc::clone(&metrics));
    let bootstrap_closes = onboarding::closed::BootstrapCloses::new(
        db.clone(),
        temporal.clone(),
        Arc::clone(&metrics),
        config.temporal.bootstrap_workflow_type.clone(),
    );
    background.spawn_until_stopped("reconciler", {
        let (closes, bootstrap_closes) = (Arc::clone(&closes), Arc::clone(&bootstrap_closes));
        let every = config.reconcile_interval;
        move || reconcile(Arc::clone(&closes), Arc::clone(&bootstrap_closes), every)
    });
    let release_hub = releases::hub::ReleaseHub::new(
        db.clone(),
        Arc::clone(&live),
        Arc::clone(&closes),
        Arc::clone(&metrics),
        config.hierarchy_cache_ttl,
        config.release_part_above_nodes,
    );
    let organization_watch = Arc::new(onboarding::watch::OrganizationWatch::new(
        config.hierarchy_cache_ttl,
    ));
    background.spawn_until_stopped("release_hub.lists", {
        let hub = Arc::clone(&release_hub);
        move || Arc::clone(&hub).feed_lists()
    });
    // The replica's one LISTEN connection, for the cache and every subscription.
    let sinks: Vec<Arc<dyn db::changes::ChangeSink>> = vec![
        Arc::clone(&release_cache) as Arc<dyn db::changes::ChangeSink>,
        Arc::clone(&release_hub) as Arc<dyn db::changes::ChangeSink>,
        Arc::clone(&organization_watch) as Arc<dyn db::changes::ChangeSink>,
    ];
    let listen = db::listen_pool(&config.db).map_err(StartupError::Database)?;
    let deaf = metrics.listener_deaf.clone();
    background.spawn("db.changes", {
        let (db, poll) = (db.clone(), config.hierarchy_cache_ttl);
        move |stop| {
            let feed = db::changes::Feed {
                listen: listen.clone(),
                notify: db.clone(),
                poll,
                deaf: deaf.clone(),
            };
            db::changes::run(feed, sinks.clone(), stop)
        }
    });
    let config = Arc::new(config);
    let queue = outbox::Outbox::new(db.clone());
    let starter = onboarding::start::BootstrapStarter::new(
        db.clone(),
        temporal.clone(),
        Arc::clone(&config),
        queue.clone(),
    );
    let control = releases::control::ReleaseControl::new(
        db.clone(),
        temporal.clone(),
        Arc::clone(&metrics),
        queue.clone(),
    );
    // Starts queued bootstraps and delivers queued release controls when Temporal is
    // reachable.
    let dispatcher = outbox::dispatcher::Dispatcher::new(
        queue,
        outbox::Deliverers {
            starts: Arc::new(starter.clone()),
            controls: Arc::clone(&control) as Arc<dyn outbox::Deliver>,
        },
        config.dispatch_max_backoff,
        Arc::clone(&metrics),
    );
    background.spawn("outbox.dispatcher", move |stop| {
        Arc::clone(&dispatcher).run(stop)
    });
    background.spawn_until_stopped("login_throttle.housekeeping", {
        let db = db.clone();
        move || housekeeping(db.clone())
    });
    // Read before the first request, so no request waits for it.
    schema::introspection::schema_shape();
    let schema = schema::AppSchema::new(
        schema::schema_builder()
            .data(login)
            .data(db.clone())
            .data(starter.clone())
            .data(Arc::clone(&release_hub))
            .data(bootstrap_closes)
            .data(control)
            .data(organization_watch)
            .data(Arc::clone(&metrics)),
    );
    let in_flight = Arc::new(tokio::sync::Semaphore::new(config.max_in_flight));
    let graphiql = http::graphiql::Page::new(
        config
            .graphiql_example_login
            .as_ref()
            .map(|(email, password)| (email.as_str(), password.as_str())),
    );
    // Kept answers are copies of closed releases in another shape: half the releases' budget
    // again, and none with RELEASE_CACHE_BYTES=0.
    let answers = http::conditional::Answers::new(config.release_cache_bytes / 2);
    let state = AppState(Arc::new(App {
        graphiql,
        config,
        starter,
        db,
        temporal,
        metrics,
        live,
        release_cache,
        closes,
        release_hub,
        sockets: http::ws::Sockets::default(),
        authenticator,
        schema,
        persisted: http::persisted::PersistedQueries::new(PERSISTED_QUERY_BYTES),
        answers,
        execution_slots: http::admission::Slots::new(EXECUTION_SLOTS_PER_CORE * cores()),
        introspection_answers: crate::lru::Lru::new(INTROSPECTION_ANSWER_BYTES),
        in_flight,
    }));
    Ok((state, background))
}

/// Checks open releases and bootstraps against Temporal every `every`, recording the workflows
/// that closed without writing their end.
async fn reconcile(
    releases: Arc<releases::closed::Closes>,
    bootstraps: Arc<onboarding::closed::BootstrapCloses>,
    every: Duration,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        for (kind, pass) in [
            ("release", releases.reconcile().await),
            ("bootstrap", bootstraps.reconcile().await),
        ] {
            match pass {
                Ok(0) => {}
                Ok(closed) => tracing::info!(
                    closed,
                    reconcile.kind = kind,
                    "workflows closed without their end recorded"
                ),
                Err(error) => {
                    tracing::info!(%error, reconcile.kind = kind, "reconciler pass skipped")
                }
            }
        }
    }
}

/// Deletes expired login-throttle rows now and then.
async fn housekeeping(db: sqlx::PgPool) {
    let mut every = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    loop {
        every.tick().await;
        match auth::store::purge_expired_throttle(&db).await {
            Ok(0) => {}
            Ok(purged) => tracing::debug!(purged, "expired login throttle rows deleted"),
            Err(error) => tracing::warn!(%error, "cannot delete expired login throttle rows"),
        }
    }
}

/// The two HTTP applications of one process.
pub struct Routers {
    /// The public API: GraphQL, REST, GraphiQL, `/health` and a minimal `/ready`.
    pub api: Router,
    /// The operations listener (`METRICS_ADDR`): `/metrics` and the detailed `/ready`, for
    /// the cluster's inside only.
    pub ops: Router,
    /// The tasks beside the requests, stopped by [`run_server`] after the last request.
    pub background: Background,
}

impl Routers {
    /// The running background tasks (to check on them, or kill one in a test).
    pub fn tasks(&self) -> Tasks {
        self.background.tasks()
    }
}

/// Builds the whole HTTP application for `config`: what `serve` runs and what tests call.
pub async fn build_app(config: Config) -> Result<Routers, StartupError> {
    let (state, background) = build_state(config).await?;
    Ok(Routers {
        api: http::router(state.clone()),
        ops: http::ops_router(state),
        background,
    })
}

/// How long shutdown waits for WebSockets to say goodbye (`1001`) after the last request.
const SOCKET_GOODBYE: Duration = Duration::from_secs(2);
/// How long shutdown waits for the background tasks to stop by themselves.
const BACKGROUND_STOP: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `shutdown` resolves, then finishes in-flight requests,
/// closes every WebSocket with `1001` and stops the background tasks (the dispatcher gives its
/// claimed rows back, the change listener stops listening), each within a bound. Handlers see
/// the peer address (for login throttling).
///
/// `ops`, when given, serves [`Routers::ops`] until the API server has stopped.
pub async fn run_server(
    listener: TcpListener,
    ops: Option<TcpListener>,
    routers: Routers,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartupError> {
    let ops = ops.map(|ops| {
        let router = routers.ops;
        tokio::spawn(async move {
            if let Err(error) = axum::serve(ops, router).await {
                tracing::error!(%error, "the operations listener failed");
            }
        })
    });
    let (closing, sockets_see) = tokio::sync::watch::channel(false);
    let app = routers
        .api
        .layer(axum::Extension(http::ws::Closing(sockets_see)));
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown({
        let closing = closing.clone();
        async move {
            shutdown.await;
            closing.send_replace(true);
        }
    })
    .await
    .map_err(StartupError::Serve);
    // Upgraded sockets outlive the server's connections: give them a moment to close.
    let _ = tokio::time::timeout(SOCKET_GOODBYE, closing.closed()).await;
    routers.background.shutdown(BACKGROUND_STOP).await;
    if let Some(ops) = ops {
        ops.abort();
    }
    served
}

/// The app for `config` with its two listeners bound (`HOST:PORT` and `METRICS_ADDR`), ready
/// for [`run_server`].
pub struct Bound {
    /// `HOST:PORT`.
    pub api: TcpListener,
    /// `METRICS_ADDR`.
    pub ops: TcpListener,
    /// What they serve.
    pub routers: Routers,
}

/// Builds the app for `config` and binds `HOST:PORT` and `METRICS_ADDR`.
pub async fn bind(config: Config) -> Result<Bound, StartupError> {
    let addr = SocketAddr::new(config.host, config.port);
    let ops_addr = config.metrics_addr;
    let routers = build_app(config).await?;
    let listen = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind {
                addr: addr.to_string(),
                source,
            })
    };
    let api = listen(addr).await?;
    let ops = listen(ops_addr).await?;
    tracing::info!(http.addr = %addr, metrics.addr = %ops_addr, "listening; GraphiQL at http://{addr}/graphql");
    Ok(Bound { api, ops, routers })
}

/// The `serve` command: binds `HOST:PORT` and `METRICS_ADDR` and runs until SIGTERM or SIGINT.
pub async fn serve(config: Config) -> Result<(), StartupError> {
    let bound = bind(config).await?;
    run_server(bound.api, Some(bound.ops), bound.routers, shutdown_signal()).await
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
///
/// The handlers are installed when this is called, not when the future is first polled: a
/// signal that arrives between the two (a Ctrl-C right after `dev` prints its banner, a
/// SIGTERM from Kubernetes during start-up) would otherwise meet the default action and kill
/// the process without its orderly stop. Must be called inside the Tokio runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let listen = |kind: SignalKind, name: &'static str| {
        signal(kind)
            .inspect_err(
                |error| tracing::error!(%error, signal = name, "cannot listen for a signal"),
            )
            .ok()
    };
    let interrupt = listen(SignalKind::interrupt(), "SIGINT");
    let terminate = listen(SignalKind::terminate(), "SIGTERM");
    async move {
        let heard = |signal: Option<tokio::signal::unix::Signal>| async move {
            match signal {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = heard(interrupt) => {},
            () = heard(terminate) => {},
        }
        tracing::info!("shutdown requested; finishing in-flight requests");
    }
}
