//! Where a limit's value comes from, and reading it from a request without
//! allocating.
//!
//! Values are copied into a stack buffer (header values are borrowed from
//! the host's scratch memory, which the next host call reuses). Values
//! longer than the buffer spill to the heap, which only pathological
//! requests pay for.

use super::ip;
use crate::host::Host;
use crate::io::Io;
use smallvec::SmallVec;

/// A request value, on the stack.
pub type Value = SmallVec<[u8; 128]>;

/// The request attribute a `rule_items` entry limits by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'cfg> {
    /// `limit_by_header` / `limit_by_per_header`.
    Header(&'cfg str),
    /// `limit_by_param` / `limit_by_per_param`: a query parameter,
    /// percent-decoded.
    Param(&'cfg str),
    /// `limit_by_cookie` / `limit_by_per_cookie`.
    Cookie(&'cfg str),
    /// `limit_by_consumer` / `limit_by_per_consumer`: the consumer Higress's
    /// auth plugins put in `x-mse-consumer`.
    Consumer,
    /// `limit_by_per_ip: from-remote-addr`: the peer address.
    RemoteAddr,
    /// `limit_by_per_ip: from-header-<name>`: the first address of a
    /// header such as `x-forwarded-for`.
    ForwardedHeader(&'cfg str),
}

impl Source<'_> {
    /// The label of this source in counter keys.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Header(_) => "header",
            Source::Param(_) => "param",
            Source::Cookie(_) => "cookie",
            Source::Consumer => "consumer",
            Source::RemoteAddr | Source::ForwardedHeader(_) => "ip",
        }
    }

    /// The name of this source in counter keys, in two parts: for
    /// `limit_by_per_ip` the configured text (`from-remote-addr`,
    /// `from-header-<name>`), so that a header named `remote` is not the
    /// peer address.
    pub fn name(&self) -> (&'static str, &str) {
        match self {
            Source::Header(n) | Source::Param(n) | Source::Cookie(n) => ("", n),
            Source::ForwardedHeader(n) => ("from-header-", n),
            Source::Consumer => ("", "x-mse-consumer"),
            Source::RemoteAddr => ("from-remote-addr", ""),
        }
    }

    /// Reads this source's value from the request into `out`; false when
    /// the request does not carry it.
    pub fn read<H: Host>(&self, io: &mut Io<'_, H>, out: &mut Value) -> bool {
        out.clear();
        match *self {
            Source::Header(name) => copy(io.request_header(name), out),
            Source::Consumer => copy(io.request_header("x-mse-consumer"), out),
            Source::Param(name) => match io.request_header(":path") {
                Some(path) => query_param(path, name.as_bytes(), out),
                None => false,
            },
            Source::Cookie(name) => match io.request_header("cookie") {
                Some(header) => cookie(header, name.as_bytes(), out),
                None => false,
            },
            Source::RemoteAddr => match io.property(&["source", "address"]) {
                Some(addr) => copy(Some(strip_port(addr)), out),
                None => false,
            },
            Source::ForwardedHeader(name) => match io.request_header(name) {
                Some(list) => copy(Some(first_of_list(list)), out),
                None => false,
            },
        }
    }
}

