//! The test harness: one Postgres cluster and one Temporal dev server per test binary, started
//! on free ports in a temp dir, and a fresh migrated database per test.
//!
//! Cleanup does not rely on destructors (statics are never dropped, and a failing test may end
//! the process early): each service gets a small watchdog process that stops it and removes its
//! directory as soon as this test process is gone, however it ended.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        OnceLock,
        mpsc::{self, RecvTimeoutError},
    },
    time::Duration,
};

use sqlx::{Connection, PgConnection, PgPool};
use temporal_bff::{
    Config,
    auth::{
        password::Hasher,
        users::{self, NewUser, UserRecord},
    },
    devstack::{LocalPostgres, LocalTemporal, free_port},
    types::Email,
    worker::{self, WorkerConfig, WorkerThread},
};
use temporalio_client::Client;
use tokio::sync::oneshot;

/// The shared services of this test binary.
pub struct Stack {
    /// Kept alive for the whole run (statics are never dropped; the watchdog stops it).
    pub postgres: LocalPostgres,
    /// Likewise.
    pub temporal: LocalTemporal,
}

const TEMPLATE_DB: &str = "bff_template";

/// A harness-only override: the URL the test's own pool uses when the app's goes elsewhere.
const DIRECT_URL: &str = "TEST_DIRECT_DATABASE_URL";

static STACK: OnceLock<Result<Stack, String>> = OnceLock::new();

/// The shared stack, started on first use.
pub fn stack() -> &'static Stack {
    let stack = STACK.get_or_init(|| {
        // Start from a plain thread: this may be called from inside a test's async runtime.
        std::thread::spawn(start_stack)
            .join()
            .unwrap_or_else(|_| Err("stack start-up panicked".into()))
    });
    match stack {
        Ok(stack) => stack,
        Err(error) => panic!("test stack failed to start: {error}"),
    }
}

/// A temp dir that outlives this process until its watchdog removes it.
pub fn scratch_dir(prefix: &str) -> PathBuf {
    match tempfile::Builder::new().prefix(prefix).tempdir() {
        Ok(dir) => dir.keep(),
        Err(error) => panic!("cannot create a temp dir: {error}"),
    }
}

/// Starts a watchdog that runs `cleanup` (a shell command), kills `pid` (if any) and removes
/// `dir` once this test process has exited.
pub fn watchdog(cleanup: &str, pid: Option<u32>, dir: &Path) {
    let script = r#"
        while kill -0 "$0" 2>/dev/null; do sleep 0.3; done
        eval "$1" >/dev/null 2>&1
        if [ -n "$2" ]; then kill "$2" 2>/dev/null; sleep 1; kill -9 "$2" 2>/dev/null; fi
        rm -rf "$3"
    "#;
    let spawned = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(std::process::id().to_string())
        .arg(cleanup)
        .arg(pid.map(|p| p.to_string()).unwrap_or_default())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Err(error) = spawned {
        panic!("cannot start the cleanup watchdog: {error}");
    }
}

/// How long a test may hold its app (`TEST_DEADLINE_SECS`, else 15 minutes; the slowest test
/// takes about a minute). A test that hangs, on a statement gone quadratic or a lock nobody
/// releases, then stops the run naming itself and what its database is doing, instead of
/// holding CI to its own limit with nothing printed (the huge release's replay once did).
fn test_deadline() -> Duration {
    let seconds = std::env::var("TEST_DEADLINE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15 * 60);
    Duration::from_secs(seconds)
}

/// Stops the whole run if the calling test still holds its app after [`test_deadline`];
/// dropping the returned sender, with the app, calls it off.
fn deadline(database_url: &str) -> mpsc::Sender<()> {
    let (held, dropped) = mpsc::channel::<()>();
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let url = database_url.to_owned();
    let within = test_deadline();
    std::thread::spawn(move || {
        if dropped.recv_timeout(within) != Err(RecvTimeoutError::Timeout) {
            return;
        }
        let activity = database_activity(&url);
        // Straight to the process's stderr: the test harness captures `eprintln!`, and would
        // print nothing of a run that exits.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("\n{test} still holds its app after {within:?}; its database:\n{activity}\n")
                .as_bytes(),
        );
        std::process::exit(101);
    });
    held
}

