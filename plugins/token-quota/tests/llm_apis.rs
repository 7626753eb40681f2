//! The token quota in front of each LLM API, natively over the kit's
//! `FakeHost`: what it adds to the request (only OpenAI Chat Completions
//! streaming requests get `stream_options`), the uncompressed answer it
//! asks for, and the usage it charges in each API's shape.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use common::{Driver, Outcome, Upstream};
use kit::Filter;
use token_quota::TokenQuota;

fn config(extra: &str) -> String {
    format!(
        r#"{{"rule_name": "a", "global_threshold": {{"token_per_hour": 100000}}{extra},
            "redis": {{"webdis_cluster": "webdis", "timeout": 250}}}}"#
    )
}

/// One request to `path` with `body`, answered by `upstream`: the body
/// that went upstream, its `accept-encoding`, and the tokens charged.
fn run(d: &mut Driver, path: &'static str, body: &[u8], upstream: &Upstream<'_>) -> (Vec<u8>, i64) {
    d.path = path;
    let before = d.charged("{a:100000_per_3600s:global}");
    assert_eq!(
        d.request(&[], body, upstream),
        Outcome::Answered200,
        "{path}"
    );
    assert_eq!(
        d.host().request_headers.get_str("accept-encoding"),
        Some("identity"),
        "{path}: the upstream is asked for an uncompressed answer"
    );
    (
        d.host().request_body.clone(),
        d.charged("{a:100000_per_3600s:global}") - before,
    )
}

const CHAT_STREAM: &[u8] =
    br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

#[test]
fn only_chat_completions_streaming_requests_get_stream_options() {
    let mut d = Driver::new(&config(""));
    let openai = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":40,\"completion_tokens\":60,\"total_tokens\":100}}\n\ndata: [DONE]\n\n";
    let sse = Upstream {
        content_type: "text/event-stream",
        chunks: &[openai],
    };
    for path in [
        "/v1/chat/completions",
        "/v1/completions",
        "/openai/deployments/x/chat/completions?api-version=2024-10-21",
    ] {
        let (sent, charged) = run(&mut d, path, CHAT_STREAM, &sse);
        let json: serde_json::Value = serde_json::from_slice(&sent).unwrap();
        assert_eq!(json["stream_options"]["include_usage"], true, "{path}");
        assert_eq!(charged, 100, "{path}");
    }
    let anthropic = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":75}}\n\n";
    let responses = b"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":30,\"output_tokens\":70,\"total_tokens\":100}}}\n\n";
    for (path, answer) in [
        ("/v1/messages", &anthropic[..]),
        ("/v1/messages?beta=true", anthropic),
        ("/v1/responses", responses),
    ] {
        let (sent, charged) = run(
            &mut d,
            path,
            CHAT_STREAM,
            &Upstream {
                content_type: "text/event-stream",
                chunks: &[answer],
            },
        );
        assert_eq!(sent, CHAT_STREAM, "{path}: sent byte for byte");
        assert_eq!(charged, 100, "{path}");
    }
}

