//! What a plugin author writes: a [`Plugin`] with a config type, a
//! per-request state type and the phases it handles.
//!
//! This plays the role of Higress wasm-go's
//! `wrapper.SetCtx(name, ParseConfigBy(..), ProcessRequestHeadersBy(..))`,
//! with types where wasm-go has strings: the per-request state is the
//! plugin's own struct instead of a `map[string]interface{}`, and handlers
//! return a [`Flow`] instead of a raw ABI action code.
//!
//! # Examples
//! ```
//! use kit::{ConfigError, Cx, Fields, Flow, Host, Plugin, Setup};
//!
//! /// Answers 403 to requests without an `x-api-key` header.
//! struct RequireKey;
//!
//! struct Config<'cfg> {
//!     message: &'cfg str,
//! }
//!
//! impl Plugin for RequireKey {
//!     const NAME: &'static str = "require-key";
//!     type Config<'cfg> = Config<'cfg>;
//!     type State = ();
//!
//!     fn configure<'cfg>(fields: &Fields<'_, 'cfg>, _: &mut Setup<'_>) -> Result<Config<'cfg>, ConfigError> {
//!         Ok(Config { message: fields.opt_str("message")?.unwrap_or("key required") })
//!     }
//!
//!     fn on_request_headers<H: Host>(mut cx: Cx<'_, '_, Self, H>, _end_of_stream: bool) -> Flow {
//!         if cx.io.request_header("x-api-key").is_some() {
//!             return Flow::Continue;
//!         }
//!         cx.io.respond(403, &[], cx.config.message.as_bytes())
//!     }
//! }
//! ```

use crate::config::{ConfigError, Fields};
use crate::ending::StreamEnd;
use crate::host::Host;
use crate::http::{HttpError, HttpReply};
use crate::increments::{Count, CountError};
use crate::io::{Io, RootIo};
use crate::redis::{RedisError, Reply};

/// [`Flow`] lives beside [`Io`], which returns one from [`Io::respond`];
/// plugins name it here.
pub use crate::flow::{Flow, Responded};

/// How a plugin wants the body of one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyMode {
    /// The plugin never sees the body and the kit never waits for it.
    Ignore,
    /// One call with the whole body once it has arrived, while the headers
    /// can still be changed (see the crate docs on `HeaderStopIteration`).
    /// Bodies over the configured `max_body_bytes` are refused with 413
    /// (requests) or passed through unseen (responses).
    Buffer,
    /// One call per chunk as it passes, with that chunk only. A body that
    /// ends with trailers (the proxy delivers its last chunk without the
    /// end of the stream) gets one more call at the trailers, with no
    /// bytes and `end_of_stream` true.
    Stream,
}

/// Whether plugin `P` reads a body in either direction; decides which
/// callbacks [`export_plugin!`](crate::export_plugin) exports.
#[doc(hidden)]
pub const fn reads_bodies<P: Plugin>() -> bool {
    !matches!(P::REQUEST_BODY, BodyMode::Ignore) || !matches!(P::RESPONSE_BODY, BodyMode::Ignore)
}

/// Whether a plugin needs the kit's Redis client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisUse {
    /// The plugin never calls Redis; a `redis` key is ignored.
    None,
    /// A `redis` object is required in the configuration.
    Required,
    /// As `Required`, and the plugin counts with
    /// [`Io::increment`]: the kit allocates the tables that let concurrent
    /// increments of a key share calls (see [`increments`](crate::increments)).
    /// With `Required`, those paths are left out of the module and every
    /// increment is sent alone, which is correct, only not shared.
    Counting,
}

/// The context of one phase of one request.
///
/// Fields are public so that a handler can hold the configuration, mutate
/// its state and call the host at the same time.
pub struct Cx<'a, 'cfg, P: Plugin, H: Host> {
    /// The configuration that applies to this request (global, or the first
    /// matching `_rules_` entry).
    pub config: &'a P::Config<'cfg>,
    /// The plugin's state for this request.
    pub state: &'a mut P::State,
    /// Calls into the proxy for this request.
    pub io: Io<'a, H>,
}

impl<P: Plugin, H: Host> core::fmt::Debug for Cx<'_, '_, P, H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Cx")
            .field("plugin", &P::NAME)
            .finish_non_exhaustive()
    }
}

/// What `configure` may use besides the JSON.
#[derive(Debug)]
pub struct Setup<'a> {
    pub(crate) now_nanos: u64,
    pub(crate) _marker: core::marker::PhantomData<&'a ()>,
}

impl Setup<'_> {
    /// Wall-clock time of configuration, in nanoseconds since the epoch;
    /// useful as a seed.
    pub fn now_nanos(&self) -> u64 {
        self.now_nanos
    }
}

