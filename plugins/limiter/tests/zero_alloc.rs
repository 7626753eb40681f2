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
    host.request_headers.add(":authority", b"api.example.com");
    host.request_headers.add("x-api-key", key);
    // The key also as a query parameter under an encoded name, and as the
    // first entry of a forwarded list.
    let mut path = [0u8; 128];
    let head = b"/v1/items?page=2&k%65y=";
    path[..head.len()].copy_from_slice(head);
    let len = head.len() + key.len().min(128 - head.len());
    path[head.len()..len].copy_from_slice(&key[..len - head.len()]);
    host.request_headers.add(":path", &path[..len]);
    host.request_headers.add("x-forwarded-for", key);
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
    filter
        .host_mut()
        .properties
        .set("source.address", Some(b"[2001:DB8:0::7]:5555"));
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

#[test]
fn per_ip_requests_do_not_allocate() {
    // Ports, brackets and other spellings are read to one canonical text.
    run(
        &format!(
            r#"{{"rule_name": "za", "rule_items": [{{"limit_by_per_ip": "from-header-x-forwarded-for", "limit_keys": [
                 {{"key": "10.0.0.0/8", "query_per_second": 5}}, {{"key": "::/0", "query_per_second": 5}}]}}], {WEBDIS}}}"#
        ),
        &[
            b"10.1.2.3:5678",
            b"[2001:DB8::1]:443",
            b" 2001:db8:0:0::1 , 10.0.0.1",
            b"::ffff:10.9.8.7",
        ],
    );
    run(
        &format!(
            r#"{{"rule_name": "za", "rule_items": [{{"limit_by_per_ip": "from-remote-addr", "limit_keys": [
                 {{"key": "::/0", "query_per_second": 5}}]}}], {WEBDIS}}}"#
        ),
        &[b"-"],
    );
}

#[test]
fn per_param_requests_with_encoded_names_do_not_allocate() {
    run(
        &format!(
            r#"{{"rule_name": "za", "rule_items": [{{"limit_by_per_param": "key", "limit_keys": [
                 {{"key": "*", "query_per_second": 5}}]}}], {WEBDIS}}}"#
        ),
        &[b"abc", b"a%2Fb+c", b"%E2%82%AC"],
    );
}

/// The amount of a counting call: the last argument of its webdis path.
fn amount_of(filter: &Filter<Limiter, FakeHost>) -> i64 {
    let call = filter.host().last_call.as_ref().unwrap();
    let path = call.headers.get(":path").unwrap();
    let path = path.strip_suffix(b".raw").unwrap();
    let digits = path.rsplit(|&b| b == b'/').next().unwrap();
    digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0'))
}

/// `concurrent` requests for one key arrive while its call is in flight,
/// then the calls are answered one by one: batches of that size, and with
/// more than the queue holds, requests sent alone.
fn shared_round(
    filter: &mut Filter<Limiter, FakeHost>,
    concurrent: usize,
    streams: &mut Vec<kit::StreamId>,
    calls: &mut Vec<(u32, i64)>,
    total: &mut i64,
) {
    streams.clear();
    calls.clear();
    for i in 0..concurrent {
        let host = filter.host_mut();
        host.next_request();
        host.request_headers.add("x-api-key", b"hot");
        let sent = host.calls_sent;
        let stream = filter.open_stream(2 + i as u32);
        assert_eq!(filter.on_request_headers(stream, true), Action::Pause);
        if filter.host().calls_sent > sent {
            let token = filter.host().last_call.as_ref().unwrap().token;
            calls.push((token, amount_of(filter)));
        }
        streams.push(stream);
    }
    let mut next = 0;
    while let Some(&(token, amount)) = calls.get(next) {
        next += 1;
        *total += amount;
        let host = filter.host_mut();
        host.call_response_headers.clear();
        host.call_response_headers.add(":status", b"200");
        host.call_response_body.clear();
        host.call_response_body.push(b':');
        let mut digits = itoa::Buffer::new();
        host.call_response_body
            .extend_from_slice(digits.format(*total).as_bytes());
        host.call_response_body.extend_from_slice(b"\r\n");
        let len = host.call_response_body.len();
        let sent = host.calls_sent;
        filter.on_http_call_response(token, 1, len, true);
        if filter.host().calls_sent > sent {
            let token = filter.host().last_call.as_ref().unwrap().token;
            calls.push((token, amount_of(filter)));
        }
    }
    for &stream in streams.iter() {
        let _ = filter.on_response_headers(stream, true);
        filter.close_stream(stream);
    }
}

