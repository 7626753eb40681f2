//! The end of a request and calls that outlive it, over the `FakeHost`:
//! `Plugin::on_stream_end` for answers that completed and answers cut
//! short (with the proxy's reason), Redis calls sent on behalf of the root
//! answered after their request is gone, the root adopting a request's
//! calls in flight (NOSCRIPT retry included), a streamed chunk held for a
//! call and let go, and no allocation on any of these paths once warm.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use kit::fake::{CountingAllocator, FakeHost};
use kit::{
    Action, BodyMode, ConfigError, Cx, EndCause, Fields, Filter, Flow, Host, Plugin, RedisError,
    RedisUse, Reply, RootIo, Script, Setup, StreamEnd, StreamId, ADOPTED,
};

mod support;

use support::{allocations_in_warm_rounds, counter, filter};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Charges a meter in Redis: mid-answer when a chunk says `charge` (the
/// chunk is held until Redis answers), with a script when it says
/// `script`, and at the end of every answer cut short, by a root call.
struct Meter;

mod counter {
    pub const COMPLETE: usize = 0;
    pub const CUT: usize = 1;
    pub const CLIENT_GONE: usize = 2;
    pub const ROOT_REPLIES: usize = 3;
    pub const ADOPTED_REPLIES: usize = 4;
    pub const ROOT_ERRORS: usize = 5;
    pub const BODY_BYTES: usize = 6;
    pub const STREAM_REPLIES: usize = 7;
}

const END_TAG: u32 = 7;
const SCRIPT: Script = Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");

impl Plugin for Meter {
    const NAME: &'static str = "meter";
    const COUNTERS: &'static [&'static str] = &[
        "complete",
        "cut",
        "client_gone",
        "root_replies",
        "adopted_replies",
        "root_errors",
        "body_bytes",
        "stream_replies",
    ];
    const REDIS: RedisUse = RedisUse::Required;
    const RESPONSE_BODY: BodyMode = BodyMode::Stream;
    const STREAM_END: bool = true;
    type Config<'cfg> = ();
    type State = ();

    fn configure<'cfg>(_: &Fields<'_, 'cfg>, _: &mut Setup<'_>) -> Result<(), ConfigError> {
        Ok(())
    }

    fn on_response_body<H: Host>(mut cx: Cx<'_, '_, Self, H>, body: &[u8], _: bool) -> Flow {
        cx.io.count_by(counter::BODY_BYTES, body.len() as u64);
        let sent = if body.starts_with(b"charge") {
            cx.io.redis().and_then(|r| r.incrby(b"meter", 1))
        } else if body.starts_with(b"script") {
            cx.io
                .redis()
                .and_then(|r| r.evalsha(&SCRIPT).key(b"meter").arg(b"1").send())
        } else {
            return Flow::Continue;
        };
        match sent {
            Ok(()) => Flow::Pause,
            Err(_) => Flow::Continue,
        }
    }

    fn on_redis_reply<H: Host>(
        mut cx: Cx<'_, '_, Self, H>,
        _: Result<Reply<'_>, RedisError>,
    ) -> Flow {
        cx.io.count(counter::STREAM_REPLIES);
        Flow::Continue
    }

    fn on_stream_end<H: Host>(mut cx: Cx<'_, '_, Self, H>, end: StreamEnd) {
        if end.response_complete {
            cx.io.count(counter::COMPLETE);
            return;
        }
        cx.io.count(counter::CUT);
        if cx.io.end_cause() == EndCause::ClientGone {
            cx.io.count(counter::CLIENT_GONE);
        }
        let _ = cx
            .io
            .root_redis(END_TAG)
            .and_then(|r| r.incrby(b"meter:end", 1));
    }

    fn on_root_reply<H: Host>(
        mut io: RootIo<'_, H>,
        tag: u32,
        reply: Result<Reply<'_>, RedisError>,
    ) {
        match (tag, reply) {
            (_, Err(_)) => io.count(counter::ROOT_ERRORS),
            (END_TAG, Ok(Reply::Integer(_))) => io.count(counter::ROOT_REPLIES),
            (ADOPTED, Ok(Reply::Integer(_))) => io.count(counter::ADOPTED_REPLIES),
            (_, Ok(_)) => io.count(counter::ROOT_ERRORS),
        }
    }
}

