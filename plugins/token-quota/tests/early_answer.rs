//! Answers that arrive before the plugin has decided on their request,
//! natively over the kit's `FakeHost`: what happens when the proxy does not
//! hold request headers (upstream Envoy without
//! `allow_on_headers_stop_iteration`, Higress with ABI 0.2.1 modules) and
//! the upstream answers from the headers alone. An answer arriving while
//! the quota read is in flight waits for it; one arriving before the body
//! (which the proxy then drops) has the quota read first. Either way it is
//! refused when the quota is spent and charged when admitted, with no
//! allocation.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use kit::fake::{allocations_during, CountingAllocator, FakeHost};
use kit::{Action, Filter, StreamId};
use std::time::Duration;
use token_quota::TokenQuota;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const REQUEST: &[u8] = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
const JSON: &[u8] = br#"{"choices":[{"message":{"content":"Hello"}}],"usage":{"prompt_tokens":10,"completion_tokens":20,"total_tokens":30}}"#;

struct Quota {
    filter: Filter<TokenQuota, FakeHost>,
    next_context: u32,
}

impl Quota {
    fn new() -> Quota {
        let mut filter = Filter::new(FakeHost::new());
        filter
            .configure(
                br#"{"rule_name": "early", "global_threshold": {"token_per_minute": 100},
                     "redis": {"webdis_cluster": "webdis"}}"#
                    .to_vec(),
            )
            .unwrap();
        Quota {
            filter,
            next_context: 2,
        }
    }

    fn host(&mut self) -> &mut FakeHost {
        self.filter.host_mut()
    }

    fn counter(&mut self, name: &str) -> u64 {
        self.filter.flush_counters();
        self.filter.host().counter(&format!("token-quota.{name}"))
    }

    fn calls(&mut self) -> u64 {
        self.host().calls_sent
    }

    /// The path of the last call (`/EVALSHA/...`: reads and charges both
    /// run the kit's counting script).
    fn last_call_path(&mut self) -> String {
        let call = self.host().last_call.clone().expect("a call");
        String::from_utf8_lossy(call.headers.get(":path").unwrap()).into_owned()
    }

    /// Answers the last call with RESP `reply`, as webdis would.
    fn answer(&mut self, reply: &[u8]) {
        let token = self.host().last_call.as_ref().expect("a call").token;
        self.host().answer_http(200, reply);
        self.filter
            .on_http_call_response(token, 1, reply.len(), true);
    }

    /// A chat request whose headers the proxy does not hold: the plugin
    /// asks to hold them, the proxy delivers no body meanwhile, and the
    /// kit lets them go after its probe. The request is then upstream.
    fn request_unheld(&mut self) -> StreamId {
        let host = self.host();
        host.next_request();
        host.request_headers.add(":method", b"POST");
        host.request_headers.add(":path", b"/v1/chat/completions");
        host.request_headers.add("content-length", b"57");
        host.request_body.extend_from_slice(REQUEST);
        host.response_headers.add(":status", b"200");
        host.response_headers
            .add("content-type", b"application/json");
        host.response_body.extend_from_slice(JSON);
        let context = self.next_context;
        self.next_context += 1;
        let stream = self.filter.open_stream(context);
        let resumed = self.host().resumed[0];
        if self.filter.on_request_headers(stream, false) == Action::Pause {
            self.host().advance(Duration::from_millis(150));
            self.filter.on_tick();
            assert_eq!(self.host().resumed[0], resumed + 1, "headers let go");
        }
        stream
    }

    /// The whole answer's body in one callback: charged, held until the
    /// charge answers, then released.
    fn answer_body_is_charged(&mut self, stream: StreamId, counter_after: &[u8]) {
        let resumed = self.host().resumed[1];
        assert_eq!(
            self.filter.on_response_body(stream, JSON.len(), true),
            Action::Pause,
            "held for its charge"
        );
        assert!(self.last_call_path().starts_with("/EVALSHA/"));
        self.answer(counter_after);
        assert_eq!(
            self.host().resumed[1],
            resumed + 1,
            "released after the charge"
        );
    }
}

