//! Replies read as `redis-protocol`'s range decoder reads them, less what
//! the decoder refuses on purpose, and shown as log lines show them.

use super::*;
use crate::resp::tests::Lcg;
use redis_protocol::resp2::decode::decode_range;
use redis_protocol::resp2::types::RangeFrame;

/// The kit's reading of `bytes` in `redis-protocol`'s terms, taken
/// through the public API; `None` when it refuses them.
fn ours(bytes: &[u8]) -> Option<RangeFrame> {
    let decoded = decode(bytes).ok()?;
    Some(range_frame(bytes, decoded.reply(bytes)))
}

/// `reply` as a `RangeFrame`: its strings as offsets into `bytes`, its
/// arrays read with `iter`, checked against `len`, `is_empty` and `get`.
fn range_frame(bytes: &[u8], reply: Reply<'_>) -> RangeFrame {
    let range = |s: &[u8]| {
        let start = (s.as_ptr() as usize)
            .checked_sub(bytes.as_ptr() as usize)
            .unwrap();
        assert!(start + s.len() <= bytes.len(), "a slice out of the reply");
        (start, start + s.len())
    };
    match reply {
        Reply::Integer(n) => RangeFrame::Integer(n),
        Reply::Simple(s) => RangeFrame::SimpleString(range(s)),
        Reply::Bulk(s) => RangeFrame::BulkString(range(s)),
        Reply::Error(s) => RangeFrame::Error(range(s)),
        Reply::Nil => RangeFrame::Null,
        Reply::Array(items) => {
            let elements: Vec<RangeFrame> = items.iter().map(|r| range_frame(bytes, r)).collect();
            assert_eq!(items.len(), elements.len());
            assert_eq!(items.is_empty(), elements.is_empty());
            for (i, element) in elements.iter().enumerate() {
                assert_eq!(range_frame(bytes, items.get(i).unwrap()), *element);
            }
            assert_eq!(items.get(elements.len()), None);
            RangeFrame::Array(elements)
        }
    }
}

/// `redis-protocol`'s reading of `bytes` as one complete value.
fn theirs(bytes: &[u8]) -> Option<RangeFrame> {
    match decode_range(bytes) {
        Ok(Some((frame, used))) if used == bytes.len() => Some(frame),
        _ => None,
    }
}

/// What the kit should read: `redis-protocol`'s reading, less what
/// [`decode`] refuses on purpose (see its documentation).
fn expected(bytes: &[u8]) -> Option<RangeFrame> {
    theirs(bytes).filter(|frame| depth(frame) <= MAX_DEPTH && bulks_end_in_crlf(bytes, frame))
}

