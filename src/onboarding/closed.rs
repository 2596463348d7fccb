//! The truth about a bootstrap whose workflow closed without writing its end (terminated,
//! timed out, cancelled): without it the organization would show `RUNNING` for ever.
//!
//! [`BootstrapCloses::check`] asks Temporal whether the latest run closed and, if it did, records
//! `organization.bootstrap.failed` for the step that was running, with `closeStatus` and the
//! reason `STATUS: reason` as Temporal gave them. Reads call it in the background when
//! Temporal's describe shows the workflow closed while the projection still has it under way;
//! the reconciler in `serve` calls [`BootstrapCloses::reconcile`] for the bootstraps nobody
//! reads. The event's ID comes from the closed run (stored once, whichever replica saw it) and
//! its time is Temporal's (a replay is exact).

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;
use uuid::Uuid;

use super::{
    steps::{self, BootstrapState, StepStatus},
    store,
};
use crate::{
    contracts::{
        bootstrap::Step,
        events::{BootstrapFailed, EventMetadata},
    },
    error::ReconcileError,
    events::{self, NewEvent, event_id},
    metrics::{Metrics, RequestStats},
    temporal::{TemporalHandle, WorkflowStatus},
};

/// Open bootstraps one reconciler pass looks at.
const RECONCILE_BATCH: i64 = 200;
/// How long one check may wait for Temporal.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest termination reason kept.
const MAX_REASON_CHARS: usize = 200;

/// Finds and records bootstraps that closed without writing their end.
pub struct BootstrapCloses {
    db: PgPool,
    temporal: TemporalHandle,
    metrics: Arc<Metrics>,
    workflow_type: String,
}

impl BootstrapCloses {
    /// Checks through `temporal`, records in `db`; bootstraps run as `workflow_type`.
    pub fn new(
        db: PgPool,
        temporal: TemporalHandle,
        metrics: Arc<Metrics>,
        workflow_type: String,
    ) -> Arc<Self> {
        Arc::new(Self {
            db,
            temporal,
            metrics,
            workflow_type,
        })
    }

    /// Checks the bootstrap of `organization` in the background (a read saw its workflow
    /// closed while the projection has it under way).
    pub fn suspect(self: &Arc<Self>, organization: Uuid, workflow: &str) {
        let closes = Arc::clone(self);
        let workflow = workflow.to_owned();
        tokio::spawn(async move {
            if let Err(error) = closes.check(organization, &workflow).await {
                tracing::info!(%error, %organization, "cannot tell whether the bootstrap's workflow closed");
            }
        });
    }

    /// Checks `organization`'s bootstrap workflow; records its failure if its latest run
    /// closed without completing. Returns whether it did.
    #[tracing::instrument(skip(self))]
    pub async fn check(&self, organization: Uuid, workflow: &str) -> Result<bool, ReconcileError> {
        let Some(closed) = self.temporal.closed_run(workflow, CHECK_TIMEOUT).await? else {
            return Ok(false);
        };
        if closed.status == WorkflowStatus::Completed {
            return Ok(false);
        }
        let stats = RequestStats::new(Arc::clone(&self.metrics));
        let details = store::details(&self.db, &stats, &[(organization, workflow.to_owned())])
            .await?
            .remove(&organization)
            .unwrap_or_default();
        // The step that was running when it stopped.
        let step = steps::steps(&details.events, usize::MAX, BootstrapState::Running)
            .iter()
            .zip(Step::ALL)
            .find(|(s, _)| s.status == StepStatus::Running)
            .map_or(Step::Complete, |(_, step)| step);
        let status = closed.status.temporal_name();
        let reason = match &closed.reason {
            Some(reason) => format!(
                "{status}: {}",
                reason.chars().take(MAX_REASON_CHARS).collect::<String>()
            ),
            None => status.to_owned(),
        };
        let payload = BootstrapFailed {
            organization_id: organization,
            step,
            reason,
            at: closed.closed_at,
            close_status: Some(status.to_owned()),
        };
        let metadata = EventMetadata::bff_run(
            workflow,
            &self.workflow_type,
            &closed.run_id,
            closed.closed_at,
        );
        let event = NewEvent::new(
            event_id(&[workflow, &closed.run_id, "organization.bootstrap.failed"]),
            &payload,
            ("organization", organization),
            metadata,
        );
        if events::append(&self.db, &[event]).await? > 0 {
            tracing::warn!(%organization, temporal.close_status = status, "the bootstrap's workflow closed without writing its end; recorded as failed");
        }
        Ok(true)
    }

    /// One reconciler pass over the bootstraps the projection shows under way. Returns how
    /// many were found closed.
    #[tracing::instrument(skip_all)]
    pub async fn reconcile(&self) -> Result<usize, ReconcileError> {
        let stats = RequestStats::new(Arc::clone(&self.metrics));
        let open = store::open_bootstraps(&self.db, &stats, RECONCILE_BATCH).await?;
        let mut closed = 0;
        for (organization, workflow) in self.temporal.not_running(open, CHECK_TIMEOUT).await? {
            if self.check(organization, &workflow).await? {
                closed += 1;
            }
        }
        Ok(closed)
    }
}
