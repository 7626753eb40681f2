//! The scanner and the rewriter against `serde_json`: random mutations of
//! real bodies and streams, each judged by both, must get the same answer,
//! however the input is cut into chunks.
//!
//! The scanner skims: it checks the structure of what it skips, not every
//! byte (see `token_quota::usage`). So on input serde_json calls valid it
//! must give exactly serde_json's answer; on input serde_json refuses it
//! must not panic and must not depend on the chunks, and it still calls
//! most of it malformed (the share is checked, so that a change that makes
//! the skim less careful shows).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use serde_json::Value;
use token_quota::{include_usage, scan_json, scan_sse, JsonScanner, Rewrite, Scan, SseScanner};

mod reference;

use reference::{needs_rewrite, parse, reference_json, reference_sse, Judged};

// ---- Inputs ----

use kit::fake::Rng;

const JSON_SEEDS: &[&str] = &[
    r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi \"there\" caf\u00e9"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0}}}"#,
    r#"{"id":"msg_1","type":"message","content":[{"type":"text","text":"Hello"}],"usage":{"input_tokens":10,"cache_read_input_tokens":0,"output_tokens":20}}"#,
    r#"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":25,"output_tokens":1}}}"#,
    r#"{"type":"response.completed","response":{"usage":{"input_tokens":5,"output_tokens":7,"total_tokens":12}}}"#,
    r#"{"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":0}, "x": [1, -2.5e3, true, null]}"#,
    r#"{"content":"\"usage\": {\"total_tokens\": 9}","usage":null}"#,
    r#"[{"usage":{"total_tokens":3}}, {}]"#,
    r#"{"candidates":[{"content":{"parts":[{"text":"Hi"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":9,"promptTokensDetails":[{"modality":"TEXT","tokenCount":4}],"thoughtsTokenCount":2,"totalTokenCount":15}}"#,
    r#"{"model":"llama3.2","message":{"role":"assistant","content":"Hi"},"done":true,"prompt_eval_count":26,"eval_count":7,"eval_duration":1}"#,
];

/// Fragments mutations splice in: structure, the keys the scanner looks
/// for, numbers at the edges, escapes and bytes that are not UTF-8.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    ",",
    ":",
    " ",
    "\n",
    "\\",
    "0",
    "7",
    "-",
    ".",
    "e",
    "null",
    "true",
    "\"usage\"",
    "\"usage\":",
    "\"total_tokens\":",
    "\"input_tokens\":5",
    "\"message\":",
    "\"response\":",
    "\"usageMetadata\":",
    "\"candidates\":[{\"finishReason\":\"STOP\"}",
    "\"totalTokenCount\":",
    "\"thoughtsTokenCount\":3",
    "\"eval_count\":",
    "\"prompt_eval_count\":2",
    "18446744073709551616",
    "18446744073709551615",
    "\\u0075",
    "\\ud83d\\ude00",
    "\\ud800",
    "\u{e9}",
    "1e400",
];
const BYTES: &[u8] = b"\xff\xc3\xed\x00\x1f";

fn mutate(rng: &mut Rng, seed: &[u8], extra: &[&str]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(out.len() + 1);
        match rng.below(5) {
            0 if at < out.len() => {
                out.remove(at);
            }
            1 => {
                let pool = if extra.is_empty() || rng.below(2) == 0 {
                    TOKENS
                } else {
                    extra
                };
                let token = pool[rng.below(pool.len())].as_bytes();
                out.splice(at..at, token.iter().copied());
            }
            2 if at < out.len() => out[at] = BYTES[rng.below(BYTES.len())],
            3 => {
                let end = (at + rng.below(20)).min(out.len());
                let piece = out[at..end].to_vec();
                out.splice(at..at, piece);
            }
            _ => {
                let end = (at + rng.below(8)).min(out.len());
                out.drain(at..end);
            }
        }
    }
    out
}

