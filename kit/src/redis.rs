//! The Redis client: typed commands, two transports, one reply path.
//!
//! A command is written argument by argument straight into the bytes its
//! transport sends, in a reused buffer, and sent with exactly one host call:
//!
//! * **native** (Higress): RESP through `proxy_redis_call`; the host pairs one
//!   reply with each call, so one call carries exactly one command.
//! * **webdis** (upstream Envoy, which has no Redis host call): an HTTP `GET
//!   /CMD/arg1/arg2.raw` to a webdis cluster, every argument percent-encoded,
//!   answered with raw RESP.
//!
//! Replies of both transports have one owner, `RedisClient::receive`:
//! it reads the host's answer (a webdis HTTP answer or a Higress native
//! reply), decodes it, turns transport failures into a [`RedisError`] and
//! re-sends an EVALSHA that met `NOSCRIPT` as EVAL; what it returns is
//! what the call's owner gets (through [`Plugin::on_redis_reply`] for a
//! request).
//!
//! [`Plugin::on_redis_reply`]: crate::Plugin::on_redis_reply

use crate::abi::REDIS_CALL_REPLY;
use crate::calls::{CallKind, Calls, Owner, Taken};
use crate::config::{ConfigError, Fields};
use crate::counter_key::CounterKey;
use crate::host::{BodyBuffer, HeaderMap, Host, HostError};
use crate::http::parse_status;
use crate::resp::{self, CommandBuf, Decoded, Form, PATH_COUNT, RESP_COUNT};
pub use crate::resp::{Reply, ReplyArray};
use core::fmt;
use core::time::Duration;

/// Whether this build has the native Redis transport (Higress's
/// `proxy_redis_call`, the `higress` feature): without it a `redis` block
/// naming `service_name` is refused at configuration.
pub const NATIVE_TRANSPORT: bool = cfg!(feature = "higress");

/// Why a Redis command got no reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisError {
    /// The configuration has no `redis` object.
    NotConfigured,
    /// The host refused to send the command (unknown cluster, or a host
    /// without the call).
    Refused(HostError),
    /// No reply within the configured timeout.
    Timeout,
    /// The connection failed or was reset.
    Network,
    /// webdis answered with this HTTP status instead of a reply (503 when
    /// it cannot reach Redis).
    Http(u16),
    /// The reply was not one complete RESP value.
    Protocol,
    /// The command would make a webdis URL longer than
    /// [`WEBDIS_PATH_MAX`] (a key that holds a huge request value): not
    /// sent.
    TooLong,
}

/// The longest webdis path sent. webdis refuses a request whose head
/// passes 80 KiB with a `400` and, while the rest of that request is still
/// arriving, reads it as a second request and answers it too: the proxy
/// pairs that stray `400` with the next call on the connection, whatever
/// its key. So a longer command is refused here, before it is sent; the
/// headroom is for the headers the proxy adds.
pub const WEBDIS_PATH_MAX: usize = 64 * 1024;

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisError::NotConfigured => f.write_str("no redis configured"),
            RedisError::Refused(e) => write!(f, "redis call refused: {e}"),
            RedisError::Timeout => f.write_str("redis call timed out"),
            RedisError::Network => f.write_str("redis connection failed"),
            RedisError::Http(status) => write!(f, "webdis answered HTTP {status}"),
            RedisError::Protocol => f.write_str("redis reply is not valid RESP"),
            RedisError::TooLong => write!(
                f,
                "redis command not sent: its webdis URL would pass {WEBDIS_PATH_MAX} bytes"
            ),
        }
    }
}

impl std::error::Error for RedisError {}

/// A Lua script, sent by digest with [`Redis::evalsha`] and by source only
/// when Redis does not know it yet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Script {
    source: &'static str,
    /// `EVALSHA`, the lowercase hex digest and a reserved `numkeys` as
    /// RESP bulk strings: an EVALSHA starts with one copy of all three
    /// (see [`Redis::evalsha`]).
    resp: [u8; RESP_LEN],
    /// The same as path segments: `/EVALSHA/`, the digest, `/0`.
    path: [u8; PATH_LEN],
}

