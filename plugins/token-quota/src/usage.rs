//! Finds the token usage an LLM API reports in a response, in one pass over
//! the bytes as they stream by.
//!
//! Three formats, each with a chunk-by-chunk scanner:
//! - JSON bodies ([`JsonScanner`], [`scan_json`]): the usage object of a
//!   non-streamed response.
//! - Server-sent events ([`SseScanner`], [`scan_sse`]): the usage carried
//!   by the `data:` events of a streamed response.
//! - JSON lines ([`SseScanner::json_lines`]): one JSON document a line, as
//!   Ollama streams.
//!
//! Where usage is looked for, in a JSON body or in each event's JSON, and
//! under which names:
//! - top-level `usage` (OpenAI chat completions and responses, Anthropic
//!   messages, Anthropic's `message_delta` event), `message.usage`
//!   (Anthropic's `message_start` event) and `response.usage` (OpenAI's
//!   `response.completed` event): `total_tokens`, `prompt_tokens` or
//!   `input_tokens`, and `completion_tokens` or `output_tokens`;
//! - top-level `usageMetadata` (Gemini): `totalTokenCount`,
//!   `promptTokenCount`, `candidatesTokenCount`, and `thoughtsTokenCount`
//!   added to the output;
//! - the top-level object itself (Ollama): `prompt_eval_count` and
//!   `eval_count`.
//!
//! The first of these that holds a token field wins, in that order. The
//! total is the reported total when there is one, otherwise input plus
//! output. Each API's names count only in its own place; anything else —
//! `usage` inside a string, under `choices`, or deeper — is content, not
//! usage. Duplicate keys resolve as in most JSON parsers: the last one
//! wins.
//!
//! The scanners never build a tree of the body and never allocate: their
//! state is a fixed few hundred bytes, however large or hostile the input.
//! They skim: only the objects on the way to a usage object are read key
//! by key, and every other value is skipped by its structure (the
//! private `Doc` says how), without decoding its text. On valid JSON the answer is exactly
//! a full parser's. On invalid JSON, whatever breaks the structure — a
//! truncated body, unbalanced or mismatched brackets, an unterminated
//! string, a raw control byte or an unknown escape in a string, a missing
//! `:` or `,` in an object the scanner reads, nesting deeper than
//! [`MAX_DEPTH`](crate::MAX_DEPTH) — and a token count that is negative,
//! fractional or beyond `u64` give [`Scan::Malformed`], never a guess.
//! What a skipped value holds is not checked: invalid UTF-8, a lone
//! surrogate escape or a misspelt number inside content still lets the
//! usage next to it count. (Until the skim, the scanners validated every
//! byte; that cost 3 to 5 times the instructions, and the usage of a
//! response does not depend on whether its content is well-formed text.)

use crate::json::{append_digit, Num};

/// Token counts an API reported for one response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Tokens to charge: `total_tokens` when reported, otherwise input plus
    /// output.
    pub total: u64,
    /// `prompt_tokens` (OpenAI chat) or `input_tokens` (Anthropic, OpenAI
    /// responses), when reported.
    pub input: Option<u64>,
    /// `completion_tokens` or `output_tokens`, when reported.
    pub output: Option<u64>,
}

/// What a scan found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// The response reported this usage.
    Found(Usage),
    /// The response is well-formed but reports no usage.
    Absent,
    /// The response is not trustworthy enough to take a usage from: not
    /// JSON, truncated, too deep, or with an unusable token count.
    Malformed,
}

impl Scan {
    /// The tokens to charge, when usage was found.
    #[must_use]
    pub fn total(&self) -> Option<u64> {
        match self {
            Scan::Found(usage) => Some(usage.total),
            Scan::Absent | Scan::Malformed => None,
        }
    }
}

/// Scans a whole JSON response body.
///
/// # Examples
/// ```
/// use token_quota::usage::scan_json;
/// let body = br#"{"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 12}}"#;
/// assert_eq!(scan_json(body).total(), Some(21));
/// ```
#[must_use]
pub fn scan_json(body: &[u8]) -> Scan {
    let mut scanner = JsonScanner::new();
    scanner.feed(body);
    scanner.finish()
}

/// Scans a whole `text/event-stream` response body.
///
/// # Examples
/// ```
/// use token_quota::usage::scan_sse;
/// let body = b"data: {\"usage\": null}\n\ndata: {\"usage\": {\"total_tokens\": 7}}\n\ndata: [DONE]\n\n";
/// assert_eq!(scan_sse(body).total(), Some(7));
/// ```
#[must_use]
pub fn scan_sse(body: &[u8]) -> Scan {
    let mut scanner = SseScanner::new();
    scanner.feed(body);
    scanner.finish()
}

/// A response body format the scanners read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON document.
    Json,
    /// Server-sent events.
    EventStream,
    /// JSON lines (newline-delimited JSON), one document a line: Ollama's
    /// native streaming.
    JsonLines,
}

impl Format {
    /// The format of a response with this `content-type` header value:
    /// `text/event-stream` is [`Format::EventStream`],
    /// `application/x-ndjson` and `application/jsonl` are
    /// [`Format::JsonLines`],
    /// `application/json` and `application/*+json` are [`Format::Json`];
    /// `None` for anything else. Parameters such as `charset` are ignored.
    ///
    /// # Examples
    /// ```
    /// use token_quota::usage::Format;
    /// assert_eq!(Format::from_content_type(b"application/x-ndjson"), Some(Format::JsonLines));
    /// assert_eq!(Format::from_content_type(b"text/event-stream; charset=utf-8"), Some(Format::EventStream));
    /// ```
    #[must_use]
    pub fn from_content_type(value: &[u8]) -> Option<Format> {
        let essence = value.split(|&b| b == b';').next().unwrap_or_default();
        let essence = essence.trim_ascii();
        if essence.eq_ignore_ascii_case(b"text/event-stream") {
            return Some(Format::EventStream);
        }
        if essence.eq_ignore_ascii_case(b"application/x-ndjson")
            || essence.eq_ignore_ascii_case(b"application/jsonl")
        {
            return Some(Format::JsonLines);
        }
        let json = essence.eq_ignore_ascii_case(b"application/json")
            || (essence.len() > b"application/".len() + b"+json".len()
                && essence
                    .get(..b"application/".len())
                    .is_some_and(|t| t.eq_ignore_ascii_case(b"application/"))
                && essence
                    .get(essence.len() - b"+json".len()..)
                    .is_some_and(|s| s.eq_ignore_ascii_case(b"+json")));
        json.then_some(Format::Json)
    }
}

/// Whether a response with this `content-encoding` header value is
/// encoded (gzip, br, deflate, zstd...): its bytes are no JSON or event
/// stream the scanners could read. Absent, empty and `identity` are not.
///
/// # Examples
/// ```
/// use token_quota::usage::is_encoded;
/// assert!(is_encoded(Some(b"gzip")));
/// assert!(!is_encoded(Some(b" Identity ")));
/// assert!(!is_encoded(None));
/// ```
#[must_use]
pub fn is_encoded(content_encoding: Option<&[u8]>) -> bool {
    content_encoding.is_some_and(|value| {
        let value = value.trim_ascii();
        !value.is_empty() && !value.eq_ignore_ascii_case(b"identity")
    })
}

/// A scanner for any format, for callers that pick it per response.
#[derive(Clone, Debug)]
pub enum Scanner {
    /// Scans one JSON document.
    Json(JsonScanner),
    /// Scans a stream of events: server-sent events, or JSON lines
    /// ([`SseScanner::json_lines`]).
    EventStream(SseScanner),
}

impl Scanner {
    /// A fresh scanner for `format`.
    pub const fn new(format: Format) -> Self {
        match format {
            Format::Json => Scanner::Json(JsonScanner::new()),
            Format::EventStream => Scanner::EventStream(SseScanner::new()),
            Format::JsonLines => Scanner::EventStream(SseScanner::json_lines()),
        }
    }

    /// Whether a stream has reported its final usage
    /// ([`SseScanner::usage_seen`]); always false for a JSON document,
    /// whose usage is known only once it is whole.
    pub fn usage_seen(&self) -> bool {
        match self {
            Scanner::Json(_) => false,
            Scanner::EventStream(s) => s.usage_seen(),
        }
    }

    /// Scans the next chunk of the body.
    pub fn feed(&mut self, chunk: &[u8]) {
        match self {
            Scanner::Json(s) => s.feed(chunk),
            Scanner::EventStream(s) => s.feed(chunk),
        }
    }

    /// The usage of the body fed so far, taken as complete.
    pub fn finish(&mut self) -> Scan {
        match self {
            Scanner::Json(s) => s.finish(),
            Scanner::EventStream(s) => s.finish(),
        }
    }
}

/// A key the scanner cares about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Name {
    Other,
    Usage,
    Message,
    Response,
    Total,
    Prompt,
    Completion,
    Input,
    Output,
    /// Gemini's `usageMetadata`.
    Metadata,
    /// Gemini's `totalTokenCount`.
    TotalCount,
    /// Gemini's `promptTokenCount`.
    PromptCount,
    /// Gemini's `candidatesTokenCount`.
    CandidatesCount,
    /// Gemini's `thoughtsTokenCount`.
    ThoughtsCount,
    /// Ollama's `prompt_eval_count`.
    PromptEval,
    /// Ollama's `eval_count`.
    Eval,
    /// Gemini's `candidates`.
    Candidates,
    /// Gemini's `finishReason`, in a candidate.
    FinishReason,
}

impl Name {
    #[inline(always)]
    fn of(key: Option<&[u8]>) -> Name {
        // By length, then as fixed-size arrays: compared inline, with no
        // call to a general slice comparison per key.
        fn is<const N: usize>(key: &[u8], name: &[u8; N]) -> bool {
            key.first_chunk::<N>() == Some(name)
        }
        let Some(key) = key else {
            return Name::Other;
        };
        match key.len() {
            5 if is(key, b"usage") => Name::Usage,
            7 if is(key, b"message") => Name::Message,
            8 if is(key, b"response") => Name::Response,
            10 if is(key, b"eval_count") => Name::Eval,
            10 if is(key, b"candidates") => Name::Candidates,
            12 if is(key, b"total_tokens") => Name::Total,
            12 if is(key, b"input_tokens") => Name::Input,
            12 if is(key, b"finishReason") => Name::FinishReason,
            13 if is(key, b"prompt_tokens") => Name::Prompt,
            13 if is(key, b"output_tokens") => Name::Output,
            13 if is(key, b"usageMetadata") => Name::Metadata,
            15 if is(key, b"totalTokenCount") => Name::TotalCount,
            16 if is(key, b"promptTokenCount") => Name::PromptCount,
            17 if is(key, b"completion_tokens") => Name::Completion,
            17 if is(key, b"prompt_eval_count") => Name::PromptEval,
            18 if is(key, b"thoughtsTokenCount") => Name::ThoughtsCount,
            20 if is(key, b"candidatesTokenCount") => Name::CandidatesCount,
            _ => Name::Other,
        }
    }

    /// [`Name::of`] as a call, for every key but those of the top-level
    /// object that [`Doc::members`] reads (the many): one copy of the
    /// comparisons for the keys of nested objects, keys with escapes or
    /// cut by a chunk's end, rather than one inlined into each place.
    #[inline(never)]
    fn of_outlined(key: Option<&[u8]>) -> Name {
        Name::of(key)
    }

    /// Whether this key is a token field of the usage kept in `slot`: each
    /// API's names only in its own place, so that one API's name elsewhere
    /// is content.
    fn counts_in(self, slot: Slot) -> bool {
        match slot {
            Slot::Top | Slot::Message | Slot::Response => matches!(
                self,
                Name::Total | Name::Prompt | Name::Completion | Name::Input | Name::Output
            ),
            Slot::Gemini => matches!(
                self,
                Name::TotalCount | Name::PromptCount | Name::CandidatesCount | Name::ThoughtsCount
            ),
            Slot::Ollama => matches!(self, Name::PromptEval | Name::Eval),
        }
    }
}

/// One token field of a usage object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Count {
    /// Not reported (or reported as something other than a number, such as
    /// `null`).
    #[default]
    Absent,
    Tokens(u64),
    /// A number that cannot be a token count.
    Bad,
}

impl Count {
    fn get(self) -> Option<u64> {
        match self {
            Count::Tokens(n) => Some(n),
            Count::Absent | Count::Bad => None,
        }
    }
}

/// The token fields of one usage object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Record {
    total: Count,
    prompt: Count,
    completion: Count,
    input: Count,
    output: Count,
    /// Gemini's thinking tokens, reported apart from its output and
    /// charged with it.
    thoughts: Count,
}

impl Record {
    const EMPTY: Record = Record {
        total: Count::Absent,
        prompt: Count::Absent,
        completion: Count::Absent,
        input: Count::Absent,
        output: Count::Absent,
        thoughts: Count::Absent,
    };

    fn fields(&self) -> [Count; 6] {
        [
            self.total,
            self.prompt,
            self.completion,
            self.input,
            self.output,
            self.thoughts,
        ]
    }

    fn is_empty(&self) -> bool {
        self.fields().iter().all(|c| *c == Count::Absent)
    }

    fn is_bad(&self) -> bool {
        self.fields().contains(&Count::Bad)
    }

