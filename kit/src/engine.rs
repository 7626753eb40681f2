//! The filter engine: configuration, the pool of request states, and the
//! dispatch of host events to a [`Plugin`]'s handlers.
//!
//! [`Filter`] knows nothing of the ABI: the [`dispatcher`](crate::dispatcher)
//! feeds it the proxy's callbacks, and native tests feed it the same events over a
//! [`FakeHost`](crate::fake::FakeHost). One `Filter` serves every request of
//! a plugin instance (a root context) on one worker.

use crate::calls::{CallKind, Calls, Owner, StreamId, Taken};
use crate::config::{self, ConfigError, Fields, Path};
use crate::ending::StreamEnd;
use crate::host::{BodyBuffer, Direction, HeaderMap, Host, LogLevel};
use crate::http::{parse_status, HttpError, HttpReply};
use crate::increments::{self, Count, CountError, Increments};
use crate::io::{Io, RootIo};
use crate::plugin::{BodyMode, Cx, Flow, Plugin, RedisUse, Setup};
use crate::raw::{self, Retained};
use crate::redis::{HostAnswer, Redis, RedisClient, RedisError, ReplyScratch};
use crate::rules::{Choice, Facts, Rules};
use core::time::Duration;

/// What the proxy should do with the stream after a callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Go on with the stream.
    Continue,
    /// Hold the stream (a call is in flight, or it was answered locally).
    Pause,
}

/// Keys of the configuration that the kit reads itself.
const KIT_KEYS: &[&str] = &["redis", "max_body_bytes", "strict_config"];

/// Default limit of a buffered body.
const DEFAULT_MAX_BODY_BYTES: u64 = 1 << 20;

/// The most bytes of a streamed body a handler is given at once. The proxy
/// hands over however many bytes arrived together, which depends on timing;
/// a larger chunk reaches the handler in pieces of this size (as if the
/// proxy had delivered it so), and the buffers that carry a piece are
/// reserved at configuration, so a streamed body never grows them.
pub const STREAM_PIECE: usize = 16 * 1024;

/// How long a request may sit with its headers held before the kit lets it
/// go without its body (see [`StopIteration`]).
const HOLD_PROBE: Duration = Duration::from_millis(100);

/// How many held requests in a row must miss their body before the kit
/// concludes the proxy never delivers it. One slow upload alone proves
/// nothing; each miss costs its request [`HOLD_PROBE`] of latency.
const PROBE_MISSES: u8 = 3;

/// How often counted events reach the proxy's counters.
///
/// Counting adds to a plain integer; the host calls that publish the sums
/// run on this tick (and when the plugin stops), so a request pays no VM
/// crossing for its counters. Envoy itself flushes stats to sinks every
/// 5 s by default, so a one-second delay is not visible there.
pub const COUNTER_FLUSH: Duration = Duration::from_secs(1);

/// Whether the proxy honours `HeaderStopIteration` from header callbacks.
///
/// Upstream Envoy does only when the Wasm `PluginConfig` sets
/// `allow_on_headers_stop_iteration: true`; otherwise (and on Higress for
/// ABI 0.2.1 modules) it turns it into stop-all, and the body never reaches
/// the filter while its headers are held. The kit cannot read that setting,
/// so it learns it: a body chunk arriving while headers are held proves it
/// honoured; a request held for [`HOLD_PROBE`] with no body is let go
/// (dropping `content-length` when the plugin may rewrite the body), and
/// [`PROBE_MISSES`] such requests before any proof of the contrary prove it
/// ignored: the kit then stops holding headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopIteration {
    Unknown,
    Honoured,
    Ignored,
}

/// Which handler of a direction a pause waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Headers,
    /// A whole buffered body, or the last chunk of a streamed one.
    Body,
    /// A streamed chunk before the last: pausing here without a call holds
    /// the bytes back, and the next body callback comes anyway.
    Chunk,
}

/// The progress of one direction of a request.
#[derive(Clone, Copy, Debug, Default)]
struct Half {
    /// The headers handler has finished (directly, or after its call).
    /// Kept for buffered bodies only, the one mode that reads it.
    headers_done: bool,
    /// The kit returned `HeaderStopIteration` and has not let them go.
    headers_held: bool,
    /// When the headers were held, in nanoseconds.
    held_since: u64,
    /// The end of the stream was seen; `size` is then the whole body.
    complete: bool,
    /// Bytes in the proxy's buffer at the last body callback.
    size: usize,
    /// The buffered-body handler has run.
    handled: bool,
    /// Bytes of the proxy's buffer already given to a streaming handler.
    seen: usize,
    /// A response body over the limit: let it through unseen.
    passthrough: bool,
    /// The headers of this direction reached the plugin.
    started: bool,
    /// Response headers held unseen until the request's handlers are done
    /// (see [`request_pending`]).
    deferred: bool,
}

fn index(direction: Direction) -> usize {
    match direction {
        Direction::Request => 0,
        Direction::Response => 1,
    }
}

fn body_mode<P: Plugin>(direction: Direction) -> BodyMode {
    match direction {
        Direction::Request => P::REQUEST_BODY,
        Direction::Response => P::RESPONSE_BODY,
    }
}

type Compiled<P> = Rules<'static, <P as Plugin>::Config<'static>>;

