//! Streamed answers that end with trailers (an HTTP/2 upstream such as a
//! gRPC-style LLM gateway): the proxy hands over the last event without
//! the end of the stream, then the trailers. The answer is charged as one
//! that ended normally, by the end of its trailers: the usage it reported,
//! once, with the end held until Redis has written the charge; nothing is
//! counted as an answer cut short. Over the kit's `FakeHost` and
//! `FakeRedis`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use common::Driver;
use kit::fake_request::Outcome as Step;
use kit::StreamId;

const CONFIG: &str = r#"{"rule_name": "tr", "rule_items": [{"limit_by_per_header": "x-user",
    "limit_keys": [{"key": "*", "token_per_hour": 1000000}]}], "redis": {"webdis_cluster": "webdis"}}"#;

const CHAT: &[u8] = br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

const CONTENT: &[u8] = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"}}]}\n\n";
const USAGE: &[u8] = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":30,\"total_tokens\":42}}\n\n";
const DONE: &[u8] = b"data: [DONE]\n\n";

/// A streaming chat request of `user`, let through with its quota read.
fn admitted(d: &mut Driver, user: &str) -> StreamId {
    let length = CHAT.len().to_string();
    let headers = [
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        ("content-length", length.as_str()),
        ("x-user", user),
    ];
    let (stream, step) = d.filter.send_request_with_body(&headers, CHAT);
    assert_eq!(d.filter.settle(&mut d.redis, step), Step::Continued);
    let head = [(":status", "200"), ("content-type", "text/event-stream")];
    assert_eq!(
        d.filter.send_response_headers(stream, &head, false),
        Step::Continued
    );
    stream
}

#[test]
fn usage_charged_mid_stream_is_not_charged_again_and_the_answer_ends_normally() {
    let mut d = Driver::new(CONFIG);
    let stream = admitted(&mut d, "a");
    assert_eq!(
        d.filter.send_response_chunk(stream, CONTENT, false),
        Step::Continued
    );
    // The usage event: charged, and held until Redis has written it.
    let held = d.filter.send_response_chunk(stream, USAGE, false);
    assert!(matches!(held, Step::Waiting(_)), "{held:?}");
    assert_eq!(d.filter.settle(&mut d.redis, held), Step::Continued);
    assert_eq!(d.charged(":a}"), 42);
    assert_eq!(
        d.filter.send_response_chunk(stream, DONE, false),
        Step::Continued
    );
    let calls = d.host().calls_sent;
    assert_eq!(d.filter.send_response_trailers(stream), Step::Continued);
    assert_eq!(d.host().calls_sent, calls, "nothing more to charge");
    d.filter.close_stream(stream);
    assert_eq!(d.charged(":a}"), 42);
    assert_eq!(d.host().delivered, [CONTENT, USAGE, DONE].concat());
    assert_eq!(d.counter("token-quota.tokens"), 42);
    assert_eq!(d.counter("token-quota.ended_otherwise"), 0);
    assert_eq!(d.counter("token-quota.usage_missing"), 0);
}

#[test]
fn usage_known_only_at_the_end_is_charged_at_the_trailers_before_they_go() {
    // The last event ends with the stream, without its blank line: its
    // usage is the stream's only once the stream has ended.
    let last = USAGE.strip_suffix(b"\n").unwrap();
    let mut d = Driver::new(CONFIG);
    let stream = admitted(&mut d, "b");
    for chunk in [CONTENT, CONTENT, last] {
        assert_eq!(
            d.filter.send_response_chunk(stream, chunk, false),
            Step::Continued
        );
    }
    assert_eq!(d.charged(":b}"), 0, "nothing known yet");
    let held = d.filter.send_response_trailers(stream);
    let Step::Waiting(charge) = &held else {
        panic!("the trailers went on before the charge: {held:?}");
    };
    let args = charge.webdis_args().unwrap();
    assert_eq!(args.last().unwrap(), b"42", "the usage reported: {args:?}");
    let resumed = d.host().resumed[1];
    assert_eq!(d.filter.settle(&mut d.redis, held), Step::Continued);
    assert_eq!(d.host().resumed[1], resumed + 1, "released after the reply");
    assert_eq!(d.charged(":b}"), 42);
    d.filter.close_stream(stream);
    assert_eq!(d.charged(":b}"), 42, "not charged again at the end");
    assert_eq!(d.host().delivered, [CONTENT, CONTENT, last].concat());
    assert_eq!(d.counter("token-quota.tokens"), 42);
    assert_eq!(d.counter("token-quota.ended_otherwise"), 0);
    assert_eq!(d.counter("token-quota.estimated_requests"), 0);
}

#[test]
fn an_answer_without_usage_that_ends_with_trailers_is_counted_missing_not_cut() {
    let mut d = Driver::new(CONFIG);
    let stream = admitted(&mut d, "c");
    let _ = d.filter.send_response_chunk(stream, CONTENT, false);
    let _ = d.filter.send_response_chunk(stream, DONE, false);
    assert_eq!(d.filter.send_response_trailers(stream), Step::Continued);
    d.filter.close_stream(stream);
    assert_eq!(d.charged(":c}"), 0);
    assert_eq!(d.counter("token-quota.usage_missing"), 1);
    assert_eq!(d.counter("token-quota.ended_otherwise"), 0);
    assert_eq!(d.counter("token-quota.estimated_requests"), 0);
}
