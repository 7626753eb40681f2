//! The plugins' Redis path measured so that the machine's drift cancels,
//! in paired rounds (`paired.rs`): a no-filter gateway, the limiter on one
//! hot key and the limiter on 1,000 rotating keys, loaded together; and
//! the token quota (JSON answers, or event streams) beside Envoy routing
//! the same chat POSTs with no filter.
//!
//! Each plugin gateway has a Redis and a webdis of its own, so its Redis
//! round trips (`INFO commandstats`) and its Redis + webdis CPU time
//! (`/proc`) are its own. They run on wrk's CPU, not the gateways': on the gateways'
//! CPU the scheduler would split that CPU among the gateways and the
//! backends' threads alike, and the baseline's rate would move with what
//! the backends happened to use; on wrk's CPU the gateways' CPU holds only
//! the gateways, and the backends' CPU time is read like theirs.
//!
//! What the throughput targets are judged on: the **whole-stack
//! cost ratio** = the baseline's CPU per request / (the plugin gateway's
//! CPU per request + its Redis's and webdis's CPU per request). On a
//! machine whose cores the gateway, Redis and webdis share (this one),
//! that is the share of the no-filter throughput the plugin keeps when
//! the CPU is what runs out. It is read in the same rounds as the
//! baseline's, so a slower machine slows both alike. The requests/s
//! ratio of the same rounds is reported beside it but not judged: it
//! leaves Redis's and webdis's CPU out, and each plugin request waits for
//! webdis, and a gateway whose 32 requests are
//! all waiting leaves its share of the CPU to the others, so its rate
//! also measures webdis's latency, which moves with how busy wrk's CPU is.

use std::collections::BTreeMap;

use serde_json::json;
use stack::{Envoy, EnvoyConfig, Redis, Webdis};

use super::gateways::{
    limiter_config, limiter_gateway_to, per_key_limiter_config, plain_gateway_to,
    token_quota_gateway_to, CHAT_JSON, CHAT_SSE, REDIS_TIMEOUT_MS,
};
use super::limiter_overhead::{DISTINCT_KEYS, MANY_KEYS_ROUND_TRIPS, ROUND_TRIP_COMMANDS};
use super::paired::{self, Round, Rounds, WRK_CPU};
use crate::bench::Bench;
use crate::overhead_checks::{HOT_KEY_ROUND_TRIPS, TOKEN_QUOTA_ROUND_TRIPS};
use crate::redis_stats::commands_since;
use crate::scenario::{announce, median_ratio, Kind, Scenario};
use crate::wrk::Requests;

/// The share of no-filter throughput the hot-key limiter must keep.
const HOT_KEY_TARGET: f64 = 0.60;
/// The share of no-filter throughput the 1,000-keys limiter must keep.
const MANY_KEYS_TARGET: f64 = 0.45;
/// The share of the routed no-filter throughput the token quota must keep.
const TOKEN_QUOTA_TARGET: f64 = 0.60;

/// A Redis and a webdis in front of it (2 threads, 16 Redis connections
/// each, as the shared one), both pinned to wrk's CPU.
struct Backend {
    redis: Redis,
    webdis: Webdis,
}

/// A backend's counters at one instant.
struct Reading {
    cpu_seconds: f64,
    commands: BTreeMap<String, u64>,
}

impl Backend {
    fn start() -> Backend {
        let redis = Redis::start();
        let webdis = Webdis::start_with(redis.port(), 2, 16);
        let backend = Backend { redis, webdis };
        for pid in backend.pids() {
            crate::pinning::pin_process_to_cpu(pid, WRK_CPU);
        }
        backend
    }

    fn pids(&self) -> impl Iterator<Item = u32> {
        [self.redis.pid(), self.webdis.pid()].into_iter().flatten()
    }

    fn read(&self) -> Reading {
        Reading {
            cpu_seconds: self
                .pids()
                .map(crate::process_stats::process_cpu_seconds)
                .sum(),
            commands: crate::redis_stats::redis_commands_at(self.redis.port()),
        }
    }
}

/// What one plugin gateway cost in one round.
#[derive(Debug, Clone, Copy)]
struct Cost {
    /// Its requests/s over the baseline's.
    rps_ratio: f64,
    gateway_us: f64,
    /// Its Redis's and webdis's CPU time per answered request.
    backend_us: f64,
    round_trips: u64,
    requests: u64,
    /// The baseline's CPU per request over gateway + backend's.
    stack_ratio: f64,
    /// The baseline's CPU per request over the gateway's alone.
    gateway_ratio: f64,
}

