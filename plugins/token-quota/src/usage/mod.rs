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

mod doc;
mod frame;
mod record;
mod skim;
mod sse;
#[cfg(test)]
mod tests;

use doc::Doc;
use record::{sum, Count};
pub use sse::SseScanner;

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
