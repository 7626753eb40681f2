//! What webdis (Debian 0.1.9) really does with the requests the limiter's
//! webdis transport sends. These are facts the transport relies on; they are
//! checked against real Redis and webdis processes so a different webdis
//! build that behaves otherwise fails here first. Summary in stack/README.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use stack::http::percent_encode;
use stack::{get, get_with_timeout, Redis, Response, Webdis};

fn start() -> (Redis, Webdis) {
    let redis = Redis::start();
    let webdis = Webdis::start(redis.port());
    (redis, webdis)
}

/// GET `/<segments...>.raw`, each segment percent-encoded.
fn raw(webdis: &Webdis, segments: &[&[u8]]) -> Response {
    let path: Vec<String> = segments.iter().map(|s| percent_encode(s)).collect();
    get(webdis.port(), &format!("/{}.raw", path.join("/")), &[]).unwrap()
}

fn body_of(r: &Response) -> (u16, &[u8]) {
    (r.status, r.body.as_slice())
}

const AWKWARD_KEYS: &[&[u8]] = &[
    b"a/b",
    b"100%",
    b"with space",
    b"cr\rlf\n",
    b"plus+x",
    b"dot.x",
    b"trailing.",
    b"q?x#y&z=1",
    "utf-8 é€ 😀".as_bytes(),
    b"not-utf8 \xff\xfe",
    b"{rule:a/b}:1700000040",
];

#[test]
fn percent_encoded_keys_round_trip_byte_for_byte() {
    let (redis, webdis) = start();
    for (i, key) in AWKWARD_KEYS.iter().enumerate() {
        let value = format!("v{i}");
        let r = raw(&webdis, &[b"SET", key, value.as_bytes()]);
        assert_eq!(body_of(&r), (200, &b"+OK\r\n"[..]), "SET {key:?}");
        let r = raw(&webdis, &[b"GET", key]);
        let expected = format!("${}\r\n{value}\r\n", value.len());
        assert_eq!(body_of(&r), (200, expected.as_bytes()), "GET {key:?}");
    }
    // Redis holds exactly the raw bytes: nothing double-encoded or decoded away.
    let mut keys = redis.keys();
    keys.sort();
    let mut expected: Vec<Vec<u8>> = AWKWARD_KEYS.iter().map(|k| k.to_vec()).collect();
    expected.sort();
    assert_eq!(keys, expected);
}

#[test]
fn an_unencoded_plus_becomes_a_space() {
    // The pitfall behind "encode everything": webdis form-decodes `+`.
    let (redis, webdis) = start();
    let r = get(webdis.port(), "/SET/plus+raw/v.raw", &[]).unwrap();
    assert_eq!(body_of(&r), (200, &b"+OK\r\n"[..]));
    assert_eq!(redis.keys(), vec![b"plus raw".to_vec()]);
}

#[test]
fn raw_replies_are_resp_verbatim() {
    let (_redis, webdis) = start();
    assert_eq!(
        body_of(&raw(&webdis, &[b"INCR", b"n"])),
        (200, &b":1\r\n"[..])
    );
    assert_eq!(
        body_of(&raw(&webdis, &[b"INCR", b"n"])),
        (200, &b":2\r\n"[..])
    );
    assert_eq!(
        body_of(&raw(&webdis, &[b"GET", b"missing"])),
        (200, &b"$-1\r\n"[..])
    );
    let r = raw(&webdis, &[b"PING"]);
    assert_eq!(body_of(&r), (200, &b"+PONG\r\n"[..]));
    assert_eq!(r.header("content-type"), Some("binary/octet-stream"));
    // A Redis error reply is still HTTP 200; only the body tells.
    let r = raw(&webdis, &[b"NO-SUCH-COMMAND"]);
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("-ERR unknown command"), "{}", r.text());
}

#[test]
fn evalsha_of_an_unknown_script_says_noscript() {
    let (_redis, webdis) = start();
    let sha = b"0123456789abcdef0123456789abcdef01234567";
    let r = raw(&webdis, &[b"EVALSHA", sha, b"1", b"k"]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        "-NOSCRIPT No matching script. Please use EVAL.\r\n"
    );
}

