//! A minimal RESP2 client, so tests can look inside Redis without
//! `redis-cli` and without trusting the code under test.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::LOCALHOST;

/// One RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Integer(i64),
    /// `None` is the null bulk string (`$-1`).
    Bulk(Option<Vec<u8>>),
    /// `None` is the null array (`*-1`).
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// The bulk strings of an array reply (e.g. `KEYS`); other items are skipped.
    pub fn bulk_items(&self) -> Vec<Vec<u8>> {
        match self {
            Resp::Array(Some(items)) => items
                .iter()
                .filter_map(|item| match item {
                    Resp::Bulk(Some(bytes)) => Some(bytes.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Encodes `args` as a RESP array of bulk strings (a Redis command).
pub fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Parses one value from the start of `buf`: `Ok(Some((value, used)))`,
/// `Ok(None)` if `buf` is an incomplete prefix, `Err` if it is not RESP.
pub fn parse(buf: &[u8]) -> io::Result<Option<(Resp, usize)>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = std::str::from_utf8(&buf[1..line_end]).map_err(|_| bad("non-UTF-8 header"))?;
    let after = line_end + 2;
    let int = || -> io::Result<i64> { line.parse().map_err(|_| bad("bad length or integer")) };
    Ok(match kind {
        b'+' => Some((Resp::Simple(line.to_owned()), after)),
        b'-' => Some((Resp::Error(line.to_owned()), after)),
        b':' => Some((Resp::Integer(int()?), after)),
        b'$' => {
            let len = int()?;
            if len < 0 {
                return Ok(Some((Resp::Bulk(None), after)));
            }
            let len = len as usize;
            if buf.len() < after + len + 2 {
                return Ok(None);
            }
            if &buf[after + len..after + len + 2] != b"\r\n" {
                return Err(bad("bulk string not followed by CRLF"));
            }
            Some((
                Resp::Bulk(Some(buf[after..after + len].to_vec())),
                after + len + 2,
            ))
        }
        b'*' => {
            let count = int()?;
            if count < 0 {
                return Ok(Some((Resp::Array(None), after)));
            }
            let mut items = Vec::with_capacity(count as usize);
            let mut used = after;
            for _ in 0..count {
                match parse(&buf[used..])? {
                    Some((item, n)) => {
                        items.push(item);
                        used += n;
                    }
                    None => return Ok(None),
                }
            }
            Some((Resp::Array(Some(items)), used))
        }
        _ => return Err(bad("unknown RESP type byte")),
    })
}

/// Sends one command to the Redis at `127.0.0.1:port` and reads its reply,
/// within `timeout`.
pub fn command(port: u16, args: &[&[u8]], timeout: Duration) -> io::Result<Resp> {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from((LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(&encode_command(args))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some((value, _)) = parse(&buf)? {
            return Ok(value);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no Redis reply in time",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "Redis closed the connection mid-reply",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_nested_values_and_detects_incomplete_input() {
        let wire = b"*3\r\n$4\r\na\r\nb\r\n:-7\r\n*-1\r\n+rest";
        let (value, used) = parse(wire).unwrap().unwrap();
        assert_eq!(
            value,
            Resp::Array(Some(vec![
                Resp::Bulk(Some(b"a\r\nb".to_vec())),
                Resp::Integer(-7),
                Resp::Array(None),
            ]))
        );
        assert_eq!(&wire[used..], b"+rest");
        for cut in 0..used {
            assert_eq!(parse(&wire[..cut]).unwrap(), None, "prefix of {cut} bytes");
        }
        assert_eq!(
            parse(b"-NOSCRIPT x\r\n").unwrap().unwrap().0,
            Resp::Error("NOSCRIPT x".into())
        );
        assert!(parse(b"?\r\n").is_err());
        assert_eq!(
            encode_command(&[b"GET", b"k"]),
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        );
    }
}
