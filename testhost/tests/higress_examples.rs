//! Configuration examples of Higress's READMEs, as written (their `redis`
//! block included), in our Higress builds (`bash scripts/build.sh
//! --higress`) through the host, against a real Redis: the requests the
//! READMEs describe get the answers the READMEs promise.
//!
//! The examples are alibaba/higress
//! `plugins/wasm-go/extensions/cluster-key-rate-limit/README_EN.md`
//! ("Configuration Examples") and `ai-token-ratelimit/README_EN.md`
//! ("Example"), YAML written out by hand as JSON. Every example is checked
//! over the `FakeHost` in `plugins/*/tests/higress_examples.rs`; these are
//! the ones whose Redis traffic matters most.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{higress_module, setup_with, REDIS_CLUSTER};
use stack::resp::Resp;
use stack::Redis;
use testhost::{Host, Request};

/// The cluster the README's `redis: {service_name: redis.static}` names:
/// Higress's port for static services is 80.
const STATIC_CLUSTER: &str = "outbound|80||redis.static";

/// "Rate Limiting by Request Header `x-ca-key`": its keys are unquoted
/// YAML numbers.
const LIMITER_HEADER: &str = r#"{
  "rule_name": "routeA-request-header-limit-rule",
  "rule_items": [
    {"limit_by_header": "x-ca-key", "limit_keys": [
      {"key": 102234, "query_per_minute": 10},
      {"key": 308239, "query_per_hour": 10}]},
    {"limit_by_per_header": "x-ca-key", "limit_keys": [
      {"key": "regexp:^a.*", "query_per_second": 10},
      {"key": "regexp:^b.*", "query_per_minute": 100},
      {"key": "*", "query_per_hour": 1000}]}
  ],
  "redis": {"service_name": "redis.static"},
  "show_limit_quota_header": true
}"#;

/// "Rate Limiting by Cookie Value": refused with status 200 and a JSON body.
const LIMITER_COOKIE: &str = r#"{
  "rule_name": "routeA-cookie-limit-rule",
  "rule_items": [
    {"limit_by_cookie": "key1", "limit_keys": [
      {"key": "value1", "query_per_minute": 10},
      {"key": "value2", "query_per_hour": 100}]},
    {"limit_by_per_cookie": "key1", "limit_keys": [
      {"key": "regexp:^a.*", "query_per_second": 10},
      {"key": "regexp:^b.*", "query_per_minute": 100},
      {"key": "*", "query_per_hour": 1000}]}
  ],
  "rejected_code": 200,
  "rejected_msg": "{\"code\":-1,\"msg\":\"Too many requests\"}",
  "redis": {"service_name": "redis.static"},
  "show_limit_quota_header": true
}"#;

/// `ai-token-ratelimit`'s "Example": the `defaultConfig` of its
/// `WasmPlugin`, Redis a DNS service on port 6379.
const QUOTA_FULL: &str = r#"{
  "rule_name": "default_limit_by_param_apikey",
  "rule_items": [
    {"limit_by_param": "apikey", "limit_keys": [{"key": 123456, "token_per_minute": 200}]}
  ],
  "redis": {"service_name": "redis.dns", "service_port": 6379}
}"#;

fn load(module: &str, config: &str, redis: &Redis, cluster: &str) -> Host {
    Host::load(
        &higress_module(module),
        config.as_bytes(),
        setup_with(redis, cluster),
    )
    .unwrap_or_else(|e| panic!("{module} refused the README's example: {e}"))
}

/// The counter keys Redis holds, as text.
fn keys(redis: &Redis) -> Vec<String> {
    let mut keys: Vec<String> = redis
        .keys()
        .iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    keys.sort();
    keys
}

