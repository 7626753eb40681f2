//! The limiter's Redis path measured so that the machine's drift cancels:
//! a no-filter gateway, the limiter on one hot key and the limiter on
//! 1,000 rotating keys, loaded together in paired rounds (`paired.rs`).
//!
//! Each limiter has a Redis and a webdis of its own, so its Redis round
//! trips (`INFO commandstats`) and its Redis + webdis CPU time (`/proc`)
//! are its own. They run on wrk's CPU, not the gateways': on the gateways'
//! CPU the scheduler would split that CPU among the gateways and the
//! backends' threads alike, and the baseline's rate would move with what
//! the backends happened to use; on wrk's CPU the gateways' CPU holds only
//! the gateways, and the backends' CPU time is read like theirs.
//!
//! What the throughput targets are judged on: the **whole-stack
//! cost ratio** = the baseline's CPU per request / (the limiter gateway's
//! CPU per request + its Redis's and webdis's CPU per request). On a
//! machine whose cores the gateway, Redis and webdis share (this one),
//! that is the share of the no-filter throughput the limiter keeps when
//! the CPU is what runs out. It is read in the same rounds as the
//! baseline's, so a slower machine slows both alike. The requests/s
//! ratio of the same rounds is reported beside it but not judged: each
//! limiter request waits for webdis, and a gateway whose 32 requests are
//! all waiting leaves its share of the CPU to the others, so its rate
//! also measures webdis's latency, which moves with how busy wrk's CPU is.

use std::collections::BTreeMap;

use stack::{Envoy, EnvoyConfig, Redis, Webdis};

use super::paired::{self, Round, Rounds, WRK_CPU};
use super::{
    announce, limiter_config, limiter_gateway_to, median_ratio, per_key_limiter_config, Kind,
    Scenario, DISTINCT_KEYS, HOT_KEY_ROUND_TRIPS, MANY_KEYS_ROUND_TRIPS, ROUND_TRIP_COMMANDS,
};
use crate::wrk::Requests;
use crate::{commands_since, Bench};

/// The share of no-filter throughput the hot-key limiter must keep.
const HOT_KEY_TARGET: f64 = 0.60;
/// The share of no-filter throughput the 1,000-keys limiter must keep.
const MANY_KEYS_TARGET: f64 = 0.45;

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
            crate::pin_process_to_cpu(pid, WRK_CPU);
        }
        backend
    }

    fn pids(&self) -> impl Iterator<Item = u32> {
        [self.redis.pid(), self.webdis.pid()].into_iter().flatten()
    }

    fn read(&self) -> Reading {
        Reading {
            cpu_seconds: self.pids().map(crate::process_cpu_seconds).sum(),
            commands: crate::redis_commands_at(self.redis.port()),
        }
    }
}

/// What one limiter cost in one round.
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