    fn set(&mut self, name: Name, count: Count) {
        let field = match name {
            Name::Total | Name::TotalCount => &mut self.total,
            Name::Prompt | Name::PromptCount | Name::PromptEval => &mut self.prompt,
            Name::Completion | Name::CandidatesCount | Name::Eval => &mut self.completion,
            Name::Input => &mut self.input,
            Name::Output => &mut self.output,
            Name::ThoughtsCount => &mut self.thoughts,
            Name::Other
            | Name::Usage
            | Name::Message
            | Name::Response
            | Name::Metadata
            | Name::Candidates
            | Name::FinishReason => return,
        };
        *field = count;
    }

    /// Input tokens: OpenAI chat's name first, then the other APIs'.
    fn input(&self) -> Option<u64> {
        self.prompt.get().or(self.input.get())
    }

    /// Output tokens, with Gemini's thinking tokens added when reported
    /// (saturating: a count that large is refused when it is summed).
    fn output(&self) -> Option<u64> {
        let output = self.completion.get().or(self.output.get());
        match self.thoughts.get() {
            Some(thoughts) => Some(output.unwrap_or(0).saturating_add(thoughts)),
            None => output,
        }
    }
}

/// Adds input and output into a total; `None` on overflow, which is no
/// usage anyone was charged.
fn sum(input: Option<u64>, output: Option<u64>) -> Option<u64> {
    input.unwrap_or(0).checked_add(output.unwrap_or(0))
}

/// Where a usage object hangs: top-level `usage`, `message.usage`,
/// `response.usage`, Gemini's top-level `usageMetadata`, and Ollama's
/// counts in the top-level object itself, in the order they are
/// preferred.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Top = 0,
    Message = 1,
    Response = 2,
    Gemini = 3,
    Ollama = 4,
}

impl Slot {
    /// Whether a stream event with usage here carries the stream's final
    /// count: OpenAI chat's usage chunk and Anthropic's `message_delta`
    /// (top-level `usage`), the Responses API's `response.completed`
    /// (`response.usage`) and Ollama's `done` line do; Anthropic's
    /// `message_start` (`message.usage`) is followed by the output count,
    /// and every Gemini chunk carries a running `usageMetadata`: only the
    /// chunk whose candidate has a `finishReason` carries the last.
    fn is_final(self) -> bool {
        matches!(self, Slot::Top | Slot::Response | Slot::Ollama)
    }
}

/// An object the skim reads key by key (every other object is skipped
/// whole). At most three deep: the document, `message` or `response`, and
/// a usage object. The document itself holds Ollama's counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frame {
    /// The top-level object.
    Top,
    /// `message` or `response` in the top-level object.
    Source(Slot),
    /// The usage object of a slot.
    Record(Slot),
    /// Gemini's `candidates` array in the top-level object: its elements
    /// are read (the only array the skim reads).
    Candidates,
    /// One object in `candidates`, read for its `finishReason`.
    Candidate,
}

impl Frame {
    /// Its nesting depth: the top-level object is at depth 1.
    fn depth(self) -> u8 {
        match self {
            Frame::Top => 1,
            Frame::Source(_)
            | Frame::Record(Slot::Top | Slot::Gemini | Slot::Ollama)
            | Frame::Candidates => 2,
            Frame::Record(Slot::Message | Slot::Response) | Frame::Candidate => 3,
        }
    }

    /// The object it sits in; `None` for the top-level object.
    fn parent(self) -> Option<Frame> {
        match self {
            Frame::Top => None,
            Frame::Source(_)
            | Frame::Record(Slot::Top | Slot::Gemini | Slot::Ollama)
            | Frame::Candidates => Some(Frame::Top),
            Frame::Record(slot) => Some(Frame::Source(slot)),
            Frame::Candidate => Some(Frame::Candidates),
        }
    }
}

/// Where the skim is in the document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    /// Before the document's value.
    Start,
    /// In a read object, where a key may start; `first` right after `{`,
    /// where `}` may come instead.
    Key { first: bool },
    /// Inside a key of a read object: its bytes go to the key buffer.
    InKey,
    /// After `\` in such a key.
    KeyEscape,
    /// Inside `\uXXXX` in such a key: digits still to come, code so far.
    KeyHex { left: u8, code: u16 },
    /// After a key: `:`.
    Colon,
    /// After `:`: a value.
    Value,
    /// After a value in a read object: `,` or `}` (in `candidates`: `,`
    /// or `]`).
    After,
    /// In `candidates`, where an element may start; `first` right after
    /// `[`, where `]` may come instead.
    Element { first: bool },
    /// Inside a token count.
    Number(Num),
    /// Skipping a value, inside its arrays and objects, outside strings.
    Tree,
    /// Skipping a string: a skipped value or one inside it.
    Str,
    /// After `\` in a skipped string.
    StrEscape,
    /// Skipping a number or literal that is a whole value.
    Scalar,
    /// After the document's value: whitespace only.
    Done,
    /// Not JSON, as far as the skim checks; nothing more is read.
    Failed,
}

/// Longest key kept (decoded) for comparison: `completion_tokens` fits.
/// Longer keys are no key the skim wants.
const KEY_CAP: usize = 24;

/// One JSON document skimmed for its usage objects.
///
/// Only the objects on the way to a usage object are read key by key:
/// the top-level object, `message` and `response` in it, and the usage
/// objects themselves, whose token counts are parsed exactly. Every other
/// value is skipped by its structure alone: a string up to its closing
/// quote (a word at a time), an array or object by matching brackets
/// outside strings, a number or literal up to the byte after it. What
/// the skim still refuses, so that a broken document gives no usage:
/// unbalanced or mismatched brackets, nesting deeper than
/// [`MAX_DEPTH`](crate::MAX_DEPTH), an unterminated string, a raw control
/// byte or an unknown escape in a string, a value that starts with a byte
/// no JSON value starts with, a missing `:` or `,` in a read object, a
/// trailing comma there, and anything but whitespace after the document.
/// What it no longer checks, inside skipped values: UTF-8, `\u` digits and
/// surrogate pairs, number and literal spelling, and `:` and `,` between
/// the members of skipped containers. That is what makes it cheap: about
/// one branch per byte of structure and a few instructions per word of
/// string, with no per-byte state machine.
#[derive(Clone, Debug)]
struct Doc {
    at: At,
    /// The object being read, when `at` is inside one.
    frame: Option<Frame>,
    /// The key whose value comes next in the read object.
    name: Name,
    /// Nesting of the value being skipped, below `frame`.
    skip_depth: u8,
    /// The kinds of the open skipped containers as a stack of bits, the
    /// innermost in bit 0: set for an object. Pushed and popped by a shift
    /// by one, which costs two instructions on a `u128` where a shift by
    /// the depth costs a dozen.
    skip_objects: u128,
    /// A key cut by the end of a chunk or holding escapes, decoded.
    key: [u8; KEY_CAP],
    key_len: u8,
    /// False once the key outgrew `key` or held a non-ASCII escape.
    key_ok: bool,
    /// The token count being parsed, and whether it is still a
    /// non-negative integer within `u64`.
    num: u64,
    num_ok: bool,
    /// The usage objects by [`Slot`].
    records: [Record; 5],
    /// Whether any token field was set: until then the records are empty,
    /// and [`Doc::reset`] and [`Doc::usage`] need not look at them.
    counted: bool,
    /// Whether the document is an object.
    object: bool,
    /// A Gemini candidate had a `finishReason`: the chunk is the last.
    finished: bool,
}

/// Byte classes of the tree skip: what a byte means between the strings
/// of a skipped array or object.
const PLAIN: u8 = 0;
const QUOTE: u8 = 1;
const OPEN_OBJECT: u8 = 2;
const OPEN_ARRAY: u8 = 3;
const CLOSE_OBJECT: u8 = 4;
const CLOSE_ARRAY: u8 = 5;
const LINE_END: u8 = 6;

