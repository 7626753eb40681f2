//! Hostile traffic against the token quota, end to end: `token_quota.wasm`
//! in a real Envoy 1.40, a scripted upstream that streams like an LLM API
//! ([`SlowUpstream`]: chunks, pauses, a reset), charging a real Redis
//! through webdis. Bodies with 1 MB lines, 100,000 tiny events, usage
//! numbers near and beyond u64, JSON nested 10,000 deep, a client that
//! hangs up in each phase, an upstream that resets mid-stream, and header
//! values of every byte Envoy lets through, 8 KB long, too long for webdis.
//! For each: the status is the one written in the test, the Envoy log
//! shows no panic or Wasm trap, Redis holds exactly what was used, and the
//! next normal request is answered and charged as usual.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::indexing_slicing)]

use std::time::Duration;

use e2e::hostile::{
    assert_no_trap, counters, raw_head, raw_request, send_then_hang_up, settled_charge, RawAnswer,
};
use e2e::slow_upstream::{Script, SlowUpstream, Step};
use e2e::{unique_rule_name, WEBDIS_CLUSTER};
use serde_json::json;
use stack::{Envoy, EnvoyConfig, Redis, WasmPlugin, Webdis};

const LLM_CLUSTER: &str = "llm";
const TIMEOUT: Duration = Duration::from_secs(30);
/// How long a charge may take to reach Redis once its answer ended.
const SETTLE: Duration = Duration::from_secs(3);
/// The tokens a user may use per hour: far above every honest test.
const PER_HOUR: u64 = 1_000_000_000_000;
/// 2^53: the most one charge adds (`kit::increments::MAX_AMOUNT`).
const MAX_CHARGE: i64 = 9_007_199_254_740_992;

const CONTENT: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"}}]}\n\n";
const DONE: &str = "data: [DONE]\n\n";

/// An OpenAI usage event of `total` tokens (any JSON number text).
fn usage_event(total: &str) -> String {
    format!(
        "data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":10,\"completion_tokens\":20,\"total_tokens\":{total}}}}}\n\n"
    )
}

fn chat_body() -> Vec<u8> {
    json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "Say hello"}]})
        .to_string()
        .into_bytes()
}

/// An event stream of `events`, each its own chunk, then the end.
fn sse(events: &[&str]) -> Script {
    let mut steps: Vec<Step> = events
        .iter()
        .map(|e| Step::Chunk(e.as_bytes().to_vec()))
        .collect();
    steps.push(Step::End);
    Script {
        content_type: "text/event-stream",
        steps,
    }
}

struct Stack {
    envoy: Envoy,
    upstream: SlowUpstream,
    _webdis: Webdis,
    redis: Redis,
}

impl Stack {
    fn start(label: &str, failure_mode_deny: bool) -> Stack {
        let rule = unique_rule_name(&format!("hostile-tq-{label}"));
        let config = json!({
            "rule_name": rule,
            "rule_items": [{
                "limit_by_per_header": "x-user",
                "limit_keys": [{"key": "*", "token_per_hour": PER_HOUR}],
            }],
            "failure_mode_deny": failure_mode_deny,
            "redis": {"webdis_cluster": WEBDIS_CLUSTER, "timeout": 1000},
        });
        let redis = Redis::start();
        let webdis = Webdis::start(redis.port());
        let upstream = SlowUpstream::start();
        let envoy = Envoy::start(
            EnvoyConfig::new()
                .wasm(
                    WasmPlugin::new(stack::wasm_path("token-quota"), config.to_string())
                        .allow_on_headers_stop_iteration(true),
                )
                .cluster(WEBDIS_CLUSTER, webdis.port())
                .cluster(LLM_CLUSTER, upstream.port())
                .route_to(LLM_CLUSTER),
        );
        Stack {
            envoy,
            upstream,
            _webdis: webdis,
            redis,
        }
    }

    fn head(&self, user: &[u8], body_len: usize, extra: &[(&[u8], &[u8])]) -> Vec<u8> {
        let len = body_len.to_string();
        let mut headers: Vec<(&[u8], &[u8])> = vec![
            (b"content-type", b"application/json"),
            (b"x-user", user),
            (b"content-length", len.as_bytes()),
        ];
        headers.extend_from_slice(extra);
        raw_head("POST", b"/v1/chat/completions", &headers)
    }

