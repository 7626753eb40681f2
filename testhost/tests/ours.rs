//! Our modules built with `--features higress` (`bash scripts/build.sh
//! --higress`) through the host, over Higress's native Redis calls to a
//! real Redis: the end-to-end checks the Envoy suite runs over webdis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Test code: JSON built with `value["key"] = ...` and answers indexed
// after their count was asserted read better than `get` chains.
#![allow(clippy::indexing_slicing)]

mod common;

use common::{higress_module, setup_with, REDIS_CLUSTER};
use serde_json::{json, Value};
use stack::resp::Resp;
use stack::Redis;
use testhost::{Exchange, Host, Request, Setup, Verdict};

/// Our `redis` block for Higress: `service_name` + default port 6379 ->
/// `outbound|6379||redis.dns`.
fn redis_block() -> Value {
    json!({"service_name": "redis.dns", "timeout": 300})
}

fn load(module: &str, config: &Value, setup: Setup) -> Host {
    Host::load(
        &higress_module(module),
        config.to_string().as_bytes(),
        setup,
    )
    .unwrap_or_else(|e| panic!("{module} did not start: {e}"))
}

fn limiter_global(rule: &str, per_minute: i64, deny: bool) -> Value {
    json!({
        "rule_name": rule,
        "global_threshold": {"query_per_minute": per_minute},
        "rejected_code": 429,
        "rejected_msg": "Too many requests",
        "show_limit_quota_header": true,
        "failure_mode_deny": deny,
        "redis": redis_block(),
    })
}

fn statuses(exchanges: &[Exchange]) -> Vec<u32> {
    exchanges.iter().map(|e| e.status).collect()
}

#[test]
fn limiter_passes_exactly_the_limit_across_two_hosts_sharing_one_redis() {
    let redis = Redis::start();
    let setup = setup_with(&redis, REDIS_CLUSTER);
    let config = limiter_global("two-hosts", 10, false);
    let mut a = load("limiter", &config, setup.clone());
    // The same clock: both gateways are in the same fixed window.
    let mut b = load("limiter", &config, setup);
    let mut seen = Vec::new();
    for i in 0..16 {
        let host = if i % 2 == 0 { &mut a } else { &mut b };
        seen.push(host.run(&Request::get("/")));
    }
    let passed = seen.iter().filter(|e| e.status == 200).count();
    assert_eq!(passed, 10, "{:?}", statuses(&seen));
    assert_eq!(statuses(&seen)[..10], [200; 10]);
    for e in &seen[10..] {
        assert_eq!(e.status, 429);
        assert_eq!(
            String::from_utf8_lossy(&e.response_body),
            "Too many requests"
        );
        assert_eq!(e.upstream_headers, None);
    }
    for (i, e) in seen.iter().take(10).enumerate() {
        assert_eq!(e.header("x-ratelimit-remaining"), Some((9 - i).to_string()));
    }
}

#[test]
fn limiter_counts_each_key_with_odd_bytes_separately() {
    let redis = Redis::start();
    let config = json!({
        "rule_name": "odd-keys",
        "rule_items": [{
            "limit_by_per_header": "x-user",
            "limit_keys": [{"key": "*", "query_per_minute": 2}],
        }],
        "redis": redis_block(),
    });
    let mut host = load("limiter", &config, setup_with(&redis, REDIS_CLUSTER));
    let keys: [&[u8]; 5] = [b"alice", b"a b", b"x\"y{z}", "ключ".as_bytes(), b"100%:*"];
    for key in keys {
        let got: Vec<u32> = (0..3)
            .map(|_| {
                host.run(&Request::get("/").header("x-user", key.to_vec()))
                    .status
            })
            .collect();
        assert_eq!(
            got,
            [200, 200, 429],
            "key {:?}",
            String::from_utf8_lossy(key)
        );
    }
    // Without the header the rule does not apply.
    assert_eq!(host.run(&Request::get("/")).status, 200);
    assert_eq!(redis.keys().len(), keys.len(), "one counter per key");
}

