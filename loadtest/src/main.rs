//! Load test of both plugins in real Envoy 1.40 gateways sharing one Redis
//! (behind webdis), driven by `wrk`, on loopback only.
//!
//! Builds nothing: it needs the release modules
//! (`cargo build --release --target wasm32-wasip1 -p limiter -p token-quota`;
//! `scripts/run.sh` does that and then runs this). It starts one
//! `redis-server`, one `webdis` in front of it, two upstream Envoys that
//! answer as an OpenAI-style API (`direct_response`: one JSON answer, one
//! server-sent event stream, both reporting usage), and for each scenario
//! one or two fresh gateway Envoys (one worker each). Everything is
//! stopped when it ends, panics or is interrupted (the processes are tied
//! to this one with `PR_SET_PDEATHSIG`).
//!
//! Scenarios (see `scenarios.rs`): overhead beside a no-filter baseline
//! with Envoy's C++ `local_ratelimit` as the native reference; accuracy of
//! the limiter across two gateways; token quota accuracy for JSON and SSE
//! answers; Redis calls per request from `INFO commandstats`; a soak of
//! 1,000,000 requests watching Envoy's resident memory; Redis stopped for
//! 5 s mid-run. Results go to `loadtest/results/` (JSON, Markdown, PNG
//! charts drawn by `loadtest/charts.py` with the repo's `.venv`).
//!
//! The exit status is 1 if any check failed, so `--smoke` (every scenario,
//! tiny) can run in `scripts/test.sh`.
//!
//! External mode (`--stack compose`, or `--gateway`/`--baseline`/`--redis`
//! and optionally `--token-quota-*`; `target.rs`, `external.rs`): starts nothing, drives a stack someone else
//! runs with every scenario that needs no process of its own, and lists the
//! others in the report with the reason. Results go to
//! `loadtest/results/external/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cluster;
mod external;
mod external_pass;
mod overhead_checks;
mod report;
mod scenarios;
mod target;
mod wrk;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use stack::{Envoy, EnvoyConfig, OpenAiStream, Redis, Reply, Usage, Webdis};

const USAGE: &str = "usage: loadtest [--smoke] [--only ID,...] [--seconds N] [--connections N] [--soak-requests N]\n\
     \x20      loadtest --stack compose [options]\n\
     \x20      loadtest --gateway URL[,URL] --baseline URL[,URL] --redis HOST:PORT [--admin URL[,URL]] [options]\n\
     \n  --only ID,...      only these scenarios (ids as in the report, e.g. limiter-flood-paired); results in loadtest/results/only/\n  \
     --smoke            every scenario, tiny (well under a minute); results in loadtest/results/smoke/\n  \
     --seconds N        length of each overhead run (default 10; env LOADTEST_SECONDS)\n  \
     --connections N    wrk connections of the overhead runs (default 32)\n  \
     --soak-requests N  requests of the soak (default 1000000)\n\
     \nExternal mode (a stack this does not start; results in loadtest/results/external/):\n  \
     --stack compose    the stack of docker-compose.yaml, on its published ports (read from the compose files)\n  \
     --gateway URL,...  limiter gateways on loopback (show_limit_quota_header: true), http://127.0.0.1:PORT\n  \
     --baseline URL,... the stack's no-filter route (one, or one per gateway)\n  \
     --redis HOST:PORT  the stack's Redis, on loopback (INFO commandstats)\n  \
     --admin URL,...    the gateways' Envoy admin (progress, /memory), optional\n  \
     --redis-stop CMD   shell command that stops the stack's Redis (with --redis-start: runs the fault scenario)\n  \
     --redis-start CMD  shell command that starts it again\n  \
     --redis-control T  both at once: T with {} replaced by stop, then start (e.g. \"docker compose {} redis\")\n\
     \nToken quota of a --gateway stack (the accuracy runs; a route may have a path, e.g. /v1/chat/completions):\n  \
     --token-quota-json URL        a token quota route answering JSON\n  \
     --token-quota-sse URL         a token quota route answering event streams\n  \
     --token-quota-baseline URL,.. no filter to the same upstream (one, or JSON's then the event streams')\n  \
     --token-quota-rule NAME,..    each route's rule_name (one per route; two different names for two routes)\n  \
     --token-quota-key-prefix P    its redis_key_prefix (default token-quota)\n\
     \nOverhead rows of a --gateway stack (limits never reached; each runs only when given):\n  \
     --limiter-pass URL            a limiter whose limit is never reached (limiter-pass; beside the first --baseline)\n  \
     --token-quota-pass-json URL   a token quota never reached, JSON answers (token-quota-json)\n  \
     --token-quota-pass-sse URL    the same, event-stream answers (token-quota-sse); both beside\n  \
     \x20                             --token-quota-baseline (upstream-baseline)";

