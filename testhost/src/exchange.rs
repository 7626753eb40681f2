//! One request through the module the way Envoy/Higress drives a stream:
//! request headers, body chunks (cumulative buffered size), the upstream's
//! response headers and body, then log, done and delete. Redis and HTTP
//! call answers are delivered after each callback, before the next chunk
//! arrives. A paused direction with nothing pending waits on the module's
//! ticks (virtual time, up to a minute); one that nothing resumes is a hang.

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
    /// Body chunks; empty means the headers end the response.
    pub body: Vec<Vec<u8>>,
}

impl Default for Upstream {
    fn default() -> Self {
        Self {
            status: 200,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}

/// One request to replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Request headers including pseudo-headers (`:method`, `:path`,
    /// `:authority`); keys are lower-cased on the way in.
    pub headers: Pairs,
    /// Body chunks; empty means the headers end the request.
    pub body: Vec<Vec<u8>>,
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

    /// Sets what the upstream answers.
    pub fn answer(mut self, status: u32, headers: &[(&str, &str)], body: &[&[u8]]) -> Self {
        self.upstream = Upstream {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase().into_bytes(), v.as_bytes().to_vec()))
                .collect(),
            body: body.iter().map(|c| c.to_vec()).collect(),
        };
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
    /// What the upstream got, when the request reached it.
    pub upstream_headers: Option<Pairs>,
    pub upstream_body: Vec<u8>,
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
enum Stop {
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
enum Dir {
    Request,
    Response,
}

/// Where one direction of the stream stands.
#[derive(Default)]
struct Flow {
    /// Headers not yet passed on.
    headers_held: bool,
    /// StopAll: body callbacks wait (data buffered) until resumed.
    stop_all: bool,
    /// The last body callback kept the data buffered.
    body_held: bool,
    /// Data the filter holds.
    buffered: Vec<u8>,
    /// Data passed on.
    passed: Vec<u8>,
    /// The end of stream reached this filter's body callback.
    eos_seen: bool,
    /// The end of stream has been passed on.
    eos_passed: bool,
    /// Body chunks follow the headers (else the headers end the stream).
    has_body: bool,
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
            // stopped, from the filter itself on.
            flow.stop_all = false;
            if !flow.buffered.is_empty() || flow.eos_seen {
                return self.body_callback(id, dir, flow, flow.eos_seen);
            }
        } else if flow.body_held {
            flow.body_held = false;
            flow.passed.append(&mut flow.buffered);
            flow.eos_passed = flow.eos_seen;
        }
        Ok(())
    }

