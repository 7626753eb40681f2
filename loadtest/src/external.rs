//! The scenarios that run against a stack the load test did not start
//! (`--stack compose`, `--gateway ...`): everything that needs no process
//! of its own and no control of the stack's processes, plus the fault
//! scenario when the user says how to stop and start Redis.
//!
//! What cannot run is listed with the reason ([`skipped`]); the report
//! shows it beside the results.

// serde_json's `Value` index answers `Null` for a missing key or position;
// it never panics.
#![allow(clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::scenarios::{Kind, Scenario};
use crate::target::{Gateway, QuotaRoute, Target};
use crate::wrk::{self, Counters, Listener, Load, Progress, Requests, Sample, WrkResult};
use crate::{commands_since, settle, Options};

/// A chat request the quota routes answer with JSON.
pub(crate) const CHAT_JSON: &str =
    r#"{"model":"qwen-max","messages":[{"role":"user","content":"Tell me a story."}]}"#;
/// A streaming chat request (the answers are event streams).
pub(crate) const CHAT_SSE: &str = r#"{"model":"qwen-max","stream":true,"messages":[{"role":"user","content":"Tell me a story."}]}"#;
/// The streaming request as the no-filter route gets it: it asks for the
/// usage itself (an upstream that follows OpenAI reports it in a stream
/// only when asked; the token quota asks on its routes).
pub(crate) const CHAT_SSE_WITH_USAGE: &str = r#"{"model":"qwen-max","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Tell me a story."}]}"#;
/// How many answers of the no-filter route are read to see whether the
/// upstream reports the same usage every time.
const USAGE_READINGS: usize = 3;

/// A scenario of the local run that does not run here, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub id: String,
    pub why: String,
}

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

/// The run's state: options, the stack, and where results go.
pub struct External<'a> {
    pub opts: &'a Options,
    pub target: &'a Target,
    pub script_dir: std::path::PathBuf,
}

impl External<'_> {
    fn redis_commands(&self) -> BTreeMap<String, u64> {
        crate::redis_commands_at(self.target.redis_port)
    }
}

