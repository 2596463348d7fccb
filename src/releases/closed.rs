//! The truth about a release whose workflow closed without writing its own end.
//!
//! Terminating a workflow (or letting it time out) runs no workflow code, so no event says the
//! rollout stopped, and the projection would show it `IN_PROGRESS` for good. When a read finds a
//! running release's live tree missing, [`Closes::suspect`] asks Temporal, in the background,
//! whether the workflow's latest run closed; a low-rate reconciler ([`Closes::reconcile`], run by
//! `server`) does the same for open releases nobody reads, with one visibility query per pass. Either way the
//! close is recorded as a `release.workflow_closed` event carrying Temporal's close status,
//! reason and time, which the projection folds (the release ends `CANCELLED` or `FAILED`).
//!
//! Several replicas may see the same close: the event's ID is derived from the closed run, so
//! it is stored once. The event's data and time are Temporal's, so a replay is exact.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use sqlx::PgPool;

use super::store::{self, ReleaseRow};
use crate::{
    contracts::{
        events::{EventMetadata, ReleaseWorkflowClosed},
        ids::EntityId,
    },
    error::ReconcileError,
    events::{self, NewEvent, event_id},
    metrics::{Metrics, RequestStats},
    temporal::TemporalHandle,
};

/// A release suspected by reads is checked at most once per this.
const SUSPECT_EVERY: Duration = Duration::from_secs(10);
/// Open releases one reconciler pass looks at.
const RECONCILE_BATCH: i64 = 200;
/// How long one check may wait for Temporal.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Finds and records closes.
pub struct Closes {
    db: PgPool,
    temporal: TemporalHandle,
    metrics: Arc<Metrics>,
    checked: Mutex<HashMap<String, Instant>>,
}

impl Closes {
    /// Checks through `temporal`, records in `db`.
    pub fn new(db: PgPool, temporal: TemporalHandle, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            db,
            temporal,
            metrics,
            checked: Mutex::new(HashMap::new()),
        })
    }

    /// A read found `row` open in the projection but could not read its workflow live:
    /// checks in the background whether the workflow closed (at most once per release per
    /// [`SUSPECT_EVERY`]), without holding the read up.
    pub fn suspect(self: &Arc<Self>, row: &ReleaseRow) {
        {
            let mut checked = match self.checked.lock() {
                Ok(checked) => checked,
                Err(poisoned) => poisoned.into_inner(),
            };
            checked.retain(|_, at| at.elapsed() < SUSPECT_EVERY);
            if checked.contains_key(&row.id) {
                return;
            }
            checked.insert(row.id.clone(), Instant::now());
        }
        let closes = Arc::clone(self);
        let (release, workflow) = (row.id.clone(), row.workflow_id.clone());
        tokio::spawn(async move {
            if let Err(error) = closes.check(&release, &workflow).await {
                tracing::info!(%error, release.id = %release, "cannot tell whether the release's workflow closed");
            }
        });
    }

    /// Checks release `release`'s workflow; records its close if its latest run closed.
    /// Returns whether it closed.
    #[tracing::instrument(skip(self))]
    pub async fn check(&self, release: &str, workflow: &str) -> Result<bool, ReconcileError> {
        let Some(closed) = self.temporal.closed_run(workflow, CHECK_TIMEOUT).await? else {
            return Ok(false);
        };
        let payload = ReleaseWorkflowClosed {
            id: release.to_owned(),
            workflow_id: workflow.to_owned(),
            run_id: closed.run_id.clone(),
            close_status: closed.status.temporal_name().to_owned(),
            reason: closed.reason,
            at: closed.closed_at,
        };
        let aggregate = EntityId::parse(release)
            .map(|id| id.aggregate_id())
            .unwrap_or_else(|_| events::event_id(&[release]));
        let metadata = EventMetadata::bff_run(
            workflow,
            "ReleaseWorkflow",
            &closed.run_id,
            closed.closed_at,
        );
        let event = NewEvent::new(
            event_id(&[workflow, &closed.run_id, "release.workflow_closed"]),
            &payload,
            ("release", aggregate),
            metadata,
        );
        let stored = events::append(&self.db, &[event]).await?;
        if stored > 0 {
            tracing::warn!(
                release.id = %release,
                temporal.close_status = payload.close_status,
                "the release's workflow closed without writing its end; recorded"
            );
        }
        Ok(true)
    }

    /// One reconciler pass: the open releases' workflows that a visibility query says are not
    /// running are checked one by one. Returns how many were found closed.
    #[tracing::instrument(skip_all)]
    pub async fn reconcile(&self) -> Result<usize, ReconcileError> {
        let stats = RequestStats::new(Arc::clone(&self.metrics));
        let open = store::open_releases(&self.db, &stats, RECONCILE_BATCH).await?;
        let mut closed = 0;
        for (release, workflow) in self.temporal.not_running(open, CHECK_TIMEOUT).await? {
            if self.check(&release, &workflow).await? {
                closed += 1;
            }
        }
        Ok(closed)
    }
}
