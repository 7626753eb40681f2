//! Outgoing HTTP calls over the `FakeHost`: the request sent, the answer
//! delivered to the request's own state, failures typed, and the safety
//! net for a handler that pauses with nothing in flight.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use kit::fake::FakeHost;
use kit::{
    Action, ConfigError, Cx, Fields, Filter, Flow, Host, HostError, HttpError, HttpReply,
    HttpRequest, Plugin, Setup,
};
use std::time::Duration;

/// Asks an auth service about each request, answering 403 when it says no.
struct Auth;

#[derive(Default)]
struct Asked {
    user: Vec<u8>,
}

impl Plugin for Auth {
    const NAME: &'static str = "auth";
    type Config<'cfg> = &'cfg str;
    type State = Asked;

    fn configure<'cfg>(
        fields: &Fields<'_, 'cfg>,
        _: &mut Setup<'_>,
    ) -> Result<&'cfg str, ConfigError> {
        fields.required_str("cluster")
    }

    fn on_request_headers<H: Host>(mut cx: Cx<'_, '_, Self, H>, _: bool) -> Flow {
        if cx.io.request_header("x-pause-without-call").is_some() {
            return Flow::Pause;
        }
        let user = cx.io.request_header("x-user").unwrap_or_default().to_vec();
        cx.state.user = user;
        let request = HttpRequest {
            cluster: cx.config,
            method: "GET",
            path: "/check",
            authority: "auth",
            headers: &[("x-asking", "yes")],
            body: None,
            timeout: Duration::from_millis(300),
        };
        match cx.io.http_call(&request) {
            Ok(()) => Flow::Pause,
            Err(HttpError::Refused(_)) => cx.io.respond(500, &[], b"auth unreachable"),
            Err(HttpError::Failed) => Flow::Continue,
        }
    }

    fn on_http_reply<H: Host>(
        mut cx: Cx<'_, '_, Self, H>,
        reply: Result<HttpReply<'_>, HttpError>,
    ) -> Flow {
        match reply {
            Ok(HttpReply { status: 200, body }) if body == cx.state.user.as_slice() => {
                Flow::Continue
            }
            Ok(reply) => {
                let status = reply.status;
                assert_eq!(
                    cx.io.http_reply_header(":status"),
                    Some(status.to_string().as_bytes())
                );
                cx.io.respond(403, &[], b"no")
            }
            Err(_) => cx.io.respond(503, &[], b"auth failed"),
        }
    }
}

fn filter() -> Filter<Auth, FakeHost> {
    let mut f = Filter::new(FakeHost::new());
    f.configure(br#"{"cluster": "auth-service"}"#.to_vec())
        .unwrap();
    f
}

fn start(f: &mut Filter<Auth, FakeHost>, user: &str) -> (kit::StreamId, u32) {
    f.host_mut().next_request();
    f.host_mut().request_headers.add("x-user", user.as_bytes());
    let s = f.open_stream(5);
    assert_eq!(f.on_request_headers(s, true), Action::Pause);
    let call = f.host().last_call.clone().unwrap();
    assert_eq!(call.cluster, "auth-service");
    assert_eq!(call.timeout, Duration::from_millis(300));
    assert_eq!(call.headers.get_str(":path"), Some("/check"));
    assert_eq!(call.headers.get_str("x-asking"), Some("yes"));
    (s, call.token)
}

#[test]
fn the_answer_reaches_the_request_that_asked() {
    let mut f = filter();
    let (_, token) = start(&mut f, "ann");
    f.host_mut().answer_http(200, b"ann");
    f.on_http_call_response(token, 1, 3, false);
    assert_eq!(f.host().resumed[0], 1);
    assert_eq!(f.host().responses_sent, 0);

    let (_, token) = start(&mut f, "bob");
    f.host_mut().answer_http(401, b"");
    f.on_http_call_response(token, 1, 0, false);
    assert_eq!(f.host().response.as_ref().unwrap().status, 403);
}

#[test]
fn failures_and_refusals_are_typed() {
    let mut f = filter();
    let (_, token) = start(&mut f, "ann");
    f.on_http_call_response(token, 0, 0, false);
    assert_eq!(f.host().response.as_ref().unwrap().status, 503);

    f.host_mut().next_request();
    f.host_mut().refuse_calls = Some(HostError::BadArgument);
    let s = f.open_stream(6);
    assert_eq!(f.on_request_headers(s, true), Action::Pause);
    assert_eq!(f.host().response.as_ref().unwrap().status, 500);
}

#[test]
fn a_pause_with_nothing_in_flight_does_not_hang() {
    let mut f = filter();
    f.host_mut()
        .request_headers
        .add("x-pause-without-call", b"1");
    let s = f.open_stream(7);
    assert_eq!(f.on_request_headers(s, true), Action::Continue);
    assert!(f.host().logged("paused with no call in flight"));
}
