//! The limiter's flood path beside no filter, Envoy's C++ `local_ratelimit`
//! and the cheapest Wasm refusals, loaded together on one shared CPU in
//! paired rounds (`paired.rs`).

use std::time::Instant;

use stack::{Envoy, EnvoyConfig};

use super::gateways::{
    limiter_config, limiter_gateway, local_ratelimit_gateway, minimal_refusal_gateway,
    stateful_refusal_gateway,
};
use super::paired;
use crate::bench::Bench;
use crate::scenario::{announce, median_ratio, Kind, Scenario};
use crate::wrk::Requests;

/// The flood path beside the no-filter baseline, Envoy's C++
/// `local_ratelimit` over its limit (the native reference) and the
/// cheapest possible Wasm refusal (the floor for any Wasm filter), all four
/// gateways loaded **at the same time on one shared CPU**.
///
/// Why this shape: see `paired.rs` (loadtest/README.md has the
/// measurements of the machine's drift). The comparison is only valid
/// while the gateways keep their CPU busy (wrk is not the bottleneck): a
/// check requires it.
///
/// Each round is one such run; the target is judged on the median of the
/// per-round ratios flood/baseline.
pub(super) fn limiter_flood_paired(bench: &Bench) -> Scenario {
    let title = "limiter flood vs baseline, five gateways loaded together on one shared CPU (the target's measure)";
    announce(title);
    let per_minute = 10;
    let plain = Envoy::start(EnvoyConfig::new().log_level("warning"));
    let native = local_ratelimit_gateway(per_minute);
    let minimal = minimal_refusal_gateway();
    let stateful = stateful_refusal_gateway();
    let limited = limiter_gateway(
        bench,
        &limiter_config(&bench.rule("paired"), per_minute, false),
    );
    for gateway in [&native, &limited] {
        for _ in 0..=per_minute {
            let _ = stack::get(gateway.port(), "/", &[]);
        }
    }
    let gateways = [&plain, &native, &minimal, &stateful, &limited];
    let mut pairs = Vec::new();
    let mut native_pairs = Vec::new();
    let mut minimal_pairs = Vec::new();
    let mut floor_pairs = Vec::new();
    let mut stateful_pairs = Vec::new();
    let started = Instant::now();
    let mut rounds = paired::Rounds::start(bench, "paired", &gateways, Requests::Get, 4);
    while let Some(round) = rounds.next(bench) {
        let [base, reference, floor, stateful_floor, over] = round.rps[..] else {
            panic!("paired: {} results for 5 gateways", round.rps.len());
        };
        let x = |rate: f64| rate / base.max(1.0);
        let cpu_text: Vec<String> = round.cpu_us.iter().map(|c| format!("{c:.1}")).collect();
        rounds.record(format!(
            "baseline {base:.0} req/s, local_ratelimit {reference:.0} req/s ({:.2}x), minimal Wasm refusal {floor:.0} req/s ({:.2}x), stateful Wasm refusal {stateful_floor:.0} req/s ({:.2}x), limiter flood {over:.0} req/s ({:.2}x); CPU per request {} µs; shared CPU {:.0}% busy",
            x(reference),
            x(floor),
            x(stateful_floor),
            x(over),
            cpu_text.join(" / "),
            round.busy * 100.0,
        ));
        pairs.push((base, over));
        native_pairs.push((base, reference));
        minimal_pairs.push((base, floor));
        floor_pairs.push((floor, over));
        stateful_pairs.push((stateful_floor, over));
    }
    let done = rounds.finish();
    let mut s = Scenario::new(
        "limiter-flood-paired",
        title,
        Kind::Overhead,
        done.reported.clone(),
    );
    s.connections = bench.opts.connections;
    done.report_rounds(&mut s);
    if let Some(median) = median_ratio(&pairs) {
        s.fact(
            "median ratio, limiter flood / baseline",
            format!("{median:.2}x"),
        );
    }
    if let Some(median) = median_ratio(&native_pairs) {
        s.fact(
            "median ratio, Envoy's C++ local_ratelimit over its limit / baseline",
            format!("{median:.2}x"),
        );
    }
    if let Some(median) = median_ratio(&minimal_pairs) {
        s.fact(
            "median ratio, the cheapest Wasm refusal (loadtest/wasm/refuse.wat) / baseline",
            format!("{median:.2}x"),
        );
    }
    if let Some(median) = median_ratio(&floor_pairs) {
        s.fact(
            "median ratio, limiter flood / the cheapest Wasm refusal",
            format!("{median:.2}x"),
        );
    }
    if let Some(median) = median_ratio(&stateful_pairs) {
        s.fact(
            "median ratio, limiter flood / the cheapest stateful Wasm refusal (loadtest/wasm/refuse-stateful.wat)",
            format!("{median:.2}x"),
        );
    }
    s.rounds = pairs;
    s.floor_rounds = floor_pairs;
    s.check_answers(&[200, 429]);
    // The rounds take over a minute: each window they touch admits its
    // budget again.
    let windows = started.elapsed().as_secs() / 60 + 2;
    let allowed = s.wrk.status(200);
    s.check(
        "nearly all answers are 429",
        allowed <= windows * per_minute,
        format!("{allowed} answers 200 (limit {per_minute} per minute, {windows} windows at most)"),
    );
    done.report_busy(&mut s, bench, true);
    s
}
