//! The token-quota plugin end to end: `token_quota.wasm` in a real Envoy
//! 1.40 in front of a scripted OpenAI-compatible upstream
//! ([`stack::Upstream`]), charging a real Redis through webdis.
//!
//! Each test starts its own processes and uses its own rule name. Tests that
//! count tokens in one fixed window first wait until the current minute has
//! room for their requests. The counters are read straight from Redis over
//! RESP, so a test never trusts the plugin's own account of what it charged.
//! Request-side behaviour is checked under both values of the Wasm
//! `PluginConfig.allow_on_headers_stop_iteration`: with it, Envoy honours the
//! plugin holding the headers until the body is read; without it (the
//! default), the kit has to notice and release them, and must still not hang.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Test code: building expected JSON with `value["key"] = ...` and indexing
// answers whose count was just asserted reads better than `get_mut` chains.
#![allow(clippy::indexing_slicing)]

use std::path::PathBuf;
use std::time::Duration;

use e2e::token_quota::{keys_with, llm_envoy, LlmProtocol};
use e2e::{room_in_minute_for, send_all, unique_rule_name, WEBDIS_CLUSTER};
use serde_json::{json, Value};
use stack::resp::Resp;
use stack::{
    request_with_timeout, Body, Envoy, Framing, OpenAiStream, RecordedRequest, Redis, Relay, Reply,
    Response, Upstream, Usage, WasmPlugin, Webdis,
};

const CHAT: &str = "/v1/chat/completions";
const JSON: (&str, &str) = ("content-type", "application/json");
const REJECTED_MSG: &str = "Too many tokens";
/// The `redis.timeout` the tests configure, in milliseconds.
const REDIS_TIMEOUT_MS: u64 = 500;
/// Slack on top of the Redis timeouts for an answer when Redis is
/// unavailable: Envoy, webdis and a loaded 2-core test machine.
const MARGIN: Duration = Duration::from_millis(1000);
/// The deadline of every request through Envoy. Nothing the plugin does
/// should take near this long; hitting it means it hung.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The answer time allowed to requests that touch no Redis failure: the
/// kit's 100 ms probe of `allow_on_headers_stop_iteration`, a Redis round
/// trip or two, and a loaded machine.
const PROMPT: Duration = Duration::from_secs(2);

/// The release build of the plugin.
///
/// # Panics
/// If it has not been built, naming the build command.
fn token_quota_wasm() -> PathBuf {
    stack::wasm_path("token-quota")
}

fn rule_name(label: &str) -> String {
    unique_rule_name(&format!("tq-{label}"))
}

fn global_config(rule_name: &str, per_minute: u64, failure_mode_deny: bool) -> Value {
    json!({
        "rule_name": rule_name,
        "global_threshold": {"token_per_minute": per_minute},
        "rejected_code": 429,
        "rejected_msg": REJECTED_MSG,
        "failure_mode_deny": failure_mode_deny,
        "redis": {"webdis_cluster": WEBDIS_CLUSTER, "timeout": REDIS_TIMEOUT_MS},
    })
}

fn per_header_config(rule_name: &str, header: &str, per_minute: u64) -> Value {
    json!({
        "rule_name": rule_name,
        "rule_items": [{
            "limit_by_per_header": header,
            "limit_keys": [{"key": "*", "token_per_minute": per_minute}],
        }],
        "rejected_code": 429,
        "rejected_msg": REJECTED_MSG,
        "failure_mode_deny": false,
        "redis": {"webdis_cluster": WEBDIS_CLUSTER, "timeout": REDIS_TIMEOUT_MS},
    })
}

/// An OpenAI chat request body.
fn chat(stream: bool) -> Value {
    json!({
        "model": "test-model",
        "messages": [{"role": "user", "content": "Say hello"}],
        "stream": stream,
    })
}

