//! Higress's Redis host calls over real TCP: one pipelined connection per
//! cluster, one reply per call, an operation timeout that fails every call
//! in flight on that connection.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::abi::status;
use crate::resp;

/// What became of one Redis call, in the order the plugin made them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisCall {
    pub token: u32,
    pub cluster: String,
    /// The command's arguments when it is a RESP array of bulk strings.
    pub args: Option<Vec<Vec<u8>>>,
    /// The raw reply (status 0), or `None` for a network failure (status 1)
    /// or while it is still in flight.
    pub reply: Option<Vec<u8>>,
    pub failed: bool,
}

/// One reply (or failure) ready for `proxy_on_redis_call_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Reply { token: u32, bytes: Vec<u8> },
    Failed { token: u32 },
}

impl Delivery {
    /// The call it answers.
    pub fn token(&self) -> u32 {
        match self {
            Delivery::Reply { token, .. } | Delivery::Failed { token } => *token,
        }
    }
}

/// The options `proxy_redis_init` accepted for a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ClusterOptions {
    db: u32,
    username: Vec<u8>,
    password: Vec<u8>,
    timeout: Duration,
    flush_bytes: usize,
}

#[derive(Debug)]
struct Connection {
    stream: TcpStream,
    outgoing: Vec<u8>,
    incoming: Vec<u8>,
    /// Tokens in the order their replies will come; `None` marks a reply to a
    /// command the host sent itself (AUTH, SELECT), swallowed.
    in_flight: VecDeque<Option<u32>>,
}

#[derive(Debug)]
struct Cluster {
    addr: SocketAddr,
    options: ClusterOptions,
    connection: Option<Connection>,
}

/// The clusters a host knows (`outbound|6379||redis.dns` -> address) and the
/// connections the plugin opened with `proxy_redis_init`.
#[derive(Debug, Default)]
pub struct RedisClusters {
    table: BTreeMap<String, SocketAddr>,
    clusters: HashMap<String, Cluster>,
    failed: VecDeque<u32>,
    /// Replies read off their connections before their turn
    /// ([`RedisClusters::collect`]), in the order they came.
    ready: VecDeque<Delivery>,
    next_token: u32,
    calls: Vec<RedisCall>,
    connects: u64,
}

/// Higress's default operation timeout when the plugin passes 0.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Higress flushes its buffer at this many bytes unless told otherwise.
const DEFAULT_FLUSH_BYTES: usize = 1024;

impl RedisClusters {
    /// Makes `cluster` (a bare name such as `outbound|6379||redis.dns`)
    /// reach `addr`.
    pub fn route(&mut self, cluster: &str, addr: SocketAddr) {
        self.table.insert(cluster.to_string(), addr);
    }

    /// The calls made since the last [`RedisClusters::take_calls`].
    pub fn calls(&self) -> &[RedisCall] {
        &self.calls
    }

    /// Moves the call records out (a call still in flight is then no longer
    /// recorded when it completes).
    pub fn take_calls(&mut self) -> Vec<RedisCall> {
        let (done, in_flight) = std::mem::take(&mut self.calls)
            .into_iter()
            .partition(|c| c.reply.is_some() || c.failed);
        self.calls = in_flight;
        done
    }

    /// TCP connections opened so far (a reconnect counts again).
    pub fn connects(&self) -> u64 {
        self.connects
    }

