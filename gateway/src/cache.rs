//! Bounded caches of what the records store already holds (a case's room, an identity's ghost,
//! who a sender is). Every entry can be read again from the store, so an entry that falls out
//! costs one query, never a wrong answer. Bounded, because what fills them comes from outside:
//! a flood of new senders must not grow the gateway's memory with it.

use std::{hash::Hash, num::NonZeroUsize, sync::Mutex};

use lru::LruCache;

/// How many entries each cache keeps: an office's active cases and their contacts, many times
/// over, in about a megabyte each.
pub const ENTRIES: usize = 10_000;

/// A least-recently-used map of at most its capacity, safe to share between tasks.
#[derive(Debug)]
pub struct Cache<K: Hash + Eq, V> {
    entries: Mutex<LruCache<K, V>>,
}

impl<K: Hash + Eq, V: Clone> Cache<K, V> {
    /// An empty cache that keeps at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    /// The value under `key`, if kept; it becomes the most recently used.
    pub fn get(&self, key: &K) -> Option<V> {
        self.lock().get(key).cloned()
    }

    /// Keeps `value` under `key`, dropping the least recently used entry when full.
    pub fn put(&self, key: K, value: V) {
        self.lock().put(key, value);
    }

    /// Keeps each of `entries`.
    pub fn extend(&self, entries: impl IntoIterator<Item = (K, V)>) {
        let mut cache = self.lock();
        for (key, value) in entries {
            cache.put(key, value);
        }
    }

    /// Forgets `key`.
    pub fn remove(&self, key: &K) {
        self.lock().pop(key);
    }

    /// Forgets everything.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// How many entries are kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<K, V>> {
        // A panic elsewhere while holding the lock leaves a consistent map (every operation
        // above is one call into it): keep using it rather than failing every later caller.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_at_most_its_capacity_and_drops_the_least_recently_used() {
        let cache = Cache::new(2);
        cache.put(1, "a");
        cache.put(2, "b");
        assert_eq!(cache.get(&1), Some("a"));
        cache.put(3, "c");
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&2), None, "2 was used least recently");
        assert_eq!((cache.get(&1), cache.get(&3)), (Some("a"), Some("c")));
        cache.remove(&1);
        assert_eq!(cache.get(&1), None);
        cache.extend([(4, "d"), (5, "e"), (6, "f")]);
        assert_eq!(cache.len(), 2);
        cache.clear();
        assert!(cache.is_empty());
    }
}
