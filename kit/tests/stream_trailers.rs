//! A streamed body that ends with trailers, over the `FakeHost`: the proxy
//! delivers its last chunk without the end of the stream and then the
//! trailers; the handler gets one more, empty, piece told the stream ended,
//! and holds or lets go there as on a last chunk: a call sent then holds
//! the trailers (and any bytes held before them) until it answers. The
//! request ends complete, the dispatcher passes such trailers on, and none
//! of it allocates once warm.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use kit::dispatcher::Dispatcher;
use kit::fake::{CountingAllocator, FakeHost};
use kit::fake_request::Outcome;
use kit::{
    Action, BodyMode, ConfigError, Cx, Fields, Filter, Flow, Host, Plugin, RedisError, RedisUse,
    Reply, Setup, StreamEnd,
};
use std::cell::RefCell;

mod support;

use support::{allocations_in_warm_rounds, counter, filter};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// A piece the handler got: its bytes, and whether it ended the stream.
type Piece = (Vec<u8>, bool);

thread_local! {
    /// Each response piece the handler got: its bytes and whether it ended
    /// the stream (recorded only while a test wants them).
    static PIECES: RefCell<Option<Vec<Piece>>> = const { RefCell::new(None) };
}

/// Tallies a streamed answer: at its end, adds the bytes it saw to a Redis
/// counter and holds the end until Redis answers; a chunk that says
/// `hold` is held back until the end. Streamed request bodies are counted
/// the same way, without a call.
struct Tally;

mod counter {
    pub const COMPLETE: usize = 0;
    pub const CUT: usize = 1;
    pub const ENDS: usize = 2;
    pub const REQUEST_ENDS: usize = 3;
}

#[derive(Default)]
struct State {
    bytes: i64,
}

impl Plugin for Tally {
    const NAME: &'static str = "tally";
    const COUNTERS: &'static [&'static str] = &["complete", "cut", "ends", "request_ends"];
    const REDIS: RedisUse = RedisUse::Required;
    const REQUEST_BODY: BodyMode = BodyMode::Stream;
    const RESPONSE_BODY: BodyMode = BodyMode::Stream;
    const STREAM_END: bool = true;
    type Config<'cfg> = ();
    type State = State;

    fn configure<'cfg>(_: &Fields<'_, 'cfg>, _: &mut Setup<'_>) -> Result<(), ConfigError> {
        Ok(())
    }

    fn on_request_body<H: Host>(mut cx: Cx<'_, '_, Self, H>, _: &[u8], end: bool) -> Flow {
        if end {
            cx.io.count(counter::REQUEST_ENDS);
        }
        Flow::Continue
    }

    fn on_response_body<H: Host>(mut cx: Cx<'_, '_, Self, H>, body: &[u8], end: bool) -> Flow {
        PIECES.with(|p| {
            if let Some(pieces) = p.borrow_mut().as_mut() {
                pieces.push((body.to_vec(), end));
            }
        });
        cx.state.bytes += body.len() as i64;
        if !end {
            return if body.starts_with(b"hold") {
                Flow::Pause
            } else {
                Flow::Continue
            };
        }
        cx.io.count(counter::ENDS);
        let bytes = cx.state.bytes;
        match cx.io.redis().and_then(|r| r.incrby(b"tally", bytes)) {
            Ok(()) => Flow::Pause,
            Err(_) => Flow::Continue,
        }
    }

    fn on_redis_reply<H: Host>(_: Cx<'_, '_, Self, H>, _: Result<Reply<'_>, RedisError>) -> Flow {
        Flow::Continue
    }

    fn on_stream_end<H: Host>(mut cx: Cx<'_, '_, Self, H>, end: StreamEnd) {
        cx.io.count(if end.response_complete {
            counter::COMPLETE
        } else {
            counter::CUT
        });
    }
}

fn record() {
    PIECES.with(|p| *p.borrow_mut() = Some(Vec::new()));
}

fn pieces() -> Vec<Piece> {
    PIECES.with(|p| p.borrow_mut().take().unwrap_or_default())
}