/// What comes before the digest in [`Script::resp`]; digits and letters
/// need no escaping, so a path's is just the slashes.
const RESP_HEAD: &[u8] = b"$7\r\nEVALSHA\r\n$40\r\n";
const PATH_HEAD: &[u8] = b"/EVALSHA/";
const RESP_LEN: usize = RESP_HEAD.len() + 40 + 2 + RESP_COUNT.len();
const PATH_LEN: usize = PATH_HEAD.len() + 40 + PATH_COUNT.len();

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Script")
            .field("sha1", &self.sha1_hex())
            .finish()
    }
}

impl Script {
    /// Computes the SHA-1 digest Redis will know the script by.
    ///
    /// A `const fn`: bound to a `const`, the digest is computed by the
    /// compiler, so a plugin pays nothing for it when it is configured
    /// and the module carries no SHA-1 code.
    ///
    /// # Examples
    /// ```
    /// use kit::Script;
    ///
    /// const COUNT: Script = Script::new("return redis.call('INCR', KEYS[1])");
    /// assert_eq!(COUNT.sha1_hex().len(), 40);
    /// ```
    // Constant indices in bounded loops; evaluated by the compiler.
    #[allow(clippy::indexing_slicing)]
    pub const fn new(source: &'static str) -> Self {
        let digest = sha1(source.as_bytes());
        let mut resp = [0u8; RESP_LEN];
        let mut path = [0u8; PATH_LEN];
        copy(&mut resp, 0, RESP_HEAD);
        copy(&mut resp, RESP_HEAD.len() + 40, b"\r\n");
        copy(&mut resp, RESP_HEAD.len() + 42, RESP_COUNT);
        copy(&mut path, 0, PATH_HEAD);
        copy(&mut path, PATH_HEAD.len() + 40, PATH_COUNT);
        let mut i = 0;
        while i < 40 {
            let nibble = if i % 2 == 0 {
                digest[i / 2] >> 4
            } else {
                digest[i / 2]
            };
            let hex = crate::hex::digit(nibble, crate::hex::Case::Lower);
            resp[RESP_HEAD.len() + i] = hex;
            path[PATH_HEAD.len() + i] = hex;
            i += 1;
        }
        Script { source, resp, path }
    }

    /// The script's source.
    pub fn source(&self) -> &'static str {
        self.source
    }

    /// The lowercase hex SHA-1 digest.
    pub fn sha1_hex(&self) -> &str {
        let hex = self
            .path
            .get(PATH_HEAD.len()..PATH_HEAD.len() + 40)
            .unwrap_or_default();
        core::str::from_utf8(hex).unwrap_or_default()
    }
}

#[derive(Debug)]
enum Transport {
    Webdis { cluster: String },
    Native { cluster: String },
}

/// The configured client: transport, timeout and reused buffers.
#[derive(Debug)]
pub(crate) struct RedisClient {
    transport: Transport,
    timeout: Duration,
    /// `redis.cluster`: Redis is a cluster (behind a cluster-aware proxy),
    /// so a call's keys must share a hash slot.
    cluster: bool,
    /// The command being built, then sent; swapped with a call entry's
    /// when an EVALSHA is kept for a retry.
    command: CommandBuf,
}

const DEFAULT_TIMEOUT_MS: u64 = 1000;

