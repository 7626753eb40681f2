//! Load test of the limiter in a real Envoy (one worker), Redis behind webdis.
//!
//! Builds nothing: it needs `target/wasm32-wasip1/release/limiter.wasm`
//! (`cargo build --release --target wasm32-wasip1 -p limiter`). For each
//! scenario it starts fresh components, warms up for a second, runs
//! `wrk -t1 -c<connections> -d<seconds>s --latency` on loopback and checks
//! the answers were what the scenario promises; then it prints a markdown
//! table and writes it to `target/loadtest/report.md`.
//!
//! Scenarios:
//! * `baseline`: Envoy with no filter, `direct_response` 200;
//! * `limiter, limit never reached`: every request is counted in Redis
//!   (one webdis call each) and passes;
//! * `limiter, over limit`: 10 per minute, so almost every request is
//!   rejected, ideally by the plugin's local over-limit cache without a
//!   Redis round trip (the `webdis calls` column shows whether it is);
//! * `baseline: Envoy to an upstream`: no filter, answers from a scripted
//!   OpenAI-style upstream;
//! * `token quota, never reached`: the same upstream behind the token
//!   quota: each request reads its quota and each answer is scanned and
//!   charged (two webdis calls per request);
//! * `token quota, streaming chat POSTs`: the same with a JSON body asking
//!   for a stream, which the plugin buffers and rewrites (headers held,
//!   `allow_on_headers_stop_iteration: true`).
//!
//! Usage: `cargo run --release -p loadtest -- [--seconds N] [--connections N]
//! [--allow-on-headers-stop-iteration]`; `LOADTEST_SECONDS` sets the default
//! duration (10). The flag sets the Wasm `PluginConfig` field of that name
//! (Envoy then honours StopIteration from header callbacks instead of
//! turning it into StopAllIterationAndWatermark).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod wrk;

use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::{json, Value};
use stack::{Envoy, EnvoyConfig, Redis, Reply, Upstream, Usage, WasmPlugin, Webdis};

use crate::wrk::WrkResult;

const USAGE: &str =
    "usage: loadtest [--seconds N] [--connections N] [--allow-on-headers-stop-iteration]\n\
                     (env: LOADTEST_SECONDS)";

#[derive(Debug)]
struct Options {
    seconds: u64,
    connections: u32,
    /// Sets the Wasm `PluginConfig.allow_on_headers_stop_iteration`.
    allow_stop_iteration: bool,
}

fn parse_options() -> Result<Options, String> {
    let mut seconds = match std::env::var("LOADTEST_SECONDS") {
        Ok(v) => v
            .parse()
            .map_err(|_| format!("LOADTEST_SECONDS={v:?} is not a number of seconds"))?,
        Err(_) => 10,
    };
    let mut connections = 32;
    let mut allow_stop_iteration = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a positive number\n{USAGE}"))
        };
        match arg.as_str() {
            "--seconds" => seconds = value("--seconds")?,
            "--connections" => connections = value("--connections")? as u32,
            "--allow-on-headers-stop-iteration" => allow_stop_iteration = true,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if seconds == 0 || seconds > 3600 || connections == 0 {
        return Err(format!(
            "--seconds must be 1..=3600 and --connections > 0\n{USAGE}"
        ));
    }
    Ok(Options {
        seconds,
        connections,
        allow_stop_iteration,
    })
}

/// One measured configuration.
#[derive(Debug)]
struct Row {
    scenario: &'static str,
    result: WrkResult,
    /// Requests Envoy sent to webdis during the measured run.
    webdis_calls: Option<u64>,
}

fn limiter_config(rule_name: &str, per_minute: u64) -> Value {
    json!({
        "rule_name": rule_name,
        "global_threshold": {"query_per_minute": per_minute},
        "rejected_code": 429,
        "rejected_msg": "Too many requests",
        "show_limit_quota_header": true,
        "failure_mode_deny": false,
        "redis": {"webdis_cluster": "webdis", "timeout": 500},
    })
}

/// Requests sent to the `webdis` cluster so far (absent without the cluster).
fn webdis_requests(envoy: &Envoy) -> Option<u64> {
    envoy.stat("cluster.webdis.upstream_rq_total")
}

