//! The one seam between plugin logic and the proxy.
//!
//! Every effect a plugin has on the world (reading a header, answering a
//! request, calling Redis) goes through [`Host`]. The real implementation
//! (`proxy::ProxyHost`, in wasm builds) forwards to the proxy-wasm ABI; the
//! [`FakeHost`](crate::fake::FakeHost) scripts them for native tests, which
//! could not link the real host calls at all.
//!
//! The trait is deliberately narrow and byte-oriented: values come back as
//! borrowed slices so that an implementation can hand out its own scratch
//! memory instead of allocating a `String` per call.

use core::fmt;
use core::time::Duration;

/// Which header map a header call addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeaderMap {
    /// Headers of the downstream request.
    Request,
    /// Headers of the upstream (or local) response.
    Response,
    /// Headers of the answer to an outgoing HTTP call, readable only while
    /// that answer is being delivered.
    HttpCallResponse,
}

/// Which buffer a body call addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BodyBuffer {
    /// Body of the downstream request, as buffered so far.
    Request,
    /// Body of the response, as buffered so far.
    Response,
    /// Body of the answer to an outgoing HTTP call.
    HttpCallResponse,
    /// Reply of a Higress native Redis call.
    RedisCallResponse,
}

/// Direction of a stream, used to resume the half that was paused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Downstream request.
    Request,
    /// Upstream response.
    Response,
}

/// Log levels, ordered from most to least verbose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Per-byte detail.
    Trace,
    /// Per-request detail.
    Debug,
    /// Lifecycle events.
    Info,
    /// Something is wrong with a request or a dependency.
    Warn,
    /// Something is wrong with the plugin or its configuration.
    Error,
    /// The plugin cannot work.
    Critical,
}

/// Why a host call was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostError {
    /// The host rejected an argument; for calls to a cluster this almost
    /// always means no cluster of that name exists.
    BadArgument,
    /// The host does not implement the call (for example Redis host calls on
    /// upstream Envoy, or a build without the `higress` feature).
    Unsupported,
    /// Any other failure status, with its proxy-wasm code.
    Status(u32),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::BadArgument => {
                f.write_str("host refused the call: bad argument (unknown cluster?)")
            }
            HostError::Unsupported => f.write_str("host does not support this call"),
            HostError::Status(code) => write!(f, "host call failed with status {code}"),
        }
    }
}

/// Everything the kit asks of a proxy.
///
/// Methods that return a slice may return the implementation's scratch
/// memory: the slice is valid until the next call on the host, so callers
/// copy what they need to keep.
pub trait Host {
    /// Wall-clock time in nanoseconds since the Unix epoch.
    fn now_nanos(&self) -> u64;

    /// The proxy's log level for this plugin, read once per configuration.
    fn log_level(&mut self) -> LogLevel;

    /// Writes one log line.
    fn log(&mut self, level: LogLevel, message: &str);

    /// Reads a header; `None` when absent.
    fn header(&mut self, map: HeaderMap, name: &str) -> Option<&[u8]>;

    /// Sets (replacing) or, with `None`, removes a header.
    fn set_header(&mut self, map: HeaderMap, name: &str, value: Option<&[u8]>);

    /// Appends a header value, keeping existing ones.
    fn add_header(&mut self, map: HeaderMap, name: &str, value: &[u8]);

    /// Reads a property such as `["source", "address"]`; `None` when absent.
    fn property(&mut self, path: &[&str]) -> Option<&[u8]>;

    /// Reads `len` bytes from `start` of a body buffer; `None` when the
    /// buffer is not available in the current callback.
    fn body(&mut self, buffer: BodyBuffer, start: usize, len: usize) -> Option<&[u8]>;

    /// Makes room for a value of `bytes` bytes in the memory the reads
    /// return, ahead of time, so that reading one later does not grow it.
    /// Implementations that return their own storage need do nothing.
    fn reserve_reads(&mut self, bytes: usize) {
        let _ = bytes;
    }

    /// Replaces `len` bytes from `start` of a body buffer with `data`.
    fn set_body(&mut self, buffer: BodyBuffer, start: usize, len: usize, data: &[u8]);

    /// Answers the current stream locally; the upstream is never called.
    fn send_response(&mut self, status: u16, headers: &[(&str, &[u8])], body: &[u8]);

    /// Lets a paused half of the current stream go on.
    fn resume(&mut self, direction: Direction);

    /// Makes `context_id` the stream that the following calls act on. Needed
    /// when a callback arrives on the root context (Higress Redis replies).
    fn set_effective_context(&mut self, context_id: u32);

    /// Starts an HTTP call to an upstream cluster and returns its token.
    ///
    /// `headers` must include `:method`, `:path` and `:authority`. Values
    /// are bytes, as everywhere else in this trait: the kit builds a webdis
    /// path as bytes, and a `&str` would cost it a UTF-8 check per call.
    fn http_call(
        &mut self,
        cluster: &str,
        headers: &[(&str, &[u8])],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError>;

    /// Prepares the Higress Redis client for a cluster.
    fn redis_init(
        &mut self,
        cluster: &str,
        username: &str,
        password: &str,
        timeout: Duration,
    ) -> Result<(), HostError>;

    /// Sends one RESP command to a Higress Redis cluster and returns its token.
    fn redis_call(&mut self, cluster: &str, command: &[u8]) -> Result<u32, HostError>;

    /// Asks for [`Filter::on_tick`](crate::Filter::on_tick) every `period`;
    /// zero stops the ticks.
    fn set_tick_period(&mut self, period: Duration);

    /// Defines a counter metric and returns its id.
    fn define_counter(&mut self, name: &str) -> Result<u32, HostError>;

    /// Adds `delta` to a counter defined with [`Host::define_counter`].
    fn increment_counter(&mut self, id: u32, delta: u64);
}
