//! Shared increments in a real Envoy 1.40 with real Redis and webdis:
//! requests that arrive while their key's call is in flight go to Redis
//! together, keys that wait for a reply go in one call over several keys,
//! counts stay exact across gateways, and a call outlives the request
//! whose arrival sent it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use e2e::{calls_of, limiter_envoy, room_in_minute_for, summary, unique_rule_name, LimiterStack};
use serde_json::json;
use stack::resp::Resp;
use stack::{get_with_timeout, Envoy, Redis, Webdis};

#[test]
fn a_batch_is_answered_after_the_client_whose_request_sent_it_hung_up() {
    let rule = unique_rule_name("sender-gone");
    let config = json!({
        "rule_name": rule,
        "global_threshold": {"query_per_minute": 10},
        "show_limit_quota_header": true,
        "redis": {"webdis_cluster": e2e::WEBDIS_CLUSTER, "timeout": 8000},
    });
    let mut stack = LimiterStack::start(&config);
    let port = stack.envoy.port();
    let window = room_in_minute_for(50);
    // Redis learns the script, and counts 1.
    let first = stack.get(&[]);
    assert_eq!(
        first.header("x-ratelimit-remaining"),
        Some("9"),
        "{}",
        summary(&first)
    );
    let evalsha_before = calls_of(&stack.redis, "evalsha");

    // With Redis frozen, the sender's call stays in flight.
    stack.redis.freeze();
    let mut sender = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sender
        .write_all(b"GET / HTTP/1.1\r\nhost: sender\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    // Two more requests for the same key wait behind it.
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                get_with_timeout(port, "/", &[], Duration::from_secs(20)).unwrap()
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    // The sender's client hangs up before any reply.
    sender.shutdown(std::net::Shutdown::Both).unwrap();
    drop(sender);
    std::thread::sleep(Duration::from_millis(400));
    stack.redis.thaw();

    let answers: Vec<_> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
    let mut remaining: Vec<String> = answers
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{}", summary(r));
            r.header("x-ratelimit-remaining").unwrap().to_owned()
        })
        .collect();
    remaining.sort();
    // The sender was counted (2), then the two waiters (3 and 4).
    assert_eq!(remaining, ["6", "7"], "{}", stack.envoy.log());
    e2e::assert_same_window(window);
    let keys = stack.redis.keys();
    assert_eq!(keys.len(), 1, "one counter key");
    assert_eq!(
        stack.redis.command(&[b"GET", &keys[0]]).unwrap(),
        Resp::Bulk(Some(b"4".to_vec()))
    );
    // The sender's call, then one call for both waiters.
    assert_eq!(calls_of(&stack.redis, "evalsha") - evalsha_before, 2);
}

