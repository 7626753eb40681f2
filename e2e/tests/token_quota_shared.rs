//! The token quota's shared Redis calls end to end: `token_quota.wasm` in
//! a real Envoy 1.40, real Redis behind webdis. Concurrent quota reads and
//! charges of one counter go to Redis together (the kit's shared
//! increments), and still every token the upstream reported is charged,
//! exactly; a batch whose sender's client hung up still charges, and
//! answers, everyone in it; and the counting script, run straight on
//! Redis, reads a counter (adds 0) without touching its window's expiry.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use e2e::slow_upstream::{Script, SlowUpstream, Step};
use e2e::token_quota::{
    llm_envoy, per_user_config, token_quota_envoy, token_quota_plugin, LlmProtocol, LLM_CLUSTER,
};
use e2e::{calls_of, unique_rule_name, WEBDIS_CLUSTER};
use serde_json::json;
use stack::resp::Resp;
use stack::{
    request_with_timeout, Body, Envoy, EnvoyConfig, OpenAiStream, Redis, Reply, Usage, Webdis,
};

const CHAT: &str = "/v1/chat/completions";
/// The usage every answer of the concurrent tests reports.
const USAGE: Usage = Usage {
    prompt: 10,
    completion: 20,
    total: Some(30),
};
/// Clients at once, and requests each sends one after the other.
const CLIENTS: usize = 16;
const REQUESTS_EACH: usize = 25;

/// Top-level calls the plugin made: EVALSHA, and EVAL after a NOSCRIPT.
fn round_trips(redis: &Redis) -> u64 {
    calls_of(redis, "evalsha") + calls_of(redis, "eval") + calls_of(redis, "get")
}

/// The sum of every counter whose key holds `rule`.
fn charged(redis: &Redis, rule: &str) -> i64 {
    redis
        .keys()
        .into_iter()
        .filter(|k| String::from_utf8_lossy(k).contains(rule))
        .map(|key| match redis.command(&[b"GET", &key]) {
            Ok(Resp::Bulk(Some(value))) => String::from_utf8_lossy(&value).parse::<i64>().unwrap(),
            other => panic!("GET answered {other:?}"),
        })
        .sum()
}

/// A token quota of one global counter in front of an Envoy that answers
/// every chat request with `body` (`content_type`).
fn quota_in_front_of(rule: &str, content_type: &str, body: &str) -> (Envoy, Envoy, Webdis, Redis) {
    let redis = Redis::start();
    let webdis = Webdis::start(redis.port());
    let upstream = Envoy::start(
        EnvoyConfig::new()
            .direct_response(200, content_type, body)
            .log_level("warning"),
    );
    let config = json!({
        "rule_name": rule,
        "global_threshold": {"token_per_hour": 1_000_000_000u64},
        "redis": {"webdis_cluster": WEBDIS_CLUSTER, "timeout": 2000},
    });
    let envoy = Envoy::start(
        token_quota_envoy(webdis.port(), &config)
            .cluster(LLM_CLUSTER, upstream.port())
            .route_to(LLM_CLUSTER),
    );
    (envoy, upstream, webdis, redis)
}

