//! The scenarios, each with the checks that say whether it measured what it
//! claims. A failed check does not stop the run (the other scenarios still
//! report); it makes the exit status 1.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};
use stack::{Envoy, EnvoyConfig, WasmPlugin};

use crate::wrk::{self, Counters, Load, Progress, Requests, Sample, WrkResult};
use crate::{commands_since, rss_kb, settle, Bench, JSON_USAGE, SSE_USAGE};

mod backends;
mod paired;
mod redis_paired;

/// The limiter's Redis timeout in every scenario (ms).
pub const REDIS_TIMEOUT_MS: u64 = 500;
/// A non-streaming chat request (the upstream answers JSON).
const CHAT_JSON: &str =
    r#"{"model":"qwen-max","messages":[{"role":"user","content":"Tell me a story."}]}"#;
/// A streaming chat request: the token quota buffers it and adds
/// `stream_options.include_usage` (the upstream answers an event stream).
const CHAT_SSE: &str = r#"{"model":"qwen-max","stream":true,"messages":[{"role":"user","content":"Tell me a story."}]}"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Overhead,
    Accuracy,
    Soak,
    Faults,
}

/// One assertion and what was seen.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub what: String,
    pub passed: bool,
    pub detail: String,
}

/// One scenario's measurements.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub id: &'static str,
    pub title: String,
    pub kind: Kind,
    /// The `id` of the no-filter run this one is compared with, measured
    /// separately (or, for a paired scenario, at the same time: `rounds`).
    pub baseline: Option<&'static str>,
    pub gateways: u32,
    pub connections: u32,
    pub wrk: WrkResult,
    /// Commands Redis executed during the measured run, in all (those a
    /// Lua script ran included).
    pub redis_calls: Option<u64>,
    /// The same by command name.
    pub redis_commands: BTreeMap<String, u64>,
    /// Further numbers worth reporting, in order.
    pub facts: Vec<(String, String)>,
    pub checks: Vec<Check>,
    /// Per-second answer counts (fault scenario).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Sample>,
    /// Rounds of a paired comparison: (baseline req/s, this scenario's
    /// req/s) per round.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<(f64, f64)>,
    /// The same rounds against the cheapest Wasm refusal: (its req/s, this
    /// scenario's req/s) per round.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub floor_rounds: Vec<(f64, f64)>,
}

impl Scenario {
    pub(crate) fn new(id: &'static str, title: &str, kind: Kind, wrk: WrkResult) -> Scenario {
        Scenario {
            id,
            title: title.to_owned(),
            kind,
            baseline: None,
            gateways: 1,
            connections: 0,
            wrk,
            redis_calls: None,
            redis_commands: BTreeMap::new(),
            facts: Vec::new(),
            checks: Vec::new(),
            samples: Vec::new(),
            rounds: Vec::new(),
            floor_rounds: Vec::new(),
        }
    }

    /// Calls of `commands` per answered request.
    pub(crate) fn per_request(&self, commands: &[&str]) -> f64 {
        let calls: u64 = commands
            .iter()
            .filter_map(|c| self.redis_commands.get(*c))
            .sum();
        calls as f64 / self.wrk.requests.max(1) as f64
    }

    /// Checks that `commands` ran once per answered request, give or take
    /// the requests wrk cut off at the end (one per connection). (An
    /// EVALSHA that finds no script is sent again as EVAL: the requests in
    /// flight when a script is first used cost a second round trip, which
    /// the command list shows.)
    // No scenario pays one call per request since the token quota shares
    // its calls; kept for scenarios (or comparisons) that do.
    #[allow(dead_code)]
    fn check_once_per_request(&mut self, what: &str, commands: &[&str]) {
        let calls: u64 = commands
            .iter()
            .filter_map(|c| self.redis_commands.get(*c))
            .sum();
        let slack = u64::from(self.connections) + 2 * u64::from(self.gateways);
        let requests = self.wrk.requests;
        self.check(
            format!("one {what} per request ({})", commands.join("/")),
            calls + slack >= requests && calls <= requests + slack,
            format!(
                "{calls} calls for {requests} requests ({:.3} per request); all commands: {}",
                self.per_request(commands),
                self.redis_commands_text()
            ),
        );
    }

