//! The filter engine: configuration, the pool of request states, and the
//! dispatch of host events to a [`Plugin`]'s handlers.
//!
//! [`Filter`] knows nothing of proxy-wasm: [`crate::proxy`] feeds it the
//! proxy's callbacks, and native tests feed it the same events over a
//! [`FakeHost`](crate::fake::FakeHost). One `Filter` serves every request of
//! a plugin instance (a root context) on one worker.

use crate::calls::{CallKind, Calls, StreamId};
use crate::config::{self, ConfigError, Fields, Path};
use crate::host::{BodyBuffer, Direction, HeaderMap, Host, LogLevel};
use crate::http::{parse_status, HttpError, HttpReply};
use crate::io::Io;
use crate::plugin::{Cx, Flow, Plugin, RedisUse, Setup};
use crate::raw::Retained;
use crate::redis::{RedisClient, RedisError};
use crate::resp::{self, CommandArgs};
use crate::rules::{Choice, Facts, Rules};
use simd_json::BorrowedValue;

/// What the proxy should do with the stream after a callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Go on with the stream.
    Continue,
    /// Hold the stream (a call is in flight, or it was answered locally).
    Pause,
}

/// Keys of the configuration that the kit reads itself.
const KIT_KEYS: &[&str] = &["redis"];

type Compiled<P> = Rules<'static, <P as Plugin>::Config<'static>>;

#[derive(Debug)]
struct Slot<S> {
    generation: u32,
    live: bool,
    context_id: u32,
    choice: Choice,
    paused: Option<Direction>,
    responded: bool,
    state: S,
}

/// One plugin instance: its configuration, Redis client and requests.
pub struct Filter<P: Plugin, H: Host> {
    host: H,
    compiled: Option<Retained<Compiled<P>>>,
    redis: Option<RedisClient>,
    counters: Vec<u32>,
    log_level: LogLevel,
    slots: Vec<Slot<P::State>>,
    free: Vec<u32>,
    calls: Calls,
    facts: Facts,
    reply: Vec<u8>,
    retry_args: CommandArgs,
}

impl<P: Plugin, H: Host> core::fmt::Debug for Filter<P, H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Filter")
            .field("plugin", &P::NAME)
            .field("configured", &self.compiled.is_some())
            .field("requests", &(self.slots.len() - self.free.len()))
            .finish_non_exhaustive()
    }
}

impl<P: Plugin, H: Host> Filter<P, H> {
    /// A filter with no configuration yet; it lets every request through.
    pub fn new(host: H) -> Self {
        Filter {
            host,
            compiled: None,
            redis: None,
            counters: Vec::new(),
            log_level: LogLevel::Info,
            slots: Vec::new(),
            free: Vec::new(),
            calls: Calls::default(),
            facts: Facts::default(),
            reply: Vec::new(),
            retry_args: CommandArgs::default(),
        }
    }

    /// The host, to script it in tests.
    pub fn host(&self) -> &H {
        &self.host
    }

    /// The host, to script it in tests.
    pub fn host_mut(&mut self) -> &mut H {
        &mut self.host
    }

    /// Parses and compiles `bytes`, keeping them for the plugin's life.
    ///
    /// # Errors
    /// The reason the configuration is refused. It is also logged, on one
    /// line, at error level; the previous configuration (if any) stays.
    pub fn configure(&mut self, bytes: Vec<u8>) -> Result<(), ConfigError> {
        self.log_level = self.host.log_level();
        match self.compile(bytes) {
            Ok(()) => {
                crate::log::write(
                    &mut self.host,
                    self.log_level,
                    LogLevel::Info,
                    P::NAME,
                    format_args!("configured"),
                );
                Ok(())
            }
            Err(e) => {
                crate::log::write(
                    &mut self.host,
                    self.log_level,
                    LogLevel::Error,
                    P::NAME,
                    format_args!("invalid configuration: {e}"),
                );
                Err(e)
            }
        }
    }

