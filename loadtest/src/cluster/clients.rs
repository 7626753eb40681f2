//! The cluster runs' own clients (wrk gives no per-key counts): a fixed
//! number of clients sending key after key to two gateways, each answer
//! recorded, until the run decides to stop; and what those answers say.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::scenario::{Kind, Scenario};
use crate::wrk::{Latency, WrkResult};

/// Keys, spread over the slots (and so over the three masters).
pub(super) const KEYS: usize = 48;

/// Clients sending at once, over both gateways.
pub(super) const CLIENTS: usize = 16;

/// How long after the kill every answer must be 200 or 429 again.
pub(super) const RECOVERY_BOUND: Duration = Duration::from_secs(10);

/// The longest a run may take; it must fit in one clock minute with the
/// start-up.
pub(super) const CAP: Duration = Duration::from_secs(40);

/// The cap of a `--smoke` run (its keys allow 30 each).
pub(super) const SMOKE_CAP: Duration = Duration::from_secs(15);

/// Answers after every key was refused once, so the over-limit cache's
/// rechecks and the last calls are in the run too.
pub(super) const TAIL: Duration = Duration::from_secs(1);

/// One answer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Answer {
    /// When the request was sent, from the start of the run.
    pub(super) sent: Duration,
    pub(super) took: Duration,
    pub(super) key: usize,
    /// 0 when no answer came.
    pub(super) status: u16,
}

/// What the clients have seen so far, for the thread that decides when to
/// kill and when to stop.
pub(super) struct Progress {
    pub(super) cap: Duration,
    pub(super) allowed: AtomicU64,
    pub(super) refused: Vec<AtomicBool>,
    pub(super) stop: AtomicBool,
}

impl Progress {
    pub(super) fn all_refused(&self) -> bool {
        self.refused.iter().all(|r| r.load(Ordering::Relaxed))
    }

