//! Shared helpers of the end-to-end tests in `tests/`: a limiter stack
//! (Redis, webdis, Envoy with `limiter.wasm`), unique rule names, waiting
//! for room in a clock-aligned rate-limit window, a slow upstream the
//! test drives step by step ([`slow_upstream`]), and an HTTP/2 upstream
//! that ends its answers with trailers ([`h2_upstream`]), and the token
//! quota's configuration and counters ([`token_quota`]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod h2_upstream;
pub mod hostile;
pub mod slow_upstream;
pub mod token_quota;

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;
use stack::resp::Resp;
use stack::{Envoy, EnvoyConfig, Redis, Response, WasmPlugin, Webdis};

/// The cluster name the limiter's config refers to (`redis.webdis_cluster`).
pub const WEBDIS_CLUSTER: &str = "webdis";

/// The release build of the limiter plugin.
///
/// # Panics
/// If it has not been built, naming the build command.
pub fn limiter_wasm() -> PathBuf {
    stack::wasm_path("limiter")
}

/// Says that the calling test runs a build of the default backend whatever
/// `KIT_WASM_DIR` names (see `stack::wasm_path`), and why: for tests of a
/// property of that build only (no allocation per request, the Higress
/// variant), which a run of the suite on another build would otherwise
/// pass without testing that build. Writes straight to the process's
/// stderr, past the test harness's capture, so the line shows in the run.
pub fn default_build_only(why: &str) {
    let Some(dir) = std::env::var_os("KIT_WASM_DIR").filter(|d| !d.is_empty()) else {
        return;
    };
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("this test");
    let _ = writeln!(
        std::io::stderr(),
        "note: {test} tests the default backend's build, not KIT_WASM_DIR={}: {why}",
        dir.to_string_lossy()
    );
}

/// The `heap-stats` build of plugin `module` (`limiter`, `token_quota`),
/// which publishes its heap allocation count, for a test that no request
/// allocates inside Envoy; says so when `KIT_WASM_DIR` names another
/// build ([`default_build_only`]), as that count is the default backend's
/// property.
///
/// # Panics
/// If it has not been built, naming the build command.
pub fn heap_stats_wasm(module: &str) -> PathBuf {
    default_build_only(
        "no allocation per request is that backend's property; the SDK build's count is measured by the backends test",
    );
    let wasm = stack::repo_root().join(format!("target/wasm/heap-stats/{module}.wasm"));
    assert!(
        wasm.exists(),
        "{} is missing: run `bash scripts/build.sh --heap-stats` (scripts/test.sh does)",
        wasm.display()
    );
    wasm
}

