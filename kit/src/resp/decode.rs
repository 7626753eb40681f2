//! Replies decoded in place: a flat list of frames holding offsets into
//! the received bytes, and [`Reply`] views that borrow them.

use crate::hex::{self, Case};
use core::fmt;
use smallvec::SmallVec;

/// A decoded Redis reply, borrowing the bytes it was decoded from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `:n`
    Integer(i64),
    /// `+text`
    Simple(&'a [u8]),
    /// `$n` followed by n bytes.
    Bulk(&'a [u8]),
    /// `$-1` or `*-1`.
    Nil,
    /// `-ERR text`: Redis refused the command. This is an answer, not a
    /// transport failure.
    Error(&'a [u8]),
    /// `*n` followed by n replies.
    Array(ReplyArray<'a>),
}

impl fmt::Debug for Reply<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Integer(n) => write!(f, "Integer({n})"),
            Reply::Simple(s) => write!(f, "Simple({})", Quoted(s)),
            Reply::Bulk(s) => write!(f, "Bulk({})", Quoted(s)),
            Reply::Nil => f.write_str("Nil"),
            Reply::Error(s) => write!(f, "Error({})", Quoted(s)),
            Reply::Array(a) => f.debug_list().entries(a.iter()).finish(),
        }
    }
}

/// The reply as a log line names it: `integer 17`, `nil`, `error
/// "NOSCRIPT ..."`, `array of 3`. Plugins log replies with this, not with
/// `{:?}`: a message is no place for Rust syntax, and a module that
/// formats no `Debug` is smaller.
impl fmt::Display for Reply<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Integer(n) => write!(f, "integer {n}"),
            Reply::Simple(s) => write!(f, "simple string {}", Quoted(s)),
            Reply::Bulk(s) => write!(f, "bulk string {}", Quoted(s)),
            Reply::Nil => f.write_str("nil"),
            Reply::Error(s) => write!(f, "error {}", Quoted(s)),
            Reply::Array(a) => write!(f, "array of {}", a.len()),
        }
    }
}

/// Reply bytes between double quotes: printable ASCII as is, `"` and `\`
/// escaped with a backslash, any other byte as `\xNN`.
///
/// Written by hand because `{:?}` of a `str` brings Unicode's printable
/// tables into the module, and the bytes need not be UTF-8 anyway.
struct Quoted<'a>(&'a [u8]);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        f.write_char('"')?;
        for &b in self.0 {
            match b {
                b'"' | b'\\' => {
                    f.write_char('\\')?;
                    f.write_char(char::from(b))?;
                }
                b' '..=b'~' => f.write_char(char::from(b))?,
                _ => {
                    f.write_str("\\x")?;
                    f.write_char(char::from(hex::digit(b >> 4, Case::Lower)))?;
                    f.write_char(char::from(hex::digit(b, Case::Lower)))?;
                }
            }
        }
        f.write_char('"')
    }
}

impl<'a> Reply<'a> {
    /// The integer value of `:n`, or of a bulk or simple string holding a
    /// decimal integer (EVAL returns Lua numbers as integers, but some
    /// scripts return strings).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Reply::Integer(n) => Some(n),
            Reply::Bulk(s) | Reply::Simple(s) => core::str::from_utf8(s).ok()?.parse().ok(),
            _ => None,
        }
    }

    /// The bytes of a bulk or simple string.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match *self {
            Reply::Bulk(s) | Reply::Simple(s) => Some(s),
            _ => None,
        }
    }

    /// Whether this is a Redis error reply starting with `prefix`
    /// (`b"NOSCRIPT"`, `b"WRONGTYPE"`...).
    pub fn is_error(&self, prefix: &[u8]) -> bool {
        matches!(self, Reply::Error(e) if e.starts_with(prefix))
    }
}

/// The elements of an array reply.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ReplyArray<'a> {
    bytes: &'a [u8],
    len: u32,
    /// The frames of the elements, nested arrays' elements included.
    frames: &'a [Frame],
}

impl<'a> ReplyArray<'a> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the array is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Element `index`, if any.
    ///
    /// Elements are found by skipping the ones before, so reading every
    /// element is quicker with [`ReplyArray::iter`].
    pub fn get(&self, index: usize) -> Option<Reply<'a>> {
        self.iter().nth(index)
    }

    /// The elements in order.
    pub fn iter(&self) -> impl Iterator<Item = Reply<'a>> + '_ {
        Elements {
            bytes: self.bytes,
            frames: self.frames,
        }
    }
}

