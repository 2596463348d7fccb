//! Closed releases kept in memory, per process: a closed release cannot change unless new
//! events arrive for it, so its row and assembled tree (with roll-ups) answer every later read
//! without a statement.
//!
//! Staleness is ruled out by the database telling: every change to a release notifies
//! `bff_release_changed` with its ID (through `db::changes`), and the entry goes. Until the listener is
//! connected, and again after it lost its connection (when notifications may have been
//! missed), the cache is emptied and takes nothing. A read that raced a change cannot put its
//! older answer in: an entry is only inserted if no notification for that release came since
//! the read began ([`TreeCache::token`]).
//!
//! Bounded in bytes (estimated per node), least recently used out first.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use super::{store::ReleaseRow, tree::ReleaseTree};
use crate::{
    db::changes::{ChangeSink, RELEASE_CHANNEL},
    lru::Lru,
};

/// A cached closed release.
#[derive(Clone)]
pub struct Cached {
    /// Its row.
    pub row: Arc<ReleaseRow>,
    /// Its tree, when it was read whole.
    pub tree: Option<Arc<ReleaseTree>>,
}

/// Change counts per release, and the epoch they belong to.
#[derive(Default)]
struct Changes {
    /// Notifications seen per release since the epoch began (bounded, see `note_change`).
    counts: HashMap<String, u64>,
    /// Bumped whenever `counts` starts over or notifications may have been missed, so a
    /// token from before can never match again.
    epoch: u64,
}

impl Changes {
    fn token(&self, id: &str) -> Token {
        Token(self.epoch, self.counts.get(id).copied().unwrap_or(0))
    }
}

/// What a read saw of a release: equal tokens mean no change in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token(u64, u64);

/// The cached releases a request's answer was made of, with what each looked like then: while
/// every token still holds, the same request would get the same answer.
#[derive(Debug, Default)]
pub struct CachedReads(Mutex<Vec<(String, Token)>>);

impl CachedReads {
    fn record(&self, id: &str, token: Token) {
        match self.0.lock() {
            Ok(mut reads) => reads.push((id.to_owned(), token)),
            Err(poisoned) => poisoned.into_inner().push((id.to_owned(), token)),
        }
    }

    /// What was read (taken out).
    pub fn take(&self) -> Vec<(String, Token)> {
        match self.0.lock() {
            Ok(mut reads) => std::mem::take(&mut *reads),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }
}

/// The cache of closed releases.
pub struct TreeCache {
    live: AtomicBool,
    hits: AtomicU64,
    /// Taken before `entries` whenever both are: a check of a token and the change of an entry
    /// it guards happen as one.
    changes: Mutex<Changes>,
    entries: Lru<Cached>,
}

/// Rough heap size of one node of a tree (strings, the node, its `Arc`, its index entry).
const NODE_OVERHEAD: usize = 320;

/// At most this many releases' change counts are remembered; beyond, the counts start over
/// (and the cache with them, so a counter going back can never let a stale entry in).
const MAX_TRACKED_CHANGES: usize = 100_000;

impl TreeCache {
    /// A cache of at most `capacity` bytes (0 keeps nothing).
    pub fn new(capacity: usize) -> Self {
        Self {
            live: AtomicBool::new(false),
            hits: AtomicU64::new(0),
            changes: Mutex::new(Changes::default()),
            entries: Lru::new(capacity),
        }
    }

    fn changes(&self) -> std::sync::MutexGuard<'_, Changes> {
        match self.changes.lock() {
            Ok(changes) => changes,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The cached row of release `id`, if any (counts a hit), noted in `reads`.
    pub fn row(&self, id: &str, reads: &CachedReads) -> Option<Arc<ReleaseRow>> {
        self.lookup(id, reads, |cached| Some(Arc::clone(&cached.row)))
    }

    /// The cached tree of release `id`, if it was kept whole (counts a hit), noted in `reads`.
    pub fn tree(&self, id: &str, reads: &CachedReads) -> Option<Arc<ReleaseTree>> {
        self.lookup(id, reads, |cached| cached.tree.clone())
    }

    /// What `pick` takes from the entry of `id`; only a found value is a hit and a read.
    fn lookup<T>(
        &self,
        id: &str,
        reads: &CachedReads,
        pick: impl FnOnce(&Cached) -> Option<T>,
    ) -> Option<T> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        let changes = self.changes();
        let value = pick(&self.entries.get(id)?)?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        reads.record(id, changes.token(id));
        Some(value)
    }

    /// Taken before reading release `id` from the database.
    pub fn token(&self, id: &str) -> Token {
        self.changes().token(id)
    }

    /// Whether none of `reads` changed since (and the cache stayed live throughout).
    pub fn unchanged(&self, reads: &[(String, Token)]) -> bool {
        if !self.live.load(Ordering::Acquire) {
            return false;
        }
        let changes = self.changes();
        reads.iter().all(|(id, token)| changes.token(id) == *token)
    }

    /// Keeps closed release `cached` unless it changed since `token` was taken.
    pub fn insert(&self, token: Token, cached: Cached) {
        if !self.live.load(Ordering::Acquire) || !cached.row.status.is_terminal() {
            return;
        }
        let bytes = estimate(&cached);
        let changes = self.changes();
        let id = cached.row.id.clone();
        if changes.token(&id) == token {
            self.entries.insert(id, cached, bytes);
        }
    }

