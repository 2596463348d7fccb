//! The dispatcher: delivers queued rows once Temporal can be reached, also after a restart.
//!
//! Several replicas may run it: rows are claimed with `FOR UPDATE SKIP LOCKED`, so none is
//! delivered twice at once and none is skipped; a claim left by a crashed replica is taken over
//! after a minute, a replica renews its claim on a row just before working on it (skipping the
//! row if the claim was lost), and a replica that stops gives its claims back at once.
//!
//! What it accepted it never gives up on: failures are classified by gRPC code, an outage is
//! retried with backoff for as long as it lasts, and only the server refusing the delivery itself
//! (`InvalidArgument`, `FailedPrecondition`, `PermissionDenied`, `NotFound`) ends a row `failed`.
//! A delivery that succeeded but could not be recorded is retried as a recording, not counted as
//! a failed attempt.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Deliverers, Delivery, DeliveryError, Outbox, Queued, store};
use crate::{
    contracts::events::{EventMetadata, QueueFailed},
    events::{self, NewEvent},
    metrics::Metrics,
    temporal::TemporalError,
};

/// Rows claimed per round: few, so each is worked on long before its claim could expire.
const BATCH: i64 = 5;
/// Longest one delivery may take; far below the 60 s after which a claim can be taken over.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest idle sleep between looks at the outbox.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// A delivery the server refuses (not an outage) fails the row after this many attempts.
const MAX_REFUSED_ATTEMPTS: i32 = 5;
/// The recorded reason while a delivered row's delivery is being recorded again.
const RECORDING_RETRY: &str = "the workflow started; recording the start will be retried";
/// The reason stored for an outbox row this service does not deliver.
const NOT_ALLOWED: &str =
    "refused: not a workflow type, task queue or workflow ID this service delivers to";

/// The dispatcher of one process.
pub struct Dispatcher {
    outbox: Outbox,
    deliverers: Deliverers,
    max_backoff: Duration,
    metrics: Arc<Metrics>,
    /// This replica's name on its claims.
    instance: String,
}