/// A request whose answer has started: headers both ways.
fn started(filter: &mut Filter<Meter, FakeHost>, context: u32) -> StreamId {
    filter.host_mut().next_request();
    let stream = filter.open_stream(context);
    assert_eq!(filter.on_request_headers(stream, true), Action::Continue);
    filter
        .host_mut()
        .response_headers
        .add("content-type", b"text/plain");
    assert_eq!(filter.on_response_headers(stream, false), Action::Continue);
    stream
}

/// One response chunk, `buffered` being all the proxy holds.
fn chunk(
    filter: &mut Filter<Meter, FakeHost>,
    stream: StreamId,
    buffered: &[u8],
    end: bool,
) -> Action {
    let host = filter.host_mut();
    host.response_body.clear();
    host.response_body.extend_from_slice(buffered);
    filter.on_response_body(stream, buffered.len(), end)
}

/// Answers the last call with the RESP `reply`, on the root context.
fn answer(filter: &mut Filter<Meter, FakeHost>, reply: &[u8]) {
    let token = filter.host().last_call.as_ref().unwrap().token;
    filter.host_mut().answer_http(200, reply);
    filter.on_http_call_response(token, 1, reply.len(), true);
}

fn client_gone(filter: &mut Filter<Meter, FakeHost>) {
    let flags = 0x4000u64.to_le_bytes();
    filter
        .host_mut()
        .properties
        .set("response.flags", Some(&flags));
}

#[test]
fn a_complete_answer_ends_complete() {
    let mut f = filter::<Meter>();
    let stream = started(&mut f, 2);
    assert_eq!(chunk(&mut f, stream, b"all of it", true), Action::Continue);
    f.close_stream(stream);
    assert_eq!(counter(&mut f, "complete"), 1);
    assert_eq!(counter(&mut f, "cut"), 0);
    assert_eq!(f.host().calls_sent, 0);
}

#[test]
fn an_answer_cut_short_ends_cut_with_the_reason_and_its_root_call_answers_later() {
    let mut f = filter::<Meter>();
    let stream = started(&mut f, 2);
    assert_eq!(
        chunk(&mut f, stream, b"part of it", false),
        Action::Continue
    );
    client_gone(&mut f);
    f.close_stream(stream);
    assert_eq!(counter(&mut f, "cut"), 1);
    assert_eq!(counter(&mut f, "client_gone"), 1);
    let call = f.host().last_call.clone().unwrap();
    assert_eq!(
        call.webdis_args().unwrap(),
        [b"INCRBY".to_vec(), b"meter:end".to_vec(), b"1".to_vec()]
    );
    // The request is gone; its root call is answered all the same, on the
    // root context, without switching to the dead request's context.
    let effective = f.host().effective_context;
    answer(&mut f, b":1\r\n");
    assert_eq!(counter(&mut f, "root_replies"), 1);
    assert_eq!(f.host().effective_context, effective);
    // A reply to the same token again is dropped.
    answer(&mut f, b":1\r\n");
    assert_eq!(counter(&mut f, "root_replies"), 1);
    assert_eq!(counter(&mut f, "root_errors"), 0);
}

#[test]
fn a_root_call_that_fails_reaches_the_root_handler_as_an_error() {
    let mut f = filter::<Meter>();
    let stream = started(&mut f, 2);
    let _ = chunk(&mut f, stream, b"part", false);
    f.close_stream(stream);
    let token = f.host().last_call.as_ref().unwrap().token;
    f.on_http_call_response(token, 0, 0, true);
    assert_eq!(counter(&mut f, "root_errors"), 1);
}

