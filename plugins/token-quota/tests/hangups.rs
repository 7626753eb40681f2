//! Answers that do not end the normal way, natively over the kit's
//! `FakeHost`: usage charged the moment it is known (the answer held only
//! until the charge answers), answers cut short charged what they reported
//! or an estimate at their end by a call the root owns, the counters of
//! each way an answer ends early, and no allocation on these paths.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use kit::fake::{allocations_during, CountingAllocator, FakeHost};
use kit::fake_redis::FakeRedis;
use kit::{Action, Filter, StreamId};
use token_quota::TokenQuota;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const REQUEST: &[u8] =
    br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
const CONTENT: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"Hello\"}}]}\n\n";
const USAGE: &[u8] =
    b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":20,\"total_tokens\":30}}\n\n";
const DONE: &[u8] = b"data: [DONE]\n\n";
const JSON: &[u8] = br#"{"choices":[{"message":{"content":"Hello"}}],"usage":{"prompt_tokens":10,"completion_tokens":20,"total_tokens":30}}"#;

/// Envoy's `response.flags` for a client that closed its connection.
const DOWNSTREAM_CONNECTION_TERMINATION: u64 = 0x4000;
const UPSTREAM_REMOTE_RESET: u64 = 0x10;

struct Quota {
    filter: Filter<TokenQuota, FakeHost>,
    redis: FakeRedis,
    next_context: u32,
}

impl Quota {
    fn new(extra: &str) -> Quota {
        let mut filter = Filter::new(FakeHost::new());
        filter
            .configure(
                format!(
                    r#"{{"rule_name": "h", "global_threshold": {{"token_per_hour": 1000000}}{extra},
                        "redis": {{"webdis_cluster": "webdis"}}}}"#
                )
                .into_bytes(),
            )
            .unwrap();
        Quota {
            filter,
            redis: common::redis(),
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

    fn charged(&self) -> i64 {
        self.redis.store.integers().map(|(_, n)| n).sum()
    }

    /// The token of the call in flight, if one was sent since the last
    /// answer.
    fn call_in_flight(&self) -> Option<u32> {
        let host = self.filter.host();
        let token = host.last_call.as_ref().map(|c| c.token);
        token.filter(|&t| t != host.last_answered)
    }

    /// Answers the last call as Redis would, on the root context.
    fn answer(&mut self) {
        assert!(self.call_in_flight().is_some(), "a call in flight");
        let call = self.host().last_call.clone().unwrap();
        let now = self.host().now_nanos;
        let reply = self.redis.answer(&call, now).unwrap();
        assert!(self.redis.unknown.is_empty(), "{:?}", self.redis.unknown);
        let _ = self.filter.answer_redis(&call, &reply);
    }

    /// Answers the last call without allocating: a count of 1 to a read
    /// or a charge (the stand-in Redis is not updated).
    fn answer_quietly(&mut self) {
        let token = self.call_in_flight().expect("a call in flight");
        let host = self.filter.host_mut();
        host.last_answered = token;
        let reply: &[u8] = b":1\r\n";
        host.answer_http(200, reply);
        self.filter
            .on_http_call_response(token, 1, reply.len(), true);
    }

    /// A request let through (its quota read answered), its answer started
    /// with `content_type`.
    fn admitted(&mut self, content_type: &[u8]) -> StreamId {
        let host = self.host();
        host.next_request();
        host.request_headers.add(":method", b"POST");
        host.request_headers.add(":path", b"/v1/chat/completions");
        host.request_headers.add("content-length", b"71");
        host.request_body.extend_from_slice(REQUEST);
        let context = self.next_context;
        self.next_context += 1;
        let stream = self.filter.open_stream(context);
        assert_eq!(self.filter.on_request_headers(stream, false), Action::Pause);
        assert_eq!(
            self.filter.on_request_body(stream, REQUEST.len(), true),
            Action::Pause
        );
        self.answer_quietly();
        let host = self.host();
        host.response_headers.add(":status", b"200");
        host.response_headers.add("content-type", content_type);
        assert_eq!(
            self.filter.on_response_headers(stream, false),
            Action::Continue
        );
        stream
    }

    /// A response chunk; `buffered` is all the proxy holds for the filter.
    fn chunk(&mut self, stream: StreamId, buffered: &[u8], end: bool) -> Action {
        let host = self.host();
        host.response_body.clear();
        host.response_body.extend_from_slice(buffered);
        self.filter.on_response_body(stream, buffered.len(), end)
    }

    /// The request ends with the proxy's response flags `flags`.
    fn end(&mut self, stream: StreamId, flags: u64) {
        let flags = flags.to_le_bytes();
        self.host().properties.set("response.flags", Some(&flags));
        self.filter.close_stream(stream);
    }
}

