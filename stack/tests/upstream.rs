//! The scripted upstream, the latency relay and the HTTP client against
//! each other, and with a filterless Envoy between them: what a plugin test relies on (bodies
//! forwarded intact, framing visible, server-sent events arriving chunk by
//! chunk, nothing cut by a route timeout) is checked here without any plugin,
//! so a failure here is a harness (or Envoy) fact, not a plugin bug.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use stack::{
    request, request_with_timeout, Body, Envoy, EnvoyConfig, Framing, OpenAiStream, Relay, Reply,
    Response, Upstream, Usage,
};

const CHAT: &str = "/v1/chat/completions";
const JSON: (&str, &str) = ("content-type", "application/json");

fn chunk_data(r: &Response) -> Vec<Vec<u8>> {
    r.chunks.iter().map(|c| c.data.clone()).collect()
}

fn routed_envoy(upstream: &Upstream) -> EnvoyConfig {
    EnvoyConfig::new()
        .cluster("llm", upstream.port())
        .route_to("llm")
}

#[test]
fn upstream_records_every_request_and_answers_from_its_script() {
    let upstream = Upstream::start_with(Reply::openai(Usage::new(10, 20)));
    upstream.push(Reply::anthropic(7, 5));
    let port = upstream.port();

    let body = br#"{"model":"m","stream":false}"#;
    let first = request(port, "POST", CHAT, &[JSON], Body::Fixed(body)).unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(first.body, Reply::anthropic(7, 5).body_bytes());
    assert_eq!(
        first.header("content-length"),
        Some(first.body.len().to_string().as_str())
    );

    // The queue is empty now: the default answers, here to a chunked body.
    let parts: &[&[u8]] = &[b"{\"model\":", b"\"m\"}"];
    let second = request(
        port,
        "POST",
        CHAT,
        &[JSON],
        Body::Chunked {
            parts,
            pause: Duration::from_millis(10),
        },
    )
    .unwrap();
    assert_eq!(second.body, Reply::openai(Usage::new(10, 20)).body_bytes());

    let third = request(
        port,
        "GET",
        "/v1/models?x=1",
        &[("x-api-key", "k")],
        Body::None,
    )
    .unwrap();
    assert_eq!(third.status, 200);

    let seen = upstream.requests();
    assert_eq!(seen.len(), 3, "{seen:#?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("POST", CHAT)
    );
    assert_eq!(seen[0].body, body);
    assert_eq!(seen[0].framing, Framing::ContentLength(body.len()));
    assert_eq!(seen[0].header("Content-Type"), Some("application/json"));
    assert_eq!(seen[0].json()["model"], "m");
    assert_eq!(seen[1].body, b"{\"model\":\"m\"}");
    assert_eq!(seen[1].framing, Framing::Chunked { chunks: 2 });
    assert_eq!(
        (seen[2].method.as_str(), seen[2].path.as_str()),
        ("GET", "/v1/models?x=1")
    );
    assert_eq!(seen[2].framing, Framing::None);
    assert!(seen[2].body.is_empty());
    assert_eq!(seen[2].header("x-api-key"), Some("k"));
    assert_eq!(upstream.errors(), Vec::<String>::new());
}

#[test]
fn upstream_streams_each_part_as_its_own_chunk() {
    let stream = OpenAiStream::new(Usage::new(12, 30)).usage_split(5);
    let upstream = Upstream::start_with(Reply::openai_stream(&stream));
    let r = request(upstream.port(), "POST", CHAT, &[JSON], Body::Fixed(b"{}")).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.body, stream.bytes());
    assert_eq!(chunk_data(&r), stream.parts());
    // Written `pause` apart, so they arrive spread out, not in one piece.
    let spread = r.chunks.last().unwrap().at - r.chunks[0].at;
    let written_over = stream.pause * (stream.parts().len() as u32 - 1);
    assert!(
        spread >= written_over / 2,
        "chunks arrived within {spread:?}, written over {written_over:?}"
    );
}

#[test]
fn envoy_forwards_bodies_and_framing_to_the_upstream() {
    let upstream = Upstream::start();
    let envoy = Envoy::start(routed_envoy(&upstream));
    let port = envoy.port();

    let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let r = request(port, "POST", CHAT, &[JSON], Body::Fixed(body)).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, Reply::openai(Usage::new(10, 20)).body_bytes());

    let parts: &[&[u8]] = &[b"{\"a\":", b"[1,", b"2]}"];
    let chunked = Body::Chunked {
        parts,
        pause: Duration::from_millis(20),
    };
    assert_eq!(
        request(port, "POST", CHAT, &[JSON], chunked)
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        request(port, "GET", "/v1/models", &[], Body::None)
            .unwrap()
            .status,
        200
    );

    let seen = upstream.requests();
    assert_eq!(seen.len(), 3, "{seen:#?}");
    assert_eq!(seen[0].body, body);
    assert_eq!(seen[0].framing, Framing::ContentLength(body.len()));
    assert_eq!(seen[1].body, b"{\"a\":[1,2]}");
    assert!(
        matches!(seen[1].framing, Framing::Chunked { .. }),
        "{:?}",
        seen[1].framing
    );
    assert_eq!(seen[2].framing, Framing::None);
    assert_eq!(upstream.errors(), Vec::<String>::new());
}

