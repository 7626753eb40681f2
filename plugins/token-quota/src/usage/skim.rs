//! Skipping JSON values by their structure alone, without decoding their
//! text, reading a whole usage object that sits in one chunk, and finding
//! where a line ends.

use super::record::{Count, Name, Record, Slot};
use crate::bytes::padded_word;
use crate::json::append_digit;

/// Byte classes of the tree skip: what a byte means between the strings
/// of a skipped array or object.
pub(super) const PLAIN: u8 = 0;
pub(super) const QUOTE: u8 = 1;
pub(super) const OPEN_OBJECT: u8 = 2;
pub(super) const OPEN_ARRAY: u8 = 3;
pub(super) const CLOSE_OBJECT: u8 = 4;
pub(super) const CLOSE_ARRAY: u8 = 5;
const LINE_END: u8 = 6;

/// [`PLAIN`] for every byte but those that matter to the tree skip: one
/// load and one compare for the bytes that do not.
// Built at compile time: a bad index would fail the build, never panic.
#[allow(clippy::indexing_slicing)]
pub(super) static TREE_CLASS: [u8; 256] = {
    let mut table = [PLAIN; 256];
    table[b'"' as usize] = QUOTE;
    table[b'{' as usize] = OPEN_OBJECT;
    table[b'[' as usize] = OPEN_ARRAY;
    table[b'}' as usize] = CLOSE_OBJECT;
    table[b']' as usize] = CLOSE_ARRAY;
    table[b'\n' as usize] = LINE_END;
    table[b'\r' as usize] = LINE_END;
    table
};

/// Whether a value may start with `b` (besides `{`, `[` and `"`): a
/// number or a literal. Only the first byte is checked.
pub(super) fn starts_scalar(b: u8) -> bool {
    matches!(b, b'-' | b'0'..=b'9' | b't' | b'f' | b'n')
}

/// The bytes that end a skipped number or literal.
pub(super) const fn is_scalar_end(b: u8) -> bool {
    matches!(
        b,
        b',' | b'}' | b']' | b':' | b'"' | b'{' | b'[' | b' ' | b'\t' | b'\n' | b'\r'
    )
}

/// The bytes that may follow `\` in a string: a simple escape or `u`.
const fn is_escape(b: u8) -> bool {
    matches!(
        b,
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' | b'u'
    )
}

/// Flag of [`BYTE_FLAGS`]: [`is_scalar_end`].
const SCALAR_END: u8 = 1;
/// Flag of [`BYTE_FLAGS`]: [`is_escape`].
const ESCAPE: u8 = 2;

/// [`is_scalar_end`] and [`is_escape`] by byte, one load each: their
/// `matches!` compile to jump tables of several instructions a byte, paid
/// per byte of a skipped number and per escape of a skipped string, which
/// dominate a long answer's scan. 256 bytes of data.
// Built at compile time: a bad index would fail the build, never panic.
#[allow(clippy::indexing_slicing)]
static BYTE_FLAGS: [u8; 256] = {
    let mut table = [0; 256];
    let mut b = 0;
    while b < 256 {
        if is_scalar_end(b as u8) {
            table[b] |= SCALAR_END;
        }
        if is_escape(b as u8) {
            table[b] |= ESCAPE;
        }
        b += 1;
    }
    table
};

/// Whether `b` ends a skipped number or literal.
#[inline(always)]
pub(super) fn ends_scalar(b: u8) -> bool {
    BYTE_FLAGS.get(usize::from(b)).copied().unwrap_or(0) & SCALAR_END != 0
}

/// Whether `\` and `b` are an escape a string may hold (`\u`'s digits
/// are not checked).
#[inline(always)]
pub(super) fn escapes(b: u8) -> bool {
    BYTE_FLAGS.get(usize::from(b)).copied().unwrap_or(0) & ESCAPE != 0
}