    /// `proxy_redis_init`: the cluster string may carry `?db=N&...` options;
    /// the bare name before `?` must be in the table.
    ///
    /// # Errors
    /// The ABI status: 2 (bad argument) for an unknown cluster or an
    /// unreadable option value.
    pub fn init(
        &mut self,
        service: &str,
        username: &[u8],
        password: &[u8],
        timeout_ms: u32,
    ) -> Result<(), i32> {
        let (bare, query) = match service.split_once('?') {
            Some((b, q)) => (b, q),
            None => (service, ""),
        };
        let addr = *self.table.get(bare).ok_or(status::BAD_ARGUMENT)?;
        let mut options = ClusterOptions {
            db: 0,
            username: username.to_vec(),
            password: password.to_vec(),
            timeout: if timeout_ms == 0 {
                DEFAULT_TIMEOUT
            } else {
                Duration::from_millis(u64::from(timeout_ms))
            },
            flush_bytes: DEFAULT_FLUSH_BYTES,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "db" => options.db = value.parse().map_err(|_| status::BAD_ARGUMENT)?,
                "max_buffer_size_before_flush" => {
                    options.flush_bytes = value.parse().map_err(|_| status::BAD_ARGUMENT)?
                }
                // Time-based flushing has no meaning here: the host flushes
                // whenever it waits for replies.
                _ => {}
            }
        }
        match self.clusters.get_mut(bare) {
            Some(c) if c.options == options && c.addr == addr => {}
            Some(c) => {
                c.options = options;
                c.addr = addr;
                c.connection = None;
            }
            None => {
                self.clusters.insert(
                    bare.to_string(),
                    Cluster {
                        addr,
                        options,
                        connection: None,
                    },
                );
            }
        }
        Ok(())
    }

    /// `proxy_redis_call`: queues `query` (sent as is: one command, one
    /// reply) on the cluster's connection, connecting first if needed. A
    /// connection that cannot be made fails the call later, in its callback.
    ///
    /// # Errors
    /// 2 (bad argument) when the bare cluster name was never initialised.
    pub fn call(&mut self, cluster: &str, query: &[u8]) -> Result<u32, i32> {
        let c = self.clusters.get_mut(cluster).ok_or(status::BAD_ARGUMENT)?;
        self.next_token = self.next_token.wrapping_add(1).max(1);
        let token = self.next_token;
        self.calls.push(RedisCall {
            token,
            cluster: cluster.to_string(),
            args: resp::command_args(query),
            reply: None,
            failed: false,
        });
        if c.connection.is_none() {
            match connect(c) {
                Ok(conn) => {
                    self.connects += 1;
                    c.connection = Some(conn);
                }
                Err(_) => {
                    self.failed.push_back(token);
                    return Ok(token);
                }
            }
        }
        let flush_bytes = c.options.flush_bytes;
        if let Some(conn) = c.connection.as_mut() {
            conn.outgoing.extend_from_slice(query);
            conn.in_flight.push_back(Some(token));
            if conn.outgoing.len() >= flush_bytes && flush(conn).is_err() {
                let lost = fail_connection(c);
                self.failed.extend(lost);
            }
        }
        Ok(token)
    }

    /// Whether a call still waits for its reply or failure.
    pub fn has_pending(&self) -> bool {
        !self.failed.is_empty()
            || !self.ready.is_empty()
            || self.clusters.values().any(|c| {
                c.connection
                    .as_ref()
                    .is_some_and(|conn| conn.in_flight.iter().any(Option::is_some))
            })
    }

    /// The next reply or failure, waiting for Redis up to the operation
    /// timeout; a timeout, reset or garbage closes the connection and fails
    /// every call in flight on it.
    pub fn next_delivery(&mut self) -> Option<Delivery> {
        if let Some(ready) = self.ready.pop_front() {
            return Some(ready);
        }
        self.read_next()
    }

    /// Reads every reply or failure still to come (each waiting up to its
    /// operation timeout) and keeps them, in order, for
    /// [`RedisClusters::next_delivery`] or [`RedisClusters::take`]: the
    /// calls in flight, as a test that picks the order of answers sees
    /// them.
    pub fn collect(&mut self) -> &VecDeque<Delivery> {
        while let Some(delivery) = self.read_next() {
            self.ready.push_back(delivery);
        }
        &self.ready
    }

    /// The collected reply or failure of call `token`, out of its turn.
    pub fn take(&mut self, token: u32) -> Option<Delivery> {
        let at = self.ready.iter().position(|d| d.token() == token)?;
        self.ready.remove(at)
    }

    /// The cluster call `token` went to.
    pub fn cluster_of(&self, token: u32) -> Option<&str> {
        self.calls
            .iter()
            .rev()
            .find(|c| c.token == token)
            .map(|c| c.cluster.as_str())
    }

    fn read_next(&mut self) -> Option<Delivery> {
        if let Some(token) = self.failed.pop_front() {
            self.record(token, None);
            return Some(Delivery::Failed { token });
        }
        let name = self
            .clusters
            .iter()
            .find(|(_, c)| {
                c.connection
                    .as_ref()
                    .is_some_and(|conn| conn.in_flight.iter().any(Option::is_some))
            })
            .map(|(n, _)| n.clone())?;
        let c = self.clusters.get_mut(&name)?;
        let timeout = c.options.timeout;
        loop {
            let conn = c.connection.as_mut()?;
            let outcome = flush(conn).and_then(|()| read_reply(conn, timeout));
            match outcome {
                Ok(bytes) => match conn.in_flight.pop_front() {
                    Some(Some(token)) => {
                        self.record(token, Some(bytes.clone()));
                        return Some(Delivery::Reply { token, bytes });
                    }
                    // A reply to the host's own AUTH/SELECT: swallowed.
                    Some(None) => continue,
                    None => {
                        // A reply nobody asked for: the stream is out of step.
                        let lost = fail_connection(c);
                        self.failed.extend(lost);
                        return self.read_next();
                    }
                },
                Err(_) => {
                    let lost = fail_connection(c);
                    self.failed.extend(lost);
                    return self.read_next();
                }
            }
        }
    }

    fn record(&mut self, token: u32, reply: Option<Vec<u8>>) {
        if let Some(call) = self.calls.iter_mut().rev().find(|c| c.token == token) {
            call.failed = reply.is_none();
            call.reply = reply;
        }
    }
}

