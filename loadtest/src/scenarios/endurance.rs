//! The long and the broken runs of the local stack: the soak (its run
//! shared with the external mode, `soak.rs`) and Redis stopped mid-run.

use std::time::{Duration, Instant};

use super::gateways::{limiter_config, limiter_gateway, REDIS_TIMEOUT_MS};
use crate::bench::Bench;
use crate::process_stats::rss_kb;
use crate::scenario::{announce, Kind, Scenario};
use crate::soak;
use crate::wrk::{self, Counters, Load, Progress, Requests};

pub(super) fn soak(bench: &Bench) -> Scenario {
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
    let load = Load {
        port: gateway.port(),
        seconds: bench.opts.soak_phase_seconds,
        connections: bench.opts.connections,
        requests: Requests::Get,
        timeout: Duration::from_secs(2),
        cpu: None,
    };
    let memory = soak::Memory {
        name: "Envoy RSS",
        unit: "kB",
        check: "Envoy's resident memory at the end is within 5% of its early value",
        read: &|| Some(rss_kb(&gateway)),
        not_measured: None,
        missing: format!("the soak never reached {reference_at} requests"),
    };
    let size = soak::Size {
        requests: target,
        reference_after: reference_at,
        per_minute,
    };
    soak::run(&title, &load, &bench.script_dir(), size, &memory, &|| {
        bench.redis_commands()
    })
}

pub(super) fn faults(bench: &mut Bench) -> Scenario {
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
