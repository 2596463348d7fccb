//! Live release state for subscriptions, computed once per replica and shared by every
//! subscriber.
//!
//! A watched release has one task: when the database notifies a change (`db::changes`), it
//! reads the release once (its row, and its tree live while it runs or from the projection)
//! and publishes the result in a `watch` channel. Subscribers only ever see the newest state:
//! one that is slow to read skips intermediate states (counted as dropped) instead of queueing
//! them. While a release runs, changes are coalesced to at most one read per
//! `HIERARCHY_CACHE_MS`; the state after the last change is always read and published, so the
//! final one is never lost. The task ends with its last subscriber.
//!
//! A release too large to read whole (`RELEASE_PART_ABOVE_NODES`) is read from the projection,
//! whole only every [`WHOLE_EVERY`] and after the listener was away; each change in between
//! reads the rows changed since the read before, with their ancestors, and patches the tree
//! kept ([`ReleaseTree::patched`]).
//!
//! `releasesChanged` is fed the same way, by one task per replica that reads the rows of the
//! releases that changed (one statement per batch) and hands each subscriber whose filter
//! matches the newest row of each release.
//!
//! `releaseTreeChanged` is fed by the same task: each read whose tree differs from the one
//! before is a new revision of the release, and what changed in it (`TreeChange`) is computed
//! there, once, whatever the number of subscribers. The changes of the latest
//! [`KEPT_REVISIONS`] revisions travel with the state, so a subscriber that fell behind, or
//! one that comes back with the revision it had, replays what it missed. A release nobody
//! follows any more is kept for [`LINGER`] before it is dropped, so a client that reconnects
//! at once continues from its revision instead of starting over from a snapshot.
//!
//! After the change listener reconnects, every watched release is read again, and the rows
//! changed while it was away are read for the lists, so a change missed then is delivered.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::{Notify, watch};

use super::{
    closed::Closes,
    live::LiveHierarchy,
    read,
    store::{self, ReleaseFilter, ReleaseRow},
    tree::{ReleaseTree, TreeChange},
};
use crate::{
    db::changes::{ChangeSink, RELEASE_CHANNEL},
    metrics::{Metrics, RequestStats},
};

/// How far before the listener lost its connection the lists look for missed changes (event
/// times come from the writers' clocks).
const CATCH_UP_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(5);
/// Most rows one catch-up read hands the lists.
const CATCH_UP_LIMIT: i64 = 1000;
/// What a release's state keeps of its latest changes for subscribers catching up.
struct Keep {
    /// At most this many revisions.
    revisions: usize,
    /// At most this many node IDs over all of them: a big release's rollout changes many
    /// nodes in each revision, and every followed release keeps its own.
    nodes: usize,
    /// A change of more nodes than this is kept, and sent, as a snapshot (as many as one
    /// answer may list): a diff that large saves nothing.
    per_change: usize,
}

/// What every followed release keeps.
const KEEP: Keep = Keep {
    revisions: 256,
    nodes: 100_000,
    per_change: 20_000,
};
/// How long a release nobody follows any more stays followed (not read) before it is dropped.
pub const LINGER: Duration = Duration::from_secs(30);
/// A release too large to read whole (`RELEASE_PART_ABOVE_NODES`) is still read whole from the
/// projection at least this often while followed; its changes in between are read as the rows
/// changed since the read before ([`ReleaseTree::patched`]). The whole read is the safety net
/// for a change whose event time lies more than [`PATCH_MARGIN`] in the past.
const WHOLE_EVERY: Duration = Duration::from_secs(30);
/// How far before the newest event time of the read before the changed rows are looked for:
/// event times come from the writers' clocks, and a write may commit after a later one.
const PATCH_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(10);
/// More changed rows than this (a release just created, a mass change) read the tree whole:
/// each changed row costs its ancestors' lookups by key.
const PATCH_MOST: usize = 2_000;

/// One read of a release.
#[derive(Clone)]
pub struct Snapshot {
    /// Counts the reads of this release since it was first watched: a subscriber that sees
    /// it jump by more than one skipped intermediate states.
    pub seq: u64,
    /// Its row.
    pub row: Arc<ReleaseRow>,
    /// Its whole tree.
    pub tree: Arc<ReleaseTree>,
    /// The tree's revision: one more with each read whose tree differs from the one before.
    /// Each follow of a release starts at a random number, so a revision from another replica
    /// or an earlier follow is not mistaken for one of these (it is too old to replay).
    pub revision: i64,
    /// What changed in each of the latest revisions, oldest first, the last being
    /// `revision`'s (none for the first read).
    pub changes: Arc<VecDeque<Arc<TreeChange>>>,
}

