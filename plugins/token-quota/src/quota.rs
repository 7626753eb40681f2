//! The token-quota plugin: per-client LLM token budgets counted in Redis.
//!
//! Per request that a limit applies to, the upstream is asked for an
//! uncompressed answer (`accept-encoding: identity`), since a compressed
//! one hides its usage from the scanner; then, once its body is in:
//! 1. the body of a streaming request to an API that takes it (OpenAI
//!    Chat Completions by default, see `include_usage_path_suffixes`) gets
//!    `stream_options.include_usage`, so the upstream reports usage at the
//!    end of the stream; every other body is sent as it came;
//! 2. the tokens the client already used in the current fixed window are
//!    read; at or over the limit the request is refused;
//! 3. the response is scanned for usage as it passes; as soon as the usage
//!    is known (the usage event of a stream, the end of a JSON document)
//!    it is charged (added to the window's counter, expiry set on the
//!    window's first write), and the bytes from there on are held until
//!    the charge answers, so a client that sends its next request after
//!    reading the answer is judged on an exact count;
//! 4. a request that ends before its answer does (client gone, upstream
//!    reset, timeout) is charged at its end for the usage its answer
//!    reported, or the estimate of [`crate::estimate`] when it reported
//!    none.
//!
//! Reads and charges are both the kit's shared increments
//! ([`kit::Io::increment`]): a read adds 0, a charge its tokens. So while
//! one call for a counter is in flight from a worker, the reads and charges
//! of that counter that follow wait and go together as one call of their
//! sum when it answers; each request is told the count it would have seen
//! alone, so refusals stay exact, and a charge whose request has ended is
//! still sent with its batch. The calls belong to the root context, so a
//! client that hangs up cancels none of them.
//!
//! The configuration follows Higress's `ai-token-ratelimit`.

use crate::estimate::Estimate;
use crate::rewrite::{include_usage, takes_include_usage, Rewrite, DEFAULT_INCLUDE_USAGE_SUFFIXES};
use crate::usage::{is_encoded, Format, Scan, Scanner};
use core::fmt;
use kit::limits::kept::KeptKey;
use kit::limits::window::Window;
use kit::limits::KeyScratch;
use kit::limits::{Rule, RuleStyle, Unit};
use kit::{
    BodyMode, ConfigError, Count, CountError, Cx, EndCause, Fields, Flow, Host, LogLevel, Plugin,
    RedisError, RedisUse, Reply, RootIo, Setup, StreamEnd,
};

/// The token-quota plugin.
#[derive(Debug)]
pub struct TokenQuota;

/// Indexes into [`TokenQuota::COUNTERS`].
pub mod counter {
    /// Requests let through with quota left.
    pub const ALLOWED: usize = 0;
    /// Requests refused because the quota is used up (per Redis).
    pub const LIMITED: usize = 1;
    /// Requests refused from the over-quota cache, without Redis.
    pub const LIMITED_LOCALLY: usize = 2;
    /// Tokens charged.
    pub const TOKENS: usize = 3;
    /// Answers whose usage could not be found or trusted (nothing charged).
    pub const USAGE_MISSING: usize = 4;
    /// Redis calls that failed.
    pub const REDIS_ERRORS: usize = 5;
    /// Answers cut short because the client went away.
    pub const CLIENT_GONE: usize = 6;
    /// Answers cut short by an upstream (or proxy) reset.
    pub const UPSTREAM_RESET: usize = 7;
    /// Answers cut short by a timeout.
    pub const TIMED_OUT: usize = 8;
    /// Answers cut short for another reason (a local reply, unknown).
    pub const ENDED_OTHERWISE: usize = 9;
    /// Answers cut before any usage that were charged an estimate.
    pub const ESTIMATED_REQUESTS: usize = 10;
    /// Tokens charged by estimate (also counted in `tokens`).
    pub const ESTIMATED_TOKENS: usize = 11;
    /// Metered answers that came compressed although the plugin asked for
    /// `identity` (an upstream that ignores `accept-encoding`): their
    /// usage cannot be read.
    pub const COMPRESSED: usize = 12;
}

