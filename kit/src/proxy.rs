//! The proxy side: [`ProxyHost`] implements [`Host`] with proxy-wasm host
//! calls, and [`register`] plugs a [`Filter`] into proxy-wasm's dispatcher.
//! This is the only module that names `proxy_wasm`; it exists only in wasm
//! builds.
//!
//! The host calls themselves are the kit's own (`raw::abi`): proxy-wasm
//! 0.2.5's wrappers panic on any status they do not expect — Envoy answers
//! a header read after the headers left with "bad argument" — and a panic
//! kills the VM for every request on the worker. The kit's calls report
//! such statuses, and the kit carries on.
//!
//! Costs that remain proxy-wasm's: its dispatcher boxes one small context
//! per request, and each value the host hands over arrives in a fresh
//! allocation made by its `proxy_on_memory_allocate`.

use crate::engine::{Action, Filter};
use crate::host::{BodyBuffer, Direction, HeaderMap, Host, HostError, LogLevel};
use crate::plugin::{BodyMode, Plugin};
use crate::raw::abi;
use crate::StreamId;
use core::cell::RefCell;
use core::time::Duration;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{self as pw, ContextType};
use std::rc::Rc;

/// [`Host`] over proxy-wasm host calls.
#[derive(Debug, Default)]
pub struct ProxyHost {
    /// The last value read from the host, lent out by reference.
    scratch: Option<Box<[u8]>>,
    /// Reused for serialized header maps and property paths.
    encoded: Vec<u8>,
}

fn map_type(map: HeaderMap) -> u32 {
    match map {
        HeaderMap::Request => 0,
        HeaderMap::Response => 2,
        HeaderMap::HttpCallResponse => 6,
    }
}

fn buffer_type(buffer: BodyBuffer) -> u32 {
    match buffer {
        BodyBuffer::Request => 0,
        BodyBuffer::Response => 1,
        BodyBuffer::HttpCallResponse => 4,
        // Higress's RedisCallResponse, past proxy-wasm 0.2.5's `BufferType`.
        BodyBuffer::RedisCallResponse => 9,
    }
}

fn host_error(status: abi::Status) -> HostError {
    match status {
        2 => HostError::BadArgument,
        12 => HostError::Unsupported,
        other => HostError::Status(other),
    }
}