/// Redis, webdis, the scripted upstream and Envoy running the plugin, with
/// every request routed to the upstream.
#[derive(Debug)]
struct QuotaStack {
    // Drop order: Envoy first, so it never sees its backends vanish first.
    envoy: Envoy,
    upstream: Upstream,
    /// Between Envoy and webdis when the test wants slow Redis calls.
    relay: Option<Relay>,
    /// Only held, so it lives (and dies) with the stack.
    _webdis: Webdis,
    redis: Redis,
    rule: String,
}

impl QuotaStack {
    /// Starts everything; `allow_stop_iteration` sets the Wasm
    /// `PluginConfig.allow_on_headers_stop_iteration`.
    fn start(config: &Value, allow_stop_iteration: bool) -> Self {
        Self::start_with_latency(config, allow_stop_iteration, None)
    }

    /// Like [`QuotaStack::start`]; with `redis_latency`, Envoy reaches
    /// webdis through a [`Relay`] adding that much each way.
    fn start_with_latency(
        config: &Value,
        allow_stop_iteration: bool,
        redis_latency: Option<Duration>,
    ) -> Self {
        Self::start_module(
            token_quota_wasm(),
            config,
            allow_stop_iteration,
            redis_latency,
        )
    }

    /// Like [`QuotaStack::start_with_latency`], loading the module `wasm`.
    fn start_module(
        wasm: PathBuf,
        config: &Value,
        allow_stop_iteration: bool,
        redis_latency: Option<Duration>,
    ) -> Self {
        let rule = config["rule_name"]
            .as_str()
            .unwrap_or_else(|| panic!("config without rule_name: {config}"))
            .to_owned();
        let redis = Redis::start();
        let webdis = Webdis::start(redis.port());
        let upstream = Upstream::start();
        let relay = redis_latency.map(|delay| Relay::start(webdis.port(), delay));
        let webdis_port = relay.as_ref().map_or(webdis.port(), Relay::port);
        let plugin = WasmPlugin::new(wasm, config.to_string())
            .allow_on_headers_stop_iteration(allow_stop_iteration);
        let envoy = Envoy::start(llm_envoy(
            plugin,
            webdis_port,
            upstream.port(),
            LlmProtocol::Http1,
        ));
        Self {
            envoy,
            upstream,
            relay,
            _webdis: webdis,
            redis,
            rule,
        }
    }

    /// One request through Envoy within [`REQUEST_TIMEOUT`].
    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> std::io::Result<Response> {
        request_with_timeout(
            self.envoy.port(),
            method,
            path,
            headers,
            body,
            REQUEST_TIMEOUT,
        )
    }

    /// `POST /v1/chat/completions` with `body` as JSON and extra `headers`.
    ///
    /// # Panics
    /// If no complete answer arrives in time, with the Envoy log.
    fn chat(&self, headers: &[(&str, &str)], body: &Value) -> Response {
        let bytes = body.to_string();
        let mut all = vec![JSON];
        all.extend_from_slice(headers);
        self.send("POST", CHAT, &all, Body::Fixed(bytes.as_bytes()))
            .unwrap_or_else(|e| self.hung("POST /v1/chat/completions", &e))
    }

    fn hung(&self, what: &str, e: &std::io::Error) -> ! {
        panic!(
            "{what} through Envoy got no answer: {e}\nupstream saw {} requests, errors {:?}\n\
             Envoy log:\n{}",
            self.upstream.request_count(),
            self.upstream.errors(),
            stack::envoy_log_excerpt(&self.envoy.log(), 30)
        )
    }

    /// The one counter whose key contains the rule name and `part`, read
    /// over RESP.
    ///
    /// # Panics
    /// If there is not exactly one such key, or it is not an integer string.
    fn counter(&self, part: &str) -> i64 {
        let keys = keys_with(&self.redis, &self.rule, part);
        let shown = |keys: &[Vec<u8>]| {
            keys.iter()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect::<Vec<_>>()
        };
        let [key] = keys.as_slice() else {
            panic!(
                "expected one Redis key containing {:?} and {part:?}, found {:?}; all keys: {:?}",
                self.rule,
                shown(&keys),
                shown(&self.redis.keys())
            )
        };
        match self.redis.command(&[b"GET", key]) {
            Ok(Resp::Bulk(Some(value))) => String::from_utf8_lossy(&value)
                .parse()
                .unwrap_or_else(|_| panic!("counter {:?} holds {value:?}", shown(&keys))),
            other => panic!("GET {:?} answered {other:?}", shown(&keys)),
        }
    }