/// How the token quota's rules read and answer.
pub const STYLE: RuleStyle = RuleStyle {
    unit: Unit::Token,
    key_prefix: "token-quota",
    rejected_msg: "Too many requests",
    headers: [
        "x-tokenratelimit-limit",
        "x-tokenratelimit-remaining",
        "x-tokenratelimit-reset",
    ],
};

/// The compiled configuration of one rule.
#[derive(Debug)]
pub struct Config<'cfg> {
    /// `rule_name`, the `token_per_*` limits, `rejected_code`,
    /// `rejected_msg` (default `Too many requests`, as Higress's), `failure_mode_deny`,
    /// `redis_key_prefix` (default `token-quota`).
    pub rule: Rule<'cfg>,
    /// `include_usage_path_suffixes`: the request paths (query left out)
    /// whose streaming requests get `stream_options.include_usage`, by
    /// suffix; default `["/chat/completions", "/completions"]`, `[]` for
    /// none.
    pub include_usage_paths: Vec<&'cfg str>,
    /// `on_missing_usage`, `estimate_bytes_per_token`.
    pub estimate: Estimate,
}

/// The field naming the paths that take `stream_options.include_usage`.
const INCLUDE_USAGE_FIELD: &str = "include_usage_path_suffixes";

/// Where a request is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Step {
    /// No limit applies, or nothing to do.
    #[default]
    Idle,
    /// A limit applies; the body is awaited.
    Matched,
    /// Waiting for the tokens used so far.
    Reading,
    /// Let through; the answer will be charged.
    Admitted,
    /// Waiting for a charge to be written (one at a time: usage that
    /// becomes known meanwhile is sent when it answers); the answer is held.
    Charging,
}

/// Per-request state.
#[derive(Debug, Default)]
pub struct State {
    step: Step,
    /// The counter key, kept for the charges.
    key: KeptKey,
    limit: u64,
    window: Option<Window>,
    cache_hash: u64,
    scanner: Option<Scanner>,
    /// The request goes to an API that takes `stream_options.include_usage`.
    asks_usage: bool,
    /// Request body bytes the client sent, for an estimate.
    request_bytes: u64,
    /// Response body bytes seen, for an estimate.
    response_bytes: u64,
    /// Tokens sent to Redis for this answer so far.
    charged: u64,
    /// The tokens the answer owes in all, as far as known: what `charged`
    /// catches up with.
    owed: u64,
    /// The answer's usage was known and charged (or was zero).
    accounted: bool,
    /// The answer came compressed: its usage cannot be read, so it is
    /// charged by the estimate rule.
    compressed: bool,
}

const NANOS_PER_SEC: u64 = 1_000_000_000;

