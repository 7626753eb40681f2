//! Zero allocation inside the real proxy: the `heap-stats` build of the
//! limiter (`bash scripts/build.sh --heap-stats`) counts every heap
//! allocation the module makes and publishes the count as the counter
//! `limiter.heap_allocations`. After a warm-up, hundreds of requests on the
//! Redis path and on the local over-limit path must not move it.
//!
//! The native tests prove the same over the `FakeHost`; this proves it
//! with Envoy's own host calls, the kit's ABI layer and the buffers the
//! host writes into.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use stack::{Envoy, EnvoyConfig, Redis, WasmPlugin, Webdis};

#[test]
fn limiter_requests_allocate_nothing_inside_envoy() {
    let wasm = e2e::heap_stats_wasm("limiter");
    let rule = e2e::unique_rule_name("heap");
    let config = json!({
        "rule_name": rule,
        "rule_items": [{
            "limit_by_per_header": "x-key",
            "limit_keys": [{"key": "*", "query_per_minute": 3}],
        }],
        "show_limit_quota_header": true,
        "redis": {"webdis_cluster": e2e::WEBDIS_CLUSTER, "timeout": 500},
        // Rules that read the route name (the direct response's route has
        // an empty one) and the cluster name (it has none, so both
        // spellings are asked on every request), and match neither.
        "_rules_": [
            {"_match_route_": ["never"], "global_threshold": {"query_per_minute": 1}},
            {"_match_service_": ["none.dns"], "global_threshold": {"query_per_minute": 1}},
        ],
    });
    let redis = Redis::start();
    let webdis = Webdis::start(redis.port());
    let envoy = Envoy::start(
        EnvoyConfig::new()
            .wasm(WasmPlugin::new(wasm, config.to_string()))
            .cluster(e2e::WEBDIS_CLUSTER, webdis.port()),
    );

    // A fresh key each time takes the Redis path (EVALSHA through webdis,
    // answer 200 with quota headers); the hot key, over its limit, is
    // refused from the over-limit cache without Redis.
    let mut fresh = 0u32;
    let mut run = |requests: u32| {
        for _ in 0..requests {
            fresh += 1;
            let key = format!("key-{fresh:06}");
            let passed = stack::get(envoy.port(), "/", &[("x-key", &key)]).unwrap();
            assert_eq!(passed.status, 200, "{key}: {}", passed.text());
            let hot = stack::get(envoy.port(), "/", &[("x-key", "hot")]).unwrap();
            assert!(matches!(hot.status, 200 | 429), "hot: {}", hot.status);
        }
    };

    run(50);
    let warm = e2e::settled_counter(&envoy, "limiter.heap_allocations");
    // The counter counts: configuration alone allocates.
    assert!(
        warm > 0,
        "no allocation counted at all: is this the heap-stats build?"
    );

    run(300);
    let after = e2e::settled_counter(&envoy, "limiter.heap_allocations");
    assert_eq!(
        after - warm,
        0,
        "600 warm requests (300 through Redis, 300 refused locally) made {} heap allocations in the module",
        after - warm
    );
    let limited = envoy
        .stats()
        .lines()
        .any(|line| line.contains("limiter.limited") && !line.ends_with(": 0"));
    assert!(
        limited,
        "the hot key was never refused: the local path was not exercised"
    );
}
