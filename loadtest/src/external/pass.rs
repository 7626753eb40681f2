//! The external mode's overhead rows: the stack's plugins at a limit never
//! reached (`limiter-pass`, `token-quota-json`, `token-quota-sse`) beside
//! its no-filter routes (`baseline`, `upstream-baseline`), with Redis
//! round trips per request from `INFO commandstats`, judged as the local
//! run judges its rows of the same ids.
//!
//! The stack's other routes cannot serve these rows: the accuracy runs
//! reach their limits within seconds.

use std::time::Duration;

use super::accuracy::{
    charged, rule_keys, usage_per_answer, CHAT_JSON, CHAT_SSE, CHAT_SSE_WITH_USAGE,
};
use super::measure::{current_window, measure, Drive, External};
use crate::scenario::{announce, Kind, Scenario};
use crate::target::QuotaRoute;
use crate::wrk::{self, settle, Counters, Listener, Load, Requests};

/// Runs overhead row `id` against the stack; `None` for an id that is not
/// one of these rows or a route the stack does not have.
pub(super) fn run(ext: &External<'_>, id: &str) -> Option<Scenario> {
    match id {
        "limiter-pass" => limiter_pass(ext),
        "upstream-baseline" => upstream_baseline(ext),
        "token-quota-json" => token_quota(ext, false),
        "token-quota-sse" => token_quota(ext, true),
        _ => None,
    }
}

/// One steady run of `ext.opts.seconds` against `port` (after a warm-up),
/// as an overhead row compared with `baseline`.
fn overhead(
    ext: &External<'_>,
    id: &'static str,
    title: &str,
    baseline: Option<&'static str>,
    port: u16,
    listener: Option<&Listener>,
    requests: Requests<'_>,
) -> Scenario {
    announce(title);
    let drive = Drive {
        seconds: ext.opts.seconds,
        connections: ext.opts.connections,
        requests,
        warm_up: true,
    };
    // A route that has served nothing yet pays for its start in its first
    // second (more Redis round trips per request than afterwards), and a
    // stack's route may not have served anything before this row: the row
    // measures the steady state, so it is warmed up in a smoke run too
    // (`measure` warms up the other runs only).
    if ext.opts.smoke {
        let load = Load {
            port,
            seconds: 1,
            connections: drive.connections,
            requests,
            timeout: Duration::from_secs(2),
            cpu: None,
        };
        wrk::run(&load, &ext.script_dir);
        settle();
    }
    let listeners: Vec<Listener> = listener.into_iter().cloned().collect();
    let m = measure(ext, id, &[port], &listeners, drive);
    let mut s = Scenario::new(id, title, Kind::Overhead, m.wrk);
    s.baseline = baseline;
    s.connections = drive.connections;
    s.redis_calls = Some(m.redis_commands.values().sum());
    s.redis_commands = m.redis_commands;
    s.samples = m.samples;
    s
}

fn limiter_pass(ext: &External<'_>) -> Option<Scenario> {
    let route = ext.target.pass.limiter.as_ref()?;
    let baseline = ext
        .target
        .gateways
        .first()
        .and_then(|g| g.baseline_port)
        .map(|_| "baseline");
    let mut s = overhead(
        ext,
        "limiter-pass",
        &format!(
            "limiter of the stack (127.0.0.1:{}), limit never reached, one hot key (every \
             request counted in Redis; concurrent ones share round trips)",
            route.port
        ),
        baseline,
        route.port,
        route.listener.as_ref(),
        Requests::Get,
    );
    s.judge_limiter_pass();
    Some(s)
}

/// The route the token quota rows are compared with: the JSON route's
/// no-filter route (as in the local run, where both rows are compared
/// with JSON chat POSTs), or the event-stream route's when there is no
/// JSON route.
fn baseline_route<'a>(ext: &External<'a>) -> Option<(&'a QuotaRoute, &'static str)> {
    let pass = &ext.target.pass;
    pass.json
        .as_ref()
        .map(|r| (r, CHAT_JSON))
        .or_else(|| pass.sse.as_ref().map(|r| (r, CHAT_SSE_WITH_USAGE)))
}