/// Arrays nested in `frame`, itself included.
fn depth(frame: &RangeFrame) -> usize {
    match frame {
        RangeFrame::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Whether every bulk string in `frame` is followed by CRLF.
fn bulks_end_in_crlf(bytes: &[u8], frame: &RangeFrame) -> bool {
    match frame {
        RangeFrame::BulkString((_, end)) => bytes.get(*end..end + 2) == Some(&b"\r\n"[..]),
        RangeFrame::Array(items) => items.iter().all(|f| bulks_end_in_crlf(bytes, f)),
        _ => true,
    }
}

/// Checks the kit reads `bytes` as intended; returns its reading.
fn check(bytes: &[u8]) -> Option<RangeFrame> {
    let read = ours(bytes);
    assert_eq!(read, expected(bytes), "{}", bytes.escape_ascii());
    read
}

#[test]
fn plain_number_lines_read_as_the_line_and_integer_read_them() {
    // Digit runs of every length around the unchecked limit, after
    // each kind and with every ending, as whole replies (against
    // `redis-protocol`) and directly against the general path.
    let mut rng = Lcg(7);
    let endings: [&[u8]; 8] = [
        b"\r\n", b"\r", b"\n", b"", b"\r\r\n", b"x\r\n", b"\r\nx", b"\n\r\n",
    ];
    for len in 0..=22 {
        for first in [b'0', b'1', b'9', b'5'] {
            let mut digits = vec![first];
            digits.extend((1..len).map(|_| b'0' + rng.below(10) as u8));
            digits.truncate(len);
            for max in [false, true] {
                if max {
                    digits.iter_mut().for_each(|d| *d = b'9');
                }
                for ending in endings {
                    let line = [&digits[..], ending].concat();
                    let general = {
                        let mut reader = Reader {
                            bytes: &line,
                            at: 0,
                            frames: SmallVec::new(),
                        };
                        reader
                            .line()
                            .and_then(|(s, e)| integer(&line[s..e]))
                            .map(|n| (n, reader.at))
                    };
                    if let Some(fast) = plain_number(&line, 0) {
                        assert_eq!(Some(fast), general, "{}", line.escape_ascii());
                    }
                    for kind in [b':', b'$', b'*'] {
                        check(&[&[kind][..], &line].concat());
                        check(&[&[kind][..], &line, b"abc\r\n"].concat());
                    }
                }
            }
        }
    }
    assert_eq!(plain_number(b"42\r\n", 0), Some((42, 4)));
    assert_eq!(
        plain_number(b"999999999999999999\r\n", 0),
        Some((999_999_999_999_999_999, 20))
    );
    assert_eq!(plain_number(b"9999999999999999999\r\n", 0), None);
    assert_eq!(plain_number(b"+42\r\n", 0), None);
}

#[test]
fn scalar_and_array_replies_read_as_redis_protocol_reads_them() {
    let cases: &[&[u8]] = &[
        b":0\r\n",
        b":-0\r\n",
        b":17\r\n",
        b":-17\r\n",
        b":007\r\n",
        b":123456789012345678\r\n",
        b":-123456789012345678\r\n",
        b":1234567890123456789\r\n",
        b":9223372036854775807\r\n",
        b":-9223372036854775808\r\n",
        b":9223372036854775808\r\n",
        b":-9223372036854775809\r\n",
        b":99999999999999999999\r\n",
        b":+5\r\n",
        b":+\r\n",
        b":+-5\r\n",
        b":--5\r\n",
        b": 5\r\n",
        b":5 \r\n",
        b":\r\n",
        b":-\r\n",
        b":5\n",
        b":5\r\r\n",
        b":5\r\n\r\n",
        b":5",
        b":1a\r\n",
        b"+OK\r\n",
        b"+\r\n",
        b"+O\rK\r\n",
        b"+O\nK\r\n",
        b"+OK\r\r\n",
        b"+\n\r\n",
        b"+OK\r\n+OK\r\n",
        b"-ERR x\r\n",
        b"-\r\n",
        b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
        b"-NOSCRIPT No matching script. Please use EVAL.\r\n:1\r\n",
        b"-NOSCRIPT No matching script. Please use EVAL.\r",
        b"$-1\r\n",
        b"$-1\r\n\r\n",
        b"$-2\r\n",
        b"$-0\r\n\r\n",
        b"$0\r\n\r\n",
        b"$3\r\nabc\r\n",
        b"$3\r\nab\r\n",
        b"$3\r\nabcd\r\n",
        b"$3\r\na\r\n\r\n",
        b"$2\r\n\r\n\r\n",
        b"$03\r\nabc\r\n",
        b"$+3\r\nabc\r\n",
        b"$3\nabc\r\n",
        b"$3\r\nabc",
        b"$3\r\nabc\r",
        b"$\r\n\r\n",
        b"$99999999999999999999\r\nabc\r\n",
        b"*0\r\n",
        b"*-0\r\n",
        b"*-1\r\n",
        b"*-2\r\n",
        b"*1\r\n:1\r\n",
        b"*+1\r\n:1\r\n",
        b"*01\r\n:1\r\n",
        b"*1\r\n",
        b"*1\r\n:1\r\n:2\r\n",
        b"*2\r\n:1\r\n",
        b"*3\r\n:17\r\n:100\r\n:42\r\n",
        b"*2\r\n$-1\r\n*-1\r\n",
        b"*1\r\n-NOSCRIPT No matching script. Please use EVAL.\r\n",
        b"*3\r\n*2\r\n:1\r\n$1\r\nx\r\n*0\r\n+OK\r\n",
        b"*2\r\n*1\r\n*1\r\n:1\r\n*1\r\n*0\r\n",
        b"*1\r\n*1\r\n",
        b"*1\r\n*2\r\n:1\r\n",
        b"**1\r\n",
        b"",
        b"\r\n",
        b"hello",
    ];
    for bytes in cases {
        check(bytes);
    }
    // Every prefix and many one-byte changes of a few replies.
    let mut rng = Lcg(0x9e37_79b9);
    for reply in [
        &b":-1234\r\n"[..],
        b"$5\r\nhello\r\n",
        b"+OK\r\n",
        b"-ERR no\r\n",
        b"*3\r\n:17\r\n$-1\r\n$2\r\nab\r\n",
        b"*2\r\n*1\r\n+a\r\n*-1\r\n",
    ] {
        assert!(check(reply).is_some());
        for cut in 0..reply.len() {
            assert_eq!(check(&reply[..cut]), None);
        }
        for _ in 0..2_000 {
            let mut changed = reply.to_vec();
            let at = rng.below(changed.len());
            changed[at] = rng.below(256) as u8;
            check(&changed);
        }
    }
}

/// Appends a random reply with arrays nested at most `depth` deep:
/// every kind, lone CRs in lines, any byte in bulk strings.
fn random_reply(rng: &mut Lcg, depth: usize, out: &mut Vec<u8>) {
    match rng.below(if depth == 0 { 5 } else { 7 }) {
        0 => {
            let picked = [0, 1, -1, 17, 1234, i64::MAX, i64::MIN];
            let n = match rng.below(2) {
                0 => rng.pick(&picked),
                _ => rng.below(1 << 30) as i64 - (1 << 29),
            };
            out.extend_from_slice(format!(":{n}\r\n").as_bytes());
        }
        1 | 2 => {
            out.push(rng.pick(b"+-"));
            for _ in 0..rng.below(20) {
                out.push(rng.pick(b"OK ERR:{}x\"\\\x00\x7f\xc3\xa9\r"));
            }
            out.extend_from_slice(b"\r\n");
        }
        3 => {
            let len = rng.pick(&[0, 1, 2, 5, 40, 300]);
            out.extend_from_slice(format!("${len}\r\n").as_bytes());
            for _ in 0..len {
                out.push(rng.pick(b"ab\r\n\r\n*$:+-0\xff"));
            }
            out.extend_from_slice(b"\r\n");
        }
        4 => out.extend_from_slice(rng.pick(&[&b"$-1\r\n"[..], b"*-1\r\n"])),
        _ => {
            let len = rng.below(9);
            out.extend_from_slice(format!("*{len}\r\n").as_bytes());
            for _ in 0..len {
                random_reply(rng, depth - 1, out);
            }
        }
    }
}

/// Damaged copies of `reply`: truncated, a byte changed, a CR, LF or
/// digit inserted, a byte removed, bytes appended, a length replaced
/// by a huge, negative or odd one.
fn mutations(rng: &mut Lcg, reply: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 0..4 {
        out.push(reply[..rng.below(reply.len())].to_vec());
    }
    for _ in 0..4 {
        let mut m = reply.to_vec();
        let at = rng.below(m.len());
        m[at] = match rng.below(2) {
            0 => rng.below(256) as u8,
            _ => rng.pick(b"\r\n-+:$*09"),
        };
        out.push(m);
    }
    for inserted in [&b"\r"[..], b"\n", b"\r\n", b"0"] {
        let mut m = reply.to_vec();
        let at = rng.below(m.len() + 1);
        m.splice(at..at, inserted.iter().copied());
        out.push(m);
    }
    let mut m = reply.to_vec();
    m.remove(rng.below(m.len()));
    out.push(m);
    let mut m = reply.to_vec();
    m.extend_from_slice(rng.pick(&[&b":1\r\n"[..], b"\r\n", b"x"]));
    out.push(m);
    let headers: Vec<usize> = (0..reply.len())
        .filter(|&i| matches!(reply[i], b'$' | b'*'))
        .collect();
    if !headers.is_empty() {
        let at = rng.pick(&headers) + 1;
        if let Some(digits) = reply[at..].iter().position(|&b| b == b'\r') {
            let mut m = reply[..at].to_vec();
            m.extend_from_slice(rng.pick(&[
                &b"2147483647"[..],
                b"4294967296",
                b"99999999999",
                b"9223372036854775807",
                b"-2",
                b"-1",
                b"0",
                b"+1",
                b"01",
            ]));
            m.extend_from_slice(&reply[at + digits..]);
            out.push(m);
        }
    }
    out
}

#[test]
fn random_nested_replies_and_mutations_read_as_redis_protocol_reads_them() {
    let mut rng = Lcg(0x5eed_1e55);
    let (mut accepted, mut arrays, mut refused_on_purpose) = (0, 0, 0);
    for _ in 0..4_000 {
        let mut reply = Vec::new();
        random_reply(&mut rng, 5, &mut reply);
        let read = check(&reply);
        assert!(read.is_some(), "{}", reply.escape_ascii());
        arrays += usize::from(matches!(read, Some(RangeFrame::Array(_))));
        for changed in mutations(&mut rng, &reply) {
            if check(&changed).is_some() {
                accepted += 1;
            }
            if expected(&changed) != theirs(&changed) {
                refused_on_purpose += 1;
            }
        }
    }
    // The mutations reach both outcomes and the deliberate refusals.
    assert!(arrays > 1_000, "{arrays}");
    assert!(accepted > 2_000, "{accepted}");
    assert!(refused_on_purpose > 50, "{refused_on_purpose}");
}

#[test]
fn decoding_into_reused_frames_reads_what_decode_reads() {
    // One `Decoded` through random replies and their mutations: each
    // reads as a fresh decode reads it, and a refused input leaves no
    // reply behind.
    let mut rng = Lcg(0x0dec_0de5);
    let mut reused = Decoded::default();
    for _ in 0..2_000 {
        let mut reply = Vec::new();
        random_reply(&mut rng, 4, &mut reply);
        for bytes in std::iter::once(reply.clone()).chain(mutations(&mut rng, &reply)) {
            let fresh = decode(&bytes);
            let into = decode_into(&bytes, &mut reused);
            assert_eq!(fresh.is_ok(), into.is_ok(), "{}", bytes.escape_ascii());
            if let Ok(fresh) = fresh {
                assert_eq!(
                    fresh.reply(&bytes).to_string(),
                    reused.reply(&bytes).to_string(),
                    "{}",
                    bytes.escape_ascii()
                );
            } else {
                assert_eq!(reused.reply(&bytes), Reply::Nil);
            }
        }
    }
}

#[test]
fn refuses_on_purpose_what_redis_protocol_takes() {
    // A bulk string followed by anything but CRLF: `redis-protocol`
    // takes the two bytes as they are.
    for bytes in [&b"$3\r\nabcXY"[..], b"$0\r\nab", b"*2\r\n$1\r\naXY:1\r\n"] {
        assert!(theirs(bytes).is_some(), "{}", bytes.escape_ascii());
        assert!(decode(bytes).is_err(), "{}", bytes.escape_ascii());
    }
    // Sixteen nested arrays are read; a seventeenth, even empty, is
    // refused; a nil at the bottom is not an array.
    let nested = |levels: usize, bottom: &[u8]| {
        let mut bytes = b"*1\r\n".repeat(levels);
        bytes.extend_from_slice(bottom);
        bytes
    };
    for bottom in [&b":1\r\n"[..], b"*-1\r\n", b"$-1\r\n"] {
        let bytes = nested(MAX_DEPTH, bottom);
        assert_eq!(depth(&check(&bytes).unwrap()), MAX_DEPTH);
    }
    for bottom in [&b"*0\r\n"[..], b"*1\r\n:1\r\n"] {
        let bytes = nested(MAX_DEPTH, bottom);
        assert_eq!(depth(&theirs(&bytes).unwrap()), MAX_DEPTH + 1);
        assert_eq!(check(&bytes), None);
    }
    // Far deeper input is refused without recursing into it (it would
    // overflow `redis-protocol`'s stack, so it is not asked).
    assert!(decode(&nested(1_000_000, b":1\r\n")).is_err());
}

#[test]
fn refuses_declared_lengths_beyond_the_input() {
    for bytes in [
        &b"*2147483647\r\n"[..],
        b"*2147483647\r\n:1\r\n:2\r\n",
        b"*4294967296\r\n:1\r\n",
        b"*9223372036854775807\r\n+\r\n",
        b"*9223372036854775808\r\n",
        b"*-9223372036854775808\r\n",
        b"$99999999999\r\n",
        b"$99999999999\r\nabc\r\n",
        b"$4294967295\r\nabc\r\n",
        b"$9223372036854775807\r\nab\r\n",
        b"$18446744073709551615\r\nab\r\n",
        b"$-9223372036854775808\r\n",
    ] {
        assert_eq!(check(bytes), None, "{}", bytes.escape_ascii());
    }
    // As many elements as the input can hold is not refused early.
    let mut bytes = b"*5\r\n".to_vec();
    bytes.extend_from_slice(&b"+\r\n".repeat(5));
    assert!(matches!(check(&bytes), Some(RangeFrame::Array(items)) if items.len() == 5));
}

#[test]
fn small_replies_stay_inline() {
    let mut six = b"*6\r\n".to_vec();
    six.extend_from_slice(&b":1\r\n".repeat(6));
    for bytes in [
        &b":17\r\n"[..],
        b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
        b"*3\r\n:17\r\n:100\r\n:42\r\n",
        b"*2\r\n*2\r\n:1\r\n:2\r\n*2\r\n:3\r\n:4\r\n",
        &six,
    ] {
        assert!(
            !decode(bytes).unwrap().elements.spilled(),
            "{}",
            bytes.escape_ascii()
        );
    }
    // Bigger replies spill to the heap and read the same.
    let mut big = b"*100\r\n".to_vec();
    big.extend_from_slice(&b"$1\r\nx\r\n".repeat(100));
    assert!(decode(&big).unwrap().elements.spilled());
    check(&big);
    // Moved around whole, so kept small.
    assert!(core::mem::size_of::<Result<Decoded, InvalidReply>>() <= 128);
}

#[test]
fn replies_read_as_words_in_log_lines() {
    let cases: &[(&[u8], &str)] = &[
        (b":-3\r\n", "integer -3"),
        (b"+OK\r\n", "simple string \"OK\""),
        (b"$2\r\na\n\r\n", r#"bulk string "a\x0a""#),
        (b"$-1\r\n", "nil"),
        (b"-ERR no\r\n", "error \"ERR no\""),
        (b"*2\r\n:1\r\n:2\r\n", "array of 2"),
    ];
    for (bytes, want) in cases {
        let decoded = decode(bytes).unwrap();
        assert_eq!(decoded.reply(bytes).to_string(), *want);
    }
}

#[test]
fn decodes_every_reply_kind() {
    let cases: &[(&[u8], &str)] = &[
        (b":42\r\n", "Integer(42)"),
        (b"+OK\r\n", "Simple(\"OK\")"),
        (b"$3\r\nabc\r\n", "Bulk(\"abc\")"),
        (b"$-1\r\n", "Nil"),
        (
            b"-NOSCRIPT No matching script\r\n",
            "Error(\"NOSCRIPT No matching script\")",
        ),
        (b"*2\r\n:1\r\n$1\r\nx\r\n", "[Integer(1), Bulk(\"x\")]"),
        (b"*-1\r\n", "Nil"),
        (b"*0\r\n", "[]"),
        (
            b"*3\r\n*2\r\n:-1\r\n$-1\r\n*0\r\n+OK\r\n",
            "[[Integer(-1), Nil], [], Simple(\"OK\")]",
        ),
        // Printable ASCII as is, `"` and `\` escaped, other bytes in hex.
        (
            b"$10\r\na \"\\\r\n\x00\x7f\xc3\xa9\r\n",
            r#"Bulk("a \"\\\x0d\x0a\x00\x7f\xc3\xa9")"#,
        ),
        (b"+~\t\r\n", r#"Simple("~\x09")"#),
    ];
    for (bytes, want) in cases {
        let decoded = decode(bytes).unwrap();
        assert_eq!(format!("{:?}", decoded.reply(bytes)), *want);
    }
}

#[test]
fn refuses_truncated_trailing_and_garbage_replies() {
    for bad in [&b":4"[..], b"$5\r\nab\r\n", b":1\r\n:2\r\n", b"hello", b""] {
        assert!(decode(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn integer_from_bulk_string() {
    let bytes = b"$2\r\n17\r\n";
    let d = decode(bytes).unwrap();
    assert_eq!(d.reply(bytes).as_i64(), Some(17));
}
