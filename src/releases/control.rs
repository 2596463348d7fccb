//! Operating a release: pause, resume and cancel (`pauseRelease`, `resumeRelease`,
//! `cancelRelease`, permission `release.control`).
//!
//! A request is checked against the release as the projection has it (a closed release is
//! refused, a pause of a paused release or a resume of a running one changes nothing), then
//! recorded in one INSERT: the action's event (`release.paused`, `release.resumed`,
//! `release.cancel_requested`, with the user and request ID) and its outbox row
//! (`workflow.queue.control_pending`). It is delivered at once (the `pause` / `resume` signal,
//! or Temporal's cancellation) and marked delivered; when Temporal does not answer it stays
//! queued and the outbox's dispatcher delivers it later (`crate::outbox`, through this module's
//! [`Deliver`] implementation), so nothing accepted is lost.

use std::sync::Arc;

use chrono::Utc;
use uuid::Uuid;

use super::store::{self, ReleaseRow};
use crate::{
    auth::Principal,
    contracts::{
        events::{
            ControlAction, ControlDelivered, ControlPending, EventMetadata, ReleaseControlled,
        },
        ids::EntityId,
        release::RolloutStatus,
    },
    db,
    error::ApiError,
    events::{self, NewEvent},
    metrics::{Metrics, RequestStats},
    outbox::{Deliver, Delivery, DeliveryError, Outbox, Queued, Signal},
    temporal::{TemporalError, TemporalHandle},
};

/// The workflow type control actions go to.
const WORKFLOW_TYPE: &str = "ReleaseWorkflow";
/// Longest cancellation reason kept.
pub const MAX_REASON_CHARS: usize = 500;

/// What became of a control request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlStatus {
    /// Delivered to the workflow.
    Delivered,
    /// Temporal did not answer: queued, and delivered when it is back.
    Queued,
    /// Nothing to do: the release is already as asked (a pause of a paused release).
    Unchanged,
}

/// Delivers control actions, at once or from the outbox.
pub struct ReleaseControl {
    db: sqlx::PgPool,
    temporal: TemporalHandle,
    metrics: Arc<Metrics>,
    outbox: Outbox,
}

impl ReleaseControl {
    /// Records in `db`, delivers through `temporal`, hands what Temporal did not take to
    /// `outbox`.
    pub fn new(
        db: sqlx::PgPool,
        temporal: TemporalHandle,
        metrics: Arc<Metrics>,
        outbox: Outbox,
    ) -> Arc<Self> {
        Arc::new(Self {
            db,
            temporal,
            metrics,
            outbox,
        })
    }

