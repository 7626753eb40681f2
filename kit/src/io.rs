//! What a phase handler may do to its request: [`Io`].

use crate::calls::{CallKind, Calls, Owner, StreamId};
use crate::counter_key::CounterKey;
use crate::ending::EndCause;
use crate::flow::{Flow, Responded};
use crate::host::{BodyBuffer, Direction, HeaderMap, Host, LogLevel};
use crate::http::{HttpError, HttpRequest};
use crate::increments::{self, Increments, Placement, Waiter};
use crate::redis::{Redis, RedisClient, RedisError};
use core::fmt;

/// The proxy as seen from one request's phase handler.
///
/// Slices returned by the readers borrow the host's scratch memory: copy
/// what must outlive the next call.
pub struct Io<'a, H: Host> {
    pub(crate) host: &'a mut H,
    pub(crate) redis: Option<&'a mut RedisClient>,
    pub(crate) calls: &'a mut Calls,
    pub(crate) stream: StreamId,
    /// Counts not yet published, by counter index.
    pub(crate) counters: &'a mut [u64],
    pub(crate) log_level: LogLevel,
    pub(crate) plugin: &'static str,
    pub(crate) responded: &'a mut bool,
    /// Set in body handlers: which bytes of which buffer they were given.
    pub(crate) body: Option<BodyAccess>,
    /// Reused buffer for [`Io::rewrite_body`].
    pub(crate) rewritten: &'a mut Vec<u8>,
    /// Set by [`Io::rewrite_body`] to the length of the bytes that replaced
    /// the handler's, so that the engine knows where the next bytes start.
    pub(crate) replaced: &'a mut Option<usize>,
    /// The table of shared increments.
    pub(crate) increments: &'a mut Increments,
    /// This request waits for a count from [`Io::increment`].
    pub(crate) counting: &'a mut bool,
}

/// The body bytes a body handler was given, for [`Io::rewrite_body`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyAccess {
    pub(crate) direction: Direction,
    pub(crate) start: usize,
    pub(crate) len: usize,
    /// The headers of this direction are still held, so `content-length`
    /// can be corrected.
    pub(crate) headers_held: bool,
}

impl<H: Host> fmt::Debug for Io<'_, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Io")
            .field("plugin", &self.plugin)
            .finish_non_exhaustive()
    }
}

impl<'a, H: Host> Io<'a, H> {
    /// A request header, or `None` when absent.
    pub fn request_header(&mut self, name: &str) -> Option<&[u8]> {
        self.host.header(HeaderMap::Request, name)
    }

    /// A response header, or `None` when absent (or before the response).
    pub fn response_header(&mut self, name: &str) -> Option<&[u8]> {
        self.host.header(HeaderMap::Response, name)
    }

    /// A header of the HTTP call answer being delivered to
    /// [`Plugin::on_http_reply`](crate::Plugin::on_http_reply).
    pub fn http_reply_header(&mut self, name: &str) -> Option<&[u8]> {
        self.host.header(HeaderMap::HttpCallResponse, name)
    }

    /// Sets a request header, replacing any value.
    pub fn set_request_header(&mut self, name: &str, value: &[u8]) {
        self.host.set_header(HeaderMap::Request, name, Some(value));
    }

    /// Removes a request header.
    pub fn remove_request_header(&mut self, name: &str) {
        self.host.set_header(HeaderMap::Request, name, None);
    }

    /// Sets a response header, replacing any value.
    pub fn set_response_header(&mut self, name: &str, value: &[u8]) {
        self.host.set_header(HeaderMap::Response, name, Some(value));
    }

    /// Adds a response header value.
    pub fn add_response_header(&mut self, name: &str, value: &[u8]) {
        self.host.add_header(HeaderMap::Response, name, value);
    }

    /// Removes a response header.
    pub fn remove_response_header(&mut self, name: &str) {
        self.host.set_header(HeaderMap::Response, name, None);
    }

    /// A proxy property such as `["source", "address"]`.
    pub fn property(&mut self, path: &[&str]) -> Option<&[u8]> {
        self.host.property(path)
    }

    /// Wall-clock time in nanoseconds since the Unix epoch.
    pub fn now_nanos(&self) -> u64 {
        self.host.now_nanos()
    }