#[test]
fn shared_increments_do_not_allocate() {
    // Batches of 1, 2 and 31, and more requests than a queue holds (sent
    // alone), all within the limit.
    let mut filter: Filter<Limiter, FakeHost> = Filter::new(FakeHost::new());
    let config = format!(
        r#"{{"rule_name": "za", "rule_items": [{{"limit_by_per_header": "x-api-key", "limit_keys": [{{"key": "*", "query_per_day": 100000000}}]}}],
           "show_limit_quota_header": true, {WEBDIS}}}"#
    );
    filter.configure(config.into_bytes()).unwrap();
    let sizes = [1, 2, 32, kit::increments::BATCH + 8];
    let (mut streams, mut calls, mut total) = (Vec::with_capacity(64), Vec::with_capacity(64), 0);
    for &size in &sizes {
        shared_round(&mut filter, size, &mut streams, &mut calls, &mut total);
    }
    let before = filter.host().resumed[0];
    let mut calls_made = 0;
    let allocations = allocations_during(|| {
        for _ in 0..100 {
            for &size in &sizes {
                shared_round(&mut filter, size, &mut streams, &mut calls, &mut total);
                calls_made += calls.len();
            }
        }
    });
    let requests: usize = sizes.iter().sum::<usize>() * 100;
    assert_eq!(
        filter.host().resumed[0] - before,
        requests as u64,
        "all allowed"
    );
    // 1: one call; 2: two; 32: two (1 + 31); 40: the lead, 32 queued, 7 alone.
    assert_eq!(calls_made, 100 * (1 + 2 + 2 + 9));
    assert_eq!(allocations, 0, "allocations in {requests} warm requests");
}

/// The keys of a counting call: the third segment of its webdis path.
fn keys_of(filter: &Filter<Limiter, FakeHost>) -> usize {
    let call = filter.host().last_call.as_ref().unwrap();
    let path = call.headers.get(":path").unwrap();
    let digits = path.split(|&b| b == b'/').nth(3).unwrap();
    digits.iter().fold(0, |n, d| n * 10 + usize::from(d - b'0'))
}

/// Notes the calls an event sent, with their keys. Tokens are given in
/// sequence; when one reply sends two calls, the first is full.
fn note_calls(filter: &Filter<Limiter, FakeHost>, before: u64, calls: &mut Vec<(u32, usize)>) {
    let sent = filter.host().calls_sent - before;
    if sent == 0 {
        return;
    }
    let last = filter.host().last_call.as_ref().unwrap().token;
    let last_keys = keys_of(filter);
    for j in 0..sent {
        let token = last - (sent - 1 - j) as u32;
        let keys = if j + 1 == sent {
            last_keys
        } else {
            kit::increments::KEYS_PER_CALL
        };
        calls.push((token, keys));
    }
}

/// One request for each of `keys` arrives while the first calls are in
/// flight, then the calls are answered one by one, each key's count 1.
fn keys_round(
    filter: &mut Filter<Limiter, FakeHost>,
    keys: &[Vec<u8>],
    streams: &mut Vec<kit::StreamId>,
    calls: &mut Vec<(u32, usize)>,
) {
    streams.clear();
    calls.clear();
    for (i, key) in keys.iter().enumerate() {
        let host = filter.host_mut();
        host.next_request();
        host.request_headers.add("x-api-key", key);
        let before = host.calls_sent;
        let stream = filter.open_stream(2 + i as u32);
        assert_eq!(filter.on_request_headers(stream, true), Action::Pause);
        note_calls(filter, before, calls);
        streams.push(stream);
    }
    let mut next = 0;
    while let Some(&(token, width)) = calls.get(next) {
        next += 1;
        let host = filter.host_mut();
        host.call_response_headers.clear();
        host.call_response_headers.add(":status", b"200");
        host.call_response_body.clear();
        if width > 1 {
            let mut digits = itoa::Buffer::new();
            host.call_response_body.push(b'*');
            host.call_response_body
                .extend_from_slice(digits.format(width).as_bytes());
            host.call_response_body.extend_from_slice(b"\r\n");
        }
        for _ in 0..width {
            host.call_response_body.extend_from_slice(b":1\r\n");
        }
        let len = host.call_response_body.len();
        let before = host.calls_sent;
        filter.on_http_call_response(token, 1, len, true);
        note_calls(filter, before, calls);
    }
    for &stream in streams.iter() {
        let _ = filter.on_response_headers(stream, true);
        filter.close_stream(stream);
    }
}

