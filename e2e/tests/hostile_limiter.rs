//! Hostile traffic against the limiter, end to end: `limiter.wasm` in a
//! real Envoy 1.40, counting in a real Redis through webdis. Header values
//! of 8 KB and with every byte Envoy lets through, a per-header key too
//! long for a webdis URL, 100 headers, a client that hangs up mid-body, an
//! upstream that resets mid-answer. For each: the status is the one
//! written in the test, the Envoy log shows no panic or Wasm trap, Redis
//! holds exactly the counts of the requests that were counted, and the
//! next normal request is answered as usual.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::indexing_slicing)]

use std::time::Duration;

use e2e::hostile::{assert_no_trap, counters, raw_head, raw_request, send_then_hang_up, RawAnswer};
use e2e::slow_upstream::{Script, SlowUpstream, Step};
use e2e::{room_in_minute_for, unique_rule_name, LimiterStack, WEBDIS_CLUSTER};
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A limit of `per_minute` per `x-api-key` value.
fn per_key(rule: &str, per_minute: u64, failure_mode_deny: bool) -> Value {
    json!({
        "rule_name": rule,
        "rule_items": [{
            "limit_by_per_header": "x-api-key",
            "limit_keys": [{"key": "*", "query_per_minute": per_minute}],
        }],
        "failure_mode_deny": failure_mode_deny,
        "redis": {"webdis_cluster": WEBDIS_CLUSTER, "timeout": 1000},
    })
}

fn send(stack: &LimiterStack, headers: &[(&[u8], &[u8])]) -> RawAnswer {
    raw_request(stack.envoy.port(), &raw_head("GET", b"/", headers), TIMEOUT).unwrap()
}

