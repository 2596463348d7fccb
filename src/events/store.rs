//! The one statement that writes to `domain_events`.

use serde_json::Value;
use sqlx::{Postgres, QueryBuilder};

use super::NewEvent;
use crate::db;

/// Appends `events` in one statement, in order; events already stored are skipped. Returns how
/// many were new. One multi-row INSERT is atomic: all of them (and what their triggers write)
/// or none.
#[tracing::instrument(skip_all, fields(events.count = events.len()))]
pub async fn append<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    events: &[NewEvent],
) -> Result<u64, sqlx::Error> {
    if events.is_empty() {
        return Ok(0);
    }
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new(db::sql(
        "INSERT INTO public.domain_events (id, event_type, aggregate_type, aggregate_id, event_data, \
         event_metadata, created_at, created_by) ",
    ));
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
