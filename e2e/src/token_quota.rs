//! The token quota's pieces the end-to-end tests share: its per-user
//! configuration, the Envoy configs that run it, and the tokens Redis
//! holds for one user.

use std::path::PathBuf;

use serde_json::{json, Value};
use stack::resp::Resp;
use stack::{EnvoyConfig, Redis, WasmPlugin};

use crate::WEBDIS_CLUSTER;

/// The cluster of the LLM upstream in [`llm_envoy`]'s configs.
pub const LLM_CLUSTER: &str = "llm";

/// A configuration of `rule` with a quota per `x-user` of 1,000,000
/// tokens an hour (far from reached), asking Redis through webdis with a
/// `timeout_ms` timeout.
pub fn per_user_config(rule: &str, timeout_ms: u64) -> Value {
    per_header_config(rule, "x-user", timeout_ms)
}

/// A configuration of `rule` with a quota per value of `header` of
/// 1,000,000 tokens an hour (far from reached), asking Redis through
/// webdis with a `timeout_ms` timeout.
pub fn per_header_config(rule: &str, header: &str, timeout_ms: u64) -> Value {
    json!({
        "rule_name": rule,
        "rule_items": [{
            "limit_by_per_header": header,
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

/// How Envoy speaks to the LLM upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LlmProtocol {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2 (cleartext, prior knowledge).
    Http2,
}

/// An Envoy config running `plugin`, a configured build of the token
/// quota, with its webdis cluster at `webdis_port` and every request
/// routed to the LLM upstream at `llm_port` ([`LLM_CLUSTER`]), spoken to
/// in `protocol`. The plugin explains its decisions (usage not found,
/// Redis failures) at debug level, so that is the level it logs at: a
/// failing test shows them.
pub fn llm_envoy(
    plugin: WasmPlugin,
    webdis_port: u16,
    llm_port: u16,
    protocol: LlmProtocol,
) -> EnvoyConfig {
    let envoy = EnvoyConfig::new()
        .wasm(plugin)
        .cluster(WEBDIS_CLUSTER, webdis_port);
    let envoy = match protocol {
        LlmProtocol::Http1 => envoy.cluster(LLM_CLUSTER, llm_port),
        LlmProtocol::Http2 => envoy.http2_cluster(LLM_CLUSTER, llm_port),
    };
    envoy
        .route_to(LLM_CLUSTER)
        .component_log_level("wasm:debug")
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
    counter_holding(redis, rule, &format!(":{user}}}"))
}

/// The value of the one counter of Redis whose key holds both `rule` and
/// `part`, 0 when there is none.
///
/// # Panics
/// If Redis cannot be asked, the counter is not an integer, or there are
/// several such counters.
pub fn counter_holding(redis: &Redis, rule: &str, part: &str) -> i64 {
    let keys = keys_with(redis, rule, part);
    match keys.as_slice() {
        [] => 0,
        [key] => match redis.command(&[b"GET", key]) {
            Ok(Resp::Bulk(Some(value))) => String::from_utf8_lossy(&value).parse().unwrap(),
            other => panic!("GET {key:?} answered {other:?}"),
        },
        more => panic!("several counters hold {part}: {more:?}"),
    }
}
