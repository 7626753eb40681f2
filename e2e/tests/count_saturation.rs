//! The kit's counting script (`kit::COUNT_SCRIPT`) near the top of Redis's
//! integers, run by a real Redis, directly and through webdis: charges of
//! 2^53 (the most the kit sends at once) pile up in one window until the
//! next would overflow 2^63 - 1; from then on the key stays as it is and
//! every count is 2^63 - 1, which the kit reads as a number, so a quota
//! used up that far keeps refusing. Counts that Lua's doubles round up to
//! 2^63 read as 2^63 - 1 too; counts past 2^31 - 1 still come as strings
//! of digits, which webdis passes whole.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kit::{Count, Reply, COUNT_SCRIPT};
use stack::http::percent_encode;
use stack::resp::Resp;
use stack::{get, Redis, Webdis};

const MAX_AMOUNT: &[u8] = b"9007199254740992";
const SATURATED: &[u8] = b"9223372036854775807";

/// Runs the counting script on `key` adding `amount` with a 60 s window,
/// and reads its result as the kit does.
fn count(redis: &Redis, key: &[u8], amount: &[u8]) -> i64 {
    let reply = redis
        .command(&[b"EVAL", COUNT_SCRIPT.as_bytes(), b"1", key, b"60", amount])
        .unwrap();
    let digits = match &reply {
        Resp::Integer(n) => return *n,
        Resp::Bulk(Some(digits)) => digits,
        other => panic!("not a count: {other:?}"),
    };
    let count = Count::of(&Reply::Bulk(digits)).unwrap_or_else(|| {
        panic!(
            "the kit cannot read {:?} as a count",
            String::from_utf8_lossy(digits)
        )
    });
    assert_eq!(count.repaired, None, "{key:?} was replaced");
    count.value
}

fn value(redis: &Redis, key: &[u8]) -> Vec<u8> {
    match redis.command(&[b"GET", key]).unwrap() {
        Resp::Bulk(Some(v)) => v,
        other => panic!("{other:?}"),
    }
}

#[test]
fn charges_of_2_pow_53_pile_up_to_2_pow_63_minus_1_and_stay() {
    let redis = Redis::start();
    let mut last = 0;
    let mut saturated = 0;
    for i in 1..=1_030_i64 {
        let n = count(&redis, b"pile", MAX_AMOUNT);
        assert!(n >= last, "charge {i}: the count fell from {last} to {n}");
        assert!(n > 1 << 53 || i == 1, "charge {i}: started over at {n}");
        if n == i64::MAX {
            saturated += 1;
        }
        last = n;
    }
    // 1,023 charges fit under 2^63; the rest would overflow.
    assert_eq!(saturated, 1_030 - 1_023);
    assert_eq!(
        value(&redis, b"pile"),
        (1_023_i64 << 53).to_string().as_bytes()
    );
    assert!(matches!(
        redis.command(&[b"TTL", b"pile"]).unwrap(),
        Resp::Integer(1..=60)
    ));
    // A read (amount 0) gives what the key holds: 1,023 * 2^53 is a
    // double that prints exactly.
    assert_eq!(count(&redis, b"pile", b"0"), 1_023_i64 << 53);
}

#[test]
fn a_key_at_2_pow_63_minus_1_is_left_as_it_is() {
    let redis = Redis::start();
    redis.command(&[b"SET", b"max", SATURATED]).unwrap();
    for amount in [&b"1"[..], b"0", MAX_AMOUNT] {
        assert_eq!(count(&redis, b"max", amount), i64::MAX);
    }
    assert_eq!(value(&redis, b"max"), SATURATED);
}

#[test]
fn counts_that_round_up_to_2_pow_63_read_as_2_pow_63_minus_1() {
    let redis = Redis::start();
    // Doubles just under 2^63 are 1,024 apart: 2^63 - 512 and above round
    // up to 2^63, which no i64 holds.
    redis
        .command(&[b"SET", b"up", b"9223372036854775500"])
        .unwrap();
    assert_eq!(count(&redis, b"up", b"0"), i64::MAX);
    assert_eq!(count(&redis, b"up", b"7"), i64::MAX);
    assert_eq!(value(&redis, b"up"), b"9223372036854775507");
    // Below that they round down, to a count the kit reads.
    redis
        .command(&[b"SET", b"down", b"9223372036854775000"])
        .unwrap();
    assert_eq!(count(&redis, b"down", b"0"), 9_223_372_036_854_774_784);
}

#[test]
fn through_webdis_a_saturated_count_is_a_string_of_its_digits() {
    let redis = Redis::start();
    let webdis = Webdis::start(redis.port());
    redis.command(&[b"SET", b"w", SATURATED]).unwrap();
    let segments: [&[u8]; 6] = [b"EVAL", COUNT_SCRIPT.as_bytes(), b"1", b"w", b"60", b"5"];
    let path: Vec<String> = segments.iter().map(|s| percent_encode(s)).collect();
    let answer = get(webdis.port(), &format!("/{}.raw", path.join("/")), &[]).unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, b"$19\r\n9223372036854775807\r\n");
    assert_eq!(value(&redis, b"w"), SATURATED);
    // A count past 2^31 - 1 that fits is its digits too, not webdis's
    // truncated integer.
    redis.command(&[b"SET", b"w2", b"3000000000"]).unwrap();
    let segments: [&[u8]; 6] = [b"EVAL", COUNT_SCRIPT.as_bytes(), b"1", b"w2", b"60", b"5"];
    let path: Vec<String> = segments.iter().map(|s| percent_encode(s)).collect();
    let answer = get(webdis.port(), &format!("/{}.raw", path.join("/")), &[]).unwrap();
    assert_eq!(answer.body, b"$10\r\n3000000005\r\n");
}