impl RedisClient {
    /// Reads a `redis` object:
    /// `{webdis_cluster, timeout}` or
    /// `{service_name, service_port, username, password, timeout, database}`,
    /// with an optional `transport: "webdis" | "native"` to be explicit and
    /// `cluster: true` when Redis is a cluster (keys of one call then share
    /// a hash slot).
    ///
    /// # Errors
    /// Names the field at fault: an unknown transport, a missing cluster or
    /// service, a native transport in a build without the `higress`
    /// feature, or a Higress host that refuses to initialise the client.
    pub(crate) fn configure<H: Host>(
        redis: &Fields<'_, '_>,
        host: &mut H,
    ) -> Result<Self, ConfigError> {
        // 0 means the default, as in Higress's plugins (configurations
        // written for them say `timeout: 0` to mean "unset").
        let timeout_ms = match redis.u64_or("timeout", DEFAULT_TIMEOUT_MS)? {
            0 => DEFAULT_TIMEOUT_MS,
            ms => ms,
        };
        let timeout = Duration::from_millis(timeout_ms);
        let cluster = redis.bool_or("cluster", false)?;
        let native = match redis.opt_str("transport")? {
            Some("webdis") => false,
            Some("native") => true,
            Some(other) => {
                return Err(redis.error(
                    "transport",
                    format!("unknown transport `{other}`: use \"webdis\" (upstream Envoy) or \"native\" (Higress)"),
                ))
            }
            None => match (redis.get("webdis_cluster"), redis.get("service_name")) {
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some(_), Some(_)) => {
                    return Err(redis.error(
                        "webdis_cluster",
                        "set either webdis_cluster (webdis transport) or service_name (native transport), not both",
                    ))
                }
                (None, None) => {
                    return Err(ConfigError::new(
                        redis.path(),
                        "needs webdis_cluster (upstream Envoy, through webdis) or service_name (Higress native Redis)",
                    ))
                }
            },
        };
        let transport = if native {
            let cluster = native_cluster(redis)?;
            if !NATIVE_TRANSPORT {
                return Err(redis.error(
                    "service_name",
                    "the native Redis transport needs the module built with the `higress` feature; on upstream Envoy use webdis_cluster",
                ));
            }
            let username = redis.opt_str("username")?.unwrap_or_default();
            let password = redis.opt_str("password")?.unwrap_or_default();
            host.redis_init(&cluster, username, password, timeout)
                .map_err(|e| {
                    redis.error(
                        "service_name",
                        format!("the host could not set up Redis cluster `{cluster}`: {e}"),
                    )
                })?;
            Transport::Native { cluster }
        } else {
            let cluster = redis.required_str("webdis_cluster")?;
            if cluster.is_empty() {
                return Err(redis.error("webdis_cluster", "must not be empty"));
            }
            if redis.u64_or("database", 0)? != 0 {
                return Err(redis.error(
                    "database",
                    "webdis selects the database in its own configuration",
                ));
            }
            Transport::Webdis {
                cluster: cluster.to_owned(),
            }
        };
        Ok(RedisClient {
            transport,
            timeout,
            cluster,
            command: CommandBuf::default(),
        })
    }

    /// Whether Redis is a cluster (`redis.cluster`).
    pub(crate) fn cluster(&self) -> bool {
        self.cluster
    }

    /// The bytes commands are written as for the transport.
    fn form(&self) -> Form {
        match self.transport {
            Transport::Native { .. } => Form::Resp,
            Transport::Webdis { .. } => Form::Path,
        }
    }

    /// Starts a command in `self.command`.
    fn begin(&mut self) -> &mut CommandBuf {
        let form = self.form();
        self.command.begin(form);
        &mut self.command
    }

    /// Sends the finished command in `self.command`.
    fn send<H: Host>(
        &mut self,
        host: &mut H,
        calls: &mut Calls,
        owner: Owner,
        script: Option<&'static str>,
    ) -> Result<(), RedisError> {
        let (token, kind) = match &self.transport {
            Transport::Native { cluster } => {
                let token = host
                    .redis_call(cluster, self.command.bytes())
                    .map_err(RedisError::Refused)?;
                (token, CallKind::RedisNative)
            }
            Transport::Webdis { cluster } => {
                if self.command.bytes().len() > WEBDIS_PATH_MAX {
                    return Err(RedisError::TooLong);
                }
                let headers: [(&str, &[u8]); 3] = [
                    (":method", b"GET"),
                    (":path", self.command.bytes()),
                    (":authority", b"webdis"),
                ];
                let token = host
                    .http_call(cluster, &headers, None, self.timeout)
                    .map_err(RedisError::Refused)?;
                (token, CallKind::RedisWebdis)
            }
        };
        let call = calls.insert(token, owner, kind);
        if let Some(source) = script {
            call.keep_for_retry(source, &mut self.command);
        }
        Ok(())
    }

    /// Turns the host's answer to Redis call `call` into what its owner
    /// gets, or `None` when the call was re-sent instead.
    ///
    /// Reads the reply into `scratch` and decodes it there (both reused,
    /// so a reply of many elements allocates only the first time). A
    /// webdis answer whose body is one whole RESP value is Redis's reply,
    /// so its `:status` is read only to explain a body that is not: 504 is
    /// a timeout, another status [`RedisError::Http`], none a network
    /// failure (one host call fewer on every reply; Envoy's own 503 "no
    /// healthy upstream" and 504 "upstream request timeout" and webdis's
    /// empty 503 never decode as RESP). A native status other than 0 is a
    /// network failure. An EVALSHA answered `NOSCRIPT` is re-sent as EVAL
    /// with the script's source and the same owner, so the owner sees only
    /// the final reply; if the host refuses that, the owner gets the
    /// refusal.
    pub(crate) fn receive<'r, H: Host>(
        &mut self,
        host: &mut H,
        calls: &mut Calls,
        call: Taken,
        answer: HostAnswer,
        scratch: &'r mut ReplyScratch,
    ) -> Option<Result<Reply<'r>, RedisError>> {
        let ReplyScratch { body, decoded } = scratch;
        body.clear();
        let (buffer, size) = match answer {
            HostAnswer::Webdis { headers: 0, .. } => return Some(Err(RedisError::Network)),
            HostAnswer::Native { status, .. } if status != REDIS_CALL_REPLY => {
                return Some(Err(RedisError::Network))
            }
            HostAnswer::Webdis { body_size, .. } => (BodyBuffer::HttpCallResponse, body_size),
            HostAnswer::Native { size, .. } => (BodyBuffer::RedisCallResponse, size),
        };
        if size > 0 {
            if let Some(bytes) = host.body(buffer, 0, size) {
                body.extend_from_slice(bytes);
            }
        }
        if resp::decode_into(body, decoded).is_err() {
            return Some(Err(match answer {
                HostAnswer::Native { .. } => RedisError::Protocol,
                HostAnswer::Webdis { .. } => match host
                    .header(HeaderMap::HttpCallResponse, ":status")
                    .and_then(parse_status)
                {
                    None => RedisError::Network,
                    Some(200) => RedisError::Protocol,
                    Some(504) => RedisError::Timeout,
                    Some(other) => RedisError::Http(other),
                },
            }));
        }
        let scratch: &'r ReplyScratch = scratch;
        let reply = scratch.decoded.reply(&scratch.body);
        if let Some(source) = call.retry.filter(|_| reply.is_error(b"NOSCRIPT")) {
            let Some(kept) = calls.kept(call.index) else {
                return Some(Ok(reply));
            };
            self.command.eval_of(kept, source.as_bytes());
            return match self.send(host, calls, call.owner, None) {
                Ok(()) => None,
                Err(e) => Some(Err(e)),
            };
        }
        Some(Ok(reply))
    }
}

