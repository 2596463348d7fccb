//! Release subscriptions: `releaseUpdated` (one release, its whole tree if asked),
//! `releaseTreeChanged` (one release as a snapshot, then only what changed) and
//! `releasesChanged` (which release changed, for list views). All are served from the
//! replica's hub (`releases::hub`): a change is read, and diffed, once and shared by every
//! subscriber.

use std::sync::Arc;

use async_graphql::{Context, ID, ResultExt, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures::Stream;

use super::{Entity, HierarchyEntity, Release, ReleaseFilter, parse_release_id};
use crate::{
    error::ApiError,
    releases::{
        hub::{CatchUp, ReleaseHub, Snapshot, State},
        tree::TreeChange,
    },
};

/// A release that changed, for a list view to update itself.
#[derive(SimpleObject)]
pub struct ReleaseChange {
    /// The release as it is now (its row: status, progress, times).
    pub release: Release,
    /// When the change happened (the time of the last event folded into it).
    pub at: DateTime<Utc>,
}

/// One message of `releaseTreeChanged`: a snapshot or a diff.
#[derive(SimpleObject)]
pub struct ReleaseTreeChange {
    /// One more than the message before. Subscribe again with the last revision you applied
    /// as `since` to get only what you missed.
    pub revision: i32,
    /// The release with your whole selection: on the first message, when nodes came or went,
    /// and when `since` is too old to replay (or from another replica). `null` on a diff.
    pub snapshot: Option<Release>,
    /// On a diff: each node that changed, in tree order, as it is now, with your selected
    /// fields; the release itself when its own fields or roll-up moved. A node's running
    /// `duration` alone is not a change (derive it from `startedAt`). Empty on a snapshot.
    pub changed: Vec<HierarchyEntity>,
}

impl ReleaseTreeChange {
    fn whole(revision: i64, snapshot: &Snapshot) -> Self {
        Self {
            revision: revision_out(revision),
            snapshot: Some(Release::Tree(Entity::root(Arc::clone(&snapshot.tree)))),
            changed: Vec::new(),
        }
    }

    /// The messages that take a client at revision `at` (`None`: nothing yet) to
    /// `snapshot`'s: one per revision it missed, each with its nodes as they are now, or one
    /// snapshot if those revisions are not all kept.
    fn catch_up(at: Option<i64>, snapshot: &Snapshot) -> Vec<Self> {
        match snapshot.missed_since(at) {
            CatchUp::Nothing => Vec::new(),
            CatchUp::Whole => vec![Self::whole(snapshot.revision, snapshot)],
            CatchUp::Replay(missed) => missed
                .into_iter()
                .map(|(revision, change)| match change {
                    TreeChange::Reshaped => Self::whole(revision, snapshot),
                    TreeChange::Nodes(ids) => Self {
                        revision: revision_out(revision),
                        snapshot: None,
                        changed: ids
                            .iter()
                            .filter_map(|id| Entity::of(Arc::clone(&snapshot.tree), id))
                            .map(Entity::into_object)
                            .collect(),
                    },
                })
                .collect(),
        }
    }
}

/// The messages `found` makes of each read of release `id` the hub publishes, the newest
/// read each time (a slow subscriber skips reads, never queues them); `NOT_FOUND`, then the
/// end, if there is no such release.
fn read_by_read<T: Send + 'static>(
    hub: Arc<ReleaseHub>,
    id: String,
    mut found: impl FnMut(&ReleaseHub, Snapshot) -> Vec<T> + Send + 'static,
) -> impl Stream<Item = async_graphql::Result<T>> {
    let mut states = hub.watch(&id);
    let missing = format!("no release {id}");
    async_stream::stream! {
        loop {
            let state = states.borrow_and_update().clone();
            match state {
                State::Pending => {}
                State::Missing => {
                    yield Err(ApiError::NotFound(missing)).extend();
                    break;
                }
                State::Found(snapshot) => {
                    for message in found(&hub, snapshot) {
                        yield Ok(message);
                    }
                }
            }
            if states.changed().await.is_err() {
                break;
            }
        }
    }
}

/// A revision as an `Int` (they start below 2^30 and grow by one per change of a release).
fn revision_out(revision: i64) -> i32 {
    i32::try_from(revision).unwrap_or(i32::MAX)
}

/// The release subscriptions.
#[derive(Default)]
pub struct ReleasesSubscription;

#[Subscription]
impl ReleasesSubscription {
    /// Release `id` now, then again after every change: at most once per
    /// `HIERARCHY_CACHE_MS` while it runs, and always its final state. A slow client gets
    /// the newest state, not every one in between. `NOT_FOUND` if there is no such release.
    async fn release_updated(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Release>> + use<>> {
        let id = parse_release_id(&id)?;
        let hub = Arc::clone(ctx.data::<Arc<ReleaseHub>>()?);
        let mut last_seq = None;
        Ok(read_by_read(hub, id.to_string(), move |hub, snapshot| {
            if let Some(last) = last_seq {
                for _ in last + 1..snapshot.seq {
                    hub.metrics().dropped_push();
                }
            }
            last_seq = Some(snapshot.seq);
            vec![Release::Tree(Entity::root(snapshot.tree))]
        }))
    }

    /// Release `id` as a snapshot of the selection, then only what changed: each message
    /// carries the nodes whose fields or roll-ups moved (with the fields selected under
    /// `changed`) and a `revision` one more than the message before. Changes are read at most
    /// once per `HIERARCHY_CACHE_MS` while the release runs, and the final state always
    /// arrives. With `since` (the last revision applied, e.g. after a reconnect) only what
    /// was missed is sent; when that is no longer known (a restart, another replica, more
    /// than 256 revisions or 100,000 changed nodes ago) the first message is a fresh snapshot,
    /// as is a change of more than 20,000 nodes. `NOT_FOUND` if there is no such release.
    async fn release_tree_changed(
        &self,
        ctx: &Context<'_>,
        id: ID,
        since: Option<i32>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<ReleaseTreeChange>> + use<>>
    {
        let id = parse_release_id(&id)?;
        let hub = Arc::clone(ctx.data::<Arc<ReleaseHub>>()?);
        let mut at = since.map(i64::from);
        Ok(read_by_read(hub, id.to_string(), move |_, snapshot| {
            let messages = ReleaseTreeChange::catch_up(at, &snapshot);
            at = Some(snapshot.revision);
            messages
        }))
    }

    /// Every change to a release that passes `filter`: which release, its new status and
    /// progress. Changes of one release are coalesced like `releaseUpdated`'s.
    async fn releases_changed(
        &self,
        ctx: &Context<'_>,
        filter: Option<ReleaseFilter>,
    ) -> async_graphql::Result<impl Stream<Item = ReleaseChange> + use<>> {
        let filter = filter.unwrap_or_default().parse()?;
        let list = ctx.data::<Arc<ReleaseHub>>()?.list(filter);
        Ok(async_stream::stream! {
            loop {
                for row in list.next_batch().await {
                    yield ReleaseChange {
                        at: row.updated_at,
                        release: Release::Row(row),
                    };
                }
            }
        })
    }
}