/// What the sessions of the database at `url` are running, one line each (by `psql`, with
/// nothing of the stalled test's runtime).
fn database_activity(url: &str) -> String {
    let psql = match temporal_bff::devstack::postgres_bin_dir() {
        Ok(dir) => dir.join("psql"),
        Err(error) => return format!("(no psql: {error})"),
    };
    let asked = Command::new(psql)
        .args([url, "-XAt", "-c"])
        .arg(
            "SELECT concat_ws(' | ', state, wait_event_type || ':' || wait_event,
                              now() - query_start, left(query, 300))
               FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid()
                AND state <> 'idle'",
        )
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null())
        .output();
    match asked {
        Ok(out) if out.status.success() && out.stdout.is_empty() => "(nothing running)".into(),
        Ok(out) => format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(error) => format!("(psql did not run: {error})"),
    }
}

/// Starts a private Postgres cluster (for tests that stop it), cleaned up like the shared one.
pub fn private_postgres() -> LocalPostgres {
    let dir = scratch_dir("temporal-bff-pg-");
    let postgres = LocalPostgres::start(&dir, free_port().unwrap_or(0));
    match postgres {
        Ok(postgres) => {
            watchdog(&postgres.stop_command(), None, &dir);
            postgres
        }
        Err(error) => panic!("private postgres failed to start: {error}"),
    }
}

/// Applies the migrations to the database at `url` (a private cluster's), as the service's
/// `migrate` command does.
pub async fn migrate(url: &str) {
    let pool = sqlx::PgPool::connect(url).await.expect("the pool connects");
    temporal_bff::db::migrate(&pool, &Default::default())
        .await
        .expect("the migrations apply");
    pool.close().await;
}

fn start_stack() -> Result<Stack, String> {
    let dir = scratch_dir("temporal-bff-it-");
    let postgres = LocalPostgres::start(
        &dir.join("postgres"),
        free_port().map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    watchdog(&postgres.stop_command(), None, &dir.join("postgres"));
    let temporal = LocalTemporal::start(
        &dir.join("temporal"),
        free_port().map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    watchdog("", Some(temporal.pid()), &dir);

    // One migrated template; each test copies it, which is much faster than migrating.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let mut admin = PgConnection::connect(&postgres.url("postgres"))
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {TEMPLATE_DB}"
        )))
        .execute(&mut admin)
        .await
        .map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    })?;
    // Migrate through the real binary: this is also what `temporal-bff migrate` does in prod.
    let migrate = Command::new(env!("CARGO_BIN_EXE_temporal-bff"))
        .arg("migrate")
        .env("DATABASE_URL", postgres.url(TEMPLATE_DB))
        .output()
        .map_err(|e| e.to_string())?;
    if !migrate.status.success() {
        return Err(format!(
            "migrate failed: {}",
            String::from_utf8_lossy(&migrate.stderr)
        ));
    }
    Ok(Stack { postgres, temporal })
}

/// The shared PgBouncer, in transaction mode in front of the shared cluster, started on first
/// use: PgBouncer 1.18 as Debian ships it (`PGBOUNCER`, else `pgbouncer` on the PATH), every
/// database name passed through (`* =`), and no `ignore_startup_parameters`, so a client that
/// sends what a pooler refuses finds out here.
pub struct Pooler {
    port: u16,
}

static POOLER: OnceLock<Result<Pooler, String>> = OnceLock::new();

impl Pooler {
    /// The shared pooler.
    pub fn get() -> &'static Pooler {
        match POOLER.get_or_init(start_pooler) {
            Ok(pooler) => pooler,
            Err(error) => panic!("pgbouncer failed to start: {error}"),
        }
    }

    /// The URL of database `db` through the pooler.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

