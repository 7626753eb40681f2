//! A request value too long for a webdis URL: the command is not sent (a
//! refused over-long URL would leave webdis answering the next call on
//! the connection with a stray `400`), the failure mode decides, and
//! nothing is counted. Over the kit's `FakeHost` and `FakeRedis`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use common::{Driver, Outcome};

fn config(deny: bool, hashed: bool) -> String {
    let hash = if hashed {
        r#""key_hash": true, "key_hash_secret": "0123456789abcdef-long-keys","#
    } else {
        ""
    };
    format!(
        r#"{{"rule_name": "long", {hash} "failure_mode_deny": {deny}, "rule_items": [{{"limit_by_per_header": "x-api-key",
            "limit_keys": [{{"key": "*", "query_per_minute": 5}}]}}], "redis": {{"webdis_cluster": "webdis"}}}}"#
    )
}

#[test]
fn a_key_too_long_for_a_webdis_url_is_not_sent_and_the_failure_mode_decides() {
    // 30,000 bytes that each take three in the URL: 90 KB of path.
    let long = "\u{7f}".repeat(30_000);
    for (deny, want) in [(false, Outcome::Forwarded), (true, Outcome::Answered(503))] {
        let mut d = Driver::new(&config(deny, false));
        d.at_second(5);
        let calls = d.host().calls_sent;
        assert_eq!(d.request(&[("x-api-key", &long)]), want);
        assert_eq!(d.host().calls_sent, calls, "nothing sent");
        assert!(d.keys().is_empty(), "nothing counted: {}", d.keys().len());
        assert_eq!(d.counter("limiter.redis_errors"), 1);
        // The next request is counted as usual.
        assert_eq!(d.request(&[("x-api-key", "short")]), Outcome::Forwarded);
        assert_eq!(d.counts(), [1]);
    }
}

#[test]
fn a_long_value_that_fits_is_counted_and_key_hash_makes_any_length_fit() {
    // 20,000 letters: a URL of about 20 KB, sent.
    let mut d = Driver::new(&config(true, false));
    d.at_second(5);
    assert_eq!(
        d.request(&[("x-api-key", &"a".repeat(20_000))]),
        Outcome::Forwarded
    );
    assert_eq!(d.counts(), [1]);
    // Hashed, a value of any length is 32 digits in its key.
    let mut d = Driver::new(&config(true, true));
    d.at_second(5);
    let long = "\u{7f}".repeat(30_000);
    for _ in 0..2 {
        assert_eq!(d.request(&[("x-api-key", &long)]), Outcome::Forwarded);
    }
    assert_eq!(d.counts(), [2]);
    assert!(d.keys()[0].len() < 100);
}
