//! The filter engine: configuration, the pool of request states, and the
//! dispatch of host events to a [`Plugin`]'s handlers.
//!
//! [`Filter`] knows nothing of the ABI: the [`dispatcher`](crate::dispatcher)
//! feeds it the proxy's callbacks, and native tests feed it the same events over a
//! [`FakeHost`](crate::fake::FakeHost). One `Filter` serves every request of
//! a plugin instance (a root context) on one worker.
//!
//! This file routes the request's own events (headers, bodies, trailers,
//! the tick) to the handlers and holds or lets go of the stream. It stands
//! on the pool of request states (`slots`), the `HeaderStopIteration`
//! probe (`probe`) and the counters (`counters`); the configuration
//! (`configure`) and the routing of call replies (`replies`) build on it.

mod configure;
mod counters;
mod probe;
mod replies;
mod slots;

pub use counters::COUNTER_FLUSH;

use crate::calls::{Calls, StreamId};
use crate::ending::StreamEnd;
use crate::host::{BodyBuffer, Direction, HeaderMap, Host, LogLevel};
use crate::increments::Increments;
use crate::io::Io;
use crate::plugin::{BodyMode, Cx, Flow, Plugin};
use crate::raw::Retained;
use crate::redis::{RedisClient, ReplyScratch};
use crate::rules::{Choice, Facts, Rules};
use core::time::Duration;
use counters::Counters;
use probe::{Probe, StopIteration, Tick, HOLD_PROBE};
use slots::{index, request_pending, Half, Slot, Slots, Stage};

/// What the proxy should do with the stream after a callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Go on with the stream.
    Continue,
    /// Hold the stream (a call is in flight, or it was answered locally).
    Pause,
}

/// Default limit of a buffered body.
const DEFAULT_MAX_BODY_BYTES: u64 = 1 << 20;

/// The most bytes of a streamed body a handler is given at once. The proxy
/// hands over however many bytes arrived together, which depends on timing;
/// a larger chunk reaches the handler in pieces of this size (as if the
/// proxy had delivered it so), and the buffers that carry a piece are
/// reserved at configuration, so a streamed body never grows them.
pub const STREAM_PIECE: usize = 16 * 1024;

fn body_mode<P: Plugin>(direction: Direction) -> BodyMode {
    match direction {
        Direction::Request => P::REQUEST_BODY,
        Direction::Response => P::RESPONSE_BODY,
    }
}

type Compiled<P> = Rules<'static, <P as Plugin>::Config<'static>>;

/// One plugin instance: its configuration, Redis client and requests.
pub struct Filter<P: Plugin, H: Host> {
    host: H,
    compiled: Option<Retained<Compiled<P>>>,
    redis: Option<RedisClient>,
    counters: Counters,
    log_level: LogLevel,
    slots: Slots<P::State>,
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
    probe: Probe,
    /// The tick period last asked of the host.
    tick: Duration,
}

impl<P: Plugin, H: Host> core::fmt::Debug for Filter<P, H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Filter")
            .field("plugin", &P::NAME)
            .field("configured", &self.compiled.is_some())
            .field("requests", &self.slots.in_use())
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
            counters: Counters::default(),
            log_level: LogLevel::Info,
            slots: Slots::new(),
            calls: Calls::default(),
            increments: Increments::default(),
            facts: Facts::default(),
            reply: Vec::new(),
            redis_reply: ReplyScratch::default(),
            body: Vec::new(),
            rewritten: Vec::new(),
            replaced: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES as usize,
            probe: Probe::new(),
            tick: Duration::ZERO,
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

    /// Starts tracking a new request of proxy context `context_id`.
    pub fn open_stream(&mut self, context_id: u32) -> StreamId {
        self.slots.open(context_id)
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
        if self.slots.close(id) {
            self.calls.forget(id);
        }
    }

    fn live_slot(&mut self, id: StreamId) -> Option<&mut Slot<P::State>> {
        self.slots.live(id)
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
        match self.probe.tick() {
            Tick::Idle => return,
            Tick::Stop => {
                self.retick();
                return;
            }
            Tick::Scan => {}
        }
        let now = self.host.now_nanos();
        for slot in self.slots.live_mut() {
            let context_id = slot.context_id;
            for direction in [Direction::Request, Direction::Response] {
                let Some(half) = slot.halves.get_mut(index(direction)) else {
                    continue;
                };
                if half.headers_held && half.headers_done && Probe::overdue(half.held_since, now) {
                    if self.probe.missed() {
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
        if self.probe.scanned() {
            self.retick();
        }
    }

    /// Publishes the counts made since the last flush, one host call per
    /// counter that moved. Runs on every tick and when the plugin stops.
    pub fn flush_counters(&mut self) {
        self.counters.flush(&mut self.host);
    }

    /// Asks the host for the tick the filter needs now: fast while the
    /// body probe runs, every [`COUNTER_FLUSH`] while there are counters.
    fn retick(&mut self) {
        let period = if self.probe.ticking() {
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

    /// The time a held request is stamped with, for the probe.
    fn probe_clock(&mut self) -> u64 {
        let host = &self.host;
        self.probe.stamp(|| host.now_nanos())
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
        let stop = self.probe.verdict();
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
        if self.probe.held() {
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
        let held = half.headers_held;
        half.size = size;
        half.complete |= end_of_stream;
        let headers_done = half.headers_done;
        let seen = half.seen;
        if held {
            self.probe.body_while_held();
        }
        match mode {
            BodyMode::Ignore => Action::Continue,
            BodyMode::Stream => {
                let (mut action, size) =
                    self.stream_pieces(id, direction, seen, size, end_of_stream);
                let waiting = self.live_slot(id).is_some_and(|s| s.waiting.is_some());
                if action == Action::Pause && !waiting && size > max {
                    // Held back past the limit: let the bytes go rather
                    // than hit the proxy's own buffer limit.
                    self.counters.count_over_limit();
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
        self.counters.count_over_limit();
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
            counters,
            log_level,
            slots,
            calls,
            rewritten,
            replaced,
            increments,
            ..
        } = self;
        let Some(slot) = slots.live(id) else {
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
                counters: &mut counters.pending,
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
