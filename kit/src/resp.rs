//! RESP2 on the wire: commands encoded into a reused buffer, replies decoded
//! in place.
//!
//! A command is written straight from its argument bytes into one
//! `BytesMut` that keeps its capacity between commands. A command is always
//! an array of bulk strings, so the kit writes that one shape itself: it
//! is about ten times faster than building `redis-protocol` borrowed frames
//! and letting it size and write them (`benches`, group `resp_encode`), and
//! the tests check both give the same bytes.
//!
//! Decoding reads integer replies (the answer to INCR, INCRBY and the
//! counting scripts) directly and hands everything else to
//! `redis-protocol`'s range frames: a reply is a set of offsets into the
//! received bytes, and [`Reply`] hands out slices of those bytes without
//! copying. Only array replies allocate (the list of element ranges).

use bytes::BytesMut;
use core::fmt;
use redis_protocol::resp2::decode::decode_range;
use redis_protocol::resp2::types::RangeFrame;
use smallvec::SmallVec;

/// Arguments of one command: a byte arena plus the range of each argument.
///
/// The kit can also reserve an argument and fill it later, which is how
/// EVAL's `numkeys` is written once the keys are known.
#[derive(Debug, Default, Clone)]
pub struct CommandArgs {
    arena: Vec<u8>,
    ranges: SmallVec<[(u32, u32); 12]>,
}

impl CommandArgs {
    /// Removes every argument, keeping the memory.
    pub fn clear(&mut self) {
        self.arena.clear();
        self.ranges.clear();
    }

    /// Number of arguments, the command name included.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether there are no arguments.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    fn end(&self) -> u32 {
        // Commands are bounded by the proxy's buffers long before 4 GiB.
        u32::try_from(self.arena.len()).unwrap_or(u32::MAX)
    }

    /// Appends one argument made of `parts` concatenated.
    pub fn push_parts(&mut self, parts: &[&[u8]]) {
        let start = self.end();
        for part in parts {
            self.arena.extend_from_slice(part);
        }
        self.ranges.push((start, self.end()));
    }

    /// Appends one argument.
    pub fn push(&mut self, arg: &[u8]) {
        self.push_parts(&[arg]);
    }

    /// Appends an integer argument in decimal.
    pub fn push_int(&mut self, n: i64) {
        let mut digits = itoa::Buffer::new();
        self.push(digits.format(n).as_bytes());
    }

    /// Adds an empty argument to fill later with [`CommandArgs::fill_slot`].
    pub(crate) fn reserve_slot(&mut self) -> usize {
        self.ranges.push((0, 0));
        self.ranges.len() - 1
    }

    /// Writes the bytes of a reserved argument.
    pub(crate) fn fill_slot(&mut self, slot: usize, arg: &[u8]) {
        let start = self.end();
        self.arena.extend_from_slice(arg);
        let end = self.end();
        if let Some(range) = self.ranges.get_mut(slot) {
            *range = (start, end);
        }
    }

    /// Replaces argument `index` (used to turn EVALSHA into EVAL).
    pub(crate) fn replace(&mut self, index: usize, arg: &[u8]) {
        self.fill_slot(index, arg);
    }

    /// Argument `index`; empty when out of range.
    pub fn get(&self, index: usize) -> &[u8] {
        self.ranges
            .get(index)
            .and_then(|&(s, e)| self.arena.get(s as usize..e as usize))
            .unwrap_or_default()
    }

    /// The arguments in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.ranges.len()).map(|i| self.get(i))
    }

    pub(crate) fn copy_from(&mut self, other: &CommandArgs) {
        self.arena.clear();
        self.arena.extend_from_slice(&other.arena);
        self.ranges.clear();
        self.ranges.extend_from_slice(&other.ranges);
    }
}

/// Encodes `args` as one RESP array of bulk strings into `out` (cleared).
///
/// `out` grows once at most per call, to the exact size when it is short,
/// and keeps its capacity for the next command.
///
/// # Examples
/// ```
/// use bytes::BytesMut;
/// use kit::resp::{encode_command, CommandArgs};
///
/// let mut args = CommandArgs::default();
/// args.push(b"INCRBY");
/// args.push(b"quota:{alice}");
/// args.push_int(42);
/// let mut wire = BytesMut::new();
/// encode_command(&args, &mut wire);
/// assert_eq!(&wire[..], b"*3\r\n$6\r\nINCRBY\r\n$13\r\nquota:{alice}\r\n$2\r\n42\r\n");
/// ```
pub fn encode_command(args: &CommandArgs, out: &mut BytesMut) {
    out.clear();
    // Each header is a type byte, at most 10 digits (arguments stay under
    // 4 GiB) and CRLF; each argument ends with CRLF.
    out.reserve(args.arena.len() + 13 + args.ranges.len() * 15);
    // The bytes between two arguments (CRLF, `$`, the length, CRLF) go out
    // in one copy: copies into a `BytesMut` cost more than the bytes.
    let mut between = Between::default();
    between.header(b'*', args.len());
    for arg in args.iter() {
        between.header(b'$', arg.len());
        out.extend_from_slice(between.take());
        out.extend_from_slice(arg);
        between.crlf();
    }
    out.extend_from_slice(between.take());
}

