//! The token quota in front of every major LLM API, end to end:
//! `token_quota.wasm` in a real Envoy 1.40, charging a real Redis through
//! webdis, in front of [`LlmUpstream`], which speaks OpenAI Chat
//! Completions and Responses, Anthropic Messages, Gemini and Ollama the
//! way the real services do: strict about request fields they do not
//! know, usage in each API's own shape, gzip when the client takes it.
//!
//! For every API, JSON and streamed, one request far from the quota must
//! be answered `200` and charged exactly the tokens the answer reports,
//! including when the client sends `Accept-Encoding: gzip` as most HTTP
//! clients do; and the request body must reach the upstream byte for byte
//! unless the plugin had to ask for usage (OpenAI Chat Completions
//! streaming requests only).
//!
//! `LLM_APIS_WASM=<path>` runs the suite against another build of the
//! module (e.g. an older one, to see which rows it breaks).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::indexing_slicing)]

use std::path::PathBuf;
use std::time::Duration;

use e2e::token_quota::{counter_holding, llm_envoy, per_header_config, LlmProtocol};
use e2e::{settled_counter, unique_rule_name};
use serde_json::{json, Value};
use stack::llm_upstream::{answer, gunzip, LlmApi, LlmUpstream, REPORTED_TOKENS};
use stack::{request_with_timeout, Body, Envoy, Redis, Response, WasmPlugin, Webdis};

/// The header each row is keyed by, so each row has its own counter.
const ROW_HEADER: &str = "x-row";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long before its end a stream's first bytes must reach the client:
/// the upstream writes its events 25 ms apart, at least two of them and
/// the end after the first, so a stream that flows spreads over 75 ms or
/// more; one held whole arrives in one go.
const STREAM_SPREAD: Duration = Duration::from_millis(40);

fn module() -> PathBuf {
    match std::env::var_os("LLM_APIS_WASM") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => stack::wasm_path("token-quota"),
    }
}

/// Redis, webdis, the LLM upstream and Envoy running the token quota with
/// a per-row quota far from reached.
struct Stack {
    // Drop order: Envoy first.
    envoy: Envoy,
    upstream: LlmUpstream,
    _webdis: Webdis,
    redis: Redis,
    rule: String,
}

impl Stack {
    /// `compressor`: Envoy's gzip compressor filter before the plugin, as
    /// the README advises operators whose clients want compressed answers.
    fn start(compressor: bool) -> Stack {
        let rule = unique_rule_name("llm");
        let config = per_header_config(&rule, ROW_HEADER, 1000);
        let redis = Redis::start();
        let webdis = Webdis::start(redis.port());
        let upstream = LlmUpstream::start();
        let plugin = WasmPlugin::new(module(), config.to_string());
        let mut envoy = llm_envoy(plugin, webdis.port(), upstream.port(), LlmProtocol::Http1);
        if compressor {
            envoy = envoy.native_filter(compressor_filter());
        }
        let envoy = Envoy::start(envoy);
        Stack {
            envoy,
            upstream,
            _webdis: webdis,
            redis,
            rule,
        }
    }

    fn send(&self, row: &Row) -> Response {
        let body = row.body.to_string();
        let mut headers = vec![
            ("content-type", "application/json"),
            (ROW_HEADER, row.label),
        ];
        if let Some(encoding) = row.accept_encoding {
            headers.push(("accept-encoding", encoding));
        }
        headers.extend_from_slice(row.headers);
        request_with_timeout(
            self.envoy.port(),
            "POST",
            row.path,
            &headers,
            Body::Fixed(body.as_bytes()),
            REQUEST_TIMEOUT,
        )
        .unwrap_or_else(|e| {
            panic!(
                "{}: no answer through Envoy: {e}\nupstream errors {:?}\nEnvoy log:\n{}",
                row.label,
                self.upstream.errors(),
                stack::envoy_log_excerpt(&self.envoy.log(), 30)
            )
        })
    }

    /// The tokens charged to `row` (0 when it has no counter).
    fn charged(&self, row: &str) -> i64 {
        counter_holding(&self.redis, &self.rule, &format!("{ROW_HEADER}:{row}}}"))
    }
}

/// Envoy's gzip compressor, compressing answers toward clients that take
/// it; the plugin after it sees them uncompressed.
fn compressor_filter() -> Value {
    json!({
        "name": "envoy.filters.http.compressor",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor",
            "response_direction_config": {
                "common_config": {
                    "min_content_length": 1,
                    "content_type": ["application/json", "text/event-stream", "application/x-ndjson"],
                },
            },
            "compressor_library": {
                "name": "gzip",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.compression.gzip.compressor.v3.Gzip",
                },
            },
        },
    })
}

/// One request of the table.
struct Row {
    label: &'static str,
    path: &'static str,
    body: Value,
    headers: &'static [(&'static str, &'static str)],
    accept_encoding: Option<&'static str>,
    /// The upstream gets the body as it was sent (nothing needs adding).
    unchanged: bool,
}

const ANTHROPIC: &[(&str, &str)] = &[("anthropic-version", "2023-06-01")];