    /// Requests while Redis is unavailable: every one answered with
    /// `status` within `bound`, and a passed one with the upstream's answer.
    fn assert_answers_while_unavailable(&self, status: u16, bound: Duration, label: &str) {
        let expected = Reply::openai(ANSWER_USAGE).body_bytes();
        for i in 0..3 {
            let r = self
                .send(
                    "POST",
                    CHAT,
                    &[JSON],
                    Body::Fixed(chat(false).to_string().as_bytes()),
                )
                .unwrap_or_else(|e| panic!("{label}: request {i} got no answer: {e}"));
            assert_eq!(r.status, status, "{label}: request {i}: {}", summary(&r));
            assert!(
                r.elapsed <= bound,
                "{label}: request {i} took {:?}, more than {bound:?}",
                r.elapsed
            );
            if status == 200 {
                assert_eq!(r.body, expected, "{label}: request {i}");
            }
        }
    }
}

/// The usage of the scripted JSON answers: 100 tokens, so a 250-token quota
/// admits three answers (300 >= 250) and refuses the fourth request.
const ANSWER_USAGE: Usage = Usage {
    prompt: 40,
    completion: 60,
    total: Some(100),
};

/// Status and the three `X-TokenRateLimit-*` headers.
fn summary(r: &Response) -> String {
    format!(
        "{} limit={:?} remaining={:?} reset={:?} body={:?}",
        r.status,
        r.header("x-tokenratelimit-limit"),
        r.header("x-tokenratelimit-remaining"),
        r.header("x-tokenratelimit-reset"),
        r.text().chars().take(80).collect::<String>(),
    )
}

fn statuses(responses: &[&Response]) -> Vec<u16> {
    responses.iter().map(|r| r.status).collect()
}

fn assert_rejected(r: &Response, limit: i64, window_start: u64) {
    e2e::assert_refusal(
        r,
        &summary(r),
        &e2e::TOKEN_RATE_LIMIT_HEADERS,
        REJECTED_MSG,
        limit,
        window_start,
    );
}

/// A body that arrived with `framing` is exactly `body` long when the framing
/// says a length (the upstream read exactly that many bytes, so a wrong
/// length shows as a truncated or never-ending body instead).
fn assert_framing_matches(seen: &RecordedRequest, label: &str) {
    match seen.framing {
        Framing::ContentLength(len) => {
            assert_eq!(len, seen.body.len(), "{label}");
            assert_eq!(
                seen.header("content-length"),
                Some(len.to_string().as_str()),
                "{label}"
            );
        }
        Framing::Chunked { .. } => assert!(
            seen.header("content-length").is_none(),
            "{label}: chunked with a content-length too: {:?}",
            seen.headers
        ),
        Framing::None => panic!("{label}: a request with a body arrived without one"),
    }
}

#[test]
fn json_usage_is_charged_until_the_quota_is_spent() {
    let stack = QuotaStack::start(&global_config(&rule_name("json"), 250, false), false);
    stack.upstream.set_default(Reply::openai(ANSWER_USAGE));
    let expected = Reply::openai(ANSWER_USAGE).body_bytes();

    let window = room_in_minute_for(4);
    let answers = send_all(
        4,
        |_| {
            stack.send(
                "POST",
                CHAT,
                &[JSON],
                Body::Fixed(chat(false).to_string().as_bytes()),
            )
        },
        || stack.envoy.log(),
    );
    e2e::assert_same_window(window);

    let all: Vec<&Response> = answers.iter().collect();
    assert_eq!(
        statuses(&all),
        [200, 200, 200, 429],
        "{:#?}",
        answers.iter().map(summary).collect::<Vec<_>>()
    );
    for r in &answers[..3] {
        assert_eq!(r.body, expected, "{}", summary(r));
    }
    // 300 tokens used >= 250: the fourth is refused before reaching the API.
    assert_rejected(&answers[3], 250, window);
    assert_eq!(stack.upstream.request_count(), 3);
    assert_eq!(stack.counter(""), 300);
}

