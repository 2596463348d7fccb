//! Typed configuration of the service, read once from the environment and validated at
//! start-up. (The reference worker's `SIM_*` knobs are its own: `worker::config`.)
//!
//! Every variable is checked before the process does anything else; all problems are reported
//! together in one message so an operator fixes them in one round. Secrets are wrapped in
//! [`SecretString`] so they never reach a log line or a `Debug` print.

// What crosses a boundary (another team's worker, an operator's environment) is documented.
#![warn(missing_docs)]

use std::{net::IpAddr, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use url::Url;

pub mod env;
pub mod issuers;

use self::env::Reader;

/// Every environment variable [`Config`] reads (the README's configuration tables list them).
pub const VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "BOOTSTRAP_TASK_QUEUE",
    "BOOTSTRAP_WORKFLOW_TYPE",
    "RELEASE_TASK_QUEUE",
    "JWT_SECRET",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "JWT_TTL_SECONDS",
    "AUTH_ISSUERS",
    "LOCAL_LOGIN",
    "HOST",
    "PORT",
    "METRICS_ADDR",
    "CORS_ALLOWED_ORIGINS",
    "BASE_DOMAIN",
    "LOGIN_MAX_FAILURES",
    "LOGIN_MAX_FAILURES_PER_EMAIL",
    "LOGIN_MAX_FAILURES_PER_ADDRESS",
    "LOGIN_LOCKOUT_SECONDS",
    "TRUSTED_PROXIES",
    "AUTH_USER_CACHE_MS",
    "DB_STATEMENT_TIMEOUT_MS",
    "DATABASE_MAX_CONNECTIONS",
    "DATABASE_POOLER",
    "DATABASE_LISTEN_URL",
    "DATABASE_SCHEMA",
    "EVENTS_TABLE",
    "MAX_RESPONSE_BYTES",
    "TEMPORAL_QUERY_TIMEOUT_MS",
    "HIERARCHY_CACHE_MS",
    "RELEASE_CACHE_BYTES",
    "RELEASE_PART_ABOVE_NODES",
    "DISPATCH_MAX_BACKOFF_MS",
    "RECONCILE_INTERVAL_MS",
    "WS_MAX_SUBSCRIPTIONS_PER_CONNECTION",
    "WS_MAX_CONNECTIONS_PER_USER",
    "WS_PING_INTERVAL_MS",
    "MAX_IN_FLIGHT",
    "GRAPHIQL",
    "INTROSPECTION",
    "HSTS",
    "SUPABASE_URL",
    "LOG_LEVEL",
    "LOG_FORMAT",
];

/// Variables of the services this one replaces, each with what to set instead. They are
/// refused, not taken as aliases: a start-up that stops names the fix at the first deploy,
/// where a warning is lost in the log, and `TEMPORAL_TASK_QUEUE` cannot be an alias at all
/// (the old service had one queue; this one starts workflows on two).
pub const RETIRED: &[(&str, &str)] = &[
    ("TEMPORAL_HOST", "set TEMPORAL_ADDRESS (host:port) instead"),
    (
        "API_CORS_ORIGINS",
        "set CORS_ALLOWED_ORIGINS (comma-separated origins) instead",
    ),
    (
        "TEMPORAL_TASK_QUEUE",
        "set RELEASE_TASK_QUEUE (releases) and BOOTSTRAP_TASK_QUEUE (bootstraps) instead",
    ),
];

/// Minimum length of `JWT_SECRET`: HS256 wants a key at least as long as its 256-bit output.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (the default; what log shippers want).
    Json,
    /// Human-friendly, coloured output for a terminal.
    Pretty,
}

