//! Finds the token usage an LLM API reports in a response, in one pass over
//! the bytes as they stream by.
//!
//! Two formats, each with a chunk-by-chunk scanner and a whole-body helper:
//! - JSON bodies ([`JsonScanner`], [`scan_json`]): the usage object of a
//!   non-streamed response.
//! - Server-sent events ([`SseScanner`], [`scan_sse`]): the usage carried
//!   by the `data:` events of a streamed response.
//!
//! Where usage is looked for, in a JSON body or in each event's JSON:
//! - top-level `usage` (OpenAI chat completions and responses, Anthropic
//!   messages, Anthropic's `message_delta` event);
//! - `message.usage` (Anthropic's `message_start` event);
//! - `response.usage` (OpenAI's `response.completed` event).
//!
//! The first of these that holds a token field wins. The fields are
//! `total_tokens`, `prompt_tokens` or `input_tokens`, and `completion_tokens`
//! or `output_tokens`; the total is `total_tokens` when reported, otherwise
//! input plus output. Anything else — `usage` inside a string, under
//! `choices`, or deeper — is content, not usage. Duplicate keys resolve as
//! in most JSON parsers: the last one wins.
//!
//! The scanners never build a tree of the body and never allocate: their
//! state is a fixed few hundred bytes, however large or hostile the input.
//! Anything that makes the usage untrustworthy — invalid JSON, a truncated
//! body, bytes that are not UTF-8, nesting deeper than
//! [`MAX_DEPTH`](crate::MAX_DEPTH), a token count that is negative,
//! fractional or beyond `u64` — gives [`Scan::Malformed`], never a guess.

use crate::json::{Event, Lexer, Scalar, Step};

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
}

