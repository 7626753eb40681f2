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

use stack::{Envoy, EnvoyConfig, WasmPlugin};

use super::gateways::limiter_config;
use super::paired;
use crate::bench::Bench;
use crate::scenario::{announce, median_ratio, Kind, Scenario};
use crate::wrk::Requests;

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
    let mut kit_pairs = Vec::new();
    let mut sdk_pairs = Vec::new();
    let mut backend_pairs = Vec::new();
    let mut cpu_rows: Vec<[f64; 3]> = Vec::new();
    let mut rounds = paired::Rounds::start(bench, id, &gateways, Requests::Get, 2);
    while let Some(round) = rounds.next(bench) {
        let [base, on_kit, on_sdk] = round.rps[..] else {
            panic!("{id}: {} results for 3 gateways", round.rps.len());
        };
        let [cpu_base, cpu_kit, cpu_sdk] = round.cpu_us[..] else {
            panic!("{id}: {} CPU readings for 3 gateways", round.cpu_us.len());
        };
        cpu_rows.push([cpu_base, cpu_kit, cpu_sdk]);
        let x = |rate: f64| rate / base.max(1.0);
        rounds.record(format!(
            "baseline {base:.0} req/s, kit ABI layer {on_kit:.0} req/s ({:.2}x), proxy-wasm crate {on_sdk:.0} req/s ({:.2}x); CPU per request {cpu_base:.1} / {cpu_kit:.1} / {cpu_sdk:.1} µs; shared CPU {:.0}% busy",
            x(on_kit),
            x(on_sdk),
            round.busy * 100.0
        ));
        kit_pairs.push((base, on_kit));
        sdk_pairs.push((base, on_sdk));
        backend_pairs.push((on_kit, on_sdk));
    }
    let done = rounds.finish();
    let mut s = Scenario::new(id, title, Kind::Overhead, done.reported.clone());
    s.connections = bench.opts.connections;
    done.report_rounds(&mut s);
    for (name, pairs) in [
        ("kit ABI layer / baseline", &kit_pairs),
        ("proxy-wasm crate / baseline", &sdk_pairs),
        ("proxy-wasm crate / kit ABI layer", &backend_pairs),
    ] {
        if let Some(median) = median_ratio(pairs) {
            s.fact(&format!("median ratio, {name}"), format!("{median:.2}x"));
        }
    }
    let median =
        |column: usize| paired::median(cpu_rows.iter().filter_map(|r| r.get(column).copied()));
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
    // On the Redis path the gateways also wait for webdis, so their CPU
    // may idle; the CPU per request still compares them.
    done.report_busy(&mut s, bench, flood);
    s
}