#[derive(Debug)]
struct Slot<S> {
    generation: u32,
    live: bool,
    context_id: u32,
    choice: Choice,
    /// The direction and handler a pause waits in.
    waiting: Option<(Direction, Stage)>,
    halves: [Half; 2],
    responded: bool,
    /// Waits for a count from [`Io::increment`](crate::Io::increment).
    counting: bool,
    state: S,
}

/// One plugin instance: its configuration, Redis client and requests.
pub struct Filter<P: Plugin, H: Host> {
    host: H,
    compiled: Option<Retained<Compiled<P>>>,
    redis: Option<RedisClient>,
    /// Host ids of the plugin's counters, then the kit's own.
    counters: Vec<u32>,
    /// Counts not yet published, by the index of `counters`.
    pending: Vec<u64>,
    log_level: LogLevel,
    slots: Vec<Slot<P::State>>,
    free: Vec<u32>,
    calls: Calls,
    increments: Increments,
    facts: Facts,
    reply: Vec<u8>,
    /// Where Redis replies are read and decoded.
    redis_reply: ReplyScratch,
    body: Vec<u8>,
    rewritten: Vec<u8>,
    /// The length of the bytes a body handler's rewrite put in place of
    /// its piece, if it rewrote it.
    replaced: Option<usize>,
    max_body_bytes: usize,
    stop_iteration: StopIteration,
    /// Held requests let go without their body so far.
    probe_misses: u8,
    /// The probe tick is wanted.
    probe_ticking: bool,
    /// The tick period last asked of the host.
    tick: Duration,
    /// Index in `counters` of `<plugin>.body_over_limit`.
    over_limit_counter: Option<usize>,
    /// Index in `counters` of `<plugin>.heap_allocations` (feature
    /// `heap-stats`, wasm builds).
    heap_counter: Option<usize>,
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
            pending: Vec::new(),
            log_level: LogLevel::Info,
            slots: Vec::new(),
            free: Vec::new(),
            calls: Calls::default(),
            increments: Increments::default(),
            facts: Facts::default(),
            reply: Vec::new(),
            redis_reply: ReplyScratch::default(),
            body: Vec::new(),
            rewritten: Vec::new(),
            replaced: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES as usize,
            stop_iteration: StopIteration::Unknown,
            probe_misses: 0,
            probe_ticking: false,
            tick: Duration::ZERO,
            over_limit_counter: None,
            heap_counter: None,
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
                let ignored = self
                    .compiled
                    .as_ref()
                    .map_or(&[][..], |c| c.get().ignored());
                for i in ignored {
                    crate::log::write(
                        &mut self.host,
                        self.log_level,
                        LogLevel::Warn,
                        P::NAME,
                        format_args!(
                            "_rules_[{}]: {} is ignored: {} decides, as in Higress",
                            i.rule, i.key, i.decided_by
                        ),
                    );
                }
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
        let mut max_body_bytes = DEFAULT_MAX_BODY_BYTES;
        let mut setup = Setup {
            now_nanos: host.now_nanos(),
            _marker: core::marker::PhantomData,
        };
        let mut strict = false;
        let (compiled, opened) = crate::config_keys::recording(|| {
            Retained::new(bytes, |view| {
                let tape = config::parse(view)?;
                let root = Path::Root;
                let top = Fields::top(&tape, &root)?;
                strict = top.bool_or("strict_config", false)?;
                if P::REDIS != RedisUse::None {
                    let field = top.require("redis")?;
                    redis = Some(RedisClient::configure(&field.object()?, host)?);
                }
                max_body_bytes = top.u64_or("max_body_bytes", DEFAULT_MAX_BODY_BYTES)?;
                if max_body_bytes == 0 {
                    return Err(top.error("max_body_bytes", "must be at least 1"));
                }
                Rules::compile(&top, KIT_KEYS, |fields| P::configure(fields, &mut setup))
            })
        });
        let compiled = compiled?;
        // Keys the plugin never asked for: a typo would otherwise leave a
        // default in force without a word. Higress configurations carry
        // keys for other plugins' features, so by default they only warn.
        let unknown = crate::config_keys::unknown(&opened);
        if let Some(first) = unknown.first().filter(|_| strict) {
            return Err(ConfigError::new(first.path.clone(), first.reason()));
        }
        for key in &unknown {
            crate::log::write(
                &mut self.host,
                self.log_level,
                LogLevel::Warn,
                P::NAME,
                format_args!("configuration key {}: {}; ignored", key.path, key.reason()),
            );
        }
        let host = &mut self.host;
        let buffers = P::REQUEST_BODY == BodyMode::Buffer || P::RESPONSE_BODY == BodyMode::Buffer;
        let mut counters = Vec::with_capacity(P::COUNTERS.len() + 2);
        let body_counters: &[&str] = if buffers { &["body_over_limit"] } else { &[] };
        let heap_counters: &[&str] = if raw::HEAP_STATS {
            &["heap_allocations"]
        } else {
            &[]
        };
        for name in P::COUNTERS.iter().chain(body_counters).chain(heap_counters) {
            let full = format!("{}.{}", P::NAME, name);
            let id = host
                .define_counter(&full)
                .map_err(|e| ConfigError::new("", format!("cannot define counter {full}: {e}")))?;
            counters.push(id);
        }
        // Counts of the previous configuration belong to its counters.
        self.flush_counters();
        self.over_limit_counter = buffers.then_some(P::COUNTERS.len());
        self.heap_counter = raw::HEAP_STATS.then_some(P::COUNTERS.len() + body_counters.len());
        self.pending = vec![0; counters.len()];
        self.compiled = Some(compiled);
        if let Some(client) = redis.as_ref().filter(|_| P::REDIS == RedisUse::Counting) {
            self.increments.allocate();
            self.increments.set_cluster(client.cluster());
        }
        self.redis = redis;
        self.counters = counters;
        self.retick();
        self.max_body_bytes = usize::try_from(max_body_bytes).unwrap_or(usize::MAX);
        if P::REQUEST_BODY == BodyMode::Stream || P::RESPONSE_BODY == BodyMode::Stream {
            self.body.reserve(STREAM_PIECE);
            self.host.reserve_reads(STREAM_PIECE);
        }
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
                    waiting: None,
                    halves: [Half::default(); 2],
                    responded: false,
                    counting: false,
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
                slot.waiting = None;
                slot.halves = [Half::default(); 2];
                slot.responded = false;
                slot.counting = false;
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

