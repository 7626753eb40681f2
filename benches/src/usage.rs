//! The `usage_scan` group's inputs and alternatives: the token usage of an
//! LLM API response read with `serde_json` and `simd-json`, beside
//! `token_quota`'s streaming scanner.
//!
//! Inputs (built once):
//! - [`json_bodies`]: OpenAI chat completions, not streamed, of about
//!   500 B (a one-line answer), 8 KiB and 64 KiB ([`json_body`]). The
//!   larger ones' `choices[0].message.content` is a long answer with
//!   escapes (`\"`, `\n`, `\\`, `\u00e9`) and raw non-ASCII text; in all,
//!   the `usage` object is the last member.
//! - [`sse_body`]: the same API streamed: one `data: {...}` chunk event per
//!   token, the empty `delta` with `finish_reason`, the usage event, and
//!   `data: [DONE]`, within 64 KiB. [`sse_chunks`] cuts it in 16 KiB
//!   chunks (four), inside events.
//!
//! The 8 KiB and 64 KiB bodies and the stream carry the text `"usage": {"total_tokens": 1}` in their content
//! (the stream over two deltas), which a substring search would take for
//! the usage.
//!
//! Alternatives, each giving a [`Scan`] so the tests can compare them with
//! the scanner directly:
//! - [`serde_json_value`]: a whole `serde_json::Value`, then `usage` read
//!   from it.
//! - [`serde_usage_only`]: a serde-derived struct with only a `usage`
//!   field; the rest of the body is skipped with serde's `IgnoredAny`,
//!   which does not validate the UTF-8 of what it skips.
//! - [`serde_usage_only_utf8_checked`]: the same after `str::from_utf8` of
//!   the whole body, so that it refuses invalid UTF-8 (which the
//!   scanner, skimming, does not check in what it skips either).
//! - [`simd_json_value`]: simd-json's `BorrowedValue`, parsed in place.
//! - [`simd_json_usage_only`]: simd-json's serde deserializer into the
//!   same usage-only struct (simd-json builds its whole tape first).
//! - [`EventSplitter`]: the obvious event-stream reader: events split at
//!   blank lines, each event's `data` parsed with one of the above, the
//!   last usage kept ([`sse_serde_json_value`], [`sse_serde_usage_only`],
//!   [`sse_serde_usage_only_utf8_checked`], [`sse_simd_json_value`],
//!   [`sse_simd_json_usage_only`]; the simd-json ones reuse one set of
//!   parse buffers for every event).
//!
//! The alternatives read top-level `usage` only, which is where OpenAI puts
//! it; the scanner also watches `message.usage` and `response.usage`
//! (absent here), which costs it a key comparison per top-level key. They
//! agree with the scanner on these inputs (`tests/usage_same_work.rs`); off
//! them they differ in corners the benchmark does not reach: the event
//! splitter knows only `\n` line endings and reads a `data` that is not a
//! JSON object (other than `[DONE]`) as malformed, the derived struct
//! refuses a token field that is not a number, and [`serde_usage_only`]
//! does not validate the UTF-8 of the strings it skips.

use serde::Deserialize;
use token_quota::{Scan, Usage};

/// Usage reported by [`json_body`].
pub const JSON_USAGE: Usage = Usage {
    total: 15_680,
    input: Some(1_117),
    output: Some(14_563),
};

/// Usage reported by [`sse_body`]: one output token per content event.
pub const SSE_USAGE: Usage = Usage {
    total: 1_329,
    input: Some(1_117),
    output: Some(212),
};

/// The size of the large inputs: the 64 KiB JSON body reaches it (it ends
/// with the first paragraph past it), the stream stays within it.
pub const TARGET_LEN: usize = 64 * 1024;

/// Paragraphs of the answer, as they appear inside the JSON string: mostly
/// ASCII prose, with escapes and non-ASCII as an LLM writes them.
const PARAGRAPHS: [&str; 5] = [
    r#"Sure! Here is a summary of the load test.\n\nAt 2,000 requests per second the proxy kept its p99 latency under 4 ms, and the Redis round trip stayed the largest share of it. The counters were checked after every run; none drifted. "#,
    r#"A note on the output format: a line such as \"usage\": {\"total_tokens\": 1} inside this answer is text, not the usage of the response, and a parser that searches for the string would be fooled by it. "#,
    r#"Caf\u00e9 owners in Z\u00fcrich, M\u00fcnchen and S\u00e3o Paulo were asked the same questions; the translated answers are below, na\u00efvely aligned. "#,
    "Raw UTF-8 answers: café, naïve, Größe, 東京の天気は晴れ, Ελληνικά, привет, and emoji 😀🚀✅ where the model chose them. ",
    r#"Code sample:\n```rust\nlet path = \"C:\\\\tmp\\\\out.json\";\nprintln!(\"{path}\");\n```\n\t- tab-indented item\n\t- another \/ escaped slash\n\n"#,
];

