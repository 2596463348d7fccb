//! Live trees from running workflows, with cost control: concurrent readers of one release
//! share a single in-flight `getHierarchy` query, and its answer is reused for a short window.
//! A query that fails or does not answer in time yields `None`, and the caller serves the
//! projection instead: Temporal being down never turns an answerable read into an error.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::Utc;
use tokio::sync::OnceCell;

use super::tree::{DataSource, ReleaseTree};
use crate::{
    contracts::release::{HIERARCHY_QUERY, Node},
    metrics::RequestStats,
    temporal::{TemporalError, TemporalHandle},
};

#[derive(Clone)]
struct Fetched {
    at: Instant,
    /// Built once per fetch (roll-ups, index) and shared by every reader of the window.
    tree: Option<Arc<ReleaseTree>>,
}

#[derive(Default)]
struct Slot {
    cell: OnceCell<Fetched>,
}

/// Shared, deduplicating reader of `getHierarchy`.
pub struct LiveHierarchy {
    temporal: TemporalHandle,
    timeout: Duration,
    ttl: Duration,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

impl LiveHierarchy {
    /// A reader giving Temporal `timeout` per query and reusing answers for `ttl`.
    pub fn new(temporal: TemporalHandle, timeout: Duration, ttl: Duration) -> Self {
        Self {
            temporal,
            timeout,
            ttl,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The live tree of `workflow_id`, or `None` if Temporal did not answer in time (or the
    /// workflow is not running).
    pub async fn get(&self, workflow_id: &str, stats: &RequestStats) -> Option<Arc<ReleaseTree>> {
        let slot = self.slot(workflow_id);
        let ready = slot.cell.initialized();
        let fetched_here = std::sync::atomic::AtomicBool::new(false);
        let fetched = slot
            .cell
            .get_or_init(|| async {
                fetched_here.store(true, std::sync::atomic::Ordering::Relaxed);
                // Temporal failing reads in a row: the projection at once, not after the
                // timeout, and no query counted that was not made.
                if !self.temporal.may_read() {
                    return Fetched {
                        at: Instant::now(),
                        tree: None,
                    };
                }
                let _slot = stats.temporal_query().await;
                self.fetch(workflow_id).await
            })
            .await;
        let outcome = if fetched.tree.is_none() {
            "fallback"
        } else if fetched_here.into_inner() {
            "fetched"
        } else if ready {
            "hit"
        } else {
            "shared"
        };
        stats.live_read(outcome);
        fetched.tree.clone()
    }

    /// The slot to read through: the in-flight or fresh one, else a new one.
    fn slot(&self, workflow_id: &str) -> Arc<Slot> {
        let mut slots = match self.slots.lock() {
            Ok(slots) => slots,
            // A panic elsewhere cannot leave the map inconsistent: keep using it.
            Err(poisoned) => poisoned.into_inner(),
        };
        let ttl = self.ttl;
        let fresh = |slot: &Slot| slot.cell.get().is_none_or(|f| f.at.elapsed() < ttl);
        if let Some(slot) = slots.get(workflow_id).filter(|s| fresh(s)) {
            return Arc::clone(slot);
        }
        slots.retain(|_, slot| fresh(slot));
        let slot = Arc::new(Slot::default());
        slots.insert(workflow_id.to_owned(), Arc::clone(&slot));
        slot
    }

    #[tracing::instrument(skip(self), fields(temporal.query = "getHierarchy"))]
    async fn fetch(&self, workflow_id: &str) -> Fetched {
        let query = async {
            self.temporal
                .query_open::<Node>(workflow_id, HIERARCHY_QUERY)
                .await
        };
        let tree = match self.temporal.read(self.timeout, query).await {
            Ok(tree) => Some(Arc::new(ReleaseTree::new(
                tree,
                DataSource::Temporal,
                Utc::now(),
            ))),
            Err(TemporalError::Timeout) => {
                tracing::warn!(timeout = ?self.timeout, "getHierarchy timed out; serving the projection");
                None
            }
            Err(error) => {
                tracing::warn!(%error, "getHierarchy failed; serving the projection");
                None
            }
        };
        Fetched {
            at: Instant::now(),
            tree,
        }
    }
}
