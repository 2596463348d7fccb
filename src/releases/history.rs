//! Each node's history: its status transitions, read from the event store (`domain_events`)
//! and folded into `from → to` steps, with who asked for the ones a user caused.
//!
//! A node's events are the `release[.{kind}].status_changed` events of its own aggregate
//! (`aggregate_type` its kind, `aggregate_id` the UUIDv5 of its global ID), which the event
//! store's `(aggregate_type, aggregate_id, created_at)` index finds directly. The control
//! requests (`release.paused`, `release.resumed`, `release.cancel_requested`) are events of the
//! release's aggregate; the transition each one caused carries the requester as its `actor`.
//! Only these fields are read from the payloads: nothing raw reaches an answer.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row as _};
use uuid::Uuid;

use crate::{
    contracts::{ids::EntityId, release::RolloutStatus},
    db,
    metrics::RequestStats,
};

/// One status transition of a node.
#[derive(Debug, Clone, PartialEq, async_graphql::SimpleObject)]
#[graphql(name = "NodeTransition")]
pub struct Transition {
    /// The status before (`null` for the node's first transition).
    pub from: Option<RolloutStatus>,
    /// The status after.
    pub to: RolloutStatus,
    /// When it changed.
    pub at: DateTime<Utc>,
    /// Which start of the node this belongs to: 1 from its first `IN_PROGRESS`, one more for
    /// each start after (a retry, a resume); `null` before it ever started.
    pub attempt: Option<i32>,
    /// Why, when the change says (a failure's message).
    pub message: Option<String>,
    /// Who asked, for a transition a user's control action caused (`PAUSED` after a pause,
    /// `IN_PROGRESS` after a resume, `CANCELLED` after a cancellation): the user's ID.
    pub actor: Option<String>,
}

/// An event as the fold reads it, in the store's order.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// The node's status changed.
    Status {
        status: RolloutStatus,
        at: DateTime<Utc>,
        message: Option<String>,
    },
    /// A user asked for a control action on the node's release.
    Control {
        causes: RolloutStatus,
        actor: Option<String>,
    },
}

/// Folds a node's events into its transitions: repeats of the same status are not
/// transitions, and each transition a control request causes takes its requester as actor.
pub(crate) fn fold(steps: impl IntoIterator<Item = Step>) -> Vec<Transition> {
    let mut transitions: Vec<Transition> = Vec::new();
    let mut asked: HashMap<RolloutStatus, Option<String>> = HashMap::new();
    let mut starts = 0;
    for step in steps {
        match step {
            Step::Control { causes, actor } => {
                asked.insert(causes, actor);
            }
            Step::Status {
                status,
                at,
                message,
            } => {
                let from = transitions.last().map(|t| t.to);
                if from == Some(status) {
                    continue;
                }
                if status == RolloutStatus::InProgress {
                    starts += 1;
                }
                // A resume causes IN_PROGRESS only out of PAUSED.
                let caused =
                    status != RolloutStatus::InProgress || from == Some(RolloutStatus::Paused);
                transitions.push(Transition {
                    from,
                    to: status,
                    at,
                    attempt: (starts > 0).then_some(starts),
                    message,
                    actor: caused.then(|| asked.remove(&status)).flatten().flatten(),
                });
            }
        }
    }
    transitions
}

/// A step with when it happened and its place in the store's order.
type Placed = (DateTime<Utc>, usize, Step);

/// The status a control request's event type causes, if it is one.
fn caused_by(event_type: &str) -> Option<RolloutStatus> {
    match event_type {
        "release.paused" => Some(RolloutStatus::Paused),
        "release.resumed" => Some(RolloutStatus::InProgress),
        "release.cancel_requested" => Some(RolloutStatus::Cancelled),
        _ => None,
    }
}

