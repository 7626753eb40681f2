//! The limiter on a Redis Cluster (three masters, three replicas) behind
//! Envoy's `redis_proxy`, each of two gateways reaching it through its own
//! webdis: per-key accuracy with the keys spread over every master, and
//! the same run with a master killed (SIGKILL) a third of the way in.
//!
//! Per-key counts need per-request answers, which wrk does not give, so
//! these scenarios drive the gateways with their own clients (one
//! connection per request, a fixed number of clients at once) and record
//! each answer's key, status, send time and latency.
//!
//! The per-key limit is set from a calibration run (no limit, same
//! clients) so that each key reaches it about 60% of the way through the
//! measured run: the kill then falls while counts are still climbing, and
//! an increment the dead master had acknowledged but not yet passed to its
//! replica lets one more request through later. What the run counts as
//! over the limit is exactly that loss; without a failover it must be 0.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stack::{Envoy, EnvoyConfig, RedisCluster, WasmPlugin, Webdis};

use crate::scenarios::{Kind, Scenario};
use crate::wrk::{Latency, WrkResult};
use crate::Bench;

/// Keys, spread over the slots (and so over the three masters).
const KEYS: usize = 48;
/// Clients sending at once, over both gateways.
const CLIENTS: usize = 16;
/// The limiter's Redis timeout (ms); short, so the failover's failures
/// answer fast.
const TIMEOUT_MS: u64 = 500;
/// How long after the kill every answer must be 200 or 429 again.
const RECOVERY_BOUND: Duration = Duration::from_secs(10);
/// Where in the measured run each key should reach its limit.
const LIMIT_AT: f64 = 0.6;

/// One answer.
#[derive(Debug, Clone, Copy)]
struct Answer {
    /// When the request was sent, from the start of the run.
    sent: Duration,
    took: Duration,
    key: usize,
    /// 0 when no answer came.
    status: u16,
}

fn config(rule: &str, per_minute: u64) -> Value {
    json!({
        "rule_name": rule,
        "rule_items": [{"limit_by_per_header": "x-api-key",
                        "limit_keys": [{"key": "*", "query_per_minute": per_minute}]}],
        "show_limit_quota_header": true,
        "failure_mode_deny": true,
        "redis": {"webdis_cluster": "webdis", "timeout": TIMEOUT_MS, "cluster": true},
    })
}

fn gateway(webdis: &Webdis, config: &Value) -> Envoy {
    let plugin = WasmPlugin::new(stack::wasm_path("limiter"), config.to_string());
    Envoy::start(
        EnvoyConfig::new()
            .wasm(plugin)
            .cluster("webdis", webdis.port())
            .log_level("warning"),
    )
}

/// [`CLIENTS`] clients send `GET /` with `x-api-key: <prefix><key>` for
/// `length`, key after key, each key alternating between the gateways;
/// `meanwhile` runs on this thread once the clients have started.
fn drive<T>(
    ports: &[u16; 2],
    prefix: &str,
    length: Duration,
    meanwhile: impl FnOnce(Instant) -> T,
) -> (Vec<Answer>, Duration, T) {
    let start = Instant::now();
    let answers = Mutex::new(Vec::new());
    let done = std::thread::scope(|scope| {
        for client in 0..CLIENTS {
            let answers = &answers;
            scope.spawn(move || {
                let mut mine = Vec::new();
                let mut i = client;
                while start.elapsed() < length {
                    let key = i % KEYS;
                    let port = if (i / KEYS) % 2 == 0 {
                        ports[0]
                    } else {
                        ports[1]
                    };
                    let value = format!("{prefix}{key}");
                    let sent = start.elapsed();
                    let status = stack::get_with_timeout(
                        port,
                        "/",
                        &[("x-api-key", &value)],
                        Duration::from_secs(5),
                    )
                    .map_or(0, |r| r.status);
                    mine.push(Answer {
                        sent,
                        took: start.elapsed() - sent,
                        key,
                        status,
                    });
                    i += CLIENTS;
                }
                answers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(mine);
            });
        }
        // The clients stop by themselves at `length`.
        meanwhile(start)
    });
    let elapsed = start.elapsed();
    (
        answers.into_inner().unwrap_or_else(|e| e.into_inner()),
        elapsed,
        done,
    )
}

