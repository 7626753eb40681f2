//! The proxy side, in wasm builds: [`ProxyHost`] implements [`Host`] with
//! the ABI's host calls (`raw::host_calls`), and [`Module`] is the state
//! behind the exports [`export_plugin!`](crate::export_plugin) defines.
//!
//! The kit speaks the proxy-wasm ABI 0.2.1 itself rather than through the
//! `proxy-wasm` crate, for three reasons (measured in the README's "Module
//! size" and "Load test" sections):
//! - **VM entries.** The crate exports every `proxy_on_*` callback, and
//!   the host enters the VM for each one a module exports. The kit exports
//!   only the callbacks its plugin needs, so a request a header-only
//!   plugin refuses locally enters the VM for its creation, its request
//!   headers, the local reply's response headers and its deletion, not
//!   also for the reply's body, `proxy_on_log` and `proxy_on_done`.
//! - **Allocations.** The crate boxes a context per request and every value
//!   the host hands over; the kit lends the host reusable buffers.
//! - **Size.** Its dispatcher and unused callbacks weigh more than a
//!   small plugin's own logic.
//!
//! Its wrappers also panic on statuses they do not expect — Envoy answers
//! a header read after the headers left with "bad argument" — and a panic
//! kills the VM for every request on the worker; the kit's calls report
//! such statuses, and the kit carries on.

use crate::abi::{self, BufferType, MapType, StreamType};
use crate::dispatcher::Dispatcher;
use crate::host::{BodyBuffer, Direction, HeaderMap, Host, HostError, LogLevel};
use crate::raw::host_calls;
use core::cell::RefCell;
use core::time::Duration;

/// The state of a module built for plugin `P`, behind its exports.
pub type Module<P> = RefCell<Dispatcher<P, ProxyHost>>;

/// [`Host`] over the proxy-wasm ABI's host calls.
#[derive(Debug, Default)]
pub struct ProxyHost {
    /// The last value read from the host, lent out by reference; the host
    /// writes values straight into it.
    scratch: Vec<u8>,
    /// Reused for serialized header maps and property paths.
    encoded: Vec<u8>,
}

/// The plugin configuration of the root being configured.
pub fn configuration() -> Vec<u8> {
    let mut bytes = Vec::new();
    match host_calls::buffer(
        BufferType::PluginConfiguration.code(),
        0,
        usize::MAX,
        &mut bytes,
    ) {
        Ok(true) => bytes,
        _ => Vec::new(),
    }
}

fn map_type(map: HeaderMap) -> u32 {
    match map {
        HeaderMap::Request => MapType::Request,
        HeaderMap::Response => MapType::Response,
        HeaderMap::HttpCallResponse => MapType::HttpCallResponse,
    }
    .code()
}

fn buffer_type(buffer: BodyBuffer) -> u32 {
    match buffer {
        BodyBuffer::Request => BufferType::HttpRequestBody,
        BodyBuffer::Response => BufferType::HttpResponseBody,
        BodyBuffer::HttpCallResponse => BufferType::HttpCallResponseBody,
        BodyBuffer::RedisCallResponse => BufferType::RedisCallResponse,
    }
    .code()
}

/// Serializes a header map the way the ABI expects: the count, each
/// name's and value's length (little-endian `u32`), then each name and
/// value followed by a NUL byte.
fn encode_map<V: AsRef<[u8]>>(out: &mut Vec<u8>, pairs: &[(&str, V)]) {
    out.clear();
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    out.extend_from_slice(&len(pairs.len()));
    for (name, value) in pairs {
        out.extend_from_slice(&len(name.len()));
        out.extend_from_slice(&len(value.as_ref().len()));
    }
    for (name, value) in pairs {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_ref());
        out.push(0);
    }
}

/// A serialized map with no entries.
const NO_PAIRS: [u8; 4] = [0; 4];

impl ProxyHost {
    /// The scratch buffer, if the read that filled it found a value.
    fn found(&self, read: Result<bool, host_calls::Status>) -> Option<&[u8]> {
        matches!(read, Ok(true)).then_some(self.scratch.as_slice())
    }
}

impl Host for ProxyHost {
    fn now_nanos(&self) -> u64 {
        host_calls::now_nanos().unwrap_or(0)
    }

