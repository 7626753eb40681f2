//! Accuracy on two gateways sharing one Redis, each run inside one clock
//! minute: the limiter admits exactly its limit, and the token quota
//! charges exactly the usage the upstream reported.

use std::time::Duration;

use super::gateways::{
    limiter_config, limiter_gateway, quota_keys, token_quota_gateway, CHAT_JSON, CHAT_SSE,
};
use super::measure::{align_to_minute, measure, Drive};
use crate::bench::{Bench, JSON_USAGE, SSE_USAGE};
use crate::scenario::{announce, Kind, Scenario};
use crate::wrk::{Counters, Requests};

pub(super) fn limiter_accuracy(bench: &Bench) -> Scenario {
    let title = "accuracy: limiter on two gateways, 64 connections, 1000 per minute on one key";
    announce(title);
    let limit = 1000;
    let config = limiter_config(&bench.rule("accuracy"), limit, false);
    let a = limiter_gateway(bench, &config);
    let b = limiter_gateway(bench, &config);
    let drive = Drive {
        seconds: bench.opts.accuracy_seconds,
        connections: 32,
        requests: Requests::Get,
        // Warm-up requests would count against the window.
        warm_up: false,
        timeout: Duration::from_secs(2),
        wrk_cpu: None,
    };
    let window = align_to_minute(drive.seconds);
    let m = measure(bench, "limiter-accuracy", &[&a, &b], drive);
    let end_window = (stack::unix_now() / 60.0).floor() as u64 * 60;
    let counted = bench.redis_sum(&format!("limiter:{{{}:*", bench.rule("accuracy")));
    let mut s = Scenario::new("limiter-accuracy", title, Kind::Accuracy, m.wrk);
    s.gateways = 2;
    s.connections = 2 * drive.connections;
    s.redis_calls = Some(m.redis_commands.values().sum());
    s.redis_commands = m.redis_commands;
    s.samples = m.samples;
    for (name, g) in ["A", "B"].iter().zip(&m.per_gateway) {
        s.fact(&format!("gateway {name} answers"), g.statuses_text());
    }
    s.fact("requests counted in Redis", counted);
    s.check(
        "the run stayed in one per-minute window",
        window == end_window,
        format!("started in window {window}, ended in {end_window}"),
    );
    s.check_answers(&[200, 429]);
    let allowed = s.wrk.status(200);
    s.check(
        "exactly the limit answered 200 across both gateways",
        allowed == limit,
        format!("{allowed} answers 200, limit {limit}"),
    );
    s.check(
        "both gateways let requests through",
        m.per_gateway.iter().all(|g| g.status(200) > 0),
        m.per_gateway
            .iter()
            .zip(["A", "B"])
            .map(|(g, name)| format!("{name}: {} answers 200", g.status(200)))
            .collect::<Vec<_>>()
            .join(", "),
    );
    s
}

pub(super) fn token_quota_accuracy(bench: &Bench, sse: bool) -> Scenario {
    let (id, title, upstream, body, usage) = if sse {
        (
            "token-quota-sse-accuracy",
            "accuracy: token quota on two gateways, streaming chat, event-stream answers",
            &bench.sse_upstream,
            CHAT_SSE,
            SSE_USAGE,
        )
    } else {
        (
            "token-quota-json-accuracy",
            "accuracy: token quota on two gateways, chat POSTs, JSON answers",
            &bench.json_upstream,
            CHAT_JSON,
            JSON_USAGE,
        )
    };
    announce(title);
    let rule = bench.rule(id);
    let limit = bench.opts.quota_answers * usage.charged();
    let a = token_quota_gateway(bench, &rule, limit, upstream);
    let b = token_quota_gateway(bench, &rule, limit, upstream);
    let drive = Drive {
        seconds: bench.opts.quota_seconds,
        connections: 16,
        requests: Requests::PostJson(body),
        warm_up: false,
        timeout: Duration::from_secs(2),
        wrk_cpu: None,
    };

    let window = align_to_minute(drive.seconds);
    let upstream_before = Counters::read(upstream.admin_port()).unwrap_or_default();
    let m = measure(bench, id, &[&a, &b], drive);
    let end_window = (stack::unix_now() / 60.0).floor() as u64 * 60;
    let upstream_answers = Counters::read(upstream.admin_port())
        .unwrap_or_default()
        .minus(&upstream_before)
        .xx2;
    let charged = bench.redis_sum(&quota_keys(&rule));
    let reported = upstream_answers * usage.charged();
    let mut s = Scenario::new(id, title, Kind::Accuracy, m.wrk);
    s.gateways = 2;
    s.connections = 2 * drive.connections;
    s.redis_calls = Some(m.redis_commands.values().sum());
    s.redis_commands = m.redis_commands;
    s.samples = m.samples;
    s.fact("quota (tokens per minute)", limit);
    s.fact("tokens per answer", usage.charged());
    s.fact("answers from the upstream", upstream_answers);
    s.fact("tokens the upstream reported", reported);
    s.fact("tokens charged in Redis", charged);
    s.fact(
        "overshoot past the quota (requests admitted while others were in flight)",
        charged.saturating_sub(limit),
    );
    s.check(
        "the run stayed in one per-minute window",
        window == end_window,
        format!("started in window {window}, ended in {end_window}"),
    );
    s.check_answers(&[200, 429]);
    s.check(
        "the quota was used up (so nothing was in flight when wrk stopped)",
        s.wrk.status(429) > 0 && charged >= limit,
        format!(
            "{} answers 429, {charged} of {limit} tokens",
            s.wrk.status(429)
        ),
    );
    s.check(
        "tokens charged in Redis equal the usage the upstream reported",
        charged == reported,
        format!("{charged} charged, {reported} reported ({upstream_answers} answers)"),
    );
    s.check(
        "every answer the upstream gave reached a client",
        s.wrk.status(200) == upstream_answers,
        format!(
            "{} answers 200 at the clients, {upstream_answers} from the upstream",
            s.wrk.status(200)
        ),
    );
    s
}
