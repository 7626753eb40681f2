//! `usage_scan`: the token usage of an LLM API response, read by
//! `token_quota`'s streaming scanner beside `serde_json` (typed, borrowed)
//! and simd-json (borrowed value). The inputs and the alternatives are in
//! `src/usage.rs`; the tests in `tests/usage_same_work.rs` check that every
//! one reports the same usage on these inputs.
//!
//! - `json_500b`, `json_8k`, `json_64k`: non-streamed OpenAI chat
//!   completions. The scanner reads each in one call; the alternatives
//!   parse it whole.
//! - `sse_64k_16k_chunks`: the same API streamed, 64 KiB in four 16 KiB
//!   chunks cut inside events. The scanner is fed the four; the
//!   alternatives split events at blank lines and parse each event's
//!   `data`.
//!
//! Each input's throughput is its length in bytes, so criterion prints
//! GB/s beside the time.
//!
//! The alternatives, by name:
//! - `serde_json_typed_borrowed`: `serde_json::from_str` into a derived
//!   struct holding only `usage` (the rest skipped), after
//!   `str::from_utf8` of the input: stricter about UTF-8 than the
//!   scanner, which skims what it skips without decoding it.
//! - `serde_json_typed_borrowed_no_utf8_check`: the same from the bytes,
//!   without that check: serde's `IgnoredAny` does not validate the UTF-8
//!   of what it skips either, so this is the closest like-for-like row
//!   (it still checks number spelling and separators inside skipped
//!   containers, which the scanner's skim leaves out).
//! - `simd_json_borrowed_value`: simd-json's `BorrowedValue`, then
//!   `usage` read from it. simd-json parses in place, so it gets fresh
//!   copies of the bytes from `iter_batched`'s setup. `LargeInput` makes a
//!   batch of one input at these iteration counts, so each copy is in
//!   cache when it is parsed, as the serde and scanner inputs are; the
//!   copies are dropped outside the measurement. The tree is dropped
//!   inside it: it is part of reading usage that way.

use benches::usage::{
    json_bodies, serde_usage_only, serde_usage_only_utf8_checked, simd_json_value, sse_body,
    sse_chunks, sse_scanner, sse_serde_usage_only, sse_serde_usage_only_utf8_checked,
    sse_simd_json_value,
};
use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use token_quota::scan_json;

fn bench_usage(c: &mut Criterion) {
    let mut group = c.benchmark_group("usage_scan");

    for (size, body) in json_bodies() {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(format!("{size}/token_quota_scanner"), |b| {
            b.iter(|| scan_json(black_box(&body)));
        });
        group.bench_function(format!("{size}/serde_json_typed_borrowed"), |b| {
            b.iter(|| serde_usage_only_utf8_checked(black_box(&body)));
        });
        group.bench_function(
            format!("{size}/serde_json_typed_borrowed_no_utf8_check"),
            |b| {
                b.iter(|| serde_usage_only(black_box(&body)));
            },
        );
        group.bench_function(format!("{size}/simd_json_borrowed_value"), |b| {
            b.iter_batched(
                || body.clone(),
                |mut copy| (simd_json_value(black_box(&mut copy)), copy),
                BatchSize::LargeInput,
            );
        });
    }

    let body = sse_body();
    let chunks = sse_chunks(&body);
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("sse_64k_16k_chunks/token_quota_scanner", |b| {
        b.iter(|| sse_scanner(black_box(&chunks)));
    });
    // serde leaves its input as it is: one mutable copy serves every
    // iteration.
    let mut reused = chunks.clone();
    group.bench_function("sse_64k_16k_chunks/serde_json_typed_borrowed", |b| {
        b.iter(|| sse_serde_usage_only_utf8_checked(black_box(&mut reused)));
    });
    group.bench_function(
        "sse_64k_16k_chunks/serde_json_typed_borrowed_no_utf8_check",
        |b| {
            b.iter(|| sse_serde_usage_only(black_box(&mut reused)));
        },
    );
    let mut buffers = simd_json::Buffers::default();
    group.bench_function("sse_64k_16k_chunks/simd_json_borrowed_value", |b| {
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
    group.finish();
}

criterion_group! {
    name = usage;
    config = crate::settings();
    targets = bench_usage
}