    pub fn redis_commands_text(&self) -> String {
        if self.redis_commands.is_empty() {
            return "none".to_owned();
        }
        self.redis_commands
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The first gateway's CPU time per answered request, as a fact: on
    /// this shared VM it moves far less with the other load than req/s.
    fn fact_cpu_per_request(&mut self, cpu_seconds: &[f64]) {
        if let Some(cpu) = cpu_seconds.first() {
            let per_request = cpu * 1e6 / self.wrk.requests.max(1) as f64;
            self.fact("gateway CPU per request", format!("{per_request:.1} us"));
        }
    }

    /// Redis's and webdis's CPU time per answered request, as a fact
    /// (what the gateway's Redis calls cost the processes it shares the
    /// machine with).
    fn fact_backend_cpu_per_request(&mut self, cpu_seconds: f64) {
        let per_request = cpu_seconds * 1e6 / self.wrk.requests.max(1) as f64;
        self.fact(
            "Redis + webdis CPU per request",
            format!("{per_request:.1} us"),
        );
    }

    pub fn redis_calls_per_request(&self) -> Option<f64> {
        self.redis_calls
            .map(|calls| calls as f64 / self.wrk.requests.max(1) as f64)
    }

    pub(crate) fn check(
        &mut self,
        what: impl Into<String>,
        passed: bool,
        detail: impl Into<String>,
    ) {
        let check = Check {
            what: what.into(),
            passed,
            detail: detail.into(),
        };
        println!(
            "[loadtest]   {} {}: {}",
            if check.passed { "ok  " } else { "FAIL" },
            check.what,
            check.detail
        );
        self.checks.push(check);
    }

    pub(crate) fn fact(&mut self, name: &str, value: impl ToString) {
        self.facts.push((name.to_owned(), value.to_string()));
    }

    /// No socket errors and no answer outside `expected`.
    pub(crate) fn check_answers(&mut self, expected: &[u16]) {
        let unexpected = self.wrk.unexpected(expected);
        let codes: Vec<String> = expected.iter().map(u16::to_string).collect();
        self.check(
            format!("only {} answers", codes.join("/")),
            unexpected == 0 && self.wrk.requests > 0,
            format!(
                "{} of {} answers",
                self.wrk.statuses_text(),
                self.wrk.requests
            ),
        );
        let e = self.wrk.errors;
        self.check(
            "no socket errors or timeouts",
            e.total() == 0,
            format!(
                "connect {}, read {}, write {}, timeout {}",
                e.connect, e.read, e.write, e.timeout
            ),
        );
    }
}

fn limiter_config(rule: &str, per_minute: u64, failure_mode_deny: bool) -> Value {
    json!({
        "rule_name": rule,
        "global_threshold": {"query_per_minute": per_minute},
        "rejected_code": 429,
        "show_limit_quota_header": true,
        "failure_mode_deny": failure_mode_deny,
        "redis": {"webdis_cluster": "webdis", "timeout": REDIS_TIMEOUT_MS},
    })
}

fn limiter_gateway(bench: &Bench, config: &Value) -> Envoy {
    limiter_gateway_to(bench.webdis.port(), config)
}

/// A gateway running the limiter with `config`, its Redis behind the
/// webdis on `webdis_port`.
fn limiter_gateway_to(webdis_port: u16, config: &Value) -> Envoy {
    let plugin = WasmPlugin::new(stack::wasm_path("limiter"), config.to_string());
    Envoy::start(
        EnvoyConfig::new()
            .wasm(plugin)
            .cluster("webdis", webdis_port)
            .log_level("warning"),
    )
}

/// `loadtest/wasm/refuse.wat`, the cheapest refusal a Wasm filter can make
/// (one local 429 from two exported callbacks), compiled with `wat2wasm`.
///
/// # Panics
/// When `wat2wasm` (Debian `wabt`, installed by `scripts/setup.sh`) is
/// missing or refuses the file: the run fails rather than skip it.
fn minimal_refusal_gateway() -> Envoy {
    refusal_gateway("refuse")
}

/// `loadtest/wasm/refuse-stateful.wat`: the cheapest refusal of a filter
/// that keeps per-request state (also entered for the local reply's
/// headers and the request's end, and reading the clock).
///
/// # Panics
/// As [`minimal_refusal_gateway`].
fn stateful_refusal_gateway() -> Envoy {
    refusal_gateway("refuse-stateful")
}

/// Envoy with `loadtest/wasm/<name>.wat`, compiled with `wat2wasm`.
fn refusal_gateway(name: &str) -> Envoy {
    let root = stack::repo_root();
    let out_dir = root.join("target/loadtest");
    let wasm = out_dir.join(format!("{name}.wasm"));
    let source = root.join(format!("loadtest/wasm/{name}.wat"));
    let built = std::fs::create_dir_all(&out_dir).is_ok()
        && std::process::Command::new("wat2wasm")
            .arg(&source)
            .arg("-o")
            .arg(&wasm)
            .status()
            .is_ok_and(|status| status.success());
    assert!(
        built,
        "wat2wasm could not build {} (Debian wabt)",
        source.display()
    );
    Envoy::start(
        EnvoyConfig::new()
            .wasm(WasmPlugin::new(wasm, ""))
            .log_level("warning"),
    )
}

/// Envoy's own C++ token bucket, `max_tokens` per minute.
fn local_ratelimit_gateway(max_tokens: u64) -> Envoy {
    let percent = json!({"numerator": 100, "denominator": "HUNDRED"});
    let filter = json!({
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "local_rate_limit",
            "token_bucket": {"max_tokens": max_tokens, "tokens_per_fill": max_tokens, "fill_interval": "60s"},
            "filter_enabled": {"runtime_key": "local_rate_limit_enabled", "default_value": percent},
            "filter_enforced": {"runtime_key": "local_rate_limit_enforced", "default_value": percent},
        },
    });
    Envoy::start(
        EnvoyConfig::new()
            .native_filter(filter)
            .log_level("warning"),
    )
}

fn token_quota_gateway(bench: &Bench, rule: &str, per_minute: u64, upstream: &Envoy) -> Envoy {
    let config = json!({
        "rule_name": rule,
        "global_threshold": {"token_per_minute": per_minute},
        "redis": {"webdis_cluster": "webdis", "timeout": REDIS_TIMEOUT_MS},
    });
    token_quota_gateway_with(bench, &config, upstream)
}

/// A gateway running the token quota with `config`, routed to `upstream`.
fn token_quota_gateway_with(bench: &Bench, config: &Value, upstream: &Envoy) -> Envoy {
    token_quota_gateway_to(bench.webdis.port(), config, upstream)
}

/// The same, its Redis behind the webdis on `webdis_port`.
fn token_quota_gateway_to(webdis_port: u16, config: &Value, upstream: &Envoy) -> Envoy {
    let plugin = WasmPlugin::new(stack::wasm_path("token-quota"), config.to_string())
        .allow_on_headers_stop_iteration(true);
    Envoy::start(
        EnvoyConfig::new()
            .wasm(plugin)
            .cluster("webdis", webdis_port)
            .cluster("llm", upstream.port())
            .route_to("llm")
            .log_level("warning"),
    )
}

fn plain_gateway_to(upstream: &Envoy) -> Envoy {
    Envoy::start(
        EnvoyConfig::new()
            .cluster("llm", upstream.port())
            .route_to("llm")
            .log_level("warning"),
    )
}

/// How to drive one measured run.
#[derive(Debug, Clone, Copy)]
struct Drive<'a> {
    seconds: u64,
    /// Connections per gateway.
    connections: u32,
    requests: Requests<'a>,
    /// A 1 s run first, not measured (V8 tiers up, connections open).
    warm_up: bool,
    timeout: Duration,
    /// The CPU every wrk runs on; `None` lets the kernel choose.
    wrk_cpu: Option<usize>,
}

impl<'a> Drive<'a> {
    /// One wrk run of this drive against `port`, `seconds` long.
    fn load(&self, port: u16, seconds: u64) -> Load<'a> {
        Load {
            port,
            seconds,
            connections: self.connections,
            requests: self.requests,
            timeout: self.timeout,
            cpu: self.wrk_cpu,
        }
    }
}

/// What one measured run saw.
#[derive(Debug)]
struct Measured {
    wrk: WrkResult,
    /// Per gateway, in order.
    per_gateway: Vec<WrkResult>,
    redis_commands: BTreeMap<String, u64>,
    samples: Vec<Sample>,
    /// Each gateway's CPU time during the run, in seconds, in order.
    cpu_seconds: Vec<f64>,
    /// Redis's and webdis's CPU time during the run, in seconds: on this
    /// machine they share the gateways' cores, so their work per request
    /// is part of what a Redis round trip costs the gateway's throughput.
    backend_cpu_seconds: f64,
    /// Each CPU's times during the run, by CPU number.
    machine: Vec<crate::CpuTicks>,
}

/// A 1 s wrk run against each gateway in turn, not measured (V8 tiers up,
/// connections open); none with `--smoke`.
fn warm_up(bench: &Bench, gateways: &[&Envoy], drive: &Drive<'_>) {
    if bench.opts.smoke {
        return;
    }
    let script_dir = bench.script_dir();
    for gateway in gateways {
        wrk::run(&drive.load(gateway.port(), 1), &script_dir);
    }
    // wrk stops with a request in flight on each connection; let those
    // reach Redis before the counts are read, or they count against
    // the measured run (seen: 44 calls more than answers, over the
    // slack of one per connection).
    settle();
}

