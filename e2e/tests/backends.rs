//! The two backends side by side, in one run: the kit's own ABI layer (the
//! default) and the standard `proxy-wasm` crate (kit feature `proxy-wasm`),
//! built from the same plugin source. Measures, for the limiter, the heap
//! allocations per request inside Envoy on the Redis path and on the
//! over-limit (flood) path, with the heap-stats builds of both
//! (`bash scripts/build.sh --heap-stats` and `--sdk-heap-stats`); and,
//! for both plugins, each shipped module's size and its exported callbacks
//! (`--sdk` and the default build). Prints one table (run with
//! `-- --nocapture`); the README's "Backends" section quotes it.
//!
//! It asserts what the README claims: the default backend allocates
//! nothing per request, the SDK's does (so the count is live and the
//! comparison means something).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use stack::{Envoy, EnvoyConfig, Redis, WasmPlugin, Webdis};
use std::path::{Path, PathBuf};
use std::process::Command;

const REQUESTS: u32 = 200;

fn module(dir: &str, file: &str, build: &str) -> PathBuf {
    let path = stack::repo_root().join(dir).join(file);
    assert!(
        path.is_file(),
        "{} is missing: run `bash scripts/build.sh {build}`",
        path.display()
    );
    path
}

/// Heap allocations per request on the Redis path and on the flood path.
fn allocations_per_request(wasm: PathBuf) -> (f64, f64) {
    let rule = e2e::unique_rule_name("backends");
    let config = json!({
        "rule_name": rule,
        "rule_items": [{
            "limit_by_per_header": "x-key",
            "limit_keys": [{"key": "*", "query_per_minute": 3}],
        }],
        "show_limit_quota_header": true,
        "redis": {"webdis_cluster": e2e::WEBDIS_CLUSTER, "timeout": 500},
    });
    let redis = Redis::start();
    let webdis = Webdis::start(redis.port());
    let envoy = Envoy::start(
        EnvoyConfig::new()
            .wasm(WasmPlugin::new(wasm, config.to_string()))
            .cluster(e2e::WEBDIS_CLUSTER, webdis.port()),
    );
    let mut fresh = 0u32;
    let mut redis_path = |requests: u32| {
        for _ in 0..requests {
            fresh += 1;
            let key = format!("key-{fresh:06}");
            let r = stack::get(envoy.port(), "/", &[("x-key", &key)]).unwrap();
            assert_eq!(r.status, 200, "{key}: {}", r.text());
        }
    };
    let flood = |requests: u32| {
        for _ in 0..requests {
            let r = stack::get(envoy.port(), "/", &[("x-key", "hot")]).unwrap();
            assert!(matches!(r.status, 200 | 429), "hot: {}", r.status);
        }
    };
    redis_path(50);
    flood(50);
    let counter = "limiter.heap_allocations";
    let warm = e2e::settled_counter(&envoy, counter);
    assert!(
        warm > 0,
        "no allocation counted: is this a heap-stats build?"
    );
    redis_path(REQUESTS);
    let after_redis = e2e::settled_counter(&envoy, counter);
    flood(REQUESTS);
    let after_flood = e2e::settled_counter(&envoy, counter);
    let per = |n: u64| n as f64 / f64::from(REQUESTS);
    (per(after_redis - warm), per(after_flood - after_redis))
}

/// The functions a module exports (not its memory).
fn exported_functions(wasm: &Path) -> usize {
    let objdump = stack::require_tool("wasm-objdump", "wabt");
    let out = Command::new(objdump)
        .args(["-x", "-j", "Export"])
        .arg(wasm)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "wasm-objdump failed on {}",
        wasm.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with("- func["))
        .count()
}

#[test]
fn backends_side_by_side() {
    let builds = [
        ("kit ABI layer (default)", "target/wasm", "", "--heap-stats"),
        (
            "proxy-wasm crate",
            "target/wasm-sdk",
            "--sdk",
            "--sdk-heap-stats",
        ),
    ];
    let mut rows = Vec::new();
    for (name, dir, build, heap_build) in builds {
        let heap = module(&format!("{dir}/heap-stats"), "limiter.wasm", heap_build);
        let (redis, flood) = allocations_per_request(heap);
        let limiter = module(dir, "limiter.wasm", build);
        let quota = module(dir, "token_quota.wasm", build);
        rows.push((
            name,
            std::fs::metadata(&limiter).unwrap().len(),
            std::fs::metadata(&quota).unwrap().len(),
            exported_functions(&limiter),
            exported_functions(&quota),
            redis,
            flood,
        ));
    }
    println!(
        "| backend | limiter.wasm | token_quota.wasm | exported functions (limiter / token_quota) | limiter heap allocations per request, Redis path | ... flood path |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, limiter, quota, le, qe, redis, flood) in &rows {
        println!("| {name} | {limiter} B | {quota} B | {le} / {qe} | {redis:.2} | {flood:.2} |");
    }
    let (_, _, _, _, _, kit_redis, kit_flood) = rows[0];
    let (_, _, _, _, _, sdk_redis, sdk_flood) = rows[1];
    assert_eq!(
        (kit_redis, kit_flood),
        (0.0, 0.0),
        "the default backend allocated"
    );
    assert!(
        sdk_redis > 0.0 && sdk_flood > 0.0,
        "the SDK backend counted no allocation ({sdk_redis} / {sdk_flood}): is the counter live?"
    );
}
