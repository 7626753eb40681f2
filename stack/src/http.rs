//! A tiny blocking HTTP/1.1 client over `std::net::TcpStream`, and the
//! HTTP/1 message reader it shares with [`crate::Upstream`].
//!
//! One connection per request (`Connection: close`), loopback only, with an
//! overall deadline. It exists so tests control exactly which bytes go on the
//! wire (percent-encoding, raw header values, how a body is framed), see
//! exactly what came back (including when each chunk of a chunked answer
//! arrived: Envoy forwards server-sent events as chunks), and do not depend
//! on an HTTP client crate.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::LOCALHOST;

/// Default overall deadline of [`get`] and [`request`]: connect, send and
/// read the answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest message head (start line and header fields) accepted, and the
/// longest chunk-size or trailer line.
const MAX_HEAD: usize = 64 * 1024;
/// Largest body accepted; test traffic is far smaller, so more is a bug.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// A complete HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header fields in wire order, names as received.
    pub headers: Vec<(String, String)>,
    /// The decoded body (chunked transfer coding removed).
    pub body: Vec<u8>,
    /// The chunks of a chunked body in order, as the server framed them,
    /// each with the time it had fully arrived; their data concatenated is
    /// `body`. Empty when the body was not chunked.
    pub chunks: Vec<Chunk>,
    /// From just before connecting until the answer was complete.
    pub elapsed: Duration,
}

/// One chunk of a chunked response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub data: Vec<u8>,
    /// From just before connecting until the read that completed this chunk
    /// returned. Chunks completed by one read share the same time.
    pub at: Duration,
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

/// A request body and how it is framed on the wire.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    /// No body and no framing header (a `GET` as browsers send it: the
    /// proxy sees the end of the stream with the headers).
    None,
    /// `Content-Length` and the bytes, written together with the head.
    Fixed(&'a [u8]),
    /// `Transfer-Encoding: chunked`, one chunk per part (parts must not be
    /// empty: an empty chunk ends the body). The head goes first, then each
    /// part in its own write after `pause`, so a proxy sees the parts arrive
    /// apart, then the last chunk.
    Chunked {
        parts: &'a [&'a [u8]],
        pause: Duration,
    },
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
    request_with_timeout(port, "GET", path, headers, Body::None, timeout)
}

/// `method path` on `127.0.0.1:port` with extra `headers` and `body`, within
/// [`DEFAULT_TIMEOUT`]. The framing header (`Content-Length` or
/// `Transfer-Encoding`) comes from `body`; passing one in `headers` is an
/// error, so a test cannot send contradictory framing by accident.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Body<'_>,
) -> io::Result<Response> {
    request_with_timeout(port, method, path, headers, body, DEFAULT_TIMEOUT)
}