    /// Stops tracking a request. Replies to its Redis calls that arrive
    /// later go to [`Plugin::on_root_reply`] with tag
    /// [`ADOPTED`](crate::ADOPTED) (those of its HTTP calls are dropped).
    ///
    /// A plugin with [`Plugin::STREAM_END`] first hears of the end in
    /// [`Plugin::on_stream_end`], with the context the proxy is deleting
    /// still current.
    pub fn close_stream(&mut self, id: StreamId) {
        if P::STREAM_END && !self.skipped(id) {
            let end = self
                .half(id, Direction::Response)
                .map(|response| StreamEnd {
                    response_started: response.started,
                    response_complete: response.complete,
                });
            if let Some(end) = end {
                let _ = self.run_at(id, None, |cx| {
                    P::on_stream_end(cx, end);
                    Flow::Continue
                });
            }
        }
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
        self.headers(id, Direction::Request, end_of_stream, Some(choice))
    }

    /// The response headers arrived.
    pub fn on_response_headers(&mut self, id: StreamId, end_of_stream: bool) -> Action {
        self.headers(id, Direction::Response, end_of_stream, None)
    }

    /// A request body callback: `size` is everything the proxy buffered so
    /// far for this request (not the size of the latest chunk).
    pub fn on_request_body(&mut self, id: StreamId, size: usize, end_of_stream: bool) -> Action {
        self.body(id, Direction::Request, size, end_of_stream)
    }

    /// A response body callback, as [`Filter::on_request_body`].
    pub fn on_response_body(&mut self, id: StreamId, size: usize, end_of_stream: bool) -> Action {
        self.body(id, Direction::Response, size, end_of_stream)
    }

    /// Request trailers arrived: the body, if any, is complete.
    pub fn on_request_trailers(&mut self, id: StreamId) -> Action {
        self.trailers(id, Direction::Request)
    }

    /// Response trailers arrived: the body, if any, is complete.
    pub fn on_response_trailers(&mut self, id: StreamId) -> Action {
        self.trailers(id, Direction::Response)
    }

    /// Periodic work: let go of requests whose headers the proxy holds
    /// without ever delivering their body (see the crate docs on
    /// `HeaderStopIteration`).
    pub fn on_tick(&mut self) {
        self.flush_counters();
        if !self.probe_ticking {
            return;
        }
        if self.stop_iteration == StopIteration::Honoured {
            self.probe_ticking = false;
            self.retick();
            return;
        }
        let now = self.host.now_nanos();
        let probe = u64::try_from(HOLD_PROBE.as_nanos()).unwrap_or(u64::MAX);
        for i in 0..self.slots.len() {
            let Some(slot) = self.slots.get_mut(i) else {
                continue;
            };
            if !slot.live {
                continue;
            }
            let context_id = slot.context_id;
            for direction in [Direction::Request, Direction::Response] {
                let Some(half) = slot.halves.get_mut(index(direction)) else {
                    continue;
                };
                if half.headers_held
                    && half.headers_done
                    && now.saturating_sub(half.held_since) >= probe
                {
                    self.probe_misses = self.probe_misses.saturating_add(1);
                    if self.stop_iteration == StopIteration::Unknown
                        && self.probe_misses >= PROBE_MISSES
                    {
                        self.stop_iteration = StopIteration::Ignored;
                        crate::log::write(
                            &mut self.host,
                            self.log_level,
                            LogLevel::Warn,
                            P::NAME,
                            format_args!(
                                "the proxy does not deliver bodies while headers are held; set \
                                 allow_on_headers_stop_iteration: true in the Wasm PluginConfig (Envoy 1.35+) \
                                 to let the plugin change headers after seeing the body"
                            ),
                        );
                    }
                    half.headers_held = false;
                    self.host.set_effective_context(context_id);
                    release_headers::<P, H>(&mut self.host, direction);
                    self.host.resume(direction);
                }
            }
        }
        if self.stop_iteration == StopIteration::Ignored {
            self.probe_ticking = false;
            self.retick();
        }
    }

    /// Publishes the counts made since the last flush, one host call per
    /// counter that moved. Runs on every tick and when the plugin stops.
    pub fn flush_counters(&mut self) {
        if let Some(pending) = self.heap_counter.and_then(|i| self.pending.get_mut(i)) {
            *pending = pending.saturating_add(raw::heap_allocations());
        }
        for (&id, pending) in self.counters.iter().zip(self.pending.iter_mut()) {
            if *pending > 0 {
                self.host.increment_counter(id, *pending);
                *pending = 0;
            }
        }
    }