impl Plugin for TokenQuota {
    const NAME: &'static str = "token-quota";
    const COUNTERS: &'static [&'static str] = &[
        "allowed",
        "limited",
        "limited_locally",
        "tokens",
        "usage_missing",
        "redis_errors",
        "client_gone",
        "upstream_reset",
        "timed_out",
        "ended_otherwise",
        "estimated_requests",
        "estimated_tokens",
        "compressed",
    ];
    const REDIS: RedisUse = RedisUse::Counting;
    const REQUEST_BODY: BodyMode = BodyMode::Buffer;
    const RESPONSE_BODY: BodyMode = BodyMode::Stream;
    const REWRITES_BODY: bool = true;
    const STREAM_END: bool = true;
    type Config<'cfg> = Config<'cfg>;
    type State = State;

    fn configure<'cfg>(
        fields: &Fields<'_, 'cfg>,
        setup: &mut Setup<'_>,
    ) -> Result<Config<'cfg>, ConfigError> {
        let include_usage_paths = match fields.get(INCLUDE_USAGE_FIELD) {
            None => DEFAULT_INCLUDE_USAGE_SUFFIXES.to_vec(),
            Some(field) => {
                let suffixes = field.strings()?;
                if suffixes.iter().any(|s| s.is_empty()) {
                    return Err(field.error(
                        "holds an empty suffix, which would match every path; \
                         list path endings such as \"/chat/completions\"",
                    ));
                }
                suffixes
            }
        };
        Ok(Config {
            rule: Rule::parse(fields, setup, &STYLE)?,
            include_usage_paths,
            estimate: Estimate::parse(fields)?,
        })
    }

    /// Finds the limit and counter of the request while its headers can
    /// still be read (once they have left, Envoy refuses header reads).
    fn on_request_headers<H: Host>(mut cx: Cx<'_, '_, Self, H>, _end_of_stream: bool) -> Flow {
        let cfg = cx.config;
        let now_nanos = cx.io.now_nanos();
        let now = now_nanos / NANOS_PER_SEC;
        let mut scratch = KeyScratch::default();
        let Some(applied) = cfg.rule.apply(&mut cx.io, now_nanos, &mut scratch) else {
            return Flow::Continue;
        };
        let (window, key, hash) = (applied.window, applied.key, applied.cache_hash);
        if applied.known_over {
            cx.io.count(counter::LIMITED_LOCALLY);
            return reject(&mut cx, applied.limit.max, window.reset_after(now));
        }
        // Metered answers must be readable: ask for them uncompressed.
        // (Envoy's compressor filter, placed before this one, compresses
        // them toward the client again: see the README.)
        cx.io.set_request_header("accept-encoding", b"identity");
        let asks_usage = cx
            .io
            .request_header(":path")
            .is_some_and(|path| takes_include_usage(path, &cfg.include_usage_paths));
        let state = &mut *cx.state;
        state.asks_usage = asks_usage;
        state.key.keep(&key);
        state.limit = applied.limit.max;
        state.window = Some(window);
        state.cache_hash = hash;
        state.step = Step::Matched;
        Flow::Continue
    }

    /// Runs once the whole request body is in (right after the headers
    /// for a request without a body): asks for usage, then reads the quota.
    fn on_request_body<H: Host>(
        mut cx: Cx<'_, '_, Self, H>,
        body: &[u8],
        _end_of_stream: bool,
    ) -> Flow {
        if cx.state.step != Step::Matched {
            return Flow::Continue;
        }
        cx.state.request_bytes = body.len() as u64;
        if cx.state.asks_usage && !body.is_empty() {
            cx.io
                .rewrite_body(|out| include_usage(body, out) == Rewrite::Rewritten);
        }
        read_quota(&mut cx)
    }

    /// Prepares the scan of an admitted answer. An answer that arrives
    /// before the request's body was read (the upstream had the headers,
    /// which the proxy did not hold, and answered without the body; the
    /// proxy then drops the body) has its quota read now, with the answer
    /// held, so a spent quota still refuses it and an admitted one is
    /// charged.
    fn on_response_headers<H: Host>(mut cx: Cx<'_, '_, Self, H>, _end_of_stream: bool) -> Flow {
        let unread = cx.state.step == Step::Matched;
        if !unread && cx.state.step != Step::Admitted {
            return Flow::Continue;
        }
        if is_encoded(cx.io.response_header("content-encoding")) {
            // COMPRESSED ANSWER: the upstream ignored `accept-encoding:
            // identity`, so the bytes hide their usage. Counted here and
            // left unscanned; such an answer is charged by the estimate rule
            // (what an answer without usage is charged), not read.
            cx.io.count(counter::COMPRESSED);
            cx.io.log(
                LogLevel::Debug,
                format_args!("the answer came compressed; it is charged by estimate"),
            );
            cx.state.scanner = None;
            cx.state.compressed = true;
        } else {
            let format = cx
                .io
                .response_header("content-type")
                .and_then(Format::from_content_type);
            cx.state.scanner = format.map(Scanner::new);
        }
        if unread {
            return read_quota(&mut cx);
        }
        Flow::Continue
    }

    fn on_response_body<H: Host>(
        mut cx: Cx<'_, '_, Self, H>,
        body: &[u8],
        end_of_stream: bool,
    ) -> Flow {
        if !matches!(cx.state.step, Step::Admitted | Step::Charging) {
            return Flow::Continue;
        }
        let state = &mut *cx.state;
        state.response_bytes = state.response_bytes.saturating_add(body.len() as u64);
        let Some(scanner) = state.scanner.as_mut() else {
            if state.compressed && end_of_stream && !state.accounted {
                return charge_estimate(&mut cx);
            }
            return Flow::Continue;
        };
        scanner.feed(body);
        if !end_of_stream {
            if state.accounted {
                // A stream that reports more usage after it was charged
                // (input tokens first, output tokens last) owes the rest
                // now; otherwise the bytes are held only until the charge
                // in flight answers.
                let more = match scanner {
                    Scanner::EventStream(sse) => sse.usage_so_far(),
                    Scanner::Json(_) => None,
                };
                if let Some(total) = more.filter(|&total| total > state.owed) {
                    return charge_usage(&mut cx, total);
                }
                return hold_while_charging(state);
            }
            // Charge as soon as the usage is known, and hold the bytes from
            // there on until it is written, so the client cannot finish
            // reading before the count is right. Until then a JSON answer is
            // held (one document, up to the kit's `max_body_bytes`); an
            // event stream flows.
            return match usage_known(scanner) {
                Some(tokens) => charge_usage(&mut cx, tokens),
                None if matches!(scanner, Scanner::Json(_)) => Flow::Pause,
                None => Flow::Continue,
            };
        }
        let scan = scanner.finish();
        match scan {
            Scan::Found(usage) => {
                // Usage reported after the first charge adds the difference.
                if usage.total > state.charged || !state.accounted {
                    return charge_usage(&mut cx, usage.total);
                }
            }
            Scan::Absent | Scan::Malformed if !state.accounted => {
                cx.io.count(counter::USAGE_MISSING);
                let why = if scan == Scan::Absent {
                    "reports no usage"
                } else {
                    "is not trustworthy JSON"
                };
                cx.io.log(
                    LogLevel::Debug,
                    format_args!("the answer {why}; nothing charged"),
                );
            }
            Scan::Absent | Scan::Malformed => {}
        }
        hold_while_charging(cx.state)
    }

    /// Charges what an answer cut short owes: the usage it reported and
    /// was not charged yet, or the estimate when it reported none. The
    /// charge goes with its counter's next call even though the request is
    /// gone (a charge already in flight or waiting for its turn goes too).
    fn on_stream_end<H: Host>(mut cx: Cx<'_, '_, Self, H>, end: StreamEnd) {
        let step = cx.state.step;
        if step == Step::Idle || (end.response_complete && step == Step::Admitted) {
            // No limit applied, or the normal path: everything was charged
            // on the way.
            return;
        }
        let cause = match cx.io.end_cause() {
            EndCause::ClientGone => counter::CLIENT_GONE,
            EndCause::UpstreamReset => counter::UPSTREAM_RESET,
            EndCause::Timeout => counter::TIMED_OUT,
            EndCause::Other | EndCause::Unknown => counter::ENDED_OTHERWISE,
        };
        cx.io.count(cause);
        if !matches!(step, Step::Admitted | Step::Charging) {
            // Gone before the request was let through: nothing to charge.
            return;
        }
        let state = &mut *cx.state;
        let reported = match state.scanner.as_mut() {
            Some(Scanner::EventStream(sse)) => sse.usage_so_far(),
            Some(Scanner::Json(json)) => json.finish().total(),
            // A compressed answer reports nothing readable: the estimate.
            None if state.compressed => None,
            // No answer was being read (none started, or not one the
            // scanner reads): nothing reported, nothing passed to estimate.
            None => return,
        };
        let (tokens, estimated) = match reported {
            Some(total) => (total.max(state.owed).saturating_sub(state.charged), false),
            None if state.accounted || state.charged > 0 => {
                (state.owed.saturating_sub(state.charged), false)
            }
            None => match cx
                .config
                .estimate
                .tokens(state.request_bytes, state.response_bytes)
            {
                Some(tokens) => (tokens, true),
                None => {
                    cx.io.count(counter::USAGE_MISSING);
                    return;
                }
            },
        };
        if tokens == 0 {
            return;
        }
        match add(&mut cx, tokens) {
            Ok(()) => {
                cx.state.charged = cx.state.charged.saturating_add(tokens);
                cx.io.count_by(counter::TOKENS, tokens);
                if estimated {
                    cx.io.count(counter::ESTIMATED_REQUESTS);
                    cx.io.count_by(counter::ESTIMATED_TOKENS, tokens);
                }
                cx.io.log(
                    LogLevel::Debug,
                    format_args!(
                        "the answer was cut short; charging {tokens} tokens{}",
                        if estimated { " (estimated)" } else { "" }
                    ),
                );
            }
            Err(e) => {
                cx.io.count(counter::REDIS_ERRORS);
                cx.io.log(
                    LogLevel::Debug,
                    format_args!("charging {tokens} tokens at the end failed: {e}"),
                );
            }
        }
    }

    /// A read or charge of a request that ended before it was answered
    /// failed (the kit delivers only failures here): counted, since a
    /// charge of an answer cut short is lost with it.
    fn on_root_reply<H: Host>(
        mut io: RootIo<'_, H>,
        _tag: u32,
        reply: Result<Reply<'_>, RedisError>,
    ) {
        io.count(counter::REDIS_ERRORS);
        let why: &dyn fmt::Display = match &reply {
            Ok(_) => &NOT_A_COUNT,
            Err(e) => e,
        };
        io.log(
            LogLevel::Debug,
            format_args!("a read or charge of an ended request failed: {why}"),
        );
    }

    /// The count of this request's read (the tokens used so far) or
    /// charge (the tokens used with this answer's).
    fn on_count<H: Host>(
        mut cx: Cx<'_, '_, Self, H>,
        count: Result<Count<'_>, CountError<'_>>,
    ) -> Flow {
        match cx.state.step {
            Step::Reading => {
                let used = match count {
                    // A counter Redis could not add to was replaced by
                    // the read, as a charge replaces it: none used.
                    Ok(count) => count.value,
                    Err(e) => return quota_unreadable(&mut cx, failure(&e)),
                };
                let limit = cx.state.limit;
                if u64::try_from(used).unwrap_or(0) >= limit {
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
                    return reject(&mut cx, limit, window.reset_after(now));
                }
                cx.state.step = Step::Admitted;
                cx.io.count(counter::ALLOWED);
                Flow::Continue
            }
            Step::Charging => {
                cx.state.step = Step::Admitted;
                if let Err(e) = count {
                    cx.io.count(counter::REDIS_ERRORS);
                    cx.io.log(
                        LogLevel::Debug,
                        format_args!("charging failed: {}", failure(&e)),
                    );
                }
                // Usage that became known while this charge was in flight
                // goes now; the answer is released when nothing is owed.
                send_owed(&mut cx)
            }
            Step::Idle | Step::Matched | Step::Admitted => Flow::Continue,
        }
    }
}