/// How the host answered a Redis call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HostAnswer {
    /// An HTTP call's answer from webdis; no headers means the call
    /// failed (reset, timeout, no upstream).
    Webdis { headers: usize, body_size: usize },
    /// Higress's `proxy_on_redis_call_response`: status 0 is a reply of
    /// `size` bytes, anything else a network failure.
    Native { status: u32, size: usize },
}

/// The reused buffers a reply is read and decoded into.
#[derive(Debug, Default)]
pub(crate) struct ReplyScratch {
    body: Vec<u8>,
    decoded: Decoded,
}

fn native_cluster(redis: &Fields<'_, '_>) -> Result<String, ConfigError> {
    let service = redis.required_str("service_name")?;
    if service.is_empty() {
        return Err(redis.error("service_name", "must not be empty"));
    }
    let default_port = if service.ends_with(".static") {
        80
    } else {
        6379
    };
    // 0 means the default port, as in Higress's plugins.
    let port = match redis.u64_or("service_port", default_port)? {
        0 => default_port,
        port => port,
    };
    if port > 65535 {
        return Err(redis.error(
            "service_port",
            format!("must be a TCP port (1-65535), got {port}"),
        ));
    }
    let database = redis.u64_or("database", 0)?;
    let mut cluster = format!("outbound|{port}||{service}");
    if database != 0 {
        cluster.push_str(&format!("?db={database}"));
    }
    Ok(cluster)
}

/// Options of [`Redis::set`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetOptions {
    /// `EX seconds`: expire the key after this many seconds.
    pub expire_seconds: Option<u64>,
    /// `NX`: only set the key when it does not exist.
    pub only_if_absent: bool,
}

/// Sends Redis commands for the current request, or on behalf of the root.
///
/// Each method sends exactly one command. From [`Io::redis`](crate::Io::redis)
/// its reply arrives later through
/// [`Plugin::on_redis_reply`](crate::Plugin::on_redis_reply), so the handler
/// usually returns [`Flow::Pause`](crate::Flow::Pause) next; from
/// [`Io::root_redis`](crate::Io::root_redis) it arrives through
/// [`Plugin::on_root_reply`](crate::Plugin::on_root_reply), also after the
/// request has ended.
///
/// # Errors
/// Every send fails with [`RedisError::Refused`] when the host refuses the
/// call (for webdis: no cluster of that name).
pub struct Redis<'a, H: Host> {
    pub(crate) client: &'a mut RedisClient,
    pub(crate) host: &'a mut H,
    pub(crate) calls: &'a mut Calls,
    pub(crate) owner: Owner,
}

