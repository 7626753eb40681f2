//! Kit and limiter make no heap allocation per request once warm.
//!
//! The kit's counting global allocator counts the allocations made on this
//! thread while a window is open. The driver below reuses the `FakeHost`'s buffers
//! and emulates Redis with an integer, so whatever is counted comes from the
//! kit and the plugin.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use kit::fake::{allocations_during, CountingAllocator, FakeHost};
use kit::{Action, Filter};
use limiter::Limiter;
use std::time::Duration;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn the_counter_counts() {
    assert_eq!(
        allocations_during(|| drop(std::hint::black_box(vec![1u8]))),
        1
    );
}

/// Sends one request through the filter, answering its Redis call with the
/// next count of a single emulated counter per window. Returns the status
/// it was answered with, or 200 when forwarded.
fn one_request(
    filter: &mut Filter<Limiter, FakeHost>,
    context: u32,
    key: &[u8],
    count: &mut i64,
) -> u16 {
    let host = filter.host_mut();
    host.next_request();
    host.request_headers.add(":path", b"/v1/items?page=2");
    host.request_headers.add(":authority", b"api.example.com");
    host.request_headers.add("x-api-key", key);
    let stream = filter.open_stream(context);
    let mut status = 200;
    if filter.on_request_headers(stream, true) == Action::Pause {
        let host = filter.host_mut();
        if host.responses_sent > 0 && host.response.is_some() {
            status = host.response.as_ref().map_or(0, |r| r.status);
        } else {
            let token = host.last_call.as_ref().map_or(0, |c| c.token);
            *count += 1;
            let mut digits = itoa::Buffer::new();
            let digits = digits.format(*count).as_bytes();
            host.call_response_headers.clear();
            host.call_response_headers.add(":status", b"200");
            host.call_response_body.clear();
            host.call_response_body.push(b':');
            host.call_response_body.extend_from_slice(digits);
            host.call_response_body.extend_from_slice(b"\r\n");
            let len = host.call_response_body.len();
            filter.on_http_call_response(token, 1, len, false);
            if let Some(r) = filter.host().response.as_ref() {
                status = r.status;
            }
        }
    }
    if status == 200 {
        let _ = filter.on_response_headers(stream, true);
    }
    filter.close_stream(stream);
    status
}

fn run(config: &str, keys: &[&[u8]]) {
    run_with(config, keys, |_| {});
}

/// [`run`] on a host that `setup` has given its properties first.
fn run_with(config: &str, keys: &[&[u8]], setup: impl FnOnce(&mut FakeHost)) {
    let mut filter: Filter<Limiter, FakeHost> = Filter::new(FakeHost::new());
    setup(filter.host_mut());
    filter.configure(config.as_bytes().to_vec()).unwrap();
    let mut counts = vec![0i64; keys.len()];
    let mut statuses = [0u64; 3];
    let mut window_requests = 0;

    let mut drive = |filter: &mut Filter<Limiter, FakeHost>, i: u32| {
        let k = i as usize % keys.len();
        let status = one_request(filter, i + 2, keys[k], &mut counts[k]);
        statuses[match status {
            200 => 0,
            429 => 1,
            _ => 2,
        }] += 1;
        window_requests += 1;
        // A new one-second window every 50 requests: counters restart.
        if window_requests == 50 {
            window_requests = 0;
            filter.host_mut().advance(Duration::from_secs(1));
            counts.iter_mut().for_each(|c| *c = 0);
        }
    };

    for i in 0..1_000 {
        drive(&mut filter, i);
    }
    let allocations = allocations_during(|| {
        for i in 1_000..11_000 {
            drive(&mut filter, i);
        }
    });
    assert!(
        statuses[0] > 1_000 && statuses[1] > 1_000,
        "both paths exercised: {statuses:?}"
    );
    assert_eq!(statuses[2], 0, "no other answers: {statuses:?}");
    assert_eq!(allocations, 0, "allocations in 10,000 warm requests");
}

const WEBDIS: &str = r#""redis": {"webdis_cluster": "webdis"}"#;

#[test]
fn global_limit_requests_do_not_allocate() {
    run(
        &format!(
            r#"{{"rule_name": "za", "global_threshold": {{"query_per_second": 20}}, "show_limit_quota_header": true, {WEBDIS}}}"#
        ),
        &[b"-"],
    );
}

#[test]
fn per_header_requests_with_rules_do_not_allocate() {
    run(
        &format!(
            r#"{{"rule_name": "za", "rule_items": [{{"limit_by_per_header": "x-api-key", "limit_keys": [{{"key": "*", "query_per_second": 5}}]}}],
               "_rules_": [{{"_match_domain_": ["*.example.com"], "rule_name": "zb"}}], {WEBDIS}}}"#
        ),
        &[b"alice", b"bob/with%slash", b"carol with spaces"],
    );
}

#[test]
fn regexp_keys_do_not_allocate() {
    // The patterns keep their thread lists from configure time; scanning
    // three of them (the first two miss for some keys) allocates nothing.
    run(
        &format!(
            r#"{{"rule_name": "za", "rule_items": [{{"limit_by_per_header": "x-api-key", "limit_keys": [
                 {{"key": "regexp:^(alice|bob)[/a-z%]*$", "query_per_second": 5}},
                 {{"key": "regexp:(\\w+\\s?){{2,}}$", "query_per_second": 5}},
                 {{"key": "regexp:.", "query_per_second": 5}}]}}], {WEBDIS}}}"#
        ),
        &[
            b"alice",
            b"bob/with%slash",
            b"carol with spaces",
            b"dave-\xff",
        ],
    );
}

#[test]
fn route_and_service_rules_do_not_allocate() {
    // Rules that read the route and cluster names, on both hosts' spellings
    // of them: the learnt spelling and the facts reuse their buffers.
    let config = format!(
        r#"{{"rule_name": "za", "rule_items": [{{"limit_by_per_header": "x-api-key", "limit_keys": [{{"key": "*", "query_per_second": 5}}]}}],
           "_rules_": [{{"_match_route_": ["checkout"], "rule_name": "zb"}},
                       {{"_match_service_": ["other.dns:8080"], "rule_name": "zc"}},
                       {{"_match_route_prefix_": ["api-"], "_match_service_": ["items.dns"], "rule_name": "zd"}}], {WEBDIS}}}"#
    );
    for prefix in ["xds.", ""] {
        run_with(&config, &[b"alice", b"bob"], |host| {
            host.properties
                .add(&format!("{prefix}route_name"), b"api-items-v1");
            host.properties.add(
                &format!("{prefix}cluster_name"),
                b"outbound|8080||items.dns",
            );
        });
    }
}
