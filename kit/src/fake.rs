//! [`FakeHost`]: a scriptable [`Host`] for native tests and benchmarks.
//!
//! Tests set headers, properties, bodies, call answers and the clock, drive
//! a [`Filter`](crate::Filter) through its callbacks, and read back what the
//! plugin did: local responses, headers it set, calls it sent, counters and
//! log lines.
//!
//! Storage is arena-based and cleared rather than dropped, so a test loop
//! that reuses one `FakeHost` costs no allocation per request after warm-up;
//! the zero-allocation tests depend on that.

use crate::host::{BodyBuffer, Direction, HeaderMap, Host, HostError, LogLevel};
pub use crate::raw::counting::CountingAllocator;
use core::time::Duration;

/// Counts the heap allocations `f` makes on this thread.
///
/// Only counts when the test binary installs the counter as its allocator:
/// `#[global_allocator] static A: kit::fake::CountingAllocator = kit::fake::CountingAllocator;`
/// (without it the count is always 0, so zero-allocation tests should also
/// check that an allocation is counted, see `kit/tests/zero_alloc.rs`).
pub fn allocations_during(f: impl FnOnce()) -> u64 {
    use crate::raw::counting::{ALLOCATIONS, COUNTING};
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    ALLOCATIONS.with(|n| n.get())
}