#[test]
fn limiter_failure_modes_with_redis_stopped() {
    let mut redis = Redis::start();
    let setup = setup_with(&redis, REDIS_CLUSTER);
    let mut open = load(
        "limiter",
        &limiter_global("fail-open", 100, false),
        setup.clone(),
    );
    let mut closed = load("limiter", &limiter_global("fail-closed", 100, true), setup);
    assert_eq!(open.run(&Request::get("/")).status, 200);
    assert_eq!(closed.run(&Request::get("/")).status, 200);
    redis.stop();
    let ex = open.run(&Request::get("/"));
    assert_eq!(
        (ex.verdict.clone(), ex.status),
        (Verdict::Forwarded, 200),
        "{ex:?}"
    );
    assert!(ex.redis_calls.iter().all(|c| c.failed) && !ex.redis_calls.is_empty());
    let ex = closed.run(&Request::get("/"));
    assert_eq!(ex.status, 503, "{ex:?}");
    assert_eq!(ex.upstream_headers, None);
    redis.restart();
    assert_eq!(open.run(&Request::get("/")).status, 200);
    assert_eq!(closed.run(&Request::get("/")).status, 200);
}

#[test]
fn limiter_failure_modes_with_redis_hung() {
    let mut redis = Redis::start();
    let setup = setup_with(&redis, REDIS_CLUSTER);
    let mut open = load(
        "limiter",
        &limiter_global("hung-open", 100, false),
        setup.clone(),
    );
    let mut closed = load("limiter", &limiter_global("hung-closed", 100, true), setup);
    assert_eq!(open.run(&Request::get("/")).status, 200);
    assert_eq!(closed.run(&Request::get("/")).status, 200);
    redis.freeze();
    let open_ex = open.run(&Request::get("/"));
    let closed_ex = closed.run(&Request::get("/"));
    redis.thaw();
    assert_eq!(open_ex.status, 200, "{open_ex:?}");
    assert_eq!(closed_ex.status, 503, "{closed_ex:?}");
    // The timeout closed each host's connection: the next call reconnects.
    let connects = open.redis_connects();
    assert_eq!(open.run(&Request::get("/")).status, 200);
    assert_eq!(open.redis_connects(), connects + 1);
}

fn quota_global(rule: &str, per_minute: i64) -> Value {
    json!({
        "rule_name": rule,
        "global_threshold": {"token_per_minute": per_minute},
        "rejected_code": 429,
        "rejected_msg": "Too many tokens",
        "redis": redis_block(),
    })
}

