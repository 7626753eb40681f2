//! The module-level dispatcher over the `FakeHost`: callbacks addressed by
//! context id reach the right root and request, answers delivered on the
//! root find their request, unknown and finished contexts are let go, and
//! a request through the dispatcher costs no allocation.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use kit::dispatcher::Dispatcher;
use kit::fake::{allocations_during, FakeHost};
use kit::{ConfigError, Cx, Fields, Flow, Host, HttpError, HttpReply, HttpRequest, Plugin, Setup};
use std::time::Duration;

#[global_allocator]
static ALLOCATOR: kit::fake::CountingAllocator = kit::fake::CountingAllocator;

/// Answers each request with its configured status, or asks `x-ask`'s
/// cluster first and answers with the status it got.
struct Answer;

impl Plugin for Answer {
    const NAME: &'static str = "answer";
    const COUNTERS: &'static [&'static str] = &["answered"];
    type Config<'cfg> = u16;
    type State = ();

    fn configure<'cfg>(fields: &Fields<'_, 'cfg>, _: &mut Setup<'_>) -> Result<u16, ConfigError> {
        let status = fields.u64_or("status", 200)?;
        u16::try_from(status).map_err(|_| fields.error("status", "too large"))
    }

    fn on_request_headers<H: Host>(mut cx: Cx<'_, '_, Self, H>, _: bool) -> Flow {
        if cx.io.request_header("x-ask").is_some() {
            let request = HttpRequest {
                cluster: "asked",
                method: "GET",
                path: "/",
                authority: "asked",
                headers: &[],
                body: None,
                timeout: Duration::from_millis(100),
            };
            return match cx.io.http_call(&request) {
                Ok(()) => Flow::Pause,
                Err(_) => Flow::Continue,
            };
        }
        cx.io.count(0);
        let status = *cx.config;
        cx.io.respond(status, &[], b"")
    }

    fn on_http_reply<H: Host>(
        mut cx: Cx<'_, '_, Self, H>,
        reply: Result<HttpReply<'_>, HttpError>,
    ) -> Flow {
        let status = reply.map_or(502, |r| r.status);
        cx.io.respond(status, &[], b"")
    }
}

const CONTINUE: u32 = 0;
const STOP_ITERATION: u32 = 1;