fn copy(value: Option<&[u8]>, out: &mut Value) -> bool {
    match value {
        Some(v) => {
            // Built whole rather than appended: appending to a `SmallVec`
            // first moves its (here empty) tail out of the way, a second
            // `memmove` call per value.
            *out = Value::from_slice(v);
            true
        }
        None => false,
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn first_of_list(list: &[u8]) -> &[u8] {
    trim(list.split(|&b| b == b',').next().unwrap_or_default())
}

/// Drops the port of `1.2.3.4:5678` or `[::1]:5678`; a bare IPv6 address
/// (several colons, no brackets) is kept whole.
fn strip_port(addr: &[u8]) -> &[u8] {
    if let Some(rest) = addr.strip_prefix(b"[") {
        return match rest.iter().position(|&b| b == b']') {
            Some(end) => rest.get(..end).unwrap_or(rest),
            None => rest,
        };
    }
    let colons = addr.iter().filter(|&&b| b == b':').count();
    match (colons, addr.iter().rposition(|&b| b == b':')) {
        (1, Some(i)) => addr.get(..i).unwrap_or(addr),
        _ => addr,
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes a query value (`+` is a space, as in forms); a `%` not
/// followed by two hex digits is kept as is.
fn decode_into(raw: &[u8], out: &mut Value) {
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => match (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            other => out.push(other),
        }
        i += 1;
    }
}

fn query_param(path: &[u8], name: &[u8], out: &mut Value) -> bool {
    let Some(q) = path.iter().position(|&b| b == b'?') else {
        return false;
    };
    let query = path.get(q + 1..).unwrap_or_default();
    let query = query.split(|&b| b == b'#').next().unwrap_or_default();
    for pair in query.split(|&b| b == b'&') {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (
                pair.get(..eq).unwrap_or_default(),
                pair.get(eq + 1..).unwrap_or_default(),
            ),
            None => (pair, &b""[..]),
        };
        if key == name {
            decode_into(value, out);
            return true;
        }
    }
    false
}

fn cookie(header: &[u8], name: &[u8], out: &mut Value) -> bool {
    for pair in header.split(|&b| b == b';') {
        let pair = trim(pair);
        if let Some(eq) = pair.iter().position(|&b| b == b'=') {
            if pair.get(..eq) == Some(name) {
                out.extend_from_slice(pair.get(eq + 1..).unwrap_or_default());
                return true;
            }
        }
    }
    false
}

/// An IP range such as `10.0.0.0/8` or `2001:db8::/32`; a bare address is
/// a range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: u128,
    mask: u128,
    v6: bool,
}

impl Cidr {
    /// Parses `addr/len` or `addr`; `None` when malformed.
    ///
    /// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is IPv4, with an
    /// IPv4 prefix length.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
            None => (text, None),
        };
        let ip::Addr { bits: value, v6 } = ip::parse(addr.trim().as_bytes())?;
        let width: u8 = if v6 { 128 } else { 32 };
        let len = len.unwrap_or(width);
        if len > width {
            return None;
        }
        let host_bits = u32::from(width - len);
        let full = if v6 { u128::MAX } else { u128::from(u32::MAX) };
        let mask = full.checked_shl(host_bits).unwrap_or(0) & full;
        Some(Cidr {
            network: value & mask,
            mask,
            v6,
        })
    }

    /// Whether the textual address `addr` is in the range; false when it
    /// is not an address (surrounding spaces or a port included), or of the
    /// other family. An IPv4-mapped IPv6 address counts as IPv4.
    pub fn contains(&self, addr: &[u8]) -> bool {
        match ip::parse(addr) {
            Some(ip) => ip.v6 == self.v6 && ip.bits & self.mask == self.network,
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_found_and_decoded() {
        let mut out = Value::new();
        assert!(query_param(b"/x?a=1&key=a%2Fb+c%zz&z", b"key", &mut out));
        assert_eq!(&out[..], b"a/b c%zz");
        out.clear();
        assert!(!query_param(b"/x?a=1", b"key", &mut out));
        assert!(!query_param(b"/x", b"key", &mut out));
    }

    #[test]
    fn cookies_are_found() {
        let mut out = Value::new();
        assert!(cookie(b"a=1; session=abc ;b=2", b"session", &mut out));
        assert_eq!(&out[..], b"abc");
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port(b"10.1.2.3:443"), b"10.1.2.3");
        assert_eq!(strip_port(b"[::1]:443"), b"::1");
        assert_eq!(strip_port(b"::1"), b"::1");
        assert_eq!(first_of_list(b" 1.2.3.4 , 5.6.7.8"), b"1.2.3.4");
    }

    #[test]
    fn cidr_ranges_contain_addresses() {
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains(b"10.200.3.4"));
        assert!(!net.contains(b"11.0.0.1"));
        assert!(!net.contains(b"not an ip"));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(b"8.8.8.8"));
        assert!(Cidr::parse("2001:db8::/32")
            .unwrap()
            .contains(b"2001:db8::1"));
        assert!(!Cidr::parse("2001:db8::/32").unwrap().contains(b"10.0.0.1"));
        assert!(Cidr::parse("1.2.3.4").unwrap().contains(b"::ffff:1.2.3.4"));
        assert!(Cidr::parse("::ffff:10.0.0.0/8")
            .unwrap()
            .contains(b"10.9.8.7"));
        assert!(Cidr::parse(" 2001:db8::/32")
            .unwrap()
            .contains(b"2001:DB8::"));
        assert!(!Cidr::parse("::/0").unwrap().contains(b"1.2.3.4"));
        assert!(!net.contains(b"10.1.2.3:80"));
        assert!(!net.contains(b"10.1.2.3\xff"));
        assert_eq!(Cidr::parse("10.0.0.0/33"), None);
        assert_eq!(Cidr::parse("nope"), None);
    }
}
