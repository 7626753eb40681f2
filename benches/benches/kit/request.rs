//! `limiter_request`: one full request (request headers, webdis EVALSHA,
//! reply `:n\r\n`, response headers) through `Filter<Limiter, FakeHost>`
//! beside the naive limiter over the same `FakeHost` calls, for a global
//! limit and a per-header limit with `_rules_`; then the over-limit path.
//!
//! On the Redis path, Redis's answer cycles through 1..=MAX_BENCH_COUNT,
//! below every limit: each request is allowed and gets its quota headers.
//!
//! On the over-limit path Redis answers one past the limit. The kit (and
//! the naive limiter, which has the same cache) remembers the key until
//! its window ends and refuses later requests locally, without Redis; the
//! fake clock does not move, so every timed request takes that path.
//! Higress's own plugin has no such cache: `naive_higress_no_cache` asks
//! Redis every time and refuses from its answer.

use crate::{assert_no_allocations, report_allocations};
use benches::drive::{HostBaseline, KitDriver, NaiveDriver};
use benches::inputs::{
    Request, GLOBAL_CONFIG, GLOBAL_REQUEST, MAX_BENCH_COUNT, OVER_LIMIT_COUNT, OVER_LIMIT_REQUEST,
    PER_HEADER_CONFIG, PER_HEADER_REQUEST,
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

/// A Redis stand-in whose count is always over the limit.
fn over_limit(_path: &[u8]) -> i64 {
    OVER_LIMIT_COUNT
}

fn bench_redis_path(c: &mut Criterion) {
    let cases: [(&str, &str, Request<'static>); 2] = [
        ("global", GLOBAL_CONFIG, GLOBAL_REQUEST),
        ("per_header", PER_HEADER_CONFIG, PER_HEADER_REQUEST),
    ];
    let mut group = c.benchmark_group("limiter_request");
    for (name, config, request) in cases {
        let mut kit = KitDriver::new(config).unwrap();
        let mut redis = cycling_counter();
        assert_eq!(kit.request(&request, &mut redis), 200);
        assert_no_allocations(&format!("limiter_request/{name}/kit_filter"), || {
            black_box(kit.request(black_box(&request), &mut redis));
        });
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
        assert_no_allocations(
            &format!("limiter_request/{name}/host_only_baseline"),
            || {
                black_box(baseline.request(black_box(&request), &path, &mut redis));
            },
        );
        group.bench_function(format!("{name}/host_only_baseline"), |b| {
            b.iter(|| black_box(baseline.request(black_box(&request), &path, &mut redis)));
        });

        let mut naive = NaiveDriver::new(config).unwrap();
        let mut redis = cycling_counter();
        assert_eq!(naive.request(&request, &mut redis), 200);
        report_allocations(&format!("limiter_request/{name}/naive_alloc"), || {
            black_box(naive.request(black_box(&request), &mut redis));
        });
        group.bench_function(format!("{name}/naive_alloc"), |b| {
            b.iter(|| black_box(naive.request(black_box(&request), &mut redis)));
        });

        let (mut kit_redis, mut naive_redis) = (cycling_counter(), cycling_counter());
        paired_ratio(
            &format!("limiter_request/{name}"),
            || black_box(kit.request(black_box(&request), &mut kit_redis)),
            || black_box(naive.request(black_box(&request), &mut naive_redis)),
        );
    }
    group.finish();
}

/// Blocks of requests per side in [`paired_ratio`]: a few milliseconds each.
const PAIRED_BLOCK: u32 = 1_000;

/// Times `kit` and `naive` in alternating blocks of [`PAIRED_BLOCK`]
/// requests and prints the median of the per-round ratios naive/kit.
///
/// Criterion times each routine for seconds, one after the other; on this
/// shared VM the machine's speed drifts by tens of percent between two
/// such runs, which moves a ratio of two criterion rows as much as the
/// code does. Rounds a few milliseconds long see one machine for both
/// sides, and their median drops the rounds a hiccup hit.
fn paired_ratio<T>(name: &str, mut kit: impl FnMut() -> T, mut naive: impl FnMut() -> T) {
    let rounds = if crate::quick() { 31 } else { 201 };
    let time = |routine: &mut dyn FnMut() -> T| {
        let start = std::time::Instant::now();
        for _ in 0..PAIRED_BLOCK {
            black_box(routine());
        }
        start.elapsed().as_secs_f64() / f64::from(PAIRED_BLOCK)
    };
    let mut ratios = Vec::with_capacity(rounds);
    let (mut kit_total, mut naive_total) = (0.0, 0.0);
    for round in 0..rounds {
        // Either side goes first in turn, so neither always follows the other.
        let (k, n) = if round % 2 == 0 {
            let k = time(&mut kit);
            (k, time(&mut naive))
        } else {
            let n = time(&mut naive);
            (time(&mut kit), n)
        };
        kit_total += k;
        naive_total += n;
        ratios.push(n / k);
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[rounds / 2];
    eprintln!(
        "{name}: paired ratio naive/kit {median:.2}x (median of {rounds} rounds of {PAIRED_BLOCK} requests each; mean kit {:.1} ns, naive {:.1} ns per request)",
        kit_total / rounds as f64 * 1e9,
        naive_total / rounds as f64 * 1e9,
    );
}

fn bench_over_limit(c: &mut Criterion) {
    let request = OVER_LIMIT_REQUEST;
    let mut group = c.benchmark_group("limiter_request");

    let mut kit = KitDriver::new(GLOBAL_CONFIG).unwrap();
    // The first request learns from Redis that the key is over; the rest
    // of the window is refused from the cache, with no call.
    assert_eq!(kit.request(&request, &mut over_limit), 429);
    let calls = kit.host().calls_sent;
    assert_no_allocations("limiter_request/over_limit/kit_filter_local", || {
        assert_eq!(kit.request(black_box(&request), &mut over_limit), 429);
    });
    assert_eq!(kit.host().calls_sent, calls, "the kit asked Redis again");
    group.bench_function("over_limit/kit_filter_local", |b| {
        b.iter(|| black_box(kit.request(black_box(&request), &mut over_limit)));
    });
    assert_eq!(kit.host().calls_sent, calls, "the kit asked Redis again");

    let mut naive = NaiveDriver::new(GLOBAL_CONFIG).unwrap();
    assert_eq!(naive.request(&request, &mut over_limit), 429);
    let calls = naive.host().calls_sent;
    report_allocations("limiter_request/over_limit/naive_alloc_local", || {
        assert_eq!(naive.request(black_box(&request), &mut over_limit), 429);
    });
    assert_eq!(naive.host().calls_sent, calls, "the naive cache missed");
    group.bench_function("over_limit/naive_alloc_local", |b| {
        b.iter(|| black_box(naive.request(black_box(&request), &mut over_limit)));
    });

    let mut higress = NaiveDriver::without_over_limit_cache(GLOBAL_CONFIG).unwrap();
    let calls = higress.host().calls_sent;
    report_allocations(
        "limiter_request/over_limit/naive_higress_no_cache_redis_each_time",
        || {
            assert_eq!(higress.request(black_box(&request), &mut over_limit), 429);
        },
    );
    assert_eq!(
        higress.host().calls_sent,
        calls + 1 + crate::ALLOCATION_CHECK_RUNS,
        "every request asks Redis"
    );
    group.bench_function("over_limit/naive_higress_no_cache_redis_each_time", |b| {
        b.iter(|| black_box(higress.request(black_box(&request), &mut over_limit)));
    });
    group.finish();
}

criterion_group! {
    name = limiter;
    config = crate::settings();
    targets = bench_redis_path, bench_over_limit
}