    fn compile(&mut self, bytes: Vec<u8>) -> Result<(), ConfigError> {
        let host = &mut self.host;
        let mut redis = None;
        let mut setup = Setup {
            now_nanos: host.now_nanos(),
            _marker: core::marker::PhantomData,
        };
        let compiled = Retained::new(bytes, |view| {
            let doc = config::parse(view)?;
            let BorrowedValue::Object(top) = &doc else {
                return Err(ConfigError::new("", "configuration must be a JSON object"));
            };
            let root = Path::Root;
            let top = Fields::new(top, None, &root);
            if P::REDIS == RedisUse::Required {
                let field = top.require("redis")?;
                redis = Some(RedisClient::configure(&field.object()?, host)?);
            }
            Rules::compile(&top, KIT_KEYS, |fields| P::configure(fields, &mut setup))
        })?;
        let mut counters = Vec::with_capacity(P::COUNTERS.len());
        for name in P::COUNTERS {
            let full = format!("{}.{}", P::NAME, name);
            let id = host
                .define_counter(&full)
                .map_err(|e| ConfigError::new("", format!("cannot define counter {full}: {e}")))?;
            counters.push(id);
        }
        self.compiled = Some(compiled);
        self.redis = redis;
        self.counters = counters;
        Ok(())
    }

