//! The token quota's pieces the end-to-end tests share: its per-user
//! configuration, an Envoy config that runs it, and the tokens Redis holds
//! for one user.

use std::path::PathBuf;

use serde_json::{json, Value};
use stack::resp::Resp;
use stack::{EnvoyConfig, Redis, WasmPlugin};

use crate::WEBDIS_CLUSTER;

/// A configuration of `rule` with a quota per `x-user` of 1,000,000
/// tokens an hour (far from reached), asking Redis through webdis with a
/// `timeout_ms` timeout.
pub fn per_user_config(rule: &str, timeout_ms: u64) -> Value {
    json!({
        "rule_name": rule,
        "rule_items": [{
            "limit_by_per_header": "x-user",
            "limit_keys": [{"key": "*", "token_per_hour": 1_000_000}],
        }],
        "redis": {"webdis_cluster": WEBDIS_CLUSTER, "timeout": timeout_ms},
    })
}

/// The token quota build `wasm` configured by `config`, allowed to hold a
/// request's headers while it reads the quota.
pub fn token_quota_plugin(wasm: PathBuf, config: &Value) -> WasmPlugin {
    WasmPlugin::new(wasm, config.to_string()).allow_on_headers_stop_iteration(true)
}

/// An Envoy config with the release build of the token quota configured by
/// `config` ([`token_quota_plugin`]) and its webdis cluster pointing at
/// `webdis_port`; the caller adds the upstream and the route.
///
/// # Panics
/// If the module has not been built, naming the build command.
pub fn token_quota_envoy(webdis_port: u16, config: &Value) -> EnvoyConfig {
    EnvoyConfig::new()
        .wasm(token_quota_plugin(stack::wasm_path("token-quota"), config))
        .cluster(WEBDIS_CLUSTER, webdis_port)
}

/// The keys of Redis that contain both `rule` and `part`.
///
/// # Panics
/// If Redis cannot be asked.
pub fn keys_with(redis: &Redis, rule: &str, part: &str) -> Vec<Vec<u8>> {
    redis
        .keys()
        .into_iter()
        .filter(|k| {
            let k = String::from_utf8_lossy(k);
            k.contains(rule) && k.contains(part)
        })
        .collect()
}

/// The tokens charged to `user` under `rule` in Redis: the one counter
/// whose key holds both, 0 when there is none.
///
/// # Panics
/// If Redis cannot be asked, the counter is not an integer, or there are
/// several such counters.
pub fn charged_to(redis: &Redis, rule: &str, user: &str) -> i64 {
    let keys = keys_with(redis, rule, &format!(":{user}}}"));
    match keys.as_slice() {
        [] => 0,
        [key] => match redis.command(&[b"GET", key]) {
            Ok(Resp::Bulk(Some(value))) => String::from_utf8_lossy(&value).parse().unwrap(),
            other => panic!("GET answered {other:?}"),
        },
        more => panic!("several counters for {user}: {more:?}"),
    }
}