/// The bytes written between two arguments, gathered on the stack.
#[derive(Default)]
struct Between {
    bytes: [u8; 32],
    len: usize,
}

impl Between {
    // Byte by byte: these are one to a dozen bytes, and a `copy_from_slice`
    // of a length the compiler cannot see is a call to `memcpy` each time.
    fn byte(&mut self, b: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    fn crlf(&mut self) {
        self.byte(b'\r');
        self.byte(b'\n');
    }

    /// `<kind><n>\r\n`: at most 23 bytes, after at most a CRLF.
    fn header(&mut self, kind: u8, n: usize) {
        self.byte(kind);
        // Most arguments are under 100 bytes long.
        match n {
            0..=9 => self.byte(b'0' + n as u8),
            10..=99 => {
                self.byte(b'0' + (n / 10) as u8);
                self.byte(b'0' + (n % 10) as u8);
            }
            _ => {
                let mut digits = itoa::Buffer::new();
                for &d in digits.format(n).as_bytes() {
                    self.byte(d);
                }
            }
        }
        self.crlf();
    }

    fn take(&mut self) -> &[u8] {
        let len = core::mem::take(&mut self.len);
        self.bytes.get(..len).unwrap_or_default()
    }
}

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
            Reply::Simple(s) => write!(f, "Simple({:?})", String::from_utf8_lossy(s)),
            Reply::Bulk(s) => write!(f, "Bulk({:?})", String::from_utf8_lossy(s)),
            Reply::Nil => f.write_str("Nil"),
            Reply::Error(s) => write!(f, "Error({:?})", String::from_utf8_lossy(s)),
            Reply::Array(a) => f.debug_list().entries(a.iter()).finish(),
        }
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
    items: &'a [RangeFrame],
}

impl<'a> ReplyArray<'a> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the array is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Element `index`, if any.
    pub fn get(&self, index: usize) -> Option<Reply<'a>> {
        self.items.get(index).map(|frame| reply(self.bytes, frame))
    }

    /// The elements in order.
    pub fn iter(&self) -> impl Iterator<Item = Reply<'a>> + '_ {
        let bytes = self.bytes;
        self.items.iter().map(move |frame| reply(bytes, frame))
    }
}

impl fmt::Debug for ReplyArray<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

fn reply<'a>(bytes: &'a [u8], frame: &'a RangeFrame) -> Reply<'a> {
    let slice = |(start, end): &(usize, usize)| bytes.get(*start..*end).unwrap_or_default();
    match frame {
        RangeFrame::Integer(n) => Reply::Integer(*n),
        RangeFrame::SimpleString(r) => Reply::Simple(slice(r)),
        RangeFrame::BulkString(r) => Reply::Bulk(slice(r)),
        RangeFrame::Error(r) => Reply::Error(slice(r)),
        RangeFrame::Null => Reply::Nil,
        RangeFrame::Array(items) => Reply::Array(ReplyArray { bytes, items }),
    }
}

/// A decoded frame, kept so that a [`Reply`] can borrow it.
#[derive(Debug)]
pub struct Decoded(RangeFrame);

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
/// # Errors
/// When the bytes are not exactly one complete RESP2 value (a truncated
/// reply, trailing bytes or garbage).
pub fn decode(bytes: &[u8]) -> Result<Decoded, InvalidReply> {
    if let Some(frame) = scalar_reply(bytes) {
        return Ok(Decoded(frame));
    }
    match decode_range(bytes) {
        Ok(Some((frame, used))) if used == bytes.len() => Ok(Decoded(frame)),
        _ => Err(InvalidReply),
    }
}

/// A reply that is one line, or one bulk string, read without the general
/// decoder: the answers to INCR, GET, SET and the counting scripts.
///
/// Only exact, canonical forms are taken; anything unusual (an integer
/// that might overflow, a CR inside a line, a malformed length) is left to
/// `redis-protocol`, so both paths always agree (the tests check it).
fn scalar_reply(bytes: &[u8]) -> Option<RangeFrame> {
    let (&kind, rest) = bytes.split_first()?;
    let line = rest.strip_suffix(b"\r\n")?;
    match kind {
        b':' => integer(line).map(RangeFrame::Integer),
        b'+' | b'-' if !line.contains(&b'\r') => {
            let range = (1, bytes.len() - 2);
            Some(if kind == b'+' {
                RangeFrame::SimpleString(range)
            } else {
                RangeFrame::Error(range)
            })
        }
        b'$' if line == b"-1" => Some(RangeFrame::Null),
        b'$' => {
            let header = line.iter().position(|&b| b == b'\r')?;
            let len = usize::try_from(integer(line.get(..header)?)?).ok()?;
            let start = 1 + header + 2;
            (line.get(header..start - 1)? == b"\r\n" && start + len == bytes.len() - 2)
                .then_some(RangeFrame::BulkString((start, start + len)))
        }
        _ => None,
    }
}

