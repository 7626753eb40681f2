//! A global rate limiter for Envoy and Higress, counting in Redis.
//!
//! Requests are counted in fixed windows aligned to the clock, with the
//! kit's shared increments ([`kit::Io::increment`]: an atomic `INCRBY` +
//! first-write `EXPIRE` script, sent by digest; concurrent requests for one
//! key share a round trip and each still gets its own exact count).
//! Gateways that share a Redis and a `rule_name` share the limits. Keys
//! already over their limit are rejected locally until their window ends or
//! `over_limit_recheck_ms` has passed, so a flood does not become a flood
//! of Redis calls.
//!
//! The configuration follows Higress's `cluster-key-rate-limit`:
//!
//! ```json
//! {"rule_name": "api", "global_threshold": {"query_per_minute": 600},
//!  "show_limit_quota_header": true,
//!  "redis": {"webdis_cluster": "webdis", "timeout": 500}}
//! ```
//!
//! See the README for every field.

pub mod config;

pub use config::Config;
use kit::limits::window::{decide, Decision, Window};
use kit::limits::KeyScratch;
use kit::{Count, CountError, Cx, Flow, Host, LogLevel, Plugin, RedisError, RedisUse};

/// The limiter plugin.
#[derive(Debug)]
pub struct Limiter;

/// Indexes into [`Limiter::COUNTERS`].
pub mod counter {
    /// Requests Redis counted within their limit.
    pub const ALLOWED: usize = 0;
    /// Requests Redis counted over their limit.
    pub const LIMITED: usize = 1;
    /// Requests rejected from the over-limit cache, without Redis.
    pub const LIMITED_LOCALLY: usize = 2;
    /// Redis calls that failed (the failure mode decided the request).
    pub const REDIS_ERRORS: usize = 3;
    /// Counter keys Redis could not count (a wrong type), replaced by the
    /// counting script with a new count.
    pub const KEYS_REPAIRED: usize = 4;
}

/// Per-request state: what the Redis reply will be judged against.
#[derive(Debug, Default)]
pub struct State {
    limit: u64,
    window: Option<Window>,
    cache_hash: u64,
    /// `(limit, remaining)` to show on the response.
    quota: Option<(u64, u64)>,
}

const NANOS_PER_SEC: u64 = 1_000_000_000;

impl Plugin for Limiter {
    const NAME: &'static str = "limiter";
    const COUNTERS: &'static [&'static str] = &[
        "allowed",
        "limited",
        "limited_locally",
        "redis_errors",
        "keys_repaired",
    ];
    const REDIS: RedisUse = RedisUse::Counting;
    type Config<'cfg> = Config<'cfg>;
    type State = State;

    fn configure<'cfg>(
        fields: &kit::Fields<'_, 'cfg>,
        setup: &mut kit::Setup<'_>,
    ) -> Result<Config<'cfg>, kit::ConfigError> {
        config::compile(fields, setup)
    }

    fn on_request_headers<H: Host>(mut cx: Cx<'_, '_, Self, H>, _end_of_stream: bool) -> Flow {
        let cfg = cx.config;
        let now_nanos = cx.io.now_nanos();
        let now = now_nanos / NANOS_PER_SEC;
        let mut scratch = KeyScratch::default();
        let Some(applied) = cfg.rule.apply(&mut cx.io, now_nanos, &mut scratch) else {
            return Flow::Continue;
        };
        let (window, key) = (applied.window, applied.key);
        if applied.known_over {
            cx.io.count(counter::LIMITED_LOCALLY);
            return reject(&mut cx, applied.limit.max, window.reset_after(now));
        }
        cx.state.limit = applied.limit.max;
        cx.state.window = Some(window);
        cx.state.cache_hash = applied.cache_hash;

        match cx.io.increment(&key, 1, applied.limit.window_secs) {
            Ok(()) => Flow::Pause,
            Err(e) => redis_failed(&mut cx, e),
        }
    }

    fn on_count<H: Host>(
        mut cx: Cx<'_, '_, Self, H>,
        count: Result<Count<'_>, CountError<'_>>,
    ) -> Flow {
        let count = match count {
            Ok(count) => count,
            Err(CountError::Redis(e)) => return redis_failed(&mut cx, e),
            Err(e @ CountError::NotCounted(_)) => {
                // One line: the reply is valid RESP, just not a count.
                cx.io.log(LogLevel::Warn, format_args!("{e}"));
                return unavailable(&mut cx);
            }
        };
        if let Some(repair) = count.repaired {
            cx.io.count(counter::KEYS_REPAIRED);
            cx.io.log(
                LogLevel::Warn,
                format_args!(
                    "counter key {} held a value Redis could not count ({}); replaced it with a new count",
                    Text(repair.key),
                    Text(repair.error)
                ),
            );
        }
        let count = count.value;
        let limit = cx.state.limit;
        match decide(count, limit) {
            Decision::Allow { remaining } => {
                cx.io.count(counter::ALLOWED);
                if cx.config.show_limit_quota_header {
                    cx.state.quota = Some((limit, remaining));
                }
                Flow::Continue
            }
            Decision::Reject => {
                // The clock is read again only here: an allowed request
                // needs no reset time, and each read is a host call.
                let now_nanos = cx.io.now_nanos();
                let now = now_nanos / NANOS_PER_SEC;
                let window = cx.state.window.unwrap_or(Window {
                    start: now,
                    end: now + 1,
                });
                cx.config
                    .rule
                    .remember_over(cx.state.cache_hash, window.end, now_nanos);
                cx.io.count(counter::LIMITED);
                reject(&mut cx, limit, window.reset_after(now))
            }
        }
    }

    fn on_response_headers<H: Host>(mut cx: Cx<'_, '_, Self, H>, _end_of_stream: bool) -> Flow {
        if let Some((limit, remaining)) = cx.state.quota {
            // The limit's digits are kept by the rule; the remaining
            // count changes with every request.
            let (limit_digits, len) = cx.config.rule.limit_digits(limit);
            let limit_text = limit_digits.get(..len).unwrap_or_default();
            cx.io.set_response_header("x-ratelimit-limit", limit_text);
            let mut digits = itoa::Buffer::new();
            cx.io
                .set_response_header("x-ratelimit-remaining", digits.format(remaining).as_bytes());
        }
        Flow::Continue
    }
}

fn reject<H: Host>(cx: &mut Cx<'_, '_, Limiter, H>, limit: u64, reset: u64) -> Flow {
    cx.config
        .rule
        .refuse(&mut cx.io, &config::STYLE, limit, reset)
}

/// Redis could not be asked: the failure mode decides.
fn redis_failed<H: Host>(cx: &mut Cx<'_, '_, Limiter, H>, error: RedisError) -> Flow {
    cx.io.log(LogLevel::Debug, format_args!("{error}"));
    unavailable(cx)
}

/// Redis did not count the request (already logged): counted as a Redis
/// error, and the failure mode decides.
fn unavailable<H: Host>(cx: &mut Cx<'_, '_, Limiter, H>) -> Flow {
    cx.io.count(counter::REDIS_ERRORS);
    cx.config
        .rule
        .unavailable(&mut cx.io)
        .unwrap_or(Flow::Continue)
}

/// Bytes from Redis in a log line: printable ASCII as is, other bytes as
/// `\xNN` (keys hold request values).
struct Text<'a>(&'a [u8]);

impl core::fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use core::fmt::Write;
        for &b in self.0 {
            match b {
                b' '..=b'~' => f.write_char(char::from(b))?,
                _ => write!(f, "\\x{b:02x}")?,
            }
        }
        Ok(())
    }
}

kit::export_plugin!(Limiter);
