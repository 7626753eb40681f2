//! The long and the broken runs of the external stack: the soak (its run
//! shared with the local one, `soak.rs`), and Redis stopped and started by
//! the user's commands mid-run.

// serde_json's `Value` index answers `Null` for a missing key or position;
// it never panics.
#![allow(clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use serde_json::Value;

use super::measure::External;
use crate::redis_stats::commands_since;
use crate::scenario::{announce, Kind, Scenario};
use crate::soak;
use crate::wrk::{self, Listener, Load, Progress, Requests};

/// Bytes the gateway's allocator holds (`allocated` of the admin's
/// `/memory`): the external mode cannot read the process's RSS.
pub(super) fn allocated(admin_port: u16) -> Option<u64> {
    let page = stack::get_with_timeout(admin_port, "/memory", &[], Duration::from_secs(2)).ok()?;
    let memory: Value = serde_json::from_slice(&page.body).ok()?;
    memory["allocated"].as_str()?.parse().ok()
}

pub(super) fn soak(ext: &External<'_>, per_minute: u64) -> Option<Scenario> {
    let gateway = ext.target.gateways.first()?;
    let target = ext.opts.soak_requests;
    let title = format!(
        "soak: the stack's limiter, {target} requests over the flood path ({per_minute}/min)"
    );
    announce(&title);
    let load = Load {
        port: gateway.port,
        seconds: ext.opts.soak_phase_seconds,
        connections: ext.opts.connections,
        requests: Requests::Get,
        timeout: Duration::from_secs(2),
        cpu: None,
    };
    let memory = soak::Memory {
        name: "allocated",
        unit: "B",
        check: "the gateway's allocated memory (admin /memory) at the end is within 5% of its early value",
        read: &|| gateway.admin_port.and_then(allocated),
        not_measured: gateway
            .admin_port
            .is_none()
            .then_some("not measured: no admin port given (--admin URL)"),
        missing: "the admin's /memory did not answer, or the soak stopped early".to_owned(),
    };
    let size = soak::Size {
        requests: target,
        reference_after: ext.opts.soak_reference_after,
        per_minute,
    };
    Some(soak::run(
        &title,
        &load,
        &ext.script_dir,
        size,
        &memory,
        &|| ext.redis_commands(),
    ))
}

/// Runs a user's shell command that stops or starts the stack's Redis.
pub(super) fn shell(what: &str, command: &str) -> Result<(), String> {
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", command]);
    stack::kill_with_this_thread(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| format!("{what}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{what} `{command}` failed: {status}")),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what} `{command}` ran over 60 s; killed"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("{what}: {e}")),
        }
    }
}

/// Redis stopped and started by the user's commands while the limiter
/// runs under load. The stack's limiter decides what an outage answers
/// (its `failure_mode_deny`), so this checks what holds either way: no
/// request hangs, no socket errors, only 200/429/503, and Redis counts
/// again after the restart with nothing done by hand.
pub(super) fn faults(ext: &External<'_>) -> Option<Scenario> {
    let (Some(stop), Some(start)) = (&ext.target.redis_stop, &ext.target.redis_start) else {
        return None;
    };
    let gateway = ext.target.gateways.first()?;
    let opts = ext.opts;
    let title = format!(
        "faults: the stack's Redis stopped for {} s mid-run by `{stop}`",
        opts.fault_gap
    );
    announce(&title);
    let seconds = opts.fault_before + opts.fault_gap + opts.fault_after;
    let load = Load {
        port: gateway.port,
        seconds,
        connections: opts.connections,
        requests: Requests::Get,
        timeout: Duration::from_secs(3),
        cpu: None,
    };
    let listeners: Vec<Listener> = gateway.listener.iter().cloned().collect();
    let progress = Progress::start_on("faults", &listeners, seconds);
    let started = Instant::now();
    let (result, stopped_at, restarted_at, control, recovered) = std::thread::scope(|scope| {
        let run = scope.spawn(|| wrk::run(&load, &ext.script_dir));
        std::thread::sleep(Duration::from_secs(opts.fault_before));
        let stopped_at = started.elapsed().as_secs_f64();
        let stopped = shell("--redis-stop", stop);
        println!("[loadtest]   faults: Redis stopped at {stopped_at:.1} s ({stopped:?})");
        std::thread::sleep(Duration::from_secs(opts.fault_gap));
        let restarted_at = started.elapsed().as_secs_f64();
        let restarted = shell("--redis-start", start);
        println!("[loadtest]   faults: Redis started again at {restarted_at:.1} s ({restarted:?})");
        // Two seconds for the gateway to reconnect, then count what
        // reaches Redis until the run ends.
        std::thread::sleep(Duration::from_secs(2));
        let recovered = crate::redis_stats::try_redis_commands_at(ext.target.redis_port).ok();
        let result = run
            .join()
            .unwrap_or_else(|_| panic!("faults: wrk thread panicked"));
        (
            result,
            stopped_at,
            restarted_at,
            stopped.and(restarted),
            recovered,
        )
    });
    let samples = progress.finish();
    let after = recovered.map(|before| commands_since(&before, &ext.redis_commands()));
    let mut s = Scenario::new("faults", &title, Kind::Faults, result);
    s.connections = opts.connections;
    s.samples = samples;
    s.fact("Redis stopped at", format!("{stopped_at:.1} s"));
    s.fact("Redis started again at", format!("{restarted_at:.1} s"));
    s.check(
        "the stop and start commands succeeded",
        control.is_ok(),
        control
            .err()
            .unwrap_or_else(|| format!("`{stop}`, then `{start}`")),
    );
    s.check_answers(&[200, 429, 503]);
    let max = Duration::from_micros(s.wrk.latency_us.max);
    s.check(
        "no request hung (slowest answer under 2 s, no wrk timeouts)",
        s.wrk.errors.timeout == 0 && max <= Duration::from_secs(2),
        format!(
            "slowest answer {:.1} ms, {} wrk timeouts",
            max.as_secs_f64() * 1e3,
            s.wrk.errors.timeout
        ),
    );
    s.check(
        "Redis counts again after the restart, with nothing done by hand",
        after.as_ref().is_some_and(|a| a.values().sum::<u64>() > 0),
        match &after {
            Some(a) => format!(
                "from 2 s after the restart to the end of the run: {}",
                if a.is_empty() {
                    "no commands".to_owned()
                } else {
                    format!("{a:?}")
                }
            ),
            None => "Redis did not answer INFO 2 s after the restart".to_owned(),
        },
    );
    Some(s)
}
