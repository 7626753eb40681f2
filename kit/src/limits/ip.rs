//! Reading IP addresses from text, for `limit_by_per_ip`.
//!
//! Accepts exactly the forms std's `IpAddr::from_str` accepts (the
//! tests compare the two) but is a fraction of its size in the module:
//! std's parser is a general backtracking reader, this one a single
//! forward pass that yields only what a CIDR match needs.

use crate::hex::{self, Case};

/// An address as CIDR ranges compare it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Addr {
    /// The address as a number; an IPv4 address is in the low 32 bits.
    pub(crate) bits: u128,
    /// IPv6, other than an IPv4-mapped address.
    pub(crate) v6: bool,
}

/// Parses an IPv4 or IPv6 address, folding IPv4-mapped IPv6 addresses
/// (`::ffff:a.b.c.d`) into IPv4.
///
/// The fold is there because dual-stack listeners report IPv4 peers in the
/// mapped form, and those peers must still fall in `10.0.0.0/8`-style keys.
/// `None` for anything `IpAddr::from_str` refuses, including surrounding
/// spaces, ports, brackets and zone ids.
pub(crate) fn parse(text: &[u8]) -> Option<Addr> {
    let addr = parse_exact(text)?;
    if addr.v6 && addr.bits >> 32 == 0xffff {
        return Some(Addr {
            bits: addr.bits & 0xffff_ffff,
            v6: false,
        });
    }
    Some(addr)
}

/// Parses an address as `IpAddr::from_str` does, without the IPv4-mapped
/// fold: `v6` is the family as written.
///
/// IPv6 is colon-separated groups of one to four hex digits, at most one
/// `::` standing for one or more zero groups, and optionally a dotted IPv4
/// address as the last two groups. The first token decides the family: a
/// dotted first token can only be a whole IPv4 address, because std's
/// IPv6 reader refuses an embedded IPv4 address before `::` or in place of
/// the first groups of a full address.
fn parse_exact(text: &[u8]) -> Option<Addr> {
    let mut rest = text;
    // Groups so far, shifted in from the right; on `::` they move to `head`.
    let mut acc: u128 = 0;
    let mut groups: u32 = 0;
    let mut head: Option<(u128, u32)> = None;
    if let [b':', b':', after @ ..] = rest {
        head = Some((0, 0));
        rest = after;
    }
    // `::` alone has no groups to read.
    if !rest.is_empty() || head.is_none() {
        loop {
            let token = rest;
            let mut group: u32 = 0;
            let mut digits = 0;
            while let Some((&b, after)) = rest.split_first() {
                let Some(d) = hex::value(b) else { break };
                if digits == 4 {
                    return None;
                }
                group = group << 4 | u32::from(d);
                digits += 1;
                rest = after;
            }
            if digits == 0 {
                return None;
            }
            // Counting past 8 is refused below; the shifts only drop bits.
            match rest {
                [] => {
                    acc = acc << 16 | u128::from(group);
                    groups += 1;
                    break;
                }
                [b'.', ..] => {
                    // Re-reads at most four bytes: the token was taken for
                    // hex until its dot showed it to be a decimal octet.
                    let v4 = ipv4(token)?;
                    if groups == 0 && head.is_none() {
                        return Some(Addr {
                            bits: u128::from(v4),
                            v6: false,
                        });
                    }
                    acc = acc << 32 | u128::from(v4);
                    groups += 2;
                    break;
                }
                [b':', b':', after @ ..] => {
                    acc = acc << 16 | u128::from(group);
                    groups += 1;
                    // Also keeps `head_groups` below 8 for the shift at the end.
                    if head.is_some() || groups >= 8 {
                        return None;
                    }
                    head = Some((acc, groups));
                    acc = 0;
                    rest = after;
                    if rest.is_empty() {
                        break;
                    }
                }
                [b':', after @ ..] => {
                    acc = acc << 16 | u128::from(group);
                    groups += 1;
                    // A ninth group, or `::` after eight, cannot fit.
                    if groups >= 8 {
                        return None;
                    }
                    rest = after;
                }
                _ => return None,
            }
        }
    }
    let bits = match head {
        None if groups == 8 => acc,
        // `::` stands for at least one zero group.
        Some((high, head_groups)) if groups <= 7 => {
            let shift = 16 * (8 - head_groups);
            high.checked_shl(shift).unwrap_or(0) | acc
        }
        _ => return None,
    };
    Some(Addr { bits, v6: true })
}

