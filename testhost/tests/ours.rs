//! Our modules built with `--features higress` through the host, against a
//! real Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{higress_module, setup_with, REDIS_CLUSTER};
use serde_json::json;
use stack::Redis;
use testhost::{Host, Request, Verdict};

fn limiter_config(rule: &str, per_minute: i64, deny: bool) -> Vec<u8> {
    json!({
        "rule_name": rule,
        "rule_items": [{
            "limit_by_header": "x-user",
            "limit_keys": [{"key": "*", "query_per_minute": per_minute}],
        }],
        "show_limit_quota_header": true,
        "failure_mode_deny": deny,
        "redis": {"service_name": "redis.dns", "timeout": 300},
    })
    .to_string()
    .into_bytes()
}

#[test]
fn limiter_smoke() {
    let redis = Redis::start();
    let mut host = Host::load(
        &higress_module("limiter"),
        &limiter_config("smoke", 2, false),
        setup_with(&redis, REDIS_CLUSTER),
    )
    .unwrap();
    for i in 0..3 {
        let ex = host.run(&Request::get("/").header("x-user", "alice"));
        eprintln!(
            "{i}: {:?} {} {:?} {:?}",
            ex.verdict, ex.status, ex.response_headers, ex.redis_calls
        );
        for l in &ex.logs {
            eprintln!("  log {} {}", l.level, l.message);
        }
    }
    assert_eq!(host.run(&Request::get("/")).verdict, Verdict::Forwarded);
}
