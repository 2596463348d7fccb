//! Counters of the expensive things requests do (SQL statements, Temporal queries, fallbacks
//! from live to projection reads): per request (logged when it ends) and per process
//! (`GET /metrics`, Prometheus text).

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

/// Process-wide totals.
#[derive(Debug, Default)]
pub struct Metrics {
    sql: AtomicU64,
    temporal: AtomicU64,
    fallbacks: AtomicU64,
}

impl Metrics {
    /// The totals in Prometheus text format.
    pub fn render(&self) -> String {
        let counter = |name: &str, help: &str, value: &AtomicU64| {
            format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                value.load(Ordering::Relaxed)
            )
        };
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
        ]
        .concat()
    }
}

/// What one request cost; every count also goes to the process totals.
#[derive(Debug)]
pub struct RequestStats {
    process: Arc<Metrics>,
    sql: AtomicU64,
    temporal: AtomicU64,
}

impl RequestStats {
    /// Stats of a new request.
    pub fn new(process: Arc<Metrics>) -> Self {
        Self {
            process,
            sql: AtomicU64::new(0),
            temporal: AtomicU64::new(0),
        }
    }

    /// Counts `n` SQL statements.
    pub fn sql(&self, n: u64) {
        self.sql.fetch_add(n, Ordering::Relaxed);
        self.process.sql.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one Temporal query.
    pub fn temporal_query(&self) {
        self.temporal.fetch_add(1, Ordering::Relaxed);
        self.process.temporal.fetch_add(1, Ordering::Relaxed);
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
