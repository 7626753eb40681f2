//! One request through the module the way Envoy/Higress drives a stream:
//! request headers, body chunks (cumulative buffered size), trailers, the
//! upstream's response headers, body and trailers, then log, done and
//! delete. Redis and HTTP call answers are delivered after each callback,
//! before the next chunk arrives. A paused direction with nothing pending
//! waits on the module's ticks (virtual time, up to a minute); one that
//! nothing resumes is a hang. Several streams open at once are
//! `crate::streams`' business; it drives them with the steps here.

use std::collections::BTreeMap;

use crate::abi::action;
use crate::host::{Error, Host};
use crate::redis::RedisCall;
use crate::state::{HttpCall, LocalResponse, LogLine, Pairs, StreamData};

/// How long (virtual time) a paused stream waits for its module's ticks to
/// resume it before it counts as hung: Envoy's default stream idle timeout
/// is 5 minutes; a minute is already far past any plugin's intent.
const IDLE_TIMEOUT_MS: u64 = 60_000;

/// What the upstream answers when the request reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub status: u32,
    pub headers: Pairs,
    /// Body chunks; empty (and no trailers) means the headers end the
    /// response.
    pub body: Vec<Vec<u8>>,
    /// Trailers; when set they, not the last chunk, end the response.
    pub trailers: Pairs,
}

impl Default for Upstream {
    fn default() -> Self {
        Self {
            status: 200,
            headers: Vec::new(),
            body: Vec::new(),
            trailers: Vec::new(),
        }
    }
}

/// One request to replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Request headers including pseudo-headers (`:method`, `:path`,
    /// `:authority`); keys are lower-cased on the way in.
    pub headers: Pairs,
    /// Body chunks; empty (and no trailers) means the headers end the
    /// request.
    pub body: Vec<Vec<u8>>,
    /// Trailers; when set they, not the last chunk, end the request.
    pub trailers: Pairs,
    pub upstream: Upstream,
    /// Properties of this stream only (e.g. `source.address`).
    pub properties: BTreeMap<String, Vec<u8>>,
}

impl Request {
    /// A request with these headers and no body.
    pub fn get(path: &str) -> Self {
        Self {
            headers: vec![
                (b":method".to_vec(), b"GET".to_vec()),
                (b":path".to_vec(), path.as_bytes().to_vec()),
                (b":authority".to_vec(), b"example.com".to_vec()),
                (b":scheme".to_vec(), b"http".to_vec()),
            ],
            ..Self::default()
        }
    }

    /// A POST with the body in the given chunks.
    pub fn post(path: &str, chunks: &[&[u8]]) -> Self {
        let mut r = Self::get(path);
        if let Some(m) = r.headers.first_mut() {
            m.1 = b"POST".to_vec();
        }
        r.body = chunks.iter().map(|c| c.to_vec()).collect();
        r
    }

    /// Adds a request header.
    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers
            .push((name.to_ascii_lowercase().into_bytes(), value.into()));
        self
    }

    /// Adds a request trailer: the request then ends with its trailers,
    /// as a gRPC or chunked upload with trailers does.
    pub fn trailer(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.trailers
            .push((name.to_ascii_lowercase().into_bytes(), value.into()));
        self
    }

    /// Sets what the upstream answers.
    pub fn answer(mut self, status: u32, headers: &[(&str, &str)], body: &[&[u8]]) -> Self {
        self.upstream = Upstream {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase().into_bytes(), v.as_bytes().to_vec()))
                .collect(),
            body: body.iter().map(|c| c.to_vec()).collect(),
            trailers: Vec::new(),
        };
        self
    }

    /// Adds a trailer to the upstream's answer (set the answer first): the
    /// response then ends with its trailers, as a gRPC answer does.
    pub fn answer_trailer(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.upstream
            .trailers
            .push((name.to_ascii_lowercase().into_bytes(), value.into()));
        self
    }
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It reached the upstream and the upstream's answer reached the client.
    Forwarded,
    /// The plugin answered it itself (`proxy_send_local_response`).
    LocalResponse { details: String },
    /// The plugin paused a direction that nothing resumes.
    Hang { waiting: &'static str },
    /// The plugin closed the stream (`proxy_close_stream`).
    Reset,
    /// The module trapped (or trapped before): the VM is dead.
    Trap(String),
}

