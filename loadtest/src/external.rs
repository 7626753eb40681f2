//! The scenarios that run against a stack the load test did not start
//! (`--stack compose`, `--gateway ...`): everything that needs no process
//! of its own and no control of the stack's processes, plus the fault
//! scenario when the user says how to stop and start Redis.
//!
//! What cannot run is listed with the reason ([`skipped`]); the report
//! shows it beside the results.

use std::time::Duration;

use crate::scenario::{Scenario, Skipped};
use crate::target::{Gateway, Target};
use crate::wrk;

mod accuracy;
mod endurance;
mod measure;
mod overhead;
mod pass;
#[cfg(test)]
mod tests;

use accuracy::{limiter_accuracy, quota_accuracy};
use endurance::{faults, soak};
pub use measure::External;
use overhead::{baseline, limiter_flood};

/// The external scenarios, by id, in the order they run: the accuracy
/// runs first, together in one fresh per-minute window (each counts its
/// own key), then the rest.
pub const IDS: &[&str] = &[
    "limiter-accuracy",
    "token-quota-json-accuracy",
    "token-quota-sse-accuracy",
    "baseline",
    "limiter-pass",
    "upstream-baseline",
    "token-quota-json",
    "token-quota-sse",
    "limiter-flood",
    "soak",
    "faults",
];

/// The local scenarios the external mode leaves out, whatever the stack.
fn always_skipped(target: &Target) -> Vec<Skipped> {
    let skip = |id: &str, why: &str| Skipped {
        id: id.to_owned(),
        why: why.to_owned(),
    };
    let mut out = vec![
        skip(
            "local-ratelimit-pass, local-ratelimit-flood",
            "the stack has no gateway with Envoy's C++ local_ratelimit (the local run starts one)",
        ),
        skip(
            "limiter-flood-paired",
            "starts five gateways itself (no filter, local_ratelimit, the cheapest Wasm refusals, \
             the limiter) and pins their processes to one CPU",
        ),
        skip(
            "limiter-redis-paired, token-quota-json-paired, token-quota-sse-paired",
            "start their gateways with a Redis and a webdis each, and pin the gateways to one CPU \
             and Redis, webdis and wrk to another",
        ),
        skip(
            "cluster-accuracy, cluster-failover, cluster-token-quota",
            "start a Redis Cluster of their own behind Envoy's redis_proxy, with gateways and \
             webdis pointed at it, and kill one of its masters",
        ),
    ];
    let routes = target
        .quota
        .as_ref()
        .map_or((false, false), |q| (q.json.is_some(), q.sse.is_some()));
    if target.pass.limiter.is_none() {
        out.push(skip(
            "limiter-pass",
            "needs a limiter whose limit is never reached (`--stack compose` has one; with \
             --gateway: --limiter-pass URL)",
        ));
    }
    match (target.pass.json.is_some(), target.pass.sse.is_some()) {
        (false, false) => out.push(skip(
            "upstream-baseline, token-quota-json, token-quota-sse",
            "need a token quota that is never reached (`--stack compose` has them; with \
             --gateway: --token-quota-pass-json URL and/or --token-quota-pass-sse URL, with \
             --token-quota-baseline URL)",
        )),
        (true, false) => out.push(skip(
            "token-quota-sse",
            "no event-stream token quota route whose quota is never reached given \
             (--token-quota-pass-sse URL)",
        )),
        (false, true) => out.push(skip(
            "token-quota-json",
            "no JSON token quota route whose quota is never reached given \
             (--token-quota-pass-json URL)",
        )),
        (true, true) => {}
    }
    match routes {
        (false, false) => out.push(skip(
            "token-quota-json-accuracy, token-quota-sse-accuracy",
            "no token quota routes given (`--stack compose` has them; with --gateway: \
             --token-quota-json URL and/or --token-quota-sse URL, --token-quota-baseline URL, \
             --token-quota-rule NAME)",
        )),
        (true, false) => out.push(skip(
            "token-quota-sse-accuracy",
            "no event-stream token quota route given (--token-quota-sse URL)",
        )),
        (false, true) => out.push(skip(
            "token-quota-json-accuracy",
            "no JSON token quota route given (--token-quota-json URL)",
        )),
        (true, true) => {}
    }
    if target.redis_stop.is_none() {
        out.push(skip(
            "faults",
            "needs control of the stack's Redis: give --redis-control \"docker compose {} redis\" \
             (or --redis-stop CMD and --redis-start CMD)",
        ));
    }
    out
}

