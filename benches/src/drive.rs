//! Drivers that send one request through the kit's limiter or the naive
//! one, over the same [`FakeHost`] calls: the request headers are put on
//! the host, the webdis call is answered with `:n\r\n`, the upstream
//! response headers are delivered, the request is closed.
//!
//! The host work is identical on both sides, so what a benchmark measures
//! beyond it is the plugin's own work. Both drivers reuse their host's
//! buffers; the kit driver allocates nothing per request once warm (as
//! `plugins/limiter/tests/zero_alloc.rs` checks for the same loop).

use crate::inputs::{Request, UPSTREAM_RESPONSE_HEADERS};
use crate::naive_limiter::NaiveLimiter;
use kit::fake::FakeHost;
use kit::{Action, ConfigError, Filter};
use limiter::Limiter;

/// Status of a request that was paused and never answered nor resumed.
pub const HANGING: u16 = 0;

fn load_request(host: &mut FakeHost, request: &Request<'_>) {
    host.next_request();
    host.request_headers.add(":method", b"GET");
    host.request_headers.add(":scheme", b"https");
    host.request_headers.add(":path", request.path.as_bytes());
    host.request_headers
        .add(":authority", request.authority.as_bytes());
    for (name, value) in request.headers {
        host.request_headers.add(name, value);
    }
}

fn load_response(host: &mut FakeHost) {
    for (name, value) in UPSTREAM_RESPONSE_HEADERS {
        host.response_headers.add(name, value);
    }
}

/// Answers the call the plugin just sent with `:n\r\n`, `n` from `redis`
/// given the call's webdis path. Returns the token and the body length.
fn answer(host: &mut FakeHost, redis: &mut impl FnMut(&[u8]) -> i64) -> Option<(u32, usize)> {
    let call = host.last_call.as_ref()?;
    let count = redis(call.headers.get(":path").unwrap_or_default());
    let token = call.token;
    let mut digits = itoa::Buffer::new();
    host.call_response_headers.clear();
    host.call_response_headers.add(":status", b"200");
    host.call_response_body.clear();
    host.call_response_body.push(b':');
    host.call_response_body
        .extend_from_slice(digits.format(count).as_bytes());
    host.call_response_body.extend_from_slice(b"\r\n");
    Some((token, host.call_response_body.len()))
}

/// The status the client gets: the local answer's, 200 when the request
/// was resumed, [`HANGING`] otherwise.
fn verdict(host: &FakeHost, resumed_before: u64) -> u16 {
    match &host.response {
        Some(r) => r.status,
        None if host.resumed[0] > resumed_before => 200,
        None => HANGING,
    }
}

/// The kit's limiter, `Filter<Limiter, FakeHost>`.
#[derive(Debug)]
pub struct KitDriver {
    filter: Filter<Limiter, FakeHost>,
    next_context: u32,
}

impl KitDriver {
    /// A filter configured with `config`.
    ///
    /// # Errors
    /// When the kit refuses the configuration.
    pub fn new(config: &str) -> Result<Self, ConfigError> {
        let mut filter = Filter::new(FakeHost::new());
        filter.configure(config.as_bytes().to_vec())?;
        Ok(KitDriver {
            filter,
            next_context: 2,
        })
    }

    /// The host.
    pub fn host(&self) -> &FakeHost {
        self.filter.host()
    }

    /// The host, to move the clock.
    pub fn host_mut(&mut self) -> &mut FakeHost {
        self.filter.host_mut()
    }

    /// Counter `name` once the kit has published its counts, as it does on
    /// its tick.
    pub fn counter(&mut self, name: &str) -> u64 {
        self.filter.flush_counters();
        self.filter.host().counter(name)
    }

    /// Sends one request; `redis` gives the count for its call. Returns the
    /// status the client gets (see [`verdict`]).
    pub fn request(&mut self, request: &Request<'_>, redis: &mut impl FnMut(&[u8]) -> i64) -> u16 {
        load_request(self.filter.host_mut(), request);
        let context = self.next_context;
        self.next_context = self.next_context.wrapping_add(1).max(2);
        let stream = self.filter.open_stream(context);
        let resumed_before = self.filter.host().resumed[0];
        let status = match self.filter.on_request_headers(stream, true) {
            Action::Continue => 200,
            Action::Pause => {
                if self.filter.host().response.is_none() {
                    if let Some((token, len)) = answer(self.filter.host_mut(), redis) {
                        self.filter.on_http_call_response(token, 1, len, false);
                    }
                }
                verdict(self.filter.host(), resumed_before)
            }
        };
        if status == 200 {
            load_response(self.filter.host_mut());
            let _ = self.filter.on_response_headers(stream, true);
        }
        self.filter.close_stream(stream);
        status
    }
}