/// Runs wrk against every gateway at once (one wrk each), with progress
/// lines, and counts Redis commands around the measured part.
fn measure(bench: &Bench, label: &str, gateways: &[&Envoy], drive: Drive<'_>) -> Measured {
    let script_dir = bench.script_dir();
    if drive.warm_up {
        warm_up(bench, gateways, &drive);
    }
    let admin: Vec<u16> = gateways.iter().map(|g| g.admin_port()).collect();
    let cpu = || -> Vec<f64> { gateways.iter().map(|g| crate::cpu_seconds(g)).collect() };
    let backend_cpu = || -> f64 {
        [bench.redis.pid(), bench.webdis.pid()]
            .into_iter()
            .flatten()
            .map(crate::process_cpu_seconds)
            .sum()
    };
    // The gateways are loaded together, so when wrk loses its counts for
    // one of them (see `wrk::Unusable`) all are measured again, from fresh
    // readings. (A scenario that counts answers against a limit then sees
    // the first attempt's answers too, and its check fails rather than
    // passes.)
    let mut attempt = 0;
    let (per_gateway, calls_before, cpu_before, backend_before, machine_before, progress) = loop {
        attempt += 1;
        let calls_before = bench.redis_commands();
        let cpu_before = cpu();
        let machine_before = crate::cpu_ticks();
        let backend_before = backend_cpu();
        let progress = Progress::start(label, &admin, drive.seconds);
        let runs: Result<Vec<WrkResult>, wrk::Unusable> = std::thread::scope(|scope| {
            let runs: Vec<_> = gateways
                .iter()
                .map(|g| {
                    let load = drive.load(g.port(), drive.seconds);
                    let dir = &script_dir;
                    scope.spawn(move || wrk::try_run(&load, dir))
                })
                .collect();
            runs.into_iter()
                .map(|run| {
                    run.join()
                        .unwrap_or_else(|_| panic!("{label}: wrk thread panicked"))
                })
                .collect()
        });
        match runs {
            Ok(runs) => {
                break (
                    runs,
                    calls_before,
                    cpu_before,
                    backend_before,
                    machine_before,
                    progress,
                )
            }
            Err(lost) if attempt < wrk::ATTEMPTS => {
                drop(progress);
                println!("[loadtest]   {label}: {lost}; measuring again");
            }
            Err(lost) => panic!("{label}: {lost}, {} times in a row", wrk::ATTEMPTS),
        }
    };
    let cpu_seconds: Vec<f64> = cpu()
        .iter()
        .zip(&cpu_before)
        .map(|(after, before)| after - before)
        .collect();
    let backend_cpu_seconds = backend_cpu() - backend_before;
    let machine = crate::cpu_ticks()
        .iter()
        .zip(&machine_before)
        .map(|(after, before)| after.since(before))
        .collect();
    let samples = progress.finish();
    settle();
    let redis_commands = commands_since(&calls_before, &bench.redis_commands());
    let wrk = per_gateway.iter().skip(1).fold(
        per_gateway.first().cloned().unwrap_or_default(),
        |sum, r| sum.combined(r),
    );
    Measured {
        wrk,
        per_gateway,
        redis_commands,
        samples,
        cpu_seconds,
        backend_cpu_seconds,
        machine,
    }
}

fn announce(title: &str) {
    println!("[loadtest] == {title}");
}

fn overhead_drive<'a>(bench: &Bench, requests: Requests<'a>) -> Drive<'a> {
    Drive {
        seconds: bench.opts.seconds,
        connections: bench.opts.connections,
        requests,
        warm_up: true,
        timeout: Duration::from_secs(2),
        wrk_cpu: None,
    }
}

/// One gateway under steady load, compared with `baseline`.
fn overhead(
    bench: &Bench,
    id: &'static str,
    title: &str,
    baseline: Option<&'static str>,
    gateway: &Envoy,
    requests: Requests<'_>,
) -> Scenario {
    announce(title);
    let m = measure(bench, id, &[gateway], overhead_drive(bench, requests));
    let mut s = Scenario::new(id, title, Kind::Overhead, m.wrk);
    s.baseline = baseline;
    s.connections = bench.opts.connections;
    s.redis_calls = Some(m.redis_commands.values().sum());
    s.redis_commands = m.redis_commands;
    s.samples = m.samples;
    s.fact_cpu_per_request(&m.cpu_seconds);
    s.fact_backend_cpu_per_request(m.backend_cpu_seconds);
    s
}

/// Runs one scenario.
pub type Run = fn(&mut Bench) -> Scenario;

/// Every scenario, by id, in the order a full run takes them.
pub const ALL: &[(&str, Run)] = &[
    ("baseline", |bench| baseline(bench)),
    ("local-ratelimit-pass", |bench| {
        local_ratelimit(bench, false)
    }),
    ("local-ratelimit-flood", |bench| {
        local_ratelimit(bench, true)
    }),
    ("limiter-pass", |bench| limiter_pass(bench)),
    ("limiter-keys", |bench| limiter_keys(bench)),
    ("limiter-round-trips", |bench| limiter_round_trips(bench)),
    ("limiter-flood", |bench| limiter_flood(bench)),
    ("limiter-flood-paired", |bench| limiter_flood_paired(bench)),
    ("limiter-redis-paired", |bench| {
        redis_paired::limiter_redis_paired(bench)
    }),
    ("backends-flood-paired", |bench| {
        backends::backends_paired(bench, true)
    }),
    ("backends-redis-paired", |bench| {
        backends::backends_paired(bench, false)
    }),
    ("upstream-baseline", |bench| upstream_baseline(bench)),
    ("token-quota-json-paired", |bench| {
        redis_paired::token_quota_redis_paired(bench, false)
    }),
    ("token-quota-sse-paired", |bench| {
        redis_paired::token_quota_redis_paired(bench, true)
    }),
    ("token-quota-json", |bench| {
        token_quota_overhead(bench, false)
    }),
    ("token-quota-sse", |bench| token_quota_overhead(bench, true)),
    ("token-quota-json-unmetered", |bench| {
        token_quota_unmetered(bench, false)
    }),
    ("token-quota-sse-unmetered", |bench| {
        token_quota_unmetered(bench, true)
    }),
    ("routed-wasm-floor", |bench| routed_wasm_floor(bench)),
    ("limiter-accuracy", |bench| limiter_accuracy(bench)),
    ("token-quota-json-accuracy", |bench| {
        token_quota_accuracy(bench, false)
    }),
    ("token-quota-sse-accuracy", |bench| {
        token_quota_accuracy(bench, true)
    }),
    ("soak", |bench| soak(bench)),
    // Each starts a Redis Cluster of its own (cluster.rs).
    ("cluster-accuracy", crate::cluster::accuracy),
    ("cluster-failover", crate::cluster::failover),
    ("cluster-token-quota", crate::cluster::token_quota),
    ("cluster-replication-loss", crate::cluster::replication_loss),
    (
        "cluster-replication-loss-quota",
        crate::cluster::replication_loss_quota,
    ),
    // Last: it restarts the shared Redis, which empties it.
    ("faults", faults),
];

