//! Every SQL statement on the outbox (`workflow_queue_projection`) the dispatcher and the request
//! path run: claiming due rows (`FOR UPDATE SKIP LOCKED`, so replicas share the work), renewing,
//! rescheduling and giving back claims, and the backlog `/metrics` shows.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::{Delivery, Queued, Signal};
use crate::db;

/// A claimed row as stored.
#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    organization_id: Option<Uuid>,
    workflow_id: String,
    workflow_type: String,
    task_queue: String,
    workflow_input: Value,
    attempts: i32,
    action: String,
    release_id: Option<String>,
    traceparent: Option<String>,
}

impl From<Row> for Queued {
    fn from(row: Row) -> Self {
        let delivery = match (row.action.as_str(), row.organization_id, row.release_id) {
            ("start", Some(organization_id), _) => Some(Delivery::StartWorkflow {
                organization_id,
                workflow_type: row.workflow_type.clone(),
                task_queue: row.task_queue,
                input: row.workflow_input,
            }),
            ("pause", _, Some(release_id)) => Some(Delivery::Signal {
                release_id,
                signal: Signal::Pause,
            }),
            ("resume", _, Some(release_id)) => Some(Delivery::Signal {
                release_id,
                signal: Signal::Resume,
            }),
            ("cancel", _, Some(release_id)) => Some(Delivery::Cancel {
                release_id,
                reason: row.workflow_input["reason"].as_str().map(str::to_owned),
            }),
            _ => None,
        };
        Self {
            id: row.id,
            workflow_id: row.workflow_id,
            workflow_type: row.workflow_type,
            attempts: row.attempts,
            traceparent: row.traceparent,
            action: row.action,
            delivery,
        }
    }
}

/// After a failed delivery on the request path: one attempt made, due again at once.
#[tracing::instrument(skip_all)]
pub async fn schedule_retry(pool: &PgPool, id: Uuid, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query(db::sql(
        "UPDATE bff.workflow_queue_projection
            SET attempts = attempts + 1, last_error = $2, next_attempt_at = now(),
                updated_at = now()
          WHERE id = $1 AND status = 'pending'",
    ))
    .bind(id)
    .bind(reason)
    .execute(pool)
    .await
    .map(drop)
}

/// Claims up to `limit` due rows for dispatcher `instance` (and rows whose claim a crashed
/// replica left for a minute), counting an attempt on each.
#[tracing::instrument(skip_all)]
pub async fn claim(pool: &PgPool, instance: &str, limit: i64) -> Result<Vec<Queued>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(db::sql(
        "UPDATE bff.workflow_queue_projection q
            SET status = 'processing', claimed_by = $1, claimed_at = now(),
                attempts = q.attempts + 1, updated_at = now()
          WHERE q.id IN (
                SELECT id FROM bff.workflow_queue_projection
                 WHERE (status = 'pending' AND next_attempt_at <= now())
                    OR (status = 'processing' AND claimed_at < now() - interval '60 seconds')
                 ORDER BY next_attempt_at
                 LIMIT $2
                 FOR UPDATE SKIP LOCKED)
          RETURNING q.id, q.organization_id, q.workflow_id, q.workflow_type, q.task_queue,
                    q.workflow_input, q.attempts, q.action, q.release_id,
                    (SELECT e.event_metadata ->> 'traceparent'
                       FROM public.domain_events e WHERE e.id = q.event_id) AS traceparent",
    ))
    .bind(instance)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Queued::from).collect())
}

/// Renews `instance`'s claim on row `id`; `false` if it was lost.
#[tracing::instrument(skip_all)]
pub async fn renew_claim(pool: &PgPool, instance: &str, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query(db::sql(
        "UPDATE bff.workflow_queue_projection SET claimed_at = now()
          WHERE id = $1 AND claimed_by = $2 AND status = 'processing'",
    ))
    .bind(id)
    .bind(instance)
    .execute(pool)
    .await
    .map(|done| done.rows_affected() == 1)
}