/// How big each scenario is.
#[derive(Debug, Clone, Serialize)]
pub struct Options {
    pub smoke: bool,
    /// Scenario ids to run; empty runs every one.
    pub only: Vec<String>,
    /// Length of each overhead (req/s) run.
    pub seconds: u64,
    /// wrk connections of the overhead runs.
    pub connections: u32,
    /// Length of the limiter accuracy run.
    pub accuracy_seconds: u64,
    /// Length of the token quota accuracy runs.
    pub quota_seconds: u64,
    pub soak_requests: u64,
    /// When the soak takes its reference memory reading.
    pub soak_reference_after: u64,
    pub soak_phase_seconds: u64,
    /// Fault scenario: load before the stop, Redis down, load after.
    pub fault_before: u64,
    pub fault_gap: u64,
    pub fault_after: u64,
    /// Token quota accuracy runs: how many answers the quota admits.
    pub quota_answers: u64,
    /// The external mode's stack, when not starting one.
    #[serde(skip)]
    pub external: Option<External>,
}

/// The external mode's arguments, before they are checked.
#[derive(Debug, Clone, Default)]
pub struct External {
    pub compose: bool,
    pub gateways: Vec<String>,
    pub baselines: Vec<String>,
    pub redis: Option<String>,
    pub admins: Vec<String>,
    pub redis_stop: Option<String>,
    pub redis_start: Option<String>,
    /// `--token-quota-*`.
    pub quota: target::QuotaUrls,
    /// `--limiter-pass`, `--token-quota-pass-*`.
    pub pass: target::PassUrls,
}

impl External {
    /// The stack these arguments name.
    ///
    /// # Errors
    /// Missing or inconsistent arguments, or a compose stack that is not
    /// up or whose files lack what the scenarios need.
    pub fn target(&self) -> Result<target::Target, String> {
        let mut target = if self.compose {
            if !self.gateways.is_empty() || !self.baselines.is_empty() || self.redis.is_some() {
                return Err("--stack compose takes no --gateway, --baseline or --redis".to_owned());
            }
            if self.quota.any()
                || self.pass.limiter.is_some()
                || self.pass.json.is_some()
                || self.pass.sse.is_some()
            {
                return Err(
                    "--token-quota-*, --limiter-pass: --stack compose reads its routes from \
                            the compose files; these options go with --gateway"
                        .to_owned(),
                );
            }
            target::compose()?
        } else {
            let redis = self
                .redis
                .as_deref()
                .ok_or("--gateway needs --redis HOST:PORT")?;
            if self.baselines.is_empty() {
                return Err(
                    "--gateway needs --baseline URL (the stack's no-filter route)".to_owned(),
                );
            }
            target::from_urls(
                &self.gateways,
                &self.baselines,
                redis,
                &self.admins,
                &self.quota,
                &self.pass,
            )?
        };
        match (&self.redis_stop, &self.redis_start) {
            (Some(_), Some(_)) | (None, None) => {}
            _ => return Err("--redis-stop and --redis-start go together".to_owned()),
        }
        target.redis_stop = self.redis_stop.clone();
        target.redis_start = self.redis_start.clone();
        Ok(target)
    }
}