/// Runs the external scenarios `only` names (all that can run if empty);
/// returns them with the ones skipped. An id this file does not run
/// (the overhead rows) is run by `others`.
pub fn run(
    ext: &External<'_>,
    only: &[String],
    others: impl Fn(&External<'_>, &str) -> Option<Scenario>,
) -> (Vec<Scenario>, Vec<Skipped>) {
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
            other => others(ext, other),
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

/// How to drive one measured run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Drive<'a> {
    pub seconds: u64,
    pub connections: u32,
    pub requests: Requests<'a>,
    pub warm_up: bool,
}

/// What one measured run saw.
pub(crate) struct Measured {
    pub wrk: WrkResult,
    pub per_gateway: Vec<WrkResult>,
    pub redis_commands: BTreeMap<String, u64>,
    pub samples: Vec<Sample>,
}

/// wrk against every port at once, progress from the listeners' counters,
/// Redis commands counted around the measured part.
pub(crate) fn measure(
    ext: &External<'_>,
    label: &str,
    ports: &[u16],
    listeners: &[Listener],
    drive: Drive<'_>,
) -> Measured {
    let load = |port: u16, seconds: u64| Load {
        port,
        seconds,
        connections: drive.connections,
        requests: drive.requests,
        timeout: Duration::from_secs(2),
        cpu: None,
    };
    if drive.warm_up && !ext.opts.smoke {
        for port in ports {
            wrk::run(&load(*port, 1), &ext.script_dir);
        }
        settle();
    }
    let mut attempt = 0;
    let (per_gateway, before, progress) = loop {
        attempt += 1;
        let before = ext.redis_commands();
        let progress = Progress::start_on(label, listeners, drive.seconds);
        let runs: Result<Vec<WrkResult>, wrk::Unusable> = std::thread::scope(|scope| {
            let runs: Vec<_> = ports
                .iter()
                .map(|port| {
                    let load = load(*port, drive.seconds);
                    let dir = &ext.script_dir;
                    scope.spawn(move || wrk::try_run(&load, dir))
                })
                .collect();
            runs.into_iter()
                .map(|run| {
                    run.join()
                        .unwrap_or_else(|_| panic!("{label}: wrk thread panicked"))
                })
                .collect()
        });
        match runs {
            Ok(runs) => break (runs, before, progress),
            Err(lost) if attempt < wrk::ATTEMPTS => {
                drop(progress);
                println!("[loadtest]   {label}: {lost}; measuring again");
            }
            Err(lost) => panic!("{label}: {lost}, {} times in a row", wrk::ATTEMPTS),
        }
    };
    let samples = progress.finish();
    settle();
    let redis_commands = commands_since(&before, &ext.redis_commands());
    let wrk = per_gateway.iter().skip(1).fold(
        per_gateway.first().cloned().unwrap_or_default(),
        |sum, r| sum.combined(r),
    );
    Measured {
        wrk,
        per_gateway,
        redis_commands,
        samples,
    }
}

pub(crate) fn announce(title: &str) {
    println!("[loadtest] == {title}");
}

pub(crate) fn current_window() -> u64 {
    (stack::unix_now() / 60.0).floor() as u64 * 60
}

fn limiter_accuracy(ext: &External<'_>, limit: u64, window: Option<u64>) -> Option<Scenario> {
    let gateways = &ext.target.gateways;
    let title = format!(
        "accuracy: limiter on {} gateway(s) of the stack, 32 connections each, {limit} per minute on one key",
        gateways.len()
    );
    announce(&title);
    let ports: Vec<u16> = gateways.iter().map(|g| g.port).collect();
    let listeners: Vec<Listener> = gateways.iter().filter_map(|g| g.listener.clone()).collect();
    let drive = Drive {
        seconds: ext.opts.accuracy_seconds,
        connections: 32,
        requests: Requests::Get,
        warm_up: false,
    };
    let started_in = current_window();
    let m = measure(ext, "limiter-accuracy", &ports, &listeners, drive);
    let ended_in = current_window();
    let mut s = Scenario::new("limiter-accuracy", &title, Kind::Accuracy, m.wrk);
    s.gateways = gateways.len() as u32;
    s.connections = drive.connections * s.gateways;
    s.redis_calls = Some(m.redis_commands.values().sum());
    s.redis_commands = m.redis_commands;
    s.samples = m.samples;
    for (g, w) in gateways.iter().zip(&m.per_gateway) {
        s.fact(&format!("{} answers", g.name), w.statuses_text());
    }
    s.fact(
        "Redis round trips per request (evalsha/eval)",
        format!("{:.4}", s.per_request(&["evalsha", "eval"])),
    );
    s.check(
        "the run started in a fresh window and stayed in it",
        window == Some(started_in) && started_in == ended_in,
        format!("fresh window {window:?}, started in {started_in}, ended in {ended_in}"),
    );
    s.check_answers(&[200, 429]);
    let allowed = s.wrk.status(200);
    s.check(
        "exactly the limit answered 200 across the gateways",
        allowed == limit,
        format!("{allowed} answers 200, limit {limit}"),
    );
    Some(s)
}

/// The tokens one answer of `path` on the no-filter route reports.
///
/// # Panics
/// When the route does not answer 200 with an OpenAI usage object.
pub(crate) fn usage_per_answer(port: u16, path: &str, body: &str) -> u64 {
    let answer = stack::request(
        port,
        "POST",
        path,
        &[("content-type", "application/json")],
        stack::Body::Fixed(body.as_bytes()),
    )
    .unwrap_or_else(|e| panic!("no-filter route 127.0.0.1:{port}{path}: {e}"));
    let text = answer.text();
    // The JSON answer, or the last event of a stream that carries usage.
    let usage = std::iter::once(text.as_str())
        .chain(text.lines().filter_map(|l| l.strip_prefix("data: ")))
        .filter_map(|doc| serde_json::from_str::<Value>(doc).ok())
        .filter_map(|doc| {
            let usage = doc.get("usage")?;
            usage["total_tokens"].as_u64().or_else(|| {
                Some(usage["prompt_tokens"].as_u64()? + usage["completion_tokens"].as_u64()?)
            })
        })
        .next_back();
    match (answer.status, usage) {
        (200, Some(tokens)) => tokens,
        _ => panic!(
            "no-filter route 127.0.0.1:{port}{path} answered {} without a usage object:\n{text}",
            answer.status
        ),
    }
}

/// The Redis `KEYS` pattern of every counter key of `route`'s rule: its
/// key prefix, then the rule name escaped as the token quota writes it
/// in its keys (`%`, `:`, `{`, `}` as `%25`, `%3A`, `%7B`, `%7D`), both
/// with the pattern's own special characters escaped.
pub(crate) fn rule_keys(route: &QuotaRoute) -> String {
    let glob = |text: &str| -> String {
        text.chars()
            .flat_map(|c| {
                let special = matches!(c, '*' | '?' | '[' | ']' | '\\');
                special
                    .then_some('\\')
                    .into_iter()
                    .chain(std::iter::once(c))
            })
            .collect()
    };
    let rule: String = route
        .rule
        .chars()
        .map(|c| match c {
            '%' => "%25".to_owned(),
            ':' => "%3A".to_owned(),
            '{' => "%7B".to_owned(),
            '}' => "%7D".to_owned(),
            c => c.to_string(),
        })
        .collect();
    format!("{}:{{{}:*", glob(&route.key_prefix), glob(&rule))
}

/// The sum of the counts under `route`'s token quota keys of `window`.
fn charged(ext: &External<'_>, route: &QuotaRoute, window: u64) -> u64 {
    crate::redis_sum_at(
        ext.target.redis_port,
        &rule_keys(route),
        &format!(":{window}"),
    )
}

/// The limit the token quota reports in its refusal
/// (`x-tokenratelimit-limit`), asked with one more request once the
/// quota is used up; `None` when the route does not refuse it with that
/// header.
fn refusal_limit(route: &QuotaRoute, body: &str) -> Option<u64> {
    let answer = stack::request(
        route.port,
        "POST",
        &route.path,
        &[("content-type", "application/json")],
        stack::Body::Fixed(body.as_bytes()),
    )
    .ok()?;
    if answer.status == 200 {
        return None;
    }
    answer
        .header("x-tokenratelimit-limit")
        .and_then(|v| v.trim().parse().ok())
}

fn quota_accuracy(ext: &External<'_>, sse: bool, window: Option<u64>) -> Option<Scenario> {
    let quota = ext.target.quota.as_ref()?;
    let (id, route, body, baseline_body): (&'static str, &QuotaRoute, &str, &str) = if sse {
        (
            "token-quota-sse-accuracy",
            quota.sse.as_ref()?,
            CHAT_SSE,
            CHAT_SSE_WITH_USAGE,
        )
    } else {
        (
            "token-quota-json-accuracy",
            quota.json.as_ref()?,
            CHAT_JSON,
            CHAT_JSON,
        )
    };
    let title = format!(
        "accuracy: token quota of the stack, {} answers, {}",
        if sse { "event-stream" } else { "JSON" },
        route.per_minute.map_or_else(
            || format!("rule {:?}", route.rule),
            |n| format!("{n} tokens per minute")
        )
    );
    announce(&title);
    // wrk does not read the answers, so the usage of those the clients
    // got is known only if the upstream reports the same for every one.
    let readings: Vec<u64> = (0..USAGE_READINGS)
        .map(|_| usage_per_answer(route.baseline_port, &route.baseline_path, baseline_body))
        .collect();
    let tokens = readings.first().copied().unwrap_or_default();
    let steady = readings.iter().all(|t| *t == tokens);
    let upstream_count = || {
        route
            .upstream
            .as_ref()
            .and_then(Counters::read_listener)
            .unwrap_or_default()
    };
    let drive = Drive {
        // Long enough to use the quota up at a few hundred answers a second.
        seconds: ext.opts.quota_seconds.max(4),
        connections: 16,
        requests: Requests::PostJsonTo(&route.path, body),
        warm_up: false,
    };
    let started_in = current_window();
    let upstream_before = upstream_count();
    let listeners: Vec<Listener> = route.listener.iter().cloned().collect();
    let m = measure(ext, id, &[route.port], &listeners, drive);
    let ended_in = current_window();
    let upstream_answers = upstream_count().minus(&upstream_before).xx2;
    let charged = charged(ext, route, started_in);
    // Asked after the count is read: a probe the quota admits is charged.
    let limit = route.per_minute.or_else(|| refusal_limit(route, body));
    let mut s = Scenario::new(id, &title, Kind::Accuracy, m.wrk);
    s.connections = drive.connections;
    s.redis_calls = Some(m.redis_commands.values().sum());
    s.redis_commands = m.redis_commands;
    s.samples = m.samples;
    let answered = s.wrk.status(200);
    let reported = answered * tokens;
    s.fact(
        "quota (tokens per minute)",
        match (route.per_minute, limit) {
            (Some(n), _) => n.to_string(),
            (None, Some(n)) => format!("{n} (x-tokenratelimit-limit of the gateway's refusal)"),
            (None, None) => {
                "unknown: the gateway's refusal carried no x-tokenratelimit-limit".to_owned()
            }
        },
    );
    s.fact(
        "Redis keys read",
        format!("{} ending in :{started_in}", rule_keys(route)),
    );
    s.fact(
        "tokens per answer (read on the no-filter route)",
        if steady {
            tokens.to_string()
        } else {
            format!("{readings:?} (not the same every time)")
        },
    );
    s.fact("answers 200 at the clients", answered);
    if route.upstream.is_some() {
        s.fact("answers from the upstream", upstream_answers);
    }
    s.fact("tokens charged in Redis", charged);
    s.check(
        "the run started in a fresh window and stayed in it",
        window == Some(started_in) && started_in == ended_in,
        format!("fresh window {window:?}, started in {started_in}, ended in {ended_in}"),
    );
    s.check_answers(&[200, 429]);
    s.check(
        "the quota was used up (so nothing was in flight when wrk stopped)",
        s.wrk.status(429) > 0 && limit.is_some_and(|limit| charged >= limit),
        format!(
            "{} answers 429, {charged} of {} tokens",
            s.wrk.status(429),
            limit.map_or_else(|| "an unknown number of".to_owned(), |n| n.to_string())
        ),
    );
    let what = "tokens charged in Redis equal the usage of the answers the clients got";
    if steady {
        s.check(
            what,
            charged == reported,
            format!("{charged} charged, {answered} answers x {tokens} = {reported} reported"),
        );
    } else {
        s.fact(
            what,
            format!(
                "not checked: the no-filter route reported {readings:?} tokens for {USAGE_READINGS} \
                 answers to the same request, and the load driver does not read the answers; \
                 the check needs an upstream that reports the same usage every time (a mock of \
                 the model, as the compose stack's)"
            ),
        );
    }
    if route.upstream.is_some() {
        // The gateway does not hold request headers while the token quota
        // reads the body (Higress with ABI 0.2.1 modules, and the
        // stand-in), so a request reaches the upstream before the quota is
        // read, and an upstream that answers from the headers alone has
        // answered some requests the quota then refuses: their answers are
        // replaced by the refusal. No admitted answer may be lost.
        let refused = s.wrk.status(429);
        s.check(
            "every answer the upstream gave reached a client, or was replaced by a refusal",
            answered <= upstream_answers && upstream_answers - answered <= refused,
            format!(
                "{answered} answers 200 at the clients, {upstream_answers} from the upstream, \
                 {refused} refused"
            ),
        );
    } else {
        s.fact(
            "every answer the upstream gave reached a client",
            "not checked: the upstream's own answer counters are not known to the generic \
             mode (its admin and listener are not given); charged == reported still ties \
             the tokens in Redis to the answers the clients got",
        );
    }
    Some(s)
}

fn baseline(ext: &External<'_>) -> Option<Scenario> {
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

fn limiter_flood(ext: &External<'_>, limit: u64) -> Option<Scenario> {
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

/// Bytes the gateway's allocator holds (`allocated` of the admin's
/// `/memory`): the external mode cannot read the process's RSS.
fn allocated(admin_port: u16) -> Option<u64> {
    let page = stack::get_with_timeout(admin_port, "/memory", &[], Duration::from_secs(2)).ok()?;
    let memory: Value = serde_json::from_slice(&page.body).ok()?;
    memory["allocated"].as_str()?.parse().ok()
}

fn soak(ext: &External<'_>, per_minute: u64) -> Option<Scenario> {
    let gateway = ext.target.gateways.first()?;
    let target = ext.opts.soak_requests;
    let reference_at = ext.opts.soak_reference_after;
    let title = format!(
        "soak: the stack's limiter, {target} requests over the flood path ({per_minute}/min)"
    );
    announce(&title);
    let load = Load {
        port: gateway.port,
        seconds: ext.opts.soak_phase_seconds,
        connections: ext.opts.connections,
        requests: Requests::Get,
        timeout: Duration::from_secs(2),
        cpu: None,
    };
    let memory = || gateway.admin_port.and_then(allocated);
    let first_window = current_window() / 60;
    let calls_before = ext.redis_commands();
    let mut total: Option<WrkResult> = None;
    let mut reference: Option<(u64, Option<u64>)> = None;
    let started = Instant::now();
    // Bounded: a phase that answers fewer than 1000 requests ends the soak.
    for _ in 0..10_000 {
        let phase = wrk::run(&load, &ext.script_dir);
        let stalled = phase.requests < 1000;
        let sum = match total.take() {
            Some(t) => t.followed_by(&phase),
            None => phase,
        };
        let done = sum.requests;
        let bytes = memory();
        if reference.is_none() && done >= reference_at {
            reference = Some((done, bytes));
        }
        println!(
            "[loadtest]   soak: {done:>9}/{target} requests  {:>7.0}/s  allocated {}  {:.0} s",
            sum.requests_per_sec,
            bytes.map_or("-".to_owned(), |b| format!("{b} B")),
            started.elapsed().as_secs_f64()
        );
        total = Some(sum);
        if done >= target || stalled {
            break;
        }
    }
    settle();
    let total = total.unwrap_or_default();
    let last_window = current_window() / 60;
    let end = memory();
    let redis_commands = commands_since(&calls_before, &ext.redis_commands());
    let mut s = Scenario::new("soak", &title, Kind::Soak, total);
    s.connections = ext.opts.connections;
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
    let what =
        "the gateway's allocated memory (admin /memory) at the end is within 5% of its early value";
    match (reference, end) {
        (Some((at, Some(early))), Some(end)) => {
            let change = (end as f64 - early as f64) / early as f64;
            s.fact(
                "allocated after the reference requests",
                format!("{early} B after {at} requests"),
            );
            s.fact(
                "allocated at the end",
                format!("{end} B after {} requests", s.wrk.requests),
            );
            s.check(
                what,
                change.abs() <= 0.05,
                format!(
                    "{early} B after {at} requests, {end} B after {} ({:+.2}%)",
                    s.wrk.requests,
                    change * 100.0
                ),
            );
        }
        _ if gateway.admin_port.is_none() => {
            s.fact(what, "not measured: no admin port given (--admin URL)");
        }
        _ => s.check(
            what,
            false,
            "the admin's /memory did not answer, or the soak stopped early",
        ),
    }
    Some(s)
}

/// Runs a user's shell command that stops or starts the stack's Redis.
fn shell(what: &str, command: &str) -> Result<(), String> {
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", command]);
    stack::kill_with_this_thread(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| format!("{what}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{what} `{command}` failed: {status}")),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what} `{command}` ran over 60 s; killed"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("{what}: {e}")),
        }
    }
}