#[test]
fn eval_and_script_load_work_with_a_percent_encoded_script() {
    let (redis, webdis) = start();
    let script = b"local n = redis.call('INCR', KEYS[1]); \
                   if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end; \
                   return {n, redis.call('TTL', KEYS[1])}";
    let key = b"{e2e:a/b 100%}:60";
    // Integers inside an array come back as bulk strings (webdis re-encodes
    // replies); a top-level integer stays `:n`.
    let r = raw(&webdis, &[b"EVAL", script, b"1", key, b"60"]);
    assert_eq!(body_of(&r), (200, &b"*2\r\n$1\r\n1\r\n$2\r\n60\r\n"[..]));

    let r = raw(&webdis, &[b"SCRIPT", b"LOAD", script]);
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(
        text.starts_with("$40\r\n") && text.ends_with("\r\n"),
        "{text:?}"
    );
    let sha = text[5..45].to_owned();
    let r = raw(&webdis, &[b"EVALSHA", sha.as_bytes(), b"1", key, b"60"]);
    assert_eq!(body_of(&r), (200, &b"*2\r\n$1\r\n2\r\n$2\r\n60\r\n"[..]));
    assert_eq!(redis.keys(), vec![key.to_vec()]);
}

#[test]
fn array_replies_lose_nil_nested_and_error_elements() {
    // webdis keeps the element count but drops elements it cannot encode, so
    // the RESP is malformed. Scripts called through webdis must return a
    // single integer or a flat array of non-nil numbers/strings.
    let (_redis, webdis) = start();
    let cases: &[(&[u8], &[u8])] = &[
        (b"return 42", b":42\r\n"),
        (b"return -5", b":-5\r\n"),
        (b"return nil", b"$-1\r\n"),
        (b"return redis.error_reply('boom')", b"-ERR boom\r\n"),
        (b"return redis.status_reply('FINE')", b"+FINE\r\n"),
        (b"return {1, 'x'}", b"*2\r\n$1\r\n1\r\n$1\r\nx\r\n"),
        (b"return {1, false, 3}", b"*3\r\n$1\r\n1\r\n$1\r\n3\r\n"),
        (b"return {1, {2, 'x'}}", b"*2\r\n$1\r\n1\r\n"),
        (b"return {1, redis.error_reply('e')}", b"*2\r\n$1\r\n1\r\n"),
    ];
    for (script, expected) in cases {
        let r = raw(&webdis, &[b"EVAL", script, b"0"]);
        assert_eq!(
            body_of(&r),
            (200, *expected),
            "EVAL {:?} answered {:?}",
            String::from_utf8_lossy(script),
            r.text()
        );
    }
    let r = raw(&webdis, &[b"MGET", b"a", b"b"]);
    assert_eq!(body_of(&r), (200, &b"*2\r\n"[..]));
}

#[test]
fn redis_down_gives_an_immediate_503_with_an_empty_body_and_recovery_is_automatic() {
    let (mut redis, webdis) = start();
    assert_eq!(raw(&webdis, &[b"INCR", b"n"]).status, 200);
    redis.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let r = raw(&webdis, &[b"INCR", b"n"]);
        assert_eq!(body_of(&r), (503, &b""[..]));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(5);
    let r = loop {
        let r = raw(&webdis, &[b"INCR", b"n"]);
        if r.status == 200 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // A fresh (empty) Redis: the counter starts over.
    assert_eq!(body_of(&r), (200, &b":1\r\n"[..]));
}

#[test]
fn a_hung_redis_hangs_webdis_requests() {
    // webdis has no command timeout: with Redis frozen the HTTP request
    // waits. Only the caller's timeout (the plugin's `redis.timeout`) helps.
    let (mut redis, webdis) = start();
    redis.freeze();
    let err =
        get_with_timeout(webdis.port(), "/INCR/n.raw", &[], Duration::from_secs(2)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err:?}");
    redis.thaw();
    // The queued INCR runs once Redis resumes.
    let r = get(webdis.port(), "/GET/n.raw", &[]).unwrap();
    assert_eq!(body_of(&r), (200, &b"$1\r\n1\r\n"[..]));
}