impl Dispatcher {
    /// A dispatcher for `outbox`, delivering through `deliverers`, backing off at most
    /// `max_backoff` while Temporal is down.
    pub fn new(
        outbox: Outbox,
        deliverers: Deliverers,
        max_backoff: Duration,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            outbox,
            deliverers,
            max_backoff,
            metrics,
            instance: format!("{}-{}", std::process::id(), Uuid::new_v4().simple()),
        })
    }

    /// Delivers due rows until `stop` is cancelled, then gives back what it still holds.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        tokio::select! {
            () = self.rounds() => {}
            () = stop.cancelled() => {}
        }
        // Also after a crash (a restart runs this again first): nothing stays claimed.
        self.give_back().await;
    }

    async fn give_back(&self) {
        match store::give_back(self.outbox.db(), &self.instance).await {
            Ok(0) => {}
            Ok(rows) => tracing::info!(outbox.rows = rows, "claimed outbox rows given back"),
            Err(error) => {
                tracing::warn!(%error, "cannot give outbox rows back; their claims expire in a minute")
            }
        }
    }

    async fn rounds(&self) {
        self.give_back().await;
        loop {
            let due = match store::claim(self.outbox.db(), &self.instance, BATCH).await {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::error!(%error, "outbox claim failed");
                    Vec::new()
                }
            };
            let worked = !due.is_empty();
            for row in due {
                match store::renew_claim(self.outbox.db(), &self.instance, row.id).await {
                    Ok(true) => self.dispatch(row).await,
                    Ok(false) => {
                        tracing::warn!(temporal.workflow_id = %row.workflow_id, "claim lost to another replica; skipped")
                    }
                    Err(error) => tracing::error!(%error, "cannot renew an outbox claim"),
                }
            }
            if !worked {
                let sleep = self.next_due_in().await.unwrap_or(IDLE_POLL).min(IDLE_POLL);
                tokio::select! {
                    () = tokio::time::sleep(sleep) => {},
                    () = self.outbox.woken() => {},
                }
            }
        }
    }

    async fn next_due_in(&self) -> Option<Duration> {
        let next = store::next_due(self.outbox.db()).await.ok().flatten();
        next.map(|at| {
            (at - Utc::now())
                .to_std()
                .unwrap_or(Duration::from_millis(50))
        })
    }

    #[tracing::instrument(skip_all, fields(temporal.workflow_id = %row.workflow_id, outbox.action = %row.action, outbox.attempts = row.attempts))]
    async fn dispatch(&self, row: Queued) {
        let Some(delivery) = row.delivery.clone() else {
            return self.refuse(&row, None).await;
        };
        let deliverer = self.deliverers.of(&delivery);
        match deliverer.may_deliver(&row, &delivery).await {
            Ok(true) => {}
            Ok(false) => return self.refuse(&row, Some(&delivery)).await,
            Err(error) => {
                tracing::warn!(%error, "cannot check an outbox row; will retry");
                let wait = backoff(row.attempts, self.max_backoff);
                return self
                    .reschedule(&row, "database unavailable", wait, -1)
                    .await;
            }
        }
        let outcome = tokio::time::timeout(DELIVERY_TIMEOUT, deliverer.deliver(&row, &delivery))
            .await
            .unwrap_or(Err(DeliveryError::Temporal(TemporalError::Timeout)));
        let failure = match &outcome {
            Err(DeliveryError::Temporal(error)) => Some(error.code()),
            _ => None,
        };
        self.metrics.outbox_dispatch(delivery.action(), failure);
        match outcome {
            Ok(()) => tracing::info!("{}", delivery.done()),
            Err(DeliveryError::Record(error)) => {
                // It was delivered: only the recording is retried, and it is not an attempt.
                tracing::warn!(%error, "delivered, but recording it failed; will retry");
                self.reschedule(&row, RECORDING_RETRY, Duration::from_millis(500), -1)
                    .await;
            }
            Err(DeliveryError::Temporal(error))
                if !error.is_retryable() && row.attempts >= MAX_REFUSED_ATTEMPTS =>
            {
                tracing::error!(%error, "Temporal refused the delivery; giving up");
                self.fail(&row, Some(&delivery), deliverer.failure_reason(&error))
                    .await;
            }
            Err(DeliveryError::Temporal(error)) => {
                // An outage is retried for as long as it lasts: an accepted request is never
                // dropped.
                tracing::warn!(%error, "delivery failed; will retry");
                let wait = backoff(row.attempts, self.max_backoff);
                self.reschedule(&row, deliverer.failure_reason(&error), wait, 0)
                    .await;
            }
        }
    }

    /// Refuses a row this service did not write: it is failed, counted, and never delivered.
    async fn refuse(&self, row: &Queued, delivery: Option<&Delivery>) {
        tracing::error!(
            temporal.workflow_type = %row.workflow_type,
            "outbox row refused: not a workflow this service delivers to"
        );
        self.metrics
            .outbox_dispatch(&row.action, Some("NOT_ALLOWED"));
        self.fail(row, delivery, NOT_ALLOWED).await;
    }

    /// Puts a claimed row back to `pending`, due after `wait`, with a readable `reason`;
    /// `attempts_delta` corrects the claim's attempt count (-1: this was no real attempt).
    async fn reschedule(&self, row: &Queued, reason: &str, wait: Duration, attempts_delta: i32) {
        let rescheduled = store::reschedule(
            self.outbox.db(),
            &self.instance,
            row.id,
            reason,
            wait.as_secs_f64(),
            attempts_delta,
        )
        .await;
        if let Err(error) = rescheduled {
            tracing::error!(%error, "cannot reschedule the outbox row; its claim will expire");
        }
    }

    /// Ends the row `failed` for good (`workflow.queue.failed`).
    async fn fail(&self, row: &Queued, delivery: Option<&Delivery>, reason: &str) {
        let now = Utc::now();
        let payload = QueueFailed {
            queue_id: row.id,
            workflow_id: row.workflow_id.clone(),
            reason: reason.to_owned(),
            attempts: row.attempts,
            at: now,
        };
        let metadata = EventMetadata::bff(&row.workflow_id, &row.workflow_type, now);
        let aggregate = delivery.map_or(("organization", Uuid::nil()), Delivery::aggregate);
        let event = NewEvent::new(Uuid::new_v4(), &payload, aggregate, metadata);
        if let Err(error) = events::append(self.outbox.db(), &[event]).await {
            tracing::error!(%error, "cannot record the failed outbox row; its claim will expire");
        }
    }
}

/// Exponential backoff from 500 ms, capped.
fn backoff(attempts: i32, max: Duration) -> Duration {
    let exp = u32::try_from(attempts.clamp(1, 16) - 1).unwrap_or(0);
    Duration::from_millis(500u64.saturating_mul(1 << exp)).min(max)
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