impl Cost {
    fn of(round: &Round, gateway: usize, before: &Reading, after: &Reading) -> Cost {
        let rps = |i: usize| round.rps.get(i).copied().unwrap_or(0.0);
        let cpu = |i: usize| round.cpu_us.get(i).copied().unwrap_or(0.0);
        let requests = round
            .measured
            .per_gateway
            .get(gateway)
            .map_or(0, |w| w.requests);
        let commands = commands_since(&before.commands, &after.commands);
        let round_trips = ROUND_TRIP_COMMANDS
            .iter()
            .filter_map(|c| commands.get(*c))
            .sum();
        let backend_us = (after.cpu_seconds - before.cpu_seconds) * 1e6 / requests.max(1) as f64;
        let gateway_us = cpu(gateway);
        Cost {
            rps_ratio: rps(gateway) / rps(0).max(1.0),
            gateway_us,
            backend_us,
            round_trips,
            requests,
            stack_ratio: cpu(0) / (gateway_us + backend_us).max(f64::MIN_POSITIVE),
            gateway_ratio: cpu(0) / gateway_us.max(f64::MIN_POSITIVE),
        }
    }

    fn per_request(&self) -> f64 {
        self.round_trips as f64 / self.requests.max(1) as f64
    }

    fn text(&self, rps: f64) -> String {
        format!(
            "{rps:.0} req/s ({:.2}x), gateway {:.1} + Redis/webdis {:.1} µs per request, {:.3} round trips per request, whole stack {:.2}x",
            self.rps_ratio,
            self.gateway_us,
            self.backend_us,
            self.per_request(),
            self.stack_ratio
        )
    }
}

/// A gateway on the Redis path, measured against the baseline.
struct Subject<'a> {
    /// How the report names it.
    name: &'static str,
    gateway: &'a Envoy,
    backend: &'a Backend,
    /// The share of the baseline's throughput it must keep (judged on the
    /// whole-stack cost ratio).
    target: f64,
    /// The round trips per request it may pay at 32 connections.
    round_trips: f64,
    /// The round trips a request costs when nothing is shared.
    unshared: f64,
}