/// Like [`request`] with an explicit overall deadline.
pub fn request_with_timeout(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Body<'_>,
    timeout: Duration,
) -> io::Result<Response> {
    let head = encode_head(port, method, path, headers, &body)?;
    let started = Instant::now();
    let deadline = started + timeout;
    let addr = SocketAddr::from((LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_nodelay(true)?;
    let what = format!("{method} 127.0.0.1:{port}{path}");
    let mut reader = Reader::new(&stream, Limit::Deadline(deadline, timeout), what);
    if let Err(e) = send(&stream, deadline, &head, &body) {
        // The server may have answered early (e.g. 413 while the body was
        // still going out) and closed: that answer is the result.
        return match read_response(&mut reader, method, started) {
            Ok(response) => Ok(response),
            Err(_) => Err(e),
        };
    }
    read_response(&mut reader, method, started)
}

fn send(mut stream: &TcpStream, deadline: Instant, head: &[u8], body: &Body<'_>) -> io::Result<()> {
    stream.set_write_timeout(Some(remaining(deadline)?))?;
    match body {
        Body::None => stream.write_all(head),
        Body::Fixed(bytes) => {
            let mut all = Vec::with_capacity(head.len() + bytes.len());
            all.extend_from_slice(head);
            all.extend_from_slice(bytes);
            stream.write_all(&all)
        }
        Body::Chunked { parts, pause } => {
            stream.write_all(head)?;
            for part in *parts {
                std::thread::sleep(*pause);
                stream.set_write_timeout(Some(remaining(deadline)?))?;
                stream.write_all(&encode_chunk(part))?;
            }
            std::thread::sleep(*pause);
            stream.write_all(b"0\r\n\r\n")
        }
    }
}

/// `part` as one chunk of a chunked body.
pub(crate) fn encode_chunk(part: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", part.len()).into_bytes();
    out.extend_from_slice(part);
    out.extend_from_slice(b"\r\n");
    out
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

pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_owned())
}

fn encode_head(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &Body<'_>,
) -> io::Result<Vec<u8>> {
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(invalid("method must be ASCII letters"));
    }
    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(invalid(
            "path must start with '/' and contain no spaces or controls",
        ));
    }
    // A `Host` among `headers` replaces the default one (a virtual host
    // is chosen by it), rather than making a second one.
    let host = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("host"))
        .map_or_else(|| format!("127.0.0.1:{port}"), |(_, v)| (*v).to_owned());
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n").into_bytes();
    for (name, value) in headers {
        if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == b':' || b >= 0x7f) {
            return Err(invalid("bad header name"));
        }
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            return Err(invalid(
                "framing headers come from the Body argument, not from headers",
            ));
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(invalid("header value contains CR, LF or NUL"));
        }
        if name.eq_ignore_ascii_case("host") {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match body {
        Body::None => {}
        Body::Fixed(bytes) => {
            out.extend_from_slice(format!("Content-Length: {}\r\n", bytes.len()).as_bytes())
        }
        Body::Chunked { parts, .. } => {
            if parts.iter().any(|p| p.is_empty()) {
                return Err(invalid("an empty chunk would end the body early"));
            }
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    Ok(out)
}

/// Reads one response (skipping interim `1xx` answers) from `reader`.
fn read_response<S: Source>(
    reader: &mut Reader<S>,
    method: &str,
    started: Instant,
) -> io::Result<Response> {
    loop {
        let head = reader.read_head()?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{}: connection closed before any answer", reader.what),
            )
        })?;
        let status = head.status()?;
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let mut chunks = Vec::new();
        let body = if method.eq_ignore_ascii_case("HEAD")
            || (100..200).contains(&status)
            || status == 204
            || status == 304
        {
            Vec::new()
        } else if head.is_chunked() {
            reader.read_chunked(|data| {
                chunks.push(Chunk {
                    data: data.to_vec(),
                    at: started.elapsed(),
                })
            })?
        } else if let Some(len) = head.content_length()? {
            reader.read_fixed(len)?
        } else {
            reader.read_to_eof()?
        };
        return Ok(Response {
            status,
            headers: head.headers,
            body,
            chunks,
            elapsed: started.elapsed(),
        });
    }
}

/// A byte source with a per-read timeout: a socket, or scripted pieces in
/// unit tests.
pub(crate) trait Source: Read {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()>;
}

impl Source for &TcpStream {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(timeout))
    }
}

/// How long a [`Reader`] waits.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Limit {
    /// Everything must have arrived by then (the original timeout is kept
    /// for the message).
    Deadline(Instant, Duration),
    /// Each read may wait this long (a server waiting for its next request).
    Idle(Duration),
}

/// The head of a message: its start line and header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) start: String,
    pub(crate) headers: Vec<(String, String)>,
}

impl Head {
    /// Whether the body uses the chunked transfer coding.
    pub(crate) fn is_chunked(&self) -> bool {
        self.headers.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    }

    /// The `Content-Length`, if any; several different values are an error.
    pub(crate) fn content_length(&self) -> io::Result<Option<usize>> {
        let mut found = None;
        for (_, v) in self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        {
            let len: usize = v
                .trim()
                .parse()
                .map_err(|_| bad(format!("bad content-length {v:?}")))?;
            if found.is_some_and(|f| f != len) {
                return Err(bad("conflicting content-length values".into()));
            }
            found = Some(len);
        }
        if found.is_some_and(|len| len > MAX_BODY) {
            return Err(bad(format!("content-length over {MAX_BODY}")));
        }
        Ok(found)
    }

