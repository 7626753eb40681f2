//! The results: `results.json` (everything measured), `report.md` (tables,
//! checks, charts) and the PNG charts `loadtest/charts.py` draws, all under
//! `loadtest/results/` (`loadtest/results/smoke/` for `--smoke`); the
//! summary table is printed at the end.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Serialize;

use crate::options::Options;
use crate::scenario::{median_ratio, Kind, Scenario, Skipped};
use crate::wrk::format_ms;

/// What a run was and where its results go.
#[derive(Debug, Clone)]
pub struct Run {
    pub opts: Options,
    pub dir: PathBuf,
    /// The stack driven, in one line (the report's header).
    pub stack: String,
    /// Scenarios of the local run that did not run, with the reason.
    pub skipped: Vec<Skipped>,
}

/// The limiter's flood path must reach this share of the req/s of the
/// cheapest possible Wasm refusal (`loadtest/wasm/refuse.wat`) in the same
/// shared-CPU rounds: no Wasm filter can beat that floor on this host, so
/// the target measures what the limiter adds over it.
const FLOOD_TARGET: f64 = 0.95;

/// What the numbers were taken on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub kernel: String,
    /// `/proc/loadavg` when the run started: other work on the machine.
    pub load_average_at_start: String,
    pub envoy: String,
    pub wrk: String,
    pub redis: String,
}

fn first_line(program: &Path, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(out) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            text.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("")
                .to_owned()
        }
        Err(e) => format!("<{}: {e}>", program.display()),
    }
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or("unknown".to_owned(), |(_, v)| v.trim().to_owned());
        Machine {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            load_average_at_start: std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            // `<path>  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL`
            envoy: first_line(&stack::envoy_binary(), &["--version"])
                .split("version: ")
                .nth(1)
                .unwrap_or("unknown")
                .to_owned(),
            // `wrk debian/4.1.0-3+b2 [epoll] Copyright (C) ...`
            wrk: first_line(&stack::require_tool("wrk", "wrk"), &["-v"])
                .split(" Copyright")
                .next()
                .unwrap_or("wrk")
                .to_owned(),
            redis: first_line(
                &stack::require_tool("redis-server", "redis-server"),
                &["--version"],
            ),
        }
    }

    /// The machine the load test runs on, for a stack it did not start:
    /// Envoy's version is the stack's (in its description), Redis's from
    /// its `INFO server`.
    pub fn read_external(redis_port: u16) -> Machine {
        let redis = stack::resp::command(redis_port, &[b"INFO", b"server"], Duration::from_secs(5))
            .ok()
            .and_then(|reply| match reply {
                stack::resp::Resp::Bulk(Some(text)) => String::from_utf8_lossy(&text)
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("redis_version:").map(str::to_owned)),
                _ => None,
            })
            .map_or("Redis version unknown".to_owned(), |v| {
                format!("Redis {v} (the stack's)")
            });
        let mut machine = Machine {
            envoy: "the stack's (see stack)".to_owned(),
            redis,
            ..Machine::local_parts()
        };
        machine.wrk = first_line(&stack::require_tool("wrk", "wrk"), &["-v"])
            .split(" Copyright")
            .next()
            .unwrap_or("wrk")
            .to_owned();
        machine
    }

    fn local_parts() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Machine {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map_or("unknown".to_owned(), |(_, v)| v.trim().to_owned()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            load_average_at_start: std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            envoy: String::new(),
            wrk: String::new(),
            redis: String::new(),
        }
    }
}

/// A scenario's speed against its baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub id: &'static str,
    pub baseline: &'static str,
    pub requests_per_sec: f64,
    pub baseline_requests_per_sec: f64,
    /// req/s divided by the baseline's.
    pub throughput: f64,
    /// p50 and p99 divided by the baseline's.
    pub p50: f64,
    pub p99: f64,
}