/// Everything one request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub verdict: Verdict,
    /// What the client got (0 for a hang, reset or trap).
    pub status: u32,
    pub response_headers: Pairs,
    pub response_body: Vec<u8>,
    /// The response trailers the client got (empty when none).
    pub response_trailers: Pairs,
    /// What the upstream got, when the request reached it.
    pub upstream_headers: Option<Pairs>,
    pub upstream_body: Vec<u8>,
    /// The request trailers the upstream got (empty when none).
    pub upstream_trailers: Pairs,
    pub redis_calls: Vec<RedisCall>,
    pub http_calls: Vec<HttpCall>,
    pub logs: Vec<LogLine>,
    /// Properties the plugin set on the stream (filter state).
    pub properties: BTreeMap<String, Vec<u8>>,
    pub fuel: u64,
    pub host_calls: u64,
    /// Fuel and host calls since the module was loaded (for averages).
    pub fuel_total: u64,
    pub host_calls_total: u64,
    pub memory_bytes: usize,
}

impl Exchange {
    /// A response header's value (the first one), as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.response_headers
            .iter()
            .find(|(k, _)| k.as_slice() == name.as_bytes())
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// A header the upstream received, as text.
    pub fn upstream_header(&self, name: &str) -> Option<String> {
        self.upstream_headers.as_ref().and_then(|h| {
            h.iter()
                .find(|(k, _)| k.as_slice() == name.as_bytes())
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        })
    }
}

/// Why a stream stopped before completing.
pub(crate) enum Stop {
    Local(LocalResponse),
    Reset,
    Hang(&'static str),
    Trap(String),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Trap(e.0)
    }
}

impl From<wasmtime::Error> for Stop {
    fn from(e: wasmtime::Error) -> Self {
        Stop::Trap(format!("{e:#}"))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    Request,
    Response,
}

impl Dir {
    /// What a paused direction waits on, for [`Verdict::Hang`].
    fn waiting(self, part: Part) -> &'static str {
        match (self, part) {
            (Dir::Request, Part::Headers) => "request headers",
            (Dir::Request, Part::Body) => "request body",
            (Dir::Request, Part::Trailers) => "request trailers",
            (Dir::Response, Part::Headers) => "response headers",
            (Dir::Response, Part::Body) => "response body",
            (Dir::Response, Part::Trailers) => "response trailers",
        }
    }
}

#[derive(Clone, Copy)]
enum Part {
    Headers,
    Body,
    Trailers,
}

/// Where one direction of the stream stands.
#[derive(Default)]
pub(crate) struct Flow {
    /// Headers not yet passed on.
    headers_held: bool,
    /// StopAll: body and trailer callbacks wait (data buffered) until resumed.
    stop_all: bool,
    /// The last body callback kept the data buffered.
    body_held: bool,
    /// Data the filter holds.
    buffered: Vec<u8>,
    /// Data passed on.
    passed: Vec<u8>,
    /// The end of stream reached the host (the last chunk, or the trailers).
    eos_seen: bool,
    /// The end of stream has been passed on.
    eos_passed: bool,
    /// Body chunks or trailers follow the headers (else the headers end
    /// the stream).
    has_body: bool,
    /// How many trailers end this direction; 0 when the last chunk (or the
    /// headers) end it.
    trailers: usize,
    /// The trailers reached the host.
    trailers_arrived: bool,
    /// The trailers callback ran.
    trailers_called: bool,
    /// The trailers callback paused and nothing resumed it yet.
    trailers_held: bool,
}

impl Flow {
    /// The end of stream as a body callback is told it: with trailers the
    /// body never carries it, as in Envoy.
    fn body_eos(&self) -> bool {
        self.eos_seen && self.trailers == 0
    }

    /// Passes on everything held, up to the end of stream: what continuing
    /// from the trailers does.
    fn pass_all(&mut self) {
        self.headers_held = false;
        self.body_held = false;
        self.trailers_held = false;
        self.passed.append(&mut self.buffered);
        self.eos_passed = true;
    }
}

/// A stream whose request the module has been fed, and the counts its
/// exchange is measured from.
pub(crate) struct Begun {
    pub id: u32,
    flow: Result<Flow, Stop>,
    fuel_before: u64,
    calls_before: u64,
}