#[test]
fn the_paths_that_get_stream_options_are_configurable() {
    let mut d = Driver::new(&config(r#", "include_usage_path_suffixes": ["/llm/chat"]"#));
    let json = br#"{"usage":{"total_tokens":100}}"#;
    let upstream = Upstream {
        content_type: "application/json",
        chunks: &[json],
    };
    let (sent, _) = run(&mut d, "/llm/chat", CHAT_STREAM, &upstream);
    assert_ne!(sent, CHAT_STREAM);
    let (sent, _) = run(&mut d, "/v1/chat/completions", CHAT_STREAM, &upstream);
    assert_eq!(sent, CHAT_STREAM);

    let mut d = Driver::new(&config(r#", "include_usage_path_suffixes": []"#));
    let (sent, charged) = run(&mut d, "/v1/chat/completions", CHAT_STREAM, &upstream);
    assert_eq!(sent, CHAT_STREAM);
    assert_eq!(charged, 100);
}

#[test]
fn bad_path_suffixes_are_refused_naming_the_field() {
    for (value, reason) in [
        (r#"[""]"#, "empty suffix"),
        (r#"["/chat/completions", ""]"#, "empty suffix"),
        (r#"[1]"#, "string"),
        (r#"{"a": 1}"#, "array"),
    ] {
        let mut filter: Filter<TokenQuota, kit::fake::FakeHost> =
            Filter::new(kit::fake::FakeHost::new());
        let err = filter
            .configure(config(&format!(r#", "include_usage_path_suffixes": {value}"#)).into_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("include_usage_path_suffixes"),
            "{value}: {err}"
        );
        assert!(err.contains(reason), "{value}: {err}");
    }
}

#[test]
fn gemini_and_ollama_answers_are_charged() {
    let mut d = Driver::new(&config(""));
    let gemini_json = br#"{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":20,"candidatesTokenCount":80,"totalTokenCount":100}}"#;
    let gemini_sse = b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"}]}}],\"usageMetadata\":{\"promptTokenCount\":20,\"totalTokenCount\":30,\"candidatesTokenCount\":10}}\r\n\r\ndata: {\"candidates\":[{\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":20,\"candidatesTokenCount\":80,\"totalTokenCount\":100}}\r\n\r\n";
    let ollama_json = br#"{"model":"llama3.2","message":{"role":"assistant","content":"Hi"},"done":true,"prompt_eval_count":26,"eval_count":74}"#;
    let ollama_lines = b"{\"model\":\"llama3.2\",\"response\":\"Hi\",\"done\":false}\n{\"model\":\"llama3.2\",\"response\":\"\",\"done\":true,\"prompt_eval_count\":26,\"eval_count\":74}\n";
    let body = br#"{"contents":[{"parts":[{"text":"hi"}]}]}"#;
    for (path, content_type, answer) in [
        (
            "/v1beta/models/gemini-2.5-flash:generateContent",
            "application/json",
            &gemini_json[..],
        ),
        (
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            "text/event-stream",
            gemini_sse,
        ),
        ("/api/chat", "application/json; charset=utf-8", ollama_json),
        ("/api/generate", "application/x-ndjson", ollama_lines),
    ] {
        // Cut in two inside the usage, as a network may.
        let cut = answer.len() - 20;
        let (sent, charged) = run(
            &mut d,
            path,
            body,
            &Upstream {
                content_type,
                chunks: &[&answer[..cut], &answer[cut..]],
            },
        );
        assert_eq!(sent, body, "{path}");
        assert_eq!(charged, 100, "{path}");
    }
}

#[test]
fn a_compressed_answer_is_counted_and_charged_by_estimate() {
    let mut d = Driver::new(&config(""));
    d.response_encoding = Some("gzip");
    // The scanner would find 100 tokens in these bytes: that the estimate
    // is charged instead shows the encoding, not the bytes, decided.
    let json = br#"{"usage":{"total_tokens":100}}"#;
    let upstream = Upstream {
        content_type: "application/json",
        chunks: &[json],
    };
    let (_, charged) = run(&mut d, "/v1/chat/completions", CHAT_STREAM, &upstream);
    // The estimate rule: request and response body bytes, 4 a token, up.
    let estimate = (CHAT_STREAM.len() + json.len()).div_ceil(4) as i64;
    assert_eq!(charged, estimate);
    assert_eq!(d.counter("token-quota.compressed"), 1);
    assert_eq!(d.counter("token-quota.estimated_requests"), 1);
    assert_eq!(d.counter("token-quota.estimated_tokens"), estimate as u64);

    // With `on_missing_usage: "none"` nothing is charged, and it shows.
    let mut d = Driver::new(&config(r#", "on_missing_usage": "none""#));
    d.response_encoding = Some("gzip");
    let (_, charged) = run(&mut d, "/v1/chat/completions", CHAT_STREAM, &upstream);
    assert_eq!(charged, 0);
    assert_eq!(d.counter("token-quota.usage_missing"), 1);
    assert_eq!(d.counter("token-quota.compressed"), 1);
    d.response_encoding = Some("identity");
    let (_, charged) = run(&mut d, "/v1/chat/completions", CHAT_STREAM, &upstream);
    assert_eq!(charged, 100);
    assert_eq!(d.counter("token-quota.compressed"), 1);
}

#[test]
fn requests_no_limit_applies_to_keep_their_accept_encoding() {
    let mut d = Driver::new(
        r#"{"rule_name": "p", "rule_items": [{"limit_by_per_header": "x-api-key", "limit_keys": [{"key": "team-a", "token_per_hour": 100}]}],
            "redis": {"webdis_cluster": "webdis", "timeout": 250}}"#,
    );
    let upstream = Upstream {
        content_type: "application/json",
        chunks: &[br#"{"usage":{"total_tokens":1}}"#],
    };
    assert_eq!(
        d.request(
            &[("accept-encoding", "gzip"), ("x-api-key", "team-b")],
            CHAT_STREAM,
            &upstream
        ),
        Outcome::Answered200
    );
    assert_eq!(
        d.host().request_headers.get_str("accept-encoding"),
        Some("gzip")
    );
    assert_eq!(d.host().request_body, CHAT_STREAM);
    assert_eq!(
        d.request(
            &[("accept-encoding", "gzip, br"), ("x-api-key", "team-a")],
            CHAT_STREAM,
            &upstream
        ),
        Outcome::Answered200
    );
    assert_eq!(
        d.host().request_headers.get_str("accept-encoding"),
        Some("identity")
    );
}