/// The service's configuration. Build it with [`Config::from_env`] or [`Config::from_lookup`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Postgres.
    pub db: DbConfig,
    /// Temporal.
    pub temporal: TemporalConfig,
    /// Tokens and logins.
    pub auth: AuthConfig,
    /// Subscriptions over WebSocket.
    pub ws: WsConfig,
    /// Address to bind (`HOST`).
    pub host: IpAddr,
    /// Port to bind (`PORT`).
    pub port: u16,
    /// Where `/metrics` and the detailed `/ready` are served (`METRICS_ADDR`), apart from the
    /// public port; loopback unless the cluster's inside should reach it.
    pub metrics_addr: std::net::SocketAddr,
    /// Origins allowed by CORS (`CORS_ALLOWED_ORIGINS`); empty means same-origin only.
    pub cors_allowed_origins: Vec<String>,
    /// Parent domain of organization subdomains (`BASE_DOMAIN`).
    pub base_domain: String,
    /// Proxies whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`, addresses or CIDRs).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Largest GraphQL response body sent; larger answers are refused (`MAX_RESPONSE_BYTES`).
    pub max_response_bytes: usize,
    /// How long a live tree is reused for (`HIERARCHY_CACHE_MS`).
    pub hierarchy_cache_ttl: Duration,
    /// Bytes of closed releases kept in memory per process (`RELEASE_CACHE_BYTES`; 0: none).
    pub release_cache_bytes: usize,
    /// Releases with more nodes than this are never read whole: each answer reads only the
    /// rows it shows, from the projection (`RELEASE_PART_ABOVE_NODES`, default 10,000; 0 reads
    /// every release that way).
    pub release_part_above_nodes: usize,
    /// Longest wait between attempts to start a queued bootstrap (`DISPATCH_MAX_BACKOFF_MS`).
    pub dispatch_max_backoff: Duration,
    /// How often open releases are checked against Temporal for workflows that closed without
    /// writing their end (`RECONCILE_INTERVAL_MS`).
    pub reconcile_interval: Duration,
    /// Requests in flight per process on `/graphql`, `/graphql/ws` and `/api/*` before more
    /// are answered `429` / `RATE_LIMITED` (`MAX_IN_FLIGHT`).
    pub max_in_flight: usize,
    /// Whether `GET /graphql` serves GraphiQL (`GRAPHIQL`).
    pub graphiql: bool,
    /// Whether every response carries `Strict-Transport-Security` (`HSTS`), for deployments
    /// whose clients reach them over TLS only.
    pub hsts: bool,
    /// Whether callers without a token may introspect the schema (`INTROSPECTION`; `false`
    /// unless `temporal-bff dev` runs it). Signed-in callers always may, within the
    /// introspection budget.
    pub introspection: bool,
    /// Tracing filter directive (`LOG_LEVEL`), e.g. `info` or `temporal_bff=debug,info`.
    pub log_level: String,
    /// Log output format (`LOG_FORMAT`).
    pub log_format: LogFormat,
    /// The login GraphiQL's example document fills in (e-mail, password). No variable sets
    /// it: only `temporal-bff dev` does, with its demo login.
    pub graphiql_example_login: Option<(String, String)>,
}

/// Postgres: where it is, and how the pool uses it.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// Postgres connection string (`DATABASE_URL`).
    pub url: SecretString,
    /// Longest any SQL statement may run (`DB_STATEMENT_TIMEOUT_MS`).
    pub statement_timeout: Duration,
    /// Most connections the Postgres pool opens (`DATABASE_MAX_CONNECTIONS`, default 32): keep
    /// replicas × this under the database's or the pooler's limit.
    pub max_connections: u32,
    /// A direct or session-mode connection for `LISTEN` and migrations
    /// (`DATABASE_LISTEN_URL`); `DATABASE_URL` when unset.
    pub listen_url: Option<SecretString>,
    /// What sits between the pool and Postgres (`DATABASE_POOLER`).
    pub pooler: Pooler,
    /// Where the service's tables are, and the shared event store (`DATABASE_SCHEMA`,
    /// `EVENTS_TABLE`).
    pub names: DbNames,
}

/// Where the service's objects live in a database it may share with the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbNames {
    /// The schema holding everything the service owns: read models, outbox, users, login
    /// throttle, their functions and triggers (`DATABASE_SCHEMA`, default `bff`).
    pub schema: SqlIdent,
    /// The shared event store, schema-qualified (`EVENTS_TABLE`, default
    /// `public.domain_events`).
    pub events: (SqlIdent, SqlIdent),
}

impl Default for DbNames {
    fn default() -> Self {
        Self {
            schema: SqlIdent(DEFAULT_SCHEMA.to_owned()),
            events: (
                SqlIdent("public".to_owned()),
                SqlIdent("domain_events".to_owned()),
            ),
        }
    }
}

impl DbNames {
    /// The event store as SQL names it: `schema.table`.
    pub fn events_table(&self) -> String {
        format!("{}.{}", self.events.0, self.events.1)
    }
}

/// `DATABASE_SCHEMA`'s default.
pub const DEFAULT_SCHEMA: &str = "bff";

/// A Postgres name that needs no quoting: a lowercase letter or `_`, then lowercase letters,
/// digits or `_`, at most 40 bytes, so that names built from it (`<schema>_…` triggers) stay
/// within Postgres' 63. It goes into SQL as it is, so nothing else is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlIdent(String);