fn reject<H: Host>(cx: &mut Cx<'_, '_, TokenQuota, H>, limit: u64, reset: u64) -> Flow {
    cx.config.rule.refuse(&mut cx.io, &STYLE, limit, reset)
}

/// Adds `tokens` to the request's counter (0 reads it); the count comes
/// to [`Plugin::on_count`]. The window's length is the counter's expiry,
/// set by its first write. One copy of the call for the three places that
/// count, rather than one inlined into each.
#[inline(never)]
fn add<H: Host>(cx: &mut Cx<'_, '_, TokenQuota, H>, tokens: u64) -> Result<(), RedisError> {
    let ttl = cx.state.window.map_or(1, |w| w.end - w.start);
    cx.io.increment(&cx.state.key.key(), tokens, ttl)
}

/// What a log line says of a reply that is no count. The reply itself is
/// left out: printing replies would add their formatting code to a module
/// that has little room left under its size budget.
const NOT_A_COUNT: &str = "Redis did not answer with a count";

/// Why a read or charge has no count, for a log line.
fn failure<'e>(error: &'e CountError<'_>) -> &'e dyn fmt::Display {
    match error {
        CountError::Redis(e) => e,
        CountError::NotCounted(_) => &NOT_A_COUNT,
    }
}

/// Reads the tokens used so far in the request's window; the request waits
/// for the answer. A read is an increment by nothing: it shares the
/// counter's calls with the charges (see the module docs).
fn read_quota<H: Host>(cx: &mut Cx<'_, '_, TokenQuota, H>) -> Flow {
    cx.state.step = Step::Reading;
    match add(cx, 0) {
        Ok(()) => Flow::Pause,
        Err(e) => quota_unreadable(cx, &e),
    }
}

