//! IP and CIDR parsing for `limit_by_per_ip`, against std: an address is
//! read exactly when `IpAddr::from_str` reads it, as the same number, and
//! written canonically (RFC 5952, IPv4-mapped as IPv4); a CIDR range holds
//! exactly the addresses std's reading puts in it.
//!
//! Input: a CIDR text and an address text, separated by a NUL byte.
#![no_main]

use kit::fuzzing::{canonical_ip, parse_ip, CANONICAL_MAX};
use kit::limits::keys::Cidr;
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;

/// std's reading of `text`: the number and the family, IPv4-mapped folded.
fn std_ip(text: &[u8]) -> Option<(u128, bool, IpAddr)> {
    let ip: IpAddr = core::str::from_utf8(text).ok()?.parse().ok()?;
    Some(match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), false, ip),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (u128::from(u32::from(v4)), false, IpAddr::V4(v4)),
            None => (u128::from(v6), true, ip),
        },
    })
}

/// std's reading of a CIDR, as `Cidr::parse` documents it.
fn std_cidr(text: &str) -> Option<(u128, u128, bool)> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
        None => (text, None),
    };
    let (bits, v6, _) = std_ip(addr.trim().as_bytes())?;
    let width = if v6 { 128 } else { 32 };
    let len = u32::from(len.unwrap_or(width as u8));
    if len > width {
        return None;
    }
    let full = if v6 { u128::MAX } else { u128::from(u32::MAX) };
    let mask = if len == 0 {
        0
    } else {
        (full << (width - len)) & full
    };
    Some((bits & mask, mask, v6))
}

fuzz_target!(|data: &[u8]| {
    let (range, addr) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, data),
    };
    for text in [range, addr] {
        let want = std_ip(text);
        assert_eq!(parse_ip(text), want.map(|(bits, v6, _)| (bits, v6)));
        let mut out = [0u8; CANONICAL_MAX];
        let written = canonical_ip(text, &mut out).map(|n| out[..n].to_vec());
        let expected = want.map(|(_, _, ip)| ip.to_string().into_bytes());
        assert_eq!(written, expected, "canonical spelling");
    }
    let Ok(range) = core::str::from_utf8(range) else {
        return;
    };
    let cidr = Cidr::parse(range);
    let want = std_cidr(range);
    assert_eq!(cidr.is_some(), want.is_some(), "{range:?}");
    if let (Some(cidr), Some((network, mask, v6))) = (cidr, want) {
        let inside =
            std_ip(addr).is_some_and(|(bits, family, _)| family == v6 && bits & mask == network);
        assert_eq!(cidr.contains(addr), inside, "{range:?} holds {addr:?}");
    }
});