impl SqlIdent {
    /// Parses `raw`, saying what is wrong with it.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut chars = raw.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if first_ok && rest_ok && raw.len() <= 40 && !raw.starts_with("pg_") {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!(
                "must be a lowercase SQL name (a-z, 0-9, _; not starting with a digit or pg_; \
                 at most 40 bytes), not {raw:?}"
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SqlIdent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What sits between the pool and Postgres (`DATABASE_POOLER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooler {
    /// `none` (default): a direct connection or a session-mode pooler. Statements are prepared
    /// once per connection and kept.
    None,
    /// `transaction`: a transaction-mode pooler (PgBouncer, Supavisor), which may hand each
    /// transaction to another server connection. Every checkout from the pool is one
    /// transaction, and nothing outlives it: no kept prepared statements, no session settings,
    /// no session advisory locks.
    Transaction,
}

impl DbConfig {
    /// The URL for `LISTEN` and migrations: `DATABASE_LISTEN_URL`, else `DATABASE_URL`.
    pub fn session_url(&self) -> &str {
        self.listen_url
            .as_ref()
            .unwrap_or(&self.url)
            .expose_secret()
    }

    /// Whether the session URL is a direct one, so session state (advisory locks, `SET`)
    /// holds on it: it is unless it is `DATABASE_URL` behind a transaction-mode pooler.
    pub fn session_is_direct(&self) -> bool {
        self.listen_url.is_some() || self.pooler == Pooler::None
    }
}

/// Temporal: where it is, and the names this service starts and reads by.
#[derive(Debug, Clone)]
pub struct TemporalConfig {
    /// Temporal frontend, as a URL the gRPC client accepts (`TEMPORAL_ADDRESS`).
    pub address: Url,
    /// Temporal namespace (`TEMPORAL_NAMESPACE`).
    pub namespace: String,
    /// Task queue of the organization bootstrap workflow (`BOOTSTRAP_TASK_QUEUE`).
    pub bootstrap_task_queue: String,
    /// Workflow type started for a bootstrap (`BOOTSTRAP_WORKFLOW_TYPE`).
    pub bootstrap_workflow_type: String,
    /// Task queue of the release workflow (`RELEASE_TASK_QUEUE`).
    pub release_task_queue: String,
    /// How long a live `getHierarchy` may take before the projection is served
    /// (`TEMPORAL_QUERY_TIMEOUT_MS`).
    pub query_timeout: Duration,
}

/// Tokens and logins.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// HS256 signing key (`JWT_SECRET`).
    pub jwt_secret: SecretString,
    /// `iss` claim issued and required (`JWT_ISSUER`).
    pub jwt_issuer: String,
    /// `aud` claim issued and required (`JWT_AUDIENCE`).
    pub jwt_audience: String,
    /// Lifetime of issued tokens (`JWT_TTL_SECONDS`).
    pub jwt_ttl: Duration,
    /// Failed logins per (client address, e-mail) before that pair is locked
    /// (`LOGIN_MAX_FAILURES`).
    pub login_max_failures: u32,
    /// Failed logins per e-mail, from any address, before the e-mail is locked
    /// (`LOGIN_MAX_FAILURES_PER_EMAIL`).
    pub login_max_failures_per_email: u32,
    /// Failed logins per client address, for any e-mail, before the address is locked
    /// (`LOGIN_MAX_FAILURES_PER_ADDRESS`).
    pub login_max_failures_per_address: u32,
    /// How long such a lock lasts; a pair's lock doubles each time it locks again
    /// (`LOGIN_LOCKOUT_SECONDS`).
    pub login_lockout: Duration,
    /// How long a user's row is trusted before a token of theirs is checked against it again
    /// (`AUTH_USER_CACHE_MS`, at most 60 s).
    pub user_cache_ttl: Duration,
    /// Token issuers trusted besides the service itself (`AUTH_ISSUERS`).
    pub issuers: Vec<issuers::IssuerConfig>,
    /// Whether `login` and `POST /api/auth/login` are on (`LOCAL_LOGIN`, default `true`).
    pub local_login: bool,
}

/// Subscriptions over WebSocket.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Subscriptions one WebSocket may hold at once (`WS_MAX_SUBSCRIPTIONS_PER_CONNECTION`).
    pub max_subscriptions: usize,
    /// WebSockets one user may hold open at once (`WS_MAX_CONNECTIONS_PER_USER`).
    pub max_connections_per_user: usize,
    /// How often an idle WebSocket is pinged; one that stays silent for two intervals is
    /// closed (`WS_PING_INTERVAL_MS`).
    pub ping_interval: Duration,
}

/// Every problem found in the environment, reported at once.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: {}", .problems.join("; "))]
pub struct ConfigError {
    /// One sentence per bad variable, each naming the variable.
    pub problems: Vec<String>,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup` (a variable name → its value), so callers and tests
    /// can overlay values without touching the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = Reader::new(&lookup);

        let db = read_db(&mut env);
        let temporal_address =
            env.parsed("TEMPORAL_ADDRESS", "localhost:7233", parse_temporal_address);
        let temporal_namespace = env.name("TEMPORAL_NAMESPACE", "default");
        let bootstrap_task_queue = env.name("BOOTSTRAP_TASK_QUEUE", "bootstrap");
        let bootstrap_workflow_type =
            env.name("BOOTSTRAP_WORKFLOW_TYPE", "organizationBootstrapWorkflow");
        let release_task_queue = env.name("RELEASE_TASK_QUEUE", "releases");
        let jwt_secret = env.required("JWT_SECRET").and_then(|raw| {
            env.check("JWT_SECRET", check_jwt_secret(&raw))
                .map(|()| SecretString::from(raw))
        });
        let jwt_issuer = env.name("JWT_ISSUER", "temporal-bff");
        let jwt_audience = env.name("JWT_AUDIENCE", "temporal-bff");
        let jwt_ttl = env.secs_in("JWT_TTL_SECONDS", 3600, 60..=30 * 24 * 3600);
        let auth_issuers = read_issuers(&mut env, jwt_issuer.as_deref());
        let local_login = env.parsed("LOCAL_LOGIN", "true", parse_switch);
        let host = env.parsed("HOST", "0.0.0.0", |raw| {
            raw.parse::<IpAddr>()
                .map_err(|_| "must be an IP address such as 0.0.0.0 or 127.0.0.1".to_owned())
        });
        let port = env.parsed("PORT", "8000", |raw| {
            raw.parse::<u16>()
                .map_err(|_| "must be a port number from 0 to 65535".to_owned())
        });
        let metrics_addr = env.parsed("METRICS_ADDR", "127.0.0.1:9464", |raw| {
            raw.parse::<std::net::SocketAddr>().map_err(|_| {
                "must be an address and port such as 127.0.0.1:9464 or 0.0.0.0:9464".to_owned()
            })
        });
        let cors_allowed_origins = env.parsed("CORS_ALLOWED_ORIGINS", "", parse_origins);
        let base_domain = env.parsed("BASE_DOMAIN", "example.test", parse_base_domain);
        let login_max_failures = env.int_in("LOGIN_MAX_FAILURES", 5, 1..=1000);
        let login_max_failures_per_email =
            env.int_in("LOGIN_MAX_FAILURES_PER_EMAIL", 50, 1..=100_000);
        let login_max_failures_per_address =
            env.int_in("LOGIN_MAX_FAILURES_PER_ADDRESS", 30, 1..=100_000);
        let login_lockout = env.secs_in("LOGIN_LOCKOUT_SECONDS", 60, 1..=86_400);
        let trusted_proxies = env.parsed("TRUSTED_PROXIES", "", parse_networks);
        let auth_user_cache_ttl = env.millis_in("AUTH_USER_CACHE_MS", 30_000, 0..=60_000);
        let max_response_bytes = env.bytes_in("MAX_RESPONSE_BYTES", 8_388_608, 1024..=1 << 30);
        let temporal_query_timeout = env.millis_in("TEMPORAL_QUERY_TIMEOUT_MS", 1_000, 10..=30_000);
        let hierarchy_cache_ttl = env.millis_in("HIERARCHY_CACHE_MS", 1_000, 0..=60_000);
        let release_cache_bytes = env.bytes_in("RELEASE_CACHE_BYTES", 16_777_216, 0..=1 << 32);
        let release_part_above_nodes =
            env.int_in("RELEASE_PART_ABOVE_NODES", 10_000, 0..=10_000_000);
        let dispatch_max_backoff = env.millis_in("DISPATCH_MAX_BACKOFF_MS", 30_000, 100..=600_000);
        let reconcile_interval = env.millis_in("RECONCILE_INTERVAL_MS", 60_000, 100..=86_400_000);
        let ws_max_subscriptions = env.int_in("WS_MAX_SUBSCRIPTIONS_PER_CONNECTION", 20, 1..=1000);
        let ws_max_connections_per_user =
            env.int_in("WS_MAX_CONNECTIONS_PER_USER", 20, 1..=100_000);
        let ws_ping_interval = env.millis_in("WS_PING_INTERVAL_MS", 15_000, 100..=600_000);
        let max_in_flight = env.int_in("MAX_IN_FLIGHT", 256, 1..=100_000);
        let graphiql = env.parsed("GRAPHIQL", "true", parse_switch);
        let introspection = env.parsed("INTROSPECTION", "false", parse_switch);
        let hsts = env.parsed("HSTS", "false", parse_switch);
        for (name, instead) in RETIRED {
            if env.value(name).is_some() {
                env.check(
                    name,
                    Err(format!(
                        "is a variable of the service this one replaces and is not read: {instead}"
                    )),
                );
            }
        }
        let log_level = env.parsed("LOG_LEVEL", "info", |raw| {
            tracing_subscriber::EnvFilter::try_new(raw)
                .map(|_| raw.to_owned())
                .map_err(|_| "must be a tracing filter such as info or temporal_bff=debug".into())
        });
        let log_format = env.parsed("LOG_FORMAT", "json", |raw| {
            match raw.to_ascii_lowercase().as_str() {
                "json" => Ok(LogFormat::Json),
                "pretty" => Ok(LogFormat::Pretty),
                _ => Err("must be json or pretty".to_owned()),
            }
        });

        // Every `None` above has pushed its problem; only a complete set becomes a config.
        let config = (|| {
            Some(Self {
                db: db?,
                temporal: TemporalConfig {
                    address: temporal_address?,
                    namespace: temporal_namespace?,
                    bootstrap_task_queue: bootstrap_task_queue?,
                    bootstrap_workflow_type: bootstrap_workflow_type?,
                    release_task_queue: release_task_queue?,
                    query_timeout: temporal_query_timeout?,
                },
                auth: AuthConfig {
                    jwt_secret: jwt_secret?,
                    jwt_issuer: jwt_issuer?,
                    jwt_audience: jwt_audience?,
                    jwt_ttl: jwt_ttl?,
                    login_max_failures: login_max_failures?,
                    login_max_failures_per_email: login_max_failures_per_email?,
                    login_max_failures_per_address: login_max_failures_per_address?,
                    login_lockout: login_lockout?,
                    user_cache_ttl: auth_user_cache_ttl?,
                    issuers: auth_issuers?,
                    local_login: local_login?,
                },
                ws: WsConfig {
                    max_subscriptions: ws_max_subscriptions?,
                    max_connections_per_user: ws_max_connections_per_user?,
                    ping_interval: ws_ping_interval?,
                },
                host: host?,
                port: port?,
                metrics_addr: metrics_addr?,
                cors_allowed_origins: cors_allowed_origins?,
                base_domain: base_domain?,
                trusted_proxies: trusted_proxies?,
                max_response_bytes: max_response_bytes?,
                hierarchy_cache_ttl: hierarchy_cache_ttl?,
                release_cache_bytes: release_cache_bytes?,
                release_part_above_nodes: release_part_above_nodes?,
                dispatch_max_backoff: dispatch_max_backoff?,
                reconcile_interval: reconcile_interval?,
                max_in_flight: max_in_flight?,
                graphiql: graphiql?,
                hsts: hsts?,
                introspection: introspection?,
                log_level: log_level?,
                log_format: log_format?,
                graphiql_example_login: None,
            })
        })();
        env.finish(config)
    }

