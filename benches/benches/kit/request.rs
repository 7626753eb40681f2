//! `limiter_request`: one full request (request headers, webdis EVALSHA,
//! reply `:n\r\n`, response headers) through `Filter<Limiter, FakeHost>`
//! beside the naive limiter over the same `FakeHost` calls, for a global
//! limit and a per-header limit with `_rules_`.
//!
//! Redis's answer cycles through 1..=MAX_BENCH_COUNT, below every limit:
//! each request is allowed and gets its quota headers.

use benches::drive::{HostBaseline, KitDriver, NaiveDriver};
use benches::inputs::{
    Request, GLOBAL_CONFIG, GLOBAL_REQUEST, MAX_BENCH_COUNT, PER_HEADER_CONFIG, PER_HEADER_REQUEST,
};
use criterion::{criterion_group, Criterion};
use std::hint::black_box;

/// A Redis stand-in answering 1, 2, ... MAX_BENCH_COUNT, 1, ...
fn cycling_counter() -> impl FnMut(&[u8]) -> i64 {
    let mut n = 0;
    move |_path| {
        n = n % MAX_BENCH_COUNT + 1;
        n
    }
}

fn bench_requests(c: &mut Criterion) {
    let cases: [(&str, &str, Request<'static>); 2] = [
        ("global", GLOBAL_CONFIG, GLOBAL_REQUEST),
        ("per_header", PER_HEADER_CONFIG, PER_HEADER_REQUEST),
    ];
    let mut group = c.benchmark_group("limiter_request");
    for (name, config, request) in cases {
        let mut kit = KitDriver::new(config).unwrap();
        let mut redis = cycling_counter();
        assert_eq!(kit.request(&request, &mut redis), 200);
        group.bench_function(format!("{name}/kit_filter"), |b| {
            b.iter(|| black_box(kit.request(black_box(&request), &mut redis)));
        });

        // The FakeHost's share of both: the same host calls, no plugin.
        let path = kit
            .host()
            .last_call
            .as_ref()
            .unwrap()
            .headers
            .get_str(":path")
            .unwrap()
            .to_owned();
        let mut baseline = HostBaseline::new();
        group.bench_function(format!("{name}/host_only_baseline"), |b| {
            b.iter(|| black_box(baseline.request(black_box(&request), &path, &mut redis)));
        });

        let mut naive = NaiveDriver::new(config).unwrap();
        let mut redis = cycling_counter();
        assert_eq!(naive.request(&request, &mut redis), 200);
        group.bench_function(format!("{name}/naive_alloc"), |b| {
            b.iter(|| black_box(naive.request(black_box(&request), &mut redis)));
        });
    }
    group.finish();
}

criterion_group! {
    name = limiter;
    config = crate::settings();
    targets = bench_requests
}
