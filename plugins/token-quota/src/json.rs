//! A bounded, streaming JSON lexer for the request rewriter. (The usage
//! scanner skims with its own, cheaper reader in `usage`.)
//!
//! It validates RFC 8259 one byte at a time — structure, string escapes
//! (surrogate pairs included), UTF-8, number syntax, literals — and reports
//! only what its drivers need: containers opening and closing, object keys
//! (decoded into a small fixed buffer), and scalar values with their byte
//! span. It never builds a tree, never recurses and never allocates: the
//! whole state is a few dozen bytes, so it can stop at any byte of a chunk
//! and resume with the next chunk.
//!
//! Nesting is tracked with one bit per level in a `u128`, which bounds the
//! depth at [`MAX_DEPTH`]; deeper input is an error rather than a reason to
//! grow, so hostile bodies cost the same memory as friendly ones.

use crate::bytes::{is_line_end, is_space, padded_word, simple_escape};
use kit::hex;

/// Deepest nesting of arrays and objects the lexer follows; deeper input
/// counts as malformed.
///
/// LLM API bodies nest a handful of levels. 127 is as deep as `serde_json`
/// goes, so the two agree on what is too deep to trust.
pub const MAX_DEPTH: u8 = 127;

/// Decoded key bytes kept: the longest key the drivers look for
/// (`completion_tokens`) fits with room to spare. Longer keys are reported
/// as unreadable, which no driver mistakes for a key it wants.
const KEY_CAP: usize = 24;

/// A scalar value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scalar {
    /// A number: its value when it is a non-negative integer that fits a
    /// `u64`, `None` for any other number (negative, fraction, exponent,
    /// too large).
    Number(Option<u64>),
    String,
    True,
    False,
    Null,
}

/// What the lexer found. Offsets count bytes from the first byte fed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// `{` or `[` opened a container at `depth` (a top-level container is
    /// at depth 1); `at` is the bracket's offset.
    Open { object: bool, depth: u8, at: usize },
    /// The container at `depth` closed; `at` is the bracket's offset.
    Close { depth: u8, at: usize },
    /// A key of the object at `depth` ended; [`Lexer::key`] reads it.
    Key { depth: u8 },
    /// A scalar in the container at `depth` (0 at the top level), spanning
    /// `start..end`.
    Scalar {
        scalar: Scalar,
        depth: u8,
        start: usize,
        end: usize,
    },
}

/// The result of [`Lexer::next`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Event(Event),
    /// The chunk is used up; feed the next one.
    More,
    /// The input is not JSON (or is nested too deeply); every later call
    /// says so again.
    Error,
}

/// Where a number is in its grammar (the lexer's, and the usage skim's
/// for token counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