/// Calls of `command` Redis has run, from `INFO commandstats`.
///
/// # Panics
/// If Redis does not answer `INFO commandstats` with a bulk string.
pub fn calls_of(redis: &Redis, command: &str) -> u64 {
    let Ok(Resp::Bulk(Some(text))) = redis.command(&[b"INFO", b"commandstats"]) else {
        panic!("INFO commandstats did not answer a bulk string");
    };
    let text = String::from_utf8_lossy(&text).into_owned();
    let prefix = format!("cmdstat_{command}:calls=");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// An Envoy config with the limiter configured by `plugin_config`, its
/// webdis cluster pointing at `webdis_port`, answering `200 ok` itself.
pub fn limiter_envoy(webdis_port: u16, plugin_config: &Value) -> EnvoyConfig {
    EnvoyConfig::new()
        .wasm(WasmPlugin::new(limiter_wasm(), plugin_config.to_string()))
        .cluster(WEBDIS_CLUSTER, webdis_port)
}

/// A rule name no other test (or earlier run against the same Redis) uses,
/// so counters never collide: `e2e-<label>-<pid>-<seq>`.
pub fn unique_rule_name(label: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!(
        "e2e-{label}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Waits until a burst of `requests` fits in the current per-minute window
/// (about 0.2 s per request plus 2 s of slack) and returns that window's
/// start (seconds since the epoch).
pub fn room_in_minute_for(requests: u32) -> u64 {
    let needed = Duration::from_secs_f64(f64::from(requests) * 0.2 + 2.0);
    stack::wait_for_window_room(Duration::from_secs(60), needed)
}

/// The start of the current per-minute window.
pub fn current_minute() -> u64 {
    let now = stack::unix_now();
    (now - now % 60.0) as u64
}

/// The headers a plugin's refusal carries.
#[derive(Debug, Clone, Copy)]
pub struct RefusalHeaders {
    pub limit: &'static str,
    pub remaining: &'static str,
    pub reset: &'static str,
}

/// The limiter's `X-RateLimit-*`.
pub const RATE_LIMIT_HEADERS: RefusalHeaders = RefusalHeaders {
    limit: "x-ratelimit-limit",
    remaining: "x-ratelimit-remaining",
    reset: "x-ratelimit-reset",
};

/// The token quota's `X-TokenRateLimit-*`.
pub const TOKEN_RATE_LIMIT_HEADERS: RefusalHeaders = RefusalHeaders {
    limit: "x-tokenratelimit-limit",
    remaining: "x-tokenratelimit-remaining",
    reset: "x-tokenratelimit-reset",
};

/// A refused request: `429`, `message`, `limit`, `Remaining: 0`, and a
/// `Reset` equal (within clock rounding) to the seconds left in the
/// clock-aligned minute `window_start`. `what` describes the response in
/// failure messages.
pub fn assert_refusal(
    r: &Response,
    what: &str,
    headers: &RefusalHeaders,
    message: &str,
    limit: i64,
    window_start: u64,
) {
    assert_eq!(r.status, 429, "{what}");
    assert_eq!(r.text().trim_end(), message, "{what}");
    assert_eq!(r.header_i64(headers.limit), Some(limit), "{what}");
    assert_eq!(r.header_i64(headers.remaining), Some(0), "{what}");
    let reset = r
        .header_i64(headers.reset)
        .unwrap_or_else(|| panic!("no numeric {}: {what}", headers.reset));
    assert!((1..=60).contains(&reset), "{what}");
    let left = (window_start + 60) as f64 - stack::unix_now();
    assert!(
        (reset as f64 - left).abs() <= 2.0,
        "Reset {reset} but {left:.1} s are left in the window starting at {window_start}: {what}"
    );
}

/// Guards the premise of a counting test: it all happened in one window.
pub fn assert_same_window(window_start: u64) {
    assert_eq!(
        current_minute(),
        window_start,
        "the requests crossed a minute boundary although there was room; the machine is too slow"
    );
}

/// Redis, one webdis in front of it and one Envoy running the limiter.
#[derive(Debug)]
pub struct LimiterStack {
    // Drop order: Envoy first, so it never sees its backends vanish first.
    pub envoy: Envoy,
    pub webdis: Webdis,
    pub redis: Redis,
}

impl LimiterStack {
    pub fn start(plugin_config: &Value) -> Self {
        Self::start_with(plugin_config, |config| config)
    }

    /// Like [`LimiterStack::start`], letting the caller adjust the Envoy
    /// config (concurrency, `allow_on_headers_stop_iteration`, ...).
    pub fn start_with(
        plugin_config: &Value,
        adjust: impl FnOnce(EnvoyConfig) -> EnvoyConfig,
    ) -> Self {
        let redis = Redis::start();
        let webdis = Webdis::start(redis.port());
        let envoy = Envoy::start(adjust(limiter_envoy(webdis.port(), plugin_config)));
        Self {
            envoy,
            webdis,
            redis,
        }
    }

    /// `count` sequential `GET /` through Envoy with the same headers; see
    /// [`send_all`].
    pub fn burst(&self, count: usize, headers: &[(&str, &str)]) -> Vec<Response> {
        send_all(
            count,
            |_| stack::get(self.envoy.port(), "/", headers),
            || self.envoy.log(),
        )
    }

    /// `GET /` through Envoy with the given request headers.
    ///
    /// # Panics
    /// If no complete answer arrives within 5 s.
    pub fn get(&self, headers: &[(&str, &str)]) -> Response {
        stack::get(self.envoy.port(), "/", headers).unwrap_or_else(|e| {
            panic!(
                "GET / through Envoy failed: {e}; Envoy log tail:\n{}",
                stack::envoy_log_excerpt(&self.envoy.log(), 30)
            )
        })
    }
}

/// Sends `count` requests in order with `send(i)` and returns the answers.
///
/// # Panics
/// At the first request without an answer, listing the answers before it
/// (so "10 passed, the first rejected one hung" is visible at a glance) and
/// the excerpt of the Envoy log that `envoy_log` returns.
pub fn send_all(
    count: usize,
    mut send: impl FnMut(usize) -> std::io::Result<Response>,
    envoy_log: impl Fn() -> String,
) -> Vec<Response> {
    let mut answers = Vec::with_capacity(count);
    for i in 0..count {
        match send(i) {
            Ok(r) => answers.push(r),
            Err(e) => panic!(
                "request {} of {count} got no answer: {e}\nanswers before it: {:#?}\nEnvoy log:\n{}",
                i + 1,
                answers.iter().map(summary).collect::<Vec<_>>(),
                stack::envoy_log_excerpt(&envoy_log(), 30)
            ),
        }
    }
    answers
}

/// `status` and the three `X-RateLimit-*` headers, for compact assertions
/// and readable failure messages.
pub fn summary(r: &Response) -> String {
    format!(
        "{} limit={:?} remaining={:?} reset={:?}",
        r.status,
        r.header("x-ratelimit-limit"),
        r.header("x-ratelimit-remaining"),
        r.header("x-ratelimit-reset"),
    )
}

/// The value of the first stat whose name ends with `name` in Envoy's
/// `/stats` text.
pub fn counter_value(stats: &str, name: &str) -> Option<u64> {
    stats.lines().find_map(|line| {
        let (stat, value) = line.split_once(": ")?;
        stat.ends_with(name)
            .then(|| value.trim().parse::<u64>().ok())?
    })
}

/// The value of counter `name` (a stat name ending) in `envoy`'s stats
/// once it has stopped moving: plugins built on the kit publish counts on
/// their tick, every `kit::COUNTER_FLUSH`.
///
/// # Panics
/// If the counter does not exist or does not settle within five ticks.
pub fn settled_counter(envoy: &stack::Envoy, name: &str) -> u64 {
    let read = || counter_value(&envoy.stats(), name);
    let deadline = std::time::Instant::now() + 5 * kit::COUNTER_FLUSH;
    let mut last = None;
    loop {
        std::thread::sleep(kit::COUNTER_FLUSH + std::time::Duration::from_millis(200));
        let now = read();
        if now.is_some() && now == last {
            return now.unwrap_or_default();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "counter {name} did not settle (last {last:?}, now {now:?})"
        );
        last = now;
    }
}