fn chat(stream: bool) -> Vec<u8> {
    json!({"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
        .to_string()
        .into_bytes()
}

/// The one counter of `rule` in Redis.
fn counter(redis: &Redis, rule: &str) -> i64 {
    let keys: Vec<Vec<u8>> = redis
        .keys()
        .into_iter()
        .filter(|k| String::from_utf8_lossy(k).contains(rule))
        .collect();
    let [key] = keys.as_slice() else {
        panic!("expected one key for {rule}, found {keys:?}")
    };
    match redis.command(&[b"GET", key]).unwrap() {
        Resp::Bulk(Some(v)) => String::from_utf8_lossy(&v).parse().unwrap(),
        other => panic!("GET: {other:?}"),
    }
}

#[test]
fn token_quota_charges_json_usage_exactly_then_refuses() {
    let redis = Redis::start();
    let mut host = load(
        "token_quota",
        &quota_global("tq-json", 250),
        setup_with(&redis, REDIS_CLUSTER),
    );
    let answer = json!({
        "id": "c", "object": "chat.completion", "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 60, "completion_tokens": 40, "total_tokens": 100},
    })
    .to_string();
    let body = chat(false);
    let request = Request::post("/v1/chat/completions", &[&body])
        .header("content-type", "application/json")
        .answer(
            200,
            &[("content-type", "application/json")],
            &[answer.as_bytes()],
        );
    let mut charged = Vec::new();
    for _ in 0..3 {
        let ex = host.run(&request);
        assert_eq!(
            (ex.verdict.clone(), ex.status),
            (Verdict::Forwarded, 200),
            "{ex:?}"
        );
        assert_eq!(ex.response_body, answer.as_bytes());
        charged.push(counter(&redis, "tq-json"));
    }
    assert_eq!(charged, [100, 200, 300]);
    let ex = host.run(&request);
    assert_eq!(ex.status, 429, "{ex:?}");
    assert_eq!(ex.upstream_headers, None);
    assert_eq!(counter(&redis, "tq-json"), 300);
}

#[test]
fn token_quota_charges_sse_usage_split_across_chunks_exactly() {
    let redis = Redis::start();
    let mut host = load(
        "token_quota",
        &quota_global("tq-sse", 100_000),
        setup_with(&redis, REDIS_CLUSTER),
    );
    let stream = concat!(
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n",
        "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":123,\"completion_tokens\":77,\"total_tokens\":200}}\n\n",
        "data: [DONE]\n\n",
    );
    let at = stream.find("\"prompt_toke").unwrap() + 8;
    let (a, b) = stream.as_bytes().split_at(at);
    let body = chat(true);
    let request = Request::post("/v1/chat/completions", &[&body])
        .header("content-type", "application/json")
        .answer(200, &[("content-type", "text/event-stream")], &[a, b]);
    let ex = host.run(&request);
    assert_eq!(
        (ex.verdict.clone(), ex.status),
        (Verdict::Forwarded, 200),
        "{ex:?}"
    );
    assert_eq!(
        ex.response_body,
        stream.as_bytes(),
        "the stream passes byte for byte"
    );
    // The plugin asks a streaming request for usage.
    let sent: Value = serde_json::from_slice(&ex.upstream_body).unwrap();
    assert_eq!(
        sent["stream_options"]["include_usage"],
        json!(true),
        "{sent}"
    );
    assert_eq!(counter(&redis, "tq-sse"), 200);
}

#[test]
fn bodiless_requests_never_hang() {
    let redis = Redis::start();
    let setup = setup_with(&redis, REDIS_CLUSTER);
    let mut quota = load("token_quota", &quota_global("tq-get", 1000), setup.clone());
    let mut limiter = load("limiter", &limiter_global("get", 1000, false), setup);
    for host in [&mut quota, &mut limiter] {
        for _ in 0..4 {
            let ex = host.run(&Request::get("/v1/models"));
            assert_eq!(
                (ex.verdict.clone(), ex.status),
                (Verdict::Forwarded, 200),
                "{ex:?}"
            );
        }
    }
}

/// Higress's Envoy answers the route and cluster names under their old
/// property names (`route_name`, `cluster_name`, no `xds.`): route and
/// service rules apply there as they do on upstream Envoy 1.33+.
#[test]
fn limiter_route_and_service_rules_apply_under_higress_property_names() {
    let redis = Redis::start();
    let setup = setup_with(&redis, REDIS_CLUSTER);
    let config = json!({
        "rule_name": "higress-names",
        "global_threshold": {"query_per_minute": 100},
        "redis": redis_block(),
        "_rules_": [
            {"_match_route_": ["checkout"], "rule_name": "by-route",
             "global_threshold": {"query_per_minute": 2}},
            {"_match_service_": ["items.dns:8080"], "rule_name": "by-service",
             "global_threshold": {"query_per_minute": 3}}
        ],
    });
    let mut host = load("limiter", &config, setup);
    let send = |host: &mut Host, route: &str, cluster: &str| {
        let mut request = Request::get("/");
        request
            .properties
            .insert("route_name".into(), route.as_bytes().to_vec());
        request
            .properties
            .insert("cluster_name".into(), cluster.as_bytes().to_vec());
        host.run(&request).status
    };
    let by_route: Vec<u32> = (0..4)
        .map(|_| send(&mut host, "checkout", "outbound|80||other.dns"))
        .collect();
    assert_eq!(by_route, [200, 200, 429, 429]);
    let by_service: Vec<u32> = (0..5)
        .map(|_| send(&mut host, "items", "outbound|8080||items.dns"))
        .collect();
    assert_eq!(by_service, [200, 200, 200, 429, 429]);
    // Neither rule: the global limit, far from reached.
    assert_eq!(send(&mut host, "other", "outbound|80||other.dns"), 200);
}