/// Decimal digits with an optional `-`; `None` for anything else and for
/// more than 18 digits (which could overflow an i64: left to the general
/// decoder).
fn integer(digits: &[u8]) -> Option<i64> {
    let (negative, digits) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + i64::from(d - b'0');
    }
    Some(if negative { -n } else { n })
}

impl Decoded {
    /// The reply, borrowing the bytes it was decoded from.
    pub fn reply<'a>(&'a self, bytes: &'a [u8]) -> Reply<'a> {
        reply(bytes, &self.0)
    }
}

/// The hex digit of a nibble, with `letter_a` as the digit for 10.
pub(crate) const fn hex_digit(nibble: u8, letter_a: u8) -> u8 {
    match nibble & 0xf {
        n @ 0..=9 => b'0' + n,
        n => letter_a + n - 10,
    }
}

/// Appends `arg` percent-encoded as one webdis path segment.
///
/// Everything but ASCII letters, digits, `-` and `_` is escaped: `/` would
/// split the argument, `.` could be taken for the `.raw` suffix, `%` and `+`
/// would be decoded, and control bytes or non-ASCII must reach Redis
/// byte for byte.
pub(crate) fn push_path_segment(out: &mut BytesMut, arg: &[u8]) {
    // Bytes are gathered on the stack and copied out a block at a time:
    // a key like `limiter:{api:header:x-api-key:k-1}:1700000000` has an
    // escape every few bytes, and a copy per escape costs more than the
    // escaping.
    let mut block = [0u8; 128];
    block[0] = b'/';
    let mut len = 1;
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
                slot.copy_from_slice(&[b'%', hex_digit(b >> 4, b'A'), hex_digit(b & 0xf, b'A')]);
            }
            len += 3;
        }
    }
    out.extend_from_slice(block.get(..len).unwrap_or_default());
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

