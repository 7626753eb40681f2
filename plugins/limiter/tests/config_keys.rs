//! The limiter reads every key of the configurations it documents: none of
//! them draws an unknown-key warning, and a misspelt one does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kit::fake::FakeHost;
use kit::{Filter, LogLevel};
use limiter::Limiter;

fn warnings(config: &str) -> Vec<String> {
    let mut filter = Filter::<Limiter, FakeHost>::new(FakeHost::new());
    filter.configure(config.as_bytes().to_vec()).unwrap();
    filter
        .host()
        .logs
        .iter()
        .filter(|(level, _)| *level == LogLevel::Warn)
        .map(|(_, line)| line.clone())
        .collect()
}

#[test]
fn the_documented_configurations_use_every_key() {
    // The README's example, and one with every field and rule kind.
    let readme = r#"{
      "rule_name": "api",
      "rule_items": [
        {"limit_by_per_header": "x-api-key", "limit_keys": [{"key": "regexp:^test-", "query_per_minute": 10},
                                                           {"key": "*", "query_per_minute": 600}]},
        {"limit_by_per_ip": "from-header-x-forwarded-for", "limit_keys": [{"key": "0.0.0.0/0", "query_per_second": 20}]}
      ],
      "show_limit_quota_header": true,
      "redis": {"webdis_cluster": "webdis", "timeout": 500},
      "_rules_": [{"_match_route_prefix_": ["/admin"], "rule_name": "admin",
                   "global_threshold": {"query_per_minute": 30}}]
    }"#;
    assert_eq!(warnings(readme), Vec::<String>::new());
    let everything = r#"{
      "rule_name": "all",
      "global_threshold": {"query_per_hour": 1000},
      "rejected_code": 503,
      "rejected_msg": "slow down",
      "show_limit_quota_header": false,
      "failure_mode_deny": true,
      "redis_key_prefix": "rl",
      "redis": {"transport": "webdis", "webdis_cluster": "webdis", "timeout": 100},
      "_rules_": [
        {"_match_domain_": ["*.example.com"], "rule_items": [
          {"limit_by_cookie": "sid", "limit_keys": [{"key": "*", "query_per_day": 5}]},
          {"limit_by_per_param": "key", "limit_keys": [{"key": "*", "query_per_second": 1}]},
          {"limit_by_per_consumer": "", "limit_keys": [{"key": "*", "query_per_minute": 9}]}
        ]},
        {"_match_route_": ["r1"], "_match_service_": ["svc.dns"], "global_threshold": {"query_per_second": 3}}
      ]
    }"#;
    assert_eq!(warnings(everything), Vec::<String>::new());
}

#[test]
fn a_misspelt_key_is_reported() {
    let config = r#"{"rule_name": "api", "global_threshold": {"query_per_minute": 5},
                     "rejected_cod": 503, "redis": {"webdis_cluster": "webdis"}}"#;
    let warnings = warnings(config);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("rejected_cod: unknown key (did you mean `rejected_code`?)"));
}