/// A small deterministic random generator (xorshift64*) for tests that
/// wander input space: a fixed seed replays a failure exactly.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`; zero is replaced, as xorshift would stick at it.
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    #[allow(clippy::should_implement_trait)] // not an iterator: it never ends
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` at least 1).
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap_or(u64::MAX)).unwrap_or(0)
    }
}

/// An ordered, case-insensitive multimap of byte headers in one arena.
#[derive(Debug, Default, Clone)]
pub struct Headers {
    arena: Vec<u8>,
    entries: Vec<(usize, usize, usize)>,
}

impl Headers {
    /// Removes every header, keeping capacity.
    pub fn clear(&mut self) {
        self.arena.clear();
        self.entries.clear();
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn name_of(&self, &(start, split, _): &(usize, usize, usize)) -> &[u8] {
        self.arena.get(start..split).unwrap_or_default()
    }

    /// Whether entry `e` is a line of `name`, case aside. The lengths are
    /// compared before the name is sliced out of the arena: most lines a
    /// lookup passes differ in length, and both sides of a benchmark
    /// look headers up through here. The bytes are compared as they are
    /// first: names are nearly always written in lowercase on both sides
    /// (HTTP/2 requires it), and one comparison of the whole name costs
    /// a fraction of folding the case of every byte pair. Only names that
    /// differ are compared again case aside.
    fn is_named(&self, e: &(usize, usize, usize), name: &[u8]) -> bool {
        if e.1.wrapping_sub(e.0) != name.len() {
            return false;
        }
        let own = self.name_of(e);
        own == name || own.eq_ignore_ascii_case(name)
    }

    fn value_of(&self, &(_, split, end): &(usize, usize, usize)) -> &[u8] {
        self.arena.get(split..end).unwrap_or_default()
    }

    /// Appends a header line.
    pub fn add(&mut self, name: &str, value: &[u8]) {
        let start = self.arena.len();
        self.arena.extend_from_slice(name.as_bytes());
        let split = self.arena.len();
        self.arena.extend_from_slice(value);
        self.entries.push((start, split, self.arena.len()));
    }

    /// Replaces every line of `name` with one (or none, for `None`).
    pub fn set(&mut self, name: &str, value: Option<&[u8]>) {
        // Most sets add a header the map does not hold yet: only then is
        // there nothing to remove, and `retain` is skipped.
        if self
            .entries
            .iter()
            .any(|e| self.is_named(e, name.as_bytes()))
        {
            let arena = &self.arena;
            self.entries.retain(|e| {
                !arena
                    .get(e.0..e.1)
                    .unwrap_or_default()
                    .eq_ignore_ascii_case(name.as_bytes())
            });
        }
        if let Some(value) = value {
            self.add(name, value);
        }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|e| self.is_named(e, name.as_bytes()))
            .map(|e| self.value_of(e))
    }

    /// The first value of `name` as UTF-8 text.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| core::str::from_utf8(v).ok())
    }

    /// Every header line in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.entries
            .iter()
            .map(|e| (self.name_of(e), self.value_of(e)))
    }
}

/// A local response the plugin sent.
#[derive(Debug, Default, Clone)]
pub struct LocalResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers.
    pub headers: Headers,
    /// Body.
    pub body: Vec<u8>,
}

/// An outgoing call the plugin sent (HTTP or Redis).
#[derive(Debug, Default, Clone)]
pub struct SentCall {
    /// Token the host gave it.
    pub token: u32,
    /// Cluster it went to.
    pub cluster: String,
    /// HTTP headers (`:path` etc.); empty for a native Redis call.
    pub headers: Headers,
    /// HTTP body, or the RESP bytes of a native Redis call.
    pub body: Vec<u8>,
    /// Timeout asked for.
    pub timeout: Duration,
}

impl SentCall {
    /// The Redis command of a webdis call, decoded from its `:path`
    /// (`/CMD/arg1/arg2.raw`, percent-encoded) into its arguments; `None`
    /// for a call that is not one.
    pub fn webdis_args(&self) -> Option<Vec<Vec<u8>>> {
        let path = self.headers.get(":path")?.strip_suffix(b".raw")?;
        let mut args = Vec::new();
        for segment in path.strip_prefix(b"/")?.split(|&b| b == b'/') {
            let mut arg = Vec::with_capacity(segment.len());
            let mut rest = segment;
            while let Some((&b, tail)) = rest.split_first() {
                if b == b'%' {
                    let hex = tail.get(..2).and_then(|h| core::str::from_utf8(h).ok())?;
                    arg.push(u8::from_str_radix(hex, 16).ok()?);
                    rest = tail.get(2..)?;
                } else {
                    arg.push(b);
                    rest = tail;
                }
            }
            args.push(arg);
        }
        Some(args)
    }

    /// The Redis command of a call, whichever transport carried it: a
    /// webdis call's `:path` ([`SentCall::webdis_args`]) or a native call's
    /// body, one RESP array of bulk strings; `None` for a call that is
    /// neither.
    pub fn redis_args(&self) -> Option<Vec<Vec<u8>>> {
        self.webdis_args().or_else(|| resp_array(&self.body))
    }
}

/// The bulk strings of one RESP array (`*N` then `N` times `$len`).
fn resp_array(bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    let (count, mut rest) = resp_length(bytes.strip_prefix(b"*")?)?;
    let mut args = Vec::new();
    for _ in 0..count {
        let (len, tail) = resp_length(rest.strip_prefix(b"$")?)?;
        args.push(tail.get(..len)?.to_vec());
        rest = tail.get(len..)?.strip_prefix(b"\r\n")?;
    }
    Some(args)
}

/// The decimal length ending the line `bytes` starts with, and what
/// follows the line.
fn resp_length(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let end = bytes.windows(2).position(|w| w == b"\r\n")?;
    let digits = core::str::from_utf8(bytes.get(..end)?).ok()?;
    Some((digits.parse().ok()?, bytes.get(end + 2..)?))
}

/// A scriptable host. Fields are public: set them up, run, inspect.
#[derive(Debug)]
pub struct FakeHost {
    /// The clock, in nanoseconds since the epoch; advance it freely.
    pub now_nanos: u64,
    /// The log level the plugin will read at configuration.
    pub log_level: LogLevel,
    /// Log lines written at or above `log_level`.
    pub logs: Vec<(LogLevel, String)>,
    /// Request headers (including pseudo-headers such as `:path`).
    pub request_headers: Headers,
    /// Set it once the request headers have gone upstream: like Envoy, the
    /// host then refuses to read or change them (reads give `None`).
    pub request_headers_sent: bool,
    /// Response headers.
    pub response_headers: Headers,
    /// Properties, keyed by their path joined with `.` (`source.address`).
    pub properties: Headers,
    /// Request body as buffered so far.
    pub request_body: Vec<u8>,
    /// Response body as buffered so far.
    pub response_body: Vec<u8>,
    /// Headers of the HTTP call answer being delivered.
    pub call_response_headers: Headers,
    /// Body of the HTTP call answer, or reply of the Redis call, being delivered.
    pub call_response_body: Vec<u8>,
    /// The last local response sent, if any since [`FakeHost::next_request`].
    pub response: Option<LocalResponse>,
    /// Number of local responses sent in all.
    pub responses_sent: u64,
    /// The last call sent since [`FakeHost::next_request`].
    pub last_call: Option<SentCall>,
    /// Number of calls sent in all.
    pub calls_sent: u64,
    /// When set, outgoing calls are refused with this error.
    pub refuse_calls: Option<HostError>,
    /// Times each direction was resumed.
    pub resumed: [u64; 2],
    /// The context made effective last.
    pub effective_context: u32,
    /// Clusters initialised for native Redis.
    pub redis_clusters: Vec<String>,
    /// Counters by name.
    pub counters: Vec<(String, u64)>,
    /// The tick period asked for last.
    pub tick_period: Duration,
    /// Host calls made so far: each is a VM crossing in a real proxy,
    /// which costs more than an allocation, so tests keep them counted.
    pub host_calls: core::cell::Cell<u64>,
    /// The context id given to the last request that
    /// [`Filter::send_request`](crate::Filter::send_request) opened.
    pub last_context: u32,
    /// When set, every local response and every resumed request is
    /// recorded here as `(effective context, status)`, status 0 for a
    /// resume: how a test with many requests in flight tells which request
    /// was answered how.
    pub answers: Option<Vec<(u32, u16)>>,
    /// The response body bytes the client received, in order, since
    /// [`FakeHost::next_request`]: what the
    /// [`fake_request`](crate::fake_request) helpers let through.
    pub delivered: Vec<u8>,
    /// The token of the call the [`fake_request`](crate::fake_request)
    /// helpers answered last, so that one is not answered twice.
    pub last_answered: u32,
    /// When set, every call sent is also recorded here, in order: how a
    /// test sees each of several calls one event sent.
    pub calls_log: Option<Vec<SentCall>>,
    next_token: u32,
    spare_response: Option<LocalResponse>,
    spare_call: Option<SentCall>,
}

impl Default for FakeHost {
    fn default() -> Self {
        FakeHost {
            now_nanos: 1_700_000_000_000_000_000,
            log_level: LogLevel::Info,
            logs: Vec::new(),
            request_headers: Headers::default(),
            request_headers_sent: false,
            response_headers: Headers::default(),
            properties: Headers::default(),
            request_body: Vec::new(),
            response_body: Vec::new(),
            call_response_headers: Headers::default(),
            call_response_body: Vec::new(),
            response: None,
            responses_sent: 0,
            last_call: None,
            calls_sent: 0,
            refuse_calls: None,
            resumed: [0; 2],
            effective_context: 0,
            redis_clusters: Vec::new(),
            counters: Vec::new(),
            tick_period: Duration::ZERO,
            host_calls: core::cell::Cell::new(0),
            last_context: 1,
            answers: None,
            delivered: Vec::new(),
            last_answered: 0,
            calls_log: None,
            next_token: 1,
            spare_response: None,
            spare_call: None,
        }
    }
}

impl FakeHost {
    /// A host at a fixed time (1.7e9 s after the epoch), log level info.
    pub fn new() -> Self {
        FakeHost::default()
    }

    /// Clears the per-request parts (headers, bodies, last response and
    /// call), keeping their memory for the next request.
    pub fn next_request(&mut self) {
        self.request_headers.clear();
        self.request_headers_sent = false;
        self.response_headers.clear();
        self.request_body.clear();
        self.response_body.clear();
        self.call_response_headers.clear();
        self.call_response_body.clear();
        self.delivered.clear();
        if let Some(r) = self.response.take() {
            self.spare_response = Some(r);
        }
        if let Some(c) = self.last_call.take() {
            self.spare_call = Some(c);
        }
    }

    /// Sets the answer the next HTTP call delivery will read.
    pub fn answer_http(&mut self, status: u16, body: &[u8]) {
        self.call_response_headers.clear();
        let mut digits = itoa::Buffer::new();
        self.call_response_headers
            .add(":status", digits.format(status).as_bytes());
        self.call_response_body.clear();
        self.call_response_body.extend_from_slice(body);
    }

    /// Advances the clock: the next window, an expiry, a recheck delay.
    ///
    /// # Examples
    /// ```
    /// use kit::fake::FakeHost;
    /// use std::time::Duration;
    ///
    /// let mut host = FakeHost::new();
    /// let start = host.now_nanos;
    /// host.advance(Duration::from_millis(1500));
    /// assert_eq!(host.now_nanos - start, 1_500_000_000);
    /// ```
    pub fn advance(&mut self, by: Duration) {
        self.now_nanos += u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
    }

    /// Sets the clock to `into` past the start of the current fixed
    /// window of length `window` (windows start at multiples of it since
    /// the epoch, as the kit's limits count them): a test of a per-minute
    /// limit starts at second 15 of a minute and knows its reset is 45.
    ///
    /// # Examples
    /// ```
    /// use kit::fake::FakeHost;
    /// use std::time::Duration;
    ///
    /// let mut host = FakeHost::new();
    /// host.set_time_in_window(Duration::from_secs(60), Duration::from_secs(15));
    /// assert_eq!(host.now_nanos / 1_000_000_000 % 60, 15);
    /// assert_eq!(host.now_nanos % 1_000_000_000, 0);
    /// ```
    pub fn set_time_in_window(&mut self, window: Duration, into: Duration) {
        let window = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX).max(1);
        let into = u64::try_from(into.as_nanos()).unwrap_or(u64::MAX);
        self.now_nanos = self.now_nanos / window * window + into;
    }

    /// The value of a counter by full name (`<plugin>.<counter>`).
    pub fn counter(&self, name: &str) -> u64 {
        self.counters
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }

    /// Whether any log line contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.logs.iter().any(|(_, line)| line.contains(needle))
    }

    fn headers_mut(&mut self, map: HeaderMap) -> &mut Headers {
        match map {
            HeaderMap::Request => &mut self.request_headers,
            HeaderMap::Response => &mut self.response_headers,
            HeaderMap::HttpCallResponse => &mut self.call_response_headers,
        }
    }

    fn record_call(
        &mut self,
        cluster: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
        timeout: Duration,
    ) -> Result<u32, HostError> {
        if let Some(e) = self.refuse_calls {
            return Err(e);
        }
        let token = self.next_token;
        self.next_token = self.next_token.wrapping_add(1).max(1);
        // The call is written into the spare one's buffers (or, before
        // there is a spare, the last call's), which then trade places with
        // the last call: one swap instead of moving whole calls in and out
        // of their options.
        if self.spare_call.is_none() {
            self.spare_call = self.last_call.take();
        }
        let call = self.spare_call.get_or_insert_with(SentCall::default);
        call.token = token;
        call.cluster.clear();
        call.cluster.push_str(cluster);
        call.headers.clear();
        for (name, value) in headers {
            call.headers.add(name, value);
        }
        call.body.clear();
        call.body.extend_from_slice(body);
        call.timeout = timeout;
        core::mem::swap(&mut self.spare_call, &mut self.last_call);
        if let (Some(log), Some(call)) = (self.calls_log.as_mut(), self.last_call.as_ref()) {
            log.push(call.clone());
        }
        self.calls_sent += 1;
        Ok(token)
    }
}