/// Many keys in flight at once on two gateways: with Redis frozen, the
/// shared calls are in flight on each gateway, and 20 keys × 4 requests
/// (two on each gateway) wait behind them. When Redis comes back, each gateway
/// sends its waiting keys in calls over several keys, and each key still
/// lets exactly its limit (3) through, with the counts of requests sent
/// alone, across both gateways.
#[test]
fn many_keys_waiting_together_count_exactly_across_two_gateways() {
    let rule = unique_rule_name("many-keys");
    let config = json!({
        "rule_name": rule,
        "rule_items": [{"limit_by_per_header": "x-api-key",
                        "limit_keys": [{"key": "*", "query_per_minute": 3}]}],
        "show_limit_quota_header": true,
        "redis": {"webdis_cluster": e2e::WEBDIS_CLUSTER, "timeout": 8000},
    });
    let mut redis = Redis::start();
    let webdis = [Webdis::start(redis.port()), Webdis::start(redis.port())];
    let envoys = [
        Envoy::start(limiter_envoy(webdis[0].port(), &config)),
        Envoy::start(limiter_envoy(webdis[1].port(), &config)),
    ];
    let ports = [envoys[0].port(), envoys[1].port()];
    let logs = || {
        format!(
            "Envoy A:\n{}\nEnvoy B:\n{}",
            envoys[0].log(),
            envoys[1].log()
        )
    };
    let window = room_in_minute_for(40);
    // Redis learns the script.
    for (i, port) in ports.iter().enumerate() {
        let key = format!("warm-{i}");
        let r = stack::get(*port, "/", &[("x-api-key", &key)]).unwrap();
        assert_eq!(r.status, 200, "{}", summary(&r));
    }
    let evalsha_before = calls_of(&redis, "evalsha");
    let eval_before = calls_of(&redis, "eval");

    redis.freeze();
    let send = |port: u16, key: String| {
        std::thread::spawn(move || {
            let r = get_with_timeout(port, "/", &[("x-api-key", &key)], Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("key {key}: no answer: {e}"));
            (key, r)
        })
    };
    // Two senders on each gateway: the first one's call is in flight, the
    // second waits as the keys below do once the shared calls are out
    // (kit::increments::CALLS_IN_FLIGHT).
    let mut senders = Vec::new();
    for (g, port) in ports.iter().enumerate() {
        for s in 0..2 {
            senders.push(send(*port, format!("sender-{g}-{s}")));
        }
    }
    std::thread::sleep(Duration::from_millis(400));
    let keys: Vec<String> = (0..20).map(|k| format!("client-{k:02}")).collect();
    let mut waiting = Vec::new();
    for key in &keys {
        for j in 0..4 {
            waiting.push(send(ports[j % 2], key.clone()));
        }
    }
    std::thread::sleep(Duration::from_millis(1500));
    redis.thaw();

    for sender in senders {
        let (key, r) = sender.join().unwrap();
        assert_eq!(r.status, 200, "{key}: {}\n{}", summary(&r), logs());
    }
    let mut by_key: std::collections::BTreeMap<String, Vec<stack::Response>> =
        std::collections::BTreeMap::new();
    for w in waiting {
        let (key, r) = w.join().unwrap();
        by_key.entry(key).or_default().push(r);
    }
    e2e::assert_same_window(window);
    for (key, answers) in &by_key {
        let mut allowed: Vec<String> = answers
            .iter()
            .filter(|r| r.status == 200)
            .map(|r| r.header("x-ratelimit-remaining").unwrap().to_owned())
            .collect();
        allowed.sort();
        let refused = answers.iter().filter(|r| r.status == 429).count();
        assert_eq!(
            (allowed.clone(), refused),
            (vec!["0".to_owned(), "1".to_owned(), "2".to_owned()], 1),
            "key {key}: {:?}\n{}",
            answers.iter().map(summary).collect::<Vec<_>>(),
            logs()
        );
    }
    // Every request reached Redis: 4 per key.
    for key in &keys {
        let stored: Vec<Vec<u8>> = redis
            .keys()
            .into_iter()
            .filter(|k| String::from_utf8_lossy(k).contains(&format!(":{key}}}")))
            .collect();
        assert_eq!(stored.len(), 1, "{key}: {stored:?}");
        assert_eq!(
            redis.command(&[b"GET", &stored[0]]).unwrap(),
            Resp::Bulk(Some(b"4".to_vec())),
            "{key}"
        );
    }
    // 84 requests of 44 keys: per gateway the senders that went at once,
    // then every key that waited (the other senders and its 20 keys) in
    // calls of at most KEYS_PER_CALL, where one call per key would be 22.
    use kit::increments::{CALLS_IN_FLIGHT, KEYS_PER_CALL};
    let at_once = 2.min(CALLS_IN_FLIGHT as u64);
    let waited = 2 - at_once + 20;
    let per_gateway = at_once + waited.div_ceil(KEYS_PER_CALL as u64);
    let calls = calls_of(&redis, "evalsha") - evalsha_before;
    assert_eq!(calls_of(&redis, "eval"), eval_before, "no NOSCRIPT retry");
    assert_eq!(
        calls,
        2 * per_gateway,
        "EVALSHA calls for 84 requests of 44 keys\n{}",
        logs()
    );
}

/// The counting script over several keys against a real Redis: each key
/// counted with its own amount and first-write expiry, a key of the wrong
/// type replaced in the same call with its own `[amount, error, key]`,
/// and one key alone answered as a bare count.
#[test]
fn the_counting_script_counts_several_keys_and_repairs_each() {
    let redis = Redis::start();
    let script = limiter::config::COUNT_SCRIPT.as_bytes();
    let eval = |keys: &[&[u8]], args: &[&[u8]]| {
        let count = keys.len().to_string();
        let mut command: Vec<&[u8]> = vec![b"EVAL", script, count.as_bytes()];
        command.extend_from_slice(keys);
        command.extend_from_slice(args);
        redis.command(&command).unwrap()
    };
    redis.command(&[b"HSET", b"b", b"f", b"v"]).unwrap();
    let reply = eval(
        &[b"a", b"b", b"c"],
        &[b"60", b"2", b"30", b"5", b"90", b"1"],
    );
    let Resp::Array(Some(items)) = reply else {
        panic!("not an array: {reply:?}");
    };
    assert_eq!(items.len(), 3);
    assert_eq!(items[0], Resp::Integer(2));
    assert_eq!(items[2], Resp::Integer(1));
    let Resp::Array(Some(repair)) = &items[1] else {
        panic!("no repair for b: {:?}", items[1]);
    };
    assert_eq!(repair[0], Resp::Integer(5));
    let Resp::Bulk(Some(error)) = &repair[1] else {
        panic!("no error text: {repair:?}");
    };
    assert!(
        error.starts_with(b"WRONGTYPE"),
        "{}",
        String::from_utf8_lossy(error)
    );
    assert_eq!(repair[2], Resp::Bulk(Some(b"b".to_vec())));
    let ttl = |key: &[u8]| match redis.command(&[b"TTL", key]).unwrap() {
        Resp::Integer(n) => n,
        other => panic!("TTL answered {other:?}"),
    };
    assert!((55..=60).contains(&ttl(b"a")));
    assert!((25..=30).contains(&ttl(b"b")));
    assert!((85..=90).contains(&ttl(b"c")));
    // Later writes keep the first expiry.
    let reply = eval(&[b"c", b"a"], &[b"5", b"1", b"5", b"1"]);
    assert_eq!(
        reply,
        Resp::Array(Some(vec![Resp::Integer(2), Resp::Integer(3)]))
    );
    assert!((85..=90).contains(&ttl(b"c")));
    assert_eq!(eval(&[b"a"], &[b"60", b"4"]), Resp::Integer(7));
}