/// Serializes a header map the way the ABI expects: the count, each
/// name's and value's length (little-endian `u32`), then each name and
/// value followed by a NUL byte.
fn encode_map(out: &mut Vec<u8>, pairs: &[(&str, &[u8])]) {
    out.clear();
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    out.extend_from_slice(&len(pairs.len()));
    for (name, value) in pairs {
        out.extend_from_slice(&len(name.len()));
        out.extend_from_slice(&len(value.len()));
    }
    for (name, value) in pairs {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
}

impl ProxyHost {
    fn keep(&mut self, value: Result<Option<Box<[u8]>>, abi::Status>) -> Option<&[u8]> {
        self.scratch = value.ok().flatten();
        self.scratch.as_deref()
    }
}

impl Host for ProxyHost {
    fn now_nanos(&self) -> u64 {
        abi::now_nanos().unwrap_or(0)
    }

    fn log_level(&mut self) -> LogLevel {
        match abi::log_level() {
            Ok(0) => LogLevel::Trace,
            Ok(1) => LogLevel::Debug,
            Ok(3) => LogLevel::Warn,
            Ok(4) => LogLevel::Error,
            Ok(5) => LogLevel::Critical,
            _ => LogLevel::Info,
        }
    }

    fn log(&mut self, level: LogLevel, message: &str) {
        let level = match level {
            LogLevel::Trace => 0,
            LogLevel::Debug => 1,
            LogLevel::Info => 2,
            LogLevel::Warn => 3,
            LogLevel::Error => 4,
            LogLevel::Critical => 5,
        };
        let _ = abi::log(level, message);
    }

    fn header(&mut self, map: HeaderMap, name: &str) -> Option<&[u8]> {
        let value = abi::header(map_type(map), name);
        self.keep(value)
    }

    fn set_header(&mut self, map: HeaderMap, name: &str, value: Option<&[u8]>) {
        let _ = match value {
            Some(value) => abi::replace_header(map_type(map), name, value),
            None => abi::remove_header(map_type(map), name),
        };
    }

    fn add_header(&mut self, map: HeaderMap, name: &str, value: &[u8]) {
        let _ = abi::add_header(map_type(map), name, value);
    }

    fn property(&mut self, path: &[&str]) -> Option<&[u8]> {
        self.encoded.clear();
        for (i, segment) in path.iter().enumerate() {
            if i > 0 {
                self.encoded.push(0);
            }
            self.encoded.extend_from_slice(segment.as_bytes());
        }
        let value = abi::property(&self.encoded);
        self.keep(value)
    }

    fn body(&mut self, buffer: BodyBuffer, start: usize, len: usize) -> Option<&[u8]> {
        let value = abi::buffer(buffer_type(buffer), start, len);
        self.keep(value)
    }

    fn set_body(&mut self, buffer: BodyBuffer, start: usize, len: usize, data: &[u8]) {
        let _ = abi::set_buffer(buffer_type(buffer), start, len, data);
    }

    fn send_response(&mut self, status: u16, headers: &[(&str, &[u8])], body: &[u8]) {
        encode_map(&mut self.encoded, headers);
        let _ = abi::send_local_response(u32::from(status), &self.encoded, body);
    }

    fn resume(&mut self, direction: Direction) {
        let _ = abi::continue_stream(match direction {
            Direction::Request => 0,
            Direction::Response => 1,
        });
    }

    fn set_effective_context(&mut self, context_id: u32) {
        let _ = abi::set_effective_context(context_id);
    }

    fn http_call(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError> {
        // proxy-wasm's dispatcher routes answers by the tokens its own
        // `dispatch_http_call` registers, so this call goes through it; it
        // reports the statuses Envoy gives here (bad argument for an unknown
        // cluster, internal failure) as errors.
        proxy_wasm::hostcalls::dispatch_http_call(
            cluster,
            headers.to_vec(),
            body,
            Vec::new(),
            timeout,
        )
        .map_err(|status| host_error(status as u32))
    }

    fn redis_init(
        &mut self,
        cluster: &str,
        username: &str,
        password: &str,
        timeout: Duration,
    ) -> Result<(), HostError> {
        redis_init(cluster, username, password, timeout)
    }

    fn redis_call(&mut self, cluster: &str, command: &[u8]) -> Result<u32, HostError> {
        redis_call(cluster, command)
    }

    fn set_tick_period(&mut self, period: Duration) {
        let _ = abi::set_tick_period_ms(u32::try_from(period.as_millis()).unwrap_or(u32::MAX));
    }

    fn define_counter(&mut self, name: &str) -> Result<u32, HostError> {
        abi::define_counter(name).map_err(host_error)
    }

    fn increment_counter(&mut self, id: u32, delta: u64) {
        let _ = abi::increment_counter(id, i64::try_from(delta).unwrap_or(i64::MAX));
    }
}

#[cfg(feature = "higress")]
use crate::raw::higress::{redis_call, redis_init};

#[cfg(not(feature = "higress"))]
fn redis_init(_: &str, _: &str, _: &str, _: Duration) -> Result<(), HostError> {
    Err(HostError::Unsupported)
}

#[cfg(not(feature = "higress"))]
fn redis_call(_: &str, _: &[u8]) -> Result<u32, HostError> {
    Err(HostError::Unsupported)
}

type Shared<P> = Rc<RefCell<Filter<P, ProxyHost>>>;

/// Registers plugin `P` as the module's root context factory. Called from
/// [`export_plugin!`](crate::export_plugin) when the module starts.
pub fn register<P: Plugin>() {
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        let filter: Shared<P> = Rc::new(RefCell::new(Filter::new(ProxyHost::default())));
        #[cfg(feature = "higress")]
        redis_roots::add(context_id, filter.clone());
        Box::new(Root { filter, context_id })
    });
}

struct Root<P: Plugin> {
    filter: Shared<P>,
    context_id: u32,
}

impl<P: Plugin> Context for Root<P> {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        // An answer to a call sent from a root callback (a Higress Redis reply
        // handler, say): the request it belongs to must be made effective.
        if let Ok(mut filter) = self.filter.try_borrow_mut() {
            filter.on_http_call_response(token_id, num_headers, body_size, true);
        }
    }

    fn on_done(&mut self) -> bool {
        if let Ok(mut filter) = self.filter.try_borrow_mut() {
            filter.flush_counters();
        }
        #[cfg(feature = "higress")]
        redis_roots::remove(self.context_id);
        let _ = self.context_id;
        true
    }
}

