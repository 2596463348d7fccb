//! What the service measures, for `GET /metrics` (Prometheus text) and per request (logged when
//! it ends). Every metric is listed, with an example alert, in `docs/operations.md`.
//!
//! Each app has its own registry (tests run several apps in one process); collectors owned by
//! another module (Temporal calls, the hashing queue) are registered into it at start-up.
//!
//! The per-request counter is also the request's budget: a request holds at most
//! [`REQUEST_SQL_CONCURRENCY`] statements and [`REQUEST_TEMPORAL_CONCURRENCY`] Temporal calls
//! at once, so one request cannot take the whole pool from the others.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, core::Collector,
};
use tokio::sync::{Semaphore, SemaphorePermit};

/// Statements one request may run at the same time (each holds a pool connection).
pub const REQUEST_SQL_CONCURRENCY: u32 = 4;
/// Temporal calls one request may make at the same time.
pub const REQUEST_TEMPORAL_CONCURRENCY: u32 = 4;
/// Operation names that get a label of their own; later names share [`OTHER_OPERATION`].
pub const MAX_OPERATION_NAMES: usize = 100;
/// The label of operations without a name.
pub const ANONYMOUS_OPERATION: &str = "(anonymous)";
/// The label of operations whose name is not a plain GraphQL name, or came after
/// [`MAX_OPERATION_NAMES`] others.
pub const OTHER_OPERATION: &str = "(other)";
/// The label of every request that did not run for a signed-in caller, whatever it named.
pub const WITHOUT_CALLER_OPERATION: &str = "(without caller)";

/// Buckets for request-path latencies, 1 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram with [`LATENCY_BUCKETS`].
pub fn latency_histogram(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    HistogramVec::new(opts, labels).unwrap_or_else(|_| unreachable_metric())
}

/// Metric names and labels are constants: an invalid one is a programming error, caught by
/// this module's unit test on every build, never by a request.
fn unreachable_metric() -> ! {
    panic!("invalid metric definition")
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).unwrap_or_else(|_| unreachable_metric())
}

/// A counter with `labels`, named `name`.
pub fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|_| unreachable_metric())
}

/// A gauge named `name`.
pub fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).unwrap_or_else(|_| unreachable_metric())
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|_| unreachable_metric())
}

/// One app's metrics.
pub struct Metrics {
    registry: Registry,
    sql: IntCounter,
    sql_duration: HistogramVec,
    temporal: IntCounter,
    fallbacks: IntCounter,
    live_reads: IntCounterVec,
    password_checks: IntCounter,
    logins: IntCounterVec,
    introspection_kept: IntCounter,
    answers_kept: IntCounter,
    answers_compiled: IntCounter,
    sockets: IntGauge,
    subscriptions: IntGauge,
    pushes: IntCounter,
    dropped_pushes: IntCounter,
    http_duration: HistogramVec,
    graphql_duration: HistogramVec,
    graphql_errors: IntCounterVec,
    operation_names: Mutex<HashSet<String>>,
    outbox_attempts: IntCounterVec,
    outbox_failures: IntCounterVec,
    /// 1 while the change listener is deaf (`db::changes`).
    pub listener_deaf: IntGauge,
    /// Key fetches from external token issuers, by issuer and outcome (`ok`, `failed`).
    pub jwks_fetches: IntCounterVec,
    /// Set when `/metrics` is scraped, from the state of the moment.
    pub scraped: Scraped,
}