fn start_pooler() -> Result<Pooler, String> {
    let stack = stack();
    let dir = scratch_dir("temporal-bff-pgbouncer-");
    let port = free_port().map_err(|e| e.to_string())?;
    let postgres_port = url::Url::parse(&stack.postgres.url("postgres"))
        .ok()
        .and_then(|url| url.port())
        .ok_or("the shared cluster's URL has no port")?;
    let ini = format!(
        "[databases]\n* = host=127.0.0.1 port={postgres_port}\n\n[pgbouncer]\n\
         listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
         auth_type = trust\nauth_file = {users}\npool_mode = transaction\n\
         max_client_conn = 1000\ndefault_pool_size = 40\nlogfile = {log}\n",
        users = dir.join("users.txt").display(),
        log = dir.join("pgbouncer.log").display(),
    );
    std::fs::write(dir.join("pgbouncer.ini"), ini).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n").map_err(|e| e.to_string())?;
    let program = std::env::var("PGBOUNCER").unwrap_or_else(|_| "pgbouncer".into());
    let config = dir.join("pgbouncer.ini");
    // PgBouncer refuses to run as root, like Postgres: run it as the same `postgres` user.
    let as_postgres_user = temporal_bff::devstack::running_as_root(&dir);
    if as_postgres_user {
        Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .map_err(|e| e.to_string())?;
    }
    let mut command = temporal_bff::devstack::postgres_command(&program, as_postgres_user);
    let child = command
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    watchdog("", Some(child.id()), &dir);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(Pooler { port });
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Err(format!(
        "pgbouncer does not listen on {port}: {}",
        std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default()
    ))
}

/// A fresh database copied from the migrated template; returns its URL.
pub async fn fresh_database() -> String {
    let stack = stack();
    let name = format!("it_{}", uuid::Uuid::new_v4().simple());
    let created = async {
        let mut admin = PgConnection::connect(&stack.postgres.url("postgres")).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}"
        )))
        .execute(&mut admin)
        .await?;
        Ok::<_, sqlx::Error>(())
    };
    if let Err(error) = created.await {
        panic!("cannot create test database: {error}");
    }
    stack.postgres.url(&name)
}

/// A pool for a test's own SQL on `url`, with `public` and then the service's schema on its
/// path: tests name tables as `users` and `domain_events`, and what a test creates lands in
/// `public`, as the platform's objects would. (The app's own sessions keep the default path
/// and qualify every name: `db::names`.)
pub async fn test_pool(url: &str) -> PgPool {
    let options: sqlx::postgres::PgConnectOptions =
        url.parse().expect("the test database URL parses");
    PgPool::connect_with(options.options([("search_path", "public, bff")]))
        .await
        .expect("cannot connect to the test database")
}

/// Runs the real binary with `args` and `env`, `stdin` on its standard input; its output.
pub fn binary(args: &[&str], env: &[(&str, &str)], stdin: &str) -> std::process::Output {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_temporal-bff"))
        .args(args)
        .envs(env.iter().copied())
        .env("LOG_LEVEL", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    if let Some(mut input) = child.stdin.take() {
        std::io::Write::write_all(&mut input, stdin.as_bytes()).expect("stdin takes the input");
    }
    child.wait_with_output().expect("the binary finishes")
}

/// A random JWT secret of the required length.
pub fn random_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// A running instance of the app, built by the same function `serve` uses.
pub struct TestApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where its operations listener (`/metrics`, the readiness report) listens.
    pub ops_addr: SocketAddr,
    /// An HTTP client.
    pub http: reqwest::Client,
    /// A pool on the test's own database.
    pub db: PgPool,
    /// The configuration it runs with.
    pub config: Config,
    /// Its background tasks (to kill one).
    pub tasks: temporal_bff::background::Tasks,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), temporal_bff::StartupError>>>,
    worker: Option<WorkerThread>,
    /// Calls off [`deadline`] when the app goes.
    _deadline: mpsc::Sender<()>,
}

impl TestApp {
    /// An app on a fresh database and the shared Temporal server.
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// Like [`TestApp::spawn`], with some environment variables overridden.
    pub async fn spawn_with(overrides: &[(&str, String)]) -> Self {
        Self::spawn_configured(overrides, |_| {}).await
    }

