//! The fixed part of every counter key of a rule, built once at
//! configuration.
//!
//! The layout, and why each part is there, is in the documentation of
//! [`limits`](super).

use super::cache::OverLimitCache;
use super::items::{slot, Limit, Limits, GLOBAL_SLOT};
use super::key_hash::KeyHash;
use crate::counter_key::KEY_CLOSE;

/// [`CounterKey::identity`](super::CounterKey::identity) of the global limit.
pub(super) const GLOBAL_IDENTITY: &[u8] = b"global";

/// A counter key's fixed part, `bytes[start..end]` of its [`Heads`], its
/// webdis path segment, `bytes[end..segment_end]` (escaped once here, so a
/// webdis call copies it instead of escaping it byte by byte), and the
/// over-limit cache hash of the counter when its identity is configured
/// (unused for a per-value key's head).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Head {
    start: u32,
    end: u32,
    segment_end: u32,
    pub(super) hash: u64,
}

/// Every head of a rule, in one buffer (a configuration pays a few
/// allocations for them however many keys it lists).
#[derive(Debug, Default)]
pub(super) struct Heads {
    bytes: Vec<u8>,
    /// `<prefix>:{<scope>:<limit>:global}:`.
    pub(super) global: Head,
    /// Per item, where its keys' heads start in `keys`.
    items: Vec<usize>,
    /// Per `limit_keys` entry: the whole key up to the window start for an
    /// item that is not `limit_by_per_*`; up to the request's value
    /// otherwise (the value, `}:` and the window follow).
    keys: Vec<Head>,
}

/// Appends `part` with `%`, `:`, `{` and `}` percent-encoded.
fn push_escaped(out: &mut Vec<u8>, part: &[u8]) {
    for &b in part {
        match b {
            b'%' => out.extend_from_slice(b"%25"),
            b':' => out.extend_from_slice(b"%3A"),
            b'{' => out.extend_from_slice(b"%7B"),
            b'}' => out.extend_from_slice(b"%7D"),
            other => out.push(other),
        }
    }
}

/// `<amount>_per_<seconds>s`.
fn push_limit(out: &mut Vec<u8>, limit: Limit) {
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(digits.format(limit.max).as_bytes());
    out.extend_from_slice(b"_per_");
    out.extend_from_slice(digits.format(limit.window_secs).as_bytes());
    out.push(b's');
}

impl Heads {
    /// The heads of `limits`, named by `prefix`, `rule` and, for a
    /// `_rules_` entry that inherits its `rule_name`, `place`; with
    /// `key_hash`, a `limit_keys` entry's `key` is named by its hash (it
    /// may be a token, like the values of `limit_by_per_*` items).
    pub(super) fn new(
        limits: &Limits<'_>,
        cache: &OverLimitCache,
        prefix: &str,
        rule: &str,
        place: Option<&str>,
        key_hash: Option<&KeyHash>,
    ) -> Heads {
        let mut heads = Heads::default();
        // The key being built, then its path segment; reused for each.
        let mut key = Vec::new();
        let mut segment = Vec::new();
        let open = |key: &mut Vec<u8>, limit| {
            key.clear();
            key.extend_from_slice(prefix.as_bytes());
            key.extend_from_slice(b":{");
            push_escaped(key, rule.as_bytes());
            if let Some(place) = place {
                key.push(b':');
                push_escaped(key, place.as_bytes());
            }
            key.push(b':');
            push_limit(key, limit);
            key.push(b':');
        };
        let items = match limits {
            Limits::Global(limit) => {
                open(&mut key, *limit);
                key.extend_from_slice(GLOBAL_IDENTITY);
                key.extend_from_slice(KEY_CLOSE);
                heads.global =
                    heads.push(&mut segment, &key, cache.hash(GLOBAL_SLOT, GLOBAL_IDENTITY));
                return heads;
            }
            Limits::Items(items) => items,
        };
        let keys = items.iter().map(|item| item.keys.len()).sum();
        heads.items.reserve_exact(items.len());
        heads.keys.reserve_exact(keys);
        for (i, item) in items.iter().enumerate() {
            heads.items.push(heads.keys.len());
            for (k, limit_key) in item.keys.iter().enumerate() {
                open(&mut key, limit_key.limit);
                if item.per_value {
                    key.extend_from_slice(b"per_");
                }
                key.extend_from_slice(item.source.kind().as_bytes());
                key.push(b':');
                let (fixed, name) = item.source.name();
                key.extend_from_slice(fixed.as_bytes());
                push_escaped(&mut key, name.as_bytes());
                key.push(b':');
                let hash = if item.per_value {
                    0
                } else {
                    let identity = limit_key.key.as_bytes();
                    match key_hash {
                        Some(hash) => key.extend_from_slice(&hash.digits(identity)),
                        None => push_escaped(&mut key, identity),
                    }
                    key.extend_from_slice(KEY_CLOSE);
                    cache.hash(slot(i, k), identity)
                };
                let head = heads.push(&mut segment, &key, hash);
                heads.keys.push(head);
            }
        }
        heads
    }

    /// Appends `key` to the buffer as one head, then its path segment,
    /// escaped through `segment`.
    fn push(&mut self, segment: &mut Vec<u8>, key: &[u8], hash: u64) -> Head {
        // Configurations are bounded by the proxy's buffers long before 4 GiB.
        let offset = |bytes: &Vec<u8>| u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        segment.clear();
        crate::counter_key::push_head_segment(segment, key);
        self.bytes.reserve(key.len() + segment.len());
        let start = offset(&self.bytes);
        self.bytes.extend_from_slice(key);
        let end = offset(&self.bytes);
        self.bytes.extend_from_slice(segment);
        Head {
            start,
            end,
            segment_end: offset(&self.bytes),
            hash,
        }
    }

    pub(super) fn bytes(&self, head: Head) -> &[u8] {
        self.bytes
            .get(head.start as usize..head.end as usize)
            .unwrap_or_default()
    }

    pub(super) fn segment(&self, head: Head) -> &[u8] {
        self.bytes
            .get(head.end as usize..head.segment_end as usize)
            .unwrap_or_default()
    }

    /// The head of key `k` of item `i`.
    pub(super) fn key(&self, i: usize, k: usize) -> Option<Head> {
        let first = *self.items.get(i)?;
        self.keys.get(first + k).copied()
    }
}
