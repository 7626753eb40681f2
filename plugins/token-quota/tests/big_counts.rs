//! Counts past 2^31 - 1, which the counting script returns as strings of
//! digits (webdis 0.1.9 cuts larger RESP integers short), and usage too
//! large for Redis, clamped to 2^53. Over the kit's `FakeHost` and
//! `FakeRedis` (the script emulated in Rust).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use common::{openai_json, Driver, Outcome, Upstream};

const CONFIG: &str = r#"{"rule_name": "big", "rule_items": [{"limit_by_per_header": "x-user",
    "limit_keys": [{"key": "*", "token_per_day": 5000000000}]}], "redis": {"webdis_cluster": "webdis"}}"#;

const CHAT: &[u8] = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

#[test]
fn counts_past_2_pow_31_are_read_and_decide() {
    let mut d = Driver::new(CONFIG);
    d.at_second(5);
    let answer = openai_json(3_000_000_000);
    let upstream = Upstream {
        content_type: "application/json",
        chunks: &[&answer],
    };
    // 0 used: admitted, charged 3e9.
    assert_eq!(
        d.request(&[("x-user", "a")], CHAT, &upstream),
        Outcome::Answered200
    );
    assert_eq!(d.charged(":a}"), 3_000_000_000);
    // 3e9 of 5e9 used, read as a string of digits: admitted, now 6e9.
    assert_eq!(
        d.request(&[("x-user", "a")], CHAT, &upstream),
        Outcome::Answered200
    );
    assert_eq!(d.charged(":a}"), 6_000_000_000);
    // Over: refused.
    assert_eq!(
        d.request(&[("x-user", "a")], CHAT, &upstream),
        Outcome::Refused(429)
    );
    assert_eq!(d.counter("token-quota.redis_errors"), 0);
}

#[test]
fn usage_past_2_pow_53_is_charged_2_pow_53() {
    let mut d = Driver::new(CONFIG);
    d.at_second(5);
    let answer = openai_json(u64::MAX);
    let upstream = Upstream {
        content_type: "application/json",
        chunks: &[&answer],
    };
    assert_eq!(
        d.request(&[("x-user", "b")], CHAT, &upstream),
        Outcome::Answered200
    );
    assert_eq!(d.charged(":b}"), 1 << 53);
    assert_eq!(
        d.request(&[("x-user", "b")], CHAT, &upstream),
        Outcome::Refused(429)
    );
}
