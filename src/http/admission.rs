//! Execution slots: every GraphQL execution (HTTP, REST, a subscription's first read) holds one
//! while it runs, so no path runs more at once than the cores take. A caller holds at most half
//! of them, so one client's flood of whole-tree reads leaves room for everyone else's.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};

/// Whose share a request counts against: the signed-in user, else the client address.
pub fn caller_key(
    authentication: &crate::auth::Authentication,
    client: std::net::IpAddr,
) -> String {
    match authentication.principal() {
        Ok(principal) => format!("user:{}", principal.user_id),
        Err(_) => format!("addr:{client}"),
    }
}

/// The slots, and each caller's share of them.
pub struct Slots {
    all: Semaphore,
    share: usize,
    callers: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// An execution slot, held until dropped.
pub struct Slot<'a> {
    own: Option<OwnedSemaphorePermit>,
    _slot: Option<SemaphorePermit<'a>>,
    caller: String,
    slots: &'a Slots,
}

impl Slots {
    /// `count` slots, of which one caller may hold half (at least one).
    pub fn new(count: usize) -> Self {
        Self {
            all: Semaphore::new(count),
            share: (count / 2).max(1),
            callers: Mutex::new(HashMap::new()),
        }
    }

    fn callers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Semaphore>>> {
        match self.callers.lock() {
            Ok(callers) => callers,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Waits for one of `caller`'s share, then for a slot.
    pub async fn admit(&self, caller: &str) -> Slot<'_> {
        let share = Arc::clone(
            self.callers()
                .entry(caller.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.share))),
        );
        let own = share.acquire_owned().await.ok();
        let slot = self.all.acquire().await.ok();
        // A freed slot wakes the next operation straight into the scheduler's next-to-run
        // place; going to the back of the queue lets waiting logins run first.
        tokio::task::yield_now().await;
        Slot {
            own,
            _slot: slot,
            caller: caller.to_owned(),
            slots: self,
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        drop(self.own.take());
        // The caller's entry goes once nobody of theirs holds or waits for a slot, so the map
        // holds only callers that are running something.
        let mut callers = self.slots.callers();
        if callers.get(&self.caller).is_some_and(|share| {
            Arc::strong_count(share) == 1 && share.available_permits() == self.slots.share
        }) {
            callers.remove(&self.caller);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_caller_holds_at_most_half_the_slots_and_others_still_get_in() {
        let slots = Slots::new(4);
        let first = slots.admit("flooder").await;
        let second = slots.admit("flooder").await;

        let third =
            tokio::time::timeout(std::time::Duration::from_millis(50), slots.admit("flooder"))
                .await;
        let other =
            tokio::time::timeout(std::time::Duration::from_millis(50), slots.admit("reader")).await;

        assert!(third.is_err(), "a third slot for the same caller waits");
        assert!(other.is_ok(), "another caller gets in at once");
        drop((first, second, other));
        assert!(slots.callers().is_empty(), "idle callers are forgotten");
    }
}