impl Snapshot {
    /// What changed in `revision`, if it is one of the kept ones.
    fn change(&self, revision: i64) -> Option<&TreeChange> {
        let kept = i64::try_from(self.changes.len()).ok()?;
        let at = revision.checked_sub(self.revision - kept + 1)?;
        self.changes
            .get(usize::try_from(at).ok()?)
            .map(|change| &**change)
    }

    /// What takes a subscriber at revision `at` (`None`: it has nothing yet) to this one.
    pub fn missed_since(&self, at: Option<i64>) -> CatchUp<'_> {
        match at {
            Some(at) if at == self.revision => CatchUp::Nothing,
            Some(at) if at < self.revision => (at + 1..=self.revision)
                .map(|revision| Some((revision, self.change(revision)?)))
                .collect::<Option<Vec<_>>>()
                .map_or(CatchUp::Whole, CatchUp::Replay),
            _ => CatchUp::Whole,
        }
    }

    /// A read of the tree: the same revision as `previous` (the follow's read before it) if
    /// the tree did not change, else the next, with its change kept as `keep` says (the
    /// oldest dropped first).
    fn new(
        seq: u64,
        row: Arc<ReleaseRow>,
        tree: Arc<ReleaseTree>,
        previous: Option<&Snapshot>,
        keep: &Keep,
    ) -> Self {
        let (revision, changes) = match previous {
            None => (first_revision(), Arc::default()),
            Some(previous) => match tree.changes_since(&previous.tree) {
                None => (previous.revision, Arc::clone(&previous.changes)),
                Some(change) => {
                    let change = match change {
                        TreeChange::Nodes(ids) if ids.len() > keep.per_change => {
                            TreeChange::Reshaped
                        }
                        change => change,
                    };
                    let mut changes = (*previous.changes).clone();
                    changes.push_back(Arc::new(change));
                    let mut nodes: usize = changes.iter().map(|c| c.nodes()).sum();
                    while changes.len() > keep.revisions || nodes > keep.nodes {
                        let Some(oldest) = changes.pop_front() else {
                            break;
                        };
                        nodes -= oldest.nodes();
                    }
                    (previous.revision + 1, Arc::new(changes))
                }
            },
        };
        Self {
            seq,
            row,
            tree,
            revision,
            changes,
        }
    }
}

/// Where a follow's revisions start: a random number from 2^20 to 2^30, far from any other
/// follow's (and from small numbers a client might make up), with room to grow in an `Int`.
fn first_revision() -> i64 {
    let random = uuid::Uuid::new_v4().as_u128();
    (1 << 20) + i64::try_from(random % ((1 << 30) - (1 << 20))).unwrap_or_default()
}