fn parse_options() -> Result<Options, String> {
    let default_seconds = match std::env::var("LOADTEST_SECONDS") {
        Ok(v) => v
            .parse()
            .map_err(|_| format!("LOADTEST_SECONDS={v:?} is not a number of seconds"))?,
        Err(_) => 10,
    };
    let mut seconds = None;
    let mut connections = 32;
    let mut soak = None;
    let mut smoke = false;
    let mut only = Vec::new();
    let mut external = External::default();
    let mut external_mode = false;
    let mut args = std::env::args().skip(1);
    let list = |v: Option<String>, name: &str| -> Result<Vec<String>, String> {
        let items: Vec<String> = v
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if items.is_empty() {
            return Err(format!("{name} needs a value\n{USAGE}"));
        }
        Ok(items)
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--stack" => {
                match args.next().as_deref() {
                    Some("compose") => external.compose = true,
                    other => {
                        return Err(format!(
                            "--stack: only `compose` is known, got {other:?}\n{USAGE}"
                        ))
                    }
                }
                external_mode = true;
                continue;
            }
            "--gateway" => {
                external.gateways = list(args.next(), "--gateway")?;
                external_mode = true;
                continue;
            }
            "--baseline" => {
                external.baselines = list(args.next(), "--baseline")?;
                continue;
            }
            "--redis" => {
                external.redis = list(args.next(), "--redis")?.pop();
                continue;
            }
            "--admin" => {
                external.admins = list(args.next(), "--admin")?;
                continue;
            }
            "--token-quota-json"
            | "--token-quota-sse"
            | "--token-quota-key-prefix"
            | "--limiter-pass"
            | "--token-quota-pass-json"
            | "--token-quota-pass-sse" => {
                let value = args
                    .next()
                    .filter(|v| !v.trim().is_empty())
                    .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))?;
                let slot = match arg.as_str() {
                    "--token-quota-json" => &mut external.quota.json,
                    "--token-quota-sse" => &mut external.quota.sse,
                    "--limiter-pass" => &mut external.pass.limiter,
                    "--token-quota-pass-json" => &mut external.pass.json,
                    "--token-quota-pass-sse" => &mut external.pass.sse,
                    _ => &mut external.quota.key_prefix,
                };
                *slot = Some(value);
                continue;
            }
            "--token-quota-baseline" => {
                external.quota.baselines = list(args.next(), "--token-quota-baseline")?;
                continue;
            }
            "--token-quota-rule" => {
                external.quota.rules = list(args.next(), "--token-quota-rule")?;
                continue;
            }
            "--redis-control" => {
                let template = args.next().unwrap_or_default();
                if !template.contains("{}") {
                    return Err(format!(
                        "--redis-control needs a command with {{}} for stop/start, e.g. \
                         \"docker compose {{}} redis\"\n{USAGE}"
                    ));
                }
                external.redis_stop = Some(template.replace("{}", "stop"));
                external.redis_start = Some(template.replace("{}", "start"));
                continue;
            }
            "--redis-stop" => {
                external.redis_stop = Some(
                    args.next()
                        .filter(|c| !c.trim().is_empty())
                        .ok_or_else(|| format!("--redis-stop needs a command\n{USAGE}"))?,
                );
                continue;
            }
            "--redis-start" => {
                external.redis_start = Some(
                    args.next()
                        .filter(|c| !c.trim().is_empty())
                        .ok_or_else(|| format!("--redis-start needs a command\n{USAGE}"))?,
                );
                continue;
            }
            _ => {}
        }
        let mut value = |name: &str| {
            args.next()
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|v| *v > 0)
                .ok_or_else(|| format!("{name} needs a positive number\n{USAGE}"))
        };
        match arg.as_str() {
            "--smoke" => smoke = true,
            "--only" => {
                let ids = args.next().unwrap_or_default();
                for id in ids.split(',').filter(|id| !id.is_empty()) {
                    let known_external = external::IDS.contains(&id);
                    if !scenarios::ALL.iter().any(|(known, _)| *known == id) && !known_external {
                        let known: Vec<&str> = scenarios::ALL.iter().map(|(k, _)| *k).collect();
                        return Err(format!(
                            "--only: no scenario {id:?}; the ids are {}\n{USAGE}",
                            known.join(", ")
                        ));
                    }
                    only.push(id.to_owned());
                }
                if only.is_empty() {
                    return Err(format!("--only needs scenario ids\n{USAGE}"));
                }
            }
            "--seconds" => seconds = Some(value("--seconds")?),
            "--connections" => connections = value("--connections")? as u32,
            "--soak-requests" => soak = Some(value("--soak-requests")?),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let options = if smoke {
        Options {
            smoke,
            only,
            seconds: seconds.unwrap_or(1),
            connections,
            accuracy_seconds: 2,
            quota_seconds: 1,
            soak_requests: soak.unwrap_or(20_000),
            soak_reference_after: 10_000,
            soak_phase_seconds: 1,
            fault_before: 2,
            fault_gap: 3,
            fault_after: 4,
            quota_answers: 150,
            external: None,
        }
    } else {
        Options {
            smoke,
            only,
            seconds: seconds.unwrap_or(default_seconds),
            connections,
            accuracy_seconds: 5,
            quota_seconds: 5,
            soak_requests: soak.unwrap_or(1_000_000),
            soak_reference_after: 100_000,
            soak_phase_seconds: 5,
            fault_before: 5,
            fault_gap: 5,
            fault_after: 6,
            quota_answers: 2_000,
            external: None,
        }
    };
    if options.seconds > 3600 || options.connections > 1000 {
        return Err(format!(
            "--seconds must be 1..=3600 and --connections 1..=1000\n{USAGE}"
        ));
    }
    if options.soak_requests < 2 * options.soak_reference_after {
        return Err(format!(
            "--soak-requests must be at least {}\n{USAGE}",
            2 * options.soak_reference_after
        ));
    }
    if !external_mode
        && (!external.baselines.is_empty()
            || external.redis.is_some()
            || !external.admins.is_empty()
            || external.redis_stop.is_some()
            || external.redis_start.is_some()
            || external.quota.any()
            || external.pass.limiter.is_some()
            || external.pass.json.is_some()
            || external.pass.sse.is_some())
    {
        return Err(format!(
            "--baseline, --redis, --admin, --redis-stop, --redis-start, --token-quota-* and --limiter-pass go with --stack or --gateway\n{USAGE}"
        ));
    }
    let mut options = options;
    if external_mode {
        options.external = Some(external);
    }
    Ok(options)
}