/// Runs the scenarios of [`ALL`] whose id `only` names (every one when
/// `only` is empty), in [`ALL`]'s order.
pub fn run_all(bench: &mut Bench, only: &[String]) -> Vec<Scenario> {
    let mut all = Vec::new();
    let started = Instant::now();
    for (id, run) in ALL {
        if !only.is_empty() && !only.iter().any(|o| o == id) {
            continue;
        }
        let s = run(bench);
        println!(
            "[loadtest]   -> {:.0} req/s, p99 {}, {} ({:.0} s so far)",
            s.wrk.requests_per_sec,
            wrk::format_ms(s.wrk.latency_us.p99),
            s.wrk.statuses_text(),
            started.elapsed().as_secs_f64()
        );
        all.push(s);
    }
    all
}

fn baseline(bench: &Bench) -> Scenario {
    let gateway = Envoy::start(EnvoyConfig::new().log_level("warning"));
    let mut s = overhead(
        bench,
        "baseline",
        "baseline: Envoy, no filter (direct_response)",
        None,
        &gateway,
        Requests::Get,
    );
    s.check_answers(&[200]);
    s
}

fn local_ratelimit(bench: &Bench, flood: bool) -> Scenario {
    let (id, title, tokens) = if flood {
        (
            "local-ratelimit-flood",
            "Envoy local_ratelimit (C++), over limit (10/min)",
            10,
        )
    } else {
        (
            "local-ratelimit-pass",
            "Envoy local_ratelimit (C++), limit never reached",
            1_000_000_000,
        )
    };
    let gateway = local_ratelimit_gateway(tokens);
    let mut s = overhead(bench, id, title, Some("baseline"), &gateway, Requests::Get);
    if flood {
        // The bucket refills once a minute, so a run may see up to two fills.
        s.check_answers(&[200, 429]);
        let allowed = s.wrk.status(200);
        s.check(
            "nearly all answers are 429",
            allowed <= 2 * tokens,
            format!("{allowed} answers 200 (bucket of {tokens} per minute)"),
        );
    } else {
        s.check_answers(&[200]);
    }
    s
}

fn limiter_pass(bench: &Bench) -> Scenario {
    let gateway = limiter_gateway(
        bench,
        &limiter_config(&bench.rule("pass"), 1_000_000_000, false),
    );
    let mut s = overhead(
        bench,
        "limiter-pass",
        "limiter, limit never reached, one hot key (every request counted in Redis; concurrent ones share round trips)",
        Some("baseline"),
        &gateway,
        Requests::Get,
    );
    s.judge_limiter_pass();
    s
}

/// The round trips per request the hot-key scenario may pay: the target of
/// shared increments.
pub(crate) const HOT_KEY_ROUND_TRIPS: f64 = 0.10;

/// Distinct `x-api-key` values the many-keys scenario rotates over.
const DISTINCT_KEYS: u32 = 1000;

/// The round trips per request the many-keys scenario may pay: the target
/// of calls over several keys.
const MANY_KEYS_ROUND_TRIPS: f64 = 0.25;

/// Redis round trips of the limiter's counting calls (top-level commands
/// only: the script's own INCRBY and EXPIRE are not round trips).
const ROUND_TRIP_COMMANDS: &[&str] = &["evalsha", "eval", "get"];

/// The limiter counting each `x-api-key` value apart, a limit never
/// reached.
fn per_key_limiter_config(rule: &str) -> Value {
    json!({
        "rule_name": rule,
        "rule_items": [{"limit_by_per_header": "x-api-key",
                        "limit_keys": [{"key": "*", "query_per_minute": 1_000_000_000}]}],
        "rejected_code": 429,
        "show_limit_quota_header": true,
        "failure_mode_deny": false,
        "redis": {"webdis_cluster": "webdis", "timeout": REDIS_TIMEOUT_MS},
    })
}

fn limiter_keys(bench: &Bench) -> Scenario {
    let gateway = limiter_gateway(bench, &per_key_limiter_config(&bench.rule("keys")));
    let mut s = overhead(
        bench,
        "limiter-keys",
        "limiter, 1,000 distinct per-header keys never reached (x-api-key rotating; keys that wait share calls)",
        Some("baseline"),
        &gateway,
        Requests::GetRotating("x-api-key", DISTINCT_KEYS),
    );
    s.check_answers(&[200]);
    // The connections in flight carry distinct keys, so nothing shares a
    // key's call: the sharing is that of several keys in one call.
    s.check_round_trips(ROUND_TRIP_COMMANDS, MANY_KEYS_ROUND_TRIPS, 1.0);
    s
}

/// The hot-key limiter at 1, 8 and 32 connections, one gateway: how many
/// round trips a request pays as more requests wait together.
fn limiter_round_trips(bench: &Bench) -> Scenario {
    let title = "limiter, one hot key, Redis round trips per request at 1, 8 and 32 connections";
    announce(title);
    let config = limiter_config(&bench.rule("round-trips"), 1_000_000_000, false);
    let gateway = limiter_gateway(bench, &config);
    let mut rows = Vec::new();
    let mut last = None;
    for connections in [1u32, 8, 32] {
        let drive = Drive {
            connections,
            ..overhead_drive(bench, Requests::Get)
        };
        let m = measure(
            bench,
            &format!("limiter-round-trips-{connections}"),
            &[&gateway],
            drive,
        );
        let calls: u64 = ROUND_TRIP_COMMANDS
            .iter()
            .filter_map(|c| m.redis_commands.get(*c))
            .sum();
        let requests = m.wrk.requests.max(1) as f64;
        let per_request = calls as f64 / requests;
        let bound = if connections >= 32 {
            HOT_KEY_ROUND_TRIPS
        } else {
            // wrk cuts one request per connection off at the end.
            1.0 + f64::from(connections + 2) / requests
        };
        rows.push((
            connections,
            format!(
                "{per_request:.3} round trips per request ({calls} for {} requests, {:.0} req/s, p99 {})",
                m.wrk.requests,
                m.wrk.requests_per_sec,
                wrk::format_ms(m.wrk.latency_us.p99)
            ),
            per_request <= bound && m.wrk.unexpected(&[200]) == 0 && m.wrk.errors.total() == 0,
            bound,
            m.wrk.statuses_text(),
        ));
        last = Some((connections, m));
    }
    let Some((connections, m)) = last else {
        unreachable!("three runs were made");
    };
    let mut s = Scenario::new("limiter-round-trips", title, Kind::Overhead, m.wrk);
    s.baseline = Some("baseline");
    s.connections = connections;
    s.redis_calls = Some(m.redis_commands.values().sum());
    s.redis_commands = m.redis_commands;
    s.samples = m.samples;
    for (connections, text, passed, bound, answers) in rows {
        s.fact(&format!("{connections} connections"), &text);
        s.check(
            format!("{connections} connections: at most {bound:.3} round trips per request, only 200 answers"),
            passed,
            format!("{text}; answers {answers}"),
        );
    }
    s
}

