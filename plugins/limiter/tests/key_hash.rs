//! `key_hash`: counter keys name request values by a keyed hash, so
//! bearer tokens and API keys never reach Redis key names in clear. Over
//! the kit's `FakeHost`, its calls answered by the in-memory `FakeRedis`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use common::{Driver, Outcome};
use kit::fake::FakeHost;
use kit::Filter;
use limiter::Limiter;

const WEBDIS: &str = r#""redis": {"webdis_cluster": "webdis"}"#;
const SECRET: &str = "the same 32-byte secret, shared!";

/// A limit of 2 a minute per `authorization` value, hashed under `secret`
/// (`None`: `key_hash` off).
fn per_authorization(secret: Option<&str>) -> String {
    let hash = match secret {
        Some(secret) => format!(r#""key_hash": true, "key_hash_secret": "{secret}","#),
        None => String::new(),
    };
    format!(
        r#"{{"rule_name": "kh", {hash} "rule_items": [{{"limit_by_per_header": "authorization",
            "limit_keys": [{{"key": "*", "query_per_minute": 2}}]}}], {WEBDIS}}}"#
    )
}

/// The part of a per-value key between the source's name and `}:`.
fn named_value(key: &str) -> &str {
    let start = key.find(":authorization:").unwrap() + ":authorization:".len();
    let end = key.rfind("}:").unwrap();
    &key[start..end]
}

#[test]
fn a_hashed_key_holds_32_hex_digits_and_no_part_of_the_token() {
    let mut d = Driver::new(&per_authorization(Some(SECRET)));
    d.at_second(5);
    let token = "Bearer sk-live-abcdefghijklmnop";
    assert_eq!(d.request(&[("authorization", token)]), Outcome::Forwarded);
    let keys = d.keys();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    let named = named_value(key);
    assert_eq!(named.len(), 32, "{key}");
    assert!(
        named
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "{key}"
    );
    for part in ["Bearer", "sk-live", "abcdefghijklmnop", "sk", "live"] {
        assert!(!key.contains(part), "{part} in {key}");
    }
    assert!(
        key.starts_with("limiter:{kh:2_per_60s:per_header:authorization:"),
        "{key}"
    );
}

#[test]
fn one_token_is_one_counter_and_another_token_another() {
    let mut d = Driver::new(&per_authorization(Some(SECRET)));
    d.at_second(5);
    let alice = [("authorization", "Bearer alice-token")];
    let bob = [("authorization", "Bearer bob-token")];
    assert_eq!(d.request(&alice), Outcome::Forwarded);
    assert_eq!(d.request(&alice), Outcome::Forwarded);
    assert_eq!(d.request(&alice), Outcome::Answered(429));
    assert_eq!(d.request(&bob), Outcome::Forwarded);
    assert_eq!(d.keys().len(), 2, "{:?}", d.keys());
    let mut counts = d.counts();
    counts.sort_unstable();
    assert_eq!(counts, [1, 3]);
}

#[test]
fn gateways_with_one_secret_share_keys_and_another_secret_does_not() {
    let key_of = |secret: &str| {
        let mut d = Driver::new(&per_authorization(Some(secret)));
        d.at_second(5);
        d.request(&[("authorization", "Bearer shared")]);
        d.keys().remove(0)
    };
    let first = key_of(SECRET);
    assert_eq!(first, key_of(SECRET), "same secret, same key");
    let other = key_of("another secret of 32 bytes, too!");
    assert_ne!(named_value(&first), named_value(&other));
}

#[test]
fn without_key_hash_the_value_is_in_the_key_as_higress_writes_it() {
    let mut d = Driver::new(&per_authorization(None));
    d.at_second(5);
    d.request(&[("authorization", "Bearer visible")]);
    assert_eq!(named_value(&d.keys()[0]), "Bearer visible");
}

