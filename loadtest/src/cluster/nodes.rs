//! The Redis Cluster of a run and the gateways in front of it: the cluster
//! with its `redis_proxy` and two webdis, the limiter's and the token
//! quota's configs and gateways, and the counters each node holds.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use stack::{Envoy, EnvoyConfig, RedisCluster, WasmPlugin, Webdis};

use crate::bench::Bench;

/// The limiter's Redis timeout (ms); short, so the failover's failures
/// answer fast.
pub(super) const TIMEOUT_MS: u64 = 500;

/// Tokens each answer of the JSON upstream reports.
pub(super) const TOKENS_PER_ANSWER: u64 = 30;

pub(super) fn config(rule: &str, per_minute: u64) -> Value {
    json!({
        "rule_name": rule,
        "rule_items": [{"limit_by_per_header": "x-api-key",
                        "limit_keys": [{"key": "*", "query_per_minute": per_minute}]}],
        "show_limit_quota_header": true,
        "failure_mode_deny": true,
        "redis": {"webdis_cluster": "webdis", "timeout": TIMEOUT_MS, "cluster": true},
    })
}

pub(super) fn gateway(webdis: &Webdis, config: &Value) -> Envoy {
    let plugin = WasmPlugin::new(stack::wasm_path("limiter"), config.to_string());
    Envoy::start(
        EnvoyConfig::new()
            .wasm(plugin)
            .cluster("webdis", webdis.port())
            .log_level("warning"),
    )
}

/// Starts a Redis Cluster (3 masters, 3 replicas) with its redis_proxy and
/// two webdis in front of the proxy, one for each gateway of scenario `id`.
pub(super) fn start_cluster(id: &str) -> (RedisCluster, [Webdis; 2]) {
    println!(
        "[loadtest] == {id}: starting a Redis Cluster (3 masters, 3 replicas) and redis_proxy"
    );
    let cluster = RedisCluster::start();
    let webdis = [
        Webdis::start_with(cluster.proxy_port(), 2, 16),
        Webdis::start_with(cluster.proxy_port(), 2, 16),
    ];
    (cluster, webdis)
}

/// Tokens in each key's counter (`…:key-<n>}…` of `rule`), by key number,
/// read on every master.
pub(super) fn charged_per_key(cluster: &RedisCluster, rule: &str) -> BTreeMap<usize, u64> {
    let mut out = BTreeMap::new();
    for port in cluster.master_ports() {
        for (number, value) in counters_on(cluster, port, rule) {
            *out.entry(number).or_default() += value;
        }
    }
    out
}

/// The counters of `rule` on the node at `port`: key number (`…:key-<n>}…`)
/// and value.
pub(super) fn counters_on(cluster: &RedisCluster, port: u16, rule: &str) -> Vec<(usize, u64)> {
    let pattern = format!("*{rule}*");
    let mut out = Vec::new();
    {
        let keys = cluster
            .node_command(port, &[b"KEYS", pattern.as_bytes()])
            .map(|r| r.bulk_items())
            .unwrap_or_default();
        for key in keys {
            let name = String::from_utf8_lossy(&key).into_owned();
            let number = name
                .split(":key-")
                .nth(1)
                .and_then(|rest| rest.split('}').next())
                .and_then(|n| n.parse::<usize>().ok());
            let value = match cluster.node_command(port, &[b"GET", &key]) {
                Ok(stack::resp::Resp::Bulk(Some(v))) => {
                    String::from_utf8_lossy(&v).parse::<u64>().ok()
                }
                _ => None,
            };
            if let (Some(number), Some(value)) = (number, value) {
                out.push((number, value));
            }
        }
    }
    out
}

/// The token quota's configuration: `quota` tokens a minute per
/// `x-api-key`, `failure_mode_deny: true`, on the cluster.
pub(super) fn quota_config(rule: &str, quota: u64) -> Value {
    json!({
        "rule_name": rule,
        "rule_items": [{"limit_by_per_header": "x-api-key",
                        "limit_keys": [{"key": "*", "token_per_minute": quota}]}],
        "rejected_code": 429,
        "failure_mode_deny": true,
        "redis": {"webdis_cluster": "webdis", "timeout": TIMEOUT_MS, "cluster": true},
    })
}

/// A gateway with the token quota in front of the JSON upstream.
pub(super) fn quota_gateway(bench: &Bench, webdis: &Webdis, config: &Value) -> Envoy {
    let plugin = WasmPlugin::new(stack::wasm_path("token-quota"), config.to_string())
        .allow_on_headers_stop_iteration(true);
    Envoy::start(
        EnvoyConfig::new()
            .wasm(plugin)
            .cluster("webdis", webdis.port())
            .cluster("llm", bench.json_upstream.port())
            .route_to("llm")
            .log_level("warning"),
    )
}
