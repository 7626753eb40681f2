//! The lexer's fast path: whole runs of the common grammar (whitespace,
//! punctuation, plain keys and strings, unsigned integers, literals) in
//! straight-line code, leaving the lexer in the state the byte-by-byte
//! machine would have reached, so the machine takes over wherever this
//! stops.

use super::{append_digit, Act, Event, Lexer, Num, Scalar, State, KEY_CAP};
use crate::bytes::{is_line_end, is_space, padded_word, simple_escape};
use kit::hex;

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
pub(super) fn special_run(s: &[u8]) -> (usize, bool) {
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

impl Lexer {
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
    /// three places each, and a copy of them in every one would grow the
    /// module by far more than the call it saves per event is worth.
    #[inline(always)]
    pub(super) fn fast<const LINE: bool>(
        &mut self,
        input: &[u8],
        pos: &mut usize,
    ) -> Option<Event> {
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
}