/// The `INCRBY` a call carries: its amount.
fn amount(outcome: &Outcome) -> Vec<u8> {
    let Outcome::Waiting(call) = outcome else {
        panic!("no call: {outcome:?}");
    };
    let args = call.webdis_args().unwrap();
    assert_eq!(args[..2], [b"INCRBY".to_vec(), b"tally".to_vec()]);
    args[2].clone()
}

#[test]
fn the_handler_gets_an_empty_last_piece_at_the_trailers_and_they_wait_for_its_call() {
    let mut f = filter::<Tally>();
    record();
    let (stream, outcome) = f.send_request(&[]);
    assert_eq!(outcome, Outcome::Continued);
    assert_eq!(
        f.send_response_headers(stream, &[(":status", "200")], false),
        Outcome::Continued
    );
    assert_eq!(
        f.send_response_chunk(stream, b"data: one\n\n", false),
        Outcome::Continued
    );
    assert_eq!(
        f.send_response_chunk(stream, b"data: two\n\n", false),
        Outcome::Continued
    );
    assert_eq!(f.host().calls_sent, 0, "no end yet");
    let held = f.send_response_trailers(stream);
    assert_eq!(amount(&held), b"22", "every byte tallied, once");
    assert_eq!(f.host().resumed, [0, 0], "the trailers wait");
    assert_eq!(
        pieces(),
        [
            (b"data: one\n\n".to_vec(), false),
            (b"data: two\n\n".to_vec(), false),
            (Vec::new(), true)
        ]
    );
    let Outcome::Waiting(call) = held else {
        unreachable!()
    };
    assert_eq!(f.answer_redis(&call, b":22\r\n"), Outcome::Continued);
    assert_eq!(f.host().resumed, [0, 1], "released once Redis answered");
    assert_eq!(f.host().delivered, b"data: one\n\ndata: two\n\n");
    f.close_stream(stream);
    assert_eq!(counter(&mut f, "complete"), 1);
    assert_eq!(counter(&mut f, "cut"), 0);
    assert_eq!(counter(&mut f, "ends"), 1);
}

#[test]
fn bytes_held_before_the_trailers_wait_with_them_and_go_with_them() {
    let mut f = filter::<Tally>();
    let (stream, _) = f.send_request(&[]);
    let _ = f.send_response_headers(stream, &[(":status", "200")], false);
    assert_eq!(
        f.send_response_chunk(stream, b"first ", false),
        Outcome::Continued
    );
    assert_eq!(
        f.send_response_chunk(stream, b"hold this", false),
        Outcome::Hanging,
        "held back, the next chunk comes anyway"
    );
    assert_eq!(f.host().delivered, b"first ");
    record();
    let held = f.send_response_trailers(stream);
    assert_eq!(amount(&held), b"15");
    assert_eq!(
        pieces(),
        [(Vec::new(), true)],
        "the held bytes were seen already"
    );
    assert_eq!(f.host().delivered, b"first ", "still held");
    let Outcome::Waiting(call) = held else {
        unreachable!()
    };
    assert_eq!(f.answer_redis(&call, b":15\r\n"), Outcome::Continued);
    assert_eq!(f.host().delivered, b"first hold this");
    f.close_stream(stream);
    assert_eq!(counter(&mut f, "complete"), 1);
}

#[test]
fn trailers_with_no_call_to_wait_for_go_on_at_once() {
    let mut f = filter::<Tally>();
    let (stream, _) = f.send_request(&[]);
    let _ = f.send_response_headers(stream, &[(":status", "200")], false);
    let _ = f.send_response_chunk(stream, b"hold all", false);
    // Redis cannot take the call: the end goes on without it.
    f.host_mut().refuse_calls = Some(kit::HostError::BadArgument);
    assert_eq!(f.send_response_trailers(stream), Outcome::Continued);
    assert_eq!(f.host().delivered, b"hold all");
    f.close_stream(stream);
    assert_eq!(counter(&mut f, "complete"), 1);
    assert_eq!(counter(&mut f, "ends"), 1);
}