/// Gauges read from the app's state at each scrape.
pub struct Scraped {
    /// Connections the pool holds.
    pub pool_size: IntGauge,
    /// Of those, idle.
    pub pool_idle: IntGauge,
    /// The pool's ceiling.
    pub pool_max: IntGauge,
    /// Outbox rows not yet delivered, by action.
    pub outbox_pending: IntGaugeVec,
    /// Age of the oldest of them, by action.
    pub outbox_oldest_age: IntGaugeVec,
    /// Closed releases kept in memory.
    pub cache_releases: IntGauge,
    /// Their estimated bytes.
    pub cache_bytes: IntGauge,
    /// Reads answered from them (the cache counts; the scrape copies).
    pub cache_hits: IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Counts one open thing (a socket, a subscription) in a gauge for as long as it lives.
pub struct Open(IntGauge);

impl Open {
    fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    /// Every metric, registered.
    pub fn new() -> Self {
        let metrics = Self {
            registry: Registry::new(),
            sql: counter(
                "bff_sql_statements_total",
                "SQL statements run by GraphQL requests.",
            ),
            sql_duration: latency_histogram(
                "bff_sql_duration_seconds",
                "Time request-path SQL work held its slot, by query (a batch of statements run together counts once).",
                &["query"],
            ),
            temporal: counter(
                "bff_temporal_queries_total",
                "Temporal calls made by GraphQL requests (workflow queries and describes).",
            ),
            fallbacks: counter(
                "bff_hierarchy_fallbacks_total",
                "Live reads answered from the projection because Temporal did not answer.",
            ),
            live_reads: counter_vec(
                "bff_live_reads_total",
                "Live release-tree reads by how they were served: fetched (this read asked Temporal), shared (joined a fetch in flight), hit (the window's tree), fallback (Temporal did not answer; projection).",
                &["outcome"],
            ),
            password_checks: counter(
                "bff_password_checks_total",
                "Passwords checked (argon2id) for logins.",
            ),
            logins: counter_vec(
                "bff_logins_total",
                "Login attempts by outcome: success, failure (unknown e-mail, wrong password, disabled), throttled, busy (hashing queue full), error.",
                &["outcome"],
            ),
            introspection_kept: counter(
                "bff_introspection_answers_kept_total",
                "Introspection answers sent from their kept bytes, without running anything.",
            ),
            answers_kept: counter(
                "bff_answers_kept_total",
                "Query answers (GET or POST) sent from their kept bytes, made only of closed releases that did not change, without running anything.",
            ),
            answers_compiled: counter(
                "bff_answers_compiled_total",
                "Release-tree reads written straight from the tree by their compiled plan, without the GraphQL executor.",
            ),
            sockets: gauge("bff_ws_sockets", "WebSockets open on /graphql/ws."),
            subscriptions: gauge(
                "bff_ws_subscriptions",
                "Subscriptions running on those sockets.",
            ),
            pushes: counter("bff_ws_pushes_total", "Messages pushed to subscribers."),
            dropped_pushes: counter(
                "bff_ws_dropped_states_total",
                "Intermediate states a slow subscriber skipped because a newer one replaced them.",
            ),
            http_duration: latency_histogram(
                "bff_http_request_duration_seconds",
                "HTTP requests by route (the route pattern; unmatched for none) and status.",
                &["route", "status"],
            ),
            graphql_duration: latency_histogram(
                "bff_graphql_operation_duration_seconds",
                "GraphQL operations over HTTP by operation name (bounded: (anonymous), (other)) and outcome (ok or error).",
                &["operation", "outcome"],
            ),
            graphql_errors: counter_vec(
                "bff_graphql_errors_total",
                "GraphQL errors returned, by extensions.code.",
                &["code"],
            ),
            operation_names: Mutex::new(HashSet::new()),
            outbox_attempts: counter_vec(
                "bff_outbox_dispatch_attempts_total",
                "Outbox deliveries tried (bootstrap starts and release controls), by action.",
                &["action"],
            ),
            outbox_failures: counter_vec(
                "bff_outbox_dispatch_failures_total",
                "Outbox deliveries that failed, by action and gRPC code (Unavailable for an unreachable server).",
                &["action", "code"],
            ),
            listener_deaf: gauge(
                "bff_db_listener_deaf",
                "1 while the change listener is connected but does not hear its own heartbeat: \
                 the closed-release cache is off and subscriptions read on a timer.",
            ),
            jwks_fetches: counter_vec(
                "bff_jwks_fetches_total",
                "Key fetches from external token issuers (AUTH_ISSUERS), by issuer and outcome \
                 (ok, failed).",
                &["issuer", "outcome"],
            ),
            scraped: Scraped {
                pool_size: gauge(
                    "bff_db_pool_connections",
                    "Connections the Postgres pool holds.",
                ),
                pool_idle: gauge("bff_db_pool_idle", "Of those, idle."),
                pool_max: gauge(
                    "bff_db_pool_max",
                    "The pool's ceiling (DATABASE_MAX_CONNECTIONS).",
                ),
                outbox_pending: gauge_vec(
                    "bff_outbox_pending",
                    "Outbox rows not yet delivered to Temporal, by action.",
                    &["action"],
                ),
                outbox_oldest_age: gauge_vec(
                    "bff_outbox_oldest_pending_age_seconds",
                    "Age of the oldest undelivered outbox row, by action (0 when none).",
                    &["action"],
                ),
                cache_releases: gauge(
                    "bff_release_cache_releases",
                    "Closed releases kept in memory.",
                ),
                cache_bytes: gauge(
                    "bff_release_cache_bytes",
                    "Estimated bytes of the closed releases kept in memory.",
                ),
                cache_hits: counter(
                    "bff_release_cache_hits_total",
                    "Release reads answered from the closed-release cache.",
                ),
            },
        };
        let own: Vec<Box<dyn Collector>> = vec![
            Box::new(metrics.sql.clone()),
            Box::new(metrics.sql_duration.clone()),
            Box::new(metrics.temporal.clone()),
            Box::new(metrics.fallbacks.clone()),
            Box::new(metrics.live_reads.clone()),
            Box::new(metrics.password_checks.clone()),
            Box::new(metrics.logins.clone()),
            Box::new(metrics.introspection_kept.clone()),
            Box::new(metrics.answers_kept.clone()),
            Box::new(metrics.answers_compiled.clone()),
            Box::new(metrics.sockets.clone()),
            Box::new(metrics.subscriptions.clone()),
            Box::new(metrics.pushes.clone()),
            Box::new(metrics.dropped_pushes.clone()),
            Box::new(metrics.http_duration.clone()),
            Box::new(metrics.graphql_duration.clone()),
            Box::new(metrics.graphql_errors.clone()),
            Box::new(metrics.outbox_attempts.clone()),
            Box::new(metrics.outbox_failures.clone()),
            Box::new(metrics.listener_deaf.clone()),
            Box::new(metrics.jwks_fetches.clone()),
            Box::new(metrics.scraped.pool_size.clone()),
            Box::new(metrics.scraped.pool_idle.clone()),
            Box::new(metrics.scraped.pool_max.clone()),
            Box::new(metrics.scraped.outbox_pending.clone()),
            Box::new(metrics.scraped.outbox_oldest_age.clone()),
            Box::new(metrics.scraped.cache_releases.clone()),
            Box::new(metrics.scraped.cache_bytes.clone()),
            Box::new(metrics.scraped.cache_hits.clone()),
        ];
        for collector in own {
            metrics.register(collector);
        }
        // Known outcomes start at 0, so a rate() or an absent() in an alert sees them at once.
        for outcome in ["success", "failure", "throttled", "busy", "error"] {
            metrics.logins.with_label_values(&[outcome]);
        }
        for outcome in ["fetched", "shared", "hit", "fallback"] {
            metrics.live_reads.with_label_values(&[outcome]);
        }
        for action in ["start", "pause", "resume", "cancel"] {
            metrics.outbox_attempts.with_label_values(&[action]);
        }
        metrics
    }