impl Format {
    /// The format of a response with this `content-type` header value:
    /// `text/event-stream` is [`Format::EventStream`], `application/json`
    /// and `application/*+json` are [`Format::Json`]; `None` for anything
    /// else. Parameters such as `charset` are ignored.
    #[must_use]
    pub fn from_content_type(value: &[u8]) -> Option<Format> {
        let essence = value.split(|&b| b == b';').next().unwrap_or_default();
        let essence = essence.trim_ascii();
        if essence.eq_ignore_ascii_case(b"text/event-stream") {
            return Some(Format::EventStream);
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

/// A scanner for either format, for callers that pick it per response.
#[derive(Clone, Debug)]
pub enum Scanner {
    /// Scans one JSON document.
    Json(JsonScanner),
    /// Scans server-sent events.
    EventStream(SseScanner),
}

impl Scanner {
    /// A fresh scanner for `format`.
    pub const fn new(format: Format) -> Self {
        match format {
            Format::Json => Scanner::Json(JsonScanner::new()),
            Format::EventStream => Scanner::EventStream(SseScanner::new()),
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
            12 if is(key, b"total_tokens") => Name::Total,
            12 if is(key, b"input_tokens") => Name::Input,
            13 if is(key, b"prompt_tokens") => Name::Prompt,
            13 if is(key, b"output_tokens") => Name::Output,
            17 if is(key, b"completion_tokens") => Name::Completion,
            _ => Name::Other,
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
    fn of(scalar: Option<Scalar>) -> Count {
        match scalar {
            Some(Scalar::Number(Some(n))) => Count::Tokens(n),
            Some(Scalar::Number(None)) => Count::Bad,
            _ => Count::Absent,
        }
    }

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
}

impl Record {
    fn fields(&self) -> [Count; 5] {
        [
            self.total,
            self.prompt,
            self.completion,
            self.input,
            self.output,
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
            Name::Total => &mut self.total,
            Name::Prompt => &mut self.prompt,
            Name::Completion => &mut self.completion,
            Name::Input => &mut self.input,
            Name::Output => &mut self.output,
            Name::Other | Name::Usage | Name::Message | Name::Response => return,
        };
        *field = count;
    }

    /// Input tokens: OpenAI chat's name first, then the other APIs'.
    fn input(&self) -> Option<u64> {
        self.prompt.get().or(self.input.get())
    }

    fn output(&self) -> Option<u64> {
        self.completion.get().or(self.output.get())
    }
}

/// Adds input and output into a total; `None` on overflow, which is no
/// usage anyone was charged.
fn sum(input: Option<u64>, output: Option<u64>) -> Option<u64> {
    input.unwrap_or(0).checked_add(output.unwrap_or(0))
}

/// The usage sources of one JSON document, as the lexer reports it.
#[derive(Clone, Debug)]
struct Doc {
    lexer: Lexer,
    /// The key last seen in the objects at depths 1, 2 and 3 (`Other` for
    /// arrays): deep enough for `message.usage.input_tokens`.
    path: [Name; 3],
    /// `usage`.
    top: Record,
    /// `message.usage`.
    message: Record,
    /// `response.usage`.
    response: Record,
    /// Whether the document is an object.
    object: bool,
    /// Whether the lexer failed.
    failed: bool,
}

impl Doc {
    const fn new() -> Self {
        const EMPTY: Record = Record {
            total: Count::Absent,
            prompt: Count::Absent,
            completion: Count::Absent,
            input: Count::Absent,
            output: Count::Absent,
        };
        Doc {
            lexer: Lexer::new(),
            path: [Name::Other; 3],
            top: EMPTY,
            message: EMPTY,
            response: EMPTY,
            object: false,
            failed: false,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        if self.failed {
            return;
        }
        let mut pos = 0;
        loop {
            match self.lexer.next(bytes, &mut pos) {
                Step::Event(event) => self.event(event),
                Step::More => return,
                Step::Error => {
                    self.failed = true;
                    return;
                }
            }
        }
    }

    /// Feeds the line at the start of `bytes`, up to its first `\n` or
    /// `\r`: the offset of that byte, or the length of `bytes`.
    fn feed_line(&mut self, bytes: &[u8]) -> usize {
        if self.failed {
            return line_end(bytes);
        }
        let mut pos = 0;
        loop {
            match self.lexer.next_line(bytes, &mut pos) {
                Step::Event(event) => self.event(event),
                Step::More => return pos,
                Step::Error => {
                    self.failed = true;
                    let rest = bytes.get(pos..).unwrap_or_default();
                    return pos + line_end(rest);
                }
            }
        }
    }

    #[inline(always)]
    fn event(&mut self, event: Event) {
        match event {
            Event::Open { object, depth, .. } => {
                if depth == 1 {
                    self.object = object;
                }
                self.value(depth - 1, None);
                if let Some(slot) = self.path.get_mut(usize::from(depth) - 1) {
                    *slot = Name::Other;
                }
            }
            Event::Key { depth } => {
                if let Some(slot) = self.path.get_mut(usize::from(depth).wrapping_sub(1)) {
                    *slot = Name::of(self.lexer.key());
                }
            }
            Event::Scalar { scalar, depth, .. } => self.value(depth, Some(scalar)),
            Event::Close { .. } => {}
        }
    }

    /// A value started in the container at `depth`: `scalar` when it is
    /// one, `None` for an array or object. A new value for a key replaces
    /// whatever an earlier duplicate of the key said.
    #[inline(always)]
    fn value(&mut self, depth: u8, scalar: Option<Scalar>) {
        let [first, second, third] = self.path;
        let source = |name| match name {
            Name::Message => Some(Source::Message),
            Name::Response => Some(Source::Response),
            _ => None,
        };
        match (depth, first, second) {
            (1, Name::Usage, _) => self.top = Record::default(),
            (1, name, _) => {
                if let Some(source) = source(name) {
                    *self.record(source) = Record::default();
                }
            }
            (2, Name::Usage, field) => self.top.set(field, Count::of(scalar)),
            (2, name, Name::Usage) => {
                if let Some(source) = source(name) {
                    *self.record(source) = Record::default();
                }
            }
            (3, name, Name::Usage) => {
                if let Some(source) = source(name) {
                    self.record(source).set(third, Count::of(scalar));
                }
            }
            _ => {}
        }
    }

    fn record(&mut self, source: Source) -> &mut Record {
        match source {
            Source::Message => &mut self.message,
            Source::Response => &mut self.response,
        }
    }

    /// Whether the bytes fed are exactly one JSON value.
    fn is_complete(&self) -> bool {
        !self.failed && self.lexer.is_complete()
    }

    /// The usage object that counts: the first source that reported any
    /// token field.
    fn usage(&self) -> Record {
        [self.top, self.message, self.response]
            .into_iter()
            .find(|r| !r.is_empty())
            .unwrap_or_default()
    }
}

/// Where a nested usage object hangs.
#[derive(Clone, Copy, Debug)]
enum Source {
    Message,
    Response,
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
        let record = self.doc.usage();
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
/// Each event's `data` is lexed as JSON while it passes (the lines of a
/// multi-line `data` joined by `\n`, as the event-stream format says);
/// events whose data is not a JSON object, such as OpenAI's `[DONE]`, are
/// skipped. Usage is taken from events as they end, the last report
/// winning (see [`Scan`] for the sources). Chunks may split the stream
/// anywhere, inside a line ending, a field name, the JSON or a number;
/// lines may end in `\n`, `\r\n` or `\r`.
///
/// One event whose data starts as an object but is not valid JSON, or
/// whose token counts are unusable, makes the whole stream
/// [`Scan::Malformed`]: it may have been the event carrying the usage.
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
                total: None,
                input: None,
                output: None,
            },
        }
    }

    /// Scans the next chunk of the stream.
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while let Some((&b, tail)) = rest.split_first() {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    rest = tail;
                    continue;
                }
            }
            if b == b'\n' || b == b'\r' {
                self.after_cr = b == b'\r';
                self.end_line();
                rest = tail;
                continue;
            }
            // Whole runs of data or skipped bytes in one step, up to the
            // line ending (`b` is not one, so the run is never empty).
            if matches!(self.line, Line::Data | Line::Skip) {
                let end = if self.line == Line::Data {
                    self.doc.feed_line(rest)
                } else {
                    line_end(rest)
                };
                rest = rest.get(end..).unwrap_or_default();
                continue;
            }
            match self.line {
                Line::Start if b == b':' => self.line = Line::Skip,
                Line::Start => self.field_byte(0, b),
                Line::Field(matched) => self.field_byte(matched, b),
                Line::Space => {
                    self.line = Line::Data;
                    if b != b' ' {
                        // Not the optional space: the byte is data.
                        continue;
                    }
                }
                Line::Data | Line::Skip => {}
            }
            rest = tail;
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
            let record = self.doc.usage();
            if !self.doc.is_complete() || record.is_bad() {
                self.malformed = true;
            } else if !record.is_empty() {
                self.totals.merge(&record);
            }
        }
        self.doc = Doc::new();
    }