    /// Asks the host for the tick the filter needs now: fast while the
    /// body probe runs, every [`COUNTER_FLUSH`] while there are counters.
    fn retick(&mut self) {
        let period = if self.probe_ticking {
            HOLD_PROBE / 2
        } else if !self.counters.is_empty() {
            COUNTER_FLUSH
        } else {
            Duration::ZERO
        };
        if period != self.tick {
            self.tick = period;
            self.host.set_tick_period(period);
        }
    }

    /// The time a held request is stamped with, for the probe. Once the
    /// proxy is known to honour held headers (or not), the probe is over and
    /// the stamp is never read: no clock call.
    fn probe_clock(&mut self) -> u64 {
        if self.stop_iteration == StopIteration::Unknown {
            self.host.now_nanos()
        } else {
            0
        }
    }

    fn count_over_limit(&mut self) {
        if let Some(pending) = self
            .over_limit_counter
            .and_then(|i| self.pending.get_mut(i))
        {
            *pending = pending.saturating_add(1);
        }
    }

    fn half(&mut self, id: StreamId, direction: Direction) -> Option<&mut Half> {
        self.live_slot(id)
            .and_then(|s| s.halves.get_mut(index(direction)))
    }

    fn skipped(&mut self, id: StreamId) -> bool {
        self.live_slot(id)
            .is_none_or(|s| s.choice == Choice::Skip || s.responded)
    }

    /// A headers callback; `choice` is the request's configuration, chosen
    /// when its headers arrive. One lookup of the slot sets the choice,
    /// checks for a skip and resets the half (each alone cost a lookup).
    fn headers(
        &mut self,
        id: StreamId,
        direction: Direction,
        end_of_stream: bool,
        choice: Option<Choice>,
    ) -> Action {
        let Some(slot) = self.live_slot(id) else {
            return Action::Continue;
        };
        if let Some(choice) = choice {
            slot.choice = choice;
        }
        if slot.choice == Choice::Skip || slot.responded {
            return Action::Continue;
        }
        let deferred = direction == Direction::Response && request_pending(slot);
        if let Some(half) = slot.halves.get_mut(index(direction)) {
            // Body bytes the proxy delivered while the headers were deferred
            // stay in its buffer and are counted.
            let size = if half.deferred { half.size } else { 0 };
            *half = Half {
                complete: end_of_stream,
                started: true,
                deferred,
                size,
                ..Half::default()
            };
        }
        if deferred {
            // The upstream answered before the request's handlers were
            // done: it got the headers without waiting for the body (the
            // proxy did not hold them) and did not read the body first.
            // The answer waits unseen, so the plugin decides on the request
            // (and may refuse it) before it meets the answer.
            return Action::Pause;
        }
        let handler = |cx: Cx<'_, '_, P, H>| match direction {
            Direction::Request => P::on_request_headers(cx, end_of_stream),
            Direction::Response => P::on_response_headers(cx, end_of_stream),
        };
        match self.run(id, direction, Stage::Headers, handler) {
            Action::Continue => self.after_headers(id, direction, true),
            Action::Pause => {
                // Waiting on a call: the proxy holds the headers meanwhile,
                // so a body that arrives now proves it delivers bodies to
                // filters holding headers.
                if !end_of_stream && body_mode::<P>(direction) == BodyMode::Buffer {
                    let now = self.probe_clock();
                    if let Some(half) = self.half(id, direction) {
                        half.headers_held = true;
                        half.held_since = now;
                    }
                }
                Action::Pause
            }
        }
    }

    /// The headers handler of `direction` is done. Decides whether the
    /// headers go on or wait for a buffered body. `in_callback` is true in
    /// the proxy's own header callback (the answer is the return value),
    /// false after a call (the kit resumes the stream itself).
    fn after_headers(&mut self, id: StreamId, direction: Direction, in_callback: bool) -> Action {
        if body_mode::<P>(direction) != BodyMode::Buffer {
            // Only a buffered body reads `headers_done`: no lookup to set it.
            return self.go_on(direction, in_callback);
        }
        let stop = self.stop_iteration;
        let Some(half) = self.half(id, direction) else {
            return Action::Continue;
        };
        half.headers_done = true;
        if half.complete {
            return self.run_buffered(id, direction, in_callback);
        }
        if stop == StopIteration::Ignored {
            release_headers::<P, H>(&mut self.host, direction);
            return self.go_on(direction, in_callback);
        }
        half.headers_held = true;
        let now = self.probe_clock();
        if let Some(half) = self.half(id, direction) {
            half.held_since = now;
        }
        if stop == StopIteration::Unknown && !self.probe_ticking {
            self.probe_ticking = true;
            self.retick();
        }
        Action::Pause
    }

    /// Lets `direction` go on: by the callback's answer, or by resuming.
    fn go_on(&mut self, direction: Direction, in_callback: bool) -> Action {
        if !in_callback {
            self.host.resume(direction);
        }
        Action::Continue
    }