    fn log_level(&mut self) -> LogLevel {
        const TRACE: u32 = abi::LogLevel::Trace.code();
        const DEBUG: u32 = abi::LogLevel::Debug.code();
        const WARN: u32 = abi::LogLevel::Warn.code();
        const ERROR: u32 = abi::LogLevel::Error.code();
        const CRITICAL: u32 = abi::LogLevel::Critical.code();
        match host_calls::log_level() {
            Ok(TRACE) => LogLevel::Trace,
            Ok(DEBUG) => LogLevel::Debug,
            Ok(WARN) => LogLevel::Warn,
            Ok(ERROR) => LogLevel::Error,
            Ok(CRITICAL) => LogLevel::Critical,
            _ => LogLevel::Info,
        }
    }

    fn log(&mut self, level: LogLevel, message: &str) {
        let level = match level {
            LogLevel::Trace => abi::LogLevel::Trace,
            LogLevel::Debug => abi::LogLevel::Debug,
            LogLevel::Info => abi::LogLevel::Info,
            LogLevel::Warn => abi::LogLevel::Warn,
            LogLevel::Error => abi::LogLevel::Error,
            LogLevel::Critical => abi::LogLevel::Critical,
        };
        let _ = host_calls::log(level.code(), message);
    }

    fn header(&mut self, map: HeaderMap, name: &str) -> Option<&[u8]> {
        let read = host_calls::header(map_type(map), name, &mut self.scratch);
        self.found(read)
    }

    fn set_header(&mut self, map: HeaderMap, name: &str, value: Option<&[u8]>) {
        let _ = match value {
            Some(value) => host_calls::replace_header(map_type(map), name, value),
            None => host_calls::remove_header(map_type(map), name),
        };
    }

    fn add_header(&mut self, map: HeaderMap, name: &str, value: &[u8]) {
        let _ = host_calls::add_header(map_type(map), name, value);
    }

    fn property(&mut self, path: &[&str]) -> Option<&[u8]> {
        self.encoded.clear();
        for (i, segment) in path.iter().enumerate() {
            if i > 0 {
                self.encoded.push(0);
            }
            self.encoded.extend_from_slice(segment.as_bytes());
        }
        let read = host_calls::property(&self.encoded, &mut self.scratch);
        self.found(read)
    }

    fn body(&mut self, buffer: BodyBuffer, start: usize, len: usize) -> Option<&[u8]> {
        let read = host_calls::buffer(buffer_type(buffer), start, len, &mut self.scratch);
        self.found(read)
    }

    fn reserve_reads(&mut self, bytes: usize) {
        self.scratch.reserve(bytes);
    }

    fn set_body(&mut self, buffer: BodyBuffer, start: usize, len: usize, data: &[u8]) {
        let _ = host_calls::set_buffer(buffer_type(buffer), start, len, data);
    }

    fn send_response(&mut self, status: u16, headers: &[(&str, &[u8])], body: &[u8]) {
        encode_map(&mut self.encoded, headers);
        let _ = host_calls::send_local_response(u32::from(status), &self.encoded, body);
    }

    fn resume(&mut self, direction: Direction) {
        let stream = match direction {
            Direction::Request => StreamType::Request,
            Direction::Response => StreamType::Response,
        };
        let _ = host_calls::continue_stream(stream.code());
    }

    fn set_effective_context(&mut self, context_id: u32) {
        let _ = host_calls::set_effective_context(context_id);
    }

    fn http_call(
        &mut self,
        cluster: &str,
        headers: &[(&str, &[u8])],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError> {
        encode_map(&mut self.encoded, headers);
        let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        host_calls::http_call(
            cluster,
            &self.encoded,
            body.unwrap_or_default(),
            &NO_PAIRS,
            timeout_ms,
        )
        .map_err(host_calls::host_error)
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
        let _ =
            host_calls::set_tick_period_ms(u32::try_from(period.as_millis()).unwrap_or(u32::MAX));
    }

    fn define_counter(&mut self, name: &str) -> Result<u32, HostError> {
        host_calls::define_counter(name).map_err(host_calls::host_error)
    }

    fn increment_counter(&mut self, id: u32, delta: u64) {
        let _ = host_calls::increment_counter(id, i64::try_from(delta).unwrap_or(i64::MAX));
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