fn limiter_flood(bench: &Bench) -> Scenario {
    let per_minute = 10;
    let gateway = limiter_gateway(
        bench,
        &limiter_config(&bench.rule("flood"), per_minute, false),
    );
    // Use the budget up first so the whole run is over the limit.
    for _ in 0..=per_minute {
        let _ = stack::get(gateway.port(), "/", &[]);
    }
    let mut s = overhead(
        bench,
        "limiter-flood",
        "limiter, over limit (10/min; the over-limit cache answers)",
        Some("baseline"),
        &gateway,
        Requests::Get,
    );
    s.check_answers(&[200, 429]);
    let allowed = s.wrk.status(200);
    s.check(
        "nearly all answers are 429",
        allowed <= 2 * per_minute,
        format!("{allowed} answers 200 (limit {per_minute} per minute)"),
    );
    let per_request = s.redis_calls_per_request().unwrap_or(1.0);
    s.check(
        "Redis calls per request approach 0 under the flood",
        per_request < 0.001,
        format!(
            "{} commands for {} requests ({per_request:.6} per request): {}",
            s.redis_calls.unwrap_or(0),
            s.wrk.requests,
            s.redis_commands_text()
        ),
    );
    s
}

/// The flood path beside the no-filter baseline, Envoy's C++
/// `local_ratelimit` over its limit (the native reference) and the
/// cheapest possible Wasm refusal (the floor for any Wasm filter), all four
/// gateways loaded **at the same time on one shared CPU**.
///
/// Why this shape: see `paired.rs` (loadtest/README.md has the
/// measurements of the machine's drift). The comparison is only valid
/// while the gateways keep their CPU busy (wrk is not the bottleneck): a
/// check requires it.
///
/// Each round is one such run; the target is judged on the median of the
/// per-round ratios flood/baseline.
fn limiter_flood_paired(bench: &Bench) -> Scenario {
    let title = "limiter flood vs baseline, five gateways loaded together on one shared CPU (the target's measure)";
    announce(title);
    let per_minute = 10;
    let plain = Envoy::start(EnvoyConfig::new().log_level("warning"));
    let native = local_ratelimit_gateway(per_minute);
    let minimal = minimal_refusal_gateway();
    let stateful = stateful_refusal_gateway();
    let limited = limiter_gateway(
        bench,
        &limiter_config(&bench.rule("paired"), per_minute, false),
    );
    for gateway in [&native, &limited] {
        for _ in 0..=per_minute {
            let _ = stack::get(gateway.port(), "/", &[]);
        }
    }
    let gateways = [&plain, &native, &minimal, &stateful, &limited];
    let mut pairs = Vec::new();
    let mut native_pairs = Vec::new();
    let mut minimal_pairs = Vec::new();
    let mut floor_pairs = Vec::new();
    let mut stateful_pairs = Vec::new();
    let started = Instant::now();
    let mut rounds = paired::Rounds::start(bench, "paired", &gateways, Requests::Get, 4);
    while let Some(round) = rounds.next(bench) {
        let [base, reference, floor, stateful_floor, over] = round.rps[..] else {
            panic!("paired: {} results for 5 gateways", round.rps.len());
        };
        let x = |rate: f64| rate / base.max(1.0);
        let cpu_text: Vec<String> = round.cpu_us.iter().map(|c| format!("{c:.1}")).collect();
        rounds.record(format!(
            "baseline {base:.0} req/s, local_ratelimit {reference:.0} req/s ({:.2}x), minimal Wasm refusal {floor:.0} req/s ({:.2}x), stateful Wasm refusal {stateful_floor:.0} req/s ({:.2}x), limiter flood {over:.0} req/s ({:.2}x); CPU per request {} µs; shared CPU {:.0}% busy",
            x(reference),
            x(floor),
            x(stateful_floor),
            x(over),
            cpu_text.join(" / "),
            round.busy * 100.0,
        ));
        pairs.push((base, over));
        native_pairs.push((base, reference));
        minimal_pairs.push((base, floor));
        floor_pairs.push((floor, over));
        stateful_pairs.push((stateful_floor, over));
    }
    let done = rounds.finish();
    let mut s = Scenario::new(
        "limiter-flood-paired",
        title,
        Kind::Overhead,
        done.reported.clone(),
    );
    s.connections = bench.opts.connections;
    done.report_rounds(&mut s);
    if let Some(median) = median_ratio(&pairs) {
        s.fact(
            "median ratio, limiter flood / baseline",
            format!("{median:.2}x"),
        );
    }
    if let Some(median) = median_ratio(&native_pairs) {
        s.fact(
            "median ratio, Envoy's C++ local_ratelimit over its limit / baseline",
            format!("{median:.2}x"),
        );
    }
    if let Some(median) = median_ratio(&minimal_pairs) {
        s.fact(
            "median ratio, the cheapest Wasm refusal (loadtest/wasm/refuse.wat) / baseline",
            format!("{median:.2}x"),
        );
    }
    if let Some(median) = median_ratio(&floor_pairs) {
        s.fact(
            "median ratio, limiter flood / the cheapest Wasm refusal",
            format!("{median:.2}x"),
        );
    }
    if let Some(median) = median_ratio(&stateful_pairs) {
        s.fact(
            "median ratio, limiter flood / the cheapest stateful Wasm refusal (loadtest/wasm/refuse-stateful.wat)",
            format!("{median:.2}x"),
        );
    }
    s.rounds = pairs;
    s.floor_rounds = floor_pairs;
    s.check_answers(&[200, 429]);
    // The rounds take over a minute: each window they touch admits its
    // budget again.
    let windows = started.elapsed().as_secs() / 60 + 2;
    let allowed = s.wrk.status(200);
    s.check(
        "nearly all answers are 429",
        allowed <= windows * per_minute,
        format!("{allowed} answers 200 (limit {per_minute} per minute, {windows} windows at most)"),
    );
    done.report_busy(&mut s, bench, true);
    s
}

/// How busy the gateways' shared CPU must be for the paired ratios to count.
const SHARED_CPU_BUSY: f64 = 0.85;

/// The median of the per-round ratios of a paired scenario.
pub fn median_ratio(rounds: &[(f64, f64)]) -> Option<f64> {
    let mut ratios: Vec<f64> = rounds
        .iter()
        .filter(|(base, _)| *base > 0.0)
        .map(|(base, over)| over / base)
        .collect();
    ratios.sort_by(f64::total_cmp);
    let mid = ratios.len() / 2;
    match ratios.len() {
        0 => None,
        n if n % 2 == 1 => ratios.get(mid).copied(),
        _ => Some((ratios.get(mid - 1)? + ratios.get(mid)?) / 2.0),
    }
}