    fn body(
        &mut self,
        id: StreamId,
        direction: Direction,
        size: usize,
        end_of_stream: bool,
    ) -> Action {
        let mode = body_mode::<P>(direction);
        if mode == BodyMode::Ignore || self.skipped(id) {
            return Action::Continue;
        }
        let max = self.max_body_bytes;
        let mut stop = self.stop_iteration;
        let Some(half) = self.half(id, direction) else {
            return Action::Continue;
        };
        if half.passthrough {
            return Action::Continue;
        }
        if half.deferred {
            half.size = size;
            half.complete |= end_of_stream;
            return Action::Pause;
        }
        if half.headers_held && stop == StopIteration::Unknown {
            stop = StopIteration::Honoured;
        }
        half.size = size;
        half.complete |= end_of_stream;
        let headers_done = half.headers_done;
        let seen = half.seen;
        self.stop_iteration = stop;
        match mode {
            BodyMode::Ignore => Action::Continue,
            BodyMode::Stream => {
                let (mut action, size) =
                    self.stream_pieces(id, direction, seen, size, end_of_stream);
                let waiting = self.live_slot(id).is_some_and(|s| s.waiting.is_some());
                if action == Action::Pause && !waiting && size > max {
                    // Held back past the limit: let the bytes go rather
                    // than hit the proxy's own buffer limit.
                    self.count_over_limit();
                    action = Action::Continue;
                }
                if let Some(half) = self.half(id, direction) {
                    half.size = size;
                    half.seen = if action == Action::Pause { size } else { 0 };
                }
                action
            }
            BodyMode::Buffer => {
                if size > max {
                    return self.over_limit(id, direction);
                }
                if !end_of_stream || !headers_done {
                    // Keep buffering; a headers handler still waiting on a
                    // call runs the body handler when it is done.
                    return Action::Pause;
                }
                self.run_buffered(id, direction, true)
            }
        }
    }

    /// Gives the streamed body handler bytes `seen..size` of the proxy's
    /// buffer, in pieces of at most [`STREAM_PIECE`] bytes, the last piece
    /// told `end_of_stream`. Returns the action of the last piece handled
    /// (a pause before it only held bytes that the last one lets go, as
    /// when the proxy delivers them apart) and the buffer's size after any
    /// rewrites of the pieces.
    fn stream_pieces(
        &mut self,
        id: StreamId,
        direction: Direction,
        seen: usize,
        size: usize,
        end_of_stream: bool,
    ) -> (Action, usize) {
        let (mut start, mut size) = (seen, size);
        loop {
            let end = size.min(start.saturating_add(STREAM_PIECE));
            let last = end == size;
            let ends = end_of_stream && last;
            if let Some(half) = self.half(id, direction) {
                // What the handler's `rewrite_body` replaces.
                half.seen = start;
                half.size = end;
            }
            self.read_body(direction, start, end);
            let body = core::mem::take(&mut self.body);
            let handler = |cx: Cx<'_, '_, P, H>| match direction {
                Direction::Request => P::on_request_body(cx, &body, ends),
                Direction::Response => P::on_response_body(cx, &body, ends),
            };
            let stage = if ends { Stage::Body } else { Stage::Chunk };
            self.replaced = None;
            let action = self.run(id, direction, stage, handler);
            self.body = body;
            let piece = end.saturating_sub(start);
            let written = self.replaced.take().unwrap_or(piece);
            size = size.saturating_sub(piece).saturating_add(written);
            start = start.saturating_add(written);
            let answered = self.live_slot(id).is_none_or(|s| s.responded);
            if last || answered {
                return (action, size);
            }
        }
    }

    /// Trailers arrived: the body of `direction` is complete.
    ///
    /// A buffered body goes to its handler now. A streamed body's last
    /// bytes came without the end of the stream, so its handler gets an
    /// empty last piece told `end_of_stream`, at the place after the bytes
    /// it has seen, and it holds or lets go as on a last chunk: a pause
    /// holds the trailers (and any bytes held before them) until the
    /// plugin resumes, which the proxy answers by sending both on.
    fn trailers(&mut self, id: StreamId, direction: Direction) -> Action {
        let mode = body_mode::<P>(direction);
        if mode == BodyMode::Ignore || self.skipped(id) {
            return Action::Continue;
        }
        let Some(half) = self.half(id, direction) else {
            return Action::Continue;
        };
        // A streamed body whose end was seen ends once.
        let ended = mode == BodyMode::Stream && half.complete;
        if half.passthrough || half.handled || ended {
            return Action::Continue;
        }
        half.complete = true;
        if mode == BodyMode::Stream {
            if half.deferred {
                // Held unseen with the headers, as a body chunk would be.
                return Action::Pause;
            }
            // The proxy's buffer holds the bytes held back so far (all
            // seen), or nothing: no body bytes are read here.
            let seen = half.seen;
            return self.stream_pieces(id, direction, seen, seen, true).0;
        }
        if !half.headers_done {
            return Action::Pause;
        }
        self.run_buffered(id, direction, true)
    }

    fn over_limit(&mut self, id: StreamId, direction: Direction) -> Action {
        self.count_over_limit();
        match direction {
            Direction::Request => {
                if let Some(slot) = self.live_slot(id) {
                    slot.responded = true;
                }
                self.host.send_response(413, &[], b"request body too large");
                Action::Pause
            }
            Direction::Response => {
                if let Some(half) = self.half(id, direction) {
                    half.passthrough = true;
                    half.headers_held = false;
                }
                Action::Continue
            }
        }
    }