fn cuts(rng: &mut Rng, len: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = (0..rng.below(4)).map(|_| rng.below(len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

fn pieces<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut from = 0;
    for &at in cuts {
        out.push(&bytes[from..at]);
        from = at;
    }
    out.push(&bytes[from..]);
    out
}

// ---- The tests ----

#[test]
fn depth_limits_agree() {
    for levels in 120..140 {
        let body = format!(
            "{{\"usage\":{{\"total_tokens\":1}},\"a\":{}{}}}",
            "[".repeat(levels),
            "]".repeat(levels)
        );
        let serde_ok = serde_json::from_str::<Value>(&body).is_ok();
        assert_eq!(
            scan_json(body.as_bytes()) != Scan::Malformed,
            serde_ok,
            "{levels}"
        );
    }
}

#[test]
fn seeds_agree() {
    for seed in JSON_SEEDS {
        assert_eq!(
            Some(Judged::Valid(scan_json(seed.as_bytes()))),
            reference_json(seed.as_bytes()),
            "{seed}"
        );
    }
}

#[test]
fn mutated_json_bodies_agree_with_serde_json() {
    let mut rng = Rng::new(0x0123_4567_89AB_CDEF);
    let (mut compared, mut found, mut malformed) = (0, 0, 0);
    let (mut invalid, mut invalid_refused) = (0, 0);
    for _ in 0..60_000 {
        let seed = JSON_SEEDS[rng.below(JSON_SEEDS.len())].as_bytes();
        let body = mutate(&mut rng, seed, &[]);
        let Some(expected) = reference_json(&body) else {
            continue;
        };
        let mut scanner = JsonScanner::new();
        for piece in pieces(&body, &cuts(&mut rng, body.len())) {
            scanner.feed(piece);
        }
        let got = scanner.finish();
        let Judged::Valid(expected) = expected else {
            assert_eq!(got, scan_json(&body), "{}", String::from_utf8_lossy(&body));
            invalid += 1;
            invalid_refused += usize::from(got == Scan::Malformed);
            continue;
        };
        compared += 1;
        assert_eq!(got, expected, "{}", String::from_utf8_lossy(&body));
        match got {
            Scan::Found(_) => found += 1,
            Scan::Malformed => malformed += 1,
            Scan::Absent => {}
        }
    }
    eprintln!("bodies: {compared} valid ({found} found, {malformed} malformed), {invalid_refused} of {invalid} invalid refused");
    // The mutations exercise every outcome, not just one.
    assert!(compared > 10_000, "{compared}");
    assert!(found > 5_000 && malformed > 100, "{found} {malformed}");
    assert!(
        invalid > 20_000 && invalid_refused * 10 > invalid * 7,
        "{invalid_refused} of {invalid} invalid bodies refused"
    );
}

fn stream(events: &[&str], eol: &str, space: bool) -> String {
    let sep = if space { " " } else { "" };
    events
        .iter()
        .map(|e| format!("data:{sep}{e}{eol}{eol}"))
        .collect()
}

fn stream_seeds() -> Vec<String> {
    let openai = [
        r#"{"choices":[{"index":0,"delta":{"content":"He said \"usage\""},"finish_reason":null}],"usage":null}"#,
        r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}"#,
        "[DONE]",
    ];
    let anthropic = [
        r#"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":25,"output_tokens":1}}}"#,
        r#"{"type": "ping"}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}"#,
        r#"{"type":"message_stop"}"#,
    ];
    let gemini = [
        r#"{"candidates":[{"content":{"parts":[{"text":"Hel"}]}}],"usageMetadata":{"promptTokenCount":4,"totalTokenCount":6,"candidatesTokenCount":2}}"#,
        r#"{"candidates":[{"content":{"parts":[{"text":"lo"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":9,"thoughtsTokenCount":2,"totalTokenCount":15}}"#,
    ];
    let mut seeds = Vec::new();
    for eol in ["\n", "\r\n", "\r"] {
        for space in [true, false] {
            seeds.push(stream(&openai, eol, space));
            seeds.push(stream(&anthropic, eol, space));
            seeds.push(stream(&gemini, eol, space));
        }
    }
    seeds.push(format!(
        "event: message_start\n: comment\nid: 1\n{}",
        stream(&anthropic, "\n", true)
    ));
    seeds.push("data: {\"usage\":\ndata: {\"total_tokens\":\ndata: 5}}\n\n".into());
    seeds
}

const SSE_TOKENS: &[&str] = &[
    "\n",
    "\r",
    "\r\n",
    "\n\n",
    "data:",
    "data: ",
    "data",
    ":",
    "event: x\n",
    ": c\n",
    "[DONE]",
];

#[test]
fn stream_seeds_agree() {
    for seed in stream_seeds() {
        let Some(Judged::Valid(expected)) = reference_sse(seed.as_bytes()) else {
            panic!("{seed:?}")
        };
        assert!(matches!(expected, Scan::Found(_)), "{seed:?}");
        assert_eq!(scan_sse(seed.as_bytes()), expected, "{seed:?}");
    }
}

#[test]
fn mutated_streams_agree_with_serde_json() {
    let mut rng = Rng::new(0xFEED_FACE_CAFE_BEEF);
    let seeds = stream_seeds();
    let (mut compared, mut found, mut malformed, mut absent) = (0, 0, 0, 0);
    let (mut invalid, mut invalid_refused) = (0, 0);
    for _ in 0..40_000 {
        let seed = seeds[rng.below(seeds.len())].as_bytes();
        let body = mutate(&mut rng, seed, SSE_TOKENS);
        let Some(expected) = reference_sse(&body) else {
            continue;
        };
        let mut scanner = SseScanner::new();
        for piece in pieces(&body, &cuts(&mut rng, body.len())) {
            scanner.feed(piece);
        }
        let got = scanner.finish();
        let Judged::Valid(expected) = expected else {
            assert_eq!(got, scan_sse(&body), "{:?}", String::from_utf8_lossy(&body));
            invalid += 1;
            invalid_refused += usize::from(got == Scan::Malformed);
            continue;
        };
        compared += 1;
        assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(&body));
        match got {
            Scan::Found(_) => found += 1,
            Scan::Malformed => malformed += 1,
            Scan::Absent => absent += 1,
        }
    }
    eprintln!("streams: {compared} valid ({found} found, {malformed} malformed, {absent} absent), {invalid_refused} of {invalid} invalid refused");
    assert!(compared > 10_000, "{compared}");
    assert!(
        found > 5_000 && absent > 500,
        "{found} {malformed} {absent}"
    );
    assert!(
        invalid > 20_000 && invalid_refused * 10 > invalid * 7,
        "{invalid_refused} of {invalid} invalid streams refused"
    );
}