    /// Like [`TestApp::spawn_with`], then `edit` changes what no variable sets (what
    /// `temporal-bff dev` sets itself).
    pub async fn spawn_configured(
        overrides: &[(&str, String)],
        edit: impl FnOnce(&mut Config),
    ) -> Self {
        let stack = stack();
        let mut env: HashMap<String, String> = HashMap::from([
            ("DATABASE_URL".into(), String::new()),
            ("TEMPORAL_ADDRESS".into(), stack.temporal.address()),
            ("JWT_SECRET".into(), random_secret()),
            ("LOG_LEVEL".into(), "warn".into()),
        ]);
        for (name, value) in overrides {
            env.insert((*name).to_owned(), value.clone());
        }
        if env.get("DATABASE_URL").is_some_and(String::is_empty) {
            env.insert("DATABASE_URL".into(), fresh_database().await);
        }
        // The test's own pool bypasses a pooler the app is behind (`TestApp::behind_pooler`).
        let direct = env
            .remove(DIRECT_URL)
            .or_else(|| env.get("DATABASE_URL").cloned())
            .unwrap_or_default();
        let mut config = match Config::from_lookup(|name| env.get(name).cloned()) {
            Ok(config) => config,
            Err(error) => panic!("test config invalid: {error}"),
        };
        edit(&mut config);
        let app = match temporal_bff::build_app(config.clone()).await {
            Ok(app) => app,
            Err(error) => panic!("app failed to build: {error}"),
        };
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(listener) => listener,
            Err(error) => panic!("cannot bind: {error}"),
        };
        let addr = listener.local_addr().expect("the listener has an address");
        let ops = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the operations listener binds");
        let ops_addr = ops.local_addr().expect("the ops listener has an address");
        let (tx, rx) = oneshot::channel::<()>();
        let tasks = app.tasks();
        let server = tokio::spawn(temporal_bff::run_server(listener, Some(ops), app, async {
            let _ = rx.await;
        }));
        let db = test_pool(&direct).await;
        let deadline = deadline(&direct);
        Self {
            addr,
            ops_addr,
            http: http_client(),
            db,
            config,
            tasks,
            shutdown: Some(tx),
            server: Some(server),
            worker: None,
            _deadline: deadline,
        }
    }

    /// Shuts the app down as SIGTERM would and waits until `run_server` has returned.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("the server task ends")
                .expect("the server stops cleanly");
        }
    }

    /// The overrides that put an app on a fresh database behind the shared PgBouncer in
    /// transaction mode, with its listener direct (`listen_direct`) or through the pooler too.
    /// Its test pool (`db`) stays direct.
    pub async fn behind_pooler(listen_direct: bool) -> Vec<(&'static str, String)> {
        Self::through_pooler(fresh_database().await, listen_direct)
    }

    /// The overrides that put an app on the database at `direct` behind the shared PgBouncer in
    /// transaction mode (see [`TestApp::behind_pooler`]).
    pub fn through_pooler(direct: String, listen_direct: bool) -> Vec<(&'static str, String)> {
        let name = direct.rsplit('/').next().unwrap_or_default().to_owned();
        let mut overrides = vec![
            ("DATABASE_URL", Pooler::get().url(&name)),
            ("DATABASE_POOLER", "transaction".to_owned()),
            (DIRECT_URL, direct.clone()),
        ];
        if listen_direct {
            overrides.push(("DATABASE_LISTEN_URL", direct));
        }
        overrides
    }

    /// An app plus a reference worker of its own: unique task queues (so tests never share a
    /// worker) writing to this test's database.
    pub async fn spawn_with_worker(overrides: &[(&str, String)]) -> Self {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let mut all: Vec<(&str, String)> = vec![
            ("RELEASE_TASK_QUEUE", format!("releases-{suffix}")),
            ("BOOTSTRAP_TASK_QUEUE", format!("bootstrap-{suffix}")),
            ("SIM_DNS_DELAY_MS", "5".into()),
            ("SIM_EMAIL_DELAY_MS", "5".into()),
        ];
        all.extend(overrides.iter().cloned());
        let worker_config = WorkerConfig::from_lookup(|name| {
            all.iter()
                .rev()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.clone())
        })
        .expect("worker config invalid");
        let mut app = Self::spawn_with(&all).await;
        app.worker = Some(worker::spawn(app.config.clone(), worker_config));
        app
    }

    /// A Temporal client on the test server.
    pub async fn temporal(&self) -> Client {
        temporal_bff::temporal::connect(
            &self.config.temporal.address,
            &self.config.temporal.namespace,
        )
        .await
        .expect("cannot connect to Temporal")
    }

    /// The absolute URL of `path` on this app.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The absolute URL of `path` on this app's operations listener.
    pub fn ops_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ops_addr)
    }

    /// Sends a GraphQL `query` with `variables`, returning the JSON response.
    pub async fn graphql(&self, query: &str, variables: serde_json::Value) -> serde_json::Value {
        self.send_graphql(None, query, variables).await
    }

    async fn send_graphql(
        &self,
        authorization: Option<&str>,
        query: &str,
        variables: serde_json::Value,
    ) -> serde_json::Value {
        let mut request = self
            .http
            .post(self.url("/graphql"))
            .json(&serde_json::json!({ "query": query, "variables": variables }));
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        let response = request.send().await.expect("request failed");
        response.json().await.expect("response is not JSON")
    }
}

