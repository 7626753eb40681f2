//! One measured run of the local stack: wrk against every gateway at once,
//! with a warm-up, progress lines, and Redis commands, CPU times and the
//! machine's CPU ticks read around it; and the one-gateway overhead run
//! built on it.

use std::collections::BTreeMap;
use std::time::Duration;

use stack::Envoy;

use crate::bench::Bench;
use crate::process_stats::{cpu_seconds, cpu_ticks, process_cpu_seconds, CpuTicks};
use crate::redis_stats::commands_since;
use crate::scenario::{announce, Kind, Scenario};
use crate::wrk::{self, settle, Load, Progress, Requests, Sample, WrkResult};

/// How to drive one measured run.
#[derive(Debug, Clone, Copy)]
pub(super) struct Drive<'a> {
    pub(super) seconds: u64,
    /// Connections per gateway.
    pub(super) connections: u32,
    pub(super) requests: Requests<'a>,
    /// A 1 s run first, not measured (V8 tiers up, connections open).
    pub(super) warm_up: bool,
    pub(super) timeout: Duration,
    /// The CPU every wrk runs on; `None` lets the kernel choose.
    pub(super) wrk_cpu: Option<usize>,
}

impl<'a> Drive<'a> {
    /// One wrk run of this drive against `port`, `seconds` long.
    pub(super) fn load(&self, port: u16, seconds: u64) -> Load<'a> {
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
pub(super) struct Measured {
    pub(super) wrk: WrkResult,
    /// Per gateway, in order.
    pub(super) per_gateway: Vec<WrkResult>,
    pub(super) redis_commands: BTreeMap<String, u64>,
    pub(super) samples: Vec<Sample>,
    /// Each gateway's CPU time during the run, in seconds, in order.
    pub(super) cpu_seconds: Vec<f64>,
    /// Redis's and webdis's CPU time during the run, in seconds: on this
    /// machine they share the gateways' cores, so their work per request
    /// is part of what a Redis round trip costs the gateway's throughput.
    pub(super) backend_cpu_seconds: f64,
    /// Each CPU's times during the run, by CPU number.
    pub(super) machine: Vec<CpuTicks>,
}

/// A 1 s wrk run against each gateway in turn, not measured (V8 tiers up,
/// connections open); none with `--smoke`.
pub(super) fn warm_up(bench: &Bench, gateways: &[&Envoy], drive: &Drive<'_>) {
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
pub(super) fn measure(
    bench: &Bench,
    label: &str,
    gateways: &[&Envoy],
    drive: Drive<'_>,
) -> Measured {
    let script_dir = bench.script_dir();
    if drive.warm_up {
        warm_up(bench, gateways, &drive);
    }
    let admin: Vec<u16> = gateways.iter().map(|g| g.admin_port()).collect();
    let cpu = || -> Vec<f64> { gateways.iter().map(|g| cpu_seconds(g)).collect() };
    let backend_cpu = || -> f64 {
        [bench.redis.pid(), bench.webdis.pid()]
            .into_iter()
            .flatten()
            .map(process_cpu_seconds)
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
        let machine_before = cpu_ticks();
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
    let machine = cpu_ticks()
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

pub(super) fn overhead_drive<'a>(bench: &Bench, requests: Requests<'a>) -> Drive<'a> {
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
pub(super) fn overhead(
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

/// Waits until `seconds` of load (and 3 s of slack) fit in the current
/// per-minute window, so a run meets one window only.
pub(super) fn align_to_minute(seconds: u64) -> u64 {
    let window =
        stack::wait_for_window_room(Duration::from_secs(60), Duration::from_secs(seconds + 3));
    println!(
        "[loadtest]   aligned to the window starting at {window} ({:.1} s into it)",
        stack::unix_now() - window as f64
    );
    window
}
