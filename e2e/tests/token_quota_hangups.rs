//! The token quota when answers do not end the normal way, end to end:
//! `token_quota.wasm` in a real Envoy 1.40, a slow upstream the test drives
//! step by step ([`SlowUpstream`]: content events, the usage event of 30
//! tokens, `data: [DONE]`, each when the test says), real Redis through
//! webdis, and clients that really close their TCP connection mid-answer.
//!
//! Each row of the table of issue 20 is a test, with the charge read
//! straight from Redis: a client that hangs up after the usage was
//! reported is charged it; one that hangs up before is charged the
//! estimate (request and response body bytes, 4 a token, rounded up). The
//! usage event (and a JSON answer) must reach the client within one Redis
//! round trip of the upstream sending it, not when the upstream closes the
//! stream, seconds later.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use e2e::slow_upstream::{Script, SlowUpstream, Step};
use e2e::token_quota::{charged_to, llm_envoy, per_user_config, token_quota_plugin, LlmProtocol};
use e2e::unique_rule_name;
use serde_json::json;
use stack::{Envoy, Redis, Relay, Webdis};

/// The gap the upstream leaves where a test wants the answer to stall: far
/// longer than a Redis round trip, so waiting for it shows.
const GAP: Duration = Duration::from_secs(2);
/// A short gap between events.
const BEAT: Duration = Duration::from_millis(50);
/// How late the usage event (or a JSON answer) may reach the client after
/// the upstream sent it: one Redis round trip on loopback plus a loaded
/// 2-core machine, and well under [`GAP`].
const PROMPT: Duration = Duration::from_millis(1000);
/// How long a charge may take to show in Redis after a client left.
const SETTLE: Duration = Duration::from_secs(3);
/// The estimate's bytes a token (the default of `estimate_bytes_per_token`).
const BYTES_PER_TOKEN: usize = 4;

const CONTENT: &str =
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello there\"}}]}\n\n";
const USAGE: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":20,\"total_tokens\":30}}\n\n";
const DONE: &str = "data: [DONE]\n\n";
/// A JSON answer in two parts; the second carries the usage and the end.
const JSON_HEAD: &str = "{\"id\":\"c2\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hello there\"},\"finish_reason\":\"stop\"}],";
const JSON_TAIL: &str =
    "\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":20,\"total_tokens\":30},\"system_fingerprint\":\"fp_t\"}";

/// The steps of a streamed answer: three content events, the usage event
/// after `before_usage`, `[DONE]` after `before_done`, the end after
/// `before_end`. Step indexes: usage 4, `[DONE]` 6, end 8.
fn stream_script(before_usage: Duration, before_done: Duration, before_end: Duration) -> Script {
    Script {
        content_type: "text/event-stream",
        steps: vec![
            Step::Chunk(CONTENT.into()),
            Step::Chunk(CONTENT.into()),
            Step::Chunk(CONTENT.into()),
            Step::Pause(before_usage),
            Step::Chunk(USAGE.into()),
            Step::Pause(before_done),
            Step::Chunk(DONE.into()),
            Step::Pause(before_end),
            Step::End,
        ],
    }
}
const USAGE_STEP: usize = 4;
const DONE_STEP: usize = 6;

/// A JSON answer: its head, its tail after `before_tail` (step 2), the end
/// after `before_end`.
fn json_script(before_tail: Duration, before_end: Duration) -> Script {
    Script {
        content_type: "application/json",
        steps: vec![
            Step::Chunk(JSON_HEAD.into()),
            Step::Pause(before_tail),
            Step::Chunk(JSON_TAIL.into()),
            Step::Pause(before_end),
            Step::End,
        ],
    }
}
const JSON_HEAD_STEP: usize = 0;
const JSON_TAIL_STEP: usize = 2;

/// A streaming chat request body, as a client sends it.
fn chat_body() -> String {
    json!({
        "model": "test-model",
        "messages": [{"role": "user", "content": "Say hello"}],
        "stream": true,
    })
    .to_string()
}

/// The estimate for an answer cut after `response` body bytes.
fn estimate(response: usize) -> i64 {
    let bytes = chat_body().len() + response;
    bytes.div_ceil(BYTES_PER_TOKEN) as i64
}

/// Redis, webdis (behind a latency relay if asked), the slow upstream and
/// Envoy running the token quota, every request routed to the upstream.
struct Stack {
    envoy: Envoy,
    upstream: SlowUpstream,
    _relay: Option<Relay>,
    _webdis: Webdis,
    redis: Redis,
    rule: String,
}

