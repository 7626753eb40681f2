//! The limiter's counter keys end to end: `limiter.wasm` in a real Envoy
//! 1.40, counting in a real Redis through webdis. Keys that cannot be
//! dodged (addresses with ports, brackets and other spellings; encoded
//! parameter names), counters that never mix (a `_rules_` entry without
//! its own `rule_name` and the global limit; a per-second and a per-minute
//! limit), and a counter key poisoned with a wrong type that recovers. The
//! counting scripts themselves are also run against Redis directly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use e2e::{room_in_minute_for, settled_counter, summary, unique_rule_name, LimiterStack};
use serde_json::{json, Value};
use stack::resp::Resp;
use stack::Redis;

fn redis_config() -> Value {
    json!({"webdis_cluster": e2e::WEBDIS_CLUSTER, "timeout": 500})
}

/// A rule limiting each first `x-forwarded-for` address to `per_minute`.
fn per_forwarded_ip(rule: &str, per_minute: i64) -> Value {
    json!({
        "rule_name": rule,
        "rule_items": [{
            "limit_by_per_ip": "from-header-x-forwarded-for",
            "limit_keys": [
                {"key": "0.0.0.0/0", "query_per_minute": per_minute},
                {"key": "::/0", "query_per_minute": per_minute},
            ],
        }],
        "redis": redis_config(),
    })
}

/// The statuses of `GET path` through the stack's Envoy, each with its
/// own headers.
fn statuses(stack: &LimiterStack, requests: &[(&str, &[(&str, &str)])]) -> Vec<u16> {
    requests
        .iter()
        .map(|(path, headers)| {
            stack::get(stack.envoy.port(), path, headers)
                .unwrap_or_else(|e| panic!("GET {path} failed: {e}"))
                .status
        })
        .collect()
}

#[test]
fn per_ip_limits_apply_behind_forwarded_addresses_with_ports_and_brackets() {
    let rule = unique_rule_name("xff-ports");
    let stack = LimiterStack::start(&per_forwarded_ip(&rule, 2));
    room_in_minute_for(8);
    for spelling in ["1.2.3.4:5678", "[2001:db8::1]:443"] {
        let headers: &[(&str, &str)] = &[("x-forwarded-for", spelling)];
        assert_eq!(
            statuses(&stack, &[("/", headers), ("/", headers), ("/", headers)]),
            [200, 200, 429],
            "three requests from {spelling}"
        );
    }
    // Another client is counted apart.
    assert_eq!(
        statuses(&stack, &[("/", &[("x-forwarded-for", "1.2.3.5:5678")])]),
        [200]
    );
}

#[test]
fn three_spellings_of_one_ipv6_address_share_one_counter() {
    let rule = unique_rule_name("v6-spellings");
    let stack = LimiterStack::start(&per_forwarded_ip(&rule, 2));
    room_in_minute_for(4);
    let requests: Vec<(&str, &[(&str, &str)])> = vec![
        ("/", &[("x-forwarded-for", "2001:DB8::1")]),
        ("/", &[("x-forwarded-for", "2001:db8:0:0::1")]),
        ("/", &[("x-forwarded-for", "2001:db8::1, 10.0.0.1")]),
    ];
    assert_eq!(statuses(&stack, &requests), [200, 200, 429]);
    let keys: Vec<String> = stack
        .redis
        .keys()
        .iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        keys[0].contains(":per_ip:from-header-x-forwarded-for:2001:db8::1}:"),
        "{keys:?}"
    );
}

#[test]
fn an_encoded_parameter_name_cannot_dodge_a_per_param_limit() {
    let rule = unique_rule_name("param-name");
    let stack = LimiterStack::start(&json!({
        "rule_name": rule,
        "rule_items": [{
            "limit_by_per_param": "key",
            "limit_keys": [{"key": "*", "query_per_minute": 2}],
        }],
        "redis": redis_config(),
    }));
    room_in_minute_for(4);
    assert_eq!(
        statuses(
            &stack,
            &[
                ("/?key=abc", &[]),
                ("/?k%65y=abc", &[]),
                ("/?k%65y=abc", &[]),
                ("/?other=1&%6B%65%79=abc", &[]),
            ]
        ),
        [200, 200, 429, 429]
    );
}

/// `GET /` on `127.0.0.1:port` with `Host: host`: the status. (The stack's
/// client always names `127.0.0.1`; a domain rule needs another host.)
fn get_as_host(port: u16, host: &str) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    status.unwrap_or_else(|| panic!("no HTTP/1.1 status in {text:?}"))
}

