//! Keys made of parts, read eight bytes at a time: a hash and an equality.
//!
//! A counter key reaches the kit as the parts it was written from (a
//! prefix, the rule, the value, the window); the tables that hold keys
//! store them whole. Matching a request's key against a table reads every
//! byte of it twice, once to hash and once to compare, and a byte-wise
//! loop (or `memcmp`, which is one on wasm) spends several instructions
//! per byte there. Reading the bytes as little-endian words instead does
//! the same work in about an eighth of the loop turns.
//!
//! Both functions depend on the bytes only, not on where the parts split
//! them: the same key written from other parts hashes and compares the
//! same.

/// Mixes one word into the hash (FxHash's step: a rotate, an exclusive or
/// and a multiply). Not keyed: a client that aims keys at one hash only
/// makes the table compare their bytes, which stays bounded by the
/// table's size and its longest key.
fn mix(hash: u64, word: u64) -> u64 {
    (hash.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95)
}

/// The little-endian word of the first eight bytes of `chunk` (0 if it is
/// shorter, which the callers rule out).
fn word(chunk: &[u8]) -> u64 {
    chunk
        .first_chunk::<8>()
        .map_or(0, |bytes| u64::from_le_bytes(*bytes))
}

/// The hash of the key made of `parts`, as if they were one byte string.
pub(crate) fn hash(parts: &[&[u8]]) -> u32 {
    let mut hash = 0u64;
    // Bytes of the word being filled across parts, lowest first.
    let (mut pending, mut filled) = (0u64, 0usize);
    let mut total = 0usize;
    for part in parts {
        total = total.wrapping_add(part.len());
        let mut at = 0;
        if filled == 0 {
            while let Some(chunk) = part.get(at..at + 8) {
                hash = mix(hash, word(chunk));
                at += 8;
            }
        }
        // What is left of the part, through a word that a later part may
        // finish.
        while let Some(&byte) = part.get(at) {
            pending |= u64::from(byte) << (8 * filled);
            filled += 1;
            at += 1;
            if filled == 8 {
                hash = mix(hash, pending);
                (pending, filled) = (0, 0);
            }
        }
    }
    // The length keeps a key and the same key with trailing zero bytes apart.
    let hash = mix(mix(hash, pending), total as u64);
    // Truncation is the point: both halves folded into 32 bits.
    (hash ^ (hash >> 32)) as u32
}

/// Whether `key` holds exactly the bytes of `parts`, one after the other.
///
/// The parts are compared last first: keys of one rule share their head
/// and differ in the value and the window that follow it, so two
/// different keys usually part ways within the first bytes compared.
pub(crate) fn equals(key: &[u8], parts: &[&[u8]]) -> bool {
    let mut rest = key;
    for part in parts.iter().rev() {
        let Some((head, tail)) = rest.split_at_checked(rest.len().wrapping_sub(part.len())) else {
            return false;
        };
        if !same(tail, part) {
            return false;
        }
        rest = head;
    }
    rest.is_empty()
}

/// Whether two byte strings of the same length are equal, a word at a
/// time.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut at = 0;
    while let (Some(x), Some(y)) = (a.get(at..at + 8), b.get(at..at + 8)) {
        if word(x) != word(y) {
            return false;
        }
        at += 8;
    }
    a.get(at..) == b.get(at..)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every way of cutting `key` into two or three parts.
    fn splits(key: &[u8]) -> Vec<Vec<&[u8]>> {
        let mut all = vec![vec![key]];
        for i in 0..=key.len() {
            all.push(vec![&key[..i], &key[i..]]);
            for j in i..=key.len() {
                all.push(vec![&key[..i], &key[i..j], &key[j..]]);
            }
        }
        all
    }

    #[test]
    fn hash_and_equality_ignore_where_the_parts_split() {
        let key: &[u8] = b"ccr-limit:{measure:x-user}:alice:1700000000";
        let whole = hash(&[key]);
        for parts in splits(key) {
            assert_eq!(hash(&parts), whole, "{parts:?}");
            assert!(equals(key, &parts), "{parts:?}");
        }
    }

    #[test]
    fn a_different_byte_anywhere_is_a_different_key() {
        let key = b"ccr-limit:{measure:x-user}:alice:1700000000".to_vec();
        for at in 0..key.len() {
            let mut other = key.clone();
            other[at] ^= 0x20;
            assert!(!equals(&key, &[&other]), "byte {at}");
            assert!(!equals(&other, &[&key[..at], &key[at..]]), "byte {at}");
            assert_ne!(hash(&[&other]), hash(&[&key]), "byte {at}");
        }
    }

    #[test]
    fn lengths_differ_keys() {
        assert!(!equals(b"abc", &[b"ab"]));
        assert!(!equals(b"ab", &[b"abc"]));
        assert!(!equals(b"", &[b"a"]));
        assert!(equals(b"", &[]));
        assert!(equals(b"", &[b"", b""]));
        assert_ne!(hash(&[b"a"]), hash(&[b"a\0"]));
        assert_ne!(hash(&[b""]), hash(&[b"\0"]));
        assert_ne!(hash(&[b"12345678"]), hash(&[b"12345678\0"]));
    }

    /// The byte-wise definition the word-wise functions must agree with.
    #[test]
    fn agrees_with_comparing_the_concatenation() {
        let keys: [&[u8]; 6] = [
            b"",
            b"k",
            b"1234567",
            b"12345678",
            b"123456789abcdef0X",
            b"ccr-limit:{r}:v:17",
        ];
        for a in keys {
            for b in keys {
                for parts in splits(b) {
                    assert_eq!(equals(a, &parts), a == b, "{a:?} {parts:?}");
                }
            }
        }
    }
}