#[test]
fn json_usage_formats_are_charged() {
    let stack = QuotaStack::start(&global_config(&rule_name("formats"), 100_000, false), false);
    let window = room_in_minute_for(3);
    // `total_tokens` wins over the sum when both are there (70, not 50).
    stack
        .upstream
        .push(Reply::openai(Usage::new(30, 20).with_total(70)));
    // Without it, prompt + completion.
    stack
        .upstream
        .push(Reply::openai(Usage::new(30, 20).without_total()));
    // Anthropic: input + output.
    stack.upstream.push(Reply::anthropic(7, 5));

    let mut charged = Vec::new();
    for _ in 0..3 {
        let r = stack.chat(&[], &chat(false));
        assert_eq!(r.status, 200, "{}", summary(&r));
        // Charged before the last bytes of the answer were released, so
        // the counter is final now.
        charged.push(stack.counter(""));
    }
    e2e::assert_same_window(window);
    assert_eq!(charged, [70, 120, 132]);
}

#[test]
fn a_streamed_answer_is_charged_the_usage_of_its_final_event() {
    let stack = QuotaStack::start(&global_config(&rule_name("sse"), 100_000, false), false);
    let window = room_in_minute_for(2);

    // The usage object cut 13 bytes in: `{"prompt_toke` | `ns":123,...`.
    let plain = OpenAiStream::new(Usage::new(123, 77)).usage_split(13);
    // Every word event carries a smaller running usage; only the last counts.
    let running = OpenAiStream::new(Usage::new(5, 40))
        .usage_split(30)
        .running_usage(true);
    let mut charged = Vec::new();
    for stream in [&plain, &running] {
        stack.upstream.push(Reply::openai_stream(stream));
        let r = stack.chat(&[], &chat(true));
        assert_eq!(r.status, 200, "{}", summary(&r));
        assert_eq!(r.header("content-type"), Some("text/event-stream"));
        assert_eq!(
            r.text(),
            String::from_utf8(stream.bytes()).unwrap(),
            "the client did not get the stream byte for byte"
        );
        charged.push(stack.counter(""));
    }
    e2e::assert_same_window(window);
    assert_eq!(charged, [200, 245]);
}

#[test]
fn answers_are_held_until_their_usage_is_charged() {
    // With webdis 100 ms away each way, a charge takes 200 ms or more: an
    // answer released before its charge is complete shows as a counter that
    // has not moved yet when the client has the whole answer. (On plain
    // loopback the charge usually lands first anyway, which hides this.)
    let delay = Duration::from_millis(100);
    let stack = QuotaStack::start_with_latency(
        &global_config(&rule_name("held"), 100_000, false),
        false,
        Some(delay),
    );
    let window = stack::wait_for_window_room(Duration::from_secs(60), Duration::from_secs(10));
    // The stream first: its charge also gets the plugin's script into Redis,
    // so the JSON answers after it test the order alone.
    let answers = [
        Reply::openai_stream(&OpenAiStream::new(Usage::new(123, 77))),
        Reply::openai(ANSWER_USAGE),
        Reply::anthropic(7, 5),
    ];
    let mut expected = 0;
    for (answer, charge) in answers.iter().zip([200, 100, 12]) {
        stack.upstream.push(answer.clone());
        let stream = matches!(answer.body, stack::ReplyBody::Chunked { .. });
        let r = stack.chat(&[], &chat(stream));
        assert_eq!(r.status, 200, "{}", summary(&r));
        assert_eq!(r.body, answer.body_bytes());
        expected += charge;
        let on_arrival = stack.counter("");
        if on_arrival != expected {
            std::thread::sleep(Duration::from_secs(1));
            panic!(
                "{} answer: the counter was {on_arrival} when the client had the whole answer \
                 ({:?} after sending), {} a second later; expected {expected}: the answer was \
                 released before its usage was charged",
                answer.headers[0].1,
                r.elapsed,
                stack.counter("")
            );
        }
    }
    e2e::assert_same_window(window);
    assert!(stack.relay.as_ref().is_some_and(|r| r.connections() > 0));
}