impl Host {
    fn stream_mut(&mut self, id: u32) -> Option<&mut StreamData> {
        self.store.data_mut().streams.get_mut(&id)
    }

    /// Local response, reset or nothing, after a callback.
    fn check(&mut self, id: u32) -> Result<(), Stop> {
        let Some(s) = self.stream_mut(id) else {
            return Ok(());
        };
        if s.closed {
            return Err(Stop::Reset);
        }
        if let Some(local) = s.local_response.take() {
            s.local_sent = true;
            return Err(Stop::Local(local));
        }
        Ok(())
    }

    /// Applies a `proxy_continue_stream` the plugin made.
    fn take_resume(&mut self, id: u32, dir: Dir, flow: &mut Flow) -> Result<(), Stop> {
        let resumed = match self.stream_mut(id) {
            Some(s) => match dir {
                Dir::Request => std::mem::take(&mut s.resume_request),
                Dir::Response => std::mem::take(&mut s.resume_response),
            },
            None => false,
        };
        if !resumed {
            return Ok(());
        }
        flow.headers_held = false;
        if !flow.has_body {
            // The headers carry the end of stream.
            flow.stop_all = false;
            flow.eos_passed = flow.eos_seen;
        } else if flow.stop_all {
            // Envoy hands the data that arrived meanwhile to the filter that
            // stopped, from the filter itself on, then the trailers.
            flow.stop_all = false;
            let eos = flow.body_eos();
            if !flow.buffered.is_empty() || eos {
                self.body_callback(id, dir, flow, eos)?;
            }
            if flow.trailers_arrived && !flow.trailers_called {
                self.trailers_callback(id, dir, flow)?;
            }
        } else if flow.trailers_held {
            flow.pass_all();
        } else if flow.body_held {
            flow.body_held = false;
            flow.passed.append(&mut flow.buffered);
            flow.eos_passed = flow.body_eos();
        }
        Ok(())
    }

    /// Applies what the last callback did; with `deliver`, then delivers
    /// pending call answers, applying resumes after each.
    fn settle(&mut self, id: u32, dir: Dir, flow: &mut Flow, deliver: bool) -> Result<(), Stop> {
        self.check(id)?;
        self.take_resume(id, dir, flow)?;
        while deliver && self.deliver_one()? {
            self.check(id)?;
            self.take_resume(id, dir, flow)?;
        }
        Ok(())
    }

    fn headers_callback(
        &mut self,
        id: u32,
        dir: Dir,
        count: usize,
        eos: bool,
        flow: &mut Flow,
    ) -> Result<(), Stop> {
        let f = match dir {
            Dir::Request => self.exports.request_headers.clone(),
            Dir::Response => self.exports.response_headers.clone(),
        };
        let Some(f) = f else {
            return Ok(());
        };
        self.enter(id);
        let r = f.call(&mut self.store, (id as i32, count as i32, i32::from(eos)));
        self.leave();
        match r? {
            action::CONTINUE | action::CONTINUE_AND_END_STREAM => {}
            action::STOP_ITERATION if self.store.data().abi.honours_header_stop_iteration() => {
                flow.headers_held = true;
            }
            _ => {
                flow.headers_held = true;
                flow.stop_all = true;
            }
        }
        Ok(())
    }

    fn body_callback(&mut self, id: u32, dir: Dir, flow: &mut Flow, eos: bool) -> Result<(), Stop> {
        let f = match dir {
            Dir::Request => self.exports.request_body.clone(),
            Dir::Response => self.exports.response_body.clone(),
        };
        let Some(f) = f else {
            flow.passed.append(&mut flow.buffered);
            flow.eos_passed = eos;
            flow.headers_held = false;
            return Ok(());
        };
        let size = flow.buffered.len();
        self.show_body(id, dir, flow);
        self.enter(id);
        let r = f.call(&mut self.store, (id as i32, size as i32, i32::from(eos)));
        self.leave();
        self.take_body(id, dir, flow);
        match r? {
            action::CONTINUE => {
                flow.headers_held = false;
                flow.body_held = false;
                flow.passed.append(&mut flow.buffered);
                flow.eos_passed = eos;
            }
            _ => flow.body_held = true,
        }
        Ok(())
    }