/// Two roots (ids 1 and 2) answering 201 and 202.
fn module() -> Dispatcher<Answer, FakeHost> {
    let mut d = Dispatcher::new();
    for (root, status) in [(1, 201), (2, 202)] {
        d.on_context_create(root, 0, FakeHost::new);
        let config = format!(r#"{{"status": {status}}}"#).into_bytes();
        assert!(d.on_configure(root, config));
    }
    d
}

fn last_status(d: &mut Dispatcher<Answer, FakeHost>, root: u32) -> Option<u16> {
    d.root(root)
        .unwrap()
        .host()
        .response
        .as_ref()
        .map(|r| r.status)
}

#[test]
fn each_request_reaches_its_own_root() {
    let mut d = module();
    d.on_context_create(10, 1, FakeHost::new);
    d.on_context_create(11, 2, FakeHost::new);
    assert_eq!(d.on_request_headers(10, true), STOP_ITERATION);
    assert_eq!(last_status(&mut d, 1), Some(201));
    assert_eq!(d.on_request_headers(11, true), STOP_ITERATION);
    assert_eq!(last_status(&mut d, 2), Some(202));
    assert_eq!(d.root(1).unwrap().host().responses_sent, 1);
    assert_eq!(d.root(2).unwrap().host().responses_sent, 1);
}

#[test]
fn a_refused_configuration_is_reported_to_the_host() {
    let mut d: Dispatcher<Answer, FakeHost> = Dispatcher::new();
    d.on_context_create(1, 0, FakeHost::new);
    assert!(!d.on_configure(1, br#"{"status": "x"}"#.to_vec()));
    assert!(d.root(1).unwrap().host().logged("status"));
    assert!(
        !d.on_configure(9, br#"{"status": 200}"#.to_vec()),
        "no such root"
    );
}

#[test]
fn answers_delivered_on_the_root_reach_the_request_that_asked() {
    let mut d = module();
    d.on_context_create(10, 1, FakeHost::new);
    d.root(1)
        .unwrap()
        .host_mut()
        .request_headers
        .add("x-ask", b"1");
    assert_eq!(d.on_request_headers(10, true), STOP_ITERATION);
    let token = d.root(1).unwrap().host().last_call.clone().unwrap().token;

    d.root(1).unwrap().host_mut().answer_http(418, b"");
    d.on_http_call_response(1, token, 1, 0);
    let host = d.root(1).unwrap().host();
    assert_eq!(
        host.effective_context, 10,
        "the request's context is made effective"
    );
    assert_eq!(host.response.as_ref().map(|r| r.status), Some(418));
}

#[test]
fn answers_delivered_on_the_request_itself_are_served_too() {
    let mut d = module();
    d.on_context_create(10, 2, FakeHost::new);
    d.root(2)
        .unwrap()
        .host_mut()
        .request_headers
        .add("x-ask", b"1");
    assert_eq!(d.on_request_headers(10, true), STOP_ITERATION);
    let token = d.root(2).unwrap().host().last_call.clone().unwrap().token;
    d.root(2).unwrap().host_mut().answer_http(204, b"");
    d.on_http_call_response(10, token, 1, 0);
    let host = d.root(2).unwrap().host();
    assert_eq!(host.effective_context, 0, "already effective: no switch");
    assert_eq!(host.response.as_ref().map(|r| r.status), Some(204));
}

#[test]
fn unknown_and_finished_contexts_are_let_go() {
    let mut d = module();
    assert_eq!(d.on_request_headers(99, true), CONTINUE);
    assert_eq!(d.on_response_headers(99, true), CONTINUE);
    d.on_context_create(12, 7, FakeHost::new); // no such root
    assert_eq!(d.on_request_headers(12, true), CONTINUE);

    d.on_context_create(10, 1, FakeHost::new);
    d.root(1)
        .unwrap()
        .host_mut()
        .request_headers
        .add("x-ask", b"1");
    assert_eq!(d.on_request_headers(10, true), STOP_ITERATION);
    let token = d.root(1).unwrap().host().last_call.clone().unwrap().token;
    d.on_delete(10);
    assert_eq!(d.on_request_headers(10, true), CONTINUE);
    // A late answer for the finished request is dropped.
    d.root(1).unwrap().host_mut().answer_http(200, b"");
    d.on_http_call_response(1, token, 1, 0);
    assert_eq!(d.root(1).unwrap().host().responses_sent, 0);
}

#[test]
fn a_deleted_root_takes_no_more_requests() {
    let mut d = module();
    d.on_context_create(10, 1, FakeHost::new);
    assert_eq!(d.on_request_headers(10, true), STOP_ITERATION);
    d.on_delete(10);
    d.on_delete(1);
    assert!(d.root(1).is_none());
    d.on_context_create(11, 1, FakeHost::new);
    assert_eq!(d.on_request_headers(11, true), CONTINUE);
    // Root 2 is untouched.
    d.on_context_create(12, 2, FakeHost::new);
    assert_eq!(d.on_request_headers(12, true), STOP_ITERATION);
}

#[test]
fn requests_through_the_dispatcher_allocate_nothing_after_warm_up() {
    let mut d = module();
    let mut context = 100u32;
    let mut run = |d: &mut Dispatcher<Answer, FakeHost>, requests: u32| {
        for _ in 0..requests {
            // 32 requests in flight at a time, like a loaded worker.
            for i in 0..32 {
                d.on_context_create(context + i, 1 + i % 2, FakeHost::new);
            }
            for i in 0..32 {
                assert_eq!(d.on_request_headers(context + i, true), STOP_ITERATION);
                assert_eq!(d.on_response_headers(context + i, true), CONTINUE);
            }
            for i in 0..32 {
                d.on_delete(context + i);
            }
            context += 32;
        }
    };
    run(&mut d, 10);
    let allocations = allocations_during(|| run(&mut d, 10_000 / 32));
    assert_eq!(allocations, 0);
    assert!(d.root(1).unwrap().host().responses_sent > 5_000);
}
