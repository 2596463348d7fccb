//! Postgres: the connection pool, the embedded migrations and the change feed (`changes`).

pub mod changes;

use std::time::Duration;

use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::Config;

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Opens the pool and checks one connection, so an unreachable database fails start-up.
/// Every statement on it runs under `DB_STATEMENT_TIMEOUT_MS`; it opens at most
/// `DATABASE_MAX_CONNECTIONS`.
#[tracing::instrument(skip_all)]
pub async fn connect(config: &Config) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = config.database_url().parse()?;
    let timeout_ms = config.db.statement_timeout.as_millis().to_string();
    PgPoolOptions::new()
        .max_connections(config.db.max_connections)
        .min_connections(1)
        // A request waiting longer than this for a connection gets an error instead of hanging.
        .acquire_timeout(Duration::from_secs(3))
        .connect_with(options.options([("statement_timeout", timeout_ms.as_str())]))
        .await
}

/// Checks that the database answers (readiness).
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(drop)
}

/// Applies every pending migration, on one connection that hears only warnings and errors:
/// the `NOTICE`s of idempotent DDL ("trigger … does not exist, skipping") are not news.
#[tracing::instrument(skip_all)]
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SET client_min_messages = warning")
        .execute(&mut *conn)
        .await?;
    let migrated = MIGRATOR.run(&mut *conn).await;
    // The connection goes back to the pool as it came.
    sqlx::query("RESET client_min_messages")
        .execute(&mut *conn)
        .await?;
    migrated
}

/// Whether `error` means Postgres cannot be reached or used right now (a restart, a broken
/// connection, a full pool): the request may succeed later, so it is `UNAVAILABLE`, not ours.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // Connection exceptions (class 08), the server shutting down or starting up (57P01,
        // 57P02, 57P03), too many connections (53300).
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// Whether `error` is a unique-constraint violation (SQLSTATE 23505), e.g. a duplicate key that
/// should become a client error rather than an internal one.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}