    /// Posts `body` as `user`, the upstream answering with `script`.
    fn ask(&self, user: &[u8], body: &[u8], script: Script) -> RawAnswer {
        self.upstream.answer_next(script);
        self.post(user, body, &[])
    }

    fn post(&self, user: &[u8], body: &[u8], extra: &[(&[u8], &[u8])]) -> RawAnswer {
        let mut request = self.head(user, body.len(), extra);
        request.extend_from_slice(body);
        raw_request(self.envoy.port(), &request, TIMEOUT).unwrap()
    }

    /// The tokens charged to `user`, once settled at `want`.
    fn charged(&self, user: &[u8], want: i64) -> i64 {
        let needle = format!(":{}}}:", String::from_utf8_lossy(user));
        settled_charge(&self.redis, &needle, want, SETTLE)
    }

    /// A normal request of a new user is answered and charged its usage,
    /// and nothing trapped.
    fn assert_still_works(&self, what: &str) {
        let answer = self.ask(
            b"normal-user",
            &chat_body(),
            sse(&[CONTENT, &usage_event("30"), DONE]),
        );
        assert_eq!(answer.status, Some(200), "the normal request after {what}");
        assert_eq!(
            self.charged(b"normal-user", 30),
            30,
            "the normal request after {what}"
        );
        assert_no_trap(&self.envoy.log(), what);
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn bodies_with_1_mb_lines_are_passed_whole_and_charged_their_usage() {
    let stack = Stack::start("1mb", false);
    // A request whose one line is 1 MB: rewritten to ask for usage.
    let big = "x".repeat(1_000_000);
    let body =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": big}]})
            .to_string()
            .into_bytes();
    let answer = stack.ask(
        b"big-request",
        &body,
        sse(&[CONTENT, &usage_event("30"), DONE]),
    );
    assert_eq!(answer.status, Some(200));
    let sent: serde_json::Value =
        serde_json::from_slice(&stack.upstream.received(TIMEOUT).body).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], json!(true));
    assert_eq!(
        sent["messages"][0]["content"].as_str().map(str::len),
        Some(1_000_000)
    );
    assert_eq!(stack.charged(b"big-request", 30), 30);

    // An event whose data line is 1 MB, then the usage.
    let line = format!(
        "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{}\"}}}}]}}\n\n",
        "y".repeat(1_000_000)
    );
    let answer = stack.ask(
        b"big-event",
        &chat_body(),
        sse(&[&line, &usage_event("31"), DONE]),
    );
    assert_eq!(answer.status, Some(200));
    assert!(answer.bytes.len() > 1_000_000 && contains(&answer.bytes, b"[DONE]"));
    assert_eq!(stack.charged(b"big-event", 31), 31);

    // A JSON answer of one 1 MB line, in 64 KB chunks, usage at its end.
    let json_answer = format!(
        "{{\"id\":\"c\",\"object\":\"chat.completion\",\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":\"{}\"}},\"finish_reason\":\"stop\"}}],\"usage\":{{\"prompt_tokens\":1,\"completion_tokens\":31,\"total_tokens\":32}}}}",
        "z".repeat(1_000_000)
    );
    let mut steps: Vec<Step> = json_answer
        .as_bytes()
        .chunks(65_536)
        .map(|c| Step::Chunk(c.to_vec()))
        .collect();
    steps.push(Step::End);
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let answer = stack.ask(
        b"big-json",
        body.as_bytes(),
        Script {
            content_type: "application/json",
            steps,
        },
    );
    assert_eq!(answer.status, Some(200));
    assert!(
        contains(answer.body(), b"\"total_tokens\":32}}"),
        "the whole answer arrived"
    );
    assert_eq!(stack.charged(b"big-json", 32), 32);
    stack.assert_still_works("1 MB lines");
}

