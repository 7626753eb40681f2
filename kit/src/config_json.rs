//! A small JSON parser for configuration: the bytes in, a flat tape of
//! nodes out, strings unescaped in place and borrowed from the bytes.
//!
//! It builds the same tape as `simd_json::to_tape` (objects and arrays
//! recording how many members and nodes they hold, each object key a
//! string node before its value), so [`config`](crate::config) reads
//! either. The kit uses it unless the `simd-json` feature is on:
//! configuration is parsed once, so simd-json's speed buys
//! nothing there, while its code and its float tables are the largest
//! single part of a module. Numbers are told apart only as far as
//! configuration needs: integers are kept (refused past 64 bits, as
//! simd-json refuses them), a number with a fraction or an exponent is
//! only known to be one.
//!
//! The parser loops over an explicit stack instead of recursing, so
//! hostile nesting cannot exhaust the wasm stack.

/// A value that is not a string or a container.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum StaticNode {
    /// `null`
    Null,
    /// `true` or `false`
    Bool(bool),
    /// A negative integer.
    I64(i64),
    /// A non-negative integer.
    U64(u64),
    /// A number with a fraction or an exponent: its value is not kept.
    F64,
}

/// One node of the tape.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Node<'t> {
    /// A string (an object key or a value), unescaped.
    String(&'t str),
    /// Any other scalar.
    Static(StaticNode),
    /// An object: its number of members and of nodes after this one.
    Object { len: usize, count: usize },
    /// An array: its number of elements and of nodes after this one.
    Array { len: usize, count: usize },
}

/// The parsed document: nodes in document order.
#[derive(Debug)]
pub(crate) struct Tape<'t>(pub(crate) Vec<Node<'t>>);

/// A node before its strings are borrowed: strings as byte ranges of the
/// unescaped buffer.
enum Raw {
    Str(usize, usize),
    Static(StaticNode),
    Object(usize, usize),
    Array(usize, usize),
}

/// An open container: its node's index, whether it is an object, and the
/// members seen so far.
struct Open {
    node: usize,
    object: bool,
    len: usize,
}

/// Where parsing failed: a byte offset into the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct JsonError(pub(crate) usize);

impl JsonError {
    /// The byte offset the error was found at.
    pub(crate) fn index(self) -> usize {
        self.0
    }
}

/// Parses `bytes` as one JSON value, unescaping strings in place.
///
/// # Errors
/// The offset of the first byte that is not valid JSON (or where a string
/// that is not valid UTF-8 starts).
pub(crate) fn to_tape(bytes: &mut [u8]) -> Result<Tape<'_>, JsonError> {
    let mut raw: Vec<Raw> = Vec::new();
    let mut stack: Vec<Open> = Vec::new();
    let mut i = skip_space(bytes, 0);
    loop {
        // A value starts at `i`.
        match bytes.get(i).copied() {
            Some(open @ (b'{' | b'[')) => {
                let object = open == b'{';
                stack.push(Open {
                    node: raw.len(),
                    object,
                    len: 0,
                });
                raw.push(Raw::Object(0, 0));
                i = skip_space(bytes, i + 1);
                let close = if object { b'}' } else { b']' };
                if bytes.get(i) != Some(&close) {
                    if object {
                        i = key(bytes, i, &mut raw)?;
                    }
                    continue;
                }
                // An empty container: closed below with no member.
            }
            Some(b'"') => {
                let (start, len, next) = string(bytes, i)?;
                raw.push(Raw::Str(start, len));
                i = next;
            }
            Some(b't') => i = literal(bytes, i, b"true", StaticNode::Bool(true), &mut raw)?,
            Some(b'f') => i = literal(bytes, i, b"false", StaticNode::Bool(false), &mut raw)?,
            Some(b'n') => i = literal(bytes, i, b"null", StaticNode::Null, &mut raw)?,
            Some(b'-' | b'0'..=b'9') => {
                let (number, next) = number(bytes, i)?;
                raw.push(Raw::Static(number));
                i = next;
            }
            _ => return Err(JsonError(i)),
        }
        // After a value (or at the close of an empty container): commas
        // and closes until the next value starts or the document ends.
        loop {
            i = skip_space(bytes, i);
            let Some(open) = stack.last_mut() else {
                if i < bytes.len() {
                    return Err(JsonError(i));
                }
                return borrow(bytes, raw);
            };
            let close = if open.object { b'}' } else { b']' };
            let empty =
                matches!(raw.get(open.node), Some(Raw::Object(0, 0))) && raw.len() == open.node + 1;
            if !empty {
                open.len += 1;
            }
            match bytes.get(i).copied() {
                Some(b',') if !empty => {
                    i = skip_space(bytes, i + 1);
                    if open.object {
                        i = key(bytes, i, &mut raw)?;
                    }
                    break;
                }
                Some(c) if c == close => {
                    let count = raw.len() - open.node - 1;
                    let node = if open.object {
                        Raw::Object(open.len, count)
                    } else {
                        Raw::Array(open.len, count)
                    };
                    if let Some(slot) = raw.get_mut(open.node) {
                        *slot = node;
                    }
                    stack.pop();
                    i += 1;
                    // The next turn counts it as a value of the one around it.
                    continue;
                }
                _ => return Err(JsonError(i)),
            }
        }
    }
}