/// `baseline` and `subjects` loaded together in paired rounds, every
/// gateway sent `requests`; the wrk results of the first subject stand for
/// the scenario.
fn redis_path_rounds(
    bench: &Bench,
    id: &'static str,
    title: &str,
    baseline: &Envoy,
    subjects: &[Subject<'_>],
    requests: Requests<'_>,
) -> Scenario {
    let mut gateways = vec![baseline];
    gateways.extend(subjects.iter().map(|x| x.gateway));
    let mut rounds = Rounds::start(bench, id, &gateways, requests, 1);
    // Per round: the baseline's requests/s and CPU per request, and what
    // each subject cost.
    let mut costs: Vec<(f64, f64, Vec<Cost>)> = Vec::new();
    let mut backend_busy_highest = 0.0_f64;
    let mut unexpected = Vec::new();
    let mut first_commands = BTreeMap::new();
    loop {
        let before: Vec<Reading> = subjects.iter().map(|x| x.backend.read()).collect();
        let Some(round) = rounds.next(bench) else {
            break;
        };
        let after: Vec<Reading> = subjects.iter().map(|x| x.backend.read()).collect();
        let of: Vec<Cost> = before
            .iter()
            .zip(&after)
            .enumerate()
            .map(|(i, (b, a))| Cost::of(&round, i + 1, b, a))
            .collect();
        if let (Some(b), Some(a)) = (before.first(), after.first()) {
            for (name, n) in commands_since(&b.commands, &a.commands) {
                *first_commands.entry(name).or_insert(0) += n;
            }
        }
        let backend_seconds: f64 = before
            .iter()
            .zip(&after)
            .map(|(b, a)| a.cpu_seconds - b.cpu_seconds)
            .sum();
        let backend_busy = backend_seconds / round.seconds;
        backend_busy_highest = backend_busy_highest.max(backend_busy);
        let names = std::iter::once("baseline").chain(subjects.iter().map(|x| x.name));
        for (name, w) in names.zip(&round.measured.per_gateway) {
            if w.unexpected(&[200]) > 0 || w.errors.total() > 0 {
                unexpected.push(format!(
                    "round {}: {name}: {}, {} socket errors",
                    costs.len() + 1,
                    w.statuses_text(),
                    w.errors.total()
                ));
            }
        }
        let base_rps = round.rps.first().copied().unwrap_or(0.0);
        let base_us = round.cpu_us.first().copied().unwrap_or(0.0);
        let texts: Vec<String> = subjects
            .iter()
            .zip(&of)
            .enumerate()
            .map(|(i, (x, c))| {
                let rps = round.rps.get(i + 1).copied().unwrap_or(0.0);
                format!("{} {}", x.name, c.text(rps))
            })
            .collect();
        rounds.record(format!(
            "baseline {base_rps:.0} req/s, {base_us:.1} µs per request; {}; {}; Redis + webdis {:.0}% of wrk's CPU",
            texts.join("; "),
            round.cpu_text(),
            backend_busy * 100.0,
        ));
        costs.push((base_rps, base_us, of));
    }
    let done = rounds.finish();
    let mut s = Scenario::new(id, title, Kind::Overhead, done.reported.clone());
    s.connections = bench.opts.connections;
    s.redis_calls = Some(first_commands.values().sum());
    s.redis_commands = first_commands;
    done.report_rounds(&mut s);
    s.rounds = costs
        .iter()
        .map(|(base, _, of)| (*base, base * of.first().map_or(0.0, |c| c.rps_ratio)))
        .collect();
    let baseline_us = paired::median(costs.iter().map(|c| c.1));
    for (i, subject) in subjects.iter().enumerate() {
        let of: Vec<Cost> = costs.iter().filter_map(|c| c.2.get(i).copied()).collect();
        report_subject(&mut s, subject, &of, baseline_us);
    }
    s.check(
        "every gateway answered only 200, with no socket errors",
        unexpected.is_empty(),
        if unexpected.is_empty() {
            format!(
                "{} answers 200 from the {}",
                s.wrk.status(200),
                subjects.first().map_or("", |x| x.name)
            )
        } else {
            unexpected.join("; ")
        },
    );
    s.fact(
        "Redis + webdis (every subject's) busiest round",
        format!("{:.0}% of wrk's CPU", backend_busy_highest * 100.0),
    );
    done.report_idle(&mut s, bench, true);
    s
}

/// One subject's medians, its targets (facts) and the check that it never
/// paid more than one round trip per request.
fn report_subject(s: &mut Scenario, subject: &Subject<'_>, of: &[Cost], baseline_us: f64) {
    let name = subject.name;
    let (target, bound) = (subject.target, subject.round_trips);
    let pairs: Vec<(f64, f64)> = of.iter().map(|c| (1.0, c.rps_ratio)).collect();
    let rps_median = median_ratio(&pairs).unwrap_or(0.0);
    let stack_median = paired::median(of.iter().map(|c| c.stack_ratio));
    let calls: u64 = of.iter().map(|c| c.round_trips).sum();
    let requests: u64 = of.iter().map(|c| c.requests).sum();
    let per_request = calls as f64 / requests.max(1) as f64;
    let backend_us_total: f64 = of.iter().map(|c| c.backend_us * c.requests as f64).sum();
    s.fact(
        &format!("{name}: medians"),
        format!(
            "whole stack {stack_median:.2}x; req/s {rps_median:.2}x; gateway alone {:.2}x; gateway {:.1} µs + Redis/webdis {:.1} µs per request (baseline {baseline_us:.1} µs); Redis + webdis {:.0} µs per round trip (all rounds)",
            paired::median(of.iter().map(|c| c.gateway_ratio)),
            paired::median(of.iter().map(|c| c.gateway_us)),
            paired::median(of.iter().map(|c| c.backend_us)),
            backend_us_total / calls.max(1) as f64,
        ),
    );
    s.fact(
        &format!("{name}: target >= {target:.2}x no filter, judged on the whole-stack cost ratio"),
        format!(
            "{} (median {stack_median:.2}x; the req/s ratio of the same rounds, for context: {rps_median:.2}x)",
            if stack_median >= target { "met" } else { "NOT met" }
        ),
    );
    // How many requests share a call follows how long a call takes, which
    // moves with the load on wrk's CPU: a target reported here, checked in
    // the single-gateway scenarios.
    s.fact(
        &format!("{name}: target <= {bound:.2} Redis round trips per request at 32 connections"),
        format!(
            "{} ({per_request:.3} over all rounds, {calls} for {requests} requests, at {} connections)",
            if per_request <= bound { "met" } else { "NOT met" },
            s.connections
        ),
    );
    // The subject's own most: one round trip per request for the limiter,
    // two (a read and a charge) for the token quota, give or take the
    // request wrk cuts off per connection at the end of each round.
    let most = subject.unshared;
    let limit =
        most + most * f64::from(s.connections + 2) * of.len() as f64 / requests.max(1) as f64;
    s.check(
        format!("{name}: at most {most:.0} Redis round trip(s) per request (evalsha/eval/get)"),
        per_request <= limit,
        format!("{per_request:.3} per request (at most {limit:.3})"),
    );
}

/// The no-filter gateway, the hot-key limiter and the 1,000-keys limiter
/// on one shared CPU, in rounds.
pub(super) fn limiter_redis_paired(bench: &Bench) -> Scenario {
    let id = "limiter-redis-paired";
    let title = "limiter Redis path (hot key; 1,000 rotating keys) vs baseline, loaded together on one shared CPU, each limiter with its own Redis + webdis on wrk's CPU (the Redis-path targets' measure)";
    announce(title);
    let hot_backend = Backend::start();
    let keys_backend = Backend::start();
    let plain = Envoy::start(EnvoyConfig::new().log_level("warning"));
    let hot = limiter_gateway_to(
        hot_backend.webdis.port(),
        &limiter_config(&bench.rule("redis-paired-hot"), 1_000_000_000, false),
    );
    let keys = limiter_gateway_to(
        keys_backend.webdis.port(),
        &per_key_limiter_config(&bench.rule("redis-paired-keys")),
    );
    let subjects = [
        Subject {
            name: "hot key",
            gateway: &hot,
            backend: &hot_backend,
            target: HOT_KEY_TARGET,
            round_trips: HOT_KEY_ROUND_TRIPS,
            unshared: 1.0,
        },
        Subject {
            name: "1,000 keys",
            gateway: &keys,
            backend: &keys_backend,
            target: MANY_KEYS_TARGET,
            round_trips: MANY_KEYS_ROUND_TRIPS,
            unshared: 1.0,
        },
    ];
    // Every gateway gets the same requests; the hot-key limiter counts
    // them all on its one global key and ignores the header.
    let requests = Requests::GetRotating("x-api-key", DISTINCT_KEYS);
    redis_path_rounds(bench, id, title, &plain, &subjects, requests)
}

/// The token quota, quota never reached, beside Envoy routing the same
/// chat POSTs to the same upstream with no filter, on one shared CPU, in
/// rounds. The upstream Envoy runs on wrk's CPU for the scenario (it
/// answers both gateways, and is the world, not the gateway's cost).
pub(super) fn token_quota_redis_paired(bench: &Bench, sse: bool) -> Scenario {
    let (id, title, name, upstream, body) = if sse {
        (
            "token-quota-sse-paired",
            "token quota, streaming chat POSTs, quota never reached, vs Envoy routing them with no filter, loaded together on one shared CPU, its own Redis + webdis on wrk's CPU",
            "token quota SSE",
            &bench.sse_upstream,
            CHAT_SSE,
        )
    } else {
        (
            "token-quota-json-paired",
            "token quota, chat POSTs, JSON answers, quota never reached, vs Envoy routing them with no filter, loaded together on one shared CPU, its own Redis + webdis on wrk's CPU",
            "token quota JSON",
            &bench.json_upstream,
            CHAT_JSON,
        )
    };
    announce(title);
    let backend = Backend::start();
    let plain = plain_gateway_to(upstream);
    let config = json!({
        "rule_name": bench.rule(id),
        "global_threshold": {"token_per_minute": 1_000_000_000_000u64},
        "redis": {"webdis_cluster": "webdis", "timeout": REDIS_TIMEOUT_MS},
    });
    let quota = token_quota_gateway_to(backend.webdis.port(), &config, upstream);
    let subjects = [Subject {
        name,
        gateway: &quota,
        backend: &backend,
        target: TOKEN_QUOTA_TARGET,
        round_trips: TOKEN_QUOTA_ROUND_TRIPS,
        unshared: 2.0,
    }];
    crate::pinning::pin_to_cpu(upstream, WRK_CPU);
    let s = redis_path_rounds(
        bench,
        id,
        title,
        &plain,
        &subjects,
        Requests::PostJson(body),
    );
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    crate::pinning::pin_to_cpu_range(upstream, 0, cpus.saturating_sub(1));
    s
}
