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
//! [`Filter::settle`] answers them from a [`FakeRedis`] instead, an
//! in-memory Redis, until the request is decided.
//!
//! A request that went upstream gets its answer with
//! [`Filter::send_response_headers`] and [`Filter::send_response_chunk`]
//! (or [`Filter::send_response`] for a whole one), buffered as Envoy
//! buffers it: a chunk the plugin holds back stays in the body buffer and
//! the next chunk is appended to it; what it lets through, or releases by
//! resuming, lands in [`FakeHost::delivered`].

use crate::engine::{Action, Filter};
use crate::fake::{FakeHost, LocalResponse, SentCall};
use crate::fake_redis::FakeRedis;
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
    /// kit's safety net should make impossible. (A response chunk held
    /// while the plugin waits for more of the body is this too, until the
    /// last chunk.)
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

/// Moves the response bytes the host buffers to what its client got.
fn deliver_held(host: &mut FakeHost) {
    let FakeHost {
        delivered,
        response_body,
        ..
    } = host;
    delivered.append(response_body);
}

/// The host's counts before a step, to tell what the step did.
struct Before {
    responses: u64,
    resumed: [u64; 2],
    calls: u64,
}

impl<P: Plugin> Filter<P, FakeHost> {
    fn before(&self) -> Before {
        let host = self.host();
        Before {
            responses: host.responses_sent,
            resumed: host.resumed,
            calls: host.calls_sent,
        }
    }

    fn outcome(&mut self, before: &Before, action: Option<Action>) -> Outcome {
        let host = self.host_mut();
        if host.responses_sent > before.responses {
            if let Some(response) = &host.response {
                return Outcome::Responded(response.clone());
            }
        }
        if host.resumed[1] > before.resumed[1] {
            // A resumed response lets what it held back go to the client.
            deliver_held(host);
            return Outcome::Continued;
        }
        if host.resumed[0] > before.resumed[0] || action == Some(Action::Continue) {
            return Outcome::Continued;
        }
        if host.calls_sent > before.calls {
            if let Some(call) = &host.last_call {
                return Outcome::Waiting(call.clone());
            }
        }
        Outcome::Hanging
    }

    /// The outcome of a step of the response's body (a chunk or the
    /// trailers) the filter answered with `action`: when it goes on, what
    /// the plugin held back goes on with it, as Envoy sends buffered data
    /// on.
    fn body_step_outcome(&mut self, before: &Before, action: Action) -> Outcome {
        if action == Action::Continue {
            deliver_held(self.host_mut());
        }
        self.outcome(before, Some(action))
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
        host.last_answered = call.token;
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
        self.host_mut().last_answered = call.token;
        self.host_mut().answer_http(status, body);
        self.on_http_call_response(call.token, 1, body.len(), true);
        self.outcome(&before, None)
    }

    /// Fails a call the way the proxy reports a timeout, a reset or an
    /// unreachable cluster: an HTTP call answered with no headers, a
    /// native Redis call with the network-error status.
    pub fn fail_call(&mut self, call: &SentCall) -> Outcome {
        let before = self.before();
        self.host_mut().last_answered = call.token;
        if call.headers.is_empty() {
            self.on_redis_call_response(call.token, 1, 0);
        } else {
            self.on_http_call_response(call.token, 0, 0, true);
        }
        self.outcome(&before, None)
    }