/// The usage the JSON upstream reports in every answer.
pub const JSON_USAGE: Usage = Usage {
    prompt: 10,
    completion: 20,
    total: Some(30),
};
/// The usage the event-stream upstream reports at the end of every stream.
pub const SSE_USAGE: Usage = Usage {
    prompt: 12,
    completion: 30,
    total: Some(42),
};

/// What every scenario shares: the Redis both gateways count in, webdis in
/// front of it, the upstream Envoys, and where results go.
#[derive(Debug)]
pub struct Bench {
    pub opts: Options,
    pub redis: Redis,
    pub webdis: Webdis,
    pub json_upstream: Envoy,
    pub sse_upstream: Envoy,
    pub results_dir: PathBuf,
    /// Distinguishes this run's Redis keys from earlier runs'.
    pub run_id: String,
}

impl Bench {
    fn start(opts: Options) -> Bench {
        let results_dir = stack::repo_root().join("loadtest").join("results");
        // A partial run must not overwrite the last full report.
        let results_dir = if !opts.only.is_empty() {
            results_dir.join("only")
        } else if opts.smoke {
            results_dir.join("smoke")
        } else {
            results_dir
        };
        std::fs::create_dir_all(results_dir.join("wrk"))
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", results_dir.display()));
        println!("[loadtest] starting redis-server, webdis and two upstream Envoys");
        let redis = Redis::start();
        // 2 threads and 16 Redis connections each: enough that webdis is
        // not the first queue on the Redis path of two gateways.
        let webdis = Webdis::start_with(redis.port(), 2, 16);
        let json_body = String::from_utf8(Reply::openai(JSON_USAGE).body_bytes())
            .expect("the JSON answer is UTF-8");
        let json_upstream = Envoy::start(
            EnvoyConfig::new()
                .direct_response(200, "application/json", &json_body)
                .log_level("warning"),
        );
        let sse_body = String::from_utf8(OpenAiStream::new(SSE_USAGE).bytes())
            .expect("the event stream is UTF-8");
        let sse_upstream = Envoy::start(
            EnvoyConfig::new()
                .direct_response(200, "text/event-stream", &sse_body)
                .log_level("warning"),
        );
        Bench {
            opts,
            redis,
            webdis,
            json_upstream,
            sse_upstream,
            results_dir,
            run_id: format!("{}-{}", std::process::id(), stack::unix_now() as u64),
        }
    }