    /// Whether a complete event has reported usage so far; unlike
    /// [`SseScanner::finish`] this leaves the scan as it is.
    pub fn usage_seen(&self) -> bool {
        self.totals.seen
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
            (
                r#"{"usage":{"total_tokens":3}, "s": "\ud800"}"#,
                Scan::Malformed,
            ),
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
    fn bytes_that_are_not_utf8_are_malformed() {
        let bodies: [&[u8]; 6] = [
            b"{\"c\":\"\xff\",\"usage\":{\"total_tokens\":1}}",
            b"{\"c\":\"\xc3\",\"usage\":{\"total_tokens\":1}}",
            b"{\"c\":\"\xc0\x80\",\"usage\":{\"total_tokens\":1}}",
            b"{\"c\":\"\xed\xbf\xbf\",\"usage\":{\"total_tokens\":1}}",
            b"{\"\xfe\":1,\"usage\":{\"total_tokens\":1}}",
            b"\xef\xbb\xbf{\"usage\":{\"total_tokens\":1}}",
        ];
        for body in bodies {
            assert_eq!(scan_json(body), Scan::Malformed, "{body:?}");
        }
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
        // Everything a scanner carries between chunks lives in the struct.
        assert!(core::mem::size_of::<JsonScanner>() <= 512);
        assert!(core::mem::size_of::<SseScanner>() <= 512);
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

    #[test]
    fn random_garbage_never_panics_and_chunking_never_matters() {
        let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
        for i in 0..30_000 {
            let input = garbage(&mut rng, i % 3);
            let json = scan_json(&input);
            let sse = scan_sse(&input);
            let mut splits = [rng.below(input.len() + 1), rng.below(input.len() + 1)];
            splits.sort_unstable();
            assert_eq!(json_chunked(&input, &splits), json, "{input:?} {splits:?}");
            assert_eq!(sse_chunked(&input, &splits), sse, "{input:?} {splits:?}");
        }
    }
}
