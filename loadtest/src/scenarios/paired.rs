//! The round loop every paired scenario shares: gateways pinned together to
//! one CPU, each driven by its own wrk on another CPU, loaded at the same
//! time, in rounds.
//!
//! Why this shape: this machine is a shared VM whose speed drifts within a
//! minute, so runs taken one after another, even in alternation, compare
//! different machines. Pinned to one CPU and loaded together, the gateways
//! see the same machine at every instant, and the kernel's fair scheduler
//! gives each the same CPU time, so their requests/s relate as the inverse
//! of their CPU cost per request. Each round also reads every gateway's CPU
//! time from `/proc`, and how busy their shared CPU was: below
//! [`SHARED_CPU_BUSY`] the gateways waited for wrk, and their rates say
//! more about wrk than about their own cost.
//!
//! # Examples
//! ```ignore
//! let mut rounds = Rounds::start(bench, "paired", &[&plain, &limited], Requests::Get, 1);
//! while let Some(round) = rounds.next(bench) {
//!     let text = format!("CPU per request {:?} µs", round.cpu_us);
//!     rounds.record(text);
//! }
//! let done = rounds.finish();
//! ```

use std::time::Duration;

use stack::Envoy;

use super::measure::{measure, warm_up, Drive, Measured};
use crate::bench::Bench;
use crate::process_stats::CpuTicks;
use crate::scenario::Scenario;
use crate::wrk::{Requests, WrkResult};

/// The CPU every wrk of a paired scenario runs on; the gateways take the
/// machine's last CPU.
pub(super) const WRK_CPU: usize = 0;

/// How busy the gateways' shared CPU must be for the paired ratios to count.
const SHARED_CPU_BUSY: f64 = 0.85;

/// The longest round, in seconds (`--seconds` shortens them).
const ROUND_SECONDS: u64 = 5;

/// What one round saw.
#[derive(Debug)]
pub(super) struct Round {
    pub(super) measured: Measured,
    /// Each gateway's requests/s, in the order given.
    pub(super) rps: Vec<f64>,
    /// Each gateway's CPU time per answered request, in µs.
    pub(super) cpu_us: Vec<f64>,
    /// The gateways' CPU time over the round's length: the share of their
    /// one CPU they kept busy.
    pub(super) busy: f64,
    /// The round's length.
    pub(super) seconds: f64,
    /// The shares of the gateways' CPU's time it sat idle and the
    /// hypervisor took it (`/proc/stat`); the rest went to the gateways
    /// and to any other process that ran there.
    pub(super) shared_idle: f64,
    pub(super) shared_stolen: f64,
    /// The share of wrk's CPU's time it sat idle.
    pub(super) wrk_idle: f64,
}

impl Round {
    /// Where the two CPUs' time went, in words.
    pub(super) fn cpu_text(&self) -> String {
        let others = (1.0 - self.busy - self.shared_idle - self.shared_stolen).max(0.0);
        format!(
            "shared CPU: gateways {:.0}%, other processes {:.0}%, idle {:.0}%, stolen {:.0}%; wrk's CPU idle {:.0}%",
            self.busy * 100.0,
            others * 100.0,
            self.shared_idle * 100.0,
            self.shared_stolen * 100.0,
            self.wrk_idle * 100.0
        )
    }
}

/// Paired rounds in progress: the gateways stay pinned until
/// [`Rounds::finish`].
#[derive(Debug)]
pub(super) struct Rounds<'g, 'r> {
    label: &'static str,
    gateways: &'g [&'g Envoy],
    requests: Requests<'r>,
    gateway_cpu: usize,
    count: usize,
    measured: usize,
    /// The gateway whose wrk results stand for the scenario.
    reported: usize,
    reported_runs: Option<WrkResult>,
    texts: Vec<String>,
    busy_lowest: f64,
    idle_highest: f64,
}

