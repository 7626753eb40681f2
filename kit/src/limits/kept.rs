//! A counter key copied into a request's state: [`KeptKey`].
//!
//! [`Rule::apply`](super::Rule::apply) builds a [`CounterKey`] from the
//! request's headers, borrowing the configuration and a stack scratch; a
//! plugin that counts later in the request's life (after its body, at the
//! end of its answer, when it ends) cannot keep that borrow, and the
//! request's headers are gone by then. A `KeptKey` holds a copy of the
//! pieces, including the head's webdis path segment escaped at
//! configuration, so a later [`Io::increment`](crate::Io::increment) sends
//! exactly the bytes the first one would have.

use crate::counter_key::CounterKey;
use smallvec::SmallVec;

/// Bytes a kept key holds inline: a key of usual length, its escaped head
/// and its identity fit, so keeping one costs no allocation; a longer one
/// (a very long header value) spills to the heap.
const INLINE: usize = 320;

/// The most pieces a counter key has, plus the head segment and identity.
const PIECES: usize = 6;

/// A copy of a [`CounterKey`] that a request's state can keep.
///
/// # Examples
/// In the request headers' handler, with `applied` from
/// [`Rule::apply`](super::Rule::apply):
/// ```ignore
/// cx.state.key.keep(&applied.key);
/// ```
/// and in any later phase, or in `on_stream_end`:
/// ```ignore
/// cx.io.increment(&cx.state.key.key(), tokens, window_secs)
/// ```
/// A state starts with nothing kept:
/// ```
/// use kit::limits::kept::KeptKey;
/// let kept = KeptKey::default();
/// assert!(kept.is_empty());
/// assert_eq!(kept.bytes(), b"");
/// ```
#[derive(Clone, Debug, Default)]
pub struct KeptKey {
    /// The key's parts, then its head segment, then its identity.
    bytes: SmallVec<[u8; INLINE]>,
    /// Where each piece ends in `bytes`.
    ends: [usize; PIECES],
    /// How many of the pieces are key parts.
    parts: usize,
}

impl KeptKey {
    /// Replaces what is kept with a copy of `key`.
    pub fn keep(&mut self, key: &CounterKey<'_>) {
        self.bytes.clear();
        self.parts = key.parts().len().min(PIECES - 2);
        let (segment, identity) = (key.head_segment(), key.identity());
        let pieces = key
            .parts()
            .iter()
            .take(self.parts)
            .chain([&segment, &identity]);
        for (end, piece) in self.ends.iter_mut().zip(pieces) {
            self.bytes.extend_from_slice(piece);
            *end = self.bytes.len();
        }
    }

    /// Forgets the key.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.parts = 0;
    }

    /// Whether no key is kept.
    pub fn is_empty(&self) -> bool {
        self.parts == 0
    }

    /// The key's bytes as Redis stores them (the parts, concatenated).
    pub fn bytes(&self) -> &[u8] {
        let end = match self.parts {
            0 => 0,
            n => self.ends.get(n - 1).copied().unwrap_or(0),
        };
        self.bytes.get(..end).unwrap_or_default()
    }

    /// Piece `i` of the bytes.
    fn piece(&self, i: usize) -> &[u8] {
        let start = match i {
            0 => 0,
            _ => self.ends.get(i - 1).copied().unwrap_or(0),
        };
        let end = self.ends.get(i).copied().unwrap_or(start);
        self.bytes.get(start..end).unwrap_or_default()
    }

    /// The kept key, to count with (an empty key when none is kept).
    pub fn key(&self) -> CounterKey<'_> {
        let mut parts: [&[u8]; PIECES - 2] = [b""; PIECES - 2];
        for (i, part) in parts.iter_mut().enumerate().take(self.parts) {
            *part = self.piece(i);
        }
        CounterKey::of(
            parts.get(..self.parts).unwrap_or_default(),
            self.piece(self.parts),
            self.piece(self.parts + 1),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test code
    use super::*;
    use crate::resp::{CommandBuf, Form};

    #[test]
    fn a_kept_key_writes_the_bytes_of_the_original() {
        let parts: [&[u8]; 4] = [b"p:{r:5_per_60s:per_header:x:", b"v a", b"}:", b"120"];
        let mut segment = Vec::new();
        crate::counter_key::push_head_segment(&mut segment, parts[0]);
        let original = CounterKey::of(&parts, &segment, b"v a");
        let mut kept = KeptKey::default();
        assert!(kept.is_empty());
        kept.keep(&original);
        assert_eq!(kept.bytes(), b"p:{r:5_per_60s:per_header:x:v a}:120");
        let copy = kept.key();
        assert_eq!(copy.parts(), original.parts());
        assert_eq!(copy.identity(), b"v a");
        for form in [Form::Path, Form::Resp] {
            let (mut a, mut b) = (CommandBuf::default(), CommandBuf::default());
            a.begin(form);
            b.begin(form);
            a.push_key(original.head_segment(), original.parts());
            b.push_key(copy.head_segment(), copy.parts());
            assert_eq!(a.bytes(), b.bytes());
        }
        kept.clear();
        assert!(kept.is_empty());
        assert_eq!(kept.bytes(), b"");
    }
}