    /// Where wrk scripts go.
    pub fn script_dir(&self) -> PathBuf {
        self.results_dir.join("wrk")
    }

    /// A rule name unique to this run and `label`.
    pub fn rule(&self, label: &str) -> String {
        format!("lt-{label}-{}", self.run_id)
    }

    /// Commands Redis has executed, by name, from `INFO commandstats`
    /// (commands a Lua script runs are counted too, under their own names),
    /// leaving out `info` (this function's own).
    pub fn redis_commands(&self) -> BTreeMap<String, u64> {
        redis_commands_at(self.redis.port())
    }

    /// The sum of the integer values of every key matching `pattern`.
    pub fn redis_sum(&self, pattern: &str) -> u64 {
        let keys = match self.redis.command(&[b"KEYS", pattern.as_bytes()]) {
            Ok(reply) => reply.bulk_items(),
            Err(e) => panic!("KEYS {pattern}: {e}"),
        };
        keys.iter()
            .map(|key| match self.redis.command(&[b"GET", key]) {
                Ok(stack::resp::Resp::Bulk(Some(v))) => String::from_utf8_lossy(&v)
                    .parse::<u64>()
                    .unwrap_or_else(|_| panic!("key {key:?} holds {v:?}, not a count")),
                other => panic!("GET {:?}: {other:?}", String::from_utf8_lossy(key)),
            })
            .sum()
    }
}

/// Commands the Redis on `127.0.0.1:port` has executed, by name (see
/// [`Bench::redis_commands`]).
///
/// # Panics
/// When Redis does not answer `INFO commandstats`.
pub fn redis_commands_at(port: u16) -> BTreeMap<String, u64> {
    try_redis_commands_at(port).unwrap_or_else(|e| panic!("{e}"))
}

/// [`redis_commands_at`], the failure returned.
pub fn try_redis_commands_at(port: u16) -> Result<BTreeMap<String, u64>, String> {
    let reply = stack::resp::command(port, &[b"INFO", b"commandstats"], Duration::from_secs(5))
        .map_err(|e| format!("INFO commandstats on 127.0.0.1:{port}: {e}"))?;
    let stack::resp::Resp::Bulk(Some(text)) = reply else {
        return Err(format!("INFO commandstats answered {reply:?}"));
    };
    Ok(commandstats(&String::from_utf8_lossy(&text)))
}

/// The sum of the integer values of the keys matching `pattern` whose
/// names end with `suffix`, in the Redis on `127.0.0.1:port`.
///
/// # Panics
/// When Redis does not answer or a key holds something else than a count.
pub fn redis_sum_at(port: u16, pattern: &str, suffix: &str) -> u64 {
    let command = |args: &[&[u8]]| {
        stack::resp::command(port, args, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("Redis 127.0.0.1:{port}: {e}"))
    };
    command(&[b"KEYS", pattern.as_bytes()])
        .bulk_items()
        .iter()
        .filter(|key| key.ends_with(suffix.as_bytes()))
        .map(|key| match command(&[b"GET", key]) {
            stack::resp::Resp::Bulk(Some(v)) => String::from_utf8_lossy(&v)
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("key {key:?} holds {v:?}, not a count")),
            other => panic!("GET {:?}: {other:?}", String::from_utf8_lossy(key)),
        })
        .sum()
}

/// `calls=` of every `cmdstat_<name>` line but `cmdstat_info`.
fn commandstats(info: &str) -> BTreeMap<String, u64> {
    info.lines()
        .filter_map(|line| line.trim().strip_prefix("cmdstat_"))
        .filter_map(|line| {
            let (name, stats) = line.split_once(':')?;
            let calls = stats
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse::<u64>()
                .ok()?;
            (name != "info").then(|| (name.to_owned(), calls))
        })
        .collect()
}

