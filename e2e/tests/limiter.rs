//! The limiter plugin end to end: `limiter.wasm` in a real Envoy 1.40,
//! counting in a real Redis through webdis. Each test starts its own
//! processes and uses its own rule name; tests that need N requests in one
//! fixed window first wait until the current minute has room for them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use e2e::{
    limiter_envoy, limiter_wasm, room_in_minute_for, send_all, summary, unique_rule_name,
    LimiterStack,
};
use serde_json::{json, Value};
use stack::{get_with_timeout, require_tool, Envoy, Redis, Response, Webdis};

const REJECTED_MSG: &str = "Too many requests";
/// The `redis.timeout` the tests configure, in milliseconds.
const REDIS_TIMEOUT_MS: u64 = 500;
/// Slack on top of `redis.timeout` for an answer when Redis is unavailable:
/// Envoy, webdis and a loaded 2-core test machine.
const MARGIN: Duration = Duration::from_millis(1000);

fn global_config(rule_name: &str, per_minute: i64, failure_mode_deny: bool) -> Value {
    json!({
        "rule_name": rule_name,
        "global_threshold": {"query_per_minute": per_minute},
        "rejected_code": 429,
        "rejected_msg": REJECTED_MSG,
        "show_limit_quota_header": true,
        "failure_mode_deny": failure_mode_deny,
        "redis": {"webdis_cluster": e2e::WEBDIS_CLUSTER, "timeout": REDIS_TIMEOUT_MS},
    })
}

fn per_header_config(rule_name: &str, header: &str, per_minute: i64) -> Value {
    json!({
        "rule_name": rule_name,
        "rule_items": [{
            "limit_by_per_header": header,
            "limit_keys": [{"key": "*", "query_per_minute": per_minute}],
        }],
        "rejected_code": 429,
        "rejected_msg": REJECTED_MSG,
        "show_limit_quota_header": true,
        "failure_mode_deny": false,
        "redis": {"webdis_cluster": e2e::WEBDIS_CLUSTER, "timeout": REDIS_TIMEOUT_MS},
    })
}

fn statuses<'a>(responses: impl IntoIterator<Item = &'a Response>) -> Vec<u16> {
    responses.into_iter().map(|r| r.status).collect()
}

fn expected_statuses(passed: usize, rejected: usize) -> Vec<u16> {
    let mut v = vec![200; passed];
    v.extend(vec![429; rejected]);
    v
}

/// A passed request under `show_limit_quota_header`: `200 ok`, with the
/// limit and what is left of it after this request.
fn assert_passed(r: &Response, limit: i64, remaining: i64) {
    let what = summary(r);
    assert_eq!(r.status, 200, "{what}");
    assert_eq!(r.text(), "ok\n", "{what}");
    assert_eq!(r.header_i64("x-ratelimit-limit"), Some(limit), "{what}");
    assert_eq!(
        r.header_i64("x-ratelimit-remaining"),
        Some(remaining),
        "{what}"
    );
}

fn assert_rejected(r: &Response, limit: i64, window_start: u64) {
    e2e::assert_refusal(
        r,
        &summary(r),
        &e2e::RATE_LIMIT_HEADERS,
        REJECTED_MSG,
        limit,
        window_start,
    );
}

#[test]
fn global_limit_passes_exactly_the_threshold_then_rejects() {
    let rule = unique_rule_name("global");
    let stack = LimiterStack::start(&global_config(&rule, 10, false));
    let window = room_in_minute_for(15);
    let responses = stack.burst(15, &[]);
    e2e::assert_same_window(window);

    assert_eq!(statuses(&responses), expected_statuses(10, 5));
    for (i, r) in responses.iter().take(10).enumerate() {
        assert_passed(r, 10, 9 - i as i64);
    }
    for r in &responses[10..] {
        assert_rejected(r, 10, window);
    }
    // The plugin publishes its counters on a one-second tick.
    assert_counter_reaches(&stack.envoy, "limiter.allowed", 10);
    assert_counter_reaches(&stack.envoy, "limiter.limited", 1);
    assert_counter_reaches(&stack.envoy, "limiter.limited_locally", 4);
}