fn chat_body(stream: bool) -> Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello"}], "stream": stream})
}

fn rows() -> Vec<Row> {
    let row = |label, path, body, accept_encoding, unchanged| Row {
        label,
        path,
        body,
        headers: &[],
        accept_encoding,
        unchanged,
    };
    let anthropic = |stream: bool| {
        json!({"model": "claude-sonnet-4-5", "max_tokens": 256, "stream": stream,
               "messages": [{"role": "user", "content": "Say hello"}]})
    };
    let responses =
        |stream: bool| json!({"model": "gpt-4o", "input": "Say hello", "stream": stream});
    let gemini = json!({"contents": [{"role": "user", "parts": [{"text": "Say hello"}]}],
                        "generationConfig": {"maxOutputTokens": 256}});
    let ollama_chat = |stream: bool| json!({"model": "llama3.2", "messages": [{"role": "user", "content": "Say hello"}], "stream": stream});
    let gzip = Some("gzip, deflate, br");
    vec![
        row(
            "chat-json",
            "/v1/chat/completions",
            chat_body(false),
            None,
            true,
        ),
        row(
            "chat-stream",
            "/v1/chat/completions",
            chat_body(true),
            None,
            false,
        ),
        row(
            "chat-json-gzip",
            "/v1/chat/completions",
            chat_body(false),
            gzip,
            true,
        ),
        row(
            "chat-stream-gzip",
            "/v1/chat/completions",
            chat_body(true),
            gzip,
            false,
        ),
        row(
            "completions-stream",
            "/v1/completions",
            json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hello", "stream": true}),
            None,
            false,
        ),
        row(
            "responses-json",
            "/v1/responses",
            responses(false),
            None,
            true,
        ),
        row(
            "responses-stream",
            "/v1/responses",
            responses(true),
            None,
            true,
        ),
        row(
            "responses-stream-gzip",
            "/v1/responses",
            responses(true),
            gzip,
            true,
        ),
        Row {
            headers: ANTHROPIC,
            ..row(
                "anthropic-json",
                "/v1/messages",
                anthropic(false),
                None,
                true,
            )
        },
        Row {
            headers: ANTHROPIC,
            ..row(
                "anthropic-stream",
                "/v1/messages",
                anthropic(true),
                None,
                true,
            )
        },
        Row {
            headers: ANTHROPIC,
            ..row(
                "anthropic-stream-gzip",
                "/v1/messages",
                anthropic(true),
                gzip,
                true,
            )
        },
        row(
            "gemini-json",
            "/v1beta/models/gemini-2.5-flash:generateContent",
            gemini.clone(),
            None,
            true,
        ),
        row(
            "gemini-json-gzip",
            "/v1beta/models/gemini-2.5-flash:generateContent",
            gemini.clone(),
            gzip,
            true,
        ),
        row(
            "gemini-stream",
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            gemini.clone(),
            None,
            true,
        ),
        row(
            "ollama-chat-json",
            "/api/chat",
            ollama_chat(false),
            None,
            true,
        ),
        row(
            "ollama-chat-stream",
            "/api/chat",
            ollama_chat(true),
            None,
            true,
        ),
        row(
            "ollama-generate-stream",
            "/api/generate",
            json!({"model": "llama3.2", "prompt": "Say hello"}),
            gzip,
            true,
        ),
    ]
}

/// The body a client reads: decoded if the answer is compressed.
fn decoded(r: &Response) -> Vec<u8> {
    match r.header("content-encoding") {
        Some(e) if e.eq_ignore_ascii_case("gzip") => gunzip(&r.body),
        _ => r.body.clone(),
    }
}

/// What a row got wrong, if anything.
fn check(stack: &Stack, row: &Row, r: &Response, sent: &[u8]) -> Vec<String> {
    let mut wrong = Vec::new();
    if r.status != 200 {
        wrong.push(format!(
            "status {} ({})",
            r.status,
            String::from_utf8_lossy(&decoded(r))
        ));
    }
    let charged = stack.charged(row.label);
    if charged != REPORTED_TOKENS as i64 {
        wrong.push(format!("{charged} tokens charged, not {REPORTED_TOKENS}"));
    }
    let upstream = stack.upstream.requests();
    let Some(got) = upstream
        .iter()
        .find(|q| q.header(ROW_HEADER) == Some(row.label))
    else {
        wrong.push("never reached the upstream".into());
        return wrong;
    };
    if row.unchanged && got.body != sent {
        wrong.push(format!(
            "body changed on the way: {}",
            String::from_utf8_lossy(&got.body)
        ));
    }
    if !row.unchanged {
        let mut expected = row.body.clone();
        expected["stream_options"] = json!({"include_usage": true});
        if got.json() != expected {
            wrong.push(format!(
                "upstream got {}, not the body with stream_options.include_usage",
                String::from_utf8_lossy(&got.body)
            ));
        }
    }
    if got.header("accept-encoding") != Some("identity") {
        wrong.push(format!(
            "upstream asked for accept-encoding {:?}, not identity",
            got.header("accept-encoding")
        ));
    }
    wrong
}

