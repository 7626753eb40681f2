//! The over-limit cache: keys Redis already said are over their limit.
//!
//! Once a key is over its limit in a window, further requests for it in
//! that window will normally be rejected; asking Redis again for each only
//! adds load when the gateway is being flooded. Like envoyproxy/ratelimit,
//! the plugins remember such keys and reject locally, until the window ends
//! or, sooner, until the rule's `over_limit_recheck_ms` has passed: then
//! the next request asks Redis again, so an operator who deletes or lowers
//! a counter is obeyed within that bound (a per-day window would otherwise
//! refuse for up to a day), and a flood costs at most one call per key per
//! worker per recheck, shared by the requests that arrive with it.
//!
//! The cache is a fixed, direct-mapped table allocated at configuration:
//! remembering or looking up a key never allocates, and a collision merely
//! evicts an entry (the next request for the evicted key asks Redis, which
//! is always correct). Keys are 64-bit keyed hashes, seeded per
//! configuration, so clients cannot aim collisions at each other's keys.

use super::siphash::sip13;
use core::cell::Cell;

const SLOTS: usize = 1024;

#[derive(Clone, Copy, Default)]
struct Entry {
    hash: u64,
    /// Millisecond (since the epoch) the entry stops answering; 0 for an
    /// empty slot.
    until: u64,
}

/// Keys over their limit, until their window ends or their recheck is due.
pub struct OverLimitCache {
    /// The SipHash key, derived from the configuration's seed.
    keys: (u64, u64),
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
            // The second half of the key is the seed through splitmix64's
            // finaliser, so that it is not a plain copy of the first.
            keys: (seed, splitmix64(seed)),
            slots: (0..SLOTS).map(|_| Cell::new(Entry::default())).collect(),
        }
    }

    /// The hash identifying a counter: which limit it is and the key value.
    ///
    /// SipHash-1-3 (what std's `DefaultHasher` runs) of the key, keyed by
    /// the seed's key with the item mixed into its second word: each item
    /// hashes under a key of its own, so the same key value of two items
    /// gives unrelated hashes, with no bytes added to the message. Feeding
    /// a `DefaultHasher` the seed, the item, the key's length and the key
    /// would cost four buffered writes and more than twice the work of this
    /// one pass.
    pub fn hash(&self, item: usize, key: &[u8]) -> u64 {
        let (k0, k1) = self.keys;
        sip13(k0, k1 ^ item as u64, key)
    }

    fn slot(&self, hash: u64) -> Option<&Cell<Entry>> {
        // Truncation is the point: the low bits pick the slot.
        self.slots.get(hash as usize % SLOTS)
    }

    /// Remembers that `hash` is over its limit until millisecond `until`.
    pub fn remember(&self, hash: u64, until: u64) {
        if let Some(slot) = self.slot(hash) {
            slot.set(Entry { hash, until });
        }
    }

    /// Whether `hash` is known to be over its limit at millisecond `now`.
    pub fn is_over(&self, hash: u64, now: u64) -> bool {
        self.slot(hash).is_some_and(|slot| {
            let entry = slot.get();
            entry.hash == hash && now < entry.until
        })
    }
}

/// splitmix64's output function: spreads the seed's bits over a second key.
fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
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