    /// Answers the calls of a request from `redis` until it no longer
    /// waits on one, and tells what its client sees then.
    ///
    /// `outcome` is the step's outcome: a [`Outcome::Waiting`] call is
    /// answered, and so is a call sent in an earlier step that is still
    /// unanswered when the step ended [`Outcome::Hanging`] (a response
    /// held for a charge sent while its earlier chunks went by). A call
    /// fails as a network error would while [`FakeRedis::down`] is set.
    /// Stops after 16 answers, returning the last outcome.
    ///
    /// # Examples
    /// ```
    /// use kit::fake::FakeHost;
    /// use kit::fake_redis::FakeRedis;
    /// use kit::fake_request::Outcome;
    /// use kit::{ConfigError, Cx, Fields, Filter, Flow, Host, Plugin, RedisError, RedisUse, Reply, Setup};
    ///
    /// /// Lets each `x-user` through twice.
    /// struct Twice;
    /// impl Plugin for Twice {
    ///     const NAME: &'static str = "twice";
    ///     const REDIS: RedisUse = RedisUse::Required;
    ///     type Config<'cfg> = ();
    ///     type State = ();
    ///     fn configure<'cfg>(_: &Fields<'_, 'cfg>, _: &mut Setup<'_>) -> Result<(), ConfigError> {
    ///         Ok(())
    ///     }
    ///     fn on_request_headers<H: Host>(mut cx: Cx<'_, '_, Self, H>, _: bool) -> Flow {
    ///         let Some(user) = cx.io.request_header("x-user") else { return Flow::Continue };
    ///         let key: kit::smallvec::SmallVec<[u8; 32]> = user.into();
    ///         match cx.io.redis().and_then(|r| r.incr(&key)) {
    ///             Ok(()) => Flow::Pause,
    ///             Err(_) => Flow::Continue,
    ///         }
    ///     }
    ///     fn on_redis_reply<H: Host>(mut cx: Cx<'_, '_, Self, H>, reply: Result<Reply<'_>, RedisError>) -> Flow {
    ///         match reply.ok().and_then(|r| r.as_i64()) {
    ///             Some(n) if n > 2 => cx.io.respond(429, &[], b"twice is enough"),
    ///             Some(_) => Flow::Continue,
    ///             None => cx.io.respond(503, &[], b""),
    ///         }
    ///     }
    /// }
    ///
    /// let mut filter = Filter::<Twice, FakeHost>::new(FakeHost::new());
    /// filter.configure(br#"{"redis": {"webdis_cluster": "webdis"}}"#.to_vec()).unwrap();
    /// let mut redis = FakeRedis::new();
    /// let mut status = || {
    ///     let (_, waiting) = filter.send_request(&[("x-user", "ann")]);
    ///     match filter.settle(&mut redis, waiting) {
    ///         Outcome::Continued => 200,
    ///         Outcome::Responded(answer) => answer.status,
    ///         other => panic!("{other:?}"),
    ///     }
    /// };
    /// assert_eq!([status(), status(), status()], [200, 200, 429]);
    /// assert_eq!(redis.store.integer(b"ann"), Some(3));
    /// ```
    pub fn settle(&mut self, redis: &mut FakeRedis, outcome: Outcome) -> Outcome {
        let mut outcome = outcome;
        for _ in 0..16 {
            let call = match outcome {
                Outcome::Waiting(call) => call,
                Outcome::Hanging => match &self.host().last_call {
                    Some(call) if call.token != self.host().last_answered => call.clone(),
                    _ => return Outcome::Hanging,
                },
                decided => return decided,
            };
            let now = self.host().now_nanos;
            outcome = match redis.answer(&call, now) {
                Some(reply) => self.answer_redis(&call, &reply),
                None => self.fail_call(&call),
            };
        }
        outcome
    }