    /// Delivers pending call answers, applying resumes after each.
    fn settle(&mut self, id: u32, dir: Dir, flow: &mut Flow) -> Result<(), Stop> {
        self.check(id)?;
        self.take_resume(id, dir, flow)?;
        while self.deliver_one()? {
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
        if let Some(s) = self.stream_mut(id) {
            let slot = match dir {
                Dir::Request => &mut s.request_body,
                Dir::Response => &mut s.response_body,
            };
            *slot = std::mem::take(&mut flow.buffered);
        }
        self.enter(id);
        let r = f.call(&mut self.store, (id as i32, size as i32, i32::from(eos)));
        self.leave();
        // The plugin may have changed the buffer it was shown.
        if let Some(s) = self.stream_mut(id) {
            let slot = match dir {
                Dir::Request => &mut s.request_body,
                Dir::Response => &mut s.response_body,
            };
            flow.buffered = std::mem::take(slot);
        }
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

    /// Runs one direction to completion: headers, chunks, waits.
    fn run_direction(&mut self, id: u32, dir: Dir, chunks: &[Vec<u8>]) -> Result<Flow, Stop> {
        let mut flow = Flow::default();
        let count = match (dir, self.store.data().streams.get(&id)) {
            (Dir::Request, Some(s)) => s.request_headers.len(),
            (Dir::Response, Some(s)) => s.response_headers.len(),
            _ => 0,
        };
        let no_body = chunks.is_empty();
        flow.has_body = !no_body;
        if no_body {
            flow.eos_seen = true;
        }
        self.headers_callback(id, dir, count, no_body, &mut flow)?;
        if no_body && !flow.headers_held {
            flow.eos_passed = true;
        }
        self.settle(id, dir, &mut flow)?;
        let mut waited_ms = 0u64;
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            flow.buffered.extend_from_slice(chunk);
            flow.eos_seen = last;
            if !flow.stop_all {
                self.body_callback(id, dir, &mut flow, last)?;
            }
            self.settle(id, dir, &mut flow)?;
        }
        loop {
            let waiting = if flow.stop_all || flow.headers_held {
                Some(match dir {
                    Dir::Request => "request headers",
                    Dir::Response => "response headers",
                })
            } else if flow.body_held || !flow.eos_passed {
                Some(match dir {
                    Dir::Request => "request body",
                    Dir::Response => "response body",
                })
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
            self.settle(id, dir, &mut flow)?;
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
        let fuel_before = self.fuel_used();
        let (calls_before, _) = self.host_calls();
        let http_before = self.store.data().http_calls.len();
        let id = self.next_id;
        self.next_id += 1;
        let mut ex = Exchange {
            verdict: Verdict::Forwarded,
            status: 0,
            response_headers: Vec::new(),
            response_body: Vec::new(),
            upstream_headers: None,
            upstream_body: Vec::new(),
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
        if let Some(why) = self.broken.clone() {
            ex.verdict = Verdict::Trap(format!("the module trapped earlier: {why}"));
            return ex;
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
        let outcome = self.drive(id, request, &mut ex);
        if let Err(stop) = outcome {
            match stop {
                Stop::Hang(waiting) => ex.verdict = Verdict::Hang { waiting },
                Stop::Reset => ex.verdict = Verdict::Reset,
                Stop::Trap(why) => {
                    self.broken = Some(why.clone());
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
        // The records move into the exchange: a long run keeps no history.
        let state = self.store.data_mut();
        ex.redis_calls = state.redis.take_calls();
        ex.logs = std::mem::take(&mut state.logs);
        ex.http_calls = state
            .http_calls
            .get(http_before..)
            .unwrap_or_default()
            .to_vec();
        state.http_calls.retain(|c| !c.delivered);
        ex.fuel_total = self.fuel_used();
        ex.host_calls_total = self.host_calls().0;
        ex.fuel = ex.fuel_total - fuel_before;
        ex.host_calls = ex.host_calls_total - calls_before;
        ex.memory_bytes = self.memory_bytes();
        ex
    }

    fn drive(&mut self, id: u32, request: &Request, ex: &mut Exchange) -> Result<(), Stop> {
        let root = self.store.data().root_id as i32;
        if let Some(f) = self.exports.context_create.clone() {
            self.enter(id);
            let r = f.call(&mut self.store, (id as i32, root));
            self.leave();
            r?;
        }
        let (response_headers, response_chunks) =
            match self.run_direction(id, Dir::Request, &request.body) {
                Ok(flow) => {
                    let s = self.stream_mut(id).ok_or(Stop::Reset)?;
                    ex.upstream_headers = Some(s.request_headers.clone());
                    ex.upstream_body = flow.passed;
                    let up = &request.upstream;
                    let mut headers =
                        vec![(b":status".to_vec(), up.status.to_string().into_bytes())];
                    headers.extend(
                        up.headers
                            .iter()
                            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone())),
                    );
                    (headers, up.body.clone())
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
                    (Self::local_reply_headers(&local), body)
                }
                Err(other) => return Err(other),
            };
        if let Some(s) = self.stream_mut(id) {
            s.response_headers = response_headers;
            // A local reply passes through the encoder chain, this filter
            // included; a second one cannot replace it.
        }
        match self.run_direction(id, Dir::Response, &response_chunks) {
            Ok(flow) => {
                let s = self.stream_mut(id).ok_or(Stop::Reset)?;
                ex.response_headers = s.response_headers.clone();
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
