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

use crate::bytes::{is_line_end, is_space, simple_escape};

mod fast;

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
mod tests;
