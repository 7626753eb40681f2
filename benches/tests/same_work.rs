//! Both sides of every comparison do the same work: the encoders write the
//! same bytes, the decoders read the same values, and the naive limiter
//! reaches the kit limiter's decisions, with the same Redis calls, headers
//! and counters, request after request.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use benches::drive::{KitDriver, NaiveDriver, Outcome};
use benches::inputs::{
    exact_rules_config, rule_matching_authority, rule_matching_request, rules_config, script_sha1,
    Request, BULK_REPLY, GLOBAL_CONFIG, GLOBAL_REQUEST, INTEGER_REPLY, KEY, LARGE_CONFIG,
    OVER_LIMIT_COUNT, OVER_LIMIT_REQUEST, PER_HEADER_CONFIG, PER_HEADER_REQUEST,
};
use benches::{naive, ours};
use bytes::BytesMut;
use kit::resp::{decode, CommandBuf, Form};
use redis_protocol::resp2::types::OwnedFrame;
use std::collections::HashMap;
use std::time::Duration;

#[test]
fn encoders_write_the_same_bytes() {
    let sha = script_sha1();
    let prepared = ours::Prepared::new(&sha, &KEY);
    let mut cmd = CommandBuf::default();
    ours::evalsha(&mut cmd, Form::Resp, &prepared, &KEY);
    let expected = format!(
        "*5\r\n$7\r\nEVALSHA\r\n$40\r\n{sha}\r\n$1\r\n1\r\n$52\r\nlimiter:{{api:header:x-api-key:k-3f9a2c71}}:1700000000\r\n$2\r\n60\r\n"
    );
    assert_eq!(cmd.bytes(), expected.as_bytes());
    let mut args = ours::Args::default();
    ours::evalsha_args(&mut args, sha.as_bytes(), &KEY);
    let mut wire = BytesMut::new();
    ours::encode_with_redis_protocol(&args, &mut wire);
    assert_eq!(&wire[..], expected.as_bytes());
    let owned = naive::evalsha_args(&sha, &KEY);
    assert_eq!(naive::resp_command(&owned), expected.as_bytes());
    assert_eq!(
        naive::owned_frame_command(owned.clone()),
        expected.as_bytes()
    );

    ours::evalsha(&mut cmd, Form::Path, &prepared, &KEY);
    let path = format!(
        "/EVALSHA/{sha}/1/limiter%3A%7Bapi%3Aheader%3Ax-api-key%3Ak-3f9a2c71%7D%3A1700000000/60.raw"
    );
    assert_eq!(cmd.bytes(), path.as_bytes());
    assert_eq!(naive::webdis_path(&owned), path);
}

#[test]
fn incrby_encoders_write_the_same_bytes() {
    let prepared = ours::Prepared::new(&script_sha1(), &KEY);
    let mut cmd = CommandBuf::default();
    ours::incrby(&mut cmd, Form::Resp, &prepared, &KEY, 1234);
    let expected = "*3\r\n$6\r\nINCRBY\r\n$52\r\nlimiter:{api:header:x-api-key:k-3f9a2c71}:1700000000\r\n$4\r\n1234\r\n";
    assert_eq!(cmd.bytes(), expected.as_bytes());
    let mut args = ours::Args::default();
    ours::incrby_args(&mut args, &KEY, 1234);
    let mut wire = BytesMut::new();
    ours::encode_with_redis_protocol(&args, &mut wire);
    assert_eq!(&wire[..], expected.as_bytes());
    let owned = naive::incrby_args(&KEY, 1234);
    assert_eq!(naive::resp_command(&owned), expected.as_bytes());
    assert_eq!(
        naive::owned_frame_command(owned.clone()),
        expected.as_bytes()
    );
    ours::incrby(&mut cmd, Form::Path, &prepared, &KEY, 1234);
    assert_eq!(cmd.bytes(), naive::webdis_path(&owned).as_bytes());
}