/// Waits up to three flush periods for Envoy's stat of plugin counter
/// `name` to read `want`.
fn assert_counter_reaches(envoy: &stack::Envoy, name: &str, want: u64) {
    let deadline = std::time::Instant::now() + 3 * kit::COUNTER_FLUSH;
    loop {
        let stats = envoy.stats();
        let value = e2e::counter_value(&stats, name);
        if value == Some(want) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "counter {name} is {value:?}, not {want}; stats:\n{}",
            stats
                .lines()
                .filter(|l| l.contains("limiter"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn limit_holds_with_allow_on_headers_stop_iteration_and_two_workers() {
    // The same contract with Envoy honouring StopIteration from the header
    // callback (PluginConfig.allow_on_headers_stop_iteration) and two
    // worker threads, each with its own VM.
    let rule = unique_rule_name("stopiter");
    let stack = LimiterStack::start_with(&global_config(&rule, 3, false), |config| {
        let mut config = config.concurrency(2);
        if let Some(wasm) = config.wasm.take() {
            config.wasm = Some(wasm.allow_on_headers_stop_iteration(true));
        }
        config
    });
    let window = room_in_minute_for(6);
    let responses = stack.burst(6, &[]);
    e2e::assert_same_window(window);
    assert_eq!(statuses(&responses), expected_statuses(3, 3));
    for (i, r) in responses.iter().take(3).enumerate() {
        assert_passed(r, 3, 2 - i as i64);
    }
    for r in &responses[3..] {
        assert_rejected(r, 3, window);
    }
}

#[test]
fn two_envoys_share_one_limit_through_redis() {
    // One webdis each, so the only shared state is Redis itself.
    let rule = unique_rule_name("shared");
    let config = global_config(&rule, 10, false);
    let redis = Redis::start();
    let webdis_a = Webdis::start(redis.port());
    let webdis_b = Webdis::start(redis.port());
    let envoy_a = Envoy::start(limiter_envoy(webdis_a.port(), &config));
    let envoy_b = Envoy::start(limiter_envoy(webdis_b.port(), &config).concurrency(2));

    let window = room_in_minute_for(16);
    let logs = || format!("Envoy A:\n{}\nEnvoy B:\n{}", envoy_a.log(), envoy_b.log());
    let responses = send_all(
        16,
        |i| {
            let envoy = if i % 2 == 0 { &envoy_a } else { &envoy_b };
            stack::get(envoy.port(), "/", &[])
        },
        logs,
    );
    e2e::assert_same_window(window);

    assert_eq!(
        statuses(&responses),
        expected_statuses(10, 6),
        "{:?}",
        responses.iter().map(summary).collect::<Vec<_>>()
    );
    // One counter: Remaining counts down across both Envoys.
    for (i, r) in responses.iter().take(10).enumerate() {
        assert_passed(r, 10, 9 - i as i64);
    }
    for r in &responses[10..] {
        assert_rejected(r, 10, window);
    }
}

#[test]
fn per_header_values_are_counted_separately_and_stored_raw() {
    let rule = unique_rule_name("perheader");
    let stack = LimiterStack::start(&per_header_config(&rule, "x-api-key", 3));
    let keys = ["alice", "a/b", "100%", "with space"];

    let window = room_in_minute_for(4 * keys.len() as u32);
    // Interleaved, so a shared counter would show at once.
    let answers = send_all(
        4 * keys.len(),
        |i| {
            stack::get(
                stack.envoy.port(),
                "/",
                &[("x-api-key", keys[i % keys.len()])],
            )
        },
        || stack.envoy.log(),
    );
    let by_key: Vec<Vec<&Response>> = (0..keys.len())
        .map(|k| answers.iter().skip(k).step_by(keys.len()).collect())
        .collect();
    e2e::assert_same_window(window);

    for (key, responses) in keys.iter().zip(&by_key) {
        assert_eq!(
            statuses(responses.iter().copied()),
            expected_statuses(3, 1),
            "key {key:?}: {:?}",
            responses.iter().map(|r| summary(r)).collect::<Vec<_>>()
        );
        for (i, r) in responses.iter().take(3).enumerate() {
            assert_passed(r, 3, 2 - i as i64);
        }
        assert_rejected(responses[3], 3, window);
    }

    // Counter keys are `<prefix>:{<rule_name>:...<value>}:<window start>`
    // with the header value as raw bytes (not percent-encoded on the way
    // through webdis).
    let stored = stack.redis.keys();
    let shown: Vec<String> = stored
        .iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    for key in keys {
        let found = shown.iter().any(|k| {
            let Some((head, window_part)) = k.rsplit_once("}:") else {
                return false;
            };
            k.contains(&format!("{{{rule}:"))
                && head.ends_with(key)
                && !window_part.is_empty()
                && window_part.bytes().all(|b| b.is_ascii_digit())
        });
        assert!(found, "no counter key for {key:?} in Redis: {shown:?}");
    }
}

/// Requests while Redis is unavailable: every one answered with `status`
/// within `redis.timeout` + [`MARGIN`].
fn assert_answers_while_unavailable(stack: &LimiterStack, status: u16, label: &str) {
    let bound = Duration::from_millis(REDIS_TIMEOUT_MS) + MARGIN;
    for i in 0..5 {
        let r = get_with_timeout(stack.envoy.port(), "/", &[], Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{label}: request {i} got no answer: {e}"));
        assert_eq!(r.status, status, "{label}: request {i}: {}", summary(&r));
        assert!(
            r.elapsed <= bound,
            "{label}: request {i} took {:?}, more than redis.timeout + margin = {bound:?}",
            r.elapsed
        );
    }
}

#[test]
fn redis_down_fails_open_by_default_and_counting_resumes_after_restart() {
    let rule = unique_rule_name("down-open");
    let mut stack = LimiterStack::start(&global_config(&rule, 10, false));
    assert_passed(&stack.get(&[]), 10, 9);

    stack.redis.stop();
    assert_answers_while_unavailable(&stack, 200, "Redis killed, failure_mode_deny false");

    // A fresh Redis: empty, and without any script the plugin may have
    // loaded before. Counting must resume from scratch.
    stack.redis.restart();
    let counted = (0..50)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            stack.get(&[])
        })
        .find(|r| r.header("x-ratelimit-remaining").is_some())
        .unwrap_or_else(|| panic!("no counted request within 5 s after Redis came back"));
    assert_passed(&counted, 10, 9);
}

#[test]
fn redis_down_fails_closed_with_failure_mode_deny() {
    let rule = unique_rule_name("down-closed");
    let mut stack = LimiterStack::start(&global_config(&rule, 10, true));
    assert_passed(&stack.get(&[]), 10, 9);
    stack.redis.stop();
    assert_answers_while_unavailable(&stack, 503, "Redis killed, failure_mode_deny true");
}

#[test]
fn hung_redis_fails_open_within_the_timeout() {
    // A frozen Redis makes webdis wait forever (see tests/webdis.rs): only
    // the plugin's own `redis.timeout` can answer the request.
    let rule = unique_rule_name("hung-open");
    let mut stack = LimiterStack::start(&global_config(&rule, 10, false));
    assert_passed(&stack.get(&[]), 10, 9);
    stack.redis.freeze();
    assert_answers_while_unavailable(&stack, 200, "Redis hung, failure_mode_deny false");
    stack.redis.thaw();
}

#[test]
fn hung_redis_fails_closed_within_the_timeout() {
    let rule = unique_rule_name("hung-closed");
    let mut stack = LimiterStack::start(&global_config(&rule, 10, true));
    assert_passed(&stack.get(&[]), 10, 9);
    stack.redis.freeze();
    assert_answers_while_unavailable(&stack, 503, "Redis hung, failure_mode_deny true");
    stack.redis.thaw();
}

/// Starts Envoy with `config`, expects it to refuse the plugin, and returns
/// the messages the plugin logged (Envoy prints them as
/// `wasm log <name> <root_id>: <message>`).
fn refused_plugin_messages(config: &Value) -> Vec<String> {
    let redis = Redis::start();
    let webdis = Webdis::start(redis.port());
    let log = Envoy::start_expect_failure(limiter_envoy(webdis.port(), config));
    assert!(
        log.contains("Unable to create Wasm plugin"),
        "Envoy exited, but not because of the plugin:\n{}",
        stack::envoy_log_excerpt(&log, 40)
    );
    log.lines()
        .filter_map(|line| line.split_once("wasm log ").map(|(_, m)| m))
        .filter_map(|m| m.split_once(": ").map(|(_, m)| m.to_owned()))
        .collect()
}

/// The plugin refused `config` with a message that names `field` and says
/// why (more than just the field name).
fn assert_refused_naming(config: &Value, field: &str) {
    let messages = refused_plugin_messages(config);
    let naming: Vec<&String> = messages.iter().filter(|m| m.contains(field)).collect();
    assert!(
        !naming.is_empty(),
        "no plugin log line names `{field}`; plugin said: {messages:#?}"
    );
    assert!(
        naming.iter().any(|m| {
            let reason = m.replacen(field, "", 1);
            reason.chars().filter(|c| c.is_alphabetic()).count() >= 4
        }),
        "the lines naming `{field}` give no reason: {naming:#?}"
    );
}

#[test]
fn negative_threshold_is_refused_naming_the_field() {
    let config = global_config(&unique_rule_name("invalid"), -1, false);
    assert_refused_naming(&config, "global_threshold.query_per_minute");
}

#[test]
fn missing_rule_name_is_refused_naming_the_field() {
    let mut config = global_config("unused", 10, false);
    config.as_object_mut().unwrap().remove("rule_name");
    assert_refused_naming(&config, "rule_name");
}

#[test]
fn malformed_json_is_refused() {
    let redis = Redis::start();
    let webdis = Webdis::start(redis.port());
    let mut config = limiter_envoy(webdis.port(), &json!({}));
    if let Some(wasm) = config.wasm.as_mut() {
        wasm.configuration = r#"{"rule_name": "x", "global_threshold": "#.to_owned();
    }
    let log = Envoy::start_expect_failure(config);
    assert!(
        log.lines().any(|l| l.contains("wasm log ")),
        "the plugin logged nothing about the broken JSON:\n{}",
        stack::envoy_log_excerpt(&log, 40)
    );
}

#[test]
fn module_imports_no_redis_host_calls() {
    // Upstream Envoy refuses modules importing `proxy_redis_*`; the webdis
    // transport needs HTTP calls instead.
    let objdump = require_tool("wasm-objdump", "wabt");
    let wasm = limiter_wasm();
    let out = Command::new(objdump)
        .args(["-x", "-j", "Import"])
        .arg(&wasm)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wasm-objdump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Import["),
        "no import section listed:\n{text}"
    );
    // The SDK's `dispatch_http_call` is the `proxy_http_call` import.
    assert!(
        text.contains("<- env.proxy_http_call"),
        "the module does not import proxy_http_call, so it cannot reach webdis:\n{text}"
    );
    assert!(
        !text.contains("proxy_redis"),
        "imports a Redis host call:\n{text}"
    );
}