/// The request rewrite under one `allow_on_headers_stop_iteration` setting.
fn streaming_requests_ask_for_usage(allow_stop_iteration: bool) {
    let label = format!("allow_on_headers_stop_iteration={allow_stop_iteration}");
    let stack = QuotaStack::start(
        &global_config(&rule_name("include"), 100_000, false),
        allow_stop_iteration,
    );
    stack
        .upstream
        .set_default(Reply::openai_stream(&OpenAiStream::new(Usage::new(3, 4))));

    let plain = chat(true);
    let mut with_options = chat(true);
    with_options["stream_options"] = json!({"continuous_usage_stats": true});
    let cases = [
        // The first request also runs the kit's probe of the setting.
        ("stream, no stream_options", plain.clone()),
        ("stream, again", plain.clone()),
        ("stream_options without include_usage", with_options),
    ];
    for (what, body) in &cases {
        let sent = body.to_string();
        let r = stack
            .send("POST", CHAT, &[JSON], Body::Fixed(sent.as_bytes()))
            .unwrap_or_else(|e| stack.hung(&format!("{label}: {what}"), &e));
        assert_eq!(r.status, 200, "{label}: {what}: {}", summary(&r));
        assert!(r.elapsed < PROMPT, "{label}: {what} took {:?}", r.elapsed);
        let seen = stack.upstream.requests().pop().unwrap();
        let mut expected = body.clone();
        expected["stream_options"]["include_usage"] = json!(true);
        assert_eq!(seen.json(), expected, "{label}: {what}");
        if allow_stop_iteration {
            // Headers were held until the body was rewritten: the length
            // can be, and must be, the new one.
            assert_eq!(
                seen.framing,
                Framing::ContentLength(seen.body.len()),
                "{label}: {what}: {:?}",
                seen.headers
            );
        }
        assert_framing_matches(&seen, &format!("{label}: {what}"));
    }

    // A streaming body that arrives in pieces, cut inside a key, with no
    // length up front.
    let sent = plain.to_string();
    let (a, rest) = sent.split_at(10);
    let (b, c) = rest.split_at(rest.len() / 2);
    let parts: &[&[u8]] = &[a.as_bytes(), b.as_bytes(), c.as_bytes()];
    let r = stack
        .send(
            "POST",
            CHAT,
            &[JSON],
            Body::Chunked {
                parts,
                pause: Duration::from_millis(30),
            },
        )
        .unwrap_or_else(|e| stack.hung(&format!("{label}: chunked request"), &e));
    assert_eq!(r.status, 200, "{label}: chunked request: {}", summary(&r));
    let seen = stack.upstream.requests().pop().unwrap();
    let mut expected = plain.clone();
    expected["stream_options"] = json!({"include_usage": true});
    assert_eq!(seen.json(), expected, "{label}: chunked request");
    assert_framing_matches(&seen, &format!("{label}: chunked request"));

    // Requests that need no change go as they are, byte for byte.
    let mut asking = chat(true);
    asking["stream_options"] = json!({"include_usage": true});
    for body in [chat(false), asking] {
        let sent = body.to_string();
        let r = stack
            .send("POST", CHAT, &[JSON], Body::Fixed(sent.as_bytes()))
            .unwrap_or_else(|e| stack.hung(&format!("{label}: {sent}"), &e));
        assert_eq!(r.status, 200, "{label}: {sent}: {}", summary(&r));
        let seen = stack.upstream.requests().pop().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&seen.body),
            sent,
            "{label}: changed"
        );
        assert_framing_matches(&seen, &format!("{label}: {sent}"));
    }
    assert_eq!(stack.upstream.request_count(), 6);
    assert_eq!(stack.upstream.errors(), Vec::<String>::new(), "{label}");
}