    /// Copies bytes `start..end` of the proxy's body buffer into `self.body`.
    fn read_body(&mut self, direction: Direction, start: usize, end: usize) {
        self.body.clear();
        let buffer = match direction {
            Direction::Request => BodyBuffer::Request,
            Direction::Response => BodyBuffer::Response,
        };
        if end > start {
            if let Some(bytes) = self.host.body(buffer, start, end - start) {
                self.body.extend_from_slice(bytes);
            }
        }
    }

    /// Runs the buffered-body handler on the complete body.
    fn run_buffered(&mut self, id: StreamId, direction: Direction, in_callback: bool) -> Action {
        let Some(half) = self.half(id, direction) else {
            return Action::Continue;
        };
        if half.handled {
            return self.go_on(direction, in_callback);
        }
        half.handled = true;
        let size = half.size;
        self.read_body(direction, 0, size);
        let body = core::mem::take(&mut self.body);
        let handler = |cx: Cx<'_, '_, P, H>| match direction {
            Direction::Request => P::on_request_body(cx, &body, true),
            Direction::Response => P::on_response_body(cx, &body, true),
        };
        let action = self.run(id, direction, Stage::Body, handler);
        self.body = body;
        if let Some(half) = self.half(id, direction) {
            half.headers_held = false;
        }
        match action {
            Action::Continue => {
                let action = self.go_on(direction, in_callback);
                if direction == Direction::Request {
                    self.release_deferred(id);
                }
                action
            }
            Action::Pause => Action::Pause,
        }
    }

    /// Lets a response held by [`request_pending`] meet the plugin
    /// once the request's handlers are done: its headers handler runs now,
    /// and the proxy is asked to go on with it unless that handler waits.
    fn release_deferred(&mut self, id: StreamId) {
        let Some(slot) = self.live_slot(id) else {
            return;
        };
        let Some(response) = slot.halves.get(index(Direction::Response)).copied() else {
            return;
        };
        if !response.deferred || request_pending(slot) {
            return;
        }
        if slot.responded {
            // The request was refused: the proxy replaces the held answer
            // with the local one.
            return;
        }
        if self.headers(id, Direction::Response, response.complete, None) == Action::Continue {
            self.host.resume(Direction::Response);
        }
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
        let Some(call) = self.calls.take(token) else {
            return;
        };
        if !self.enter(call.owner, switch_context) {
            return;
        }
        match (call.kind, call.owner) {
            (CallKind::RedisWebdis | CallKind::RedisNative, _) => {
                let answer = HostAnswer::Webdis {
                    headers: num_headers,
                    body_size,
                };
                self.redis_answer(call, answer, switch_context);
            }
            (CallKind::Http, Owner::Stream(stream)) => {
                let mut body = core::mem::take(&mut self.reply);
                body.clear();
                if body_size > 0 {
                    if let Some(bytes) = self.host.body(BodyBuffer::HttpCallResponse, 0, body_size)
                    {
                        body.extend_from_slice(bytes);
                    }
                }
                let status = match num_headers {
                    0 => None,
                    _ => self
                        .host
                        .header(HeaderMap::HttpCallResponse, ":status")
                        .and_then(parse_status),
                };
                let reply = match status {
                    Some(status) => Ok(HttpReply {
                        status,
                        body: &body,
                    }),
                    None => Err(HttpError::Failed),
                };
                self.resume_after(stream, |cx| P::on_http_reply(cx, reply));
                self.reply = body;
            }
            // Only Redis calls are sent on behalf of the root.
            (CallKind::Http, _) => {}
        }
    }

    /// A Higress native Redis call answered (`status` 0) or failed.
    pub fn on_redis_call_response(&mut self, token: u32, status: u32, size: usize) {
        let Some(call) = self.calls.take(token) else {
            return;
        };
        if !self.enter(call.owner, true) {
            return;
        }
        self.redis_answer(call, HostAnswer::Native { status, size }, true);
    }

    /// A Redis call answered: the client turns the answer into a reply
    /// (or re-sends the call), and the reply goes to the call's owner.
    fn redis_answer(&mut self, call: Taken, answer: HostAnswer, switch_context: bool) {
        let Some(client) = self.redis.as_mut() else {
            return;
        };
        let mut scratch = core::mem::take(&mut self.redis_reply);
        if let Some(reply) =
            client.receive(&mut self.host, &mut self.calls, call, answer, &mut scratch)
        {
            self.redis_reply(call.owner, reply, switch_context);
        }
        self.redis_reply = scratch;
    }

    /// Whether the reply's owner is still there (the root always is);
    /// switches the host to a stream if asked.
    fn enter(&mut self, owner: Owner, switch_context: bool) -> bool {
        let (Owner::Stream(stream) | Owner::Count(stream)) = owner else {
            return true;
        };
        let Some(context_id) = self.live_slot(stream).map(|s| s.context_id) else {
            // An increment is still retried after NOSCRIPT when its request
            // has gone, so that it is counted; its count is then dropped.
            return matches!(owner, Owner::Count(_));
        };
        if switch_context {
            self.host.set_effective_context(context_id);
        }
        true
    }

