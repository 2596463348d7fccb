//! Writing to the event store (`domain_events`).
//!
//! Activities are retried by Temporal and replayed workflows re-run them, so events written by
//! activities get a deterministic ID derived from where they were produced (workflow run,
//! activity, position) and are inserted with `ON CONFLICT DO NOTHING`: a second attempt writes
//! nothing new. The payload types themselves are contracts (`contracts::events`).

pub mod store;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

pub use self::store::append;
use crate::contracts::events::{EventMetadata, EventPayload};

/// Namespace of deterministic event IDs (fixed forever).
const EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x0b7a_51e4_3c8d_4f2a_8e6b_9d1c_2a3f_4e5d);

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Deterministic ID (see [`event_id`]) or random for one-off events.
    pub id: Uuid,
    /// e.g. `organization.created`.
    pub event_type: String,
    /// e.g. `organization`.
    pub aggregate_type: String,
    /// The aggregate's UUID.
    pub aggregate_id: Uuid,
    pub data: Value,
    pub metadata: EventMetadata,
    /// When it happened; stored as `created_at` so projections replay exactly.
    pub created_at: DateTime<Utc>,
    /// The user who caused it.
    pub created_by: Option<Uuid>,
}

/// Which aggregate an event belongs to: its type and ID.
pub type Aggregate<'a> = (&'a str, Uuid);

impl NewEvent {
    /// An event of `payload`'s type about `aggregate`, happening at `metadata.timestamp`.
    pub fn new(
        id: Uuid,
        payload: &impl EventPayload,
        (aggregate_type, aggregate_id): Aggregate<'_>,
        metadata: EventMetadata,
    ) -> Self {
        Self {
            id,
            event_type: payload.event_type().to_owned(),
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id,
            // A payload is plain data: serializing it cannot fail.
            data: serde_json::to_value(payload).unwrap_or(Value::Null),
            created_at: metadata.timestamp,
            metadata,
            created_by: None,
        }
    }

    /// The same event, caused by user `created_by`.
    pub fn by(mut self, created_by: Option<Uuid>) -> Self {
        self.created_by = created_by;
        self
    }
}

/// A deterministic event ID from the parts that identify where it was produced.
pub fn event_id(parts: &[&str]) -> Uuid {
    Uuid::new_v5(&EVENT_NAMESPACE, parts.join("\u{1f}").as_bytes())
}