    /// Reads only the database's variables, for commands that need nothing else (`migrate`).
    pub fn db_from_env() -> Result<DbConfig, ConfigError> {
        let lookup = |name: &str| std::env::var(name).ok();
        let mut env = Reader::new(&lookup);
        let db = read_db(&mut env);
        env.finish(db)
    }

    /// The Postgres URL, for the few places that must hand it to a driver.
    pub fn database_url(&self) -> &str {
        self.db.url.expose_secret()
    }
}

fn read_database_url<F: Fn(&str) -> Option<String>>(
    env: &mut Reader<'_, F>,
) -> Option<SecretString> {
    let raw = env.required("DATABASE_URL")?;
    env.check("DATABASE_URL", parse_database_url(&raw))
        .map(|()| SecretString::from(raw))
}

/// Every database variable (each problem recorded), as one group.
fn read_db<F: Fn(&str) -> Option<String>>(env: &mut Reader<'_, F>) -> Option<DbConfig> {
    let url = read_database_url(env);
    let listen_url = read_listen_url(env);
    let pooler = read_pooler(env);
    let statement_timeout = env.millis_in("DB_STATEMENT_TIMEOUT_MS", 5_000, 100..=600_000);
    let max_connections = env.int_in("DATABASE_MAX_CONNECTIONS", 32, 1..=1_000);
    let schema = env.parsed("DATABASE_SCHEMA", DEFAULT_SCHEMA, SqlIdent::parse);
    let events = env.parsed("EVENTS_TABLE", "public.domain_events", parse_table);
    Some(DbConfig {
        url: url?,
        statement_timeout: statement_timeout?,
        max_connections: max_connections?,
        listen_url: listen_url?,
        pooler: pooler?,
        names: DbNames {
            schema: schema?,
            events: events?,
        },
    })
}