/// A password good enough for `user create`.
pub const PASSWORD: &str = "correct horse battery staple";

impl TestApp {
    /// Creates a login user with `permissions` in organization `org_id`.
    pub async fn create_user(
        &self,
        email: &str,
        org_id: Option<uuid::Uuid>,
        permissions: &[&str],
    ) -> UserRecord {
        let user = users::create(
            &self.db,
            &Hasher::new(),
            NewUser {
                email: Email::parse(email).expect("the e-mail parses"),
                password: PASSWORD.to_owned().into(),
                org_id,
                role: Some("admin".into()),
                permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
            },
        )
        .await;
        user.expect("cannot create user")
    }

    /// Logs in through the API and returns the raw response.
    pub async fn login(&self, email: &str, password: &str) -> serde_json::Value {
        self.graphql(
            "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token expiresAt user { id email permissions orgId } } }",
            serde_json::json!({ "e": email, "p": password }),
        )
        .await
    }

    /// Creates a user and returns a token for them.
    pub async fn token_for(
        &self,
        email: &str,
        org_id: Option<uuid::Uuid>,
        permissions: &[&str],
    ) -> String {
        self.create_user(email, org_id, permissions).await;
        let body = self.login(email, PASSWORD).await;
        match body["data"]["login"]["token"].as_str() {
            Some(token) => token.to_owned(),
            None => panic!("login failed: {body}"),
        }
    }

    /// Sends a GraphQL request with `Authorization: <authorization>`.
    pub async fn graphql_with_auth(
        &self,
        authorization: &str,
        query: &str,
        variables: serde_json::Value,
    ) -> serde_json::Value {
        self.send_graphql(Some(authorization), query, variables)
            .await
    }

    /// Sends a GraphQL request as the holder of `token`.
    pub async fn graphql_as(
        &self,
        token: &str,
        query: &str,
        variables: serde_json::Value,
    ) -> serde_json::Value {
        self.graphql_with_auth(&format!("Bearer {token}"), query, variables)
            .await
    }
}

impl TestApp {
    /// Posts a GraphQL request `body` as it is (an operation name, odd shapes), anonymously.
    pub async fn post_graphql(&self, body: serde_json::Value) -> serde_json::Value {
        self.http
            .post(self.url("/graphql"))
            .json(&body)
            .send()
            .await
            .expect("request failed")
            .json()
            .await
            .expect("response is not JSON")
    }

