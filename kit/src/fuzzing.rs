//! Internals the fuzz targets check directly (feature `fuzzing`).
//!
//! The targets in `fuzz/` reach most of the kit through its public API;
//! the IP reader is the one part with no public entry of its own that can
//! be compared against a reference (std's `IpAddr`) by itself. These
//! functions hand it out without making its types public API.

use crate::limits::ip;

/// The longest text [`canonical_ip`] writes.
pub const CANONICAL_MAX: usize = ip::CANONICAL_MAX;

/// Reads `text` as an IP address as `limit_by_per_ip` does: the address as
/// a number (IPv4 in the low 32 bits) and whether it is IPv6, with an
/// IPv4-mapped IPv6 address folded into IPv4; `None` when it is no address.
///
/// # Examples
/// ```
/// assert_eq!(kit::fuzzing::parse_ip(b"::ffff:10.0.0.1"), Some((0x0a00_0001, false)));
/// assert_eq!(kit::fuzzing::parse_ip(b"10.0.0.1:80"), None);
/// ```
pub fn parse_ip(text: &[u8]) -> Option<(u128, bool)> {
    ip::parse(text).map(|addr| (addr.bits, addr.v6))
}

/// Writes the canonical spelling of the address `text` into `out` (what
/// counter keys hold) and returns its length; `None` when it is no address.
///
/// # Examples
/// ```
/// let mut out = [0u8; kit::fuzzing::CANONICAL_MAX];
/// let len = kit::fuzzing::canonical_ip(b"2001:DB8:0:0:0::1", &mut out);
/// assert_eq!(len.map(|n| &out[..n]), Some(&b"2001:db8::1"[..]));
/// ```
pub fn canonical_ip(text: &[u8], out: &mut [u8; CANONICAL_MAX]) -> Option<usize> {
    ip::parse(text).map(|addr| ip::canonical(addr, out))
}