    /// Sends the upstream's response headers for `stream` (a request that
    /// went upstream) and tells what its client sees: [`Outcome::Continued`]
    /// when the headers go on to it.
    ///
    /// The host's response headers are replaced by `headers` (include
    /// `:status`); when they end the stream no body follows.
    pub fn send_response_headers(
        &mut self,
        stream: StreamId,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Outcome {
        let host = self.host_mut();
        host.response_headers.clear();
        for (name, value) in headers {
            host.response_headers.add(name, value.as_bytes());
        }
        let before = self.before();
        let action = self.on_response_headers(stream, end_of_stream);
        self.outcome(&before, Some(action))
    }

    /// Sends one chunk of the response body, as Envoy does: appended to
    /// what the plugin held back so far, the callback told the size of the
    /// whole buffer. When the plugin lets the buffer go it moves to
    /// [`FakeHost::delivered`] and the step is [`Outcome::Continued`].
    ///
    /// # Examples
    /// ```
    /// use kit::fake::FakeHost;
    /// use kit::fake_request::Outcome;
    /// use kit::{ConfigError, Cx, Fields, Filter, Flow, Host, Plugin, Setup};
    ///
    /// struct Open;
    /// impl Plugin for Open {
    ///     const NAME: &'static str = "open";
    ///     type Config<'cfg> = ();
    ///     type State = ();
    ///     fn configure<'cfg>(_: &Fields<'_, 'cfg>, _: &mut Setup<'_>) -> Result<(), ConfigError> {
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let mut filter = Filter::<Open, FakeHost>::new(FakeHost::new());
    /// filter.configure(b"{}".to_vec()).unwrap();
    /// let (stream, outcome) = filter.send_request(&[]);
    /// assert_eq!(outcome, Outcome::Continued);
    /// let outcome = filter.send_response(stream, &[(":status", "200")], &[b"hel", b"lo"]);
    /// assert_eq!(outcome, Outcome::Continued);
    /// assert_eq!(filter.host().delivered, b"hello");
    /// ```
    pub fn send_response_chunk(
        &mut self,
        stream: StreamId,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Outcome {
        let host = self.host_mut();
        host.response_body.extend_from_slice(chunk);
        let buffered = host.response_body.len();
        let before = self.before();
        let action = self.on_response_body(stream, buffered, end_of_stream);
        self.body_step_outcome(&before, action)
    }

    /// Sends the response's trailers, after chunks that did not end the
    /// stream, and tells what its client sees: [`Outcome::Continued`] when
    /// the trailers go on to it, and with them what the plugin held back
    /// (moved to [`FakeHost::delivered`]); a pause holds both, as Envoy
    /// holds buffered data and trailers until the filter resumes.
    ///
    /// # Examples
    /// ```
    /// use kit::fake::FakeHost;
    /// use kit::fake_request::Outcome;
    /// use kit::{BodyMode, ConfigError, Cx, Fields, Filter, Flow, Host, Plugin, Setup};
    ///
    /// /// Holds the answer until it ends.
    /// struct Whole;
    /// impl Plugin for Whole {
    ///     const NAME: &'static str = "whole";
    ///     const RESPONSE_BODY: BodyMode = BodyMode::Stream;
    ///     type Config<'cfg> = ();
    ///     type State = ();
    ///     fn configure<'cfg>(_: &Fields<'_, 'cfg>, _: &mut Setup<'_>) -> Result<(), ConfigError> {
    ///         Ok(())
    ///     }
    ///     fn on_response_body<H: Host>(_: Cx<'_, '_, Self, H>, _: &[u8], end: bool) -> Flow {
    ///         if end { Flow::Continue } else { Flow::Pause }
    ///     }
    /// }
    ///
    /// let mut filter = Filter::<Whole, FakeHost>::new(FakeHost::new());
    /// filter.configure(b"{}".to_vec()).unwrap();
    /// let (stream, _) = filter.send_request(&[]);
    /// filter.send_response_headers(stream, &[(":status", "200")], false);
    /// assert_eq!(filter.send_response_chunk(stream, b"all", false), Outcome::Hanging);
    /// assert_eq!(filter.send_response_trailers(stream), Outcome::Continued);
    /// assert_eq!(filter.host().delivered, b"all");
    /// ```
    pub fn send_response_trailers(&mut self, stream: StreamId) -> Outcome {
        let before = self.before();
        let action = self.on_response_trailers(stream);
        self.body_step_outcome(&before, action)
    }

    /// Sends a whole response: headers (ending the stream when there is no
    /// chunk), then each chunk, the last one ending the stream. Stops at
    /// the first step whose outcome is not [`Outcome::Continued`] when that
    /// step is the headers or the last chunk and returns it; a held chunk
    /// before the last ([`Outcome::Hanging`] or [`Outcome::Waiting`]) is
    /// followed by the next one, as the upstream keeps sending.
    pub fn send_response(
        &mut self,
        stream: StreamId,
        headers: &[(&str, &str)],
        chunks: &[&[u8]],
    ) -> Outcome {
        let outcome = self.send_response_headers(stream, headers, chunks.is_empty());
        if outcome != Outcome::Continued {
            return outcome;
        }
        let mut outcome = Outcome::Continued;
        for (i, chunk) in chunks.iter().enumerate() {
            outcome = self.send_response_chunk(stream, chunk, i + 1 == chunks.len());
            if let Outcome::Responded(_) = outcome {
                return outcome;
            }
        }
        outcome
    }
}