const ID: &str = r#""id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","#;
const MODEL: &str = r#""created":1741569952,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_f9f4fb6dbf","#;

fn usage_json(usage: &Usage) -> String {
    format!(
        r#""usage":{{"prompt_tokens":{},"completion_tokens":{},"total_tokens":{},"prompt_tokens_details":{{"cached_tokens":1024,"audio_tokens":0}},"completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}}"#,
        usage.input.unwrap_or(0),
        usage.output.unwrap_or(0),
        usage.total
    )
}

/// The non-streamed response of [`TARGET_LEN`] bytes, `usage` last.
pub fn json_body() -> Vec<u8> {
    json_body_of(TARGET_LEN)
}

/// The answer of a response too short for a paragraph.
const SHORT_ANSWER: &str = "Hello! How can I help you today?";

/// A non-streamed response of about `len` bytes, `usage` last: the answer
/// is the paragraphs in turn until the body reaches `len` (so it ends past
/// it by less than a paragraph), or [`SHORT_ANSWER`] when the rest of the
/// response alone reaches it.
pub fn json_body_of(len: usize) -> Vec<u8> {
    let head = format!(
        r#"{{{ID}"object":"chat.completion",{MODEL}"choices":[{{"index":0,"message":{{"role":"assistant","content":""#
    );
    let tail = format!(
        r#"","refusal":null,"annotations":[]}},"logprobs":null,"finish_reason":"stop"}}],{}}}"#,
        usage_json(&JSON_USAGE)
    );
    let mut body = head;
    if body.len() + tail.len() >= len {
        body.push_str(SHORT_ANSWER);
    }
    for paragraph in PARAGRAPHS.iter().cycle() {
        if body.len() + tail.len() >= len {
            break;
        }
        body.push_str(paragraph);
    }
    body.push_str(&tail);
    body.into_bytes()
}

