//! Both plugins against a real Redis Cluster (three masters, three
//! replicas) behind Envoy's `redis_proxy`, reached through webdis, in real
//! Envoy 1.40 gateways: each per-header key allowed exactly its limit
//! across two gateways with the keys spread over every master; calls over
//! several keys kept to one hash slot with `"cluster": true` (never
//! CROSSSLOT), and what `"cluster": false` does on a cluster (CROSSSLOT,
//! the failure mode answers); the token quota charging exactly; and a
//! master killed mid-run: the failure mode answers while the cluster fails
//! over, then every key is served again without anyone stepping in; and
//! the loss window of asynchronous replication: requests allowed over the
//! limit across a failover only when the master's last increments never
//! reached its replica.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use e2e::token_quota::token_quota_envoy;
use e2e::{assert_same_window, limiter_envoy, settled_counter, unique_rule_name, WEBDIS_CLUSTER};
use serde_json::{json, Value};
use stack::cluster::key_slot;
use stack::resp::Resp;
use stack::{
    get_with_timeout, request_with_timeout, Body, Envoy, EnvoyConfig, RedisCluster, Reply, Usage,
    Webdis,
};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// The limiter counting each `x-api-key` value `per_minute` times.
fn limiter_config(rule: &str, per_minute: u64, cluster: bool, deny: bool, timeout: u64) -> Value {
    json!({
        "rule_name": rule,
        "rule_items": [{"limit_by_per_header": "x-api-key",
                        "limit_keys": [{"key": "*", "query_per_minute": per_minute}]}],
        "show_limit_quota_header": true,
        "failure_mode_deny": deny,
        "redis": {"webdis_cluster": WEBDIS_CLUSTER, "timeout": timeout, "cluster": cluster},
    })
}

/// `GET /` with `x-api-key: key`; the status.
fn status_of(port: u16, key: &str) -> u16 {
    get_with_timeout(port, "/", &[("x-api-key", key)], REQUEST_TIMEOUT)
        .unwrap_or_else(|e| panic!("key {key}: no answer: {e}"))
        .status
}

/// Runs `jobs` on `threads` threads, each job once, and returns what each
/// returned, in no particular order.
fn run_parallel<J: Sync, R: Send>(
    jobs: &[J],
    threads: usize,
    run: impl Fn(&J) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let out = Mutex::new(Vec::with_capacity(jobs.len()));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                let r = run(job);
                out.lock().unwrap().push(r);
            });
        }
    });
    out.into_inner().unwrap()
}

/// The counter keys of `rule` on every live master, by master port.
fn counter_keys_by_master(cluster: &RedisCluster, rule: &str) -> BTreeMap<u16, Vec<Vec<u8>>> {
    let pattern = format!("*{rule}*");
    cluster
        .master_ports()
        .into_iter()
        .map(|port| {
            let keys = match cluster.node_command(port, &[b"KEYS", pattern.as_bytes()]) {
                Ok(reply @ Resp::Array(_)) => reply.bulk_items(),
                other => panic!("KEYS on {port}: {other:?}"),
            };
            (port, keys)
        })
        .collect()
}

/// The count stored under `key` (through the proxy).
fn count_of(cluster: &RedisCluster, key: &[u8]) -> i64 {
    match cluster.command(&[b"GET", key]) {
        Ok(Resp::Bulk(Some(v))) => String::from_utf8_lossy(&v).parse().unwrap(),
        other => panic!("GET {}: {other:?}", String::from_utf8_lossy(key)),
    }
}

