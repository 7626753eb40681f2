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