    /// A plain `GET` of `path` on this app.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} failed: {e}"))
    }

    /// The body of a plain `GET` of `url`, as text.
    pub async fn get_text(&self, url: &str) -> String {
        self.http
            .get(url)
            .send()
            .await
            .expect("the request is answered")
            .text()
            .await
            .expect("the answer has a body")
    }

    /// The value of the Prometheus metric `name` on `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.get_text(&self.ops_url("/metrics")).await;
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics: {text}"))
    }

    /// Every row of the projections, as JSON, in a stable order.
    pub async fn projections(&self) -> Vec<serde_json::Value> {
        let mut rows = Vec::new();
        for table in PROJECTIONS {
            let sql = format!("SELECT to_jsonb(t) FROM {table} t ORDER BY id::text");
            let mut table_rows: Vec<serde_json::Value> =
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&self.db)
                    .await
                    .expect("the query answers");
            rows.append(&mut table_rows);
        }
        rows
    }

    /// Empties the event store and every projection, then inserts every event again in
    /// `(created_at, id)` order, as a rebuild of the read model would.
    pub async fn replay_events(&self) {
        let mut conn = self.db.acquire().await.expect("a connection is free");
        let truncate = format!("TRUNCATE domain_events, {}", PROJECTIONS.join(", "));
        for sql in [
            "CREATE TEMP TABLE saved AS SELECT * FROM domain_events",
            truncate.as_str(),
            "INSERT INTO domain_events SELECT * FROM saved ORDER BY created_at, id",
            "DROP TABLE saved",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&mut *conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }
}

/// The projection tables folded from `domain_events`.
pub const PROJECTIONS: [&str; 5] = [
    "organizations_projection",
    "invitations_projection",
    "release_projection",
    "release_entity_projection",
    "workflow_queue_projection",
];

/// The `extensions.code` of the first error in a GraphQL response.
pub fn error_code(body: &serde_json::Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("<no error code>")
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(worker) = self.worker.take() {
            // Stopping waits for in-flight tasks; do it off the test's runtime.
            std::thread::spawn(move || drop(worker.stop()));
        }
    }
}

/// An HTTP client whose every request ends within a minute: a server that stops answering
/// fails the test that asked it instead of hanging the whole run.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("an HTTP client builds")
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `within`.
pub async fn eventually<T, F, Fut>(within: std::time::Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        // A check that hangs (a request to a frozen process, a lock wait) counts as a miss at
        // the deadline instead of hanging the test: a failed check must fail, not stall CI.
        if let Ok(Some(value)) = tokio::time::timeout_at(deadline, check()).await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Runs the browser script `tests/browser/{script}` with `plan` (Chromium from `$CHROMIUM`, or
/// Debian's), reading its one JSON line per step. `on_step` sees each step's name and may
/// answer a line for the script's stdin. Returns every step by name, and whether it exited 0.
pub async fn browser_script(
    script: &str,
    mut plan: serde_json::Value,
    mut on_step: impl AsyncFnMut(&str) -> Option<String>,
) -> (serde_json::Value, bool) {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    /// Longest wait for one step of the script.
    const STEP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
    plan["chromium"] = std::env::var("CHROMIUM")
        .unwrap_or_else(|_| "/usr/bin/chromium".into())
        .into();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser")
        .join(script);
    let mut browser = tokio::process::Command::new("node")
        .arg(path)
        .arg(plan.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (scripts/test installs it)");
    let mut stdin = browser.stdin.take().expect("stdin is piped");
    let stdout = browser.stdout.take().expect("stdout is piped");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut steps = serde_json::Map::new();
    while let Ok(Ok(Some(line))) = tokio::time::timeout(STEP_TIMEOUT, lines.next_line()).await {
        let step: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| serde_json::json!({ "step": line }));
        let name = step["step"].as_str().unwrap_or_default().to_owned();
        if let Some(answer) = on_step(&name).await {
            let _ = stdin.write_all(format!("{answer}\n").as_bytes()).await;
        }
        steps.insert(name, step);
    }
    let exit = browser.wait().await;
    (
        serde_json::Value::Object(steps),
        exit.is_ok_and(|status| status.success()),
    )
}
