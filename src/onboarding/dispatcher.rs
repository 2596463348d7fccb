//! The outbox dispatcher inside `serve`: starts queued bootstrap workflows once Temporal can be
//! reached, also after a restart. Several replicas may run it: rows are claimed with
//! `FOR UPDATE SKIP LOCKED`, so none is started twice and none is skipped; a claim left by a
//! crashed replica is taken over after a minute, and a replica renews its claim on a row just
//! before working on it (skipping the row if the claim was lost).
//!
//! What it accepted it never gives up on: failures are classified by gRPC code, an outage is
//! retried with backoff for as long as it lasts, and only the server refusing the start itself
//! (`InvalidArgument`, `FailedPrecondition`, `PermissionDenied`) ends a row `failed`. A start
//! that succeeded but could not be recorded is retried as a recording, not as a failed start.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use tokio::sync::Notify;
use uuid::Uuid;

use super::{
    start::{BootstrapStarter, DispatchError},
    store::{self, QueuedStart},
};
use crate::{
    contracts::events::{ControlAction, EventMetadata, QueueFailed},
    events::{self, NewEvent},
    metrics::Metrics,
    releases::control::{self, ReleaseControl},
    temporal::TemporalError,
};

/// Rows claimed per round: few, so each is worked on long before its claim could expire.
const BATCH: i64 = 5;
/// Longest one dispatch may take; far below the 60 s after which a claim can be taken over.
const DISPATCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest idle sleep between looks at the outbox.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// A start the server refuses (not an outage) fails the row after this many attempts.
const MAX_REJECTED_ATTEMPTS: i32 = 5;
/// The recorded reason while a started workflow's start is being recorded again.
const RECORDING_RETRY: &str = "the workflow started; recording the start will be retried";

/// Runs the dispatcher until the process ends.
pub fn spawn(
    starter: BootstrapStarter,
    control: Arc<ReleaseControl>,
    wake: Arc<Notify>,
    max_backoff: Duration,
    metrics: Arc<Metrics>,
) -> tokio::task::JoinHandle<()> {
    let instance = format!("{}-{}", std::process::id(), Uuid::new_v4().simple());
    tokio::spawn(async move {
        loop {
            let due = match store::claim(starter.db(), &instance, BATCH).await {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::error!(%error, "outbox claim failed");
                    Vec::new()
                }
            };
            let worked = !due.is_empty();
            for row in due {
                match store::renew_claim(starter.db(), &instance, row.id).await {
                    Ok(true) => {
                        dispatch(&starter, &control, &instance, row, max_backoff, &metrics).await;
                    }
                    Ok(false) => {
                        tracing::warn!(temporal.workflow_id = %row.workflow_id, "claim lost to another replica; skipped")
                    }
                    Err(error) => tracing::error!(%error, "cannot renew an outbox claim"),
                }
            }
            if !worked {
                let sleep = next_due_in(&starter)
                    .await
                    .unwrap_or(IDLE_POLL)
                    .min(IDLE_POLL);
                tokio::select! {
                    () = tokio::time::sleep(sleep) => {},
                    () = wake.notified() => {},
                }
            }
        }
    })
}

async fn next_due_in(starter: &BootstrapStarter) -> Option<Duration> {
    let next = store::next_due(starter.db()).await.ok().flatten();
    next.map(|at| {
        (at - Utc::now())
            .to_std()
            .unwrap_or(Duration::from_millis(50))
    })
}

/// Exponential backoff from 500 ms, capped.
fn backoff(attempts: i32, max: Duration) -> Duration {
    let exp = u32::try_from(attempts.clamp(1, 16) - 1).unwrap_or(0);
    Duration::from_millis(500u64.saturating_mul(1 << exp)).min(max)
}