#[test]
fn a_hundred_thousand_tiny_events_are_scanned_to_their_usage() {
    let stack = Stack::start("tiny", false);
    let event = "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n";
    // 100 chunks of 1,000 events, then the usage event and [DONE].
    let chunk = event.repeat(1_000);
    let mut steps: Vec<Step> = (0..100)
        .map(|_| Step::Chunk(chunk.as_bytes().to_vec()))
        .collect();
    steps.push(Step::Chunk(usage_event("77").into_bytes()));
    steps.push(Step::Chunk(DONE.as_bytes().to_vec()));
    steps.push(Step::End);
    let answer = stack.ask(
        b"tiny-events",
        &chat_body(),
        Script {
            content_type: "text/event-stream",
            steps,
        },
    );
    assert_eq!(answer.status, Some(200));
    let content = answer.content();
    let events = content
        .windows(event.len())
        .filter(|w| *w == event.as_bytes())
        .count();
    assert_eq!(events, 100_000, "every event reached the client");
    assert_eq!(stack.charged(b"tiny-events", 77), 77);
    stack.assert_still_works("100,000 events");
}

#[test]
fn usage_near_and_beyond_u64_is_charged_at_most_2_pow_53_and_stays_charged() {
    let stack = Stack::start("u64", false);
    // u64::MAX and 2^63 (beyond i64): each charges 2^53, which uses up
    // any quota, and the reads after it see it through webdis. What could
    // go wrong: an amount past 2^53 reaches Redis in exponent notation
    // (the script reads amounts into Lua doubles), is refused and stored
    // as text, and the next read resets the counter to 0; a count past
    // 2^31 - 1 written as a RESP integer comes out of webdis cut short,
    // no RESP, and the failure mode lets the request through.
    for (user, total) in [
        (&b"u64-max"[..], "18446744073709551615"),
        (&b"i64-past"[..], "9223372036854775808"),
    ] {
        let answer = stack.ask(
            user,
            &chat_body(),
            sse(&[CONTENT, &usage_event(total), DONE]),
        );
        assert_eq!(answer.status, Some(200), "{total}: the answer passes");
        assert_eq!(stack.charged(user, MAX_CHARGE), MAX_CHARGE, "{total}");
        // The quota is used up, and a read does not reset it.
        let refused = stack.post(user, &chat_body(), &[]);
        assert_eq!(
            refused.status,
            Some(429),
            "{total}: the next request is refused"
        );
        assert_eq!(
            stack.charged(user, MAX_CHARGE),
            MAX_CHARGE,
            "{total}: still charged"
        );
    }
    // Past u64 (and a usage of 2^53 + 1 beside it): not a usage the scanner
    // trusts, so the complete answer is charged nothing (`usage_missing`).
    let answer = stack.ask(
        b"past-u64",
        &chat_body(),
        sse(&[CONTENT, &usage_event("18446744073709551616"), DONE]),
    );
    assert_eq!(answer.status, Some(200));
    assert_eq!(stack.charged(b"past-u64", 0), 0);
    assert_eq!(
        e2e::settled_counter(&stack.envoy, "token-quota.usage_missing"),
        1
    );
    stack.assert_still_works("usage near u64");
}

#[test]
fn json_nested_10_000_deep_is_passed_and_charges_only_usage_it_can_trust() {
    let stack = Stack::start("deep", false);
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    // A request nested too deep to rewrite: sent upstream as it came.
    let body = format!(
        "{{\"model\":\"m\",\"stream\":true,\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}],\"metadata\":{deep}}}"
    );
    let answer = stack.ask(
        b"deep-request",
        body.as_bytes(),
        sse(&[CONTENT, &usage_event("30"), DONE]),
    );
    assert_eq!(answer.status, Some(200));
    assert_eq!(
        stack.upstream.received(TIMEOUT).body,
        body.as_bytes(),
        "sent as it came"
    );
    assert_eq!(stack.charged(b"deep-request", 30), 30);

    // An event nested 10,000 deep before the usage event: the deep event
    // is passed over, the usage after it found.
    let deep_event = format!("data: {{\"choices\":{deep}}}\n\n");
    let answer = stack.ask(
        b"deep-event",
        &chat_body(),
        sse(&[&deep_event, &usage_event("33"), DONE]),
    );
    assert_eq!(answer.status, Some(200));
    assert_eq!(stack.charged(b"deep-event", 33), 33);

    // A JSON answer nested 10,000 deep before its usage: the scanner
    // refuses structure it cannot follow, so nothing is charged.
    let json_answer = format!("{{\"deep\":{deep},\"usage\":{{\"total_tokens\":34}}}}");
    let plain = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let answer = stack.ask(
        b"deep-json",
        plain.as_bytes(),
        Script {
            content_type: "application/json",
            steps: vec![Step::Chunk(json_answer.into_bytes()), Step::End],
        },
    );
    assert_eq!(answer.status, Some(200));
    assert_eq!(stack.charged(b"deep-json", 0), 0);
    assert_eq!(
        e2e::settled_counter(&stack.envoy, "token-quota.usage_missing"),
        1
    );
    stack.assert_still_works("JSON nested 10,000 deep");
}

