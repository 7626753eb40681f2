//! What a scenario reports: its wrk results, Redis commands, facts and the
//! checks that say whether it measured what it claims. A failed check does
//! not stop the run (the other scenarios still report); it makes the exit
//! status 1.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::wrk::{Sample, WrkResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Overhead,
    Accuracy,
    Soak,
    Faults,
}

/// One assertion and what was seen.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub what: String,
    pub passed: bool,
    pub detail: String,
}

/// One scenario's measurements.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub id: &'static str,
    pub title: String,
    pub kind: Kind,
    /// The `id` of the no-filter run this one is compared with, measured
    /// separately (or, for a paired scenario, at the same time: `rounds`).
    pub baseline: Option<&'static str>,
    pub gateways: u32,
    pub connections: u32,
    pub wrk: WrkResult,
    /// Commands Redis executed during the measured run, in all (those a
    /// Lua script ran included).
    pub redis_calls: Option<u64>,
    /// The same by command name.
    pub redis_commands: BTreeMap<String, u64>,
    /// Further numbers worth reporting, in order.
    pub facts: Vec<(String, String)>,
    pub checks: Vec<Check>,
    /// Per-second answer counts (fault scenario).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Sample>,
    /// Rounds of a paired comparison: (baseline req/s, this scenario's
    /// req/s) per round.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<(f64, f64)>,
    /// The same rounds against the cheapest Wasm refusal: (its req/s, this
    /// scenario's req/s) per round.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub floor_rounds: Vec<(f64, f64)>,
}

impl Scenario {
    pub(crate) fn new(id: &'static str, title: &str, kind: Kind, wrk: WrkResult) -> Scenario {
        Scenario {
            id,
            title: title.to_owned(),
            kind,
            baseline: None,
            gateways: 1,
            connections: 0,
            wrk,
            redis_calls: None,
            redis_commands: BTreeMap::new(),
            facts: Vec::new(),
            checks: Vec::new(),
            samples: Vec::new(),
            rounds: Vec::new(),
            floor_rounds: Vec::new(),
        }
    }

    /// Calls of `commands` per answered request.
    pub(crate) fn per_request(&self, commands: &[&str]) -> f64 {
        let calls: u64 = commands
            .iter()
            .filter_map(|c| self.redis_commands.get(*c))
            .sum();
        calls as f64 / self.wrk.requests.max(1) as f64
    }

    /// Checks that `commands` ran once per answered request, give or take
    /// the requests wrk cut off at the end (one per connection). (An
    /// EVALSHA that finds no script is sent again as EVAL: the requests in
    /// flight when a script is first used cost a second round trip, which
    /// the command list shows.)
    // No scenario pays one call per request since the token quota shares
    // its calls; kept for scenarios (or comparisons) that do.
    #[allow(dead_code)]
    fn check_once_per_request(&mut self, what: &str, commands: &[&str]) {
        let calls: u64 = commands
            .iter()
            .filter_map(|c| self.redis_commands.get(*c))
            .sum();
        let slack = u64::from(self.connections) + 2 * u64::from(self.gateways);
        let requests = self.wrk.requests;
        self.check(
            format!("one {what} per request ({})", commands.join("/")),
            calls + slack >= requests && calls <= requests + slack,
            format!(
                "{calls} calls for {requests} requests ({:.3} per request); all commands: {}",
                self.per_request(commands),
                self.redis_commands_text()
            ),
        );
    }

    pub fn redis_commands_text(&self) -> String {
        if self.redis_commands.is_empty() {
            return "none".to_owned();
        }
        self.redis_commands
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The first gateway's CPU time per answered request, as a fact: on
    /// this shared VM it moves far less with the other load than req/s.
    pub(crate) fn fact_cpu_per_request(&mut self, cpu_seconds: &[f64]) {
        if let Some(cpu) = cpu_seconds.first() {
            let per_request = cpu * 1e6 / self.wrk.requests.max(1) as f64;
            self.fact("gateway CPU per request", format!("{per_request:.1} us"));
        }
    }

    /// Redis's and webdis's CPU time per answered request, as a fact
    /// (what the gateway's Redis calls cost the processes it shares the
    /// machine with).
    pub(crate) fn fact_backend_cpu_per_request(&mut self, cpu_seconds: f64) {
        let per_request = cpu_seconds * 1e6 / self.wrk.requests.max(1) as f64;
        self.fact(
            "Redis + webdis CPU per request",
            format!("{per_request:.1} us"),
        );
    }

    pub fn redis_calls_per_request(&self) -> Option<f64> {
        self.redis_calls
            .map(|calls| calls as f64 / self.wrk.requests.max(1) as f64)
    }

    pub(crate) fn check(
        &mut self,
        what: impl Into<String>,
        passed: bool,
        detail: impl Into<String>,
    ) {
        let check = Check {
            what: what.into(),
            passed,
            detail: detail.into(),
        };
        println!(
            "[loadtest]   {} {}: {}",
            if check.passed { "ok  " } else { "FAIL" },
            check.what,
            check.detail
        );
        self.checks.push(check);
    }

    pub(crate) fn fact(&mut self, name: &str, value: impl ToString) {
        self.facts.push((name.to_owned(), value.to_string()));
    }

    /// No socket errors and no answer outside `expected`.
    pub(crate) fn check_answers(&mut self, expected: &[u16]) {
        let unexpected = self.wrk.unexpected(expected);
        let codes: Vec<String> = expected.iter().map(u16::to_string).collect();
        self.check(
            format!("only {} answers", codes.join("/")),
            unexpected == 0 && self.wrk.requests > 0,
            format!(
                "{} of {} answers",
                self.wrk.statuses_text(),
                self.wrk.requests
            ),
        );
        let e = self.wrk.errors;
        self.check(
            "no socket errors or timeouts",
            e.total() == 0,
            format!(
                "connect {}, read {}, write {}, timeout {}",
                e.connect, e.read, e.write, e.timeout
            ),
        );
    }
}

/// A scenario of the local run that does not run here, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub id: String,
    pub why: String,
}

/// The median of the per-round ratios of a paired scenario.
pub fn median_ratio(rounds: &[(f64, f64)]) -> Option<f64> {
    let mut ratios: Vec<f64> = rounds
        .iter()
        .filter(|(base, _)| *base > 0.0)
        .map(|(base, over)| over / base)
        .collect();
    ratios.sort_by(f64::total_cmp);
    let mid = ratios.len() / 2;
    match ratios.len() {
        0 => None,
        n if n % 2 == 1 => ratios.get(mid).copied(),
        _ => Some((ratios.get(mid - 1)? + ratios.get(mid)?) / 2.0),
    }
}

/// Prints a scenario's title as it starts.
pub fn announce(title: &str) {
    println!("[loadtest] == {title}");
}

#[cfg(test)]
mod tests {
    use super::median_ratio;

    #[test]
    fn median_ratio_of_rounds() {
        assert_eq!(median_ratio(&[]), None);
        assert_eq!(median_ratio(&[(0.0, 5.0)]), None);
        assert_eq!(median_ratio(&[(10.0, 9.0)]), Some(0.9));
        // Odd count: the middle ratio, whatever the order of the rounds.
        let odd = [(10.0, 20.0), (10.0, 5.0), (10.0, 9.0)];
        assert_eq!(median_ratio(&odd), Some(0.9));
        // Even count: the mean of the two middle ones.
        let even = [(10.0, 8.0), (10.0, 12.0), (10.0, 1.0), (10.0, 30.0)];
        assert_eq!(median_ratio(&even), Some(1.0));
    }
}
