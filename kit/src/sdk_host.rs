//! [`Host`] over the standard `proxy-wasm` crate's host calls (feature
//! `proxy-wasm`, wasm builds): the kit's second backend.
//!
//! Every call goes through `proxy_wasm::hostcalls`, so a kit plugin built
//! this way shares one ABI layer with any other code in the module that
//! uses the SDK. What that costs, against the kit's own layer (`proxy.rs`):
//! - each value the host hands over (a header, a property, a body) arrives
//!   in a fresh `Vec` the SDK allocates, and each header map or property
//!   path the kit sends is serialized into a fresh `Vec`: a request makes
//!   heap allocations here where the default backend makes none;
//! - the SDK's wrappers end the VM (a panic, which aborts) on a status they
//!   do not expect, where the kit's own layer reports it and carries on;
//! - Higress's Redis host calls are not in the SDK, so the native Redis
//!   transport answers [`HostError::Unsupported`]: use webdis.
//!
//! The README's "Backends" section measures both in Envoy.

use crate::host::{BodyBuffer, Direction, HeaderMap, Host, HostError, LogLevel};
use core::time::Duration;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType, Status};

/// [`Host`] over `proxy_wasm::hostcalls`.
#[derive(Debug, Default)]
pub struct SdkHost {
    /// The last value read from the host, lent out by reference.
    scratch: Vec<u8>,
    /// The root context the filter belongs to, while the SDK holds it (0:
    /// none).
    root: u32,
    /// Whether the SDK's dispatcher files a call sent now under the root:
    /// in a root's callback, or in a request's once
    /// `raw::sdk::file_calls_under` ran.
    filed_under_root: bool,
}

/// The plugin configuration of the root being configured.
pub fn configuration() -> Vec<u8> {
    match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
        Ok(Some(bytes)) => bytes,
        _ => Vec::new(),
    }
}

fn map_type(map: HeaderMap) -> MapType {
    match map {
        HeaderMap::Request => MapType::HttpRequestHeaders,
        HeaderMap::Response => MapType::HttpResponseHeaders,
        HeaderMap::HttpCallResponse => MapType::HttpCallResponseHeaders,
    }
}

/// The SDK's buffer type; `None` for Higress's Redis reply buffer, which
/// the SDK's closed enum cannot name.
fn buffer_type(buffer: BodyBuffer) -> Option<BufferType> {
    match buffer {
        BodyBuffer::Request => Some(BufferType::HttpRequestBody),
        BodyBuffer::Response => Some(BufferType::HttpResponseBody),
        BodyBuffer::HttpCallResponse => Some(BufferType::HttpCallResponseBody),
        BodyBuffer::RedisCallResponse => None,
    }
}

fn host_error(status: Status) -> HostError {
    match status {
        Status::BadArgument => HostError::BadArgument,
        other => HostError::Status(other as u32),
    }
}

/// Header pairs as the SDK takes them (`&str` values). The kit's own
/// values are ASCII; a value that is not UTF-8 is sent empty rather than
/// ending the VM.
fn str_pairs<'a>(pairs: &[(&'a str, &'a [u8])]) -> Vec<(&'a str, &'a str)> {
    pairs
        .iter()
        .map(|(name, value)| (*name, core::str::from_utf8(value).unwrap_or("")))
        .collect()
}

impl SdkHost {
    /// The filter belongs to root context `root_id` (0: the SDK has deleted
    /// it).
    pub(crate) fn set_root(&mut self, root_id: u32) {
        self.root = root_id;
    }

    /// The SDK runs a callback of the root: calls sent now are the root's.
    pub(crate) fn enter_root(&mut self) {
        self.filed_under_root = true;
    }

    /// The SDK runs a callback of a request: until a call is sent, the
    /// dispatcher would file calls under that request.
    pub(crate) fn enter_stream(&mut self) {
        self.filed_under_root = false;
    }

    fn keep(&mut self, value: Result<Option<Vec<u8>>, Status>) -> Option<&[u8]> {
        match value {
            Ok(Some(bytes)) => {
                self.scratch = bytes;
                Some(self.scratch.as_slice())
            }
            _ => None,
        }
    }
}