    /// Adds a collector another module owns (Temporal call timings, the hashing queue).
    pub fn register(&self, collector: Box<dyn Collector>) {
        if let Err(error) = self.registry.register(collector) {
            tracing::error!(%error, "metric not registered");
        }
    }

    /// Counts one password hashed or verified for a login.
    pub fn password_check(&self) {
        self.password_checks.inc();
    }

    /// Counts one login attempt's outcome.
    pub fn login(&self, outcome: &'static str) {
        self.logins.with_label_values(&[outcome]).inc();
    }

    /// Counts one introspection answer sent from its kept bytes.
    pub fn introspection_kept(&self) {
        self.introspection_kept.inc();
    }

    /// A query answered from its kept bytes (`http::conditional`).
    pub fn answer_kept(&self) {
        self.answers_kept.inc();
    }

    /// A release-tree read answered by its compiled plan (`releases::graphql::compiled`).
    pub fn answer_compiled(&self) {
        self.answers_compiled.inc();
    }

    /// Counts an open WebSocket until the guard is dropped.
    pub fn socket_opened(&self) -> Open {
        Open::new(&self.sockets)
    }

    /// Counts an active subscription until the guard is dropped.
    pub fn subscription_started(&self) -> Open {
        Open::new(&self.subscriptions)
    }

