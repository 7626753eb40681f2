//! Request rewriting: makes streamed chat completions report their usage.
//!
//! OpenAI's Chat Completions API (and the legacy Completions API, and the
//! servers that copy them) put token usage in a streamed response only
//! when the request asks with `"stream_options": {"include_usage": true}`;
//! without it the quota could not charge a streamed answer at all.
//! [`include_usage`] adds that option to streaming requests, splicing bytes
//! into the body as it is: one validating pass to find where, one copy to
//! write it, no tree and no allocation beyond the caller's output buffer.
//!
//! No other API takes the option: Anthropic's Messages API and OpenAI's
//! Responses API answer an unknown field with `400`, as do strict
//! OpenAI-compatible servers, and they report usage unasked anyway. So
//! the option is added only to requests whose path
//! [`takes_include_usage`] (the configured path suffixes); every other
//! body is sent byte for byte.

/// The path suffixes of the APIs that take `stream_options.include_usage`
/// unless configured otherwise: OpenAI's Chat Completions and legacy
/// Completions.
pub const DEFAULT_INCLUDE_USAGE_SUFFIXES: [&str; 2] = ["/chat/completions", "/completions"];

/// Whether a request to `path` (as in `:path`, query included) goes to an
/// API that takes `stream_options.include_usage`: its path, without the
/// query or fragment, ends with one of `suffixes`. Comparison is exact
/// (paths are case-sensitive).
///
/// # Examples
/// ```
/// use token_quota::rewrite::{takes_include_usage, DEFAULT_INCLUDE_USAGE_SUFFIXES};
/// let openai = DEFAULT_INCLUDE_USAGE_SUFFIXES;
/// assert!(takes_include_usage(b"/v1/chat/completions", &openai));
/// assert!(takes_include_usage(b"/openai/v1/chat/completions?api-version=1", &openai));
/// assert!(!takes_include_usage(b"/v1/messages", &openai));
/// assert!(!takes_include_usage(b"/v1/responses", &openai));
/// ```
#[must_use]
pub fn takes_include_usage(path: &[u8], suffixes: &[&str]) -> bool {
    let end = path
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(path.len());
    let path = path.get(..end).unwrap_or_default();
    suffixes
        .iter()
        .any(|suffix| path.ends_with(suffix.as_bytes()))
}

use crate::json::{Event, Lexer, Scalar, Step};

/// What [`include_usage`] did with a request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rewrite {
    /// The body needs no change (not streaming, already asking for usage,
    /// or not an object); send it as it is.
    Unchanged,
    /// The new body is in the output buffer.
    Rewritten,
    /// The body is not valid JSON (or is nested deeper than
    /// [`MAX_DEPTH`](crate::MAX_DEPTH)); send it as it is and let the
    /// upstream answer it.
    NotJson,
}

/// Makes a streaming request ask for usage in its response.
///
/// When `body` is a JSON object with a top-level `"stream": true`, makes
/// its `stream_options.include_usage` `true`:
/// - no `stream_options` (or `null`): adds `"stream_options":
///   {"include_usage":true}`;
/// - `stream_options` an object without `include_usage`: adds the field
///   inside it;
/// - `include_usage` set to anything but `true`: sets it to `true`, since a
///   client opting out would otherwise stream answers the quota cannot
///   count.
///
/// Everything else is left alone: `"stream": false` or absent, `stream` in
/// a nested object or a string, `include_usage` already `true`, a
/// `stream_options` that is neither object nor `null` (the upstream will
/// reject it anyway). Duplicate keys resolve as in most JSON parsers: the
/// last one wins.
///
/// `out` is cleared, then holds the new body when the result is
/// [`Rewrite::Rewritten`]; reusing it across requests avoids allocation
/// once it is large enough.
///
/// # Examples
/// ```
/// use token_quota::rewrite::{include_usage, Rewrite};
/// let mut out = Vec::new();
/// let result = include_usage(br#"{"model": "m", "stream": true}"#, &mut out);
/// assert_eq!(result, Rewrite::Rewritten);
/// assert_eq!(out, br#"{"model": "m", "stream": true,"stream_options":{"include_usage":true}}"#);
/// ```
#[must_use = "the body to send depends on the result"]
pub fn include_usage(body: &[u8], out: &mut Vec<u8>) -> Rewrite {
    out.clear();
    let Edit { from, to, insert } = match plan(body) {
        Plan::NotJson => return Rewrite::NotJson,
        Plan::Keep => return Rewrite::Unchanged,
        Plan::Edit(edit) => edit,
    };
    let (Some(head), Some(tail)) = (body.get(..from), body.get(to..)) else {
        // The lexer's offsets always lie within the body; should they not,
        // sending the request unchanged is the safe answer.
        return Rewrite::Unchanged;
    };
    out.reserve(head.len() + insert.len() + tail.len());
    out.extend_from_slice(head);
    out.extend_from_slice(insert);
    out.extend_from_slice(tail);
    Rewrite::Rewritten
}

/// What a request body needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    NotJson,
    Keep,
    Edit(Edit),
}

/// Replace `body[from..to]` with `insert`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Edit {
    from: usize,
    to: usize,
    insert: &'static [u8],
}

impl Edit {
    fn insert(at: usize, insert: &'static [u8]) -> Edit {
        Edit {
            from: at,
            to: at,
            insert,
        }
    }
}

/// The top-level key whose value comes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TopKey {
    Other,
    Stream,
    Options,
}