#[test]
fn webdis_encoders_escape_the_same_bytes() {
    let arg = "a/b%c d.e+\r\n\u{e9}{}:~-_Z9";
    let mut cmd = CommandBuf::default();
    cmd.begin(Form::Path);
    cmd.push(b"GET");
    cmd.push(arg.as_bytes());
    cmd.finish();
    let naive = naive::webdis_path(&["GET".to_string(), arg.to_string()]);
    assert_eq!(cmd.bytes(), naive.as_bytes());
}

#[test]
fn decoders_read_the_same_values() {
    let kit = decode(INTEGER_REPLY).unwrap();
    let (owned, used) = redis_protocol::resp2::decode::decode(INTEGER_REPLY)
        .unwrap()
        .unwrap();
    assert_eq!(used, INTEGER_REPLY.len());
    assert_eq!(owned, OwnedFrame::Integer(42));
    assert_eq!(kit.reply(INTEGER_REPLY).as_i64(), Some(42));

    let kit = decode(BULK_REPLY).unwrap();
    let (owned, _) = redis_protocol::resp2::decode::decode(BULK_REPLY)
        .unwrap()
        .unwrap();
    let OwnedFrame::BulkString(bytes) = owned else {
        panic!("bulk expected, got {owned:?}");
    };
    assert_eq!(bytes.len(), 40);
    assert_eq!(kit.reply(BULK_REPLY).as_bytes(), Some(&bytes[..]));
}

/// Emulated Redis: one counter per webdis path (the path holds the key,
/// which holds the window).
fn counting_redis() -> impl FnMut(&[u8]) -> i64 {
    let mut counts: HashMap<Vec<u8>, i64> = HashMap::new();
    move |path| {
        let n = counts.entry(path.to_vec()).or_insert(0);
        *n += 1;
        *n
    }
}

/// Redis answering a fixed script of counts, one per call.
fn scripted_redis(counts: &[i64]) -> impl FnMut(&[u8]) -> i64 + '_ {
    let mut next = counts.iter();
    move |_| *next.next().expect("more calls than scripted counts")
}

const COUNTERS: [&str; 4] = [
    "limiter.allowed",
    "limiter.limited",
    "limiter.limited_locally",
    "limiter.redis_errors",
];

