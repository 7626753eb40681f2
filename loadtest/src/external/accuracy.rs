//! Accuracy of the external stack, each run in the fresh per-minute window
//! the registry waited for: its limiter admits exactly the limit it
//! reports, and its token quota charges exactly the usage of the answers
//! the clients got.

// serde_json's `Value` index answers `Null` for a missing key or position;
// it never panics.
#![allow(clippy::indexing_slicing)]

use serde_json::Value;

use super::measure::{current_window, measure, Drive, External};
use crate::scenario::{announce, Kind, Scenario};
use crate::target::QuotaRoute;
use crate::wrk::{Counters, Listener, Requests};

/// A chat request the quota routes answer with JSON.
pub(super) const CHAT_JSON: &str =
    r#"{"model":"qwen-max","messages":[{"role":"user","content":"Tell me a story."}]}"#;

/// A streaming chat request (the answers are event streams).
pub(super) const CHAT_SSE: &str = r#"{"model":"qwen-max","stream":true,"messages":[{"role":"user","content":"Tell me a story."}]}"#;

/// The streaming request as the no-filter route gets it: it asks for the
/// usage itself (an upstream that follows OpenAI reports it in a stream
/// only when asked; the token quota asks on its routes).
pub(super) const CHAT_SSE_WITH_USAGE: &str = r#"{"model":"qwen-max","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Tell me a story."}]}"#;

/// How many answers of the no-filter route are read to see whether the
/// upstream reports the same usage every time.
pub(super) const USAGE_READINGS: usize = 3;

pub(super) fn limiter_accuracy(
    ext: &External<'_>,
    limit: u64,
    window: Option<u64>,
) -> Option<Scenario> {
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
pub(super) fn usage_per_answer(port: u16, path: &str, body: &str) -> u64 {
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
pub(super) fn rule_keys(route: &QuotaRoute) -> String {
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
pub(super) fn charged(ext: &External<'_>, route: &QuotaRoute, window: u64) -> u64 {
    crate::redis_stats::redis_sum_at(
        ext.target.redis_port,
        &rule_keys(route),
        &format!(":{window}"),
    )
}

/// The limit the token quota reports in its refusal
/// (`x-tokenratelimit-limit`), asked with one more request once the
/// quota is used up; `None` when the route does not refuse it with that
/// header.
pub(super) fn refusal_limit(route: &QuotaRoute, body: &str) -> Option<u64> {
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

pub(super) fn quota_accuracy(
    ext: &External<'_>,
    sse: bool,
    window: Option<u64>,
) -> Option<Scenario> {
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
