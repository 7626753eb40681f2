//! The command-line runner end to end: our Higress limiter, a private
//! Redis it starts, a request file with a Redis stop step.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Test code: JSON built with `value["key"] = ...` and answers indexed
// after their count was asserted read better than `get` chains.
#![allow(clippy::indexing_slicing)]

mod common;

use std::process::Command;

use serde_json::{json, Value};

#[test]
fn the_runner_replays_requests_and_redis_steps_as_json_lines() {
    let module = common::workspace().join("target/wasm/higress/limiter.wasm");
    common::higress_module("limiter");
    let dir = std::env::temp_dir().join(format!("testhost-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("limiter.json");
    std::fs::write(
        &config,
        json!({
            "rule_name": "cli",
            "rule_items": [{"limit_by_header": "x-user", "limit_keys": [{"key": "alice", "query_per_minute": 2}]}],
            "redis": {"service_name": "redis.dns", "timeout": 200},
        })
        .to_string(),
    )
    .unwrap();
    let requests = dir.join("requests.jsonl");
    std::fs::write(
        &requests,
        [
            r#"{"path":"/","headers":{"x-user":"alice"},"upstream":{"status":200,"body":"ok"},"repeat":2}"#,
            r#"# Redis goes away: the limiter fails open."#,
            r#"{"redis":"stop"}"#,
            r#"{"path":"/","headers":{"x-user":"alice"}}"#,
            r#"{"redis":"start"}"#,
            r#"{"advance_ms":60000}"#,
            r#"{"path":"/","headers":{"x-user":"alice"},"repeat":3}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_testhost"))
        .arg("--module")
        .arg(&module)
        .arg("--config")
        .arg(&config)
        .arg("--requests")
        .arg(&requests)
        .args(["--start-redis", "outbound|6379||redis.dns"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let statuses: Vec<i64> = lines
        .iter()
        .map(|l| l["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429], "{lines:#?}");
    assert_eq!(lines[0]["verdict"]["kind"], "forwarded");
    assert_eq!(lines[0]["response_body"], "ok");
    assert_eq!(lines[2]["redis_calls"][0]["failed"], true, "{}", lines[2]);
    let calls = lines[3]["redis_calls"].as_array().unwrap();
    assert!(
        !calls.is_empty() && calls.iter().all(|c| c["failed"] == false),
        "{}",
        lines[3]
    );
    assert_eq!(lines[5]["verdict"]["kind"], "local_response");
    assert!(lines[5]["upstream"].is_null());
    assert!(lines[0]["fuel"].as_u64().unwrap() > 0);
    assert!(lines[0]["host_calls"].as_u64().unwrap() > 0);
}

#[test]
fn the_runner_names_a_bad_line() {
    let dir = std::env::temp_dir().join(format!("testhost-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("limiter.json");
    std::fs::write(&config, r#"{"rule_name":"bad","global_threshold":{"query_per_minute":5},"redis":{"service_name":"redis.dns"}}"#).unwrap();
    let requests = dir.join("bad.jsonl");
    std::fs::write(&requests, "{\"path\":\"/\"}\n{\"headers\":5}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_testhost"))
        .arg("--module")
        .arg(common::workspace().join("target/wasm/higress/limiter.wasm"))
        .arg("--config")
        .arg(&config)
        .arg("--requests")
        .arg(&requests)
        .args(["--redis", "outbound|6379||redis.dns=127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.jsonl:2: headers: must be an object"),
        "{err}"
    );
    // The first line ran (Redis unreachable: the limiter fails open).
    let first: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["status"], 200);
}
