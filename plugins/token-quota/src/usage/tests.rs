use super::skim::{
    ends_scalar, escapes, is_scalar_end, line_end, next_stop, string_run, string_stop,
};
use super::sse::Line;
use super::*;
use crate::bytes::simple_escape;

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
                b'"', b'\\', b'\n', b'\r', 0x00, 0x1F, 0x20, 0x21, 0x23, 0x5B, 0x5D, 0x7F, 0x80,
                0xA2, 0xDC, 0xFF,
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