// ---- Valid JSON, generated ----

/// Keys the generator uses: the ones the scanner looks for, some spelled
/// with escapes, lookalikes, and others.
const GEN_KEYS: &[&str] = &[
    "usage",
    "usage",
    "message",
    "response",
    "usageMetadata",
    "candidates",
    "finishReason",
    "totalTokenCount",
    "promptTokenCount",
    "candidatesTokenCount",
    "thoughtsTokenCount",
    "eval_count",
    "prompt_eval_count",
    "total_tokens",
    "prompt_tokens",
    "completion_tokens",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    r"us\u0061ge",
    r"total\u005ftokens",
    r"\u0075sage",
    r"usage\u00e9",
    r"\ud83d\ude00",
    "usag",
    "Usage",
    "choices",
    "prompt_tokens_details",
    "a_key_longer_than_any_the_scanner_keeps_whole",
    "caf\u{e9}",
];

const GEN_NUMBERS: &[&str] = &[
    "0",
    "7",
    "42",
    "-1",
    "-0",
    "1.5",
    "1e3",
    "2E-2",
    "0.0",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999",
];

const GEN_STRINGS: &[&str] = &[
    r#""""#,
    r#""usage""#,
    r#""a\"b\\""#,
    r#""\u00e9\ud83d\ude00\n\t\/""#,
    "\"caf\u{e9} \u{6771}\u{4eac} \u{1F600}\"",
    r#""{\"usage\":{\"total_tokens\":9}}""#,
    r#""]}[{,:""#,
];