#[test]
fn streaming_requests_ask_for_usage_with_stop_iteration_honoured() {
    streaming_requests_ask_for_usage(true);
}

#[test]
fn streaming_requests_ask_for_usage_with_stop_iteration_ignored() {
    streaming_requests_ask_for_usage(false);
}

/// `GET` without a body under one setting: answered promptly, each time.
fn bodiless_requests_never_hang(allow_stop_iteration: bool) {
    let label = format!("allow_on_headers_stop_iteration={allow_stop_iteration}");
    let stack = QuotaStack::start(
        &global_config(&rule_name("nobody"), 100_000, false),
        allow_stop_iteration,
    );
    let models = r#"{"object":"list","data":[]}"#;
    stack.upstream.set_default(Reply::json(200, models));
    for i in 0..3 {
        let r = stack
            .send("GET", "/v1/models", &[], Body::None)
            .unwrap_or_else(|e| stack.hung(&format!("{label}: GET {i}"), &e));
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, models),
            "{label}: GET {i}"
        );
        assert!(r.elapsed < PROMPT, "{label}: GET {i} took {:?}", r.elapsed);
    }
    let seen = stack.upstream.requests();
    assert_eq!(seen.len(), 3, "{label}");
    for s in &seen {
        assert_eq!(
            (s.method.as_str(), s.framing),
            ("GET", Framing::None),
            "{label}"
        );
    }
}

#[test]
fn bodiless_requests_never_hang_with_stop_iteration_honoured() {
    bodiless_requests_never_hang(true);
}

#[test]
fn bodiless_requests_never_hang_with_stop_iteration_ignored() {
    bodiless_requests_never_hang(false);
}

/// A 4096-byte JSON body against `max_body_bytes: 1024` under one setting.
fn oversized_bodies_get_413(allow_stop_iteration: bool) {
    let label = format!("allow_on_headers_stop_iteration={allow_stop_iteration}");
    let mut config = global_config(&rule_name("large"), 100_000, false);
    config["max_body_bytes"] = json!(1024);
    let stack = QuotaStack::start(&config, allow_stop_iteration);

    let mut body = chat(true);
    let overhead = body.to_string().len() + r#","pad":"""#.len();
    body["pad"] = json!("x".repeat(4096 - overhead));
    let sent = body.to_string();
    assert_eq!(sent.len(), 4096);
    for i in 0..2 {
        let r = stack
            .send("POST", CHAT, &[JSON], Body::Fixed(sent.as_bytes()))
            .unwrap_or_else(|e| stack.hung(&format!("{label}: large body {i}"), &e));
        assert_eq!(r.status, 413, "{label}: large body {i}: {}", summary(&r));
        assert!(
            r.elapsed < PROMPT,
            "{label}: large body {i} took {:?}",
            r.elapsed
        );
    }
    // Without the setting, the headers may have gone upstream before the
    // body was measured; the body itself must never arrive whole.
    assert_eq!(stack.upstream.requests(), Vec::new(), "{label}");
}

#[test]
fn oversized_bodies_get_413_with_stop_iteration_honoured() {
    oversized_bodies_get_413(true);
}

#[test]
fn oversized_bodies_get_413_with_stop_iteration_ignored() {
    oversized_bodies_get_413(false);
}