/// The histories of these nodes, in one statement over the event store.
#[tracing::instrument(skip_all, fields(nodes.count = ids.len()))]
pub async fn histories(
    pool: &PgPool,
    stats: &RequestStats,
    ids: &[EntityId],
) -> Result<HashMap<String, Vec<Transition>>, sqlx::Error> {
    // Each node's own aggregate, and its release's for the control requests.
    let mut aggregates: HashMap<Uuid, String> = HashMap::new();
    let mut releases: HashMap<Uuid, Vec<String>> = HashMap::new();
    for id in ids {
        aggregates.insert(id.aggregate_id(), id.to_string());
        releases
            .entry(id.release_id().aggregate_id())
            .or_default()
            .push(id.to_string());
    }
    let uuids: Vec<Uuid> = aggregates.keys().chain(releases.keys()).copied().collect();
    let _slot = stats.sql(1, "releases.histories").await;
    let rows = sqlx::query(db::sql(
        "SELECT aggregate_id, event_type, event_data ->> 'status', event_data ->> 'at', \
                event_data ->> 'message', event_metadata ->> 'user_id'
           FROM public.domain_events
          WHERE aggregate_type IN ('release', 'wave', 'cluster', 'bundle', 'app')
            AND aggregate_id = ANY($1)
            AND event_type IN ('release.status_changed', 'release.wave.status_changed',
                               'release.cluster.status_changed', 'release.bundle.status_changed',
                               'release.app.status_changed', 'release.paused', 'release.resumed',
                               'release.cancel_requested')
          ORDER BY created_at, id",
    ))
    .bind(&uuids)
    .fetch_all(pool)
    .await?;

    // Each node's steps with their time and place in the store, so the fold sees them in the
    // order they happened: events written in one statement share `created_at`.
    let mut steps: HashMap<&str, Vec<Placed>> = HashMap::new();
    for (place, row) in rows.iter().enumerate() {
        let aggregate: Uuid = row.try_get(0)?;
        let event_type: &str = row.try_get(1)?;
        // A payload that does not parse is not ours to show: it is left out.
        let Some(at) = row
            .try_get::<Option<&str>, _>(3)?
            .and_then(|at| at.parse::<DateTime<Utc>>().ok())
        else {
            continue;
        };
        if let Some(causes) = caused_by(event_type) {
            let actor: Option<String> = row.try_get(5)?;
            for node in releases.get(&aggregate).into_iter().flatten() {
                let control = Step::Control {
                    causes,
                    actor: actor.clone(),
                };
                steps.entry(node).or_default().push((at, place, control));
            }
            continue;
        }
        let status = row
            .try_get::<Option<&str>, _>(2)?
            .and_then(RolloutStatus::parse);
        if let (Some(node), Some(status)) = (aggregates.get(&aggregate), status) {
            let message = row.try_get(4)?;
            steps.entry(node).or_default().push((
                at,
                place,
                Step::Status {
                    status,
                    at,
                    message,
                },
            ));
        }
    }
    Ok(ids
        .iter()
        .map(|id| {
            let id = id.to_string();
            let mut node = steps.remove(id.as_str()).unwrap_or_default();
            node.sort_by_key(|(at, place, _)| (*at, *place));
            (id, fold(node.into_iter().map(|(_, _, step)| step)))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + i64::from(second), 0).unwrap_or_default()
    }

    fn status(status: RolloutStatus, second: u32) -> Step {
        Step::Status {
            status,
            at: at(second),
            message: (status == RolloutStatus::Failed).then(|| "boom".to_owned()),
        }
    }

    #[test]
    fn transitions_skip_repeats_count_starts_and_name_who_asked() {
        use RolloutStatus::*;
        let steps = vec![
            status(InProgress, 1),
            status(InProgress, 2),
            Step::Control {
                causes: Paused,
                actor: Some("alice".into()),
            },
            status(Paused, 3),
            Step::Control {
                causes: InProgress,
                actor: Some("bob".into()),
            },
            status(InProgress, 4),
            status(Failed, 5),
        ];

        let transitions = fold(steps);

        let shape: Vec<_> = transitions
            .iter()
            .map(|t| (t.from, t.to, t.attempt, t.actor.as_deref()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (None, InProgress, Some(1), None),
                (Some(InProgress), Paused, Some(1), Some("alice")),
                (Some(Paused), InProgress, Some(2), Some("bob")),
                (Some(InProgress), Failed, Some(2), None),
            ]
        );
        assert_eq!(transitions[3].message.as_deref(), Some("boom"));
        assert_eq!(transitions[3].at, at(5));
    }

    #[test]
    fn a_cancellation_asked_for_names_its_requester_on_every_node_it_cancels() {
        use RolloutStatus::*;
        let steps = vec![
            Step::Control {
                causes: Cancelled,
                actor: Some("carol".into()),
            },
            status(Cancelled, 1),
        ];

        let transitions = fold(steps);

        assert_eq!(transitions.len(), 1);
        assert_eq!(transitions[0].from, None);
        assert_eq!(transitions[0].attempt, None);
        assert_eq!(transitions[0].actor.as_deref(), Some("carol"));
    }
}