impl<H: Host> fmt::Debug for Redis<'_, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis")
            .field("transport", &self.client.transport)
            .finish()
    }
}

impl<'a, H: Host> Redis<'a, H> {
    /// Starts an arbitrary command; add arguments and [`Command::send`] it.
    pub fn command(self, name: &str) -> Command<'a, H> {
        self.client.begin().push(name.as_bytes());
        Command {
            redis: self,
            numkeys: None,
            keys: 0,
            script: None,
        }
    }

    /// `GET key`
    pub fn get(self, key: &[u8]) -> Result<(), RedisError> {
        self.command("GET").arg(key).send()
    }

    /// `SET key value [EX seconds] [NX]`
    pub fn set(self, key: &[u8], value: &[u8], options: SetOptions) -> Result<(), RedisError> {
        let mut cmd = self.command("SET").arg(key).arg(value);
        if let Some(seconds) = options.expire_seconds {
            cmd = cmd.arg(b"EX").arg_int(clamp(seconds));
        }
        if options.only_if_absent {
            cmd = cmd.arg(b"NX");
        }
        cmd.send()
    }

    /// `INCR key`
    pub fn incr(self, key: &[u8]) -> Result<(), RedisError> {
        self.command("INCR").arg(key).send()
    }

    /// `INCRBY key delta`
    pub fn incrby(self, key: &[u8], delta: i64) -> Result<(), RedisError> {
        self.command("INCRBY").arg(key).arg_int(delta).send()
    }

    /// `DECRBY key delta`
    pub fn decrby(self, key: &[u8], delta: i64) -> Result<(), RedisError> {
        self.command("DECRBY").arg(key).arg_int(delta).send()
    }

    /// `EXPIRE key seconds`
    pub fn expire(self, key: &[u8], seconds: u64) -> Result<(), RedisError> {
        self.command("EXPIRE")
            .arg(key)
            .arg_int(clamp(seconds))
            .send()
    }

    /// `PEXPIRE key milliseconds`
    pub fn pexpire(self, key: &[u8], millis: u64) -> Result<(), RedisError> {
        self.command("PEXPIRE")
            .arg(key)
            .arg_int(clamp(millis))
            .send()
    }

    /// `TTL key`
    pub fn ttl(self, key: &[u8]) -> Result<(), RedisError> {
        self.command("TTL").arg(key).send()
    }

    /// `DEL key`
    pub fn del(self, key: &[u8]) -> Result<(), RedisError> {
        self.command("DEL").arg(key).send()
    }

    /// `EVAL source numkeys keys... args...`; add keys with [`Command::key`]
    /// before plain arguments.
    pub fn eval(self, script: &Script) -> Command<'a, H> {
        let mut cmd = self.command("EVAL").arg(script.source.as_bytes());
        cmd.numkeys = Some(cmd.redis.client.command.reserve_count());
        cmd
    }

    /// `EVALSHA digest numkeys keys... args...`, re-sent once as EVAL when
    /// Redis answers `NOSCRIPT` (after a restart or `SCRIPT FLUSH`); the
    /// plugin only sees the final reply.
    pub fn evalsha(self, script: &Script) -> Command<'a, H> {
        let numkeys = Some(self.client.begin().push_script(&script.resp, &script.path));
        Command {
            redis: self,
            numkeys,
            keys: 0,
            script: Some(script.source),
        }
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A command being built; nothing is sent until [`Command::send`].
pub struct Command<'a, H: Host> {
    redis: Redis<'a, H>,
    numkeys: Option<usize>,
    keys: u64,
    script: Option<&'static str>,
}

impl<H: Host> fmt::Debug for Command<'_, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("args", &self.redis.client.command.len())
            .finish()
    }
}