fn estimate(response_bytes: usize) -> i64 {
    (REQUEST.len() + response_bytes).div_ceil(4) as i64
}

#[test]
fn a_usage_event_is_charged_at_once_and_held_only_until_the_charge_answers() {
    let mut q = Quota::new("");
    let stream = q.admitted(b"text/event-stream");
    assert_eq!(q.chunk(stream, CONTENT, false), Action::Continue);
    // The usage event: charged now, held until Redis answers.
    assert_eq!(q.chunk(stream, USAGE, false), Action::Pause);
    assert!(q.call_in_flight().is_some(), "the charge went out at once");
    // `[DONE]` arrives while the charge is in flight: held too (the proxy
    // buffers it behind the usage event).
    let mut held = USAGE.to_vec();
    held.extend_from_slice(DONE);
    assert_eq!(q.chunk(stream, &held, false), Action::Pause);
    q.answer();
    assert_eq!(q.host().resumed[1], 1, "released when the charge answered");
    assert_eq!(q.charged(), 30);
    // The end of the stream, later: nothing more to charge or hold.
    assert_eq!(q.chunk(stream, b"", true), Action::Continue);
    assert!(q.call_in_flight().is_none());
    q.filter.close_stream(stream);
    assert_eq!(q.charged(), 30);
    assert_eq!(q.counter("tokens"), 30);
    assert_eq!(q.counter("client_gone"), 0);
}

#[test]
fn a_client_gone_before_the_usage_event_is_charged_the_estimate_by_the_root() {
    let mut q = Quota::new("");
    let stream = q.admitted(b"text/event-stream");
    for _ in 0..3 {
        assert_eq!(q.chunk(stream, CONTENT, false), Action::Continue);
    }
    q.end(stream, DOWNSTREAM_CONNECTION_TERMINATION);
    // The charge outlives the request: answered after it is gone.
    q.answer();
    let want = estimate(3 * CONTENT.len());
    assert_eq!(q.charged(), want);
    assert_eq!(q.counter("client_gone"), 1);
    assert_eq!(q.counter("estimated_requests"), 1);
    assert_eq!(q.counter("estimated_tokens"), want as u64);
    assert_eq!(q.counter("tokens"), want as u64);
    assert_eq!(q.counter("redis_errors"), 0);
}

#[test]
fn a_client_gone_after_the_usage_was_charged_owes_nothing_more() {
    let mut q = Quota::new("");
    let stream = q.admitted(b"text/event-stream");
    assert_eq!(q.chunk(stream, USAGE, false), Action::Pause);
    q.answer();
    q.end(stream, DOWNSTREAM_CONNECTION_TERMINATION);
    assert!(q.call_in_flight().is_none());
    assert_eq!(q.charged(), 30);
    assert_eq!(q.counter("client_gone"), 1);
    assert_eq!(q.counter("estimated_requests"), 0);
}

#[test]
fn a_client_gone_while_the_charge_is_in_flight_is_charged_once() {
    let mut q = Quota::new("");
    let stream = q.admitted(b"text/event-stream");
    assert_eq!(q.chunk(stream, USAGE, false), Action::Pause);
    let charge = q.call_in_flight().unwrap();
    q.end(stream, DOWNSTREAM_CONNECTION_TERMINATION);
    assert_eq!(q.call_in_flight(), Some(charge), "no second charge");
    q.answer();
    assert_eq!(q.charged(), 30);
    assert_eq!(q.counter("redis_errors"), 0);
    assert_eq!(q.counter("client_gone"), 1);
}

