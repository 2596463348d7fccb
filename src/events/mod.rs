//! Writing to the event store (`domain_events`).
//!
//! Activities are retried by Temporal and replayed workflows re-run them, so every event gets a
//! deterministic ID derived from where it was produced (workflow run, activity, position) and
//! is inserted with `ON CONFLICT DO NOTHING`: a second attempt writes nothing new.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

/// Namespace of deterministic event IDs (fixed forever).
const EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x0b7a_51e4_3c8d_4f2a_8e6b_9d1c_2a3f_4e5d);

/// Where an event came from, stored as `event_metadata`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// Temporal workflow ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<String>,
    /// Temporal run ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_run_id: Option<String>,
    /// Workflow type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_type: Option<String>,
    /// Activity ID within the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity_id: Option<String>,
    /// When the event happened (RFC 3339).
    pub timestamp: DateTime<Utc>,
    /// Which component wrote it.
    pub source: String,
    /// The user who caused it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Ties events of one request or workflow together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

impl EventMetadata {
    /// Metadata of an event written by a Temporal activity.
    pub fn from_activity(
        info: &temporalio_sdk::activities::ActivityInfo,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            workflow_id: info.workflow_id.clone(),
            workflow_run_id: info.workflow_run_id.clone(),
            workflow_type: info.workflow_type.clone(),
            activity_id: Some(info.activity_id.clone()),
            timestamp: at,
            source: "temporal-bff-worker".into(),
            user_id: None,
            correlation_id: info.workflow_id.clone(),
        }
    }
}

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Deterministic ID (see [`event_id`]).
    pub id: Uuid,
    /// e.g. `organization.created`.
    pub event_type: String,
    /// e.g. `organization`.
    pub aggregate_type: String,
    /// The aggregate's UUID.
    pub aggregate_id: Uuid,
    /// Payload.
    pub data: Value,
    /// Provenance.
    pub metadata: EventMetadata,
    /// When it happened; stored as `created_at` so projections replay exactly.
    pub created_at: DateTime<Utc>,
    /// The user who caused it.
    pub created_by: Option<Uuid>,
}

/// A deterministic event ID from the parts that identify where it was produced.
pub fn event_id(parts: &[&str]) -> Uuid {
    Uuid::new_v5(&EVENT_NAMESPACE, parts.join("\u{1f}").as_bytes())
}

/// Appends `events` in one statement, in order; events already stored are skipped.
/// Returns how many were new.
#[tracing::instrument(skip_all, fields(events.count = events.len()))]
pub async fn append<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    events: &[NewEvent],
) -> Result<u64, sqlx::Error> {
    if events.is_empty() {
        return Ok(0);
    }
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new(
        "INSERT INTO domain_events (id, event_type, aggregate_type, aggregate_id, event_data, \
         event_metadata, created_at, created_by) ",
    );
    query.push_values(events, |mut row, event| {
        let metadata = serde_json::to_value(&event.metadata).unwrap_or(Value::Null);
        row.push_bind(event.id)
            .push_bind(&event.event_type)
            .push_bind(&event.aggregate_type)
            .push_bind(event.aggregate_id)
            .push_bind(&event.data)
            .push_bind(metadata)
            .push_bind(event.created_at)
            .push_bind(event.created_by);
    });
    query.push(" ON CONFLICT (id) DO NOTHING");
    Ok(query.build().execute(executor).await?.rows_affected())
}
