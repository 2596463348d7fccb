//! Which organizations changed, for `organizationBootstrapUpdated`: one change counter per
//! organization that somebody follows, bumped by the database's change feed. A follower
//! waits for the counter to move; if it moved by more than one since it last looked, the
//! states in between were never pushed to it (counted as dropped).

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use tokio::sync::watch;
use uuid::Uuid;

use crate::db::changes::{ChangeSink, ORGANIZATION_CHANNEL};

/// Change counters of the organizations followed in this replica.
pub struct OrganizationWatch {
    counters: Mutex<HashMap<Uuid, watch::Sender<u64>>>,
    window: Duration,
}

impl OrganizationWatch {
    /// Followers push an organization at most once per `window` (`HIERARCHY_CACHE_MS`).
    pub fn new(window: Duration) -> Self {
        Self {
            counters: Mutex::new(HashMap::new()),
            window,
        }
    }

    /// The shortest time between two pushes of one organization.
    pub fn window(&self) -> Duration {
        self.window
    }

    fn counters(&self) -> MutexGuard<'_, HashMap<Uuid, watch::Sender<u64>>> {
        match self.counters.lock() {
            Ok(counters) => counters,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Follows organization `id`: the receiver's value moves with every change.
    pub fn watch(&self, id: Uuid) -> watch::Receiver<u64> {
        let mut counters = self.counters();
        counters.retain(|_, counter| counter.receiver_count() > 0);
        counters
            .entry(id)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    fn bump(counter: &watch::Sender<u64>) {
        counter.send_modify(|n| *n += 1);
    }
}

/// Follows the database's change feed; after a reconnect every followed organization counts
/// as changed, so what was missed meanwhile is read and pushed.
impl ChangeSink for OrganizationWatch {
    fn changed(&self, channel: &str, payload: &str) {
        if channel != ORGANIZATION_CHANNEL {
            return;
        }
        let Ok(id) = Uuid::parse_str(payload) else {
            return;
        };
        if let Some(counter) = self.counters().get(&id) {
            Self::bump(counter);
        }
    }

    fn connected(&self, connected: bool) {
        if connected {
            self.counters().values().for_each(Self::bump);
        }
    }
}
