//! A map bounded in bytes, least recently used out first: what the process keeps between
//! requests (closed releases, persisted documents, the ETags of answers) never grows without
//! bound.

use std::{collections::HashMap, sync::Mutex};

/// Values by key, at most `capacity` bytes of them (as their owners estimate).
pub struct Lru<V> {
    capacity: usize,
    state: Mutex<State<V>>,
}

struct State<V> {
    entries: HashMap<String, Entry<V>>,
    bytes: usize,
    clock: u64,
}

struct Entry<V> {
    value: V,
    bytes: usize,
    used: u64,
}

impl<V: Clone> Lru<V> {
    /// An empty map of at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            state: Mutex::new(State {
                entries: HashMap::new(),
                bytes: 0,
                clock: 0,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State<V>> {
        match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The value of `key`, which becomes the most recently used.
    pub fn get(&self, key: &str) -> Option<V> {
        let mut state = self.state();
        state.clock += 1;
        let clock = state.clock;
        let entry = state.entries.get_mut(key)?;
        entry.used = clock;
        Some(entry.value.clone())
    }

    /// Keeps `value` (estimated at `bytes`) under `key`, replacing what was there; the least
    /// recently used go until it fits. A value larger than the whole map is not kept.
    pub fn insert(&self, key: String, value: V, bytes: usize) {
        let bytes = bytes + key.len();
        if bytes > self.capacity {
            return;
        }
        let mut state = self.state();
        state.clock += 1;
        let used = state.clock;
        if let Some(old) = state.entries.insert(key, Entry { value, bytes, used }) {
            state.bytes -= old.bytes;
        }
        state.bytes += bytes;
        while state.bytes > self.capacity {
            let Some(oldest) = state
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.used)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            if let Some(gone) = state.entries.remove(&oldest) {
                state.bytes -= gone.bytes;
            }
        }
    }

    /// Forgets `key`.
    pub fn remove(&self, key: &str) {
        let mut state = self.state();
        if let Some(gone) = state.entries.remove(key) {
            state.bytes -= gone.bytes;
        }
    }

    /// Forgets everything.
    pub fn clear(&self) {
        let mut state = self.state();
        state.entries.clear();
        state.bytes = 0;
    }

    /// Entries kept now, and their bytes.
    pub fn usage(&self) -> (usize, usize) {
        let state = self.state();
        (state.entries.len(), state.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_go_first_and_the_map_keeps_within_its_bytes() {
        let lru = Lru::new(30);
        lru.insert("a".into(), 1, 9);
        lru.insert("b".into(), 2, 9);
        lru.insert("c".into(), 3, 9);
        let _ = lru.get("a");

        lru.insert("d".into(), 4, 9);

        assert_eq!(lru.get("b"), None, "b was used least recently");
        assert_eq!(
            (lru.get("a"), lru.get("c"), lru.get("d")),
            (Some(1), Some(3), Some(4))
        );
        assert!(lru.usage().1 <= 30);
    }

    #[test]
    fn a_value_larger_than_the_map_is_not_kept_and_a_replacement_is_counted_once() {
        let lru = Lru::new(10);

        lru.insert("big".into(), 1, 10);
        lru.insert("a".into(), 1, 4);
        lru.insert("a".into(), 2, 4);

        assert_eq!(lru.get("big"), None);
        assert_eq!(lru.get("a"), Some(2));
        assert_eq!(lru.usage(), (1, 5));
    }
}
