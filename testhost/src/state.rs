//! What the host keeps for one module instance: the streams' headers and
//! bodies, properties, metrics, shared data, logs, pending calls, and the
//! count of host calls the module made.

use std::collections::{BTreeMap, HashMap};

use wasmtime::TypedFunc;
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::abi::AbiVersion;
use crate::clock::VirtualClock;
use crate::redis::RedisClusters;

/// Header pairs, keys lower-cased as Envoy keeps them.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// A local response a plugin sent with `proxy_send_local_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u32,
    pub details: String,
    pub headers: Pairs,
    pub body: Vec<u8>,
}

/// One stream's data as the plugin sees and changes it.
#[derive(Debug, Default)]
pub struct StreamData {
    pub request_headers: Pairs,
    pub request_trailers: Pairs,
    pub response_headers: Pairs,
    pub response_trailers: Pairs,
    /// What the current body callback may read and change.
    pub request_body: Vec<u8>,
    pub response_body: Vec<u8>,
    /// `proxy_continue_stream` calls not yet acted on, per direction.
    pub resume_request: bool,
    pub resume_response: bool,
    pub local_response: Option<LocalResponse>,
    /// A local response was acted on: another one is ignored, as in Envoy.
    pub local_sent: bool,
    pub closed: bool,
    /// Properties set by the plugin on this stream (filter state).
    pub properties: HashMap<String, Vec<u8>>,
}

/// A metric the module defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    pub name: String,
    pub kind: i32,
    pub value: i64,
}

/// One `proxy_log` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: u32,
    pub message: String,
}

/// An outgoing `proxy_http_call` and its scripted answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    pub token: u32,
    pub upstream: String,
    pub headers: Pairs,
    pub body: Vec<u8>,
    pub timeout_ms: u32,
    /// `None` while pending or when no answer was scripted (a failure).
    pub answer: Option<HttpAnswer>,
    pub delivered: bool,
}

/// A scripted answer to an `http_call`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpAnswer {
    pub headers: Pairs,
    pub body: Vec<u8>,
    pub trailers: Pairs,
}

/// The response of the call being delivered, readable only inside
/// `proxy_on_http_call_response` (map types 6 and 7, buffer type 4).
#[derive(Debug, Default)]
pub struct CallbackData {
    pub http: Option<HttpAnswer>,
    pub redis: Option<Vec<u8>>,
}

/// The store data of one module instance.
pub struct HostState {
    pub wasi: WasiP1Ctx,
    pub abi: AbiVersion,
    pub clock: VirtualClock,
    pub root_id: u32,
    /// The context whose callback runs now (0 between callbacks).
    pub current: u32,
    /// The context host calls act on (`proxy_set_effective_context`).
    pub effective: u32,
    pub streams: HashMap<u32, StreamData>,
    pub vm_config: Vec<u8>,
    pub plugin_config: Vec<u8>,
    /// Host-wide properties, keyed by their path with `.` between segments.
    pub properties: BTreeMap<String, Vec<u8>>,
    pub shared: HashMap<Vec<u8>, (Vec<u8>, u32)>,
    pub metrics: Vec<Metric>,
    pub logs: Vec<LogLine>,
    pub log_level: u32,
    pub tick_period_ms: u32,
    pub http_calls: Vec<HttpCall>,
    /// Scripted answers to `http_call`, by upstream cluster name, used in order.
    pub http_answers: HashMap<String, Vec<HttpAnswer>>,
    pub next_http_token: u32,
    pub redis: RedisClusters,
    pub callback: CallbackData,
    /// How the host asks the guest for memory: `malloc` if the module exports
    /// it, else `proxy_on_memory_allocate`.
    pub allocate: Option<TypedFunc<i32, i32>>,
    /// Host calls made, in total and by import name.
    pub host_calls: u64,
    pub host_calls_by_name: BTreeMap<&'static str, u64>,
}

impl std::fmt::Debug for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostState")
            .field("abi", &self.abi)
            .field("root_id", &self.root_id)
            .field("streams", &self.streams.len())
            .field("host_calls", &self.host_calls)
            .finish_non_exhaustive()
    }
}

impl HostState {
    /// The stream host calls act on now, if the effective context is one.
    pub fn stream(&mut self) -> Option<&mut StreamData> {
        self.streams.get_mut(&self.effective)
    }

    /// Counts one host call.
    pub fn count(&mut self, name: &'static str) {
        self.host_calls += 1;
        *self.host_calls_by_name.entry(name).or_default() += 1;
    }
}