#[test]
fn limiter_header_example_limits_the_numeric_keys() {
    let redis = Redis::start();
    let mut host = load("limiter", LIMITER_HEADER, &redis, STATIC_CLUSTER);
    let statuses: Vec<u32> = (0..12)
        .map(|_| {
            host.run(&Request::get("/").header("x-ca-key", "102234"))
                .status
        })
        .collect();
    assert_eq!(statuses[..10], [200; 10]);
    assert_eq!(statuses[10..], [429, 429]);
    // Another value falls to the per-key item: `b...`, 100 a minute each.
    let ex = host.run(&Request::get("/").header("x-ca-key", "b7"));
    assert_eq!(ex.status, 200, "{ex:?}");
    assert_eq!(ex.header("x-ratelimit-limit").as_deref(), Some("100"));
    let keys = keys(&redis);
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys[0].starts_with(
        "limiter:{routeA-request-header-limit-rule:100_per_60s:per_header:x-ca-key:b7}:"
    ));
    assert!(keys[1].starts_with(
        "limiter:{routeA-request-header-limit-rule:10_per_60s:header:x-ca-key:102234}:"
    ));
}

#[test]
fn limiter_cookie_example_refuses_with_status_200_and_its_json() {
    let redis = Redis::start();
    let mut host = load("limiter", LIMITER_COOKIE, &redis, STATIC_CLUSTER);
    let request = Request::get("/").header("cookie", "session=s1; key1=value1");
    for i in 0..10 {
        let ex = host.run(&request);
        assert_eq!(ex.status, 200, "{ex:?}");
        assert!(ex.upstream_headers.is_some(), "request {i} went upstream");
        assert_eq!(
            ex.header("x-ratelimit-remaining"),
            Some((9 - i).to_string())
        );
    }
    let ex = host.run(&request);
    assert_eq!(ex.status, 200);
    assert_eq!(ex.upstream_headers, None, "refused, not forwarded");
    assert_eq!(
        String::from_utf8_lossy(&ex.response_body),
        r#"{"code":-1,"msg":"Too many requests"}"#
    );
}

/// The README's walk-through: questions that cost 46 tokens each, 200
/// tokens a minute for `apikey=123456`; once they are used, "Too many
/// requests".
#[test]
fn token_quota_full_example_refuses_once_the_minutes_tokens_are_used() {
    let redis = Redis::start();
    let mut host = load("token_quota", QUOTA_FULL, &redis, REDIS_CLUSTER);
    let question = br#"{"model":"gpt-3","messages":[{"role":"user","content":"Hello, who are you?"}],"stream":false}"#;
    let answer = br#"{"id":"88cfa80f-545d-93b4-8ff3-3f5245ca33ba","choices":[{"index":0,"message":{"role":"assistant","content":"I am Tongyi Qianwen."},"finish_reason":"stop"}],"created":1719909825,"model":"qwen-turbo","object":"chat.completion","usage":{"prompt_tokens":13,"completion_tokens":33,"total_tokens":46}}"#;
    let request = Request::post("/v1/chat/completions?apikey=123456", &[question])
        .header(":authority", "qwen-test.com")
        .header("content-type", "application/json")
        .answer(200, &[("content-type", "application/json")], &[answer]);
    for _ in 0..5 {
        let ex = host.run(&request);
        assert_eq!(ex.status, 200, "{ex:?}");
        assert_eq!(ex.response_body, answer);
    }
    let [key] = redis.keys().try_into().unwrap();
    assert!(String::from_utf8_lossy(&key).starts_with(
        "token-quota:{default_limit_by_param_apikey:200_per_60s:param:apikey:123456}:"
    ));
    assert_eq!(
        redis.command(&[b"GET", &key]).unwrap(),
        Resp::Bulk(Some(b"230".to_vec()))
    );
    let ex = host.run(&request);
    assert_eq!(ex.status, 429, "{ex:?}");
    assert_eq!(ex.upstream_headers, None);
    assert_eq!(
        String::from_utf8_lossy(&ex.response_body),
        "Too many requests"
    );
    // Another key has no limit in this example.
    let other = Request::post("/v1/chat/completions?apikey=654321", &[question])
        .header("content-type", "application/json")
        .answer(200, &[("content-type", "application/json")], &[answer]);
    assert_eq!(host.run(&other).status, 200);
}