impl Host for SdkHost {
    fn now_nanos(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    fn log_level(&mut self) -> LogLevel {
        use proxy_wasm::types::LogLevel as Sdk;
        match hostcalls::get_log_level() {
            Ok(Sdk::Trace) => LogLevel::Trace,
            Ok(Sdk::Debug) => LogLevel::Debug,
            Ok(Sdk::Warn) => LogLevel::Warn,
            Ok(Sdk::Error) => LogLevel::Error,
            Ok(Sdk::Critical) => LogLevel::Critical,
            _ => LogLevel::Info,
        }
    }

    fn log(&mut self, level: LogLevel, message: &str) {
        use proxy_wasm::types::LogLevel as Sdk;
        let level = match level {
            LogLevel::Trace => Sdk::Trace,
            LogLevel::Debug => Sdk::Debug,
            LogLevel::Info => Sdk::Info,
            LogLevel::Warn => Sdk::Warn,
            LogLevel::Error => Sdk::Error,
            LogLevel::Critical => Sdk::Critical,
        };
        let _ = hostcalls::log(level, message);
    }

    fn header(&mut self, map: HeaderMap, name: &str) -> Option<&[u8]> {
        let value = hostcalls::get_map_value_bytes(map_type(map), name);
        self.keep(value)
    }

    fn set_header(&mut self, map: HeaderMap, name: &str, value: Option<&[u8]>) {
        let _ = hostcalls::set_map_value_bytes(map_type(map), name, value);
    }

    fn add_header(&mut self, map: HeaderMap, name: &str, value: &[u8]) {
        let _ = hostcalls::add_map_value_bytes(map_type(map), name, value);
    }

    fn property(&mut self, path: &[&str]) -> Option<&[u8]> {
        let value = hostcalls::get_property(path.to_vec());
        self.keep(value)
    }

    fn body(&mut self, buffer: BodyBuffer, start: usize, len: usize) -> Option<&[u8]> {
        let value = hostcalls::get_buffer(buffer_type(buffer)?, start, len);
        self.keep(value)
    }

    fn set_body(&mut self, buffer: BodyBuffer, start: usize, len: usize, data: &[u8]) {
        if let Some(buffer) = buffer_type(buffer) {
            let _ = hostcalls::set_buffer(buffer, start, len, data);
        }
    }

    fn send_response(&mut self, status: u16, headers: &[(&str, &[u8])], body: &[u8]) {
        let _ = hostcalls::send_http_response(u32::from(status), str_pairs(headers), Some(body));
    }

    fn resume(&mut self, direction: Direction) {
        let _ = match direction {
            Direction::Request => hostcalls::resume_http_request(),
            Direction::Response => hostcalls::resume_http_response(),
        };
    }

    fn set_effective_context(&mut self, context_id: u32) {
        let _ = hostcalls::set_effective_context(context_id);
    }

    fn http_call(
        &mut self,
        cluster: &str,
        headers: &[(&str, &[u8])],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError> {
        // Every call goes out as the root's, as Envoy itself treats them:
        // its answer reaches the root, which hands it to whichever request
        // owns it now, even after the request that sent it has ended.
        if !self.filed_under_root && self.root != 0 {
            crate::raw::sdk::file_calls_under(self.root);
            self.filed_under_root = true;
        }
        hostcalls::dispatch_http_call(cluster, str_pairs(headers), body, Vec::new(), timeout)
            .map_err(host_error)
    }

    fn redis_init(&mut self, _: &str, _: &str, _: &str, _: Duration) -> Result<(), HostError> {
        Err(HostError::Unsupported)
    }

    fn redis_call(&mut self, _: &str, _: &[u8]) -> Result<u32, HostError> {
        Err(HostError::Unsupported)
    }

    fn set_tick_period(&mut self, period: Duration) {
        let _ = hostcalls::set_tick_period(period);
    }

    fn define_counter(&mut self, name: &str) -> Result<u32, HostError> {
        hostcalls::define_metric(MetricType::Counter, name).map_err(host_error)
    }

    fn increment_counter(&mut self, id: u32, delta: u64) {
        let _ = hostcalls::increment_metric(id, i64::try_from(delta).unwrap_or(i64::MAX));
    }
}