    /// Starts tracking a new request of proxy context `context_id`.
    pub fn open_stream(&mut self, context_id: u32) -> StreamId {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    live: false,
                    context_id,
                    choice: Choice::Skip,
                    paused: None,
                    responded: false,
                    state: P::State::default(),
                });
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let generation = match self.slots.get_mut(index as usize) {
            Some(slot) => {
                slot.generation = slot.generation.wrapping_add(1);
                slot.live = true;
                slot.context_id = context_id;
                slot.choice = Choice::Skip;
                slot.paused = None;
                slot.responded = false;
                slot.state = P::State::default();
                slot.generation
            }
            None => 0,
        };
        StreamId {
            slot: index,
            generation,
        }
    }

    /// Stops tracking a request; replies that arrive later are dropped.
    pub fn close_stream(&mut self, id: StreamId) {
        if let Some(slot) = self.live_slot(id) {
            slot.live = false;
            self.free.push(id.slot);
            self.calls.forget(id);
        }
    }

    fn live_slot(&mut self, id: StreamId) -> Option<&mut Slot<P::State>> {
        self.slots
            .get_mut(id.slot as usize)
            .filter(|s| s.live && s.generation == id.generation)
    }

    /// The request headers arrived: choose the configuration, run the handler.
    pub fn on_request_headers(&mut self, id: StreamId, end_of_stream: bool) -> Action {
        let choice = match &self.compiled {
            Some(compiled) => compiled.get().choose(&mut self.host, &mut self.facts),
            None => Choice::Skip,
        };
        if let Some(slot) = self.live_slot(id) {
            slot.choice = choice;
        }
        self.run(id, Direction::Request, |cx| {
            P::on_request_headers(cx, end_of_stream)
        })
    }

    /// The response headers arrived.
    pub fn on_response_headers(&mut self, id: StreamId, end_of_stream: bool) -> Action {
        self.run(id, Direction::Response, |cx| {
            P::on_response_headers(cx, end_of_stream)
        })
    }

    /// An HTTP call answered (`num_headers == 0` means it failed). Plain
    /// HTTP calls and webdis Redis commands both arrive here.
    ///
    /// `switch_context` asks the engine to make the request's context
    /// effective first, for answers delivered on the root context.
    pub fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        switch_context: bool,
    ) {
        let Some((stream, kind, retry)) = self.calls.take(token, &mut self.retry_args) else {
            return;
        };
        if !self.enter(stream, switch_context) {
            return;
        }
        let status = if num_headers == 0 {
            None
        } else {
            self.host
                .header(HeaderMap::HttpCallResponse, ":status")
                .and_then(parse_status)
        };
        let mut body = core::mem::take(&mut self.reply);
        body.clear();
        if body_size > 0 {
            if let Some(bytes) = self.host.body(BodyBuffer::HttpCallResponse, 0, body_size) {
                body.extend_from_slice(bytes);
            }
        }
        match kind {
            CallKind::Http => {
                let reply = match status {
                    Some(status) => Ok(HttpReply {
                        status,
                        body: &body,
                    }),
                    None => Err(HttpError::Failed),
                };
                self.resume_after(stream, |cx| P::on_http_reply(cx, reply));
            }
            CallKind::RedisWebdis | CallKind::RedisNative => {
                let outcome = match status {
                    None => Err(RedisError::Network),
                    Some(200) => Ok(()),
                    Some(504) => Err(RedisError::Timeout),
                    Some(other) => Err(RedisError::Http(other)),
                };
                self.deliver_redis(stream, retry, outcome, &body);
            }
        }
        self.reply = body;
    }

    /// A Higress native Redis call answered (`status` 0) or failed.
    pub fn on_redis_call_response(&mut self, token: u32, status: u32, size: usize) {
        let Some((stream, _, retry)) = self.calls.take(token, &mut self.retry_args) else {
            return;
        };
        if !self.enter(stream, true) {
            return;
        }
        let mut body = core::mem::take(&mut self.reply);
        body.clear();
        let outcome = if status == 0 {
            if let Some(bytes) = self.host.body(BodyBuffer::RedisCallResponse, 0, size) {
                body.extend_from_slice(bytes);
            }
            Ok(())
        } else {
            Err(RedisError::Network)
        };
        self.deliver_redis(stream, retry, outcome, &body);
        self.reply = body;
    }

    /// Whether `stream` is still alive; switches the host to it if asked.
    fn enter(&mut self, stream: StreamId, switch_context: bool) -> bool {
        let Some(context_id) = self.live_slot(stream).map(|s| s.context_id) else {
            return false;
        };
        if switch_context {
            self.host.set_effective_context(context_id);
        }
        true
    }

    fn deliver_redis(
        &mut self,
        stream: StreamId,
        retry: Option<&'static str>,
        outcome: Result<(), RedisError>,
        body: &[u8],
    ) {
        let decoded = outcome.and_then(|()| resp::decode(body).map_err(|_| RedisError::Protocol));
        if let (Ok(d), Some(source)) = (&decoded, retry) {
            if d.reply(body).is_error(b"NOSCRIPT") {
                if let Some(client) = self.redis.as_mut() {
                    match client.retry_as_eval(
                        &mut self.host,
                        &mut self.calls,
                        stream,
                        source,
                        &self.retry_args,
                    ) {
                        Ok(()) => return,
                        Err(e) => {
                            self.resume_after(stream, |cx| P::on_redis_reply(cx, Err(e)));
                            return;
                        }
                    }
                }
            }
        }
        let reply = decoded.as_ref().map(|d| d.reply(body)).map_err(|e| *e);
        self.resume_after(stream, |cx| P::on_redis_reply(cx, reply));
    }

    /// Runs a reply handler and wakes the paused direction if it says so.
    fn resume_after(&mut self, stream: StreamId, handler: impl FnOnce(Cx<'_, '_, P, H>) -> Flow) {
        let paused = self.live_slot(stream).and_then(|s| s.paused);
        let direction = paused.unwrap_or(Direction::Request);
        if self.run(stream, direction, handler) == Action::Continue {
            if let Some(direction) = paused {
                if let Some(slot) = self.live_slot(stream) {
                    slot.paused = None;
                }
                self.host.resume(direction);
            }
        }
    }

    /// Runs one handler for one request and turns its [`Flow`] into an
    /// [`Action`]; `direction` is the half a pause would hold.
    fn run(
        &mut self,
        id: StreamId,
        direction: Direction,
        handler: impl FnOnce(Cx<'_, '_, P, H>) -> Flow,
    ) -> Action {
        let Filter {
            host,
            compiled,
            redis,
            counters,
            log_level,
            slots,
            calls,
            ..
        } = self;
        let Some(slot) = slots
            .get_mut(id.slot as usize)
            .filter(|s| s.live && s.generation == id.generation)
        else {
            return Action::Continue;
        };
        let Some(config) = compiled.as_ref().and_then(|c| c.get().get(slot.choice)) else {
            return Action::Continue;
        };
        if slot.responded {
            // The plugin answered this request itself: its handlers are done,
            // and the later phases are the local answer on its way out,
            // which must not be held.
            return Action::Continue;
        }
        let cx = Cx {
            config,
            state: &mut slot.state,
            io: Io {
                host,
                redis: redis.as_mut(),
                calls,
                stream: id,
                counters,
                log_level: *log_level,
                plugin: P::NAME,
                responded: &mut slot.responded,
            },
        };
        match handler(cx) {
            Flow::Continue => Action::Continue,
            Flow::Responded(_) => {
                slot.paused = None;
                Action::Pause
            }
            Flow::Pause if calls.waits(id) => {
                slot.paused = Some(direction);
                Action::Pause
            }
            Flow::Pause => {
                crate::log::write(
                    host,
                    *log_level,
                    LogLevel::Error,
                    P::NAME,
                    format_args!("a handler paused with no call in flight; resuming so the request cannot hang"),
                );
                Action::Continue
            }
        }
    }
}
