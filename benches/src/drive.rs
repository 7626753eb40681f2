//! Drivers that send one request through the kit's limiter or the naive
//! one, over the same [`FakeHost`] calls: the request headers are put on
//! the host, the webdis call is answered with `:n\r\n`, the upstream
//! response headers are delivered, the request is closed.
//!
//! The host work is identical on both sides, so what a benchmark measures
//! beyond it is the plugin's own work. Both drivers reuse their host's
//! buffers; the kit driver allocates nothing per request once warm (as
//! `plugins/limiter/tests/zero_alloc.rs` checks for the same loop).

use crate::inputs::{Request, CHAT_HEADERS, UPSTREAM_RESPONSE_HEADERS};
use crate::naive_limiter::NaiveLimiter;
use kit::fake::FakeHost;
use kit::{Action, ConfigError, Filter};
use limiter::Limiter;
use token_quota::TokenQuota;

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

    /// A naive limiter configured with `config` that asks Redis on every
    /// request, keys over their limit included, as Higress's plugin does
    /// (see [`NaiveLimiter::without_over_limit_cache`]).
    ///
    /// # Errors
    /// When the naive limiter refuses the configuration.
    pub fn without_over_limit_cache(config: &str) -> Result<Self, String> {
        let mut driver = NaiveDriver::new(config)?;
        driver.plugin = driver.plugin.without_over_limit_cache();
        Ok(driver)
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
        let headers: [(&str, &[u8]); 3] = [
            (":method", b"GET"),
            (":path", path.as_bytes()),
            (":authority", b"webdis"),
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

/// The token quota, `Filter<TokenQuota, FakeHost>`, with a one-counter
/// Redis stand-in: one chat completion per [`TokenQuotaDriver::request`],
/// each with its quota read and its usage charged.
///
/// Reads and charges are both the kit's counting script
/// (`EVALSHA <sha> 1 <key> <ttl> <amount>`, a read adding 0): the stand-in
/// adds the amount read from the call's webdis path and answers the
/// count, so the charged total is what the plugin sent, not what the
/// driver assumed. It keeps one counter: every
/// request of a run is the same client in the same window (the clock does
/// not move).
#[derive(Debug)]
pub struct TokenQuotaDriver {
    filter: Filter<TokenQuota, FakeHost>,
    next_context: u32,
    charged: i64,
    charges: u64,
    reads: u64,
}

/// The last argument of a webdis path (`/.../<n>.raw`) as a number.
fn last_number(path: &[u8]) -> Option<i64> {
    let path = path.strip_suffix(b".raw")?;
    let segment = path.rsplit(|&b| b == b'/').next()?;
    core::str::from_utf8(segment).ok()?.parse().ok()
}

impl TokenQuotaDriver {
    /// A filter configured with `config`.
    ///
    /// # Errors
    /// When the kit refuses the configuration.
    pub fn new(config: &str) -> Result<Self, ConfigError> {
        let mut filter = Filter::new(FakeHost::new());
        filter.configure(config.as_bytes().to_vec())?;
        Ok(TokenQuotaDriver {
            filter,
            next_context: 2,
            charged: 0,
            charges: 0,
            reads: 0,
        })
    }

    /// The host.
    pub fn host(&self) -> &FakeHost {
        self.filter.host()
    }

    /// Tokens charged so far (the stand-in's counter).
    pub fn tokens_charged(&self) -> i64 {
        self.charged
    }

    /// Charges and quota reads (counting calls adding 0) the stand-in
    /// answered.
    pub fn redis_calls(&self) -> (u64, u64) {
        (self.charges, self.reads)
    }

    /// Counter `name` once the kit has published its counts.
    pub fn counter(&mut self, name: &str) -> u64 {
        self.filter.flush_counters();
        self.filter.host().counter(name)
    }

    /// Answers the call the plugin sent since `calls_before`, if any.
    fn answer(&mut self, calls_before: u64) {
        let host = self.filter.host_mut();
        if host.calls_sent == calls_before {
            return;
        }
        let Some(call) = host.last_call.as_ref() else {
            return;
        };
        let token = call.token;
        let path = call.headers.get(":path").unwrap_or_default();
        let mut reply = core::mem::take(&mut host.call_response_body);
        reply.clear();
        if path.starts_with(b"/EVALSHA/") {
            // `/EVALSHA/<sha>/1/<key>/<ttl>/<amount>.raw`: the key is
            // percent-encoded, so it holds no `/`.
            match last_number(path).unwrap_or(0) {
                0 => self.reads += 1,
                amount => {
                    self.charges += 1;
                    self.charged += amount;
                }
            }
            reply.push(b':');
            reply.extend_from_slice(itoa::Buffer::new().format(self.charged).as_bytes());
            reply.extend_from_slice(b"\r\n");
        } else {
            reply.extend_from_slice(b"-ERR unexpected command\r\n");
        }
        host.call_response_headers.clear();
        host.call_response_headers.add(":status", b"200");
        host.call_response_body = reply;
        let len = host.call_response_body.len();
        self.filter.on_http_call_response(token, 1, len, false);
    }

    /// One chat completion: request headers and `body` (buffered, as the
    /// plugin asks), the quota read answered, the upstream's event-stream
    /// response headers, `chunks` as the response body (the last one ends
    /// it), the charge answered. Returns the status the client got: 200
    /// when the request went upstream and its answer was released whole,
    /// the local answer's status, or [`HANGING`].
    pub fn request(&mut self, body: &[u8], chunks: &[&[u8]]) -> u16 {
        let host = self.filter.host_mut();
        host.next_request();
        host.request_headers.add(":method", b"POST");
        host.request_headers.add(":scheme", b"https");
        host.request_headers.add(":path", b"/v1/chat/completions");
        host.request_headers.add(":authority", b"llm.example.com");
        for (name, value) in CHAT_HEADERS {
            host.request_headers.add(name, value);
        }
        host.request_headers.add(
            "content-length",
            itoa::Buffer::new().format(body.len()).as_bytes(),
        );
        host.request_body.extend_from_slice(body);
        let context = self.next_context;
        self.next_context = self.next_context.wrapping_add(1).max(2);
        let stream = self.filter.open_stream(context);
        let resumed_before = self.filter.host().resumed;
        let sent_before = self.filter.host().responses_sent;

        let calls_before = self.filter.host().calls_sent;
        let mut through = self.filter.on_request_headers(stream, false) == Action::Continue;
        if !through {
            through = self.filter.on_request_body(stream, body.len(), true) == Action::Continue;
        }
        self.answer(calls_before);
        if self.filter.host().responses_sent > sent_before {
            let status = self.filter.host().response.as_ref().map_or(0, |r| r.status);
            self.filter.close_stream(stream);
            return status;
        }
        through |= self.filter.host().resumed[0] > resumed_before[0];
        if !through {
            self.filter.close_stream(stream);
            return HANGING;
        }

        let host = self.filter.host_mut();
        host.response_headers.add(":status", b"200");
        host.response_headers
            .add("content-type", b"text/event-stream");
        if self.filter.on_response_headers(stream, false) != Action::Continue {
            self.filter.close_stream(stream);
            return HANGING;
        }
        // Each chunk flows on unless the plugin holds it; the usage is in
        // the last chunk, which the plugin holds until the charge is
        // written.
        let mut released = true;
        for (i, chunk) in chunks.iter().enumerate() {
            let host = self.filter.host_mut();
            host.response_body.clear();
            host.response_body.extend_from_slice(chunk);
            let calls_before = host.calls_sent;
            let last = i + 1 == chunks.len();
            released = self.filter.on_response_body(stream, chunk.len(), last) == Action::Continue;
            if !released && last {
                self.answer(calls_before);
                released = self.filter.host().resumed[1] > resumed_before[1];
            }
        }
        self.filter.close_stream(stream);
        if released {
            200
        } else {
            HANGING
        }
    }
}