/// A normal request of a new client is counted as usual, and nothing
/// trapped.
fn assert_still_works(stack: &LimiterStack, rule: &str, what: &str) {
    let before = counters(&stack.redis, rule).len();
    let answer = send(stack, &[(b"x-api-key", b"normal-client")]);
    assert_eq!(answer.status, Some(200), "the normal request after {what}");
    let now = counters(&stack.redis, rule);
    assert_eq!(
        now.len(),
        before + 1,
        "the normal request after {what} is counted: {now:?}"
    );
    assert!(
        now.iter()
            .any(|(k, n)| *n == 1 && contains(k, b":normal-client}:")),
        "{now:?}"
    );
    assert_no_trap(&stack.envoy.log(), what);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn every_header_byte_envoy_lets_through_is_counted_under_exactly_that_value() {
    let rule = unique_rule_name("hostile-bytes");
    let stack = LimiterStack::start(&per_key(&rule, 2, false));
    // Each byte alone, between two letters (so that trimming cannot take
    // it): Envoy refuses some with 400 before any filter runs; every other
    // one must reach Redis as that byte, in a counter of its own.
    let mut through = Vec::new();
    for byte in 1..=255u8 {
        if byte == b'\r' || byte == b'\n' {
            continue;
        }
        let value = [b'v', byte, b'v'];
        let answer = send(&stack, &[(b"x-api-key", &value)]);
        match answer.status {
            Some(200) => through.push(byte),
            Some(400) => {}
            other => panic!("byte {byte:#04x}: answered {other:?}"),
        }
    }
    let counts = counters(&stack.redis, &rule);
    assert_eq!(
        counts.len(),
        through.len(),
        "one counter per byte let through"
    );
    for &byte in &through {
        let needle = [b':', b'v', byte, b'v', b'}', b':'];
        assert!(
            counts.iter().any(|(k, n)| *n == 1 && contains(k, &needle)),
            "byte {byte:#04x} counted under another key: {:?}",
            counts
                .iter()
                .map(|(k, _)| String::from_utf8_lossy(k))
                .collect::<Vec<_>>()
        );
    }
    // Envoy lets the tab, the printable bytes and every byte from 0x80
    // through; it refuses the other control bytes (and DEL).
    let expected: Vec<u8> = (1..=255u8)
        .filter(|&b| b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80)
        .collect();
    assert_eq!(through, expected, "the bytes Envoy 1.40 lets through");

    // All of them in one value: one counter, and the limit holds on it.
    room_in_minute_for(5);
    let mut value = vec![b'<'];
    value.extend_from_slice(&through);
    value.push(b'>');
    let statuses: Vec<Option<u16>> = (0..3)
        .map(|_| send(&stack, &[(b"x-api-key", &value)]).status)
        .collect();
    assert_eq!(statuses, [Some(200), Some(200), Some(429)]);
    let mut needle = vec![b':'];
    needle.extend_from_slice(&value);
    needle.extend_from_slice(b"}:");
    let all = counters(&stack.redis, &rule);
    let hits: Vec<i64> = all
        .iter()
        .filter(|(k, _)| contains(k, &needle))
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(hits, [3], "one counter holds the three requests");
    assert_still_works(&stack, &rule, "every byte");
}

#[test]
fn an_8_kb_key_is_counted_and_a_key_too_long_for_webdis_follows_the_failure_mode() {
    for deny in [false, true] {
        let rule = unique_rule_name("hostile-long");
        let stack = LimiterStack::start(&per_key(&rule, 2, deny));
        room_in_minute_for(10);
        // 8 KB of a letter: a key and a webdis URL of about 8 KB.
        let letters = vec![b'a'; 8192];
        // 8 KB of a byte the URL carries percent-encoded: 24 KB of URL.
        let encoded = vec![0xffu8; 8192];
        for value in [&letters, &encoded] {
            assert_eq!(send(&stack, &[(b"x-api-key", value)]).status, Some(200));
        }
        // Keys as (long, count): printable even when they are 8 KB.
        let lengths = |stack: &LimiterStack| -> Vec<(bool, i64)> {
            let mut keys: Vec<(bool, i64)> = counters(&stack.redis, &rule)
                .iter()
                .map(|(k, n)| (k.len() > 8192, *n))
                .collect();
            keys.sort_unstable();
            keys
        };
        assert_eq!(lengths(&stack), [(true, 1), (true, 1)], "both counted");
        // 30 KB of it, 90 KB of URL: more than webdis takes. Not sent:
        // nothing counted, and the failure mode answers.
        let huge = vec![0xfeu8; 30_000];
        let want = if deny { Some(503) } else { Some(200) };
        assert_eq!(
            send(&stack, &[(b"x-api-key", &huge)]).status,
            want,
            "deny {deny}"
        );
        // At once, on the same webdis connection: counted as usual (a URL
        // that long, sent, makes webdis send a stray second `400`, which
        // Envoy would give to this call).
        assert_eq!(
            send(&stack, &[(b"x-api-key", b"right-after")]).status,
            Some(200)
        );
        assert_eq!(
            lengths(&stack),
            [(false, 1), (true, 1), (true, 1)],
            "deny {deny}"
        );
        assert_still_works(&stack, &rule, "long keys");
    }
}

#[test]
fn a_hundred_headers_are_read_and_the_limit_holds() {
    let rule = unique_rule_name("hostile-100");
    let stack = LimiterStack::start(&per_key(&rule, 2, false));
    room_in_minute_for(6);
    // host, connection and x-api-key, and 97 more: 100 header lines.
    let names: Vec<Vec<u8>> = (0..97)
        .map(|i| format!("x-filler-{i}").into_bytes())
        .collect();
    let mut headers: Vec<(&[u8], &[u8])> =
        names.iter().map(|n| (&n[..], &b"some value"[..])).collect();
    headers.push((b"x-api-key", b"many-headers"));
    let statuses: Vec<Option<u16>> = (0..3).map(|_| send(&stack, &headers).status).collect();
    assert_eq!(statuses, [Some(200), Some(200), Some(429)]);
    // Past Envoy's default of 100 headers: refused by Envoy (431) before
    // the filter, nothing counted.
    let more: Vec<Vec<u8>> = (97..120)
        .map(|i| format!("x-filler-{i}").into_bytes())
        .collect();
    headers.extend(more.iter().map(|n| (&n[..], &b"v"[..])));
    headers.push((b"x-api-key", b"too-many-headers"));
    assert_eq!(send(&stack, &headers).status, Some(431));
    let counts = counters(&stack.redis, &rule);
    assert_eq!(
        counts.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        [3],
        "{counts:?}"
    );
    assert_still_works(&stack, &rule, "100 headers");
}

#[test]
fn a_client_that_hangs_up_mid_body_is_counted_once_and_the_next_request_works() {
    let rule = unique_rule_name("hostile-hangup");
    let upstream = SlowUpstream::start();
    let stack = LimiterStack::start_with(&per_key(&rule, 5, false), |config| {
        config.cluster("slow", upstream.port()).route_to("slow")
    });
    room_in_minute_for(6);
    // Headers and half of a 100 KB body, then the client is gone. The
    // limiter counts a request at its headers: this one was counted.
    let mut first = raw_head(
        "POST",
        b"/upload",
        &[(b"x-api-key", b"hangs-up"), (b"content-length", b"100000")],
    );
    first.extend_from_slice(&vec![b'x'; 50_000]);
    let got = send_then_hang_up(stack.envoy.port(), &first, Duration::from_millis(500));
    assert!(
        got.is_empty(),
        "no answer before the body ended: {}",
        String::from_utf8_lossy(&got)
    );
    std::thread::sleep(Duration::from_millis(300));
    let counts = counters(&stack.redis, &rule);
    assert_eq!(
        counts.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        [1],
        "{counts:?}"
    );
    // The upstream never saw a whole request; the next one is routed.
    upstream.answer_next(Script {
        content_type: "text/plain",
        steps: vec![Step::Chunk(b"fine".to_vec()), Step::End],
    });
    let answer = send(&stack, &[(b"x-api-key", b"normal-client")]);
    assert_eq!(answer.status, Some(200));
    assert_no_trap(&stack.envoy.log(), "a client hanging up mid-body");
}

#[test]
fn an_upstream_that_resets_mid_answer_leaves_one_count_and_the_next_request_works() {
    let rule = unique_rule_name("hostile-reset");
    let upstream = SlowUpstream::start();
    let stack = LimiterStack::start_with(&per_key(&rule, 5, false), |config| {
        config.cluster("slow", upstream.port()).route_to("slow")
    });
    room_in_minute_for(6);
    upstream.answer_next(Script {
        content_type: "text/plain",
        steps: vec![
            Step::Chunk(vec![b'y'; 10_000]),
            Step::Pause(Duration::from_millis(100)),
            Step::Cut,
        ],
    });
    let answer = send(&stack, &[(b"x-api-key", b"reset")]);
    // The head went out before the reset: the client sees 200 and a body
    // cut short.
    assert_eq!(answer.status, Some(200));
    assert!(
        !contains(&answer.bytes, b"0\r\n\r\n"),
        "the body never ended"
    );
    upstream.answer_next(Script {
        content_type: "text/plain",
        steps: vec![Step::Chunk(b"fine".to_vec()), Step::End],
    });
    assert_eq!(send(&stack, &[(b"x-api-key", b"reset")]).status, Some(200));
    let counts = counters(&stack.redis, &rule);
    assert_eq!(
        counts.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        [2],
        "{counts:?}"
    );
    assert_no_trap(&stack.envoy.log(), "an upstream reset");
}
