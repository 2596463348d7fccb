//! The release activities: each records status changes (or the new release) as domain events.

// The SDK's macros generate an undocumented constant per activity method.
#![allow(missing_docs)]

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use sqlx::PgPool;
use temporalio_macros::activities;
use temporalio_sdk::{
    ApplicationFailure,
    activities::{ActivityContext, ActivityError},
};

use super::{Created, DeployApp, DeployOutcome, StatusChange};
use crate::{
    contracts::{
        events::{CreatedNode, NodeStatusChanged, ReleaseCreated},
        ids::{EntityId, Kind},
        release::RolloutStatus,
    },
    events::NewEvent,
    worker::events::{event, record},
};

/// The release activities: they write events.
pub struct ReleaseActivities {
    db: PgPool,
}

impl ReleaseActivities {
    /// Activities writing to `db`.
    pub fn new(db: PgPool) -> Self {
        Self { db }
    }
}

/// A status-change event, with an ID fixed by (run, activity, position) so retries add nothing.
fn status_event(ctx: &ActivityContext, index: usize, change: &StatusChange) -> Option<NewEvent> {
    let id = EntityId::parse(&change.id).ok()?;
    let payload = NodeStatusChanged {
        id: change.id.clone(),
        release_id: id.release_id().to_string(),
        kind: id.kind(),
        status: change.status,
        at: change.at,
        message: change.message.clone(),
    };
    Some(event(
        ctx,
        &index.to_string(),
        &payload,
        (id.kind().as_str(), id.aggregate_id()),
        change.at,
    ))
}

#[activities]
impl ReleaseActivities {
    /// Records the release, its whole tree and its start (`release.created`).
    #[activity]
    pub async fn record_created(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: Created,
    ) -> Result<(), ActivityError> {
        let release = EntityId::parse(&input.tree.id)
            .map_err(|e| ActivityError::application(ApplicationFailure::non_retryable(e)))?;
        let payload = ReleaseCreated {
            id: input.tree.id.clone(),
            key: input.tree.key.clone(),
            name: input.tree.name.clone(),
            workflow_id: ctx.info().workflow_id.clone(),
            at: input.at,
            nodes: CreatedNode::all(&input.tree),
        };
        let created = event(
            &ctx,
            "created",
            &payload,
            (Kind::Release.as_str(), release.aggregate_id()),
            input.at,
        );
        record(&self.db, &[created]).await
    }

    /// Records status changes of waves, clusters, bundles and the release.
    #[activity]
    pub async fn record_statuses(
        self: Arc<Self>,
        ctx: ActivityContext,
        changes: Vec<StatusChange>,
    ) -> Result<(), ActivityError> {
        let batch: Vec<NewEvent> = changes
            .iter()
            .enumerate()
            .filter_map(|(i, change)| status_event(&ctx, i, change))
            .collect();
        record(&self.db, &batch).await
    }

    /// Deploys one app (simulated): records `IN_PROGRESS`, waits `stepMillis`, then records
    /// `SUCCEEDED`, or `FAILED` when the spec lists the app in `failApps`.
    #[activity]
    pub async fn deploy_app(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: DeployApp,
    ) -> Result<DeployOutcome, ActivityError> {
        let started_at = Utc::now();
        let started = StatusChange {
            id: input.id.clone(),
            status: RolloutStatus::InProgress,
            at: started_at,
            message: None,
        };
        record(
            &self.db,
            &status_event(&ctx, 0, &started)
                .into_iter()
                .collect::<Vec<_>>(),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(input.step_millis)).await;
        // Strictly after the start, so replaying by time can never reorder the two.
        let completed_at = Utc::now().max(started_at + chrono::Duration::microseconds(1));
        let (status, message) = if input.fail {
            (
                RolloutStatus::Failed,
                Some(format!(
                    "deploy of version {} failed (simulated)",
                    input.version
                )),
            )
        } else {
            (RolloutStatus::Succeeded, None)
        };
        let finished = StatusChange {
            id: input.id,
            status,
            at: completed_at,
            message: message.clone(),
        };
        record(
            &self.db,
            &status_event(&ctx, 1, &finished)
                .into_iter()
                .collect::<Vec<_>>(),
        )
        .await?;
        Ok(DeployOutcome {
            status,
            started_at,
            completed_at,
            message,
        })
    }
}