/// The nodes with their strings borrowed from the unescaped bytes.
fn borrow(bytes: &[u8], raw: Vec<Raw>) -> Result<Tape<'_>, JsonError> {
    let mut nodes = Vec::with_capacity(raw.len());
    for node in raw {
        nodes.push(match node {
            Raw::Str(start, len) => {
                let text = bytes.get(start..start + len).unwrap_or_default();
                Node::String(core::str::from_utf8(text).map_err(|_| JsonError(start))?)
            }
            Raw::Static(value) => Node::Static(value),
            Raw::Object(len, count) => Node::Object { len, count },
            Raw::Array(len, count) => Node::Array { len, count },
        });
    }
    Ok(Tape(nodes))
}

fn skip_space(bytes: &[u8], mut i: usize) -> usize {
    while matches!(bytes.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// An object key at `i` and its colon: returns where its value starts.
fn key(bytes: &mut [u8], i: usize, raw: &mut Vec<Raw>) -> Result<usize, JsonError> {
    if bytes.get(i) != Some(&b'"') {
        return Err(JsonError(i));
    }
    let (start, len, next) = string(bytes, i)?;
    raw.push(Raw::Str(start, len));
    let colon = skip_space(bytes, next);
    if bytes.get(colon) != Some(&b':') {
        return Err(JsonError(colon));
    }
    Ok(skip_space(bytes, colon + 1))
}

fn literal(
    bytes: &[u8],
    i: usize,
    word: &[u8],
    value: StaticNode,
    raw: &mut Vec<Raw>,
) -> Result<usize, JsonError> {
    if bytes.get(i..i + word.len()) != Some(word) {
        return Err(JsonError(i));
    }
    raw.push(Raw::Static(value));
    Ok(i + word.len())
}

/// A number at `i`: its value and where it ends.
fn number(bytes: &[u8], i: usize) -> Result<(StaticNode, usize), JsonError> {
    let mut end = i;
    let negative = bytes.get(end) == Some(&b'-');
    if negative {
        end += 1;
    }
    let digits = |from: usize| {
        let mut to = from;
        while bytes.get(to).is_some_and(u8::is_ascii_digit) {
            to += 1;
        }
        to
    };
    let int_end = digits(end);
    let leading_zero = bytes.get(end) == Some(&b'0') && int_end > end + 1;
    if int_end == end || leading_zero {
        return Err(JsonError(end));
    }
    let integer = bytes.get(end..int_end).unwrap_or_default();
    end = int_end;
    let mut fraction = false;
    if bytes.get(end) == Some(&b'.') {
        let after = digits(end + 1);
        if after == end + 1 {
            return Err(JsonError(end + 1));
        }
        end = after;
        fraction = true;
    }
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        end += 1;
        if matches!(bytes.get(end), Some(b'+' | b'-')) {
            end += 1;
        }
        let after = digits(end);
        if after == end {
            return Err(JsonError(end));
        }
        end = after;
        fraction = true;
    }
    if fraction {
        // Its value is not kept, but one simd-json refuses is refused.
        if !float_in_range(bytes.get(i..end).unwrap_or_default()) {
            return Err(JsonError(i));
        }
        return Ok((StaticNode::F64, end));
    }
    let Some(magnitude) = decimal(integer) else {
        return Err(JsonError(i));
    };
    let value = if !negative {
        StaticNode::U64(magnitude)
    } else if magnitude <= i64::MAX.unsigned_abs() + 1 {
        StaticNode::I64(0i64.wrapping_sub_unsigned(magnitude))
    } else {
        return Err(JsonError(i));
    };
    Ok((value, end))
}

/// The value of ASCII decimal digits, `None` when there are none, a byte is
/// not a digit, or the value passes 64 bits.
pub(crate) fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

/// Whether simd-json's number parser (with `approx-number-parsing`)
/// takes a number with a fraction or an exponent: an exponent of at most
/// three digits, and unless the number is zero, at most 308 once the
/// digits after the point are counted and at least -323 as written.
fn float_in_range(number: &[u8]) -> bool {
    let (mantissa, exponent) = match number.iter().position(|&b| b == b'e' || b == b'E') {
        Some(at) => (
            number.get(..at).unwrap_or_default(),
            number.get(at + 1..).unwrap_or_default(),
        ),
        None => (number, &b""[..]),
    };
    let (negative, digits) = match exponent.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, exponent),
    };
    if digits.len() > 3 {
        return false;
    }
    if !mantissa.iter().any(|b| (b'1'..=b'9').contains(b)) {
        return true;
    }
    let mut written: i64 = 0;
    for &d in digits {
        written = written * 10 + i64::from(d - b'0');
    }
    if negative {
        written = -written;
    }
    let after_point = match mantissa.iter().position(|&b| b == b'.') {
        Some(at) => mantissa.len() - at - 1,
        None => 0,
    };
    let scaled = written - i64::try_from(after_point).unwrap_or(i64::MAX);
    scaled <= 308 && written >= -323
}