#[test]
fn a_client_that_hangs_up_in_each_phase_is_charged_only_what_it_used() {
    let stack = Stack::start("hangup", false);
    let body = chat_body();
    let port = stack.envoy.port();
    let wait = Duration::from_millis(700);

    // 1. Mid request body: nothing reached the upstream, nothing charged.
    let mut first = stack.head(b"gone-in-body", body.len() + 10_000, &[]);
    first.extend_from_slice(&body);
    let got = send_then_hang_up(port, &first, wait);
    assert!(got.is_empty(), "no answer to half a request");
    assert_eq!(stack.charged(b"gone-in-body", 0), 0, "hung up mid-body");

    // 2. Waiting for the answer's body: the upstream had the request and
    // sent its head, no byte of the body yet. The estimate of the request
    // body (the upstream may be working on it).
    stack.upstream.answer_next(Script {
        content_type: "text/event-stream",
        steps: vec![
            Step::Pause(Duration::from_millis(1500)),
            Step::Chunk(usage_event("30").into_bytes()),
            Step::End,
        ],
    });
    let mut whole = stack.head(b"gone-waiting", body.len(), &[]);
    whole.extend_from_slice(&body);
    let got = send_then_hang_up(port, &whole, wait);
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert!(!contains(&got, b"usage"), "no body yet");
    let estimate = body.len().div_ceil(4) as i64;
    assert_eq!(
        stack.charged(b"gone-waiting", estimate),
        estimate,
        "hung up before the body"
    );
    std::thread::sleep(Duration::from_millis(1200));

    // 3. Mid answer, before its usage: the estimate, from the bytes that
    // passed (request body and one event, 4 bytes a token).
    stack.upstream.answer_next(Script {
        content_type: "text/event-stream",
        steps: vec![
            Step::Chunk(CONTENT.into()),
            Step::Pause(Duration::from_millis(1500)),
            Step::Chunk(usage_event("30").into_bytes()),
            Step::End,
        ],
    });
    let mut whole = stack.head(b"gone-streaming", body.len(), &[]);
    whole.extend_from_slice(&body);
    let got = send_then_hang_up(port, &whole, wait);
    assert!(contains(&got, b"Hello"), "the first event arrived");
    let estimate = (body.len() + CONTENT.len()).div_ceil(4) as i64;
    assert_eq!(
        stack.charged(b"gone-streaming", estimate),
        estimate,
        "hung up mid-answer"
    );

    // 4. After the usage, before the end: the usage.
    stack.upstream.answer_next(Script {
        content_type: "text/event-stream",
        steps: vec![
            Step::Chunk(CONTENT.into()),
            Step::Chunk(usage_event("30").into_bytes()),
            Step::Pause(Duration::from_millis(1500)),
            Step::Chunk(DONE.into()),
            Step::End,
        ],
    });
    let mut whole = stack.head(b"gone-after-usage", body.len(), &[]);
    whole.extend_from_slice(&body);
    send_then_hang_up(port, &whole, wait);
    assert_eq!(
        stack.charged(b"gone-after-usage", 30),
        30,
        "hung up after the usage"
    );
    std::thread::sleep(Duration::from_millis(1000));
    stack.assert_still_works("clients hanging up");
}