fn upstream_baseline(bench: &Bench) -> Scenario {
    let gateway = plain_gateway_to(&bench.json_upstream);
    let mut s = overhead(
        bench,
        "upstream-baseline",
        "baseline: Envoy to an upstream Envoy (OpenAI JSON), no filter, chat POSTs",
        None,
        &gateway,
        Requests::PostJson(CHAT_JSON),
    );
    s.check_answers(&[200]);
    s
}

/// The token quota's key pattern for `rule`.
fn quota_keys(rule: &str) -> String {
    format!("token-quota:{{{rule}:*")
}

fn token_quota_overhead(bench: &Bench, sse: bool) -> Scenario {
    let (id, title, upstream, body, usage) = if sse {
        (
            "token-quota-sse",
            "token quota, streaming chat POSTs, event-stream answers, quota never reached",
            &bench.sse_upstream,
            CHAT_SSE,
            SSE_USAGE,
        )
    } else {
        (
            "token-quota-json",
            "token quota, chat POSTs, JSON answers, quota never reached",
            &bench.json_upstream,
            CHAT_JSON,
            JSON_USAGE,
        )
    };
    let rule = bench.rule(id);
    let gateway = token_quota_gateway(bench, &rule, 1_000_000_000_000, upstream);
    announce(title);
    let drive = overhead_drive(bench, Requests::PostJson(body));
    // Read before the warm-up: both it and the measured run are compared.
    let upstream_before = Counters::read(upstream.admin_port()).unwrap_or_default();
    let m = measure(bench, id, &[&gateway], drive);
    let upstream_answers = Counters::read(upstream.admin_port())
        .unwrap_or_default()
        .minus(&upstream_before)
        .xx2;
    let charged = bench.redis_sum(&quota_keys(&rule));
    let mut s = Scenario::new(id, title, Kind::Overhead, m.wrk);
    s.baseline = Some("upstream-baseline");
    s.connections = drive.connections;
    s.redis_calls = Some(m.redis_commands.values().sum());
    s.redis_commands = m.redis_commands;
    s.samples = m.samples;
    s.fact_cpu_per_request(&m.cpu_seconds);
    s.fact_backend_cpu_per_request(m.backend_cpu_seconds);
    s.judge_token_quota_pass();
    s.judge_tokens_charged(charged, upstream_answers, usage.charged());
    s
}

/// The round trips per request the token-quota scenarios may pay: the
/// target of shared reads and charges.
pub(crate) const TOKEN_QUOTA_ROUND_TRIPS: f64 = 0.30;

/// The token quota loaded, configured so that no limit applies (a per-header
/// limit on a header the requests do not carry): the request body is still
/// buffered and the answer still passes through the filter's callbacks, but
/// nothing is read, scanned or charged. Against `upstream-baseline` and the
/// metered scenario, it splits the quota's cost into what the filter costs
/// by being there and what its Redis calls and scanning add.
fn token_quota_unmetered(bench: &Bench, sse: bool) -> Scenario {
    let (id, title, upstream, body) = if sse {
        (
            "token-quota-sse-unmetered",
            "token quota, streaming chat POSTs, no limit applies (body buffered, answer passed through, no Redis)",
            &bench.sse_upstream,
            CHAT_SSE,
        )
    } else {
        (
            "token-quota-json-unmetered",
            "token quota, chat POSTs, no limit applies (body buffered, answer passed through, no Redis)",
            &bench.json_upstream,
            CHAT_JSON,
        )
    };
    let config = json!({
        "rule_name": bench.rule(id),
        "rule_items": [{
            "limit_by_per_header": "x-no-such-header",
            "limit_keys": [{"key": "*", "token_per_minute": 1_000_000_000_000u64}],
        }],
        "redis": {"webdis_cluster": "webdis", "timeout": REDIS_TIMEOUT_MS},
    });
    let gateway = token_quota_gateway_with(bench, &config, upstream);
    let mut s = overhead(
        bench,
        id,
        title,
        Some("upstream-baseline"),
        &gateway,
        Requests::PostJson(body),
    );
    s.check_answers(&[200]);
    let per_request = s.per_request(&["evalsha", "eval", "get"]);
    s.check(
        "no Redis calls",
        per_request == 0.0,
        format!("{per_request:.3} per request"),
    );
    s
}

/// The floor under the token quota's unmetered runs: a Wasm filter that
/// reads no body (the limiter, its one limit on a header the requests do
/// not carry) on the routed chat path. Against `upstream-baseline` it is
/// what any Wasm filter costs there; against `token-quota-json-unmetered`,
/// what buffering the request body and seeing each answer chunk add.
fn routed_wasm_floor(bench: &Bench) -> Scenario {
    let config = json!({
        "rule_name": bench.rule("routed-wasm-floor"),
        "rule_items": [{
            "limit_by_per_header": "x-no-such-header",
            "limit_keys": [{"key": "*", "query_per_minute": 1_000_000_000u64}],
        }],
        "redis": {"webdis_cluster": "webdis", "timeout": REDIS_TIMEOUT_MS},
    });
    let plugin = WasmPlugin::new(stack::wasm_path("limiter"), config.to_string());
    let gateway = Envoy::start(
        EnvoyConfig::new()
            .wasm(plugin)
            .cluster("webdis", bench.webdis.port())
            .cluster("llm", bench.json_upstream.port())
            .route_to("llm")
            .log_level("warning"),
    );
    let mut s = overhead(
        bench,
        "routed-wasm-floor",
        "limiter loaded, no limit applies, chat POSTs routed (a Wasm filter that reads no body)",
        Some("upstream-baseline"),
        &gateway,
        Requests::PostJson(CHAT_JSON),
    );
    s.check_answers(&[200]);
    let per_request = s.per_request(&["evalsha", "eval", "get"]);
    s.check(
        "no Redis calls",
        per_request == 0.0,
        format!("{per_request:.3} per request"),
    );
    s
}

/// Waits until `seconds` of load (and 3 s of slack) fit in the current
/// per-minute window, so a run meets one window only.
fn align_to_minute(seconds: u64) -> u64 {
    let window =
        stack::wait_for_window_room(Duration::from_secs(60), Duration::from_secs(seconds + 3));
    println!(
        "[loadtest]   aligned to the window starting at {window} ({:.1} s into it)",
        stack::unix_now() - window as f64
    );
    window
}

