//! Shared increments in a real Envoy 1.40 with real Redis and webdis:
//! requests that arrive while their key's call is in flight go to Redis
//! together, and the call outlives the request whose arrival sent it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use e2e::{room_in_minute_for, summary, unique_rule_name, LimiterStack};
use serde_json::json;
use stack::resp::Resp;
use stack::{get_with_timeout, Redis};

/// Calls of `command` Redis has run, from `INFO commandstats`.
fn calls_of(redis: &Redis, command: &str) -> u64 {
    let Ok(Resp::Bulk(Some(text))) = redis.command(&[b"INFO", b"commandstats"]) else {
        panic!("INFO commandstats did not answer a bulk string");
    };
    let text = String::from_utf8_lossy(&text).into_owned();
    let prefix = format!("cmdstat_{command}:calls=");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[test]
fn a_batch_is_answered_after_the_client_whose_request_sent_it_hung_up() {
    let rule = unique_rule_name("sender-gone");
    let config = json!({
        "rule_name": rule,
        "global_threshold": {"query_per_minute": 10},
        "show_limit_quota_header": true,
        "redis": {"webdis_cluster": e2e::WEBDIS_CLUSTER, "timeout": 8000},
    });
    let mut stack = LimiterStack::start(&config);
    let port = stack.envoy.port();
    let window = room_in_minute_for(50);
    // Redis learns the script, and counts 1.
    let first = stack.get(&[]);
    assert_eq!(
        first.header("x-ratelimit-remaining"),
        Some("9"),
        "{}",
        summary(&first)
    );
    let evalsha_before = calls_of(&stack.redis, "evalsha");

    // With Redis frozen, the sender's call stays in flight.
    stack.redis.freeze();
    let mut sender = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sender
        .write_all(b"GET / HTTP/1.1\r\nhost: sender\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    // Two more requests for the same key wait behind it.
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                get_with_timeout(port, "/", &[], Duration::from_secs(20)).unwrap()
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    // The sender's client hangs up before any reply.
    sender.shutdown(std::net::Shutdown::Both).unwrap();
    drop(sender);
    std::thread::sleep(Duration::from_millis(400));
    stack.redis.thaw();

    let answers: Vec<_> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
    let mut remaining: Vec<String> = answers
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{}", summary(r));
            r.header("x-ratelimit-remaining").unwrap().to_owned()
        })
        .collect();
    remaining.sort();
    // The sender was counted (2), then the two waiters (3 and 4).
    assert_eq!(remaining, ["6", "7"], "{}", stack.envoy.log());
    e2e::assert_same_window(window);
    let keys = stack.redis.keys();
    assert_eq!(keys.len(), 1, "one counter key");
    assert_eq!(
        stack.redis.command(&[b"GET", &keys[0]]).unwrap(),
        Resp::Bulk(Some(b"4".to_vec()))
    );
    // The sender's call, then one call for both waiters.
    assert_eq!(calls_of(&stack.redis, "evalsha") - evalsha_before, 2);
}