/// [`PLAIN`] for every byte but those that matter to the tree skip: one
/// load and one compare for the bytes that do not.
// Built at compile time: a bad index would fail the build, never panic.
#[allow(clippy::indexing_slicing)]
static TREE_CLASS: [u8; 256] = {
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

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn is_line_end(b: u8) -> bool {
    b == b'\n' || b == b'\r'
}

/// Whether a value may start with `b` (besides `{`, `[` and `"`): a
/// number or a literal. Only the first byte is checked.
fn starts_scalar(b: u8) -> bool {
    matches!(b, b'-' | b'0'..=b'9' | b't' | b'f' | b'n')
}

/// The bytes that end a skipped number or literal.
const fn is_scalar_end(b: u8) -> bool {
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
/// `matches!` compile to jump tables of about 10 instructions a byte
/// (per byte of a skipped number, per escape of a skipped string: a
/// third of a long answer's instructions were its escapes). 256 bytes of
/// data.
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
fn ends_scalar(b: u8) -> bool {
    BYTE_FLAGS.get(usize::from(b)).copied().unwrap_or(0) & SCALAR_END != 0
}

/// Whether `\` and `b` are an escape a string may hold (`\u`'s digits
/// are not checked).
#[inline(always)]
fn escapes(b: u8) -> bool {
    BYTE_FLAGS.get(usize::from(b)).copied().unwrap_or(0) & ESCAPE != 0
}

/// The byte an escape other than `\u` stands for: `\n` for `n`.
fn simple_escape(b: u8) -> Option<u8> {
    Some(match b {
        b'"' | b'\\' | b'/' => b,
        b'b' => 0x08,
        b'f' => 0x0C,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        _ => return None,
    })
}

fn hex_digit(b: u8) -> Option<u16> {
    let digit = match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => return None,
    };
    Some(u16::from(digit))
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
fn string_run(s: &[u8]) -> usize {
    string_stop(s, 0)
}

/// The offset of the first byte of `s` from `pos` a string must stop at
/// (see [`string_stops`]), or the length of `s`.
#[inline(always)]
fn string_stop(s: &[u8], pos: usize) -> usize {
    next_stop(s, pos).map_or(s.len(), |(at, _)| at)
}

/// The first byte of `s` from `pos` a string must stop at (see
/// [`string_stops`]) and its offset; `None` when there is none. A word at
/// a time while eight bytes are left, the last few by [`tail_stop`].
///
/// The byte comes out of the word (a shift), so the caller matches on it
/// without loading it again or checking its offset against the length.
#[inline(always)]
fn next_stop(s: &[u8], pos: usize) -> Option<(usize, u8)> {
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
enum StrEnd {
    /// It closed: the offset after its `"`.
    Closed(usize),
    /// The input ended inside it (`true`: right after a `\`).
    Cut(bool),
    /// A raw control byte or an unknown escape.
    Bad,
}

/// Skips the inside of a string from `pos` (after its `"` or an escape).
#[inline(always)]
fn skip_string(s: &[u8], mut pos: usize) -> StrEnd {
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
fn blanks(s: &[u8], mut pos: usize) -> usize {
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
fn past(s: &[u8], pos: usize, byte: u8) -> Option<usize> {
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
#[inline(always)]
fn skip_whole(s: &[u8], pos: usize) -> Option<usize> {
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
#[inline(always)]
fn whole_count(s: &[u8], pos: usize) -> Option<(usize, Count)> {
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
#[inline(never)]
fn whole_usage(s: &[u8], pos: usize, slot: Slot) -> Option<(usize, Record, bool)> {
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

/// What [`Doc::members`] does with the value of a member whose key it
/// read.
enum Member {
    /// Skips it, as [`Doc::value`] would skip it ([`skip_whole`]).
    Skip,
    /// It was read here: the offset after it, or `None` to leave the member
    /// to [`Doc::run`].
    Read(Option<usize>),
}

impl Doc {
    const fn new() -> Self {
        Doc {
            at: At::Start,
            frame: None,
            name: Name::Other,
            skip_depth: 0,
            skip_objects: 0,
            key: [0; KEY_CAP],
            key_len: 0,
            key_ok: true,
            num: 0,
            num_ok: false,
            records: [Record::EMPTY; 5],
            counted: false,
            object: false,
            finished: false,
        }
    }

    /// Back to the start of a document, for the next event. Cheaper than
    /// a fresh [`Doc::new`] (which writes all of its few hundred bytes)
    /// when no token field was set, as in most events of a stream.
    fn reset(&mut self) {
        self.at = At::Start;
        self.frame = None;
        self.object = false;
        self.finished = false;
        if self.counted {
            self.counted = false;
            self.records = [Record::EMPTY; 5];
        }
    }

    /// Feeds the next bytes of the document.
    fn feed(&mut self, bytes: &[u8]) {
        // One skim for both formats (half the code in the module): it
        // stops at line endings for the event stream, which in a JSON body
        // are whitespace. It stops only where whitespace is allowed or
        // between the tokens of a skipped container, so stepping over the
        // line ending is right, for one call per line.
        let mut pos = 0;
        while pos < bytes.len() && !matches!(self.at, At::Failed) {
            pos = self.run(bytes, pos) + 1;
        }
    }

    /// Feeds the line that starts at `pos` in `bytes`, up to its first `\n`
    /// or `\r`: the offset of that byte, or the length of `bytes`.
    fn feed_line(&mut self, bytes: &[u8], pos: usize) -> usize {
        let pos = self.run(bytes, pos);
        if matches!(self.at, At::Failed) {
            return pos + line_end(bytes.get(pos..).unwrap_or_default());
        }
        pos
    }

    fn fail(&mut self) {
        self.at = At::Failed;
    }

    /// Whether the bytes fed are one JSON value as far as the skim checks.
    /// A top-level number or literal is complete at the end of input.
    fn is_complete(&self) -> bool {
        match self.at {
            At::Done => true,
            At::Scalar => self.frame.is_none(),
            _ => false,
        }
    }

    /// The usage object that counts: the first slot that reported any
    /// token field, with that slot.
    fn usage(&self) -> (Record, Slot) {
        const SLOTS: [Slot; 5] = [
            Slot::Top,
            Slot::Message,
            Slot::Response,
            Slot::Gemini,
            Slot::Ollama,
        ];
        if !self.counted {
            return (Record::EMPTY, Slot::Top);
        }
        self.records
            .into_iter()
            .zip(SLOTS)
            .find(|(r, _)| !r.is_empty())
            .unwrap_or((Record::EMPTY, Slot::Top))
    }

    fn record(&mut self, slot: Slot) -> &mut Record {
        let [top, message, response, gemini, ollama] = &mut self.records;
        match slot {
            Slot::Top => top,
            Slot::Message => message,
            Slot::Response => response,
            Slot::Gemini => gemini,
            Slot::Ollama => ollama,
        }
    }

    /// The skim over `s` from `pos`, up to its end or a line ending that
    /// is not inside a string (returned, not consumed: the caller knows
    /// whether it ends an event-stream line or is JSON whitespace); stops
    /// early once failed.
    fn run(&mut self, s: &[u8], pos: usize) -> usize {
        let mut pos = self.top(s, pos);
        // The usual end of an event's line: the fast path read the whole
        // object up to its line ending (the caller's, as below).
        if matches!(self.at, At::Done) && s.get(pos).is_some_and(|&b| is_line_end(b)) {
            return pos;
        }
        while let Some(&b) = s.get(pos) {
            let at = self.at;
            let next = match at {
                // Whitespace where a token may come; a line ending there is
                // the caller's. Elsewhere a line ending is a control byte
                // inside a string or escape (refused), or ends a number or
                // literal, and comes back here.
                At::Start
                | At::Key { .. }
                | At::Colon
                | At::Value
                | At::After
                | At::Done
                | At::Element { .. }
                    if b <= b' ' =>
                {
                    if is_line_end(b) {
                        return pos;
                    }
                    if !is_space(b) {
                        self.fail();
                        return pos;
                    }
                    pos + 1
                }
                // The tree skip stopped at a line ending: the caller's.
                At::Tree if is_line_end(b) => return pos,
                At::Tree => self.tree(s, pos),
                At::Str => self.string(s, pos),
                At::After if b == b',' && matches!(self.frame, Some(Frame::Candidates)) => {
                    self.at = At::Element { first: false };
                    pos + 1
                }
                At::After if b == b',' => {
                    // Straight on into the next key, the usual case.
                    if matches!(self.frame, Some(Frame::Top)) {
                        self.members(s, pos + 1, false)
                    } else if s.get(pos + 1) == Some(&b'"') {
                        self.key_start(s, pos + 1, b'"', false)
                    } else {
                        self.at = At::Key { first: false };
                        pos + 1
                    }
                }
                At::Key { first } => self.key_start(s, pos, b, first),
                At::Colon if b == b':' => {
                    self.at = At::Value;
                    pos + 1
                }
                At::Value => self.value(s, pos, b),
                At::After if matches!(self.frame, Some(Frame::Candidates)) => {
                    if b != b']' {
                        self.fail();
                        return pos;
                    }
                    self.close(pos)
                }
                At::After if b == b'}' => self.close(pos),
                At::Element { first } => self.element(s, pos, b, first),
                At::Scalar => self.scalar(s, pos),
                At::Number(num) => self.number(s, pos, num),
                At::StrEscape if escapes(b) => {
                    self.at = At::Str;
                    pos + 1
                }
                At::InKey => self.key_rest(s, pos),
                At::KeyEscape => self.key_escape(pos, b),
                At::KeyHex { left, code } => self.key_hex(pos, b, left, code),
                At::Start if b == b'{' => {
                    self.object = true;
                    self.frame = Some(Frame::Top);
                    self.at = At::Key { first: true };
                    pos + 1
                }
                At::Start => self.skip_value(s, pos, b),
                At::Failed => return pos,
                At::Colon | At::After | At::Done | At::StrEscape => {
                    self.fail();
                    return pos;
                }
            };
            // Every step consumes a byte or moves to a state that will; a
            // step that did neither would spin on hostile input forever (a
            // stalled worker in the proxy), so it ends the skim instead.
            // One compare per step, almost never taken.
            if next == pos && self.at == at {
                self.fail();
                return pos;
            }
            pos = next;
        }
        pos
    }

    /// The fast path of [`Doc::run`] from `pos`, when the scan is at the
    /// start of the document or between the members of the top-level
    /// object: see [`Doc::members`]. Elsewhere it leaves the scan as it is.
    fn top(&mut self, s: &[u8], pos: usize) -> usize {
        match (self.at, self.frame) {
            (At::Start, _) if s.get(pos) == Some(&b'{') => {
                self.object = true;
                self.frame = Some(Frame::Top);
                self.members(s, pos + 1, true)
            }
            (At::Key { first }, Some(Frame::Top)) => self.members(s, pos, first),
            (At::After, Some(Frame::Top)) => match s.get(blanks(s, pos)) {
                Some(b',') => self.members(s, blanks(s, pos) + 1, false),
                _ => pos,
            },
            _ => pos,
        }
    }

    /// The members of the top-level object from `pos`, where a key (or,
    /// when `first`, a `}`) may come, read in one loop with the position in
    /// a local while each is usual: a key without escapes, `:`, and a value
    /// that ends within `s` with no line ending outside its strings, with
    /// only spaces and tabs between, where the key is none the skim reads
    /// or its value is not an object, or it is a top-level `usage` object
    /// of plain counts that [`whole_usage`] reads whole (`message` and
    /// `response` objects, and any unusual usage object, go back to
    /// [`Doc::run`]). Every other value is skipped by
    /// [`skip_whole`], as [`Doc::value`] would skip it. Between these
    /// members the state is only `at`, so at the first member this does
    /// not take it leaves the scan where [`Doc::run`] would be before that
    /// member (or after the value before it), and [`Doc::run`] goes on from
    /// there: the result is the same as if it had read every byte itself.
    fn members(&mut self, s: &[u8], mut pos: usize, mut first: bool) -> usize {
        loop {
            let at = blanks(s, pos);
            match s.get(at) {
                Some(b'"') => {}
                Some(b'}') if first => return self.close(at),
                _ => {
                    self.at = At::Key { first };
                    return pos;
                }
            }
            let from = at + 1;
            // The key, whole and without escapes, then `:`.
            let key = match next_stop(s, from) {
                Some((stop, b'"')) => past(s, stop + 1, b':').map(|colon| (stop, colon)),
                _ => None,
            };
            let Some((stop, colon)) = key else {
                self.at = At::Key { first };
                return pos;
            };
            // Most keys are none the skim reads: their value is skipped,
            // one compare after the name. The usage object a `usage`,
            // `message`, `response` or `usageMetadata` key's value would be
            // (or lead to), Gemini's `candidates` and Ollama's counts are
            // looked at.
            let name = Name::of(s.get(from..stop));
            let value = blanks(s, colon);
            let member = match name {
                Name::Other => Member::Skip,
                Name::PromptEval | Name::Eval | Name::Candidates => {
                    self.rare_member(s, name, value)
                }
                _ => self.slot_member(s, name, value),
            };
            // One skip for every member that is skipped, rather than one
            // inlined into each place that decides to skip.
            let end = match member {
                Member::Skip => skip_whole(s, value),
                Member::Read(end) => end,
            };
            let Some(end) = end else {
                self.at = At::Key { first };
                return pos;
            };
            if let Some(next) = past(s, end, b',') {
                pos = next;
                first = false;
                continue;
            }
            if let Some(next) = past(s, end, b'}') {
                return self.close(next - 1);
            }
            self.at = At::After;
            return end;
        }
    }

    /// [`Doc::members`] for a member of the top-level object named `name`
    /// (a name the skim knows, but neither Gemini's `candidates` nor an
    /// Ollama count) whose value starts at `value`.
    ///
    /// A top-level usage object (`usage`, `usageMetadata`) that is whole
    /// and usual is read here ([`whole_usage`]); `message` and `response`
    /// objects, and any other such value that is an object, by
    /// [`Doc::run`]. A value that is no object, as `"usage":null` in most
    /// events of a stream, is no usage, and replaces any before it
    /// ([`Doc::value`]); it is skipped. (Should the skip stop short,
    /// [`Doc::run`] reads the member again and replaces the same usage.)
    #[inline(always)]
    fn slot_member(&mut self, s: &[u8], name: Name, value: usize) -> Member {
        let slot = match name {
            Name::Usage => Slot::Top,
            Name::Message => Slot::Message,
            Name::Response => Slot::Response,
            Name::Metadata => Slot::Gemini,
            _ => return Member::Skip,
        };
        if s.get(value) != Some(&b'{') {
            if self.counted {
                *self.record(slot) = Record::EMPTY;
            }
            return Member::Skip;
        }
        if !matches!(slot, Slot::Top | Slot::Gemini) {
            return Member::Read(None);
        }
        let Some((end, record, counted)) = whole_usage(s, value, slot) else {
            return Member::Read(None);
        };
        self.counted |= counted;
        if self.counted {
            *self.record(slot) = record;
        }
        Member::Read(Some(end))
    }

    /// [`Doc::members`] for a member of the top-level object named
    /// `name`, Gemini's `candidates` or one of Ollama's counts, whose
    /// value starts at `value`. Left to [`Doc::run`]: `candidates` as an
    /// array, read for its `finishReason`, and a count that is not a plain
    /// integer. A value that is no number is no count, replaces any before
    /// it and is skipped (should the skip stop short, [`Doc::run`] reads
    /// the member again and replaces the same count).
    #[cold]
    #[inline(never)]
    fn rare_member(&mut self, s: &[u8], name: Name, value: usize) -> Member {
        let Some(&b) = s.get(value) else {
            return Member::Read(None);
        };
        if name == Name::Candidates {
            if b == b'[' {
                return Member::Read(None);
            }
            return Member::Skip;
        }
        // Ollama's counts sit in the top-level object itself.
        let count = match b {
            b'0'..=b'9' => whole_count(s, value),
            b'-' => None,
            _ => {
                if self.counted {
                    self.record(Slot::Ollama).set(name, Count::Absent);
                }
                return Member::Skip;
            }
        };
        let Some((end, count)) = count else {
            return Member::Read(None);
        };
        self.record(Slot::Ollama).set(name, count);
        self.counted = true;
        Member::Read(Some(end))
    }

    /// Where a key or (right after `{`) a `}` may come.
    fn key_start(&mut self, s: &[u8], pos: usize, b: u8, first: bool) -> usize {
        match b {
            b'"' => {
                let from = pos + 1;
                let rest = s.get(from..).unwrap_or_default();
                let run = string_run(rest);
                // The usual key: whole in this chunk, no escapes, then
                // `:` and the value, taken in the same step.
                if rest.get(run) == Some(&b'"') {
                    self.name = Name::of_outlined(rest.get(..run));
                    let end = from + run + 1;
                    if s.get(end) != Some(&b':') {
                        self.at = At::Colon;
                        return end;
                    }
                    self.at = At::Value;
                    return match s.get(end + 1) {
                        Some(&v) if v > b' ' => self.value(s, end + 1, v),
                        _ => end + 1,
                    };
                }
                self.key_len = 0;
                self.key_ok = true;
                self.at = At::InKey;
                from
            }
            b'}' if first => self.close(pos),
            _ => {
                self.fail();
                pos
            }
        }
    }

    /// The rest of a key that needs decoding or spans chunks.
    fn key_rest(&mut self, s: &[u8], pos: usize) -> usize {
        let rest = s.get(pos..).unwrap_or_default();
        let run = string_run(rest);
        for &b in rest.get(..run).unwrap_or_default() {
            self.key_push(b);
        }
        let at = pos + run;
        match s.get(at) {
            None => at,
            Some(b'"') => {
                let key = self.key.get(..usize::from(self.key_len));
                self.name = Name::of_outlined(key.filter(|_| self.key_ok));
                self.at = At::Colon;
                at + 1
            }
            Some(b'\\') => {
                self.at = At::KeyEscape;
                at + 1
            }
            Some(_) => {
                self.fail();
                at
            }
        }
    }

    fn key_push(&mut self, b: u8) {
        match self.key.get_mut(usize::from(self.key_len)) {
            Some(slot) => {
                *slot = b;
                self.key_len += 1;
            }
            None => self.key_ok = false,
        }
    }

    fn key_escape(&mut self, pos: usize, b: u8) -> usize {
        if b == b'u' {
            self.at = At::KeyHex { left: 4, code: 0 };
        } else if let Some(decoded) = simple_escape(b) {
            self.key_push(decoded);
            self.at = At::InKey;
        } else {
            self.fail();
            return pos;
        }
        pos + 1
    }

    fn key_hex(&mut self, pos: usize, b: u8, left: u8, code: u16) -> usize {
        let Some(digit) = hex_digit(b) else {
            self.fail();
            return pos;
        };
        let code = (code << 4) | digit;
        self.at = if left > 1 {
            At::KeyHex {
                left: left - 1,
                code,
            }
        } else {
            // No key the skim wants has a character beyond ASCII, so any
            // such escape (surrogates included) only spoils the key.
            match u8::try_from(code) {
                Ok(ascii) if ascii < 0x80 => self.key_push(ascii),
                _ => self.key_ok = false,
            }
            At::InKey
        };
        pos + 1
    }

    /// The first byte `b` of a value in a read object, at `pos`.
    fn value(&mut self, s: &[u8], pos: usize, b: u8) -> usize {
        let Some(frame) = self.frame else {
            return self.skip_value(s, pos, b);
        };
        // A new value for a key replaces whatever an earlier duplicate of
        // the key said.
        let opens = match (frame, self.name) {
            (Frame::Top, Name::Usage) => Some(Frame::Record(Slot::Top)),
            (Frame::Top, Name::Message) => Some(Frame::Source(Slot::Message)),
            (Frame::Top, Name::Response) => Some(Frame::Source(Slot::Response)),
            (Frame::Top, Name::Metadata) => Some(Frame::Record(Slot::Gemini)),
            (Frame::Source(slot), Name::Usage) => Some(Frame::Record(slot)),
            (Frame::Record(slot), name) if name.counts_in(slot) => {
                return self.count_value(s, pos, b, slot);
            }
            (Frame::Top, name) if name.counts_in(Slot::Ollama) => {
                return self.count_value(s, pos, b, Slot::Ollama);
            }
            (Frame::Top, Name::Candidates) if b == b'[' => {
                self.frame = Some(Frame::Candidates);
                self.at = At::Element { first: true };
                return pos + 1;
            }
            (Frame::Candidate, Name::FinishReason) => {
                // A reason, not `null`: the model is done.
                self.finished |= b == b'"';
                None
            }
            _ => None,
        };
        if let Some(inner) = opens {
            let slot = match inner {
                Frame::Record(slot) | Frame::Source(slot) => slot,
                // (Never opened here.)
                Frame::Top | Frame::Candidates | Frame::Candidate => Slot::Top,
            };
            // (Still empty unless a count was set.)
            if self.counted {
                *self.record(slot) = Record::EMPTY;
            }
            if b == b'{' {
                self.frame = Some(inner);
                self.at = At::Key { first: true };
                return pos + 1;
            }
        }
        self.skip_value(s, pos, b)
    }

    /// The first byte `b` of an element of `candidates`, at `pos`: an
    /// object is read for its `finishReason`, anything else skipped.
    fn element(&mut self, s: &[u8], pos: usize, b: u8, first: bool) -> usize {
        match b {
            b']' if first => self.close(pos),
            b'{' => {
                self.frame = Some(Frame::Candidate);
                self.at = At::Key { first: true };
                pos + 1
            }
            _ => self.skip_value(s, pos, b),
        }
    }

    /// The value, first byte `b` at `pos`, of a token field of the usage
    /// in `slot`: a count when it is a number, no count otherwise.
    fn count_value(&mut self, s: &[u8], pos: usize, b: u8, slot: Slot) -> usize {
        if matches!(b, b'-' | b'0'..=b'9') {
            return self.number_start(s, pos, b);
        }
        // Not a number: no count, whatever it is.
        let name = self.name;
        self.record(slot).set(name, Count::Absent);
        self.skip_value(s, pos, b)
    }

    /// Skips the value whose first byte `b` is at `pos`, as far as `s`
    /// goes.
    fn skip_value(&mut self, s: &[u8], pos: usize, b: u8) -> usize {
        self.skip_depth = 0;
        match b {
            b'"' => self.string(s, pos + 1),
            b'{' | b'[' => {
                if !self.open(b == b'{') {
                    return pos;
                }
                self.at = At::Tree;
                self.tree(s, pos + 1)
            }
            _ if starts_scalar(b) => {
                self.at = At::Scalar;
                self.scalar(s, pos + 1)
            }
            _ => {
                self.fail();
                pos
            }
        }
    }

    /// A skipped container opens; false (and failed) when that is deeper
    /// than [`MAX_DEPTH`](crate::MAX_DEPTH).
    fn open(&mut self, object: bool) -> bool {
        let base = self.frame.map_or(0, Frame::depth);
        if base + self.skip_depth >= crate::MAX_DEPTH {
            self.fail();
            return false;
        }
        self.skip_objects = (self.skip_objects << 1) | u128::from(object);
        self.skip_depth += 1;
        true
    }

    /// The skipped value ended.
    fn value_done(&mut self) {
        self.at = if self.frame.is_some() {
            At::After
        } else {
            At::Done
        };
    }

    /// Skips arrays and objects from `pos`: brackets counted and matched,
    /// strings jumped over, every other byte passed with one table load.
    fn tree(&mut self, s: &[u8], mut pos: usize) -> usize {
        while let Some(&b) = s.get(pos) {
            let class = TREE_CLASS.get(usize::from(b)).copied().unwrap_or(PLAIN);
            if class == PLAIN {
                pos += 1;
                continue;
            }
            match class {
                QUOTE => match skip_string(s, pos + 1) {
                    StrEnd::Closed(end) => pos = end,
                    StrEnd::Cut(escape) => {
                        self.at = if escape { At::StrEscape } else { At::Str };
                        return s.len();
                    }
                    StrEnd::Bad => {
                        self.fail();
                        return pos;
                    }
                },
                OPEN_OBJECT | OPEN_ARRAY => {
                    if !self.open(class == OPEN_OBJECT) {
                        return pos;
                    }
                    pos += 1;
                }
                CLOSE_OBJECT | CLOSE_ARRAY => {
                    let Some(depth) = self.skip_depth.checked_sub(1) else {
                        self.fail();
                        return pos;
                    };
                    let object = self.skip_objects & 1 == 1;
                    if object != (class == CLOSE_OBJECT) {
                        self.fail();
                        return pos;
                    }
                    self.skip_objects >>= 1;
                    self.skip_depth = depth;
                    pos += 1;
                    if depth == 0 {
                        self.value_done();
                        return pos;
                    }
                }
                // A line ending: the caller's.
                _ => return pos,
            }
        }
        pos
    }

    /// Skips the rest of a string from `pos`.
    fn string(&mut self, s: &[u8], pos: usize) -> usize {
        match skip_string(s, pos) {
            StrEnd::Closed(end) => {
                if self.skip_depth == 0 {
                    self.value_done();
                } else {
                    self.at = At::Tree;
                }
                end
            }
            StrEnd::Cut(escape) => {
                self.at = if escape { At::StrEscape } else { At::Str };
                s.len()
            }
            StrEnd::Bad => {
                self.fail();
                pos
            }
        }
    }

    /// Skips a number or literal up to the byte after it (left for what
    /// follows to judge).
    fn scalar(&mut self, s: &[u8], mut pos: usize) -> usize {
        while let Some(&b) = s.get(pos) {
            if ends_scalar(b) {
                self.value_done();
                return pos;
            }
            pos += 1;
        }
        pos
    }

    /// A token count starts with `b` at `pos`.
    fn number_start(&mut self, s: &[u8], pos: usize, b: u8) -> usize {
        self.num = 0;
        self.num_ok = b != b'-';
        let num = match b {
            b'-' => Num::Minus,
            b'0' => Num::Zero,
            _ => {
                self.num = u64::from(b - b'0');
                Num::Int
            }
        };
        self.number(s, pos + 1, num)
    }

    /// The bytes of a token count from `pos`, `num` the grammar state so
    /// far, parsed exactly as JSON: the count is its value when it is a
    /// non-negative integer within `u64`, bad for any other number.
    fn number(&mut self, s: &[u8], mut pos: usize, mut num: Num) -> usize {
        while let Some(&b) = s.get(pos) {
            let digit = b.is_ascii_digit();
            num = match (num, b) {
                (Num::Int, _) if digit => {
                    match append_digit(self.num, b) {
                        Some(n) => self.num = n,
                        None => self.num_ok = false,
                    }
                    Num::Int
                }
                (Num::Minus, b'0') => Num::Zero,
                (Num::Minus, _) if digit => Num::Int,
                (Num::Zero | Num::Int, b'.') => Num::Dot,
                (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Num::Exp,
                (Num::Dot | Num::Frac, _) if digit => Num::Frac,
                (Num::Exp, b'+' | b'-') => Num::ExpSign,
                (Num::Exp | Num::ExpSign | Num::ExpDigits, _) if digit => Num::ExpDigits,
                // The number ended at `b`, which is left for what follows.
                (Num::Zero | Num::Int | Num::Frac | Num::ExpDigits, _) if !digit => {
                    let count = if self.num_ok {
                        Count::Tokens(self.num)
                    } else {
                        Count::Bad
                    };
                    let slot = match self.frame {
                        Some(Frame::Record(slot)) => Some(slot),
                        // Only a count key of Ollama's leads here.
                        Some(Frame::Top) => Some(Slot::Ollama),
                        Some(Frame::Source(_) | Frame::Candidates | Frame::Candidate) | None => {
                            None
                        }
                    };
                    if let Some(slot) = slot {
                        let name = self.name;
                        self.record(slot).set(name, count);
                        self.counted = true;
                    }
                    self.at = At::After;
                    return pos;
                }
                // `-`, `.`, `e` with nothing after, or a leading zero.
                _ => {
                    self.fail();
                    return pos;
                }
            };
            // A sign, fraction or exponent: a number, but no count.
            if !matches!(num, Num::Int | Num::Zero) {
                self.num_ok = false;
            }
            pos += 1;
        }
        self.at = At::Number(num);
        pos
    }

    /// `}` at `pos` closes the read object.
    fn close(&mut self, pos: usize) -> usize {
        match self.frame.and_then(Frame::parent) {
            Some(parent) => {
                self.frame = Some(parent);
                self.at = At::After;
            }
            None => {
                self.frame = None;
                self.at = At::Done;
            }
        }
        pos + 1
    }
}

/// Scans a JSON response body, chunk by chunk.
///
/// Costs one pass over the bytes and no allocation; the state between
/// chunks is fixed in size.
#[derive(Clone, Debug)]
pub struct JsonScanner {
    doc: Doc,
}

impl Default for JsonScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonScanner {
    /// A scanner at the start of a body.
    pub const fn new() -> Self {
        JsonScanner { doc: Doc::new() }
    }

    /// Scans the next chunk of the body; chunks may split it anywhere.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.doc.feed(chunk);
    }

    /// The usage of the body fed so far, taken as the whole body.
    ///
    /// A body that is not exactly one JSON value is [`Scan::Malformed`]; a
    /// valid one that is not an object is [`Scan::Absent`].
    #[must_use]
    pub fn finish(&self) -> Scan {
        if !self.doc.is_complete() {
            return Scan::Malformed;
        }
        if !self.doc.object {
            return Scan::Absent;
        }
        let (record, _) = self.doc.usage();
        if record.is_bad() {
            return Scan::Malformed;
        }
        if record.is_empty() {
            return Scan::Absent;
        }
        let input = record.input();
        let output = record.output();
        let total = match record.total {
            Count::Tokens(total) => Some(total),
            Count::Absent | Count::Bad => sum(input, output),
        };
        match total {
            Some(total) => Scan::Found(Usage {
                total,
                input,
                output,
            }),
            None => Scan::Malformed,
        }
    }
}

/// Where the event-stream parser is within a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    /// At the start of a line.
    Start,
    /// In a field name that matches the first `n` bytes of `data`.
    Field(u8),
    /// Right after `data:`, where one space may follow.
    Space,
    /// In a `data` value: bytes go to the JSON lexer.
    Data,
    /// In a comment or a field other than `data`.
    Skip,
}

/// The offset of the first `\n` or `\r` in `s`, or its length.
///
/// Eight bytes at a time, as a little-endian word: `(x - 0x0101..) & !x &
/// 0x8080..` flags the zero bytes of `x`, and its lowest flag is exact (a
/// wrong flag can only sit above a right one). The last few bytes are read
/// as a word padded with a byte that is neither.
fn line_end(s: &[u8]) -> usize {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    const LF: u64 = u64::from_le_bytes([b'\n'; 8]);
    const CR: u64 = u64::from_le_bytes([b'\r'; 8]);
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut at = 0;
    loop {
        let rest = s.get(at..).unwrap_or_default();
        let (w, avail) = match rest.first_chunk::<8>() {
            Some(bytes) => (u64::from_le_bytes(*bytes), 8),
            None => {
                let mut bytes = [0; 8];
                for (slot, &b) in bytes.iter_mut().zip(rest) {
                    *slot = b;
                }
                (u64::from_le_bytes(bytes), rest.len())
            }
        };
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

/// Usage merged across the events of a stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Totals {
    seen: bool,
    /// An event carried what its API sends as the stream's final usage
    /// ([`Slot::is_final`]).
    final_seen: bool,
    total: Option<u64>,
    input: Option<u64>,
    output: Option<u64>,
}

impl Totals {
    /// Takes in one event's usage object.
    ///
    /// A reported total replaces everything: OpenAI sends the whole usage
    /// once, last. Without a total the fields update one by one:
    /// Anthropic reports input tokens in `message_start` and the running
    /// output count in `message_delta`, and the last of each is the answer.
    fn merge(&mut self, record: &Record) {
        self.seen = true;
        if let Count::Tokens(total) = record.total {
            self.total = Some(total);
            self.input = record.input();
            self.output = record.output();
        } else {
            self.total = None;
            if let Some(input) = record.input() {
                self.input = Some(input);
            }
            if let Some(output) = record.output() {
                self.output = Some(output);
            }
        }
    }
}

/// Scans a `text/event-stream` response body, chunk by chunk.
///
/// Each event's `data` is skimmed as JSON while it passes (the lines of a
/// multi-line `data` joined by `\n`, as the event-stream format says);
/// events whose data is not a JSON object, such as OpenAI's `[DONE]`, are
/// skipped. Usage is taken from events as they end, the last report
/// winning (see [`Scan`] for the sources). Chunks may split the stream
/// anywhere, inside a line ending, a field name, the JSON or a number;
/// lines may end in `\n`, `\r\n` or `\r`.
///
/// One event whose data starts as an object but is broken as far as the
/// skim checks (see the module documentation), or whose token counts are
/// unusable, makes the whole stream [`Scan::Malformed`]: it may have been
/// the event carrying the usage.
///
/// Made by [`SseScanner::json_lines`], it reads JSON lines instead: every
/// line is the data of one event, with the same rules.
#[derive(Clone, Debug)]
pub struct SseScanner {
    doc: Doc,
    line: Line,
    /// The last byte was `\r`: a `\n` next completes the same line ending.
    after_cr: bool,
    /// The current event has had a `data` line.
    has_data: bool,
    malformed: bool,
    totals: Totals,
    /// JSON lines rather than server-sent events: every line is an event's
    /// whole data.
    json_lines: bool,
}

impl Default for SseScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl SseScanner {
    /// A scanner at the start of a stream.
    pub const fn new() -> Self {
        SseScanner {
            doc: Doc::new(),
            line: Line::Start,
            after_cr: false,
            has_data: false,
            malformed: false,
            totals: Totals {
                seen: false,
                final_seen: false,
                total: None,
                input: None,
                output: None,
            },
            json_lines: false,
        }
    }

    /// A scanner at the start of a stream of JSON lines
    /// (`application/x-ndjson`, as Ollama's native API streams): each
    /// line is one JSON document, read as the data of one event.
    ///
    /// # Examples
    /// ```
    /// use token_quota::usage::SseScanner;
    /// let mut lines = SseScanner::json_lines();
    /// lines.feed(b"{\"response\":\"Hi\",\"done\":false}\n");
    /// lines.feed(b"{\"done\":true,\"prompt_eval_count\":26,\"eval_count\":9}\n");
    /// assert!(lines.usage_seen());
    /// assert_eq!(lines.finish().total(), Some(35));
    /// ```
    pub const fn json_lines() -> Self {
        let mut scanner = Self::new();
        scanner.json_lines = true;
        scanner
    }

    /// Scans the next chunk of the stream.
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut pos = 0;
        while let Some(&b) = chunk.get(pos) {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    pos += 1;
                    continue;
                }
            }
            if b == b'\n' || b == b'\r' {
                self.after_cr = b == b'\r';
                self.end_line();
                pos += 1;
                continue;
            }
            // Whole runs of data or skipped bytes in one step, up to the
            // line ending (`b` is not one, so each step moves on).
            match self.line {
                Line::Data => pos = self.doc.feed_line(chunk, pos),
                Line::Skip => pos += line_end(chunk.get(pos..).unwrap_or_default()),
                // A JSON line: all of it is data (the next step reads it).
                Line::Start if self.json_lines => {
                    self.has_data = true;
                    self.line = Line::Data;
                }
                // The usual line, whole in the chunk, in one step.
                Line::Start if chunk.get(pos..pos + 6) == Some(b"data: ") => {
                    self.start_data();
                    self.line = Line::Data;
                    pos += 6;
                }
                Line::Start if b == b':' => {
                    self.line = Line::Skip;
                    pos += 1;
                }
                Line::Start => {
                    self.field_byte(0, b);
                    pos += 1;
                }
                Line::Field(matched) => {
                    self.field_byte(matched, b);
                    pos += 1;
                }
                Line::Space => {
                    self.line = Line::Data;
                    if b == b' ' {
                        pos += 1;
                    }
                    // Otherwise not the optional space: the byte is data.
                }
            }
        }
    }

    /// Takes in byte `b` of a field name whose first `matched` bytes match
    /// `data`.
    fn field_byte(&mut self, matched: u8, b: u8) {
        self.line = if b == b':' {
            if matched == 4 {
                self.start_data();
                Line::Space
            } else {
                Line::Skip
            }
        } else if b"data".get(usize::from(matched)) == Some(&b) {
            Line::Field(matched + 1)
        } else {
            Line::Skip
        };
    }

    /// A `data` line starts: lines after the first are joined with `\n`.
    fn start_data(&mut self) {
        if self.has_data {
            self.doc.feed(b"\n");
        }
        self.has_data = true;
    }

    fn end_line(&mut self) {
        if self.json_lines {
            if self.line == Line::Data {
                self.dispatch();
            }
            self.line = Line::Start;
            return;
        }
        match self.line {
            Line::Start => self.dispatch(),
            // `data` alone on a line is a data line with an empty value.
            Line::Field(4) => self.start_data(),
            Line::Field(_) | Line::Space | Line::Data | Line::Skip => {}
        }
        self.line = Line::Start;
    }

    /// The event ended: take in its usage.
    fn dispatch(&mut self) {
        if !self.has_data {
            return;
        }
        self.has_data = false;
        if self.doc.object {
            if !self.doc.is_complete() {
                self.malformed = true;
            } else if self.doc.counted {
                // Until a token field is set the record is empty: most
                // events cost these few compares, not a copy of it.
                self.take_usage();
            }
        }
        self.doc.reset();
    }

    /// Takes in the usage of a complete event that set a token field.
    #[inline(never)]
    fn take_usage(&mut self) {
        let (record, slot) = self.doc.usage();
        if record.is_bad() {
            self.malformed = true;
        } else if !record.is_empty() {
            self.totals.merge(&record);
            self.totals.final_seen |=
                slot.is_final() || (slot == Slot::Gemini && self.doc.finished);
        }
    }

    /// Whether a complete event has reported the stream's final usage;
    /// unlike [`SseScanner::finish`] this leaves the scan as it is.
    ///
    /// Final usage, by API: OpenAI chat's usage chunk and Anthropic's
    /// `message_delta` (a top-level `usage`), the Responses API's
    /// `response.completed` (`response.usage`), Ollama's last line (its
    /// `prompt_eval_count` and `eval_count`, sent with `"done": true`),
    /// and the Gemini chunk whose candidate has a `finishReason` (every
    /// Gemini chunk carries a running `usageMetadata`; the one that ends
    /// the answer carries the last). Anthropic's `message_start` is not
    /// final (the output count follows). An OpenAI-compatible server that
    /// reports usage in every chunk (vLLM's `continuous_usage_stats`)
    /// makes this true at its first chunk.
    ///
    /// # Examples
    /// ```
    /// use token_quota::usage::SseScanner;
    /// let mut sse = SseScanner::new();
    /// sse.feed(b"data: {\"message\":{\"usage\":{\"input_tokens\":9}}}\n\n");
    /// assert!(!sse.usage_seen());
    /// sse.feed(b"data: {\"usage\":{\"output_tokens\":3}}\n\n");
    /// assert!(sse.usage_seen());
    /// assert_eq!(sse.finish().total(), Some(12));
    /// ```
    pub fn usage_seen(&self) -> bool {
        self.totals.final_seen
    }

    /// The usage of the stream fed so far, taken as the whole stream.
    ///
    /// An event cut off by the end of the stream still counts when its
    /// JSON is complete (JSON delimits itself, so nothing is guessed); one
    /// cut inside its JSON makes the stream [`Scan::Malformed`].
    pub fn finish(&mut self) -> Scan {
        if self.line != Line::Start {
            self.end_line();
        }
        self.dispatch();
        if self.malformed {
            return Scan::Malformed;
        }
        if !self.totals.seen {
            return Scan::Absent;
        }
        let Totals {
            total,
            input,
            output,
            ..
        } = self.totals;
        match total.or_else(|| sum(input, output)) {
            Some(total) => Scan::Found(Usage {
                total,
                input,
                output,
            }),
            None => Scan::Malformed,
        }
    }

    /// The tokens reported by the complete events taken in so far, the
    /// way [`SseScanner::finish`] would total them, without finishing the
    /// scan and whatever an event cut short after them holds: what a
    /// stream that ends here has reported. `None` before any usage.
    pub fn usage_so_far(&self) -> Option<u64> {
        let Totals {
            seen,
            total,
            input,
            output,
            ..
        } = self.totals;
        if !seen {
            return None;
        }
        total.or_else(|| sum(input, output))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(total: u64, input: Option<u64>, output: Option<u64>) -> Scan {
        Scan::Found(Usage {
            total,
            input,
            output,
        })
    }

    const OPENAI: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Hi \"there\"","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"accepted_prediction_tokens":0}},"system_fingerprint":"fp_1"}"#;

    const ANTHROPIC: &str = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4","content":[{"type":"text","text":"Hello"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0},"output_tokens":20,"service_tier":"standard","server_tool_use":null}}"#;

    const RESPONSES: &str = r#"{"id":"resp_1","object":"response","status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"Hi"}]}],"usage":{"input_tokens":5,"input_tokens_details":{"cached_tokens":0},"output_tokens":7,"output_tokens_details":{"reasoning_tokens":2},"total_tokens":12}}"#;

    /// Whole-body cases: body and expected result.
    fn json_cases() -> Vec<(String, Scan)> {
        let cases: &[(&str, Scan)] = &[
            (OPENAI, found(21, Some(9), Some(12))),
            (ANTHROPIC, found(30, Some(10), Some(20))),
            (RESPONSES, found(12, Some(5), Some(7))),
            // Totals computed when not reported.
            (
                r#"{"usage":{"prompt_tokens":9,"completion_tokens":12}}"#,
                found(21, Some(9), Some(12)),
            ),
            (
                r#"{"usage":{"total_tokens":null,"prompt_tokens":1,"completion_tokens":2}}"#,
                found(3, Some(1), Some(2)),
            ),
            (r#"{"usage":{"total_tokens":5}}"#, found(5, None, None)),
            (r#"{"usage":{"output_tokens":4}}"#, found(4, None, Some(4))),
            (r#"{"usage":{"total_tokens":0}}"#, found(0, None, None)),
            // Whitespace anywhere.
            (
                " \r\n\t{ \"usage\" :\n\t{ \"total_tokens\" : 8 ,\r\n \"prompt_tokens\":3 } }\n ",
                found(8, Some(3), None),
            ),
            // Escaped keys decode.
            (
                r#"{"us\u0061ge":{"total\u005ftokens":4}}"#,
                found(4, None, None),
            ),
            // Keys that only look alike do not.
            (r#"{"Usage":{"total_tokens":4}}"#, Scan::Absent),
            (r#"{"usage ":{"total_tokens":4}}"#, Scan::Absent),
            (r#"{"usage":{"total_tokens ":4}}"#, Scan::Absent),
            (r#"{"usage":{"\u00e9total_tokens":4}}"#, Scan::Absent),
            // Nulls, bools, strings, nested objects and arrays in usage.
            (
                r#"{"usage":{"a":null,"b":true,"c":false,"d":"x","e":{"total_tokens":99},"f":[1,{"total_tokens":98}],"total_tokens":6}}"#,
                found(6, None, None),
            ),
            (r#"{"usage":{"total_tokens":"5"}}"#, Scan::Absent),
            (r#"{"usage":{"total_tokens":true}}"#, Scan::Absent),
            (r#"{"usage":{"total_tokens":{"n":5}}}"#, Scan::Absent),
            (r#"{"usage":{"total_tokens":[5]}}"#, Scan::Absent),
            // No usage.
            (r#"{"id":"x","choices":[]}"#, Scan::Absent),
            (r#"{"usage":null}"#, Scan::Absent),
            (r#"{"usage":{}}"#, Scan::Absent),
            (r#"{"usage":[]}"#, Scan::Absent),
            (r#"{"usage":[{"total_tokens":3}]}"#, Scan::Absent),
            (r#"{"usage":7}"#, Scan::Absent),
            (r#"{}"#, Scan::Absent),
            // Usage in content is content.
            (
                r#"{"content": "\"usage\": {\"total_tokens\": 9}"}"#,
                Scan::Absent,
            ),
            (
                r#"{"content": "{\"usage\":{\"total_tokens\":9}}", "usage": {"total_tokens": 2}}"#,
                found(2, None, None),
            ),
            (
                r#"{"choices":[{"usage":{"total_tokens":9}}]}"#,
                Scan::Absent,
            ),
            (r#"{"data":{"usage":{"total_tokens":9}}}"#, Scan::Absent),
            (r#"{"usage":{"details":{"total_tokens":9}}}"#, Scan::Absent),
            (r#"{"message":{"total_tokens":9}}"#, Scan::Absent),
            (
                r#"{"choices":[{"message":{"usage":{"total_tokens":9}}}]}"#,
                Scan::Absent,
            ),
            (r#"[{"usage":{"total_tokens":3}}]"#, Scan::Absent),
            (r#""usage""#, Scan::Absent),
            ("12", Scan::Absent),
            ("null", Scan::Absent),
            // Nested sources: Anthropic's message_start, OpenAI's response.completed.
            (
                r#"{"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":1}}}"#,
                found(4, Some(3), Some(1)),
            ),
            (
                r#"{"type":"response.completed","response":{"usage":{"input_tokens":3,"output_tokens":4,"total_tokens":7}}}"#,
                found(7, Some(3), Some(4)),
            ),
            (
                r#"{"message":{"x":{"usage":{"total_tokens":3}}}}"#,
                Scan::Absent,
            ),
            // Top-level usage first.
            (
                r#"{"message":{"usage":{"total_tokens":3}},"usage":{"total_tokens":4}}"#,
                found(4, None, None),
            ),
            (
                r#"{"usage":null,"message":{"usage":{"total_tokens":3}}}"#,
                found(3, None, None),
            ),
            // The last duplicate wins.
            (
                r#"{"usage":{"total_tokens":1},"usage":{"total_tokens":2}}"#,
                found(2, None, None),
            ),
            (r#"{"usage":{"total_tokens":1},"usage":null}"#, Scan::Absent),
            (
                r#"{"usage":{"total_tokens":1,"total_tokens":null}}"#,
                Scan::Absent,
            ),
            (
                r#"{"usage":{"total_tokens":1.5,"total_tokens":2}}"#,
                found(2, None, None),
            ),
            (
                r#"{"message":{"usage":{"total_tokens":1}},"message":{}}"#,
                Scan::Absent,
            ),
            (
                r#"{"message":{"usage":{"total_tokens":1},"usage":{}}}"#,
                Scan::Absent,
            ),
            // OpenAI's names before the others, whatever the order.
            (
                r#"{"usage":{"input_tokens":1,"prompt_tokens":2}}"#,
                found(2, Some(2), None),
            ),
            // Limits of u64.
            (
                r#"{"usage":{"total_tokens":18446744073709551615}}"#,
                found(u64::MAX, None, None),
            ),
            (
                r#"{"usage":{"total_tokens":18446744073709551616}}"#,
                Scan::Malformed,
            ),
            (
                r#"{"usage":{"total_tokens":99999999999999999999999999999}}"#,
                Scan::Malformed,
            ),
            (
                r#"{"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":1}}"#,
                Scan::Malformed,
            ),
            (
                r#"{"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":1,"total_tokens":5}}"#,
                found(5, Some(u64::MAX), Some(1)),
            ),
            // Numbers that are no token count.
            (r#"{"usage":{"total_tokens":-1}}"#, Scan::Malformed),
            (r#"{"usage":{"total_tokens":-0}}"#, Scan::Malformed),
            (r#"{"usage":{"total_tokens":1.0}}"#, Scan::Malformed),
            (r#"{"usage":{"total_tokens":1e3}}"#, Scan::Malformed),
            (
                r#"{"usage":{"total_tokens":3,"prompt_tokens":-2}}"#,
                Scan::Malformed,
            ),
            // Numbers elsewhere do not matter.
            (
                r#"{"usage":{"total_tokens":3,"cost":-1.5e-3},"big":1e999999}"#,
                found(3, None, None),
            ),
            (
                r#"{"usage":{"total_tokens":3},"n":184467440737095516160}"#,
                found(3, None, None),
            ),
            // Not JSON.
            ("", Scan::Malformed),
            ("   ", Scan::Malformed),
            (r#"{"usage":{"total_tokens":3}"#, Scan::Malformed),
            (r#"{"usage":{"total_tokens":3}}}"#, Scan::Malformed),
            (r#"{"usage":{"total_tokens":3}} x"#, Scan::Malformed),
            (r#"{"usage":{"total_tokens":3}}{}"#, Scan::Malformed),
            (r#"{"usage":{"total_tokens":03}}"#, Scan::Malformed),
            (r#"{"usage":{"total_tokens":3,}}"#, Scan::Malformed),
            (r#"{"usage":{'total_tokens':3}}"#, Scan::Malformed),
            (
                r#"{"usage":{"total_tokens":3}, "s": "a\qb"}"#,
                Scan::Malformed,
            ),
            // Skipped strings are checked for their end, control bytes and
            // escape letters, not for what a `\u` escape holds.
            (
                r#"{"usage":{"total_tokens":3}, "s": "\ud800"}"#,
                found(3, None, None),
            ),
            (
                r#"{"usage":{"total_tokens":3}, "s": "\u"}"#,
                found(3, None, None),
            ),
            // Nor for the spelling of skipped numbers and literals...
            (
                r#"{"usage":{"total_tokens":3}, "n": [nul, 1.2.3, -]}"#,
                found(3, None, None),
            ),
            // ...only for their first byte, and for what follows them.
            (r#"{"usage":{"total_tokens":3}, "n": x}"#, Scan::Malformed),
            (r#"{"usage":{"total_tokens":3}, "n": 1 2}"#, Scan::Malformed),
            (
                r#"{"usage":{"total_tokens":3}, "n": 1"x"}"#,
                Scan::Malformed,
            ),
            // Brackets in skipped values must match.
            (r#"{"usage":{"total_tokens":3}, "a": [}"#, Scan::Malformed),
            (r#"{"usage":{"total_tokens":3}, "a": {]}"#, Scan::Malformed),
            (r#"{"usage":{"total_tokens":3}, "a": [[]}"#, Scan::Malformed),
            (
                r#"{"a": ["]"], "usage":{"total_tokens":3}}"#,
                found(3, None, None),
            ),
            (
                r#"{"a": "\"", "usage":{"total_tokens":3}}"#,
                found(3, None, None),
            ),
            (
                r#"{"a": "\\", "usage":{"total_tokens":3}}"#,
                found(3, None, None),
            ),
            // Structure of the objects read key by key.
            (r#"{"usage" {"total_tokens":3}}"#, Scan::Malformed),
            (r#"{"usage":{"total_tokens":3} "a":1}"#, Scan::Malformed),
            (r#"{"usage":{"total_tokens":3},}"#, Scan::Malformed),
            (r#"{"a":1,,"usage":{"total_tokens":3}}"#, Scan::Malformed),
            (r#"{"usage":{"total_tokens":3}]"#, Scan::Malformed),
            (r#"{"usage":{"total_tokens":3 "x":1}}"#, Scan::Malformed),
            (r#"{"usage":{"total_tokens":-}}"#, Scan::Malformed),
            (r#"{"usage":{"total_tokens":1.}}"#, Scan::Malformed),
            (r#"{"usage":{"total_tokens":1e}}"#, Scan::Malformed),
            (r#"{"usage":{"total_tokens":1e+}}"#, Scan::Malformed),
            (r#"{"usage":{"total_tokens":1E+2}}"#, Scan::Malformed),
            (
                "{\"usage\":{\"total_tokens\":3}, \"s\": \"a\tb\"}",
                Scan::Malformed,
            ),
            (
                "data: {\"usage\":{\"total_tokens\":3}}\n\n",
                Scan::Malformed,
            ),
        ];
        cases
            .iter()
            .map(|(body, scan)| (body.to_string(), *scan))
            .collect()
    }

    /// Feeds `body` split at each offset in `splits`.
    fn json_chunked(body: &[u8], splits: &[usize]) -> Scan {
        let mut scanner = JsonScanner::new();
        let mut from = 0;
        for &at in splits {
            scanner.feed(&body[from..at]);
            from = at;
        }
        scanner.feed(&body[from..]);
        scanner.finish()
    }

    #[test]
    fn json_cases_whole() {
        for (body, expected) in json_cases() {
            assert_eq!(scan_json(body.as_bytes()), expected, "{body}");
        }
    }

    #[test]
    fn json_cases_split_at_every_offset() {
        for (body, expected) in json_cases() {
            let body = body.as_bytes();
            for at in 0..=body.len() {
                assert_eq!(json_chunked(body, &[at]), expected, "split at {at}");
            }
        }
    }

    #[test]
    fn json_cases_byte_by_byte() {
        for (body, expected) in json_cases() {
            let mut scanner = JsonScanner::new();
            for b in body.as_bytes() {
                scanner.feed(core::slice::from_ref(b));
            }
            assert_eq!(scanner.finish(), expected, "{body}");
        }
    }

    #[test]
    fn every_truncation_is_malformed() {
        for body in [OPENAI, ANTHROPIC, RESPONSES] {
            let body = body.as_bytes();
            for len in 0..body.len() {
                assert_eq!(scan_json(&body[..len]), Scan::Malformed, "{len}");
            }
        }
    }

    #[test]
    fn utf8_is_not_checked_in_skipped_values() {
        // The skim reads bytes, not text: what it skips may hold any bytes
        // above 0x7F, as serde's `IgnoredAny` allows too. Keys it compares
        // must match exactly, so a byte that is not UTF-8 only spoils one.
        let bodies: [&[u8]; 5] = [
            b"{\"c\":\"\xff\",\"usage\":{\"total_tokens\":1}}",
            b"{\"c\":\"\xc3\",\"usage\":{\"total_tokens\":1}}",
            b"{\"c\":\"\xc0\x80\",\"usage\":{\"total_tokens\":1}}",
            b"{\"c\":[\"\xed\xbf\xbf\"],\"usage\":{\"total_tokens\":1}}",
            b"{\"\xfe\":1,\"usage\":{\"total_tokens\":1}}",
        ];
        for body in bodies {
            assert_eq!(scan_json(body), found(1, None, None), "{body:?}");
        }
        assert_eq!(
            scan_json(b"{\"usage\xff\":{\"total_tokens\":1}}"),
            Scan::Absent
        );
        // Outside strings, a byte no JSON value starts with is refused.
        assert_eq!(
            scan_json(b"\xef\xbb\xbf{\"usage\":{\"total_tokens\":1}}"),
            Scan::Malformed
        );
        assert_eq!(
            scan_json(b"{\"a\":\xff,\"usage\":{\"total_tokens\":1}}"),
            Scan::Malformed
        );
        let fine = "{\"c\":\"\u{e9}\u{4e2d}\u{1F600}\u{10FFFF}\",\"usage\":{\"total_tokens\":1}}";
        assert_eq!(scan_json(fine.as_bytes()), found(1, None, None));
    }

    fn nested(levels: usize) -> String {
        format!(
            "{{\"usage\":{{\"total_tokens\":1}},\"deep\":{}{}}}",
            "[".repeat(levels),
            "]".repeat(levels)
        )
    }

    #[test]
    fn nesting_is_bounded() {
        let max = usize::from(crate::MAX_DEPTH);
        // The object is one level: arrays may add the rest.
        assert_eq!(scan_json(nested(max - 1).as_bytes()), found(1, None, None));
        assert_eq!(scan_json(nested(max).as_bytes()), Scan::Malformed);
        assert_eq!(scan_json(nested(10_000).as_bytes()), Scan::Malformed);
        assert_eq!(scan_json("[".repeat(10_000).as_bytes()), Scan::Malformed);
        assert_eq!(
            scan_json("{\"a\":".repeat(10_000).as_bytes()),
            Scan::Malformed
        );
    }

    #[test]
    fn huge_strings_cost_no_memory() {
        let body = format!(
            "{{\"content\":\"{}\",\"usage\":{{\"total_tokens\":77}}}}",
            "x\\\"y\\u00e9".repeat(200_000)
        );
        assert_eq!(scan_json(body.as_bytes()), found(77, None, None));
        let key = format!(
            "{{\"{}\":1,\"usage\":{{\"total_tokens\":5}}}}",
            "k".repeat(100_000)
        );
        assert_eq!(scan_json(key.as_bytes()), found(5, None, None));
    }

    /// A body of about `size` bytes: content full of escapes, lookalike
    /// usage and multi-byte characters, then the usage.
    fn big_openai_body(size: usize) -> String {
        let mut content = String::new();
        let piece = "token \\\"usage\\\": {\\\"total_tokens\\\": 999} caf\u{e9} \u{1F600}\\n\\u00e9\\ud83d\\ude00 ";
        while content.len() < size {
            content.push_str(piece);
        }
        format!(
            r#"{{"id":"c","choices":[{{"index":0,"message":{{"role":"assistant","content":"{content}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":1234,"completion_tokens":56789,"total_tokens":58023}}}}"#
        )
    }

    #[test]
    fn a_64k_body_in_three_chunks() {
        let body = big_openai_body(64 * 1024);
        let body = body.as_bytes();
        assert!(body.len() > 64 * 1024);
        let expected = found(58_023, Some(1234), Some(56_789));
        let third = body.len() / 3;
        assert_eq!(json_chunked(body, &[third, 2 * third]), expected);
        // Splits inside the usage object and its numbers too.
        let usage = body.len() - 40;
        assert_eq!(json_chunked(body, &[third, usage]), expected);
        assert_eq!(json_chunked(body, &[usage, usage + 7]), expected);
        assert_eq!(scan_json(body), expected);
    }

    #[test]
    fn content_types() {
        for (value, format) in [
            (&b"text/event-stream"[..], Some(Format::EventStream)),
            (
                b"Text/Event-Stream; charset=utf-8",
                Some(Format::EventStream),
            ),
            (b"application/json", Some(Format::Json)),
            (b" application/json ; charset=utf-8", Some(Format::Json)),
            (b"application/vnd.api+json", Some(Format::Json)),
            (b"application/+json", None),
            (b"application/jsonx", None),
            (b"text/plain", None),
            (b"text/html", None),
            (b"", None),
        ] {
            assert_eq!(Format::from_content_type(value), format, "{value:?}");
        }
    }

    #[test]
    fn the_scanner_enum_picks_the_format() {
        let mut json = Scanner::new(Format::Json);
        json.feed(br#"{"usage":{"total_tokens":3}}"#);
        assert_eq!(json.finish(), found(3, None, None));
        let mut sse = Scanner::new(Format::EventStream);
        sse.feed(b"data: {\"usage\":{\"total_tokens\":4}}\n\n");
        assert_eq!(sse.finish(), found(4, None, None));
    }

    // ---- Server-sent events ----

    const OPENAI_EVENTS: [&str; 5] = [
        r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}"#,
        r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hello \"usage\": 9"},"finish_reason":null}],"usage":null}"#,
        r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}"#,
        r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0}}}"#,
        "[DONE]",
    ];

    const ANTHROPIC_EVENTS: [(&str, &str); 8] = [
        (
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        ("ping", r#"{"type": "ping"}"#),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello \"usage\""}}"#,
        ),
        (
            "content_block_stop",
            r#"{"type":"content_block_stop","index":0}"#,
        ),
        (
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#,
        ),
        ("message_stop", r#"{"type":"message_stop"}"#),
        (
            "error",
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        ),
    ];

    /// An OpenAI-style stream of `events` with line ending `eol`, with or
    /// without the space after `data:`.
    fn openai_stream(events: &[&str], eol: &str, space: bool) -> Vec<u8> {
        let sep = if space { " " } else { "" };
        let mut out = String::new();
        for event in events {
            out.push_str(&format!("data:{sep}{event}{eol}{eol}"));
        }
        out.into_bytes()
    }

    fn anthropic_stream(events: &[(&str, &str)], eol: &str) -> Vec<u8> {
        let mut out = String::new();
        for (name, data) in events {
            out.push_str(&format!("event: {name}{eol}data: {data}{eol}{eol}"));
        }
        out.into_bytes()
    }

    fn sse_chunked(body: &[u8], splits: &[usize]) -> Scan {
        let mut scanner = SseScanner::new();
        let mut from = 0;
        for &at in splits {
            scanner.feed(&body[from..at]);
            from = at;
        }
        scanner.feed(&body[from..]);
        scanner.finish()
    }

    /// Streams (all line endings, `data:` with and without the space) and
    /// what they report.
    fn sse_cases() -> Vec<(Vec<u8>, Scan)> {
        let openai = found(21, Some(9), Some(12));
        let anthropic = found(40, Some(25), Some(15));
        let mut cases = Vec::new();
        for eol in ["\n", "\r\n", "\r"] {
            for space in [true, false] {
                cases.push((openai_stream(&OPENAI_EVENTS, eol, space), openai));
                cases.push((openai_stream(&OPENAI_EVENTS[..3], eol, space), Scan::Absent));
            }
            cases.push((anthropic_stream(&ANTHROPIC_EVENTS[..7], eol), anthropic));
            // Cut before message_delta: the last counts seen.
            cases.push((
                anthropic_stream(&ANTHROPIC_EVENTS[..5], eol),
                found(26, Some(25), Some(1)),
            ));
        }
        cases
    }

    #[test]
    fn sse_cases_whole() {
        for (body, expected) in sse_cases() {
            assert_eq!(
                scan_sse(&body),
                expected,
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    #[test]
    fn sse_split_at_every_offset() {
        for (body, expected) in sse_cases() {
            for at in 0..=body.len() {
                assert_eq!(sse_chunked(&body, &[at]), expected, "split at {at}");
            }
        }
    }

    #[test]
    fn sse_byte_by_byte() {
        for (body, expected) in sse_cases() {
            let mut scanner = SseScanner::new();
            for b in &body {
                scanner.feed(core::slice::from_ref(b));
            }
            assert_eq!(scanner.finish(), expected);
        }
    }

    #[test]
    fn sse_usage_event_split_at_every_pair_of_offsets() {
        // The usage event and [DONE], CRLF: three chunks, every two cuts.
        for space in [true, false] {
            let body = openai_stream(&OPENAI_EVENTS[3..], "\r\n", space);
            for a in 0..=body.len() {
                for b in a..=body.len() {
                    assert_eq!(
                        sse_chunked(&body, &[a, b]),
                        found(21, Some(9), Some(12)),
                        "cuts {a} {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn sse_cases_table() {
        let cases: &[(&str, Scan)] = &[
            ("", Scan::Absent),
            ("\n\n\n", Scan::Absent),
            ("data: [DONE]\n\n", Scan::Absent),
            // Not JSON objects: not events the scanner reads.
            ("data: hello\n\ndata: 42\n\ndata: [1,2\n\n", Scan::Absent),
            // Comments and other fields.
            (
                ": keep-alive\nid: 1\nretry: 100\nevent: x\ndata: {\"usage\":{\"total_tokens\":3}}\n\n",
                found(3, None, None),
            ),
            // Field names are exact and case-sensitive.
            ("Data: {\"usage\":{\"total_tokens\":3}}\n\n", Scan::Absent),
            (" data: {\"usage\":{\"total_tokens\":3}}\n\n", Scan::Absent),
            ("datum: {\"usage\":{\"total_tokens\":3}}\n\n", Scan::Absent),
            ("dataa: {\"usage\":{\"total_tokens\":3}}\n\n", Scan::Absent),
            ("dat: {\"usage\":{\"total_tokens\":3}}\n\n", Scan::Absent),
            // Only one space is dropped; JSON takes the rest as whitespace.
            ("data:    {\"usage\":{\"total_tokens\":3}}\n\n", found(3, None, None)),
            ("data:\t{\"usage\":{\"total_tokens\":3}}\n\n", found(3, None, None)),
            // Data lines join with a newline.
            (
                "data: {\"usage\":\ndata: {\"total_tokens\":\ndata: 5}}\n\n",
                found(5, None, None),
            ),
            ("data: {\"usage\":{\"total_tokens\":5\ndata\ndata: }}\n\n", found(5, None, None)),
            // ...which splits a number in two.
            ("data: {\"usage\":{\"total_tokens\":1\ndata: 2}}\n\n", Scan::Malformed),
            // Comments and other fields between data lines do not join.
            (
                "data: {\"usage\":{\"total_tokens\":12\n: note\nid: 4\ndata: }}\n\n",
                found(12, None, None),
            ),
            // The last usage wins.
            (
                "data: {\"usage\":{\"total_tokens\":3}}\n\ndata: {\"usage\":{\"total_tokens\":4}}\n\n",
                found(4, None, None),
            ),
            (
                "data: {\"usage\":{\"total_tokens\":3}}\n\ndata: {\"usage\":null}\n\n",
                found(3, None, None),
            ),
            // A total replaces input and output seen before.
            (
                "data: {\"usage\":{\"input_tokens\":3}}\n\ndata: {\"usage\":{\"total_tokens\":4}}\n\n",
                found(4, None, None),
            ),
            (
                "data: {\"usage\":{\"total_tokens\":4}}\n\ndata: {\"usage\":{\"output_tokens\":2}}\n\n",
                found(2, None, Some(2)),
            ),
            // OpenAI responses API.
            (
                "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"usage\":null}}\n\nevent: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":5,\"output_tokens\":6,\"total_tokens\":11}}}\n\n",
                found(11, Some(5), Some(6)),
            ),
            // The end of the stream ends the last event...
            ("data: {\"usage\":{\"total_tokens\":3}}", found(3, None, None)),
            ("data: {\"usage\":{\"total_tokens\":3}}\n", found(3, None, None)),
            ("data: {\"usage\":{\"total_tokens\":3}}\r", found(3, None, None)),
            // ...but never completes its JSON.
            ("data: {\"usage\":{\"total_tokens\":3}", Scan::Malformed),
            ("data: {\"usage\":{\"total_tokens\":3\n\n", Scan::Malformed),
            // A broken event may have been the one with the usage.
            (
                "data: {\"choices\":[}\n\ndata: {\"usage\":{\"total_tokens\":3}}\n\n",
                Scan::Malformed,
            ),
            (
                "data: {\"usage\":{\"total_tokens\":3}}\n\ndata: {\"x\":1} 2\n\n",
                Scan::Malformed,
            ),
            (
                "data: {\"usage\":{\"total_tokens\":3}}\n\ndata: {\"usage\":{\"total_tokens\":-3}}\n\n",
                Scan::Malformed,
            ),
            (
                "data: {\"usage\":{\"total_tokens\":18446744073709551616}}\n\n",
                Scan::Malformed,
            ),
            (
                "data: {\"usage\":{\"input_tokens\":18446744073709551615}}\n\ndata: {\"usage\":{\"output_tokens\":1}}\n\n",
                Scan::Malformed,
            ),
            // Usage in content is content.
            (
                "data: {\"content\":\"data: {\\\"usage\\\":{\\\"total_tokens\\\":9}}\\n\\n\"}\n\n",
                Scan::Absent,
            ),
            ("data: {\"choices\":[{\"usage\":{\"total_tokens\":9}}]}\n\n", Scan::Absent),
            // Two JSON values in one event.
            ("data: {}\ndata: {\"usage\":{\"total_tokens\":3}}\n\n", Scan::Malformed),
            // A raw line break inside a JSON string.
            ("data: {\"c\":\"a\ndata: b\",\"usage\":{\"total_tokens\":3}}\n\n", Scan::Malformed),
        ];
        for (body, expected) in cases {
            assert_eq!(scan_sse(body.as_bytes()), *expected, "{body:?}");
            for at in 0..=body.len() {
                assert_eq!(
                    sse_chunked(body.as_bytes(), &[at]),
                    *expected,
                    "{body:?} split at {at}"
                );
            }
        }
    }

    #[test]
    fn sse_deep_nesting_gives_up_on_the_event() {
        let deep = format!(
            "data: {{\"a\":{}}}\n\ndata: {{\"usage\":{{\"total_tokens\":3}}}}\n\n",
            "[".repeat(10_000)
        );
        assert_eq!(scan_sse(deep.as_bytes()), Scan::Malformed);
        let fine = format!(
            "data: {{\"a\":{}{}}}\n\ndata: {{\"usage\":{{\"total_tokens\":3}}}}\n\n",
            "[".repeat(100),
            "]".repeat(100)
        );
        assert_eq!(scan_sse(fine.as_bytes()), found(3, None, None));
    }

    #[test]
    fn sse_finish_is_idempotent_and_feeding_on_is_harmless() {
        let mut scanner = SseScanner::new();
        scanner.feed(b"data: {\"usage\":{\"total_tokens\":3}}");
        assert_eq!(scanner.finish(), found(3, None, None));
        assert_eq!(scanner.finish(), found(3, None, None));
    }

    #[test]
    fn a_64k_stream_in_three_chunks() {
        let mut events = Vec::new();
        let content = "lorem \\\"usage\\\": {\\\"total_tokens\\\": 1} \u{e9}\u{1F600} ".repeat(4);
        let delta = format!(
            r#"{{"id":"c1","object":"chat.completion.chunk","choices":[{{"index":0,"delta":{{"content":"{content}"}},"finish_reason":null}}],"usage":null}}"#
        );
        let mut size = 0;
        while size < 64 * 1024 {
            size += delta.len();
            events.push(delta.as_str());
        }
        events.extend_from_slice(&OPENAI_EVENTS[3..]);
        let body = openai_stream(&events, "\r\n", true);
        assert!(body.len() > 64 * 1024);
        let expected = found(21, Some(9), Some(12));
        let third = body.len() / 3;
        assert_eq!(sse_chunked(&body, &[third, 2 * third]), expected);
        let usage = body.len() - 60;
        assert_eq!(sse_chunked(&body, &[third, usage]), expected);
        assert_eq!(sse_chunked(&body, &[usage - 1, usage]), expected);
    }

    #[test]
    fn state_is_small_and_fixed() {
        // Everything a scanner carries between chunks lives in the struct:
        // five usage records of six counts and the skim's state.
        assert!(core::mem::size_of::<JsonScanner>() <= 640);
        assert!(core::mem::size_of::<SseScanner>() <= 640);
    }

    use kit::fake::Rng;

    /// Random inputs of three flavours: any bytes, JSON-ish bytes, and
    /// event-stream-ish bytes.
    fn garbage(rng: &mut Rng, flavour: usize) -> Vec<u8> {
        const JSONISH: &[u8] =
            b"{}[]\":,0123456789-+.eE truefalsnul\\u\"usage\"total_tokens\t\n\r\xc3\xa9\xff";
        const SSEISH: &[&[u8]] = &[
            b"data:",
            b"data: ",
            b"\n",
            b"\r\n",
            b"\r",
            b"{",
            b"}",
            b"\"usage\":",
            b"{\"total_tokens\":",
            b"123",
            b"[DONE]",
            b": c",
            b"event: x",
            b",",
            b"\"",
            b"\\",
            b"\xff",
            b"[",
            b"]",
        ];
        let len = rng.below(300);
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            match flavour {
                0 => out.push(rng.next() as u8),
                1 => out.push(JSONISH[rng.below(JSONISH.len())]),
                _ => out.extend_from_slice(SSEISH[rng.below(SSEISH.len())]),
            }
        }
        out
    }

    #[test]
    fn line_end_matches_a_byte_loop() {
        let naive = |s: &[u8]| {
            s.iter()
                .position(|&b| b == b'\n' || b == b'\r')
                .unwrap_or(s.len())
        };
        let base = b"abcdefghijklmnopqrstuvwxyz0123456789".to_vec();
        for len in 0..=base.len() {
            let plain = &base[..len];
            assert_eq!(line_end(plain), naive(plain));
            for at in 0..len {
                for b in [b'\n', b'\r', 0x00, 0x0B, 0x0C, 0x8A, 0x8D, 0xFF] {
                    let mut s = plain.to_vec();
                    s[at] = b;
                    assert_eq!(line_end(&s), naive(&s), "{s:?}");
                    if at + 1 < len {
                        s[at + 1] = b'\n';
                        assert_eq!(line_end(&s), naive(&s), "{s:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn string_run_matches_a_byte_loop() {
        let naive = |s: &[u8]| {
            s.iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .unwrap_or(s.len())
        };
        let base = "abcdefgh\u{e9}ijklmnop\u{1F600}qrstuvwxyz0123456789"
            .as_bytes()
            .to_vec();
        for len in 0..=base.len() {
            let plain = &base[..len];
            assert_eq!(string_run(plain), naive(plain));
            for at in 0..len {
                for b in [
                    b'"', b'\\', b'\n', b'\r', 0x00, 0x1F, 0x20, 0x21, 0x23, 0x5B, 0x5D, 0x7F,
                    0x80, 0xA2, 0xDC, 0xFF,
                ] {
                    let mut s = plain.to_vec();
                    s[at] = b;
                    assert_eq!(string_run(&s), naive(&s), "{s:?}");
                    if at + 1 < len {
                        s[at + 1] = b'"';
                        assert_eq!(string_run(&s), naive(&s), "{s:?}");
                    }
                }
            }
        }
    }

    /// Nesting around the 63 levels [`skip_tree`] takes itself and the
    /// [`MAX_DEPTH`](crate::MAX_DEPTH) the resumable path takes: whole in
    /// one chunk and a byte at a time, the same answer.
    #[test]
    fn deep_skipped_values_match_the_resumable_path() {
        for depth in (55..75).chain(120..130) {
            for (open, close) in [("[", "]"), ("{\"k\":", "}")] {
                let body = format!(
                    "{{\"a\":{}0{},\"usage\":{{\"total_tokens\":3}}}}",
                    open.repeat(depth),
                    close.repeat(depth)
                );
                let mut json = JsonScanner::new();
                for b in body.as_bytes().chunks(1) {
                    json.feed(b);
                }
                let expected = json.finish();
                let fits = depth < usize::from(crate::MAX_DEPTH);
                assert_eq!(expected.total(), fits.then_some(3), "{depth}");
                assert_eq!(scan_json(body.as_bytes()), expected, "{depth}");
                let event = format!("data: {body}\n\n");
                assert_eq!(scan_sse(event.as_bytes()), expected, "{depth}");
            }
        }
    }

    #[test]
    fn byte_flags_match_their_predicates() {
        for b in 0..=u8::MAX {
            assert_eq!(ends_scalar(b), is_scalar_end(b), "{b:#x}");
            assert_eq!(
                escapes(b),
                simple_escape(b).is_some() || b == b'u',
                "{b:#x}"
            );
        }
    }

    #[test]
    fn string_stop_matches_a_byte_loop_from_every_offset() {
        let naive = |s: &[u8], pos: usize| {
            s.get(pos..)
                .unwrap_or_default()
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .map_or(s.len(), |i| pos + i)
        };
        // Every byte value at every position of a 24-byte run, from every
        // offset: words, the tail, and both across the byte.
        let base = b"abcdefghijklmnopqrstuvwx".to_vec();
        for at in 0..base.len() {
            for b in 0..=u8::MAX {
                let mut s = base.clone();
                s[at] = b;
                for pos in 0..=s.len() {
                    let at = naive(&s, pos);
                    assert_eq!(string_stop(&s, pos), at, "{s:?} from {pos}");
                    let stop = s.get(at).map(|&b| (at, b));
                    assert_eq!(next_stop(&s, pos), stop, "{s:?} from {pos}");
                }
            }
        }
        assert_eq!(string_stop(b"abc", 7), 3);
    }

    /// The event-stream scanner as it was before lines went to the lexer
    /// whole: each data run cut at its line ending by a byte loop, then
    /// lexed with [`Lexer::next`] (line endings are JSON whitespace there).
    fn sse_reference(chunks: &[&[u8]]) -> Scan {
        let mut scanner = SseScanner::new();
        for chunk in chunks {
            let mut rest = *chunk;
            while let Some((&b, tail)) = rest.split_first() {
                if scanner.after_cr {
                    scanner.after_cr = false;
                    if b == b'\n' {
                        rest = tail;
                        continue;
                    }
                }
                if b == b'\n' || b == b'\r' {
                    scanner.after_cr = b == b'\r';
                    scanner.end_line();
                    rest = tail;
                    continue;
                }
                if matches!(scanner.line, Line::Data | Line::Skip) {
                    let end = rest
                        .iter()
                        .position(|&c| c == b'\n' || c == b'\r')
                        .unwrap_or(rest.len());
                    let (run, after) = rest.split_at(end);
                    if scanner.line == Line::Data {
                        scanner.doc.feed(run);
                    }
                    rest = after;
                    continue;
                }
                match scanner.line {
                    Line::Start if b == b':' => scanner.line = Line::Skip,
                    Line::Start => scanner.field_byte(0, b),
                    Line::Field(matched) => scanner.field_byte(matched, b),
                    Line::Space => {
                        scanner.line = Line::Data;
                        if b != b' ' {
                            continue;
                        }
                    }
                    Line::Data | Line::Skip => {}
                }
                rest = tail;
            }
        }
        scanner.finish()
    }

    #[test]
    fn sse_matches_the_per_line_reference() {
        let mut rng = Rng::new(0x2545_F491_4F6C_DD1D);
        for i in 0..30_000 {
            let mut input = if i % 4 == 1 {
                // A real stream, to be cut by the line endings below.
                let cases = sse_cases();
                cases[rng.below(cases.len())].0.clone()
            } else if i % 2 == 0 {
                garbage(&mut rng, 2)
            } else {
                // JSON-ish bytes in a data line, and an event with usage.
                let mut input = b"data: {\"a\":".to_vec();
                input.extend(garbage(&mut rng, 1));
                input.extend_from_slice(b"}\n\ndata: {\"usage\":{\"total_tokens\":3}}\n\n");
                input
            };
            if i % 3 == 0 || i % 4 == 1 {
                // Line endings and numbers where the lexer must stop.
                for b in input.iter_mut() {
                    if rng.below(if i % 4 == 1 { 60 } else { 20 }) == 0 {
                        *b = [b'\n', b'\r', b'7', b' '][rng.below(4)];
                    }
                }
            }
            let mut splits = [rng.below(input.len() + 1), rng.below(input.len() + 1)];
            splits.sort_unstable();
            let (a, rest) = input.split_at(splits[0]);
            let (b, c) = rest.split_at(splits[1] - splits[0]);
            let expected = sse_reference(&[&input]);
            assert_eq!(scan_sse(&input), expected, "{input:?}");
            assert_eq!(sse_reference(&[a, b, c]), expected, "{input:?} {splits:?}");
            assert_eq!(
                sse_chunked(&input, &splits),
                expected,
                "{input:?} {splits:?}"
            );
        }
        for (body, _) in sse_cases() {
            assert_eq!(scan_sse(&body), sse_reference(&[&body]));
        }
    }

    /// Objects built from the members the fast path of [`Doc::members`]
    /// takes and those it leaves to [`Doc::run`], with bytes changed at
    /// random.
    fn members_input(rng: &mut Rng) -> Vec<u8> {
        const KEYS: &[&[u8]] = &[
            b"\"id\"",
            b"\"usage\"",
            b"\"message\"",
            b"\"response\"",
            b"\"total_tokens\"",
            b"\"input_tokens\"",
            b"\"us\\u0061ge\"",
            b"\"usageMetadata\"",
            b"\"candidates\"",
            b"\"eval_count\"",
            b"\"prompt_eval_count\"",
            b"\"a_key_longer_than_the_key_buffer_holds\"",
            b"\"\"",
        ];
        const VALUES: &[&[u8]] = &[
            b"null",
            b"7",
            b"-1.5e3",
            b"\"text \\\" \\n \\u00e9 \xc3\xa9\"",
            b"[1,{\"usage\":{\"total_tokens\":9}},[]]",
            b"{\"usage\":{\"total_tokens\":9}}",
            b"{\"total_tokens\":5,\"input_tokens\":2}",
            b"{\"prompt_tokens\":19,\"x_details\":{\"a\":0},\"total_tokens\":18446744073709551616}",
            b"{\"total_tokens\":01,\"output_tokens\" : 1.5e2, \"input_tokens\":\"7\"}",
            b"{ \"input_tokens\":0 ,\"output_tokens\":-3,\"usage\":{\"total_tokens\":1}}",
            b"{ }",
            b"{\"promptTokenCount\":3,\"thoughtsTokenCount\":2,\"details\":[{\"tokenCount\":3}],\"totalTokenCount\":\"9\"}",
            b"{\"candidatesTokenCount\":4,\"eval_count\":1}",
            b"[{\"content\":{\"parts\":[{\"text\":\"]\"}]},\"finishReason\":\"STOP\"}, 1, [] ,{}]",
            b"[ ]",
            b"[{\"finishReason\":null,}]",
            b"{\"usage\":null,\"x\":[{}]}",
            b"{}",
            b"[",
            b"]",
            b"}",
            b"x",
        ];
        const BLANKS: &[&[u8]] = &[b"", b"", b"", b" ", b"\t", b"\n", b"\r\n"];
        let mut out = b"{".to_vec();
        for i in 0..rng.below(8) {
            if i > 0 {
                out.extend_from_slice(BLANKS[rng.below(BLANKS.len())]);
                out.push(b',');
            }
            out.extend_from_slice(BLANKS[rng.below(BLANKS.len())]);
            out.extend_from_slice(KEYS[rng.below(KEYS.len())]);
            out.extend_from_slice(BLANKS[rng.below(BLANKS.len())]);
            out.push(b':');
            out.extend_from_slice(BLANKS[rng.below(BLANKS.len())]);
            out.extend_from_slice(VALUES[rng.below(VALUES.len())]);
        }
        out.push(b'}');
        if rng.below(2) == 0 {
            const NOISE: &[u8] = b"{}[]\":, \t\n\\0-";
            for b in out.iter_mut() {
                if rng.below(40) == 0 {
                    *b = NOISE[rng.below(NOISE.len())];
                }
            }
        }
        out
    }

    /// The fast path of [`Doc::members`] (whole members in one chunk)
    /// against [`Doc::run`] alone: fed a byte at a time, no member is ever
    /// whole in a chunk, so the resumable steps read every byte.
    #[test]
    fn the_fast_path_matches_the_resumable_path() {
        let byte_at_a_time = |input: &[u8]| {
            let mut json = JsonScanner::new();
            let mut sse = SseScanner::new();
            for b in input.chunks(1) {
                json.feed(b);
                sse.feed(b);
            }
            (json.finish(), sse.finish())
        };
        let mut rng = Rng::new(0x1234_5678_9ABC_DEF1);
        for i in 0..20_000 {
            let mut input = members_input(&mut rng);
            if i % 2 == 0 {
                let mut event = b"data: ".to_vec();
                event.extend_from_slice(&input);
                event.extend_from_slice(b"\n\ndata: ");
                event.extend(members_input(&mut rng));
                event.extend_from_slice(b"\n\n");
                input = event;
            }
            let (json, sse) = byte_at_a_time(&input);
            assert_eq!(scan_json(&input), json, "{input:?}");
            assert_eq!(scan_sse(&input), sse, "{input:?}");
        }
        for (body, _) in json_cases() {
            let (json, _) = byte_at_a_time(body.as_bytes());
            assert_eq!(scan_json(body.as_bytes()), json, "{body:?}");
        }
        for (body, _) in sse_cases() {
            let (_, sse) = byte_at_a_time(&body);
            assert_eq!(scan_sse(&body), sse, "{body:?}");
        }
    }

    #[test]
    fn random_garbage_never_panics_and_chunking_never_matters() {
        let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
        for i in 0..30_000 {
            let input = garbage(&mut rng, i % 3);
            let json = scan_json(&input);
            let sse = scan_sse(&input);
            let mut lines = SseScanner::json_lines();
            lines.feed(&input);
            let lines = lines.finish();
            let mut splits = [rng.below(input.len() + 1), rng.below(input.len() + 1)];
            splits.sort_unstable();
            assert_eq!(json_chunked(&input, &splits), json, "{input:?} {splits:?}");
            assert_eq!(sse_chunked(&input, &splits), sse, "{input:?} {splits:?}");
            let mut chunked = SseScanner::json_lines();
            for part in [
                &input[..splits[0]],
                &input[splits[0]..splits[1]],
                &input[splits[1]..],
            ] {
                chunked.feed(part);
            }
            assert_eq!(chunked.finish(), lines, "{input:?} {splits:?}");
        }
    }
}