    /// The status code of a response head.
    pub(crate) fn status(&self) -> io::Result<u16> {
        let mut parts = self.start.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if !version.starts_with("HTTP/1.") {
            return Err(bad(format!("not an HTTP/1 status line: {:?}", self.start)));
        }
        parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line: {:?}", self.start)))
    }
}

fn bad(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Reads HTTP/1 messages from a byte stream, keeping whatever follows one
/// message for the next (a keep-alive connection).
pub(crate) struct Reader<S> {
    source: S,
    buf: Vec<u8>,
    /// Start of the bytes not consumed yet.
    pos: usize,
    limit: Limit,
    /// Names the peer in error messages.
    what: String,
}

impl<S: Source> Reader<S> {
    pub(crate) fn new(source: S, limit: Limit, what: String) -> Self {
        Self {
            source,
            buf: Vec::with_capacity(8192),
            pos: 0,
            limit,
            what,
        }
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
    }

    /// Reads more bytes; `Ok(0)` at the end of the stream.
    fn fill(&mut self) -> io::Result<usize> {
        if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let timeout = match self.limit {
            Limit::Deadline(deadline, _) => remaining(deadline),
            Limit::Idle(idle) => Ok(idle),
        };
        let timeout = timeout.map_err(|_| self.timed_out())?;
        self.source.set_timeout(timeout)?;
        let mut chunk = [0u8; 16 * 1024];
        let n = match self.source.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if is_timeout(&e) => return Err(self.timed_out()),
            Err(e) => return Err(e),
        };
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn timed_out(&self) -> io::Error {
        let within = match self.limit {
            Limit::Deadline(_, timeout) | Limit::Idle(timeout) => timeout,
        };
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "{}: no complete message within {within:?} ({} bytes of it received)",
                self.what,
                self.buf.len()
            ),
        )
    }

    fn closed(&self, inside: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{}: connection closed inside {inside}", self.what),
        )
    }

    /// The next head, or `None` if the stream ended cleanly before one began.
    pub(crate) fn read_head(&mut self) -> io::Result<Option<Head>> {
        loop {
            if let Some(end) = find(self.available(), b"\r\n\r\n") {
                let head = parse_head(&self.available()[..end])?;
                self.consume(end + 4);
                return Ok(Some(head));
            }
            if self.available().len() > MAX_HEAD {
                return Err(bad(format!("message head over {MAX_HEAD} bytes")));
            }
            if self.fill()? == 0 {
                return if self.available().is_empty() {
                    Ok(None)
                } else {
                    Err(self.closed("a message head"))
                };
            }
        }
    }

    /// Exactly `len` body bytes.
    pub(crate) fn read_fixed(&mut self, len: usize) -> io::Result<Vec<u8>> {
        while self.available().len() < len {
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{}: body ended after {} of {len} bytes",
                        self.what,
                        self.available().len()
                    ),
                ));
            }
        }
        let body = self.available()[..len].to_vec();
        self.consume(len);
        Ok(body)
    }

    /// A chunked body up to and including its trailer section, decoded;
    /// `on_chunk` sees each chunk's data as soon as it is complete.
    pub(crate) fn read_chunked(&mut self, mut on_chunk: impl FnMut(&[u8])) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line("a chunk size line")?;
            let size_text = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| bad(format!("bad chunk size {size_text:?}")))?;
            if size == 0 {
                // Trailer fields, then an empty line.
                while !self.read_line("the trailer section")?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_BODY {
                return Err(bad(format!("chunked body over {MAX_BODY} bytes")));
            }
            while self.available().len() < size + 2 {
                if self.fill()? == 0 {
                    return Err(self.closed("a chunk"));
                }
            }
            let data = &self.available()[..size + 2];
            if &data[size..] != b"\r\n" {
                return Err(bad("chunk data not followed by CRLF".into()));
            }
            on_chunk(&data[..size]);
            body.extend_from_slice(&data[..size]);
            self.consume(size + 2);
        }
    }

    /// Everything up to the end of the stream.
    pub(crate) fn read_to_eof(&mut self) -> io::Result<Vec<u8>> {
        while self.fill()? > 0 {
            if self.available().len() > MAX_BODY {
                return Err(bad(format!("unframed body over {MAX_BODY} bytes")));
            }
        }
        let body = self.available().to_vec();
        self.consume(body.len());
        Ok(body)
    }

    /// One CRLF-terminated line, without the CRLF.
    fn read_line(&mut self, what: &str) -> io::Result<String> {
        loop {
            if let Some(end) = find(self.available(), b"\r\n") {
                let line = String::from_utf8_lossy(&self.available()[..end]).into_owned();
                self.consume(end + 2);
                return Ok(line);
            }
            if self.available().len() > MAX_HEAD {
                return Err(bad(format!("{what} over {MAX_HEAD} bytes")));
            }
            if self.fill()? == 0 {
                return Err(self.closed(what));
            }
        }
    }
}