fn run_baseline(opts: &Options) -> Row {
    let envoy = Envoy::start(EnvoyConfig::new().log_level("warning"));
    expect_status(&envoy, 200, "baseline");
    wrk::run(envoy.port(), 1, opts.connections);
    let result = wrk::run(envoy.port(), opts.seconds, opts.connections);
    Row {
        scenario: "baseline: Envoy, no filter",
        result,
        webdis_calls: None,
    }
}

fn run_limiter(opts: &Options, scenario: &'static str, per_minute: u64, expected: u16) -> Row {
    let wasm = stack::wasm_path("limiter");
    let redis = Redis::start();
    let webdis = Webdis::start_with(redis.port(), 2, 16);
    // Unique per run, so a repeated run in the same minute starts at zero.
    let rule = format!("loadtest-{per_minute}-{}", std::process::id());
    let mut plugin = WasmPlugin::new(wasm, limiter_config(&rule, per_minute).to_string());
    if opts.allow_stop_iteration {
        plugin = plugin.allow_on_headers_stop_iteration(true);
    }
    let envoy = Envoy::start(
        EnvoyConfig::new()
            .wasm(plugin)
            .cluster("webdis", webdis.port())
            .log_level("warning"),
    );
    if expected == 429 {
        // Use the budget up so the whole run is over the limit.
        for _ in 0..per_minute {
            stack::get(envoy.port(), "/", &[]).unwrap();
        }
    }
    expect_status(&envoy, expected, scenario);
    wrk::run(envoy.port(), 1, opts.connections);
    let before = webdis_requests(&envoy);
    let result = wrk::run(envoy.port(), opts.seconds, opts.connections);
    let after = webdis_requests(&envoy);
    let webdis_calls = before.zip(after).map(|(b, a)| a.saturating_sub(b));
    check_outcome(scenario, &result, expected);
    drop(envoy);
    drop(webdis);
    drop(redis);
    Row {
        scenario,
        result,
        webdis_calls,
    }
}

fn run_upstream_baseline(opts: &Options) -> Row {
    let upstream = Upstream::start_with(Reply::openai(Usage::new(10, 20)));
    let envoy = Envoy::start(
        EnvoyConfig::new()
            .cluster("llm", upstream.port())
            .route_to("llm")
            .log_level("warning"),
    );
    expect_status(&envoy, 200, "upstream baseline");
    wrk::run(envoy.port(), 1, opts.connections);
    let result = wrk::run(envoy.port(), opts.seconds, opts.connections);
    check_outcome("upstream baseline", &result, 200);
    Row {
        scenario: "baseline: Envoy to an upstream, no filter",
        result,
        webdis_calls: None,
    }
}

/// A wrk script sending a streaming chat request the plugin must buffer
/// and rewrite.
const CHAT_POST: &str = r#"wrk.method = "POST"
wrk.body = '{"model":"qwen-max","stream":true,"messages":[{"role":"user","content":"Tell me a story."}]}'
wrk.headers["Content-Type"] = "application/json"
"#;

fn run_token_quota(opts: &Options, posts: bool) -> Row {
    let scenario = if posts {
        "token quota, streaming chat POSTs (body buffered and rewritten; allow_on_headers_stop_iteration: true)"
    } else {
        "token quota, never reached (30 tokens per answer)"
    };
    let wasm = stack::wasm_path("token-quota");
    let upstream = Upstream::start_with(Reply::openai(Usage::new(10, 20)));
    let redis = Redis::start();
    let webdis = Webdis::start_with(redis.port(), 2, 16);
    let rule = format!("loadtest-tq-{posts}-{}", std::process::id());
    let config = json!({
        "rule_name": rule,
        "global_threshold": {"token_per_minute": 1_000_000_000_000u64},
        "redis": {"webdis_cluster": "webdis", "timeout": 500},
    });
    let mut plugin = WasmPlugin::new(wasm, config.to_string());
    if opts.allow_stop_iteration || posts {
        plugin = plugin.allow_on_headers_stop_iteration(true);
    }
    let envoy = Envoy::start(
        EnvoyConfig::new()
            .wasm(plugin)
            .cluster("webdis", webdis.port())
            .cluster("llm", upstream.port())
            .route_to("llm")
            .log_level("warning"),
    );
    expect_status(&envoy, 200, scenario);
    let script = posts.then(|| {
        let path = stack::target_dir().join("loadtest").join("chat-post.lua");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        }
        std::fs::write(&path, CHAT_POST)
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    });
    wrk::run_script(envoy.port(), 1, opts.connections, script.as_deref());
    let before = webdis_requests(&envoy);
    let result = wrk::run_script(
        envoy.port(),
        opts.seconds,
        opts.connections,
        script.as_deref(),
    );
    let after = webdis_requests(&envoy);
    check_outcome(scenario, &result, 200);
    if posts {
        let rewritten = upstream.requests().last().is_some_and(|r| {
            r.json().pointer("/stream_options/include_usage") == Some(&json!(true))
        });
        assert!(
            rewritten,
            "{scenario}: the upstream did not get include_usage"
        );
    }
    drop(envoy);
    drop(webdis);
    drop(redis);
    Row {
        scenario,
        result,
        webdis_calls: before.zip(after).map(|(b, a)| a.saturating_sub(b)),
    }
}