    /// Gives a Redis reply to its owner's handler.
    fn redis_reply(
        &mut self,
        owner: Owner,
        reply: Result<crate::Reply<'_>, RedisError>,
        switch_context: bool,
    ) {
        match owner {
            Owner::Count(stream) => self.deliver_count(stream, counted(reply), false),
            // Without the tables no call is shared: the arm is compiled
            // only into plugins that count.
            Owner::Shared(call) if P::REDIS == RedisUse::Counting => {
                self.share_out(call, reply, switch_context);
            }
            Owner::Shared(_) => {}
            Owner::Stream(stream) => self.resume_after(stream, |cx| P::on_redis_reply(cx, reply)),
            Owner::Root(tag) => {
                let io = RootIo {
                    host: &mut self.host,
                    redis: self.redis.as_mut(),
                    calls: &mut self.calls,
                    counters: &mut self.pending,
                    log_level: self.log_level,
                    plugin: P::NAME,
                };
                P::on_root_reply(io, tag, reply);
            }
        }
    }

    /// A shared increment call answered: every key that waits goes to
    /// Redis in the next calls, then each request of the answered call
    /// gets its count (or the call's error), key by key in the call's
    /// order, and within a key in arrival order.
    fn share_out(
        &mut self,
        call: u32,
        reply: Result<crate::Reply<'_>, RedisError>,
        switch_context: bool,
    ) {
        let keys = self.increments.answered(call);
        let delivering = core::mem::take(&mut self.increments.delivering);
        self.send_waiting(switch_context);
        // With one key the reply is that key's result; with several, an
        // array of them in the call's order.
        let mut items = match &reply {
            Ok(crate::Reply::Array(items)) if keys > 1 && items.len() == keys as usize => {
                Some(items.iter())
            }
            _ => None,
        };
        let mut rest = &delivering[..];
        while let Some(&(key, _)) = rest.first() {
            let run = rest.iter().take_while(|(k, _)| *k == key).count();
            let (waiters, after) = rest.split_at(run);
            rest = after;
            let result = match (&reply, items.as_mut()) {
                (Err(e), _) => Err(CountError::Redis(*e)),
                (Ok(_), Some(items)) => match items.next() {
                    Some(item) => counted(Ok(item)),
                    None => Err(CountError::Redis(RedisError::Protocol)),
                },
                (Ok(reply), None) if keys == 1 => counted(Ok(*reply)),
                (Ok(reply), None) => Err(CountError::NotCounted(*reply)),
            };
            match result {
                Ok(total) => {
                    for (i, value) in increments::shares(total.value, waiters) {
                        let count = Count {
                            value,
                            repaired: total.repaired.filter(|_| i == 0),
                        };
                        if let Some((_, waiter)) = waiters.get(i) {
                            self.deliver_count(waiter.stream, Ok(count), switch_context);
                        }
                    }
                }
                Err(e) => {
                    for (_, waiter) in waiters {
                        self.deliver_count(waiter.stream, Err(e), switch_context);
                    }
                }
            }
        }
        self.increments.delivering = delivering;
    }

    /// Sends every key that waits, in calls of up to
    /// [`KEYS_PER_CALL`](increments::KEYS_PER_CALL) keys: all keys, then
    /// each key's ttl and amount. The requests of a call the host refuses
    /// get the refusal.
    fn send_waiting(&mut self, switch_context: bool) {
        loop {
            let Filter {
                host,
                redis,
                calls,
                increments,
                ..
            } = self;
            let Some(call) = increments.next_group() else {
                return;
            };
            let sent = match redis.as_mut() {
                Some(client) => {
                    let mut command = Redis {
                        client,
                        host,
                        calls,
                        owner: Owner::Shared(call),
                    }
                    .evalsha(&increments::COUNT);
                    for (key, _, _) in increments.group() {
                        command = command.key(key);
                    }
                    for (_, ttl, sum) in increments.group() {
                        command = command
                            .arg_int(increments::clamp(ttl))
                            .arg_int(increments::clamp(sum));
                    }
                    command.send()
                }
                None => Err(RedisError::NotConfigured),
            };
            if let Err(e) = sent {
                increments.refuse(call);
                let refused = core::mem::take(&mut self.increments.refused);
                for waiter in &refused {
                    self.deliver_count(waiter.stream, Err(CountError::Redis(e)), switch_context);
                }
                self.increments.refused = refused;
            }
        }
    }

    /// Gives one request its count, if it is still there.
    fn deliver_count(
        &mut self,
        stream: StreamId,
        count: Result<Count<'_>, CountError<'_>>,
        switch_context: bool,
    ) {
        let Some(slot) = self.live_slot(stream) else {
            // The request has ended: its count is moot, but a failure
            // still reaches the root, as for its other calls.
            if let Err(e) = count {
                self.adopted_failure(e);
            }
            return;
        };
        slot.counting = false;
        let context_id = slot.context_id;
        if switch_context {
            self.host.set_effective_context(context_id);
        }
        self.resume_after(stream, |cx| P::on_count(cx, count));
    }

    /// An increment of a request that has ended failed: the root hears
    /// of it with [`ADOPTED`](crate::ADOPTED).
    fn adopted_failure(&mut self, error: CountError<'_>) {
        let reply = match error {
            CountError::Redis(e) => Err(e),
            CountError::NotCounted(reply) => Ok(reply),
        };
        let io = RootIo {
            host: &mut self.host,
            redis: self.redis.as_mut(),
            calls: &mut self.calls,
            counters: &mut self.pending,
            log_level: self.log_level,
            plugin: P::NAME,
        };
        P::on_root_reply(io, crate::ADOPTED, reply);
    }

