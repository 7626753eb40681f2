//! The external registry's choice of scenarios (the overhead rows only
//! with their routes), and the token quota's key pattern.

use super::accuracy::rule_keys;
use super::*;
use crate::target::{PassLimiter, QuotaRoute};

fn route(rule: &str, key_prefix: &str) -> QuotaRoute {
    QuotaRoute {
        port: 1,
        path: "/".to_owned(),
        listener: None,
        rule: rule.to_owned(),
        key_prefix: key_prefix.to_owned(),
        per_minute: None,
        upstream: None,
        baseline_port: 2,
        baseline_path: "/".to_owned(),
    }
}

#[test]
fn rule_keys_escape_the_rule_as_the_quota_does_and_the_pattern_too() {
    assert_eq!(
        rule_keys(&route("compose-json", "token-quota")),
        "token-quota:{compose-json:*"
    );
    assert_eq!(rule_keys(&route("a:b{c}%", "tq")), "tq:{a%3Ab%7Bc%7D%25:*");
    assert_eq!(
        rule_keys(&route("x*[y]?", "p\\")),
        "p\\\\:{x\\*\\[y\\]\\?:*"
    );
}

#[test]
fn runnable_follows_the_routes_given() {
    let mut target = Target {
        description: String::new(),
        gateways: Vec::new(),
        quota: None,
        pass: Default::default(),
        redis_port: 6379,
        redis_stop: None,
        redis_start: None,
    };
    assert!(!runnable(&target)
        .iter()
        .any(|id| id.starts_with("token-quota")));
    assert!(always_skipped(&target)
        .iter()
        .any(|s| s.id.contains("token-quota-json-accuracy")));
    target.quota = Some(crate::target::Quota {
        json: None,
        sse: Some(route("s", "token-quota")),
    });
    let ids = runnable(&target);
    assert!(ids.contains(&"token-quota-sse-accuracy"));
    assert!(!ids.contains(&"token-quota-json-accuracy"));
    let skipped = always_skipped(&target);
    assert!(skipped.iter().any(|s| s.id == "token-quota-json-accuracy"));
    assert!(!skipped
        .iter()
        .any(|s| s.id.contains("token-quota-sse-accuracy")));
}

#[test]
fn overhead_rows_run_only_with_their_routes() {
    const ROWS: [&str; 4] = [
        "limiter-pass",
        "upstream-baseline",
        "token-quota-json",
        "token-quota-sse",
    ];
    let mut t = Target::default();
    let ids = runnable(&t);
    assert!(ROWS.iter().all(|row| !ids.contains(row)), "{ids:?}");
    t.pass.limiter = Some(PassLimiter {
        port: 1,
        listener: None,
    });
    t.pass.sse = Some(route("", "token-quota"));
    let ids = runnable(&t);
    for row in ["limiter-pass", "upstream-baseline", "token-quota-sse"] {
        assert!(ids.contains(&row), "{row} in {ids:?}");
    }
    assert!(!ids.contains(&"token-quota-json"), "{ids:?}");
}