/// A goal that is reported, met or not, without failing the run (speed
/// depends on the machine; correctness checks do fail it).
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub what: String,
    pub met: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub date_utc: String,
    pub command: String,
    pub wall_seconds: f64,
    pub options: Options,
    pub machine: Machine,
    /// The stack driven: started here (`local`) or someone else's.
    pub stack: String,
    /// Scenarios that did not run, with the reason.
    pub skipped: Vec<Skipped>,
    pub scenarios: Vec<Scenario>,
    pub ratios: Vec<Ratio>,
    pub targets: Vec<Target>,
    pub checks_failed: usize,
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Results {
    pub fn new(run: Run, machine: Machine, scenarios: Vec<Scenario>, wall: Duration) -> Results {
        let ratios: Vec<Ratio> = scenarios
            .iter()
            .filter_map(|s| {
                let base = scenarios.iter().find(|b| Some(b.id) == s.baseline)?;
                let div = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
                Some(Ratio {
                    id: s.id,
                    baseline: base.id,
                    requests_per_sec: s.wrk.requests_per_sec,
                    baseline_requests_per_sec: base.wrk.requests_per_sec,
                    throughput: div(s.wrk.requests_per_sec, base.wrk.requests_per_sec),
                    p50: div(s.wrk.latency_us.p50 as f64, base.wrk.latency_us.p50 as f64),
                    p99: div(s.wrk.latency_us.p99 as f64, base.wrk.latency_us.p99 as f64),
                })
            })
            .collect();
        // Judged on the shared-CPU rounds, which cancel the machine's
        // drift; the single runs above are reported beside them.
        let targets: Vec<Target> = scenarios
            .iter()
            .filter(|s| s.id == "limiter-flood-paired")
            .filter_map(|s| {
                let median = median_ratio(&s.floor_rounds)?;
                let rounds: Vec<String> = s
                    .floor_rounds
                    .iter()
                    .map(|(floor, over)| format!("{over:.0}/{floor:.0} = {:.2}x", over / floor))
                    .collect();
                // For context, the same rounds against no filter.
                let context: Vec<String> = s
                    .facts
                    .iter()
                    .filter(|(name, _)| {
                        name.starts_with("median ratio") && name.ends_with("/ baseline")
                    })
                    .map(|(name, value)| {
                        format!("{}: {value}", name.trim_start_matches("median ratio, "))
                    })
                    .collect();
                Some(Target {
                    what: format!(
                        "limiter flood path at least {FLOOD_TARGET:.2}x the req/s of the cheapest \
                         Wasm refusal (loadtest/wasm/refuse.wat) in the same shared-CPU rounds"
                    ),
                    met: median >= FLOOD_TARGET,
                    detail: format!(
                        "median {median:.2}x over {} rounds on one shared CPU (limiter/cheapest \
                         refusal req/s): {}; beside them, medians against no filter: {}",
                        s.floor_rounds.len(),
                        rounds.join(", "),
                        context.join("; ")
                    ),
                })
            })
            .chain(scenarios.iter().flat_map(stated_targets))
            .collect();
        let checks_failed = scenarios
            .iter()
            .flat_map(|s| &s.checks)
            .filter(|c| !c.passed)
            .count();
        let args: Vec<String> = std::env::args().skip(1).collect();
        let command = if args.is_empty() {
            "cargo run --release -p loadtest".to_owned()
        } else {
            format!("cargo run --release -p loadtest -- {}", args.join(" "))
        };
        Results {
            date_utc: first_line(Path::new("date"), &["-u", "+%Y-%m-%d %H:%M UTC"]),
            command,
            wall_seconds: wall.as_secs_f64(),
            options: run.opts,
            machine,
            stack: run.stack,
            skipped: run.skipped,
            scenarios,
            ratios,
            targets,
            checks_failed,
            dir: run.dir,
        }
    }

    fn ratio(&self, id: &str) -> Option<&Ratio> {
        self.ratios.iter().find(|r| r.id == id)
    }
}

/// The targets a scenario states as facts named `<subject>: target ...`
/// whose value starts with `met` or `NOT met` (the paired Redis-path
/// scenarios).
fn stated_targets(s: &Scenario) -> Vec<Target> {
    s.facts
        .iter()
        .filter(|(name, _)| name.contains(": target "))
        .filter_map(|(name, value)| {
            let (met, rest) = if let Some(rest) = value.strip_prefix("met") {
                (true, rest)
            } else if let Some(rest) = value.strip_prefix("NOT met") {
                (false, rest)
            } else {
                return None;
            };
            let detail = rest.trim().trim_start_matches('(').trim_end_matches(')');
            Some(Target {
                what: format!("{} ({})", name.replacen(": target ", ": ", 1), s.id),
                met,
                detail: detail.to_owned(),
            })
        })
        .collect()
}

