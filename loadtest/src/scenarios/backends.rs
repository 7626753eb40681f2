//! The limiter built on both backends from the same source, measured on
//! one shared CPU at the same time: the kit's own ABI layer (the default,
//! `target/wasm/limiter.wasm`) and the standard `proxy-wasm` crate (kit
//! feature `proxy-wasm`, `target/wasm-sdk/limiter.wasm` from
//! `bash scripts/build.sh --sdk`), beside the no-filter baseline.
//!
//! Same method as `limiter-flood-paired`: the three gateways pinned to one
//! CPU and loaded together see the same machine at every instant, so their
//! requests/s relate as the inverse of their CPU cost per request. Two
//! scenarios: the flood path (over the limit, answered from the over-limit
//! cache) and the Redis path (a limit never reached, every request counted
//! through webdis).

use std::time::Duration;

use stack::{Envoy, EnvoyConfig, WasmPlugin};

use super::{
    announce, limiter_config, measure, median_ratio, Drive, Kind, Scenario, SHARED_CPU_BUSY,
};
use crate::wrk::{Requests, WrkResult};
use crate::Bench;

/// The limiter module built on the `proxy-wasm` crate.
///
/// # Panics
/// When it has not been built, naming the build command.
fn sdk_limiter() -> std::path::PathBuf {
    let path = stack::repo_root().join("target/wasm-sdk/limiter.wasm");
    assert!(
        path.is_file(),
        "{} is missing: build it with `bash scripts/build.sh --sdk`",
        path.display()
    );
    path
}

fn gateway(bench: &Bench, wasm: std::path::PathBuf, config: &serde_json::Value) -> Envoy {
    Envoy::start(
        EnvoyConfig::new()
            .wasm(WasmPlugin::new(wasm, config.to_string()))
            .cluster("webdis", bench.webdis.port())
            .log_level("warning"),
    )
}