/// 96 keys, 5 requests each, alternating between two gateways, 12 clients
/// at once: every key answers 200 exactly 3 times (its limit) and 429
/// twice; the counters lie on all three masters; no CROSSSLOT, no Redis
/// error.
#[test]
fn the_limiter_allows_each_key_its_limit_exactly_across_two_gateways() {
    const KEYS: usize = 96;
    const PER_KEY: usize = 5;
    const LIMIT: usize = 3;
    let cluster = RedisCluster::start();
    let rule = unique_rule_name("cluster-exact");
    let config = limiter_config(&rule, LIMIT as u64, true, false, 2000);
    let webdis = [
        Webdis::start(cluster.proxy_port()),
        Webdis::start(cluster.proxy_port()),
    ];
    let envoys = [
        Envoy::start(limiter_envoy(webdis[0].port(), &config)),
        Envoy::start(limiter_envoy(webdis[1].port(), &config)),
    ];
    let ports = [envoys[0].port(), envoys[1].port()];
    let crossslot_before = cluster.error_count("CROSSSLOT");
    let jobs: Vec<(usize, usize)> = (0..PER_KEY)
        .flat_map(|round| (0..KEYS).map(move |k| (k, (k + round) % 2)))
        .collect();
    let window = stack::wait_for_window_room(Duration::from_secs(60), Duration::from_secs(40));
    let answers = run_parallel(&jobs, 12, |&(key, gateway)| {
        (key, status_of(ports[gateway], &format!("key-{key}")))
    });
    assert_same_window(window);

    let mut per_key: BTreeMap<usize, BTreeMap<u16, usize>> = BTreeMap::new();
    for (key, status) in answers {
        *per_key.entry(key).or_default().entry(status).or_default() += 1;
    }
    let expected: BTreeMap<u16, usize> = [(200, LIMIT), (429, PER_KEY - LIMIT)].into();
    let wrong: Vec<_> = per_key.iter().filter(|(_, s)| **s != expected).collect();
    assert!(wrong.is_empty(), "keys off their limit: {wrong:?}");
    assert_eq!(per_key.len(), KEYS);

    let by_master = counter_keys_by_master(&cluster, &rule);
    let total: usize = by_master.values().map(Vec::len).sum();
    assert_eq!(total, KEYS, "one counter per key: {by_master:?}");
    assert_eq!(by_master.len(), 3);
    for (port, keys) in &by_master {
        assert!(
            keys.len() >= 10,
            "master {port} holds {} counters",
            keys.len()
        );
        for key in keys {
            // Counted requests: the limit, plus those Redis refused before the
            // over-limit cache of each gateway knew (at most one per gateway).
            let n = count_of(&cluster, key);
            assert!((LIMIT as i64 + 1..=PER_KEY as i64).contains(&n), "{n}");
        }
    }
    assert_eq!(cluster.error_count("CROSSSLOT"), crossslot_before);
    for envoy in &envoys {
        assert_eq!(settled_counter(envoy, "limiter.redis_errors"), 0);
    }
}

/// What a frozen proxy makes of 22 keys: see [`calls_while_the_proxy_is_frozen`].
struct FrozenRun {
    /// Status by `x-api-key` value.
    statuses: BTreeMap<String, u16>,
    /// CROSSSLOT errors the nodes answered meanwhile.
    crossslot: u64,
    /// EVALSHA and EVAL calls the nodes ran meanwhile.
    round_trips: u64,
    redis_errors: u64,
    /// Keys that share the slot of the first sender's key.
    same_slot: Vec<String>,
}

/// Sends one request with the value `probe` through the gateway at `port`
/// and reads its counter's key back from the cluster: the layout the keys
/// of other values are made from ([`key_of_value`]).
fn probe_key(cluster: &RedisCluster, port: u16, rule: &str) -> String {
    assert_eq!(status_of(port, "probe"), 200);
    let probe = cluster
        .keys()
        .into_iter()
        .find(|k| String::from_utf8_lossy(k).contains(rule))
        .expect("the probe's counter");
    let probe = String::from_utf8(probe).unwrap();
    assert_ne!(
        key_of_value(&probe, "x"),
        probe,
        "value not found in {probe}"
    );
    probe
}

/// The counter key the value `value` makes, by the layout of `probe`.
fn key_of_value(probe: &str, value: &str) -> String {
    probe.replace(":probe}", &format!(":{value}}}"))
}

