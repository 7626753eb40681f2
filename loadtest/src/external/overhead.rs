//! The external stack under steady load: its no-filter route, and its
//! limiter over its limit (the over-limit cache answers).

use std::time::Duration;

use super::measure::{current_window, measure, Drive, External};
use crate::scenario::{announce, Kind, Scenario};
use crate::wrk::{Listener, Requests};

pub(super) fn baseline(ext: &External<'_>) -> Option<Scenario> {
    let gateway = ext.target.gateways.first()?;
    let port = gateway.baseline_port?;
    let title = format!("baseline: the stack's no-filter route (127.0.0.1:{port})");
    announce(&title);
    let listeners: Vec<Listener> = gateway.baseline_listener.iter().cloned().collect();
    let drive = Drive {
        seconds: ext.opts.seconds,
        connections: ext.opts.connections,
        requests: Requests::Get,
        warm_up: true,
    };
    let m = measure(ext, "baseline", &[port], &listeners, drive);
    let mut s = Scenario::new("baseline", &title, Kind::Overhead, m.wrk);
    s.connections = drive.connections;
    s.redis_calls = Some(m.redis_commands.values().sum());
    s.redis_commands = m.redis_commands;
    s.samples = m.samples;
    s.check_answers(&[200]);
    Some(s)
}

pub(super) fn limiter_flood(ext: &External<'_>, limit: u64) -> Option<Scenario> {
    let gateway = ext.target.gateways.first()?;
    let title =
        format!("limiter of the stack, over its limit ({limit}/min; the over-limit cache answers)");
    announce(&title);
    let drive = Drive {
        seconds: ext.opts.seconds,
        connections: ext.opts.connections,
        requests: Requests::Get,
        warm_up: true,
    };
    // One window for the whole run, its budget used up first, so every
    // measured request is over the limit.
    let window = stack::wait_for_window_room(
        Duration::from_secs(60),
        Duration::from_secs(drive.seconds + 4),
    );
    for _ in 0..=limit {
        match stack::get(gateway.port, "/", &[]) {
            Ok(answer) if answer.status == 429 => break,
            Ok(_) => {}
            Err(e) => panic!("{}: {e}", gateway.name),
        }
    }
    let listeners: Vec<Listener> = gateway.listener.iter().cloned().collect();
    let m = measure(ext, "limiter-flood", &[gateway.port], &listeners, drive);
    let ended_in = current_window();
    let mut s = Scenario::new("limiter-flood", &title, Kind::Overhead, m.wrk);
    s.baseline = gateway.baseline_port.map(|_| "baseline");
    s.connections = drive.connections;
    s.redis_calls = Some(m.redis_commands.values().sum());
    s.redis_commands = m.redis_commands;
    s.samples = m.samples;
    s.check(
        "the run stayed in one per-minute window",
        window == ended_in,
        format!("started in window {window}, ended in {ended_in}"),
    );
    s.check_answers(&[429]);
    // Round trips, not commands: `INFO commandstats` also counts the
    // commands a script runs inside Redis (each recheck's EVALSHA runs an
    // INCRBY), which cost no trip from the gateway.
    let round_trips = ["evalsha", "eval", "get"];
    let per_request = s.per_request(&round_trips);
    s.check(
        "Redis round trips per request approach 0 under the flood",
        per_request < 0.001,
        format!(
            "{} round trips (evalsha/eval/get) for {} requests ({per_request:.6} per request); \
             commands: {}",
            round_trips
                .iter()
                .map(|c| s.redis_commands.get(*c).copied().unwrap_or(0))
                .sum::<u64>(),
            s.wrk.requests,
            s.redis_commands_text()
        ),
    );
    Some(s)
}
