//! Tools of the hostile-traffic suites (`tests/hostile_*.rs`): a client
//! that writes raw bytes (header values no HTTP library would send), one
//! that hangs up mid-request, a check that the Envoy log shows no panic or
//! Wasm trap, and the counters a rule holds in Redis.

// Test tooling: slicing a buffer just read, at offsets just found in it.
#![allow(clippy::indexing_slicing)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use stack::resp::Resp;
use stack::Redis;

/// What came back for a raw request: the status of the answer, if one
/// arrived, and every byte read.
#[derive(Debug, Clone)]
pub struct RawAnswer {
    pub status: Option<u16>,
    pub bytes: Vec<u8>,
}

impl RawAnswer {
    /// The answer's body: what follows the head (chunked framing left in).
    pub fn body(&self) -> &[u8] {
        match find(&self.bytes, b"\r\n\r\n") {
            Some(end) => &self.bytes[end + 4..],
            None => &[],
        }
    }
}

impl RawAnswer {
    /// The body with chunked framing taken off (as it is when the answer
    /// was not chunked); what a cut answer had sent so far.
    pub fn content(&self) -> Vec<u8> {
        let head_end = find(&self.bytes, b"\r\n\r\n").map_or(0, |e| e + 4);
        let head = String::from_utf8_lossy(&self.bytes[..head_end]).to_ascii_lowercase();
        let mut rest = &self.bytes[head_end..];
        if !head.contains("transfer-encoding: chunked") {
            return rest.to_vec();
        }
        let mut out = Vec::new();
        while let Some(line_end) = find(rest, b"\r\n") {
            let size = std::str::from_utf8(&rest[..line_end]).ok().and_then(|l| {
                usize::from_str_radix(l.split(';').next().unwrap_or("").trim(), 16).ok()
            });
            let Some(size) = size else { break };
            let start = line_end + 2;
            if size == 0 {
                break;
            }
            let end = (start + size).min(rest.len());
            out.extend_from_slice(&rest[start..end]);
            rest = rest.get(end + 2..).unwrap_or_default();
        }
        out
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The status of an HTTP/1.1 head (`HTTP/1.1 200 OK`).
fn status_of(bytes: &[u8]) -> Option<u16> {
    let line = bytes.split(|&b| b == b'\r').next()?;
    let code = line.split(|&b| b == b' ').nth(1)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// A request head: `method path`, `host: hostile`, `connection: close`,
/// then `headers` as raw bytes (name, value), with no check at all.
pub fn raw_head(method: &str, path: &[u8], headers: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut head = Vec::new();
    head.extend_from_slice(method.as_bytes());
    head.push(b' ');
    head.extend_from_slice(path);
    head.extend_from_slice(b" HTTP/1.1\r\nhost: hostile\r\nconnection: close\r\n");
    for (name, value) in headers {
        head.extend_from_slice(name);
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Writes `request` to `127.0.0.1:port` and reads until the server
/// closes (the head asks it to) or `timeout` passes.
///
/// # Errors
/// When the connection cannot be made or written to.
pub fn raw_request(port: u16, request: &[u8], timeout: Duration) -> io::Result<RawAnswer> {
    let mut stream = TcpStream::connect((stack::LOCALHOST, port))?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(timeout))?;
    // A server may answer (431, 413) and close before reading it all.
    let _ = stream.write_all(request);
    let deadline = Instant::now() + timeout;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 65_536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    }
    Ok(RawAnswer {
        status: status_of(&bytes),
        bytes,
    })
}

/// Writes `first`, waits `wait`, then closes the connection (both ways)
/// without sending the rest: a client that gives up mid-request. Returns
/// what had come back by then.
///
/// # Panics
/// When the connection cannot be made or written to.
pub fn send_then_hang_up(port: u16, first: &[u8], wait: Duration) -> Vec<u8> {
    let mut stream = TcpStream::connect((stack::LOCALHOST, port)).expect("connect to Envoy");
    stream.set_nodelay(true).expect("nodelay");
    stream.write_all(first).expect("write the first part");
    stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .expect("read timeout");
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 65_536];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    got
}

/// Panics when the Envoy log shows a Rust panic, a Wasm trap or a VM that
/// failed (what a panic in the module becomes), naming `what`.
pub fn assert_no_trap(log: &str, what: &str) {
    const SIGNS: [&str; 7] = [
        "panicked",
        "wasm trap",
        "unreachable",
        "runtimeerror",
        "uncaught",
        "vm failed",
        "wasm vm has failed",
    ];
    for line in log.lines() {
        let lower = line.to_ascii_lowercase();
        if let Some(sign) = SIGNS.iter().find(|s| lower.contains(*s)) {
            panic!(
                "{what}: the Envoy log shows `{sign}`:\n{line}\nlog tail:\n{}",
                stack::envoy_log_excerpt(log, 30)
            );
        }
    }
}

/// Every counter of Redis whose key contains `needle` (a rule name), with
/// its value, in key order. A key holding no integer is a test failure.
///
/// # Panics
/// When Redis cannot be asked or a counter is not an integer.
pub fn counters(redis: &Redis, needle: &str) -> Vec<(Vec<u8>, i64)> {
    let mut keys: Vec<Vec<u8>> = redis
        .keys()
        .into_iter()
        .filter(|k| find(k, needle.as_bytes()).is_some())
        .collect();
    keys.sort();
    keys.into_iter()
        .map(|key| {
            let value = match redis.command(&[b"GET", &key]) {
                Ok(Resp::Bulk(Some(value))) => value,
                other => panic!("GET {} answered {other:?}", String::from_utf8_lossy(&key)),
            };
            let text = String::from_utf8_lossy(&value).into_owned();
            let n = text.parse().unwrap_or_else(|_| {
                panic!(
                    "counter {} holds {text:?}, not an integer",
                    String::from_utf8_lossy(&key)
                )
            });
            (key, n)
        })
        .collect()
}

/// The sum of [`counters`].
pub fn charged(redis: &Redis, needle: &str) -> i64 {
    counters(redis, needle).iter().map(|(_, n)| n).sum()
}

/// Waits until [`charged`] is `want` (within `settle`), then a little more
/// to see that nothing more arrives; returns what it finally is.
pub fn settled_charge(redis: &Redis, needle: &str, want: i64, settle: Duration) -> i64 {
    let deadline = Instant::now() + settle;
    while charged(redis, needle) != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    charged(redis, needle)
}