/// Sends `requests` through both limiters with `step` between requests and
/// a Redis from `redis()` each; every outcome and the counters must agree.
/// Returns the outcomes.
fn same_decisions<F: FnMut(&[u8]) -> i64>(
    config: &str,
    requests: &[Request<'_>],
    step: Duration,
    mut redis: impl FnMut() -> F,
) -> Vec<Outcome> {
    let mut kit = KitDriver::new(config).expect("kit accepts the configuration");
    let mut naive = NaiveDriver::new(config).expect("naive accepts the configuration");
    let (mut kit_redis, mut naive_redis) = (redis(), redis());
    let mut outcomes = Vec::new();
    for (i, request) in requests.iter().enumerate() {
        let kit_status = kit.request(request, &mut kit_redis);
        let naive_status = naive.request(request, &mut naive_redis);
        let ours = Outcome::read(kit.host(), kit_status);
        let theirs = Outcome::read(naive.host(), naive_status);
        assert_eq!(ours, theirs, "request {i}: {request:?}");
        outcomes.push(ours);
        kit.host_mut().advance(step);
        naive.host_mut().advance(step);
    }
    for name in COUNTERS {
        assert_eq!(kit.counter(name), naive.host().counter(name), "{name}");
    }
    outcomes
}

/// `config` with `over_limit_recheck_ms` set at its top level.
fn with_recheck(config: &str, ms: u64) -> String {
    config.replacen('{', &format!("{{\"over_limit_recheck_ms\": {ms}, "), 1)
}

fn statuses(outcomes: &[Outcome]) -> Vec<u16> {
    outcomes.iter().map(|o| o.status).collect()
}

#[test]
fn same_decisions_on_a_global_count_sequence() {
    let counts = [1, 2, 99_999_999, 100_000_000, 100_000_001, 1, 100_000_005];
    // Five requests in one minute: the fifth goes over, the sixth and
    // seventh are rejected from the over-limit cache without Redis; the
    // eighth is in the next minute.
    let requests = [GLOBAL_REQUEST; 8];
    let kit = KitDriver::new(GLOBAL_CONFIG).unwrap();
    let into_minute = kit.host().now_nanos / 1_000_000_000 % 60;
    assert!(into_minute < 40, "the test needs 20 s left in the minute");
    // The cache answers for the whole window here; with the default
    // recheck (1 s, less than the step) both ask Redis again instead.
    let config = with_recheck(GLOBAL_CONFIG, 60_000);
    let outcomes = same_decisions(&config, &requests, Duration::from_secs(2), || {
        scripted_redis(&counts)
    });
    let rechecked = same_decisions(
        GLOBAL_CONFIG,
        &requests[..7],
        Duration::from_secs(2),
        || scripted_redis(&counts),
    );
    assert_eq!(statuses(&rechecked), [200, 200, 200, 200, 429, 200, 429]);
    assert!(rechecked.iter().all(|o| o.redis_path.is_some()));
    assert_eq!(
        statuses(&outcomes[..7]),
        [200, 200, 200, 200, 429, 429, 429]
    );
    assert!(outcomes[5].redis_path.is_none() && outcomes[6].redis_path.is_none());
    assert_eq!(
        outcomes[3].headers,
        [
            ("x-ratelimit-limit".to_string(), "100000000".to_string()),
            ("x-ratelimit-remaining".to_string(), "0".to_string())
        ]
    );
    let sha = script_sha1();
    assert!(
        outcomes[0]
            .redis_path
            .as_deref()
            .is_some_and(|p| p.starts_with(&format!(
                "/EVALSHA/{sha}/1/limiter%3A%7Bapi%3A100000000_per_60s%3Aglobal%7D%3A"
            ))),
        "{:?}",
        outcomes[0].redis_path
    );
}

#[test]
fn same_decisions_on_a_per_header_count_sequence() {
    let counts = [7, 100_000_000, 100_000_001, 3];
    let requests = [PER_HEADER_REQUEST; 4];
    let outcomes = same_decisions(
        &with_recheck(PER_HEADER_CONFIG, 60_000),
        &requests,
        Duration::from_secs(20),
        || scripted_redis(&counts),
    );
    assert_eq!(statuses(&outcomes), [200, 200, 429, 429]);
    assert!(outcomes[0].redis_path.as_deref().is_some_and(
        |p| p.contains(
            "limiter%3A%7Bpublic%3A100000000_per_60s%3Aper_header%3Ax-api-key%3Ak-3f9a2c71d4e5b6a7%7D%3A"
        )
    ));
}

const SMALL_LIMITS: &str = r#"{
  "rule_name": "top",
  "rule_items": [
    {"limit_by_header": "x-tenant", "limit_keys": [{"key": "gold", "query_per_second": 3}]},
    {"limit_by_per_header": "x-api-key", "limit_keys": [
      {"key": "vip", "query_per_second": 5},
      {"key": "*", "query_per_second": 2}
    ]},
    {"limit_by_per_header": "x-user-id", "limit_keys": [{"key": "*", "query_per_minute": 4}]}
  ],
  "show_limit_quota_header": true,
  "rejected_code": 430,
  "rejected_msg": "slow down",
  "redis": {"webdis_cluster": "webdis"},
  "_rules_": [
    {"_match_domain_": ["*.internal.example.com"], "rule_name": "internal", "show_limit_quota_header": false,
     "rule_items": [{"limit_by_per_header": "x-api-key", "limit_keys": [{"key": "*", "query_per_second": 1}]}]},
    {"_match_domain_": ["api.example.com"], "rule_name": "public", "redis_key_prefix": "rl"}
  ]
}"#;