/// With the proxy frozen, two requests put two calls in flight, then 8
/// keys of the first one's hash slot and 12 keys of 12 other slots arrive
/// and wait; when the proxy is thawed, the gateway sends what waited. The
/// values are chosen by the slot of the counter key they make, whose
/// layout is read back from the first request's counter.
/// `failure_mode_deny: true`, so a failed call answers 503.
fn calls_while_the_proxy_is_frozen(cluster_flag: bool) -> FrozenRun {
    let mut cluster = RedisCluster::start();
    let rule = unique_rule_name(if cluster_flag { "slots" } else { "crossslot" });
    let config = limiter_config(&rule, 5, cluster_flag, true, 8000);
    let webdis = Webdis::start(cluster.proxy_port());
    let envoy = Envoy::start(limiter_envoy(webdis.port(), &config));
    let port = envoy.port();
    let window = stack::wait_for_window_room(Duration::from_secs(60), Duration::from_secs(20));

    // Learn the key layout from one request, then pick values by slot.
    let probe = probe_key(&cluster, port, &rule);
    let key_for = |value: &str| key_of_value(&probe, value);
    let slot_of = |value: &str| key_slot(key_for(value).as_bytes());
    let senders = ["sender-0", "sender-1"];
    let slot0 = slot_of(senders[0]);
    let same_slot: Vec<String> = (0u32..)
        .map(|i| format!("same-{i}"))
        .filter(|v| slot_of(v) == slot0)
        .take(8)
        .collect();
    let mut taken = vec![slot0, slot_of(senders[1])];
    let spread: Vec<String> = (0u32..)
        .map(|i| format!("spread-{i}"))
        .filter(|v| {
            let slot = slot_of(v);
            let fresh = !taken.contains(&slot);
            if fresh {
                taken.push(slot);
            }
            fresh
        })
        .take(12)
        .collect();
    // Every master runs the script once, so no NOSCRIPT retry blurs the count.
    for master in cluster.master_ports() {
        let warm = (0u32..)
            .map(|i| format!("warm-{i}"))
            .find(|v| cluster.master_of(key_for(v).as_bytes()) == master)
            .unwrap();
        assert_eq!(status_of(port, &warm), 200);
    }
    let crossslot_before = cluster.error_count("CROSSSLOT");
    let trips_before = cluster.calls_of("evalsha") + cluster.calls_of("eval");

    let stat = |name: &str| envoy.stat(name).unwrap_or(0);
    // Waits on the gateway's own gauges, not a sleep: on a loaded machine
    // a request can take longer than any fixed pause to reach the plugin,
    // and a sender that arrives late shares a call instead of going alone.
    let wait_until = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "waited too long for {what}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let calls_before = stat("cluster.webdis.upstream_rq_total");
    let at_once = kit::increments::CALLS_IN_FLIGHT as u64;
    cluster.freeze_proxy();
    let statuses = std::thread::scope(|scope| {
        let send = |value: String| scope.spawn(move || (value.clone(), status_of(port, &value)));
        // The senders one at a time, each once its call is out (the
        // first CALLS_IN_FLIGHT go alone; the rest wait for a call).
        let mut running = Vec::new();
        for (i, sender) in senders.iter().enumerate() {
            running.push(send(sender.to_string()));
            let calls = calls_before + at_once.min(i as u64 + 1);
            wait_until(sender, &|| {
                stat("cluster.webdis.upstream_rq_total") >= calls
                    && stat("http.ingress.downstream_rq_active") > i as u64
            });
        }
        running.extend(same_slot.iter().chain(&spread).cloned().map(send));
        wait_until("every request at the plugin", &|| {
            stat("http.ingress.downstream_rq_active") >= 22
        });
        // The last arrivals' keys join the waiting table in the same
        // callback that counts them active; a moment more for the plugin.
        std::thread::sleep(Duration::from_millis(100));
        cluster.thaw_proxy();
        running
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect::<BTreeMap<_, _>>()
    });
    assert_same_window(window);
    let run = FrozenRun {
        statuses,
        crossslot: cluster.error_count("CROSSSLOT") - crossslot_before,
        round_trips: cluster.calls_of("evalsha") + cluster.calls_of("eval") - trips_before,
        redis_errors: settled_counter(&envoy, "limiter.redis_errors"),
        same_slot,
    };
    let mut tally: BTreeMap<u16, usize> = BTreeMap::new();
    for status in run.statuses.values() {
        *tally.entry(*status).or_default() += 1;
    }
    eprintln!(
        "cluster: {cluster_flag}: answers {tally:?}, {} script calls, {} CROSSSLOT, {} redis_errors",
        run.round_trips, run.crossslot, run.redis_errors
    );
    run
}