    /// Runs a reply handler and, if it says go on, takes the request on
    /// from where it waited.
    fn resume_after(&mut self, stream: StreamId, handler: impl FnOnce(Cx<'_, '_, P, H>) -> Flow) {
        let (action, waiting) = self.run_at(stream, None, handler);
        if action != Action::Continue {
            return;
        }
        match waiting {
            Some((direction, Stage::Headers)) => {
                let _ = self.after_headers(stream, direction, false);
                if direction == Direction::Request {
                    self.release_deferred(stream);
                }
            }
            Some((direction, stage @ (Stage::Body | Stage::Chunk))) => {
                if stage == Stage::Chunk {
                    // The proxy sends what it held; its next body callback
                    // counts from an empty buffer.
                    if let Some(half) = self.half(stream, direction) {
                        half.seen = 0;
                    }
                }
                self.host.resume(direction);
                if direction == Direction::Request {
                    self.release_deferred(stream);
                }
            }
            None => {}
        }
    }

    /// Runs one handler for one request and turns its [`Flow`] into an
    /// [`Action`]; `direction` and `stage` say where a pause would wait.
    fn run(
        &mut self,
        id: StreamId,
        direction: Direction,
        stage: Stage,
        handler: impl FnOnce(Cx<'_, '_, P, H>) -> Flow,
    ) -> Action {
        self.run_at(id, Some((direction, stage)), handler).0
    }

    /// [`Filter::run`] where a pause would wait at `at`, or, for `None`,
    /// where the request waited before (a reply handler); also returns that
    /// earlier wait, read in the same lookup of the slot as the run.
    fn run_at(
        &mut self,
        id: StreamId,
        at: Option<(Direction, Stage)>,
        handler: impl FnOnce(Cx<'_, '_, P, H>) -> Flow,
    ) -> (Action, Option<(Direction, Stage)>) {
        let Filter {
            host,
            compiled,
            redis,
            pending,
            log_level,
            slots,
            calls,
            rewritten,
            replaced,
            increments,
            ..
        } = self;
        let Some(slot) = slots
            .get_mut(id.slot as usize)
            .filter(|s| s.live && s.generation == id.generation)
        else {
            return (Action::Continue, None);
        };
        let waited = slot.waiting;
        let Some(config) = compiled.as_ref().and_then(|c| c.get().get(slot.choice)) else {
            return (Action::Continue, waited);
        };
        if slot.responded {
            // The plugin answered this request itself: its handlers are done,
            // and the later phases are the local answer on its way out,
            // which must not be held.
            return (Action::Continue, waited);
        }
        let (direction, stage) = at.or(waited).unwrap_or((Direction::Request, Stage::Body));
        // Only body handlers are told which bytes they were given; a run in
        // the headers stage (every run of a plugin that reads no body)
        // skips reading the half.
        let body = (stage != Stage::Headers).then(|| {
            let half = slot
                .halves
                .get(index(direction))
                .copied()
                .unwrap_or_default();
            crate::io::BodyAccess {
                direction,
                start: half.seen,
                len: half.size - half.seen.min(half.size),
                headers_held: half.headers_held,
            }
        });
        slot.waiting = None;
        let cx = Cx {
            config,
            state: &mut slot.state,
            io: Io {
                body,
                rewritten,
                replaced,
                host,
                redis: redis.as_mut(),
                calls,
                stream: id,
                counters: pending,
                log_level: *log_level,
                plugin: P::NAME,
                responded: &mut slot.responded,
                increments,
                counting: &mut slot.counting,
            },
        };
        let action = match handler(cx) {
            Flow::Continue => Action::Continue,
            Flow::Responded(_) => Action::Pause,
            Flow::Pause if slot.counting || calls.waits(id) => {
                slot.waiting = Some((direction, stage));
                Action::Pause
            }
            Flow::Pause if stage == Stage::Chunk => Action::Pause,
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
        };
        (action, waited)
    }
}

/// Whether a handler of the request waits on a call. A response arriving
/// then is deferred: with the headers held until the body is read (the
/// proxy honours `HeaderStopIteration`), the upstream cannot answer that
/// early; without the hold it can, and the plugin must still decide on the
/// request first. Only a call is waited for, never a body: once the
/// upstream's answer is complete the proxy drops request body it has not
/// delivered yet, so a wait for it would never end.
fn request_pending<S>(slot: &Slot<S>) -> bool {
    matches!(slot.waiting, Some((Direction::Request, _)))
}

/// Lets held headers go without their body: the length may change later,
/// so a plugin that rewrites bodies loses `content-length` (the proxy then
/// sends the body chunked).
fn release_headers<P: Plugin, H: Host>(host: &mut H, direction: Direction) {
    if P::REWRITES_BODY && body_mode::<P>(direction) == BodyMode::Buffer {
        let map = match direction {
            Direction::Request => HeaderMap::Request,
            Direction::Response => HeaderMap::Response,
        };
        host.set_header(map, "content-length", None);
    }
}

/// A reply of the counting script as a count, or why it is none.
fn counted(reply: Result<crate::Reply<'_>, RedisError>) -> Result<Count<'_>, CountError<'_>> {
    let reply = reply.map_err(CountError::Redis)?;
    Count::of(&reply).ok_or(CountError::NotCounted(reply))
}