/// A string whose opening quote is at `quote`, unescaped in place: its
/// start and unescaped length, and where parsing goes on.
fn string(bytes: &mut [u8], quote: usize) -> Result<(usize, usize, usize), JsonError> {
    let start = quote + 1;
    let mut read = start;
    let mut write = start;
    loop {
        let Some(&b) = bytes.get(read) else {
            return Err(JsonError(read));
        };
        match b {
            b'"' => return Ok((start, write - start, read + 1)),
            b'\\' => {
                let escape = bytes.get(read + 1).copied();
                let simple = match escape {
                    Some(b'"') => Some(b'"'),
                    Some(b'\\') => Some(b'\\'),
                    Some(b'/') => Some(b'/'),
                    Some(b'b') => Some(0x08),
                    Some(b'f') => Some(0x0C),
                    Some(b'n') => Some(b'\n'),
                    Some(b'r') => Some(b'\r'),
                    Some(b't') => Some(b'\t'),
                    Some(b'u') => None,
                    _ => return Err(JsonError(read)),
                };
                if let Some(byte) = simple {
                    put(bytes, write, &[byte]);
                    write += 1;
                    read += 2;
                    continue;
                }
                let (ch, next) = unicode_escape(bytes, read)?;
                let mut utf8 = [0u8; 4];
                let encoded = ch.encode_utf8(&mut utf8).as_bytes();
                put(bytes, write, encoded);
                write += encoded.len();
                read = next;
            }
            0x00..=0x1F => return Err(JsonError(read)),
            _ => {
                put(bytes, write, &[b]);
                write += 1;
                read += 1;
            }
        }
    }
}

/// Writes `data` at `at`, behind the reading position (an escape is never
/// shorter than what it stands for), so nothing unread is overwritten.
fn put(bytes: &mut [u8], at: usize, data: &[u8]) {
    if let Some(slot) = bytes.get_mut(at..at + data.len()) {
        slot.copy_from_slice(data);
    }
}

/// `\uXXXX` at `at` (a surrogate pair as two of them): the character and
/// where the escape ends.
fn unicode_escape(bytes: &[u8], at: usize) -> Result<(char, usize), JsonError> {
    let high = hex4(bytes, at + 2).ok_or(JsonError(at))?;
    if !(0xD800..0xDC00).contains(&high) {
        return char::from_u32(high)
            .map(|c| (c, at + 6))
            .ok_or(JsonError(at));
    }
    if bytes.get(at + 6..at + 8) != Some(b"\\u") {
        return Err(JsonError(at));
    }
    let low = hex4(bytes, at + 8).ok_or(JsonError(at))?;
    if !(0xDC00..0xE000).contains(&low) {
        return Err(JsonError(at));
    }
    let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
    char::from_u32(code)
        .map(|c| (c, at + 12))
        .ok_or(JsonError(at))
}