/// The bytes of `w` (eight, little-endian) a string must stop at — `"`,
/// `\` or a control byte (below 0x20) — flagged by their top bit.
///
/// `(x - 0x0101..) & !x & 0x8080..` flags the zero bytes of `x`, and with
/// `n` in each byte in place of `0x01` the bytes below `n` (for `n` up to
/// 0x80). `w ^ 0x0202..` turns `"` (0x22) into 0x20 and leaves the control
/// bytes below 0x20, while every other byte stays at 0x21 or above, so one
/// "below 0x21" test finds both; `w ^ 0x5C5C..` zeroes the backslashes.
/// A flag can be wrong only above a byte truly flagged (a borrow runs
/// upward), so the lowest flag is exact. Bytes of 0x80 and up are never
/// flagged (`!x` keeps the top bit of `w`), so UTF-8 text goes by a word
/// at a time. Eight operations a word.
#[inline(always)]
fn string_stops(w: u64) -> u64 {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    const TWOS: u64 = u64::from_le_bytes([0x02; 8]);
    const BELOW_QUOTE: u64 = u64::from_le_bytes([0x21; 8]);
    const BACKSLASHES: u64 = u64::from_le_bytes([b'\\'; 8]);
    ((w ^ TWOS).wrapping_sub(BELOW_QUOTE) | (w ^ BACKSLASHES).wrapping_sub(ONES)) & !w & HIGH
}

/// The offset of the first byte of `s` a string must stop at (see
/// [`string_stops`]), or the length of `s`.
pub(super) fn string_run(s: &[u8]) -> usize {
    string_stop(s, 0)
}

/// The offset of the first byte of `s` from `pos` a string must stop at
/// (see [`string_stops`]), or the length of `s`.
#[inline(always)]
pub(super) fn string_stop(s: &[u8], pos: usize) -> usize {
    next_stop(s, pos).map_or(s.len(), |(at, _)| at)
}

/// The first byte of `s` from `pos` a string must stop at (see
/// [`string_stops`]) and its offset; `None` when there is none. A word at
/// a time while eight bytes are left, the last few by [`tail_stop`].
///
/// The byte comes out of the word (a shift), so the caller matches on it
/// without loading it again or checking its offset against the length.
#[inline(always)]
pub(super) fn next_stop(s: &[u8], pos: usize) -> Option<(usize, u8)> {
    let mut rest = s.get(pos..)?;
    let mut at = pos;
    while let Some((bytes, tail)) = rest.split_first_chunk::<8>() {
        let w = u64::from_le_bytes(*bytes);
        let stops = string_stops(w);
        if stops != 0 {
            // The flag is the top bit of the byte: bit `8 * i + 7`.
            let bit = stops.trailing_zeros();
            return Some((at + (bit / 8) as usize, (w >> (bit - 7)) as u8));
        }
        rest = tail;
        at += 8;
    }
    tail_stop(rest, at)
}

/// [`next_stop`] on the fewer than eight bytes `rest` at offset `at`,
/// byte by byte: met once at the end of a chunk, not once a string.
#[cold]
#[inline(never)]
fn tail_stop(rest: &[u8], at: usize) -> Option<(usize, u8)> {
    let i = rest
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    Some((at + i, *rest.get(i)?))
}

/// How a skipped string continues from some offset.
pub(super) enum StrEnd {
    /// It closed: the offset after its `"`.
    Closed(usize),
    /// The input ended inside it (`true`: right after a `\`).
    Cut(bool),
    /// A raw control byte or an unknown escape.
    Bad,
}

/// Skips the inside of a string from `pos` (after its `"` or an escape).
#[inline(always)]
pub(super) fn skip_string(s: &[u8], mut pos: usize) -> StrEnd {
    loop {
        match next_stop(s, pos) {
            None => return StrEnd::Cut(false),
            Some((at, b'"')) => return StrEnd::Closed(at + 1),
            Some((at, b'\\')) => match s.get(at + 1) {
                None => return StrEnd::Cut(true),
                // `\u`'s four digits go as ordinary string bytes.
                Some(&e) if escapes(e) => pos = at + 2,
                Some(_) => return StrEnd::Bad,
            },
            Some(_) => return StrEnd::Bad,
        }
    }
}

/// The offset of the first byte from `pos` that is not a space or a tab:
/// one compare when there is none, as in compact JSON.
#[inline(always)]
pub(super) fn blanks(s: &[u8], mut pos: usize) -> usize {
    if s.get(pos).is_some_and(|&b| b > b' ') {
        return pos;
    }
    while matches!(s.get(pos), Some(b' ' | b'\t')) {
        pos += 1;
    }
    pos
}

/// The offset after `byte` at `pos`, or after it past spaces and tabs
/// from `pos`; `None` when something else comes first. One compare and
/// no second load for compact JSON, where [`blanks`] and a compare after
/// it load the byte twice.
#[inline(always)]
pub(super) fn past(s: &[u8], pos: usize, byte: u8) -> Option<usize> {
    match s.get(pos) {
        Some(&b) if b == byte => Some(pos + 1),
        Some(b' ' | b'\t') => {
            let at = blanks(s, pos);
            (s.get(at) == Some(&byte)).then_some(at + 1)
        }
        _ => None,
    }
}