    /// Waits until `done` or the cap from `start`; false if the cap came first.
    pub(super) fn wait_for(&self, start: Instant, done: impl Fn(&Progress) -> bool) -> bool {
        while start.elapsed() < self.cap {
            if done(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

/// [`CLIENTS`] clients send `GET /` with `x-api-key: key-<n>`, key after
/// key, each key alternating between the gateways, until `decide` (run on
/// this thread with the start time and the progress) returns, or `cap`.
pub(super) fn drive<T>(
    cap: Duration,
    ports: &[u16; 2],
    decide: impl FnOnce(Instant, &Progress) -> T,
) -> (Vec<Answer>, Duration, T) {
    drive_with(cap, ports, get, decide)
}

/// `GET /` with `x-api-key: value`; its status, 0 without an answer.
pub(super) fn get(port: u16, value: &str) -> u16 {
    stack::get_with_timeout(port, "/", &[("x-api-key", value)], Duration::from_secs(5))
        .map_or(0, |r| r.status)
}

/// [`drive`] with `send(port, value)` making each request.
pub(super) fn drive_with<T>(
    cap: Duration,
    ports: &[u16; 2],
    send: impl Fn(u16, &str) -> u16 + Sync,
    decide: impl FnOnce(Instant, &Progress) -> T,
) -> (Vec<Answer>, Duration, T) {
    let start = Instant::now();
    let progress = Progress {
        cap,
        allowed: AtomicU64::new(0),
        refused: (0..KEYS).map(|_| AtomicBool::new(false)).collect(),
        stop: AtomicBool::new(false),
    };
    let answers = Mutex::new(Vec::new());
    let decided = std::thread::scope(|scope| {
        for client in 0..CLIENTS {
            let (answers, progress, send) = (&answers, &progress, &send);
            scope.spawn(move || {
                let mut mine = Vec::new();
                let mut i = client;
                while !progress.stop.load(Ordering::Relaxed) && start.elapsed() < cap {
                    let key = i % KEYS;
                    let port = if (i / KEYS) % 2 == 0 {
                        ports[0]
                    } else {
                        ports[1]
                    };
                    let value = format!("key-{key}");
                    let sent = start.elapsed();
                    let status = send(port, &value);
                    match status {
                        200 => {
                            progress.allowed.fetch_add(1, Ordering::Relaxed);
                        }
                        429 => {
                            if let Some(flag) = progress.refused.get(key) {
                                flag.store(true, Ordering::Relaxed);
                            }
                        }
                        _ => {}
                    }
                    mine.push(Answer {
                        sent,
                        took: start.elapsed() - sent,
                        key,
                        status,
                    });
                    i += CLIENTS;
                }
                answers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(mine);
            });
        }
        let decided = decide(start, &progress);
        progress.stop.store(true, Ordering::Relaxed);
        decided
    });
    let elapsed = start.elapsed();
    (
        answers.into_inner().unwrap_or_else(|e| e.into_inner()),
        elapsed,
        decided,
    )
}

/// A chat request the JSON upstream answers.
pub(super) const CHAT: &str =
    r#"{"model":"qwen-max","messages":[{"role":"user","content":"Tell me a story."}]}"#;

/// A chat `POST` with `x-api-key: value`; its status, 0 without an answer.
pub(super) fn post(port: u16, value: &str) -> u16 {
    stack::request_with_timeout(
        port,
        "POST",
        "/v1/chat/completions",
        &[("content-type", "application/json"), ("x-api-key", value)],
        stack::Body::Fixed(CHAT.as_bytes()),
        Duration::from_secs(5),
    )
    .map_or(0, |r| r.status)
}

/// The answers as a [`WrkResult`] (latency percentiles, statuses; a
/// request without an answer is a timeout).
pub(super) fn summarize(answers: &[Answer], elapsed: Duration) -> WrkResult {
    let mut micros: Vec<u64> = answers
        .iter()
        .filter(|a| a.status != 0)
        .map(|a| a.took.as_micros() as u64)
        .collect();
    micros.sort_unstable();
    let at = |q: f64| {
        let i = ((micros.len() as f64 * q).ceil() as usize).saturating_sub(1);
        micros.get(i).copied().unwrap_or(0)
    };
    let mut statuses = BTreeMap::new();
    for a in answers.iter().filter(|a| a.status != 0) {
        *statuses.entry(a.status).or_default() += 1;
    }
    let mut result = WrkResult {
        requests: micros.len() as u64,
        seconds: elapsed.as_secs_f64(),
        requests_per_sec: micros.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        latency_us: Latency {
            min: micros.first().copied().unwrap_or(0),
            mean: micros.iter().sum::<u64>() as f64 / micros.len().max(1) as f64,
            max: micros.last().copied().unwrap_or(0),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p99_9: at(0.999),
        },
        statuses,
        ..WrkResult::default()
    };
    result.errors.timeout = answers.iter().filter(|a| a.status == 0).count() as u64;
    result
}

/// Answers 200 by key.
pub(super) fn allowed_per_key(answers: &[Answer]) -> Vec<u64> {
    answered_per_key(answers, 200)
}

/// How many answers of each key had `status`.
pub(super) fn answered_per_key(answers: &[Answer], status: u16) -> Vec<u64> {
    let mut counts = vec![0u64; KEYS];
    for a in answers.iter().filter(|a| a.status == status) {
        if let Some(n) = counts.get_mut(a.key) {
            *n += 1;
        }
    }
    counts
}

/// Waits until the clock minute has room for a run capped at `cap` (and
/// its start-up); the minute's start (Unix seconds), as in
/// [`stack::wait_for_window_room`].
pub(super) fn wait_for_window(cap: Duration) -> u64 {
    stack::wait_for_window_room(Duration::from_secs(60), cap + Duration::from_secs(3))
}

/// The scenario of a run on two gateways with [`CLIENTS`] clients that went
/// on until every key was refused once (then [`TAIL`] more, at most `cap`):
/// its summary, its length, and the check that it ended in the per-minute
/// `window` it started in.
pub(super) fn scenario_of_run(
    id: &'static str,
    title: &str,
    kind: Kind,
    answers: &[Answer],
    elapsed: Duration,
    cap: Duration,
    window: u64,
) -> Scenario {
    let end_window = (stack::unix_now() / 60.0).floor() as u64 * 60;
    let mut s = Scenario::new(id, title, kind, summarize(answers, elapsed));
    s.gateways = 2;
    s.connections = CLIENTS as u32;
    s.fact(
        "run length",
        format!(
            "{:.1} s (until every key was refused once, then {} s more; cap {} s)",
            elapsed.as_secs_f64(),
            TAIL.as_secs(),
            cap.as_secs()
        ),
    );
    s.check(
        "the run stayed in one per-minute window",
        window == end_window,
        format!("started in window {window}, ended in {end_window}"),
    );
    s
}