/// Whitespace between tokens; `lines` allows line endings.
fn gen_space(rng: &mut Rng, out: &mut String, lines: bool) {
    let choices: &[&str] = if lines {
        &["", "", "", " ", "\n\t", "\r\n  "]
    } else {
        &["", "", "", " ", "\t "]
    };
    out.push_str(choices[rng.below(choices.len())]);
}

/// A random valid JSON value, biased towards the shapes the scanner reads.
fn gen_value(rng: &mut Rng, depth: usize, out: &mut String, lines: bool) {
    let kinds = if depth > 5 { 3 } else { 9 };
    match rng.below(kinds) {
        0 => out.push_str(GEN_NUMBERS[rng.below(GEN_NUMBERS.len())]),
        1 => out.push_str(GEN_STRINGS[rng.below(GEN_STRINGS.len())]),
        2 => out.push_str(["null", "true", "false"][rng.below(3)]),
        3 | 4 => {
            out.push('[');
            for i in 0..rng.below(4) {
                if i > 0 {
                    out.push(',');
                }
                gen_space(rng, out, lines);
                gen_value(rng, depth + 1, out, lines);
                gen_space(rng, out, lines);
            }
            out.push(']');
        }
        _ => gen_object(rng, depth, out, lines),
    }
}

fn gen_object(rng: &mut Rng, depth: usize, out: &mut String, lines: bool) {
    out.push('{');
    for i in 0..rng.below(6) {
        if i > 0 {
            out.push(',');
        }
        gen_space(rng, out, lines);
        let key = GEN_KEYS[rng.below(GEN_KEYS.len())];
        out.push('"');
        out.push_str(key);
        out.push('"');
        gen_space(rng, out, lines);
        out.push(':');
        gen_space(rng, out, lines);
        // Mostly the value the scanner expects under the key, so that
        // usage is found (or refused) often, not just absent.
        if rng.below(4) > 0 && ["usage", "message", "response", r"us\u0061ge"].contains(&key) {
            gen_object(rng, depth + 1, out, lines);
        } else if rng.below(4) > 0 && key.ends_with("tokens") {
            let numbers = ["0", "7", "42", "18446744073709551615", "12", "5"];
            out.push_str(if rng.below(8) == 0 {
                GEN_NUMBERS[rng.below(GEN_NUMBERS.len())]
            } else {
                numbers[rng.below(numbers.len())]
            });
        } else {
            gen_value(rng, depth + 1, out, lines);
        }
        gen_space(rng, out, lines);
    }
    out.push('}');
}

#[test]
fn generated_valid_json_agrees_with_serde_json() {
    let mut rng = Rng::new(0x0DDB_1A5E_5BAD_5EED);
    let mut outcomes = [0usize; 3];
    for _ in 0..20_000 {
        let mut body = String::new();
        gen_space(&mut rng, &mut body, true);
        if rng.below(20) == 0 {
            gen_value(&mut rng, 0, &mut body, true);
        } else {
            gen_object(&mut rng, 0, &mut body, true);
        }
        gen_space(&mut rng, &mut body, true);
        let Some(Judged::Valid(expected)) = reference_json(body.as_bytes()) else {
            panic!("not valid: {body}");
        };
        let mut scanner = JsonScanner::new();
        for piece in pieces(body.as_bytes(), &cuts(&mut rng, body.len())) {
            scanner.feed(piece);
        }
        assert_eq!(scanner.finish(), expected, "{body}");
        outcomes[match expected {
            Scan::Found(_) => 0,
            Scan::Absent => 1,
            Scan::Malformed => 2,
        }] += 1;
    }
    assert!(outcomes.iter().all(|&n| n > 200), "{outcomes:?}");
}