#[test]
fn every_api_is_answered_and_charged_exactly_what_it_reports() {
    let stack = Stack::start(false);
    let mut failures = Vec::new();
    for row in rows() {
        let sent = row.body.to_string().into_bytes();
        let r = stack.send(&row);
        for problem in check(&stack, &row, &r, &sent) {
            failures.push(format!("{:<24} {}  {problem}", row.label, row.path));
        }
        // A stream flows to the client as the upstream writes it (an event
        // every 25 ms), at least until its final usage: its first bytes
        // arrive well before its end, not all at once when it ends.
        let streamed = r.header("content-type").is_some_and(|t| {
            t.starts_with("text/event-stream") || t.starts_with("application/x-ndjson")
        });
        if streamed {
            let first = r.chunks.first().map_or(r.elapsed, |c| c.at);
            if r.elapsed.saturating_sub(first) < STREAM_SPREAD {
                failures.push(format!(
                    "{:<24} {}  held: first bytes at {first:?}, end at {:?}",
                    row.label, row.path, r.elapsed
                ));
            }
        }
        // No compressor here: the client reads the uncompressed answer the
        // plugin asked for, whatever it asked for itself.
        if let Some(encoding) = r.header("content-encoding") {
            failures.push(format!(
                "{:<24} {}  the client got content-encoding {encoding}",
                row.label, row.path
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}\nEnvoy log:\n{}",
        failures.len(),
        failures.join("\n"),
        stack::envoy_log_excerpt(&stack.envoy.log(), 40)
    );
    assert_eq!(stack.upstream.errors(), Vec::<String>::new());
    assert_eq!(settled_counter(&stack.envoy, "token-quota.compressed"), 0);
}

#[test]
fn behind_envoys_compressor_clients_get_gzip_and_usage_is_still_charged() {
    let stack = Stack::start(true);
    let mut failures = Vec::new();
    for row in rows().into_iter().filter(|r| r.accept_encoding.is_some()) {
        let sent = row.body.to_string().into_bytes();
        let r = stack.send(&row);
        for problem in check(&stack, &row, &r, &sent) {
            failures.push(format!("{:<24} {problem}", row.label));
        }
        assert_eq!(
            r.header("content-encoding"),
            Some("gzip"),
            "{}: Envoy's compressor compresses toward the client",
            row.label
        );
        // Decoded, it is the answer the upstream wrote, whole.
        let got = stack
            .upstream
            .requests()
            .into_iter()
            .find(|q| q.header(ROW_HEADER) == Some(row.label))
            .unwrap();
        let written = answer(LlmApi::of(&got.path).unwrap(), &got.body).body();
        assert_eq!(
            String::from_utf8_lossy(&decoded(&r)),
            String::from_utf8_lossy(&written),
            "{}",
            row.label
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn an_answer_compressed_against_the_request_is_counted() {
    let stack = Stack::start(false);
    stack.upstream.ignore_accept_encoding(true);
    let row = rows().into_iter().find(|r| r.label == "chat-json").unwrap();
    let r = stack.send(&row);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let json: Value = serde_json::from_slice(&gunzip(&r.body)).unwrap();
    assert_eq!(json["usage"]["total_tokens"], REPORTED_TOKENS);
    // Its usage cannot be read: counted, and charged by the estimate rule
    // for answers without usage rather than by reading it.
    assert_eq!(settled_counter(&stack.envoy, "token-quota.compressed"), 1);
    assert_eq!(
        settled_counter(&stack.envoy, "token-quota.estimated_requests"),
        1
    );
    let estimated = settled_counter(&stack.envoy, "token-quota.estimated_tokens");
    assert!(estimated > 0);
    assert_eq!(stack.charged(row.label), estimated as i64);
}

/// The upstream is as strict as the services it stands for: adding
/// `stream_options` to these requests, as a plugin that adds it everywhere
/// would, is refused.
#[test]
fn the_upstream_refuses_stream_options_where_the_real_apis_do() {
    let upstream = LlmUpstream::start();
    let with_options = |mut body: Value| {
        body["stream_options"] = json!({"include_usage": true});
        body.to_string()
    };
    for row in rows()
        .into_iter()
        .filter(|r| r.unchanged && r.body["stream"] == true)
    {
        let body = with_options(row.body.clone());
        let r = request_with_timeout(
            upstream.port(),
            "POST",
            row.path,
            row.headers,
            Body::Fixed(body.as_bytes()),
            REQUEST_TIMEOUT,
        )
        .unwrap();
        assert_eq!(r.status, 400, "{}: {}", row.label, r.text());
    }
    let gemini = rows()
        .into_iter()
        .find(|r| r.label == "gemini-stream")
        .unwrap();
    let body = with_options(gemini.body);
    let r = request_with_timeout(
        upstream.port(),
        "POST",
        gemini.path,
        &[],
        Body::Fixed(body.as_bytes()),
        REQUEST_TIMEOUT,
    )
    .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("Unknown name"), "{}", r.text());
}