/// The Python with matplotlib that `scripts/setup.sh` installs.
fn python() -> PathBuf {
    stack::repo_root().join(".venv/bin/python")
}

/// Fails now, before any load, if the charts could not be drawn at the end.
pub fn require_chart_tools() {
    let python = python();
    let ok = Command::new(&python)
        .args(["-c", "import matplotlib"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "{} cannot import matplotlib, which draws the load test's charts: {}",
            python.display(),
            stack::SETUP_HINT
        );
        std::process::exit(2);
    }
}

/// The summary table: every scenario with its speed and answers.
pub fn summary_table(results: &Results) -> String {
    let mut out = String::new();
    out.push_str(
        "| scenario | req/s | × baseline | p50 | p90 | p99 | p99.9 | answers | Redis commands/request | checks |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---|---:|---|\n");
    for s in &results.scenarios {
        let l = &s.wrk.latency_us;
        let ratio = match median_ratio(&s.rounds) {
            Some(median) => format!("{median:.2} (median)"),
            None => results
                .ratio(s.id)
                .map_or("-".to_owned(), |r| format!("{:.2}", r.throughput)),
        };
        let calls = s
            .redis_calls_per_request()
            .map_or("-".to_owned(), |c| format!("{c:.4}"));
        let failed = s.checks.iter().filter(|c| !c.passed).count();
        let checks = if failed == 0 {
            format!("{} ok", s.checks.len())
        } else {
            format!("**{failed} of {} FAILED**", s.checks.len())
        };
        let _ = writeln!(
            out,
            "| {} | {:.0} | {ratio} | {} | {} | {} | {} | {} | {calls} | {checks} |",
            s.title,
            s.wrk.requests_per_sec,
            format_ms(l.p50),
            format_ms(l.p90),
            format_ms(l.p99),
            format_ms(l.p99_9),
            s.wrk.statuses_text(),
        );
    }
    out
}

