//! The counter keys the limiter writes for request values, over the kit's
//! `FakeHost`: the peer address as Envoy hands it over (`ip:port`,
//! `[ipv6]:port`) and the spellings that must not make new counters.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use common::{Driver, Outcome};

fn keys(d: &Driver) -> Vec<String> {
    d.keys()
}

#[test]
fn the_peer_address_is_read_without_its_port_in_one_spelling() {
    // Envoy's `source.address` is `ip:port`, `[ipv6]:port` for IPv6; a
    // dual-stack listener reports IPv4 peers as `[::ffff:a.b.c.d]:port`.
    let mut d = Driver::new(
        r#"{"rule_name": "p", "rule_items": [{"limit_by_per_ip": "from-remote-addr", "limit_keys": [
            {"key": "10.0.0.0/8", "query_per_minute": 2}, {"key": "::/0", "query_per_minute": 2}]}],
            "redis": {"webdis_cluster": "webdis"}}"#,
    );
    d.host().now_nanos = 1_700_000_040_000_000_000;
    let mut outcomes = Vec::new();
    for peer in [
        "10.1.2.3:40000",
        "[::ffff:10.1.2.3]:40001",
        "10.1.2.3:40002",
        "[2001:DB8::1]:5555",
        "[2001:db8:0:0::1]:5556",
        "[2001:db8::1]:5557",
        "[2001:db8::2]:5557",
    ] {
        d.host()
            .properties
            .set("source.address", Some(peer.as_bytes()));
        outcomes.push(d.request(&[]));
    }
    use Outcome::{Answered, Forwarded};
    assert_eq!(
        outcomes,
        [
            Forwarded,
            Forwarded,
            Answered(429),
            Forwarded,
            Forwarded,
            Answered(429),
            Forwarded
        ]
    );
    assert_eq!(
        keys(&d),
        [
            "limiter:{p:2_per_60s:per_ip:from-remote-addr:10.1.2.3}:1700000040",
            "limiter:{p:2_per_60s:per_ip:from-remote-addr:2001:db8::1}:1700000040",
            "limiter:{p:2_per_60s:per_ip:from-remote-addr:2001:db8::2}:1700000040",
        ]
    );
}

#[test]
fn a_peer_that_is_no_address_is_not_limited() {
    let mut d = Driver::new(
        r#"{"rule_name": "p", "rule_items": [{"limit_by_per_ip": "from-remote-addr", "limit_keys": [
            {"key": "0.0.0.0/0", "query_per_minute": 1}]}], "redis": {"webdis_cluster": "webdis"}}"#,
    );
    for peer in ["unix:/tmp/socket", "[2001:db8::1", ""] {
        d.host()
            .properties
            .set("source.address", Some(peer.as_bytes()));
        assert_eq!(d.request(&[]), Outcome::Forwarded, "{peer}");
        assert_eq!(d.request(&[]), Outcome::Forwarded, "{peer}");
    }
    assert!(d.redis.store.is_empty());
}
