//! Postgres: the connection pool, the embedded migrations and the change feed (`changes`).

pub mod changes;
pub mod names;
pub mod page;

pub use names::sql;

use std::{sync::Arc, time::Duration};

use secrecy::ExposeSecret;
use sqlx::{
    AssertSqlSafe, Connection, Executor, PgConnection, PgPool,
    migrate::MigrateError,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::config::{DbConfig, DbNames, Pooler};

/// The migrations in `migrations/`, embedded in the binary. They name the service's own
/// objects unqualified, for the schema the migration session puts alone on its path, and the
/// event store as `public.domain_events`, which [`migrator`] replaces with `EVENTS_TABLE`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// [`MIGRATOR`] for `names`: the event store renamed in every migration (each keeps the
/// checksum of its file, so the history does not depend on the setting), and the history
/// kept in the service's schema (`<schema>._sqlx_migrations`), apart from anyone else's.
pub fn migrator(names: &DbNames) -> sqlx::migrate::Migrator {
    let migrations = MIGRATOR
        .iter()
        .map(|migration| sqlx::migrate::Migration {
            sql: sqlx::SqlSafeStr::into_sql_str(AssertSqlSafe(names::rewrite(
                migration.sql.as_str(),
                names,
            ))),
            ..migration.clone()
        })
        .collect();
    let mut migrator = sqlx::migrate::Migrator::with_migrations(migrations);
    migrator.dangerous_set_table_name(format!("{}._sqlx_migrations", names.schema));
    migrator
}

/// `statement`, a sqlx future that reads rows, run with tracing off.
///
/// sqlx's row streams re-enter the span that was current when they started for every row they
/// yield, twice a row, and each entry asks the subscriber's filter about the span: that was 7 %
/// of the CPU of reading a 1,211-row tree. With no subscriber while the rows stream in, they
/// enter nothing. The caller's span still covers the statement, and
/// `bff_sql_duration_seconds` times it. What is not written is sqlx's own statement log, off at
/// `info`, and its warning for a statement past one second, which that histogram shows too.
pub fn untraced<F: std::future::Future>(statement: F) -> tracing::instrument::WithDispatch<F> {
    tracing::instrument::WithSubscriber::with_subscriber(statement, tracing::Dispatch::none())
}

/// How long a pooled connection may sit idle before it is pinged ahead of use (see [`connect`]).
pub const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Opens the pool and checks one connection, so an unreachable database fails start-up.
/// Every statement on it runs under `DB_STATEMENT_TIMEOUT_MS`, without JIT compilation (every
/// statement here is a short indexed read or write, and one whose estimate passed JIT's
/// threshold spent most of its time compiling: 430 of 540 ms); it opens at most
/// `DATABASE_MAX_CONNECTIONS`.
///
/// Behind a transaction-mode pooler (`DATABASE_POOLER=transaction`) each checkout is one
/// transaction, opened when the connection is handed out and committed when it comes back, so
/// the pooler keeps one server connection for everything the checkout runs (sqlx parses and
/// executes a statement in two round trips). Nothing outlives it: statements are not cached,
/// the server's prepared statements are dropped at both ends (a server connection may carry
/// another client's), and the timeout is `SET LOCAL`.
#[tracing::instrument(skip_all)]
pub async fn connect(config: &DbConfig) -> Result<PgPool, sqlx::Error> {
    names::install(&config.names).map_err(|why| sqlx::Error::Configuration(why.into()))?;
    let options: PgConnectOptions = config.url.expose_secret().parse()?;
    let timeout_ms = config.statement_timeout.as_millis().to_string();
    let pool = PgPoolOptions::new()
        .max_connections(config.max_connections)
        // A request waiting longer than this for a connection gets an error instead of hanging.
        .acquire_timeout(Duration::from_secs(3))
        // sqlx pings every connection it hands out, a round trip before each statement (0.2 of
        // the 3 ms of a 1,211-node tree read, which takes two). Each hook below checks instead,
        // and only what may have gone stale.
        .test_before_acquire(false);
    match config.pooler {
        Pooler::None => {
            pool.min_connections(1)
                // A connection used within the last second is handed out as it is, as pgx's pool
                // does (HikariCP: within 500 ms); one idle for longer is pinged first, so one the
                // database dropped meanwhile (a restart, a terminated backend) is replaced rather
                // than failing a request. sqlx also pings each connection as it comes back.
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for >= PING_IDLE_AFTER {
                            conn.ping().await?;
                        }
                        Ok(true)
                    })
                })
                .connect_with(
                    options.options([("statement_timeout", timeout_ms.as_str()), ("jit", "off")]),
                )
                .await
        }
        Pooler::Transaction => {
            // The timeout is a number the config parsed: nothing from outside reaches this SQL.
            let open: Arc<str> = format!(
                "DEALLOCATE ALL; BEGIN; SET LOCAL statement_timeout = {timeout_ms}; \
                     SET LOCAL jit = off"
            )
            .into();
            let on_connect = Arc::clone(&open);
            pool
                // No connection is opened ahead of use: one opened for nobody would sit idle
                // inside its transaction, holding a server connection of the pooler's.
                .min_connections(0)
                .after_connect(move |conn, _| {
                    let open = Arc::clone(&on_connect);
                    Box::pin(async move { conn.execute(AssertSqlSafe(open)).await.map(drop) })
                })
                // Opening the transaction checks the connection as a ping would.
                .before_acquire(move |conn, _| {
                    let open = Arc::clone(&open);
                    Box::pin(async move { conn.execute(AssertSqlSafe(open)).await.map(|_| true) })
                })
                // `COMMIT` ends an aborted transaction too (as a rollback); one message, so the
                // pooler runs both on the server connection the checkout used.
                .after_release(|conn, _| {
                    Box::pin(
                        async move { conn.execute("COMMIT; DEALLOCATE ALL").await.map(|_| true) },
                    )
                })
                .connect_with(pooler_safe(options))
                .await
        }
    }
}

