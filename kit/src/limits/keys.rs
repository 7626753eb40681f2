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
    /// `limit_by_param` / `limit_by_per_param`: a query parameter, name
    /// and value percent-decoded.
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
                Some(addr) => canonical_ip(strip_port(addr), out),
                None => false,
            },
            Source::ForwardedHeader(name) => match io.request_header(name) {
                Some(list) => canonical_ip(strip_port(first_of_list(list)), out),
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

/// The first entry of a list header such as `x-forwarded-for`, without the
/// spaces around it. Higress trims only the whole header, so its
/// `1.2.3.4 , 5.6.7.8` is `1.2.3.4 `, no address, and limits nothing.
fn first_of_list(list: &[u8]) -> &[u8] {
    trim(list.split(|&b| b == b',').next().unwrap_or_default())
}

/// The address of `1.2.3.4:5678`, `[2001:db8::1]:443` or `[2001:db8::1]`,
/// or the text itself: a bare IPv6 address (several colons, no brackets)
/// is kept whole, as a port after it could not be told from its last
/// group.
///
/// As Higress's `ParseIP` does, whatever follows a closing bracket is
/// ignored; unlike it, a bracket that is never closed leaves the text as
/// it is (which is then no address), and an IPv4-mapped address written
/// with dots (`::ffff:1.2.3.4`, where Higress keeps only the text before
/// the first colon and so limits nothing) is kept whole.
fn strip_port(addr: &[u8]) -> &[u8] {
    if let Some(rest) = addr.strip_prefix(b"[") {
        return match rest.iter().position(|&b| b == b']') {
            Some(end) => rest.get(..end).unwrap_or(rest),
            None => addr,
        };
    }
    let colons = addr.iter().filter(|&&b| b == b':').count();
    match (colons, addr.iter().rposition(|&b| b == b':')) {
        (1, Some(i)) => addr.get(..i).unwrap_or(addr),
        _ => addr,
    }
}

/// Writes the canonical text of the address `text` (see
/// [`ip::canonical`]): every spelling of one address is one counter.
/// False when `text` is no address: as in Higress, the item then does not
/// apply.
fn canonical_ip(text: &[u8], out: &mut Value) -> bool {
    let Some(addr) = ip::parse(text) else {
        return false;
    };
    let mut canonical = [0u8; ip::CANONICAL_MAX];
    let len = ip::canonical(addr, &mut canonical);
    copy(canonical.get(..len), out)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes a query component as Go's `url.QueryUnescape` does
/// (`+` is a space), passing each byte to `out`; false, with part of the
/// bytes passed, when a `%` is not followed by two hex digits (Go's
/// "invalid URL escape").
fn decode(raw: &[u8], mut out: impl FnMut(u8) -> bool) -> bool {
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        let byte = match b {
            b'+' => b' ',
            b'%' => match (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            ) {
                (Some(hi), Some(lo)) => {
                    i += 2;
                    hi << 4 | lo
                }
                _ => return false,
            },
            other => other,
        };
        if !out(byte) {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether `raw`, decoded, is `name`; `None` when `raw` does not decode.
fn decodes_to(raw: &[u8], name: &[u8]) -> Option<bool> {
    let mut rest = name;
    let mut equal = true;
    let decoded = decode(raw, |b| {
        match rest.split_first() {
            Some((&first, tail)) if first == b => rest = tail,
            _ => equal = false,
        }
        // Reading on finds a bad escape later in the name.
        true
    });
    decoded.then_some(equal && rest.is_empty())
}

/// The first value of query parameter `name`, as Go's `url.ParseQuery`
/// reads a query (what Higress reads `limit_by_param` with): pairs split
/// on `&`, a pair holding `;` skipped, name and value percent-decoded
/// (`?k%65y=abc` is parameter `key`), a pair whose name or value does not
/// decode skipped. Higress skips the whole item when any pair is
/// malformed; here only that pair is, so a bad pair cannot hide a good
/// one.
fn query_param(path: &[u8], name: &[u8], out: &mut Value) -> bool {
    let Some(q) = path.iter().position(|&b| b == b'?') else {
        return false;
    };
    let query = path.get(q + 1..).unwrap_or_default();
    let query = query.split(|&b| b == b'#').next().unwrap_or_default();
    for pair in query.split(|&b| b == b'&') {
        if pair.is_empty() || pair.contains(&b';') {
            continue;
        }
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (
                pair.get(..eq).unwrap_or_default(),
                pair.get(eq + 1..).unwrap_or_default(),
            ),
            None => (pair, &b""[..]),
        };
        if decodes_to(key, name) != Some(true) {
            continue;
        }
        out.clear();
        if decode(value, |b| {
            out.push(b);
            true
        }) {
            return true;
        }
        out.clear();
    }
    false
}

/// The value of cookie `name`, as Higress's `ExtractCookieValueByKey`
/// takes it: pairs split on `;` and trimmed, the first pair whose text
/// before its first `=` is `name` decides, and its value is the text up to
/// a second `=` (`sid=abc=x` is `abc`). An empty value is no value: the
/// item does not apply, as in Higress. A pair without `=` is passed over
/// (Higress's Go code indexes past its end there).
fn cookie(header: &[u8], name: &[u8], out: &mut Value) -> bool {
    for pair in header.split(|&b| b == b';') {
        let mut parts = trim(pair).split(|&b| b == b'=');
        if parts.next() != Some(name) {
            continue;
        }
        match parts.next() {
            Some(value) => return !value.is_empty() && copy(Some(value), out),
            None => continue,
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

    fn param(path: &str, name: &str) -> Option<String> {
        let mut out = Value::new();
        query_param(path.as_bytes(), name.as_bytes(), &mut out)
            .then(|| String::from_utf8(out.to_vec()).unwrap())
    }

    #[test]
    fn query_params_are_read_as_go_s_parse_query() {
        // Higress: `url.ParseQuery(parse.RawQuery)`, then `query[key][0]`.
        assert_eq!(
            param("/x?a=1&key=a%2Fb+c&z", "key").as_deref(),
            Some("a/b c")
        );
        assert_eq!(param("/x?a=1", "key"), None);
        assert_eq!(param("/x", "key"), None);
        // Names are decoded too: `k%65y` is `key`, `+` a space.
        assert_eq!(param("/x?k%65y=abc", "key").as_deref(), Some("abc"));
        assert_eq!(param("/x?K%65y=abc", "key"), None);
        assert_eq!(param("/x?my+key=abc", "my key").as_deref(), Some("abc"));
        assert_eq!(param("/x?my%20key=abc", "my key").as_deref(), Some("abc"));
        // The first value of the decoded name.
        assert_eq!(param("/x?key=1&k%65y=2", "key").as_deref(), Some("1"));
        assert_eq!(param("/x?k%65y=2&key=1", "key").as_deref(), Some("2"));
        // A name alone, or with `=`, has the empty value.
        assert_eq!(param("/x?key", "key").as_deref(), Some(""));
        assert_eq!(param("/x?key=", "key").as_deref(), Some(""));
        // Only the first `=` splits.
        assert_eq!(param("/x?key=a=b", "key").as_deref(), Some("a=b"));
        // A fragment is not part of the query.
        assert_eq!(param("/x?key=a#b", "key").as_deref(), Some("a"));
    }

    #[test]
    fn malformed_query_pairs_are_skipped_one_by_one() {
        // Go skips a pair holding `;` ("invalid semicolon separator") and a
        // pair whose name or value has a bad escape ("invalid URL escape"),
        // keeping the others; Higress then drops the whole item because
        // ParseQuery returned an error. Here only the bad pair goes, so
        // `?junk=%zz&key=abc` still counts `abc`.
        assert_eq!(param("/x?junk=%zz&key=abc", "key").as_deref(), Some("abc"));
        assert_eq!(param("/x?key=%zz&key=abc", "key").as_deref(), Some("abc"));
        assert_eq!(param("/x?key=%zz", "key"), None);
        assert_eq!(param("/x?key=%2", "key"), None);
        assert_eq!(param("/x?k%6=1&key=2", "key").as_deref(), Some("2"));
        assert_eq!(param("/x?key=1;a=2&key=3", "key").as_deref(), Some("3"));
        assert_eq!(param("/x?a=1;key=2", "key"), None);
        assert_eq!(param("/x?&&key=1", "key").as_deref(), Some("1"));
    }

    fn cookie_of(header: &str, name: &str) -> Option<String> {
        let mut out = Value::new();
        cookie(header.as_bytes(), name.as_bytes(), &mut out)
            .then(|| String::from_utf8(out.to_vec()).unwrap())
    }

    #[test]
    fn cookies_are_read_as_higress_reads_them() {
        // Higress `ExtractCookieValueByKey`: split on `;`, trim, split on
        // `=`, the first pair named `key` gives `kv[1]`.
        assert_eq!(
            cookie_of("a=1; session=abc ;b=2", "session").as_deref(),
            Some("abc")
        );
        assert_eq!(cookie_of("sid=abc=x", "sid").as_deref(), Some("abc"));
        assert_eq!(cookie_of("sid=abc", "si"), None);
        // An empty value is not limited (Higress: `val == ""` returns
        // without a limit), and the first pair decides.
        assert_eq!(cookie_of("sid=", "sid"), None);
        assert_eq!(cookie_of("sid=; sid=abc", "sid"), None);
        // The name must be exact: Higress trims the pair, not the name.
        assert_eq!(cookie_of("sid =abc", "sid"), None);
        // No `=`: Higress indexes past the end of its split; here the
        // pair is passed over.
        assert_eq!(cookie_of("sid; sid=abc", "sid").as_deref(), Some("abc"));
    }

    fn ip_key(text: &str) -> Option<String> {
        let mut out = Value::new();
        canonical_ip(strip_port(first_of_list(text.as_bytes())), &mut out)
            .then(|| String::from_utf8(out.to_vec()).unwrap())
    }

    #[test]
    fn addresses_are_read_with_ports_and_brackets() {
        // Higress `ParseIP`: with a `.`, the text before the first `:`;
        // else with a `]`, the text between `[` and `]`; else all of it.
        assert_eq!(strip_port(b"10.1.2.3:443"), b"10.1.2.3");
        assert_eq!(strip_port(b"[::1]:443"), b"::1");
        assert_eq!(strip_port(b"[::1]"), b"::1");
        assert_eq!(strip_port(b"::1"), b"::1");
        assert_eq!(ip_key("1.2.3.4:5678").as_deref(), Some("1.2.3.4"));
        assert_eq!(ip_key("[2001:db8::1]:443").as_deref(), Some("2001:db8::1"));
        assert_eq!(ip_key("[2001:db8::1]").as_deref(), Some("2001:db8::1"));
        assert_eq!(ip_key("1.2.3.4:5678, 10.0.0.1").as_deref(), Some("1.2.3.4"));
        // Never closed: no address (Higress: no `]`, all of it, no address).
        assert_eq!(ip_key("[2001:db8::1"), None);
        assert_eq!(ip_key("unknown"), None);
        assert_eq!(ip_key("fe80::1%eth0"), None);
        assert_eq!(ip_key(""), None);
    }

    #[test]
    fn every_spelling_of_an_address_is_one_key() {
        // Higress keys a per-IP counter with `net.IP.String()`, one text
        // per address; so do these.
        for spelling in [
            "2001:db8::1",
            "2001:DB8::1",
            "2001:db8:0:0::1",
            "2001:0db8:0000:0000:0000:0000:0000:0001",
            "[2001:DB8:0::1]:8443",
        ] {
            assert_eq!(
                ip_key(spelling).as_deref(),
                Some("2001:db8::1"),
                "{spelling}"
            );
        }
        // IPv4-mapped IPv6 is the IPv4 address, as Go prints it. Higress
        // reads the dotted form `::ffff:1.2.3.4` as the text before its
        // first `:` (empty) and limits nothing; here it is `1.2.3.4`.
        for spelling in [
            "1.2.3.4",
            "::ffff:1.2.3.4",
            "::FFFF:102:304",
            "[::ffff:1.2.3.4]:80",
        ] {
            assert_eq!(ip_key(spelling).as_deref(), Some("1.2.3.4"), "{spelling}");
        }
        // Leading zeros in IPv4 are refused (as Go does since 1.17).
        assert_eq!(ip_key("01.2.3.4"), None);
    }

    #[test]
    fn forwarded_entries_are_trimmed() {
        // Higress trims the header, then splits: `1.2.3.4 , x` gives
        // `1.2.3.4 `, which is no address. Here the entry is trimmed.
        assert_eq!(first_of_list(b" 1.2.3.4 , 5.6.7.8"), b"1.2.3.4");
        assert_eq!(ip_key("1.2.3.4 , 5.6.7.8").as_deref(), Some("1.2.3.4"));
        assert_eq!(ip_key("\t1.2.3.4\t").as_deref(), Some("1.2.3.4"));
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
