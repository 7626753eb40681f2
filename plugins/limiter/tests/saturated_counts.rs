//! Counters pushed to the edge of Redis's integers (2^63 - 1) keep
//! refusing: an increment that would overflow leaves the key as it is and
//! counts as 2^63 - 1, and a count that Lua's doubles round up to 2^63 is
//! read as 2^63 - 1, neither repaired to a small count nor left to the
//! failure mode. Over the kit's `FakeHost` and `FakeRedis` (the counting
//! script emulated in Rust, rounding as Lua does).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use common::{Driver, Outcome};

const CONFIG: &str = r#"{"rule_name": "sat", "rule_items": [{"limit_by_per_header": "x-api-key",
    "limit_keys": [{"key": "*", "query_per_minute": 5}]}], "redis": {"webdis_cluster": "webdis"}}"#;

/// A driver whose counter of `user` holds `count`, with its expiry.
fn counted_at(user: &str, count: &[u8]) -> (Driver, Vec<u8>) {
    let mut d = Driver::new(CONFIG);
    d.at_second(5);
    assert_eq!(d.request(&[("x-api-key", user)]), Outcome::Forwarded);
    let key = d.keys()[0].clone().into_bytes();
    d.redis.store.set(&key, count, Some(55));
    (d, key)
}

#[test]
fn a_counter_at_2_pow_63_minus_1_keeps_refusing() {
    let (mut d, key) = counted_at("at-max", b"9223372036854775807");
    for _ in 0..3 {
        assert_eq!(
            d.request(&[("x-api-key", "at-max")]),
            Outcome::Answered(429)
        );
    }
    assert_eq!(
        d.redis.store.get(&key),
        Some(&b"9223372036854775807"[..]),
        "left as it was"
    );
    assert_eq!(d.counter("limiter.keys_repaired"), 0);
    assert_eq!(d.counter("limiter.redis_errors"), 0);
}

#[test]
fn a_counter_that_rounds_to_2_pow_63_keeps_refusing() {
    let (mut d, key) = counted_at("rounds-up", b"9223372036854775500");
    assert_eq!(
        d.request(&[("x-api-key", "rounds-up")]),
        Outcome::Answered(429)
    );
    assert_eq!(d.redis.store.integer(&key), Some(9_223_372_036_854_775_501));
    assert_eq!(d.counter("limiter.keys_repaired"), 0);
    assert_eq!(d.counter("limiter.redis_errors"), 0);
}
