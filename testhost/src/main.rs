//! `testhost`: replay requests through a proxy-wasm module, printing one
//! JSON line per request.
//!
//! ```text
//! cargo run -p testhost -- --module M.wasm --config C.json --requests R.jsonl
//!     [--redis CLUSTER=HOST:PORT]... [--start-redis CLUSTER]
//!     [--property NAME=VALUE]... [--log-level N] [--every N]
//! ```
//!
//! `--start-redis` starts a private `redis-server` on loopback for CLUSTER
//! (e.g. `outbound|6379||redis.dns`), which `{"redis":"stop"}` lines in the
//! request file stop and start again. See `testhost/README.md`.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use testhost::script::{parse_line, RedisStep, Step};
use testhost::{Host, Setup};

const USAGE: &str = "usage: testhost --module M.wasm --config C.json --requests R.jsonl \
[--redis CLUSTER=HOST:PORT]... [--start-redis CLUSTER] [--property NAME=VALUE]... [--log-level N] [--every N]";

#[derive(Default)]
struct Args {
    module: Option<PathBuf>,
    config: Option<PathBuf>,
    requests: Option<PathBuf>,
    setup: Setup,
    start_redis: Option<String>,
    every: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.to_string());
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag}: needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--module" => args.module = Some(value.into()),
            "--config" => args.config = Some(value.into()),
            "--requests" => args.requests = Some(value.into()),
            "--start-redis" => args.start_redis = Some(value),
            "--every" => {
                args.every =
                    value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("--every: must be a positive integer, got {value}")
                    })?
            }
            "--log-level" => {
                args.setup.log_level = value
                    .parse()
                    .map_err(|_| format!("--log-level: must be 0..5, got {value}"))?
            }
            "--redis" => {
                let (cluster, addr) = value
                    .rsplit_once('=')
                    .ok_or_else(|| format!("--redis: must be CLUSTER=HOST:PORT, got {value}"))?;
                let addr = addr
                    .parse()
                    .map_err(|_| format!("--redis: {addr} is not HOST:PORT"))?;
                args.setup.redis.push((cluster.to_string(), addr));
            }
            "--property" => {
                let (name, v) = value
                    .split_once('=')
                    .ok_or_else(|| format!("--property: must be NAME=VALUE, got {value}"))?;
                args.setup
                    .properties
                    .insert(name.to_string(), v.as_bytes().to_vec());
            }
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    Ok(args)
}

fn run() -> Result<(), String> {
    let mut args = parse_args()?;
    let every = args.every.max(1);
    let module = args.module.clone().ok_or(USAGE)?;
    let config = match &args.config {
        Some(p) => std::fs::read(p).map_err(|e| format!("--config {}: {e}", p.display()))?,
        None => Vec::new(),
    };
    let requests = args.requests.clone().ok_or(USAGE)?;
    let mut redis = match &args.start_redis {
        Some(cluster) => {
            let r = stack::Redis::try_start().map_err(|e| format!("--start-redis: {e}"))?;
            let addr = format!("127.0.0.1:{}", r.port())
                .parse()
                .map_err(|e| format!("--start-redis: {e}"))?;
            args.setup.redis.push((cluster.clone(), addr));
            Some(r)
        }
        None => None,
    };
    let mut host = Host::load_file(&module, &config, args.setup).map_err(|e| e.to_string())?;
    let file = std::fs::File::open(&requests)
        .map_err(|e| format!("--requests {}: {e}", requests.display()))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut n = 0;
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", requests.display()))?;
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let step =
            parse_line(&line).map_err(|e| format!("{}:{}: {e}", requests.display(), i + 1))?;
        match step {
            Step::Request {
                request,
                repeat,
                advance_ms,
            } => {
                for _ in 0..repeat {
                    if advance_ms > 0 {
                        host.advance(Duration::from_millis(advance_ms))
                            .map_err(|e| e.to_string())?;
                    }
                    n += 1;
                    let ex = host.run(&request);
                    if n == 1 || n % every == 0 {
                        let report = testhost::report::line(n, &request, &ex);
                        writeln!(out, "{report}").map_err(|e| e.to_string())?;
                    }
                }
            }
            Step::Advance { ms } => host
                .advance(Duration::from_millis(ms))
                .map_err(|e| e.to_string())?,
            Step::HttpAnswer { cluster, answer } => host.answer_http(&cluster, vec![answer]),
            Step::Redis(what) => {
                let r = redis.as_mut().ok_or_else(|| {
                    format!(
                        "{}:{}: a redis step needs --start-redis",
                        requests.display(),
                        i + 1
                    )
                })?;
                match what {
                    RedisStep::Stop => r.stop(),
                    RedisStep::Start => r.restart(),
                    RedisStep::Freeze => r.freeze(),
                    RedisStep::Thaw => r.thaw(),
                }
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("testhost: {e}");
            ExitCode::FAILURE
        }
    }
}