/// What ran between two `INFO commandstats` readings.
pub fn commands_since(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(name, n)| {
            let earlier = before.get(name).copied().unwrap_or(0);
            (name.clone(), n.saturating_sub(earlier))
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Envoy's resident memory in kB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kb(envoy: &Envoy) -> u64 {
    let pid = envoy.pid().expect("Envoy is running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// CPU time Envoy's process has used so far (user + system, every
/// thread), in seconds, from `/proc/<pid>/stat`. Read around a run, it
/// gives the gateway's CPU cost per request, which the machine's drift
/// moves far less than requests/s (a busy neighbour slows the run without
/// making each request cost more cycles).
pub fn cpu_seconds(envoy: &Envoy) -> f64 {
    process_cpu_seconds(envoy.pid().expect("Envoy is running"))
}

/// CPU time process `pid` has used so far (user + system, every thread),
/// in seconds, from `/proc/<pid>/stat`.
pub fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/stat: {e}"));
    // The command name (field 2) may hold spaces; the fields after its
    // closing parenthesis are plain numbers. utime and stime are fields 14
    // and 15, the 12th and 13th after the parenthesis.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|v| {
            v.parse::<u64>()
                .unwrap_or_else(|_| panic!("bad /proc/{pid}/stat: {stat}"))
        })
        .sum();
    ticks as f64 / clock_ticks_per_second()
}

/// Pins every thread of `envoy` to `cpu` (`taskset -a -p`). Threads Envoy
/// starts later inherit it from the thread that starts them.
pub fn pin_to_cpu(envoy: &Envoy, cpu: usize) {
    taskset(envoy, &cpu.to_string());
}

/// Lets every thread of `envoy` run on CPUs `first..=last` again.
pub fn pin_to_cpu_range(envoy: &Envoy, first: usize, last: usize) {
    taskset(envoy, &format!("{first}-{last}"));
}

/// One CPU's time since boot, in clock ticks, from `/proc/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTicks {
    /// Idle or waiting for I/O.
    pub idle: u64,
    /// Taken by the hypervisor for other machines while this one wanted it.
    pub stolen: u64,
    /// Everything, the two above included.
    pub total: u64,
}

impl CpuTicks {
    /// What passed between `earlier` and this reading.
    pub fn since(&self, earlier: &CpuTicks) -> CpuTicks {
        CpuTicks {
            idle: self.idle.saturating_sub(earlier.idle),
            stolen: self.stolen.saturating_sub(earlier.stolen),
            total: self.total.saturating_sub(earlier.total),
        }
    }
}

/// Every CPU's times, by CPU number (`cpuN` lines of `/proc/stat`).
///
/// # Panics
/// When `/proc/stat` cannot be read.
pub fn cpu_ticks() -> Vec<CpuTicks> {
    let stat = std::fs::read_to_string("/proc/stat")
        .unwrap_or_else(|e| panic!("cannot read /proc/stat: {e}"));
    parse_cpu_ticks(&stat)
}

/// The `cpuN` lines of a `/proc/stat` text: user nice system idle iowait
/// irq softirq steal (guest times are already inside user and nice).
fn parse_cpu_ticks(stat: &str) -> Vec<CpuTicks> {
    stat.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .take(8)
                .map(|n| n.parse().unwrap_or(0))
                .collect();
            let at = |i: usize| v.get(i).copied().unwrap_or(0);
            CpuTicks {
                idle: at(3) + at(4),
                stolen: at(7),
                total: v.iter().sum(),
            }
        })
        .collect()
}

/// Pins every thread of process `pid` to `cpu` (`taskset -a -p`).
pub fn pin_process_to_cpu(pid: u32, cpu: usize) {
    taskset_pid(pid, &cpu.to_string());
}

fn taskset(envoy: &Envoy, cpus: &str) {
    taskset_pid(envoy.pid().expect("Envoy is running"), cpus);
}

fn taskset_pid(pid: u32, cpus: &str) {
    let status = std::process::Command::new(stack::require_tool("taskset", "util-linux"))
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run taskset: {e}"));
    assert!(
        status.success(),
        "taskset -a -p -c {cpus} {pid} failed: {status}"
    );
}