/// Encodes `args` as a webdis request path `/CMD/arg1/arg2.raw` into `out`.
pub fn encode_webdis_path(args: &CommandArgs, out: &mut BytesMut) {
    out.clear();
    for arg in args.iter() {
        push_path_segment(out, arg);
    }
    out.extend_from_slice(b".raw");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&[u8]]) -> CommandArgs {
        let mut a = CommandArgs::default();
        for x in list {
            a.push(x);
        }
        a
    }

    #[test]
    fn encodes_resp_array_of_bulk_strings() {
        let mut out = BytesMut::new();
        encode_command(&args(&[b"INCRBY", b"k", b"-5"]), &mut out);
        assert_eq!(&out[..], b"*3\r\n$6\r\nINCRBY\r\n$1\r\nk\r\n$2\r\n-5\r\n");
    }

    #[test]
    fn encoder_writes_what_redis_protocol_writes() {
        use redis_protocol::resp2::encode::extend_encode_borrowed;
        use redis_protocol::resp2::types::BorrowedFrame;
        // A small LCG: arguments of every length class, empty ones and
        // CRLF and high bytes inside arguments included.
        let mut seed = 0x2545_f491_u64;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) % n
        };
        let (mut ours, mut theirs) = (BytesMut::new(), BytesMut::new());
        for _ in 0..500 {
            let mut a = CommandArgs::default();
            for _ in 0..next(14) {
                let len = [0, 1, 9, 10, 99, 100, 1000][next(7) as usize];
                let arg: Vec<u8> = (0..len).map(|_| next(256) as u8).collect();
                a.push(&arg);
            }
            encode_command(&a, &mut ours);
            let frames: Vec<BorrowedFrame<'_>> = a.iter().map(BorrowedFrame::BulkString).collect();
            theirs.clear();
            extend_encode_borrowed(&mut theirs, &BorrowedFrame::Array(&frames), false).unwrap();
            assert_eq!(ours, theirs);
        }
    }

    /// The kit's reading of `bytes`, or `None` when it refuses them.
    fn ours(bytes: &[u8]) -> Option<RangeFrame> {
        decode(bytes).ok().map(|d| d.0)
    }

    /// `redis-protocol`'s reading of `bytes` as one complete value.
    fn theirs(bytes: &[u8]) -> Option<RangeFrame> {
        match decode_range(bytes) {
            Ok(Some((frame, used))) if used == bytes.len() => Some(frame),
            _ => None,
        }
    }

    #[test]
    fn scalar_fast_path_agrees_with_the_general_decoder() {
        let cases: &[&[u8]] = &[
            b":0\r\n",
            b":-0\r\n",
            b":17\r\n",
            b":-17\r\n",
            b":123456789012345678\r\n",
            b":-123456789012345678\r\n",
            b":1234567890123456789\r\n",
            b":9223372036854775807\r\n",
            b":-9223372036854775808\r\n",
            b":9223372036854775808\r\n",
            b":99999999999999999999\r\n",
            b":+5\r\n",
            b": 5\r\n",
            b":5 \r\n",
            b":\r\n",
            b":-\r\n",
            b":5\n",
            b":5\r\n\r\n",
            b":5",
            b":1a\r\n",
            b"+OK\r\n",
            b"+\r\n",
            b"+O\rK\r\n",
            b"+O\nK\r\n",
            b"+OK\r\n+OK\r\n",
            b"-ERR x\r\n",
            b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
            b"$-1\r\n",
            b"$-2\r\n",
            b"$0\r\n\r\n",
            b"$3\r\nabc\r\n",
            b"$3\r\nab\r\n",
            b"$3\r\nabcd\r\n",
            b"$3\r\na\r\n\r\n",
            b"$2\r\n\r\n\r\n",
            b"$03\r\nabc\r\n",
            b"$+3\r\nabc\r\n",
            b"$3\nabc\r\n",
            b"$3\r\nabc",
            b"$\r\n\r\n",
            b"$99999999999999999999\r\nabc\r\n",
            b"*1\r\n:1\r\n",
            b"",
            b"\r\n",
        ];
        for bytes in cases {
            assert_eq!(
                ours(bytes),
                theirs(bytes),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        // Every prefix and one-byte change of a few replies.
        let mut seed = 0x9e37_79b9_u64;
        for reply in [
            &b":-1234\r\n"[..],
            b"$5\r\nhello\r\n",
            b"+OK\r\n",
            b"-ERR no\r\n",
        ] {
            for cut in 0..reply.len() {
                let prefix = reply.get(..cut).unwrap();
                assert_eq!(ours(prefix), theirs(prefix), "{prefix:?}");
            }
            for _ in 0..2_000 {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let mut changed = reply.to_vec();
                let at = (seed >> 40) as usize % changed.len();
                changed[at] = (seed >> 16) as u8;
                assert_eq!(ours(&changed), theirs(&changed), "{changed:?}");
            }
        }
    }

    #[test]
    fn reserved_slot_is_encoded_in_place() {
        let mut a = CommandArgs::default();
        a.push(b"EVAL");
        a.push(b"return 1");
        let slot = a.reserve_slot();
        a.push(b"key");
        a.fill_slot(slot, b"1");
        let mut out = BytesMut::new();
        encode_command(&a, &mut out);
        assert_eq!(
            &out[..],
            b"*4\r\n$4\r\nEVAL\r\n$8\r\nreturn 1\r\n$1\r\n1\r\n$3\r\nkey\r\n"
        );
    }

    #[test]
    fn webdis_path_escapes_everything_that_is_not_plain() {
        let mut out = BytesMut::new();
        encode_webdis_path(&args(&[b"GET", "a/b%c d.e+\r\né".as_bytes()]), &mut out);
        assert_eq!(&out[..], b"/GET/a%2Fb%25c%20d%2Ee%2B%0D%0A%C3%A9.raw");
    }

    #[test]
    fn decodes_every_reply_kind() {
        let cases: &[(&[u8], &str)] = &[
            (b":42\r\n", "Integer(42)"),
            (b"+OK\r\n", "Simple(\"OK\")"),
            (b"$3\r\nabc\r\n", "Bulk(\"abc\")"),
            (b"$-1\r\n", "Nil"),
            (
                b"-NOSCRIPT No matching script\r\n",
                "Error(\"NOSCRIPT No matching script\")",
            ),
            (b"*2\r\n:1\r\n$1\r\nx\r\n", "[Integer(1), Bulk(\"x\")]"),
        ];
        for (bytes, want) in cases {
            let decoded = decode(bytes).unwrap();
            assert_eq!(format!("{:?}", decoded.reply(bytes)), *want);
        }
    }

    #[test]
    fn refuses_truncated_trailing_and_garbage_replies() {
        for bad in [&b":4"[..], b"$5\r\nab\r\n", b":1\r\n:2\r\n", b"hello", b""] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn integer_from_bulk_string() {
        let bytes = b"$2\r\n17\r\n";
        let d = decode(bytes).unwrap();
        assert_eq!(d.reply(bytes).as_i64(), Some(17));
    }
}