fn expect_status(envoy: &Envoy, status: u16, scenario: &str) {
    let log_tail = || stack::envoy_log_excerpt(&envoy.log(), 20);
    match stack::get(envoy.port(), "/", &[]) {
        Ok(r) if r.status == status => {}
        Ok(r) => panic!(
            "{scenario}: a probe request got {} instead of {status}; Envoy log tail:\n{}",
            r.status,
            log_tail()
        ),
        Err(e) => panic!(
            "{scenario}: a probe request expecting {status} got no answer ({e}); \
             Envoy log tail:\n{}",
            log_tail()
        ),
    }
}

/// The limit-never-reached run must pass (almost) everything; the over-limit
/// run must reject (almost) everything: otherwise the numbers measure
/// something else. A minute boundary during the run lets up to `limit`
/// requests through, which the 1% slack covers.
fn check_outcome(scenario: &str, result: &WrkResult, expected: u16) {
    let rejected_share = result.non_2xx as f64 / result.requests.max(1) as f64;
    let ok = match expected {
        200 => result.non_2xx == 0,
        _ => rejected_share > 0.99,
    };
    if !ok {
        eprintln!(
            "WARNING: {scenario}: {} of {} answers were non-2xx, expected {}",
            result.non_2xx,
            result.requests,
            if expected == 200 {
                "none"
            } else {
                "nearly all"
            }
        );
    }
}

fn render(rows: &[Row], opts: &Options) -> String {
    let mut out = String::new();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(
        out,
        "Envoy `--concurrency 1`, `wrk -t1 -c{} -d{}s --latency` on loopback, {cores} cores; \
         Redis behind webdis (2 threads); `allow_on_headers_stop_iteration: {}`.\n",
        opts.connections, opts.seconds, opts.allow_stop_iteration
    );
    out.push_str("| scenario | req/s | p50 | p99 | non-2xx | socket errors | webdis calls |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
    for row in rows {
        let r = &row.result;
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {} | {} of {} | {} | {} |",
            row.scenario,
            r.requests_per_sec,
            wrk::format_latency(r.p50),
            wrk::format_latency(r.p99),
            r.non_2xx,
            r.requests,
            r.socket_errors,
            row.webdis_calls.map_or("-".to_owned(), |n| n.to_string()),
        );
    }
    out
}

fn main() {
    let opts = match parse_options() {
        Ok(opts) => opts,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    // Fail before starting anything if a piece is missing.
    stack::require_tool("wrk", "wrk");
    stack::wasm_path("limiter");
    stack::wasm_path("token-quota");

    let rows = vec![
        run_baseline(&opts),
        run_limiter(
            &opts,
            "limiter, limit never reached (1e9/min)",
            1_000_000_000,
            200,
        ),
        run_limiter(&opts, "limiter, over limit (10/min)", 10, 429),
        run_upstream_baseline(&opts),
        run_token_quota(&opts, false),
        run_token_quota(&opts, true),
    ];
    let report = render(&rows, &opts);
    let path: PathBuf = stack::target_dir().join("loadtest").join("report.md");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    }
    std::fs::write(&path, &report).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    println!("{report}");
    println!("written to {}", path.display());
}
