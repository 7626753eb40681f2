//! `usage_scan`: the token usage of a 64 KiB LLM API response, read by
//! `token_quota`'s streaming scanner beside `serde_json` and simd-json.
//! The inputs and the alternatives are in `src/usage.rs`; the tests in
//! `tests/usage_same_work.rs` check that every one reports the same usage
//! on these inputs.
//!
//! - `json_64k`: a non-streamed OpenAI chat completion. The scanner reads
//!   it in one call; the alternatives parse it whole.
//! - `sse_64k_3_chunks`: the same API streamed, in three chunks cut inside
//!   events. The scanner is fed the three; the alternatives split events
//!   at blank lines and parse each event's `data`.
//!
//! simd-json parses in place, so it gets fresh copies of the bytes from
//! `iter_batched`'s setup. `LargeInput` makes a batch of one input at
//! these iteration counts, so each copy is in cache when it is parsed, as
//! the serde and scanner inputs are; the copies are dropped outside the
//! measurement. Trees built to read the usage are dropped inside it: they
//! are part of reading usage that way.

use benches::usage::{
    json_body, serde_json_value, serde_usage_only, serde_usage_only_utf8_checked,
    simd_json_usage_only, simd_json_value, sse_body, sse_chunks, sse_scanner, sse_serde_json_value,
    sse_serde_usage_only, sse_serde_usage_only_utf8_checked, sse_simd_json_usage_only,
    sse_simd_json_value,
};
use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use token_quota::scan_json;

fn bench_usage(c: &mut Criterion) {
    let mut group = c.benchmark_group("usage_scan");

    let body = json_body();
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("json_64k/token_quota_scan_json", |b| {
        b.iter(|| scan_json(black_box(&body)));
    });
    group.bench_function("json_64k/serde_json_value", |b| {
        b.iter(|| serde_json_value(black_box(&body)));
    });
    // Only `usage` deserialized, the rest skipped with serde's IgnoredAny,
    // which does not validate the UTF-8 of the strings it skips (the
    // others do): faster, but it takes a usage from a body the scanner
    // calls malformed.
    group.bench_function("json_64k/serde_usage_only_ignored_any", |b| {
        b.iter(|| serde_usage_only(black_box(&body)));
    });
    // The same after `str::from_utf8` of the whole body: as strict about
    // UTF-8 as the scanner.
    group.bench_function("json_64k/serde_usage_only_utf8_checked", |b| {
        b.iter(|| serde_usage_only_utf8_checked(black_box(&body)));
    });
    group.bench_function("json_64k/simd_json_borrowed_value", |b| {
        b.iter_batched(
            || body.clone(),
            |mut copy| (simd_json_value(black_box(&mut copy)), copy),
            BatchSize::LargeInput,
        );
    });
    group.bench_function("json_64k/simd_json_serde_usage_only", |b| {
        b.iter_batched(
            || body.clone(),
            |mut copy| (simd_json_usage_only(black_box(&mut copy)), copy),
            BatchSize::LargeInput,
        );
    });

    let body = sse_body();
    let chunks = sse_chunks(&body);
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("sse_64k_3_chunks/token_quota_sse_scanner", |b| {
        b.iter(|| sse_scanner(black_box(&chunks)));
    });
    // serde leaves its input as it is: one mutable copy serves every
    // iteration.
    let mut reused = chunks.clone();
    group.bench_function("sse_64k_3_chunks/serde_json_value_per_event", |b| {
        b.iter(|| sse_serde_json_value(black_box(&mut reused)));
    });
    group.bench_function("sse_64k_3_chunks/serde_usage_only_per_event", |b| {
        b.iter(|| sse_serde_usage_only(black_box(&mut reused)));
    });
    group.bench_function(
        "sse_64k_3_chunks/serde_usage_only_utf8_checked_per_event",
        |b| {
            b.iter(|| sse_serde_usage_only_utf8_checked(black_box(&mut reused)));
        },
    );
    let mut buffers = simd_json::Buffers::default();
    group.bench_function("sse_64k_3_chunks/simd_json_borrowed_value_per_event", |b| {
        b.iter_batched(
            || chunks.clone(),
            |mut copy| {
                (
                    sse_simd_json_value(black_box(&mut copy), &mut buffers),
                    copy,
                )
            },
            BatchSize::LargeInput,
        );
    });
    group.bench_function(
        "sse_64k_3_chunks/simd_json_serde_usage_only_per_event",
        |b| {
            b.iter_batched(
                || chunks.clone(),
                |mut copy| {
                    let scan = sse_simd_json_usage_only(black_box(&mut copy), &mut buffers);
                    (scan, copy)
                },
                BatchSize::LargeInput,
            );
        },
    );
    group.finish();
}

criterion_group! {
    name = usage;
    config = crate::settings();
    targets = bench_usage
}