fn parse_head(bytes: &[u8]) -> io::Result<Head> {
    let text = std::str::from_utf8(bytes).map_err(|_| bad("message head is not UTF-8".into()))?;
    let mut lines = text.split("\r\n");
    let start = lines.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header line: {line:?}")))?;
        if name.is_empty() || name.bytes().any(|b| b <= b' ') {
            return Err(bad(format!("bad header name in {line:?}")));
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok(Head { start, headers })
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
pub(crate) mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Hands out one scripted piece per read, then the end of the stream.
    pub(crate) struct Pieces(pub(crate) VecDeque<Vec<u8>>);

    impl Read for Pieces {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let Some(mut piece) = self.0.pop_front() else {
                return Ok(0);
            };
            let n = piece.len().min(out.len());
            out[..n].copy_from_slice(&piece[..n]);
            if n < piece.len() {
                self.0.push_front(piece.split_off(n));
            }
            Ok(n)
        }
    }

    impl Source for Pieces {
        fn set_timeout(&mut self, _: Duration) -> io::Result<()> {
            Ok(())
        }
    }

    pub(crate) fn reader(pieces: &[&[u8]]) -> Reader<Pieces> {
        let pieces = pieces.iter().map(|p| p.to_vec()).collect();
        let limit = Limit::Deadline(
            Instant::now() + Duration::from_secs(5),
            Duration::from_secs(5),
        );
        Reader::new(Pieces(pieces), limit, "test".into())
    }

    fn parse(pieces: &[&[u8]], method: &str) -> io::Result<Response> {
        read_response(&mut reader(pieces), method, Instant::now())
    }

    #[test]
    fn parses_content_length_across_reads() {
        let r = parse(
            &[
                b"HTTP/1.1 429 Too Many Requests\r\nX-RateLimit-Limit: 10\r\ncont",
                b"ent-length: 5\r\n\r\nhel",
                b"lo",
            ],
            "GET",
        )
        .unwrap();
        assert_eq!(r.status, 429);
        assert_eq!(r.header("x-ratelimit-limit"), Some("10"));
        assert_eq!(r.header_i64("X-RATELIMIT-LIMIT"), Some(10));
        assert_eq!(r.body, b"hello");
        assert!(r.chunks.is_empty());
        let short = parse(
            &[b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nrest"],
            "GET",
        );
        assert_eq!(short.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn decodes_chunked_bodies_and_keeps_the_chunks() {
        let wire: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab",
            b"c\r\n2;x=y\r\nde\r\n",
            b"0\r\nTrailer: t\r\n\r\n",
        ];
        let r = parse(wire, "GET").unwrap();
        assert_eq!(r.body, b"abcde");
        let chunks: Vec<&[u8]> = r.chunks.iter().map(|c| c.data.as_slice()).collect();
        assert_eq!(chunks, [&b"abc"[..], b"de"]);
        assert!(r.chunks[0].at <= r.chunks[1].at);
        // Cut anywhere before the final CRLF, the body is incomplete.
        let whole = wire.concat();
        for cut in 0..whole.len() {
            assert!(parse(&[&whole[..cut]], "GET").is_err(), "cut at {cut}");
        }
        assert!(parse(
            &[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],
            "GET"
        )
        .is_err());
    }

    #[test]
    fn unframed_body_ends_at_eof_and_head_and_204_have_none() {
        let r = parse(&[b"HTTP/1.0 200 OK\r\nA: b\r\n\r\nre", b"st"], "GET").unwrap();
        assert_eq!(r.body, b"rest");
        let head = parse(&[b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"], "HEAD").unwrap();
        assert_eq!(head.body, b"");
        let empty = parse(&[b"HTTP/1.1 204 No Content\r\n\r\n"], "GET").unwrap();
        assert_eq!((empty.status, empty.body.len()), (204, 0));
    }

    #[test]
    fn skips_interim_answers() {
        let r = parse(
            &[b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 413 Payload Too Large\r\ncontent-length: 2\r\n\r\nno"],
            "POST",
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (413, &b"no"[..]));
    }

    #[test]
    fn a_keep_alive_reader_leaves_the_next_message() {
        let mut r =
            reader(&[b"GET /a HTTP/1.1\r\ncontent-length: 2\r\n\r\nxyPOST /b HTTP/1.1\r\n\r\n"]);
        let first = r.read_head().unwrap().unwrap();
        assert_eq!(first.start, "GET /a HTTP/1.1");
        assert_eq!(
            r.read_fixed(first.content_length().unwrap().unwrap())
                .unwrap(),
            b"xy"
        );
        assert_eq!(r.read_head().unwrap().unwrap().start, "POST /b HTTP/1.1");
        assert_eq!(r.read_head().unwrap(), None);
    }

    #[test]
    fn encodes_framing_from_the_body_only() {
        let text = |body: Body<'_>| {
            String::from_utf8(
                encode_head(1, "POST", "/p", &[("x-api-key", "with space")], &body).unwrap(),
            )
            .unwrap()
        };
        let fixed = text(Body::Fixed(b"abc"));
        assert!(fixed.starts_with("POST /p HTTP/1.1\r\n"), "{fixed}");
        assert!(fixed.contains("\r\nx-api-key: with space\r\n"), "{fixed}");
        assert!(fixed.contains("\r\nContent-Length: 3\r\n"), "{fixed}");
        assert!(fixed.ends_with("Connection: close\r\n\r\n"), "{fixed}");
        let none = text(Body::None);
        assert!(
            !none.to_ascii_lowercase().contains("content-length"),
            "{none}"
        );
        let parts: &[&[u8]] = &[b"a"];
        let chunked = text(Body::Chunked {
            parts,
            pause: Duration::ZERO,
        });
        assert!(
            chunked.contains("\r\nTransfer-Encoding: chunked\r\n"),
            "{chunked}"
        );
        assert_eq!(
            encode_chunk(b"0123456789abcdefg"),
            b"11\r\n0123456789abcdefg\r\n"
        );
    }

    #[test]
    fn rejects_header_injection_and_contradictory_framing() {
        let head = |headers: &[(&str, &str)], path: &str, method: &str| {
            encode_head(1, method, path, headers, &Body::None)
        };
        assert!(head(&[("x-api-key", "a\r\nb: c")], "/", "GET").is_err());
        assert!(head(&[], "/a b", "GET").is_err());
        assert!(head(&[], "/", "GE T").is_err());
        assert!(head(&[("Content-Length", "3")], "/", "POST").is_err());
        assert!(head(&[("transfer-encoding", "chunked")], "/", "POST").is_err());
        let parts: &[&[u8]] = &[b"a", b""];
        assert!(encode_head(
            1,
            "POST",
            "/",
            &[],
            &Body::Chunked {
                parts,
                pause: Duration::ZERO
            }
        )
        .is_err());
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