/// With `"cluster": true` the keys that waited go out in calls of one slot
/// each: all 22 answer 200, the nodes answer no CROSSSLOT, and the 8 keys
/// of one slot shared calls (fewer calls than requests).
#[test]
fn with_cluster_true_a_call_over_several_keys_keeps_to_one_slot() {
    let run = calls_while_the_proxy_is_frozen(true);
    assert_eq!(run.statuses.len(), 22);
    assert!(
        run.statuses.values().all(|s| *s == 200),
        "{:?}",
        run.statuses
    );
    assert_eq!(run.crossslot, 0);
    assert_eq!(run.redis_errors, 0);
    // The two senders, one call for the 8 keys of one slot, one call for
    // each of the 12 keys of slots of their own.
    assert_eq!(
        run.round_trips,
        2 + 1 + 12,
        "the {} keys of one slot should share one call",
        run.same_slot.len()
    );
}

/// With `"cluster": false` on a cluster, the keys that waited go out in
/// calls over several slots: the node answers CROSSSLOT, the whole call
/// fails, and the failure mode answers each of its requests (503 with
/// `failure_mode_deny: true`; fail-open would let them through uncounted).
/// The senders that went at once (`kit::increments::CALLS_IN_FLIGHT` of
/// them), alone in their calls, answer 200; a sender that waited goes in
/// the shared call with the other keys.
#[test]
fn with_cluster_false_a_call_over_several_slots_gets_crossslot_and_the_failure_mode() {
    let run = calls_while_the_proxy_is_frozen(false);
    assert_eq!(run.statuses.len(), 22);
    let at_once = kit::increments::CALLS_IN_FLIGHT as usize;
    for sender in 0..2usize.min(at_once) {
        assert_eq!(run.statuses[&format!("sender-{sender}")], 200);
    }
    let refused = run.statuses.values().filter(|s| **s == 503).count();
    assert!(
        run.statuses.values().all(|s| *s == 200 || *s == 503),
        "{:?}",
        run.statuses
    );
    // Each of the 12 keys of a slot of its own fails in any call it shares.
    assert!(refused >= 12, "{:?}", run.statuses);
    assert_eq!(run.redis_errors, refused as u64);
    assert!(run.crossslot >= 1, "no CROSSSLOT: {:?}", run.statuses);
    assert!(run.redis_errors >= run.crossslot, "{}", run.redis_errors);
}