/// Per-key quotas under one setting: the key comes from a request header,
/// which the plugin may read only after the body is in.
fn separate_keys_have_separate_quotas(allow_stop_iteration: bool) {
    let label = format!("allow_on_headers_stop_iteration={allow_stop_iteration}");
    let stack = QuotaStack::start(
        &per_header_config(&rule_name("perkey"), "x-api-key", 250),
        allow_stop_iteration,
    );
    stack.upstream.set_default(Reply::openai(ANSWER_USAGE));
    let keys = ["alice", "bob"];

    let window = room_in_minute_for(8);
    // Interleaved, so a shared counter would show at once.
    let answers = send_all(
        8,
        |i| {
            stack.send(
                "POST",
                CHAT,
                &[JSON, ("x-api-key", keys[i % 2])],
                Body::Fixed(chat(false).to_string().as_bytes()),
            )
        },
        || stack.envoy.log(),
    );
    e2e::assert_same_window(window);

    for (k, key) in keys.iter().enumerate() {
        let mine: Vec<&Response> = answers.iter().skip(k).step_by(2).collect();
        assert_eq!(
            statuses(&mine),
            [200, 200, 200, 429],
            "{label}: key {key}: {:#?}\nEnvoy log:\n{}",
            mine.iter().map(|r| summary(r)).collect::<Vec<_>>(),
            stack::envoy_log_excerpt(&stack.envoy.log(), 12)
        );
        assert_rejected(mine[3], 250, window);
        assert_eq!(stack.counter(key), 300, "{label}: key {key}");
    }
    assert_eq!(stack.upstream.request_count(), 6, "{label}");
}

#[test]
fn separate_keys_have_separate_quotas_with_stop_iteration_honoured() {
    separate_keys_have_separate_quotas(true);
}

#[test]
fn separate_keys_have_separate_quotas_with_stop_iteration_ignored() {
    separate_keys_have_separate_quotas(false);
}

/// Two Redis interactions per request at most (read the usage before, charge
/// it after), each bounded by `redis.timeout`.
fn unavailable_bound() -> Duration {
    Duration::from_millis(2 * REDIS_TIMEOUT_MS) + MARGIN
}

#[test]
fn redis_down_fails_open_by_default() {
    let mut stack = QuotaStack::start(&global_config(&rule_name("down-open"), 250, false), false);
    stack.upstream.set_default(Reply::openai(ANSWER_USAGE));
    assert_eq!(stack.chat(&[], &chat(false)).status, 200);
    stack.redis.stop();
    stack.assert_answers_while_unavailable(
        200,
        unavailable_bound(),
        "Redis killed, failure_mode_deny false",
    );
    assert_eq!(stack.upstream.request_count(), 4);
}

#[test]
fn redis_down_fails_closed_with_failure_mode_deny() {
    let mut stack = QuotaStack::start(&global_config(&rule_name("down-closed"), 250, true), false);
    stack.upstream.set_default(Reply::openai(ANSWER_USAGE));
    assert_eq!(stack.chat(&[], &chat(false)).status, 200);
    stack.redis.stop();
    stack.assert_answers_while_unavailable(
        503,
        unavailable_bound(),
        "Redis killed, failure_mode_deny true",
    );
    assert_eq!(stack.upstream.request_count(), 1);
}

#[test]
fn hung_redis_fails_open_within_the_timeouts() {
    // A frozen Redis makes webdis wait forever (see tests/webdis.rs): only
    // the plugin's own `redis.timeout` can release the request, and then
    // the answer held for its charge.
    let mut stack = QuotaStack::start(&global_config(&rule_name("hung-open"), 250, false), false);
    stack.upstream.set_default(Reply::openai(ANSWER_USAGE));
    assert_eq!(stack.chat(&[], &chat(false)).status, 200);
    stack.redis.freeze();
    stack.assert_answers_while_unavailable(
        200,
        unavailable_bound(),
        "Redis hung, failure_mode_deny false",
    );
    stack.redis.thaw();
}

#[test]
fn hung_redis_fails_closed_within_the_timeout() {
    let mut stack = QuotaStack::start(&global_config(&rule_name("hung-closed"), 250, true), false);
    stack.upstream.set_default(Reply::openai(ANSWER_USAGE));
    assert_eq!(stack.chat(&[], &chat(false)).status, 200);
    stack.redis.freeze();
    stack.assert_answers_while_unavailable(
        503,
        unavailable_bound(),
        "Redis hung, failure_mode_deny true",
    );
    stack.redis.thaw();
}