/// The naive limiter over its own `FakeHost`.
#[derive(Debug)]
pub struct NaiveDriver {
    plugin: NaiveLimiter,
    host: FakeHost,
    next_context: u32,
}

impl NaiveDriver {
    /// A naive limiter configured with `config`.
    ///
    /// # Errors
    /// When the naive limiter refuses the configuration.
    pub fn new(config: &str) -> Result<Self, String> {
        let mut host = FakeHost::new();
        let plugin = NaiveLimiter::configure(config.as_bytes(), &mut host)?;
        Ok(NaiveDriver {
            plugin,
            host,
            next_context: 2,
        })
    }

    /// The host.
    pub fn host(&self) -> &FakeHost {
        &self.host
    }

    /// The host, to move the clock.
    pub fn host_mut(&mut self) -> &mut FakeHost {
        &mut self.host
    }

    /// Sends one request; `redis` gives the count for its call. Returns the
    /// status the client gets.
    pub fn request(&mut self, request: &Request<'_>, redis: &mut impl FnMut(&[u8]) -> i64) -> u16 {
        load_request(&mut self.host, request);
        let context = self.next_context;
        self.next_context = self.next_context.wrapping_add(1).max(2);
        self.plugin.on_create_context(context);
        let resumed_before = self.host.resumed[0];
        let status = match self.plugin.on_request_headers(&mut self.host, context) {
            Action::Continue => 200,
            Action::Pause => {
                if self.host.response.is_none() {
                    if let Some((token, len)) = answer(&mut self.host, redis) {
                        self.plugin
                            .on_http_call_response(&mut self.host, token, 1, len);
                    }
                }
                verdict(&self.host, resumed_before)
            }
        };
        if status == 200 {
            load_response(&mut self.host);
            let _ = self.plugin.on_response_headers(&mut self.host, context);
        }
        self.plugin.on_done(context);
        status
    }
}

/// The host side of a request alone: the driver's work (request headers
/// put on the host, the webdis call recorded and answered, the upstream
/// response headers) with no plugin in between. Subtract it from a
/// `limiter_request` number to see the plugin's own cost.
#[derive(Debug, Default)]
pub struct HostBaseline {
    host: FakeHost,
}

impl HostBaseline {
    /// A fresh host.
    pub fn new() -> Self {
        HostBaseline::default()
    }

    /// Drives the host through one request's calls with `path` as the
    /// webdis call's path.
    pub fn request(
        &mut self,
        request: &Request<'_>,
        path: &str,
        redis: &mut impl FnMut(&[u8]) -> i64,
    ) -> u16 {
        use kit::Host;
        load_request(&mut self.host, request);
        let headers = [
            (":method", "GET"),
            (":path", path),
            (":authority", "webdis"),
        ];
        let timeout = core::time::Duration::from_millis(500);
        if self
            .host
            .http_call("webdis", &headers, None, timeout)
            .is_err()
        {
            return HANGING;
        }
        let _ = answer(&mut self.host, redis);
        load_response(&mut self.host);
        200
    }
}

/// What a client and Redis saw of one request, for comparing the drivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Status the client got.
    pub status: u16,
    /// Path of the webdis call, if one was sent.
    pub redis_path: Option<String>,
    /// `x-ratelimit-*` headers the client got, in order.
    pub headers: Vec<(String, String)>,
    /// Body of a local answer.
    pub body: String,
}

impl Outcome {
    /// Reads the outcome of the request just driven from `host`.
    pub fn read(host: &FakeHost, status: u16) -> Outcome {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let (headers, body) = match &host.response {
            Some(r) => (&r.headers, text(&r.body)),
            None => (&host.response_headers, String::new()),
        };
        Outcome {
            status,
            redis_path: host
                .last_call
                .as_ref()
                .and_then(|c| c.headers.get(":path"))
                .map(text),
            headers: headers
                .iter()
                .filter(|(n, _)| n.starts_with(b"x-ratelimit"))
                .map(|(n, v)| (text(n), text(v)))
                .collect(),
            body,
        }
    }
}