    /// Asks release `id`'s workflow to `action` (with `reason`, for a cancellation), on behalf
    /// of `principal` under request `correlation`.
    #[tracing::instrument(skip(self, principal, reason), fields(release.id = %id, control.action = action.as_str()))]
    pub async fn request(
        &self,
        principal: &Principal,
        id: &EntityId,
        action: ControlAction,
        reason: Option<String>,
        correlation: &str,
    ) -> Result<ControlStatus, ApiError> {
        let stats = RequestStats::new(Arc::clone(&self.metrics));
        let row = store::rows(&self.db, &stats, &[id.to_string()])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::NotFound(format!("no release {id}")))?;
        if row.status.is_terminal() {
            return Err(ApiError::bad_input(
                "id",
                format!(
                    "the release is closed ({}): it cannot be paused, resumed or cancelled",
                    row.status.as_str()
                ),
            ));
        }
        if unchanged(&row, action) {
            return Ok(ControlStatus::Unchanged);
        }
        let reason = reason
            .map(|r| r.trim().chars().take(MAX_REASON_CHARS).collect::<String>())
            .filter(|r| !r.is_empty());
        let now = Utc::now();
        let queue_id = Uuid::new_v4();
        let requested = ReleaseControlled {
            id: row.id.clone(),
            workflow_id: row.workflow_id.clone(),
            action,
            reason: reason.clone(),
            queue_id,
            at: now,
        };
        let metadata = EventMetadata {
            user_id: Some(principal.user_id.clone()),
            correlation_id: Some(correlation.to_owned()).filter(|c| !c.is_empty()),
            ..EventMetadata::bff(&row.workflow_id, WORKFLOW_TYPE, now)
        };
        let created_by = Some(principal.actor_id());
        let requested = NewEvent::new(
            Uuid::new_v4(),
            &requested,
            ("release", id.aggregate_id()),
            metadata.clone(),
        )
        .by(created_by);
        let pending = ControlPending {
            queue_id,
            event_id: requested.id,
            release_id: row.id.clone(),
            workflow_id: row.workflow_id.clone(),
            action,
            reason: reason.clone(),
            // The fast path below tries first; the dispatcher only after this.
            not_before: now + chrono::TimeDelta::seconds(5),
            at: now,
        };
        let pending = NewEvent::new(
            Uuid::new_v4(),
            &pending,
            ("release", id.aggregate_id()),
            metadata,
        )
        .by(created_by);
        // One statement: the request and its outbox row are stored together or not at all.
        events::append(&self.db, &[requested, pending]).await?;
        let delivery = match action {
            ControlAction::Pause => Delivery::Signal {
                release_id: row.id.clone(),
                signal: Signal::Pause,
            },
            ControlAction::Resume => Delivery::Signal {
                release_id: row.id.clone(),
                signal: Signal::Resume,
            },
            ControlAction::Cancel => Delivery::Cancel {
                release_id: row.id.clone(),
                reason,
            },
        };
        match self
            .send(id.aggregate_id(), &row.workflow_id, &delivery, queue_id)
            .await
        {
            Ok(()) => Ok(ControlStatus::Delivered),
            Err(Undelivered::Refused(error)) => {
                tracing::warn!(%error, "Temporal refused the control action");
                self.fail(id.aggregate_id(), queue_id, &row.workflow_id, REFUSED)
                    .await?;
                Err(ApiError::bad_input(
                    "id",
                    "the release's workflow cannot take this action now (it is not running)",
                ))
            }
            Err(Undelivered::Unreachable(error)) => {
                tracing::warn!(%error, "control action queued; the dispatcher will deliver it");
                self.outbox.retry_soon(queue_id, UNREACHABLE).await?;
                Ok(ControlStatus::Queued)
            }
        }
    }

    /// Sends the signal or the cancellation to the workflow, then records it delivered.
    async fn send(
        &self,
        aggregate: Uuid,
        workflow_id: &str,
        delivery: &Delivery,
        queue_id: Uuid,
    ) -> Result<(), Undelivered> {
        let sent = async {
            match delivery {
                Delivery::Signal { signal, .. } => {
                    self.temporal
                        .signal_workflow(workflow_id, signal.name())
                        .await
                }
                Delivery::Cancel { reason, .. } => {
                    self.temporal
                        .cancel_workflow(workflow_id, reason.as_deref().unwrap_or_default())
                        .await
                }
                Delivery::StartWorkflow { .. } => Err(TemporalError::Client(
                    "a workflow start is not a release control action".into(),
                )),
            }
        };
        match tokio::time::timeout(DELIVERY_TIMEOUT, sent).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) if !error.is_retryable() => return Err(Undelivered::Refused(error)),
            Ok(Err(error)) => return Err(Undelivered::Unreachable(error)),
            Err(_) => return Err(Undelivered::Unreachable(TemporalError::Timeout)),
        }
        let now = Utc::now();
        let delivered = NewEvent::new(
            Uuid::new_v4(),
            &ControlDelivered {
                queue_id,
                workflow_id: workflow_id.to_owned(),
                at: now,
            },
            ("release", aggregate),
            EventMetadata::bff(workflow_id, WORKFLOW_TYPE, now),
        );
        if let Err(error) = events::append(&self.db, &[delivered]).await {
            // Delivered but not recorded: the dispatcher delivers again (signals and
            // cancellation are harmless twice).
            tracing::warn!(%error, "control action delivered, recording it failed");
            return Err(Undelivered::Unreachable(TemporalError::Client(
                "recording the delivery failed".into(),
            )));
        }
        Ok(())
    }

    /// Fails outbox row `queue_id` for good.
    async fn fail(
        &self,
        aggregate: Uuid,
        queue_id: Uuid,
        workflow_id: &str,
        reason: &str,
    ) -> Result<(), sqlx::Error> {
        let now = Utc::now();
        let failed = NewEvent::new(
            Uuid::new_v4(),
            &crate::contracts::events::QueueFailed {
                queue_id,
                workflow_id: workflow_id.to_owned(),
                reason: reason.to_owned(),
                attempts: 1,
                at: now,
            },
            ("release", aggregate),
            EventMetadata::bff(workflow_id, WORKFLOW_TYPE, now),
        );
        events::append(&self.db, &[failed]).await.map(drop)
    }
}

#[async_trait::async_trait]
impl Deliver for ReleaseControl {
    /// Only to the workflow the release was recorded with: a foreign row naming any other
    /// workflow is refused.
    async fn may_deliver(&self, row: &Queued, delivery: &Delivery) -> Result<bool, sqlx::Error> {
        let (Delivery::Signal { release_id, .. } | Delivery::Cancel { release_id, .. }) = delivery
        else {
            return Ok(false);
        };
        sqlx::query_scalar(
            db::sql("SELECT EXISTS (SELECT 1 FROM bff.release_projection WHERE id = $1 AND workflow_id = $2)"),
        )
        .bind(release_id)
        .bind(&row.workflow_id)
        .fetch_one(&self.db)
        .await
    }

    /// Sends the signal or the cancellation, then records it delivered.
    async fn deliver(&self, row: &Queued, delivery: &Delivery) -> Result<(), DeliveryError> {
        let (_, aggregate) = delivery.aggregate();
        match self
            .send(aggregate, &row.workflow_id, delivery, row.id)
            .await
        {
            Ok(()) => Ok(()),
            Err(Undelivered::Refused(error) | Undelivered::Unreachable(error)) => Err(error.into()),
        }
    }

    fn failure_reason(&self, error: &TemporalError) -> &'static str {
        if error.is_retryable() {
            UNREACHABLE
        } else {
            REFUSED
        }
    }
}

/// How long one delivery may wait for Temporal.
const DELIVERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// The outbox's fixed reason for a control action Temporal did not take yet (never its text).
pub const UNREACHABLE: &str = "Temporal is unreachable; the control action will be delivered later";
/// The outbox's fixed reason for a control action Temporal refused.
pub const REFUSED: &str = "Temporal refused the control action: the workflow is not running";

/// Why an action was not delivered.
enum Undelivered {
    /// Temporal refused it (no such running workflow): never worth retrying.
    Refused(TemporalError),
    /// Temporal did not answer: deliver later.
    Unreachable(TemporalError),
}

/// Whether `action` would change nothing for `row`: pausing a paused release.
fn unchanged(row: &ReleaseRow, action: ControlAction) -> bool {
    // A resume is always sent: the projection may not show a pause just delivered yet.
    action == ControlAction::Pause && row.status == RolloutStatus::Paused
}
