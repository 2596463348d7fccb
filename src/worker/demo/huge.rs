//! The huge release of `demo --large`: 100 waves × 10 clusters × 1 bundle × 99 apps, 100,101
//! nodes. The reference worker cannot roll it out in one workflow: one activity per app is
//! about 400,000 history events, past Temporal's limit of 51,200, and its spec and
//! `release.created` pass the 2 MB payload limit. So it is written into the event store the
//! way another team's worker that shards its rollout would: `release.created`, then the status
//! changes of a rollout that failed in its fourth wave, in the reference worker's order and
//! with its messages.
//!
//! Every event's ID is fixed by the release, the node and the status, so writing the release
//! again adds nothing.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;

use crate::{
    contracts::{
        events::{CreatedNode, EventMetadata, EventPayload, NodeStatusChanged, ReleaseCreated},
        ids::{EntityId, Key, Kind},
        release::{Node, ReleaseSpec, RolloutOptions, RolloutStatus},
    },
    events::{self, NewEvent},
};

/// The huge release's shape: waves × clusters × apps (one bundle per cluster).
pub const SHAPE: (usize, usize, usize) = (100, 10, 99);

/// The deploy that fails, as (wave, cluster, app) from 0: app 13 of cluster 7 in wave 4. The
/// waves before it succeed; the other clusters of its wave run to their end, as the reference
/// worker's do.
const FAILS_AT: (usize, usize, usize) = (3, 6, 12);
/// How long each simulated deploy takes.
const DEPLOY: TimeDelta = TimeDelta::seconds(2);
/// The gap between two changes that follow each other, so that each node's changes, and a
/// parent's before its children's, keep their order in a replay by time.
const TICK: TimeDelta = TimeDelta::milliseconds(1);
/// Most events in one INSERT: 8 parameters each, under Postgres's 65,535.
const BATCH: usize = 4_000;

/// Writes release `key` of `shape`, rolled out from `started` until the deploy at
/// [`FAILS_AT`] fails (to its end if the shape has no such app). Returns how many events were
/// new.
pub async fn write(
    db: &PgPool,
    key: &Key,
    name: &str,
    shape: (usize, usize, usize),
    started: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let tree = ReleaseSpec::synthetic(key, name, shape, RolloutOptions::default()).pending_tree();
    let mut events = rollout(&tree, started);
    // In time order, as a worker writes them: clusters roll out side by side.
    events.sort_by_key(|event| event.created_at);
    let mut stored = 0;
    for batch in events.chunks(BATCH) {
        // Folding `release.created` of 100,101 nodes takes about 15 s, past the service's
        // statement timeout, which this one-off write is not bound by.
        let mut tx = db.begin().await?;
        sqlx::query("SET LOCAL statement_timeout = 0")
            .execute(&mut *tx)
            .await?;
        stored += events::append(&mut *tx, batch).await?;
        tx.commit().await?;
    }
    Ok(stored)
}

/// Every event of the rollout of `tree`, cluster by cluster.
fn rollout(tree: &Node, started: DateTime<Utc>) -> Vec<NewEvent> {
    use RolloutStatus::{Failed, InProgress, Succeeded};
    let mut log = Log::default();
    log.created(tree, started);
    let mut now = started;
    for (w, wave) in tree.waves.iter().flatten().enumerate() {
        now += TICK;
        log.status(wave, InProgress, now, None);
        let mut wave_end = now;
        let mut failure = None;
        for (c, cluster) in wave.clusters.iter().flatten().enumerate() {
            let Some(bundle) = cluster.bundle.as_deref() else {
                continue;
            };
            let mut at = now + TICK;
            log.status(cluster, InProgress, at, None);
            log.status(bundle, InProgress, at, None);
            let mut failed = None;
            for (a, app) in bundle.apps.iter().flatten().enumerate() {
                at += TICK;
                log.status(app, InProgress, at, None);
                at += DEPLOY;
                if (w, c, a) == FAILS_AT {
                    let version = app.version.as_deref().unwrap_or_default();
                    let why = format!("deploy of version {version} failed (simulated)");
                    log.status(app, Failed, at, Some(why.clone()));
                    failed = Some(format!("app {} failed: {why}", app.key));
                    break;
                }
                log.status(app, Succeeded, at, None);
            }
            at += TICK;
            let status = if failed.is_some() { Failed } else { Succeeded };
            log.status(bundle, status, at, failed.clone());
            log.status(cluster, status, at, failed.clone());
            failure = failure.or(failed);
            wave_end = wave_end.max(at);
        }
        now = wave_end + TICK;
        if let Some(message) = failure {
            log.status(wave, Failed, now, Some(message.clone()));
            log.status(tree, Failed, now + TICK, Some(message));
            return log.events;
        }
        log.status(wave, Succeeded, now, None);
    }
    log.status(tree, Succeeded, now + TICK, None);
    log.events
}

