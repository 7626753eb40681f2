//! The reference the scanner and the rewriter are judged against:
//! serde_json, and the usage rules written plainly. Shared by the
//! differential tests here and the fuzz targets in `fuzz/`.

#![allow(dead_code, clippy::indexing_slicing)] // each user needs part of it

use serde_json::Value;
use token_quota::{Scan, Usage};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Count {
    Absent,
    Tokens(u64),
    Bad,
}

pub fn count(value: Option<&Value>) -> Count {
    match value {
        // serde_json reads `-0` as a float, so it is no u64 here either.
        Some(Value::Number(n)) => n.as_u64().map_or(Count::Bad, Count::Tokens),
        _ => Count::Absent,
    }
}

/// The fields of the usage object that counts: `total`, `input`,
/// `output`, and whether any field was unusable.
pub struct Fields {
    total: Option<u64>,
    input: Option<u64>,
    output: Option<u64>,
    bad: bool,
}

/// The names of one API's token fields: total, input (two spellings),
/// output (two spellings), and thinking tokens added to the output; `""`
/// where the API has none.
pub type Names = [&'static str; 6];

pub const OPENAI_NAMES: Names = [
    "total_tokens",
    "prompt_tokens",
    "input_tokens",
    "completion_tokens",
    "output_tokens",
    "",
];
pub const GEMINI_NAMES: Names = [
    "totalTokenCount",
    "promptTokenCount",
    "",
    "candidatesTokenCount",
    "",
    "thoughtsTokenCount",
];
pub const OLLAMA_NAMES: Names = ["", "prompt_eval_count", "", "eval_count", "", ""];

pub fn fields(doc: &Value) -> Option<Fields> {
    let object = doc.as_object()?;
    let sources = [
        (object.get("usage"), OPENAI_NAMES),
        (
            object.get("message").and_then(|m| m.get("usage")),
            OPENAI_NAMES,
        ),
        (
            object.get("response").and_then(|r| r.get("usage")),
            OPENAI_NAMES,
        ),
        (object.get("usageMetadata"), GEMINI_NAMES),
        (Some(doc), OLLAMA_NAMES),
    ];
    for (usage, names) in sources {
        let Some(usage) = usage.and_then(Value::as_object) else {
            continue;
        };
        let counts = names.map(|k| {
            if k.is_empty() {
                Count::Absent
            } else {
                count(usage.get(k))
            }
        });
        if counts.iter().all(|c| *c == Count::Absent) {
            continue;
        }
        let get = |c: Count| match c {
            Count::Tokens(t) => Some(t),
            _ => None,
        };
        let output = get(counts[3]).or(get(counts[4]));
        let output = match get(counts[5]) {
            Some(thoughts) => Some(output.unwrap_or(0).saturating_add(thoughts)),
            None => output,
        };
        return Some(Fields {
            total: get(counts[0]),
            input: get(counts[1]).or(get(counts[2])),
            output,
            bad: counts.contains(&Count::Bad),
        });
    }
    None
}

/// What serde_json makes of `bytes`: `None` when it refuses them for a
/// reason the scanner does not share (floats beyond f64, its own depth
/// limit), which the scanner rightly takes as JSON.
pub fn parse(bytes: &[u8]) -> Option<Result<Value, ()>> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => Some(Ok(v)),
        Err(e) => {
            let msg = e.to_string();
            if msg.contains("number out of range") || msg.contains("recursion limit") {
                None
            } else {
                Some(Err(()))
            }
        }
    }
}

pub fn finish(total: Option<u64>, input: Option<u64>, output: Option<u64>) -> Scan {
    match total.or_else(|| input.unwrap_or(0).checked_add(output.unwrap_or(0))) {
        Some(total) => Scan::Found(Usage {
            total,
            input,
            output,
        }),
        None => Scan::Malformed,
    }
}

/// What serde_json makes of an input: the usage of valid JSON, or
/// `Invalid` when it refuses the input (an event stream: one of its
/// events that starts as an object).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Judged {
    Valid(Scan),
    Invalid,
}

pub fn reference_json(body: &[u8]) -> Option<Judged> {
    Some(match parse(body)? {
        Err(()) => Judged::Invalid,
        Ok(doc) => Judged::Valid(match fields(&doc) {
            None => Scan::Absent,
            Some(f) if f.bad => Scan::Malformed,
            Some(f) => finish(f.total, f.input, f.output),
        }),
    })
}

/// The `data` of each event, split the way the event-stream format says
/// (an unterminated last event included).
pub fn events(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < stream.len() {
        match stream[i] {
            b'\r' => {
                lines.push(&stream[start..i]);
                if stream.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            b'\n' => {
                lines.push(&stream[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < stream.len() {
        lines.push(&stream[start..]);
    }
    let mut out = Vec::new();
    let mut data: Option<Vec<u8>> = None;
    for line in lines {
        if line.is_empty() {
            out.extend(data.take());
            continue;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(p) => {
                let v = &line[p + 1..];
                (&line[..p], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &[][..]),
        };
        if field == b"data" {
            match &mut data {
                Some(d) => {
                    d.push(b'\n');
                    d.extend_from_slice(value);
                }
                None => data = Some(value.to_vec()),
            }
        }
    }
    out.extend(data);
    out
}

pub fn reference_sse(stream: &[u8]) -> Option<Judged> {
    let (mut seen, mut malformed) = (false, false);
    let (mut total, mut input, mut output) = (None, None, None);
    for data in events(stream) {
        let first = data
            .iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
        if first != Some(&b'{') {
            continue;
        }
        match parse(&data)? {
            Err(()) => return Some(Judged::Invalid),
            Ok(doc) => match fields(&doc) {
                None => {}
                Some(f) if f.bad => malformed = true,
                Some(f) => {
                    seen = true;
                    if f.total.is_some() {
                        (total, input, output) = (f.total, f.input, f.output);
                    } else {
                        total = None;
                        input = f.input.or(input);
                        output = f.output.or(output);
                    }
                }
            },
        }
    }
    Some(Judged::Valid(if malformed {
        Scan::Malformed
    } else if !seen {
        Scan::Absent
    } else {
        finish(total, input, output)
    }))
}

/// What the rewrite must make of a body: the reference reads the body
/// with serde_json and says whether usage must be asked for.
pub fn needs_rewrite(doc: &Value) -> bool {
    let Some(object) = doc.as_object() else {
        return false;
    };
    if object.get("stream") != Some(&Value::Bool(true)) {
        return false;
    }
    match object.get("stream_options") {
        None | Some(Value::Null) => true,
        Some(Value::Object(options)) => options.get("include_usage") != Some(&Value::Bool(true)),
        Some(_) => false,
    }
}