#[test]
fn a_rule_without_its_own_name_does_not_share_the_global_counter() {
    // Global 5 a minute; a domain rule, inheriting the rule_name, 2 a
    // minute. Each has its own counter.
    let rule = unique_rule_name("rule-apart");
    let stack = LimiterStack::start(&json!({
        "rule_name": rule,
        "global_threshold": {"query_per_minute": 5},
        "_rules_": [{"_match_domain_": ["rule.test"], "global_threshold": {"query_per_minute": 2}}],
        "redis": redis_config(),
    }));
    room_in_minute_for(12);
    let port = stack.envoy.port();
    let ruled: Vec<u16> = (0..2).map(|_| get_as_host(port, "rule.test")).collect();
    assert_eq!(ruled, [200, 200], "the rule's 2");
    let global: Vec<u16> = (0..6).map(|_| get_as_host(port, "other.test")).collect();
    assert_eq!(global, [200, 200, 200, 200, 200, 429], "the global 5");
    assert_eq!(get_as_host(port, "rule.test"), 429, "the rule's third");
    let mut keys: Vec<String> = stack
        .redis
        .keys()
        .iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    keys.sort();
    let window = e2e::current_minute();
    assert_eq!(
        keys,
        [
            format!("limiter:{{{rule}:5_per_60s:global}}:{window}"),
            format!("limiter:{{{rule}:_rules_[0]:2_per_60s:global}}:{window}"),
        ]
    );
}

/// Sleeps until `margin` after the next whole minute.
fn sleep_into_next_minute(margin: Duration) {
    let now = stack::unix_now();
    let left = 60.0 - now % 60.0;
    std::thread::sleep(Duration::from_secs_f64(left) + margin);
}

#[test]
fn a_per_second_and_a_per_minute_limit_do_not_collide() {
    // Two limits under one explicit rule_name: 3 a minute, and 100 a
    // second for one domain. At second :00 both windows start together;
    // the per-second count must not become the per-minute one (nor give
    // it its one-second expiry).
    let rule = unique_rule_name("windows");
    let stack = LimiterStack::start(&json!({
        "rule_name": rule,
        "global_threshold": {"query_per_minute": 3},
        "_rules_": [{"_match_domain_": ["second.test"], "rule_name": rule,
                     "global_threshold": {"query_per_second": 100}}],
        "redis": redis_config(),
    }));
    let port = stack.envoy.port();
    sleep_into_next_minute(Duration::from_millis(50));
    let started = Instant::now();
    let per_second: Vec<u16> = (0..2).map(|_| get_as_host(port, "second.test")).collect();
    let first: u16 = get_as_host(port, "minute.test");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "the first three requests took {:?}, past second :00; the machine is too slow",
        started.elapsed()
    );
    assert_eq!(per_second, [200, 200]);
    // Past the per-second window's expiry.
    std::thread::sleep(Duration::from_millis(2_100));
    let mut per_minute = vec![first];
    per_minute.extend((0..3).map(|_| get_as_host(port, "minute.test")));
    assert_eq!(per_minute, [200, 200, 200, 429], "3 a minute, not more");
}

/// The one key `redis` holds.
fn the_only_key(redis: &Redis) -> Vec<u8> {
    let keys = redis.keys();
    assert_eq!(keys.len(), 1, "{keys:?}");
    keys.into_iter().next().unwrap_or_default()
}

#[test]
fn a_counter_key_poisoned_with_a_wrong_type_recovers() {
    let rule = unique_rule_name("poisoned");
    let stack = LimiterStack::start(&json!({
        "rule_name": rule,
        "global_threshold": {"query_per_minute": 3},
        "show_limit_quota_header": true,
        // Without the repair a poisoned key would be a 503 for the rest
        // of the window.
        "failure_mode_deny": true,
        "redis": redis_config(),
    }));
    room_in_minute_for(10);
    let remaining = |r: &stack::Response| {
        assert_eq!(r.status, 200, "{}", summary(r));
        r.header_i64("x-ratelimit-remaining")
    };
    assert_eq!(remaining(&stack.get(&[])), Some(2));
    let key = the_only_key(&stack.redis);
    // A hash where the count was: WRONGTYPE.
    stack.redis.command(&[b"DEL", &key]).unwrap();
    stack
        .redis
        .command(&[b"HSET", &key, b"field", b"value"])
        .unwrap();
    assert_eq!(
        remaining(&stack.get(&[])),
        Some(2),
        "replaced with a count of 1"
    );
    // A string that is no integer: ERR value is not an integer.
    stack.redis.command(&[b"SET", &key, b"many"]).unwrap();
    assert_eq!(
        remaining(&stack.get(&[])),
        Some(2),
        "replaced with a count of 1"
    );
    let ttl = stack.redis.command(&[b"TTL", &key]).unwrap();
    assert!(
        matches!(ttl, Resp::Integer(1..=60)),
        "the replaced key expires with its window: {ttl:?}"
    );
    assert_eq!(remaining(&stack.get(&[])), Some(1));
    assert_eq!(remaining(&stack.get(&[])), Some(0));
    assert_eq!(stack.get(&[]).status, 429);
    assert_eq!(settled_counter(&stack.envoy, "limiter.keys_repaired"), 2);
    assert_eq!(settled_counter(&stack.envoy, "limiter.redis_errors"), 0);
    let log = stack.envoy.log();
    let key_text = String::from_utf8_lossy(&key);
    for error in [
        "WRONGTYPE Operation against a key holding the wrong kind of value",
        "ERR value is not an integer or out of range",
    ] {
        let line = format!("counter key {key_text} held a value Redis could not count ({error}); replaced it with a new count");
        assert_eq!(log.matches(&line).count(), 1, "{line}\nnot once in:\n{log}");
    }
    assert!(!log.contains("not valid RESP"), "{log}");
}