/// Redis stopped and started by the user's commands while the limiter
/// runs under load. The stack's limiter decides what an outage answers
/// (its `failure_mode_deny`), so this checks what holds either way: no
/// request hangs, no socket errors, only 200/429/503, and Redis counts
/// again after the restart with nothing done by hand.
fn faults(ext: &External<'_>) -> Option<Scenario> {
    let (Some(stop), Some(start)) = (&ext.target.redis_stop, &ext.target.redis_start) else {
        return None;
    };
    let gateway = ext.target.gateways.first()?;
    let opts = ext.opts;
    let title = format!(
        "faults: the stack's Redis stopped for {} s mid-run by `{stop}`",
        opts.fault_gap
    );
    announce(&title);
    let seconds = opts.fault_before + opts.fault_gap + opts.fault_after;
    let load = Load {
        port: gateway.port,
        seconds,
        connections: opts.connections,
        requests: Requests::Get,
        timeout: Duration::from_secs(3),
        cpu: None,
    };
    let listeners: Vec<Listener> = gateway.listener.iter().cloned().collect();
    let progress = Progress::start_on("faults", &listeners, seconds);
    let started = Instant::now();
    let (result, stopped_at, restarted_at, control, recovered) = std::thread::scope(|scope| {
        let run = scope.spawn(|| wrk::run(&load, &ext.script_dir));
        std::thread::sleep(Duration::from_secs(opts.fault_before));
        let stopped_at = started.elapsed().as_secs_f64();
        let stopped = shell("--redis-stop", stop);
        println!("[loadtest]   faults: Redis stopped at {stopped_at:.1} s ({stopped:?})");
        std::thread::sleep(Duration::from_secs(opts.fault_gap));
        let restarted_at = started.elapsed().as_secs_f64();
        let restarted = shell("--redis-start", start);
        println!("[loadtest]   faults: Redis started again at {restarted_at:.1} s ({restarted:?})");
        // Two seconds for the gateway to reconnect, then count what
        // reaches Redis until the run ends.
        std::thread::sleep(Duration::from_secs(2));
        let recovered = crate::try_redis_commands_at(ext.target.redis_port).ok();
        let result = run
            .join()
            .unwrap_or_else(|_| panic!("faults: wrk thread panicked"));
        (
            result,
            stopped_at,
            restarted_at,
            stopped.and(restarted),
            recovered,
        )
    });
    let samples = progress.finish();
    let after = recovered.map(|before| commands_since(&before, &ext.redis_commands()));
    let mut s = Scenario::new("faults", &title, Kind::Faults, result);
    s.connections = opts.connections;
    s.samples = samples;
    s.fact("Redis stopped at", format!("{stopped_at:.1} s"));
    s.fact("Redis started again at", format!("{restarted_at:.1} s"));
    s.check(
        "the stop and start commands succeeded",
        control.is_ok(),
        control
            .err()
            .unwrap_or_else(|| format!("`{stop}`, then `{start}`")),
    );
    s.check_answers(&[200, 429, 503]);
    let max = Duration::from_micros(s.wrk.latency_us.max);
    s.check(
        "no request hung (slowest answer under 2 s, no wrk timeouts)",
        s.wrk.errors.timeout == 0 && max <= Duration::from_secs(2),
        format!(
            "slowest answer {:.1} ms, {} wrk timeouts",
            max.as_secs_f64() * 1e3,
            s.wrk.errors.timeout
        ),
    );
    s.check(
        "Redis counts again after the restart, with nothing done by hand",
        after.as_ref().is_some_and(|a| a.values().sum::<u64>() > 0),
        match &after {
            Some(a) => format!(
                "from 2 s after the restart to the end of the run: {}",
                if a.is_empty() {
                    "no commands".to_owned()
                } else {
                    format!("{a:?}")
                }
            ),
            None => "Redis did not answer INFO 2 s after the restart".to_owned(),
        },
    );
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(rule: &str, key_prefix: &str) -> QuotaRoute {
        QuotaRoute {
            port: 1,
            path: "/".to_owned(),
            listener: None,
            rule: rule.to_owned(),
            key_prefix: key_prefix.to_owned(),
            per_minute: None,
            upstream: None,
            baseline_port: 2,
            baseline_path: "/".to_owned(),
        }
    }

    #[test]
    fn rule_keys_escape_the_rule_as_the_quota_does_and_the_pattern_too() {
        assert_eq!(
            rule_keys(&route("compose-json", "token-quota")),
            "token-quota:{compose-json:*"
        );
        assert_eq!(rule_keys(&route("a:b{c}%", "tq")), "tq:{a%3Ab%7Bc%7D%25:*");
        assert_eq!(
            rule_keys(&route("x*[y]?", "p\\")),
            "p\\\\:{x\\*\\[y\\]\\?:*"
        );
    }

    #[test]
    fn runnable_follows_the_routes_given() {
        let mut target = Target {
            description: String::new(),
            gateways: Vec::new(),
            quota: None,
            pass: Default::default(),
            redis_port: 6379,
            redis_stop: None,
            redis_start: None,
        };
        assert!(!runnable(&target)
            .iter()
            .any(|id| id.starts_with("token-quota")));
        assert!(always_skipped(&target)
            .iter()
            .any(|s| s.id.contains("token-quota-json-accuracy")));
        target.quota = Some(crate::target::Quota {
            json: None,
            sse: Some(route("s", "token-quota")),
        });
        let ids = runnable(&target);
        assert!(ids.contains(&"token-quota-sse-accuracy"));
        assert!(!ids.contains(&"token-quota-json-accuracy"));
        let skipped = always_skipped(&target);
        assert!(skipped.iter().any(|s| s.id == "token-quota-json-accuracy"));
        assert!(!skipped
            .iter()
            .any(|s| s.id.contains("token-quota-sse-accuracy")));
    }
}