/// `getconf CLK_TCK`: the unit of `/proc/<pid>/stat`'s times.
fn clock_ticks_per_second() -> f64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .unwrap_or_else(|e| panic!("cannot run getconf CLK_TCK: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("getconf CLK_TCK printed {:?}", out.stdout))
}

/// Waits long enough that answers still in flight have been counted.
pub fn settle() {
    std::thread::sleep(Duration::from_millis(200));
}

fn main() {
    let opts = match parse_options() {
        Ok(opts) => opts,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    // Fail before starting anything if a piece is missing.
    stack::require_tool("wrk", "wrk");
    report::require_chart_tools();
    if let Some(external) = opts.external.clone() {
        run_external(opts, &external);
    }
    stack::envoy_binary();
    stack::wasm_path("limiter");
    stack::wasm_path("token-quota");

    let started = std::time::Instant::now();
    let machine = report::Machine::read();
    let mut bench = Bench::start(opts);
    let only = bench.opts.only.clone();
    let scenarios = scenarios::run_all(&mut bench, &only);
    let run = report::Run {
        opts: bench.opts.clone(),
        dir: bench.results_dir.clone(),
        stack: "local: started by the load test on 127.0.0.1 (one redis-server behind one webdis, \
                two upstream Envoys, fresh gateway Envoys per scenario)"
            .to_owned(),
        skipped: Vec::new(),
    };
    let results = report::Results::new(run, machine, scenarios, started.elapsed());
    drop(bench);
    let failed = report::write(&results);
    std::process::exit(i32::from(failed > 0));
}

/// The external mode: the scenarios that can run against a stack this
/// did not start, the rest listed as skipped with the reason.
fn run_external(opts: Options, args: &External) -> ! {
    let target = match args.target() {
        Ok(target) => target,
        Err(message) => {
            eprintln!("loadtest: {message}");
            std::process::exit(2);
        }
    };
    let started = std::time::Instant::now();
    let machine = report::Machine::read_external(target.redis_port);
    let base = stack::repo_root().join("loadtest/results/external");
    let dir = if !opts.only.is_empty() {
        base.join("only")
    } else if opts.smoke {
        base.join("smoke")
    } else {
        base
    };
    std::fs::create_dir_all(dir.join("wrk"))
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    println!("[loadtest] external mode: {}", target.description);
    let ext = external::External {
        opts: &opts,
        target: &target,
        script_dir: dir.join("wrk"),
    };
    let (scenarios, skipped) = external::run(&ext, &opts.only, external_pass::run);
    for s in &skipped {
        println!("[loadtest] skipped {}: {}", s.id, s.why);
    }
    let run = report::Run {
        opts: opts.clone(),
        dir,
        stack: target.description.clone(),
        skipped,
    };
    let results = report::Results::new(run, machine, scenarios, started.elapsed());
    let failed = report::write(&results);
    std::process::exit(i32::from(failed > 0));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_read_per_cpu_lines_only() {
        let stat = "cpu  10 0 5 100 2 0 1 3 0 0\ncpu0 4 0 2 50 1 0 0 1 0 0\ncpu1 6 0 3 50 1 0 1 2 0 0\nintr 5\n";
        let cpus = parse_cpu_ticks(stat);
        assert_eq!(cpus.len(), 2);
        assert_eq!(
            cpus[1],
            CpuTicks {
                idle: 51,
                stolen: 2,
                total: 63
            }
        );
    }

    #[test]
    fn commandstats_reads_calls_without_info() {
        let info = "# Commandstats\r\n\
            cmdstat_evalsha:calls=120,usec=900,usec_per_call=7.50,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_info:calls=7,usec=70,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_get:calls=3,usec=3,usec_per_call=1.00,rejected_calls=0,failed_calls=0\r\n";
        let calls = commandstats(info);
        assert_eq!(calls.len(), 2);
        assert_eq!(calls["evalsha"], 120);
        assert_eq!(calls["get"], 3);
        assert!(commandstats("# Commandstats\r\n").is_empty());
        let later = commandstats(&info.replace("calls=120", "calls=150"));
        let ran = commands_since(&calls, &later);
        assert_eq!(
            ran.into_iter().collect::<Vec<_>>(),
            [("evalsha".to_owned(), 30)]
        );
    }
}