/// What the last top-level `stream_options` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Options {
    Absent,
    Object {
        /// Offset of its `{`.
        open: usize,
        /// Offset just after its last member's value, if it has members.
        last_end: Option<usize>,
        include: Include,
    },
    Null {
        start: usize,
        end: usize,
    },
    /// Neither object nor null.
    Other,
}

/// What the last `include_usage` in `stream_options` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Include {
    Absent,
    True,
    /// Anything else, spanning `start..end`.
    Other {
        start: usize,
        end: usize,
    },
}

/// What one pass over a request body found.
#[derive(Debug)]
struct Scan {
    object: bool,
    key: TopKey,
    /// The last top-level `stream` is `true`.
    stream: bool,
    /// Offset just after the last top-level member's value.
    last_end: usize,
    options: Options,
    /// Inside the `stream_options` object.
    in_options: bool,
    /// The member of `stream_options` whose value comes next is `include_usage`.
    include_key: bool,
    /// Offset of the `include_usage` value when it is a container.
    include_start: usize,
}

impl Scan {
    fn event(&mut self, event: Event, lexer: &Lexer) {
        match event {
            Event::Open {
                object, depth: 1, ..
            } => self.object = object,
            Event::Open {
                object,
                depth: 2,
                at,
            } => match self.key {
                TopKey::Stream => self.stream = false,
                TopKey::Options if object => {
                    self.options = Options::Object {
                        open: at,
                        last_end: None,
                        include: Include::Absent,
                    };
                    self.in_options = true;
                    self.include_key = false;
                }
                TopKey::Options => self.options = Options::Other,
                TopKey::Other => {}
            },
            Event::Open { depth: 3, at, .. } if self.in_options && self.include_key => {
                self.include_start = at;
            }
            Event::Key { depth: 1 } => {
                self.key = match lexer.key() {
                    Some(b"stream") => TopKey::Stream,
                    Some(b"stream_options") => TopKey::Options,
                    _ => TopKey::Other,
                };
            }
            Event::Key { depth: 2 } if self.in_options => {
                self.include_key = lexer.key() == Some(b"include_usage");
            }
            Event::Scalar {
                scalar,
                depth: 1,
                start,
                end,
            } => {
                self.last_end = end;
                match self.key {
                    TopKey::Stream => self.stream = scalar == Scalar::True,
                    TopKey::Options if scalar == Scalar::Null => {
                        self.options = Options::Null { start, end };
                    }
                    TopKey::Options => self.options = Options::Other,
                    TopKey::Other => {}
                }
            }
            Event::Scalar {
                scalar,
                depth: 2,
                start,
                end,
            } if self.in_options => {
                let include = if scalar == Scalar::True {
                    Include::True
                } else {
                    Include::Other { start, end }
                };
                self.member_end(end, include);
            }
            Event::Close { depth: 3, at } if self.in_options => {
                let end = at.wrapping_add(1);
                let include = Include::Other {
                    start: self.include_start,
                    end,
                };
                self.member_end(end, include);
            }
            Event::Close { depth: 2, at } => {
                self.last_end = at.wrapping_add(1);
                self.in_options = false;
            }
            Event::Open { .. } | Event::Key { .. } | Event::Scalar { .. } | Event::Close { .. } => {
            }
        }
    }

    /// A member of `stream_options` ended at `end`; `include` is its value
    /// should it be `include_usage`.
    fn member_end(&mut self, end: usize, value: Include) {
        if let Options::Object {
            last_end, include, ..
        } = &mut self.options
        {
            *last_end = Some(end);
            if self.include_key {
                *include = value;
            }
        }
    }

    /// The edit the body needs, if any.
    fn edit(&self) -> Option<Edit> {
        if !self.object || !self.stream {
            return None;
        }
        match self.options {
            Options::Absent => Some(Edit::insert(
                self.last_end,
                b",\"stream_options\":{\"include_usage\":true}",
            )),
            Options::Null { start, end } => Some(Edit {
                from: start,
                to: end,
                insert: b"{\"include_usage\":true}",
            }),
            Options::Object {
                include: Include::True,
                ..
            }
            | Options::Other => None,
            Options::Object {
                include: Include::Other { start, end },
                ..
            } => Some(Edit {
                from: start,
                to: end,
                insert: b"true",
            }),
            Options::Object {
                include: Include::Absent,
                last_end: Some(end),
                ..
            } => Some(Edit::insert(end, b",\"include_usage\":true")),
            Options::Object {
                include: Include::Absent,
                last_end: None,
                open,
            } => Some(Edit::insert(
                open.wrapping_add(1),
                b"\"include_usage\":true",
            )),
        }
    }
}

/// What `body` needs, in one pass.
fn plan(body: &[u8]) -> Plan {
    let mut lexer = Lexer::new();
    let mut scan = Scan {
        object: false,
        key: TopKey::Other,
        stream: false,
        last_end: 0,
        options: Options::Absent,
        in_options: false,
        include_key: false,
        include_start: 0,
    };
    let mut pos = 0;
    loop {
        match lexer.next(body, &mut pos) {
            Step::Event(event) => scan.event(event, &lexer),
            Step::More => break,
            Step::Error => return Plan::NotJson,
        }
    }
    if !lexer.is_complete() {
        return Plan::NotJson;
    }
    scan.edit().map_or(Plan::Keep, Plan::Edit)
}

#[cfg(test)]
mod tests;