/// Flood path (`flood`) or Redis path, both backends and the baseline on
/// one shared CPU, in rounds.
pub(super) fn backends_paired(bench: &Bench, flood: bool) -> Scenario {
    let (id, title, per_minute) = if flood {
        (
            "backends-flood-paired",
            "limiter flood on both backends (kit ABI layer, proxy-wasm crate) and the baseline, loaded together on one shared CPU",
            10,
        )
    } else {
        (
            "backends-redis-paired",
            "limiter Redis path on both backends (kit ABI layer, proxy-wasm crate) and the baseline, loaded together on one shared CPU",
            1_000_000_000,
        )
    };
    announce(title);
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    assert!(
        cpus >= 2,
        "the shared-CPU comparison needs 2 CPUs (one for the gateways, one for wrk); this machine has {cpus}"
    );
    let gateway_cpu = cpus - 1;
    let plain = Envoy::start(EnvoyConfig::new().log_level("warning"));
    let kit = gateway(
        bench,
        stack::wasm_path("limiter"),
        &limiter_config(&bench.rule(&format!("{id}-kit")), per_minute, false),
    );
    let sdk = gateway(
        bench,
        sdk_limiter(),
        &limiter_config(&bench.rule(&format!("{id}-sdk")), per_minute, false),
    );
    if flood {
        for g in [&kit, &sdk] {
            for _ in 0..=per_minute {
                let _ = stack::get(g.port(), "/", &[]);
            }
        }
    }
    let gateways = [&plain, &kit, &sdk];
    for g in gateways {
        crate::pin_to_cpu(g, gateway_cpu);
    }
    let rounds = if bench.opts.smoke { 1 } else { 5 };
    let mut sdk_runs: Option<WrkResult> = None;
    let mut kit_pairs = Vec::new();
    let mut sdk_pairs = Vec::new();
    let mut backend_pairs = Vec::new();
    let mut cpu_rows: Vec<[f64; 3]> = Vec::new();
    let mut texts = Vec::new();
    let mut busy_lowest = f64::INFINITY;
    for round in 0..rounds {
        let drive = Drive {
            seconds: bench.opts.seconds.min(5),
            connections: bench.opts.connections,
            requests: Requests::Get,
            warm_up: round == 0,
            timeout: Duration::from_secs(2),
            wrk_cpu: Some(0),
        };
        let seconds = drive.seconds as f64;
        let m = measure(bench, id, &gateways, drive);
        let rps: Vec<f64> = m.per_gateway.iter().map(|w| w.requests_per_sec).collect();
        let [base, on_kit, on_sdk] = rps[..] else {
            panic!("{id}: {} results for 3 gateways", rps.len());
        };
        let cpu: Vec<f64> = m
            .cpu_seconds
            .iter()
            .zip(&m.per_gateway)
            .map(|(cpu, w)| cpu * 1e6 / w.requests.max(1) as f64)
            .collect();
        let [cpu_base, cpu_kit, cpu_sdk] = cpu[..] else {
            panic!("{id}: {} CPU readings for 3 gateways", cpu.len());
        };
        cpu_rows.push([cpu_base, cpu_kit, cpu_sdk]);
        let busy = m.cpu_seconds.iter().sum::<f64>() / seconds;
        busy_lowest = busy_lowest.min(busy);
        if let Some(run) = m.per_gateway.get(2) {
            sdk_runs = Some(match sdk_runs {
                Some(sum) => sum.followed_by(run),
                None => run.clone(),
            });
        }
        let x = |rate: f64| rate / base.max(1.0);
        let text = format!(
            "baseline {base:.0} req/s, kit ABI layer {on_kit:.0} req/s ({:.2}x), proxy-wasm crate {on_sdk:.0} req/s ({:.2}x); CPU per request {cpu_base:.1} / {cpu_kit:.1} / {cpu_sdk:.1} µs; shared CPU {:.0}% busy",
            x(on_kit),
            x(on_sdk),
            busy * 100.0
        );
        println!("[loadtest]   round {}: {text}", round + 1);
        texts.push(text);
        kit_pairs.push((base, on_kit));
        sdk_pairs.push((base, on_sdk));
        backend_pairs.push((on_kit, on_sdk));
    }
    for g in gateways {
        crate::pin_to_cpu_range(g, 0, gateway_cpu);
    }
    let mut s = Scenario::new(id, title, Kind::Overhead, sdk_runs.unwrap_or_default());
    s.connections = bench.opts.connections;
    for (i, text) in texts.iter().enumerate() {
        s.fact(&format!("round {}", i + 1), text);
    }
    for (name, pairs) in [
        ("kit ABI layer / baseline", &kit_pairs),
        ("proxy-wasm crate / baseline", &sdk_pairs),
        ("proxy-wasm crate / kit ABI layer", &backend_pairs),
    ] {
        if let Some(median) = median_ratio(pairs) {
            s.fact(&format!("median ratio, {name}"), format!("{median:.2}x"));
        }
    }
    let median = |column: usize| {
        let mut v: Vec<f64> = cpu_rows
            .iter()
            .filter_map(|r| r.get(column).copied())
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    s.fact(
        "median CPU per request, baseline / kit ABI layer / proxy-wasm crate",
        format!(
            "{:.1} / {:.1} / {:.1} µs (the proxy-wasm crate's extra: {:+.1} µs)",
            median(0),
            median(1),
            median(2),
            median(2) - median(1)
        ),
    );
    s.check_answers(if flood { &[200, 429] } else { &[200] });
    let what = "the gateways kept their shared CPU busy (the ratios measure their cost, not wrk's)";
    let detail = format!(
        "least busy round: {:.0}% of one CPU (needs {:.0}%)",
        busy_lowest * 100.0,
        SHARED_CPU_BUSY * 100.0
    );
    // On the Redis path the gateways also wait for webdis, so their CPU
    // may idle; the CPU per request still compares them.
    if bench.opts.smoke || !flood {
        s.fact(what, detail);
    } else {
        s.check(what, busy_lowest >= SHARED_CPU_BUSY, detail);
    }
    s
}
