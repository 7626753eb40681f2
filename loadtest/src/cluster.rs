//! The limiter on a Redis Cluster (three masters, three replicas) behind
//! Envoy's `redis_proxy`, each of two gateways reaching it through its own
//! webdis: per-key accuracy with the keys spread over every master, and
//! the same run with a master killed (SIGKILL) while the counts climb.
//!
//! Per-key counts need per-request answers, which wrk does not give, so
//! these scenarios drive the gateways with their own clients (one
//! connection per request, a fixed number of clients at once) and record
//! each answer's key, status, send time and latency.
//!
//! The runs follow the counts, not the clock, so a slow or busy machine
//! changes how long they take, not what they measure: the failover run
//! kills a master once a third of the keys' allowance has been answered
//! (counts still climbing: an increment the dead master had acknowledged
//! but not yet passed to its replica then lets one more request through
//! later), and both runs end once every key has been refused at least
//! once (every key reached its limit), or at the cap ([`CAP`],
//! [`SMOKE_CAP`]). What the run counts
//! as over the limit is exactly the increments lost; without a failover
//! it must be 0. [`loss`] makes the failover lose increments on purpose
//! and measures what that costs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stack::{Envoy, EnvoyConfig, RedisCluster, WasmPlugin, Webdis};

use crate::scenarios::{Kind, Scenario};
use crate::wrk::{Latency, WrkResult};
use crate::Bench;

mod loss;
pub use loss::{replication_loss, replication_loss_quota};

/// Keys, spread over the slots (and so over the three masters).
const KEYS: usize = 48;
/// Clients sending at once, over both gateways.
const CLIENTS: usize = 16;
/// The limiter's Redis timeout (ms); short, so the failover's failures
/// answer fast.
const TIMEOUT_MS: u64 = 500;
/// How long after the kill every answer must be 200 or 429 again.
const RECOVERY_BOUND: Duration = Duration::from_secs(10);
/// The longest a run may take; it must fit in one clock minute with the
/// start-up.
const CAP: Duration = Duration::from_secs(40);
/// The cap of a `--smoke` run (its keys allow 30 each).
const SMOKE_CAP: Duration = Duration::from_secs(15);
/// Answers after every key was refused once, so the over-limit cache's
/// rechecks and the last calls are in the run too.
const TAIL: Duration = Duration::from_secs(1);

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

/// What the clients have seen so far, for the thread that decides when to
/// kill and when to stop.
struct Progress {
    cap: Duration,
    allowed: AtomicU64,
    refused: Vec<AtomicBool>,
    stop: AtomicBool,
}

impl Progress {
    fn all_refused(&self) -> bool {
        self.refused.iter().all(|r| r.load(Ordering::Relaxed))
    }