#[test]
fn same_decisions_with_small_limits_rules_and_keys() {
    let requests = [
        Request {
            authority: "api.example.com",
            path: "/",
            headers: &[("x-api-key", b"alice")],
        },
        Request {
            authority: "api.example.com",
            path: "/",
            headers: &[("x-api-key", b"bob/with%slash {}")],
        },
        Request {
            authority: "API.example.com:8443",
            path: "/",
            headers: &[("x-tenant", b"gold"), ("x-api-key", b"carol")],
        },
        Request {
            authority: "api.example.com",
            path: "/",
            headers: &[("x-tenant", b"platinum"), ("x-user-id", b"u1")],
        },
        Request {
            authority: "api.example.com",
            path: "/",
            headers: &[("x-api-key", b"vip")],
        },
        Request {
            authority: "svc.internal.example.com:8443",
            path: "/",
            headers: &[("x-api-key", b"alice")],
        },
        Request {
            authority: "other.org",
            path: "/",
            headers: &[("x-api-key", b"alice")],
        },
        Request {
            authority: "api.example.com",
            path: "/",
            headers: &[("accept", b"*/*")],
        },
    ];
    let sequence: Vec<Request<'_>> = (0..400)
        .map(|i: usize| requests[(i * 7 + i / 3) % requests.len()])
        .collect();
    let outcomes = same_decisions(
        SMALL_LIMITS,
        &sequence,
        Duration::from_millis(25),
        counting_redis,
    );
    let count = |status: u16| outcomes.iter().filter(|o| o.status == status).count();
    assert!(count(200) > 50, "allowed: {}", count(200));
    assert!(count(430) > 50, "rejected: {}", count(430));
    assert_eq!(count(200) + count(430), outcomes.len());
    assert!(outcomes
        .iter()
        .any(|o| o.status == 430 && o.redis_path.is_none()));
    assert!(outcomes
        .iter()
        .any(|o| o.status == 200 && o.redis_path.is_none()));
}

#[test]
fn the_bench_requests_take_the_full_allowed_path() {
    for (config, request) in [
        (GLOBAL_CONFIG, GLOBAL_REQUEST),
        (PER_HEADER_CONFIG, PER_HEADER_REQUEST),
    ] {
        let counts: Vec<i64> = (1..=50).collect();
        let outcomes = same_decisions(config, &[request; 50], Duration::from_millis(10), || {
            scripted_redis(&counts)
        });
        for o in &outcomes {
            assert_eq!(o.status, 200);
            assert!(o.redis_path.is_some());
            assert_eq!(o.headers.len(), 2, "{o:?}");
        }
    }
}

#[test]
fn the_large_config_has_20_items_and_10_rules_and_both_sides_accept_it() {
    let doc: serde_json::Value = serde_json::from_str(LARGE_CONFIG).unwrap();
    assert_eq!(doc["rule_items"].as_array().unwrap().len(), 20);
    assert_eq!(doc["_rules_"].as_array().unwrap().len(), 10);
    let matchers = [
        "_match_route_",
        "_match_domain_",
        "_match_service_",
        "_match_route_prefix_",
    ];
    for matcher in matchers {
        assert!(
            doc["_rules_"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r.get(matcher).is_some()),
            "{matcher} is used"
        );
    }
    KitDriver::new(LARGE_CONFIG).expect("kit accepts the large configuration");
    NaiveDriver::new(LARGE_CONFIG).expect("naive accepts the large configuration");
}

