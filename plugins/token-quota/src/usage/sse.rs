//! Server-sent event and JSON-lines framing: the `data:` lines of a
//! stream fed to a document each, and the usage merged across events.

use super::doc::Doc;
use super::record::{sum, Count, Record, Slot};
use super::skim::line_end;
use super::{Scan, Usage};

/// Where the event-stream parser is within a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Line {
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
    pub(super) doc: Doc,
    pub(super) line: Line,
    /// The last byte was `\r`: a `\n` next completes the same line ending.
    pub(super) after_cr: bool,
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
    pub(super) fn field_byte(&mut self, matched: u8, b: u8) {
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

    pub(super) fn end_line(&mut self) {
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
