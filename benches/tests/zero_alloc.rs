//! The zero-allocation claims of the benchmarks, checked as tests (the
//! benches check them too before timing, but `cargo test` does not run
//! benches): the kit's encoders and decoder, the limiter's request paths
//! (Redis and local over-limit), rule matching with up to 100 rules and
//! the token quota's chat request, each warm and over the same inputs and
//! drivers as its benchmark.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use benches::drive::{KitDriver, TokenQuotaDriver};
use benches::inputs::{
    chat_stream_answer, chat_stream_chunks, rule_matching_authority, rule_matching_request,
    rules_config, script_sha1, Request, CHAT_BODY, GLOBAL_CONFIG, GLOBAL_REQUEST, KEY,
    MAX_BENCH_COUNT, OVER_LIMIT_COUNT, OVER_LIMIT_REQUEST, PER_HEADER_CONFIG, PER_HEADER_REQUEST,
    REPLIES, TOKEN_QUOTA_CONFIG,
};
use benches::ours;
use kit::fake::{allocations_during, CountingAllocator};
use kit::resp::{decode, CommandBuf, Form};
use std::hint::black_box;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Runs `routine` [`WARM_UP`] times to warm up (the kit's command buffers take turns
/// with the calls in flight, and each grows once), then 1,000 times
/// counting allocations.
/// Warm-up runs before counting.
const WARM_UP: u64 = 8;

fn assert_no_allocations(name: &str, mut routine: impl FnMut()) {
    for _ in 0..WARM_UP {
        routine();
    }
    let allocations = allocations_during(|| {
        for _ in 0..1_000 {
            routine();
        }
    });
    assert_eq!(allocations, 0, "{name}: allocations in 1,000 warm runs");
}

#[test]
fn the_counter_counts() {
    assert_eq!(allocations_during(|| drop(black_box(vec![1u8]))), 1);
}

#[test]
fn kit_encoders_do_not_allocate() {
    let prepared = ours::Prepared::new(&script_sha1(), &KEY);
    let mut cmd = CommandBuf::default();
    for form in [Form::Resp, Form::Path] {
        assert_no_allocations(&format!("evalsha {form:?}"), || {
            ours::evalsha(&mut cmd, form, black_box(&prepared), black_box(&KEY));
            black_box(cmd.bytes());
        });
        assert_no_allocations(&format!("incrby {form:?}"), || {
            ours::incrby(
                &mut cmd,
                form,
                black_box(&prepared),
                black_box(&KEY),
                black_box(1234),
            );
            black_box(cmd.bytes());
        });
    }
}

/// Scalar replies (integer, nil, bulk, error) and a 3-element array: the
/// decoder keeps up to 7 frames inline.
#[test]
fn kit_decoder_does_not_allocate_for_small_replies() {
    for (name, bytes) in REPLIES {
        assert_no_allocations(name, || {
            let decoded = decode(black_box(bytes)).unwrap();
            black_box(decoded.reply(bytes));
        });
    }
}

fn cycling_counter() -> impl FnMut(&[u8]) -> i64 {
    let mut n = 0;
    move |_path| {
        n = n % MAX_BENCH_COUNT + 1;
        n
    }
}

fn assert_requests_do_not_allocate(name: &str, config: &str, request: &Request<'_>) {
    let mut kit = KitDriver::new(config).unwrap();
    let mut redis = cycling_counter();
    let calls = kit.host().calls_sent;
    assert_no_allocations(name, || {
        assert_eq!(kit.request(request, &mut redis), 200);
    });
    assert_eq!(
        kit.host().calls_sent,
        calls + WARM_UP + 1_000,
        "{name}: one call each"
    );
}

#[test]
fn limiter_requests_on_the_redis_path_do_not_allocate() {
    assert_requests_do_not_allocate("global", GLOBAL_CONFIG, &GLOBAL_REQUEST);
    assert_requests_do_not_allocate("per_header", PER_HEADER_CONFIG, &PER_HEADER_REQUEST);
}

#[test]
fn limiter_requests_refused_locally_do_not_allocate() {
    let mut kit = KitDriver::new(GLOBAL_CONFIG).unwrap();
    let mut over = |_: &[u8]| OVER_LIMIT_COUNT;
    assert_eq!(kit.request(&OVER_LIMIT_REQUEST, &mut over), 429);
    let calls = kit.host().calls_sent;
    assert_no_allocations("over_limit", || {
        assert_eq!(kit.request(&OVER_LIMIT_REQUEST, &mut over), 429);
    });
    assert_eq!(kit.host().calls_sent, calls, "refused without Redis");
}

#[test]
fn rule_matching_does_not_allocate() {
    for rules in [1, 10, 100] {
        let config = rules_config(rules);
        for target in [Some(rules), None] {
            let authority = rule_matching_authority(target);
            let request = rule_matching_request(&authority);
            assert_requests_do_not_allocate(
                &format!("{rules} rules, {authority}"),
                &config,
                &request,
            );
        }
    }
}

#[test]
fn token_quota_chat_requests_do_not_allocate() {
    let answer = chat_stream_answer();
    let chunks = chat_stream_chunks(&answer);
    let mut driver = TokenQuotaDriver::new(TOKEN_QUOTA_CONFIG).unwrap();
    // The first requests size the fake host's recorded calls (it
    // alternates buffers between the read and the charge), and bring the
    // count Redis answers to six digits, where the run keeps it: a count
    // growing a digit grows the reply buffers once, which is warm-up.
    const FIRST: u64 = 600;
    for _ in 0..FIRST {
        assert_eq!(driver.request(CHAT_BODY, &chunks), 200);
    }
    assert_no_allocations("token quota chat request", || {
        assert_eq!(driver.request(CHAT_BODY, &chunks), 200);
    });
    assert_eq!(
        driver.redis_calls(),
        (FIRST + WARM_UP + 1_000, FIRST + WARM_UP + 1_000),
        "each read and charged"
    );
}
