//! Every scenario of the local run, by id, in the order a full run takes
//! them, each in the file of its family: one gateway under steady load
//! (`limiter_overhead`, `quota_overhead`), gateways loaded together on one
//! shared CPU (`flood_paired`, `redis_paired`, `backends`, over the round
//! loop of `paired`), accuracy across two gateways (`accuracy`), the soak
//! and Redis stopped mid-run (`endurance`), and the Redis Cluster runs
//! (`crate::cluster`). Each starts its gateways from `gateways` and
//! measures with `measure`.

use std::time::Instant;

use crate::bench::Bench;
use crate::scenario::Scenario;
use crate::wrk;

mod accuracy;
mod backends;
mod endurance;
mod flood_paired;
mod gateways;
mod limiter_overhead;
mod measure;
mod paired;
mod quota_overhead;
mod redis_paired;

use accuracy::{limiter_accuracy, token_quota_accuracy};
use endurance::{faults, soak};
use flood_paired::limiter_flood_paired;
use limiter_overhead::{
    baseline, limiter_flood, limiter_keys, limiter_pass, limiter_round_trips, local_ratelimit,
};
use quota_overhead::{
    routed_wasm_floor, token_quota_overhead, token_quota_unmetered, upstream_baseline,
};

/// Runs one scenario.
pub type Run = fn(&mut Bench) -> Scenario;

/// Every scenario, by id, in the order a full run takes them.
pub const ALL: &[(&str, Run)] = &[
    ("baseline", |bench| baseline(bench)),
    ("local-ratelimit-pass", |bench| {
        local_ratelimit(bench, false)
    }),
    ("local-ratelimit-flood", |bench| {
        local_ratelimit(bench, true)
    }),
    ("limiter-pass", |bench| limiter_pass(bench)),
    ("limiter-keys", |bench| limiter_keys(bench)),
    ("limiter-round-trips", |bench| limiter_round_trips(bench)),
    ("limiter-flood", |bench| limiter_flood(bench)),
    ("limiter-flood-paired", |bench| limiter_flood_paired(bench)),
    ("limiter-redis-paired", |bench| {
        redis_paired::limiter_redis_paired(bench)
    }),
    ("backends-flood-paired", |bench| {
        backends::backends_paired(bench, true)
    }),
    ("backends-redis-paired", |bench| {
        backends::backends_paired(bench, false)
    }),
    ("upstream-baseline", |bench| upstream_baseline(bench)),
    ("token-quota-json-paired", |bench| {
        redis_paired::token_quota_redis_paired(bench, false)
    }),
    ("token-quota-sse-paired", |bench| {
        redis_paired::token_quota_redis_paired(bench, true)
    }),
    ("token-quota-json", |bench| {
        token_quota_overhead(bench, false)
    }),
    ("token-quota-sse", |bench| token_quota_overhead(bench, true)),
    ("token-quota-json-unmetered", |bench| {
        token_quota_unmetered(bench, false)
    }),
    ("token-quota-sse-unmetered", |bench| {
        token_quota_unmetered(bench, true)
    }),
    ("routed-wasm-floor", |bench| routed_wasm_floor(bench)),
    ("limiter-accuracy", |bench| limiter_accuracy(bench)),
    ("token-quota-json-accuracy", |bench| {
        token_quota_accuracy(bench, false)
    }),
    ("token-quota-sse-accuracy", |bench| {
        token_quota_accuracy(bench, true)
    }),
    ("soak", |bench| soak(bench)),
    // Each starts a Redis Cluster of its own (cluster.rs).
    ("cluster-accuracy", crate::cluster::accuracy),
    ("cluster-failover", crate::cluster::failover),
    ("cluster-token-quota", crate::cluster::token_quota),
    ("cluster-replication-loss", crate::cluster::replication_loss),
    (
        "cluster-replication-loss-quota",
        crate::cluster::replication_loss_quota,
    ),
    // Last: it restarts the shared Redis, which empties it.
    ("faults", faults),
];

/// Runs the scenarios of [`ALL`] whose id `only` names (every one when
/// `only` is empty), in [`ALL`]'s order.
pub fn run_all(bench: &mut Bench, only: &[String]) -> Vec<Scenario> {
    let mut all = Vec::new();
    let started = Instant::now();
    for (id, run) in ALL {
        if !only.is_empty() && !only.iter().any(|o| o == id) {
            continue;
        }
        let s = run(bench);
        println!(
            "[loadtest]   -> {:.0} req/s, p99 {}, {} ({:.0} s so far)",
            s.wrk.requests_per_sec,
            wrk::format_ms(s.wrk.latency_us.p99),
            s.wrk.statuses_text(),
            started.elapsed().as_secs_f64()
        );
        all.push(s);
    }
    all
}