#[test]
fn a_stream_cut_between_partial_usages_is_charged_what_it_reported() {
    // Anthropic reports input tokens first and output tokens at the end.
    let mut q = Quota::new("");
    let stream = q.admitted(b"text/event-stream");
    let start = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n";
    if q.chunk(stream, start, false) == Action::Pause {
        q.answer();
    }
    let delta = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"Hel";
    let _ = q.chunk(stream, delta, false);
    q.end(stream, UPSTREAM_REMOTE_RESET);
    if q.call_in_flight().is_some() {
        q.answer();
    }
    assert_eq!(q.charged(), 11);
    assert_eq!(q.counter("upstream_reset"), 1);
    assert_eq!(q.counter("estimated_requests"), 0);
}

#[test]
fn usage_reported_in_two_steps_is_charged_in_full() {
    // Anthropic: input tokens in `message_start`, the output count in
    // `message_delta`. Whichever event the scanner takes as the final
    // report, the whole usage is charged.
    let mut q = Quota::new("");
    let stream = q.admitted(b"text/event-stream");
    let start = b"data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n";
    let delta = b"data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":20}}\n\n";
    let stop = b"data: {\"type\":\"message_stop\"}\n\n";
    for (bytes, end) in [(&start[..], false), (&delta[..], false), (&stop[..], true)] {
        if q.chunk(stream, bytes, end) == Action::Pause {
            q.answer();
        }
    }
    assert_eq!(q.charged(), 30);
    q.filter.close_stream(stream);
    assert_eq!(q.charged(), 30);
    assert_eq!(q.counter("tokens"), 30);
}

#[test]
fn a_json_answer_is_charged_when_complete_before_its_stream_ends() {
    let mut q = Quota::new("");
    let stream = q.admitted(b"application/json");
    let (head, tail) = JSON.split_at(40);
    assert_eq!(q.chunk(stream, head, false), Action::Pause);
    assert!(q.call_in_flight().is_none());
    assert_eq!(q.chunk(stream, JSON, false), Action::Pause);
    assert!(q.call_in_flight().is_some(), "complete: charged at once");
    q.answer();
    assert_eq!(q.host().resumed[1], 1);
    assert_eq!(q.chunk(stream, b"", true), Action::Continue);
    q.filter.close_stream(stream);
    assert_eq!(q.charged(), 30);
    assert!(!tail.is_empty());
}

#[test]
fn a_json_answer_cut_before_its_end_is_charged_the_estimate() {
    let mut q = Quota::new("");
    let stream = q.admitted(b"application/json");
    let head = &JSON[..40];
    assert_eq!(q.chunk(stream, head, false), Action::Pause);
    q.end(stream, DOWNSTREAM_CONNECTION_TERMINATION);
    q.answer();
    assert_eq!(q.charged(), estimate(head.len()));
    assert_eq!(q.counter("estimated_requests"), 1);
}

