//! The load test's command line: parses the arguments, starts the local
//! stack and runs its scenarios, or drives an external stack
//! (`--stack compose`, `--gateway ...`), writes the report, and exits 1 if
//! any check failed (2 for bad arguments). The measuring is the `loadtest`
//! library's (`lib.rs` describes both modes).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use loadtest::bench::Bench;
use loadtest::options::{External, Options};
use loadtest::{external, report, scenarios};

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
            || external.pass.any())
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
    let (scenarios, skipped) = external::run(&ext, &opts.only);
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