/// [`CLIENTS`] clients send [`REQUESTS_EACH`] chat requests each, all at
/// once; every answer must be whole, every token reported charged, and
/// the calls shared.
fn concurrent_requests_are_charged_exactly(stream: bool) {
    let label = if stream { "shared-sse" } else { "shared-json" };
    let rule = unique_rule_name(label);
    let (content_type, body, marker) = if stream {
        (
            "text/event-stream",
            String::from_utf8(OpenAiStream::new(USAGE).bytes()).unwrap(),
            "[DONE]",
        )
    } else {
        (
            "application/json",
            String::from_utf8(Reply::openai(USAGE).body_bytes()).unwrap(),
            "\"total_tokens\":30",
        )
    };
    let (envoy, _upstream, _webdis, redis) = quota_in_front_of(&rule, content_type, &body);
    let port = envoy.port();
    let request = json!({
        "model": "test-model",
        "messages": [{"role": "user", "content": "Say hello"}],
        "stream": stream,
    })
    .to_string();
    let before = round_trips(&redis);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let request = request.clone();
            std::thread::spawn(move || {
                (0..REQUESTS_EACH)
                    .map(|_| {
                        request_with_timeout(
                            port,
                            "POST",
                            CHAT,
                            &[("content-type", "application/json")],
                            Body::Fixed(request.as_bytes()),
                            Duration::from_secs(10),
                        )
                        .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let answers: Vec<_> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let requests = (CLIENTS * REQUESTS_EACH) as u64;
    for answer in &answers {
        assert_eq!(answer.status, 200, "{}", envoy.log());
        assert!(
            String::from_utf8_lossy(&answer.body).contains(marker),
            "a whole answer: {:?}",
            String::from_utf8_lossy(&answer.body)
        );
    }
    // Read before the test's own GET below.
    let calls = round_trips(&redis) - before;
    // Every answer was released after its charge was written: nothing is
    // left to settle.
    assert_eq!(
        charged(&redis, &rule),
        30 * requests as i64,
        "{label}: every reported token is charged"
    );
    println!(
        "{label}: {requests} requests, {calls} Redis calls ({:.3} a request; 2 unshared)",
        calls as f64 / requests as f64
    );
    assert!(
        calls < requests,
        "{label}: {calls} Redis calls for {requests} requests of {CLIENTS} concurrent clients: \
         reads and charges should share calls (2 a request unshared)"
    );
}

#[test]
fn concurrent_json_answers_are_charged_exactly_with_shared_calls() {
    concurrent_requests_are_charged_exactly(false);
}

#[test]
fn concurrent_event_streams_are_charged_exactly_with_shared_calls() {
    concurrent_requests_are_charged_exactly(true);
}

const CONTENT: &str =
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"}}]}\n\n";
const USAGE_EVENT: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":20,\"total_tokens\":30}}\n\n";
const DONE: &str = "data: [DONE]\n\n";

/// A streamed answer: a content event, the usage event after
/// `before_usage`, then `[DONE]` and the end.
fn stream_script(before_usage: Duration) -> Script {
    Script {
        content_type: "text/event-stream",
        steps: vec![
            Step::Chunk(CONTENT.into()),
            Step::Pause(before_usage),
            Step::Chunk(USAGE_EVENT.into()),
            Step::Pause(Duration::from_millis(50)),
            Step::Chunk(DONE.into()),
            Step::End,
        ],
    }
}

/// A streaming chat request on a raw socket, to hang up at will.
fn send_chat(port: u16) -> TcpStream {
    let body = json!({
        "model": "test-model",
        "messages": [{"role": "user", "content": "Say hello"}],
        "stream": true,
    })
    .to_string();
    let mut stream = TcpStream::connect((stack::LOCALHOST, port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let request = format!(
        "POST {CHAT} HTTP/1.1\r\nhost: llm\r\ncontent-type: application/json\r\n\
         x-user: team\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    stream
}

/// Reads `stream` until `needle` arrives or `timeout` passes; what came.
fn read_until(stream: &mut TcpStream, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut piece = [0u8; 8192];
    while Instant::now() < deadline && !String::from_utf8_lossy(&got).contains(needle) {
        match stream.read(&mut piece) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&piece[..n]),
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn a_batch_whose_sender_hung_up_still_charges_and_answers_everyone() {
    let rule = unique_rule_name("tq-sender-gone");
    let config = per_user_config(&rule, 8000);
    let mut redis = Redis::start();
    let webdis = Webdis::start(redis.port());
    let upstream = SlowUpstream::start();
    let plugin = token_quota_plugin(stack::wasm_path("token-quota"), &config);
    let envoy = Envoy::start(llm_envoy(
        plugin,
        webdis.port(),
        upstream.port(),
        LlmProtocol::Http1,
    ));
    let port = envoy.port();
    // Three clients of one counter, let through one after the other (each
    // reaches the upstream once its quota read answered). The sender's
    // usage comes first; the others' while its charge is in flight.
    upstream.answer_next(stream_script(Duration::from_millis(1500)));
    let mut sender = send_chat(port);
    upstream.received(Duration::from_secs(5));
    let mut others = Vec::new();
    for _ in 0..2 {
        upstream.answer_next(stream_script(Duration::from_millis(2500)));
        others.push(send_chat(port));
        upstream.received(Duration::from_secs(5));
    }
    read_until(&mut sender, "Hello", Duration::from_secs(5));
    // With Redis frozen, the sender's charge stays in flight, and the
    // others' charges wait behind it.
    let before = round_trips(&redis);
    redis.freeze();
    let got = read_until(&mut sender, "total_tokens", Duration::from_millis(2500));
    assert!(
        !got.contains("total_tokens"),
        "the sender's usage event is held while its charge is in flight"
    );
    std::thread::sleep(Duration::from_millis(1500));
    // The sender's client hangs up before any reply.
    sender.shutdown(std::net::Shutdown::Both).unwrap();
    drop(sender);
    std::thread::sleep(Duration::from_millis(300));
    redis.thaw();
    for (i, other) in others.iter_mut().enumerate() {
        let got = read_until(other, "[DONE]", Duration::from_secs(10));
        assert!(
            got.contains("total_tokens") && got.contains("[DONE]"),
            "client {i} got its whole answer: {got:?}\n{}",
            stack::envoy_log_excerpt(&envoy.log(), 30)
        );
    }
    // Their answers went on when their charges were written: the sender's
    // call, then one call for both others (read before the test's own
    // GETs below).
    assert_eq!(
        round_trips(&redis) - before,
        2,
        "the sender's call, then one call for both others"
    );
    // All three charged: the sender's 30, and the others' 60.
    assert_eq!(
        charged(&redis, &rule),
        90,
        "{}",
        stack::envoy_log_excerpt(&envoy.log(), 30)
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(envoy.stat("wasmcustom.token-quota.client_gone"), Some(1));
    assert_eq!(envoy.stat("wasmcustom.token-quota.tokens"), Some(90));
    assert_eq!(
        envoy
            .stat("wasmcustom.token-quota.redis_errors")
            .unwrap_or(0),
        0
    );
}

fn eval(redis: &Redis, key: &[u8], ttl: &[u8], amount: &[u8]) -> Resp {
    redis
        .command(&[
            b"EVAL",
            kit::COUNT_SCRIPT.as_bytes(),
            b"1",
            key,
            ttl,
            amount,
        ])
        .unwrap()
}

fn ttl(redis: &Redis, key: &[u8]) -> i64 {
    match redis.command(&[b"TTL", key]).unwrap() {
        Resp::Integer(n) => n,
        other => panic!("TTL answered {other:?}"),
    }
}

#[test]
fn a_quota_read_leaves_the_window_expiry_alone() {
    let redis = Redis::start();
    // A read of a counter nobody charged yet: 0, and the counter it leaves
    // expires with the window (never a key without expiry).
    assert_eq!(eval(&redis, b"t", b"60", b"0"), Resp::Integer(0));
    assert!((1..=60).contains(&ttl(&redis, b"t")));
    // The first charge: counted, expiring with the window.
    assert_eq!(eval(&redis, b"t", b"60", b"100"), Resp::Integer(100));
    assert!((1..=60).contains(&ttl(&redis, b"t")));
    // Later in the window: reads and charges keep the expiry as it is.
    redis.command(&[b"EXPIRE", b"t", b"20"]).unwrap();
    assert_eq!(eval(&redis, b"t", b"60", b"0"), Resp::Integer(100));
    assert!((1..=20).contains(&ttl(&redis, b"t")));
    assert_eq!(eval(&redis, b"t", b"60", b"5"), Resp::Integer(105));
    assert!((1..=20).contains(&ttl(&redis, b"t")));
    // A counter Redis cannot add to is replaced by a read too: 0 used,
    // expiring with the window; the next charge counts from there.
    redis.command(&[b"DEL", b"t"]).unwrap();
    redis.command(&[b"HSET", b"t", b"f", b"v"]).unwrap();
    let Resp::Array(Some(parts)) = eval(&redis, b"t", b"60", b"0") else {
        panic!("not the repair's array");
    };
    assert_eq!(parts[0], Resp::Integer(0));
    assert!((1..=60).contains(&ttl(&redis, b"t")));
    assert_eq!(eval(&redis, b"t", b"60", b"7"), Resp::Integer(7));
}