impl fmt::Debug for ReplyArray<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The elements of an array, read off its frames one after another.
struct Elements<'a> {
    bytes: &'a [u8],
    frames: &'a [Frame],
}

impl<'a> Iterator for Elements<'a> {
    type Item = Reply<'a>;

    fn next(&mut self) -> Option<Reply<'a>> {
        let (frame, after) = self.frames.split_first()?;
        self.frames = after.get(frame.nested()..).unwrap_or_default();
        Some(reply(self.bytes, frame, after))
    }
}

/// Start and end offsets of a string in the reply bytes.
///
/// `u32` keeps a string's frame as small as an integer's; [`decode`]
/// refuses longer input, so the offsets are exact.
type Span = (u32, u32);

fn span(start: usize, end: usize) -> Span {
    (start as u32, end as u32)
}

/// One decoded value.
///
/// Frames are stored flat, in the order of the bytes: an array is one
/// frame followed by the frames of its elements, so a reply of a few
/// values lives in one small inline buffer instead of a tree of `Vec`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frame {
    Integer(i64),
    Simple(Span),
    Bulk(Span),
    Error(Span),
    Nil,
    /// `len` elements, in the `nested` frames that follow this one.
    Array {
        len: u32,
        nested: u32,
    },
}

impl Frame {
    /// Frames after this one that belong to it: its elements' frames.
    fn nested(&self) -> usize {
        match *self {
            Frame::Array { nested, .. } => nested as usize,
            _ => 0,
        }
    }
}

/// The reply of `frame`, whose elements' frames, if any, start `after`.
fn reply<'a>(bytes: &'a [u8], frame: &Frame, after: &'a [Frame]) -> Reply<'a> {
    let slice = |&(start, end): &Span| bytes.get(start as usize..end as usize).unwrap_or_default();
    match frame {
        Frame::Integer(n) => Reply::Integer(*n),
        Frame::Simple(s) => Reply::Simple(slice(s)),
        Frame::Bulk(s) => Reply::Bulk(slice(s)),
        Frame::Error(s) => Reply::Error(slice(s)),
        Frame::Nil => Reply::Nil,
        &Frame::Array { len, nested } => Reply::Array(ReplyArray {
            bytes,
            len,
            frames: after.get(..nested as usize).unwrap_or_default(),
        }),
    }
}

/// Frames of elements kept inline: an array of up to six scalars (a
/// script's answer) is decoded without allocating; bigger replies spill
/// to the heap.
///
/// Six keep [`Decoded`] small enough for the compiler to move it with a
/// few vector copies; one more and every move becomes a call to
/// `memcpy`, a large part of the cost of a small reply. (A smaller
/// frame, the integer split in halves, fits more but stalls the CPU
/// reading the halves back as one.)
const INLINE_FRAMES: usize = 6;

/// Arrays nested deeper than this are refused (see [`decode`]).
const MAX_DEPTH: usize = 16;

/// The fewest bytes a value takes (`+\r\n`), which bounds how many
/// elements the rest of the input can hold.
const MIN_VALUE_LEN: usize = 3;

/// A decoded reply, kept so that a [`Reply`] can borrow it.
///
/// The frame of the reply itself is kept apart from its elements': a
/// scalar reply's frame goes from registers into the result, not into
/// the list and out again, and the list holds one more element.
#[derive(Debug)]
pub struct Decoded {
    frame: Frame,
    elements: SmallVec<[Frame; INLINE_FRAMES]>,
}

/// The bytes are not exactly one complete RESP2 value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidReply;

impl fmt::Display for InvalidReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not one complete RESP2 value")
    }
}

impl std::error::Error for InvalidReply {}