/// `options` for a transaction-mode pooler: no statement kept prepared, and none of the
/// startup parameters poolers refuse (sqlx sends `extra_float_digits` unless told not to).
fn pooler_safe(options: PgConnectOptions) -> PgConnectOptions {
    options.statement_cache_capacity(0).extra_float_digits(None)
}

/// The change listener's own one-connection pool, on the session URL (`DATABASE_LISTEN_URL`,
/// else `DATABASE_URL`). It connects when the listener first asks, so start-up does not wait.
pub fn listen_pool(config: &DbConfig) -> Result<PgPool, sqlx::Error> {
    let mut options: PgConnectOptions = config.session_url().parse()?;
    if !config.session_is_direct() {
        // Through the transaction pooler: it may well be deaf, but it must connect to say so.
        options = pooler_safe(options);
    }
    Ok(PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(options))
}

/// Checks that the database answers queries the way requests run them (readiness): a
/// parameterised statement through the pool, so a pooler that breaks prepared statements
/// fails it as it fails every query.
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query_scalar::<_, i32>("SELECT $1::int4")
        .bind(1_i32)
        .fetch_one(pool)
        .await
        .map(drop)
}

/// Applies every pending migration over the session URL (`DATABASE_LISTEN_URL`, else
/// `DATABASE_URL`), on one connection that hears only warnings and errors: the `NOTICE`s of
/// idempotent DDL ("trigger … does not exist, skipping") are not news. The migrator holds an
/// advisory lock across statements, so replicas never migrate at once; that needs a session,
/// so a transaction-mode pooler is refused.
#[tracing::instrument(skip_all)]
pub async fn migrate_session(config: &DbConfig) -> Result<(), MigrateError> {
    if !config.session_is_direct() {
        return Err(MigrateError::Source(
            "migrations need a session (an advisory lock, several statements on one \
             connection), which a transaction-mode pooler does not keep: set \
             DATABASE_LISTEN_URL to a direct or session-mode connection"
                .into(),
        ));
    }
    let options: PgConnectOptions = config.session_url().parse()?;
    let mut conn = PgConnection::connect_with(&options).await?;
    migrate_on(&mut conn, &config.names).await?;
    conn.close().await.map_err(MigrateError::from)
}

/// [`migrate_session`] on a connection of a direct pool (`dev`, tests).
pub async fn migrate(pool: &PgPool, names: &DbNames) -> Result<(), MigrateError> {
    let mut conn = pool.acquire().await?;
    let migrated = migrate_on(&mut conn, names).await;
    // The connection goes back to the pool as it came.
    sqlx::raw_sql("RESET client_min_messages; RESET search_path")
        .execute(&mut *conn)
        .await?;
    migrated
}

/// Creates the service's schema (and the event store's, for a database that has none yet),
/// then migrates with only the service's schema on the path: every unqualified name in a
/// migration is the service's own, and nothing resolves to a table of the platform's.
async fn migrate_on(conn: &mut PgConnection, names: &DbNames) -> Result<(), MigrateError> {
    // The names are plain identifiers (the config parsed them): nothing else reaches this SQL.
    let setup = format!(
        "SET client_min_messages = warning; \
         CREATE SCHEMA IF NOT EXISTS {schema}; CREATE SCHEMA IF NOT EXISTS {events}; \
         SET search_path = {schema}, pg_temp",
        schema = names.schema,
        events = names.events.0,
    );
    sqlx::raw_sql(AssertSqlSafe(setup))
        .execute(&mut *conn)
        .await?;
    migrator(names).run(conn).await
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
