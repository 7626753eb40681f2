//! The host's Redis client against a real `redis-server`: pipelining, one
//! reply per call in order, `?db=N`, and an operation timeout that fails
//! every call in flight on the connection.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Test code: JSON built with `value["key"] = ...` and answers indexed
// after their count was asserted read better than `get` chains.
#![allow(clippy::indexing_slicing)]

use stack::resp::Resp;
use stack::Redis;
use testhost::redis::{Delivery, RedisClusters};
use testhost::resp::encode_command;

const CLUSTER: &str = "outbound|6379||redis.dns";

fn clusters(redis: &Redis, timeout_ms: u32, options: &str) -> RedisClusters {
    let mut r = RedisClusters::default();
    r.route(
        CLUSTER,
        format!("127.0.0.1:{}", redis.port()).parse().unwrap(),
    );
    r.init(&format!("{CLUSTER}{options}"), b"", b"", timeout_ms)
        .unwrap();
    r
}

#[test]
fn pipelined_calls_get_their_own_replies_in_order() {
    let redis = Redis::start();
    let mut r = clusters(&redis, 1000, "");
    let tokens: Vec<u32> = (0..5)
        .map(|_| r.call(CLUSTER, &encode_command(&[b"INCR", b"n"])).unwrap())
        .collect();
    let mut replies = Vec::new();
    while let Some(d) = r.next_delivery() {
        replies.push(d);
    }
    let expected: Vec<Delivery> = tokens
        .iter()
        .zip(1..)
        .map(|(t, n)| Delivery::Reply {
            token: *t,
            bytes: format!(":{n}\r\n").into_bytes(),
        })
        .collect();
    assert_eq!(replies, expected);
    assert_eq!(r.connects(), 1, "one connection for the cluster");
}

#[test]
fn an_error_reply_is_a_reply() {
    let redis = Redis::start();
    let mut r = clusters(&redis, 1000, "");
    let token = r
        .call(CLUSTER, &encode_command(&[b"NOSUCHCOMMAND"]))
        .unwrap();
    match r.next_delivery() {
        Some(Delivery::Reply { token: t, bytes }) => {
            assert_eq!(t, token);
            assert!(
                bytes.starts_with(b"-ERR"),
                "{}",
                String::from_utf8_lossy(&bytes)
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_init_string_selects_the_database_and_calls_use_the_bare_name() {
    let redis = Redis::start();
    let mut r = clusters(
        &redis,
        1000,
        "?db=3&buffer_flush_timeout=3&max_buffer_size_before_flush=1024",
    );
    r.call(CLUSTER, &encode_command(&[b"SET", b"k", b"in-db-3"]))
        .unwrap();
    assert!(matches!(r.next_delivery(), Some(Delivery::Reply { .. })));
    // Database 0 does not have it; a connection selecting 3 does.
    assert_eq!(redis.command(&[b"GET", b"k"]).unwrap(), Resp::Bulk(None));
    assert_eq!(redis.command(&[b"DBSIZE"]).unwrap(), Resp::Integer(0));
    r.call(CLUSTER, &encode_command(&[b"GET", b"k"])).unwrap();
    match r.next_delivery() {
        Some(Delivery::Reply { bytes, .. }) => assert_eq!(bytes, b"$7\r\nin-db-3\r\n"),
        other => panic!("{other:?}"),
    }
    // Keying the connection on the full init string would refuse this call.
    assert_eq!(
        r.call(&format!("{CLUSTER}?db=3"), b"*1\r\n$4\r\nPING\r\n"),
        Err(2)
    );
}

#[test]
fn an_operation_timeout_fails_every_call_in_flight_then_reconnects() {
    let mut redis = Redis::start();
    let mut r = clusters(&redis, 200, "");
    r.call(CLUSTER, &encode_command(&[b"PING"])).unwrap();
    assert!(matches!(r.next_delivery(), Some(Delivery::Reply { .. })));
    redis.freeze();
    let tokens: Vec<u32> = (0..3)
        .map(|_| r.call(CLUSTER, &encode_command(&[b"INCR", b"x"])).unwrap())
        .collect();
    let mut got = Vec::new();
    while let Some(d) = r.next_delivery() {
        got.push(d);
    }
    redis.thaw();
    let failed: Vec<Delivery> = tokens
        .iter()
        .map(|t| Delivery::Failed { token: *t })
        .collect();
    assert_eq!(got, failed);
    assert!(r.calls().iter().rev().take(3).all(|c| c.failed));
    // The frozen Redis ran the queued INCRs once thawed; the closed
    // connection never pairs their late replies with new calls.
    let token = r.call(CLUSTER, &encode_command(&[b"PING"])).unwrap();
    assert_eq!(
        r.next_delivery(),
        Some(Delivery::Reply {
            token,
            bytes: b"+PONG\r\n".to_vec()
        })
    );
    assert_eq!(r.connects(), 2);
}
