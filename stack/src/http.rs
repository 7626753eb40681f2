//! A tiny blocking HTTP/1.1 client over `std::net::TcpStream`.
//!
//! One connection per request (`Connection: close`), loopback only, with an
//! overall deadline. It exists so tests control exactly which bytes go on the
//! wire (percent-encoding, raw header values) and so tests do not depend on
//! an HTTP client crate.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::LOCALHOST;

/// Default overall deadline of [`get`]: connect, send and read the answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A complete HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header fields in wire order, names as received.
    pub headers: Vec<(String, String)>,
    /// The decoded body (chunked transfer coding removed).
    pub body: Vec<u8>,
    /// From just before connecting until the answer was complete.
    pub elapsed: Duration,
}

impl Response {
    /// The first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Header `name` parsed as an integer; `None` if absent or not a number.
    pub fn header_i64(&self, name: &str) -> Option<i64> {
        self.header(name)?.trim().parse().ok()
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET path` on `127.0.0.1:port` with extra `headers`, within
/// [`DEFAULT_TIMEOUT`]. `path` goes on the wire as given (encode it yourself).
pub fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> io::Result<Response> {
    get_with_timeout(port, path, headers, DEFAULT_TIMEOUT)
}

/// Like [`get`] with an explicit overall deadline.
pub fn get_with_timeout(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> io::Result<Response> {
    let request = encode_request(port, path, headers)?;
    let started = Instant::now();
    let deadline = started + timeout;
    let addr = SocketAddr::from((LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(remaining(deadline)?))?;
    stream.write_all(&request)?;

    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(mut response) = parse_response(&buf, false)? {
            response.elapsed = started.elapsed();
            return Ok(response);
        }
        stream.set_read_timeout(Some(remaining(deadline)?))?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if is_timeout(&e) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no complete answer from 127.0.0.1:{port}{path} within {timeout:?}"),
                ))
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            // The server closed: what we have must be complete now.
            return match parse_response(&buf, true)? {
                Some(mut response) => {
                    response.elapsed = started.elapsed();
                    Ok(response)
                }
                None => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed after {} bytes of an incomplete answer",
                        buf.len()
                    ),
                )),
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "HTTP deadline passed",
        ))
    } else {
        Ok(left)
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn encode_request(port: u16, path: &str, headers: &[(&str, &str)]) -> io::Result<Vec<u8>> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(invalid(
            "path must start with '/' and contain no spaces or controls",
        ));
    }
    let mut out = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n").into_bytes();
    for (name, value) in headers {
        if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == b':' || b >= 0x7f) {
            return Err(invalid("bad header name"));
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(invalid("header value contains CR, LF or NUL"));
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    Ok(out)
}

/// Parses `buf` as one response. `Ok(None)` means "need more bytes";
/// `eof` says no more bytes will come (a body without framing ends there).
fn parse_response(buf: &[u8], eof: bool) -> io::Result<Option<Response>> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| bad("response head is not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(bad(format!("not an HTTP/1 status line: {status_line:?}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line: {status_line:?}")))?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header line: {line:?}")))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let response = |body: Vec<u8>, headers| Response {
        status,
        headers,
        body,
        elapsed: Duration::ZERO,
    };
    let rest = &buf[head_end + 4..];
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _): &&(String, String)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    if status / 100 == 1 || status == 204 || status == 304 {
        return Ok(Some(response(Vec::new(), headers)));
    }
    if header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        return match decode_chunked(rest)? {
            Some(body) => Ok(Some(response(body, headers))),
            None if eof => Err(bad("connection closed inside a chunked body".into())),
            None => Ok(None),
        };
    }
    if let Some(len) = header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| bad(format!("bad content-length {len:?}")))?;
        return if rest.len() >= len {
            Ok(Some(response(rest[..len].to_vec(), headers)))
        } else if eof {
            Err(bad(format!(
                "body ended after {} of {len} bytes",
                rest.len()
            )))
        } else {
            Ok(None)
        };
    }
    if eof {
        Ok(Some(response(rest.to_vec(), headers)))
    } else {
        Ok(None)
    }
}

/// Decodes a complete chunked body; `Ok(None)` if it is not complete yet.
fn decode_chunked(mut data: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = find(data, b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&data[..line_end]).unwrap_or("?");
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad chunk size {size_text:?}"),
            )
        })?;
        data = &data[line_end + 2..];
        if size == 0 {
            // Trailer fields end with an empty line.
            return Ok(find(data, b"\r\n").map(|_| body));
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Percent-encodes every byte outside RFC 3986's unreserved set
/// (`A-Z a-z 0-9 - _ ~`), and `.` too: webdis treats the last `.` of a path
/// as a format suffix. The result is safe as one webdis path segment.
pub fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_and_waits_for_the_rest() {
        let full = b"HTTP/1.1 429 Too Many Requests\r\nX-RateLimit-Limit: 10\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(
            parse_response(&full[..full.len() - 2], false).unwrap(),
            None
        );
        let r = parse_response(full, false).unwrap().unwrap();
        assert_eq!(r.status, 429);
        assert_eq!(r.header("x-ratelimit-limit"), Some("10"));
        assert_eq!(r.header_i64("X-RATELIMIT-LIMIT"), Some(10));
        assert_eq!(r.body, b"hello");
    }

    #[test]
    fn decodes_chunked_bodies() {
        let full = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(&full[..full.len() - 1], false).unwrap(),
            None
        );
        let r = parse_response(full, false).unwrap().unwrap();
        assert_eq!(r.body, b"abcde");
        assert!(parse_response(&full[..full.len() - 1], true).is_err());
    }

    #[test]
    fn unframed_body_ends_at_eof() {
        let full = b"HTTP/1.0 200 OK\r\nA: b\r\n\r\nrest";
        assert_eq!(parse_response(full, false).unwrap(), None);
        assert_eq!(parse_response(full, true).unwrap().unwrap().body, b"rest");
        let short = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nrest";
        assert!(parse_response(short, true).is_err());
    }

    #[test]
    fn rejects_header_injection() {
        assert!(encode_request(1, "/", &[("x-api-key", "a\r\nb: c")]).is_err());
        assert!(encode_request(1, "/a b", &[]).is_err());
        let ok = encode_request(1, "/p", &[("x-api-key", "with space")]).unwrap();
        let text = String::from_utf8(ok).unwrap();
        assert!(text.contains("\r\nx-api-key: with space\r\n"), "{text}");
        assert!(text.ends_with("Connection: close\r\n\r\n"), "{text}");
    }

    #[test]
    fn percent_encodes_everything_webdis_could_misread() {
        assert_eq!(percent_encode(b"aZ9-_~"), "aZ9-_~");
        assert_eq!(
            percent_encode("a/b%c .d+\r\n\u{e9}".as_bytes()),
            "a%2Fb%25c%20%2Ed%2B%0D%0A%C3%A9"
        );
    }
}