/// The tokens used so far could not be read: the failure mode decides.
fn quota_unreadable<H: Host>(cx: &mut Cx<'_, '_, TokenQuota, H>, error: &dyn fmt::Display) -> Flow {
    cx.io.count(counter::REDIS_ERRORS);
    cx.io.log(
        LogLevel::Debug,
        format_args!("reading the quota failed: {error}"),
    );
    if let Some(refused) = cx.config.rule.unavailable(&mut cx.io) {
        return refused;
    }
    // Let it through and still charge the answer.
    cx.state.step = Step::Admitted;
    Flow::Continue
}

/// The tokens of an answer whose usage is known before its end: the usage
/// event of a stream (`SseScanner::usage_seen`), or a JSON document that is
/// complete.
fn usage_known(scanner: &Scanner) -> Option<u64> {
    match scanner {
        Scanner::EventStream(sse) if sse.usage_seen() => sse.usage_so_far(),
        Scanner::EventStream(_) => None,
        Scanner::Json(json) => json.finish().total(),
    }
}

/// Holds the answer while a charge is in flight, lets it go otherwise.
fn hold_while_charging(state: &State) -> Flow {
    if state.step == Step::Charging {
        Flow::Pause
    } else {
        Flow::Continue
    }
}

/// The answer's usage is known to be `total` tokens: charges what is not
/// charged yet and holds the answer until Redis has written it (nothing to
/// charge lets it go).
fn charge_usage<H: Host>(cx: &mut Cx<'_, '_, TokenQuota, H>, total: u64) -> Flow {
    cx.state.accounted = true;
    cx.state.owed = cx.state.owed.max(total);
    send_owed(cx)
}