/// The events of one release, as they are produced.
#[derive(Default)]
struct Log {
    events: Vec<NewEvent>,
}

impl Log {
    /// `release.created` of the whole of `tree`, which also starts it.
    fn created(&mut self, tree: &Node, at: DateTime<Utc>) {
        let payload = ReleaseCreated {
            id: tree.id.clone(),
            key: tree.key.clone(),
            name: tree.name.clone(),
            workflow_id: None,
            at,
            nodes: CreatedNode::all(tree),
        };
        self.push(&tree.id, "created", &payload, Kind::Release, at);
    }

    /// `node` changed to `status` at `at`.
    fn status(
        &mut self,
        node: &Node,
        status: RolloutStatus,
        at: DateTime<Utc>,
        message: Option<String>,
    ) {
        let Ok(id) = EntityId::parse(&node.id) else {
            return;
        };
        let payload = NodeStatusChanged {
            id: node.id.clone(),
            release_id: id.release_id().to_string(),
            kind: id.kind(),
            status,
            at,
            message,
        };
        self.push(&node.id, status.as_str(), &payload, id.kind(), at);
    }

    fn push(
        &mut self,
        id: &str,
        change: &str,
        payload: &impl EventPayload,
        kind: Kind,
        at: DateTime<Utc>,
    ) {
        let Ok(entity) = EntityId::parse(id) else {
            return;
        };
        let metadata = EventMetadata {
            timestamp: at,
            source: "temporal-bff-demo".into(),
            correlation_id: Some(entity.release_id().to_string()),
            ..EventMetadata::default()
        };
        self.events.push(NewEvent::new(
            events::event_id(&["demo-huge", id, change]),
            payload,
            (kind.as_str(), entity.aggregate_id()),
            metadata,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statuses(shape: (usize, usize, usize)) -> Vec<(String, String)> {
        let key = Key::parse("huge-test").expect("a valid key");
        let tree =
            ReleaseSpec::synthetic(&key, "Huge", shape, RolloutOptions::default()).pending_tree();
        rollout(&tree, DateTime::<Utc>::UNIX_EPOCH)
            .into_iter()
            .skip(1)
            .map(|e| {
                let id = e.data["id"].as_str().unwrap_or_default().to_owned();
                (id, e.data["status"].as_str().unwrap_or_default().to_owned())
            })
            .collect()
    }

    #[test]
    fn the_rollout_stops_after_the_wave_with_the_failed_deploy_and_fails_the_release() {
        let changes = statuses((5, 8, 14));

        let last = changes.last().expect("the release ends");
        assert_eq!(last, &("release:huge-test".into(), "FAILED".into()));
        assert!(
            !changes.iter().any(|(id, _)| id.contains("/wave-5")),
            "no wave after the failed one starts"
        );
        let failed: Vec<&str> = changes
            .iter()
            .filter(|(_, status)| status == "FAILED")
            .map(|(id, _)| id.as_str())
            .collect();
        assert_eq!(
            failed,
            [
                "app:huge-test/wave-4/cluster-7/web-services/app-13",
                "bundle:huge-test/wave-4/cluster-7/web-services",
                "cluster:huge-test/wave-4/cluster-7",
                "wave:huge-test/wave-4",
                "release:huge-test",
            ]
        );
    }

    #[test]
    fn a_shape_without_the_failing_deploy_rolls_out_to_the_end() {
        let changes = statuses((2, 2, 3));

        assert_eq!(changes.len(), 2 * (2 + 2 * (2 + 2 + 3 * 2)) + 1);
        assert!(changes.iter().all(|(_, status)| status != "FAILED"));
        assert_eq!(
            changes.last(),
            Some(&("release:huge-test".into(), "SUCCEEDED".into()))
        );
    }
}