/// The external scenario ids that can run against `target`.
pub fn runnable(target: &Target) -> Vec<&'static str> {
    IDS.iter()
        .copied()
        .filter(|id| match *id {
            "token-quota-json-accuracy" => target.quota.as_ref().is_some_and(|q| q.json.is_some()),
            "token-quota-sse-accuracy" => target.quota.as_ref().is_some_and(|q| q.sse.is_some()),
            "limiter-pass" => target.pass.limiter.is_some(),
            "token-quota-json" => target.pass.json.is_some(),
            "token-quota-sse" => target.pass.sse.is_some(),
            "upstream-baseline" => target.pass.json.is_some() || target.pass.sse.is_some(),
            _ => true,
        })
        .filter(|id| *id != "faults" || target.redis_stop.is_some())
        .collect()
}

/// Runs the external scenarios `only` names (all that can run if empty);
/// returns them with the ones skipped.
pub fn run(ext: &External<'_>, only: &[String]) -> (Vec<Scenario>, Vec<Skipped>) {
    let mut skipped = always_skipped(ext.target);
    let wanted: Vec<&str> = runnable(ext.target)
        .into_iter()
        .filter(|id| only.is_empty() || only.iter().any(|o| o == id))
        .collect();
    for id in only {
        if !wanted.contains(&id.as_str()) && !skipped.iter().any(|s| s.id.contains(id.as_str())) {
            skipped.push(Skipped {
                id: id.clone(),
                why: "not a scenario of the external mode".to_owned(),
            });
        }
    }
    let mut out = Vec::new();
    let limit = limiter_limit(ext.target.gateways.first());
    // The accuracy runs need their keys empty: they start together right
    // after a window begins, each in its own key.
    let fresh = wanted.iter().any(|id| id.ends_with("accuracy"));
    let window = fresh.then(|| {
        let window = stack::wait_for_window_room(Duration::from_secs(60), Duration::from_secs(59));
        println!("[loadtest]   a fresh per-minute window began at {window}");
        window
    });
    for id in wanted {
        let s = match id {
            "limiter-accuracy" => limiter_accuracy(ext, limit, window),
            "token-quota-json-accuracy" => quota_accuracy(ext, false, window),
            "token-quota-sse-accuracy" => quota_accuracy(ext, true, window),
            "baseline" => baseline(ext),
            "limiter-flood" => limiter_flood(ext, limit),
            "soak" => soak(ext, limit),
            "faults" => faults(ext),
            other => pass::run(ext, other),
        };
        let Some(s) = s else { continue };
        println!(
            "[loadtest]   -> {:.0} req/s, p99 {}, {}",
            s.wrk.requests_per_sec,
            wrk::format_ms(s.wrk.latency_us.p99),
            s.wrk.statuses_text(),
        );
        out.push(s);
    }
    (out, skipped)
}

/// The limit the limiter reports in `x-ratelimit-limit` (one request).
///
/// # Panics
/// When the gateway does not answer or sends no such header: the limiter
/// must run with `show_limit_quota_header: true` for the external mode.
fn limiter_limit(gateway: Option<&Gateway>) -> u64 {
    let Some(gateway) = gateway else {
        panic!("no limiter gateway given");
    };
    let answer = stack::get(gateway.port, "/", &[]).unwrap_or_else(|e| {
        panic!(
            "{}: 127.0.0.1:{} does not answer: {e}",
            gateway.name, gateway.port
        )
    });
    answer
        .header("x-ratelimit-limit")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "{}: 127.0.0.1:{} answered {} without x-ratelimit-limit: the external mode needs \
                 the limiter configured with `show_limit_quota_header: true`",
                gateway.name, gateway.port, answer.status
            )
        })
}
