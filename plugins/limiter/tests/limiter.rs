//! The limiter's behaviour, natively, over the kit's `FakeHost`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use common::{Driver, Outcome};
use kit::fake::FakeHost;
use kit::fake_request::Outcome as Step;
use kit::{Filter, HostError};
use limiter::Limiter;
use std::time::Duration;

const WEBDIS: &str = r#""redis": {"webdis_cluster": "webdis", "timeout": 250}"#;

fn config(body: &str) -> String {
    format!("{{{body}, {WEBDIS}}}")
}

#[test]
fn global_limit_allows_then_rejects_with_headers() {
    let mut d = Driver::new(&config(
        r#""rule_name": "r", "global_threshold": {"query_per_minute": 10}"#,
    ));
    d.at_second(15);
    let outcomes: Vec<Outcome> = (0..15).map(|_| d.request(&[])).collect();
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == Outcome::Forwarded)
            .count(),
        10
    );
    assert_eq!(
        outcomes[10..],
        [
            Outcome::Answered(429),
            Outcome::Answered(429),
            Outcome::Answered(429),
            Outcome::Answered(429),
            Outcome::Answered(429)
        ]
    );
    let response = d.host().response.clone().unwrap();
    assert_eq!(response.headers.get_str("x-ratelimit-limit"), Some("10"));
    assert_eq!(response.headers.get_str("x-ratelimit-remaining"), Some("0"));
    assert_eq!(response.headers.get_str("x-ratelimit-reset"), Some("45"));
    assert_eq!(response.body, b"Too many requests");
    // Redis counted 11: the 12th to 15th were rejected from the cache.
    assert_eq!(d.counts(), vec![11]);
    assert_eq!(d.counter("limiter.allowed"), 10);
    assert_eq!(d.counter("limiter.limited"), 1);
    assert_eq!(d.counter("limiter.limited_locally"), 4);
}

#[test]
fn the_over_limit_cache_keeps_every_counter_apart() {
    // Configured keys hash once at configure, per-value keys per request:
    // both must keep counters apart, including the same key text under two
    // items.
    let mut d = Driver::new(&config(
        r#""rule_name": "r", "rule_items": [
            {"limit_by_header": "x-tenant", "limit_keys": [
                {"key": "gold", "query_per_minute": 1},
                {"key": "silver", "query_per_minute": 1}]},
            {"limit_by_per_header": "x-user", "limit_keys": [
                {"key": "*", "query_per_minute": 1}]},
            {"limit_by_header": "x-plan", "limit_keys": [
                {"key": "gold", "query_per_minute": 1}]}]"#,
    ));
    d.at_second(5);
    let gold = [("x-tenant", "gold")];
    assert_eq!(d.request(&gold), Outcome::Forwarded);
    assert_eq!(d.request(&gold), Outcome::Answered(429));
    assert_eq!(d.counter("limiter.limited"), 1);
    // Now from the cache.
    assert_eq!(d.request(&gold), Outcome::Answered(429));
    assert_eq!(d.counter("limiter.limited_locally"), 1);
    // Every other counter still asks Redis and is allowed once.
    for headers in [
        &[("x-tenant", "silver")][..],
        &[("x-user", "gold")],
        &[("x-user", "ann")],
        &[("x-plan", "gold")],
    ] {
        assert_eq!(d.request(headers), Outcome::Forwarded, "{headers:?}");
    }
    assert_eq!(d.request(&[("x-user", "ann")]), Outcome::Answered(429));
    assert_eq!(d.request(&[("x-user", "ann")]), Outcome::Answered(429));
    assert_eq!(d.request(&[("x-user", "bob")]), Outcome::Forwarded);
    assert_eq!(d.counter("limiter.limited_locally"), 2);
    assert_eq!(d.redis.store.len(), 6);
}

