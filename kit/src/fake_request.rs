//! One request at a time through a [`Filter`] over the [`FakeHost`]: what
//! its client would see after each step, and the answers to its calls.
//!
//! The engine's own callbacks ([`Filter::on_request_headers`] and the
//! rest) say only whether the proxy should hold the stream; a test wants to
//! know whether the request went upstream, was answered (and how), waits
//! for a call, or hangs. These helpers make the callbacks a proxy would
//! make and answer that question with an [`Outcome`].
//!
//! A Redis-backed plugin's request waits for its call, which the test
//! answers with the RESP bytes Redis would send; the helpers deliver them
//! as the plugin's transport is answered (a webdis HTTP answer, or a
//! native Higress reply). `kit/tests/fake_request.rs` shows both.

use crate::engine::{Action, Filter};
use crate::fake::{FakeHost, LocalResponse, SentCall};
use crate::plugin::Plugin;
use crate::StreamId;

/// What the client of a request sees after a step.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The request went on toward the upstream.
    Continued,
    /// The plugin answered it locally.
    Responded(LocalResponse),
    /// It is held while this call is in flight; answer it with
    /// [`Filter::answer_redis`], [`Filter::answer_http`] or
    /// [`Filter::fail_call`].
    Waiting(SentCall),
    /// It is held with no call in flight and no answer: a hang, which the
    /// kit's safety net should make impossible.
    Hanging,
}

impl PartialEq for Outcome {
    /// Outcomes compare by kind, status and body, and a call by its token.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Outcome::Continued, Outcome::Continued) | (Outcome::Hanging, Outcome::Hanging) => true,
            (Outcome::Responded(a), Outcome::Responded(b)) => {
                a.status == b.status && a.body == b.body
            }
            (Outcome::Waiting(a), Outcome::Waiting(b)) => a.token == b.token,
            _ => false,
        }
    }
}

/// The host's counts before a step, to tell what the step did.
struct Before {
    responses: u64,
    resumed: u64,
    calls: u64,
}

impl<P: Plugin> Filter<P, FakeHost> {
    fn before(&self) -> Before {
        let host = self.host();
        Before {
            responses: host.responses_sent,
            resumed: host.resumed[0],
            calls: host.calls_sent,
        }
    }

    fn outcome(&self, before: &Before, action: Option<Action>) -> Outcome {
        let host = self.host();
        if host.responses_sent > before.responses {
            if let Some(response) = &host.response {
                return Outcome::Responded(response.clone());
            }
        }
        if host.resumed[0] > before.resumed || action == Some(Action::Continue) {
            return Outcome::Continued;
        }
        if host.calls_sent > before.calls {
            if let Some(call) = &host.last_call {
                return Outcome::Waiting(call.clone());
            }
        }
        Outcome::Hanging
    }

    /// Sends a request of headers only (they end the stream) and tells
    /// what its client sees.
    ///
    /// The host's per-request parts are cleared first
    /// ([`FakeHost::next_request`]); properties, clock and Redis setup stay.
    /// Each request gets a context id of its own.
    ///
    /// # Examples
    /// ```
    /// use kit::fake::FakeHost;
    /// use kit::fake_request::Outcome;
    /// use kit::{ConfigError, Cx, Fields, Filter, Flow, Host, Plugin, Setup};
    ///
    /// struct Gate;
    /// impl Plugin for Gate {
    ///     const NAME: &'static str = "gate";
    ///     type Config<'cfg> = &'cfg str;
    ///     type State = ();
    ///     fn configure<'cfg>(f: &Fields<'_, 'cfg>, _: &mut Setup<'_>) -> Result<&'cfg str, ConfigError> {
    ///         f.required_str("header")
    ///     }
    ///     fn on_request_headers<H: Host>(mut cx: Cx<'_, '_, Self, H>, _: bool) -> Flow {
    ///         match cx.io.request_header(cx.config) {
    ///             Some(_) => Flow::Continue,
    ///             None => cx.io.respond(401, &[], b"who are you?"),
    ///         }
    ///     }
    /// }
    ///
    /// let mut filter = Filter::<Gate, FakeHost>::new(FakeHost::new());
    /// filter.configure(br#"{"header": "x-api-key"}"#.to_vec()).unwrap();
    /// let (_, outcome) = filter.send_request(&[("x-api-key", "k1")]);
    /// assert_eq!(outcome, Outcome::Continued);
    /// match filter.send_request(&[]).1 {
    ///     Outcome::Responded(answer) => assert_eq!((answer.status, &answer.body[..]), (401, &b"who are you?"[..])),
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    pub fn send_request(&mut self, headers: &[(&str, &str)]) -> (StreamId, Outcome) {
        self.send(headers, None)
    }

    /// Sends a request with a body, delivered whole in one chunk after
    /// headers that do not end the stream, as a proxy would for a small
    /// upload.
    pub fn send_request_with_body(
        &mut self,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (StreamId, Outcome) {
        self.send(headers, Some(body))
    }

    fn send(&mut self, headers: &[(&str, &str)], body: Option<&[u8]>) -> (StreamId, Outcome) {
        let host = self.host_mut();
        host.next_request();
        for (name, value) in headers {
            host.request_headers.add(name, value.as_bytes());
        }
        host.last_context = host.last_context.wrapping_add(1).max(2);
        let context = host.last_context;
        let before = self.before();
        let stream = self.open_stream(context);
        let mut action = self.on_request_headers(stream, body.is_none());
        if let Some(body) = body {
            if self.host().responses_sent == before.responses {
                let host = self.host_mut();
                host.request_body.clear();
                host.request_body.extend_from_slice(body);
                action = self.on_request_body(stream, body.len(), true);
            }
        }
        (stream, self.outcome(&before, Some(action)))
    }

    /// Answers a Redis call with the RESP bytes of a reply (`b":1\r\n"`,
    /// `b"$-1\r\n"`, `b"-NOSCRIPT No matching script\r\n"`), delivered as
    /// the plugin's transport would be answered: an HTTP 200 from webdis,
    /// or a native reply on the root context.
    pub fn answer_redis(&mut self, call: &SentCall, reply: &[u8]) -> Outcome {
        let before = self.before();
        let host = self.host_mut();
        if call.headers.is_empty() {
            host.call_response_headers.clear();
            host.call_response_body.clear();
            host.call_response_body.extend_from_slice(reply);
            self.on_redis_call_response(call.token, 0, reply.len());
        } else {
            host.answer_http(200, reply);
            self.on_http_call_response(call.token, 1, reply.len(), true);
        }
        self.outcome(&before, None)
    }

    /// Answers an HTTP call with a status and a body.
    pub fn answer_http(&mut self, call: &SentCall, status: u16, body: &[u8]) -> Outcome {
        let before = self.before();
        self.host_mut().answer_http(status, body);
        self.on_http_call_response(call.token, 1, body.len(), true);
        self.outcome(&before, None)
    }

    /// Fails a call the way the proxy reports a timeout, a reset or an
    /// unreachable cluster: an HTTP call answered with no headers, a
    /// native Redis call with the network-error status.
    pub fn fail_call(&mut self, call: &SentCall) -> Outcome {
        let before = self.before();
        if call.headers.is_empty() {
            self.on_redis_call_response(call.token, 1, 0);
        } else {
            self.on_http_call_response(call.token, 0, 0, true);
        }
        self.outcome(&before, None)
    }
}
