//! Several streams open at once, their calls answered in an order the test
//! chooses.
//!
//! A proxy worker runs many streams: while one waits on its call, others
//! start and send theirs, and the answers come back in the order their
//! upstreams reply, not the order they were sent (HTTP calls to different
//! hosts, Redis calls on different connections). [`Host::open`] starts a
//! stream and feeds the module its whole request without handing over any
//! answer; [`Host::pending_calls`] lists the calls in flight;
//! [`Host::deliver`] hands over the one the test names; [`Host::finish`]
//! drives one stream to its end as [`Host::run`] does, delivering what is
//! still pending in the order it was sent.
//!
//! One connection's Redis replies come back in the order of their calls;
//! `deliver` may still hand them over in another, as two connections (or a
//! reconnect) would. A module must pair each answer with its call by token
//! alone, which is what this checks.
//!
//! # Examples
//!
//! ```no_run
//! use testhost::{Host, Request, Setup};
//!
//! let wasm = std::fs::read("target/wasm/higress/limiter.wasm").unwrap();
//! let setup = Setup::default().redis("outbound|6379||redis.dns", "127.0.0.1:6379".parse().unwrap());
//! let mut host = Host::load(&wasm, br#"{"rule_name":"r"}"#, setup).unwrap();
//! let a = host.open(&Request::get("/").header("x-user", "a"));
//! let b = host.open(&Request::get("/").header("x-user", "b"));
//! for call in host.pending_calls().into_iter().rev() {
//!     host.deliver(call.token()).unwrap();
//! }
//! let (b, a) = (host.finish(b), host.finish(a));
//! ```

use crate::exchange::{Begun, Exchange, Request};
use crate::host::{Error, Host};

/// A stream [`Host::open`] started and [`Host::finish`] ends.
pub struct OpenStream {
    begun: Begun,
    request: Request,
}

impl OpenStream {
    /// The stream's context id.
    pub fn id(&self) -> u32 {
        self.begun.id
    }
}

impl std::fmt::Debug for OpenStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenStream")
            .field("id", &self.begun.id)
            .finish_non_exhaustive()
    }
}

/// A call in flight, waiting for [`Host::deliver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingCall {
    /// A `proxy_http_call` to `upstream`.
    Http { token: u32, upstream: String },
    /// A `proxy_redis_call` to `cluster`; its reply (or failure) has been
    /// read and waits to be handed over.
    Redis { token: u32, cluster: String },
}

impl PendingCall {
    /// The token the module got for the call.
    pub fn token(&self) -> u32 {
        match self {
            PendingCall::Http { token, .. } | PendingCall::Redis { token, .. } => *token,
        }
    }
}

impl Host {
    /// Starts a stream and feeds the module its request (headers, body
    /// chunks, trailers) as they arrive, handing over no call answer: the
    /// stream stays where its module leaves it, with its calls pending.
    pub fn open(&mut self, request: &Request) -> OpenStream {
        OpenStream {
            begun: self.begin(request, false),
            request: request.clone(),
        }
    }

    /// Applies to an open stream what happened since it was last driven (a
    /// resume from a tick or from another stream's answer, a local
    /// response) and feeds it what it then takes, handing over no answer.
    pub fn step(&mut self, stream: &mut OpenStream) {
        self.step_request(&mut stream.begun);
    }

    /// The calls in flight, HTTP calls then Redis calls, each in the order
    /// sent. Redis replies are read off their connections here (each waits
    /// up to its operation timeout), so the list is what the upstreams
    /// have answered.
    pub fn pending_calls(&mut self) -> Vec<PendingCall> {
        let state = self.store.data_mut();
        let mut pending: Vec<PendingCall> = state
            .http_calls
            .iter()
            .filter(|c| !c.delivered)
            .map(|c| PendingCall::Http {
                token: c.token,
                upstream: c.upstream.clone(),
            })
            .collect();
        let tokens: Vec<u32> = state.redis.collect().iter().map(|d| d.token()).collect();
        pending.extend(tokens.into_iter().map(|token| {
            PendingCall::Redis {
                token,
                cluster: state
                    .redis
                    .cluster_of(token)
                    .unwrap_or_default()
                    .to_string(),
            }
        }));
        pending
    }

    /// Hands over the answer to call `token` now, out of turn if need be,
    /// on the root context as the proxy does; false when no such call is
    /// pending. A Redis call's reply must have been read by
    /// [`Host::pending_calls`] first.
    ///
    /// # Errors
    /// A trap in the callback (the module is then dead, as in Envoy).
    pub fn deliver(&mut self, token: u32) -> Result<bool, Error> {
        let state = self.store.data_mut();
        if let Some(at) = state
            .http_calls
            .iter()
            .position(|c| !c.delivered && c.token == token)
        {
            self.deliver_http(at)
                .inspect_err(|e| self.broken = Some(e.0.clone()))?;
            return Ok(true);
        }
        let Some(delivery) = state.redis.take(token) else {
            return Ok(false);
        };
        self.deliver_redis(delivery)
            .inspect_err(|e| self.broken = Some(e.0.clone()))?;
        Ok(true)
    }

    /// Drives an open stream to its end (what is still pending is
    /// delivered in the order sent) and tells what it did. With other
    /// streams open, the exchange's call records and logs are those
    /// finished since the last exchange ended, whichever stream made them.
    pub fn finish(&mut self, stream: OpenStream) -> Exchange {
        self.complete(stream.begun, &stream.request)
    }
}
