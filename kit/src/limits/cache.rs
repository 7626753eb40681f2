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
    /// SipHash-1-3 (what std's `DefaultHasher` runs) keyed by the seed,
    /// over the item's 8 bytes and then the key's, in one pass: feeding a
    /// `DefaultHasher` the seed, the item, the key's length and the key
    /// costs four buffered writes and about 360 instructions for a 20-byte
    /// key, this about 150. The item has a fixed width, so the message
    /// needs no length prefix to be unambiguous (SipHash mixes in the
    /// total length itself).
    pub fn hash(&self, item: usize, key: &[u8]) -> u64 {
        let (k0, k1) = self.keys;
        siphash::<1, 3>(k0, k1, item as u64, key)
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

/// SipHash-`C`-`D` (Aumasson and Bernstein, "SipHash: a fast short-input
/// PRF", 2012) keyed by `k0`, `k1`, of the message `first` (as its 8
/// little-endian bytes) followed by `rest`.
fn siphash<const C: usize, const D: usize>(k0: u64, k1: u64, first: u64, rest: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let compress = |v: &mut [u64; 4], m: u64| {
        v[3] ^= m;
        for _ in 0..C {
            sip_round(v);
        }
        v[0] ^= m;
    };
    compress(&mut v, first);
    let mut words = rest.chunks_exact(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        compress(&mut v, u64::from_le_bytes(bytes));
    }
    // The last block: the remaining bytes, and the message length mod 256
    // in the top byte.
    let total = 8u64.wrapping_add(rest.len() as u64);
    let last = words
        .remainder()
        .iter()
        .enumerate()
        .fold(total << 56, |m, (i, &b)| m | u64::from(b) << (8 * i));
    compress(&mut v, last);
    v[2] ^= 0xff;
    for _ in 0..D {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

// Fixed indices into a 4-element array: the compiler checks them.
#[allow(clippy::indexing_slicing)]
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::hash::Hasher;

    #[test]
    fn siphash_2_4_gives_the_reference_vectors() {
        // From the SipHash reference implementation (`vectors.h`): key
        // 00 01 .. 0f, message 00 01 .. (len - 1). Only lengths of 8 and
        // more, since the message here starts with a whole word.
        let (k0, k1) = (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        let message: Vec<u8> = (0..64).collect();
        let first = u64::from_le_bytes(message[..8].try_into().unwrap());
        for (len, want) in [
            (8, 0x93f5_f579_9a93_2462_u64),
            (9, 0x9e00_82df_0ba9_e4b0),
            (15, 0xa129_ca61_49be_45e5),
            (16, 0x3f2a_cc7f_57c2_9bdb),
            (17, 0x699a_e9f5_2cbe_4794),
            (23, 0xa80c_038c_cd5c_cec8),
            (24, 0xb8ad_50c6_f649_af94),
            (63, 0x958a_324c_eb06_4572),
        ] {
            assert_eq!(
                siphash::<2, 4>(k0, k1, first, &message[8..len]),
                want,
                "length {len}"
            );
        }
    }

    #[test]
    fn siphash_1_3_is_what_std_runs() {
        // std's `DefaultHasher` is SipHash-1-3 with a zero key; one `write`
        // of the whole message hashes exactly its bytes.
        let message: Vec<u8> = (0..80u8).map(|b| b.wrapping_mul(37)).collect();
        for len in 8..message.len() {
            let mut std_hasher = std::collections::hash_map::DefaultHasher::new();
            std_hasher.write(&message[..len]);
            let first = u64::from_le_bytes(message[..8].try_into().unwrap());
            assert_eq!(
                siphash::<1, 3>(0, 0, first, &message[8..len]),
                std_hasher.finish(),
                "length {len}"
            );
        }
    }

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