/// The offset after the value that starts at `pos` in a member of the
/// top-level object, skipped as [`Doc::skip_value`] does, when it ends
/// within `s` with no line ending outside its strings and nothing the skim
/// refuses; `None` otherwise (left to [`Doc::run`]).
///
/// [`Doc::skip_value`]: super::doc::Doc::skip_value
/// [`Doc::run`]: super::doc::Doc::run
#[inline(always)]
pub(super) fn skip_whole(s: &[u8], pos: usize) -> Option<usize> {
    let b = *s.get(pos)?;
    if b == b'"' {
        return match skip_string(s, pos + 1) {
            StrEnd::Closed(end) => Some(end),
            StrEnd::Cut(_) | StrEnd::Bad => None,
        };
    }
    if b != b'{' && b != b'[' {
        if !starts_scalar(b) {
            return None;
        }
        let len = s.get(pos + 1..)?.iter().position(|&c| ends_scalar(c))?;
        return Some(pos + 1 + len);
    }
    skip_tree(s, pos)
}

/// [`skip_whole`] for an array or object at `pos`: as [`Doc::tree`] with
/// the depth and kinds in locals, below the top-level object at depth 1.
///
/// Not inlined: in a function of its own the string loops keep their
/// constants in registers (inlined into [`Doc::members`], they were
/// reloaded on every word of a long answer); a call per container costs
/// less than that.
///
/// [`Doc::tree`]: super::doc::Doc::tree
/// [`Doc::members`]: super::doc::Doc::members
#[inline(never)]
fn skip_tree(s: &[u8], mut pos: usize) -> Option<usize> {
    // The kinds of the open containers as a stack of bits above a
    // sentinel bit, the innermost in bit 0 (set for an object): one
    // register for both depth and kinds, so that the string loops keep
    // theirs. 63 levels fit; deeper is left to [`Doc::run`], which takes
    // up to [`MAX_DEPTH`](crate::MAX_DEPTH).
    const EMPTY: u64 = 1;
    const FULL: u64 = 1 << 63;
    let mut stack = EMPTY;
    while let Some(&b) = s.get(pos) {
        let class = TREE_CLASS.get(usize::from(b)).copied().unwrap_or(PLAIN);
        if class == PLAIN {
            pos += 1;
            continue;
        }
        // Strings first: half the bytes that stop the loop.
        if class == QUOTE {
            match skip_string(s, pos + 1) {
                StrEnd::Closed(end) => pos = end,
                StrEnd::Cut(_) | StrEnd::Bad => return None,
            }
            continue;
        }
        match class {
            OPEN_OBJECT | OPEN_ARRAY => {
                if stack >= FULL {
                    return None;
                }
                stack = (stack << 1) | u64::from(class == OPEN_OBJECT);
                pos += 1;
            }
            CLOSE_OBJECT | CLOSE_ARRAY => {
                if stack == EMPTY || (stack & 1 == 1) != (class == CLOSE_OBJECT) {
                    return None;
                }
                stack >>= 1;
                pos += 1;
                if stack == EMPTY {
                    return Some(pos);
                }
            }
            _ => return None,
        }
    }
    None
}

/// A plain token count from `pos`, as [`Doc::number`] reads it, with the
/// offset after it: digits with no leading zero, not followed by a
/// fraction or exponent. `None` for any other number (left to [`Doc::run`]).
///
/// [`Doc::number`]: super::doc::Doc::number
/// [`Doc::run`]: super::doc::Doc::run
#[inline(always)]
pub(super) fn whole_count(s: &[u8], pos: usize) -> Option<(usize, Count)> {
    let mut n: u64 = 0;
    let mut ok = true;
    let mut end = pos;
    while let Some(&b) = s.get(end).filter(|b| b.is_ascii_digit()) {
        match append_digit(n, b) {
            Some(next) => n = next,
            None => ok = false,
        }
        end += 1;
    }
    let leading_zero = end > pos + 1 && s.get(pos) == Some(&b'0');
    if end == pos || leading_zero || matches!(s.get(end), None | Some(b'.' | b'e' | b'E')) {
        return None;
    }
    Some((end, if ok { Count::Tokens(n) } else { Count::Bad }))
}