    /// Counts one message pushed to a subscriber.
    pub fn pushed(&self) {
        self.pushes.inc();
    }

    /// Counts one intermediate state a subscriber never got because a newer one replaced it.
    pub fn dropped_push(&self) {
        self.dropped_pushes.inc();
    }

    /// Records one HTTP request.
    pub fn http_request(&self, route: &str, status: u16, seconds: f64) {
        self.http_duration
            .with_label_values(&[route, &status.to_string()])
            .observe(seconds);
    }

    /// Records one GraphQL operation and its errors' codes.
    pub fn graphql_operation(&self, name: Option<&str>, codes: &[&str], seconds: f64) {
        let label = self.operation_label(name);
        self.graphql_request(&label, codes, seconds);
    }

    /// Records a GraphQL request that did not run for a signed-in caller (refused before it
    /// ran, or a login or introspection without a token): its operation name is anyone's
    /// choice, so it is never a label.
    pub fn graphql_without_caller(&self, codes: &[&str], seconds: f64) {
        self.graphql_request(WITHOUT_CALLER_OPERATION, codes, seconds);
    }

    fn graphql_request(&self, label: &str, codes: &[&str], seconds: f64) {
        let outcome = if codes.is_empty() { "ok" } else { "error" };
        self.graphql_duration
            .with_label_values(&[label, outcome])
            .observe(seconds);
        for code in codes {
            self.graphql_errors.with_label_values(&[code]).inc();
        }
    }

    /// The label of operation `name`: itself while fewer than [`MAX_OPERATION_NAMES`] have
    /// been seen, so a client inventing names cannot grow the series without bound.
    fn operation_label(&self, name: Option<&str>) -> String {
        let Some(name) = name else {
            return ANONYMOUS_OPERATION.to_owned();
        };
        if !crate::types::is_plain_name(name) {
            return OTHER_OPERATION.to_owned();
        }
        let mut names = match self.operation_names.lock() {
            Ok(names) => names,
            Err(poisoned) => poisoned.into_inner(),
        };
        if names.contains(name) || names.len() < MAX_OPERATION_NAMES {
            names.insert(name.to_owned());
            name.to_owned()
        } else {
            OTHER_OPERATION.to_owned()
        }
    }

    /// Counts one outbox delivery attempt of `action` and, when it failed, its gRPC code.
    pub fn outbox_dispatch(&self, action: &str, failure: Option<&str>) {
        self.outbox_attempts.with_label_values(&[action]).inc();
        if let Some(code) = failure {
            self.outbox_failures
                .with_label_values(&[action, code])
                .inc();
        }
    }

    /// Every metric in Prometheus text format.
    pub fn render(&self) -> String {
        use prometheus::Encoder as _;
        let mut text = Vec::new();
        if let Err(error) =
            prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut text)
        {
            tracing::error!(%error, "metrics not encoded");
        }
        String::from_utf8(text).unwrap_or_default()
    }
}

/// Holds a request's SQL slot; records how long it was held when dropped.
pub struct SqlSlot<'a> {
    _permit: Option<SemaphorePermit<'a>>,
    started: Instant,
    timer: Histogram,
}

impl Drop for SqlSlot<'_> {
    fn drop(&mut self) {
        self.timer.observe(self.started.elapsed().as_secs_f64());
    }
}

/// What one request cost, and what it may still hold at once; every count also goes to the
/// process totals.
pub struct RequestStats {
    process: Arc<Metrics>,
    sql: AtomicU64,
    temporal: AtomicU64,
    /// A live tree was read (even from the shared few-second cache): the answer may change
    /// with nothing in this process told, so it is never kept.
    live: std::sync::atomic::AtomicBool,
    sql_slots: Semaphore,
    temporal_slots: Semaphore,
}

