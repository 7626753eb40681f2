//! The over-limit cache: keys Redis already said are over their limit.
//!
//! Once a key is over its limit in a window, every further request for it
//! in that window will be rejected; asking Redis again only adds load when
//! the gateway is being flooded. Like envoyproxy/ratelimit, the limiter
//! remembers such keys until their window ends and rejects locally.
//!
//! The cache is a fixed, direct-mapped table allocated at configuration:
//! remembering or looking up a key never allocates, and a collision merely
//! evicts an entry (the next request for the evicted key asks Redis, which
//! is always correct). Keys are 64-bit keyed hashes, seeded per
//! configuration, so clients cannot aim collisions at each other's keys.

use core::cell::Cell;
use core::hash::{Hash, Hasher};
use std::collections::hash_map::DefaultHasher;

const SLOTS: usize = 1024;

#[derive(Clone, Copy, Default)]
struct Entry {
    hash: u64,
    /// Second the window ends; 0 for an empty slot.
    until: u64,
}

/// Keys over their limit, until their window ends.
pub struct OverLimitCache {
    seed: u64,
    slots: Box<[Cell<Entry>]>,
}

impl core::fmt::Debug for OverLimitCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OverLimitCache")
            .field("slots", &self.slots.len())
            .finish()
    }
}

impl OverLimitCache {
    /// An empty cache whose hashes are keyed by `seed`.
    pub fn new(seed: u64) -> Self {
        OverLimitCache {
            seed,
            slots: (0..SLOTS).map(|_| Cell::new(Entry::default())).collect(),
        }
    }

    /// The hash identifying a counter: which limit it is and the key value.
    pub fn hash(&self, item: usize, key: &[u8]) -> u64 {
        let mut h = DefaultHasher::new();
        self.seed.hash(&mut h);
        item.hash(&mut h);
        key.hash(&mut h);
        h.finish()
    }

    fn slot(&self, hash: u64) -> Option<&Cell<Entry>> {
        // Truncation is the point: the low bits pick the slot.
        self.slots.get(hash as usize % SLOTS)
    }

    /// Remembers that `hash` is over its limit until second `until`.
    pub fn remember(&self, hash: u64, until: u64) {
        if let Some(slot) = self.slot(hash) {
            slot.set(Entry { hash, until });
        }
    }

    /// Whether `hash` is known to be over its limit at second `now`.
    pub fn is_over(&self, hash: u64, now: u64) -> bool {
        self.slot(hash).is_some_and(|slot| {
            let entry = slot.get();
            entry.hash == hash && now < entry.until
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_the_window_ends() {
        let cache = OverLimitCache::new(7);
        let h = cache.hash(0, b"alice");
        assert!(!cache.is_over(h, 100));
        cache.remember(h, 120);
        assert!(cache.is_over(h, 100));
        assert!(cache.is_over(h, 119));
        assert!(!cache.is_over(h, 120));
    }

    #[test]
    fn keys_and_items_are_distinct() {
        let cache = OverLimitCache::new(7);
        cache.remember(cache.hash(0, b"alice"), 120);
        assert!(!cache.is_over(cache.hash(0, b"bob"), 100));
        assert!(!cache.is_over(cache.hash(1, b"alice"), 100));
    }

    #[test]
    fn seeds_change_hashes() {
        assert_ne!(
            OverLimitCache::new(1).hash(0, b"k"),
            OverLimitCache::new(2).hash(0, b"k")
        );
    }
}