const WARM_ROUNDS: usize = 50;

#[test]
fn calls_over_several_keys_do_not_allocate() {
    // Rounds of 1, 2 and 31 keys (the first go at once, the rest wait and
    // go together), and more keys than the table holds (sent alone).
    let mut filter: Filter<Limiter, FakeHost> = Filter::new(FakeHost::new());
    let config = format!(
        r#"{{"rule_name": "za", "rule_items": [{{"limit_by_per_header": "x-api-key", "limit_keys": [{{"key": "*", "query_per_day": 100000000}}]}}],
           "show_limit_quota_header": true, {WEBDIS}}}"#
    );
    filter.configure(config.into_bytes()).unwrap();
    let names: Vec<Vec<u8>> = (0..kit::increments::KEYS + 8)
        .map(|i| format!("client-{i:03}").into_bytes())
        .collect();
    let sizes = [1, 2, 31, kit::increments::KEYS + 8];
    let (mut streams, mut calls) = (Vec::with_capacity(64), Vec::with_capacity(64));
    for _ in 0..WARM_ROUNDS {
        for &size in &sizes {
            keys_round(&mut filter, &names[..size], &mut streams, &mut calls);
        }
    }
    let before = filter.host().resumed[0];
    let mut calls_made = 0;
    let mut widest = 0;
    let allocations = allocations_during(|| {
        for _ in 0..100 {
            for &size in &sizes {
                keys_round(&mut filter, &names[..size], &mut streams, &mut calls);
                calls_made += calls.len();
                widest = calls.iter().fold(widest, |w, c| w.max(c.1));
            }
        }
    });
    let requests: usize = sizes.iter().sum::<usize>() * 100;
    assert_eq!(
        filter.host().resumed[0] - before,
        requests as u64,
        "all allowed"
    );
    // Per round of n keys: the first CALLS_IN_FLIGHT go at once, the rest
    // the table holds wait and go together in calls of at most
    // KEYS_PER_CALL at the first reply, and those past the table go alone.
    use kit::increments::{CALLS_IN_FLIGHT, KEYS, KEYS_PER_CALL};
    let calls_for = |n: usize| {
        let first = n.min(CALLS_IN_FLIGHT as usize);
        let held = n.min(KEYS);
        first + (n - held) + (held - first).div_ceil(KEYS_PER_CALL)
    };
    let per_round: usize = sizes.iter().map(|&n| calls_for(n)).sum();
    assert_eq!(calls_made, 100 * per_round);
    assert_eq!(widest, kit::increments::KEYS_PER_CALL);
    assert_eq!(allocations, 0, "allocations in {requests} warm requests");
}

#[test]
fn hashed_per_header_keys_do_not_allocate() {
    // `key_hash`: the value is matched, then named in its key by 32 hex
    // digits of a keyed hash, on the stack; configured keys were hashed at
    // configuration.
    run(
        &format!(
            r#"{{"rule_name": "za", "key_hash": true, "key_hash_secret": "0123456789abcdef-secret",
               "rule_items": [{{"limit_by_per_header": "x-api-key", "limit_keys": [{{"key": "regexp:^[a-z]", "query_per_second": 5}}]}},
                              {{"limit_by_header": "x-api-key", "limit_keys": [{{"key": "Bearer t0k3n", "query_per_second": 5}}]}}], {WEBDIS}}}"#
        ),
        &[b"alice", b"bob/with%slash", b"Bearer t0k3n"],
    );
}
