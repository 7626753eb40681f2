//! One gateway under steady load, each measured once beside the no-filter
//! baseline: Envoy with no filter, Envoy's C++ `local_ratelimit` and the
//! limiter (never reached, many keys, round trips by concurrency, flood).

use stack::{Envoy, EnvoyConfig};

use super::gateways::{
    limiter_config, limiter_gateway, local_ratelimit_gateway, per_key_limiter_config,
};
use super::measure::{measure, overhead, overhead_drive, Drive};
use crate::bench::Bench;
use crate::overhead_checks::HOT_KEY_ROUND_TRIPS;
use crate::scenario::{announce, Kind, Scenario};
use crate::wrk::{self, Requests};

pub(super) fn baseline(bench: &Bench) -> Scenario {
    let gateway = Envoy::start(EnvoyConfig::new().log_level("warning"));
    let mut s = overhead(
        bench,
        "baseline",
        "baseline: Envoy, no filter (direct_response)",
        None,
        &gateway,
        Requests::Get,
    );
    s.check_answers(&[200]);
    s
}

pub(super) fn local_ratelimit(bench: &Bench, flood: bool) -> Scenario {
    let (id, title, tokens) = if flood {
        (
            "local-ratelimit-flood",
            "Envoy local_ratelimit (C++), over limit (10/min)",
            10,
        )
    } else {
        (
            "local-ratelimit-pass",
            "Envoy local_ratelimit (C++), limit never reached",
            1_000_000_000,
        )
    };
    let gateway = local_ratelimit_gateway(tokens);
    let mut s = overhead(bench, id, title, Some("baseline"), &gateway, Requests::Get);
    if flood {
        // The bucket refills once a minute, so a run may see up to two fills.
        s.check_answers(&[200, 429]);
        let allowed = s.wrk.status(200);
        s.check(
            "nearly all answers are 429",
            allowed <= 2 * tokens,
            format!("{allowed} answers 200 (bucket of {tokens} per minute)"),
        );
    } else {
        s.check_answers(&[200]);
    }
    s
}

pub(super) fn limiter_pass(bench: &Bench) -> Scenario {
    let gateway = limiter_gateway(
        bench,
        &limiter_config(&bench.rule("pass"), 1_000_000_000, false),
    );
    let mut s = overhead(
        bench,
        "limiter-pass",
        "limiter, limit never reached, one hot key (every request counted in Redis; concurrent ones share round trips)",
        Some("baseline"),
        &gateway,
        Requests::Get,
    );
    s.judge_limiter_pass();
    s
}

/// Distinct `x-api-key` values the many-keys scenario rotates over.
pub(super) const DISTINCT_KEYS: u32 = 1000;

/// The round trips per request the many-keys scenario may pay: the target
/// of calls over several keys.
pub(super) const MANY_KEYS_ROUND_TRIPS: f64 = 0.25;

/// Redis round trips of the limiter's counting calls (top-level commands
/// only: the script's own INCRBY and EXPIRE are not round trips).
pub(super) const ROUND_TRIP_COMMANDS: &[&str] = &["evalsha", "eval", "get"];

pub(super) fn limiter_keys(bench: &Bench) -> Scenario {
    let gateway = limiter_gateway(bench, &per_key_limiter_config(&bench.rule("keys")));
    let mut s = overhead(
        bench,
        "limiter-keys",
        "limiter, 1,000 distinct per-header keys never reached (x-api-key rotating; keys that wait share calls)",
        Some("baseline"),
        &gateway,
        Requests::GetRotating("x-api-key", DISTINCT_KEYS),
    );
    s.check_answers(&[200]);
    // The connections in flight carry distinct keys, so nothing shares a
    // key's call: the sharing is that of several keys in one call.
    s.check_round_trips(ROUND_TRIP_COMMANDS, MANY_KEYS_ROUND_TRIPS, 1.0);
    s
}

/// The hot-key limiter at 1, 8 and 32 connections, one gateway: how many
/// round trips a request pays as more requests wait together.
pub(super) fn limiter_round_trips(bench: &Bench) -> Scenario {
    let title = "limiter, one hot key, Redis round trips per request at 1, 8 and 32 connections";
    announce(title);
    let config = limiter_config(&bench.rule("round-trips"), 1_000_000_000, false);
    let gateway = limiter_gateway(bench, &config);
    let mut rows = Vec::new();
    let mut last = None;
    for connections in [1u32, 8, 32] {
        let drive = Drive {
            connections,
            ..overhead_drive(bench, Requests::Get)
        };
        let m = measure(
            bench,
            &format!("limiter-round-trips-{connections}"),
            &[&gateway],
            drive,
        );
        let calls: u64 = ROUND_TRIP_COMMANDS
            .iter()
            .filter_map(|c| m.redis_commands.get(*c))
            .sum();
        let requests = m.wrk.requests.max(1) as f64;
        let per_request = calls as f64 / requests;
        let bound = if connections >= 32 {
            HOT_KEY_ROUND_TRIPS
        } else {
            // wrk cuts one request per connection off at the end.
            1.0 + f64::from(connections + 2) / requests
        };
        rows.push((
            connections,
            format!(
                "{per_request:.3} round trips per request ({calls} for {} requests, {:.0} req/s, p99 {})",
                m.wrk.requests,
                m.wrk.requests_per_sec,
                wrk::format_ms(m.wrk.latency_us.p99)
            ),
            per_request <= bound && m.wrk.unexpected(&[200]) == 0 && m.wrk.errors.total() == 0,
            bound,
            m.wrk.statuses_text(),
        ));
        last = Some((connections, m));
    }
    let Some((connections, m)) = last else {
        unreachable!("three runs were made");
    };
    let mut s = Scenario::new("limiter-round-trips", title, Kind::Overhead, m.wrk);
    s.baseline = Some("baseline");
    s.connections = connections;
    s.redis_calls = Some(m.redis_commands.values().sum());
    s.redis_commands = m.redis_commands;
    s.samples = m.samples;
    for (connections, text, passed, bound, answers) in rows {
        s.fact(&format!("{connections} connections"), &text);
        s.check(
            format!("{connections} connections: at most {bound:.3} round trips per request, only 200 answers"),
            passed,
            format!("{text}; answers {answers}"),
        );
    }
    s
}

pub(super) fn limiter_flood(bench: &Bench) -> Scenario {
    let per_minute = 10;
    let gateway = limiter_gateway(
        bench,
        &limiter_config(&bench.rule("flood"), per_minute, false),
    );
    // Use the budget up first so the whole run is over the limit.
    for _ in 0..=per_minute {
        let _ = stack::get(gateway.port(), "/", &[]);
    }
    let mut s = overhead(
        bench,
        "limiter-flood",
        "limiter, over limit (10/min; the over-limit cache answers)",
        Some("baseline"),
        &gateway,
        Requests::Get,
    );
    s.check_answers(&[200, 429]);
    let allowed = s.wrk.status(200);
    s.check(
        "nearly all answers are 429",
        allowed <= 2 * per_minute,
        format!("{allowed} answers 200 (limit {per_minute} per minute)"),
    );
    let per_request = s.redis_calls_per_request().unwrap_or(1.0);
    s.check(
        "Redis calls per request approach 0 under the flood",
        per_request < 0.001,
        format!(
            "{} commands for {} requests ({per_request:.6} per request): {}",
            s.redis_calls.unwrap_or(0),
            s.wrk.requests,
            s.redis_commands_text()
        ),
    );
    s
}