impl<H: Host> Command<'_, H> {
    /// Appends an argument.
    pub fn arg(self, arg: &[u8]) -> Self {
        self.redis.client.command.push(arg);
        self
    }

    /// Appends one argument made of `parts` concatenated, so a key such as
    /// `prefix:{rule:value}:window` needs no buffer of its own.
    pub fn arg_parts(self, parts: &[&[u8]]) -> Self {
        self.redis.client.command.push_parts(parts);
        self
    }

    /// Appends an integer argument in decimal.
    pub fn arg_int(self, n: i64) -> Self {
        self.redis.client.command.push_int(n);
        self
    }

    /// Appends a key of an EVAL/EVALSHA command (counted in `numkeys`);
    /// keys must come before plain arguments.
    pub fn key_parts(mut self, parts: &[&[u8]]) -> Self {
        self.keys += 1;
        self.arg_parts(parts)
    }

    /// Appends a counter key from [`Rule::apply`](crate::limits::Rule::apply)
    /// as a key of an EVAL/EVALSHA command: the bytes of
    /// [`Command::key_parts`] with its parts, but a webdis call copies the
    /// key's head as escaped at configuration instead of escaping it byte
    /// by byte again, and copies the window's digits that end every
    /// counter key whole.
    pub fn counter_key(mut self, key: &CounterKey<'_>) -> Self {
        self.keys += 1;
        self.redis
            .client
            .command
            .push_key(key.head_segment(), key.parts());
        self
    }

    /// Appends a key of an EVAL/EVALSHA command.
    pub fn key(self, key: &[u8]) -> Self {
        self.key_parts(&[key])
    }

    /// Sends the command.
    ///
    /// # Errors
    /// [`RedisError::Refused`] when the host refuses the call.
    pub fn send(self) -> Result<(), RedisError> {
        let Command {
            redis,
            numkeys,
            keys,
            script,
        } = self;
        let command = &mut redis.client.command;
        if let Some(at) = numkeys {
            command.fill_count(at, keys);
        }
        command.finish();
        redis
            .client
            .send(redis.host, redis.calls, redis.owner, script)
    }
}

/// Copies `bytes` into `out` from `at`, for [`Script::new`]; the indices
/// are the constants' own, checked by the compiler.
#[allow(clippy::indexing_slicing)]
const fn copy(out: &mut [u8], at: usize, bytes: &[u8]) {
    let mut i = 0;
    while i < bytes.len() {
        out[at + i] = bytes[i];
        i += 1;
    }
}

/// SHA-1 (FIPS 180-4) of `bytes`, written as a `const fn` for
/// [`Script::new`]. Script sources are the plugin's own constants, never
/// request data, and the indices below are bounded by the loop conditions.
#[allow(clippy::indexing_slicing)]
const fn sha1(bytes: &[u8]) -> [u8; 20] {
    let len = bytes.len();
    // The message, a 0x80 byte, zeros, and the length in bits as a
    // big-endian u64, in whole 64-byte blocks.
    let padded = (len + 8) / 64 * 64 + 64;
    let bits = (len as u64).wrapping_mul(8);
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut block = 0;
    while block < padded {
        let mut w = [0u32; 80];
        let mut i = 0;
        while i < 64 {
            let at = block + i;
            let byte = if at < len {
                bytes[at]
            } else if at == len {
                0x80
            } else if at >= padded - 8 {
                (bits >> (8 * (padded - 1 - at))) as u8
            } else {
                0
            };
            w[i / 4] = (w[i / 4] << 8) | byte as u32;
            i += 1;
        }
        let mut t = 16;
        while t < 80 {
            w[t] = (w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16]).rotate_left(1);
            t += 1;
        }
        let (mut a, mut b, mut c, mut d, mut e) = (h[0], h[1], h[2], h[3], h[4]);
        t = 0;
        while t < 80 {
            let (f, k) = if t < 20 {
                ((b & c) | (!b & d), 0x5A82_7999)
            } else if t < 40 {
                (b ^ c ^ d, 0x6ED9_EBA1)
            } else if t < 60 {
                ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC)
            } else {
                (b ^ c ^ d, 0xCA62_C1D6)
            };
            let next = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(w[t]);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = next;
            t += 1;
        }
        h[0] = h[0].wrapping_add(a);
        h[1] = h[1].wrapping_add(b);
        h[2] = h[2].wrapping_add(c);
        h[3] = h[3].wrapping_add(d);
        h[4] = h[4].wrapping_add(e);
        block += 64;
    }
    let mut out = [0u8; 20];
    let mut i = 0;
    while i < 20 {
        out[i] = (h[i / 4] >> (24 - 8 * (i % 4))) as u8;
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests;