impl std::fmt::Debug for RequestStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (sql, temporal) = self.totals();
        f.debug_struct("RequestStats")
            .field("sql", &sql)
            .field("temporal", &temporal)
            .finish()
    }
}

impl RequestStats {
    /// Stats of a new request.
    pub fn new(process: Arc<Metrics>) -> Self {
        Self {
            process,
            sql: AtomicU64::new(0),
            temporal: AtomicU64::new(0),
            live: std::sync::atomic::AtomicBool::new(false),
            sql_slots: Semaphore::new(REQUEST_SQL_CONCURRENCY as usize),
            temporal_slots: Semaphore::new(REQUEST_TEMPORAL_CONCURRENCY as usize),
        }
    }

    /// Counts `n` SQL statements of `query` about to run concurrently, and waits until this
    /// request may run them: hold the returned slot while they run (its time is recorded).
    pub async fn sql(&self, n: u32, query: &'static str) -> SqlSlot<'_> {
        self.sql.fetch_add(u64::from(n), Ordering::Relaxed);
        self.process.sql.inc_by(u64::from(n));
        // The semaphore is never closed, so this only waits.
        let permit = self
            .sql_slots
            .acquire_many(n.clamp(1, REQUEST_SQL_CONCURRENCY))
            .await
            .ok();
        SqlSlot {
            _permit: permit,
            started: Instant::now(),
            timer: self.process.sql_duration.with_label_values(&[query]),
        }
    }

    /// Counts one Temporal call about to run, and waits until this request may make it: hold
    /// the returned permit while it runs.
    pub async fn temporal_query(&self) -> Option<SemaphorePermit<'_>> {
        self.temporal.fetch_add(1, Ordering::Relaxed);
        self.process.temporal.inc();
        self.temporal_slots.acquire().await.ok()
    }

    /// Counts a live read by how it was served (`fetched`, `shared`, `hit`, `fallback`).
    pub fn live_read(&self, outcome: &'static str) {
        self.live.store(true, Ordering::Relaxed);
        if outcome == "fallback" {
            self.process.fallbacks.inc();
        }
        self.process.live_reads.with_label_values(&[outcome]).inc();
    }

    /// Whether everything read so far came from the closed-release cache (or from nothing):
    /// no statement, no Temporal call, no live tree. Only such an answer may be kept and sent
    /// again while the cache's tokens hold.
    pub fn only_kept_reads(&self) -> bool {
        self.totals() == (0, 0) && !self.live.load(Ordering::Relaxed)
    }

    /// (SQL statements, Temporal queries) so far.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.sql.load(Ordering::Relaxed),
            self.temporal.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_defined_validly_and_rendered_with_help_and_type() {
        let metrics = Metrics::new();
        metrics.login("success");
        metrics.http_request("/graphql", 200, 0.01);

        let text = metrics.render();

        assert!(text.contains("# TYPE bff_logins_total counter"), "{text}");
        assert!(
            text.contains("# HELP bff_http_request_duration_seconds "),
            "{text}"
        );
    }

    #[test]
    fn operation_names_past_the_cap_share_one_label() {
        let metrics = Metrics::new();

        let labels: Vec<String> = (0..MAX_OPERATION_NAMES + 5)
            .map(|i| metrics.operation_label(Some(&format!("Op{i}"))))
            .collect();

        assert_eq!(labels[0], "Op0");
        assert_eq!(
            labels[MAX_OPERATION_NAMES - 1],
            format!("Op{}", MAX_OPERATION_NAMES - 1)
        );
        assert_eq!(labels[MAX_OPERATION_NAMES], OTHER_OPERATION);
        assert_eq!(
            metrics.operation_label(Some("Op0")),
            "Op0",
            "a known name keeps its label"
        );
        assert_eq!(metrics.operation_label(None), ANONYMOUS_OPERATION);
        assert_eq!(metrics.operation_label(Some("bad name\n")), OTHER_OPERATION);
    }
}
