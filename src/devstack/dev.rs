//! `temporal-bff dev`: the embedded default. Starts what is missing (Postgres, Temporal) in
//! `.dev/`, migrates, and serves, stopping its children on Ctrl-C.

use std::{collections::HashMap, path::PathBuf};

use sqlx::{Connection, PgConnection};

use super::{DevStackError, LocalPostgres, LocalTemporal, free_port};
use crate::{Config, config::ConfigError, telemetry};

/// Name of the database `dev` creates in its local cluster.
const DEV_DATABASE: &str = "temporal_bff";

/// Why `dev` stopped.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// A local service could not be started.
    #[error(transparent)]
    Stack(#[from] DevStackError),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Database set-up failed.
    #[error("database set-up failed: {0}")]
    Database(String),
    /// The server failed.
    #[error(transparent)]
    Startup(#[from] crate::StartupError),
}

/// Children started by `dev`, stopped when it ends (also on error).
#[derive(Default)]
struct Children {
    postgres: Option<LocalPostgres>,
    temporal: Option<LocalTemporal>,
}

impl Drop for Children {
    fn drop(&mut self) {
        if let Some(temporal) = self.temporal.as_mut() {
            temporal.stop();
            tracing::info!("Temporal stopped");
        }
        if let Some(postgres) = self.postgres.as_mut() {
            postgres.stop();
            tracing::info!("Postgres stopped");
        }
    }
}

/// Runs the embedded default until Ctrl-C / SIGTERM; `large` also seeds the releases of
/// `demo --large`.
pub async fn run(large: bool) -> Result<(), DevError> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    telemetry::init(
        &env("LOG_LEVEL").unwrap_or_else(|| "info".into()),
        crate::config::LogFormat::Pretty,
    );
    let dev_dir = PathBuf::from(env("DEV_DIR").unwrap_or_else(|| ".dev".into()));
    std::fs::create_dir_all(&dev_dir)
        .map_err(|e| DevStackError::Io(format!("creating {}", dev_dir.display()), e))?;
    let dev_dir = std::fs::canonicalize(&dev_dir)
        .map_err(|e| DevStackError::Io(format!("resolving {}", dev_dir.display()), e))?;

    let mut overrides: HashMap<&str, String> = HashMap::new();
    let mut children = Children::default();

    if env("DATABASE_URL").is_none() {
        let dir = dev_dir.join("postgres");
        tracing::info!(dir = %dir.display(), "starting a local Postgres");
        let postgres =
            tokio::task::spawn_blocking(move || LocalPostgres::start(&dir, free_port()?))
                .await
                .map_err(|e| DevError::Database(e.to_string()))??;
        let url = postgres.url(DEV_DATABASE);
        create_database_if_missing(&postgres.url("postgres"), DEV_DATABASE).await?;
        children.postgres = Some(postgres);
        overrides.insert("DATABASE_URL", url);
    }
    if env("TEMPORAL_ADDRESS").is_none() {
        let dir = dev_dir.join("temporal");
        tracing::info!(dir = %dir.display(), "starting a local Temporal dev server");
        let temporal = tokio::task::spawn_blocking(move || {
            LocalTemporal::start_with_ui(&dir, free_port()?, free_port()?)
        })
        .await
        .map_err(|e| DevError::Database(e.to_string()))??;
        overrides.insert("TEMPORAL_ADDRESS", temporal.address());
        children.temporal = Some(temporal);
    }
    if env("JWT_SECRET").is_none() {
        overrides.insert("JWT_SECRET", dev_jwt_secret(&dev_dir)?);
    }
    if env("LOG_FORMAT").is_none() {
        overrides.insert("LOG_FORMAT", "pretty".into());
    }
    // Only here may anyone read the schema without a token: GraphiQL works before a login.
    if env("INTROSPECTION").is_none() {
        overrides.insert("INTROSPECTION", "true".into());
    }

    let mut config =
        Config::from_lookup(|name| overrides.get(name).cloned().or_else(|| env(name)))?;
    // GraphiQL's example logs in as the demo admin the seeding below creates.
    config.graphiql_example_login = Some((
        crate::worker::demo::DEMO_ADMIN_EMAIL.to_owned(),
        crate::worker::demo::DEMO_ADMIN_PASSWORD.to_owned(),
    ));
    let pool = crate::db::connect(&config.db)
        .await
        .map_err(|e| DevError::Database(e.to_string()))?;
    crate::db::migrate(&pool, &config.db.names)
        .await
        .map_err(|e| DevError::Database(e.to_string()))?;

    let host = if config.host.is_unspecified() {
        "localhost".to_owned()
    } else {
        config.host.to_string()
    };
    let port = config.port;
    // `host:port`, as TEMPORAL_ADDRESS and the temporal CLI take it (not a URL with a path).
    let temporal = format!(
        "{}:{}",
        config.temporal.address.host_str().unwrap_or("127.0.0.1"),
        config
            .temporal
            .address
            .port_or_known_default()
            .unwrap_or(7233)
    );
    // The reference worker runs in this process too, on a thread of its own.
    let worker_config = crate::worker::WorkerConfig::from_env()?;
    let worker = crate::worker::spawn(config.clone(), worker_config);
    crate::worker::demo::seed(&config, &pool)
        .await
        .map_err(|e| DevError::Database(format!("seeding demo data: {e}")))?;
    if large {
        crate::worker::demo::seed_large(&config, &pool)
            .await
            .map_err(|e| DevError::Database(format!("seeding the large demo data: {e}")))?;
    }
    let bound = crate::bind(config).await?;
    let temporal_ui = children
        .temporal
        .as_ref()
        .and_then(|t| t.ui_port)
        .map_or_else(
            || "(Temporal was given; its UI is wherever it runs)".to_owned(),
            |ui| format!("http://127.0.0.1:{ui}"),
        );
    // Listening before the banner says "Stop with Ctrl-C", so a Ctrl-C right after it is heard.
    let stop = crate::shutdown_signal();
    // The banner goes out in one write, between blank lines, so no log line cuts into it.
    let banner = format!(
        "\n  temporal-bff dev is up\n  GraphiQL:     http://{host}:{port}/graphql\n  Temporal UI:  {temporal_ui}\n  Temporal:     {temporal} (gRPC)\n  Login:        {} / {} (demo data; local use only)\n  Stop with Ctrl-C.\n\n",
        crate::worker::demo::DEMO_ADMIN_EMAIL,
        crate::worker::demo::DEMO_ADMIN_PASSWORD,
    );
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
    }
    let result = crate::run_server(bound.api, Some(bound.ops), bound.routers, stop).await;
    tracing::info!("server stopped");
    // In order: the worker while Temporal still answers it, then Temporal, then Postgres.
    if let Err(error) = tokio::task::spawn_blocking(move || worker.stop()).await {
        tracing::warn!(%error, "worker did not stop cleanly");
    }
    tracing::info!("worker stopped");
    drop(children);
    tracing::info!("dev stopped");
    Ok(result?)
}

/// The dev-only signing key, generated once and kept in `.dev/` (never committed).
fn dev_jwt_secret(dev_dir: &std::path::Path) -> Result<String, DevStackError> {
    let path = dev_dir.join("jwt-secret");
    if let Ok(existing) = std::fs::read_to_string(&path)
        && existing.trim().len() >= crate::config::MIN_JWT_SECRET_BYTES
    {
        return Ok(existing.trim().to_owned());
    }
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    std::fs::write(&path, &secret)
        .map_err(|e| DevStackError::Io(format!("writing {}", path.display()), e))?;
    Ok(secret)
}

/// Creates `name` in the cluster at `admin_url` unless it exists.
pub async fn create_database_if_missing(admin_url: &str, name: &str) -> Result<(), DevError> {
    let mut conn = PgConnection::connect(admin_url)
        .await
        .map_err(|e| DevError::Database(e.to_string()))?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await
            .map_err(|e| DevError::Database(e.to_string()))?;
    if !exists {
        // Identifiers cannot be bound; `name` is one of our own constants.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .map_err(|e| DevError::Database(e.to_string()))?;
    }
    Ok(())
}