    /// Lends the held body to the stream's buffer for one callback.
    fn show_body(&mut self, id: u32, dir: Dir, flow: &mut Flow) {
        if let Some(s) = self.stream_mut(id) {
            let slot = match dir {
                Dir::Request => &mut s.request_body,
                Dir::Response => &mut s.response_body,
            };
            *slot = std::mem::take(&mut flow.buffered);
        }
    }

    /// Takes the body back after the callback: the plugin may have changed
    /// the buffer it was shown.
    fn take_body(&mut self, id: u32, dir: Dir, flow: &mut Flow) {
        if let Some(s) = self.stream_mut(id) {
            let slot = match dir {
                Dir::Request => &mut s.request_body,
                Dir::Response => &mut s.response_body,
            };
            flow.buffered = std::mem::take(slot);
        }
    }

    /// `proxy_on_*_trailers(id, count)`. Continuing from the trailers
    /// passes on whatever the filter held with them, as Envoy does; a module
    /// without the callback continues.
    fn trailers_callback(&mut self, id: u32, dir: Dir, flow: &mut Flow) -> Result<(), Stop> {
        flow.trailers_called = true;
        let f = match dir {
            Dir::Request => self.exports.request_trailers.clone(),
            Dir::Response => self.exports.response_trailers.clone(),
        };
        let next = match f {
            Some(f) => {
                // The body the filter held is its to read and change while
                // its trailers are handled, as Envoy's buffered body is.
                self.show_body(id, dir, flow);
                self.enter(id);
                let r = f.call(&mut self.store, (id as i32, flow.trailers as i32));
                self.leave();
                self.take_body(id, dir, flow);
                r?
            }
            None => action::CONTINUE,
        };
        if next == action::CONTINUE {
            flow.pass_all();
        } else {
            flow.trailers_held = true;
        }
        Ok(())
    }

    /// Feeds one direction to the module as it arrives: headers, body
    /// chunks, trailers. With `deliver`, call answers are handed over after
    /// each callback, as a proxy's event loop would between reads; without,
    /// they wait for [`Host::deliver`](crate::Host::deliver).
    fn feed_direction(
        &mut self,
        id: u32,
        dir: Dir,
        chunks: &[Vec<u8>],
        trailers: &Pairs,
        deliver: bool,
    ) -> Result<Flow, Stop> {
        let mut flow = Flow::default();
        let count = match (dir, self.store.data().streams.get(&id)) {
            (Dir::Request, Some(s)) => s.request_headers.len(),
            (Dir::Response, Some(s)) => s.response_headers.len(),
            _ => 0,
        };
        flow.trailers = trailers.len();
        flow.has_body = !chunks.is_empty() || flow.trailers > 0;
        let headers_end = !flow.has_body;
        flow.eos_seen = headers_end;
        self.headers_callback(id, dir, count, headers_end, &mut flow)?;
        if headers_end && !flow.headers_held {
            flow.eos_passed = true;
        }
        self.settle(id, dir, &mut flow, deliver)?;
        for (i, chunk) in chunks.iter().enumerate() {
            flow.buffered.extend_from_slice(chunk);
            flow.eos_seen = i + 1 == chunks.len() && flow.trailers == 0;
            if !flow.stop_all {
                let eos = flow.body_eos();
                self.body_callback(id, dir, &mut flow, eos)?;
            }
            self.settle(id, dir, &mut flow, deliver)?;
        }
        if flow.trailers > 0 {
            if let Some(s) = self.stream_mut(id) {
                match dir {
                    Dir::Request => s.request_trailers = trailers.clone(),
                    Dir::Response => s.response_trailers = trailers.clone(),
                }
            }
            flow.trailers_arrived = true;
            flow.eos_seen = true;
            if !flow.stop_all {
                self.trailers_callback(id, dir, &mut flow)?;
            }
            self.settle(id, dir, &mut flow, deliver)?;
        }
        Ok(flow)
    }