#[test]
fn every_per_value_source_and_configured_keys_are_hashed() {
    let config = format!(
        r#"{{"rule_name": "kh", "key_hash": true, "key_hash_secret": "{SECRET}", "rule_items": [
            {{"limit_by_header": "x-api-key", "limit_keys": [{{"key": "configured-key-123", "query_per_minute": 9}}]}},
            {{"limit_by_per_param": "apikey", "limit_keys": [{{"key": "*", "query_per_minute": 9}}]}},
            {{"limit_by_per_cookie": "session", "limit_keys": [{{"key": "*", "query_per_minute": 9}}]}},
            {{"limit_by_per_consumer": "", "limit_keys": [{{"key": "*", "query_per_minute": 9}}]}},
            {{"limit_by_per_ip": "from-header-x-real-ip", "limit_keys": [{{"key": "0.0.0.0/0", "query_per_minute": 9}}]}}],
            "_rules_": [{{"_match_domain_": ["rules.example"], "rule_items": [
            {{"limit_by_per_header": "x-tenant", "limit_keys": [{{"key": "*", "query_per_minute": 9}}]}}]}}], {WEBDIS}}}"#
    );
    let mut d = Driver::new(&config);
    d.at_second(5);
    let requests: [&[(&str, &str)]; 6] = [
        &[("x-api-key", "configured-key-123")],
        &[(":path", "/x?apikey=param-value-456")],
        &[("cookie", "a=1; session=cookie-value-789")],
        &[("x-mse-consumer", "consumer-name-abc")],
        &[("x-real-ip", "203.0.113.77")],
        &[
            (":authority", "rules.example"),
            ("x-tenant", "tenant-value-def"),
        ],
    ];
    for headers in requests {
        assert_eq!(d.request(headers), Outcome::Forwarded, "{headers:?}");
    }
    let keys = d.keys();
    assert_eq!(keys.len(), 6, "{keys:?}");
    for secret in [
        "configured-key-123",
        "param-value-456",
        "cookie-value-789",
        "consumer-name-abc",
        "203.0.113.77",
        "tenant-value-def",
    ] {
        assert!(
            keys.iter().all(|k| !k.contains(secret)),
            "{secret} in {keys:?}"
        );
    }
    // Each still names its source, then 32 hex digits.
    for key in &keys {
        let value =
            &key[key[..key.rfind("}:").unwrap()].rfind(':').unwrap() + 1..key.rfind("}:").unwrap()];
        assert_eq!(value.len(), 32, "{key}");
    }
}

fn refused(config: &str) -> String {
    let mut filter = Filter::<Limiter, FakeHost>::new(FakeHost::new());
    filter
        .configure(config.as_bytes().to_vec())
        .unwrap_err()
        .to_string()
}

#[test]
fn a_missing_short_or_unused_secret_is_refused_in_one_line_naming_the_field() {
    let base = r#""rule_name": "kh", "global_threshold": {"query_per_minute": 2}"#;
    for (extra, says) in [
        (r#""key_hash": true"#, "is required"),
        (
            r#""key_hash": true, "key_hash_secret": "too-short""#,
            "at least 16 bytes",
        ),
        (
            r#""key_hash": true, "key_hash_secret": 1234567890123456789"#,
            "key_hash_secret",
        ),
        (
            r#""key_hash_secret": "0123456789abcdef0123""#,
            "`key_hash` is not true",
        ),
        (
            r#""key_hash": "yes", "key_hash_secret": "0123456789abcdef0123""#,
            "key_hash",
        ),
    ] {
        let error = refused(&format!("{{{base}, {extra}, {WEBDIS}}}"));
        assert!(error.contains("key_hash"), "{extra}: {error}");
        assert!(error.contains(says), "{extra}: {error}");
        assert!(!error.contains('\n'), "one line: {error}");
        assert!(
            !error.contains("0123456789abcdef"),
            "the secret is not echoed: {error}"
        );
    }
    // Long enough: accepted.
    let mut filter = Filter::<Limiter, FakeHost>::new(FakeHost::new());
    filter
        .configure(
            format!(
                r#"{{{base}, "key_hash": true, "key_hash_secret": "0123456789abcdef", {WEBDIS}}}"#
            )
            .into_bytes(),
        )
        .unwrap();
}
