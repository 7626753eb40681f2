//! The request helpers of `kit::fake_request`, on a plugin that makes
//! several Redis calls for one request: the pattern the kit recommends for
//! a multi-step Redis flow is a step enum in the request's `State`, each
//! reply handled by the step it answers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kit::fake::FakeHost;
use kit::fake_request::Outcome;
use kit::{
    ConfigError, Cx, Fields, Filter, Flow, Host, Plugin, RedisError, RedisUse, Reply, Setup,
};

/// Counts requests per `x-user` in a key that lives `ttl` seconds: INCR,
/// then EXPIRE when the INCR created the key, then the verdict.
struct Counted;

struct Config {
    max: i64,
    ttl: u64,
}

/// Where a request is between its Redis calls.
#[derive(Default)]
enum Step {
    #[default]
    Start,
    /// INCR sent.
    Counting,
    /// EXPIRE sent after the first INCR; the count is kept for the verdict.
    Expiring(i64),
}

#[derive(Default)]
struct State {
    step: Step,
    key: kit::smallvec::SmallVec<[u8; 64]>,
}

impl Plugin for Counted {
    const NAME: &'static str = "counted";
    const REDIS: RedisUse = RedisUse::Required;
    type Config<'cfg> = Config;
    type State = State;

    fn configure<'cfg>(f: &Fields<'_, 'cfg>, _: &mut Setup<'_>) -> Result<Config, ConfigError> {
        Ok(Config {
            max: f.require("max")?.positive()? as i64,
            ttl: f.u64_or("ttl", 60)?,
        })
    }

    fn on_request_headers<H: Host>(mut cx: Cx<'_, '_, Self, H>, _: bool) -> Flow {
        let Some(user) = cx.io.request_header("x-user") else {
            return Flow::Continue;
        };
        let key = user.into();
        cx.state.key = key;
        cx.state.step = Step::Counting;
        match cx.io.redis().and_then(|r| r.incr(&cx.state.key)) {
            Ok(()) => Flow::Pause,
            Err(_) => Flow::Continue,
        }
    }

    fn on_redis_reply<H: Host>(
        mut cx: Cx<'_, '_, Self, H>,
        reply: Result<Reply<'_>, RedisError>,
    ) -> Flow {
        let Ok(reply) = reply else {
            return cx.io.respond(503, &[], b"counter unavailable");
        };
        let count = match core::mem::take(&mut cx.state.step) {
            Step::Counting => {
                let Some(count) = reply.as_i64() else {
                    return cx.io.respond(503, &[], b"counter unreadable");
                };
                if count == 1 {
                    // The key was just made: give it its lifetime first.
                    cx.state.step = Step::Expiring(count);
                    let ttl = cx.config.ttl;
                    return match cx.io.redis().and_then(|r| r.expire(&cx.state.key, ttl)) {
                        Ok(()) => Flow::Pause,
                        Err(_) => Flow::Continue,
                    };
                }
                count
            }
            Step::Expiring(count) => count,
            Step::Start => return Flow::Continue,
        };
        if count > cx.config.max {
            cx.io.respond(429, &[], b"over")
        } else {
            Flow::Continue
        }
    }
}

fn filter() -> Filter<Counted, FakeHost> {
    let mut filter = Filter::new(FakeHost::new());
    filter
        .configure(br#"{"max": 2, "ttl": 30, "redis": {"webdis_cluster": "webdis"}}"#.to_vec())
        .unwrap();
    filter
}

fn waiting(outcome: Outcome) -> kit::fake::SentCall {
    match outcome {
        Outcome::Waiting(call) => call,
        other => panic!("expected a call in flight, got {other:?}"),
    }
}

#[test]
fn a_first_request_counts_then_sets_the_lifetime_then_goes_on() {
    let mut filter = filter();
    let (_, outcome) = filter.send_request(&[("x-user", "ann")]);
    let incr = waiting(outcome);
    assert_eq!(incr.cluster, "webdis");
    assert_eq!(
        incr.webdis_args().unwrap(),
        [b"INCR".to_vec(), b"ann".to_vec()]
    );
    let expire = waiting(filter.answer_redis(&incr, b":1\r\n"));
    assert_eq!(
        expire.webdis_args().unwrap(),
        [b"EXPIRE".to_vec(), b"ann".to_vec(), b"30".to_vec()]
    );
    assert_eq!(filter.answer_redis(&expire, b":1\r\n"), Outcome::Continued);
}

#[test]
fn a_later_request_is_judged_on_its_count() {
    let mut filter = filter();
    let incr = waiting(filter.send_request(&[("x-user", "ann")]).1);
    assert_eq!(filter.answer_redis(&incr, b":2\r\n"), Outcome::Continued);
    let incr = waiting(filter.send_request(&[("x-user", "ann")]).1);
    match filter.answer_redis(&incr, b":3\r\n") {
        Outcome::Responded(answer) => {
            assert_eq!(answer.status, 429);
            assert_eq!(answer.body, b"over");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn failures_and_error_replies_reach_the_handler() {
    let mut filter = filter();
    let incr = waiting(filter.send_request(&[("x-user", "ann")]).1);
    match filter.fail_call(&incr) {
        Outcome::Responded(answer) => assert_eq!(answer.status, 503),
        other => panic!("{other:?}"),
    }
    let incr = waiting(filter.send_request(&[("x-user", "ann")]).1);
    match filter.answer_redis(&incr, b"-WRONGTYPE Operation against a key\r\n") {
        Outcome::Responded(answer) => assert_eq!(answer.body, b"counter unreadable"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_request_the_plugin_ignores_continues_at_once() {
    let mut filter = filter();
    assert_eq!(filter.send_request(&[]).1, Outcome::Continued);
}

/// The same flow over Higress's native transport: the command goes out as
/// RESP bytes, and the reply comes back on the root context.
#[cfg(feature = "higress")]
#[test]
fn native_calls_are_answered_as_higress_answers_them() {
    let mut filter = Filter::<Counted, FakeHost>::new(FakeHost::new());
    filter
        .configure(
            br#"{"max": 2, "ttl": 30, "redis": {"service_name": "redis.static", "service_port": 6379}}"#
                .to_vec(),
        )
        .unwrap();
    let incr = waiting(filter.send_request(&[("x-user", "ann")]).1);
    assert!(incr.headers.is_empty());
    assert_eq!(incr.body, b"*2\r\n$4\r\nINCR\r\n$3\r\nann\r\n");
    let expire = waiting(filter.answer_redis(&incr, b":1\r\n"));
    assert_eq!(filter.answer_redis(&expire, b":1\r\n"), Outcome::Continued);
    let incr = waiting(filter.send_request(&[("x-user", "ann")]).1);
    match filter.fail_call(&incr) {
        Outcome::Responded(answer) => assert_eq!(answer.status, 503),
        other => panic!("{other:?}"),
    }
}
