//! The gateways the local scenarios start, and their plugins' configs: the
//! limiter, the token quota, Envoy's C++ `local_ratelimit`, the cheapest
//! Wasm refusals and plain routing, each a fresh Envoy with one worker.

use serde_json::{json, Value};
use stack::{Envoy, EnvoyConfig, WasmPlugin};

use crate::bench::Bench;

/// The limiter's Redis timeout in every scenario (ms).
pub const REDIS_TIMEOUT_MS: u64 = 500;
/// A non-streaming chat request (the upstream answers JSON).
pub(super) const CHAT_JSON: &str =
    r#"{"model":"qwen-max","messages":[{"role":"user","content":"Tell me a story."}]}"#;
/// A streaming chat request: the token quota buffers it and adds
/// `stream_options.include_usage` (the upstream answers an event stream).
pub(super) const CHAT_SSE: &str = r#"{"model":"qwen-max","stream":true,"messages":[{"role":"user","content":"Tell me a story."}]}"#;

pub(super) fn limiter_config(rule: &str, per_minute: u64, failure_mode_deny: bool) -> Value {
    json!({
        "rule_name": rule,
        "global_threshold": {"query_per_minute": per_minute},
        "rejected_code": 429,
        "show_limit_quota_header": true,
        "failure_mode_deny": failure_mode_deny,
        "redis": {"webdis_cluster": "webdis", "timeout": REDIS_TIMEOUT_MS},
    })
}

pub(super) fn limiter_gateway(bench: &Bench, config: &Value) -> Envoy {
    limiter_gateway_to(bench.webdis.port(), config)
}

/// A gateway running the limiter with `config`, its Redis behind the
/// webdis on `webdis_port`.
pub(super) fn limiter_gateway_to(webdis_port: u16, config: &Value) -> Envoy {
    let plugin = WasmPlugin::new(stack::wasm_path("limiter"), config.to_string());
    Envoy::start(
        EnvoyConfig::new()
            .wasm(plugin)
            .cluster("webdis", webdis_port)
            .log_level("warning"),
    )
}

/// `loadtest/wasm/refuse.wat`, the cheapest refusal a Wasm filter can make
/// (one local 429 from two exported callbacks), compiled with `wat2wasm`.
///
/// # Panics
/// When `wat2wasm` (Debian `wabt`, installed by `scripts/setup.sh`) is
/// missing or refuses the file: the run fails rather than skip it.
pub(super) fn minimal_refusal_gateway() -> Envoy {
    refusal_gateway("refuse")
}

/// `loadtest/wasm/refuse-stateful.wat`: the cheapest refusal of a filter
/// that keeps per-request state (also entered for the local reply's
/// headers and the request's end, and reading the clock).
///
/// # Panics
/// As [`minimal_refusal_gateway`].
pub(super) fn stateful_refusal_gateway() -> Envoy {
    refusal_gateway("refuse-stateful")
}

/// Envoy with `loadtest/wasm/<name>.wat`, compiled with `wat2wasm`.
pub(super) fn refusal_gateway(name: &str) -> Envoy {
    let root = stack::repo_root();
    let out_dir = root.join("target/loadtest");
    let wasm = out_dir.join(format!("{name}.wasm"));
    let source = root.join(format!("loadtest/wasm/{name}.wat"));
    let built = std::fs::create_dir_all(&out_dir).is_ok()
        && std::process::Command::new("wat2wasm")
            .arg(&source)
            .arg("-o")
            .arg(&wasm)
            .status()
            .is_ok_and(|status| status.success());
    assert!(
        built,
        "wat2wasm could not build {} (Debian wabt)",
        source.display()
    );
    Envoy::start(
        EnvoyConfig::new()
            .wasm(WasmPlugin::new(wasm, ""))
            .log_level("warning"),
    )
}

/// Envoy's own C++ token bucket, `max_tokens` per minute.
pub(super) fn local_ratelimit_gateway(max_tokens: u64) -> Envoy {
    let percent = json!({"numerator": 100, "denominator": "HUNDRED"});
    let filter = json!({
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "local_rate_limit",
            "token_bucket": {"max_tokens": max_tokens, "tokens_per_fill": max_tokens, "fill_interval": "60s"},
            "filter_enabled": {"runtime_key": "local_rate_limit_enabled", "default_value": percent},
            "filter_enforced": {"runtime_key": "local_rate_limit_enforced", "default_value": percent},
        },
    });
    Envoy::start(
        EnvoyConfig::new()
            .native_filter(filter)
            .log_level("warning"),
    )
}

pub(super) fn token_quota_gateway(
    bench: &Bench,
    rule: &str,
    per_minute: u64,
    upstream: &Envoy,
) -> Envoy {
    let config = json!({
        "rule_name": rule,
        "global_threshold": {"token_per_minute": per_minute},
        "redis": {"webdis_cluster": "webdis", "timeout": REDIS_TIMEOUT_MS},
    });
    token_quota_gateway_with(bench, &config, upstream)
}

/// A gateway running the token quota with `config`, routed to `upstream`.
pub(super) fn token_quota_gateway_with(bench: &Bench, config: &Value, upstream: &Envoy) -> Envoy {
    token_quota_gateway_to(bench.webdis.port(), config, upstream)
}

/// The same, its Redis behind the webdis on `webdis_port`.
pub(super) fn token_quota_gateway_to(webdis_port: u16, config: &Value, upstream: &Envoy) -> Envoy {
    let plugin = WasmPlugin::new(stack::wasm_path("token-quota"), config.to_string())
        .allow_on_headers_stop_iteration(true);
    Envoy::start(
        EnvoyConfig::new()
            .wasm(plugin)
            .cluster("webdis", webdis_port)
            .cluster("llm", upstream.port())
            .route_to("llm")
            .log_level("warning"),
    )
}

pub(super) fn plain_gateway_to(upstream: &Envoy) -> Envoy {
    Envoy::start(
        EnvoyConfig::new()
            .cluster("llm", upstream.port())
            .route_to("llm")
            .log_level("warning"),
    )
}

/// The limiter counting each `x-api-key` value apart, a limit never
/// reached.
pub(super) fn per_key_limiter_config(rule: &str) -> Value {
    json!({
        "rule_name": rule,
        "rule_items": [{"limit_by_per_header": "x-api-key",
                        "limit_keys": [{"key": "*", "query_per_minute": 1_000_000_000}]}],
        "rejected_code": 429,
        "show_limit_quota_header": true,
        "failure_mode_deny": false,
        "redis": {"webdis_cluster": "webdis", "timeout": REDIS_TIMEOUT_MS},
    })
}

/// The token quota's key pattern for `rule`.
pub(super) fn quota_keys(rule: &str) -> String {
    format!("token-quota:{{{rule}:*")
}