#[test]
fn envoy_forwards_an_sse_stream_chunk_by_chunk() {
    // The premise of every streamed token-quota test: a usage object split
    // across two upstream writes reaches the client (and so a filter) as two
    // chunks, and the bytes arrive intact.
    let stream = OpenAiStream::new(Usage::new(40, 60)).usage_split(20);
    let upstream = Upstream::start_with(Reply::openai_stream(&stream));
    let envoy = Envoy::start(routed_envoy(&upstream));
    let r = request(envoy.port(), "POST", CHAT, &[JSON], Body::Fixed(b"{}")).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert_eq!(r.text(), String::from_utf8(stream.bytes()).unwrap());
    assert_eq!(chunk_data(&r), stream.parts());
}

#[test]
fn a_slow_stream_outlives_the_idle_timeout_but_not_a_route_timeout() {
    // 10 writes 150 ms apart: about 1.6 s in all, never idle for 1 s.
    let stream = OpenAiStream::new(Usage::new(1, 2)).pause(Duration::from_millis(150));
    let stream = OpenAiStream {
        words: (0..5).map(|i| format!("w{i}")).collect(),
        ..stream
    };
    assert_eq!(stream.parts().len(), 9);
    let upstream = Upstream::start_with(Reply::openai_stream(&stream));
    let send = |envoy: &Envoy| {
        request_with_timeout(
            envoy.port(),
            "POST",
            CHAT,
            &[JSON],
            Body::Fixed(b"{}"),
            Duration::from_secs(10),
        )
    };

    let idle_only =
        Envoy::start(routed_envoy(&upstream).route_idle_timeout(Duration::from_secs(1)));
    let r = send(&idle_only).unwrap();
    assert_eq!(r.body, stream.bytes());
    assert!(r.elapsed >= Duration::from_millis(1300), "{:?}", r.elapsed);

    // The same stream under a 700 ms route timeout: Envoy resets it after
    // the headers went out, so the client sees the connection close mid-body.
    let total = Envoy::start(routed_envoy(&upstream).route_timeout(Duration::from_millis(700)));
    let started = Instant::now();
    let cut = send(&total);
    assert!(cut.is_err(), "the stream was not cut: {cut:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn dropping_the_upstream_closes_its_port_and_its_idle_connections() {
    let upstream = Upstream::start();
    let port = upstream.port();
    // A keep-alive connection left idle after one answer, as Envoy's pool
    // leaves them.
    let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.ends_with(b"}}") {
        let n = idle.read(&mut buf).unwrap();
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&buf[..n]);
    }
    assert_eq!(upstream.request_count(), 1);

    let started = Instant::now();
    drop(upstream);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "drop took {:?}",
        started.elapsed()
    );
    assert_eq!(
        idle.read(&mut buf).unwrap(),
        0,
        "the idle connection is still open"
    );
    assert!(
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).is_err(),
        "port {port} still accepts after drop"
    );
}

#[test]
fn a_relay_delays_both_directions_and_keeps_the_bytes() {
    let stream = OpenAiStream::new(Usage::new(1, 2)).pause(Duration::from_millis(5));
    let upstream = Upstream::start_with(Reply::openai_stream(&stream));
    let delay = Duration::from_millis(150);
    let relay = Relay::start(upstream.port(), delay);
    let body = b"{\"model\":\"m\"}";
    let r = request(relay.port(), "POST", CHAT, &[JSON], Body::Fixed(body)).unwrap();
    assert_eq!(r.body, stream.bytes());
    assert_eq!(upstream.requests()[0].body, body);
    // The request waits `delay` on the way in, the answer on the way out.
    assert!(r.elapsed >= 2 * delay, "{:?}", r.elapsed);
    assert!(
        r.elapsed < 2 * delay + Duration::from_secs(1),
        "{:?}",
        r.elapsed
    );
    // Pure latency: the answer's parts keep their spacing.
    let spread = r.chunks.last().unwrap().at - r.chunks[0].at;
    assert!(spread < delay, "chunks spread over {spread:?}");
    assert_eq!(relay.connections(), 1);
    assert_eq!(relay.errors(), Vec::<String>::new());
}

#[test]
fn a_relay_forwards_the_end_of_the_stream_and_stops_on_drop() {
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let relay = Relay::start(
        target.local_addr().unwrap().port(),
        Duration::from_millis(50),
    );
    let port = relay.port();
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let (mut server_side, _) = target.accept().unwrap();
    server_side.write_all(b"bye").unwrap();
    drop(server_side);
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"bye");

    // A second connection, left open, is closed by the drop.
    let mut open = TcpStream::connect(("127.0.0.1", port)).unwrap();
    open.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _held = target.accept().unwrap();
    let started = Instant::now();
    drop(relay);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "drop took {:?}",
        started.elapsed()
    );
    let mut buf = [0u8; 16];
    assert_eq!(open.read(&mut buf).unwrap(), 0);
    assert!(
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).is_err(),
        "port {port} still accepts after drop"
    );
}
