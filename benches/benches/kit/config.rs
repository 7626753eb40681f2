//! `config_parse`: `Filter::<Limiter, FakeHost>::configure` (simd-json in
//! place, borrowed views, compiled rules, script digest, counters) beside
//! serde_json into an owned `Value`, and into the naive limiter's
//! serde-derived owned struct (resolved rules, digest and counters too).
//!
//! Every input is cloned in the setup of `iter_batched` and every result
//! (filter, value or struct) is dropped outside the measurement.

use benches::inputs::PER_HEADER_CONFIG;
use benches::naive_limiter::NaiveLimiter;
use criterion::{criterion_group, BatchSize, Criterion};
use kit::fake::FakeHost;
use kit::Filter;
use limiter::Limiter;
use std::hint::black_box;

fn bench_parse(c: &mut Criterion) {
    let bytes = PER_HEADER_CONFIG.as_bytes().to_vec();
    let mut group = c.benchmark_group("config_parse");
    group.bench_function("kit_filter_configure", |b| {
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
    // The first step of the kit's configure alone: simd-json in place into
    // a borrowed document (what the rest of configure compiles from).
    group.bench_function("kit_step_simd_json_borrowed_value", |b| {
        b.iter_batched(
            || bytes.clone(),
            |mut bytes| {
                let len = simd_json::to_borrowed_value(black_box(&mut bytes))
                    .map(|v| match black_box(&v) {
                        simd_json::BorrowedValue::Object(o) => o.len(),
                        _ => 0,
                    })
                    .unwrap();
                (len, bytes)
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("serde_json_value", |b| {
        b.iter_batched(
            || bytes.clone(),
            |bytes| {
                let value: serde_json::Value = serde_json::from_slice(black_box(&bytes)).unwrap();
                (value, bytes)
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("naive_serde_struct_configure", |b| {
        b.iter_batched(
            || (FakeHost::new(), bytes.clone()),
            |(mut host, bytes)| {
                let plugin = NaiveLimiter::configure(black_box(&bytes), &mut host).unwrap();
                (plugin, host, bytes)
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group! {
    name = parse;
    config = crate::settings();
    targets = bench_parse
}
