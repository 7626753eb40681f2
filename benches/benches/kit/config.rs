//! `config_parse`: `Filter::<Limiter, FakeHost>::configure` (simd-json in
//! place, borrowed views, compiled rules, script digest, counters) beside
//! serde_json into an owned `Value`, and into the naive limiter's
//! serde-derived owned struct (resolved rules, digest and counters too).
//! Two configurations: the 1 KB one of the request benchmarks (3
//! `rule_items`, 2 `_rules_`) and a 5.4 KB one with 20 `rule_items` and 10
//! `_rules_` (`inputs::LARGE_CONFIG`).
//!
//! Every input is cloned in the setup of `iter_batched` and every result
//! (filter, value or struct) is dropped outside the measurement. The
//! allocations of one configure, clone of the input excluded, are counted
//! and printed for each side: configuration runs once per reload, so they
//! are reported, not forbidden.

use benches::inputs::{LARGE_CONFIG, PER_HEADER_CONFIG};
use benches::naive_limiter::NaiveLimiter;
use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use kit::fake::{allocations_during, FakeHost};
use kit::Filter;
use limiter::Limiter;
use std::hint::black_box;

/// Prints the allocations of one run of `configure`, counted on an input
/// prepared by `setup` outside the count, and dropped outside it too.
fn report_configure_allocations<I, O>(
    name: &str,
    mut setup: impl FnMut() -> I,
    mut configure: impl FnMut(I) -> O,
) {
    const RUNS: u64 = 100;
    let mut total = 0;
    for _ in 0..RUNS {
        let input = setup();
        let mut output = None;
        total += allocations_during(|| output = Some(configure(input)));
        drop(output);
    }
    // Configuration is deterministic: the same count every run.
    let per_run = total / RUNS;
    eprintln!("{name}: {per_run} allocations per configure");
}

fn bench_parse(c: &mut Criterion) {
    let cases = [
        ("per_header_1k", PER_HEADER_CONFIG),
        ("large_20_items_10_rules", LARGE_CONFIG),
    ];
    let mut group = c.benchmark_group("config_parse");
    for (case, config) in cases {
        let bytes = config.as_bytes().to_vec();
        group.throughput(Throughput::Bytes(bytes.len() as u64));

        report_configure_allocations(
            &format!("config_parse/{case}/kit_filter_configure"),
            || {
                (
                    Filter::<Limiter, FakeHost>::new(FakeHost::new()),
                    bytes.clone(),
                )
            },
            |(mut filter, bytes)| {
                filter.configure(bytes).unwrap();
                filter
            },
        );
        group.bench_function(format!("{case}/kit_filter_configure"), |b| {
            b.iter_batched(
                || {
                    (
                        Filter::<Limiter, FakeHost>::new(FakeHost::new()),
                        bytes.clone(),
                    )
                },
                |(mut filter, bytes)| {
                    filter.configure(bytes).unwrap();
                    filter
                },
                BatchSize::SmallInput,
            );
        });

        // The first step of the kit's configure alone: simd-json in place
        // into a tape of borrowed nodes (what the rest of configure
        // compiles from).
        let simd_step = |mut bytes: Vec<u8>| {
            let len = simd_json::to_tape(black_box(&mut bytes))
                .map(|tape| black_box(&tape).0.len())
                .unwrap();
            (len, bytes)
        };
        report_configure_allocations(
            &format!("config_parse/{case}/kit_step_simd_json_tape"),
            || bytes.clone(),
            simd_step,
        );
        group.bench_function(format!("{case}/kit_step_simd_json_tape"), |b| {
            b.iter_batched(|| bytes.clone(), simd_step, BatchSize::SmallInput);
        });

        let serde_value = |bytes: Vec<u8>| {
            let value: serde_json::Value = serde_json::from_slice(black_box(&bytes)).unwrap();
            (value, bytes)
        };
        report_configure_allocations(
            &format!("config_parse/{case}/serde_json_value"),
            || bytes.clone(),
            serde_value,
        );
        group.bench_function(format!("{case}/serde_json_value"), |b| {
            b.iter_batched(|| bytes.clone(), serde_value, BatchSize::SmallInput);
        });

        let naive = |(mut host, bytes): (FakeHost, Vec<u8>)| {
            let plugin = NaiveLimiter::configure(black_box(&bytes), &mut host).unwrap();
            (plugin, host, bytes)
        };
        report_configure_allocations(
            &format!("config_parse/{case}/naive_serde_struct_configure"),
            || (FakeHost::new(), bytes.clone()),
            naive,
        );
        group.bench_function(format!("{case}/naive_serde_struct_configure"), |b| {
            b.iter_batched(
                || (FakeHost::new(), bytes.clone()),
                naive,
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group! {
    name = parse;
    config = crate::settings();
    targets = bench_parse
}