/// `schema.table`, or `table` in `public`.
fn parse_table(raw: &str) -> Result<(SqlIdent, SqlIdent), String> {
    match raw.split_once('.') {
        Some((schema, table)) => Ok((SqlIdent::parse(schema)?, SqlIdent::parse(table)?)),
        None => Ok((SqlIdent("public".to_owned()), SqlIdent::parse(raw)?)),
    }
}

/// `AUTH_ISSUERS` (none when unset), each problem recorded against it.
fn read_issuers<F: Fn(&str) -> Option<String>>(
    env: &mut Reader<'_, F>,
    own_issuer: Option<&str>,
) -> Option<Vec<issuers::IssuerConfig>> {
    let own_issuer = own_issuer.unwrap_or_default();
    let mut listed = match env.value("AUTH_ISSUERS") {
        None => Some(Vec::new()),
        Some(raw) => match issuers::parse(&raw, own_issuer, |name| env.value(name)) {
            Ok(issuers) => Some(issuers),
            Err(problems) => {
                for problem in problems {
                    env.check("AUTH_ISSUERS", Err(problem));
                }
                None
            }
        },
    };
    // SUPABASE_URL adds the project's issuer, unless AUTH_ISSUERS already lists it (then that
    // entry, with whatever it says, is the one used).
    if let Some(url) = env.value("SUPABASE_URL") {
        match issuers::supabase(&url, own_issuer, |name| env.value(name)) {
            Ok(supabase) => {
                if let Some(listed) = listed.as_mut()
                    && !listed.iter().any(|other| other.issuer == supabase.issuer)
                {
                    listed.push(supabase);
                }
            }
            Err(problems) => {
                for problem in problems {
                    env.check("SUPABASE_URL", Err(problem));
                }
                listed = None;
            }
        }
    }
    listed
}