/// Decodes one complete reply from `bytes`.
///
/// Strings are offsets into `bytes`, nothing is copied; a reply of up to
/// seven values (an integer, a string, an array of up to six scalars)
/// is decoded without allocating.
///
/// The bytes are read as `redis-protocol`'s `decode_range` reads them
/// (the tests compare both on random and mutated replies): a line ends at
/// the first CRLF, integers and lengths are what `i64::from_str` takes
/// (`+5`, `007` and `-0` included), `$-1` and `*-1` are nil. It differs
/// in three ways, each refusing what Redis never sends:
/// - a bulk string must be followed by CRLF, where `redis-protocol`
///   takes any two bytes: anything else means the length was wrong, and
///   the next value would be read from the middle of this one;
/// - arrays nest at most 16 deep (an empty array is a level, a nil is
///   not), so hostile input cannot exhaust the stack;
/// - input of 4 GiB or more is refused (offsets are `u32`).
///
/// A declared length is only trusted as far as the input goes: `$n` and
/// `*n` beyond the end are refused before anything is reserved, and the
/// frames grow with the elements actually read (a frame for each value,
/// and a value takes three bytes of input or more).
///
/// # Errors
/// When the bytes are not exactly one complete RESP2 value (a truncated
/// reply, trailing bytes or garbage), or break one of the limits above.
pub fn decode(bytes: &[u8]) -> Result<Decoded, InvalidReply> {
    if u32::try_from(bytes.len()).is_err() {
        return Err(InvalidReply);
    }
    let mut reader = Reader {
        bytes,
        at: 0,
        frames: SmallVec::new(),
    };
    match reader.value(0) {
        Some(frame) if reader.at == bytes.len() => Ok(Decoded {
            frame,
            elements: reader.frames,
        }),
        _ => Err(InvalidReply),
    }
}

/// [`decode`] into `out`, reusing its frames: a reply with more elements
/// than fit inline allocates the first time only.
///
/// # Errors
/// As [`decode`]; `out` then holds no reply.
pub fn decode_into(bytes: &[u8], out: &mut Decoded) -> Result<(), InvalidReply> {
    out.frame = Frame::Nil;
    let mut frames = core::mem::take(&mut out.elements);
    frames.clear();
    let mut reader = Reader {
        bytes,
        at: 0,
        frames,
    };
    let read = match u32::try_from(bytes.len()) {
        Ok(_) => reader.value(0).filter(|_| reader.at == bytes.len()),
        Err(_) => None,
    };
    out.elements = reader.frames;
    match read {
        Some(frame) => {
            out.frame = frame;
            Ok(())
        }
        None => {
            out.elements.clear();
            Err(InvalidReply)
        }
    }
}

impl Default for Decoded {
    /// A nil reply, with no frames yet.
    fn default() -> Self {
        Decoded {
            frame: Frame::Nil,
            elements: SmallVec::new(),
        }
    }
}

/// The state of one [`decode`]: the next byte to read and the frames of
/// elements so far.
struct Reader<'b> {
    bytes: &'b [u8],
    /// Never beyond `bytes.len()`.
    at: usize,
    frames: SmallVec<[Frame; INLINE_FRAMES]>,
}

