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
//! `releasesChanged` is fed the same way, by one task per replica that reads the rows of the
//! releases that changed (one statement per batch) and hands each subscriber whose filter
//! matches the newest row of each release.
//!
//! After the change listener reconnects, every watched release is read again, and the rows
//! changed while it was away are read for the lists, so a change missed then is delivered.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard, Weak},
    time::Duration,
};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::{Notify, watch};

use super::{
    closed::Closes,
    live::LiveHierarchy,
    read,
    store::{self, ReleaseFilter, ReleaseRow},
    tree::ReleaseTree,
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
    ) -> Arc<Self> {
        Arc::new(Self {
            db,
            live,
            closes,
            metrics,
            window,
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
            return entry.state.subscribe();
        }
        let (state, receiver) = watch::channel(State::Pending);
        let entry = Arc::new(Watched {
            state,
            changed: Notify::new(),
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
    /// while it runs), until nobody watches it.
    #[tracing::instrument(skip_all, fields(release.id = %id))]
    async fn follow(self: Arc<Self>, id: String, entry: Arc<Watched>) {
        let mut seq = 0;
        loop {
            // Nobody follows it any more (a subscriber that left before the first read, or
            // while the last one ran): read nothing.
            if entry.state.receiver_count() == 0 && self.forget(&id, &entry) {
                return;
            }
            let read = {
                let _turn = self.reading.acquire().await;
                self.read(&id).await
            };
            let running = match read {
                Ok(Some((row, tree))) => {
                    seq += 1;
                    let running = row.is_running();
                    entry
                        .state
                        .send_replace(State::Found(Snapshot { seq, row, tree }));
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
                    if self.forget(&id, &entry) {
                        return;
                    }
                }
                () = entry.changed.notified() => {}
            }
        }
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
    async fn read(
        &self,
        id: &str,
    ) -> Result<Option<(Arc<ReleaseRow>, Arc<ReleaseTree>)>, sqlx::Error> {
        let stats = RequestStats::new(Arc::clone(&self.metrics));
        let Some(row) = store::rows(&self.db, &stats, &[id.to_owned()])
            .await?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let mut trees = read::trees(
            &self.db,
            &self.live,
            &self.closes,
            &stats,
            std::slice::from_ref(&row),
        )
        .await?;
        Ok(trees.remove(id).map(|tree| (Arc::new(row), tree)))
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
            entry.changed.notify_one();
        }
        self.wake_lists.notify_one();
    }
}