impl Stack {
    fn start(label: &str, redis_latency: Option<Duration>) -> Self {
        Self::start_module(stack::wasm_path("token-quota"), label, redis_latency, None)
    }

    /// Like [`Stack::start`], loading `wasm`, with the route's whole-answer
    /// `timeout` if given.
    fn start_module(
        wasm: std::path::PathBuf,
        label: &str,
        redis_latency: Option<Duration>,
        route_timeout: Option<Duration>,
    ) -> Self {
        let rule = unique_rule_name(&format!("tqh-{label}"));
        let config = per_user_config(&rule, 2000);
        let redis = Redis::start();
        let webdis = Webdis::start(redis.port());
        let relay = redis_latency.map(|delay| Relay::start(webdis.port(), delay));
        let webdis_port = relay.as_ref().map_or(webdis.port(), Relay::port);
        let upstream = SlowUpstream::start();
        let plugin = token_quota_plugin(wasm, &config);
        let mut envoy_config = llm_envoy(plugin, webdis_port, upstream.port(), LlmProtocol::Http1);
        if let Some(timeout) = route_timeout {
            envoy_config = envoy_config.route_timeout(timeout);
        }
        let envoy = Envoy::start(envoy_config);
        Stack {
            envoy,
            upstream,
            _relay: relay,
            _webdis: webdis,
            redis,
            rule,
        }
    }

    /// Sends a streaming chat request as client `user`, with `script` as
    /// the upstream's answer.
    fn ask(&self, user: &str, script: Script) -> Client {
        self.upstream.answer_next(script);
        let client = Client::send(self.envoy.port(), user, &chat_body());
        let received = self.upstream.received(Duration::from_secs(5));
        let sent: serde_json::Value = serde_json::from_slice(&received.body).unwrap();
        assert_eq!(sent["stream_options"]["include_usage"], json!(true));
        client
    }

    /// The tokens charged to `user` in Redis (0 when no counter exists).
    fn charged(&self, user: &str) -> i64 {
        charged_to(&self.redis, &self.rule, user)
    }

    /// Waits until `user` has been charged `want` (within [`SETTLE`]), then
    /// a little longer to see that nothing more is charged.
    fn assert_charged(&self, user: &str, want: i64, row: &str) {
        let deadline = Instant::now() + SETTLE;
        while self.charged(user) != want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        let got = self.charged(user);
        assert_eq!(
            got,
            want,
            "{row}: charged {got} tokens, expected {want}\nEnvoy log:\n{}",
            stack::envoy_log_excerpt(&self.envoy.log(), 30)
        );
    }

    /// Counter `name` of the plugin in Envoy's stats, once the kit has
    /// published it (every second).
    fn counter(&self, name: &str) -> u64 {
        std::thread::sleep(Duration::from_millis(1500));
        self.envoy
            .stat(&format!("wasmcustom.token-quota.{name}"))
            .unwrap_or(0)
    }
}

/// An HTTP/1.1 client on a raw socket: it reads the answer as it arrives,
/// notes when each part did, and hangs up by closing its connection.
struct Client {
    stream: TcpStream,
    got: Vec<u8>,
}