/// One round: the baseline's requests/s and CPU per request, and what
/// each limiter cost.
struct RoundCosts {
    base_rps: f64,
    base_us: f64,
    hot: Cost,
    keys: Cost,
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
    let gateways = [&plain, &hot, &keys];
    // Every gateway gets the same requests; the hot-key limiter counts
    // them all on its one global key and ignores the header.
    let requests = Requests::GetRotating("x-api-key", DISTINCT_KEYS);
    let mut rounds = Rounds::start(bench, id, &gateways, requests, 1);
    let mut costs: Vec<RoundCosts> = Vec::new();
    let mut backend_busy_highest = 0.0_f64;
    let mut unexpected = Vec::new();
    let mut hot_commands = BTreeMap::new();
    loop {
        let (hot_before, keys_before) = (hot_backend.read(), keys_backend.read());
        let Some(round) = rounds.next(bench) else {
            break;
        };
        let (hot_after, keys_after) = (hot_backend.read(), keys_backend.read());
        let on_hot = Cost::of(&round, 1, &hot_before, &hot_after);
        let on_keys = Cost::of(&round, 2, &keys_before, &keys_after);
        for (name, n) in commands_since(&hot_before.commands, &hot_after.commands) {
            *hot_commands.entry(name).or_insert(0) += n;
        }
        let backend_seconds = hot_after.cpu_seconds - hot_before.cpu_seconds
            + keys_after.cpu_seconds
            - keys_before.cpu_seconds;
        let backend_busy = backend_seconds / round.seconds;
        backend_busy_highest = backend_busy_highest.max(backend_busy);
        for (name, w) in ["baseline", "hot key", "1,000 keys"]
            .iter()
            .zip(&round.measured.per_gateway)
        {
            if w.unexpected(&[200]) > 0 || w.errors.total() > 0 {
                unexpected.push(format!(
                    "round {}: {name}: {}, {} socket errors",
                    costs.len() + 1,
                    w.statuses_text(),
                    w.errors.total()
                ));
            }
        }
        let (base_rps, base_us) = (
            round.rps.first().copied().unwrap_or(0.0),
            round.cpu_us.first().copied().unwrap_or(0.0),
        );
        rounds.record(format!(
            "baseline {base_rps:.0} req/s, {base_us:.1} µs per request; hot key {}; 1,000 keys {}; {}; Redis + webdis {:.0}% of wrk's CPU",
            on_hot.text(round.rps.get(1).copied().unwrap_or(0.0)),
            on_keys.text(round.rps.get(2).copied().unwrap_or(0.0)),
            round.cpu_text(),
            backend_busy * 100.0,
        ));
        costs.push(RoundCosts {
            base_rps,
            base_us,
            hot: on_hot,
            keys: on_keys,
        });
    }
    let done = rounds.finish();
    let mut s = Scenario::new(id, title, Kind::Overhead, done.reported.clone());
    s.connections = bench.opts.connections;
    s.redis_calls = Some(hot_commands.values().sum());
    s.redis_commands = hot_commands;
    done.report_rounds(&mut s);
    s.rounds = costs
        .iter()
        .map(|c| (c.base_rps, c.base_rps * c.hot.rps_ratio))
        .collect();
    let baseline_us = paired::median(costs.iter().map(|c| c.base_us));
    for (name, target, bound, pick) in [
        (
            "hot key",
            HOT_KEY_TARGET,
            HOT_KEY_ROUND_TRIPS,
            (|c: &RoundCosts| c.hot) as fn(&RoundCosts) -> Cost,
        ),
        ("1,000 keys", MANY_KEYS_TARGET, MANY_KEYS_ROUND_TRIPS, |c| {
            c.keys
        }),
    ] {
        let of: Vec<Cost> = costs.iter().map(pick).collect();
        let pairs: Vec<(f64, f64)> = of.iter().map(|c| (1.0, c.rps_ratio)).collect();
        let rps_median = median_ratio(&pairs).unwrap_or(0.0);
        let stack_median = paired::median(of.iter().map(|c| c.stack_ratio));
        let calls: u64 = of.iter().map(|c| c.round_trips).sum();
        let requests: u64 = of.iter().map(|c| c.requests).sum();
        let per_request = calls as f64 / requests.max(1) as f64;
        let backend_us_total: f64 = of
            .iter()
            .map(|c| c.backend_us * c.requests as f64)
            .sum::<f64>();
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
        // How many requests share a call follows how long a call takes,
        // which moves with the load on wrk's CPU: a target reported here,
        // checked in the single-gateway scenarios.
        s.fact(
            &format!("{name}: target <= {bound:.2} Redis round trips per request at 32 connections"),
            format!(
                "{} ({per_request:.3} over all rounds, {calls} for {requests} requests, at {} connections)",
                if per_request <= bound { "met" } else { "NOT met" },
                s.connections
            ),
        );
        // Never more than one, give or take the request wrk cuts off per
        // connection at the end of each round.
        let limit = 1.0 + f64::from(s.connections + 2) * of.len() as f64 / requests.max(1) as f64;
        s.check(
            format!("{name}: at most one Redis round trip per request (evalsha/eval/get)"),
            per_request <= limit,
            format!("{per_request:.3} per request (at most {limit:.3})"),
        );
    }
    s.check(
        "every gateway answered only 200, with no socket errors",
        unexpected.is_empty(),
        if unexpected.is_empty() {
            format!("{} answers 200 from the hot-key limiter", s.wrk.status(200))
        } else {
            unexpected.join("; ")
        },
    );
    s.fact(
        "Redis + webdis (both limiters') busiest round",
        format!("{:.0}% of wrk's CPU", backend_busy_highest * 100.0),
    );
    done.report_idle(&mut s, bench, true);
    s
}