/// What a subscriber needs to reach a snapshot's revision.
#[derive(Debug, PartialEq)]
pub enum CatchUp<'a> {
    /// It is there.
    Nothing,
    /// The whole tree: it has nothing yet, or what it missed is not kept (too old, or a
    /// revision of another follow).
    Whole,
    /// Each revision it missed, in order, with what changed in it.
    Replay(Vec<(i64, &'a TreeChange)>),
}

/// What the subscribers of one release see.
#[derive(Clone)]
pub enum State {
    /// Not read yet.
    Pending,
    /// There is no such release.
    Missing,
    /// The newest read.
    Found(Snapshot),
}

struct Watched {
    state: watch::Sender<State>,
    changed: Notify,
    /// Changes may have been missed (the listener was away): read it whole next time.
    whole: AtomicBool,
    /// Someone followed it again (ends a linger).
    joined: Notify,
}

/// One `releasesChanged` subscriber: the newest row of each release that changed and passes
/// its filter, not yet taken.
pub struct ListSubscriber {
    filter: ReleaseFilter,
    pending: Mutex<Vec<Arc<ReleaseRow>>>,
    ready: Notify,
}

impl ListSubscriber {
    /// Waits for changes, then takes them (oldest change first).
    pub async fn next_batch(&self) -> Vec<Arc<ReleaseRow>> {
        loop {
            let batch = std::mem::take(&mut *lock(&self.pending));
            if !batch.is_empty() {
                return batch;
            }
            self.ready.notified().await;
        }
    }
}

/// What the list task has to read next.
#[derive(Default)]
struct Dirty {
    releases: HashSet<String>,
    /// Since when changes may have been missed, once the listener is back.
    missed_since: Option<DateTime<Utc>>,
    /// When the listener lost its connection (and is not back yet).
    lost_at: Option<DateTime<Utc>>,
}

/// The replica's live releases.
pub struct ReleaseHub {
    db: PgPool,
    live: Arc<LiveHierarchy>,
    closes: Arc<Closes>,
    metrics: Arc<Metrics>,
    window: Duration,
    /// Releases of more nodes than this are read from the projection only
    /// (`RELEASE_PART_ABOVE_NODES`, see `ReleaseRow::too_large`).
    part_above: usize,
    watched: Mutex<HashMap<String, Arc<Watched>>>,
    lists: Mutex<Vec<Weak<ListSubscriber>>>,
    dirty: Mutex<Dirty>,
    wake_lists: Notify,
    /// Reads running at once, so subscriptions hold a small share of the pool whatever
    /// they follow.
    reading: tokio::sync::Semaphore,
}

/// Watched releases read at once per replica.
const CONCURRENT_READS: usize = 4;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        // Nothing here can be left half-changed by a panic: keep using it.
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl ReleaseHub {
    /// A hub reading through `live` and `db`, coalescing a running release's changes to one
    /// read per `window`. Its lists are fed by [`ReleaseHub::feed_lists`], which the app runs
    /// as a background task.
    pub fn new(
        db: PgPool,
        live: Arc<LiveHierarchy>,
        closes: Arc<Closes>,
        metrics: Arc<Metrics>,
        window: Duration,
        part_above: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            db,
            live,
            closes,
            metrics,
            window,
            part_above,
            watched: Mutex::new(HashMap::new()),
            lists: Mutex::new(Vec::new()),
            dirty: Mutex::new(Dirty::default()),
            wake_lists: Notify::new(),
            reading: tokio::sync::Semaphore::new(CONCURRENT_READS),
        })
    }

    /// The process's counters (subscriptions count what they drop).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Follows release `id`: the receiver holds its newest state (read now if nobody
    /// watched it yet).
    pub fn watch(self: &Arc<Self>, id: &str) -> watch::Receiver<State> {
        let mut watched = lock(&self.watched);
        if let Some(entry) = watched.get(id) {
            let receiver = entry.state.subscribe();
            entry.joined.notify_one();
            return receiver;
        }
        let (state, receiver) = watch::channel(State::Pending);
        let entry = Arc::new(Watched {
            state,
            changed: Notify::new(),
            whole: AtomicBool::new(false),
            joined: Notify::new(),
        });
        watched.insert(id.to_owned(), Arc::clone(&entry));
        tokio::spawn(Arc::clone(self).follow(id.to_owned(), entry));
        receiver
    }

    /// Follows changes passing `filter` for a list.
    pub fn list(&self, filter: ReleaseFilter) -> Arc<ListSubscriber> {
        let subscriber = Arc::new(ListSubscriber {
            filter,
            pending: Mutex::new(Vec::new()),
            ready: Notify::new(),
        });
        let mut lists = lock(&self.lists);
        lists.retain(|list| list.strong_count() > 0);
        lists.push(Arc::downgrade(&subscriber));
        subscriber
    }

    /// The task of one watched release: read, publish, wait for a change (at least a window
    /// while it runs), until nobody has watched it for [`LINGER`].
    #[tracing::instrument(skip_all, fields(release.id = %id))]
    async fn follow(self: Arc<Self>, id: String, entry: Arc<Watched>) {
        let mut seq = 0;
        let mut previous: Option<Snapshot> = None;
        // When a release too large to read whole was last read whole.
        let mut whole_read: Option<Instant> = None;
        loop {
            // Nobody follows it any more (a subscriber that left before the first read, or
            // while the last one ran): read nothing.
            if self.linger(&id, &entry).await {
                return;
            }
            if entry.whole.swap(false, Ordering::Relaxed) {
                whole_read = None;
            }
            let read = {
                let _turn = self.reading.acquire().await;
                self.read(&id, previous.as_ref(), &mut whole_read).await
            };
            let running = match read {
                Ok(Some((row, tree))) => {
                    seq += 1;
                    let running = row.is_running();
                    let snapshot = Snapshot::new(seq, row, tree, previous.as_ref(), &KEEP);
                    previous = Some(snapshot.clone());
                    entry.state.send_replace(State::Found(snapshot));
                    running
                }
                Ok(None) => {
                    entry.state.send_replace(State::Missing);
                    false
                }
                Err(error) => {
                    // Keep what subscribers have; read again after a window.
                    tracing::warn!(%error, "cannot read a watched release; trying again");
                    entry.changed.notify_one();
                    true
                }
            };
            if running {
                // A window from the end of the read, so the next one finds the live tree it
                // read stale and queries again instead of publishing the same state twice.
                tokio::select! {
                    () = tokio::time::sleep(self.window) => {}
                    () = entry.state.closed() => {}
                }
            }
            tokio::select! {
                biased;
                () = entry.state.closed() => {
                    if self.linger(&id, &entry).await {
                        return;
                    }
                }
                () = entry.changed.notified() => {}
            }
        }
    }

    /// Waits up to [`LINGER`] while nobody follows `entry`, then drops it (`true`); `false`
    /// at once when someone does, or follows it again in time.
    async fn linger(&self, id: &str, entry: &Arc<Watched>) -> bool {
        let until = tokio::time::Instant::now() + LINGER;
        while entry.state.receiver_count() == 0 {
            tokio::select! {
                () = tokio::time::sleep_until(until) => {
                    if self.forget(id, entry) {
                        return true;
                    }
                }
                () = entry.joined.notified() => {}
            }
        }
        false
    }

    /// Drops `entry` if nobody watches it any more (checked under the lock `watch` takes).
    fn forget(&self, id: &str, entry: &Arc<Watched>) -> bool {
        let mut watched = lock(&self.watched);
        if entry.state.receiver_count() > 0 {
            return false;
        }
        if watched.get(id).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            watched.remove(id);
        }
        true
    }

    /// One read of release `id`: its row, then its tree (`None` if there is no such release).
    /// A release too large to read whole whose whole tree `previous` holds, read whole less
    /// than [`WHOLE_EVERY`] ago (`whole_read`), is patched instead: only the rows changed since
    /// are read (a few milliseconds where the whole release takes 300 at 100,000 nodes).
    async fn read(
        &self,
        id: &str,
        previous: Option<&Snapshot>,
        whole_read: &mut Option<Instant>,
    ) -> Result<Option<(Arc<ReleaseRow>, Arc<ReleaseTree>)>, sqlx::Error> {
        let stats = RequestStats::new(Arc::clone(&self.metrics));
        let Some(row) = store::rows(&self.db, &stats, &[id.to_owned()])
            .await?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        if row.too_large(self.part_above) {
            let recent = whole_read.is_some_and(|at| at.elapsed() < WHOLE_EVERY);
            if let Some(previous) = previous.filter(|_| recent)
                && let Some(tree) = self.patch(&stats, previous, &row).await?
            {
                return Ok(Some((Arc::new(row), Arc::new(tree))));
            }
            *whole_read = Some(Instant::now());
        }
        let mut trees = read::trees(
            &self.db,
            &self.live,
            &self.closes,
            &stats,
            std::slice::from_ref(&row),
            self.part_above,
        )
        .await?;
        Ok(trees.remove(id).map(|tree| (Arc::new(row), tree)))
    }

    /// The tree of `previous` with the rows of release `row` changed since, and their
    /// ancestors, read again; `None` when it cannot be patched (see [`ReleaseTree::patched`]).
    async fn patch(
        &self,
        stats: &RequestStats,
        previous: &Snapshot,
        row: &ReleaseRow,
    ) -> Result<Option<ReleaseTree>, sqlx::Error> {
        let since = previous.row.updated_at - PATCH_MARGIN;
        let Some(changed) =
            store::changed_nodes(&self.db, stats, &row.id, since, PATCH_MOST).await?
        else {
            return Ok(None);
        };
        let newest = changed.first().map(|(_, at)| *at);
        let changed: Vec<String> = changed.into_iter().map(|(id, _)| id).collect();
        let rows = if changed.is_empty() {
            Vec::new()
        } else {
            let ids = store::lineage(&row.id, &changed);
            store::part_rows(&self.db, stats, &row.id, &ids, &[])
                .await?
                .into_iter()
                .map(|(node, _)| node)
                .collect()
        };
        let as_of = newest.unwrap_or(previous.tree.as_of);
        Ok(previous.tree.patched(rows, as_of))
    }

    /// The task that feeds every list: reads the rows of the releases that changed (one
    /// statement per batch, at most one batch per window) and hands them out.
    pub async fn feed_lists(self: Arc<Self>) {
        loop {
            self.wake_lists.notified().await;
            let (releases, missed_since) = {
                let mut dirty = lock(&self.dirty);
                (
                    std::mem::take(&mut dirty.releases),
                    dirty.missed_since.take(),
                )
            };
            if lock(&self.lists)
                .iter()
                .all(|list| list.strong_count() == 0)
            {
                continue;
            }
            let stats = RequestStats::new(Arc::clone(&self.metrics));
            let mut rows = Vec::new();
            if let Some(since) = missed_since {
                match store::changed_since(&self.db, &stats, since, CATCH_UP_LIMIT).await {
                    Ok(missed) => rows.extend(missed),
                    Err(error) => {
                        tracing::warn!(%error, "cannot read the releases changed while the listener was away")
                    }
                }
            }
            if !releases.is_empty() {
                let ids: Vec<String> = releases.into_iter().collect();
                match store::rows(&self.db, &stats, &ids).await {
                    Ok(changed) => rows.extend(changed),
                    Err(error) => {
                        tracing::warn!(%error, "cannot read changed releases; trying again");
                        lock(&self.dirty).releases.extend(ids);
                        self.wake_lists.notify_one();
                    }
                }
            }
            self.hand_out(rows);
            tokio::time::sleep(self.window).await;
        }
    }

    /// Gives each list the rows its filter passes, replacing an older row of the same release
    /// that it has not taken yet (counted as dropped).
    fn hand_out(&self, rows: Vec<ReleaseRow>) {
        let rows: Vec<Arc<ReleaseRow>> = rows.into_iter().map(Arc::new).collect();
        let lists: Vec<Arc<ListSubscriber>> =
            lock(&self.lists).iter().filter_map(Weak::upgrade).collect();
        for list in lists {
            let mut handed = false;
            {
                let mut pending = lock(&list.pending);
                for row in rows.iter().filter(|row| list.filter.matches(row)) {
                    match pending.iter_mut().find(|p| p.id == row.id) {
                        Some(older) => {
                            *older = Arc::clone(row);
                            self.metrics.dropped_push();
                        }
                        None => pending.push(Arc::clone(row)),
                    }
                    handed = true;
                }
            }
            if handed {
                list.ready.notify_one();
            }
        }
    }

    /// Release `id` changed.
    fn changed(&self, id: &str) {
        if let Some(entry) = lock(&self.watched).get(id) {
            entry.changed.notify_one();
        }
        lock(&self.dirty).releases.insert(id.to_owned());
        self.wake_lists.notify_one();
    }
}