/// The token quota (60 tokens a minute per `x-api-key`, 30 per answer) on
/// the cluster: 24 keys, three requests each, 8 clients at once: 200, 200,
/// 429 for each key, and 60 tokens charged to each key's counter.
#[test]
fn the_token_quota_charges_each_key_exactly() {
    const KEYS: usize = 24;
    let cluster = RedisCluster::start();
    let webdis = Webdis::start(cluster.proxy_port());
    let usage = Usage {
        prompt: 10,
        completion: 20,
        total: Some(30),
    };
    let body = String::from_utf8(Reply::openai(usage).body_bytes()).unwrap();
    let upstream = Envoy::start(
        EnvoyConfig::new()
            .direct_response(200, "application/json", &body)
            .log_level("warning"),
    );
    let rule = unique_rule_name("cluster-quota");
    let config = json!({
        "rule_name": rule,
        "rule_items": [{"limit_by_per_header": "x-api-key",
                        "limit_keys": [{"key": "*", "token_per_minute": 60}]}],
        "rejected_code": 429,
        "redis": {"webdis_cluster": WEBDIS_CLUSTER, "timeout": 2000, "cluster": true},
    });
    let envoy = Envoy::start(
        token_quota_envoy(webdis.port(), &config)
            .cluster("llm", upstream.port())
            .route_to("llm"),
    );
    let port = envoy.port();
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let crossslot_before = cluster.error_count("CROSSSLOT");
    let window = stack::wait_for_window_room(Duration::from_secs(60), Duration::from_secs(30));
    let keys: Vec<usize> = (0..KEYS).collect();
    let answers = run_parallel(&keys, 8, |&key| {
        let value = format!("key-{key}");
        let statuses: Vec<u16> = (0..3)
            .map(|_| {
                request_with_timeout(
                    port,
                    "POST",
                    "/v1/chat/completions",
                    &[("content-type", "application/json"), ("x-api-key", &value)],
                    Body::Fixed(chat.as_bytes()),
                    REQUEST_TIMEOUT,
                )
                .unwrap_or_else(|e| panic!("{value}: no answer: {e}"))
                .status
            })
            .collect();
        (key, statuses)
    });
    assert_same_window(window);
    for (key, statuses) in &answers {
        assert_eq!(statuses, &[200, 200, 429], "key-{key}");
    }
    let by_master = counter_keys_by_master(&cluster, &rule);
    assert_eq!(by_master.len(), 3);
    let counters: Vec<Vec<u8>> = by_master.into_values().flatten().collect();
    assert_eq!(counters.len(), KEYS, "one counter per key");
    for key in &counters {
        assert_eq!(
            count_of(&cluster, key),
            60,
            "{}",
            String::from_utf8_lossy(key)
        );
    }
    assert_eq!(cluster.error_count("CROSSSLOT"), crossslot_before);
    assert_eq!(settled_counter(&envoy, "token-quota.redis_errors"), 0);
}

/// How long after the master is killed the gateway must answer every key
/// with 200 again: the cluster's failover (node timeout 1 s, then an
/// election) and the proxy's next slot-map refresh (every second).
const RECOVERY_BOUND: Duration = Duration::from_secs(10);

/// Four clients send requests over 30 keys (limit far above what they
/// send, `failure_mode_deny: true`, timeout 500 ms) while a master is
/// killed with SIGKILL. Before: every answer 200. While the replica takes
/// over: the keys of the dead master answer 503 (the failure mode), none
/// hangs. Within [`RECOVERY_BOUND`] of the kill: 200 again for every key,
/// without a restart or any other help.
#[test]
fn a_killed_master_fails_over_and_the_limiter_recovers_by_itself() {
    let mut cluster = RedisCluster::start();
    let rule = unique_rule_name("failover");
    let config = limiter_config(&rule, 1_000_000, true, true, 500);
    let webdis = Webdis::start(cluster.proxy_port());
    let envoy = Envoy::start(limiter_envoy(webdis.port(), &config));
    let port = envoy.port();
    let keys: Vec<String> = (0..30).map(|k| format!("key-{k}")).collect();
    for key in &keys {
        assert_eq!(status_of(port, key), 200);
    }
    let victim = cluster.master_ports()[0];
    let start = Instant::now();
    let stop = AtomicBool::new(false);
    let answers: Mutex<Vec<(Duration, Duration, u16)>> = Mutex::new(Vec::new());
    let (killed_at, healthy_after) = std::thread::scope(|scope| {
        for client in 0..4 {
            let (keys, stop, answers) = (&keys, &stop, &answers);
            scope.spawn(move || {
                let mut i = client;
                while !stop.load(Ordering::Relaxed) {
                    let sent = start.elapsed();
                    let status = status_of(port, &keys[i % keys.len()]);
                    answers
                        .lock()
                        .unwrap()
                        .push((sent, start.elapsed() - sent, status));
                    i += 4;
                }
            });
        }
        std::thread::sleep(Duration::from_secs(1));
        let killed_at = start.elapsed();
        cluster.kill_node(victim);
        let healthy = cluster.wait_healthy(Duration::from_secs(30));
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::Relaxed);
        (killed_at, healthy)
    });
    let healthy_after = healthy_after.unwrap_or_else(|e| panic!("{e}"));
    let answers = answers.into_inner().unwrap();
    let before: Vec<_> = answers.iter().filter(|a| a.0 + a.1 < killed_at).collect();
    assert!(before.len() > 20 && before.iter().all(|a| a.2 == 200));
    assert!(answers.iter().all(|a| a.2 == 200 || a.2 == 503));
    let refused: Vec<_> = answers.iter().filter(|a| a.2 == 503).collect();
    assert!(!refused.is_empty(), "no request saw the failover");
    let slowest = answers.iter().map(|a| a.1).max().unwrap();
    assert!(
        slowest < Duration::from_secs(2),
        "an answer took {slowest:?}"
    );
    let last_refused = refused.iter().map(|a| a.0 + a.1).max().unwrap();
    eprintln!(
        "killed at {killed_at:?}; cluster healthy {healthy_after:?} later; last 503 {:?} after the kill; \
         {} answers, {} of them 503",
        last_refused - killed_at,
        answers.len(),
        refused.len()
    );
    assert!(
        last_refused - killed_at < RECOVERY_BOUND,
        "503 until {:?} after the kill",
        last_refused - killed_at
    );
    let after: Vec<_> = answers
        .iter()
        .filter(|a| a.0 > killed_at + RECOVERY_BOUND.min(healthy_after + Duration::from_secs(2)))
        .collect();
    assert!(!after.is_empty());
    for key in &keys {
        assert_eq!(status_of(port, key), 200, "{key} after the failover");
    }
}