/// Sends what the answer owes beyond what was charged, unless a charge is
/// in flight: one charge at a time per request, so the one in flight
/// sends the rest when it answers. Holds the answer while a charge is in
/// flight.
fn send_owed<H: Host>(cx: &mut Cx<'_, '_, TokenQuota, H>) -> Flow {
    if cx.state.step == Step::Charging {
        return Flow::Pause;
    }
    let tokens = cx.state.owed.saturating_sub(cx.state.charged);
    if tokens == 0 {
        return Flow::Continue;
    }
    match add(cx, tokens) {
        Ok(()) => {
            cx.state.step = Step::Charging;
            cx.state.charged = cx.state.charged.saturating_add(tokens);
            cx.io.count_by(counter::TOKENS, tokens);
            Flow::Pause
        }
        Err(e) => {
            cx.io.count(counter::REDIS_ERRORS);
            cx.io.log(
                LogLevel::Debug,
                format_args!("charging {tokens} tokens failed: {e}"),
            );
            Flow::Continue
        }
    }
}

/// A compressed answer has ended: charges the estimate rule's tokens for
/// it, as for an answer cut before its usage, and holds its last bytes
/// until Redis has written them.
fn charge_estimate<H: Host>(cx: &mut Cx<'_, '_, TokenQuota, H>) -> Flow {
    let estimate = cx
        .config
        .estimate
        .tokens(cx.state.request_bytes, cx.state.response_bytes);
    match estimate {
        Some(tokens) => {
            cx.io.count(counter::ESTIMATED_REQUESTS);
            cx.io.count_by(counter::ESTIMATED_TOKENS, tokens);
            let total = cx.state.charged.saturating_add(tokens);
            charge_usage(cx, total)
        }
        None => {
            cx.state.accounted = true;
            cx.io.count(counter::USAGE_MISSING);
            Flow::Continue
        }
    }
}
