//! Interop the other way round: `examples/sdk-interop`, a plugin written
//! on the `proxy-wasm` crate (its own `RootContext` and `HttpContext`),
//! counts requests per client through webdis with the kit's pieces (webdis
//! command paths, RESP replies, fixed windows, key patterns), in a real
//! Envoy with real Redis and webdis. Its module is built by
//! `bash scripts/build.sh --sdk` into `target/wasm-sdk/sdk_interop.wasm`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use stack::resp::Resp;
use stack::{Envoy, EnvoyConfig, Redis, WasmPlugin, Webdis};
use std::path::PathBuf;

fn module() -> PathBuf {
    let wasm = stack::repo_root().join("target/wasm-sdk/sdk_interop.wasm");
    assert!(
        wasm.is_file(),
        "{} is missing: run `bash scripts/build.sh --sdk` (scripts/test.sh does)",
        wasm.display()
    );
    wasm
}

fn envoy(webdis_port: u16, config: &serde_json::Value) -> EnvoyConfig {
    EnvoyConfig::new()
        .wasm(WasmPlugin::new(module(), config.to_string()))
        .cluster(e2e::WEBDIS_CLUSTER, webdis_port)
}

#[test]
fn sdk_plugin_counts_clients_in_redis_with_the_kits_pieces() {
    let redis = Redis::start();
    let webdis = Webdis::start(redis.port());
    let config = json!({
        "header": "x-user",
        "per_minute": 3,
        "webdis_cluster": e2e::WEBDIS_CLUSTER,
        "only": "^user-[0-9]+$",
    });
    let envoy = Envoy::start(envoy(webdis.port(), &config));
    let client = format!("user-{}", std::process::id());
    let window = e2e::room_in_minute_for(8);

    let statuses: Vec<u16> = (0..4)
        .map(|_| {
            stack::get(envoy.port(), "/", &[("x-user", &client)])
                .unwrap()
                .status
        })
        .collect();
    assert_eq!(
        statuses,
        [200, 200, 200, 429],
        "three per minute, then refused"
    );

    // The count sits in Redis under the key the kit's command path named,
    // with the window's expiry the script set.
    let key = format!("sdk-interop:{{{client}}}:{window}");
    assert_eq!(
        redis.command(&[b"GET", key.as_bytes()]).unwrap(),
        Resp::Bulk(Some(b"4".to_vec())),
        "key {key}"
    );
    let Resp::Integer(ttl) = redis.command(&[b"TTL", key.as_bytes()]).unwrap() else {
        panic!("TTL did not answer an integer");
    };
    assert!((1..=60).contains(&ttl), "ttl {ttl}");

    // Another client has its own count; one the pattern leaves out and a
    // request without the header are never counted.
    let other = stack::get(envoy.port(), "/", &[("x-user", "user-0")]).unwrap();
    assert_eq!(other.status, 200);
    for _ in 0..5 {
        let bot = stack::get(envoy.port(), "/", &[("x-user", "bot-7")]).unwrap();
        assert_eq!(bot.status, 200);
        let anonymous = stack::get(envoy.port(), "/", &[]).unwrap();
        assert_eq!(anonymous.status, 200);
    }
    assert_eq!(
        redis
            .command(&[
                b"EXISTS",
                format!("sdk-interop:{{bot-7}}:{window}").as_bytes()
            ])
            .unwrap(),
        Resp::Integer(0)
    );
}

#[test]
fn sdk_plugin_refuses_a_pattern_the_kits_matcher_refuses() {
    let redis = Redis::start();
    let webdis = Webdis::start(redis.port());
    let config = json!({
        "header": "x-user",
        "per_minute": 3,
        "webdis_cluster": e2e::WEBDIS_CLUSTER,
        "only": "user(?=1)",
    });
    let log = Envoy::start_expect_failure(envoy(webdis.port(), &config));
    assert!(
        log.lines()
            .any(|l| l.contains("sdk-interop: only: lookahead (?= is not supported")),
        "the plugin did not name the refused pattern:\n{}",
        stack::envoy_log_excerpt(&log, 40)
    );
}
