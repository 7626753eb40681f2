//! Kit and token quota make no heap allocation per request once warm: a
//! streaming chat request (body rewritten to ask for usage), its quota read,
//! a 4 KB server-sent-event answer in 3 chunks scanned for usage, and the
//! charge written back.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use kit::fake::{allocations_during, CountingAllocator, FakeHost};
use kit::{Action, Filter};
use token_quota::TokenQuota;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const REQUEST: &[u8] = br#"{"model":"qwen-max","stream":true,"messages":[{"role":"user","content":"Tell me a story."}]}"#;

/// A 4 KB event stream whose last event reports 120 tokens.
fn answer() -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < 3_900 {
        out.extend_from_slice(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"once upon a time \"}}]}\n\n",
        );
    }
    out.extend_from_slice(
        b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":100,\"total_tokens\":120}}\n\ndata: [DONE]\n\n",
    );
    out
}

/// Answers the call the filter just sent: GET gives the tokens used so far,
/// EVALSHA adds its amount.
fn answer_redis(filter: &mut Filter<TokenQuota, FakeHost>, used: &mut i64) {
    let host = filter.host_mut();
    let call = host.last_call.as_ref().unwrap();
    let token = call.token;
    let path = call.headers.get(":path").unwrap();
    let is_get = path.starts_with(b"/GET/");
    let mut digits = itoa::Buffer::new();
    host.call_response_headers.clear();
    host.call_response_headers.add(":status", b"200");
    host.call_response_body.clear();
    if is_get {
        let n = digits.format(*used).as_bytes();
        host.call_response_body.push(b'$');
        let mut len = itoa::Buffer::new();
        host.call_response_body
            .extend_from_slice(len.format(n.len()).as_bytes());
        host.call_response_body.extend_from_slice(b"\r\n");
        host.call_response_body.extend_from_slice(n);
        host.call_response_body.extend_from_slice(b"\r\n");
    } else {
        *used += 120;
        host.call_response_body.push(b':');
        host.call_response_body
            .extend_from_slice(digits.format(*used).as_bytes());
        host.call_response_body.extend_from_slice(b"\r\n");
    }
    let len = host.call_response_body.len();
    filter.on_http_call_response(token, 1, len, false);
}

fn one_request(
    filter: &mut Filter<TokenQuota, FakeHost>,
    context: u32,
    answer: &[u8],
    used: &mut i64,
) {
    let host = filter.host_mut();
    host.next_request();
    host.request_headers.add(":method", b"POST");
    host.request_headers.add(":path", b"/v1/chat/completions");
    host.request_headers.add("content-length", b"93");
    host.request_headers.add("x-api-key", b"team-a");
    host.request_body.extend_from_slice(REQUEST);
    let stream = filter.open_stream(context);
    assert_eq!(filter.on_request_headers(stream, false), Action::Pause);
    assert_eq!(
        filter.on_request_body(stream, REQUEST.len(), true),
        Action::Pause
    );
    answer_redis(filter, used);
    let host = filter.host_mut();
    host.response_headers.add(":status", b"200");
    host.response_headers
        .add("content-type", b"text/event-stream");
    assert_eq!(filter.on_response_headers(stream, false), Action::Continue);
    let third = answer.len() / 3;
    for (i, chunk) in [
        &answer[..third],
        &answer[third..2 * third],
        &answer[2 * third..],
    ]
    .into_iter()
    .enumerate()
    {
        let host = filter.host_mut();
        host.response_body.clear();
        host.response_body.extend_from_slice(chunk);
        let last = i == 2;
        let action = filter.on_response_body(stream, chunk.len(), last);
        assert_eq!(
            action,
            if last {
                Action::Pause
            } else {
                Action::Continue
            }
        );
    }
    answer_redis(filter, used);
    filter.close_stream(stream);
}

#[test]
fn the_counter_counts() {
    assert_eq!(
        allocations_during(|| drop(std::hint::black_box(vec![1u8]))),
        1
    );
}

#[test]
fn a_full_streaming_request_does_not_allocate() {
    let mut filter: Filter<TokenQuota, FakeHost> = Filter::new(FakeHost::new());
    filter
        .configure(
            br#"{"rule_name": "za", "rule_items": [{"limit_by_per_header": "x-api-key", "limit_keys": [{"key": "*", "token_per_minute": 1000000000}]}],
                 "redis": {"webdis_cluster": "webdis"}}"#
                .to_vec(),
        )
        .unwrap();
    let answer = answer();
    assert!(answer.len() >= 4_000);
    let mut used = 0;
    for i in 0..100 {
        one_request(&mut filter, i + 2, &answer, &mut used);
    }
    let allocations = allocations_during(|| {
        for i in 100..10_100 {
            one_request(&mut filter, i + 2, &answer, &mut used);
        }
    });
    assert_eq!(used, 120 * 10_100, "every answer was charged its usage");
    assert_eq!(
        filter.host().resumed,
        [10_100, 10_100],
        "every request and answer went on"
    );
    let sent: serde_json::Value = serde_json::from_slice(&filter.host().request_body).unwrap();
    assert_eq!(
        sent["stream_options"]["include_usage"],
        serde_json::Value::Bool(true)
    );
    assert_eq!(allocations, 0, "allocations in 10,000 warm requests");
}