fn property_key_matches(key: &[u8], path: &[&str]) -> bool {
    let mut rest = key;
    for (i, segment) in path.iter().enumerate() {
        if i > 0 {
            match rest.split_first() {
                Some((b'.', tail)) => rest = tail,
                _ => return false,
            }
        }
        match rest.strip_prefix(segment.as_bytes()) {
            Some(tail) => rest = tail,
            None => return false,
        }
    }
    rest.is_empty()
}

impl Host for FakeHost {
    fn now_nanos(&self) -> u64 {
        self.host_calls.set(self.host_calls.get() + 1);
        self.now_nanos
    }

    fn log_level(&mut self) -> LogLevel {
        self.host_calls.set(self.host_calls.get() + 1);
        self.log_level
    }

    fn log(&mut self, level: LogLevel, message: &str) {
        self.host_calls.set(self.host_calls.get() + 1);
        self.logs.push((level, message.to_owned()));
    }

    fn header(&mut self, map: HeaderMap, name: &str) -> Option<&[u8]> {
        self.host_calls.set(self.host_calls.get() + 1);
        if map == HeaderMap::Request && self.request_headers_sent {
            return None;
        }
        self.headers_mut(map).get(name)
    }

    fn set_header(&mut self, map: HeaderMap, name: &str, value: Option<&[u8]>) {
        self.host_calls.set(self.host_calls.get() + 1);
        if map == HeaderMap::Request && self.request_headers_sent {
            return;
        }
        self.headers_mut(map).set(name, value);
    }

