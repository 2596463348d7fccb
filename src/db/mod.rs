//! Postgres: the connection pool and the embedded migrations.

use std::time::Duration;

use sqlx::{PgPool, postgres::PgPoolOptions};

use crate::Config;

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Opens the pool and checks one connection, so an unreachable database fails start-up.
#[tracing::instrument(skip_all)]
pub async fn connect(config: &Config) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(32)
        .min_connections(1)
        // A request waiting longer than this for a connection gets an error instead of hanging.
        .acquire_timeout(Duration::from_secs(3))
        .connect(config.database_url())
        .await
}

/// Applies every pending migration.
#[tracing::instrument(skip_all)]
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Whether `error` is a unique-constraint violation (SQLSTATE 23505), e.g. a duplicate key that
/// should become a client error rather than an internal one.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}