#[test]
fn counter_key_is_cluster_safe_and_names_the_window() {
    let mut d = Driver::new(&config(
        r#""rule_name": "api", "global_threshold": {"query_per_second": 5}"#,
    ));
    d.host().now_nanos = 1_700_000_123_456_000_000;
    d.request(&[]);
    assert_eq!(d.keys(), ["limiter:{api:5_per_1s:global}:1700000123"]);
}

#[test]
fn a_new_window_starts_a_new_count() {
    let mut d = Driver::new(&config(
        r#""rule_name": "r", "global_threshold": {"query_per_second": 2}"#,
    ));
    assert_eq!(d.request(&[]), Outcome::Forwarded);
    assert_eq!(d.request(&[]), Outcome::Forwarded);
    assert_eq!(d.request(&[]), Outcome::Answered(429));
    assert_eq!(d.request(&[]), Outcome::Answered(429));
    d.host().advance(Duration::from_secs(1));
    assert_eq!(d.request(&[]), Outcome::Forwarded);
}

#[test]
fn quota_headers_on_allowed_answers() {
    let mut d = Driver::new(&config(
        r#""rule_name": "r", "global_threshold": {"query_per_hour": 3}, "show_limit_quota_header": true"#,
    ));
    for remaining in ["2", "1", "0"] {
        assert_eq!(d.request(&[]), Outcome::Forwarded);
        let headers = &d.host().response_headers;
        assert_eq!(headers.get_str("x-ratelimit-limit"), Some("3"));
        assert_eq!(headers.get_str("x-ratelimit-remaining"), Some(remaining));
    }
}

#[test]
fn per_header_values_have_their_own_counters_and_exact_keys() {
    let mut d = Driver::new(&config(
        r#""rule_name": "keys", "rule_items": [{"limit_by_per_header": "x-api-key", "limit_keys": [{"key": "*", "query_per_minute": 2}]}]"#,
    ));
    d.at_second(0);
    for key in ["alice", "a/b", "100%", "with space", "é\u{1F600}"] {
        assert_eq!(
            d.request(&[("x-api-key", key)]),
            Outcome::Forwarded,
            "{key}"
        );
        assert_eq!(
            d.request(&[("x-api-key", key)]),
            Outcome::Forwarded,
            "{key}"
        );
        assert_eq!(
            d.request(&[("x-api-key", key)]),
            Outcome::Answered(429),
            "{key}"
        );
        let want = format!("limiter:{{keys:2_per_60s:per_header:x-api-key:{key}}}:");
        assert!(
            d.keys().iter().any(|k| k.starts_with(&want)),
            "no counter for {key:?} in {:?}",
            d.keys()
        );
    }
    // Requests without the header are not limited.
    for _ in 0..5 {
        assert_eq!(d.request(&[]), Outcome::Forwarded);
    }
}

#[test]
fn exact_keys_regexps_and_first_match_order() {
    let mut d = Driver::new(&config(
        r#""rule_name": "r", "rule_items": [
            {"limit_by_header": "x-tenant", "limit_keys": [{"key": "gold", "query_per_minute": 3}, {"key": "regexp:^s", "query_per_minute": 1}]},
            {"limit_by_per_param": "user", "limit_keys": [{"key": "*", "query_per_minute": 1}]}
        ]"#,
    ));
    d.at_second(0);
    assert_eq!(d.request(&[("x-tenant", "gold")]), Outcome::Forwarded);
    assert_eq!(d.request(&[("x-tenant", "silver")]), Outcome::Forwarded);
    // "silver" and "steel" share the `regexp:^s` counter (not per value).
    assert_eq!(d.request(&[("x-tenant", "steel")]), Outcome::Answered(429));
    // A tenant no key matches falls through to the next item.
    assert_eq!(
        d.request(&[("x-tenant", "bronze"), (":path", "/x?user=a%20b")]),
        Outcome::Forwarded
    );
    assert_eq!(
        d.request(&[(":path", "/x?user=a+b")]),
        Outcome::Answered(429)
    );
    assert_eq!(d.request(&[(":path", "/x?user=c")]), Outcome::Forwarded);
}