impl Client {
    fn send(port: u16, user: &str, body: &str) -> Client {
        let mut stream = TcpStream::connect((stack::LOCALHOST, port)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let request = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: llm\r\ncontent-type: application/json\r\n\
             accept: text/event-stream\r\nx-user: {user}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        Client {
            stream,
            got: Vec::new(),
        }
    }

    /// Reads until `needle` has arrived, within `timeout`; when it came, or
    /// `None`.
    fn read_until(&mut self, needle: &str, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        let mut piece = [0u8; 8192];
        loop {
            if contains(&self.got, needle.as_bytes()) {
                return Some(Instant::now());
            }
            if Instant::now() >= deadline {
                return None;
            }
            match self.stream.read(&mut piece) {
                Ok(0) => return contains(&self.got, needle.as_bytes()).then(Instant::now),
                Ok(n) => self.got.extend_from_slice(&piece[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return None,
            }
        }
    }

    /// Reads until `needle` has arrived `n` times, within `timeout`.
    fn read_count(&mut self, needle: &str, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let count = |got: &[u8]| {
            got.windows(needle.len())
                .filter(|w| *w == needle.as_bytes())
                .count()
        };
        while count(&self.got) < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let had = self.got.len();
            // Any byte more will do: read a little and count again.
            let _ = self.read_until("\u{0}", left.min(Duration::from_millis(50)));
            if self.got.len() == had && Instant::now() >= deadline {
                return false;
            }
        }
        true
    }

    /// Reads until `needle` has arrived, or fails the test.
    fn expect(&mut self, needle: &str, timeout: Duration, row: &str) -> Instant {
        self.read_until(needle, timeout).unwrap_or_else(|| {
            panic!(
                "{row}: {needle:?} did not reach the client within {timeout:?}; it got {:?}",
                String::from_utf8_lossy(&self.got)
            )
        })
    }

    /// Hangs up: closes the TCP connection.
    fn hang_up(self) {
        drop(self.stream);
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Response body bytes of `n` content events.
fn content_bytes(n: usize) -> usize {
    n * CONTENT.len()
}

#[test]
fn a_client_that_reads_everything_is_charged_the_usage() {
    let stack = Stack::start("control", None);
    let mut client = stack.ask("control", stream_script(BEAT, BEAT, BEAT));
    client.expect(DONE, Duration::from_secs(5), "control");
    client.expect("0\r\n\r\n", Duration::from_secs(5), "control");
    client.hang_up();
    stack.assert_charged("control", 30, "never killed");
    assert_eq!(stack.counter("client_gone"), 0);
    assert_eq!(stack.counter("estimated_requests"), 0);
}

#[test]
fn a_client_gone_before_the_usage_event_is_charged_the_estimate() {
    let stack = Stack::start("before-usage", None);
    let mut client = stack.ask("early", stream_script(GAP, BEAT, BEAT));
    // All three content events, then the upstream stalls before the usage.
    let row = "killed after all content, before the usage event";
    assert!(
        client.read_count("Hello there", 3, Duration::from_secs(5)),
        "{row}: the content events did not all arrive"
    );
    client.hang_up();
    stack.assert_charged("early", estimate(content_bytes(3)), row);
    assert_eq!(stack.counter("client_gone"), 1, "{row}");
    assert_eq!(stack.counter("estimated_requests"), 1, "{row}");
    assert_eq!(
        stack.counter("estimated_tokens"),
        estimate(content_bytes(3)) as u64
    );
}

#[test]
fn a_client_gone_after_the_usage_event_is_charged_the_usage() {
    let stack = Stack::start("after-usage", None);
    let mut client = stack.ask("after-usage", stream_script(BEAT, GAP, BEAT));
    let sent = stack.upstream.wait_step(USAGE_STEP, Duration::from_secs(5));
    // The usage event is held only until its charge answers; a client that
    // does not see it in time hangs up anyway, as a real one would.
    let arrived = client.read_until("total_tokens", PROMPT);
    client.hang_up();
    let row = "killed after the upstream sent usage, before [DONE]";
    stack.assert_charged("after-usage", 30, row);
    let arrived = arrived.unwrap_or_else(|| panic!("{row}: the usage event was held back"));
    assert!(arrived.duration_since(sent) < PROMPT);
    assert_eq!(stack.counter("client_gone"), 1, "{row}");
    assert_eq!(stack.counter("estimated_requests"), 0, "{row}");
}

#[test]
fn a_client_gone_after_done_before_the_stream_closed_is_charged_the_usage() {
    let stack = Stack::start("after-done", None);
    let mut client = stack.ask("after-done", stream_script(BEAT, BEAT, GAP));
    let sent = stack.upstream.wait_step(DONE_STEP, Duration::from_secs(5));
    let arrived = client.read_until(DONE, PROMPT);
    client.hang_up();
    let row = "killed after usage and [DONE], before the stream closed";
    stack.assert_charged("after-done", 30, row);
    let arrived = arrived.unwrap_or_else(|| panic!("{row}: [DONE] was held back"));
    assert!(arrived.duration_since(sent) < PROMPT);
    assert_eq!(stack.counter("client_gone"), 1, "{row}");
}

#[test]
fn a_client_gone_while_the_charge_waits_on_redis_is_charged_the_usage() {
    // 400 ms each way between Envoy and webdis: the charge is in flight
    // for most of a second after the answer ended.
    let stack = Stack::start("charging", Some(Duration::from_millis(400)));
    let client = stack.ask("charging", stream_script(BEAT, BEAT, BEAT));
    stack
        .upstream
        .wait_step(USAGE_STEP + 4, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(100));
    client.hang_up();
    stack.assert_charged(
        "charging",
        30,
        "killed while the charge was waiting on Redis",
    );
    assert_eq!(stack.counter("estimated_requests"), 0);
}

#[test]
fn an_http2_client_that_gives_up_before_the_usage_event_is_charged_the_estimate() {
    // curl over HTTP/2 (prior knowledge), asking for gzip like a real
    // client, with a 1 s deadline: it gives up while the upstream stalls
    // before the usage event, and closes its connection.
    let stack = Stack::start("http2", None);
    stack.upstream.answer_next(stream_script(GAP, BEAT, BEAT));
    let curl = stack::require_tool("curl", "curl");
    let body = chat_body();
    let output = std::process::Command::new(curl)
        .args([
            "--http2-prior-knowledge",
            "--compressed",
            "--no-buffer",
            "--silent",
        ])
        .args(["--max-time", "1"])
        .args(["-H", "content-type: application/json", "-H", "x-user: h2"])
        .args(["--data-binary", &body])
        .arg(format!(
            "http://127.0.0.1:{}/v1/chat/completions",
            stack.envoy.port()
        ))
        .output()
        .unwrap();
    // 28: curl's own timeout, after the content events arrived.
    assert_eq!(output.status.code(), Some(28), "{output:?}");
    let got = String::from_utf8_lossy(&output.stdout);
    assert_eq!(got.matches("Hello there").count(), 3, "{got}");
    let row = "HTTP/2 client gone before the usage event";
    stack.assert_charged("h2", estimate(content_bytes(3)), row);
    assert_eq!(stack.counter("client_gone"), 1, "{row}");
    assert_eq!(stack.counter("estimated_requests"), 1, "{row}");
}

#[test]
fn an_upstream_reset_before_the_usage_event_is_charged_the_estimate() {
    let stack = Stack::start("upstream-reset", None);
    let script = Script {
        content_type: "text/event-stream",
        steps: vec![
            Step::Chunk(CONTENT.into()),
            Step::Chunk(CONTENT.into()),
            Step::Pause(Duration::from_millis(300)),
            Step::Cut,
        ],
    };
    let mut client = stack.ask("reset", script);
    stack.upstream.wait_step(3, Duration::from_secs(5));
    // Envoy ends the client's answer without its last chunk.
    client.read_until("0\r\n\r\n", Duration::from_secs(1));
    client.hang_up();
    stack.assert_charged(
        "reset",
        estimate(content_bytes(2)),
        "upstream reset before usage",
    );
    assert_eq!(stack.counter("upstream_reset"), 1);
    assert_eq!(stack.counter("estimated_requests"), 1);
}

#[test]
fn an_answer_cut_by_the_route_timeout_before_the_usage_is_charged_the_estimate() {
    // The route allows 1.5 s for the whole answer; the upstream stalls 2 s
    // before its usage event, so Envoy cuts the answer after the content.
    let stack = Stack::start_module(
        stack::wasm_path("token-quota"),
        "timeout",
        None,
        Some(Duration::from_millis(1500)),
    );
    let mut client = stack.ask("slow", stream_script(GAP, BEAT, BEAT));
    assert!(client.read_count("Hello there", 3, Duration::from_secs(5)));
    // Envoy resets the answer it had started; the client sees it end.
    client.read_until("\u{0}", Duration::from_secs(3));
    client.hang_up();
    let row = "cut by the route timeout before the usage event";
    stack.assert_charged("slow", estimate(content_bytes(3)), row);
    assert_eq!(stack.counter("timed_out"), 1, "{row}");
    assert_eq!(stack.counter("client_gone"), 0, "{row}");
    assert_eq!(stack.counter("estimated_requests"), 1, "{row}");
}

#[test]
fn the_usage_event_reaches_the_client_within_a_round_trip_not_at_the_close() {
    let stack = Stack::start("prompt", None);
    let mut client = stack.ask("prompt", stream_script(BEAT, BEAT, GAP));
    let usage_sent = stack.upstream.wait_step(USAGE_STEP, Duration::from_secs(5));
    let usage_seen = client.expect("total_tokens", Duration::from_secs(5), "usage");
    let done_sent = stack.upstream.wait_step(DONE_STEP, Duration::from_secs(5));
    let done_seen = client.expect(DONE, Duration::from_secs(5), "[DONE]");
    let usage_delay = usage_seen.duration_since(usage_sent);
    let done_delay = done_seen.duration_since(done_sent);
    eprintln!("usage event: {usage_delay:?} after the upstream sent it; [DONE]: {done_delay:?}");
    assert!(
        usage_delay < PROMPT,
        "the usage event reached the client {usage_delay:?} after the upstream sent it"
    );
    assert!(
        done_delay < PROMPT,
        "[DONE] reached the client {done_delay:?} late"
    );
    client.expect("0\r\n\r\n", Duration::from_secs(5), "end");
    client.hang_up();
    stack.assert_charged("prompt", 30, "usage then a slow close");
}

#[test]
fn a_json_answer_reaches_the_client_within_a_round_trip_of_its_end() {
    let stack = Stack::start("json-prompt", None);
    let mut client = stack.ask("json", json_script(BEAT, GAP));
    let sent = stack
        .upstream
        .wait_step(JSON_TAIL_STEP, Duration::from_secs(5));
    let seen = client.expect("fp_t\"}", Duration::from_secs(5), "JSON answer");
    let delay = seen.duration_since(sent);
    eprintln!("JSON answer: {delay:?} after the upstream sent its end");
    assert!(
        delay < PROMPT,
        "the JSON answer reached the client {delay:?} late"
    );
    assert!(contains(&client.got, JSON_HEAD.as_bytes()));
    client.hang_up();
    stack.assert_charged("json", 30, "JSON answer, slow close");
}

#[test]
fn a_client_gone_during_a_json_answer_is_charged_the_estimate() {
    let stack = Stack::start("json-early", None);
    let client = stack.ask("json-early", json_script(GAP, BEAT));
    stack
        .upstream
        .wait_step(JSON_HEAD_STEP, Duration::from_secs(5));
    // The head has passed the filter (which holds a JSON answer whole).
    std::thread::sleep(Duration::from_millis(300));
    client.hang_up();
    let row = "JSON answer, killed before its end";
    stack.assert_charged("json-early", estimate(JSON_HEAD.len()), row);
    assert_eq!(stack.counter("client_gone"), 1, "{row}");
    assert_eq!(stack.counter("estimated_requests"), 1, "{row}");
}

#[test]
fn a_client_gone_after_a_complete_json_answer_is_charged_the_usage() {
    let stack = Stack::start("json-late", None);
    let mut client = stack.ask("json-late", json_script(BEAT, GAP));
    stack
        .upstream
        .wait_step(JSON_TAIL_STEP, Duration::from_secs(5));
    let arrived = client.read_until("fp_t\"}", PROMPT);
    client.hang_up();
    let row = "JSON answer complete, killed before the stream closed";
    stack.assert_charged("json-late", 30, row);
    assert!(arrived.is_some(), "{row}: the JSON answer was held back");
    assert_eq!(stack.counter("estimated_requests"), 0, "{row}");
}

/// Zero allocation inside Envoy on the paths of this file: the `heap-stats`
/// build (`bash scripts/build.sh --heap-stats`) publishes its heap
/// allocation count; after a warm-up, clients that hang up before the usage
/// (the estimate, charged by a root call answered after the request is
/// gone) and after it (the charge sent mid-stream, the held bytes let go)
/// must not move it.
#[test]
fn hangups_allocate_nothing_inside_envoy() {
    let wasm = e2e::heap_stats_wasm("token_quota");
    let stack = Stack::start_module(wasm, "heap", None, None);
    let short = Duration::from_millis(300);
    let round = |i: usize| {
        let user = format!("heap{}", i % 4);
        let mut client = stack.ask(&user, stream_script(short, BEAT, BEAT));
        assert!(client.read_count("Hello there", 3, Duration::from_secs(5)));
        client.hang_up();
        let mut client = stack.ask(&user, stream_script(BEAT, short, BEAT));
        client.expect("total_tokens", Duration::from_secs(5), "heap round");
        client.hang_up();
    };
    for i in 0..10 {
        round(i);
    }
    let name = "token-quota.heap_allocations";
    let warm = e2e::settled_counter(&stack.envoy, name);
    assert!(
        warm > 0,
        "no allocation counted at all: is this the heap-stats build?"
    );
    let estimated = stack.counter("estimated_requests");
    for i in 0..20 {
        round(i);
    }
    let after = e2e::settled_counter(&stack.envoy, name);
    assert_eq!(
        after - warm,
        0,
        "40 warm requests whose clients hung up made {} heap allocations in the module",
        after - warm
    );
    assert_eq!(stack.counter("estimated_requests") - estimated, 20);
}
