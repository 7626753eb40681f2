//! Redis replies, as both transports bring them: the RESP decoder on the
//! bytes a native call answers (checked against redis-protocol's reading,
//! less what the decoder refuses on purpose), and webdis answers (any HTTP
//! status, any body) delivered to the limiter in a request, which must
//! then decide the request by its failure mode, never hang or panic.
//!
//! Input: a mode byte; for webdis, two status bytes, then the bodies of up
//! to four answers separated by NUL bytes.
#![no_main]

use kit::fake::FakeHost;
use kit::fake_request::Outcome;
use kit::resp::{decode, decode_into, Decoded, Reply};
use kit::Filter;
use libfuzzer_sys::fuzz_target;
use redis_protocol::resp2::decode::decode_range;
use redis_protocol::resp2::types::RangeFrame;

/// Arrays nest at most this deep in what the decoder accepts.
const MAX_DEPTH: usize = 16;

/// `reply` as a `RangeFrame`, its strings as offsets into `bytes`.
fn range_frame(bytes: &[u8], reply: Reply<'_>) -> RangeFrame {
    let range = |s: &[u8]| {
        let start = (s.as_ptr() as usize).wrapping_sub(bytes.as_ptr() as usize);
        assert!(
            start <= bytes.len() && s.len() <= bytes.len() - start,
            "a slice out of the reply"
        );
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
            // `get` agrees with `iter`. Compared as replies, not by reading
            // each element again: a second recursive reading per element
            // doubles the work at every level of nesting. `get` skips the
            // elements before its index, so only the first ones and the
            // last are asked, or a wide array costs its width squared.
            let count = elements.len();
            for (i, element) in items.iter().enumerate() {
                if i < 16 || i + 1 == count {
                    assert_eq!(items.get(i), Some(element));
                }
            }
            assert!(items.get(count).is_none());
            RangeFrame::Array(elements)
        }
    }
}

fn depth(frame: &RangeFrame) -> usize {
    match frame {
        RangeFrame::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn bulks_end_in_crlf(bytes: &[u8], frame: &RangeFrame) -> bool {
    match frame {
        RangeFrame::BulkString((_, end)) => bytes.get(*end..end + 2) == Some(&b"\r\n"[..]),
        RangeFrame::Array(items) => items.iter().all(|f| bulks_end_in_crlf(bytes, f)),
        _ => true,
    }
}

fn native(bytes: &[u8]) {
    let ours = decode(bytes)
        .ok()
        .map(|d| range_frame(bytes, d.reply(bytes)));
    // Reused after a reply with more elements than fit inline, as the
    // kit reuses it between replies.
    let mut reused = Decoded::default();
    let wide = b"*8\r\n:1\r\n:2\r\n:3\r\n:4\r\n:5\r\n:6\r\n:7\r\n:8\r\n";
    assert!(decode_into(wide, &mut reused).is_ok());
    let again = decode_into(bytes, &mut reused)
        .ok()
        .map(|()| range_frame(bytes, reused.reply(bytes)));
    assert_eq!(ours, again, "decode and decode_into differ");
    // redis-protocol recurses once per nested array: deep hostile nesting
    // would overflow the reference's stack, not the decoder's.
    if bytes.iter().filter(|&&b| b == b'*').count() > 4 * MAX_DEPTH {
        assert!(ours.as_ref().is_none_or(|f| depth(f) <= MAX_DEPTH));
        return;
    }
    let theirs = match decode_range(bytes) {
        Ok(Some((frame, used))) if used == bytes.len() => Some(frame),
        _ => None,
    };
    let expected = theirs.filter(|f| depth(f) <= MAX_DEPTH && bulks_end_in_crlf(bytes, f));
    assert_eq!(ours, expected, "{}", bytes.escape_ascii());
}

const STATUSES: [u16; 8] = [200, 200, 200, 503, 504, 404, 500, 0];

fn webdis(status: [u8; 2], answers: &[u8]) {
    let mut filter = Filter::<limiter::Limiter, FakeHost>::new(FakeHost::new());
    let config = br#"{"rule_name": "fz", "global_threshold": {"query_per_minute": 5},
        "redis": {"webdis_cluster": "webdis", "timeout": 100}}"#;
    if filter.configure(config.to_vec()).is_err() {
        panic!("the fixed configuration is refused");
    }
    let status = match STATUSES[usize::from(status[0] % 8)] {
        0 => u16::from_le_bytes(status),
        s => s,
    };
    let (stream, mut outcome) = filter.send_request(&[(":path", "/"), (":authority", "a")]);
    let mut bodies = answers.split(|&b| b == 0);
    for _ in 0..4 {
        let Outcome::Waiting(call) = &outcome else {
            break;
        };
        let body = bodies.next().unwrap_or_default();
        outcome = filter.answer_http(call, status, body);
    }
    match outcome {
        Outcome::Continued | Outcome::Responded(_) => {}
        // A call answered four times over is still waiting on a fifth:
        // only a NOSCRIPT each time does that, and it retries once.
        other => panic!("left undecided: {other:?}"),
    }
    filter.close_stream(stream);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        native(rest);
    } else {
        let (status, answers) = fuzz_support::header::<2>(rest);
        webdis(status, answers);
    }
});