/// Reads a dotted-quad IPv4 address that must make up all of `text`.
///
/// Each part is one to three decimal digits up to 255, with no leading
/// zero (std refuses them because some parsers read them as octal).
fn ipv4(mut text: &[u8]) -> Option<u32> {
    let mut value: u32 = 0;
    for part in 0..4 {
        if part > 0 {
            text = text.strip_prefix(b".")?;
        }
        let leading_zero = text.first() == Some(&b'0');
        let mut octet: u32 = 0;
        let mut digits = 0;
        while let Some((&b, after)) = text.split_first() {
            if !b.is_ascii_digit() {
                break;
            }
            // Bounds a run of digits; past three it is over 255 or
            // has a leading zero anyway.
            if digits == 3 {
                return None;
            }
            octet = octet * 10 + u32::from(b - b'0');
            digits += 1;
            text = after;
        }
        if digits == 0 || octet > 255 || (leading_zero && digits > 1) {
            return None;
        }
        value = value << 8 | octet;
    }
    text.is_empty().then_some(value)
}

/// The longest text [`canonical`] writes: eight groups of four hex digits
/// and seven colons.
pub(crate) const CANONICAL_MAX: usize = 39;

/// Writes `addr` in its one canonical spelling and returns its length:
/// IPv4 dotted decimal; IPv6 as RFC 5952 has it (lowercase hex, no
/// leading zeros, the longest run of two or more zero groups, the first
/// of equal runs, as `::`). This is what Go's `net.IP.String` writes, so
/// counter keys read as Higress's do; an IPv4-mapped address arrives here
/// already folded into IPv4 by [`parse`], as Go prints it too.
pub(crate) fn canonical(addr: Addr, out: &mut [u8; CANONICAL_MAX]) -> usize {
    let mut len = 0;
    let mut put = |b: u8| {
        if let Some(slot) = out.get_mut(len) {
            *slot = b;
        }
        len += 1;
    };
    if !addr.v6 {
        // Truncation is the point: each byte of the low 32 bits is an octet.
        let octets = (addr.bits as u32).to_be_bytes();
        for (i, octet) in octets.iter().enumerate() {
            if i > 0 {
                put(b'.');
            }
            let mut digits = itoa::Buffer::new();
            for &d in digits.format(*octet).as_bytes() {
                put(d);
            }
        }
        return len;
    }
    let groups: [u16; 8] = core::array::from_fn(|i| (addr.bits >> (112 - 16 * i)) as u16);
    // The longest run of zero groups, two or more, first of equals.
    let (mut best, mut best_len, mut run) = (8, 1, 0);
    for (i, &g) in groups.iter().enumerate() {
        run = if g == 0 { run + 1 } else { 0 };
        if run > best_len {
            best = i + 1 - run;
            best_len = run;
        }
    }
    let mut i = 0;
    while let Some(&group) = groups.get(i) {
        if i == best {
            put(b':');
            put(b':');
            i += best_len;
            continue;
        }
        if i > 0 && i != best + best_len {
            put(b':');
        }
        let mut started = false;
        for shift in [12, 8, 4, 0] {
            let digit = (group >> shift) as u8 & 0xf;
            if digit != 0 || started || shift == 0 {
                started = true;
                put(hex::digit(digit, Case::Lower));
            }
        }
        i += 1;
    }
    len
}

#[cfg(test)]
mod tests;