/// The offset after the `}` of an object from `pos` (after its `{`), as
/// [`Doc::tree`] skips it, when it holds no array or object and ends within
/// `s` with no line ending outside its strings; `None` otherwise.
///
/// [`Doc::tree`]: super::doc::Doc::tree
fn skip_flat(s: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let b = *s.get(pos)?;
        match TREE_CLASS.get(usize::from(b)).copied().unwrap_or(PLAIN) {
            PLAIN => pos += 1,
            QUOTE => match skip_string(s, pos + 1) {
                StrEnd::Closed(end) => pos = end,
                StrEnd::Cut(_) | StrEnd::Bad => return None,
            },
            CLOSE_OBJECT => return Some(pos + 1),
            _ => return None,
        }
    }
}

/// The usage object whose `{` is at `pos`, read as [`Doc::run`] reads a
/// usage object, when it is whole in `s` and usual: keys
/// without escapes, counts that are plain integers, only spaces and tabs
/// between tokens. Its record, whether a count was set, and the offset
/// after its `}`; `None` otherwise (left to [`Doc::run`]).
///
/// [`Doc::run`]: super::doc::Doc::run
#[inline(never)]
pub(super) fn whole_usage(s: &[u8], pos: usize, slot: Slot) -> Option<(usize, Record, bool)> {
    let mut record = Record::EMPTY;
    let mut counted = false;
    let mut at = blanks(s, pos + 1);
    if s.get(at) == Some(&b'}') {
        return Some((at + 1, record, counted));
    }
    loop {
        if s.get(at) != Some(&b'"') {
            return None;
        }
        let from = at + 1;
        let rest = s.get(from..)?;
        let run = string_run(rest);
        if rest.get(run) != Some(&b'"') {
            return None;
        }
        let name = Name::of_outlined(rest.get(..run));
        let colon = blanks(s, from + run + 1);
        if s.get(colon) != Some(&b':') {
            return None;
        }
        let value = blanks(s, colon + 1);
        let b = *s.get(value)?;
        // A count: a plain integer (a `-` is left to [`Doc::run`]).
        let end = if name.counts_in(slot) && matches!(b, b'0'..=b'9' | b'-') {
            let (end, count) = whole_count(s, value)?;
            record.set(name, count);
            counted = true;
            end
        } else {
            // Not a number: no count, whatever it is. Skipped as
            // [`Doc::skip_value`] would, when a number or literal or an
            // object with no container in it (as `prompt_tokens_details`).
            if name.counts_in(slot) {
                record.set(name, Count::Absent);
            }
            match b {
                b'{' => skip_flat(s, value + 1)?,
                // Gemini's `promptTokensDetails` and the like.
                b'[' => skip_tree(s, value)?,
                b'"' => match skip_string(s, value + 1) {
                    StrEnd::Closed(end) => end,
                    StrEnd::Cut(_) | StrEnd::Bad => return None,
                },
                _ if starts_scalar(b) => {
                    let len = s.get(value + 1..)?.iter().position(|&c| ends_scalar(c))?;
                    value + 1 + len
                }
                _ => return None,
            }
        };
        let next = blanks(s, end);
        match s.get(next) {
            Some(b',') => at = blanks(s, next + 1),
            Some(b'}') => return Some((next + 1, record, counted)),
            _ => return None,
        }
    }
}

/// The offset of the first `\n` or `\r` in `s`, or its length.
///
/// Eight bytes at a time, as a little-endian word: `(x - 0x0101..) & !x &
/// 0x8080..` flags the zero bytes of `x`, and its lowest flag is exact (a
/// wrong flag can only sit above a right one). The last few bytes are read
/// as a word padded with a byte that is neither.
pub(super) fn line_end(s: &[u8]) -> usize {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    const LF: u64 = u64::from_le_bytes([b'\n'; 8]);
    const CR: u64 = u64::from_le_bytes([b'\r'; 8]);
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut at = 0;
    loop {
        let rest = s.get(at..).unwrap_or_default();
        let (w, avail) = padded_word(rest, 0);
        let found = zero_byte(w ^ LF) | zero_byte(w ^ CR);
        if found != 0 {
            // The flag's byte index, at most 7.
            let i = (found.trailing_zeros() / 8) as usize;
            return at + i.min(avail);
        }
        at += avail;
        if avail < 8 {
            return at;
        }
    }
}
