//! `token_quota_request`: one chat completion through
//! `Filter<TokenQuota, FakeHost>` (`drive::TokenQuotaDriver`): request
//! headers and a streaming chat body (buffered, rewritten to ask for
//! usage), the quota read answered, event-stream response headers, a 10 KB
//! answer in three chunks with the usage in the last, the charge
//! (EVALSHA) answered. No alternative runs beside it: the number is the
//! plugin's cost per request, and the check before it that a warm request
//! allocates nothing.

use crate::assert_no_allocations;
use benches::drive::TokenQuotaDriver;
use benches::inputs::{
    chat_stream_answer, chat_stream_chunks, CHAT_BODY, CHAT_USAGE_TOTAL, TOKEN_QUOTA_CONFIG,
};
use criterion::{criterion_group, Criterion, Throughput};
use std::hint::black_box;

fn bench_token_quota(c: &mut Criterion) {
    let answer = chat_stream_answer();
    let chunks = chat_stream_chunks(&answer);
    let mut driver = TokenQuotaDriver::new(TOKEN_QUOTA_CONFIG).unwrap();
    assert_eq!(driver.request(CHAT_BODY, &chunks), 200);
    assert_eq!(driver.tokens_charged(), CHAT_USAGE_TOTAL as i64);
    // Bring the count Redis answers to six digits, where the check keeps
    // it: a count that grows a digit grows the reply buffers once, which
    // is warm-up, not a cost per request (as in tests/zero_alloc.rs).
    for _ in 0..600 {
        assert_eq!(driver.request(CHAT_BODY, &chunks), 200);
    }
    assert_no_allocations(
        "token_quota_request/chat_stream_3_chunks/kit_filter",
        || {
            black_box(driver.request(black_box(CHAT_BODY), black_box(&chunks)));
        },
    );

    let mut group = c.benchmark_group("token_quota_request");
    // Bytes through the plugin per request: the request body and the answer.
    group.throughput(Throughput::Bytes((CHAT_BODY.len() + answer.len()) as u64));
    let (charges_before, _) = driver.redis_calls();
    let mut requests = 0u64;
    group.bench_function("chat_stream_3_chunks/kit_filter", |b| {
        b.iter(|| {
            requests += 1;
            black_box(driver.request(black_box(CHAT_BODY), black_box(&chunks)))
        });
    });
    group.finish();
    // Every timed request was charged: none took a shorter path.
    let (charges, _) = driver.redis_calls();
    assert_eq!(
        charges - charges_before,
        requests,
        "a request went uncharged"
    );
}

criterion_group! {
    name = token_quota;
    config = crate::settings();
    targets = bench_token_quota
}
