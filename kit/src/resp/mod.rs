//! RESP2 on the wire: commands written straight into the bytes their
//! transport sends, replies decoded in place.
//!
//! A command is written once, argument by argument, in its final form into
//! a [`CommandBuf`] that keeps its capacity between commands: a RESP array
//! of bulk strings for Higress's native Redis call, or a webdis path
//! (`/CMD/arg1/arg2.raw`, every argument percent-encoded). A command is
//! always an array of bulk strings, so the kit writes that one shape
//! itself: it is about ten times faster than building `redis-protocol`
//! borrowed frames and letting it size and write them (`benches`, group
//! `resp_encode`), and the tests check both give the same bytes.
//!
//! Decoding is the kit's own too: a reply is a flat list of frames holding
//! offsets into the received bytes, kept inline for up to seven values,
//! and [`Reply`] hands out slices of those bytes without copying. It reads
//! what `redis-protocol`'s range decoder reads (the tests compare the two)
//! without its parser combinators, CRC tables and `Vec` per array in the
//! module, and without allocating for the replies a plugin gets.

use crate::hex::{self, Case};
use core::fmt;
use smallvec::SmallVec;

/// The bytes a command is written as, chosen by the transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Form {
    /// A RESP array of bulk strings, as Higress's `proxy_redis_call` takes.
    #[default]
    Resp,
    /// A webdis request path, `/CMD/arg1/arg2.raw`, each argument
    /// percent-encoded (see [`CommandBuf::push`]).
    Path,
}

/// Room before the arguments for the RESP array's `*N\r\n`: `*`, the 20
/// digits of the largest count, CRLF.
///
/// The count is only known at the end, so the header is written there,
/// right-aligned against the first argument: the command starts wherever
/// the header does, and the arguments never move.
const HEADER_ROOM: usize = 24;

/// One Redis command, written in its transport's bytes as it is built.
///
/// Each argument is written once, in its final form: a RESP bulk string
/// (`$len\r\n`, the bytes, CRLF), or a path segment (`/` and the bytes
/// percent-encoded). [`CommandBuf::finish`] then adds the array's header
/// or the path's `.raw` and [`CommandBuf::bytes`] is what the host sends.
/// A count can be reserved and filled in place later, which is how EVAL's
/// `numkeys` is written once the keys are known.
///
/// # Examples
/// ```
/// use kit::resp::{CommandBuf, Form};
///
/// let mut cmd = CommandBuf::default();
/// for form in [Form::Resp, Form::Path] {
///     cmd.begin(form);
///     cmd.push(b"INCRBY");
///     cmd.push(b"quota:{alice}");
///     cmd.push_int(42);
///     cmd.finish();
///     let want: &[u8] = match form {
///         Form::Resp => b"*3\r\n$6\r\nINCRBY\r\n$13\r\nquota:{alice}\r\n$2\r\n42\r\n",
///         Form::Path => b"/INCRBY/quota%3A%7Balice%7D/42.raw",
///     };
///     assert_eq!(cmd.bytes(), want);
/// }
/// ```
#[derive(Debug, Default, Clone)]
pub struct CommandBuf {
    form: Form,
    /// [`HEADER_ROOM`] bytes, then the arguments. A `Vec`, so that call
    /// entries keep an EVALSHA for a retry by swapping a few words.
    bytes: Vec<u8>,
    /// Arguments written, the command name included.
    args: u32,
    /// Where the finished command starts in `bytes`.
    start: u32,
    /// Where the arguments after a script's name and digest start: at its
    /// `numkeys` (see [`CommandBuf::reserve_count`]).
    rest: u32,
}

/// What closes a Redis Cluster hash tag before a key's suffix, `}:`: the
/// usual middle part of a key written with [`CommandBuf::push_key`], after
/// a value and before a window's digits.
pub(crate) const KEY_CLOSE: &[u8] = b"}:";

/// [`KEY_CLOSE`] percent-encoded. Written whole, it spares escaping two
/// bytes after every per-value key's value, and leaves the value alone
/// between the head and the window, so that a plain value (the usual API
/// key or user id) is one copy (see [`push_escaped`]).
const KEY_CLOSE_SEGMENT: &[u8] = b"%7D%3A";

/// A reserved count (see [`CommandBuf::reserve_count`]) in RESP: `0`,
/// its digit filled in later.
pub const RESP_COUNT: &[u8] = b"$1\r\n0\r\n";

/// A reserved count in a path.
pub const PATH_COUNT: &[u8] = b"/0";

/// What ends a webdis path: the reply comes back as raw RESP.
const PATH_END: &[u8] = b".raw";