#[test]
fn regexp_keys_take_flags() {
    let mut d = Driver::new(&config(
        r#""rule_name": "r", "rule_items": [
            {"limit_by_header": "x-tenant", "limit_keys": [{"key": "regexp:(?i)^gold-", "query_per_minute": 1}]}
        ]"#,
    ));
    d.at_second(0);
    assert_eq!(d.request(&[("x-tenant", "GOLD-1")]), Outcome::Forwarded);
    // `gold-2` shares the case-insensitive key's counter.
    assert_eq!(d.request(&[("x-tenant", "gold-2")]), Outcome::Answered(429));
    assert_eq!(d.request(&[("x-tenant", "silver")]), Outcome::Forwarded);
}

#[test]
fn per_ip_ranges_from_remote_address_and_forwarded_header() {
    let mut d = Driver::new(&config(
        r#""rule_name": "r", "rule_items": [{"limit_by_per_ip": "from-header-x-forwarded-for", "limit_keys": [{"key": "10.0.0.0/8", "query_per_minute": 1}]}]"#,
    ));
    d.at_second(0);
    assert_eq!(
        d.request(&[("x-forwarded-for", "10.1.1.1, 192.168.0.1")]),
        Outcome::Forwarded
    );
    assert_eq!(
        d.request(&[("x-forwarded-for", "10.1.1.1")]),
        Outcome::Answered(429)
    );
    assert_eq!(
        d.request(&[("x-forwarded-for", "10.1.1.2")]),
        Outcome::Forwarded
    );
    assert_eq!(
        d.request(&[("x-forwarded-for", "11.1.1.1")]),
        Outcome::Forwarded
    );
    assert_eq!(
        d.request(&[("x-forwarded-for", "11.1.1.1")]),
        Outcome::Forwarded
    );

    let mut d = Driver::new(&config(
        r#""rule_name": "r", "rule_items": [{"limit_by_per_ip": "from-remote-addr", "limit_keys": [{"key": "0.0.0.0/0", "query_per_minute": 1}]}]"#,
    ));
    d.at_second(0);
    d.host().properties.add("source.address", b"127.0.0.1:5555");
    assert_eq!(d.request(&[]), Outcome::Forwarded);
    d.host().properties.clear();
    d.host().properties.add("source.address", b"127.0.0.1:6666");
    assert_eq!(d.request(&[]), Outcome::Answered(429));
}

#[test]
fn redis_failure_lets_requests_through_by_default() {
    let mut d = Driver::new(&config(
        r#""rule_name": "r", "global_threshold": {"query_per_second": 1}"#,
    ));
    d.redis.down = true;
    for _ in 0..3 {
        assert_eq!(d.request(&[]), Outcome::Forwarded);
    }
    assert_eq!(d.counter("limiter.redis_errors"), 3);
}

#[test]
fn redis_failure_denies_with_503_when_configured() {
    let mut d = Driver::new(&config(
        r#""rule_name": "r", "global_threshold": {"query_per_second": 1}, "failure_mode_deny": true"#,
    ));
    d.redis.down = true;
    assert_eq!(d.request(&[]), Outcome::Answered(503));
    d.redis.down = false;
    d.host().refuse_calls = Some(HostError::BadArgument);
    assert_eq!(d.request(&[]), Outcome::Answered(503));
}

#[test]
fn noscript_is_retried_as_eval_once() {
    let mut d = Driver::new(&config(
        r#""rule_name": "r", "global_threshold": {"query_per_second": 5}"#,
    ));
    d.redis.forget_scripts();
    assert_eq!(d.request(&[]), Outcome::Forwarded);
    let call = d.host().last_call.clone().unwrap();
    let path = String::from_utf8(call.headers.get(":path").unwrap().to_vec()).unwrap();
    assert!(path.starts_with("/EVAL/local%20out"), "{path}");
    assert_eq!(d.counts(), vec![1]);
}

