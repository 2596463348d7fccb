//! Counters of the expensive things requests do (SQL statements, Temporal queries, fallbacks
//! from live to projection reads): per request (logged when it ends) and per process
//! (`GET /metrics`, Prometheus text).
//!
//! The per-request counter is also the request's budget: a request holds at most
//! [`REQUEST_SQL_CONCURRENCY`] statements and [`REQUEST_TEMPORAL_CONCURRENCY`] Temporal calls
//! at once, so one request cannot take the whole pool from the others.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use tokio::sync::{Semaphore, SemaphorePermit};

/// Statements one request may run at the same time (each holds a pool connection).
pub const REQUEST_SQL_CONCURRENCY: u32 = 4;
/// Temporal calls one request may make at the same time.
pub const REQUEST_TEMPORAL_CONCURRENCY: u32 = 4;

/// Process-wide totals.
#[derive(Debug, Default)]
pub struct Metrics {
    sql: AtomicU64,
    temporal: AtomicU64,
    fallbacks: AtomicU64,
    password_checks: AtomicU64,
    sockets: AtomicU64,
    subscriptions: AtomicU64,
    pushes: AtomicU64,
    dropped_pushes: AtomicU64,
}

/// Counts one open thing (a socket, a subscription) in a gauge for as long as it lives.
pub struct Open(Arc<Metrics>, fn(&Metrics) -> &AtomicU64);

impl Open {
    fn new(metrics: &Arc<Metrics>, gauge: fn(&Metrics) -> &AtomicU64) -> Self {
        gauge(metrics).fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(metrics), gauge)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        (self.1)(&self.0).fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Counts one password hashed or verified for a login.
    pub fn password_check(&self) {
        self.password_checks.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an open WebSocket until the guard is dropped.
    pub fn socket_opened(self: &Arc<Self>) -> Open {
        Open::new(self, |m| &m.sockets)
    }

    /// Counts an active subscription until the guard is dropped.
    pub fn subscription_started(self: &Arc<Self>) -> Open {
        Open::new(self, |m| &m.subscriptions)
    }

    /// Counts one message pushed to a subscriber.
    pub fn pushed(&self) {
        self.pushes.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one intermediate state a subscriber never got because a newer one replaced it.
    pub fn dropped_push(&self) {
        self.dropped_pushes.fetch_add(1, Ordering::Relaxed);
    }

    /// The totals in Prometheus text format.
    pub fn render(&self) -> String {
        let metric = |kind: &str, name: &str, help: &str, value: &AtomicU64| {
            format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}\n",
                value.load(Ordering::Relaxed)
            )
        };
        let counter =
            |name: &str, help: &str, value: &AtomicU64| metric("counter", name, help, value);
        let gauge = |name: &str, help: &str, value: &AtomicU64| metric("gauge", name, help, value);
        [
            counter(
                "bff_sql_statements_total",
                "SQL statements run by GraphQL requests.",
                &self.sql,
            ),
            counter(
                "bff_temporal_queries_total",
                "Workflow queries sent to Temporal.",
                &self.temporal,
            ),
            counter(
                "bff_hierarchy_fallbacks_total",
                "Live reads answered from the projection because Temporal did not answer.",
                &self.fallbacks,
            ),
            counter(
                "bff_password_checks_total",
                "Passwords checked (argon2id) for logins.",
                &self.password_checks,
            ),
            gauge(
                "bff_ws_sockets",
                "WebSockets open on /graphql/ws.",
                &self.sockets,
            ),
            gauge(
                "bff_ws_subscriptions",
                "Subscriptions running on those sockets.",
                &self.subscriptions,
            ),
            counter(
                "bff_ws_pushes_total",
                "Messages pushed to subscribers.",
                &self.pushes,
            ),
            counter(
                "bff_ws_dropped_states_total",
                "Intermediate states a slow subscriber skipped because a newer one replaced them.",
                &self.dropped_pushes,
            ),
        ]
        .concat()
    }
}

/// What one request cost, and what it may still hold at once; every count also goes to the
/// process totals.
#[derive(Debug)]
pub struct RequestStats {
    process: Arc<Metrics>,
    sql: AtomicU64,
    temporal: AtomicU64,
    sql_slots: Semaphore,
    temporal_slots: Semaphore,
}

impl RequestStats {
    /// Stats of a new request.
    pub fn new(process: Arc<Metrics>) -> Self {
        Self {
            process,
            sql: AtomicU64::new(0),
            temporal: AtomicU64::new(0),
            sql_slots: Semaphore::new(REQUEST_SQL_CONCURRENCY as usize),
            temporal_slots: Semaphore::new(REQUEST_TEMPORAL_CONCURRENCY as usize),
        }
    }

    /// Counts `n` SQL statements about to run concurrently, and waits until this request may
    /// run them: hold the returned permit while they run.
    pub async fn sql(&self, n: u32) -> Option<SemaphorePermit<'_>> {
        self.sql.fetch_add(u64::from(n), Ordering::Relaxed);
        self.process.sql.fetch_add(u64::from(n), Ordering::Relaxed);
        // The semaphore is never closed, so this only waits.
        self.sql_slots
            .acquire_many(n.clamp(1, REQUEST_SQL_CONCURRENCY))
            .await
            .ok()
    }

    /// Counts one Temporal call about to run, and waits until this request may make it: hold
    /// the returned permit while it runs.
    pub async fn temporal_query(&self) -> Option<SemaphorePermit<'_>> {
        self.temporal.fetch_add(1, Ordering::Relaxed);
        self.process.temporal.fetch_add(1, Ordering::Relaxed);
        self.temporal_slots.acquire().await.ok()
    }

    /// Counts a live read that fell back to the projection.
    pub fn fallback(&self) {
        self.process.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// (SQL statements, Temporal queries) so far.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.sql.load(Ordering::Relaxed),
            self.temporal.load(Ordering::Relaxed),
        )
    }
}