fn connect(c: &Cluster) -> std::io::Result<Connection> {
    let stream = TcpStream::connect_timeout(&c.addr, c.options.timeout)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(c.options.timeout))?;
    let mut conn = Connection {
        stream,
        outgoing: Vec::new(),
        incoming: Vec::new(),
        in_flight: VecDeque::new(),
    };
    if !c.options.password.is_empty() {
        let auth = if c.options.username.is_empty() {
            resp::encode_command(&[b"AUTH", &c.options.password])
        } else {
            resp::encode_command(&[b"AUTH", &c.options.username, &c.options.password])
        };
        conn.outgoing.extend_from_slice(&auth);
        conn.in_flight.push_back(None);
    }
    if c.options.db != 0 {
        let db = c.options.db.to_string();
        conn.outgoing
            .extend_from_slice(&resp::encode_command(&[b"SELECT", db.as_bytes()]));
        conn.in_flight.push_back(None);
    }
    Ok(conn)
}

fn flush(conn: &mut Connection) -> std::io::Result<()> {
    if conn.outgoing.is_empty() {
        return Ok(());
    }
    conn.stream.write_all(&conn.outgoing)?;
    conn.outgoing.clear();
    Ok(())
}

fn read_reply(conn: &mut Connection, timeout: Duration) -> std::io::Result<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match resp::frame_len(&conn.incoming) {
            Ok(Some(n)) => return Ok(conn.incoming.drain(..n).collect()),
            Ok(None) => {}
            Err(why) => return Err(std::io::Error::new(ErrorKind::InvalidData, why)),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        conn.stream.set_read_timeout(Some(left))?;
        match conn.stream.read(&mut chunk) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => conn
                .incoming
                .extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Closes the cluster's connection; the tokens that were in flight on it.
fn fail_connection(c: &mut Cluster) -> Vec<u32> {
    c.connection
        .take()
        .map(|conn| conn.in_flight.into_iter().flatten().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_clusters_and_full_init_strings_are_bad_arguments() {
        let mut r = RedisClusters::default();
        r.route("outbound|6379||redis.dns", "127.0.0.1:1".parse().unwrap());
        assert_eq!(
            r.init("outbound|6379||other.dns", b"", b"", 100),
            Err(status::BAD_ARGUMENT)
        );
        assert_eq!(
            r.init(
                "outbound|6379||redis.dns?db=1&buffer_flush_timeout=3",
                b"",
                b"",
                100
            ),
            Ok(())
        );
        assert_eq!(
            r.call(
                "outbound|6379||redis.dns?db=1&buffer_flush_timeout=3",
                b"PING"
            ),
            Err(status::BAD_ARGUMENT)
        );
        assert_eq!(
            r.init("outbound|6379||redis.dns?db=x", b"", b"", 100),
            Err(status::BAD_ARGUMENT)
        );
    }

    #[test]
    fn a_refused_connection_fails_the_call_in_its_callback() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let mut r = RedisClusters::default();
        r.route("outbound|6379||redis.dns", addr);
        r.init("outbound|6379||redis.dns", b"", b"", 200).unwrap();
        let token = r
            .call("outbound|6379||redis.dns", b"*1\r\n$4\r\nPING\r\n")
            .unwrap();
        assert!(r.has_pending());
        assert_eq!(r.next_delivery(), Some(Delivery::Failed { token }));
        assert!(!r.has_pending());
        assert!(r.calls()[0].failed);
    }
}