#[test]
fn generated_valid_streams_agree_with_serde_json() {
    let mut rng = Rng::new(0x5EED_5EED_0000_0002);
    let mut outcomes = [0usize; 3];
    for _ in 0..10_000 {
        let mut body = String::new();
        let eol = ["\n", "\r\n", "\r"][rng.below(3)];
        for _ in 0..1 + rng.below(4) {
            body.push_str(["data: ", "data:"][rng.below(2)]);
            if rng.below(8) == 0 {
                body.push_str("[DONE]");
            } else {
                gen_object(&mut rng, 0, &mut body, false);
            }
            body.push_str(eol);
            body.push_str(eol);
        }
        let Some(Judged::Valid(expected)) = reference_sse(body.as_bytes()) else {
            panic!("not valid: {body:?}");
        };
        let mut scanner = SseScanner::new();
        for piece in pieces(body.as_bytes(), &cuts(&mut rng, body.len())) {
            scanner.feed(piece);
        }
        assert_eq!(scanner.finish(), expected, "{body:?}");
        outcomes[match expected {
            Scan::Found(_) => 0,
            Scan::Absent => 1,
            Scan::Malformed => 2,
        }] += 1;
    }
    assert!(outcomes.iter().all(|&n| n > 200), "{outcomes:?}");
}

// ---- The rewriter ----

const REQUEST_SEEDS: &[&str] = &[
    r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi \"stream\": true"}]}"#,
    r#"{"model":"gpt-4o","stream":true,"stream_options":{"x":1},"messages":[]}"#,
    r#"{"stream_options":{},"stream":true}"#,
    r#"{"stream":true,"stream_options":{"include_usage":false}}"#,
    r#"{"stream":true,"stream_options":null}"#,
    r#"{"stream":false,"n":{"stream":true}}"#,
    r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#,
    r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
];

const REQUEST_TOKENS: &[&str] = &[
    "\"stream\":true,",
    "\"stream\":",
    "\"stream_options\":",
    "\"include_usage\":",
    "{}",
    "true",
    "false",
];

#[test]
fn mutated_requests_agree_with_serde_json() {
    let mut rng = Rng::new(0x5EED_0000_0000_0001);
    let mut out = Vec::new();
    let (mut rewritten, mut unchanged, mut not_json) = (0, 0, 0);
    for _ in 0..60_000 {
        let seed = REQUEST_SEEDS[rng.below(REQUEST_SEEDS.len())].as_bytes();
        let body = mutate(&mut rng, seed, REQUEST_TOKENS);
        let Some(parsed) = parse(&body) else {
            continue;
        };
        let result = include_usage(&body, &mut out);
        match parsed {
            Err(()) => {
                assert_eq!(
                    result,
                    Rewrite::NotJson,
                    "{}",
                    String::from_utf8_lossy(&body)
                );
                not_json += 1;
            }
            Ok(doc) if needs_rewrite(&doc) => {
                assert_eq!(
                    result,
                    Rewrite::Rewritten,
                    "{}",
                    String::from_utf8_lossy(&body)
                );
                // The new body is JSON, asks for usage, and is otherwise the
                // same request.
                let mut new: Value = serde_json::from_slice(&out).unwrap();
                assert!(!needs_rewrite(&new), "{}", String::from_utf8_lossy(&out));
                assert_eq!(new["stream_options"]["include_usage"], Value::Bool(true));
                let mut old = doc;
                let options = old
                    .as_object_mut()
                    .unwrap()
                    .entry("stream_options")
                    .or_insert(Value::Null);
                if options.is_null() {
                    *options = serde_json::json!({});
                }
                options["include_usage"] = Value::Bool(true);
                assert_eq!(new.take(), old, "{}", String::from_utf8_lossy(&body));
                assert_eq!(include_usage(&out.clone(), &mut out), Rewrite::Unchanged);
                rewritten += 1;
            }
            Ok(_) => {
                assert_eq!(
                    result,
                    Rewrite::Unchanged,
                    "{}",
                    String::from_utf8_lossy(&body)
                );
                assert!(out.is_empty());
                unchanged += 1;
            }
        }
    }
    assert!(
        rewritten > 2_000 && unchanged > 2_000 && not_json > 2_000,
        "{rewritten} {unchanged} {not_json}"
    );
}