    /// Waits until a fed direction has passed its end of stream on,
    /// delivering answers and letting virtual time pass for the module's
    /// ticks; a direction nothing resumes is a hang.
    fn wait_direction(&mut self, id: u32, dir: Dir, mut flow: Flow) -> Result<Flow, Stop> {
        let mut waited_ms = 0u64;
        loop {
            self.settle(id, dir, &mut flow, true)?;
            let waiting = if flow.stop_all || flow.headers_held {
                Some(dir.waiting(Part::Headers))
            } else if flow.trailers_held {
                Some(dir.waiting(Part::Trailers))
            } else if flow.body_held || !flow.eos_passed {
                Some(dir.waiting(Part::Body))
            } else {
                None
            };
            let Some(waiting) = waiting else {
                return Ok(flow);
            };
            if !self.has_pending() {
                // Time passes while the stream waits: the module's ticks
                // may resume it (a timer), up to the idle timeout.
                let period = u64::from(self.tick_period_ms());
                if period == 0 || waited_ms >= IDLE_TIMEOUT_MS {
                    return Err(Stop::Hang(waiting));
                }
                self.advance(std::time::Duration::from_millis(period))?;
                waited_ms += period;
            }
        }
    }

    fn finish_stream(&mut self, id: u32) -> Result<(), Error> {
        self.enter(id);
        let mut result = Ok(());
        if let Some(f) = self.exports.log.clone() {
            result = result.and(f.call(&mut self.store, id as i32).map(|_| ()));
        }
        if let Some(f) = self.exports.done.clone() {
            result = result.and(f.call(&mut self.store, id as i32).map(|_| ()));
        }
        if let Some(f) = self.exports.delete.clone() {
            result = result.and(f.call(&mut self.store, id as i32).map(|_| ()));
        }
        self.leave();
        result?;
        self.drain()
    }

    fn local_reply_headers(local: &LocalResponse) -> Pairs {
        let mut headers = vec![(b":status".to_vec(), local.status.to_string().into_bytes())];
        headers.extend(local.headers.iter().cloned());
        if !local.body.is_empty() {
            if !headers.iter().any(|(k, _)| k.as_slice() == b"content-type") {
                headers.push((b"content-type".to_vec(), b"text/plain".to_vec()));
            }
            headers.push((
                b"content-length".to_vec(),
                local.body.len().to_string().into_bytes(),
            ));
        }
        headers
    }

    /// Replays one request through the module.
    pub fn run(&mut self, request: &Request) -> Exchange {
        let begun = self.begin(request, true);
        self.complete(begun, request)
    }

    /// Opens a stream for `request` and feeds the module its request
    /// (headers, chunks, trailers); `deliver` as in `feed_direction`.
    pub(crate) fn begin(&mut self, request: &Request, deliver: bool) -> Begun {
        let id = self.next_id;
        self.next_id += 1;
        let mut begun = Begun {
            id,
            flow: Err(Stop::Reset),
            fuel_before: self.fuel_used(),
            calls_before: self.host_calls().0,
        };
        if let Some(why) = &self.broken {
            begun.flow = Err(Stop::Trap(format!("the module trapped earlier: {why}")));
            return begun;
        }
        let headers = request
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        self.store.data_mut().streams.insert(
            id,
            StreamData {
                request_headers: headers,
                properties: request.properties.clone().into_iter().collect(),
                ..StreamData::default()
            },
        );
        begun.flow = self.create_context(id).and_then(|()| {
            self.feed_direction(id, Dir::Request, &request.body, &request.trailers, deliver)
        });
        begun
    }

    /// Applies what happened to a begun stream's request since it was fed
    /// (see [`Host::step`](crate::Host::step)).
    pub(crate) fn step_request(&mut self, begun: &mut Begun) {
        let id = begun.id;
        if let Ok(flow) = &mut begun.flow {
            if let Err(stop) = self.settle(id, Dir::Request, flow, false) {
                begun.flow = Err(stop);
            }
        }
    }

    fn create_context(&mut self, id: u32) -> Result<(), Stop> {
        let root = self.store.data().root_id as i32;
        if let Some(f) = self.exports.context_create.clone() {
            self.enter(id);
            let r = f.call(&mut self.store, (id as i32, root));
            self.leave();
            r?;
        }
        Ok(())
    }

