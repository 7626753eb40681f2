//! The limiter over Higress's native Redis transport (`--features higress`),
//! natively over the `FakeHost`: RESP commands out, replies delivered on
//! the root context with the request's context made effective.
//!
//! Run by `scripts/test.sh` with `cargo test -p limiter --features higress`.

#![cfg(feature = "higress")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use kit::fake::FakeHost;
use kit::{Action, Filter};
use limiter::Limiter;

fn filter(redis: &str) -> Filter<Limiter, FakeHost> {
    let mut f = Filter::new(FakeHost::new());
    f.configure(format!(r#"{{"rule_name": "n", "global_threshold": {{"query_per_second": 1}}, "redis": {redis}}}"#).into_bytes())
        .unwrap();
    f
}

#[test]
fn cluster_names_follow_higress() {
    let f = filter(r#"{"service_name": "redis.static", "password": "pw", "timeout": 300}"#);
    assert_eq!(
        f.host().redis_clusters,
        vec!["outbound|80||redis.static".to_owned()]
    );
    let f = filter(r#"{"service_name": "redis.default.svc.cluster.local", "database": 2}"#);
    assert_eq!(
        f.host().redis_clusters,
        vec!["outbound|6379||redis.default.svc.cluster.local?db=2".to_owned()]
    );
    let f = filter(r#"{"service_name": "r.dns", "service_port": 7000}"#);
    assert_eq!(
        f.host().redis_clusters,
        vec!["outbound|7000||r.dns".to_owned()]
    );
}

#[test]
fn one_resp_command_per_call_and_replies_on_the_root() {
    let mut f = filter(r#"{"service_name": "redis.static"}"#);
    let stream = f.open_stream(42);
    assert_eq!(f.on_request_headers(stream, true), Action::Pause);
    let call = f.host().last_call.clone().unwrap();
    assert_eq!(call.cluster, "outbound|80||redis.static");
    let resp = String::from_utf8(call.body.clone()).unwrap();
    assert!(resp.starts_with("*6\r\n$7\r\nEVALSHA\r\n$40\r\n"), "{resp}");
    assert!(resp.contains("limiter:{n:1_per_1s:global}:"), "{resp}");
    // Exactly one command: the array header counts every bulk string.
    assert_eq!(resp.matches("\r\n$").count(), 6);

    f.host_mut().effective_context = 0;
    f.host_mut().call_response_body = b":2\r\n".to_vec();
    f.on_redis_call_response(call.token, 0, 4);
    assert_eq!(f.host().effective_context, 42);
    assert_eq!(f.host().response.as_ref().unwrap().status, 429);
}

#[test]
fn network_failure_status_follows_the_failure_mode() {
    let mut f = filter(r#"{"service_name": "redis.static"}"#);
    let stream = f.open_stream(7);
    assert_eq!(f.on_request_headers(stream, true), Action::Pause);
    let token = f.host().last_call.as_ref().unwrap().token;
    f.on_redis_call_response(token, 1, 0);
    assert_eq!(f.host().resumed[0], 1);
    f.flush_counters();
    assert_eq!(f.host().counter("limiter.redis_errors"), 1);
}

#[test]
fn noscript_falls_back_to_eval_over_resp() {
    let mut f = filter(r#"{"service_name": "redis.static"}"#);
    let stream = f.open_stream(7);
    assert_eq!(f.on_request_headers(stream, true), Action::Pause);
    let token = f.host().last_call.as_ref().unwrap().token;
    let noscript = b"-NOSCRIPT No matching script.\r\n";
    f.host_mut().call_response_body = noscript.to_vec();
    f.on_redis_call_response(token, 0, noscript.len());
    let retry = f.host().last_call.clone().unwrap();
    assert_ne!(retry.token, token);
    assert!(String::from_utf8_lossy(&retry.body).starts_with("*6\r\n$4\r\nEVAL\r\n"));
    f.host_mut().call_response_body = b":1\r\n".to_vec();
    f.on_redis_call_response(retry.token, 0, 4);
    assert_eq!(f.host().resumed[0], 1);
    assert_eq!(f.host().responses_sent, 0);
}

#[test]
fn keys_that_waited_go_in_one_resp_command_and_share_its_reply() {
    let mut f = Filter::<Limiter, FakeHost>::new(FakeHost::new());
    f.configure(
        br#"{"rule_name": "n", "rule_items": [{"limit_by_per_header": "x-api-key",
             "limit_keys": [{"key": "*", "query_per_minute": 2}]}],
             "redis": {"service_name": "redis.static"}}"#
            .to_vec(),
    )
    .unwrap();
    let mut tokens = Vec::new();
    // The first key goes at once; the others wait for its answer (one
    // shared call in flight: kit::increments::CALLS_IN_FLIGHT).
    assert_eq!(kit::increments::CALLS_IN_FLIGHT, 1);
    for (context, key) in [(10, "a"), (11, "b"), (12, "c"), (13, "d"), (14, "c")] {
        f.host_mut().next_request();
        f.host_mut()
            .request_headers
            .add("x-api-key", key.as_bytes());
        let sent = f.host().calls_sent;
        let stream = f.open_stream(context);
        assert_eq!(f.on_request_headers(stream, true), Action::Pause);
        if f.host().calls_sent > sent {
            tokens.push(f.host().last_call.as_ref().unwrap().token);
        }
    }
    assert_eq!(tokens.len(), 1);
    f.host_mut().answers = Some(Vec::new());
    f.host_mut().call_response_body = b":1\r\n".to_vec();
    f.on_redis_call_response(tokens[0], 0, 4);
    // One command: EVALSHA, digest, 3 keys, then ttl and amount of each
    // (c twice).
    let call = f.host().last_call.clone().unwrap();
    let resp = String::from_utf8(call.body.clone()).unwrap();
    assert!(
        resp.starts_with("*12\r\n$7\r\nEVALSHA\r\n$40\r\n"),
        "{resp}"
    );
    assert!(resp.contains("\r\n$1\r\n3\r\n"), "{resp}");
    assert!(
        resp.contains(":b}:") && resp.contains(":c}:") && resp.contains(":d}:"),
        "{resp}"
    );
    assert!(
        resp.ends_with("\r\n$2\r\n60\r\n$1\r\n1\r\n$2\r\n60\r\n$1\r\n2\r\n$2\r\n60\r\n$1\r\n1\r\n"),
        "{resp}"
    );
    // c had one request already: 3 is over its limit for the second.
    f.host_mut().call_response_body = b"*3\r\n:1\r\n:3\r\n:1\r\n".to_vec();
    f.on_redis_call_response(call.token, 0, 18);
    let answers = f.host_mut().answers.take().unwrap();
    assert_eq!(answers, [(10, 0), (11, 0), (12, 0), (14, 429), (13, 0)]);
}