fn limiter_accuracy(bench: &Bench) -> Scenario {
    let title = "accuracy: limiter on two gateways, 64 connections, 1000 per minute on one key";
    announce(title);
    let limit = 1000;
    let config = limiter_config(&bench.rule("accuracy"), limit, false);
    let a = limiter_gateway(bench, &config);
    let b = limiter_gateway(bench, &config);
    let drive = Drive {
        seconds: bench.opts.accuracy_seconds,
        connections: 32,
        requests: Requests::Get,
        // Warm-up requests would count against the window.
        warm_up: false,
        timeout: Duration::from_secs(2),
        wrk_cpu: None,
    };
    let window = align_to_minute(drive.seconds);
    let m = measure(bench, "limiter-accuracy", &[&a, &b], drive);
    let end_window = (stack::unix_now() / 60.0).floor() as u64 * 60;
    let counted = bench.redis_sum(&format!("limiter:{{{}:*", bench.rule("accuracy")));
    let mut s = Scenario::new("limiter-accuracy", title, Kind::Accuracy, m.wrk);
    s.gateways = 2;
    s.connections = 2 * drive.connections;
    s.redis_calls = Some(m.redis_commands.values().sum());
    s.redis_commands = m.redis_commands;
    s.samples = m.samples;
    for (name, g) in ["A", "B"].iter().zip(&m.per_gateway) {
        s.fact(&format!("gateway {name} answers"), g.statuses_text());
    }
    s.fact("requests counted in Redis", counted);
    s.check(
        "the run stayed in one per-minute window",
        window == end_window,
        format!("started in window {window}, ended in {end_window}"),
    );
    s.check_answers(&[200, 429]);
    let allowed = s.wrk.status(200);
    s.check(
        "exactly the limit answered 200 across both gateways",
        allowed == limit,
        format!("{allowed} answers 200, limit {limit}"),
    );
    s.check(
        "both gateways let requests through",
        m.per_gateway.iter().all(|g| g.status(200) > 0),
        m.per_gateway
            .iter()
            .zip(["A", "B"])
            .map(|(g, name)| format!("{name}: {} answers 200", g.status(200)))
            .collect::<Vec<_>>()
            .join(", "),
    );
    s
}

fn token_quota_accuracy(bench: &Bench, sse: bool) -> Scenario {
    let (id, title, upstream, body, usage) = if sse {
        (
            "token-quota-sse-accuracy",
            "accuracy: token quota on two gateways, streaming chat, event-stream answers",
            &bench.sse_upstream,
            CHAT_SSE,
            SSE_USAGE,
        )
    } else {
        (
            "token-quota-json-accuracy",
            "accuracy: token quota on two gateways, chat POSTs, JSON answers",
            &bench.json_upstream,
            CHAT_JSON,
            JSON_USAGE,
        )
    };
    announce(title);
    let rule = bench.rule(id);
    let limit = bench.opts.quota_answers * usage.charged();
    let a = token_quota_gateway(bench, &rule, limit, upstream);
    let b = token_quota_gateway(bench, &rule, limit, upstream);
    let drive = Drive {
        seconds: bench.opts.quota_seconds,
        connections: 16,
        requests: Requests::PostJson(body),
        warm_up: false,
        timeout: Duration::from_secs(2),
        wrk_cpu: None,
    };

    let window = align_to_minute(drive.seconds);
    let upstream_before = Counters::read(upstream.admin_port()).unwrap_or_default();
    let m = measure(bench, id, &[&a, &b], drive);
    let end_window = (stack::unix_now() / 60.0).floor() as u64 * 60;
    let upstream_answers = Counters::read(upstream.admin_port())
        .unwrap_or_default()
        .minus(&upstream_before)
        .xx2;
    let charged = bench.redis_sum(&quota_keys(&rule));
    let reported = upstream_answers * usage.charged();
    let mut s = Scenario::new(id, title, Kind::Accuracy, m.wrk);
    s.gateways = 2;
    s.connections = 2 * drive.connections;
    s.redis_calls = Some(m.redis_commands.values().sum());
    s.redis_commands = m.redis_commands;
    s.samples = m.samples;
    s.fact("quota (tokens per minute)", limit);
    s.fact("tokens per answer", usage.charged());
    s.fact("answers from the upstream", upstream_answers);
    s.fact("tokens the upstream reported", reported);
    s.fact("tokens charged in Redis", charged);
    s.fact(
        "overshoot past the quota (requests admitted while others were in flight)",
        charged.saturating_sub(limit),
    );
    s.check(
        "the run stayed in one per-minute window",
        window == end_window,
        format!("started in window {window}, ended in {end_window}"),
    );
    s.check_answers(&[200, 429]);
    s.check(
        "the quota was used up (so nothing was in flight when wrk stopped)",
        s.wrk.status(429) > 0 && charged >= limit,
        format!(
            "{} answers 429, {charged} of {limit} tokens",
            s.wrk.status(429)
        ),
    );
    s.check(
        "tokens charged in Redis equal the usage the upstream reported",
        charged == reported,
        format!("{charged} charged, {reported} reported ({upstream_answers} answers)"),
    );
    s.check(
        "every answer the upstream gave reached a client",
        s.wrk.status(200) == upstream_answers,
        format!(
            "{} answers 200 at the clients, {upstream_answers} from the upstream",
            s.wrk.status(200)
        ),
    );
    s
}

fn soak(bench: &Bench) -> Scenario {
    let per_minute = 1000;
    let target = bench.opts.soak_requests;
    let reference_at = bench.opts.soak_reference_after;
    let title = format!(
        "soak: limiter, {target} requests over the flood path ({per_minute}/min), one gateway"
    );
    announce(&title);
    let gateway = limiter_gateway(
        bench,
        &limiter_config(&bench.rule("soak"), per_minute, false),
    );
    let script_dir = bench.script_dir();
    let load = Load {
        port: gateway.port(),
        seconds: bench.opts.soak_phase_seconds,
        connections: bench.opts.connections,
        requests: Requests::Get,
        timeout: Duration::from_secs(2),
        cpu: None,
    };
    let first_window = (stack::unix_now() / 60.0).floor() as u64;
    let calls_before = bench.redis_commands();
    let mut total: Option<WrkResult> = None;
    let mut reference: Option<(u64, u64)> = None;
    let started = Instant::now();
    // Bounded: a phase that answers fewer than 1000 requests ends the soak.
    for _ in 0..10_000 {
        let phase = wrk::run(&load, &script_dir);
        let stalled = phase.requests < 1000;
        let sum = match total.take() {
            Some(t) => t.followed_by(&phase),
            None => phase,
        };
        let done = sum.requests;
        let rss = rss_kb(&gateway);
        if reference.is_none() && done >= reference_at {
            reference = Some((done, rss));
        }
        println!(
            "[loadtest]   soak: {done:>9}/{target} requests  {:>7.0}/s  Envoy RSS {rss} kB  {:.0} s",
            sum.requests_per_sec,
            started.elapsed().as_secs_f64()
        );
        total = Some(sum);
        if done >= target || stalled {
            break;
        }
    }
    settle();
    let total = total.unwrap_or_default();
    let last_window = (stack::unix_now() / 60.0).floor() as u64;
    let end_rss = rss_kb(&gateway);
    let redis_commands = commands_since(&calls_before, &bench.redis_commands());
    let mut s = Scenario::new("soak", &title, Kind::Soak, total);
    s.connections = bench.opts.connections;
    s.redis_calls = Some(redis_commands.values().sum());
    s.redis_commands = redis_commands;
    s.check(
        "the soak reached its request count",
        s.wrk.requests >= target,
        format!("{} of {target} requests", s.wrk.requests),
    );
    s.check_answers(&[200, 429]);
    let windows = last_window - first_window + 1;
    let allowed = s.wrk.status(200);
    s.check(
        "no window let more than its limit through",
        allowed <= windows * per_minute,
        format!("{allowed} answers 200 over {windows} windows of {per_minute}"),
    );
    match reference {
        Some((at, rss)) => {
            let change = (end_rss as f64 - rss as f64) / rss as f64;
            s.fact(
                "Envoy RSS after the reference requests",
                format!("{rss} kB after {at} requests"),
            );
            s.fact(
                "Envoy RSS at the end",
                format!("{end_rss} kB after {} requests", s.wrk.requests),
            );
            s.check(
                "Envoy's resident memory at the end is within 5% of its early value",
                change.abs() <= 0.05,
                format!(
                    "{rss} kB after {at} requests, {end_rss} kB after {} ({:+.2}%)",
                    s.wrk.requests,
                    change * 100.0
                ),
            );
        }
        None => s.check(
            "Envoy's resident memory at the end is within 5% of its early value",
            false,
            format!("the soak never reached {reference_at} requests"),
        ),
    }
    s
}