#[test]
fn a_request_that_ends_with_a_redis_call_in_flight_leaves_it_to_the_root() {
    let mut f = filter::<Meter>();
    let stream = started(&mut f, 2);
    assert_eq!(chunk(&mut f, stream, b"charge", false), Action::Pause);
    let charge = f.host().last_call.clone().unwrap();
    client_gone(&mut f);
    f.close_stream(stream);
    // The end handler's own call went out after it.
    let end = f.host().last_call.clone().unwrap();
    assert_ne!(end.token, charge.token);
    f.host_mut().answer_http(200, b":5\r\n");
    f.on_http_call_response(charge.token, 1, 4, true);
    assert_eq!(counter(&mut f, "adopted_replies"), 1);
    assert_eq!(counter(&mut f, "stream_replies"), 0, "the request is gone");
    assert_eq!(f.host().resumed, [0, 0], "nothing to resume");
}

#[test]
fn an_adopted_evalsha_is_still_retried_as_eval_on_noscript() {
    let mut f = filter::<Meter>();
    let stream = started(&mut f, 2);
    assert_eq!(chunk(&mut f, stream, b"script", false), Action::Pause);
    f.close_stream(stream);
    let sent = f.host().calls_sent;
    // The end handler's call is the last one; the EVALSHA came before it.
    let evalsha = sent - 2;
    let token = u32::try_from(evalsha).unwrap() + 1;
    f.host_mut()
        .answer_http(200, b"-NOSCRIPT No matching script.\r\n");
    f.on_http_call_response(token, 1, 31, true);
    assert_eq!(f.host().calls_sent, sent + 1, "re-sent as EVAL");
    let retry = f.host().last_call.clone().unwrap();
    assert_eq!(retry.webdis_args().unwrap()[0], b"EVAL");
    answer(&mut f, b":1\r\n");
    assert_eq!(counter(&mut f, "adopted_replies"), 1);
    assert_eq!(counter(&mut f, "root_errors"), 0);
}

#[test]
fn a_chunk_held_for_a_call_is_let_go_and_the_next_chunk_read_from_the_start() {
    let mut f = filter::<Meter>();
    let stream = started(&mut f, 2);
    assert_eq!(chunk(&mut f, stream, b"charge", false), Action::Pause);
    answer(&mut f, b":1\r\n");
    assert_eq!(f.host().resumed, [0, 1]);
    // The proxy sent what it held: its buffer now holds the next chunk only.
    let next = b"a longer chunk after the held one";
    assert_eq!(chunk(&mut f, stream, next, true), Action::Continue);
    assert_eq!(
        counter(&mut f, "body_bytes"),
        (b"charge".len() + next.len()) as u64
    );
    f.close_stream(stream);
    assert_eq!(counter(&mut f, "complete"), 1);
}

#[test]
fn ends_root_calls_and_adoptions_do_not_allocate_once_warm() {
    let mut f = filter::<Meter>();
    // Set once: the fake's property map keeps every value it was given.
    client_gone(&mut f);
    let mut context = 2;
    let round = |f: &mut Filter<Meter, FakeHost>| {
        // Cut short with a call in flight: adopted, then the end's call.
        let stream = started(f, context);
        context += 1;
        assert_eq!(chunk(f, stream, b"charge", false), Action::Pause);
        let charge = f.host().last_call.as_ref().unwrap().token;
        f.close_stream(stream);
        answer(f, b":1\r\n");
        f.host_mut().answer_http(200, b":2\r\n");
        f.on_http_call_response(charge, 1, 4, true);
        // Complete, with a chunk held for a call and let go.
        let stream = started(f, context);
        context += 1;
        assert_eq!(chunk(f, stream, b"charge", false), Action::Pause);
        answer(f, b":3\r\n");
        assert_eq!(chunk(f, stream, b"rest", true), Action::Continue);
        f.close_stream(stream);
    };
    let allocations = allocations_in_warm_rounds(&mut f, round);
    assert_eq!(counter(&mut f, "root_replies"), 1_050);
    assert_eq!(counter(&mut f, "adopted_replies"), 1_050);
    assert_eq!(counter(&mut f, "complete"), 1_050);
    assert_eq!(allocations, 0, "allocations in 2,000 warm requests");
}