#[test]
fn concurrent_noscript_retries_each_carry_their_own_key() {
    let mut d = Driver::new(&config(
        r#""rule_name": "keys", "rule_items": [{"limit_by_per_header": "x-api-key", "limit_keys": [{"key": "*", "query_per_minute": 9}]}]"#,
    ));
    // Two requests in flight at once, each waiting on its own EVALSHA: the
    // first key's call is the one shared call in flight
    // (kit::increments::CALLS_IN_FLIGHT), and a key longer than the shared
    // tables hold (kit::increments::KEY_BYTES) is sent alone at once.
    assert_eq!(kit::increments::CALLS_IN_FLIGHT, 1);
    let long = format!("bob/%{}", "x".repeat(kit::increments::KEY_BYTES));
    let mut waiting = Vec::new();
    for key in ["ann", long.as_str()] {
        let (_, outcome) = d.filter.send_request(&[("x-api-key", key)]);
        let Step::Waiting(call) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(call.webdis_args().unwrap()[0], b"EVALSHA");
        waiting.push((key, call));
    }
    // Redis forgot the script: each answer, in reverse order, is retried as
    // EVAL with the arguments of its own request.
    d.redis.forget_scripts();
    for (key, call) in waiting.into_iter().rev() {
        let noscript = d.redis.answer(&call, 0).unwrap();
        assert!(noscript.starts_with(b"-NOSCRIPT"));
        let Step::Waiting(retry) = d.filter.answer_redis(&call, &noscript) else {
            panic!("no retry for {key}")
        };
        let retry = retry.webdis_args().unwrap();
        assert_eq!(retry[0], b"EVAL");
        let redis_key = String::from_utf8(retry[3].clone()).unwrap();
        assert!(
            redis_key.contains(&format!(":{key}}}")),
            "{redis_key} for {key}"
        );
    }
}

#[test]
fn webdis_call_uses_configured_cluster_and_timeout() {
    let mut d = Driver::new(&config(
        r#""rule_name": "r", "global_threshold": {"query_per_second": 5}"#,
    ));
    d.request(&[]);
    let call = d.host().last_call.clone().unwrap();
    assert_eq!(call.cluster, "webdis");
    assert_eq!(call.timeout, Duration::from_millis(250));
    assert_eq!(call.headers.get_str(":method"), Some("GET"));
}

#[test]
fn late_reply_after_the_request_ended_is_ignored() {
    let mut d = Driver::new(&config(
        r#""rule_name": "r", "global_threshold": {"query_per_second": 5}"#,
    ));
    let (stream, outcome) = d.filter.send_request(&[]);
    let Step::Waiting(call) = outcome else {
        panic!("{outcome:?}")
    };
    d.filter.close_stream(stream);
    assert_eq!(d.filter.answer_redis(&call, b":1\r\n"), Step::Hanging);
    assert_eq!(d.host().resumed, [0, 0]);
    assert_eq!(d.host().responses_sent, 0);
}

#[test]
fn garbage_replies_follow_the_failure_mode() {
    let mut d = Driver::new(&config(
        r#""rule_name": "r", "global_threshold": {"query_per_second": 5}, "failure_mode_deny": true"#,
    ));
    for body in [
        &b"not resp"[..],
        b"$5\r\nab",
        b"-ERR boom\r\n",
        b"+OK\r\n",
        b"",
    ] {
        let (stream, outcome) = d.filter.send_request(&[]);
        let Step::Waiting(call) = outcome else {
            panic!("{outcome:?}")
        };
        let before = d.host().responses_sent;
        match d.filter.answer_redis(&call, body) {
            Step::Responded(answer) => assert_eq!(answer.status, 503, "{body:?}"),
            other => panic!("{body:?}: {other:?}"),
        }
        assert_eq!(d.host().responses_sent, before + 1, "{body:?}");
        d.filter.close_stream(stream);
    }
}