#[test]
fn on_missing_usage_none_charges_nothing_and_counts_it() {
    let mut q = Quota::new(r#", "on_missing_usage": "none""#);
    let stream = q.admitted(b"text/event-stream");
    assert_eq!(q.chunk(stream, CONTENT, false), Action::Continue);
    q.end(stream, 0);
    assert!(q.call_in_flight().is_none());
    assert_eq!(q.charged(), 0);
    assert_eq!(q.counter("usage_missing"), 1);
    assert_eq!(q.counter("ended_otherwise"), 1);
    assert_eq!(q.counter("estimated_requests"), 0);
}

#[test]
fn the_estimate_rate_is_configurable() {
    let mut q = Quota::new(r#", "estimate_bytes_per_token": 10"#);
    let stream = q.admitted(b"text/event-stream");
    assert_eq!(q.chunk(stream, CONTENT, false), Action::Continue);
    q.end(stream, DOWNSTREAM_CONNECTION_TERMINATION);
    q.answer();
    assert_eq!(
        q.charged(),
        (REQUEST.len() + CONTENT.len()).div_ceil(10) as i64
    );
}

#[test]
fn answers_that_never_started_are_not_estimated() {
    let mut q = Quota::new("");
    let host = q.host();
    host.next_request();
    host.request_headers.add(":method", b"POST");
    host.request_headers.add(":path", b"/v1/chat/completions");
    host.request_body.extend_from_slice(REQUEST);
    let stream = q.filter.open_stream(99);
    let _ = q.filter.on_request_headers(stream, false);
    let _ = q.filter.on_request_body(stream, REQUEST.len(), true);
    q.answer();
    q.end(stream, DOWNSTREAM_CONNECTION_TERMINATION);
    assert!(q.call_in_flight().is_none());
    assert_eq!(q.charged(), 0);
    assert_eq!(q.counter("client_gone"), 1);
}

#[test]
fn a_client_gone_during_the_quota_read_is_no_redis_error() {
    let mut q = Quota::new("");
    let host = q.host();
    host.next_request();
    host.request_headers.add(":method", b"POST");
    host.request_body.extend_from_slice(REQUEST);
    let stream = q.filter.open_stream(99);
    let _ = q.filter.on_request_headers(stream, false);
    let _ = q.filter.on_request_body(stream, REQUEST.len(), true);
    q.end(stream, DOWNSTREAM_CONNECTION_TERMINATION);
    // The read, adopted by the root, answers after the request is gone.
    q.answer();
    assert_eq!(q.counter("redis_errors"), 0);
    assert_eq!(q.charged(), 0);
    assert_eq!(q.counter("client_gone"), 1);
}

#[test]
fn a_failed_charge_at_the_end_is_counted() {
    let mut q = Quota::new("");
    let stream = q.admitted(b"text/event-stream");
    assert_eq!(q.chunk(stream, CONTENT, false), Action::Continue);
    q.end(stream, DOWNSTREAM_CONNECTION_TERMINATION);
    let token = q.call_in_flight().unwrap();
    q.filter.on_http_call_response(token, 0, 0, true);
    assert_eq!(q.counter("redis_errors"), 1);
}

#[test]
fn bad_estimate_settings_are_refused_naming_the_field() {
    for (extra, field) in [
        (r#", "on_missing_usage": "maybe""#, "on_missing_usage"),
        (
            r#", "estimate_bytes_per_token": 0"#,
            "estimate_bytes_per_token",
        ),
        (
            r#", "estimate_bytes_per_token": "four""#,
            "estimate_bytes_per_token",
        ),
    ] {
        let mut filter: Filter<TokenQuota, FakeHost> = Filter::new(FakeHost::new());
        let error = filter
            .configure(
                format!(
                    r#"{{"rule_name": "h", "global_threshold": {{"token_per_hour": 10}}{extra},
                        "redis": {{"webdis_cluster": "webdis"}}}}"#
                )
                .into_bytes(),
            )
            .unwrap_err()
            .to_string();
        assert!(error.contains(field), "{extra}: {error}");
    }
}

#[test]
fn hangups_and_early_charges_do_not_allocate_once_warm() {
    let mut q = Quota::new("");
    // Set once: the fake's property map keeps every value it was given.
    let flags = DOWNSTREAM_CONNECTION_TERMINATION.to_le_bytes();
    q.host().properties.set("response.flags", Some(&flags));
    let mut held = USAGE.to_vec();
    held.extend_from_slice(DONE);
    let round = |q: &mut Quota| {
        // Cut before the usage: the estimate, charged by the root.
        let stream = q.admitted(b"text/event-stream");
        assert_eq!(q.chunk(stream, CONTENT, false), Action::Continue);
        q.filter.close_stream(stream);
        q.answer_quietly();
        // Usage mid-stream: charged at once, held, released, then cut.
        let stream = q.admitted(b"text/event-stream");
        assert_eq!(q.chunk(stream, USAGE, false), Action::Pause);
        assert_eq!(q.chunk(stream, &held, false), Action::Pause);
        q.answer_quietly();
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
    assert_eq!(q.counter("estimated_requests"), 1_050);
    assert_eq!(q.counter("client_gone"), 2_100);
    assert_eq!(allocations, 0, "allocations in 2,000 warm requests");
}