    /// Drives a begun stream to its end and tells what it did.
    pub(crate) fn complete(&mut self, begun: Begun, request: &Request) -> Exchange {
        let mut ex = Exchange {
            verdict: Verdict::Forwarded,
            status: 0,
            response_headers: Vec::new(),
            response_body: Vec::new(),
            response_trailers: Vec::new(),
            upstream_headers: None,
            upstream_body: Vec::new(),
            upstream_trailers: Vec::new(),
            redis_calls: Vec::new(),
            http_calls: Vec::new(),
            logs: Vec::new(),
            properties: BTreeMap::new(),
            fuel: 0,
            host_calls: 0,
            fuel_total: 0,
            host_calls_total: 0,
            memory_bytes: 0,
        };
        let id = begun.id;
        let was_broken = self.broken.is_some();
        if let Err(stop) = self.drive(id, begun.flow, request, &mut ex) {
            match stop {
                Stop::Hang(waiting) => ex.verdict = Verdict::Hang { waiting },
                Stop::Reset => ex.verdict = Verdict::Reset,
                Stop::Trap(why) => {
                    if !was_broken {
                        self.broken = Some(why.clone());
                    }
                    ex.verdict = Verdict::Trap(why);
                }
                Stop::Local(_) => {}
            }
        }
        if self.broken.is_none() {
            if let Err(e) = self.finish_stream(id) {
                self.broken = Some(e.0.clone());
                ex.verdict = Verdict::Trap(e.0);
            }
        }
        if let Some(s) = self.store.data_mut().streams.remove(&id) {
            ex.properties = s.properties.into_iter().collect();
        }
        // The records of finished calls move into the exchange: a long run
        // keeps no history. Calls still in flight (another open stream's)
        // stay for the exchange that finishes after them.
        let state = self.store.data_mut();
        ex.redis_calls = state.redis.take_calls();
        ex.logs = std::mem::take(&mut state.logs);
        let (delivered, pending) = std::mem::take(&mut state.http_calls)
            .into_iter()
            .partition(|c| c.delivered);
        ex.http_calls = delivered;
        state.http_calls = pending;
        ex.fuel_total = self.fuel_used();
        ex.host_calls_total = self.host_calls().0;
        ex.fuel = ex.fuel_total - begun.fuel_before;
        ex.host_calls = ex.host_calls_total - begun.calls_before;
        ex.memory_bytes = self.memory_bytes();
        ex
    }

    fn drive(
        &mut self,
        id: u32,
        fed: Result<Flow, Stop>,
        request: &Request,
        ex: &mut Exchange,
    ) -> Result<(), Stop> {
        let (response_headers, response_chunks, response_trailers) = match fed
            .and_then(|flow| self.wait_direction(id, Dir::Request, flow))
        {
            Ok(flow) => {
                let s = self.stream_mut(id).ok_or(Stop::Reset)?;
                ex.upstream_headers = Some(s.request_headers.clone());
                ex.upstream_trailers = s.request_trailers.clone();
                ex.upstream_body = flow.passed;
                let up = &request.upstream;
                let mut headers = vec![(b":status".to_vec(), up.status.to_string().into_bytes())];
                headers.extend(
                    up.headers
                        .iter()
                        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone())),
                );
                let trailers = up
                    .trailers
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                    .collect();
                (headers, up.body.clone(), trailers)
            }
            Err(Stop::Local(local)) => {
                ex.verdict = Verdict::LocalResponse {
                    details: local.details.clone(),
                };
                let body = if local.body.is_empty() {
                    Vec::new()
                } else {
                    vec![local.body.clone()]
                };
                (Self::local_reply_headers(&local), body, Vec::new())
            }
            Err(other) => return Err(other),
        };
        if let Some(s) = self.stream_mut(id) {
            s.response_headers = response_headers;
            // A local reply passes through the encoder chain, this filter
            // included; a second one cannot replace it.
        }
        let response = self
            .feed_direction(
                id,
                Dir::Response,
                &response_chunks,
                &response_trailers,
                true,
            )
            .and_then(|flow| self.wait_direction(id, Dir::Response, flow));
        match response {
            Ok(flow) => {
                let s = self.stream_mut(id).ok_or(Stop::Reset)?;
                ex.response_headers = s.response_headers.clone();
                ex.response_trailers = s.response_trailers.clone();
                ex.response_body = flow.passed;
            }
            Err(Stop::Local(local)) => {
                ex.verdict = Verdict::LocalResponse {
                    details: local.details.clone(),
                };
                ex.response_headers = Self::local_reply_headers(&local);
                ex.response_body = local.body;
            }
            Err(other) => return Err(other),
        }
        ex.status = ex
            .response_headers
            .iter()
            .find(|(k, _)| k.as_slice() == b":status")
            .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
            .unwrap_or(0);
        Ok(())
    }
}
