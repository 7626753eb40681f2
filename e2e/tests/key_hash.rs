//! `key_hash` end to end: `limiter.wasm` in a real Envoy 1.40 counting in
//! a real Redis through webdis, keyed by `authorization`. The Redis key
//! names hold no part of the bearer tokens, one token is one counter, and
//! the limit still holds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2e::{room_in_minute_for, unique_rule_name, LimiterStack};
use serde_json::json;

#[test]
fn bearer_tokens_never_reach_redis_key_names() {
    let rule = unique_rule_name("key-hash");
    let stack = LimiterStack::start(&json!({
        "rule_name": rule,
        "key_hash": true,
        "key_hash_secret": "e2e secret, the same on every gateway",
        "rule_items": [{
            "limit_by_per_header": "authorization",
            "limit_keys": [{"key": "*", "query_per_minute": 2}],
        }],
        "redis": {"webdis_cluster": e2e::WEBDIS_CLUSTER, "timeout": 500},
    }));
    room_in_minute_for(5);
    let alice = [("authorization", "Bearer sk-alice-0123456789")];
    let bob = [("authorization", "Bearer sk-bob-9876543210")];
    let statuses: Vec<u16> = [&alice, &alice, &alice, &bob]
        .iter()
        .map(|headers| stack.get(&headers[..]).status)
        .collect();
    assert_eq!(statuses, [200, 200, 429, 200]);
    let keys: Vec<String> = stack
        .redis
        .keys()
        .iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert_eq!(keys.len(), 2, "one counter per token: {keys:?}");
    for key in &keys {
        for part in ["Bearer", "sk-", "alice", "bob", "0123456789", "9876543210"] {
            assert!(!key.contains(part), "{part} in {key}");
        }
        let head = format!("limiter:{{{rule}:2_per_60s:per_header:authorization:");
        let rest = key.strip_prefix(&head).unwrap_or_else(|| panic!("{key}"));
        let (named, window) = rest.split_once("}:").unwrap();
        assert_eq!(named.len(), 32, "{key}");
        assert!(
            named
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "{key}"
        );
        assert!(window.parse::<u64>().is_ok(), "{key}");
    }
    let mut counts: Vec<i64> = keys
        .iter()
        .map(
            |k| match stack.redis.command(&[b"GET", k.as_bytes()]).unwrap() {
                stack::resp::Resp::Bulk(Some(v)) => String::from_utf8(v).unwrap().parse().unwrap(),
                other => panic!("{other:?}"),
            },
        )
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, [1, 3]);
}
