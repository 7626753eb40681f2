//! A counter key as the Redis layer sends it: pieces to concatenate, and
//! its fixed head's webdis path segment made once.
//!
//! The rate-limit rules (`limits`) decide what a key says; this module
//! decides how it travels. A rule hands over its key's fixed head once, at
//! configuration, and gets back the head's path segment
//! ([`push_head_segment`]), so a webdis call copies the head instead of
//! escaping it byte by byte on every request. Per request the rule lends
//! the pieces ([`CounterKey`]), and
//! [`Command::counter_key`](crate::redis::Command::counter_key) writes them
//! in either wire form.

/// What closes a counter key's hash tag before its window start
/// (`<prefix>:{<rule>:...}:<window start>`). The webdis encoder writes it
/// ready-escaped after a per-value key's value
/// (`resp::CommandBuf::push_key`).
pub(crate) use crate::resp::KEY_CLOSE;

/// The pieces of a counter key; see
/// [`Rule::counter_key`](crate::limits::Rule::counter_key).
#[derive(Clone, Copy, Debug)]
pub struct CounterKey<'a> {
    /// At most: the head, the request's value, `}:` and the window. The
    /// last piece is always the window's decimal digits, which a webdis
    /// path takes as they are (see [`Command::counter_key`]).
    ///
    /// [`Command::counter_key`]: crate::redis::Command::counter_key
    parts: [&'a [u8]; 4],
    len: usize,
    identity: &'a [u8],
    /// The head's webdis path segment, made by [`push_head_segment`] at
    /// configuration.
    head_segment: &'a [u8],
}

impl<'a> CounterKey<'a> {
    /// A key of `parts` (at most four: the head, then the pieces that
    /// follow it, the window's digits last) counting for `identity`;
    /// `head_segment` is what [`push_head_segment`] wrote for `parts[0]`.
    pub(crate) fn of(
        parts: &[&'a [u8]],
        head_segment: &'a [u8],
        identity: &'a [u8],
    ) -> CounterKey<'a> {
        let mut key = CounterKey {
            parts: [b""; 4],
            len: parts.len().min(4),
            identity,
            head_segment,
        };
        for (slot, part) in key.parts.iter_mut().zip(parts) {
            *slot = part;
        }
        key
    }

    /// The pieces, to concatenate.
    pub fn parts(&self) -> &[&'a [u8]] {
        self.parts.get(..self.len).unwrap_or_default()
    }

    /// What the counter counts for: the value, the matching key, or `global`.
    pub fn identity(&self) -> &'a [u8] {
        self.identity
    }

    /// The first piece (the key's fixed head) as a webdis path segment:
    /// `/` and the bytes percent-encoded.
    pub(crate) fn head_segment(&self) -> &'a [u8] {
        self.head_segment
    }
}

/// Appends the webdis path segment of a counter key's fixed `head`, for
/// [`CounterKey::of`]: made once, when the rule is configured.
pub(crate) fn push_head_segment(out: &mut Vec<u8>, head: &[u8]) {
    crate::resp::push_path_segment(out, head);
}