    /// Answers the request locally with `status`, `headers` and `body`; the
    /// upstream is not called. Return the [`Flow`] this gives.
    ///
    /// A second answer for the same request is ignored (and logged): the
    /// proxy could not send it.
    pub fn respond(&mut self, status: u16, headers: &[(&str, &[u8])], body: &[u8]) -> Flow {
        if *self.responded {
            self.log(
                LogLevel::Error,
                format_args!("a second local response for one request was dropped"),
            );
        } else {
            *self.responded = true;
            self.host.send_response(status, headers, body);
        }
        Flow::Responded(Responded(()))
    }

    /// The Redis client, to send one command for this request.
    ///
    /// # Errors
    /// [`RedisError::NotConfigured`] when the plugin has no `redis` config.
    pub fn redis(&mut self) -> Result<Redis<'_, H>, RedisError> {
        let client = self.redis.as_deref_mut().ok_or(RedisError::NotConfigured)?;
        Ok(Redis {
            client,
            host: self.host,
            calls: self.calls,
            owner: Owner::Stream(self.stream),
        })
    }

    /// The Redis client, to send one command on behalf of the root context:
    /// a call that outlives this request.
    ///
    /// Its reply goes to
    /// [`Plugin::on_root_reply`](crate::Plugin::on_root_reply) with `tag`
    /// (the plugin's own; [`ADOPTED`](crate::ADOPTED) is the kit's),
    /// whether this request is still there or not, and the request does not
    /// wait for it (a handler that pauses on it alone is resumed). This is
    /// the call to make from
    /// [`Plugin::on_stream_end`](crate::Plugin::on_stream_end), and for any
    /// write that must not be lost when the client goes away. The proxy
    /// owns such calls on its root context: Envoy sends every HTTP call of
    /// a module through the root context and delivers the answer there, and
    /// Higress answers its Redis calls on the root context too, so neither
    /// cancels the call when the request's context is destroyed.
    ///
    /// # Errors
    /// [`RedisError::NotConfigured`] when the plugin has no `redis` config.
    pub fn root_redis(&mut self, tag: u32) -> Result<Redis<'_, H>, RedisError> {
        let client = self.redis.as_deref_mut().ok_or(RedisError::NotConfigured)?;
        Ok(Redis {
            client,
            host: self.host,
            calls: self.calls,
            owner: Owner::Root(tag),
        })
    }

    /// Adds `amount` to the counter `key` in Redis, atomically, setting its
    /// expiry to `ttl_secs` on the key's first write; the count comes to
    /// [`Plugin::on_count`](crate::Plugin::on_count), so the handler
    /// returns [`Flow::Pause`] next.
    ///
    /// In a plugin whose [`Plugin::REDIS`](crate::Plugin::REDIS) is
    /// [`RedisUse::Counting`](crate::RedisUse::Counting), concurrent
    /// increments share Redis round trips (otherwise each goes alone, with
    /// the same counts): while a call for `key` is in flight from this VM,
    /// this one waits, and when its reply comes every increment that
    /// waited goes as one increment of their sum; and while
    /// [`CALLS_IN_FLIGHT`](crate::increments::CALLS_IN_FLIGHT) shared calls
    /// are in flight, a key with nothing in flight waits too, and the next
    /// reply sends every waiting key in one call over several keys. Each
    /// request is still told the count it would have seen
    /// had it been sent alone, in arrival order, so a limit decided on it
    /// is as exact as one call per request (the
    /// [module docs](crate::increments) give the bounds). A call that fails
    /// fails every request in it, each with the same error; a request
    /// that ends while it waits is still counted, and the others are
    /// answered. The call is owned by the root context, so it outlives the
    /// request that sent it.
    ///
    /// # Examples
    /// ```ignore
    /// match cx.io.increment(&key, 1, window_secs) {
    ///     Ok(()) => Flow::Pause, // the count arrives in on_count
    ///     Err(e) => fail(cx, e),
    /// }
    /// ```
    ///
    /// # Errors
    /// [`RedisError::NotConfigured`] when the plugin has no `redis` config;
    /// [`RedisError::Refused`] when the host refuses the call. Nothing is
    /// left waiting then.
    pub fn increment(
        &mut self,
        key: &CounterKey<'_>,
        amount: u64,
        ttl_secs: u64,
    ) -> Result<(), RedisError> {
        let client = self.redis.as_deref_mut().ok_or(RedisError::NotConfigured)?;
        let waiter = Waiter {
            stream: self.stream,
            amount,
        };
        let owner = match self.increments.place(key.parts(), waiter, ttl_secs) {
            Placement::Queued => {
                *self.counting = true;
                return Ok(());
            }
            Placement::Lead(call) => Owner::Shared(call),
            Placement::Alone => Owner::Count(self.stream),
        };
        let redis = Redis {
            client,
            host: self.host,
            calls: self.calls,
            owner,
        };
        let sent = redis
            .evalsha(&increments::COUNT)
            .counter_key(key)
            .arg_int(increments::clamp(ttl_secs))
            .arg_int(increments::clamp(amount))
            .send();
        match (sent, owner) {
            (Ok(()), _) => *self.counting = true,
            (Err(_), Owner::Shared(call)) => self.increments.abandon(call),
            (Err(_), _) => {}
        }
        sent
    }

    /// Why the request ended early, from the proxy's response flags (one
    /// host call); meant for
    /// [`Plugin::on_stream_end`](crate::Plugin::on_stream_end), where the
    /// proxy has set them. [`EndCause::Unknown`] when the proxy has no such
    /// property.
    pub fn end_cause(&mut self) -> EndCause {
        let flags = self
            .host
            .property(&["response", "flags"])
            .and_then(|bytes| bytes.first_chunk::<8>().copied())
            .map(u64::from_le_bytes);
        flags.map_or(EndCause::Unknown, EndCause::from_response_flags)
    }

    /// Sends an HTTP call for this request; its answer arrives through
    /// [`Plugin::on_http_reply`](crate::Plugin::on_http_reply).
    ///
    /// # Errors
    /// [`HttpError::Refused`] when the host refuses (for example: no such
    /// cluster).
    pub fn http_call(&mut self, request: &HttpRequest<'_>) -> Result<(), HttpError> {
        let mut headers: smallvec::SmallVec<[(&str, &[u8]); 8]> = smallvec::SmallVec::new();
        headers.push((":method", request.method.as_bytes()));
        headers.push((":path", request.path.as_bytes()));
        headers.push((":authority", request.authority.as_bytes()));
        headers.extend(
            request
                .headers
                .iter()
                .map(|&(name, value)| (name, value.as_bytes())),
        );
        let token = self
            .host
            .http_call(request.cluster, &headers, request.body, request.timeout)
            .map_err(HttpError::Refused)?;
        self.calls
            .insert(token, Owner::Stream(self.stream), CallKind::Http);
        Ok(())
    }

    /// Adds one to counter `index` of [`Plugin::COUNTERS`](crate::Plugin::COUNTERS).
    pub fn count(&mut self, index: usize) {
        self.count_by(index, 1);
    }

    /// Adds `delta` to counter `index` of [`Plugin::COUNTERS`](crate::Plugin::COUNTERS).
    ///
    /// This is a plain addition: the sums reach the proxy on the next tick
    /// (at most [`COUNTER_FLUSH`](crate::COUNTER_FLUSH) later), so counting
    /// costs a request no host call.
    pub fn count_by(&mut self, index: usize, delta: u64) {
        if let Some(pending) = self.counters.get_mut(index) {
            *pending = pending.saturating_add(delta);
        }
    }

    /// Whether a line at `level` would be written.
    pub fn log_enabled(&self, level: LogLevel) -> bool {
        level >= self.log_level
    }

    /// Writes a log line, formatting `message` only if `level` is enabled.
    ///
    /// # Examples
    /// ```ignore
    /// cx.io.log(LogLevel::Debug, format_args!("key {} is over its limit", key));
    /// ```
    pub fn log(&mut self, level: LogLevel, message: fmt::Arguments<'_>) {
        crate::log::write(self.host, self.log_level, level, self.plugin, message);
    }

    /// Replaces the body bytes this body handler was given.
    ///
    /// `write` gets an empty, reused buffer and returns whether to replace
    /// the body with what it wrote; returning false leaves the body as it
    /// is. In a [`BodyMode::Buffer`](crate::BodyMode::Buffer) handler whose
    /// headers are still held, the kit sets `content-length` to the new
    /// length; otherwise a plugin that declares
    /// [`Plugin::REWRITES_BODY`](crate::Plugin::REWRITES_BODY) has had its
    /// `content-length` dropped before the headers left.
    ///
    /// The proxy replaces only bytes at the front of the body it holds
    /// (Envoy refuses a write that starts inside it), so a
    /// [`BodyMode::Stream`](crate::BodyMode::Stream) handler can rewrite
    /// what it was given only when nothing is held before it: not the new
    /// bytes after held ones, nor a later piece of a chunk longer than
    /// [`STREAM_PIECE`](crate::engine::STREAM_PIECE). Such a rewrite is
    /// not attempted and this returns false.
    ///
    /// Returns whether the body was replaced: false also outside body
    /// handlers.
    pub fn rewrite_body(&mut self, write: impl FnOnce(&mut Vec<u8>) -> bool) -> bool {
        let Some(access) = self.body else {
            return false;
        };
        if access.start != 0 {
            return false;
        }
        self.rewritten.clear();
        if !write(self.rewritten) {
            return false;
        }
        let (buffer, map) = match access.direction {
            Direction::Request => (BodyBuffer::Request, HeaderMap::Request),
            Direction::Response => (BodyBuffer::Response, HeaderMap::Response),
        };
        self.host
            .set_body(buffer, access.start, access.len, self.rewritten);
        *self.replaced = Some(self.rewritten.len());
        if access.headers_held && self.host.header(map, "content-length").is_some() {
            let mut digits = itoa::Buffer::new();
            self.host.set_header(
                map,
                "content-length",
                Some(digits.format(self.rewritten.len()).as_bytes()),
            );
        }
        true
    }

    /// Resumes a paused direction of this request. The kit does this itself
    /// when a reply handler returns [`Flow::Continue`]; plugins rarely need it.
    pub fn resume(&mut self, direction: Direction) {
        self.host.resume(direction);
    }
}

