//! Commands written straight into the bytes their transport sends: a
//! RESP array of bulk strings, or a webdis path whose segments
//! [`path`](super::path) escapes.

use super::path::{is_segment_of, path_plain, push_escaped};

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
    /// [`push_path_segment`](super::push_path_segment) writes for `parts[0]`, and the last part (a
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