#[test]
fn the_large_config_decides_alike_on_header_items() {
    // Both sides read header items the same way; the `public` rule
    // inherits the 20 global items, and the first present one applies.
    let requests = [
        Request {
            authority: "api.example.com",
            path: "/v1/items",
            headers: &[("x-tenant", b"gold")],
        },
        Request {
            authority: "www.api.example.com",
            path: "/v1/items",
            headers: &[("x-api-key", b"k-trial-42")],
        },
        Request {
            authority: "partners.example.com",
            path: "/v1/items",
            headers: &[("x-client-version", b"1.4.2")],
        },
    ];
    let counts: Vec<i64> = vec![1, 61, 11];
    let outcomes = same_decisions(LARGE_CONFIG, &requests, Duration::ZERO, || {
        scripted_redis(&counts)
    });
    assert_eq!(statuses(&outcomes), [200, 429, 503]);
    assert!(outcomes[0]
        .redis_path
        .as_deref()
        .is_some_and(|p| p.contains("edge-limiter%3A%7Bpublic%3A")
            && p.contains("_per_1s%3Aheader%3Ax-tenant%3Agold%7D")));
    assert!(outcomes[1]
        .redis_path
        .as_deref()
        .is_some_and(|p| p.contains("%7Bpublic%3A")
            && p.contains("%3Aper_header%3Ax-api-key%3Ak-trial-42%7D")));
    assert_eq!(outcomes[2].body, "Partner quota exceeded");
}

#[test]
fn rule_matching_configs_pick_the_last_rule_or_fall_to_the_global_one() {
    let shapes: [fn(usize) -> String; 2] = [rules_config, exact_rules_config];
    for (rules, config_of) in [1, 10, 100]
        .into_iter()
        .flat_map(|n| shapes.map(|s| (n, s)))
    {
        let config = config_of(rules);
        let doc: serde_json::Value = serde_json::from_str(&config).unwrap();
        assert_eq!(doc["_rules_"].as_array().unwrap().len(), rules);
        for (target, rule_name) in [
            (Some(rules), format!("tenant-{}", rules - 1)),
            (None, "default".to_string()),
        ] {
            let authority = rule_matching_authority(target);
            let requests = [rule_matching_request(&authority); 3];
            let counts = [1, 2, 3];
            let outcomes = same_decisions(&config, &requests, Duration::ZERO, || {
                scripted_redis(&counts)
            });
            assert_eq!(statuses(&outcomes), [200, 200, 200]);
            let expected = format!("%7B{rule_name}%3A");
            for o in &outcomes {
                assert!(
                    o.redis_path.as_deref().is_some_and(
                        |p| p.contains(&expected) && p.contains("%3Aper_header%3Ax-api-key%3A")
                    ),
                    "{rules} rules, {authority}: {:?}",
                    o.redis_path
                );
                assert_eq!(o.headers.len(), 2);
            }
        }
    }
}

#[test]
fn over_limit_requests_are_refused_alike_with_and_without_the_cache() {
    // The kit refuses from its cache after the first answer over the
    // limit; Higress's way asks Redis every time and refuses from the
    // answer. The client sees the same refusal.
    let mut kit = KitDriver::new(GLOBAL_CONFIG).unwrap();
    let mut higress = NaiveDriver::without_over_limit_cache(GLOBAL_CONFIG).unwrap();
    let mut over = |_: &[u8]| OVER_LIMIT_COUNT;
    for i in 0..5 {
        let kit_calls = kit.host().calls_sent;
        let higress_calls = higress.host().calls_sent;
        let status = kit.request(&OVER_LIMIT_REQUEST, &mut over);
        let ours = Outcome::read(kit.host(), status);
        let status = higress.request(&OVER_LIMIT_REQUEST, &mut over);
        let theirs = Outcome::read(higress.host(), status);
        assert_eq!(ours.status, 429);
        assert_eq!(
            (ours.status, &ours.headers, &ours.body),
            (theirs.status, &theirs.headers, &theirs.body)
        );
        assert_eq!(
            kit.host().calls_sent - kit_calls,
            u64::from(i == 0),
            "the kit asks Redis only the first time"
        );
        assert_eq!(higress.host().calls_sent - higress_calls, 1);
    }
    assert_eq!(kit.counter("limiter.limited_locally"), 4);
    assert_eq!(higress.host().counter("limiter.limited"), 5);
}