impl<'g, 'r> Rounds<'g, 'r> {
    /// Pins `gateways` to the machine's last CPU and warms each up (not
    /// with `--smoke`); 5 rounds follow (1 with `--smoke`), every gateway
    /// sent `requests`. The wrk results of gateway `reported` (an index in
    /// `gateways`) stand for the scenario.
    ///
    /// # Panics
    /// On a machine with one CPU (nothing to keep wrk apart on), or when
    /// `taskset` fails.
    pub(super) fn start(
        bench: &Bench,
        label: &'static str,
        gateways: &'g [&'g Envoy],
        requests: Requests<'r>,
        reported: usize,
    ) -> Rounds<'g, 'r> {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        assert!(
            cpus >= 2,
            "the shared-CPU comparison needs 2 CPUs (one for the gateways, one for wrk); this machine has {cpus}"
        );
        let gateway_cpu = cpus - 1;
        for gateway in gateways {
            crate::pinning::pin_to_cpu(gateway, gateway_cpu);
        }
        let rounds = Rounds {
            label,
            gateways,
            requests,
            gateway_cpu,
            count: if bench.opts.smoke { 1 } else { 5 },
            measured: 0,
            reported,
            reported_runs: None,
            texts: Vec::new(),
            busy_lowest: f64::INFINITY,
            idle_highest: 0.0,
        };
        warm_up(bench, gateways, &rounds.drive(bench));
        rounds
    }

    fn drive(&self, bench: &Bench) -> Drive<'r> {
        Drive {
            seconds: bench.opts.seconds.min(ROUND_SECONDS),
            connections: bench.opts.connections,
            requests: self.requests,
            warm_up: false,
            timeout: Duration::from_secs(2),
            wrk_cpu: Some(WRK_CPU),
        }
    }

    /// Measures the next round, or `None` when every round has run.
    ///
    /// # Panics
    /// When wrk's results cannot be read (see [`measure`]).
    pub(super) fn next(&mut self, bench: &Bench) -> Option<Round> {
        if self.measured >= self.count {
            return None;
        }
        self.measured += 1;
        let drive = self.drive(bench);
        let seconds = drive.seconds as f64;
        let measured = measure(bench, self.label, self.gateways, drive);
        let rps = measured
            .per_gateway
            .iter()
            .map(|w| w.requests_per_sec)
            .collect();
        let cpu_us = measured
            .cpu_seconds
            .iter()
            .zip(&measured.per_gateway)
            .map(|(cpu, w)| cpu * 1e6 / w.requests.max(1) as f64)
            .collect();
        let busy = measured.cpu_seconds.iter().sum::<f64>() / seconds;
        self.busy_lowest = self.busy_lowest.min(busy);
        let share = |cpu: usize, of: fn(&CpuTicks) -> u64| {
            measured
                .machine
                .get(cpu)
                .map_or(0.0, |t| of(t) as f64 / t.total.max(1) as f64)
        };
        let shared_idle = share(self.gateway_cpu, |t| t.idle);
        let shared_stolen = share(self.gateway_cpu, |t| t.stolen);
        let wrk_idle = share(WRK_CPU, |t| t.idle);
        self.idle_highest = self.idle_highest.max(shared_idle);
        if let Some(run) = measured.per_gateway.get(self.reported) {
            self.reported_runs = Some(match self.reported_runs.take() {
                Some(sum) => sum.followed_by(run),
                None => run.clone(),
            });
        }
        Some(Round {
            measured,
            rps,
            cpu_us,
            busy,
            seconds,
            shared_idle,
            shared_stolen,
            wrk_idle,
        })
    }

    /// Keeps the description of the round just measured, and prints it.
    pub(super) fn record(&mut self, text: String) {
        println!("[loadtest]   round {}: {text}", self.measured);
        self.texts.push(text);
    }

    /// Lets the gateways run on every CPU again.
    pub(super) fn finish(self) -> Finished {
        for gateway in self.gateways {
            crate::pinning::pin_to_cpu_range(gateway, 0, self.gateway_cpu);
        }
        Finished {
            reported: self.reported_runs.unwrap_or_default(),
            texts: self.texts,
            busy_lowest: self.busy_lowest,
            idle_highest: self.idle_highest,
        }
    }
}

/// What paired rounds leave for their scenario's report.
#[derive(Debug)]
pub(super) struct Finished {
    /// The reported gateway's wrk results over every round.
    pub(super) reported: WrkResult,
    texts: Vec<String>,
    busy_lowest: f64,
    idle_highest: f64,
}

impl Finished {
    /// Each round's description, as facts `round 1`, `round 2`, ...
    pub(super) fn report_rounds(&self, s: &mut Scenario) {
        for (i, text) in self.texts.iter().enumerate() {
            s.fact(&format!("round {}", i + 1), text);
        }
    }

    /// Whether the gateways kept their shared CPU busy in every round: a
    /// check when `enforce`, else a fact. The smoke run's single second
    /// measures nothing, so there it is always a fact.
    pub(super) fn report_busy(&self, s: &mut Scenario, bench: &Bench, enforce: bool) {
        let what =
            "the gateways kept their shared CPU busy (the ratios measure their cost, not wrk's)";
        let detail = format!(
            "least busy round: {:.0}% of one CPU (needs {:.0}%)",
            self.busy_lowest * 100.0,
            SHARED_CPU_BUSY * 100.0
        );
        if enforce && !bench.opts.smoke {
            s.check(what, self.busy_lowest >= SHARED_CPU_BUSY, detail);
        } else {
            s.fact(what, detail);
        }
    }
}

impl Finished {
    /// Whether the gateways' CPU never sat idle for more than what
    /// [`SHARED_CPU_BUSY`] leaves, in any round: the check for rounds
    /// whose gateways may wait for something else than wrk (Redis), or
    /// share their CPU with other processes. An idle CPU means the
    /// no-filter gateway, which waits for nothing, waited for wrk. A check
    /// when `enforce` (never with `--smoke`), else a fact.
    pub(super) fn report_idle(&self, s: &mut Scenario, bench: &Bench, enforce: bool) {
        let what = "the gateways' CPU never sat idle (wrk kept the no-filter gateway fed)";
        let most = 1.0 - SHARED_CPU_BUSY;
        let detail = format!(
            "most idle round: {:.0}% idle (at most {:.0}%); gateways' least busy round: {:.0}% of the CPU",
            self.idle_highest * 100.0,
            most * 100.0,
            self.busy_lowest * 100.0
        );
        if enforce && !bench.opts.smoke {
            s.check(what, self.idle_highest <= most, detail);
        } else {
            s.fact(what, detail);
        }
    }
}

/// The median of `values` (the upper one of an even count), 0 when empty.
pub(super) fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}