/// Runs `script` on `redis` with one key and `args`.
fn eval(redis: &Redis, script: &str, key: &[u8], args: &[&[u8]]) -> Resp {
    let mut command: Vec<&[u8]> = vec![b"EVAL", script.as_bytes(), b"1", key];
    command.extend_from_slice(args);
    redis.command(&command).unwrap()
}

/// Leaves `key` holding something `INCR` refuses.
fn poison(redis: &Redis, key: &[u8], how: usize) -> &'static str {
    redis.command(&[b"DEL", key]).unwrap();
    let (command, error): (&[&[u8]], _) = match how {
        0 => (&[b"HSET", key, b"f", b"v"], "WRONGTYPE"),
        1 => (&[b"RPUSH", key, b"a"], "WRONGTYPE"),
        2 => (&[b"SADD", key, b"a"], "WRONGTYPE"),
        3 => (&[b"SET", key, b"abc"], "ERR value is not an integer"),
        _ => (&[b"SET", key, b"1.5"], "ERR value is not an integer"),
    };
    redis.command(command).unwrap();
    error
}

#[test]
fn the_counting_scripts_replace_a_key_of_the_wrong_type() {
    let redis = Redis::start();
    let script = limiter::config::COUNT_SCRIPT;
    // A fresh key: counted, and expiring with its window.
    assert_eq!(eval(&redis, script, b"k", &[b"60"]), Resp::Integer(1));
    assert_eq!(eval(&redis, script, b"k", &[b"60"]), Resp::Integer(2));
    assert!(matches!(
        redis.command(&[b"TTL", b"k"]).unwrap(),
        Resp::Integer(1..=60)
    ));
    for how in 0..5 {
        let error = poison(&redis, b"k", how);
        let Resp::Array(Some(parts)) = eval(&redis, script, b"k", &[b"60"]) else {
            panic!("poison {how}: not the repair's array");
        };
        assert_eq!(parts[0], Resp::Integer(1), "poison {how}");
        let Resp::Bulk(Some(text)) = &parts[1] else {
            panic!("poison {how}: no error text")
        };
        assert!(
            String::from_utf8_lossy(text).starts_with(error),
            "poison {how}: {}",
            String::from_utf8_lossy(text)
        );
        assert_eq!(parts[2], Resp::Bulk(Some(b"k".to_vec())));
        assert!(matches!(
            redis.command(&[b"TTL", b"k"]).unwrap(),
            Resp::Integer(1..=60)
        ));
        assert_eq!(
            eval(&redis, script, b"k", &[b"60"]),
            Resp::Integer(2),
            "poison {how}"
        );
    }
    // A count that would overflow is no value to replace: the key stays
    // and its count is 2^63 - 1, as a string of digits.
    let max = b"9223372036854775807";
    redis.command(&[b"SET", b"k", max]).unwrap();
    let saturated = Resp::Bulk(Some(max.to_vec()));
    assert_eq!(eval(&redis, script, b"k", &[b"60"]), saturated);
    assert_eq!(
        redis.command(&[b"GET", b"k"]).unwrap(),
        Resp::Bulk(Some(max.to_vec()))
    );
}

#[test]
fn a_counter_key_at_the_top_of_redis_integers_keeps_refusing() {
    let rule = unique_rule_name("saturated");
    let stack = LimiterStack::start(&json!({
        "rule_name": rule,
        "global_threshold": {"query_per_minute": 3},
        "show_limit_quota_header": true,
        // Fail open: a count the limiter could not read would let the
        // request through.
        "failure_mode_deny": false,
        "redis": redis_config(),
    }));
    room_in_minute_for(10);
    let first = stack.get(&[]);
    assert_eq!(first.status, 200, "{}", summary(&first));
    let key = the_only_key(&stack.redis);
    let max = b"9223372036854775807";
    stack
        .redis
        .command(&[b"SET", &key, max, b"EX", b"60"])
        .unwrap();
    let refused = stack.get(&[]);
    assert_eq!(refused.status, 429, "{}", summary(&refused));
    assert_eq!(refused.header_i64("x-ratelimit-remaining"), Some(0));
    assert_eq!(
        stack.redis.command(&[b"GET", &key]).unwrap(),
        Resp::Bulk(Some(max.to_vec())),
        "left as it was"
    );
    assert_eq!(settled_counter(&stack.envoy, "limiter.keys_repaired"), 0);
    assert_eq!(settled_counter(&stack.envoy, "limiter.redis_errors"), 0);
}