impl<P: Plugin> RootContext for Root<P> {
    fn on_tick(&mut self) {
        if let Ok(mut filter) = self.filter.try_borrow_mut() {
            filter.on_tick();
        }
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        // 7: the plugin configuration buffer.
        let bytes = abi::buffer(7, 0, usize::MAX)
            .ok()
            .flatten()
            .map(Vec::from)
            .unwrap_or_default();
        match self.filter.try_borrow_mut() {
            Ok(mut filter) => filter.configure(bytes).is_ok(),
            Err(_) => false,
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let stream = self.filter.try_borrow_mut().ok()?.open_stream(context_id);
        Some(Box::new(Stream {
            filter: self.filter.clone(),
            stream,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One request: a handle on the shared filter and the request's slot.
struct Stream<P: Plugin> {
    filter: Shared<P>,
    stream: StreamId,
}

fn action(a: Action) -> pw::Action {
    match a {
        Action::Continue => pw::Action::Continue,
        Action::Pause => pw::Action::Pause,
    }
}

impl<P: Plugin> Context for Stream<P> {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        if let Ok(mut filter) = self.filter.try_borrow_mut() {
            filter.on_http_call_response(token_id, num_headers, body_size, false);
        }
    }
}

impl<P: Plugin> Stream<P> {
    /// Runs one callback on the shared filter. A callback that arrives
    /// while the filter is busy (the host re-entering the module) lets the
    /// stream go on rather than panic the VM.
    fn forward(
        &self,
        callback: impl FnOnce(&mut Filter<P, ProxyHost>, StreamId) -> Action,
    ) -> pw::Action {
        match self.filter.try_borrow_mut() {
            Ok(mut filter) => action(callback(&mut filter, self.stream)),
            Err(_) => pw::Action::Continue,
        }
    }
}

impl<P: Plugin> HttpContext for Stream<P> {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> pw::Action {
        self.forward(|f, id| f.on_request_headers(id, end_of_stream))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> pw::Action {
        self.forward(|f, id| f.on_response_headers(id, end_of_stream))
    }

    // Body and trailer callbacks of a direction the plugin ignores return
    // at once, without touching the filter.
    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> pw::Action {
        if P::REQUEST_BODY == BodyMode::Ignore {
            return pw::Action::Continue;
        }
        self.forward(|f, id| f.on_request_body(id, body_size, end_of_stream))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> pw::Action {
        if P::RESPONSE_BODY == BodyMode::Ignore {
            return pw::Action::Continue;
        }
        self.forward(|f, id| f.on_response_body(id, body_size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> pw::Action {
        if P::REQUEST_BODY != BodyMode::Buffer {
            return pw::Action::Continue;
        }
        self.forward(|f, id| f.on_request_trailers(id))
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> pw::Action {
        if P::RESPONSE_BODY != BodyMode::Buffer {
            return pw::Action::Continue;
        }
        self.forward(|f, id| f.on_response_trailers(id))
    }
}

impl<P: Plugin> Drop for Stream<P> {
    fn drop(&mut self) {
        if let Ok(mut filter) = self.filter.try_borrow_mut() {
            filter.close_stream(self.stream);
        }
    }
}

/// Root contexts by id, for Higress Redis replies: the host delivers them to
/// an export of our own, outside proxy-wasm's dispatcher.
#[cfg(feature = "higress")]
mod redis_roots {
    use super::Shared;
    use crate::plugin::Plugin;
    use core::cell::RefCell;
    use std::rc::Rc;

    // Only the wasm export delivers replies.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    trait RedisReplies {
        fn deliver(&self, token: u32, status: u32, size: usize);
    }

    impl<P: Plugin> RedisReplies for RefCell<super::Filter<P, super::ProxyHost>> {
        fn deliver(&self, token: u32, status: u32, size: usize) {
            if let Ok(mut filter) = self.try_borrow_mut() {
                filter.on_redis_call_response(token, status, size);
            }
        }
    }

    thread_local! {
        static ROOTS: RefCell<Vec<(u32, Rc<dyn RedisReplies>)>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn add<P: Plugin>(context_id: u32, filter: Shared<P>) {
        ROOTS.with(|roots| {
            if let Ok(mut roots) = roots.try_borrow_mut() {
                roots.push((context_id, filter));
            }
        });
    }

    pub(super) fn remove(context_id: u32) {
        ROOTS.with(|roots| {
            if let Ok(mut roots) = roots.try_borrow_mut() {
                roots.retain(|(id, _)| *id != context_id);
            }
        });
    }

    /// Higress calls this on the root context when a Redis reply (status 0)
    /// or failure (status 1: timeout, reset, connect failure) arrives.
    #[cfg(target_arch = "wasm32")]
    #[no_mangle]
    pub extern "C" fn proxy_on_redis_call_response(
        root_context_id: u32,
        token: u32,
        status: u32,
        response_size: usize,
    ) {
        let root = ROOTS.with(|roots| {
            roots.try_borrow().ok().and_then(|roots| {
                roots
                    .iter()
                    .find(|(id, _)| *id == root_context_id)
                    .map(|(_, r)| r.clone())
            })
        });
        if let Some(root) = root {
            root.deliver(token, status, response_size);
        }
    }
}