/// A proxy-wasm HTTP filter written against the kit.
///
/// Handlers are generic over the [`Host`] so the same code runs in the proxy
/// and, natively, under [`FakeHost`](crate::fake::FakeHost). They are also
/// generic over the configuration's lifetime `'cfg`: configuration borrows
/// the bytes the kit keeps, and cannot be smuggled into `State`.
pub trait Plugin: Sized + 'static {
    /// Name used in log lines and as the prefix of counter names.
    const NAME: &'static str;

    /// Counters defined once at configuration, named `<NAME>.<counter>`;
    /// handlers add to them by index with [`Io::count`]. The sums reach the
    /// proxy on the kit's tick, every [`COUNTER_FLUSH`](crate::COUNTER_FLUSH),
    /// and when the plugin stops: counting costs a request no host call.
    const COUNTERS: &'static [&'static str] = &[];

    /// Whether the kit should build a Redis client from the `redis` key.
    const REDIS: RedisUse = RedisUse::None;

    /// How the plugin wants request bodies.
    const REQUEST_BODY: BodyMode = BodyMode::Ignore;

    /// How the plugin wants response bodies.
    const RESPONSE_BODY: BodyMode = BodyMode::Ignore;

    /// Whether the plugin may change the length of a buffered body with
    /// [`Io::rewrite_body`]. When the proxy does not hold headers for the
    /// body, the kit then drops `content-length` before the headers leave.
    const REWRITES_BODY: bool = false;

    /// Whether the kit calls [`Plugin::on_stream_end`] when a request
    /// ends. It rides on `proxy_on_delete`, which every module exports, so
    /// it adds no VM entry; false skips even the slot lookup.
    const STREAM_END: bool = false;

    /// The compiled configuration, borrowing the configuration bytes.
    type Config<'cfg>;

    /// Per-request state. The kit keeps a pool of these and resets them with
    /// `Default` between requests, so a state that owns no heap memory costs
    /// no allocation.
    type State: Default + 'static;

    /// Compiles the configuration (the global one, or one `_rules_` entry
    /// layered over the global one).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field at fault; the kit logs it on one
    /// line and the plugin refuses to start.
    fn configure<'cfg>(
        fields: &Fields<'_, 'cfg>,
        setup: &mut Setup<'_>,
    ) -> Result<Self::Config<'cfg>, ConfigError>;

    /// The request headers have arrived.
    fn on_request_headers<H: Host>(cx: Cx<'_, '_, Self, H>, end_of_stream: bool) -> Flow {
        let _ = (cx, end_of_stream);
        Flow::Continue
    }

    /// The response headers have arrived.
    fn on_response_headers<H: Host>(cx: Cx<'_, '_, Self, H>, end_of_stream: bool) -> Flow {
        let _ = (cx, end_of_stream);
        Flow::Continue
    }

    /// The request body: with [`BodyMode::Buffer`] once, whole, with
    /// `end_of_stream` true (also for a request without a body, right after
    /// its headers); with [`BodyMode::Stream`] once per chunk, and once
    /// more, with no bytes, at trailers.
    fn on_request_body<H: Host>(cx: Cx<'_, '_, Self, H>, body: &[u8], end_of_stream: bool) -> Flow {
        let _ = (cx, body, end_of_stream);
        Flow::Continue
    }

    /// The response body, as [`Plugin::on_request_body`].
    fn on_response_body<H: Host>(
        cx: Cx<'_, '_, Self, H>,
        body: &[u8],
        end_of_stream: bool,
    ) -> Flow {
        let _ = (cx, body, end_of_stream);
        Flow::Continue
    }

    /// A Redis command sent for this request has answered, or failed.
    fn on_redis_reply<H: Host>(
        cx: Cx<'_, '_, Self, H>,
        reply: Result<Reply<'_>, RedisError>,
    ) -> Flow {
        let _ = (cx, reply);
        Flow::Continue
    }

    /// The count of an [`Io::increment`] of this request, or why there is
    /// none. Each request of a shared call runs this with its own count.
    fn on_count<H: Host>(
        cx: Cx<'_, '_, Self, H>,
        count: Result<Count<'_>, CountError<'_>>,
    ) -> Flow {
        let _ = (cx, count);
        Flow::Continue
    }

    /// An HTTP call sent for this request has answered, or failed.
    fn on_http_reply<H: Host>(
        cx: Cx<'_, '_, Self, H>,
        reply: Result<HttpReply<'_>, HttpError>,
    ) -> Flow {
        let _ = (cx, reply);
        Flow::Continue
    }

    /// The request is ending, however it ends: its answer complete, the
    /// client gone, the upstream reset or timed out, or a local reply
    /// (called only with [`Plugin::STREAM_END`], and not for requests this
    /// plugin answered itself or skipped).
    ///
    /// The request cannot be held or answered any more, and a call sent
    /// for it with [`Io::redis`] would never be answered: send what must
    /// still happen with [`Io::root_redis`]. [`Io::end_cause`] says why a
    /// request whose answer did not complete ended.
    fn on_stream_end<H: Host>(cx: Cx<'_, '_, Self, H>, end: StreamEnd) {
        let _ = (cx, end);
    }

    /// A Redis command sent with [`Io::root_redis`] (or
    /// [`RootIo::redis`]) with `tag` has answered, or failed; delivered on
    /// the root context, whether the request that sent it still exists
    /// or not. A command sent with [`Io::redis`] whose request ended
    /// before its reply arrives here too, with tag
    /// [`ADOPTED`](crate::ADOPTED) (after its NOSCRIPT retry, if any), and
    /// so does the failure of an [`Io::increment`] whose request ended
    /// before it was answered (an error, or the reply that was no count).
    fn on_root_reply<H: Host>(io: RootIo<'_, H>, tag: u32, reply: Result<Reply<'_>, RedisError>) {
        let _ = (io, tag, reply);
    }
}