impl Reader<'_> {
    /// Reads one value nested in `depth` arrays: appends its elements'
    /// frames, returns its own.
    // Inlined into `decode`, so a scalar reply's frame is built in
    // registers, not returned through memory and read back at once (a
    // stalled store forwarding, costly beside a reply this small).
    #[inline(always)]
    fn value(&mut self, depth: usize) -> Option<Frame> {
        let kind = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(match kind {
            b':' => Frame::Integer(self.number()?),
            b'+' | b'-' => {
                // A reply that is a status or an error is one line to the
                // end; the check is only worth it there, as in an array it
                // would scan the rest of the input for every element.
                let whole = if depth == 0 { self.whole_line() } else { None };
                let (start, end) = match whole {
                    Some(line) => line,
                    None => self.line()?,
                };
                if kind == b'+' {
                    Frame::Simple(span(start, end))
                } else {
                    Frame::Error(span(start, end))
                }
            }
            b'$' => match self.number()? {
                -1 => Frame::Nil,
                len => Frame::Bulk(self.bulk(usize::try_from(len).ok()?)?),
            },
            b'*' => match self.number()? {
                -1 => Frame::Nil,
                len => self.array(u32::try_from(len).ok()?, depth)?,
            },
            _ => return None,
        })
    }

    /// The bytes up to the next CRLF, which is skipped.
    fn line(&mut self) -> Option<(usize, usize)> {
        let start = self.at;
        let mut from = start;
        // A lone CR or LF belongs to the line, as in `redis-protocol`;
        // Redis never sends one, so this loop turns once.
        loop {
            let lf = from + self.bytes.get(from..)?.iter().position(|&b| b == b'\n')?;
            if lf > start && self.bytes.get(lf - 1) == Some(&b'\r') {
                self.at = lf + 1;
                return Some((start, lf - 1));
            }
            from = lf + 1;
        }
    }

    /// The rest of the input as one line, if it is one.
    ///
    /// Quicker than [`Reader::line`] on long lines: `contains` looks at a
    /// word at a time, where finding the first CRLF goes byte by byte.
    fn whole_line(&mut self) -> Option<(usize, usize)> {
        let start = self.at;
        let text = self.bytes.get(start..)?.strip_suffix(b"\r\n")?;
        // Without a LF before it, the final CRLF is the first one.
        if text.contains(&b'\n') {
            return None;
        }
        self.at = self.bytes.len();
        Some((start, start + text.len()))
    }

    /// A line holding a decimal integer.
    fn number(&mut self) -> Option<i64> {
        // `$-1`, a GET of a missing key, without the scan and the digit
        // loop, a good part of the cost of that short reply.
        if self.bytes.get(self.at..self.at + 4) == Some(b"-1\r\n") {
            self.at += 4;
            return Some(-1);
        }
        if let Some((n, after)) = plain_number(self.bytes, self.at) {
            self.at = after;
            return Some(n);
        }
        let (start, end) = self.line()?;
        integer(self.bytes.get(start..end)?)
    }

    /// The `len` bytes of a bulk string and the CRLF after them.
    fn bulk(&mut self, len: usize) -> Option<Span> {
        let start = self.at;
        let end = start.checked_add(len)?;
        let after = end.checked_add(2)?;
        if self.bytes.get(end..after)? != b"\r\n" {
            return None;
        }
        self.at = after;
        Some(span(start, end))
    }

    /// The `len` elements of an array nested in `depth` others; returns
    /// the array's frame.
    fn array(&mut self, len: u32, depth: usize) -> Option<Frame> {
        if depth >= MAX_DEPTH || len as usize > (self.bytes.len() - self.at) / MIN_VALUE_LEN {
            return None;
        }
        let first = self.frames.len();
        for _ in 0..len {
            // An element's frame goes before its own elements' frames,
            // which are read first.
            let at = self.frames.len();
            self.frames.push(Frame::Nil);
            let frame = self.value(depth + 1)?;
            if let Some(slot) = self.frames.get_mut(at) {
                *slot = frame;
            }
        }
        // Fewer frames than input bytes, and the input is under 4 GiB.
        let nested = u32::try_from(self.frames.len() - first).ok()?;
        Some(Frame::Array { len, nested })
    }
}

/// Digits known not to overflow an `i64` without checking each step.
const SAFE_DIGITS: usize = 18;

/// The common number line, 1 to 18 digits and CRLF (a count, a length),
/// at `at`: its value and where the line ends. `None` for anything else
/// (a sign, more digits, no CRLF right after them), which
/// [`Reader::line`] and [`integer`] then read as before.
///
/// Those two find the line's end first and go over its digits a second
/// time, with an overflow check for each; this loop goes over them once.
/// The answer is the same: the first LF after digits and CR ends the
/// line, and the line is the digits.
fn plain_number(bytes: &[u8], at: usize) -> Option<(i64, usize)> {
    let mut n: i64 = 0;
    let mut end = at;
    while let Some(&b) = bytes.get(end) {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        if end - at == SAFE_DIGITS {
            return None;
        }
        n = n * 10 + i64::from(d);
        end += 1;
    }
    if end == at || bytes.get(end..end + 2) != Some(b"\r\n") {
        return None;
    }
    Some((n, end + 2))
}

/// Decimal digits after an optional `+` or `-`, as `i64::from_str` reads
/// them; `None` for anything else and on overflow.
fn integer(digits: &[u8]) -> Option<i64> {
    let (negative, digits) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, digits),
    };
    if digits.is_empty() {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        let d = d.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        // Negative numbers are built downwards to reach `i64::MIN`.
        n = n.checked_mul(10)?;
        n = if negative {
            n.checked_sub(i64::from(d))?
        } else {
            n.checked_add(i64::from(d))?
        };
    }
    Some(n)
}

impl Decoded {
    /// The reply, borrowing the bytes it was decoded from.
    pub fn reply<'a>(&'a self, bytes: &'a [u8]) -> Reply<'a> {
        reply(bytes, &self.frame, &self.elements)
    }
}

#[cfg(test)]
mod tests;
