//! Liveness (`/health`, no I/O) and readiness (`/ready`, each dependency checked).
//!
//! Ready means "can serve": reads come from Postgres and starts are queued there, so only
//! Postgres decides. A Temporal outage is `degraded` (200), because taking every replica out
//! of the load balancer at that moment would turn a partial outage into a whole one.

use std::time::{Duration, Instant};

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use serde::Serialize;

use crate::AppState;

/// Each dependency check gets this long before it counts as down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the public `/ready` waits for Temporal before calling it `degraded`. Temporal does
/// not decide readiness, so it must not decide how long the answer takes either: a hung
/// frontend would otherwise hold every check for [`CHECK_TIMEOUT`], and a load balancer that
/// allows a second per check (HAProxy's default with `inter 1s`) would take every replica out.
const READY_TEMPORAL_WAIT: Duration = Duration::from_millis(200);

/// Liveness: answers as long as the process serves HTTP.
pub async fn health() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

#[derive(Serialize)]
struct Readiness {
    status: &'static str,
    checks: Checks,
}

#[derive(Serialize)]
struct Checks {
    postgres: Check,
    temporal: Check,
    /// Only in the operations report.
    #[serde(skip_serializing_if = "Option::is_none")]
    listener: Option<Listener>,
}

/// The change listener and the pool, as the operations report shows them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Listener {
    /// `hearing`, or `deaf` (connected, but its heartbeat does not come back).
    status: &'static str,
    pool_connections: u32,
    pool_idle: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Check {
    status: &'static str,
    latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
}

impl Check {
    fn from_result<E: std::fmt::Display>(
        dependency: &'static str,
        started: Instant,
        result: Result<Result<(), E>, tokio::time::error::Elapsed>,
    ) -> Self {
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        // A short, fixed reason for the body; the underlying error goes to the log only.
        let error = match result {
            Ok(Ok(())) => None,
            Ok(Err(error)) => {
                tracing::warn!(readiness.dependency = dependency, %error, "dependency check failed");
                Some("unreachable")
            }
            Err(_) => {
                tracing::warn!(
                    readiness.dependency = dependency,
                    "dependency check timed out"
                );
                Some("timed out")
            }
        };
        Self {
            status: if error.is_none() { "up" } else { "down" },
            latency_ms,
            error,
        }
    }
}

/// Readiness on the public port: 200 `{"status":"ready"}` or `{"status":"degraded"}` (Temporal
/// unreachable: reads and queued starts still work), 503 `{"status":"not_ready"}` when
/// Postgres does not answer; without saying what is down (the report is on the operations
/// listener).
pub async fn ready(state: State<AppState>) -> impl IntoResponse {
    let (code, report) = check(state, READY_TEMPORAL_WAIT).await;
    (code, Json(serde_json::json!({ "status": report.status })))
}

/// The readiness report on the operations listener: [`ready`]'s answer with each dependency's
/// status, latency and a short reason, and the change listener and pool.
pub async fn ready_report(State(state): State<AppState>) -> impl IntoResponse {
    let listener = Listener {
        status: if state.metrics.listener_deaf.get() == 0 {
            "hearing"
        } else {
            "deaf"
        },
        pool_connections: state.db.size(),
        pool_idle: state.db.num_idle(),
    };
    let (code, mut report) = check(State(state), CHECK_TIMEOUT).await;
    report.checks.listener = Some(listener);
    (code, Json(report))
}

/// Postgres and Temporal, checked concurrently, Temporal within `temporal_wait`: 200 while
/// Postgres answers (`degraded` if Temporal does not), 503 otherwise.
#[tracing::instrument(skip_all)]
async fn check(State(state): State<AppState>, temporal_wait: Duration) -> (StatusCode, Readiness) {
    let postgres = async {
        let started = Instant::now();
        let result = tokio::time::timeout(CHECK_TIMEOUT, crate::db::ping(&state.db)).await;
        Check::from_result("postgres", started, result)
    };
    let temporal = async {
        let started = Instant::now();
        let result = tokio::time::timeout(temporal_wait, state.temporal.ping(temporal_wait)).await;
        Check::from_result("temporal", started, result)
    };
    let (postgres, temporal) = tokio::join!(postgres, temporal);
    let (code, status) = match (postgres.error, temporal.error) {
        (None, None) => (StatusCode::OK, "ready"),
        (None, Some(_)) => (StatusCode::OK, "degraded"),
        (Some(_), _) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
    };
    let body = Readiness {
        status,
        checks: Checks {
            postgres,
            temporal,
            listener: None,
        },
    };
    (code, body)
}