/// The answers as a [`WrkResult`] (latency percentiles, statuses; a
/// request without an answer is a timeout).
fn summarize(answers: &[Answer], elapsed: Duration) -> WrkResult {
    let mut micros: Vec<u64> = answers
        .iter()
        .filter(|a| a.status != 0)
        .map(|a| a.took.as_micros() as u64)
        .collect();
    micros.sort_unstable();
    let at = |q: f64| {
        let i = ((micros.len() as f64 * q).ceil() as usize).saturating_sub(1);
        micros.get(i).copied().unwrap_or(0)
    };
    let mut statuses = BTreeMap::new();
    for a in answers.iter().filter(|a| a.status != 0) {
        *statuses.entry(a.status).or_default() += 1;
    }
    let mut result = WrkResult {
        requests: micros.len() as u64,
        seconds: elapsed.as_secs_f64(),
        requests_per_sec: micros.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        latency_us: Latency {
            min: micros.first().copied().unwrap_or(0),
            mean: micros.iter().sum::<u64>() as f64 / micros.len().max(1) as f64,
            max: micros.last().copied().unwrap_or(0),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p99_9: at(0.999),
        },
        statuses,
        ..WrkResult::default()
    };
    result.errors.timeout = answers.iter().filter(|a| a.status == 0).count() as u64;
    result
}

/// Answers 200 by key.
fn allowed_per_key(answers: &[Answer]) -> Vec<u64> {
    let mut allowed = vec![0u64; KEYS];
    for a in answers.iter().filter(|a| a.status == 200) {
        if let Some(n) = allowed.get_mut(a.key) {
            *n += 1;
        }
    }
    allowed
}