/// A `text/plain` body under one setting reaches the upstream unchanged.
fn non_json_bodies_pass_untouched(allow_stop_iteration: bool) {
    let label = format!("allow_on_headers_stop_iteration={allow_stop_iteration}");
    let stack = QuotaStack::start(
        &global_config(&rule_name("plain"), 100_000, false),
        allow_stop_iteration,
    );
    // Looks a little like a streaming request, is not JSON, is not UTF-8.
    let mut sent = br#"not JSON: {"stream": true, "#.to_vec();
    sent.extend_from_slice(&[0xff, 0x00, b'\r', b'\n']);
    for i in 0..2 {
        let r = stack
            .send(
                "POST",
                "/v1/echo",
                &[("content-type", "text/plain")],
                Body::Fixed(&sent),
            )
            .unwrap_or_else(|e| stack.hung(&format!("{label}: text body {i}"), &e));
        assert_eq!(r.status, 200, "{label}: text body {i}: {}", summary(&r));
        let seen = stack.upstream.requests().pop().unwrap();
        assert_eq!(seen.body, sent, "{label}: text body {i}");
        assert_eq!(seen.header("content-type"), Some("text/plain"), "{label}");
        assert_framing_matches(&seen, &format!("{label}: text body {i}"));
    }
}

#[test]
fn non_json_bodies_pass_untouched_with_stop_iteration_honoured() {
    non_json_bodies_pass_untouched(true);
}

#[test]
fn non_json_bodies_pass_untouched_with_stop_iteration_ignored() {
    non_json_bodies_pass_untouched(false);
}

/// Zero allocation inside Envoy: the `heap-stats` build (`bash
/// scripts/build.sh --heap-stats`) publishes its heap allocation count;
/// after a warm-up, JSON and streamed chat requests (bodies buffered and
/// rewritten, quota read, answers scanned, usage charged) must not move it.
#[test]
fn chat_requests_allocate_nothing_inside_envoy() {
    let wasm = e2e::heap_stats_wasm("token_quota");
    let config = global_config(&rule_name("heap"), 1_000_000_000, false);
    let stack = QuotaStack::start_module(wasm, &config, true, None);
    stack.upstream.set_default(Reply::openai(ANSWER_USAGE));
    let stream = OpenAiStream::new(Usage::new(12, 30)).usage_split(9);
    let run = |requests: usize| {
        for _ in 0..requests {
            let r = stack.chat(&[], &chat(false));
            assert_eq!(r.status, 200, "{}", summary(&r));
            stack.upstream.push(Reply::openai_stream(&stream));
            let r = stack.chat(&[], &chat(true));
            assert_eq!(r.status, 200, "{}", summary(&r));
        }
    };
    run(30);
    // The counter's replies grow a digit now and then (4 to 5 digits
    // within this run), and a longer reply grows the reply buffer once:
    // warm-up, not a cost per request. Seven digits from here on.
    for key in stack.redis.keys() {
        if String::from_utf8_lossy(&key).contains(&stack.rule) {
            stack.redis.command(&[b"INCRBY", &key, b"1000000"]).unwrap();
        }
    }
    run(5);
    let name = "token-quota.heap_allocations";
    let warm = e2e::settled_counter(&stack.envoy, name);
    assert!(
        warm > 0,
        "no allocation counted at all: is this the heap-stats build?"
    );
    // Tokens charged in all windows so far (the run may cross a minute).
    let charged = || -> i64 {
        stack
            .redis
            .keys()
            .into_iter()
            .filter(|k| String::from_utf8_lossy(k).contains(&stack.rule))
            .map(|k| match stack.redis.command(&[b"GET", &k]) {
                Ok(Resp::Bulk(Some(v))) => String::from_utf8_lossy(&v).parse::<i64>().unwrap(),
                other => panic!("GET answered {other:?}"),
            })
            .sum()
    };
    let charged_before = charged();
    run(100);
    let after = e2e::settled_counter(&stack.envoy, name);
    assert_eq!(
        after - warm,
        0,
        "200 warm chat requests (100 JSON, 100 streamed) made {} heap allocations in the module",
        after - warm
    );
    // They were really charged: 100 x ANSWER_USAGE (100) + 100 x (12 + 30).
    assert_eq!(charged() - charged_before, 100 * 100 + 100 * 42);
}
