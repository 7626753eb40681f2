//! The token quota under steady load beside Envoy routing the same chat
//! POSTs with no filter: metered (a quota never reached), unmetered (no
//! limit applies), and the routed Wasm floor under both.

use serde_json::json;
use stack::{Envoy, EnvoyConfig, WasmPlugin};

use super::gateways::{
    plain_gateway_to, quota_keys, token_quota_gateway, token_quota_gateway_with, CHAT_JSON,
    CHAT_SSE, REDIS_TIMEOUT_MS,
};
use super::measure::{measure, overhead, overhead_drive};
use crate::bench::{Bench, JSON_USAGE, SSE_USAGE};
use crate::scenario::{announce, Kind, Scenario};
use crate::wrk::{Counters, Requests};

pub(super) fn upstream_baseline(bench: &Bench) -> Scenario {
    let gateway = plain_gateway_to(&bench.json_upstream);
    let mut s = overhead(
        bench,
        "upstream-baseline",
        "baseline: Envoy to an upstream Envoy (OpenAI JSON), no filter, chat POSTs",
        None,
        &gateway,
        Requests::PostJson(CHAT_JSON),
    );
    s.check_answers(&[200]);
    s
}

pub(super) fn token_quota_overhead(bench: &Bench, sse: bool) -> Scenario {
    let (id, title, upstream, body, usage) = if sse {
        (
            "token-quota-sse",
            "token quota, streaming chat POSTs, event-stream answers, quota never reached",
            &bench.sse_upstream,
            CHAT_SSE,
            SSE_USAGE,
        )
    } else {
        (
            "token-quota-json",
            "token quota, chat POSTs, JSON answers, quota never reached",
            &bench.json_upstream,
            CHAT_JSON,
            JSON_USAGE,
        )
    };
    let rule = bench.rule(id);
    let gateway = token_quota_gateway(bench, &rule, 1_000_000_000_000, upstream);
    announce(title);
    let drive = overhead_drive(bench, Requests::PostJson(body));
    // Read before the warm-up: both it and the measured run are compared.
    let upstream_before = Counters::read(upstream.admin_port()).unwrap_or_default();
    let m = measure(bench, id, &[&gateway], drive);
    let upstream_answers = Counters::read(upstream.admin_port())
        .unwrap_or_default()
        .minus(&upstream_before)
        .xx2;
    let charged = bench.redis_sum(&quota_keys(&rule));
    let mut s = Scenario::new(id, title, Kind::Overhead, m.wrk);
    s.baseline = Some("upstream-baseline");
    s.connections = drive.connections;
    s.redis_calls = Some(m.redis_commands.values().sum());
    s.redis_commands = m.redis_commands;
    s.samples = m.samples;
    s.fact_cpu_per_request(&m.cpu_seconds);
    s.fact_backend_cpu_per_request(m.backend_cpu_seconds);
    s.judge_token_quota_pass();
    s.judge_tokens_charged(charged, upstream_answers, usage.charged());
    s
}

/// The token quota loaded, configured so that no limit applies (a per-header
/// limit on a header the requests do not carry): the request body is still
/// buffered and the answer still passes through the filter's callbacks, but
/// nothing is read, scanned or charged. Against `upstream-baseline` and the
/// metered scenario, it splits the quota's cost into what the filter costs
/// by being there and what its Redis calls and scanning add.
pub(super) fn token_quota_unmetered(bench: &Bench, sse: bool) -> Scenario {
    let (id, title, upstream, body) = if sse {
        (
            "token-quota-sse-unmetered",
            "token quota, streaming chat POSTs, no limit applies (body buffered, answer passed through, no Redis)",
            &bench.sse_upstream,
            CHAT_SSE,
        )
    } else {
        (
            "token-quota-json-unmetered",
            "token quota, chat POSTs, no limit applies (body buffered, answer passed through, no Redis)",
            &bench.json_upstream,
            CHAT_JSON,
        )
    };
    let config = json!({
        "rule_name": bench.rule(id),
        "rule_items": [{
            "limit_by_per_header": "x-no-such-header",
            "limit_keys": [{"key": "*", "token_per_minute": 1_000_000_000_000u64}],
        }],
        "redis": {"webdis_cluster": "webdis", "timeout": REDIS_TIMEOUT_MS},
    });
    let gateway = token_quota_gateway_with(bench, &config, upstream);
    let mut s = overhead(
        bench,
        id,
        title,
        Some("upstream-baseline"),
        &gateway,
        Requests::PostJson(body),
    );
    s.check_answers(&[200]);
    let per_request = s.per_request(&["evalsha", "eval", "get"]);
    s.check(
        "no Redis calls",
        per_request == 0.0,
        format!("{per_request:.3} per request"),
    );
    s
}

/// The floor under the token quota's unmetered runs: a Wasm filter that
/// reads no body (the limiter, its one limit on a header the requests do
/// not carry) on the routed chat path. Against `upstream-baseline` it is
/// what any Wasm filter costs there; against `token-quota-json-unmetered`,
/// what buffering the request body and seeing each answer chunk add.
pub(super) fn routed_wasm_floor(bench: &Bench) -> Scenario {
    let config = json!({
        "rule_name": bench.rule("routed-wasm-floor"),
        "rule_items": [{
            "limit_by_per_header": "x-no-such-header",
            "limit_keys": [{"key": "*", "query_per_minute": 1_000_000_000u64}],
        }],
        "redis": {"webdis_cluster": "webdis", "timeout": REDIS_TIMEOUT_MS},
    });
    let plugin = WasmPlugin::new(stack::wasm_path("limiter"), config.to_string());
    let gateway = Envoy::start(
        EnvoyConfig::new()
            .wasm(plugin)
            .cluster("webdis", bench.webdis.port())
            .cluster("llm", bench.json_upstream.port())
            .route_to("llm")
            .log_level("warning"),
    );
    let mut s = overhead(
        bench,
        "routed-wasm-floor",
        "limiter loaded, no limit applies, chat POSTs routed (a Wasm filter that reads no body)",
        Some("upstream-baseline"),
        &gateway,
        Requests::PostJson(CHAT_JSON),
    );
    s.check_answers(&[200]);
    let per_request = s.per_request(&["evalsha", "eval", "get"]);
    s.check(
        "no Redis calls",
        per_request == 0.0,
        format!("{per_request:.3} per request"),
    );
    s
}