    fn add_header(&mut self, map: HeaderMap, name: &str, value: &[u8]) {
        self.host_calls.set(self.host_calls.get() + 1);
        if map == HeaderMap::Request && self.request_headers_sent {
            return;
        }
        self.headers_mut(map).add(name, value);
    }

    fn property(&mut self, path: &[&str]) -> Option<&[u8]> {
        self.host_calls.set(self.host_calls.get() + 1);
        let props = &self.properties;
        props
            .entries
            .iter()
            .find(|e| property_key_matches(props.name_of(e), path))
            .map(|e| props.value_of(e))
    }

    fn body(&mut self, buffer: BodyBuffer, start: usize, len: usize) -> Option<&[u8]> {
        self.host_calls.set(self.host_calls.get() + 1);
        let body = match buffer {
            BodyBuffer::Request => &self.request_body,
            BodyBuffer::Response => &self.response_body,
            BodyBuffer::HttpCallResponse | BodyBuffer::RedisCallResponse => {
                &self.call_response_body
            }
        };
        let end = start.saturating_add(len).min(body.len());
        body.get(start.min(end)..end)
    }

    fn set_body(&mut self, buffer: BodyBuffer, start: usize, len: usize, data: &[u8]) {
        self.host_calls.set(self.host_calls.get() + 1);
        let body = match buffer {
            BodyBuffer::Request => &mut self.request_body,
            BodyBuffer::Response => &mut self.response_body,
            BodyBuffer::HttpCallResponse | BodyBuffer::RedisCallResponse => {
                &mut self.call_response_body
            }
        };
        // As Envoy: a write replaces bytes at the front or appends; one
        // that starts inside the buffer is refused and changes nothing.
        if start != 0 && start < body.len() {
            return;
        }
        let start = start.min(body.len());
        let end = start.saturating_add(len).min(body.len());
        body.splice(start..end, data.iter().copied());
    }