#[test]
fn a_body_that_ended_with_its_last_chunk_is_not_ended_again_by_trailers() {
    // A stream ends once: an answer told its end on a chunk gets no
    // second end should a host call the trailers callback after it.
    let mut f = filter::<Tally>();
    let (stream, _) = f.send_request(&[]);
    let _ = f.send_response_headers(stream, &[(":status", "200")], false);
    let held = f.send_response_chunk(stream, b"all", true);
    let Outcome::Waiting(call) = held else {
        panic!("{held:?}")
    };
    assert_eq!(f.answer_redis(&call, b":3\r\n"), Outcome::Continued);
    let sent = f.host().calls_sent;
    assert_eq!(f.send_response_trailers(stream), Outcome::Continued);
    assert_eq!(f.host().calls_sent, sent, "no second end");
    assert_eq!(counter(&mut f, "ends"), 1);
    f.close_stream(stream);
    assert_eq!(counter(&mut f, "complete"), 1);
}

#[test]
fn a_streamed_request_body_that_ends_with_trailers_ends_at_them() {
    let mut f = filter::<Tally>();
    f.host_mut().next_request();
    let stream = f.open_stream(2);
    assert_eq!(f.on_request_headers(stream, false), Action::Continue);
    f.host_mut().request_body.extend_from_slice(b"upload");
    assert_eq!(f.on_request_body(stream, 6, false), Action::Continue);
    assert_eq!(counter(&mut f, "request_ends"), 0);
    assert_eq!(f.on_request_trailers(stream), Action::Continue);
    assert_eq!(counter(&mut f, "request_ends"), 1);
    f.close_stream(stream);
}

#[test]
fn the_dispatcher_takes_the_trailers_of_streamed_bodies_to_the_filter() {
    const CONTINUE: u32 = 0;
    const STOP_ITERATION: u32 = 1;
    let mut d: Dispatcher<Tally, FakeHost> = Dispatcher::new();
    d.on_context_create(1, 0, FakeHost::new);
    assert!(d.on_configure(1, br#"{"redis": {"webdis_cluster": "webdis"}}"#.to_vec()));
    d.on_context_create(10, 1, FakeHost::new);
    assert_eq!(d.on_request_headers(10, true), CONTINUE);
    assert_eq!(d.on_response_headers(10, false), CONTINUE);
    d.root(1)
        .unwrap()
        .host_mut()
        .response_body
        .extend_from_slice(b"data: x\n\n");
    assert_eq!(d.on_response_body(10, 9, false), CONTINUE);
    assert_eq!(d.on_response_trailers(10), STOP_ITERATION, "its end's call");
    let filter = d.root(1).unwrap();
    assert_eq!(filter.host().calls_sent, 1);
    assert_eq!(counter(filter, "ends"), 1);
}

#[test]
fn streams_ending_with_trailers_do_not_allocate_once_warm() {
    let mut f = filter::<Tally>();
    // The engine's own callbacks: the `fake_request` helpers copy each
    // call they report, which is the test's cost, not the kit's.
    let mut context = 2;
    let round = |f: &mut Filter<Tally, FakeHost>| {
        f.host_mut().next_request();
        let stream = f.open_stream(context);
        context += 1;
        assert_eq!(f.on_request_headers(stream, true), Action::Continue);
        assert_eq!(f.on_response_headers(stream, false), Action::Continue);
        f.host_mut()
            .response_body
            .extend_from_slice(b"data: one\n\n");
        assert_eq!(f.on_response_body(stream, 11, false), Action::Continue);
        f.host_mut().response_body.clear();
        f.host_mut()
            .response_body
            .extend_from_slice(b"hold two\n\n");
        assert_eq!(f.on_response_body(stream, 10, false), Action::Pause);
        let sent = f.host().calls_sent;
        assert_eq!(f.on_response_trailers(stream), Action::Pause);
        assert_eq!(f.host().calls_sent, sent + 1, "the end's call");
        let token = f.host().last_call.as_ref().unwrap().token;
        f.host_mut().answer_http(200, b":1\r\n");
        let resumed = f.host().resumed[1];
        f.on_http_call_response(token, 1, 4, true);
        assert_eq!(f.host().resumed[1], resumed + 1);
        f.close_stream(stream);
    };
    let allocations = allocations_in_warm_rounds(&mut f, round);
    assert_eq!(counter(&mut f, "complete"), 1_050);
    assert_eq!(allocations, 0, "allocations in 1,000 warm requests");
}