fn hex4(bytes: &[u8], at: usize) -> Option<u32> {
    let mut value = 0;
    for &b in bytes.get(at..at + 4)? {
        value = value * 16 + char::from(b).to_digit(16)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::fake::Rng;

    /// The tape in simd-json's terms, integers merged (simd-json keeps
    /// small non-negative numbers as `I64`) and floats reduced to "a
    /// fraction".
    fn ours(input: &[u8]) -> Option<Vec<String>> {
        let mut bytes = input.to_vec();
        let tape = to_tape(&mut bytes).ok()?;
        Some(
            tape.0
                .iter()
                .map(|n| match n {
                    Node::String(s) => format!("s:{s}"),
                    Node::Static(StaticNode::Null) => "null".into(),
                    Node::Static(StaticNode::Bool(b)) => format!("b:{b}"),
                    Node::Static(StaticNode::I64(v)) => format!("i:{v}"),
                    Node::Static(StaticNode::U64(v)) => format!("i:{v}"),
                    Node::Static(StaticNode::F64) => "f".into(),
                    Node::Object { len, count } => format!("o:{len}:{count}"),
                    Node::Array { len, count } => format!("a:{len}:{count}"),
                })
                .collect(),
        )
    }

    fn theirs(input: &[u8]) -> Option<Vec<String>> {
        use simd_json::{Node as N, StaticNode as S};
        let mut bytes = input.to_vec();
        let tape = simd_json::to_tape(&mut bytes).ok()?;
        Some(
            tape.0
                .iter()
                .map(|n| match n {
                    N::String(s) => format!("s:{s}"),
                    N::Static(S::Null) => "null".into(),
                    N::Static(S::Bool(b)) => format!("b:{b}"),
                    N::Static(S::I64(v)) => format!("i:{v}"),
                    N::Static(S::U64(v)) => format!("i:{v}"),
                    N::Static(S::F64(_)) => "f".into(),
                    N::Object { len, count } => format!("o:{len}:{count}"),
                    N::Array { len, count } => format!("a:{len}:{count}"),
                })
                .collect(),
        )
    }

    const SEEDS: &[&str] = &[
        r#"{"rule_name": "r", "global_threshold": {"query_per_minute": 10}, "redis": {"webdis_cluster": "webdis", "timeout": 250}}"#,
        r#"{"a": [1, -2, 3.5, 1e3, -0, true, false, null, "x\"y\\z\/\n\u00e9\ud83d\ude00"], "b": {}, "c": [], "d": [[], {}], "e": 18446744073709551615, "f": -9223372036854775808}"#,
        r#"{"_rules_": [{"_match_route_": ["a", "b"], "rule_items": [{"limit_by_per_header": "x", "limit_keys": [{"key": "regexp:^a{2,3}$", "query_per_day": 9223372036854775807}]}]}]}"#,
        r#"  [ 1 , { "k" : [ ] } , "" ]  "#,
        r#""just a string""#,
        "[1e308, 0.0, 0e999, 1.5e309, 0.005e-323, -0.5e-3, 0.00000000001]",
        "-9223372036854775808",
    ];

    #[test]
    fn the_seeds_parse_as_simd_json_parses_them() {
        for seed in SEEDS {
            let got = ours(seed.as_bytes());
            assert!(got.is_some(), "{seed}");
            assert_eq!(got, theirs(seed.as_bytes()), "{seed}");
        }
    }

    #[test]
    fn invalid_documents_are_refused_at_their_fault() {
        for (bad, at) in [
            (&b"{"[..], 1),
            (b"{\"a\" 1}", 5),
            (b"{\"a\": 1,}", 8),
            (b"[1 2]", 3),
            (b"[01]", 1),
            (b"[1.]", 3),
            (b"[1e]", 3),
            (b"[tru]", 1),
            (b"{\"a\": \"\x01\"}", 7),
            (b"[\"\\x\"]", 2),
            (b"[\"\\ud800\"]", 2),
            (b"{} x", 3),
            (b"[\"\xff\"]", 2),
            (b"", 0),
            (b"[18446744073709551616]", 1),
            (b"[-9223372036854775809]", 1),
            (b"[1e309]", 1),
            (b"[0.01e311]", 1),
            (b"[2e-324]", 1),
            (b"[1e0001]", 1),
        ] {
            let mut bytes = bad.to_vec();
            assert_eq!(
                to_tape(&mut bytes).err(),
                Some(JsonError(at)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
            assert!(theirs(bad).is_none(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn mutated_documents_agree_with_simd_json() {
        // Bytes JSON gives meaning to, and a few it does not.
        const ALPHABET: &[u8] = b"{}[]:,\"\\ 0123456789-+.eEtrufalsn\xc3\xa9\x01uxd8";
        let mut rng = Rng::new(15);
        let mut disagreements = Vec::new();
        for round in 0..20_000 {
            let seed = SEEDS[rng.below(SEEDS.len())].as_bytes();
            let mut doc = seed.to_vec();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(doc.len() + 1);
                match rng.below(3) {
                    0 if at < doc.len() => {
                        doc.remove(at);
                    }
                    1 if at < doc.len() => doc[at] = ALPHABET[rng.below(ALPHABET.len())],
                    _ => doc.insert(at, ALPHABET[rng.below(ALPHABET.len())]),
                }
            }
            let (a, b) = (ours(&doc), theirs(&doc));
            if a != b {
                disagreements.push(format!(
                    "round {round}: {:?}: ours {a:?} simd-json {b:?}",
                    String::from_utf8_lossy(&doc)
                ));
            }
        }
        assert!(
            disagreements.is_empty(),
            "{} disagreements, e.g. {:#?}",
            disagreements.len(),
            &disagreements[..disagreements.len().min(5)]
        );
    }
}