/// `n` with the decimal digit `digit` appended, or `None` past `u64::MAX`:
/// token counts never wrap.
#[inline]
pub(crate) fn append_digit(n: u64, digit: u8) -> Option<u64> {
    n.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Word {
    True,
    False,
    Null,
}

impl Word {
    fn bytes(self) -> &'static [u8] {
        match self {
            Word::True => b"true",
            Word::False => b"false",
            Word::Null => b"null",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// A value must start here.
    Value,
    /// After `[`: a value or `]`.
    FirstItem,
    /// After `{`: a key or `}`.
    FirstKey,
    /// After `,` in an object: a key.
    NextKey,
    /// After a key: `:`.
    Colon,
    /// After a value in a container: `,` or the closing bracket.
    After,
    /// After the top-level value: whitespace only.
    Done,
    /// Inside a string.
    Str,
    /// After `\` in a string.
    Escape,
    /// Inside `\uXXXX`: digits still to come, the code so far, and whether
    /// this is the low half of a surrogate pair.
    Hex {
        left: u8,
        code: u16,
        low: bool,
    },
    /// After a high-surrogate escape, which must be followed by `\u` and a
    /// low surrogate: whether the `\` was seen.
    Pair {
        backslash: bool,
    },
    /// Inside a multi-byte UTF-8 sequence: bytes still to come, and the
    /// range the next one must fall in.
    Utf8 {
        left: u8,
        lo: u8,
        hi: u8,
    },
    Num(Num),
    /// Inside `true`, `false` or `null`, `matched` bytes in.
    Lit {
        word: Word,
        matched: u8,
    },
    Error,
}

/// What one byte did.
enum Act {
    /// Consumed, nothing to report.
    Consume,
    /// Consumed and completed an event.
    Emit(Event),
    /// Completed an event without consuming the byte (a number ends at the
    /// byte after it, which belongs to what follows).
    EmitKeep(Event),
    Fail,
}

/// Skips whitespace from `*pos`: the byte after it, `None` at the end of
/// `input`. With `LINE`, a line ending is not skipped but returned.
fn skip_space<const LINE: bool>(input: &[u8], pos: &mut usize) -> Option<u8> {
    loop {
        let b = *input.get(*pos)?;
        // One comparison for the usual case, a token right here: every
        // JSON whitespace byte is at most b' '.
        if b > b' ' || !is_space(b) || (LINE && is_line_end(b)) {
            return Some(b);
        }
        *pos += 1;
    }
}

/// The value of four hex digits.
fn hex4(digits: &[u8]) -> Option<u16> {
    let mut code = 0u16;
    for &b in digits.get(..4)? {
        code = (code << 4) | u16::from(hex::value(b)?);
    }
    Some(code)
}

/// A `\uXXXX` escape whose digits start `s`, with the low half that
/// follows when it is a high surrogate: a code that is not a surrogate
/// (or `0x10000` for a valid pair) and the bytes it takes after the
/// first `\u`. `None` for anything the byte-by-byte machine must decide:
/// a bad digit, a lone or reversed surrogate, or an escape the chunk cuts.
fn unicode_escape(s: &[u8]) -> Option<(u32, usize)> {
    let code = hex4(s)?;
    match code {
        0xD800..=0xDBFF => match s.get(4..) {
            Some([b'\\', b'u', low @ ..]) => match hex4(low)? {
                0xDC00..=0xDFFF => Some((0x1_0000, 10)),
                _ => None,
            },
            _ => None,
        },
        0xDC00..=0xDFFF => None,
        code => Some((u32::from(code), 4)),
    }
}

/// The length of the run of `s` before its first special byte (one a
/// string needs a decision at: a quote, a backslash or a control byte),
/// and whether the run is all ASCII.
///
/// Eight bytes at a time, as a little-endian word `w`:
/// `(x - 0x0101..) & !x & 0x8080..` flags the bytes of `x` that are zero,
/// and with `0x2020..` in place of `0x0101..` those below 0x20. A flag can
/// be wrong only above a byte truly flagged (a borrow runs upward), so the
/// lowest flag is exact: its bit index over 8 is where the run ends. The
/// last few bytes are read as a word padded with a plain byte.
fn special_run(s: &[u8]) -> (usize, bool) {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    const QUOTES: u64 = u64::from_le_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_le_bytes([b'\\'; 8]);
    const SPACES: u64 = u64::from_le_bytes([0x20; 8]);
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut skipped = 0;
    let mut high = 0;
    loop {
        let rest = s.get(skipped..).unwrap_or_default();
        let (w, avail) = padded_word(rest, b'a');
        let special = zero_byte(w ^ QUOTES)
            | zero_byte(w ^ BACKSLASHES)
            | (w.wrapping_sub(SPACES) & !w & HIGH);
        if special != 0 {
            // At most 7 (the flag's byte index): the run ends inside the word.
            let at = (special.trailing_zeros() / 8) as usize;
            let before = (1u64 << (at * 8)).wrapping_sub(1);
            high |= w & HIGH & before;
            return (skipped + at.min(avail), high == 0);
        }
        high |= w & HIGH;
        skipped += avail;
        if avail < 8 {
            return (skipped, high == 0);
        }
    }
}

/// The bit recording whether the container at `depth` (1..=MAX_DEPTH) is an
/// object.
fn level_bit(depth: u8) -> u128 {
    1u128
        .checked_shl(u32::from(depth.saturating_sub(1)))
        .unwrap_or(0)
}

/// The streaming lexer. See the module documentation.
#[derive(Clone, Debug)]
pub(crate) struct Lexer {
    state: State,
    depth: u8,
    /// Bit `d - 1` set: the container at depth `d` is an object.
    objects: u128,
    /// Whether the current string is a key.
    in_key: bool,
    key: [u8; KEY_CAP],
    key_len: u8,
    /// False once the key outgrew `key` or held a non-ASCII escape.
    key_ok: bool,
    num: u64,
    /// Whether the current number is still a non-negative integer within `u64`.
    num_ok: bool,
    /// Offset of the current scalar's first byte.
    start: usize,
    /// Offset of the current chunk's first byte.
    base: usize,
}

impl Default for Lexer {
    fn default() -> Self {
        Self::new()
    }
}

impl Lexer {
    /// A lexer expecting one JSON value.
    pub(crate) const fn new() -> Self {
        Lexer {
            state: State::Value,
            depth: 0,
            objects: 0,
            in_key: false,
            key: [0; KEY_CAP],
            key_len: 0,
            key_ok: true,
            num: 0,
            num_ok: false,
            start: 0,
            base: 0,
        }
    }

    /// The key of the last [`Event::Key`], decoded; `None` when it is longer
    /// than any key a driver looks for or holds non-ASCII escapes.
    pub(crate) fn key(&self) -> Option<&[u8]> {
        if self.key_ok {
            self.key.get(..usize::from(self.key_len))
        } else {
            None
        }
    }

    /// Whether the input so far is exactly one complete JSON value (plus
    /// whitespace). A top-level number is complete at the end of input.
    pub(crate) fn is_complete(&self) -> bool {
        match self.state {
            State::Done => true,
            State::Num(Num::Zero | Num::Int | Num::Frac | Num::ExpDigits) => self.depth == 0,
            _ => false,
        }
    }

    /// Lexes `input` from `*pos` up to the next event.
    ///
    /// Call it again with the same chunk until it returns [`Step::More`],
    /// then start the next chunk at position 0. `*pos` is left after the
    /// bytes consumed.
    pub(crate) fn next(&mut self, input: &[u8], pos: &mut usize) -> Step {
        let step = self.next_in::<false>(input, pos);
        if step == Step::More {
            self.base = self.base.wrapping_add(input.len());
        }
        step
    }

    #[inline(always)]
    fn next_in<const LINE: bool>(&mut self, input: &[u8], pos: &mut usize) -> Step {
        loop {
            // The common case in straight-line code; the byte-by-byte
            // machine takes over wherever it stops (and crosses at least
            // one byte before it is tried again).
            if let Some(event) = self.fast::<LINE>(input, pos) {
                return Step::Event(event);
            }
            let Some(&b) = input.get(*pos) else { break };
            if LINE && is_line_end(b) {
                break;
            }
            let at = self.base.wrapping_add(*pos);
            match self.byte(b, at) {
                Act::Consume => *pos += 1,
                Act::Emit(event) => {
                    *pos += 1;
                    return Step::Event(event);
                }
                Act::EmitKeep(event) => return Step::Event(event),
                Act::Fail => {
                    self.state = State::Error;
                    return Step::Error;
                }
            }
        }
        if matches!(self.state, State::Error) {
            return Step::Error;
        }
        Step::More
    }

    /// Goes from the current state to the next event along the common
    /// paths of the grammar — whitespace, `,`, `:`, a key, a string, an
    /// unsigned integer, a literal, a bracket — without deciding each byte
    /// through the state machine. Each step leaves `state` as the machine
    /// would have it after the bytes consumed, so wherever this stops
    /// (`None`: the end of the chunk, an escape, a cut character, a number
    /// with a fraction, anything invalid) the machine carries on from the
    /// same place and decides the byte, errors included.
    ///
    /// Only the paths with one caller are forced inline: `fast_value`,
    /// `fast_string`, `fast_key` and `fast_close` are reached from two or
    /// three places each, and copying them into every one cost about 5 KB
    /// of the module for a call saved per event.
    #[inline(always)]
    fn fast<const LINE: bool>(&mut self, input: &[u8], pos: &mut usize) -> Option<Event> {
        match self.state {
            State::After => self.fast_after::<LINE>(input, pos),
            State::FirstKey | State::NextKey => self.fast_key::<LINE>(input, pos),
            State::Colon => {
                if skip_space::<LINE>(input, pos)? != b':' {
                    return None;
                }
                *pos += 1;
                self.state = State::Value;
                self.fast_value::<LINE>(input, pos)
            }
            State::Value | State::FirstItem => self.fast_value::<LINE>(input, pos),
            State::Str => self.fast_string(input, pos),
            _ => None,
        }
    }

    /// After a value in a container.
    #[inline(always)]
    fn fast_after<const LINE: bool>(&mut self, input: &[u8], pos: &mut usize) -> Option<Event> {
        match skip_space::<LINE>(input, pos)? {
            b',' => {
                *pos += 1;
                if self.in_object() {
                    self.state = State::NextKey;
                    self.fast_key::<LINE>(input, pos)
                } else {
                    self.state = State::Value;
                    self.fast_value::<LINE>(input, pos)
                }
            }
            b @ (b']' | b'}') => self.fast_close(b, pos),
            _ => None,
        }
    }

    fn fast_close(&mut self, b: u8, pos: &mut usize) -> Option<Event> {
        match self.close(b, self.base.wrapping_add(*pos)) {
            Act::Emit(event) => {
                *pos += 1;
                Some(event)
            }
            // A mismatched bracket: left for the machine to refuse.
            Act::Consume | Act::EmitKeep(_) | Act::Fail => None,
        }
    }

    /// Where a key or `}` may start.
    fn fast_key<const LINE: bool>(&mut self, input: &[u8], pos: &mut usize) -> Option<Event> {
        match skip_space::<LINE>(input, pos)? {
            b'"' => {
                *pos += 1;
                self.in_key = true;
                self.key_len = 0;
                self.key_ok = true;
                self.state = State::Str;
                self.fast_string(input, pos)
            }
            b'}' if matches!(self.state, State::FirstKey) => self.fast_close(b'}', pos),
            _ => None,
        }
    }

    /// Inside a string: up to its closing quote.
    fn fast_string(&mut self, input: &[u8], pos: &mut usize) -> Option<Event> {
        self.skip_string(input, pos);
        if input.get(*pos) != Some(&b'"') {
            return None;
        }
        let at = self.base.wrapping_add(*pos);
        *pos += 1;
        if self.in_key {
            self.state = State::Colon;
            Some(Event::Key { depth: self.depth })
        } else {
            self.state = self.after_value();
            Some(self.scalar(Scalar::String, at.wrapping_add(1)))
        }
    }

    /// Where a value must start (or, after `[`, `]` may).
    fn fast_value<const LINE: bool>(&mut self, input: &[u8], pos: &mut usize) -> Option<Event> {
        let b = skip_space::<LINE>(input, pos)?;
        let at = self.base.wrapping_add(*pos);
        match b {
            b'"' => {
                *pos += 1;
                self.start = at;
                self.in_key = false;
                self.state = State::Str;
                self.fast_string(input, pos)
            }
            b'{' | b'[' => match self.open(b == b'{', at) {
                Act::Emit(event) => {
                    *pos += 1;
                    self.start = at;
                    Some(event)
                }
                // Too deep: left for the machine to refuse.
                Act::Consume | Act::EmitKeep(_) | Act::Fail => None,
            },
            b']' if matches!(self.state, State::FirstItem) => self.fast_close(b, pos),
            b'0'..=b'9' => self.fast_number::<LINE>(input, pos, at),
            b't' | b'f' | b'n' => {
                let (word, scalar): (&[u8], _) = match b {
                    b't' => (b"true", Scalar::True),
                    b'f' => (b"false", Scalar::False),
                    _ => (b"null", Scalar::Null),
                };
                let rest = input.get(*pos..)?;
                if rest.get(..word.len()) != Some(word) {
                    return None;
                }
                *pos += word.len();
                self.start = at;
                self.state = self.after_value();
                Some(self.scalar(scalar, at.wrapping_add(word.len())))
            }
            _ => None,
        }
    }

    /// A number starting with the digit at `*pos` (offset `at`): its
    /// integer digits in one loop; a fraction or an exponent, or the end of
    /// the chunk, is left to the machine in the state it would be in.
    #[inline(always)]
    fn fast_number<const LINE: bool>(
        &mut self,
        input: &[u8],
        pos: &mut usize,
        at: usize,
    ) -> Option<Event> {
        let rest = input.get(*pos..)?;
        let (&first, digits) = rest.split_first()?;
        let mut num = u64::from(first.wrapping_sub(b'0'));
        let mut ok = true;
        let mut len = 1;
        if first != b'0' {
            for &d in digits {
                if !d.is_ascii_digit() {
                    break;
                }
                if ok {
                    match append_digit(num, d) {
                        Some(n) => num = n,
                        None => ok = false,
                    }
                }
                len += 1;
            }
        }
        *pos += len;
        self.start = at;
        self.num = num;
        self.num_ok = ok;
        match rest.get(len) {
            // (With `LINE`, a line ending is the end of the input: the
            // number may go on.)
            Some(b'.' | b'e' | b'E') | None => {
                self.state = State::Num(if first == b'0' { Num::Zero } else { Num::Int });
                None
            }
            Some(&b) if LINE && is_line_end(b) => {
                self.state = State::Num(if first == b'0' { Num::Zero } else { Num::Int });
                None
            }
            Some(_) => {
                // The number ends at the byte before; that byte is judged
                // by the state after the value.
                self.state = self.after_value();
                let value = if ok { Some(num) } else { None };
                Some(self.scalar(Scalar::Number(value), at.wrapping_add(len)))
            }
        }
    }

    /// Crosses as much of a string as it can in bulk: the bulk of any
    /// response is string content, and only quotes, backslashes, control
    /// bytes and the validity of UTF-8 need deciding there. Stops where the
    /// byte-by-byte machine must take over: at a quote, a control byte, a
    /// `\u` escape, or a character the chunk cuts or gets wrong.
    #[inline(always)]
    fn skip_string(&mut self, input: &[u8], pos: &mut usize) {
        loop {
            let rest = input.get(*pos..).unwrap_or_default();
            let (len, ascii) = special_run(rest);
            let region = rest.get(..len).unwrap_or_default();
            // Valid UTF-8 up to the next special byte goes in one step;
            // whatever follows an invalid or cut-off sequence is left to
            // the byte-by-byte check, which fails or resumes it.
            let valid = if ascii {
                len
            } else {
                match core::str::from_utf8(region) {
                    Ok(_) => len,
                    Err(e) => e.valid_up_to(),
                }
            };
            if self.in_key {
                match rest.first_chunk::<KEY_CAP>() {
                    // A key's first run with the chunk long enough: one
                    // fixed-size copy (what follows the run in `key` is
                    // never read).
                    Some(window) if self.key_len == 0 => {
                        self.key = *window;
                        match u8::try_from(valid) {
                            Ok(len) if valid <= KEY_CAP => self.key_len = len,
                            _ => self.key_ok = false,
                        }
                    }
                    _ => self.push_key_run(region.get(..valid).unwrap_or_default()),
                }
            }
            *pos += valid;
            if valid < region.len() {
                return;
            }
            match rest.get(valid..) {
                Some([b'\\', b'u', tail @ ..]) => match unicode_escape(tail) {
                    Some((code, len)) => {
                        match u8::try_from(code) {
                            Ok(ascii) if ascii.is_ascii() => self.push_key(ascii),
                            _ => self.not_ascii_key(),
                        }
                        *pos += 2 + len;
                    }
                    None => return,
                },
                Some([b'\\', e, ..]) => match simple_escape(*e) {
                    Some(decoded) => {
                        self.push_key(decoded);
                        *pos += 2;
                    }
                    None => return,
                },
                _ => return,
            }
        }
    }

    fn push_key_run(&mut self, run: &[u8]) {
        let len = usize::from(self.key_len);
        match self.key.get_mut(len..len + run.len()) {
            Some(slots) => {
                slots.copy_from_slice(run);
                // At most KEY_CAP, which fits a u8.
                self.key_len = u8::try_from(len + run.len()).unwrap_or(u8::MAX);
            }
            None => self.key_ok = false,
        }
    }

    fn push_key(&mut self, b: u8) {
        if !self.in_key {
            return;
        }
        match self.key.get_mut(usize::from(self.key_len)) {
            Some(slot) => {
                *slot = b;
                self.key_len += 1;
            }
            None => self.key_ok = false,
        }
    }

    fn after_value(&self) -> State {
        if self.depth == 0 {
            State::Done
        } else {
            State::After
        }
    }

    fn in_object(&self) -> bool {
        self.objects & level_bit(self.depth) != 0
    }

    fn byte(&mut self, b: u8, at: usize) -> Act {
        match self.state {
            State::Value => self.value(b, at),
            State::FirstItem if b == b']' => self.close(b, at),
            State::FirstItem => self.value(b, at),
            State::FirstKey | State::NextKey => match b {
                b'"' => {
                    self.in_key = true;
                    self.key_len = 0;
                    self.key_ok = true;
                    self.state = State::Str;
                    Act::Consume
                }
                b'}' if matches!(self.state, State::FirstKey) => self.close(b, at),
                _ if is_space(b) => Act::Consume,
                _ => Act::Fail,
            },
            State::Colon => match b {
                b':' => {
                    self.state = State::Value;
                    Act::Consume
                }
                _ if is_space(b) => Act::Consume,
                _ => Act::Fail,
            },
            State::After => match b {
                b',' => {
                    self.state = if self.in_object() {
                        State::NextKey
                    } else {
                        State::Value
                    };
                    Act::Consume
                }
                b']' | b'}' => self.close(b, at),
                _ if is_space(b) => Act::Consume,
                _ => Act::Fail,
            },
            State::Done if is_space(b) => Act::Consume,
            State::Done => Act::Fail,
            State::Str => self.string_byte(b, at),
            State::Escape => self.escape(b),
            State::Hex { left, code, low } => self.hex(b, left, code, low),
            State::Pair { backslash: false } if b == b'\\' => {
                self.state = State::Pair { backslash: true };
                Act::Consume
            }
            State::Pair { backslash: true } if b == b'u' => {
                self.state = State::Hex {
                    left: 4,
                    code: 0,
                    low: true,
                };
                Act::Consume
            }
            State::Pair { .. } => Act::Fail,
            State::Utf8 { left, lo, hi } => {
                if !(lo..=hi).contains(&b) {
                    return Act::Fail;
                }
                self.push_key(b);
                self.state = if left <= 1 {
                    State::Str
                } else {
                    State::Utf8 {
                        left: left - 1,
                        lo: 0x80,
                        hi: 0xBF,
                    }
                };
                Act::Consume
            }
            State::Num(num) => self.number(num, b, at),
            State::Lit { word, matched } => {
                let bytes = word.bytes();
                if bytes.get(usize::from(matched)) != Some(&b) {
                    return Act::Fail;
                }
                let matched = matched + 1;
                if usize::from(matched) < bytes.len() {
                    self.state = State::Lit { word, matched };
                    return Act::Consume;
                }
                let scalar = match word {
                    Word::True => Scalar::True,
                    Word::False => Scalar::False,
                    Word::Null => Scalar::Null,
                };
                self.state = self.after_value();
                Act::Emit(self.scalar(scalar, at.wrapping_add(1)))
            }
            State::Error => Act::Fail,
        }
    }

    fn scalar(&self, scalar: Scalar, end: usize) -> Event {
        Event::Scalar {
            scalar,
            depth: self.depth,
            start: self.start,
            end,
        }
    }

    fn value(&mut self, b: u8, at: usize) -> Act {
        self.start = at;
        let next = match b {
            b'{' | b'[' => return self.open(b == b'{', at),
            b'"' => {
                self.in_key = false;
                State::Str
            }
            b'-' => {
                self.num_ok = false;
                State::Num(Num::Minus)
            }
            b'0'..=b'9' => {
                self.num = u64::from(b - b'0');
                self.num_ok = true;
                State::Num(if b == b'0' { Num::Zero } else { Num::Int })
            }
            b't' => State::Lit {
                word: Word::True,
                matched: 1,
            },
            b'f' => State::Lit {
                word: Word::False,
                matched: 1,
            },
            b'n' => State::Lit {
                word: Word::Null,
                matched: 1,
            },
            _ if is_space(b) => return Act::Consume,
            _ => return Act::Fail,
        };
        self.state = next;
        Act::Consume
    }

    fn open(&mut self, object: bool, at: usize) -> Act {
        if self.depth >= MAX_DEPTH {
            return Act::Fail;
        }
        self.depth += 1;
        let bit = level_bit(self.depth);
        if object {
            self.objects |= bit;
            self.state = State::FirstKey;
        } else {
            self.objects &= !bit;
            self.state = State::FirstItem;
        }
        Act::Emit(Event::Open {
            object,
            depth: self.depth,
            at,
        })
    }

    fn close(&mut self, b: u8, at: usize) -> Act {
        if self.depth == 0 || self.in_object() != (b == b'}') {
            return Act::Fail;
        }
        let depth = self.depth;
        self.depth -= 1;
        self.state = self.after_value();
        Act::Emit(Event::Close { depth, at })
    }

    fn string_byte(&mut self, b: u8, at: usize) -> Act {
        match b {
            b'"' if self.in_key => {
                self.state = State::Colon;
                Act::Emit(Event::Key { depth: self.depth })
            }
            b'"' => {
                self.state = self.after_value();
                Act::Emit(self.scalar(Scalar::String, at.wrapping_add(1)))
            }
            b'\\' => {
                self.state = State::Escape;
                Act::Consume
            }
            0..=0x1F => Act::Fail,
            0x20..=0x7F => {
                self.push_key(b);
                Act::Consume
            }
            _ => {
                // The first byte of a UTF-8 sequence fixes its length and
                // the range of the next byte, which is what rules out
                // overlong forms, UTF-16 surrogates and code points past
                // U+10FFFF.
                let (left, lo, hi) = match b {
                    0xC2..=0xDF => (1, 0x80, 0xBF),
                    0xE0 => (2, 0xA0, 0xBF),
                    0xE1..=0xEC | 0xEE..=0xEF => (2, 0x80, 0xBF),
                    0xED => (2, 0x80, 0x9F),
                    0xF0 => (3, 0x90, 0xBF),
                    0xF1..=0xF3 => (3, 0x80, 0xBF),
                    0xF4 => (3, 0x80, 0x8F),
                    _ => return Act::Fail,
                };
                self.push_key(b);
                self.state = State::Utf8 { left, lo, hi };
                Act::Consume
            }
        }
    }

    fn escape(&mut self, b: u8) -> Act {
        if b == b'u' {
            self.state = State::Hex {
                left: 4,
                code: 0,
                low: false,
            };
            return Act::Consume;
        }
        let Some(decoded) = simple_escape(b) else {
            return Act::Fail;
        };
        self.push_key(decoded);
        self.state = State::Str;
        Act::Consume
    }

    fn hex(&mut self, b: u8, left: u8, code: u16, low: bool) -> Act {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return Act::Fail,
        };
        // Four digits at most: the shift never loses a set bit.
        let code = (code << 4) | u16::from(digit);
        if left > 1 {
            self.state = State::Hex {
                left: left - 1,
                code,
                low,
            };
            return Act::Consume;
        }
        self.state = match (low, code) {
            (false, 0xD800..=0xDBFF) => State::Pair { backslash: false },
            // A low surrogate alone, or a high one not followed by a low
            // one, is no character; serde_json refuses both as well.
            (false, 0xDC00..=0xDFFF) | (true, 0..=0xDBFF | 0xE000..) => return Act::Fail,
            (true, _) => {
                self.not_ascii_key();
                State::Str
            }
            (false, code) => {
                match u8::try_from(code) {
                    Ok(ascii) if ascii.is_ascii() => self.push_key(ascii),
                    _ => self.not_ascii_key(),
                }
                State::Str
            }
        };
        Act::Consume
    }

    /// Escaped non-ASCII characters make a key unreadable: every key the
    /// drivers want is ASCII.
    fn not_ascii_key(&mut self) {
        if self.in_key {
            self.key_ok = false;
        }
    }

    fn number(&mut self, num: Num, b: u8, at: usize) -> Act {
        let next = match (num, b) {
            (Num::Minus, b'0') => Num::Zero,
            (Num::Minus, b'1'..=b'9') => Num::Int,
            (Num::Int, b'0'..=b'9') => {
                if self.num_ok {
                    match append_digit(self.num, b) {
                        Some(n) => self.num = n,
                        None => self.num_ok = false,
                    }
                }
                Num::Int
            }
            (Num::Zero | Num::Int, b'.') => Num::Dot,
            (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Num::Exp,
            (Num::Dot | Num::Frac, b'0'..=b'9') => Num::Frac,
            (Num::Exp, b'+' | b'-') => Num::ExpSign,
            (Num::Exp | Num::ExpSign | Num::ExpDigits, b'0'..=b'9') => Num::ExpDigits,
            (Num::Zero | Num::Int | Num::Frac | Num::ExpDigits, _) => {
                // The number ended at the byte before; `b` is judged by
                // the state after the value (so `01` and `1x` fail there).
                let value = if self.num_ok { Some(self.num) } else { None };
                self.state = self.after_value();
                return Act::EmitKeep(self.scalar(Scalar::Number(value), at));
            }
            _ => return Act::Fail,
        };
        if matches!(next, Num::Dot | Num::Exp) {
            self.num_ok = false;
        }
        self.state = State::Num(next);
        Act::Consume
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event of `input` fed in one chunk, or `None` when it is not JSON.
    fn events(input: &[u8]) -> Option<Vec<Event>> {
        let mut lexer = Lexer::new();
        let mut pos = 0;
        let mut out = Vec::new();
        loop {
            match lexer.next(input, &mut pos) {
                Step::Event(e) => out.push(e),
                Step::More => return lexer.is_complete().then_some(out),
                Step::Error => return None,
            }
        }
    }

    fn valid(input: &[u8]) -> bool {
        events(input).is_some()
    }

    #[test]
    fn accepts_valid_documents() {
        for doc in [
            &b"{}"[..],
            b"[]",
            b" { \"a\" : [ 1 , -2.5e+3 , true , false , null , \"x\" ] } \n",
            b"0",
            b"-0",
            b"12.5E-7",
            b"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"",
            "\"h\u{e9}llo \u{1F600}\"".as_bytes(),
            b"[[[[]]]]",
            b"{\"a\":{\"b\":{}}}",
        ] {
            assert!(valid(doc), "{}", String::from_utf8_lossy(doc));
        }
    }

    #[test]
    fn rejects_invalid_documents() {
        for doc in [
            &b""[..],
            b" ",
            b"{",
            b"{\"a\"}",
            b"{\"a\":}",
            b"{\"a\":1,}",
            b"[1,]",
            b"[1 2]",
            b"{1:2}",
            b"[}",
            b"{]",
            b"01",
            b"1.",
            b".5",
            b"1e",
            b"-",
            b"+1",
            b"tru",
            b"truex",
            b"nul",
            b"\"abc",
            b"\"\\x\"",
            b"\"\\u12\"",
            b"\"\\ud800\"",
            b"\"\\ud800\\u0041\"",
            b"\"\\udc00\"",
            b"\"a\nb\"",
            b"\"\xff\"",
            b"\"\xc0\xaf\"",
            b"\"\xed\xa0\x80\"",
            b"\"\xf4\x90\x80\x80\"",
            b"\"\xe2\x82\"",
            b"{} {}",
            b"1 2",
            b"[1]]",
        ] {
            assert!(!valid(doc), "{}", String::from_utf8_lossy(doc));
        }
    }

    #[test]
    fn numbers_report_u64_integers_only() {
        let number = |doc: &[u8]| match events(doc).as_deref() {
            Some([_, Event::Scalar { scalar, .. }, _]) => *scalar,
            other => panic!("{other:?}"),
        };
        assert_eq!(number(b"[0]"), Scalar::Number(Some(0)));
        assert_eq!(number(b"[42]"), Scalar::Number(Some(42)));
        assert_eq!(
            number(b"[18446744073709551615]"),
            Scalar::Number(Some(u64::MAX))
        );
        assert_eq!(number(b"[18446744073709551616]"), Scalar::Number(None));
        assert_eq!(number(b"[99999999999999999999999]"), Scalar::Number(None));
        assert_eq!(number(b"[-1]"), Scalar::Number(None));
        assert_eq!(number(b"[-0]"), Scalar::Number(None));
        assert_eq!(number(b"[1.0]"), Scalar::Number(None));
        assert_eq!(number(b"[1e3]"), Scalar::Number(None));
    }

    #[test]
    fn keys_decode_escapes_and_give_up_when_long() {
        let mut lexer = Lexer::new();
        let input =
            b"{\"us\\u0061g\\u0065\":1,\"a_key_much_longer_than_the_buffer\":2,\"\\u00e9\":3}";
        let mut pos = 0;
        let mut keys = Vec::new();
        loop {
            match lexer.next(input, &mut pos) {
                Step::Event(Event::Key { .. }) => keys.push(lexer.key().map(<[u8]>::to_vec)),
                Step::Event(_) => {}
                Step::More | Step::Error => break,
            }
        }
        assert_eq!(keys, vec![Some(b"usage".to_vec()), None, None]);
    }

    #[test]
    fn spans_and_depths() {
        let evs = events(b"{\"k\": [true, \"s\"]}").unwrap();
        assert_eq!(
            evs,
            vec![
                Event::Open {
                    object: true,
                    depth: 1,
                    at: 0
                },
                Event::Key { depth: 1 },
                Event::Open {
                    object: false,
                    depth: 2,
                    at: 6
                },
                Event::Scalar {
                    scalar: Scalar::True,
                    depth: 2,
                    start: 7,
                    end: 11
                },
                Event::Scalar {
                    scalar: Scalar::String,
                    depth: 2,
                    start: 13,
                    end: 16
                },
                Event::Close { depth: 2, at: 16 },
                Event::Close { depth: 1, at: 17 },
            ]
        );
    }

    #[test]
    fn depth_is_bounded() {
        let deep = |n: usize| {
            let mut doc = vec![b'['; n];
            doc.extend(std::iter::repeat_n(b']', n));
            doc
        };
        assert!(valid(&deep(usize::from(MAX_DEPTH))));
        assert!(!valid(&deep(usize::from(MAX_DEPTH) + 1)));
        assert!(!valid(&deep(10_000)));
    }

    #[test]
    fn chunk_boundaries_do_not_matter() {
        let doc = "{\"a\\u00e9\": [1.5e3, \"x\u{1F600}\\ud83d\\ude00\", null, 123456], \"b\": -7}"
            .as_bytes();
        let whole = events(doc).unwrap();
        for split in 0..=doc.len() {
            let (head, tail) = doc.split_at(split);
            let mut lexer = Lexer::new();
            let mut out = Vec::new();
            for chunk in [head, tail] {
                let mut pos = 0;
                loop {
                    match lexer.next(chunk, &mut pos) {
                        Step::Event(e) => out.push(e),
                        Step::More => break,
                        Step::Error => panic!("error at split {split}"),
                    }
                }
            }
            assert!(lexer.is_complete());
            assert_eq!(out, whole, "split {split}");
        }
    }

    fn is_special(b: u8) -> bool {
        b == b'"' || b == b'\\' || b < 0x20
    }

    /// Events and decoded keys of `doc` fed in chunks cut at `splits`, or
    /// `None` when it is not JSON.
    #[allow(clippy::type_complexity)]
    fn lexed(doc: &[u8], splits: &[usize]) -> Option<(Vec<Event>, Vec<Option<Vec<u8>>>)> {
        let mut lexer = Lexer::new();
        let (mut events, mut keys) = (Vec::new(), Vec::new());
        let mut from = 0;
        for &to in splits.iter().chain([&doc.len()]) {
            let chunk = &doc[from..to];
            from = to;
            let mut pos = 0;
            loop {
                match lexer.next(chunk, &mut pos) {
                    Step::Event(e) => {
                        if let Event::Key { .. } = e {
                            keys.push(lexer.key().map(<[u8]>::to_vec));
                        }
                        events.push(e);
                    }
                    Step::More => break,
                    Step::Error => return None,
                }
            }
        }
        lexer.is_complete().then_some((events, keys))
    }

    #[test]
    fn escapes_decode_alike_at_every_split() {
        for doc in [
            &br#"{"\u0075sage":1,"k\u00e9":2,"\ud83d\ude00x":3,"a\nb\u0041":"\u0041\ud83d\ude00\n\/"}"#[..],
            br#"{"k":"\ud800\ud800"}"#,
            br#"{"k":"\ude00\ud83d"}"#,
            br#"{"k":"\udbff\udfff\uDBFF\uDFFF\uFFFF\u0000"}"#,
            br#"{"k":"\ud83d\u0041"}"#,
            br#"{"k":"\ud83dx"}"#,
            br#"{"k":"\u12g4"}"#,
            br#"{"\u00e9abcdefghijklmnopqrstuvwxyz":1,"abcdefghijklmnopqrstuvwxyz":2}"#,
            br#"{"abcdefghijklmnopqrstuvw":1,"abcdefghijklmnopqrstuvwx":2,"abcdefghijklmnopqrstuvwxy":3}"#,
            br#"[0,01,-0,1.5,12e3,18446744073709551616,true,false,null,nul]"#,
            br#"[0 ,1 , 2 ]"#,
        ] {
            let whole = lexed(doc, &[]);
            for split in 0..=doc.len() {
                assert_eq!(lexed(doc, &[split]), whole, "{doc:?} {split}");
            }
        }
        let (_, keys) = lexed(
            br#"{"\u0075sage":1,"k\u00e9":2,"x\ud83d\ude00":3,"a\nb\u0041":4,"abcdefghijklmnopqrstuvwx":5,"abcdefghijklmnopqrstuvwxy":6}"#,
            &[],
        )
        .unwrap();
        assert_eq!(
            keys,
            vec![
                Some(b"usage".to_vec()),
                None,
                None,
                Some(b"a\nbA".to_vec()),
                Some(b"abcdefghijklmnopqrstuvwx".to_vec()),
                None
            ]
        );
    }

    #[test]
    fn special_run_matches_a_byte_loop() {
        // Every length and alignment around the word size, with a special
        // or non-ASCII byte at every position.
        let naive = |s: &[u8]| {
            let len = s.iter().position(|&b| is_special(b)).unwrap_or(s.len());
            (len, s[..len].is_ascii())
        };
        let base = b"abcdefghijklmnopqrstuvwxyz0123456789".to_vec();
        for len in 0..=base.len() {
            let plain = &base[..len];
            assert_eq!(special_run(plain), naive(plain));
            for at in 0..len {
                for b in [
                    b'"', b'\\', 0x00, 0x1F, 0x20, 0x7F, 0x80, 0xFF, b'!', b'#', b'[', b']',
                ] {
                    let mut s = plain.to_vec();
                    s[at] = b;
                    assert_eq!(special_run(&s), naive(&s), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn key_escapes_decode_on_every_path() {
        let input = b"{\"a\\n\\\"b\\/\\u0063\":1}";
        let whole = {
            let mut lexer = Lexer::new();
            let mut pos = 0;
            let mut key = None;
            while let Step::Event(e) = lexer.next(input, &mut pos) {
                if let Event::Key { .. } = e {
                    key = lexer.key().map(<[u8]>::to_vec);
                }
            }
            key
        };
        assert_eq!(whole.as_deref(), Some(&b"a\n\"b/c"[..]));
    }

    #[test]
    fn errors_are_sticky() {
        let mut lexer = Lexer::new();
        let mut pos = 0;
        assert_eq!(lexer.next(b"]", &mut pos), Step::Error);
        let mut pos = 0;
        assert_eq!(lexer.next(b"{}", &mut pos), Step::Error);
        let mut pos = 0;
        assert_eq!(lexer.next(b"", &mut pos), Step::Error);
        assert!(!lexer.is_complete());
    }
}
