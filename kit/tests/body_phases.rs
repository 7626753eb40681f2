//! Body phases over the `FakeHost`: buffering with held headers, the
//! fallback when the proxy ignores `HeaderStopIteration`, streaming chunks,
//! limits, and a headers handler that waits on Redis while the body arrives.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use kit::fake::FakeHost;
use kit::{
    Action, BodyMode, ConfigError, Cx, Fields, Filter, Flow, Host, Plugin, RedisError, RedisUse,
    Reply, Setup,
};
use std::time::Duration;

/// Buffers request bodies, upper-cases them, and records what it saw.
struct Upper;

#[derive(Default)]
struct Seen {
    bodies: Vec<Vec<u8>>,
    wait_in_headers: bool,
}

impl Plugin for Upper {
    const NAME: &'static str = "upper";
    const REQUEST_BODY: BodyMode = BodyMode::Buffer;
    const RESPONSE_BODY: BodyMode = BodyMode::Buffer;
    const REWRITES_BODY: bool = true;
    const REDIS: RedisUse = RedisUse::Required;
    type Config<'cfg> = bool;
    type State = Seen;

    fn configure<'cfg>(fields: &Fields<'_, 'cfg>, _: &mut Setup<'_>) -> Result<bool, ConfigError> {
        fields.bool_or("wait_in_headers", false)
    }

    fn on_request_headers<H: Host>(mut cx: Cx<'_, '_, Self, H>, _: bool) -> Flow {
        cx.state.wait_in_headers = *cx.config;
        if *cx.config {
            cx.io.redis().and_then(|r| r.get(b"k")).unwrap();
            return Flow::Pause;
        }
        Flow::Continue
    }

    fn on_redis_reply<H: Host>(_: Cx<'_, '_, Self, H>, _: Result<Reply<'_>, RedisError>) -> Flow {
        Flow::Continue
    }

    fn on_request_body<H: Host>(
        mut cx: Cx<'_, '_, Self, H>,
        body: &[u8],
        end_of_stream: bool,
    ) -> Flow {
        assert!(end_of_stream);
        cx.state.bodies.push(body.to_vec());
        cx.io.set_request_header("x-body-seen", b"yes");
        cx.io.rewrite_body(|out| {
            out.extend(body.iter().map(u8::to_ascii_uppercase));
            out.extend_from_slice(b"!");
            true
        });
        Flow::Continue
    }

    fn on_response_body<H: Host>(cx: Cx<'_, '_, Self, H>, body: &[u8], _: bool) -> Flow {
        cx.state.bodies.push(body.to_vec());
        Flow::Continue
    }
}

