//! The token quota on streamed answers that end with HTTP/2 trailers, end
//! to end: `token_quota.wasm` in a real Envoy 1.40, an HTTP/2 upstream
//! ([`H2Upstream`]) that streams an OpenAI-style event stream and ends it
//! with a HEADERS frame of trailers (as gRPC-style services and some LLM
//! gateways do), real Redis through webdis, and curl over HTTP/2 (prior
//! knowledge, asking for gzip like a real client).
//!
//! Envoy hands the filter the last event without the end of the stream,
//! then the trailers. The answer must be charged as one that ended
//! normally: exactly the usage its stream reported, written before the
//! client has the end of the stream, and not counted as cut short; the
//! client gets every byte and the trailers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::indexing_slicing)]

use std::time::Duration;

use e2e::h2_upstream::{H2Answer, H2Upstream};
use e2e::token_quota::{charged_to, llm_envoy, per_user_config, token_quota_plugin, LlmProtocol};
use e2e::unique_rule_name;
use serde_json::json;
use stack::{Envoy, Redis, Webdis};

const CONTENT: &str =
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello there\"}}]}\n\n";
const USAGE: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":20,\"total_tokens\":30}}\n\n";
const DONE: &str = "data: [DONE]\n\n";

/// The usage event and `[DONE]`, then the trailers.
const USAGE_THEN_DONE: &str = "usage-then-done";
/// The usage event last, ended by the end of the stream rather than by
/// its blank line: its usage is the stream's only once the stream ends.
const USAGE_AT_THE_END: &str = "usage-at-the-end";

fn answers() -> Vec<H2Answer> {
    let trailers = vec![
        ("grpc-status", "0".to_owned()),
        ("x-stream-end", "complete".to_owned()),
    ];
    let chunks = |parts: &[&str]| parts.iter().map(|p| p.as_bytes().to_vec()).collect();
    vec![
        H2Answer {
            model: USAGE_THEN_DONE,
            content_type: "text/event-stream",
            chunks: chunks(&[CONTENT, CONTENT, USAGE, DONE]),
            gap: Duration::from_millis(50),
            trailers: trailers.clone(),
        },
        H2Answer {
            model: USAGE_AT_THE_END,
            content_type: "text/event-stream",
            chunks: chunks(&[CONTENT, CONTENT, USAGE.trim_end()]),
            gap: Duration::from_millis(50),
            trailers,
        },
    ]
}

/// Envoy (first, so it closes the upstream's connections when dropped),
/// the HTTP/2 upstream, webdis and Redis.
struct Stack {
    envoy: Envoy,
    upstream: H2Upstream,
    _webdis: Webdis,
    redis: Redis,
    rule: String,
}

impl Stack {
    fn start() -> Self {
        let rule = unique_rule_name("tq-trailers");
        let config = per_user_config(&rule, 2000);
        let redis = Redis::start();
        let webdis = Webdis::start(redis.port());
        let upstream = H2Upstream::start(answers());
        let plugin = token_quota_plugin(stack::wasm_path("token-quota"), &config);
        let envoy = Envoy::start(llm_envoy(
            plugin,
            webdis.port(),
            upstream.port(),
            LlmProtocol::Http2,
        ));
        Stack {
            envoy,
            upstream,
            _webdis: webdis,
            redis,
            rule,
        }
    }

    /// The tokens charged to `user` in Redis (0 when no counter exists).
    fn charged(&self, user: &str) -> i64 {
        charged_to(&self.redis, &self.rule, user)
    }

    /// Asks for `model` as `user` with curl over HTTP/2; the body and the
    /// header lines (trailers included) it got.
    fn ask(&self, user: &str, model: &str) -> (String, String) {
        let curl = stack::require_tool("curl", "curl");
        let headers = self.envoy.dir().join(format!("headers-{user}.txt"));
        let body = json!({
            "model": model,
            "messages": [{"role": "user", "content": "Say hello"}],
            "stream": true,
        })
        .to_string();
        let output = std::process::Command::new(curl)
            .args(["--http2-prior-knowledge", "--compressed", "--silent"])
            .args(["--show-error", "--max-time", "20"])
            .arg("--dump-header")
            .arg(&headers)
            .args(["-H", "content-type: application/json"])
            .args(["-H", &format!("x-user: {user}")])
            .args(["--data-binary", &body])
            .arg(format!(
                "http://127.0.0.1:{}/v1/chat/completions",
                self.envoy.port()
            ))
            .output()
            .unwrap();
        assert!(output.status.success(), "curl: {output:?}");
        let sent: serde_json::Value =
            serde_json::from_slice(&self.upstream.received(Duration::from_secs(5))).unwrap();
        assert_eq!(sent["stream_options"]["include_usage"], json!(true));
        (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            std::fs::read_to_string(&headers).unwrap(),
        )
    }

    /// Counter `name` of the plugin, once the kit has published it.
    fn counter(&self, name: &str) -> u64 {
        e2e::settled_counter(&self.envoy, &format!("wasmcustom.token-quota.{name}"))
    }
}

#[test]
fn streamed_answers_ending_with_http2_trailers_are_charged_their_usage_as_complete() {
    let stack = Stack::start();
    for (user, model, expected) in [
        (
            "mid",
            USAGE_THEN_DONE,
            [CONTENT, CONTENT, USAGE, DONE].concat(),
        ),
        (
            "end",
            USAGE_AT_THE_END,
            [CONTENT, CONTENT, USAGE.trim_end()].concat(),
        ),
    ] {
        let (body, headers) = stack.ask(user, model);
        // Read as soon as curl has the end of the stream: the charge was
        // written before the end was let go.
        let charged = stack.charged(user);
        let log = || stack::envoy_log_excerpt(&stack.envoy.log(), 30);
        assert_eq!(charged, 30, "{model}: charged {charged}\n{}", log());
        assert_eq!(body, expected, "{model}: every byte, as sent");
        assert!(headers.starts_with("HTTP/2 200"), "{model}: {headers}");
        for trailer in ["grpc-status: 0", "x-stream-end: complete"] {
            assert!(
                headers.lines().any(|l| l.trim_end() == trailer),
                "{model}: no trailer {trailer:?} in\n{headers}"
            );
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(stack.charged("mid"), 30, "charged once");
    assert_eq!(stack.charged("end"), 30, "charged once");
    assert_eq!(stack.counter("tokens"), 60);
    assert_eq!(stack.counter("ended_otherwise"), 0, "both ended normally");
    assert_eq!(stack.counter("estimated_requests"), 0);
    assert_eq!(stack.counter("usage_missing"), 0);
}