fn refused(json: &str) -> String {
    let mut filter: Filter<Limiter, FakeHost> = Filter::new(FakeHost::new());
    let err = filter
        .configure(json.as_bytes().to_vec())
        .expect_err("config must be refused");
    let lines: Vec<_> = filter
        .host()
        .logs
        .iter()
        .filter(|(_, l)| l.contains("invalid configuration"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "exactly one log line: {:?}",
        filter.host().logs
    );
    assert!(!lines[0].1.contains('\n'));
    err.to_string()
}

#[test]
fn invalid_configs_are_refused_naming_the_field() {
    let cases = [
        (config(r#""global_threshold": {"query_per_minute": 10}"#), "rule_name: is required"),
        (config(r#""rule_name": 5, "global_threshold": {"query_per_minute": 10}"#), "rule_name: must be a string, got an integer"),
        (config(r#""rule_name": "r", "global_threshold": {"query_per_minute": -1}"#), "global_threshold.query_per_minute: must be a positive integer, got -1"),
        (config(r#""rule_name": "r", "global_threshold": {"query_per_minute": 1.5}"#), "global_threshold.query_per_minute: must be a positive integer, got a fraction"),
        (config(r#""rule_name": "r""#), "needs one of global_threshold, rule_items"),
        (config(r#""rule_name": "r", "global_threshold": {"query_per_week": 1}"#), "global_threshold: needs one of query_per_second"),
        (config(r#""rule_name": "r", "global_threshold": {"query_per_minute": 1}, "rejected_code": 1000"#), "rejected_code: must be an HTTP status"),
        (config(r#""rule_name": "r", "rule_items": [{"limit_by_per_header": "x", "limit_keys": [{"key": "regexp:(", "query_per_minute": 1}]}]"#), "rule_items[0].limit_keys[0].key: invalid regular expression"),
        (config(r#""rule_name": "r", "rule_items": [{"limit_by_per_header": "x", "limit_keys": [{"key": "regexp:^a(?=b)", "query_per_minute": 1}]}]"#), "rule_items[0].limit_keys[0].key: invalid regular expression: lookahead (?= is not supported (at byte 2)"),
        (config(r#""rule_name": "r", "rule_items": [{"limit_by_per_header": "x", "limit_keys": [{"key": "regexp:(?m)^a$", "query_per_minute": 1}]}]"#), "rule_items[0].limit_keys[0].key: invalid regular expression: multi-line mode (?m) is not supported (at byte 0)"),
        (config(r#""rule_name": "r", "rule_items": [{"limit_by_per_ip": "from-remote-addr", "limit_keys": [{"key": "10.0.0.0/40", "query_per_minute": 1}]}]"#), "rule_items[0].limit_keys[0].key: \"10.0.0.0/40\" is not an IP address or CIDR range"),
        (config(r#""rule_name": "r", "rule_items": []"#), "rule_items: must list at least one item"),
        (r#"{"rule_name": "r", "global_threshold": {"query_per_minute": 1}}"#.to_owned(), "redis: is required"),
        (r#"{"rule_name": "r", "global_threshold": {"query_per_minute": 1}, "redis": {"transport": "carrier-pigeon"}}"#.to_owned(), "redis.transport: unknown transport `carrier-pigeon`"),
        (r#"{"rule_name": "r", "global_threshold": {"query_per_minute": 1}, "redis": {"timeout": 5}}"#.to_owned(), "redis: needs webdis_cluster"),
        (r#"{"rule_name": "r", "#.to_owned(), "configuration is not valid JSON"),
        (r#"[1, 2]"#.to_owned(), "configuration must be a JSON object"),
    ];
    for (json, want) in cases {
        let got = refused(&json);
        assert!(
            got.contains(want),
            "config {json}\n  got: {got}\n want: {want}"
        );
    }
}

/// The `redis` block a build accepts depends on its transports: a default
/// build refuses Higress's native block with the reason, a `higress` build
/// takes it as Higress's plugins do and refuses its bad values.
#[test]
fn the_native_redis_block_follows_the_build() {
    let native = |redis: &str| {
        format!(
            r#"{{"rule_name": "r", "global_threshold": {{"query_per_minute": 1}}, "redis": {redis}}}"#
        )
    };
    if !kit::NATIVE_TRANSPORT {
        let got = refused(&native(r#"{"service_name": "redis.static"}"#));
        assert!(
            got.contains("redis.service_name: the native Redis transport needs the module built with the `higress` feature"),
            "{got}"
        );
        return;
    }
    let mut filter: Filter<Limiter, FakeHost> = Filter::new(FakeHost::new());
    filter
        .configure(native(r#"{"service_name": "redis.static"}"#).into_bytes())
        .unwrap();
    assert_eq!(
        filter.host().redis_clusters.last().map(String::as_str),
        Some("outbound|80||redis.static")
    );
    let cases = [
        (
            r#"{"service_name": ""}"#,
            "redis.service_name: must not be empty",
        ),
        (
            r#"{"service_name": "redis.dns", "service_port": 70000}"#,
            "redis.service_port: must be a TCP port (1-65535), got 70000",
        ),
        (
            r#"{"service_name": "redis.dns", "database": -1}"#,
            "redis.database: must be a non-negative integer, got -1",
        ),
        (
            r#"{"service_name": "redis.dns", "webdis_cluster": "webdis"}"#,
            "redis.webdis_cluster: set either webdis_cluster",
        ),
    ];
    for (redis, want) in cases {
        let got = refused(&native(redis));
        assert!(
            got.contains(want),
            "redis {redis}\n  got: {got}\n want: {want}"
        );
    }
}

#[test]
fn higress_rules_override_the_global_config() {
    let json = config(
        r#""rule_name": "global", "global_threshold": {"query_per_minute": 100},
           "_rules_": [
             {"_match_domain_": ["*.example.com"], "rule_name": "example", "global_threshold": {"query_per_minute": 1}},
             {"_match_route_prefix_": ["slow-"], "global_threshold": {"query_per_minute": 2}}
           ]"#,
    );
    let mut d = Driver::new(&json);
    d.at_second(0);
    let request = |d: &mut Driver, authority: &str, route: &str| {
        d.host()
            .properties
            .set("xds.route_name", Some(route.as_bytes()));
        d.request(&[(":authority", authority), (":path", "/")])
    };
    assert_eq!(
        request(&mut d, "api.example.com:8443", "any"),
        Outcome::Forwarded
    );
    assert_eq!(
        request(&mut d, "api.example.com", "any"),
        Outcome::Answered(429)
    );
    // `_match_route_prefix_` is a prefix of the route name, as in Higress.
    assert_eq!(request(&mut d, "other.org", "slow-x"), Outcome::Forwarded);
    assert_eq!(request(&mut d, "other.org", "slow-y"), Outcome::Forwarded);
    assert_eq!(
        request(&mut d, "other.org", "slow-"),
        Outcome::Answered(429)
    );
    assert_eq!(request(&mut d, "other.org", "fast"), Outcome::Forwarded);
    let keys = d.keys();
    assert!(
        keys.iter()
            .any(|k| k.starts_with("limiter:{example:1_per_60s:global}")),
        "{keys:?}"
    );
    // The route-prefix rule inherits the global rule_name, and its place
    // keeps its counter apart from the global one.
    assert!(
        keys.iter()
            .any(|k| k.starts_with("limiter:{global:_rules_[1]:2_per_60s:global}")),
        "{keys:?}"
    );
}

#[test]
fn a_rule_replaces_the_global_choice_of_limit_instead_of_conflicting() {
    // Global: per-key limits; the rule: one global threshold. And a rule
    // that picks another unit than the global threshold's.
    let json = config(
        r#""rule_name": "keys", "rule_items": [{"limit_by_per_header": "x-key", "limit_keys": [{"key": "*", "query_per_minute": 100}]}],
           "_rules_": [
             {"_match_route_": ["strict"], "rule_name": "strict", "global_threshold": {"query_per_minute": 1}}
           ]"#,
    );
    let mut d = Driver::new(&json);
    d.at_second(0);
    d.host().properties.add("route_name", b"strict");
    assert_eq!(d.request(&[("x-key", "a")]), Outcome::Forwarded);
    assert_eq!(
        d.request(&[("x-key", "b")]),
        Outcome::Answered(429),
        "one counter for the route"
    );

    let json = config(
        r#""rule_name": "r", "global_threshold": {"query_per_minute": 100},
           "_rules_": [{"_match_route_": ["strict"], "global_threshold": {"query_per_hour": 1}}]"#,
    );
    let mut d = Driver::new(&json);
    d.host().properties.add("route_name", b"strict");
    assert_eq!(d.request(&[]), Outcome::Forwarded);
    assert_eq!(d.request(&[]), Outcome::Answered(429));

    // Inside one object, two alternatives still conflict.
    let bad = config(
        r#""rule_name": "r", "global_threshold": {"query_per_minute": 1},
           "_rules_": [{"_match_route_": ["x"], "global_threshold": {"query_per_minute": 1}, "rule_items": []}]"#,
    );
    let mut f = Filter::<Limiter, FakeHost>::new(FakeHost::new());
    let err = f.configure(bad.into_bytes()).unwrap_err().to_string();
    assert!(err.contains("conflicts with `global_threshold`"), "{err}");
}

#[test]
fn rules_only_config_leaves_unmatched_requests_alone() {
    let json = config(
        r#""_rules_": [{"_match_route_": ["limited"], "rule_name": "x", "global_threshold": {"query_per_minute": 1}}]"#,
    );
    let mut d = Driver::new(&json);
    d.at_second(0);
    for _ in 0..3 {
        assert_eq!(d.request(&[]), Outcome::Forwarded);
    }
    assert!(d.redis.store.is_empty());
    d.host().properties.add("route_name", b"limited");
    assert_eq!(d.request(&[]), Outcome::Forwarded);
    assert_eq!(d.request(&[]), Outcome::Answered(429));
}

#[test]
fn hostile_header_values_never_panic() {
    let mut d = Driver::new(&config(
        r#""rule_name": "r", "rule_items": [
            {"limit_by_per_cookie": "s", "limit_keys": [{"key": "*", "query_per_minute": 100}]},
            {"limit_by_per_param": "p", "limit_keys": [{"key": "regexp:^a", "query_per_minute": 100}]},
            {"limit_by_per_ip": "from-header-xff", "limit_keys": [{"key": "::/0", "query_per_minute": 100}]}
        ]"#,
    ));
    let long = "x".repeat(100_000);
    let hostile = [
        "",
        ";;;=",
        "s",
        "s=",
        "%",
        "%%%",
        "%zz",
        "\u{0}",
        "[",
        "[::1",
        ":::::",
        &long,
        "a=b=c; s=\u{7f}\u{80}",
    ];
    for value in hostile {
        for name in ["cookie", ":path", "xff"] {
            let _ = d.request(&[(name, value)]);
            let path = format!("/?p={value}");
            let _ = d.request(&[(":path", path.as_str())]);
        }
    }
}

#[test]
fn a_local_answer_is_not_held_in_its_response_phase() {
    // Envoy runs the filter's response callbacks on the plugin's own local
    // reply; pausing there would hold the 429 forever.
    let mut d = Driver::new(&config(
        r#""rule_name": "r", "global_threshold": {"query_per_second": 1}"#,
    ));
    assert_eq!(d.request(&[]), Outcome::Forwarded);
    assert_eq!(d.request(&[]), Outcome::Answered(429));
    let (stream, outcome) = d.filter.send_request(&[]);
    match outcome {
        Step::Responded(answer) => assert_eq!(answer.status, 429, "rejected from the cache"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        d.filter.on_response_headers(stream, false),
        kit::Action::Continue
    );
}

#[test]
fn host_calls_per_request_stay_few() {
    // Each host call is a VM crossing in the proxy; these counts are the
    // whole cost of the limiter's request path in crossings.
    let mut d = Driver::new(&config(
        r#""rule_name": "r", "global_threshold": {"query_per_second": 1}"#,
    ));
    let calls = |d: &mut Driver| d.host().host_calls.get();

    let before = calls(&mut d);
    assert_eq!(d.request(&[]), Outcome::Forwarded);
    // now, the webdis call; then, the answer delivered on the root context
    // as Envoy delivers it, the request's context made effective, the
    // reply body and resume. Counters are published on the tick, and the
    // call's `:status` is only read when the body is not a RESP reply.
    assert_eq!(calls(&mut d) - before, 5);

    assert_eq!(d.request(&[]), Outcome::Answered(429));
    let before = calls(&mut d);
    assert_eq!(d.request(&[]), Outcome::Answered(429));
    // Over the limit from the cache: now, local response.
    assert_eq!(calls(&mut d) - before, 2);

    // The counts reach the proxy on the tick, one call per moved counter.
    assert_eq!(d.host().tick_period, kit::COUNTER_FLUSH);
    let before = calls(&mut d);
    d.filter.on_tick();
    assert_eq!(
        calls(&mut d) - before,
        3,
        "allowed, limited, limited_locally"
    );
    assert_eq!(d.host().counter("limiter.allowed"), 1);
    assert_eq!(d.host().counter("limiter.limited"), 1);
    assert_eq!(d.host().counter("limiter.limited_locally"), 1);
    let before = calls(&mut d);
    d.filter.on_tick();
    assert_eq!(calls(&mut d) - before, 0, "nothing moved");
}

#[test]
fn a_key_cached_as_over_is_rechecked_after_over_limit_recheck_ms() {
    // A per-day limit: without a recheck the cache would refuse until the
    // day ends even after an operator deleted the counter.
    for (recheck, configured) in [(1000u64, ""), (250, r#", "over_limit_recheck_ms": 250"#)] {
        let mut d = Driver::new(&config(&format!(
            r#""rule_name": "r", "global_threshold": {{"query_per_day": 2}}{configured}"#
        )));
        assert_eq!(d.request(&[]), Outcome::Forwarded);
        assert_eq!(d.request(&[]), Outcome::Forwarded);
        assert_eq!(d.request(&[]), Outcome::Answered(429));
        // The operator resets the counter; until the recheck is due the
        // cache still answers, without Redis.
        d.redis.store.clear();
        d.host().advance(Duration::from_millis(recheck - 1));
        assert_eq!(d.request(&[]), Outcome::Answered(429));
        assert!(d.redis.store.is_empty(), "no call before the recheck");
        assert_eq!(d.counter("limiter.limited_locally"), 1);
        d.host().advance(Duration::from_millis(1));
        assert_eq!(d.request(&[]), Outcome::Forwarded, "recheck {recheck}");
        assert_eq!(d.counts(), vec![1]);
        // Over again: cached again, and rechecked again a bound later.
        assert_eq!(d.request(&[]), Outcome::Forwarded);
        assert_eq!(d.request(&[]), Outcome::Answered(429));
        assert_eq!(d.request(&[]), Outcome::Answered(429));
        assert_eq!(d.counts(), vec![3]);
        d.host().advance(Duration::from_millis(recheck));
        assert_eq!(d.request(&[]), Outcome::Answered(429));
        assert_eq!(d.counts(), vec![4]);
    }
}

#[test]
fn over_limit_recheck_ms_must_be_positive() {
    let mut filter = Filter::<Limiter, FakeHost>::new(FakeHost::new());
    let error = filter
        .configure(
            config(r#""rule_name": "r", "global_threshold": {"query_per_day": 2}, "over_limit_recheck_ms": 0"#)
                .into_bytes(),
        )
        .unwrap_err();
    assert!(
        error.to_string().contains("over_limit_recheck_ms"),
        "{error}"
    );
}