fn markdown(results: &Results) -> String {
    let m = &results.machine;
    let o = &results.options;
    let mut out = String::new();
    let _ = writeln!(out, "# Load test results\n");
    let setup = if results.skipped.is_empty() && results.stack.starts_with("local") {
        format!(
            "each gateway is Envoy `--concurrency 1`; wrk `-t1`, {} connections per gateway for \
             the overhead rows ({} s each after a 1 s warm-up), on loopback; one redis-server \
             behind one webdis (2 threads) shared by all gateways; upstreams are Envoy \
             `direct_response` listeners",
            o.connections, o.seconds
        )
    } else {
        format!(
            "the stack above, as it runs; wrk `-t1`, {} connections per gateway for the overhead \
             rows ({} s each after a 1 s warm-up), on loopback",
            o.connections, o.seconds
        )
    };
    let _ = writeln!(
        out,
        "- **date**: {}\n- **command**: `{}` ({})\n- **stack**: {}\n- **machine**: {} cores, {}, \
         Linux {}; load average at start: {}\n- **software**: Envoy {}; {}; {}\n- **setup**: \
         {setup}\n- **wall time**: {:.0} s\n",
        results.date_utc,
        results.command,
        if o.smoke {
            "smoke: every scenario tiny, numbers not meaningful"
        } else {
            "full run"
        },
        results.stack,
        m.cores,
        m.cpu,
        m.kernel,
        m.load_average_at_start,
        m.envoy,
        m.wrk,
        m.redis,
        results.wall_seconds,
    );
    if !results.skipped.is_empty() {
        let _ = writeln!(out, "## Not run against this stack\n");
        for s in &results.skipped {
            let _ = writeln!(out, "- `{}`: {}", s.id, s.why);
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "## Summary\n\n{}\n`× baseline` is req/s divided by the no-filter run named in the \
         scenario's section (Envoy answering itself for the limiter and `local_ratelimit` rows, \
         Envoy routing to the upstream for the token quota rows); for the shared-CPU \
         row it is the median of its rounds' ratios, each against a no-filter gateway loaded \
         at the same time on the same CPU. `Redis commands/request` is \
         from `INFO commandstats` before and after the measured run and counts the commands a \
         Lua script runs as well (the limiter's EVALSHA runs INCR: 2 commands, 1 round trip); \
         each section lists them by name.\n",
        summary_table(results)
    );
    for t in &results.targets {
        let _ = writeln!(
            out,
            "**Target** {}: **{}** ({}).\n",
            t.what,
            if t.met { "met" } else { "NOT met" },
            t.detail
        );
    }
    let _ = writeln!(
        out,
        "![latency percentiles per scenario](latency.png)\n\n\
         ![requests per second beside the baseline](throughput.png)\n"
    );
    let sections = [
        (Kind::Overhead, "Overhead"),
        (Kind::Accuracy, "Accuracy under concurrency"),
        (Kind::Soak, "Soak"),
        (Kind::Faults, "Faults"),
    ];
    for (kind, heading) in sections {
        let _ = writeln!(out, "## {heading}\n");
        for s in results.scenarios.iter().filter(|s| s.kind == kind) {
            let _ = writeln!(
                out,
                "### {}\n\n{} requests in {:.1} s ({:.0} req/s) over {} gateway(s), {} connections; \
                 answers: {}; Redis commands: {}.\n",
                s.title,
                s.wrk.requests,
                s.wrk.seconds,
                s.wrk.requests_per_sec,
                s.gateways,
                s.connections,
                s.wrk.statuses_text(),
                s.redis_calls.map_or("-".to_owned(), |c| c.to_string()),
            );
            if let Some(r) = results.ratio(s.id) {
                let _ = writeln!(
                    out,
                    "- against `{}`: {:.2}x its req/s, {:.2}x its p50, {:.2}x its p99",
                    r.baseline, r.throughput, r.p50, r.p99
                );
            }
            if s.redis_calls.is_some() {
                let _ = writeln!(out, "- Redis commands: {}", s.redis_commands_text());
            }
            for (name, value) in &s.facts {
                let _ = writeln!(out, "- {name}: {value}");
            }
            out.push('\n');
            for c in &s.checks {
                let _ = writeln!(
                    out,
                    "- {} {}: {}",
                    if c.passed { "✅" } else { "❌ **FAILED**" },
                    c.what,
                    c.detail
                );
            }
            out.push('\n');
        }
    }
    let _ = writeln!(
        out,
        "---\n{} of {} checks failed. Machine-readable: `results.json` beside this file.",
        results.checks_failed,
        results
            .scenarios
            .iter()
            .map(|s| s.checks.len())
            .sum::<usize>()
    );
    out
}

/// Writes everything, prints the summary, and returns how many checks
/// failed.
pub fn write(results: &Results) -> usize {
    let dir = &results.dir;
    let json_path = dir.join("results.json");
    let json = serde_json::to_string_pretty(results).expect("results serialize");
    std::fs::write(&json_path, json)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", json_path.display()));
    let charts = stack::repo_root().join("loadtest/charts.py");
    let drawn = Command::new(python())
        .arg(&charts)
        .arg(&json_path)
        .arg(dir)
        .status();
    let mut charts_failed = false;
    match drawn {
        Ok(status) if status.success() => {}
        other => {
            eprintln!(
                "[loadtest] FAIL: {} did not draw the charts: {other:?}",
                charts.display()
            );
            charts_failed = true;
        }
    }
    let md_path = dir.join("report.md");
    std::fs::write(&md_path, markdown(results))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", md_path.display()));

    println!("\n{}", summary_table(results));
    for t in &results.targets {
        println!(
            "Target: {}: {} ({})",
            t.what,
            if t.met { "met" } else { "NOT met" },
            t.detail
        );
    }
    if !results.skipped.is_empty() {
        println!("Stack: {}", results.stack);
    }
    for s in &results.skipped {
        println!("Not run: {}: {}", s.id, s.why);
    }
    for s in &results.scenarios {
        for c in s.checks.iter().filter(|c| !c.passed) {
            println!("FAILED [{}] {}: {}", s.id, c.what, c.detail);
        }
    }
    println!(
        "{} checks failed; {:.0} s; results in {} (report.md, results.json, latency.png, throughput.png)",
        results.checks_failed,
        results.wall_seconds,
        dir.display()
    );
    results.checks_failed + usize::from(charts_failed)
}
