//! Webdis path segments: each argument percent-encoded, so that webdis
//! hands Redis every byte as it was sent.

use crate::hex::{self, Case};

/// Whether every byte of `arg` stands for itself in a webdis path segment.
pub(super) fn path_plain(arg: &[u8]) -> bool {
    let plain = |b: u8| PLAIN.get(usize::from(b)).copied().unwrap_or(false);
    // Eight bytes a step, their answers combined without a branch: a
    // fraction of the work of a branch per byte, and a key's value is
    // looked at on every request.
    let mut chunks = arg.chunks_exact(8);
    for chunk in &mut chunks {
        if !chunk.iter().fold(true, |all, &b| all & plain(b)) {
            return false;
        }
    }
    chunks.remainder().iter().all(|&b| plain(b))
}

/// Appends `arg` as one webdis path segment: `/` and the bytes
/// percent-encoded.
///
/// Everything but ASCII letters, digits, `-` and `_` is escaped: `/` would
/// split the argument, `.` could be taken for the `.raw` suffix, `%` and `+`
/// would be decoded, and control bytes or non-ASCII must reach Redis
/// byte for byte.
pub fn push_path_segment(out: &mut Vec<u8>, arg: &[u8]) {
    out.push(b'/');
    push_escaped(out, arg);
}

/// Appends `arg` percent-encoded as in [`push_path_segment`].
pub(super) fn push_escaped(out: &mut Vec<u8>, arg: &[u8]) {
    // An argument with nothing to escape (a per-value key's value is
    // usually an API key or a user id) is one copy: looking is cheaper
    // than gathering, which also zeroes a 128-byte block first. An
    // argument with an escape pays the look up to its first escape again
    // below.
    if path_plain(arg) {
        out.extend_from_slice(arg);
        return;
    }
    // Bytes are gathered on the stack and copied out a block at a time:
    // a key like `prefix:{api:header:x-api-key:k-1}:1700000000` has an
    // escape every few bytes, and a copy per escape costs more than the
    // escaping.
    let mut block = [0u8; 128];
    let mut len = 0;
    for &b in arg {
        if len > block.len() - 3 {
            out.extend_from_slice(block.get(..len).unwrap_or_default());
            len = 0;
        }
        // `len` stays at most 125 here, so the writes below always land;
        // the checked forms keep the compiler's proof in the code.
        if PLAIN.get(usize::from(b)).copied().unwrap_or(false) {
            if let Some(slot) = block.get_mut(len) {
                *slot = b;
            }
            len += 1;
        } else {
            if let Some(slot) = block.get_mut(len..len + 3) {
                slot.copy_from_slice(&[
                    b'%',
                    hex::digit(b >> 4, Case::Upper),
                    hex::digit(b, Case::Upper),
                ]);
            }
            len += 3;
        }
    }
    out.extend_from_slice(block.get(..len).unwrap_or_default());
}

/// Whether `segment` is what [`push_path_segment`] writes for `arg`
/// (checked without allocating: the zero-allocation tests run debug builds).
pub(super) fn is_segment_of(segment: &[u8], arg: &[u8]) -> bool {
    let Some(mut rest) = segment.strip_prefix(b"/") else {
        return false;
    };
    for &b in arg {
        let escaped = [
            b'%',
            hex::digit(b >> 4, Case::Upper),
            hex::digit(b, Case::Upper),
        ];
        let want: &[u8] = if path_plain(&[b]) { &[b] } else { &escaped };
        match rest.strip_prefix(want) {
            Some(after) => rest = after,
            None => return false,
        }
    }
    rest.is_empty()
}

/// Bytes a webdis path segment carries as they are: ASCII letters, digits,
/// `-` and `_`.
// Evaluated at compile time: a bad index would fail the build, not a request.
#[allow(clippy::indexing_slicing)]
const PLAIN: [bool; 256] = {
    let mut plain = [false; 256];
    let mut b: u8 = 0;
    loop {
        plain[b as usize] = b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if b == u8::MAX {
            break plain;
        }
        b += 1;
    }
};
