//! How the worker's activities write their events: an ID fixed by where the event was produced
//! (so a retried activity writes nothing new), metadata naming the workflow and activity.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use temporalio_sdk::{
    ApplicationFailure,
    activities::{ActivityContext, ActivityError, ActivityInfo},
};

use crate::{
    contracts::events::{EventMetadata, EventPayload},
    events::{self, Aggregate, NewEvent},
};

/// Metadata of an event written by an activity.
pub fn metadata(info: &ActivityInfo, at: DateTime<Utc>) -> EventMetadata {
    EventMetadata {
        workflow_id: info.workflow_id.clone(),
        workflow_run_id: info.workflow_run_id.clone(),
        workflow_type: info.workflow_type.clone(),
        activity_id: Some(info.activity_id.clone()),
        timestamp: at,
        source: "temporal-bff-worker".into(),
        user_id: None,
        correlation_id: info.workflow_id.clone(),
        traceparent: None,
    }
}

/// The event of `payload` written by the activity of `ctx`; `discriminator` keeps several
/// events of one activity apart while keeping each one's ID stable across retries.
pub fn event(
    ctx: &ActivityContext,
    discriminator: &str,
    payload: &impl EventPayload,
    aggregate: Aggregate<'_>,
    at: DateTime<Utc>,
) -> NewEvent {
    let info = ctx.info();
    let id = events::event_id(&[
        info.workflow_run_id.as_deref().unwrap_or_default(),
        &info.activity_id,
        discriminator,
    ]);
    NewEvent::new(id, payload, aggregate, metadata(info, at))
}

/// Appends `events`; a database failure is retryable (the database may come back).
pub async fn record(db: &PgPool, events: &[NewEvent]) -> Result<(), ActivityError> {
    events::append(db, events)
        .await
        .map(drop)
        .map_err(|e| ActivityError::application(ApplicationFailure::new(e)))
}