fn filter(extra: &str) -> Filter<Upper, FakeHost> {
    let mut f = Filter::new(FakeHost::new());
    f.configure(format!(r#"{{"redis": {{"webdis_cluster": "w"}}{extra}}}"#).into_bytes())
        .unwrap();
    f
}

fn request(f: &mut Filter<Upper, FakeHost>, body: &[u8]) {
    let h = f.host_mut();
    h.next_request();
    h.request_headers.add(":path", b"/");
    h.request_headers
        .add("content-length", body.len().to_string().as_bytes());
    h.request_body = body.to_vec();
}

#[test]
fn no_body_runs_the_body_handler_at_once_and_never_holds() {
    let mut f = filter("");
    request(&mut f, b"");
    let s = f.open_stream(2);
    assert_eq!(f.on_request_headers(s, true), Action::Continue);
    assert_eq!(f.host().request_headers.get_str("x-body-seen"), Some("yes"));
    assert_eq!(f.host().tick_period, kit::COUNTER_FLUSH, "no probe tick");
}

#[test]
fn held_headers_see_the_whole_body_and_get_an_exact_content_length() {
    let mut f = filter("");
    request(&mut f, b"hello world");
    let s = f.open_stream(2);
    assert_eq!(
        f.on_request_headers(s, false),
        Action::Pause,
        "HeaderStopIteration"
    );
    assert_eq!(f.on_request_body(s, 5, false), Action::Pause, "buffering");
    assert_eq!(f.on_request_body(s, 11, true), Action::Continue);
    assert_eq!(f.host().request_body, b"HELLO WORLD!");
    assert_eq!(
        f.host().request_headers.get_str("content-length"),
        Some("12")
    );
    assert_eq!(f.host().request_headers.get_str("x-body-seen"), Some("yes"));
    // The body arrived while headers were held: the probe is never needed.
    f.host_mut().advance(Duration::from_secs(1));
    f.on_tick();
    assert_eq!(f.host().resumed, [0, 0]);
    assert_eq!(f.host().tick_period, kit::COUNTER_FLUSH, "no probe tick");
}

/// Sends a request whose body the proxy never delivers while its headers
/// are held, lets the probe release it, then delivers the body.
fn missed_body(f: &mut Filter<Upper, FakeHost>, context: u32, body: &[u8]) {
    request(f, body);
    let resumed = f.host().resumed[0];
    let s = f.open_stream(context);
    assert_eq!(f.on_request_headers(s, false), Action::Pause);
    assert!(
        f.host().tick_period > Duration::ZERO,
        "a probe tick is armed"
    );
    f.host_mut().advance(Duration::from_millis(150));
    f.on_tick();
    assert_eq!(
        f.host().resumed[0],
        resumed + 1,
        "the held request is let go"
    );
    assert_eq!(f.host().effective_context, context);
    assert_eq!(f.host().request_headers.get("content-length"), None);
    // The headers are gone: Envoy refuses to read or change them now.
    f.host_mut().request_headers_sent = true;
    assert_eq!(f.on_request_body(s, body.len(), true), Action::Continue);
    let mut want = body.to_ascii_uppercase();
    want.push(b'!');
    assert_eq!(f.host().request_body, want);
    assert_eq!(f.host().request_headers.get("x-body-seen"), None);
}

#[test]
fn ignored_header_stop_iteration_is_detected_and_requests_go_on_without_content_length() {
    let mut f = filter("");
    // Three requests in a row miss their body: stop-all, not a slow client.
    for context in 2..5 {
        assert!(!f.host().logged("allow_on_headers_stop_iteration: true"));
        missed_body(&mut f, context, b"abc");
    }
    assert!(f.host().logged("allow_on_headers_stop_iteration: true"));
    assert_eq!(f.host().tick_period, kit::COUNTER_FLUSH, "no probe tick");

    // Later requests do not wait for the probe.
    request(&mut f, b"xyz");
    let next = f.open_stream(9);
    assert_eq!(f.on_request_headers(next, false), Action::Continue);
    assert_eq!(f.host().request_headers.get("content-length"), None);
    assert_eq!(f.on_request_body(next, 2, false), Action::Pause);
    assert_eq!(f.on_request_body(next, 3, true), Action::Continue);
    assert_eq!(f.host().request_body, b"XYZ!");
}

#[test]
fn one_slow_upload_does_not_turn_holding_off() {
    let mut f = filter("");
    missed_body(&mut f, 2, b"slow");
    // The next body arrives while its headers are held: the proxy honours
    // the stop, and the kit keeps holding headers for good.
    request(&mut f, b"fast");
    let s = f.open_stream(3);
    assert_eq!(f.on_request_headers(s, false), Action::Pause);
    assert_eq!(f.on_request_body(s, 4, true), Action::Continue);
    assert_eq!(
        f.host().request_headers.get_str("content-length"),
        Some("5")
    );
    for context in 4..8 {
        request(&mut f, b"more");
        let s = f.open_stream(context);
        assert_eq!(f.on_request_headers(s, false), Action::Pause, "still held");
    }
    assert!(!f.host().logged("allow_on_headers_stop_iteration: true"));
}

#[test]
fn oversized_request_bodies_get_413_and_responses_pass_through() {
    let mut f = filter(r#", "max_body_bytes": 8"#);
    request(&mut f, b"0123456789");
    let s = f.open_stream(2);
    assert_eq!(f.on_request_headers(s, false), Action::Pause);
    assert_eq!(f.on_request_body(s, 10, false), Action::Pause);
    assert_eq!(f.host().response.as_ref().unwrap().status, 413);
    assert_eq!(
        f.host().counter("upper.body_over_limit"),
        0,
        "counts are published on the tick"
    );
    f.on_tick();
    assert_eq!(f.host().counter("upper.body_over_limit"), 1);

    request(&mut f, b"");
    let s = f.open_stream(3);
    assert_eq!(f.on_request_headers(s, true), Action::Continue);
    assert_eq!(f.on_response_headers(s, false), Action::Pause);
    assert_eq!(
        f.on_response_body(s, 9, false),
        Action::Continue,
        "over the limit: passed through"
    );
    assert_eq!(f.on_response_body(s, 4, true), Action::Continue);
    f.flush_counters();
    assert_eq!(f.host().counter("upper.body_over_limit"), 2);
}

#[test]
fn a_body_that_completes_while_headers_wait_on_redis_is_handled_after_the_reply() {
    let mut f = filter(r#", "wait_in_headers": true"#);
    request(&mut f, b"late");
    let s = f.open_stream(2);
    assert_eq!(f.on_request_headers(s, false), Action::Pause);
    let token = f.host().last_call.as_ref().unwrap().token;
    assert_eq!(
        f.on_request_body(s, 4, true),
        Action::Pause,
        "headers handler not done yet"
    );
    assert_eq!(
        f.host().request_body,
        b"late",
        "not handled before the reply"
    );
    f.host_mut().answer_http(200, b"$-1\r\n");
    f.on_http_call_response(token, 1, 5, false);
    assert_eq!(f.host().request_body, b"LATE!");
    assert_eq!(
        f.host().request_headers.get_str("content-length"),
        Some("5")
    );
    assert_eq!(f.host().resumed[0], 1, "resumed exactly once");
}

/// Counts stream chunks, pausing on the last one until Redis answers.
struct Chunks;

#[derive(Default)]
struct Got {
    chunks: Vec<Vec<u8>>,
}

impl Plugin for Chunks {
    const NAME: &'static str = "chunks";
    const RESPONSE_BODY: BodyMode = BodyMode::Stream;
    const REDIS: RedisUse = RedisUse::Required;
    type Config<'cfg> = ();
    type State = Got;

    fn configure<'cfg>(_: &Fields<'_, 'cfg>, _: &mut Setup<'_>) -> Result<(), ConfigError> {
        Ok(())
    }

    fn on_response_body<H: Host>(
        mut cx: Cx<'_, '_, Self, H>,
        body: &[u8],
        end_of_stream: bool,
    ) -> Flow {
        cx.state.chunks.push(body.to_vec());
        if end_of_stream {
            cx.io.redis().and_then(|r| r.incrby(b"used", 3)).unwrap();
            return Flow::Pause;
        }
        Flow::Continue
    }
}

#[test]
fn stream_mode_gets_each_chunk_once_and_can_hold_the_last() {
    let mut f: Filter<Chunks, FakeHost> = Filter::new(FakeHost::new());
    f.configure(br#"{"redis": {"webdis_cluster": "w"}}"#.to_vec())
        .unwrap();
    let s = f.open_stream(2);
    assert_eq!(f.on_request_headers(s, true), Action::Continue);
    assert_eq!(
        f.on_response_headers(s, false),
        Action::Continue,
        "streaming never holds headers"
    );
    f.host_mut().response_body = b"ab".to_vec();
    assert_eq!(f.on_response_body(s, 2, false), Action::Continue);
    f.host_mut().response_body = b"cde".to_vec();
    assert_eq!(
        f.on_response_body(s, 3, true),
        Action::Pause,
        "held until the charge is written"
    );
    let token = f.host().last_call.as_ref().unwrap().token;
    f.host_mut().answer_http(200, b":3\r\n");
    f.on_http_call_response(token, 1, 4, false);
    assert_eq!(f.host().resumed, [0, 1]);
}
