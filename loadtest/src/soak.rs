//! The soak, shared by the local run and the external mode: the limiter's
//! flood path driven in phases until a request count, its memory read
//! after each phase, with the checks that no window let more than its
//! limit through and that the memory at the end is within 5% of an early
//! reading.
//!
//! What differs between the two runs is where the memory is read (the
//! local run reads Envoy's resident memory from `/proc`; the external mode
//! reads the allocator's bytes from the admin's `/memory`), and so how it is
//! named, and where Redis's commands are read.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use crate::redis_stats::commands_since;
use crate::scenario::{Kind, Scenario};
use crate::wrk::{self, settle, Load, WrkResult};

/// The memory a soak watches: how it is read and named.
pub struct Memory<'a> {
    /// What the progress lines and facts call it (`Envoy RSS`).
    pub name: &'a str,
    /// Its unit (`kB`).
    pub unit: &'a str,
    /// The check on it.
    pub check: &'a str,
    /// One reading; `None` when it cannot be read now.
    pub read: &'a dyn Fn() -> Option<u64>,
    /// Why it is not measured at all: the check is then a fact saying so.
    pub not_measured: Option<&'a str>,
    /// The check's detail when a reading is missing.
    pub missing: String,
}

impl std::fmt::Debug for Memory<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory")
            .field("name", &self.name)
            .field("unit", &self.unit)
            .field("not_measured", &self.not_measured)
            .finish_non_exhaustive()
    }
}

/// How big a soak is.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    /// Requests to reach.
    pub requests: u64,
    /// The request count after which the early memory reading is taken.
    pub reference_after: u64,
    /// The limiter's limit per minute.
    pub per_minute: u64,
}

/// Drives `load` (one phase each) until `size.requests` answers, reading
/// `memory` after each phase and `redis_commands` around the whole soak.
///
/// Bounded: a phase that answers fewer than 1000 requests ends the soak,
/// and so do 10,000 phases.
///
/// # Panics
/// When wrk cannot run (see [`wrk::run`]).
pub fn run(
    title: &str,
    load: &Load<'_>,
    script_dir: &Path,
    size: Size,
    memory: &Memory<'_>,
    redis_commands: &dyn Fn() -> BTreeMap<String, u64>,
) -> Scenario {
    let Size {
        requests: target,
        reference_after: reference_at,
        per_minute,
    } = size;
    let first_window = (stack::unix_now() / 60.0).floor() as u64;
    let calls_before = redis_commands();
    let mut total: Option<WrkResult> = None;
    let mut reference: Option<(u64, Option<u64>)> = None;
    let started = Instant::now();
    for _ in 0..10_000 {
        let phase = wrk::run(load, script_dir);
        let stalled = phase.requests < 1000;
        let sum = match total.take() {
            Some(t) => t.followed_by(&phase),
            None => phase,
        };
        let done = sum.requests;
        let reading = (memory.read)();
        if reference.is_none() && done >= reference_at {
            reference = Some((done, reading));
        }
        println!(
            "[loadtest]   soak: {done:>9}/{target} requests  {:>7.0}/s  {} {}  {:.0} s",
            sum.requests_per_sec,
            memory.name,
            reading.map_or("-".to_owned(), |v| format!("{v} {}", memory.unit)),
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
    let end = (memory.read)();
    let redis_commands = commands_since(&calls_before, &redis_commands());
    let mut s = Scenario::new("soak", title, Kind::Soak, total);
    s.connections = load.connections;
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
    let (name, unit) = (memory.name, memory.unit);
    match (reference, end) {
        (Some((at, Some(early))), Some(end)) => {
            let change = (end as f64 - early as f64) / early as f64;
            s.fact(
                &format!("{name} after the reference requests"),
                format!("{early} {unit} after {at} requests"),
            );
            s.fact(
                &format!("{name} at the end"),
                format!("{end} {unit} after {} requests", s.wrk.requests),
            );
            s.check(
                memory.check,
                change.abs() <= 0.05,
                format!(
                    "{early} {unit} after {at} requests, {end} {unit} after {} ({:+.2}%)",
                    s.wrk.requests,
                    change * 100.0
                ),
            );
        }
        _ => match memory.not_measured {
            Some(why) => s.fact(memory.check, why),
            None => s.check(memory.check, false, memory.missing.clone()),
        },
    }
    s
}