#[test]
fn an_answer_arriving_while_the_quota_read_is_in_flight_waits_for_it() {
    let mut q = Quota::new();
    for (used, charged_after) in [(&b":0\r\n"[..], &b":30\r\n"[..]), (b":30\r\n", b":60\r\n")] {
        let stream = q.request_unheld();
        assert_eq!(
            q.filter.on_request_body(stream, REQUEST.len(), true),
            Action::Pause
        );
        assert!(
            q.last_call_path().starts_with("/EVALSHA/"),
            "the quota read"
        );
        let calls = q.calls();
        let resumed = q.host().resumed;
        // The upstream answered from the headers: the answer waits unseen.
        assert_eq!(q.filter.on_response_headers(stream, false), Action::Pause);
        assert_eq!(q.calls(), calls, "no call for the early answer");
        q.answer(used);
        assert_eq!(q.host().resumed[0], resumed[0] + 1, "the request goes on");
        assert_eq!(q.host().resumed[1], resumed[1] + 1, "then its answer");
        q.answer_body_is_charged(stream, charged_after);
        q.filter.close_stream(stream);
    }
    assert_eq!(q.counter("allowed"), 2);
    assert_eq!(q.counter("tokens"), 60);
    assert_eq!(q.counter("ended_otherwise"), 0);
}

#[test]
fn an_early_answer_is_refused_when_the_read_finds_the_quota_spent() {
    let mut q = Quota::new();
    let stream = q.request_unheld();
    assert_eq!(
        q.filter.on_request_body(stream, REQUEST.len(), true),
        Action::Pause
    );
    assert_eq!(q.filter.on_response_headers(stream, false), Action::Pause);
    let resumed = q.host().resumed[1];
    q.answer(b":100\r\n");
    let refusal = q.host().response.clone().expect("a local answer");
    assert_eq!(refusal.status, 429);
    assert_eq!(
        q.host().resumed[1],
        resumed,
        "the upstream's answer stays held"
    );
    q.filter.close_stream(stream);
    assert_eq!(q.counter("limited"), 1);
    assert_eq!(q.counter("tokens"), 0);
}

#[test]
fn an_answer_arriving_before_the_body_reads_the_quota_first() {
    let mut q = Quota::new();
    // Admitted: the read answers under the quota, the answer is charged.
    let stream = q.request_unheld();
    let calls = q.calls();
    assert_eq!(q.filter.on_response_headers(stream, false), Action::Pause);
    assert_eq!(q.calls(), calls + 1, "the quota read went out");
    assert!(q.last_call_path().starts_with("/EVALSHA/"));
    let resumed = q.host().resumed[1];
    q.answer(b":0\r\n");
    assert_eq!(q.host().resumed[1], resumed + 1, "admitted");
    q.answer_body_is_charged(stream, b":30\r\n");
    q.filter.close_stream(stream);
    // Refused: the read finds the quota spent.
    let stream = q.request_unheld();
    assert_eq!(q.filter.on_response_headers(stream, false), Action::Pause);
    q.answer(b":120\r\n");
    assert_eq!(q.host().response.as_ref().map(|r| r.status), Some(429));
    q.filter.close_stream(stream);
    assert_eq!(q.counter("allowed"), 1);
    assert_eq!(q.counter("limited"), 1);
    assert_eq!(q.counter("tokens"), 30);
}

#[test]
fn early_answers_allocate_nothing() {
    let mut q = Quota::new();
    let round = |q: &mut Quota| {
        // An answer while the read is in flight.
        let stream = q.request_unheld();
        q.filter.on_request_body(stream, REQUEST.len(), true);
        q.filter.on_response_headers(stream, false);
        q.answer(b":0\r\n");
        q.filter.on_response_body(stream, JSON.len(), true);
        q.answer(b":1\r\n");
        q.filter.close_stream(stream);
        // An answer before the body.
        let stream = q.request_unheld();
        q.filter.on_response_headers(stream, false);
        q.answer(b":0\r\n");
        q.filter.on_response_body(stream, JSON.len(), true);
        q.answer(b":1\r\n");
        q.filter.close_stream(stream);
    };
    for _ in 0..50 {
        round(&mut q);
    }
    let allocations = allocations_during(|| {
        for _ in 0..1_000 {
            round(&mut q);
        }
    });
    assert_eq!(q.counter("allowed"), 2_100);
    assert_eq!(q.counter("tokens"), 2_100 * 30);
    assert_eq!(allocations, 0, "allocations in 2,000 warm requests");
}
