//! What the limiter makes of each reply its counting script can get, over
//! the kit's `FakeHost`: a count, a repaired key, and an error reply.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use common::{Driver, Outcome};
use kit::LogLevel;
use kit::Reply;
use kit::{Count, Repair};

/// A driver logging at debug level, so that no line hides below the
/// threshold.
fn driver(deny: bool) -> Driver {
    let config = format!(
        r#"{{"rule_name": "r", "global_threshold": {{"query_per_minute": 2}}, "failure_mode_deny": {deny},
            "redis": {{"webdis_cluster": "webdis", "timeout": 250}}}}"#
    );
    let mut d = Driver::new(&config);
    d.host().log_level = LogLevel::Debug;
    d.filter.configure(config.into_bytes()).unwrap();
    d.host().logs.clear();
    d
}

fn lines(d: &mut Driver) -> Vec<String> {
    d.host().logs.iter().map(|(_, line)| line.clone()).collect()
}

#[test]
fn an_error_reply_is_logged_once_and_accurately() {
    for (deny, outcome) in [(false, Outcome::Forwarded), (true, Outcome::Answered(503))] {
        let mut d = driver(deny);
        d.redis.next_reply =
            Some(b"-OOM command not allowed when used memory > 'maxmemory'.\r\n".to_vec());
        assert_eq!(d.request(&[]), outcome);
        let logged = lines(&mut d);
        assert_eq!(
            logged,
            ["limiter: Redis did not count the request: error \"OOM command not allowed when used memory > 'maxmemory'.\""],
            "one line, naming Redis's answer; never \"not valid RESP\""
        );
        assert_eq!(d.counter("limiter.redis_errors"), 1);
        assert_eq!(d.counter("limiter.keys_repaired"), 0);
    }
}

#[test]
fn a_repaired_key_counts_the_request_and_is_logged_once() {
    let mut d = driver(false);
    let key = "limiter:{r:2_per_60s:global}:1700000040";
    let error = "WRONGTYPE Operation against a key holding the wrong kind of value";
    d.redis.next_reply = Some(
        format!(
            "*3\r\n:1\r\n${}\r\n{error}\r\n${}\r\n{key}\r\n",
            error.len(),
            key.len()
        )
        .into_bytes(),
    );
    assert_eq!(d.request(&[]), Outcome::Forwarded);
    assert_eq!(
        lines(&mut d),
        [format!(
            "limiter: counter key {key} held a value Redis could not count ({error}); replaced it with a new count"
        )]
    );
    assert_eq!(d.counter("limiter.keys_repaired"), 1);
    assert_eq!(d.counter("limiter.allowed"), 1);
    assert_eq!(d.counter("limiter.redis_errors"), 0);
}

#[test]
fn replies_are_read_as_the_script_writes_them() {
    let decoded = kit::resp::decode(b":7\r\n").unwrap();
    let bytes = b":7\r\n";
    assert_eq!(
        Count::of(&decoded.reply(bytes)),
        Some(Count {
            value: 7,
            repaired: None
        })
    );
    let bytes = b"*3\r\n:1\r\n$3\r\nbad\r\n$1\r\nk\r\n";
    let decoded = kit::resp::decode(bytes).unwrap();
    assert_eq!(
        Count::of(&decoded.reply(bytes)),
        Some(Count {
            value: 1,
            repaired: Some(Repair {
                error: b"bad",
                key: b"k"
            })
        })
    );
    for bytes in [
        &b"-ERR x\r\n"[..],
        b"$-1\r\n",
        b"*1\r\n:1\r\n",
        b"*3\r\n$1\r\nx\r\n$3\r\nbad\r\n$1\r\nk\r\n",
    ] {
        let decoded = kit::resp::decode(bytes).unwrap();
        let reply: Reply<'_> = decoded.reply(bytes);
        assert_eq!(Count::of(&reply), None, "{reply}");
    }
}