/// The proxy as seen from the root context, in
/// [`Plugin::on_root_reply`](crate::Plugin::on_root_reply): no request, only
/// counters, the log, the clock and root-owned Redis calls.
pub struct RootIo<'a, H: Host> {
    pub(crate) host: &'a mut H,
    pub(crate) redis: Option<&'a mut RedisClient>,
    pub(crate) calls: &'a mut Calls,
    pub(crate) counters: &'a mut [u64],
    pub(crate) log_level: LogLevel,
    pub(crate) plugin: &'static str,
}

impl<H: Host> fmt::Debug for RootIo<'_, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootIo")
            .field("plugin", &self.plugin)
            .finish_non_exhaustive()
    }
}

impl<H: Host> RootIo<'_, H> {
    /// Adds `delta` to counter `index` of [`Plugin::COUNTERS`](crate::Plugin::COUNTERS),
    /// as [`Io::count_by`].
    pub fn count_by(&mut self, index: usize, delta: u64) {
        if let Some(pending) = self.counters.get_mut(index) {
            *pending = pending.saturating_add(delta);
        }
    }

    /// Adds one to counter `index`.
    pub fn count(&mut self, index: usize) {
        self.count_by(index, 1);
    }

    /// Whether a line at `level` would be written.
    pub fn log_enabled(&self, level: LogLevel) -> bool {
        level >= self.log_level
    }

    /// Writes a log line, formatting `message` only if `level` is enabled.
    pub fn log(&mut self, level: LogLevel, message: fmt::Arguments<'_>) {
        crate::log::write(self.host, self.log_level, level, self.plugin, message);
    }

    /// Wall-clock time in nanoseconds since the Unix epoch.
    pub fn now_nanos(&self) -> u64 {
        self.host.now_nanos()
    }

    /// Sends another root-owned Redis command (a retry, a follow-up), as
    /// [`Io::root_redis`].
    ///
    /// # Errors
    /// [`RedisError::NotConfigured`] when the plugin has no `redis` config.
    pub fn redis(&mut self, tag: u32) -> Result<Redis<'_, H>, RedisError> {
        let client = self.redis.as_deref_mut().ok_or(RedisError::NotConfigured)?;
        Ok(Redis {
            client,
            host: self.host,
            calls: self.calls,
            owner: Owner::Root(tag),
        })
    }
}