    /// Waits until `done` or the cap from `start`; false if the cap came first.
    fn wait_for(&self, start: Instant, done: impl Fn(&Progress) -> bool) -> bool {
        while start.elapsed() < self.cap {
            if done(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
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

/// [`CLIENTS`] clients send `GET /` with `x-api-key: key-<n>`, key after
/// key, each key alternating between the gateways, until `decide` (run on
/// this thread with the start time and the progress) returns, or `cap`.
fn drive<T>(
    cap: Duration,
    ports: &[u16; 2],
    decide: impl FnOnce(Instant, &Progress) -> T,
) -> (Vec<Answer>, Duration, T) {
    drive_with(cap, ports, get, decide)
}

/// `GET /` with `x-api-key: value`; its status, 0 without an answer.
fn get(port: u16, value: &str) -> u16 {
    stack::get_with_timeout(port, "/", &[("x-api-key", value)], Duration::from_secs(5))
        .map_or(0, |r| r.status)
}

/// [`drive`] with `send(port, value)` making each request.
fn drive_with<T>(
    cap: Duration,
    ports: &[u16; 2],
    send: impl Fn(u16, &str) -> u16 + Sync,
    decide: impl FnOnce(Instant, &Progress) -> T,
) -> (Vec<Answer>, Duration, T) {
    let start = Instant::now();
    let progress = Progress {
        cap,
        allowed: AtomicU64::new(0),
        refused: (0..KEYS).map(|_| AtomicBool::new(false)).collect(),
        stop: AtomicBool::new(false),
    };
    let answers = Mutex::new(Vec::new());
    let decided = std::thread::scope(|scope| {
        for client in 0..CLIENTS {
            let (answers, progress, send) = (&answers, &progress, &send);
            scope.spawn(move || {
                let mut mine = Vec::new();
                let mut i = client;
                while !progress.stop.load(Ordering::Relaxed) && start.elapsed() < cap {
                    let key = i % KEYS;
                    let port = if (i / KEYS) % 2 == 0 {
                        ports[0]
                    } else {
                        ports[1]
                    };
                    let value = format!("key-{key}");
                    let sent = start.elapsed();
                    let status = send(port, &value);
                    match status {
                        200 => {
                            progress.allowed.fetch_add(1, Ordering::Relaxed);
                        }
                        429 => {
                            if let Some(flag) = progress.refused.get(key) {
                                flag.store(true, Ordering::Relaxed);
                            }
                        }
                        _ => {}
                    }
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
        let decided = decide(start, &progress);
        progress.stop.store(true, Ordering::Relaxed);
        decided
    });
    let elapsed = start.elapsed();
    (
        answers.into_inner().unwrap_or_else(|e| e.into_inner()),
        elapsed,
        decided,
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

/// Starts a Redis Cluster (3 masters, 3 replicas) with its redis_proxy and
/// two webdis in front of the proxy, one for each gateway of scenario `id`.
fn start_cluster(id: &str) -> (RedisCluster, [Webdis; 2]) {
    println!(
        "[loadtest] == {id}: starting a Redis Cluster (3 masters, 3 replicas) and redis_proxy"
    );
    let cluster = RedisCluster::start();
    let webdis = [
        Webdis::start_with(cluster.proxy_port(), 2, 16),
        Webdis::start_with(cluster.proxy_port(), 2, 16),
    ];
    (cluster, webdis)
}

/// Waits until the clock minute has room for a run capped at `cap` (and
/// its start-up); the minute's start (Unix seconds), as in
/// [`stack::wait_for_window_room`].
fn wait_for_window(cap: Duration) -> u64 {
    stack::wait_for_window_room(Duration::from_secs(60), cap + Duration::from_secs(3))
}

/// The scenario of a run on two gateways with [`CLIENTS`] clients that went
/// on until every key was refused once (then [`TAIL`] more, at most `cap`):
/// its summary, its length, and the check that it ended in the per-minute
/// `window` it started in.
fn scenario_of_run(
    id: &'static str,
    title: &str,
    kind: Kind,
    answers: &[Answer],
    elapsed: Duration,
    cap: Duration,
    window: u64,
) -> Scenario {
    let end_window = (stack::unix_now() / 60.0).floor() as u64 * 60;
    let mut s = Scenario::new(id, title, kind, summarize(answers, elapsed));
    s.gateways = 2;
    s.connections = CLIENTS as u32;
    s.fact(
        "run length",
        format!(
            "{:.1} s (until every key was refused once, then {} s more; cap {} s)",
            elapsed.as_secs_f64(),
            TAIL.as_secs(),
            cap.as_secs()
        ),
    );
    s.check(
        "the run stayed in one per-minute window",
        window == end_window,
        format!("started in window {window}, ended in {end_window}"),
    );
    s
}

/// The accuracy run (`kill: false`) or the failover run (`kill: true`).
fn run(bench: &Bench, kill: bool) -> Scenario {
    let id = if kill {
        "cluster-failover"
    } else {
        "cluster-accuracy"
    };
    // Per key and minute; the smoke run's keys reach it within seconds.
    let limit: u64 = if bench.opts.smoke { 30 } else { 150 };
    let (mut cluster, webdis) = start_cluster(id);
    let rule = bench.rule(id);
    let config = config(&rule, limit);
    let gateways = [gateway(&webdis[0], &config), gateway(&webdis[1], &config)];
    let ports = [gateways[0].port(), gateways[1].port()];
    let crossslot_before = cluster.error_count("CROSSSLOT");
    let cap = if bench.opts.smoke { SMOKE_CAP } else { CAP };
    let window = wait_for_window(cap);
    let title = if kill {
        format!(
            "cluster failover: limiter on two gateways, {KEYS} keys over 3 masters ({limit}/min each), \
             a master killed while the counts climb, failure_mode_deny: true"
        )
    } else {
        format!("cluster accuracy: limiter on two gateways, {KEYS} keys over 3 masters ({limit}/min each)")
    };
    println!("[loadtest] == {title}");
    let allowance = KEYS as u64 * limit;
    let (answers, elapsed, (reached, failover)) = drive(cap, &ports, |start, progress| {
        let failover = if kill {
            progress.wait_for(start, |p| {
                p.allowed.load(Ordering::Relaxed) >= allowance / 3
            });
            let victim = cluster.master_ports().first().copied();
            victim.map(|victim| {
                let killed_at = start.elapsed();
                cluster.kill_node(victim);
                println!(
                    "[loadtest]   {id}: killed master {victim} at {:.1} s, {} of {allowance} allowed",
                    killed_at.as_secs_f64(),
                    progress.allowed.load(Ordering::Relaxed)
                );
                (killed_at, cluster.wait_healthy(Duration::from_secs(30)))
            })
        } else {
            None
        };
        let reached = progress.wait_for(start, Progress::all_refused);
        std::thread::sleep(TAIL);
        (reached, failover)
    });
    let kind = if kill { Kind::Faults } else { Kind::Accuracy };
    let mut s = scenario_of_run(id, &title, kind, &answers, elapsed, cap, window);
    let allowed = allowed_per_key(&answers);
    let over: u64 = allowed.iter().map(|n| n.saturating_sub(limit)).sum();
    let short = allowed.iter().filter(|n| **n < limit).count();
    s.fact("requests allowed over the limit (all keys)", over);
    s.fact(
        "keys allowed more than their limit",
        allowed.iter().filter(|n| **n > limit).count(),
    );
    s.check(
        "every key reached its limit",
        reached && short == 0,
        format!(
            "{short} of {KEYS} keys allowed fewer than {limit}; every key refused once: {reached}"
        ),
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

pub fn accuracy(bench: &mut Bench) -> Scenario {
    run(bench, false)
}

pub fn failover(bench: &mut Bench) -> Scenario {
    run(bench, true)
}

/// Tokens each answer of the JSON upstream reports.
const TOKENS_PER_ANSWER: u64 = 30;
/// A chat request the JSON upstream answers.
const CHAT: &str =
    r#"{"model":"qwen-max","messages":[{"role":"user","content":"Tell me a story."}]}"#;

/// The token quota on the cluster under load: two gateways in front of the
/// JSON upstream, 48 keys with a quota of 40 answers' tokens a minute
/// each (10 with `--smoke`), until every key has been refused once. Checks
/// that each key's counter holds exactly the tokens of the answers it let
/// through (the quota is read at the request and charged at the end, so
/// requests in flight when it runs out may pass it; what must be exact is
/// the charge), and no CROSSSLOT.
pub fn token_quota(bench: &mut Bench) -> Scenario {
    let id = "cluster-token-quota";
    let answers_each: u64 = if bench.opts.smoke { 10 } else { 40 };
    let quota = answers_each * TOKENS_PER_ANSWER;
    let cap = if bench.opts.smoke { SMOKE_CAP } else { CAP };
    let (cluster, webdis) = start_cluster(id);
    let rule = bench.rule(id);
    let config = quota_config(&rule, quota);
    let gateways = [
        quota_gateway(bench, &webdis[0], &config),
        quota_gateway(bench, &webdis[1], &config),
    ];
    let ports = [gateways[0].port(), gateways[1].port()];
    let crossslot_before = cluster.error_count("CROSSSLOT");
    let window = wait_for_window(cap);
    let title = format!(
        "cluster: token quota on two gateways, {KEYS} keys over 3 masters ({quota} tokens/min each), chat POSTs, JSON answers"
    );
    println!("[loadtest] == {title}");
    let (answers, elapsed, reached) = drive_with(cap, &ports, post, |start, progress| {
        let reached = progress.wait_for(start, Progress::all_refused);
        std::thread::sleep(TAIL);
        reached
    });
    let mut s = scenario_of_run(id, &title, Kind::Accuracy, &answers, elapsed, cap, window);
    s.check_answers(&[200, 429]);
    s.check(
        "every key used up its quota (refused once)",
        reached,
        format!("within {} s", cap.as_secs()),
    );
    // Let the charges of the last answers land.
    std::thread::sleep(Duration::from_millis(500));
    let charged = charged_per_key(&cluster, &rule);
    let allowed = allowed_per_key(&answers);
    let wrong: Vec<String> = allowed
        .iter()
        .enumerate()
        .filter(|(k, n)| charged.get(k).copied().unwrap_or(0) != **n * TOKENS_PER_ANSWER)
        .map(|(k, n)| {
            format!(
                "key-{k}: {} tokens for {n} answers",
                charged.get(&k).copied().unwrap_or(0)
            )
        })
        .collect();
    let most = allowed.iter().max().copied().unwrap_or(0);
    s.fact(
        "answers 200 per key",
        format!(
            "{} to {most} (quota: {answers_each} answers' tokens)",
            allowed.iter().min().copied().unwrap_or(0)
        ),
    );
    s.check(
        "each key's counter holds exactly the tokens of its answers 200",
        wrong.is_empty() && charged.len() == KEYS,
        if wrong.is_empty() {
            format!(
                "{KEYS} of {KEYS} keys exact ({} tokens in all)",
                charged.values().sum::<u64>()
            )
        } else {
            wrong.join("; ")
        },
    );
    let crossslot = cluster.error_count("CROSSSLOT") - crossslot_before;
    s.check(
        "no CROSSSLOT from the cluster",
        crossslot == 0,
        format!("{crossslot} CROSSSLOT errors"),
    );
    s
}

/// Tokens in each key's counter (`…:key-<n>}…` of `rule`), by key number,
/// read on every master.
fn charged_per_key(cluster: &RedisCluster, rule: &str) -> BTreeMap<usize, u64> {
    let mut out = BTreeMap::new();
    for port in cluster.master_ports() {
        for (number, value) in counters_on(cluster, port, rule) {
            *out.entry(number).or_default() += value;
        }
    }
    out
}

/// The counters of `rule` on the node at `port`: key number (`…:key-<n>}…`)
/// and value.
fn counters_on(cluster: &RedisCluster, port: u16, rule: &str) -> Vec<(usize, u64)> {
    let pattern = format!("*{rule}*");
    let mut out = Vec::new();
    {
        let keys = cluster
            .node_command(port, &[b"KEYS", pattern.as_bytes()])
            .map(|r| r.bulk_items())
            .unwrap_or_default();
        for key in keys {
            let name = String::from_utf8_lossy(&key).into_owned();
            let number = name
                .split(":key-")
                .nth(1)
                .and_then(|rest| rest.split('}').next())
                .and_then(|n| n.parse::<usize>().ok());
            let value = match cluster.node_command(port, &[b"GET", &key]) {
                Ok(stack::resp::Resp::Bulk(Some(v))) => {
                    String::from_utf8_lossy(&v).parse::<u64>().ok()
                }
                _ => None,
            };
            if let (Some(number), Some(value)) = (number, value) {
                out.push((number, value));
            }
        }
    }
    out
}

/// The token quota's configuration: `quota` tokens a minute per
/// `x-api-key`, `failure_mode_deny: true`, on the cluster.
fn quota_config(rule: &str, quota: u64) -> Value {
    json!({
        "rule_name": rule,
        "rule_items": [{"limit_by_per_header": "x-api-key",
                        "limit_keys": [{"key": "*", "token_per_minute": quota}]}],
        "rejected_code": 429,
        "failure_mode_deny": true,
        "redis": {"webdis_cluster": "webdis", "timeout": TIMEOUT_MS, "cluster": true},
    })
}

/// A gateway with the token quota in front of the JSON upstream.
fn quota_gateway(bench: &Bench, webdis: &Webdis, config: &Value) -> Envoy {
    let plugin = WasmPlugin::new(stack::wasm_path("token-quota"), config.to_string())
        .allow_on_headers_stop_iteration(true);
    Envoy::start(
        EnvoyConfig::new()
            .wasm(plugin)
            .cluster("webdis", webdis.port())
            .cluster("llm", bench.json_upstream.port())
            .route_to("llm")
            .log_level("warning"),
    )
}

/// A chat `POST` with `x-api-key: value`; its status, 0 without an answer.
fn post(port: u16, value: &str) -> u16 {
    stack::request_with_timeout(
        port,
        "POST",
        "/v1/chat/completions",
        &[("content-type", "application/json"), ("x-api-key", value)],
        stack::Body::Fixed(CHAT.as_bytes()),
        Duration::from_secs(5),
    )
    .map_or(0, |r| r.status)
}
