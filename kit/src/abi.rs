//! Every number of the proxy-wasm ABI 0.2.1 the kit passes or reads, and
//! Higress's additions to it, in one place and typed.
//!
//! Numbers the kit hands to the host are `#[repr(u32)]` enums, written with
//! [`code`](BufferType::code); numbers the host hands back, which may be
//! any value a newer host chooses, are constants to compare with. Nothing
//! here calls the host: the host calls are in `raw`, the mapping from the
//! kit's own types in `proxy`.

/// A buffer the host holds (`proxy_get_buffer_bytes`,
/// `proxy_set_buffer_bytes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum BufferType {
    /// The request body.
    HttpRequestBody = 0,
    /// The response body.
    HttpResponseBody = 1,
    /// The body of an HTTP call's response.
    HttpCallResponseBody = 4,
    /// The configuration of the plugin being configured.
    PluginConfiguration = 7,
    /// Higress's Redis reply, past the ABI 0.2.1 buffer types.
    RedisCallResponse = 9,
}

impl BufferType {
    /// The number the host takes.
    pub(crate) const fn code(self) -> u32 {
        self as u32
    }
}

/// A header map the host holds (`proxy_*_header_map_value`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum MapType {
    /// The request headers.
    Request = 0,
    /// The response headers.
    Response = 2,
    /// The headers of an HTTP call's response.
    HttpCallResponse = 6,
}

impl MapType {
    /// The number the host takes.
    pub(crate) const fn code(self) -> u32 {
        self as u32
    }
}

/// A direction of an HTTP stream (`proxy_continue_stream`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum StreamType {
    /// The request.
    Request = 0,
    /// The response.
    Response = 1,
}

impl StreamType {
    /// The number the host takes.
    pub(crate) const fn code(self) -> u32 {
        self as u32
    }
}

/// What a header, body or trailers callback returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum FilterStatus {
    /// Go on with the stream.
    Continue = 0,
    /// Hold the stream here until the module resumes it.
    StopIteration = 1,
}

impl FilterStatus {
    /// The number the host takes.
    pub(crate) const fn code(self) -> u32 {
        self as u32
    }
}

/// A log level, both ways: `proxy_log` takes one, `proxy_get_log_level`
/// returns one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum LogLevel {
    /// Most verbose.
    Trace = 0,
    /// Per-request detail.
    Debug = 1,
    /// Lifecycle events.
    Info = 2,
    /// Something is wrong.
    Warn = 3,
    /// Something is broken.
    Error = 4,
    /// Nothing works.
    Critical = 5,
}

impl LogLevel {
    /// The number the host takes.
    pub(crate) const fn code(self) -> u32 {
        self as u32
    }
}

/// A kind of metric (`proxy_define_metric`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum MetricType {
    /// A counter, only ever incremented.
    Counter = 0,
}

impl MetricType {
    /// The number the host takes.
    pub(crate) const fn code(self) -> u32 {
        self as u32
    }
}

/// What a host call returns; a host may return others.
pub(crate) mod status {
    /// The call did what was asked.
    pub(crate) const OK: u32 = 0;
    /// The value asked for does not exist.
    pub(crate) const NOT_FOUND: u32 = 1;
    /// An argument was refused; for calls to a cluster, usually no cluster
    /// of that name.
    pub(crate) const BAD_ARGUMENT: u32 = 2;
    /// The host does not implement the call.
    pub(crate) const UNIMPLEMENTED: u32 = 12;
}

/// `proxy_send_local_response`'s gRPC status for "not a gRPC response".
pub(crate) const NO_GRPC_STATUS: i32 = -1;

/// The parent id of a root context in `proxy_on_context_create`.
pub(crate) const NO_PARENT: u32 = 0;

/// The status of Higress's `proxy_on_redis_call_response`: a reply is in
/// the [`BufferType::RedisCallResponse`] buffer; any other status is a
/// failure (timeout, reset, refused connection).
pub(crate) const REDIS_CALL_REPLY: u32 = 0;