/// Whether every byte of `arg` stands for itself in a webdis path segment.
pub(crate) fn path_plain(arg: &[u8]) -> bool {
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

/// `n` as a `u32`; commands are bounded by the proxy's buffers long
/// before 4 GiB.
fn offset(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl CommandBuf {
    /// An empty buffer for commands of `form`.
    pub fn new(form: Form) -> Self {
        CommandBuf {
            form,
            ..CommandBuf::default()
        }
    }

    /// Starts a new command of `form`, keeping the memory.
    ///
    /// The form is given each time because buffers change hands: a call
    /// entry keeping an EVALSHA for a retry gives back its old buffer.
    pub fn begin(&mut self, form: Form) {
        self.form = form;
        // The room's old bytes are overwritten by the header, never read.
        self.bytes.resize(HEADER_ROOM, 0);
        self.args = 0;
        self.start = HEADER_ROOM as u32;
        self.rest = HEADER_ROOM as u32;
    }

    /// The form commands are written in.
    pub fn form(&self) -> Form {
        self.form
    }

    /// Number of arguments, the command name included.
    pub fn len(&self) -> usize {
        self.args as usize
    }

    /// Whether there are no arguments.
    pub fn is_empty(&self) -> bool {
        self.args == 0
    }

    /// The finished command: what the host sends. Only whole after
    /// [`CommandBuf::finish`].
    pub fn bytes(&self) -> &[u8] {
        self.bytes.get(self.start as usize..).unwrap_or_default()
    }

    /// Appends one argument.
    pub fn push(&mut self, arg: &[u8]) {
        self.args = self.args.saturating_add(1);
        match self.form {
            Form::Resp => self.push_bulk(arg),
            Form::Path => {
                self.bytes.push(b'/');
                push_escaped(&mut self.bytes, arg);
            }
        }
    }

    /// Appends one argument made of `parts` concatenated, so a key such as
    /// `prefix:{rule:value}:window` needs no buffer of its own.
    pub fn push_parts(&mut self, parts: &[&[u8]]) {
        self.args = self.args.saturating_add(1);
        match self.form {
            Form::Resp => {
                self.bulk_header(parts.iter().map(|part| part.len()).sum());
                for part in parts {
                    self.bytes.extend_from_slice(part);
                }
                self.bytes.extend_from_slice(b"\r\n");
            }
            Form::Path => {
                self.bytes.push(b'/');
                // Escaping goes byte by byte, so the parts escaped one
                // after another are the whole argument escaped.
                for part in parts {
                    push_escaped(&mut self.bytes, part);
                }
            }
        }
    }

    /// Appends one argument the caller knows to be [`path_plain`]: a path
    /// copies it whole instead of looking at each byte.
    pub(crate) fn push_plain(&mut self, arg: &[u8]) {
        debug_assert!(path_plain(arg), "{arg:?} is not path-plain");
        self.args = self.args.saturating_add(1);
        match self.form {
            Form::Resp => self.push_bulk(arg),
            Form::Path => {
                self.bytes.push(b'/');
                self.bytes.extend_from_slice(arg);
            }
        }
    }

    /// Appends a script call's first three arguments, written beforehand
    /// as `resp` in RESP and as `path` in a path: its name, its digest or
    /// source, and a count reserved as [`CommandBuf::reserve_count`]
    /// reserves it ([`RESP_COUNT`] or [`PATH_COUNT`]), which ends them.
    /// Returns where the count is, for [`CommandBuf::fill_count`].
    ///
    /// An EVALSHA's are written when its [`Script`](crate::Script) is
    /// made: its command starts with one copy, no lengths to count nor
    /// bytes to look at.
    pub fn push_script(&mut self, resp: &[u8], path: &[u8]) -> usize {
        self.args = self.args.saturating_add(3);
        let (written, count) = match self.form {
            Form::Resp => (resp, RESP_COUNT),
            Form::Path => (path, PATH_COUNT),
        };
        debug_assert!(
            written.ends_with(count),
            "{written:?} does not end in a reserved count"
        );
        self.bytes.extend_from_slice(written);
        let at = self.bytes.len().saturating_sub(count.len());
        self.rest = offset(at);
        at
    }

    /// Appends an integer argument in decimal.
    pub fn push_int(&mut self, n: i64) {
        // Up to two digits (a TTL of a second or a minute, a small
        // amount): one constant-size write, cheaper than formatting and
        // copying the digits.
        if let Ok(n @ 0..=99) = u8::try_from(n) {
            let (tens, ones) = (b'0' + n / 10, b'0' + n % 10);
            self.args = self.args.saturating_add(1);
            match (self.form, n < 10) {
                (Form::Resp, true) => self
                    .bytes
                    .extend_from_slice(&[b'$', b'1', b'\r', b'\n', ones, b'\r', b'\n']),
                (Form::Resp, false) => self
                    .bytes
                    .extend_from_slice(&[b'$', b'2', b'\r', b'\n', tens, ones, b'\r', b'\n']),
                (Form::Path, true) => self.bytes.extend_from_slice(&[b'/', ones]),
                (Form::Path, false) => self.bytes.extend_from_slice(&[b'/', tens, ones]),
            }
            return;
        }
        let mut digits = itoa::Buffer::new();
        // Digits and `-` stand for themselves in a webdis path.
        self.push_plain(digits.format(n).as_bytes());
    }

    /// Appends one argument made of `parts` concatenated, whose first part
    /// has its path segment already written: `segment` is what
    /// [`push_path_segment`] writes for `parts[0]`, and the last part (a
    /// window's digits, when there are two parts or more) needs no
    /// escaping: ASCII letters, digits, `-` and `_`. A path then copies
    /// both instead of escaping them, and writes a `}:` part (what closes
    /// a counter key's hash tag) ready-made; RESP takes the parts.
    pub fn push_key(&mut self, segment: &[u8], parts: &[&[u8]]) {
        let Form::Path = self.form else {
            return self.push_parts(parts);
        };
        debug_assert!(
            is_segment_of(segment, parts.first().copied().unwrap_or_default()),
            "{segment:?} is not the first part's path segment"
        );
        self.args = self.args.saturating_add(1);
        self.bytes.extend_from_slice(segment);
        if let [_, middle @ .., last] = parts {
            debug_assert!(path_plain(last), "the last part is not path-plain");
            for part in middle {
                match *part == KEY_CLOSE {
                    true => self.bytes.extend_from_slice(KEY_CLOSE_SEGMENT),
                    false => push_escaped(&mut self.bytes, part),
                }
            }
            self.bytes.extend_from_slice(last);
        }
    }

    /// Appends a count argument to fill with [`CommandBuf::fill_count`],
    /// and returns where it is. Later arguments are taken to follow a
    /// script's name and digest, which a NOSCRIPT retry replaces.
    pub fn reserve_count(&mut self) -> usize {
        let at = self.bytes.len();
        self.rest = offset(at);
        // What `push_plain(b"0")` writes, known whole.
        self.args = self.args.saturating_add(1);
        self.bytes.extend_from_slice(match self.form {
            Form::Resp => RESP_COUNT,
            Form::Path => PATH_COUNT,
        });
        at
    }

    /// Writes `n` into the count reserved `at`: one digit in place, more
    /// (ten keys or more, rare) by moving the arguments after it.
    pub fn fill_count(&mut self, at: usize, n: u64) {
        // Where the reserved digit is: after `$1\r\n`, or after `/`.
        let (digit, reserved) = match self.form {
            Form::Resp => (at.saturating_add(4), RESP_COUNT.len()),
            Form::Path => (at.saturating_add(1), PATH_COUNT.len()),
        };
        if let Ok(n @ 0..=9) = u8::try_from(n) {
            if let Some(slot) = self.bytes.get_mut(digit) {
                *slot = b'0' + n;
            }
            return;
        }
        // The argument as it is written: `$len\r\n`, digits, CRLF, or
        // `/` and digits; at most 29 bytes.
        let mut number = itoa::Buffer::new();
        let number = number.format(n).as_bytes();
        let mut length = itoa::Buffer::new();
        let parts: [&[u8]; 5] = match self.form {
            Form::Resp => [
                b"$",
                length.format(number.len()).as_bytes(),
                b"\r\n",
                number,
                b"\r\n",
            ],
            Form::Path => [b"/", number, b"", b"", b""],
        };
        let size: usize = parts.iter().map(|part| part.len()).sum();
        let end = at.saturating_add(reserved);
        let len = self.bytes.len();
        if end > len {
            return;
        }
        self.bytes
            .resize(len.saturating_add(size).saturating_sub(reserved), 0);
        self.bytes.copy_within(end..len, at.saturating_add(size));
        let mut to = at;
        for part in parts {
            if let Some(slot) = self.bytes.get_mut(to..to.saturating_add(part.len())) {
                slot.copy_from_slice(part);
            }
            to = to.saturating_add(part.len());
        }
    }

    /// Ends the command: a path gets its `.raw`, RESP its array header.
    pub fn finish(&mut self) {
        if self.form == Form::Path {
            self.bytes.extend_from_slice(PATH_END);
        }
        self.seal();
    }

    /// Writes RESP's `*N\r\n` into the room before the arguments, and
    /// marks where the command starts.
    fn seal(&mut self) {
        if self.form == Form::Path {
            self.start = HEADER_ROOM as u32;
            return;
        }
        // A command has a few arguments: one digit, written without
        // formatting.
        let (one, mut buffer) = ([b'0' + (self.args % 10) as u8], itoa::Buffer::new());
        let digits: &[u8] = match self.args {
            0..=9 => &one,
            _ => buffer.format(self.args).as_bytes(),
        };
        let start = HEADER_ROOM.saturating_sub(digits.len() + 3);
        if let Some(room) = self.bytes.get_mut(start..HEADER_ROOM) {
            if let Some((star, rest)) = room.split_first_mut() {
                *star = b'*';
                let (number, crlf) = rest.split_at_mut(digits.len());
                number.copy_from_slice(digits);
                crlf.copy_from_slice(b"\r\n");
            }
        }
        self.start = offset(start);
    }

    /// Writes `kept`, an EVALSHA that Redis did not know the script of, as
    /// EVAL with the script's `source`: the arguments from its `numkeys`
    /// on are its finished bytes, copied unchanged (in RESP, the count of
    /// arguments is the same too).
    pub(crate) fn eval_of(&mut self, kept: &CommandBuf, source: &[u8]) {
        self.begin(kept.form);
        self.push_plain(b"EVAL");
        self.push(source);
        let rest = kept.bytes.get(kept.rest as usize..).unwrap_or_default();
        self.bytes.extend_from_slice(rest);
        self.args = kept.args;
        self.seal();
    }

    /// `arg` as a RESP bulk string.
    fn push_bulk(&mut self, arg: &[u8]) {
        self.bulk_header(arg.len());
        self.bytes.extend_from_slice(arg);
        self.bytes.extend_from_slice(b"\r\n");
    }

    /// `$len\r\n`.
    // Always inlined: a call costs more than the header it writes (the
    // webdis path, which writes no headers, pays a little for the code
    // placement).
    #[inline(always)]
    fn bulk_header(&mut self, len: usize) {
        // Most arguments are under 100 bytes long: a constant-size write.
        match len {
            0..=9 => self
                .bytes
                .extend_from_slice(&[b'$', b'0' + len as u8, b'\r', b'\n']),
            10..=99 => self.bytes.extend_from_slice(&[
                b'$',
                b'0' + (len / 10) as u8,
                b'0' + (len % 10) as u8,
                b'\r',
                b'\n',
            ]),
            _ => {
                let mut digits = itoa::Buffer::new();
                self.bytes.push(b'$');
                self.bytes.extend_from_slice(digits.format(len).as_bytes());
                self.bytes.extend_from_slice(b"\r\n");
            }
        }
    }
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
fn push_escaped(out: &mut Vec<u8>, arg: &[u8]) {
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
    // a key like `limiter:{api:header:x-api-key:k-1}:1700000000` has an
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
fn is_segment_of(segment: &[u8], arg: &[u8]) -> bool {
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
/// Six keep [`Decoded`] at 120 bytes, which the compiler moves with a few
/// vector copies; with seven, every move was a call to `memcpy`, a third
/// of the time of an integer reply. (A 12-byte frame, the integer split
/// in halves, fits eight but stalls the CPU reading the halves back as
/// one.)
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
/// frames grow with the elements actually read (16 bytes for at least 3
/// bytes of input).
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
    // stalled store forwarding that took a fifth of an integer reply).
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
        // loop: a third of the time of that reply.
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

/// The bytes a command should be written as, by other means: RESP by
/// `redis-protocol`, a path by percent-encoding's definition.
#[cfg(test)]
pub(crate) mod reference {
    use super::Form;
    use redis_protocol::resp2::encode::extend_encode_borrowed;
    use redis_protocol::resp2::types::BorrowedFrame;

    /// `args` in `form`.
    pub(crate) fn command(form: Form, args: &[&[u8]]) -> Vec<u8> {
        match form {
            Form::Resp => {
                let frames: Vec<BorrowedFrame<'_>> =
                    args.iter().map(|a| BorrowedFrame::BulkString(a)).collect();
                let mut out = bytes::BytesMut::new();
                extend_encode_borrowed(&mut out, &BorrowedFrame::Array(&frames), false).unwrap();
                out.to_vec()
            }
            Form::Path => {
                let mut out: Vec<u8> = args.iter().flat_map(|a| segment(a)).collect();
                out.extend_from_slice(b".raw");
                out
            }
        }
    }

    /// `/` and `arg` percent-encoded by the definition, a byte at a time.
    pub(crate) fn segment(arg: &[u8]) -> Vec<u8> {
        let mut out = b"/".to_vec();
        for &b in arg {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                out.push(b);
            } else {
                out.extend_from_slice(format!("%{b:02X}").as_bytes());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::reference::{command, segment};
    use super::*;
    use redis_protocol::resp2::decode::decode_range;
    use redis_protocol::resp2::types::RangeFrame;

    const FORMS: [Form; 2] = [Form::Resp, Form::Path];

    /// `args` pushed one by one into `buf`, finished.
    fn written<'b>(buf: &'b mut CommandBuf, form: Form, args: &[&[u8]]) -> &'b [u8] {
        buf.begin(form);
        for arg in args {
            buf.push(arg);
        }
        buf.finish();
        buf.bytes()
    }

    #[test]
    fn writes_resp_arrays_and_webdis_paths() {
        let mut buf = CommandBuf::default();
        let args: [&[u8]; 3] = [b"INCRBY", b"k", b"-5"];
        assert_eq!(
            written(&mut buf, Form::Resp, &args),
            b"*3\r\n$6\r\nINCRBY\r\n$1\r\nk\r\n$2\r\n-5\r\n"
        );
        assert_eq!(written(&mut buf, Form::Path, &args), b"/INCRBY/k/-5.raw");
        assert_eq!(written(&mut buf, Form::Resp, &[]), b"*0\r\n");
        assert_eq!(written(&mut buf, Form::Path, &[]), b".raw");
        // Integers of every length, both signs and both ends.
        let mut ints = vec![i64::MIN, i64::MIN + 1, i64::MAX, 0, -1];
        ints.extend((0..19).flat_map(|p| {
            let n = 10i64.pow(p);
            [n - 1, n, n + 1, -n, 1 - n]
        }));
        for form in FORMS {
            for n in ints.iter().copied() {
                buf.begin(form);
                buf.push_int(n);
                buf.finish();
                let digits = n.to_string();
                assert_eq!(buf.bytes(), command(form, &[digits.as_bytes()]), "{n}");
            }
        }
    }

    #[test]
    fn writes_what_redis_protocol_and_escaping_write() {
        // A small LCG: arguments of every length class, empty ones and
        // CRLF and high bytes inside arguments included, pushed whole, in
        // parts, as integers or as plain arguments, into one buffer that
        // goes from long commands to short ones and between forms.
        let mut rng = Lcg(0x2545_f491);
        let mut buf = CommandBuf::default();
        for round in 0..1000 {
            let form = FORMS[round % 2];
            let mut args: Vec<Vec<u8>> = Vec::new();
            buf.begin(form);
            for _ in 0..rng.below(14) {
                let arg: Vec<u8> = match rng.below(4) {
                    0 => {
                        let n = rng.below(1 << 20) as i64 - (1 << 19);
                        buf.push_int(n);
                        n.to_string().into_bytes()
                    }
                    1 => {
                        let len = rng.pick(&[0, 1, 9, 10, 99, 100]);
                        let arg: Vec<u8> = (0..len).map(|_| rng.pick(&b"aZ09-_"[..])).collect();
                        buf.push_plain(&arg);
                        arg
                    }
                    _ => {
                        let len = rng.pick(&[0, 1, 9, 10, 99, 100, 1000]);
                        let arg: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
                        let (a, b) = arg.split_at(rng.below(len + 1));
                        let (b, c) = b.split_at(rng.below(b.len() + 1));
                        buf.push_parts(&[a, b, c]);
                        arg
                    }
                };
                args.push(arg);
            }
            buf.finish();
            let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            assert_eq!(buf.bytes(), command(form, &args), "{form:?} {args:?}");
            assert_eq!(buf.len(), args.len());
        }
    }

    #[test]
    fn every_byte_value_is_escaped_as_defined() {
        let mut buf = CommandBuf::default();
        for b in 0..=u8::MAX {
            let arg = [b, b'a', b];
            let mut want = segment(&arg);
            want.extend_from_slice(b".raw");
            assert_eq!(written(&mut buf, Form::Path, &[&arg]), want, "{b}");
            assert_eq!(path_plain(&[b]), segment(&[b]).len() == 2, "{b}");
        }
        assert_eq!(
            written(
                &mut buf,
                Form::Path,
                &[b"GET", "a/b%c d.e+\r\né".as_bytes()]
            ),
            b"/GET/a%2Fb%25c%20d%2Ee%2B%0D%0A%C3%A9.raw"
        );
    }

    /// The kit's reading of `bytes` in `redis-protocol`'s terms, taken
    /// through the public API; `None` when it refuses them.
    fn ours(bytes: &[u8]) -> Option<RangeFrame> {
        let decoded = decode(bytes).ok()?;
        Some(range_frame(bytes, decoded.reply(bytes)))
    }

    /// `reply` as a `RangeFrame`: its strings as offsets into `bytes`, its
    /// arrays read with `iter`, checked against `len`, `is_empty` and `get`.
    fn range_frame(bytes: &[u8], reply: Reply<'_>) -> RangeFrame {
        let range = |s: &[u8]| {
            let start = (s.as_ptr() as usize)
                .checked_sub(bytes.as_ptr() as usize)
                .unwrap();
            assert!(start + s.len() <= bytes.len(), "a slice out of the reply");
            (start, start + s.len())
        };
        match reply {
            Reply::Integer(n) => RangeFrame::Integer(n),
            Reply::Simple(s) => RangeFrame::SimpleString(range(s)),
            Reply::Bulk(s) => RangeFrame::BulkString(range(s)),
            Reply::Error(s) => RangeFrame::Error(range(s)),
            Reply::Nil => RangeFrame::Null,
            Reply::Array(items) => {
                let elements: Vec<RangeFrame> =
                    items.iter().map(|r| range_frame(bytes, r)).collect();
                assert_eq!(items.len(), elements.len());
                assert_eq!(items.is_empty(), elements.is_empty());
                for (i, element) in elements.iter().enumerate() {
                    assert_eq!(range_frame(bytes, items.get(i).unwrap()), *element);
                }
                assert_eq!(items.get(elements.len()), None);
                RangeFrame::Array(elements)
            }
        }
    }

    /// `redis-protocol`'s reading of `bytes` as one complete value.
    fn theirs(bytes: &[u8]) -> Option<RangeFrame> {
        match decode_range(bytes) {
            Ok(Some((frame, used))) if used == bytes.len() => Some(frame),
            _ => None,
        }
    }

    /// What the kit should read: `redis-protocol`'s reading, less what
    /// [`decode`] refuses on purpose (see its documentation).
    fn expected(bytes: &[u8]) -> Option<RangeFrame> {
        theirs(bytes).filter(|frame| depth(frame) <= MAX_DEPTH && bulks_end_in_crlf(bytes, frame))
    }

    /// Arrays nested in `frame`, itself included.
    fn depth(frame: &RangeFrame) -> usize {
        match frame {
            RangeFrame::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    /// Whether every bulk string in `frame` is followed by CRLF.
    fn bulks_end_in_crlf(bytes: &[u8], frame: &RangeFrame) -> bool {
        match frame {
            RangeFrame::BulkString((_, end)) => bytes.get(*end..end + 2) == Some(&b"\r\n"[..]),
            RangeFrame::Array(items) => items.iter().all(|f| bulks_end_in_crlf(bytes, f)),
            _ => true,
        }
    }

    /// Checks the kit reads `bytes` as intended; returns its reading.
    fn check(bytes: &[u8]) -> Option<RangeFrame> {
        let read = ours(bytes);
        assert_eq!(read, expected(bytes), "{}", bytes.escape_ascii());
        read
    }

    /// A small LCG, so the random tests are the same on every run.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 33) % n as u64) as usize
        }

        fn pick<T: Copy>(&mut self, from: &[T]) -> T {
            from[self.below(from.len())]
        }
    }

    #[test]
    fn plain_number_lines_read_as_the_line_and_integer_read_them() {
        // Digit runs of every length around the unchecked limit, after
        // each kind and with every ending, as whole replies (against
        // `redis-protocol`) and directly against the general path.
        let mut rng = Lcg(7);
        let endings: [&[u8]; 8] = [
            b"\r\n", b"\r", b"\n", b"", b"\r\r\n", b"x\r\n", b"\r\nx", b"\n\r\n",
        ];
        for len in 0..=22 {
            for first in [b'0', b'1', b'9', b'5'] {
                let mut digits = vec![first];
                digits.extend((1..len).map(|_| b'0' + rng.below(10) as u8));
                digits.truncate(len);
                for max in [false, true] {
                    if max {
                        digits.iter_mut().for_each(|d| *d = b'9');
                    }
                    for ending in endings {
                        let line = [&digits[..], ending].concat();
                        let general = {
                            let mut reader = Reader {
                                bytes: &line,
                                at: 0,
                                frames: SmallVec::new(),
                            };
                            reader
                                .line()
                                .and_then(|(s, e)| integer(&line[s..e]))
                                .map(|n| (n, reader.at))
                        };
                        if let Some(fast) = plain_number(&line, 0) {
                            assert_eq!(Some(fast), general, "{}", line.escape_ascii());
                        }
                        for kind in [b':', b'$', b'*'] {
                            check(&[&[kind][..], &line].concat());
                            check(&[&[kind][..], &line, b"abc\r\n"].concat());
                        }
                    }
                }
            }
        }
        assert_eq!(plain_number(b"42\r\n", 0), Some((42, 4)));
        assert_eq!(
            plain_number(b"999999999999999999\r\n", 0),
            Some((999_999_999_999_999_999, 20))
        );
        assert_eq!(plain_number(b"9999999999999999999\r\n", 0), None);
        assert_eq!(plain_number(b"+42\r\n", 0), None);
    }

    #[test]
    fn scalar_and_array_replies_read_as_redis_protocol_reads_them() {
        let cases: &[&[u8]] = &[
            b":0\r\n",
            b":-0\r\n",
            b":17\r\n",
            b":-17\r\n",
            b":007\r\n",
            b":123456789012345678\r\n",
            b":-123456789012345678\r\n",
            b":1234567890123456789\r\n",
            b":9223372036854775807\r\n",
            b":-9223372036854775808\r\n",
            b":9223372036854775808\r\n",
            b":-9223372036854775809\r\n",
            b":99999999999999999999\r\n",
            b":+5\r\n",
            b":+\r\n",
            b":+-5\r\n",
            b":--5\r\n",
            b": 5\r\n",
            b":5 \r\n",
            b":\r\n",
            b":-\r\n",
            b":5\n",
            b":5\r\r\n",
            b":5\r\n\r\n",
            b":5",
            b":1a\r\n",
            b"+OK\r\n",
            b"+\r\n",
            b"+O\rK\r\n",
            b"+O\nK\r\n",
            b"+OK\r\r\n",
            b"+\n\r\n",
            b"+OK\r\n+OK\r\n",
            b"-ERR x\r\n",
            b"-\r\n",
            b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
            b"-NOSCRIPT No matching script. Please use EVAL.\r\n:1\r\n",
            b"-NOSCRIPT No matching script. Please use EVAL.\r",
            b"$-1\r\n",
            b"$-1\r\n\r\n",
            b"$-2\r\n",
            b"$-0\r\n\r\n",
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
            b"$3\r\nabc\r",
            b"$\r\n\r\n",
            b"$99999999999999999999\r\nabc\r\n",
            b"*0\r\n",
            b"*-0\r\n",
            b"*-1\r\n",
            b"*-2\r\n",
            b"*1\r\n:1\r\n",
            b"*+1\r\n:1\r\n",
            b"*01\r\n:1\r\n",
            b"*1\r\n",
            b"*1\r\n:1\r\n:2\r\n",
            b"*2\r\n:1\r\n",
            b"*3\r\n:17\r\n:100\r\n:42\r\n",
            b"*2\r\n$-1\r\n*-1\r\n",
            b"*1\r\n-NOSCRIPT No matching script. Please use EVAL.\r\n",
            b"*3\r\n*2\r\n:1\r\n$1\r\nx\r\n*0\r\n+OK\r\n",
            b"*2\r\n*1\r\n*1\r\n:1\r\n*1\r\n*0\r\n",
            b"*1\r\n*1\r\n",
            b"*1\r\n*2\r\n:1\r\n",
            b"**1\r\n",
            b"",
            b"\r\n",
            b"hello",
        ];
        for bytes in cases {
            check(bytes);
        }
        // Every prefix and many one-byte changes of a few replies.
        let mut rng = Lcg(0x9e37_79b9);
        for reply in [
            &b":-1234\r\n"[..],
            b"$5\r\nhello\r\n",
            b"+OK\r\n",
            b"-ERR no\r\n",
            b"*3\r\n:17\r\n$-1\r\n$2\r\nab\r\n",
            b"*2\r\n*1\r\n+a\r\n*-1\r\n",
        ] {
            assert!(check(reply).is_some());
            for cut in 0..reply.len() {
                assert_eq!(check(&reply[..cut]), None);
            }
            for _ in 0..2_000 {
                let mut changed = reply.to_vec();
                let at = rng.below(changed.len());
                changed[at] = rng.below(256) as u8;
                check(&changed);
            }
        }
    }

    /// Appends a random reply with arrays nested at most `depth` deep:
    /// every kind, lone CRs in lines, any byte in bulk strings.
    fn random_reply(rng: &mut Lcg, depth: usize, out: &mut Vec<u8>) {
        match rng.below(if depth == 0 { 5 } else { 7 }) {
            0 => {
                let picked = [0, 1, -1, 17, 1234, i64::MAX, i64::MIN];
                let n = match rng.below(2) {
                    0 => rng.pick(&picked),
                    _ => rng.below(1 << 30) as i64 - (1 << 29),
                };
                out.extend_from_slice(format!(":{n}\r\n").as_bytes());
            }
            1 | 2 => {
                out.push(rng.pick(b"+-"));
                for _ in 0..rng.below(20) {
                    out.push(rng.pick(b"OK ERR:{}x\"\\\x00\x7f\xc3\xa9\r"));
                }
                out.extend_from_slice(b"\r\n");
            }
            3 => {
                let len = rng.pick(&[0, 1, 2, 5, 40, 300]);
                out.extend_from_slice(format!("${len}\r\n").as_bytes());
                for _ in 0..len {
                    out.push(rng.pick(b"ab\r\n\r\n*$:+-0\xff"));
                }
                out.extend_from_slice(b"\r\n");
            }
            4 => out.extend_from_slice(rng.pick(&[&b"$-1\r\n"[..], b"*-1\r\n"])),
            _ => {
                let len = rng.below(9);
                out.extend_from_slice(format!("*{len}\r\n").as_bytes());
                for _ in 0..len {
                    random_reply(rng, depth - 1, out);
                }
            }
        }
    }

    /// Damaged copies of `reply`: truncated, a byte changed, a CR, LF or
    /// digit inserted, a byte removed, bytes appended, a length replaced
    /// by a huge, negative or odd one.
    fn mutations(rng: &mut Lcg, reply: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for _ in 0..4 {
            out.push(reply[..rng.below(reply.len())].to_vec());
        }
        for _ in 0..4 {
            let mut m = reply.to_vec();
            let at = rng.below(m.len());
            m[at] = match rng.below(2) {
                0 => rng.below(256) as u8,
                _ => rng.pick(b"\r\n-+:$*09"),
            };
            out.push(m);
        }
        for inserted in [&b"\r"[..], b"\n", b"\r\n", b"0"] {
            let mut m = reply.to_vec();
            let at = rng.below(m.len() + 1);
            m.splice(at..at, inserted.iter().copied());
            out.push(m);
        }
        let mut m = reply.to_vec();
        m.remove(rng.below(m.len()));
        out.push(m);
        let mut m = reply.to_vec();
        m.extend_from_slice(rng.pick(&[&b":1\r\n"[..], b"\r\n", b"x"]));
        out.push(m);
        let headers: Vec<usize> = (0..reply.len())
            .filter(|&i| matches!(reply[i], b'$' | b'*'))
            .collect();
        if !headers.is_empty() {
            let at = rng.pick(&headers) + 1;
            if let Some(digits) = reply[at..].iter().position(|&b| b == b'\r') {
                let mut m = reply[..at].to_vec();
                m.extend_from_slice(rng.pick(&[
                    &b"2147483647"[..],
                    b"4294967296",
                    b"99999999999",
                    b"9223372036854775807",
                    b"-2",
                    b"-1",
                    b"0",
                    b"+1",
                    b"01",
                ]));
                m.extend_from_slice(&reply[at + digits..]);
                out.push(m);
            }
        }
        out
    }

    #[test]
    fn random_nested_replies_and_mutations_read_as_redis_protocol_reads_them() {
        let mut rng = Lcg(0x5eed_1e55);
        let (mut accepted, mut arrays, mut refused_on_purpose) = (0, 0, 0);
        for _ in 0..4_000 {
            let mut reply = Vec::new();
            random_reply(&mut rng, 5, &mut reply);
            let read = check(&reply);
            assert!(read.is_some(), "{}", reply.escape_ascii());
            arrays += usize::from(matches!(read, Some(RangeFrame::Array(_))));
            for changed in mutations(&mut rng, &reply) {
                if check(&changed).is_some() {
                    accepted += 1;
                }
                if expected(&changed) != theirs(&changed) {
                    refused_on_purpose += 1;
                }
            }
        }
        // The mutations reach both outcomes and the deliberate refusals.
        assert!(arrays > 1_000, "{arrays}");
        assert!(accepted > 2_000, "{accepted}");
        assert!(refused_on_purpose > 50, "{refused_on_purpose}");
    }

    #[test]
    fn decoding_into_reused_frames_reads_what_decode_reads() {
        // One `Decoded` through random replies and their mutations: each
        // reads as a fresh decode reads it, and a refused input leaves no
        // reply behind.
        let mut rng = Lcg(0x0dec_0de5);
        let mut reused = Decoded::default();
        for _ in 0..2_000 {
            let mut reply = Vec::new();
            random_reply(&mut rng, 4, &mut reply);
            for bytes in std::iter::once(reply.clone()).chain(mutations(&mut rng, &reply)) {
                let fresh = decode(&bytes);
                let into = decode_into(&bytes, &mut reused);
                assert_eq!(fresh.is_ok(), into.is_ok(), "{}", bytes.escape_ascii());
                if let Ok(fresh) = fresh {
                    assert_eq!(
                        fresh.reply(&bytes).to_string(),
                        reused.reply(&bytes).to_string(),
                        "{}",
                        bytes.escape_ascii()
                    );
                } else {
                    assert_eq!(reused.reply(&bytes), Reply::Nil);
                }
            }
        }
    }

    #[test]
    fn refuses_on_purpose_what_redis_protocol_takes() {
        // A bulk string followed by anything but CRLF: `redis-protocol`
        // takes the two bytes as they are.
        for bytes in [&b"$3\r\nabcXY"[..], b"$0\r\nab", b"*2\r\n$1\r\naXY:1\r\n"] {
            assert!(theirs(bytes).is_some(), "{}", bytes.escape_ascii());
            assert!(decode(bytes).is_err(), "{}", bytes.escape_ascii());
        }
        // Sixteen nested arrays are read; a seventeenth, even empty, is
        // refused; a nil at the bottom is not an array.
        let nested = |levels: usize, bottom: &[u8]| {
            let mut bytes = b"*1\r\n".repeat(levels);
            bytes.extend_from_slice(bottom);
            bytes
        };
        for bottom in [&b":1\r\n"[..], b"*-1\r\n", b"$-1\r\n"] {
            let bytes = nested(MAX_DEPTH, bottom);
            assert_eq!(depth(&check(&bytes).unwrap()), MAX_DEPTH);
        }
        for bottom in [&b"*0\r\n"[..], b"*1\r\n:1\r\n"] {
            let bytes = nested(MAX_DEPTH, bottom);
            assert_eq!(depth(&theirs(&bytes).unwrap()), MAX_DEPTH + 1);
            assert_eq!(check(&bytes), None);
        }
        // Far deeper input is refused without recursing into it (it would
        // overflow `redis-protocol`'s stack, so it is not asked).
        assert!(decode(&nested(1_000_000, b":1\r\n")).is_err());
    }

    #[test]
    fn refuses_declared_lengths_beyond_the_input() {
        for bytes in [
            &b"*2147483647\r\n"[..],
            b"*2147483647\r\n:1\r\n:2\r\n",
            b"*4294967296\r\n:1\r\n",
            b"*9223372036854775807\r\n+\r\n",
            b"*9223372036854775808\r\n",
            b"*-9223372036854775808\r\n",
            b"$99999999999\r\n",
            b"$99999999999\r\nabc\r\n",
            b"$4294967295\r\nabc\r\n",
            b"$9223372036854775807\r\nab\r\n",
            b"$18446744073709551615\r\nab\r\n",
            b"$-9223372036854775808\r\n",
        ] {
            assert_eq!(check(bytes), None, "{}", bytes.escape_ascii());
        }
        // As many elements as the input can hold is not refused early.
        let mut bytes = b"*5\r\n".to_vec();
        bytes.extend_from_slice(&b"+\r\n".repeat(5));
        assert!(matches!(check(&bytes), Some(RangeFrame::Array(items)) if items.len() == 5));
    }

    #[test]
    fn small_replies_stay_inline() {
        let mut six = b"*6\r\n".to_vec();
        six.extend_from_slice(&b":1\r\n".repeat(6));
        for bytes in [
            &b":17\r\n"[..],
            b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
            b"*3\r\n:17\r\n:100\r\n:42\r\n",
            b"*2\r\n*2\r\n:1\r\n:2\r\n*2\r\n:3\r\n:4\r\n",
            &six,
        ] {
            assert!(
                !decode(bytes).unwrap().elements.spilled(),
                "{}",
                bytes.escape_ascii()
            );
        }
        // Bigger replies spill to the heap and read the same.
        let mut big = b"*100\r\n".to_vec();
        big.extend_from_slice(&b"$1\r\nx\r\n".repeat(100));
        assert!(decode(&big).unwrap().elements.spilled());
        check(&big);
        // Moved around whole, so kept small.
        assert!(core::mem::size_of::<Result<Decoded, InvalidReply>>() <= 128);
    }

    #[test]
    fn a_reserved_count_is_filled_in_place() {
        // One digit in place, more by moving what follows: the bytes of
        // the count pushed as an argument, in both forms.
        let mut buf = CommandBuf::default();
        for form in FORMS {
            for n in [0u64, 1, 9, 10, 12, 99, 100, 12_345, u64::MAX] {
                buf.begin(form);
                buf.push(b"EVAL");
                buf.push(b"return 1");
                let at = buf.reserve_count();
                buf.push(b"k/1");
                buf.push_int(60);
                buf.fill_count(at, n);
                buf.finish();
                let count = n.to_string();
                let args: [&[u8]; 5] = [b"EVAL", b"return 1", count.as_bytes(), b"k/1", b"60"];
                assert_eq!(buf.bytes(), command(form, &args), "{form:?} {n}");
            }
        }
    }

    #[test]
    fn written_and_plain_arguments_are_what_pushing_them_writes() {
        let digest = b"e0e1f9fabfc9d4800c877a703b823ac0578ff831";
        let mut buf = CommandBuf::default();
        for form in FORMS {
            buf.begin(form);
            let resp = [
                &b"$7\r\nEVALSHA\r\n$40\r\n"[..],
                digest,
                b"\r\n",
                RESP_COUNT,
            ]
            .concat();
            let path = [&b"/EVALSHA/"[..], digest, PATH_COUNT].concat();
            let at = buf.push_script(&resp, &path);
            buf.push_plain(b"a_b-C9");
            buf.push_int(-60);
            buf.fill_count(at, 1);
            buf.finish();
            let args: [&[u8]; 5] = [b"EVALSHA", digest, b"1", b"a_b-C9", b"-60"];
            assert_eq!(buf.bytes(), command(form, &args), "{form:?}");
        }
        for plain in [&b"EVALSHA"[..], b"-12", b"a_b-C9", b""] {
            assert!(path_plain(plain), "{plain:?}");
        }
        for escaped in [&b"a.b"[..], b"a/b", b"a b", b"\xff", b"+"] {
            assert!(!path_plain(escaped), "{escaped:?}");
        }
    }

    #[test]
    fn prepared_keys_write_what_escaping_the_whole_key_writes() {
        // A counter key's head comes with its segment, the value between
        // it and `}:` is escaped, `}:` and the window are copied: the
        // bytes escaping the whole key byte by byte gives, and in RESP the
        // parts concatenated. Values: plain, empty, with an escape first,
        // last or inside, ending in `}:` themselves, and longer than the
        // gathering block. Then a configured key (head and window) and a
        // head alone.
        let long_plain = "k".repeat(300);
        let long_mixed = "a:".repeat(150);
        let values: [&[u8]; 11] = [
            b"k-3f9a2c71d4e5b6a7",
            b"",
            b":abc",
            b"abc%",
            b"user 1234",
            b"x}:",
            b"}:",
            b"\xff\x00",
            b"k/1 %\xff",
            long_plain.as_bytes(),
            long_mixed.as_bytes(),
        ];
        let head = b"limiter:{api:header:x-api-key:".as_slice();
        let mut prepared = Vec::new();
        push_path_segment(&mut prepared, head);
        assert_eq!(prepared, segment(head));
        assert!(is_segment_of(&prepared, head));
        assert!(!is_segment_of(&prepared, b"limiter"));
        let mut keys: Vec<Vec<&[u8]>> = values
            .iter()
            .map(|value| vec![head, value, KEY_CLOSE, b"1700000040"])
            .collect();
        keys.push(vec![head, b"1700000040"]);
        keys.push(vec![head]);
        let mut buf = CommandBuf::default();
        for form in FORMS {
            for parts in &keys {
                buf.begin(form);
                buf.push_plain(b"EVALSHA");
                buf.push(b"x.y");
                buf.push_key(&prepared, parts);
                buf.push_int(60);
                buf.finish();
                let key = parts.concat();
                let args: [&[u8]; 4] = [b"EVALSHA", b"x.y", &key, b"60"];
                assert_eq!(buf.bytes(), command(form, &args), "{form:?} {parts:?}");
            }
        }
        buf.begin(Form::Path);
        buf.push_key(&prepared, &keys[8]);
        buf.finish();
        assert_eq!(
            buf.bytes(),
            b"/limiter%3A%7Bapi%3Aheader%3Ax-api-key%3Ak%2F1%20%25%FF%7D%3A1700000040.raw"
        );
    }

    #[test]
    fn an_eval_of_a_kept_evalsha_is_a_fresh_eval() {
        // What a NOSCRIPT retry sends: the kept EVALSHA's arguments from
        // `numkeys` on, after EVAL and the source, in both forms, with
        // counts that took one digit and that moved the arguments.
        let digest = [b'a'; 40];
        let source = b"return redis.call('INCR', KEYS[1]) -- 1/2";
        let mut kept = CommandBuf::default();
        let mut fresh = CommandBuf::default();
        let mut retry = CommandBuf::default();
        for form in FORMS {
            for keys in [0u64, 1, 2, 9, 10, 12] {
                let names: Vec<String> = (0..keys).map(|k| format!("k:{{{k}}}")).collect();
                for (buf, name) in [(&mut kept, &b"EVALSHA"[..]), (&mut fresh, b"EVAL")] {
                    buf.begin(form);
                    buf.push(name);
                    buf.push(if name == b"EVAL" { source } else { &digest });
                    let at = buf.reserve_count();
                    for name in &names {
                        buf.push(name.as_bytes());
                    }
                    buf.push(b"6 0");
                    buf.fill_count(at, keys);
                    buf.finish();
                }
                retry.begin(Form::Resp);
                retry.push(b"left over");
                retry.eval_of(&kept, source);
                assert_eq!(retry.bytes(), fresh.bytes(), "{form:?} {keys}");
                assert_eq!(retry.len(), fresh.len());
            }
        }
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "is not the first part's path segment")]
    fn a_wrong_segment_is_caught_in_debug_builds() {
        CommandBuf::new(Form::Path).push_key(b"/a", &[b"b"]);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "the last part is not path-plain")]
    fn an_escapable_last_part_is_caught_in_debug_builds() {
        CommandBuf::new(Form::Path).push_key(b"/a", &[b"a", b"b:c"]);
    }

    #[test]
    #[should_panic(expected = "is not path-plain")]
    #[cfg(debug_assertions)]
    fn marking_an_escapable_argument_plain_is_caught_in_debug_builds() {
        CommandBuf::default().push_plain(b"a:b");
    }

    #[test]
    fn replies_read_as_words_in_log_lines() {
        let cases: &[(&[u8], &str)] = &[
            (b":-3\r\n", "integer -3"),
            (b"+OK\r\n", "simple string \"OK\""),
            (b"$2\r\na\n\r\n", r#"bulk string "a\x0a""#),
            (b"$-1\r\n", "nil"),
            (b"-ERR no\r\n", "error \"ERR no\""),
            (b"*2\r\n:1\r\n:2\r\n", "array of 2"),
        ];
        for (bytes, want) in cases {
            let decoded = decode(bytes).unwrap();
            assert_eq!(decoded.reply(bytes).to_string(), *want);
        }
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
            (b"*-1\r\n", "Nil"),
            (b"*0\r\n", "[]"),
            (
                b"*3\r\n*2\r\n:-1\r\n$-1\r\n*0\r\n+OK\r\n",
                "[[Integer(-1), Nil], [], Simple(\"OK\")]",
            ),
            // Printable ASCII as is, `"` and `\` escaped, other bytes in hex.
            (
                b"$10\r\na \"\\\r\n\x00\x7f\xc3\xa9\r\n",
                r#"Bulk("a \"\\\x0d\x0a\x00\x7f\xc3\xa9")"#,
            ),
            (b"+~\t\r\n", r#"Simple("~\x09")"#),
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