/// The hub follows the database's change feed; after a reconnect everything it serves is
/// read again.
impl ChangeSink for ReleaseHub {
    fn changed(&self, channel: &str, payload: &str) {
        if channel == RELEASE_CHANNEL {
            ReleaseHub::changed(self, payload);
        }
    }

    fn connected(&self, connected: bool) {
        let mut dirty = lock(&self.dirty);
        if !connected {
            dirty
                .lost_at
                .get_or_insert_with(|| Utc::now() - CATCH_UP_MARGIN);
            return;
        }
        let Some(lost_at) = dirty.lost_at.take() else {
            return;
        };
        dirty.missed_since = Some(lost_at);
        drop(dirty);
        for entry in lock(&self.watched).values() {
            entry.whole.store(true, Ordering::Relaxed);
            entry.changed.notify_one();
        }
        self.wake_lists.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::releases::tree::{DataSource, synthetic};

    fn row() -> Arc<ReleaseRow> {
        Arc::new(ReleaseRow {
            id: "release:r".into(),
            key: "r".into(),
            name: "R".into(),
            status: crate::contracts::release::RolloutStatus::InProgress,
            workflow_id: "release-r".into(),
            message: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            started_at: None,
            completed_at: None,
            apps_total: 2,
            apps_succeeded: 0,
            apps_failed: 0,
            apps_in_progress: 0,
            apps_pending: 2,
            node_count: 0,
        })
    }

    /// A 1×1×2 release whose first app's message is `message` (a distinct tree per message).
    fn tree(message: usize) -> Arc<ReleaseTree> {
        let root = synthetic((1, 1, 2), 0, |app| app.message = Some(message.to_string()));
        Arc::new(ReleaseTree::new(root, DataSource::Projection, Utc::now()))
    }

    /// The reads of trees `messages`, in order, as one follow makes them.
    fn reads(messages: impl IntoIterator<Item = usize>) -> Vec<Snapshot> {
        reads_keeping(messages, &KEEP)
    }

    fn reads_keeping(messages: impl IntoIterator<Item = usize>, keep: &Keep) -> Vec<Snapshot> {
        let mut reads: Vec<Snapshot> = Vec::new();
        for (seq, message) in (1..).zip(messages) {
            let read = Snapshot::new(seq, row(), tree(message), reads.last(), keep);
            reads.push(read);
        }
        reads
    }

    #[test]
    fn a_revision_is_added_only_when_the_tree_changed() {
        let reads = reads([0, 0, 1, 1, 1, 2]);

        let revisions: Vec<i64> = reads
            .iter()
            .map(|r| r.revision - reads[0].revision)
            .collect();

        assert_eq!(revisions, [0, 0, 1, 1, 1, 2]);
        assert!(
            reads[0].revision >= 1 << 20,
            "far from numbers a client makes up"
        );
    }

    #[test]
    fn a_subscriber_a_few_revisions_behind_replays_each_in_order() {
        let reads = reads(0..4);
        let last = &reads[3];
        let app = "app:r/wave-1/cluster-1/web-services/app-1";

        let missed = last.missed_since(Some(last.revision - 2));

        let CatchUp::Replay(missed) = missed else {
            panic!("a replay: {missed:?}");
        };
        let revisions: Vec<i64> = missed.iter().map(|(revision, _)| *revision).collect();
        assert_eq!(revisions, [last.revision - 1, last.revision]);
        assert!(
            missed.iter().all(
                |(_, change)| matches!(change, TreeChange::Nodes(ids) if ids == &[app.to_owned()])
            ),
            "{missed:?}"
        );
        assert_eq!(last.missed_since(Some(last.revision)), CatchUp::Nothing);
    }

    #[test]
    fn a_subscriber_further_behind_than_the_kept_revisions_or_from_elsewhere_gets_the_whole_tree() {
        let reads = reads(0..KEEP.revisions + 10);
        let last = reads.last().unwrap_or_else(|| panic!("reads were made"));
        let kept = i64::try_from(KEEP.revisions).unwrap_or_else(|e| panic!("{e}"));

        assert!(matches!(
            last.missed_since(Some(last.revision - kept)),
            CatchUp::Replay(missed) if missed.len() == KEEP.revisions
        ));
        assert_eq!(
            last.missed_since(Some(last.revision - kept - 1)),
            CatchUp::Whole
        );
        assert_eq!(last.missed_since(Some(last.revision + 1)), CatchUp::Whole);
        assert_eq!(last.missed_since(Some(1)), CatchUp::Whole);
        assert_eq!(last.missed_since(Some(-5)), CatchUp::Whole);
        assert_eq!(last.missed_since(None), CatchUp::Whole);
    }

    #[test]
    fn the_kept_changes_hold_at_most_so_many_node_ids_and_a_huge_change_is_a_snapshot() {
        let keep = Keep {
            revisions: 256,
            nodes: 3,
            per_change: 1,
        };
        // Each message change is one node; the last read fails another app (six nodes).
        let mut reads = reads_keeping(0..6, &keep);
        let tree = Arc::new(ReleaseTree::new(
            synthetic((1, 1, 2), 1, |app| {
                app.status = crate::contracts::release::RolloutStatus::Failed;
            }),
            DataSource::Projection,
            Utc::now(),
        ));
        let huge = Snapshot::new(7, row(), tree, reads.last(), &keep);
        reads.push(huge);
        let last = &reads[6];

        assert!(
            matches!(last.missed_since(Some(last.revision - 4)), CatchUp::Replay(missed) if missed.len() == 4),
            "the snapshot and the three changes before it, three node IDs"
        );
        assert_eq!(last.missed_since(Some(last.revision - 5)), CatchUp::Whole);
        assert_eq!(
            last.missed_since(Some(last.revision - 1)),
            CatchUp::Replay(vec![(last.revision, &TreeChange::Reshaped)])
        );
    }
}