    fn send_response(&mut self, status: u16, headers: &[(&str, &[u8])], body: &[u8]) {
        self.host_calls.set(self.host_calls.get() + 1);
        let mut response = self
            .spare_response
            .take()
            .or_else(|| self.response.take())
            .unwrap_or_default();
        response.status = status;
        if let Some(answers) = self.answers.as_mut() {
            answers.push((self.effective_context, status));
        }
        response.headers.clear();
        for (name, value) in headers {
            response.headers.add(name, value);
        }
        response.body.clear();
        response.body.extend_from_slice(body);
        if let Some(previous) = self.response.replace(response) {
            self.spare_response = Some(previous);
        }
        self.responses_sent += 1;
    }

    fn resume(&mut self, direction: Direction) {
        self.host_calls.set(self.host_calls.get() + 1);
        let i = match direction {
            Direction::Request => 0,
            Direction::Response => 1,
        };
        if let Some(n) = self.resumed.get_mut(i) {
            *n += 1;
        }
        if let (Some(answers), Direction::Request) = (self.answers.as_mut(), direction) {
            answers.push((self.effective_context, 0));
        }
    }

    fn set_effective_context(&mut self, context_id: u32) {
        self.host_calls.set(self.host_calls.get() + 1);
        self.effective_context = context_id;
    }