    /// Release `id` changed: forget it, and refuse answers read before now.
    pub fn note_change(&self, id: &str) {
        let mut changes = self.changes();
        if changes.counts.len() >= MAX_TRACKED_CHANGES && !changes.counts.contains_key(id) {
            changes.counts.clear();
            changes.epoch += 1;
            self.entries.clear();
        }
        *changes.counts.entry(id.to_owned()).or_default() += 1;
        self.entries.remove(id);
    }

    /// Whether the cache may be used (the listener is connected); going off empties it.
    fn set_live(&self, live: bool) {
        if !live {
            let mut changes = self.changes();
            self.entries.clear();
            changes.epoch += 1;
        }
        self.live.store(live, Ordering::Release);
    }

    /// Releases kept now, and the bytes they are estimated at.
    pub fn usage(&self) -> (usize, usize) {
        self.entries.usage()
    }

    /// Reads answered from the cache since start.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

fn estimate(cached: &Cached) -> usize {
    let tree = cached.tree.as_ref().map_or(0, |tree| {
        tree.nodes()
            .map(|node| {
                let n = &node.node;
                NODE_OVERHEAD
                    + 2 * n.id.len()
                    + n.key.len()
                    + n.name.len()
                    + n.message.as_ref().map_or(0, String::len)
                    + n.version.as_ref().map_or(0, String::len)
                    + n.region.as_ref().map_or(0, String::len)
            })
            .sum()
    });
    NODE_OVERHEAD + tree
}

/// The cache follows the database's change feed: a release's notification drops it, and the
/// cache is live only while the feed is connected.
impl ChangeSink for TreeCache {
    fn changed(&self, channel: &str, payload: &str) {
        if channel == RELEASE_CHANNEL {
            self.note_change(payload);
        }
    }

    fn connected(&self, connected: bool) {
        self.set_live(connected);
    }

    /// Stays off: a deaf feed cannot tell the cache what to forget.
    fn catch_up(&self) {}
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::contracts::release::RolloutStatus;

    fn row(id: &str, status: RolloutStatus) -> Arc<ReleaseRow> {
        let now = Utc::now();
        Arc::new(ReleaseRow {
            id: id.to_owned(),
            key: id.to_owned(),
            name: id.to_owned(),
            status,
            workflow_id: id.to_owned(),
            message: None,
            created_at: now,
            updated_at: now,
            started_at: None,
            completed_at: None,
            apps_total: 0,
            apps_succeeded: 0,
            apps_failed: 0,
            apps_in_progress: 0,
            apps_pending: 0,
            node_count: 0,
        })
    }

    fn live_cache(capacity: usize) -> TreeCache {
        let cache = TreeCache::new(capacity);
        cache.set_live(true);
        cache
    }

    #[test]
    fn a_closed_release_is_kept_and_a_running_one_is_not() {
        let cache = live_cache(1 << 20);

        for (id, status) in [
            ("a", RolloutStatus::Succeeded),
            ("b", RolloutStatus::InProgress),
        ] {
            let token = cache.token(id);
            cache.insert(
                token,
                Cached {
                    row: row(id, status),
                    tree: None,
                },
            );
        }

        assert!(cache.row("a", &CachedReads::default()).is_some());
        assert!(cache.row("b", &CachedReads::default()).is_none());
    }

    #[test]
    fn a_change_during_the_read_keeps_the_older_answer_out() {
        let cache = live_cache(1 << 20);

        let token = cache.token("a");
        cache.note_change("a");
        cache.insert(
            token,
            Cached {
                row: row("a", RolloutStatus::Failed),
                tree: None,
            },
        );

        assert!(cache.row("a", &CachedReads::default()).is_none());
    }

    #[test]
    fn the_least_recently_used_release_goes_first_when_full() {
        // Room for three rows (each kept with its one-byte key).
        let cache = live_cache(3 * (NODE_OVERHEAD + 1));
        for id in ["a", "b", "c"] {
            keep(&cache, id);
        }
        let _ = cache.row("a", &CachedReads::default());

        keep(&cache, "d");

        assert!(
            cache.row("a", &CachedReads::default()).is_some()
                && cache.row("d", &CachedReads::default()).is_some()
        );
        assert!(
            cache.row("b", &CachedReads::default()).is_none(),
            "b was used least recently"
        );
    }

    #[test]
    fn without_a_listener_nothing_is_kept() {
        let cache = TreeCache::new(1 << 20);

        keep(&cache, "a");

        assert!(cache.row("a", &CachedReads::default()).is_none());
    }

    fn keep(cache: &TreeCache, id: &str) {
        let token = cache.token(id);
        cache.insert(
            token,
            Cached {
                row: row(id, RolloutStatus::Succeeded),
                tree: None,
            },
        );
    }

    #[test]
    fn reads_stay_unchanged_until_their_release_changes_or_the_listener_drops() {
        let cache = live_cache(1 << 20);
        keep(&cache, "a");
        keep(&cache, "b");
        let reads = CachedReads::default();
        let _ = cache.row("a", &reads);
        let read = reads.take();

        let before = cache.unchanged(&read);
        cache.note_change("b");
        let after_another = cache.unchanged(&read);
        cache.note_change("a");
        let after_its_own = cache.unchanged(&read);

        let fresh = CachedReads::default();
        keep(&cache, "a");
        let _ = cache.row("a", &fresh);
        let fresh = fresh.take();
        cache.set_live(false);
        cache.set_live(true);

        assert!(
            before && after_another,
            "another release's change is not this answer's"
        );
        assert!(!after_its_own);
        assert!(
            !cache.unchanged(&fresh),
            "notifications may have been missed while off"
        );
    }
}