/// The three sizes of non-streamed response the group reads: a short
/// answer (the head and `usage` alone are most of it), 8 KiB and 64 KiB.
pub fn json_bodies() -> [(&'static str, Vec<u8>); 3] {
    [
        ("json_500b", json_body_of(500)),
        ("json_8k", json_body_of(8 * 1024)),
        ("json_64k", json_body_of(TARGET_LEN)),
    ]
}

/// Token deltas of the stream, as they appear inside the JSON string.
const PIECES: [&str; 16] = [
    "Sure",
    "!",
    " Here",
    " is",
    " the",
    r#" caf\u00e9"#,
    " café",
    " 東京",
    " 😀",
    r#" \"usage\":"#,
    r#" {\"total_tokens\": 1}"#,
    r#"\n\n"#,
    r#" C:\\tmp"#,
    r#"\t-"#,
    " naïve",
    " latency",
];

/// One chunk event of the stream: `data: {...}` and a blank line.
fn chunk_event(delta: &str, finish: &str) -> String {
    format!(
        "data: {{{ID}\"object\":\"chat.completion.chunk\",{MODEL}\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}],\"usage\":null}}\n\n"
    )
}

/// The streamed response: chunk events, then the usage event and
/// `[DONE]`, as many chunk events as keep it within [`TARGET_LEN`] (so
/// that it is four [`CHUNK_LEN`] chunks, the last one a little short).
pub fn sse_body() -> Vec<u8> {
    let stop = chunk_event("{}", "\"stop\"");
    let usage = format!(
        "data: {{{ID}\"object\":\"chat.completion.chunk\",{MODEL}\"choices\":[],{}}}\n\n",
        usage_json(&SSE_USAGE)
    );
    let done = "data: [DONE]\n\n";
    let mut body = chunk_event(
        r#"{"role":"assistant","content":"","refusal":null}"#,
        "null",
    );
    for piece in PIECES.iter().cycle() {
        let event = chunk_event(&format!(r#"{{"content":"{piece}"}}"#), "null");
        if body.len() + event.len() + stop.len() + usage.len() + done.len() > TARGET_LEN {
            break;
        }
        body.push_str(&event);
    }
    body.push_str(&stop);
    body.push_str(&usage);
    body.push_str(done);
    body.into_bytes()
}

/// The chunk size a stream is cut in: 16 KiB.
pub const CHUNK_LEN: usize = 16 * 1024;

/// `body` in [`CHUNK_LEN`] chunks (cut inside events).
pub fn sse_chunks(body: &[u8]) -> Vec<Vec<u8>> {
    body.chunks(CHUNK_LEN).map(<[u8]>::to_vec).collect()
}

/// The scanner over `chunks`, one `feed` each, then `finish`.
pub fn sse_scanner<C: AsRef<[u8]>>(chunks: &[C]) -> Scan {
    let mut scanner = token_quota::SseScanner::new();
    for chunk in chunks {
        scanner.feed(chunk.as_ref());
    }
    scanner.finish()
}

/// The token fields of a usage object.
///
/// Derived for the usage-only alternatives (a missing or `null` field is
/// `None`; a field that is not a non-negative integer is an error, so the
/// body is malformed); filled by hand for the `Value` ones.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Fields {
    /// `total_tokens`.
    pub total_tokens: Option<u64>,
    /// `prompt_tokens`.
    pub prompt_tokens: Option<u64>,
    /// `completion_tokens`.
    pub completion_tokens: Option<u64>,
    /// `input_tokens`.
    pub input_tokens: Option<u64>,
    /// `output_tokens`.
    pub output_tokens: Option<u64>,
}

impl Fields {
    /// The fields' names, in the order [`Fields::from_counts`] takes them.
    const NAMES: [&'static str; 5] = [
        "total_tokens",
        "prompt_tokens",
        "completion_tokens",
        "input_tokens",
        "output_tokens",
    ];

    /// The fields from a lookup by name: `Ok(None)` for a field that is
    /// absent or not a number, `Err` for a number that is not a token
    /// count; the scanner's rules.
    fn from_counts(
        mut count: impl FnMut(&'static str) -> Result<Option<u64>, ()>,
    ) -> Result<Fields, ()> {
        let [total, prompt, completion, input, output] = Fields::NAMES;
        Ok(Fields {
            total_tokens: count(total)?,
            prompt_tokens: count(prompt)?,
            completion_tokens: count(completion)?,
            input_tokens: count(input)?,
            output_tokens: count(output)?,
        })
    }

    /// The usage these fields report, as the scanner computes it: the
    /// reported total, or input plus output.
    pub fn scan(&self) -> Scan {
        let input = self.prompt_tokens.or(self.input_tokens);
        let output = self.completion_tokens.or(self.output_tokens);
        if self.total_tokens.is_none() && input.is_none() && output.is_none() {
            return Scan::Absent;
        }
        let total = self
            .total_tokens
            .or_else(|| input.unwrap_or(0).checked_add(output.unwrap_or(0)));
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

/// A body read for its `usage` alone. Serde's derive skips every other
/// member with `IgnoredAny`.
///
/// `IgnoredAny` checks a skipped string's escapes and control characters
/// but not its UTF-8 (serde_json's `ignore_str`): a body with invalid
/// UTF-8 in its content still gives a usage here, as it does from the
/// scanner, where `serde_json::Value` and simd-json call it malformed.
/// It checks more than the scanner's skim otherwise: number and literal
/// spelling, `:` and `,` inside skipped containers.
#[derive(Debug, Deserialize)]
pub struct UsageOnly {
    /// `usage`, `None` when absent or `null`.
    #[serde(default)]
    pub usage: Option<Fields>,
}

impl UsageOnly {
    fn scan(&self) -> Scan {
        self.usage.map_or(Scan::Absent, |fields| fields.scan())
    }
}

/// `serde_json::from_slice` into a whole `Value`, then `usage` read from
/// it (the tree is dropped before returning).
pub fn serde_json_value(body: &[u8]) -> Scan {
    use serde_json::Value;
    let Ok(doc) = serde_json::from_slice::<Value>(body) else {
        return Scan::Malformed;
    };
    let Some(Value::Object(usage)) = doc.get("usage") else {
        return Scan::Absent;
    };
    let fields = Fields::from_counts(|name| match usage.get(name) {
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or(()),
        _ => Ok(None),
    });
    fields.map_or(Scan::Malformed, |f| f.scan())
}

/// `serde_json::from_slice` into [`UsageOnly`]: only `usage` is
/// deserialized, the rest skipped.
pub fn serde_usage_only(body: &[u8]) -> Scan {
    serde_json::from_slice::<UsageOnly>(body).map_or(Scan::Malformed, |doc| doc.scan())
}

/// [`serde_usage_only`] after `std::str::from_utf8` of the whole body: the
/// UTF-8 check `IgnoredAny` leaves out, so that invalid UTF-8 anywhere is
/// malformed. (`IgnoredAny` still takes a lone surrogate escape such as
/// `\ud800` in a skipped string, as the scanner does.)
pub fn serde_usage_only_utf8_checked(body: &[u8]) -> Scan {
    match std::str::from_utf8(body) {
        Ok(text) => {
            serde_json::from_str::<UsageOnly>(text).map_or(Scan::Malformed, |doc| doc.scan())
        }
        Err(_) => Scan::Malformed,
    }
}

/// simd-json's `BorrowedValue`, parsed in place in `body` (which it
/// rewrites), then `usage` read from it.
pub fn simd_json_value(body: &mut [u8]) -> Scan {
    read_simd_value(simd_json::to_borrowed_value(body))
}

/// [`simd_json_value`] with simd-json's parse buffers reused across calls.
pub fn simd_json_value_with(body: &mut [u8], buffers: &mut simd_json::Buffers) -> Scan {
    read_simd_value(simd_json::to_borrowed_value_with_buffers(body, buffers))
}

fn read_simd_value(doc: simd_json::Result<simd_json::BorrowedValue<'_>>) -> Scan {
    use simd_json::{BorrowedValue, StaticNode};
    let Ok(BorrowedValue::Object(doc)) = doc else {
        return if doc.is_err() {
            Scan::Malformed
        } else {
            Scan::Absent
        };
    };
    let Some(BorrowedValue::Object(usage)) = doc.get("usage") else {
        return Scan::Absent;
    };
    let fields = Fields::from_counts(|name| match usage.get(name) {
        Some(BorrowedValue::Static(StaticNode::U64(n))) => Ok(Some(*n)),
        Some(BorrowedValue::Static(StaticNode::I64(n))) => u64::try_from(*n).map(Some).or(Err(())),
        Some(BorrowedValue::Static(StaticNode::F64(_))) => Err(()),
        _ => Ok(None),
    });
    fields.map_or(Scan::Malformed, |f| f.scan())
}

/// simd-json's serde deserializer into [`UsageOnly`], in place in `body`.
pub fn simd_json_usage_only(body: &mut [u8]) -> Scan {
    simd_json::serde::from_slice::<UsageOnly>(body).map_or(Scan::Malformed, |doc| doc.scan())
}

/// [`simd_json_usage_only`] with simd-json's parse buffers reused.
pub fn simd_json_usage_only_with(body: &mut [u8], buffers: &mut simd_json::Buffers) -> Scan {
    simd_json::serde::from_slice_with_buffers::<UsageOnly>(body, buffers)
        .map_or(Scan::Malformed, |doc| doc.scan())
}

/// The obvious event-stream reader, chunk by chunk: events end at a blank
/// line (`\n\n`); an event's `data:` lines (one optional space dropped,
/// several joined with `\n`) are handed to a parser unless they are
/// `[DONE]`; the last usage found wins and one malformed event spoils the
/// stream.
///
/// Complete events are parsed in place in the chunk (mutable, as a
/// proxy-wasm plugin's body buffer is, so simd-json needs no copy); only an
/// event cut by a chunk boundary is copied, into a buffer kept across
/// chunks. Each byte is searched for `\n` once; an event of one line (all
/// of them here) is not searched again.
#[derive(Debug, Default)]
pub struct EventSplitter {
    /// The start of an event cut by the end of the last chunk.
    carry: Vec<u8>,
    /// Multi-line data, joined.
    joined: Vec<u8>,
    last: Option<Usage>,
    malformed: bool,
}

/// Where the next blank line of `s` starts, and whether a line ended
/// before it.
fn blank_line(s: &[u8]) -> Option<(usize, bool)> {
    let mut from = 0;
    let mut lines = false;
    loop {
        let at = from + s.get(from..)?.iter().position(|&b| b == b'\n')?;
        if s.get(at + 1) == Some(&b'\n') {
            return Some((at, lines));
        }
        lines = true;
        from = at + 1;
    }
}

impl EventSplitter {
    /// A reader at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the next chunk; `parse` reads one event's data.
    pub fn feed(&mut self, chunk: &mut [u8], parse: &mut impl FnMut(&mut [u8]) -> Scan) {
        let mut rest = chunk;
        if !self.carry.is_empty() {
            let end = if self.carry.last() == Some(&b'\n') && rest.first() == Some(&b'\n') {
                1
            } else if let Some((at, _)) = blank_line(rest) {
                at + 2
            } else {
                self.carry.extend_from_slice(rest);
                return;
            };
            let (head, tail) = rest.split_at_mut(end);
            self.carry.extend_from_slice(head);
            let mut event = std::mem::take(&mut self.carry);
            self.event(&mut event, true, parse);
            event.clear();
            self.carry = event;
            rest = tail;
        }
        while let Some((at, lines)) = blank_line(rest) {
            let (event, tail) = std::mem::take(&mut rest).split_at_mut(at + 2);
            self.event(event, lines, parse);
            rest = tail;
        }
        self.carry.extend_from_slice(rest);
    }

    /// The usage of the stream: the end of the stream ends its last event.
    pub fn finish(mut self, parse: &mut impl FnMut(&mut [u8]) -> Scan) -> Scan {
        let mut event = std::mem::take(&mut self.carry);
        if !event.is_empty() {
            self.event(&mut event, true, parse);
        }
        match (self.malformed, self.last) {
            (true, _) => Scan::Malformed,
            (false, Some(usage)) => Scan::Found(usage),
            (false, None) => Scan::Absent,
        }
    }

    /// One event, with its trailing line endings; `lines` when it may have
    /// more than one line.
    fn event(&mut self, event: &mut [u8], lines: bool, parse: &mut impl FnMut(&mut [u8]) -> Scan) {
        let end = event
            .iter()
            .rposition(|&b| b != b'\n')
            .map_or(0, |last| last + 1);
        let event = &mut event[..end];
        if !lines {
            if let Some(data) = data_of(event) {
                self.data(data, parse);
            }
            return;
        }
        self.joined.clear();
        let mut count = 0;
        for line in event.split(|&b| b == b'\n') {
            if let Some(data) = data_of_line(line) {
                if count > 0 {
                    self.joined.push(b'\n');
                }
                self.joined.extend_from_slice(data);
                count += 1;
            }
        }
        if count > 0 {
            let mut joined = std::mem::take(&mut self.joined);
            self.data(&mut joined, parse);
            self.joined = joined;
        }
    }

    fn data(&mut self, data: &mut [u8], parse: &mut impl FnMut(&mut [u8]) -> Scan) {
        if data == b"[DONE]" {
            return;
        }
        match parse(data) {
            Scan::Found(usage) => self.last = Some(usage),
            Scan::Absent => {}
            Scan::Malformed => self.malformed = true,
        }
    }
}

/// The value of a `data:` line, mutable.
fn data_of(line: &mut [u8]) -> Option<&mut [u8]> {
    let value = line.strip_prefix(b"data:")?.len();
    let start = line.len() - value;
    let start = if line.get(start) == Some(&b' ') {
        start + 1
    } else {
        start
    };
    line.get_mut(start..)
}

/// The value of a `data:` line.
fn data_of_line(line: &[u8]) -> Option<&[u8]> {
    let value = line.strip_prefix(b"data:")?;
    Some(value.strip_prefix(b" ").unwrap_or(value))
}

/// The reader over `chunks` (parsed in place), with `parse` per event.
pub fn sse_split<C: AsMut<[u8]>>(
    chunks: &mut [C],
    mut parse: impl FnMut(&mut [u8]) -> Scan,
) -> Scan {
    let mut reader = EventSplitter::new();
    for chunk in chunks.iter_mut() {
        reader.feed(chunk.as_mut(), &mut parse);
    }
    reader.finish(&mut parse)
}

/// [`sse_split`] with [`serde_json_value`] per event.
pub fn sse_serde_json_value<C: AsMut<[u8]>>(chunks: &mut [C]) -> Scan {
    sse_split(chunks, |data| serde_json_value(data))
}

/// [`sse_split`] with [`serde_usage_only`] per event.
pub fn sse_serde_usage_only<C: AsMut<[u8]>>(chunks: &mut [C]) -> Scan {
    sse_split(chunks, |data| serde_usage_only(data))
}

/// [`sse_split`] with [`serde_usage_only_utf8_checked`] per event.
pub fn sse_serde_usage_only_utf8_checked<C: AsMut<[u8]>>(chunks: &mut [C]) -> Scan {
    sse_split(chunks, |data| serde_usage_only_utf8_checked(data))
}

/// [`sse_split`] with [`simd_json_value_with`] per event, in place in the
/// chunks, `buffers` reused.
pub fn sse_simd_json_value<C: AsMut<[u8]>>(
    chunks: &mut [C],
    buffers: &mut simd_json::Buffers,
) -> Scan {
    sse_split(chunks, |data| simd_json_value_with(data, buffers))
}

/// [`sse_split`] with [`simd_json_usage_only_with`] per event, in place in
/// the chunks, `buffers` reused.
pub fn sse_simd_json_usage_only<C: AsMut<[u8]>>(
    chunks: &mut [C],
    buffers: &mut simd_json::Buffers,
) -> Scan {
    sse_split(chunks, |data| simd_json_usage_only_with(data, buffers))
}