fn upstream_baseline(ext: &External<'_>) -> Option<Scenario> {
    let (route, body) = baseline_route(ext)?;
    let kind = if body == CHAT_JSON {
        "JSON"
    } else {
        "event streams"
    };
    let mut s = overhead(
        ext,
        "upstream-baseline",
        &format!(
            "baseline: the stack's no-filter route to its upstream (127.0.0.1:{}{}, {kind}), \
             chat POSTs",
            route.baseline_port, route.baseline_path
        ),
        None,
        route.baseline_port,
        None,
        Requests::PostJsonTo(&route.baseline_path, body),
    );
    s.check_answers(&[200]);
    Some(s)
}

/// The sum of `route`'s token quota counters of the windows from
/// `first` to now.
fn charged_since(ext: &External<'_>, route: &QuotaRoute, first: u64) -> u64 {
    (first..=current_window())
        .step_by(60)
        .map(|window| charged(ext, route, window))
        .sum()
}

fn token_quota(ext: &External<'_>, sse: bool) -> Option<Scenario> {
    let pass = &ext.target.pass;
    let (id, route, body, baseline_body, kind) = if sse {
        let route = pass.sse.as_ref()?;
        let kind = "streaming chat POSTs, event-stream answers";
        (
            "token-quota-sse",
            route,
            CHAT_SSE,
            CHAT_SSE_WITH_USAGE,
            kind,
        )
    } else {
        let route = pass.json.as_ref()?;
        let kind = "chat POSTs, JSON answers";
        ("token-quota-json", route, CHAT_JSON, CHAT_JSON, kind)
    };
    let title = format!(
        "token quota of the stack (127.0.0.1:{}{}), {kind}, quota never reached",
        route.port, route.path
    );
    // Known only with the stack's configuration: the rule that names the
    // counters, and the upstream whose answers are counted.
    let counted = route.upstream.as_ref().filter(|_| !route.rule.is_empty());
    let tokens_per_answer =
        counted.map(|_| usage_per_answer(route.baseline_port, &route.baseline_path, baseline_body));
    let upstream_count = || {
        counted
            .and_then(Counters::read_listener)
            .unwrap_or_default()
    };
    // Read before the warm-up: both it and the measured run are compared.
    // A counter expires a window's length after its first charge, so the
    // run (warm-up included) waits until it fits in what is left of one
    // window: the counter it charges then lives until the run has ended.
    // A run longer than that outlives its first counter: the charge is
    // not checked then.
    let room = Duration::from_secs(ext.opts.seconds + 6);
    let fits = room < Duration::from_secs(59);
    let first_window = if fits {
        stack::wait_for_window_room(Duration::from_secs(60), room)
    } else {
        current_window()
    };
    let charged_before = counted
        .filter(|_| fits)
        .map(|_| charged_since(ext, route, first_window));
    let upstream_before = upstream_count();
    let mut s = overhead(
        ext,
        id,
        &title,
        baseline_route(ext).map(|_| "upstream-baseline"),
        route.port,
        route.listener.as_ref(),
        Requests::PostJsonTo(&route.path, body),
    );
    s.judge_token_quota_pass();
    match (charged_before, tokens_per_answer) {
        (Some(before), Some(tokens)) => {
            let charged = charged_since(ext, route, first_window).saturating_sub(before);
            let upstream_answers = upstream_count().minus(&upstream_before).xx2;
            s.fact("Redis keys read", rule_keys(route));
            s.judge_tokens_charged(charged, upstream_answers, tokens);
        }
        _ => s.fact(
            "tokens charged in Redis match the usage the upstream reported",
            if fits {
                "not checked: the generic mode knows neither the route's rule_name nor its \
                 upstream's answer counters"
            } else {
                "not checked: the run is longer than the quota's window, so its first \
                 counter expires before it ends"
            },
        ),
    }
    Some(s)
}
