//! The criterion suite: the kit beside the obvious alternative, one group
//! per question, each group in its own module under `kit/`.
//!
//! ```text
//! cargo bench -p benches                     # everything, about 4.5 minutes once built
//! BENCH_QUICK=1 cargo bench -p benches       # everything, short runs (CI), under 2 minutes
//! cargo bench -p benches -- resp_encode      # one group
//! ```
//!
//! The binary's allocator is the kit's counting allocator. Before timing a
//! routine that claims to allocate nothing, a group runs it
//! [`ALLOCATION_CHECK_RUNS`] times under [`allocations_during`] and stops
//! the run if anything was allocated ([`assert_no_allocations`]); the
//! alternatives get their allocations per iteration printed
//! ([`report_allocations`]). Outside those windows the allocator only
//! reads a thread-local flag per allocation, on both sides alike.

// Bench code: a failed setup should stop the run loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use criterion::{criterion_main, Criterion};
use kit::fake::{allocations_during, CountingAllocator};
use std::time::Duration;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[path = "kit/config.rs"]
mod config;
#[path = "kit/request.rs"]
mod request;
#[path = "kit/resp.rs"]
mod resp;
#[path = "kit/rules.rs"]
mod rules;
#[path = "kit/token_quota.rs"]
mod token_quota;
#[path = "kit/usage.rs"]
mod usage;

/// Settings of every group: 1 s of warm-up, 2 s of measurement and 10,000
/// bootstrap resamples (criterion's 100,000 take seconds per benchmark
/// without its rayon feature). With `BENCH_QUICK=1` in the environment
/// (CI), 0.2 s of warm-up, 0.5 s of measurement, 30 samples and 2,000
/// resamples: numbers good for a ratio, not a record. The command line
/// overrides either (`-- --measurement-time 10 --nresamples 100000` for
/// steadier numbers).
pub(crate) fn settings() -> Criterion {
    if quick() {
        Criterion::default()
            .warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(500))
            .sample_size(30)
            .nresamples(2_000)
    } else {
        Criterion::default()
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(2))
            .sample_size(100)
            .nresamples(10_000)
    }
}

/// Whether `BENCH_QUICK` asks for short runs (set and neither empty nor `0`).
pub(crate) fn quick() -> bool {
    std::env::var_os("BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Times a routine is run to count its allocations before it is timed.
pub(crate) const ALLOCATION_CHECK_RUNS: u64 = 1_000;

/// Runs `routine` [`ALLOCATION_CHECK_RUNS`] times and stops the run with
/// `name` if it allocated anything: the benchmark claims it does not.
pub(crate) fn assert_no_allocations(name: &str, mut routine: impl FnMut()) {
    // Runs outside the window: buffers that grow to their working size on
    // first use are warm-up, not per-iteration cost. Several, because the
    // kit hands an EVALSHA's argument buffer to the call in flight and
    // takes the call's previous one: three buffers take turns, and each
    // grows once.
    for _ in 0..8 {
        routine();
    }
    let allocations = allocations_during(|| {
        for _ in 0..ALLOCATION_CHECK_RUNS {
            routine();
        }
    });
    assert!(
        allocations == 0,
        "{name}: claims 0 allocations, made {allocations} in {ALLOCATION_CHECK_RUNS} runs"
    );
    eprintln!("{name}: 0 allocations per iteration (checked over {ALLOCATION_CHECK_RUNS} runs)");
}

/// Counts the allocations of `routine` over [`ALLOCATION_CHECK_RUNS`] runs
/// (after one warm-up run) and prints them per iteration under `name`.
pub(crate) fn report_allocations(name: &str, mut routine: impl FnMut()) {
    routine();
    let allocations = allocations_during(|| {
        for _ in 0..ALLOCATION_CHECK_RUNS {
            routine();
        }
    });
    // Whole numbers in practice; a fraction means the count varies.
    let per_run = allocations as f64 / ALLOCATION_CHECK_RUNS as f64;
    eprintln!("{name}: {per_run} allocations per iteration");
}

/// Checks that the counting allocator is installed and counting: without
/// it every count would be 0 and every zero-allocation claim would pass.
fn the_allocation_counter_counts() {
    let counted = allocations_during(|| drop(std::hint::black_box(vec![1u8])));
    assert_eq!(counted, 1, "the counting allocator is not counting");
}

fn check_allocation_counter(_: &mut Criterion) {
    the_allocation_counter_counts();
}

criterion::criterion_group!(allocation_counter, check_allocation_counter);

criterion_main!(
    allocation_counter,
    resp::encode,
    resp::decode,
    config::parse,
    request::limiter,
    token_quota::token_quota,
    rules::rule_matching,
    usage::usage
);