#[test]
fn an_upstream_that_resets_mid_stream_is_charged_what_passed() {
    let stack = Stack::start("reset", false);
    let body = chat_body();
    // Reset before the usage: the estimate of what passed.
    let answer = stack.ask(
        b"reset-early",
        &body,
        Script {
            content_type: "text/event-stream",
            steps: vec![
                Step::Chunk(CONTENT.into()),
                Step::Pause(Duration::from_millis(100)),
                Step::Cut,
            ],
        },
    );
    assert_eq!(
        answer.status,
        Some(200),
        "the head went out before the reset"
    );
    assert!(
        !contains(&answer.bytes, b"0\r\n\r\n"),
        "the body never ended"
    );
    let estimate = (body.len() + CONTENT.len()).div_ceil(4) as i64;
    assert_eq!(stack.charged(b"reset-early", estimate), estimate);
    // Reset in the middle of a 1 MB line: the bytes that passed.
    let half_line = format!(
        "data: {{\"choices\":[{{\"delta\":{{\"content\":\"{}",
        "w".repeat(500_000)
    );
    let answer = stack.ask(
        b"reset-in-line",
        &body,
        Script {
            content_type: "text/event-stream",
            steps: vec![
                Step::Chunk(half_line.clone().into_bytes()),
                Step::Pause(Duration::from_millis(100)),
                Step::Cut,
            ],
        },
    );
    assert_eq!(answer.status, Some(200));
    let estimate = (body.len() + half_line.len()).div_ceil(4) as i64;
    assert_eq!(stack.charged(b"reset-in-line", estimate), estimate);
    // Reset after the usage: the usage.
    let answer = stack.ask(
        b"reset-late",
        &body,
        Script {
            content_type: "text/event-stream",
            steps: vec![
                Step::Chunk(CONTENT.into()),
                Step::Chunk(usage_event("30").into_bytes()),
                Step::Pause(Duration::from_millis(100)),
                Step::Cut,
            ],
        },
    );
    assert_eq!(answer.status, Some(200));
    assert_eq!(stack.charged(b"reset-late", 30), 30);
    stack.assert_still_works("upstream resets");
}

#[test]
fn hostile_header_values_are_charged_under_exactly_that_value_or_follow_the_failure_mode() {
    for deny in [false, true] {
        let stack = Stack::start("headers", deny);
        // Every byte Envoy 1.40 lets through in a header value (see
        // `hostile_limiter.rs`), in one user name.
        let mut every: Vec<u8> = vec![b'<'];
        every.extend((1..=255u8).filter(|&b| b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80));
        every.push(b'>');
        let answer = stack.ask(
            &every,
            &chat_body(),
            sse(&[CONTENT, &usage_event("30"), DONE]),
        );
        assert_eq!(answer.status, Some(200));
        let mut needle = vec![b':'];
        needle.extend_from_slice(&every);
        needle.extend_from_slice(b"}:");
        let charged = |needle: &[u8]| -> Vec<i64> {
            counters(&stack.redis, "hostile-tq")
                .iter()
                .filter(|(k, _)| contains(k, needle))
                .map(|(_, n)| *n)
                .collect()
        };
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(charged(&needle), [30], "every byte");

        // 8 KB: charged as any other user.
        let long = vec![0xffu8; 8192];
        let answer = stack.ask(
            &long,
            &chat_body(),
            sse(&[CONTENT, &usage_event("30"), DONE]),
        );
        assert_eq!(answer.status, Some(200));
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(charged(&long), [30], "8 KB");

        // 30 KB, a 90 KB webdis URL: the quota cannot be read, so the
        // failure mode answers (503 before the upstream, or the answer
        // passes), and nothing can be charged.
        let huge = vec![0xfeu8; 30_000];
        if deny {
            let answer = stack.post(&huge, &chat_body(), &[]);
            assert_eq!(answer.status, Some(503));
        } else {
            let answer = stack.ask(
                &huge,
                &chat_body(),
                sse(&[CONTENT, &usage_event("30"), DONE]),
            );
            assert_eq!(answer.status, Some(200));
        }
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(
            charged(&huge[..1000]),
            Vec::<i64>::new(),
            "30 KB: nothing charged"
        );

        // 100 header lines (5 above and 95 more).
        let names: Vec<Vec<u8>> = (0..95)
            .map(|i| format!("x-filler-{i}").into_bytes())
            .collect();
        let extra: Vec<(&[u8], &[u8])> = names.iter().map(|n| (&n[..], &b"value"[..])).collect();
        stack
            .upstream
            .answer_next(sse(&[CONTENT, &usage_event("30"), DONE]));
        assert_eq!(
            stack.post(b"many-headers", &chat_body(), &extra).status,
            Some(200)
        );
        assert_eq!(stack.charged(b"many-headers", 30), 30);
        stack.assert_still_works("hostile header values");
    }
}
