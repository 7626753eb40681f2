//! Usage in the shape each LLM API reports it, JSON and streamed, read
//! through the public scanners however the bytes are cut into chunks.
//!
//! One real-looking answer per API and format: OpenAI Chat Completions,
//! OpenAI Responses, Anthropic Messages, Gemini (`generateContent`,
//! `streamGenerateContent?alt=sse`) and Ollama's native API (JSON and JSON
//! lines). Each is scanned whole, cut at every offset, cut at every pair of
//! offsets around its usage, and byte by byte; `usage_seen` is checked to
//! turn true exactly at the event that carries the final usage.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use token_quota::{Format, Scan, Scanner, Usage};

fn found(total: u64, input: Option<u64>, output: Option<u64>) -> Scan {
    Scan::Found(Usage {
        total,
        input,
        output,
    })
}

fn scan(format: Format, chunks: &[&[u8]]) -> Scan {
    let mut scanner = Scanner::new(format);
    for chunk in chunks {
        scanner.feed(chunk);
    }
    scanner.finish()
}

/// Scans `body` whole, at every split, byte by byte, and at every pair of
/// splits within `around` (the bytes of its usage): always `expected`.
fn every_split(format: Format, body: &[u8], around: &str, expected: Scan) {
    assert_eq!(scan(format, &[body]), expected, "whole");
    for i in 0..=body.len() {
        assert_eq!(
            scan(format, &[&body[..i], &body[i..]]),
            expected,
            "split at {i}"
        );
    }
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(scan(format, &bytes), expected, "byte by byte");
    let at = find(body, around);
    let end = at + around.len();
    for i in at..=end {
        for j in i..=end {
            assert_eq!(
                scan(format, &[&body[..i], &body[i..j], &body[j..]]),
                expected,
                "splits at {i} and {j}"
            );
        }
    }
}

fn find(body: &[u8], what: &str) -> usize {
    body.windows(what.len())
        .position(|w| w == what.as_bytes())
        .unwrap_or_else(|| panic!("{what} not in the body"))
}

/// The number of bytes fed when `usage_seen` first turned true, feeding
/// `body` one byte at a time; `None` if it never did.
fn seen_after(format: Format, body: &[u8]) -> Option<usize> {
    let mut scanner = Scanner::new(format);
    for (i, b) in body.iter().enumerate() {
        scanner.feed(std::slice::from_ref(b));
        if scanner.usage_seen() {
            return Some(i + 1);
        }
    }
    None
}

fn sse(events: &[&str]) -> Vec<u8> {
    events
        .iter()
        .map(|e| format!("data: {e}\n\n"))
        .collect::<String>()
        .into_bytes()
}

fn named_sse(events: &[(&str, &str)]) -> Vec<u8> {
    events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect::<String>()
        .into_bytes()
}

// ---- OpenAI Chat Completions ----

const CHAT_JSON: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":40,"completion_tokens":60,"total_tokens":100,"prompt_tokens_details":{"cached_tokens":0}}}"#;

#[test]
fn openai_chat_json() {
    every_split(
        Format::Json,
        CHAT_JSON.as_bytes(),
        r#""usage":{"prompt_tokens":40,"completion_tokens":60,"total_tokens":100"#,
        found(100, Some(40), Some(60)),
    );
}

#[test]
fn openai_chat_stream() {
    let usage_chunk = r#"{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":40,"completion_tokens":60,"total_tokens":100}}"#;
    let body = sse(&[
        r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":null}"#,
        usage_chunk,
        "[DONE]",
    ]);
    every_split(
        Format::EventStream,
        &body,
        r#""total_tokens":100}}"#,
        found(100, Some(40), Some(60)),
    );
    let usage_event_end = find(&body, usage_chunk) + usage_chunk.len() + 2;
    assert_eq!(
        seen_after(Format::EventStream, &body),
        Some(usage_event_end)
    );
}

// ---- OpenAI Responses ----

#[test]
fn openai_responses_json() {
    let body = r#"{"id":"resp_1","object":"response","status":"completed","model":"gpt-4o","output":[{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hi","annotations":[]}]}],"usage":{"input_tokens":30,"input_tokens_details":{"cached_tokens":0},"output_tokens":70,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":100}}"#;
    every_split(
        Format::Json,
        body.as_bytes(),
        r#""output_tokens":70"#,
        found(100, Some(30), Some(70)),
    );
}