fn read_listen_url<F: Fn(&str) -> Option<String>>(
    env: &mut Reader<'_, F>,
) -> Option<Option<SecretString>> {
    match env.value("DATABASE_LISTEN_URL") {
        None => Some(None),
        Some(raw) => env
            .check("DATABASE_LISTEN_URL", parse_database_url(&raw))
            .map(|()| Some(SecretString::from(raw))),
    }
}

fn read_pooler<F: Fn(&str) -> Option<String>>(env: &mut Reader<'_, F>) -> Option<Pooler> {
    env.parsed("DATABASE_POOLER", "none", |raw| {
        match raw.to_ascii_lowercase().as_str() {
            "none" => Ok(Pooler::None),
            "transaction" => Ok(Pooler::Transaction),
            _ => Err("must be none or transaction".to_owned()),
        }
    })
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`, in any case).
fn parse_switch(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("must be true or false".to_owned()),
    }
}

fn parse_database_url(raw: &str) -> Result<(), String> {
    match Url::parse(raw) {
        Ok(url) if matches!(url.scheme(), "postgres" | "postgresql") => Ok(()),
        // The value is a secret: never echo it back.
        _ => Err("must be a postgres:// URL".to_owned()),
    }
}

fn parse_temporal_address(raw: &str) -> Result<Url, String> {
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("http://{raw}")
    };
    match Url::parse(&with_scheme) {
        Ok(url)
            if matches!(url.scheme(), "http" | "https")
                && url.host().is_some()
                && url.port_or_known_default().is_some() =>
        {
            Ok(url)
        }
        _ => Err(format!("must be host:port (got {raw:?})")),
    }
}

fn check_jwt_secret(raw: &str) -> Result<(), String> {
    if raw.len() < MIN_JWT_SECRET_BYTES {
        Err(format!("must be at least {MIN_JWT_SECRET_BYTES} bytes"))
    } else {
        Ok(())
    }
}

fn parse_origins(raw: &str) -> Result<Vec<String>, String> {
    let mut origins = Vec::new();
    for origin in raw.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let parsed = Url::parse(origin).map_err(|_| format!("has an invalid origin {origin:?}"))?;
        let is_bare_origin = matches!(parsed.scheme(), "http" | "https")
            && parsed.host().is_some()
            && parsed.path() == "/"
            && parsed.query().is_none()
            && !origin.ends_with('/');
        if !is_bare_origin {
            return Err(format!(
                "has {origin:?}, which is not an origin like https://app.example.com"
            ));
        }
        origins.push(origin.to_owned());
    }
    Ok(origins)
}

fn parse_networks(raw: &str) -> Result<Vec<ipnet::IpNet>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            n.parse::<ipnet::IpNet>()
                .or_else(|_| n.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    format!("has {n:?}, which is not an IP address or CIDR such as 10.0.0.0/8")
                })
        })
        .collect()
}

fn parse_base_domain(raw: &str) -> Result<String, String> {
    let valid_label = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if raw.len() <= 200 && raw.contains('.') && raw.split('.').all(valid_label) {
        Ok(raw.to_owned())
    } else {
        Err(format!(
            "must be a lowercase domain name such as example.test (got {raw:?})"
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn defaults_fill_everything_but_the_two_required_variables() {
        let config = load(&[
            ("DATABASE_URL", "postgres://u@localhost/db"),
            ("JWT_SECRET", SECRET),
        ])
        .map_err(|e| e.to_string());

        let config = config.as_ref().map_err(String::as_str);
        assert!(config.is_ok(), "{config:?}");
        let Ok(config) = config else { return };
        assert_eq!(config.temporal.address.as_str(), "http://localhost:7233/");
        assert_eq!(config.temporal.namespace, "default");
        assert_eq!(config.temporal.bootstrap_task_queue, "bootstrap");
        assert_eq!(
            config.temporal.bootstrap_workflow_type,
            "organizationBootstrapWorkflow"
        );
        assert_eq!(config.temporal.release_task_queue, "releases");
        assert_eq!(config.auth.jwt_ttl, Duration::from_secs(3600));
        assert_eq!(config.port, 8000);
        assert_eq!(config.base_domain, "example.test");
        assert_eq!(config.log_format, LogFormat::Json);
        assert!(config.cors_allowed_origins.is_empty());
        assert_eq!(config.db.names.schema.as_str(), "bff");
        assert_eq!(config.db.names.events_table(), "public.domain_events");
    }

    #[test]
    fn a_bare_events_table_is_taken_to_be_in_public() {
        let config = load(&[
            ("DATABASE_URL", "postgres://u@localhost/db"),
            ("JWT_SECRET", SECRET),
            ("DATABASE_SCHEMA", "bff_staging"),
            ("EVENTS_TABLE", "events"),
        ])
        .map_err(|e| e.to_string());

        let names = config.map(|c| c.db.names);
        assert_eq!(
            names
                .as_ref()
                .map(|n| (n.schema.as_str(), n.events_table())),
            Ok(("bff_staging", "public.events".to_owned()))
        );
    }

    #[test]
    fn every_bad_variable_is_named_in_one_error() {
        let err = load(&[
            ("JWT_SECRET", "short"),
            ("PORT", "eighty"),
            ("LOG_FORMAT", "xml"),
            ("CORS_ALLOWED_ORIGINS", "https://ok.example.com,not a url"),
            ("TEMPORAL_ADDRESS", "::::"),
            ("DATABASE_POOLER", "session"),
            ("DATABASE_LISTEN_URL", "mysql://user:hunter2@x/db"),
            ("DATABASE_SCHEMA", "bff; DROP SCHEMA public"),
            ("EVENTS_TABLE", "public.Events"),
        ])
        .err();

        let message = err.map(|e| e.to_string()).unwrap_or_default();
        for expected in [
            "DATABASE_URL is required",
            "JWT_SECRET must be at least 32 bytes",
            "PORT must be a port number",
            "LOG_FORMAT must be json or pretty",
            "CORS_ALLOWED_ORIGINS has an invalid origin",
            "TEMPORAL_ADDRESS must be host:port",
            "DATABASE_POOLER must be none or transaction",
            "DATABASE_LISTEN_URL must be a postgres:// URL",
            "DATABASE_SCHEMA must be a lowercase SQL name",
            "EVENTS_TABLE must be a lowercase SQL name",
        ] {
            assert!(
                message.contains(expected),
                "{expected:?} not in {message:?}"
            );
        }
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn secrets_do_not_appear_in_debug_output_or_errors() {
        let config = load(&[
            ("DATABASE_URL", "postgres://user:hunter2@localhost/db"),
            ("JWT_SECRET", SECRET),
        ]);
        let bad = load(&[
            ("DATABASE_URL", "mysql://user:hunter2@x/db"),
            ("JWT_SECRET", SECRET),
        ]);

        let debug = format!("{config:?}");
        let error = bad.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            !debug.contains("hunter2") && !debug.contains(SECRET),
            "{debug}"
        );
        assert!(
            error.contains("DATABASE_URL must be a postgres:// URL"),
            "{error}"
        );
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn the_list_of_variables_is_exactly_what_the_configuration_reads() {
        let asked = std::sync::Mutex::new(std::collections::BTreeSet::new());

        let _ = Config::from_lookup(|name| {
            if let Ok(mut asked) = asked.lock() {
                asked.insert(name.to_owned());
            }
            None
        });

        let asked = asked.into_inner().unwrap_or_default();
        let listed: std::collections::BTreeSet<String> = VARIABLES
            .iter()
            .chain(RETIRED.iter().map(|(name, _)| name))
            .map(|v| (*v).to_owned())
            .collect();
        assert_eq!(asked, listed);
    }

    #[test]
    fn the_old_services_variable_names_stop_start_up_naming_what_to_set_instead() {
        let error = load(&[
            ("DATABASE_URL", "postgres://localhost/db"),
            ("JWT_SECRET", SECRET),
            ("TEMPORAL_HOST", "temporal:7233"),
            ("API_CORS_ORIGINS", "https://a.example.com"),
            ("TEMPORAL_TASK_QUEUE", "releases"),
        ])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();

        for (old, new) in [
            ("TEMPORAL_HOST", "TEMPORAL_ADDRESS"),
            ("API_CORS_ORIGINS", "CORS_ALLOWED_ORIGINS"),
            ("TEMPORAL_TASK_QUEUE", "RELEASE_TASK_QUEUE"),
        ] {
            assert!(
                error.contains(&format!(
                    "{old} is a variable of the service this one replaces"
                )) && error.contains(new),
                "{error}"
            );
        }
    }

    #[test]
    fn supabase_url_adds_its_issuer_once_and_an_entry_for_it_in_auth_issuers_wins() {
        let alone = load(&[
            ("DATABASE_URL", "postgres://localhost/db"),
            ("JWT_SECRET", SECRET),
            ("SUPABASE_URL", "https://abc.supabase.co"),
        ]);
        let listed_too = load(&[
            ("DATABASE_URL", "postgres://localhost/db"),
            ("JWT_SECRET", SECRET),
            ("SUPABASE_URL", "https://abc.supabase.co"),
            (
                "AUTH_ISSUERS",
                r#"[{"issuer": "https://abc.supabase.co/auth/v1", "audience": "dashboard",
                     "jwks_url": "https://keys.example.com/jwks.json", "algorithms": ["RS256"]}]"#,
            ),
        ]);
        let bad = load(&[
            ("DATABASE_URL", "postgres://localhost/db"),
            ("JWT_SECRET", SECRET),
            ("SUPABASE_URL", "abc.supabase.co"),
        ]);

        let alone = alone.map(|c| c.auth.issuers).unwrap_or_default();
        assert_eq!(alone.len(), 1);
        assert_eq!(alone[0].issuer, "https://abc.supabase.co/auth/v1");
        let listed_too = listed_too.map(|c| c.auth.issuers).unwrap_or_default();
        assert_eq!(listed_too.len(), 1);
        assert_eq!(listed_too[0].audiences, ["dashboard"]);
        let bad = bad.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(bad.contains("SUPABASE_URL must be an https URL"), "{bad}");
    }

    #[test]
    fn cors_origins_are_split_on_commas() {
        let config = load(&[
            ("DATABASE_URL", "postgres://localhost/db"),
            ("JWT_SECRET", SECRET),
            (
                "CORS_ALLOWED_ORIGINS",
                "https://a.example.com, http://localhost:5173",
            ),
        ]);

        let origins = config.map(|c| c.cors_allowed_origins).unwrap_or_default();
        assert_eq!(origins, ["https://a.example.com", "http://localhost:5173"]);
    }
}