#[tracing::instrument(skip_all, fields(temporal.workflow_id = %row.workflow_id, outbox.attempts = row.attempts))]
async fn dispatch(
    starter: &BootstrapStarter,
    control: &ReleaseControl,
    instance: &str,
    row: QueuedStart,
    max_backoff: Duration,
    metrics: &Metrics,
) {
    // Only what this service itself would have queued is delivered.
    let allowed = match ControlAction::parse(&row.action) {
        None => Ok(starter.may_start(&row)),
        Some(_) => {
            control
                .may_deliver(
                    row.release_id.as_deref().unwrap_or_default(),
                    &row.workflow_id,
                )
                .await
        }
    };
    match allowed {
        Ok(true) => {}
        Ok(false) => {
            tracing::error!(
                temporal.workflow_type = %row.workflow_type,
                temporal.task_queue = %row.task_queue,
                outbox.action = %row.action,
                "outbox row refused: not a workflow this service delivers to"
            );
            metrics.outbox_dispatch(&row.action, Some("NOT_ALLOWED"));
            if let Err(error) = fail(starter, &row, NOT_ALLOWED).await {
                tracing::error!(%error, "cannot record the refused outbox row");
            }
            return;
        }
        Err(error) => {
            tracing::warn!(%error, "cannot check an outbox row; will retry");
            let wait = backoff(row.attempts, max_backoff);
            if let Err(error) =
                reschedule(starter, instance, &row, "database unavailable", wait, -1).await
            {
                tracing::error!(%error, "cannot reschedule the outbox row");
            }
            return;
        }
    }
    // A start, or a release control action (`releases::control`) riding the same outbox.
    let delivery = async {
        match ControlAction::parse(&row.action) {
            None => starter.dispatch(&row).await,
            Some(action) => control
                .deliver_queued(
                    row.id,
                    row.release_id.as_deref().unwrap_or_default(),
                    &row.workflow_id,
                    action,
                    row.workflow_input["reason"].as_str(),
                )
                .await
                .map_err(DispatchError::Start),
        }
    };
    let outcome = tokio::time::timeout(DISPATCH_TIMEOUT, delivery)
        .await
        .unwrap_or(Err(DispatchError::Start(TemporalError::Timeout)));
    let failure = match &outcome {
        Err(DispatchError::Start(error)) => Some(error.code()),
        _ => None,
    };
    metrics.outbox_dispatch(&row.action, failure);
    let result = match outcome {
        Ok(()) => {
            tracing::info!("queued bootstrap started");
            return;
        }
        Err(DispatchError::Record(error)) => {
            // The start happened: only the recording is retried, and it is not an attempt.
            tracing::warn!(%error, "bootstrap started, but recording it failed; will retry");
            reschedule(
                starter,
                instance,
                &row,
                RECORDING_RETRY,
                Duration::from_millis(500),
                -1,
            )
            .await
        }
        Err(DispatchError::Start(error))
            if !error.is_retryable() && row.attempts >= MAX_REJECTED_ATTEMPTS =>
        {
            tracing::error!(%error, "Temporal refused the bootstrap start; giving up");
            fail(starter, &row, reason(&row, &error)).await
        }
        Err(DispatchError::Start(error)) => {
            // An outage is retried for as long as it lasts: an accepted request is never dropped.
            tracing::warn!(%error, "bootstrap start failed; will retry");
            let wait = backoff(row.attempts, max_backoff);
            reschedule(starter, instance, &row, reason(&row, &error), wait, 0).await
        }
    };
    if let Err(error) = result {
        tracing::error!(%error, "cannot record the dispatch outcome; the claim will expire and be retried");
    }
}

/// The reason stored for an outbox row this service does not deliver.
const NOT_ALLOWED: &str =
    "refused: not a workflow type, task queue or workflow ID this service delivers to";

/// The fixed reason stored for a failed attempt: a start's, or a control action's.
fn reason(row: &QueuedStart, error: &TemporalError) -> &'static str {
    match (ControlAction::parse(&row.action), error.is_retryable()) {
        (None, _) => error.reason(),
        (Some(_), true) => control::UNREACHABLE,
        (Some(_), false) => control::REFUSED,
    }
}

/// Puts a claimed row back to `pending`, due after `wait`, with a readable `reason`;
/// `attempts_delta` corrects the claim's attempt count (-1: this was no real attempt).
async fn reschedule(
    starter: &BootstrapStarter,
    instance: &str,
    row: &QueuedStart,
    reason: &str,
    wait: Duration,
    attempts_delta: i32,
) -> Result<(), sqlx::Error> {
    store::reschedule(
        starter.db(),
        instance,
        row.id,
        reason,
        wait.as_secs_f64(),
        attempts_delta,
    )
    .await
}

/// Records that Temporal refused the start for good (`workflow.queue.failed`).
async fn fail(
    starter: &BootstrapStarter,
    row: &QueuedStart,
    reason: &str,
) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    let payload = QueueFailed {
        queue_id: row.id,
        workflow_id: row.workflow_id.clone(),
        reason: reason.to_owned(),
        attempts: row.attempts,
        at: now,
    };
    let metadata = EventMetadata::bff(&row.workflow_id, &row.workflow_type, now);
    let organization = ("organization", row.organization_id.unwrap_or_default());
    let event = NewEvent::new(Uuid::new_v4(), &payload, organization, metadata);
    events::append(starter.db(), &[event]).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_half_a_second_up_to_the_cap() {
        let cap = Duration::from_secs(30);

        let delays: Vec<u64> = (1..=8)
            .map(|a| backoff(a, cap).as_millis() as u64)
            .collect();

        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    }
}