/// The limit of each key in the replication-loss runs.
const LOSS_LIMIT: u64 = 10;
/// Requests per key before the cut (replicated), and between the cut and
/// the kill (acknowledged by the master, never replicated).
const BEFORE_CUT: u64 = 3;
const IN_WINDOW: u64 = 4;

/// What one replication-loss run saw.
struct LossRun {
    /// Answers 200 per key over the whole run, keys of the killed master.
    victim_allowed: Vec<u64>,
    /// The same for keys of the other masters.
    others_allowed: Vec<u64>,
    /// Bytes of replication stream the replica missed when the master died.
    lag_at_kill: u64,
}

/// `GET /` with `x-api-key: key` until it answers 200 or 429, waiting out
/// the failure mode's 503 while the proxy learns the new slot map; the
/// answer, or a panic after 10 s.
fn status_after_failover(port: u16, key: &str) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = status_of(port, key);
        if status != 503 || Instant::now() > deadline {
            assert!(status == 200 || status == 429, "{key}: {status}");
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One gateway, the limiter at [`LOSS_LIMIT`] a minute per key,
/// `failure_mode_deny: true`; 6 keys whose counters live on the master
/// about to die and 6 on the others. Each key gets [`BEFORE_CUT`]
/// requests; then (with `cut`) the victim's replication link is cut, or
/// (without) its replica is waited on until it holds everything; each key
/// gets [`IN_WINDOW`] more; the master is killed (SIGKILL), the cluster
/// fails over, and each key is asked until its first 429.
fn replication_loss_run(cut: bool) -> LossRun {
    let mut cluster = RedisCluster::start();
    let rule = unique_rule_name(if cut { "loss-cut" } else { "loss-kept" });
    let config = limiter_config(&rule, LOSS_LIMIT, true, true, 500);
    let webdis = Webdis::start(cluster.proxy_port());
    let envoy = Envoy::start(limiter_envoy(webdis.port(), &config));
    let port = envoy.port();
    let window = stack::wait_for_window_room(Duration::from_secs(60), Duration::from_secs(40));

    // Learn the counter key layout from one request, then pick values by
    // the master their counters live on.
    let probe = probe_key(&cluster, port, &rule);
    let key_for = |value: &str| key_of_value(&probe, value);
    let victim = cluster.master_of(probe.as_bytes());
    let (mut on_victim, mut elsewhere) = (Vec::new(), Vec::new());
    for value in (0u32..).map(|i| format!("key-{i}")) {
        if on_victim.len() == 6 && elsewhere.len() == 6 {
            break;
        }
        let list = if cluster.master_of(key_for(&value).as_bytes()) == victim {
            &mut on_victim
        } else {
            &mut elsewhere
        };
        if list.len() < 6 {
            list.push(value);
        }
    }
    let all: Vec<&String> = on_victim.iter().chain(&elsewhere).collect();
    let mut allowed: BTreeMap<&String, u64> = all.iter().map(|k| (*k, 0)).collect();
    let mut send = |key: &String, times: u64| {
        for _ in 0..times {
            assert_eq!(status_of(port, key), 200, "{key}");
            *allowed.get_mut(key).unwrap() += 1;
        }
    };
    for key in &all {
        send(key, BEFORE_CUT);
    }
    cluster
        .wait_replica_caught_up(victim, Duration::from_secs(5))
        .unwrap();
    let replica = cluster.replica_of(victim).unwrap();
    let the_cut = cut.then(|| cluster.cut_replication(victim).unwrap());
    for key in &all {
        send(key, IN_WINDOW);
    }
    if let Some(the_cut) = &the_cut {
        let behind = cluster.replication(replica).unwrap();
        assert!(!behind.link_up, "{behind:?}");
        assert_eq!(behind.offset, the_cut.replica_offset, "the replica kept up");
    } else {
        cluster
            .wait_replica_caught_up(victim, Duration::from_secs(5))
            .unwrap();
    }
    let master = cluster.replication(victim).unwrap();
    let behind = cluster.replication(replica).unwrap();
    let lag_at_kill = master.offset.saturating_sub(behind.offset);
    cluster.kill_node(victim);
    cluster.wait_healthy(Duration::from_secs(30)).unwrap();
    if let Some(the_cut) = &the_cut {
        cluster.restore_replication(the_cut).unwrap();
    }
    // Each key until its first refusal: what it is allowed after the
    // failover is what the promoted replica's count leaves.
    for key in &all {
        let mut asked = 0;
        while status_after_failover(port, key) == 200 {
            *allowed.get_mut(key).unwrap() += 1;
            asked += 1;
            assert!(asked <= 2 * LOSS_LIMIT, "{key} never refused");
        }
    }
    assert_same_window(window);
    let pick = |keys: &[String]| keys.iter().map(|k| allowed[k]).collect::<Vec<u64>>();
    let run = LossRun {
        victim_allowed: pick(&on_victim),
        others_allowed: pick(&elsewhere),
        lag_at_kill,
    };
    eprintln!(
        "replication loss, cut: {cut}: allowed per key (limit {LOSS_LIMIT}) on the killed master {:?}, \
         elsewhere {:?}; the replica was {} bytes behind at the kill",
        run.victim_allowed, run.others_allowed, run.lag_at_kill
    );
    run
}

/// With the replication link cut before the last [`IN_WINDOW`] requests of
/// each key, the killed master takes those increments with it: each of
/// its keys is allowed exactly that many requests over its limit (the
/// promoted replica counts from [`BEFORE_CUT`]); keys of the other
/// masters stay at their limit.
#[test]
fn a_failover_with_the_replication_link_cut_allows_the_lost_increments_over_the_limit() {
    let run = replication_loss_run(true);
    assert!(run.lag_at_kill > 0);
    assert_eq!(run.victim_allowed, vec![LOSS_LIMIT + IN_WINDOW; 6]);
    assert_eq!(run.others_allowed, vec![LOSS_LIMIT; 6]);
}

/// The same failover with the replica holding every increment: no key is
/// allowed over its limit.
#[test]
fn a_failover_with_the_replica_caught_up_allows_nothing_over_the_limit() {
    let run = replication_loss_run(false);
    assert_eq!(run.lag_at_kill, 0);
    assert_eq!(run.victim_allowed, vec![LOSS_LIMIT; 6]);
    assert_eq!(run.others_allowed, vec![LOSS_LIMIT; 6]);
}