/// Gives back every row `instance` still holds (it is stopping): due at once, for another
/// replica, and the interrupted attempt not counted. Returns how many.
#[tracing::instrument(skip_all)]
pub async fn give_back(pool: &PgPool, instance: &str) -> Result<u64, sqlx::Error> {
    sqlx::query(db::sql(
        "UPDATE bff.workflow_queue_projection
            SET status = 'pending', claimed_by = NULL, claimed_at = NULL,
                attempts = greatest(attempts - 1, 0), next_attempt_at = now(), updated_at = now()
          WHERE claimed_by = $1 AND status = 'processing'",
    ))
    .bind(instance)
    .execute(pool)
    .await
    .map(|done| done.rows_affected())
}

/// When the next pending row is due, if any.
#[tracing::instrument(skip_all)]
pub async fn next_due(pool: &PgPool) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(db::sql(
        "SELECT min(next_attempt_at) FROM bff.workflow_queue_projection WHERE status = 'pending'",
    ))
    .fetch_one(pool)
    .await
}

/// Undelivered rows (pending or being dispatched) per action: how many, and the age in seconds
/// of the oldest, for `/metrics`.
#[tracing::instrument(skip_all)]
pub async fn backlog(pool: &PgPool) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
    sqlx::query_as(db::sql(
        "SELECT action, count(*),
                COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::bigint
           FROM bff.workflow_queue_projection
          WHERE status IN ('pending', 'processing')
          GROUP BY action",
    ))
    .fetch_all(pool)
    .await
}

/// Puts a row `instance` claimed back to `pending`, due after `wait_secs`, with a readable
/// `reason`; `attempts_delta` corrects the claim's attempt count (-1: it was no real attempt).
#[tracing::instrument(skip_all)]
pub async fn reschedule(
    pool: &PgPool,
    instance: &str,
    id: Uuid,
    reason: &str,
    wait_secs: f64,
    attempts_delta: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query(db::sql(
        "UPDATE bff.workflow_queue_projection
            SET status = 'pending', claimed_by = NULL, last_error = $3,
                attempts = greatest(attempts + $5, 0),
                next_attempt_at = now() + make_interval(secs => $4), updated_at = now()
          WHERE id = $1 AND claimed_by = $2 AND status = 'processing'",
    ))
    .bind(id)
    .bind(instance)
    .bind(reason)
    .bind(wait_secs)
    .bind(attempts_delta)
    .execute(pool)
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(action: &str, organization: Option<Uuid>, release: Option<&str>) -> Row {
        Row {
            id: Uuid::nil(),
            organization_id: organization,
            workflow_id: "w".into(),
            workflow_type: "t".into(),
            task_queue: "q".into(),
            workflow_input: serde_json::json!({ "reason": "because" }),
            attempts: 1,
            action: action.into(),
            release_id: release.map(str::to_owned),
            traceparent: None,
        }
    }

    #[test]
    fn a_row_this_service_would_not_write_delivers_nothing() {
        for foreign in [
            row("terminate", None, Some("release:r")),
            row("start", None, None),
            row("pause", Some(Uuid::nil()), None),
            row("cancel", None, None),
            row("", None, None),
        ] {
            let action = foreign.action.clone();

            let queued = Queued::from(foreign);

            assert_eq!(queued.delivery, None, "{action:?}");
            assert_eq!(queued.action, action, "the label stays what was stored");
        }
    }

    #[test]
    fn each_action_this_service_writes_becomes_its_delivery() {
        let cancel = Queued::from(row("cancel", None, Some("release:r")));
        let resume = Queued::from(row("resume", None, Some("release:r")));

        assert_eq!(
            cancel.delivery,
            Some(Delivery::Cancel {
                release_id: "release:r".into(),
                reason: Some("because".into())
            })
        );
        assert_eq!(resume.delivery.map(|d| d.action()), Some("resume"));
    }
}