/// The accuracy run (`kill: false`) or the failover run (`kill: true`).
fn run(bench: &Bench, kill: bool) -> Scenario {
    let id = if kill {
        "cluster-failover"
    } else {
        "cluster-accuracy"
    };
    // The failover run needs room for the kill, about 3 s of failover
    // and the keys of the dead master still reaching their limit after it.
    let seconds = match (kill, bench.opts.smoke) {
        (true, true) => 12,
        (true, false) => bench.opts.seconds.clamp(20, 45),
        (false, true) => 3,
        (false, false) => bench.opts.seconds.clamp(5, 45),
    };
    let length = Duration::from_secs(seconds);
    println!(
        "[loadtest] == {id}: starting a Redis Cluster (3 masters, 3 replicas) and redis_proxy"
    );
    let mut cluster = RedisCluster::start();
    let webdis = [
        Webdis::start_with(cluster.proxy_port(), 2, 16),
        Webdis::start_with(cluster.proxy_port(), 2, 16),
    ];

    // Calibration: the same clients, a limit never reached.
    let probe_rule = bench.rule(&format!("{id}-calibrate"));
    let probes = [
        gateway(&webdis[0], &config(&probe_rule, 1 << 40)),
        gateway(&webdis[1], &config(&probe_rule, 1 << 40)),
    ];
    let calibration = Duration::from_secs(2);
    let (answers, elapsed, ()) = drive(
        &[probes[0].port(), probes[1].port()],
        "calibrate-",
        calibration,
        |_| (),
    );
    drop(probes);
    let per_key_rate = answers.len() as f64 / elapsed.as_secs_f64() / KEYS as f64;
    let limit = ((per_key_rate * seconds as f64 * LIMIT_AT) as u64).max(5);

    let rule = bench.rule(id);
    let config = config(&rule, limit);
    let gateways = [gateway(&webdis[0], &config), gateway(&webdis[1], &config)];
    let ports = [gateways[0].port(), gateways[1].port()];
    let crossslot_before = cluster.error_count("CROSSSLOT");
    let window =
        stack::wait_for_window_room(Duration::from_secs(60), Duration::from_secs(seconds + 3));
    let title = if kill {
        format!(
            "cluster failover: limiter on two gateways, {KEYS} keys over 3 masters, a master \
             killed a third of the way into {seconds} s, failure_mode_deny: true"
        )
    } else {
        format!(
            "cluster accuracy: limiter on two gateways, {KEYS} keys over 3 masters, {seconds} s"
        )
    };
    println!("[loadtest] == {title} (limit {limit} a minute per key)");
    let (answers, elapsed, failover) = drive(&ports, "key-", length, |start| {
        if !kill {
            return None;
        }
        std::thread::sleep(length / 3);
        let victim = cluster.master_ports().first().copied()?;
        let killed_at = start.elapsed();
        cluster.kill_node(victim);
        println!(
            "[loadtest]   {id}: killed master {victim} at {:.1} s",
            killed_at.as_secs_f64()
        );
        let healthy = cluster.wait_healthy(Duration::from_secs(30));
        Some((killed_at, healthy))
    });
    let end_window = (stack::unix_now() / 60.0).floor() as u64 * 60;
    let mut s = Scenario::new(
        if kill {
            "cluster-failover"
        } else {
            "cluster-accuracy"
        },
        &title,
        if kill { Kind::Faults } else { Kind::Accuracy },
        summarize(&answers, elapsed),
    );
    s.gateways = 2;
    s.connections = CLIENTS as u32;
    s.fact(
        "calibration",
        format!(
            "{:.0} req/s over both gateways ({per_key_rate:.1} per key): limit {limit} a minute per key",
            answers_rate(per_key_rate)
        ),
    );
    let allowed = allowed_per_key(&answers);
    let over: u64 = allowed.iter().map(|n| n.saturating_sub(limit)).sum();
    let short = allowed.iter().filter(|n| **n < limit).count();
    s.fact("requests allowed over the limit (all keys)", over);
    s.fact(
        "keys allowed more than their limit",
        allowed.iter().filter(|n| **n > limit).count(),
    );
    s.check(
        "the run stayed in one per-minute window",
        window == end_window,
        format!("started in window {window}, ended in {end_window}"),
    );
    s.check(
        "every key reached its limit",
        short == 0,
        format!("{short} of {KEYS} keys below {limit}"),
    );
    let crossslot = cluster.error_count("CROSSSLOT") - crossslot_before;
    s.check(
        "no CROSSSLOT from the cluster",
        crossslot == 0,
        format!("{crossslot} CROSSSLOT errors"),
    );
    match failover {
        None => {
            s.check_answers(&[200, 429]);
            s.check(
                "no key allowed over its limit without a failover",
                over == 0 && short == 0,
                format!("{over} over the limit; allowed per key: {allowed:?}"),
            );
        }
        Some((killed_at, healthy)) => {
            s.check_answers(&[200, 429, 503]);
            match healthy {
                Ok(took) => s.fact(
                    "cluster healthy again (every slot on a live master)",
                    format!("{:.1} s after the kill", took.as_secs_f64()),
                ),
                Err(e) => s.check("the cluster failed over", false, e.to_string()),
            }
            let refused: Vec<&Answer> = answers.iter().filter(|a| a.status == 503).collect();
            let last = refused.iter().map(|a| a.sent + a.took).max();
            let before = answers
                .iter()
                .filter(|a| a.sent + a.took < killed_at)
                .all(|a| a.status == 200 || a.status == 429);
            s.check(
                "before the kill: no 503",
                before,
                format!("kill at {:.1} s", killed_at.as_secs_f64()),
            );
            s.check(
                "during the failover: the failure mode answers 503",
                !refused.is_empty(),
                format!("{} answers 503", refused.len()),
            );
            let recovered = last.map(|t| t.saturating_sub(killed_at));
            s.check(
                "recovered by itself: no 503 later than the bound after the kill",
                recovered.is_some_and(|t| t < RECOVERY_BOUND),
                format!(
                    "last 503 {:.1} s after the kill (bound {} s)",
                    recovered.unwrap_or_default().as_secs_f64(),
                    RECOVERY_BOUND.as_secs()
                ),
            );
            s.fact(
                "last 503 after the kill",
                format!("{:.1} s", recovered.unwrap_or_default().as_secs_f64()),
            );
        }
    }
    s
}

/// Requests per second over both gateways from the per-key rate.
fn answers_rate(per_key_rate: f64) -> f64 {
    per_key_rate * KEYS as f64
}

pub fn accuracy(bench: &mut Bench) -> Scenario {
    run(bench, false)
}

pub fn failover(bench: &mut Bench) -> Scenario {
    run(bench, true)
}
