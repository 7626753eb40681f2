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
mod tests {
    use super::*;
    use std::net::IpAddr;
    use std::str::FromStr;

    /// What std makes of `text`, in this module's terms: the address as
    /// written, then with the IPv4-mapped fold `keys` did with std.
    fn oracle(text: &[u8]) -> (Option<Addr>, Option<Addr>) {
        let Some(ip) = std::str::from_utf8(text)
            .ok()
            .and_then(|s| IpAddr::from_str(s).ok())
        else {
            return (None, None);
        };
        let exact = match ip {
            IpAddr::V4(v4) => Addr {
                bits: u128::from(u32::from(v4)),
                v6: false,
            },
            IpAddr::V6(v6) => Addr {
                bits: u128::from(v6),
                v6: true,
            },
        };
        let folded = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Addr {
                    bits: u128::from(u32::from(v4)),
                    v6: false,
                },
                None => exact,
            },
            IpAddr::V4(_) => exact,
        };
        (Some(exact), Some(folded))
    }

    /// Compares with std; returns whether std accepted.
    fn check(text: &[u8]) -> bool {
        let (exact, folded) = oracle(text);
        assert_eq!(
            parse_exact(text),
            exact,
            "{:?}",
            String::from_utf8_lossy(text)
        );
        assert_eq!(parse(text), folded, "{:?}", String::from_utf8_lossy(text));
        exact.is_some()
    }

    const TRICKY: &[&str] = &[
        // IPv4
        "0.0.0.0",
        "255.255.255.255",
        "1.2.3.4",
        "01.2.3.4",
        "1.02.3.4",
        "1.2.3.00",
        "1.2.3.0004",
        "00.0.0.0",
        "1.2.3",
        "1.2.3.4.5",
        "1.2.3.4.",
        ".1.2.3.4",
        "1..2.3",
        "256.0.0.1",
        "1.2.3.256",
        "999.1.1.1",
        "1000.1.1.1",
        "+1.2.3.4",
        "-1.2.3.4",
        " 1.2.3.4",
        "1.2.3.4 ",
        "1.2.3.4:80",
        "1.2.3.4/8",
        "0x1.2.3.4",
        "1.2.3.a",
        "a.2.3.4",
        "1.2.3.4\0",
        "١.2.3.4",
        "",
        ".",
        "1",
        "4294967295",
        // IPv6
        "::",
        ":",
        ":::",
        "::::",
        "::1",
        "1::",
        "::1:",
        ":1::",
        "1:::2",
        "1::2::3",
        "1:2:3:4:5:6:7:8",
        "1:2:3:4:5:6:7:8:9",
        "1:2:3:4:5:6:7",
        "1:2:3:4:5:6:7:",
        ":1:2:3:4:5:6:7:8",
        "1:2:3:4:5:6:7:8:",
        "1:2:3:4:5:6:7:8::",
        "::1:2:3:4:5:6:7:8",
        "1:2:3:4:5:6:7::",
        "::1:2:3:4:5:6:7",
        "1:2:3::4:5:6:7",
        "1:2:3:4:5:6:7::8",
        "1:2:3:4::5:6:7:8",
        "ffff:FFFF:fFfF:0:00:000:0000:1",
        "00000::",
        "0000::",
        "12345::",
        "::12345",
        "g::",
        "fe80::1%eth0",
        "fe80::1%1",
        "[::1]",
        "[::1]:80",
        "::1 ",
        " ::1",
        "2001:db8::",
        "2001:DB8::1",
        // Embedded IPv4
        "::1.2.3.4",
        "::ffff:1.2.3.4",
        "::FFFF:1.2.3.4",
        "::ffff:0102:0304",
        "::ffff:102:304",
        "0:0:0:0:0:ffff:1.2.3.4",
        "::fffe:1.2.3.4",
        "::1:ffff:1.2.3.4",
        "::ffff:0:1.2.3.4",
        "1:2:3:4:5:6:1.2.3.4",
        "1:2:3:4:5:1.2.3.4",
        "1:2:3:4:5:6:7:1.2.3.4",
        "1:2:3:4:5::1.2.3.4",
        "1:2:3:4:5:6::1.2.3.4",
        "1:2:3:4::1.2.3.4",
        "::0:0:0:0:0:1.2.3.4",
        "::0:0:0:0:0:0:1.2.3.4",
        "1.2.3.4::",
        "1.2.3.4::1",
        "1.2.3.4:1:2:3:4:5:6",
        "::1.2.3.4.5",
        "::1.2.3.4:5",
        "::1.2.3",
        "::01.2.3.4",
        "::1.2.3.04",
        "::256.2.3.4",
        "::1234.2.3.4",
        "::a.2.3.4",
        "::1a.2.3.4",
        "::1.2.3.4::",
        "1::1.2.3.4",
        "::1.2.3.4/8",
    ];

    #[test]
    fn agrees_with_std_on_tricky_cases() {
        let mut accepted = 0;
        for text in TRICKY {
            accepted += usize::from(check(text.as_bytes()));
        }
        assert_eq!(accepted, 28, "std accepts 28 of the {}", TRICKY.len());
    }

    #[test]
    fn agrees_with_std_on_all_short_strings() {
        // Every string of up to seven characters from an alphabet that
        // exercises the structure: groups, `::`, dots, a non-hex letter.
        const ALPHABET: &[u8] = b"01Fg:.";
        let mut text = Vec::new();
        let mut count = 0;
        for len in 0..=7u32 {
            for mut n in 0..ALPHABET.len().pow(len) {
                text.clear();
                for _ in 0..len {
                    text.push(ALPHABET[n % ALPHABET.len()]);
                    n /= ALPHABET.len();
                }
                check(&text);
                count += 1;
            }
        }
        assert_eq!(count, 335_923);
    }

    /// A small deterministic generator (xorshift64*), so failures replay.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
        }

        fn chance(&mut self, one_in: usize) -> bool {
            self.below(one_in) == 0
        }
    }

    fn octet(rng: &mut Rng, out: &mut Vec<u8>) {
        let value = match rng.below(16) {
            0 | 1 => 0,
            2 => 255,
            3 => 256 + rng.below(800),
            _ => rng.below(256),
        };
        if rng.chance(30) {
            out.extend_from_slice(b"0".repeat(1 + rng.below(2)).as_slice());
        }
        out.extend_from_slice(value.to_string().as_bytes());
    }

    fn ipv4(rng: &mut Rng, out: &mut Vec<u8>) {
        let parts = if rng.chance(20) { 3 + rng.below(3) } else { 4 };
        for i in 0..parts {
            if i > 0 {
                out.push(b'.');
            }
            octet(rng, out);
        }
    }

    fn group(rng: &mut Rng, out: &mut Vec<u8>) {
        const HEX: &[u8] = b"0123456789abcdefABCDEF";
        let digits = match rng.below(60) {
            0 => 5,
            1..=3 => 1,
            _ => 1 + rng.below(4),
        };
        for _ in 0..digits {
            out.push(HEX[rng.below(HEX.len())]);
        }
    }

    fn ipv6(rng: &mut Rng, out: &mut Vec<u8>) {
        let tail_v4 = rng.chance(4);
        let total = match rng.below(10) {
            0 => rng.below(11),
            _ => 8 - 2 * usize::from(tail_v4) - rng.below(3),
        };
        // Where `::` goes, if anywhere (occasionally twice).
        let gap = if rng.chance(3) {
            None
        } else {
            Some(rng.below(total + 1))
        };
        let second_gap = rng.chance(30).then(|| rng.below(total + 1));
        if rng.chance(12) {
            // The ::ffff: prefix of IPv4-mapped addresses.
            out.extend_from_slice(if rng.chance(2) {
                b"::ffff:"
            } else {
                b"::FFFF:"
            });
            ipv4(rng, out);
            return;
        }
        for i in 0..total {
            if Some(i) == gap || Some(i) == second_gap {
                out.extend_from_slice(b"::");
            } else if i > 0 {
                out.push(b':');
            }
            group(rng, out);
        }
        if Some(total) == gap || Some(total) == second_gap {
            out.extend_from_slice(b"::");
        }
        if tail_v4 {
            if !out.is_empty() && !out.ends_with(b":") {
                out.push(b':');
            }
            ipv4(rng, out);
        }
    }

    const NOISE: &[u8] = b"0123456789abcdefABCDEFgxX:::...%/[] \t\0";

    fn mutate(rng: &mut Rng, text: &mut Vec<u8>) {
        let at = rng.below(text.len() + 1);
        match rng.below(9) {
            0 if at < text.len() => text[at] = NOISE[rng.below(NOISE.len())],
            1 if at < text.len() => text[at] = rng.below(256) as u8,
            2 if at < text.len() => {
                text.remove(at);
            }
            3 => {
                let end = (at + 1 + rng.below(6)).min(text.len());
                let piece = text[at..end].to_vec();
                text.splice(at..at, piece);
            }
            4 => text.insert(at, if rng.chance(2) { b':' } else { b'.' }),
            5 => text.insert(at, b'0'),
            6 => text.make_ascii_uppercase(),
            7 => {
                text.splice(at..at, "é".bytes());
            }
            _ => text.insert(at, NOISE[rng.below(NOISE.len())]),
        }
    }

    fn long(rng: &mut Rng, out: &mut Vec<u8>) {
        let unit: &[u8] = match rng.below(5) {
            0 => b"1:",
            1 => b"0",
            2 => b"::",
            3 => b"1.",
            _ => b"ffff:",
        };
        for _ in 0..rng.below(2_000) {
            out.extend_from_slice(unit);
        }
        if rng.chance(2) {
            ipv6(rng, out);
        }
    }

    #[test]
    fn agrees_with_std_on_generated_strings() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut text = Vec::new();
        let cases = 300_000;
        let mut accepted = 0;
        for _ in 0..cases {
            text.clear();
            match rng.below(20) {
                0..=5 => ipv4(&mut rng, &mut text),
                6..=16 => ipv6(&mut rng, &mut text),
                17 => {
                    let tricky = TRICKY[rng.below(TRICKY.len())];
                    text.extend_from_slice(tricky.as_bytes());
                }
                _ => long(&mut rng, &mut text),
            }
            if rng.chance(3) {
                for _ in 0..1 + rng.below(3) {
                    mutate(&mut rng, &mut text);
                }
            }
            accepted += usize::from(check(&text));
        }
        // Both answers are well represented, or the test proves little.
        assert!(
            accepted > cases / 5 && accepted < cases * 4 / 5,
            "{accepted} of {cases} accepted"
        );
    }

    fn canonical_text(text: &str) -> Option<String> {
        let mut out = [0u8; CANONICAL_MAX];
        let len = canonical(parse(text.as_bytes())?, &mut out);
        Some(String::from_utf8(out[..len].to_vec()).unwrap())
    }

    #[test]
    fn canonical_text_is_std_s_display() {
        // std prints IPv6 as RFC 5952 does, like Go's `net.IP.String`
        // (what Higress's counter keys hold); mapped addresses are folded
        // into IPv4 first, as Go prints them.
        let mut rng = Rng(0x1234_5678_9ABC_DEF1);
        let mut text = Vec::new();
        for _ in 0..200_000 {
            text.clear();
            if rng.chance(3) {
                ipv4(&mut rng, &mut text);
            } else {
                ipv6(&mut rng, &mut text);
            }
            let Some(addr) = parse(&text) else { continue };
            let ip = IpAddr::from_str(std::str::from_utf8(&text).unwrap()).unwrap();
            let want = match ip {
                IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(v4) => v4.to_string(),
                    None => v6.to_string(),
                },
                IpAddr::V4(v4) => v4.to_string(),
            };
            let mut out = [0u8; CANONICAL_MAX];
            let len = canonical(addr, &mut out);
            assert_eq!(std::str::from_utf8(&out[..len]).unwrap(), want);
        }
        for (text, want) in [
            ("2001:DB8::1", "2001:db8::1"),
            ("2001:db8:0:0::1", "2001:db8::1"),
            ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
            ("1:0:0:2:0:0:0:3", "1:0:0:2::3"),
            ("1:0:0:2:0:0:3:4", "1::2:0:0:3:4"),
            ("1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"),
            ("::", "::"),
            ("::1", "::1"),
            ("1::", "1::"),
            ("::ffff:1.2.3.4", "1.2.3.4"),
            ("::FFFF:0102:0304", "1.2.3.4"),
            ("::1.2.3.4", "::102:304"),
            (
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            ),
        ] {
            assert_eq!(canonical_text(text).as_deref(), Some(want), "{text}");
        }
    }

    #[test]
    fn mapped_addresses_fold_into_ipv4() {
        let v4 = Addr {
            bits: 0x0102_0304,
            v6: false,
        };
        assert_eq!(parse(b"::ffff:1.2.3.4"), Some(v4));
        assert_eq!(parse(b"::ffff:102:304"), Some(v4));
        assert_eq!(parse(b"1.2.3.4"), Some(v4));
        assert_eq!(
            parse(b"::1.2.3.4"),
            Some(Addr {
                bits: 0x0102_0304,
                v6: true,
            })
        );
    }
}