fn faults(bench: &mut Bench) -> Scenario {
    let opts = bench.opts.clone();
    let title = format!(
        "faults: Redis stopped for {} s mid-run, failure_mode_deny: true, timeout {REDIS_TIMEOUT_MS} ms",
        opts.fault_gap
    );
    announce(&title);
    let gateway = limiter_gateway(
        bench,
        &limiter_config(&bench.rule("faults"), 1_000_000_000, true),
    );
    let seconds = opts.fault_before + opts.fault_gap + opts.fault_after;
    // A request held longer than the Redis timeout plus this much has hung.
    let slack = Duration::from_millis(1000);
    let timeout = Duration::from_millis(REDIS_TIMEOUT_MS) + slack + Duration::from_millis(500);
    let load = Load {
        port: gateway.port(),
        seconds,
        connections: opts.connections,
        requests: Requests::Get,
        timeout,
        cpu: None,
    };
    let script_dir = bench.script_dir();
    // Warm up (and load the script into Redis) before the clock starts.
    wrk::run(
        &Load {
            seconds: 1,
            ..load.clone()
        },
        &script_dir,
    );
    // Redis is stopped and restarted on this thread, because a child is
    // tied to the thread that spawned it; wrk runs on another.
    let redis = &mut bench.redis;
    let progress = Progress::start("faults", &[gateway.admin_port()], seconds);
    let start = Instant::now();
    let (result, stopped_at, restarted_at) = std::thread::scope(|scope| {
        let run = scope.spawn(|| wrk::run(&load, &script_dir));
        std::thread::sleep(Duration::from_secs(opts.fault_before));
        let stopped_at = start.elapsed().as_secs_f64();
        redis.stop();
        println!("[loadtest]   faults: Redis stopped at {stopped_at:.1} s");
        std::thread::sleep(Duration::from_secs(opts.fault_gap));
        let restarted_at = start.elapsed().as_secs_f64();
        redis.restart();
        println!("[loadtest]   faults: Redis started again at {restarted_at:.1} s");
        let result = run
            .join()
            .unwrap_or_else(|_| panic!("faults: wrk thread panicked"));
        (result, stopped_at, restarted_at)
    });
    let samples = progress.finish();
    let mut s = Scenario::new("faults", &title, Kind::Faults, result);
    s.connections = opts.connections;
    s.samples = samples.clone();
    s.fact("Redis stopped at", format!("{stopped_at:.1} s"));
    s.fact("Redis started again at", format!("{restarted_at:.1} s"));
    s.check_answers(&[200, 503]);
    // Each sample covers the second before it.
    let intervals: Vec<(f64, f64, Counters)> = samples
        .windows(2)
        .filter_map(|pair| match pair {
            [a, b] => Some((a.at, b.at, b.counters.minus(&a.counters))),
            _ => None,
        })
        .collect();
    let classify = |from: f64, to: f64| -> Vec<Counters> {
        intervals
            .iter()
            .filter(|(a, b, _)| *a >= from && *b <= to)
            .map(|(_, _, c)| *c)
            .collect()
    };
    let before = classify(0.0, stopped_at);
    // Half a second for answers already in flight when Redis went away.
    let during = classify(stopped_at + 0.5, restarted_at);
    // Two seconds for webdis to reconnect after the restart.
    let after = classify(restarted_at + 2.0, f64::MAX);
    let describe = |cs: &[Counters]| {
        cs.iter()
            .map(|c| format!("2xx {} 5xx {}", c.xx2, c.xx5))
            .collect::<Vec<_>>()
            .join("; ")
    };
    s.check(
        "before the stop: every answer 200",
        !before.is_empty() && before.iter().all(|c| c.xx5 == 0 && c.xx2 > 0),
        format!("per second: {}", describe(&before)),
    );
    s.check(
        "while Redis is down: failure_mode_deny answers 503, nothing passes",
        !during.is_empty() && during.iter().all(|c| c.xx2 == 0 && c.xx5 > 0),
        format!("per second: {}", describe(&during)),
    );
    s.check(
        "after the restart: recovered by itself, every answer 200",
        !after.is_empty() && after.iter().all(|c| c.xx5 == 0 && c.xx2 > 0),
        format!("per second: {}", describe(&after)),
    );
    let max = Duration::from_micros(s.wrk.latency_us.max);
    let bound = Duration::from_millis(REDIS_TIMEOUT_MS) + slack;
    s.check(
        "no request hung past the Redis timeout",
        s.wrk.errors.timeout == 0 && max <= bound,
        format!(
            "slowest answer {:.1} ms (bound: timeout {REDIS_TIMEOUT_MS} ms + {} ms scheduling slack), \
             {} wrk timeouts",
            max.as_secs_f64() * 1e3,
            slack.as_millis(),
            s.wrk.errors.timeout
        ),
    );
    s
}

#[cfg(test)]
mod tests {
    use super::median_ratio;

    #[test]
    fn median_ratio_of_rounds() {
        assert_eq!(median_ratio(&[]), None);
        assert_eq!(median_ratio(&[(0.0, 5.0)]), None);
        assert_eq!(median_ratio(&[(10.0, 9.0)]), Some(0.9));
        // Odd count: the middle ratio, whatever the order of the rounds.
        let odd = [(10.0, 20.0), (10.0, 5.0), (10.0, 9.0)];
        assert_eq!(median_ratio(&odd), Some(0.9));
        // Even count: the mean of the two middle ones.
        let even = [(10.0, 8.0), (10.0, 12.0), (10.0, 1.0), (10.0, 30.0)];
        assert_eq!(median_ratio(&even), Some(1.0));
    }
}