#[test]
fn openai_responses_stream() {
    let completed = r#"{"type":"response.completed","sequence_number":5,"response":{"id":"resp_1","object":"response","status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"Hi"}]}],"usage":{"input_tokens":30,"output_tokens":70,"total_tokens":100}}}"#;
    let body = named_sse(&[
        (
            "response.created",
            r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","status":"in_progress","output":[],"usage":null}}"#,
        ),
        (
            "response.output_text.delta",
            r#"{"type":"response.output_text.delta","sequence_number":3,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hi \"usage\":{\"total_tokens\":5}"}"#,
        ),
        ("response.completed", completed),
    ]);
    every_split(
        Format::EventStream,
        &body,
        r#""usage":{"input_tokens":30,"output_tokens":70,"total_tokens":100}"#,
        found(100, Some(30), Some(70)),
    );
    assert_eq!(
        seen_after(Format::EventStream, &body),
        Some(find(&body, completed) + completed.len() + 2)
    );
}

// ---- Anthropic Messages ----

#[test]
fn anthropic_json() {
    let body = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":75,"service_tier":"standard"}}"#;
    every_split(
        Format::Json,
        body.as_bytes(),
        r#""output_tokens":75"#,
        found(100, Some(25), Some(75)),
    );
}

#[test]
fn anthropic_stream() {
    let delta = r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":75}}"#;
    let body = named_sse(&[
        (
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude","stop_reason":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        ("ping", r#"{"type": "ping"}"#),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
        ),
        (
            "content_block_stop",
            r#"{"type":"content_block_stop","index":0}"#,
        ),
        ("message_delta", delta),
        ("message_stop", r#"{"type":"message_stop"}"#),
    ]);
    every_split(
        Format::EventStream,
        &body,
        r#""usage":{"output_tokens":75}"#,
        found(100, Some(25), Some(75)),
    );
    // The input count of message_start is not the final usage; the
    // message_delta is.
    assert_eq!(
        seen_after(Format::EventStream, &body),
        Some(find(&body, delta) + delta.len() + 2)
    );
}

// ---- Gemini ----

const GEMINI_JSON: &str = r#"{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":20,"candidatesTokenCount":50,"totalTokenCount":100,"promptTokensDetails":[{"modality":"TEXT","tokenCount":20}],"thoughtsTokenCount":30},"modelVersion":"gemini-2.5-flash","responseId":"abc"}"#;

#[test]
fn gemini_json_total() {
    every_split(
        Format::Json,
        GEMINI_JSON.as_bytes(),
        r#""totalTokenCount":100"#,
        found(100, Some(20), Some(80)),
    );
}

#[test]
fn gemini_json_without_total_adds_thoughts() {
    let body = r#"{"candidates":[],"usageMetadata":{"promptTokenCount":20,"candidatesTokenCount":50,"thoughtsTokenCount":30}}"#;
    every_split(
        Format::Json,
        body.as_bytes(),
        r#""thoughtsTokenCount":30"#,
        found(100, Some(20), Some(80)),
    );
    let plain = r#"{"usageMetadata":{"promptTokenCount":20,"candidatesTokenCount":50}}"#;
    assert_eq!(
        scan(Format::Json, &[plain.as_bytes()]),
        found(70, Some(20), Some(50))
    );
}

#[test]
fn gemini_stream_takes_the_last_chunk_not_a_sum() {
    let chunk = |text: &str, usage: &str, finish: &str| {
        format!(
            r#"{{"candidates":[{{"content":{{"parts":[{{"text":"{text}"}}],"role":"model"}}{finish},"index":0}}],"usageMetadata":{usage},"modelVersion":"gemini-2.5-flash"}}"#
        )
    };
    let first = chunk(
        "Hel",
        r#"{"promptTokenCount":20,"totalTokenCount":25,"candidatesTokenCount":5}"#,
        "",
    );
    let second = chunk(
        "lo",
        r#"{"promptTokenCount":20,"totalTokenCount":60,"candidatesTokenCount":40}"#,
        "",
    );
    let last = chunk(
        "!",
        r#"{"promptTokenCount":20,"candidatesTokenCount":50,"totalTokenCount":100,"thoughtsTokenCount":30}"#,
        r#","finishReason":"STOP""#,
    );
    // `alt=sse` lines end in `\r\n` from Google's servers.
    let body =
        format!("data: {first}\r\n\r\ndata: {second}\r\n\r\ndata: {last}\r\n\r\n").into_bytes();
    every_split(
        Format::EventStream,
        &body,
        r#""totalTokenCount":100"#,
        found(100, Some(20), Some(80)),
    );
    // The chunk whose candidate has a finishReason carries the final usage:
    // seen once its event ends (at the `\r` of the blank line).
    assert_eq!(seen_after(Format::EventStream, &body), Some(body.len() - 1));
}

#[test]
fn a_gemini_chunk_is_final_only_with_a_finish_reason() {
    let usage = r#""usageMetadata":{"promptTokenCount":20,"totalTokenCount":30}"#;
    for (candidates, last) in [
        (r#"[{"content":{"parts":[{"text":"a"}]},"index":0}]"#, false),
        (r#"[{"finishReason":null}]"#, false),
        (r#"[]"#, false),
        (r#"[1, "finishReason", [{"finishReason":"STOP"}]]"#, false),
        (r#"[{"x":{"finishReason":"STOP"}}]"#, false),
        (r#"[{"finishReason":"STOP"}]"#, true),
        (
            r#"[{"index":0}, {"finishReason":"MAX_TOKENS","index":1}]"#,
            true,
        ),
        (
            r#"[ { "content" : {"parts":[{"text":"]}"}]} , "finishReason" : "STOP" } ]"#,
            true,
        ),
    ] {
        let body = format!("data: {{\"candidates\":{candidates},{usage}}}\r\n\r\n");
        assert_eq!(
            seen_after(Format::EventStream, body.as_bytes()).is_some(),
            last,
            "{body}"
        );
        assert_eq!(
            scan(Format::EventStream, &[body.as_bytes()]),
            found(30, Some(20), None),
            "{body}"
        );
    }
    // A finishReason without usage is no final usage.
    let body = b"data: {\"candidates\":[{\"finishReason\":\"STOP\"}]}\n\n";
    assert_eq!(seen_after(Format::EventStream, body), None);
    // Broken candidates break the event.
    for candidates in [
        r#"[{"finishReason":"STOP"}}"#,
        r#"[{"finishReason":"STOP"},]"#,
        r#"[}"#,
    ] {
        let body = format!("data: {{\"candidates\":{candidates},{usage}}}\n\n");
        assert_eq!(
            scan(Format::EventStream, &[body.as_bytes()]),
            Scan::Malformed,
            "{body}"
        );
    }
}

#[test]
fn each_apis_names_count_only_in_its_own_place() {
    for (body, expected) in [
        // Gemini's names inside an OpenAI usage object, and the reverse.
        (r#"{"usage":{"totalTokenCount":9}}"#, Scan::Absent),
        (r#"{"usageMetadata":{"total_tokens":9}}"#, Scan::Absent),
        // Ollama's counts only at the top level.
        (r#"{"usage":{"eval_count":9}}"#, Scan::Absent),
        (r#"{"message":{"eval_count":9}}"#, Scan::Absent),
        (r#"{"options":{"eval_count":9}}"#, Scan::Absent),
        (r#"{"total_tokens":9}"#, Scan::Absent),
        // A name of another API does not spoil the count beside it.
        (
            r#"{"usage":{"completion_tokens":5,"eval_count":"x"}}"#,
            found(5, None, Some(5)),
        ),
        // Preference: OpenAI/Anthropic usage, then Gemini, then Ollama.
        (
            r#"{"eval_count":1,"usageMetadata":{"totalTokenCount":2},"usage":{"total_tokens":3}}"#,
            found(3, None, None),
        ),
        (
            r#"{"eval_count":1,"usageMetadata":{"totalTokenCount":2}}"#,
            found(2, None, None),
        ),
        // Hostile counts charge nothing.
        (
            r#"{"usageMetadata":{"totalTokenCount":-1}}"#,
            Scan::Malformed,
        ),
        (
            r#"{"prompt_eval_count":1.5,"eval_count":2}"#,
            Scan::Malformed,
        ),
        (
            r#"{"prompt_eval_count":18446744073709551615,"eval_count":2}"#,
            Scan::Malformed,
        ),
        (
            r#"{"usageMetadata":{"promptTokenCount":1,"thoughtsTokenCount":18446744073709551615}}"#,
            Scan::Malformed,
        ),
        (r#"{"eval_count":"7"}"#, Scan::Absent),
        (r#"{"eval_count":7,"eval_count":null}"#, Scan::Absent),
        (r#"{"usageMetadata":{"totalTokenCount":7}"#, Scan::Malformed),
    ] {
        assert_eq!(scan(Format::Json, &[body.as_bytes()]), expected, "{body}");
        let bytes: Vec<&[u8]> = body.as_bytes().chunks(1).collect();
        assert_eq!(scan(Format::Json, &bytes), expected, "{body} byte by byte");
    }
}

// ---- Ollama ----

#[test]
fn ollama_chat_json() {
    let body = r#"{"model":"llama3.2","created_at":"2025-01-01T00:00:00Z","message":{"role":"assistant","content":"Hi"},"done_reason":"stop","done":true,"total_duration":5000,"load_duration":100,"prompt_eval_count":26,"prompt_eval_duration":200,"eval_count":74,"eval_duration":4000}"#;
    every_split(
        Format::Json,
        body.as_bytes(),
        r#""prompt_eval_count":26"#,
        found(100, Some(26), Some(74)),
    );
}

#[test]
fn ollama_generate_stream_as_json_lines() {
    let done = r#"{"model":"llama3.2","created_at":"2025-01-01T00:00:01Z","response":"","done":true,"done_reason":"stop","context":[1,2,3],"total_duration":5000,"prompt_eval_count":26,"prompt_eval_duration":200,"eval_count":74,"eval_duration":4000}"#;
    let body = format!(
        "{}\n{}\n{done}\n",
        r#"{"model":"llama3.2","created_at":"2025-01-01T00:00:00Z","response":"Hel","done":false}"#,
        r#"{"model":"llama3.2","created_at":"2025-01-01T00:00:00Z","response":"lo \"eval_count\":5","done":false}"#,
    )
    .into_bytes();
    assert_eq!(
        Format::from_content_type(b"application/x-ndjson"),
        Some(Format::JsonLines)
    );
    every_split(
        Format::JsonLines,
        &body,
        r#""eval_count":74"#,
        found(100, Some(26), Some(74)),
    );
    assert_eq!(
        seen_after(Format::JsonLines, &body),
        Some(find(&body, done) + done.len() + 1)
    );
    // The last line without its line ending still counts: JSON delimits
    // itself.
    assert_eq!(
        scan(Format::JsonLines, &[&body[..body.len() - 1]]),
        found(100, Some(26), Some(74))
    );
    // `\r\n` and blank lines.
    let crlf = String::from_utf8(body.clone())
        .unwrap()
        .replace('\n', "\r\n\r\n");
    assert_eq!(
        scan(Format::JsonLines, &[crlf.as_bytes()]),
        found(100, Some(26), Some(74))
    );
}

#[test]
fn ollama_chat_stream_cut_inside_its_last_line_is_malformed() {
    let body = b"{\"message\":{\"content\":\"a\"},\"done\":false}\n{\"done\":true,\"prompt_eval_count\":26,\"eval_count\":7";
    assert_eq!(scan(Format::JsonLines, &[body]), Scan::Malformed);
}

#[test]
fn json_lines_are_not_event_stream_fields() {
    // In JSON lines `data:` is no field name; the line is not JSON.
    let body = b"data: {\"eval_count\":5}\n";
    assert_eq!(scan(Format::JsonLines, &[body]), Scan::Absent);
    // And an event stream does not take bare JSON lines.
    let body = b"{\"usage\":{\"total_tokens\":5}}\n\n";
    assert_eq!(scan(Format::EventStream, &[body]), Scan::Absent);
}

#[test]
fn compressed_answers_are_told_apart() {
    for (value, encoded) in [
        (None, false),
        (Some(&b""[..]), false),
        (Some(b"identity"), false),
        (Some(b"IDENTITY "), false),
        (Some(b"gzip"), true),
        (Some(b"br"), true),
        (Some(b"deflate"), true),
        (Some(b"zstd"), true),
        (Some(b"gzip, identity"), true),
    ] {
        assert_eq!(token_quota::is_encoded(value), encoded, "{value:?}");
    }
    // What a gzip body gives a scanner that is fed it anyway: nothing.
    let gzip = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xab, 0x56];
    assert_eq!(scan(Format::Json, &[&gzip]), Scan::Malformed);
}