    fn http_call(
        &mut self,
        cluster: &str,
        headers: &[(&str, &[u8])],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError> {
        self.host_calls.set(self.host_calls.get() + 1);
        self.record_call(cluster, headers, body.unwrap_or_default(), timeout)
    }

    fn redis_init(
        &mut self,
        cluster: &str,
        _username: &str,
        _password: &str,
        _timeout: Duration,
    ) -> Result<(), HostError> {
        self.host_calls.set(self.host_calls.get() + 1);
        if let Some(e) = self.refuse_calls {
            return Err(e);
        }
        self.redis_clusters.push(cluster.to_owned());
        Ok(())
    }

    fn redis_call(&mut self, cluster: &str, command: &[u8]) -> Result<u32, HostError> {
        self.host_calls.set(self.host_calls.get() + 1);
        self.record_call(cluster, &[], command, Duration::ZERO)
    }

    fn set_tick_period(&mut self, period: Duration) {
        self.host_calls.set(self.host_calls.get() + 1);
        self.tick_period = period;
    }

    fn define_counter(&mut self, name: &str) -> Result<u32, HostError> {
        self.host_calls.set(self.host_calls.get() + 1);
        if let Some(i) = self.counters.iter().position(|(n, _)| n == name) {
            return Ok(u32::try_from(i).unwrap_or(u32::MAX));
        }
        self.counters.push((name.to_owned(), 0));
        Ok(u32::try_from(self.counters.len() - 1).unwrap_or(u32::MAX))
    }

    fn increment_counter(&mut self, id: u32, delta: u64) {
        self.host_calls.set(self.host_calls.get() + 1);
        if let Some((_, value)) = self.counters.get_mut(id as usize) {
            *value += delta;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_match_case_aside() {
        // Exact names take the quick comparison, others the case-folding
        // one; both find the first line of the name, and only of it.
        let mut headers = Headers::default();
        headers.add("x-api-key", b"a");
        headers.add("X-Api-Key", b"b");
        headers.add("x-api-kez", b"c");
        headers.add("Content-Type", b"d");
        assert_eq!(headers.get("x-api-key"), Some(&b"a"[..]));
        assert_eq!(headers.get("X-API-KEY"), Some(&b"a"[..]));
        assert_eq!(headers.get("x-api-kez"), Some(&b"c"[..]));
        assert_eq!(headers.get("content-type"), Some(&b"d"[..]));
        assert_eq!(headers.get("Content-Type"), Some(&b"d"[..]));
        assert_eq!(headers.get("x-api-ke"), None);
        assert_eq!(headers.get("x-api-key-"), None);
        headers.set("X-API-KEY", Some(b"e"));
        assert_eq!(headers.get("x-api-key"), Some(&b"e"[..]));
        assert_eq!(headers.len(), 3);
        headers.set("content-TYPE", None);
        assert_eq!(headers.get("Content-Type"), None);
    }
}
