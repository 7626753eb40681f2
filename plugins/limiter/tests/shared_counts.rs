//! Concurrent requests share Redis calls (one key's requests as one
//! increment, several keys in one call) and still get the counts and
//! decisions of requests sent alone, in arrival order: random
//! interleavings of arrivals, keys, replies, failures and clients going
//! away, over the kit's `FakeHost` with a Redis stand-in that applies each
//! call, over all its keys, when it answers it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use kit::fake::{FakeHost, Rng, SentCall};
use kit::fake_redis::FakeRedis;
use kit::{Action, Filter, StreamId};
use limiter::Limiter;
use std::collections::HashMap;

/// One request of a run.
#[derive(Debug, Clone)]
struct Request {
    key: usize,
    stream: StreamId,
    /// Rank among the requests of its key, in arrival order, from 1.
    rank: u64,
    /// The client went away before an answer.
    ended: bool,
    /// Status answered, 200 when forwarded, with the count it was shown.
    outcome: Option<(u16, Option<u64>)>,
}

/// How a call in flight ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Answered,
    /// No answer (connection reset); Redis never saw the command.
    Failed,
    /// webdis timed out (504) before Redis ran the command.
    TimedOut,
    /// NOSCRIPT: the kit re-sends it as EVAL under the same token's owner.
    NoScript,
}

struct Run {
    filter: Filter<Limiter, FakeHost>,
    redis: FakeRedis,
    in_flight: Vec<SentCall>,
    requests: Vec<Request>,
    by_context: HashMap<u32, usize>,
    ranks: Vec<u64>,
    limit: u64,
    calls: u64,
    keys: Vec<String>,
    /// Calls answered that carried several keys.
    multi_key_calls: u64,
    /// The most keys one call carried.
    widest_call: usize,
    /// Calls sent for a key that had a call in flight already (requests
    /// sent alone for want of room).
    overlapping: u64,
}

/// Key names: none is a part of another as `:{name}}`.
fn key_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("key-{i:02}")).collect()
}

impl Run {
    fn new(limit: u64, deny: bool) -> Run {
        Run::with_keys(limit, deny, 3)
    }

    fn with_keys(limit: u64, deny: bool, keys: usize) -> Run {
        let config = format!(
            r#"{{"rule_name": "r", "rule_items": [{{"limit_by_per_header": "x-api-key",
                "limit_keys": [{{"key": "*", "query_per_minute": {limit}}}]}}],
                "show_limit_quota_header": true, "failure_mode_deny": {deny},
                "redis": {{"webdis_cluster": "webdis", "timeout": 250}}}}"#
        );
        let mut filter = Filter::new(FakeHost::new());
        filter.configure(config.into_bytes()).unwrap();
        filter.host_mut().answers = Some(Vec::new());
        filter.host_mut().calls_log = Some(Vec::new());
        Run {
            filter,
            redis: FakeRedis::new(),
            in_flight: Vec::new(),
            requests: Vec::new(),
            by_context: HashMap::new(),
            ranks: vec![0; keys],
            limit,
            calls: 0,
            keys: key_names(keys),
            multi_key_calls: 0,
            widest_call: 0,
            overlapping: 0,
        }
    }

    /// Records the calls sent by the last event: one at most on arrival,
    /// and on a reply as many as the waiting keys need.
    fn collect_call(&mut self) {
        let sent = std::mem::take(self.filter.host_mut().calls_log.as_mut().unwrap());
        let host = self.filter.host();
        assert_eq!(sent.len() as u64, host.calls_sent - self.calls);
        self.calls = host.calls_sent;
        let keys_of = |call: &SentCall| {
            let args = call.webdis_args().unwrap();
            let n: usize = std::str::from_utf8(&args[2]).unwrap().parse().unwrap();
            args[3..3 + n].to_vec()
        };
        for call in sent {
            let keys = keys_of(&call);
            if self
                .in_flight
                .iter()
                .any(|other| keys_of(other).iter().any(|k| keys.contains(k)))
            {
                self.overlapping += 1;
            }
            self.in_flight.push(call);
        }
    }

    /// Reads the answers the last event gave, by context.
    fn collect_answers(&mut self) {
        let answers = std::mem::take(self.filter.host_mut().answers.as_mut().unwrap());
        for (context, status) in answers {
            let index = self.by_context[&context];
            let request = &mut self.requests[index];
            assert!(request.outcome.is_none(), "{request:?} answered twice");
            assert!(!request.ended, "{request:?} answered after it ended");
            let shown = if status == 0 {
                let stream = request.stream;
                let host = self.filter.host_mut();
                host.response_headers.clear();
                host.effective_context = context;
                let _ = self.filter.on_response_headers(stream, true);
                let remaining = self
                    .filter
                    .host()
                    .response_headers
                    .get_str("x-ratelimit-remaining")
                    .unwrap()
                    .parse::<u64>()
                    .unwrap();
                Some(self.limit - remaining)
            } else {
                None
            };
            let request = &mut self.requests[index];
            request.outcome = Some((if status == 0 { 200 } else { status }, shown));
            self.filter.close_stream(request.stream);
        }
    }

    fn arrive(&mut self, key: usize) {
        let context = 100 + self.requests.len() as u32;
        let host = self.filter.host_mut();
        host.next_request();
        host.request_headers
            .add("x-api-key", self.keys[key].as_bytes());
        host.effective_context = context;
        let stream = self.filter.open_stream(context);
        self.ranks[key] += 1;
        self.by_context.insert(context, self.requests.len());
        self.requests.push(Request {
            key,
            stream,
            rank: self.ranks[key],
            ended: false,
            outcome: None,
        });
        let action = self.filter.on_request_headers(stream, true);
        self.collect_call();
        if action == Action::Continue {
            // Forwarded at once: only a failure can do that here.
            self.filter
                .host_mut()
                .answers
                .as_mut()
                .unwrap()
                .push((context, 0));
        }
        self.collect_answers();
    }

    fn settle(&mut self, which: usize, fate: Fate) {
        let call = self.in_flight.remove(which);
        let args = call.webdis_args().unwrap();
        let now = self.filter.host().now_nanos;
        match fate {
            Fate::Failed => {
                let _ = self.filter.fail_call(&call);
            }
            Fate::TimedOut => {
                let _ = self
                    .filter
                    .answer_http(&call, 504, b"upstream request timeout");
            }
            Fate::Answered | Fate::NoScript => {
                // KEYS, then a ttl and an amount per key; one key answers
                // its count, several an array of counts.
                let keys: usize = std::str::from_utf8(&args[2]).unwrap().parse().unwrap();
                assert!((1..=kit::increments::KEYS_PER_CALL).contains(&keys));
                assert_eq!(args.len(), 3 + 3 * keys, "{args:?}");
                if keys > 1 {
                    self.multi_key_calls += 1;
                }
                self.widest_call = self.widest_call.max(keys);
                if fate == Fate::NoScript && args[0] == b"EVALSHA" {
                    // This call only: other calls in flight still find the
                    // script loaded.
                    self.redis.next_reply =
                        Some(b"-NOSCRIPT No matching script. Please use EVAL.\r\n".to_vec());
                }
                let reply = self.redis.answer(&call, now).unwrap();
                assert!(self.redis.unknown.is_empty(), "{:?}", self.redis.unknown);
                let _ = self.filter.answer_redis(&call, &reply);
            }
        }
        self.collect_call();
        self.collect_answers();
    }

    fn end(&mut self, index: usize) {
        let request = &mut self.requests[index];
        if request.outcome.is_some() || request.ended {
            return;
        }
        request.ended = true;
        self.filter.close_stream(request.stream);
    }

    /// Answers every call still in flight.
    fn drain(&mut self) {
        while !self.in_flight.is_empty() {
            self.settle(0, Fate::Answered);
        }
    }
}

/// Random interleavings, every call answered: each request's decision is
/// that of requests sent alone in arrival order (allowed while its rank
/// within its key is within the limit), an allowed request is shown its
/// rank as its count, every request still there is answered, and Redis
/// holds one increment per request it counted, ended ones included.
///
/// No key gets more requests than a queue holds and there are fewer keys
/// than the table holds, so nothing is sent alone and overtakes: the
/// counts are exactly those of sending alone in arrival order.
fn interleavings_count_as_if_each_request_went_alone(
    seed: u64,
    keys: usize,
    arrivals: usize,
    calls_per_request: f64,
) {
    let mut rng = Rng::new(seed);
    let (mut requests, mut calls, mut multi, mut widest) = (0, 0, 0, 0);
    for round in 0..300 {
        let limit = 1 + rng.below(12) as u64;
        let mut run = Run::with_keys(limit, round % 2 == 0, keys);
        let arrivals = 1 + rng.below(arrivals);
        let mut arrived = 0;
        while arrived < arrivals || !run.in_flight.is_empty() {
            match rng.below(10) {
                0..=4 if arrived < arrivals => {
                    let key = rng.below(keys);
                    if run.ranks[key] < kit::increments::BATCH as u64 {
                        run.arrive(key);
                    }
                    arrived += 1;
                }
                5 if !run.requests.is_empty() => {
                    let index = rng.below(run.requests.len());
                    run.end(index);
                }
                _ if !run.in_flight.is_empty() => {
                    let which = rng.below(run.in_flight.len());
                    let fate = if rng.below(8) == 0 {
                        Fate::NoScript
                    } else {
                        Fate::Answered
                    };
                    run.settle(which, fate);
                }
                _ => {}
            }
        }
        run.drain();
        assert_eq!(
            run.overlapping, 0,
            "round {round}: one call in flight per key"
        );
        for request in &run.requests {
            if request.ended {
                continue;
            }
            let (status, shown) = request
                .outcome
                .unwrap_or_else(|| panic!("round {round}: {request:?} was never answered"));
            if request.rank <= limit {
                assert_eq!(
                    (status, shown),
                    (200, Some(request.rank)),
                    "round {round}: {request:?}"
                );
            } else {
                assert_eq!(status, 429, "round {round}: {request:?}");
            }
        }
        // Every request Redis counted is in a key's total: those allowed,
        // those refused after Redis counted them, and ended ones; only
        // refusals from the over-limit cache are missing, and they all
        // come after the limit was passed.
        for (key, name) in run.keys.iter().enumerate() {
            let tag = format!(":{name}}}");
            let counted: i64 = run
                .redis
                .store
                .integers()
                .filter(|(k, _)| String::from_utf8_lossy(k).contains(&tag))
                .map(|(_, v)| v)
                .sum();
            let arrivals = run.ranks[key] as i64;
            assert!(counted <= arrivals, "round {round}: key {name}");
            assert!(
                counted >= arrivals.min(limit as i64 + 1),
                "round {round}: key {name}: {counted} counted of {arrivals}"
            );
        }
        requests += run.requests.len() as u64;
        calls += run.calls;
        multi += run.multi_key_calls;
        widest = widest.max(run.widest_call);
    }
    assert!(
        (calls as f64) < requests as f64 * calls_per_request,
        "requests shared calls: {calls} calls for {requests} requests"
    );
    if keys > 2 {
        assert!(multi > 0, "no call carried several keys");
    }
    if keys > 3 {
        assert!(widest > 2, "calls carried at most {widest} keys");
    }
}

#[test]
fn random_interleavings_count_as_if_each_request_went_alone() {
    interleavings_count_as_if_each_request_went_alone(13, 3, 60, 2.0 / 3.0);
}

#[test]
fn random_interleavings_of_many_keys_count_as_if_each_request_went_alone() {
    // Calls are answered as often as requests arrive, so few wait
    // together; every call counts, NOSCRIPT retries included.
    interleavings_count_as_if_each_request_went_alone(17, 24, 150, 0.75);
}

/// Calls that fail, time out or meet NOSCRIPT: every request of a failed
/// call follows the failure mode (503 with `failure_mode_deny`), the
/// others count as if the failed ones had never been sent, and a NOSCRIPT
/// retry serves the whole call.
fn failed_calls_fail_only_their_requests(seed: u64, keys: usize, arrivals: usize) {
    let mut rng = Rng::new(seed);
    let mut multi = 0;
    for round in 0..300 {
        let limit = 1 + rng.below(12) as u64;
        let mut run = Run::with_keys(limit, true, keys);
        let arrivals = 1 + rng.below(arrivals);
        let mut arrived = 0;
        while arrived < arrivals || !run.in_flight.is_empty() {
            if arrived < arrivals && rng.below(2) == 0 {
                let key = rng.below(keys);
                if run.ranks[key] < kit::increments::BATCH as u64 {
                    run.arrive(key);
                }
                arrived += 1;
            } else if !run.in_flight.is_empty() {
                let which = rng.below(run.in_flight.len());
                let fate = match rng.below(6) {
                    0 => Fate::Failed,
                    1 => Fate::TimedOut,
                    2 => Fate::NoScript,
                    _ => Fate::Answered,
                };
                run.settle(which, fate);
            }
        }
        assert_eq!(
            run.overlapping, 0,
            "round {round}: one call in flight per key"
        );
        // Rank among the requests Redis counted, in arrival order.
        let mut applied = vec![0u64; keys];
        for request in &run.requests {
            let (status, shown) = request
                .outcome
                .unwrap_or_else(|| panic!("round {round}: {request:?} was never answered"));
            if status == 503 {
                continue;
            }
            applied[request.key] += 1;
            let rank = applied[request.key];
            if rank <= limit {
                assert_eq!(
                    (status, shown),
                    (200, Some(rank)),
                    "round {round}: {request:?}"
                );
            } else {
                assert_eq!(status, 429, "round {round}: {request:?}");
            }
        }
        multi += run.multi_key_calls;
    }
    if keys > 2 {
        assert!(multi > 0, "no call carried several keys");
    }
}

#[test]
fn failed_calls_fail_every_request_in_them_and_only_those() {
    failed_calls_fail_only_their_requests(7, 3, 60);
}

#[test]
fn failed_calls_of_many_keys_fail_every_request_in_them_and_only_those() {
    failed_calls_fail_only_their_requests(11, 24, 150);
}

/// More keys than the table holds and more requests per key than a queue
/// holds: some increments go alone and may reach Redis before a call sent
/// earlier, so a request's count is its place in the order Redis applied
/// the increments, not in arrival order. Decisions stay exact: per key,
/// exactly `min(limit, requests)` are allowed, shown distinct counts
/// within the limit.
#[test]
fn full_tables_keep_decisions_exact() {
    let mut rng = Rng::new(23);
    let mut alone_seen = false;
    for round in 0..60 {
        // Limits high enough that queues fill before the over-limit cache
        // answers, and low ones.
        let limit = 1 + rng.below(300) as u64;
        let keys = kit::increments::KEYS + 16;
        let mut run = Run::with_keys(limit, false, keys);
        let arrivals = 200 + rng.below(400);
        let mut arrived = 0;
        while arrived < arrivals || !run.in_flight.is_empty() {
            // Many arrivals per reply, so queues and the table overflow
            // with one shared call in flight.
            if arrived < arrivals && rng.below(40) != 0 {
                // Skewed: the first keys get most requests.
                let spread = 1 + rng.below(keys);
                let key = rng.below(spread);
                run.arrive(key);
                arrived += 1;
            } else if !run.in_flight.is_empty() {
                let which = rng.below(run.in_flight.len());
                run.settle(which, Fate::Answered);
            }
        }
        alone_seen |= run.overlapping > 0;
        for (key, name) in run.keys.iter().enumerate() {
            let mut shown: Vec<u64> = Vec::new();
            let mut allowed = 0;
            for request in run.requests.iter().filter(|r| r.key == key) {
                let (status, count) = request.outcome.unwrap();
                if status == 200 {
                    allowed += 1;
                    shown.push(count.unwrap());
                } else {
                    assert_eq!(status, 429, "round {round}: {request:?}");
                }
            }
            assert_eq!(
                allowed,
                run.ranks[key].min(limit),
                "round {round}: key {name}"
            );
            shown.sort_unstable();
            let want: Vec<u64> = (1..=allowed).collect();
            assert_eq!(shown, want, "round {round}: key {name}");
        }
    }
    assert!(alone_seen);
}

/// While `CALLS_IN_FLIGHT` shared calls are in flight, new keys wait; the
/// first reply sends every one of them (so none waits for more than that
/// call and then its own), in calls of at most `KEYS_PER_CALL` keys, and a
/// reply of several keys is shared out key by key.
#[test]
fn every_waiting_key_goes_at_the_next_reply() {
    use kit::increments::{CALLS_IN_FLIGHT, KEYS_PER_CALL};
    // More keys than one call carries, so the waiting ones need two.
    let arriving = KEYS_PER_CALL + 14;
    let mut run = Run::with_keys(1000, false, arriving);
    for key in 0..arriving {
        run.arrive(key);
    }
    let first = CALLS_IN_FLIGHT as usize;
    assert_eq!(run.in_flight.len(), first);
    // A second request for the first key waits behind its call.
    run.arrive(0);
    run.settle(0, Fate::Answered);
    // The keys that waited, and the first key's queue, in two calls after
    // the calls still in flight.
    let waiting = arriving - first + 1;
    let sent = &run.in_flight[first - 1..];
    assert_eq!(sent.len(), 2, "{} calls in flight", run.in_flight.len());
    let keys: Vec<usize> = sent
        .iter()
        .map(|c| {
            let args = c.webdis_args().unwrap();
            std::str::from_utf8(&args[2]).unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(keys, [KEYS_PER_CALL, waiting - KEYS_PER_CALL]);
    run.drain();
    for request in &run.requests {
        let want = if request.key == 0 { request.rank } else { 1 };
        assert_eq!(request.outcome, Some((200, Some(want))), "{request:?}");
    }
}

/// A batch whose first request (the one whose arrival sent the call) and
/// another have gone when the reply comes: the rest are answered with
/// their own counts, and the ended ones were counted.
#[test]
fn a_reply_after_some_requests_ended_still_serves_the_rest() {
    let mut run = Run::new(100, false);
    for _ in 0..5 {
        run.arrive(0);
    }
    assert_eq!(run.in_flight.len(), 1, "one call for the first");
    run.end(0);
    run.settle(0, Fate::Answered);
    // The four that waited went as one call of 4.
    assert_eq!(run.in_flight.len(), 1);
    assert_eq!(run.in_flight[0].webdis_args().unwrap()[5], b"4");
    run.end(2);
    run.settle(0, Fate::Answered);
    let outcomes: Vec<_> = run.requests.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [
            None,
            Some((200, Some(2))),
            None,
            Some((200, Some(4))),
            Some((200, Some(5)))
        ]
    );
    assert_eq!(
        run.redis
            .store
            .integers()
            .map(|(_, n)| n)
            .collect::<Vec<_>>(),
        [5]
    );
}

/// A full queue sends a request alone, and a full key table too.
#[test]
fn a_full_table_sends_the_request_alone() {
    let mut run = Run::new(1000, false);
    for _ in 0..=kit::increments::BATCH + 1 {
        run.arrive(0);
    }
    // The lead, then BATCH queued, then one alone.
    assert_eq!(run.in_flight.len(), 2);
    assert_eq!(run.in_flight[1].webdis_args().unwrap()[5], b"1");
    run.drain();
    for (i, request) in run.requests.iter().enumerate() {
        let (status, shown) = request.outcome.unwrap();
        assert_eq!(status, 200);
        // The one sent alone overtook the queue at Redis: its count is
        // 2, and the queue's are shifted by one. Decisions stay exact
        // (the counts are still distinct and within the total).
        let want = match i {
            0 => 1,
            i if i == kit::increments::BATCH + 1 => 2,
            i => i as u64 + 2,
        };
        assert_eq!(shown, Some(want), "request {i}");
    }
}

/// An increment sent alone whose request has gone is still re-sent after
/// NOSCRIPT, so that Redis counts it, as a shared call's would be.
#[test]
fn an_increment_sent_alone_is_retried_after_its_request_ended() {
    let mut run = Run::new(1000, false);
    let alone = kit::increments::BATCH + 1;
    for _ in 0..=alone {
        run.arrive(0);
    }
    assert_eq!(run.in_flight.len(), 2);
    run.end(alone);
    run.settle(1, Fate::NoScript);
    assert_eq!(run.in_flight.len(), 2, "the EVAL retry went out");
    assert_eq!(run.in_flight[1].webdis_args().unwrap()[0], b"EVAL");
    run.drain();
    assert_eq!(
        run.redis
            .store
            .integers()
            .map(|(_, n)| n)
            .collect::<Vec<_>>(),
        [alone as i64 + 1]
    );
    assert!(run.requests[alone].outcome.is_none());
    assert!(run.requests[..alone].iter().all(|r| r.outcome.is_some()));
}

/// `redis.cluster`: a call only carries keys of one hash slot, so with the
/// shared calls in flight a key of another slot goes at once instead of
/// waiting (each per-header key has its own hash tag); without it, it
/// waits.
#[test]
fn on_a_cluster_keys_of_other_slots_go_at_once() {
    let shared = kit::increments::CALLS_IN_FLIGHT as u64;
    for (cluster, calls) in [(true, 3), (false, shared)] {
        let config = format!(
            r#"{{"rule_name": "r", "rule_items": [{{"limit_by_per_header": "x-api-key",
                "limit_keys": [{{"key": "*", "query_per_minute": 10}}]}}],
                "redis": {{"webdis_cluster": "webdis", "cluster": {cluster}}}}}"#
        );
        let mut filter = Filter::<Limiter, FakeHost>::new(FakeHost::new());
        filter.configure(config.into_bytes()).unwrap();
        for (context, key) in [(10, "a"), (11, "b"), (12, "c")] {
            filter.host_mut().next_request();
            filter
                .host_mut()
                .request_headers
                .add("x-api-key", key.as_bytes());
            let stream = filter.open_stream(context);
            assert_eq!(filter.on_request_headers(stream, true), Action::Pause);
        }
        assert_eq!(filter.host().calls_sent, calls, "cluster: {cluster}");
    }
    let mut filter = Filter::<Limiter, FakeHost>::new(FakeHost::new());
    let refused = filter.configure(
        br#"{"rule_name": "r", "global_threshold": {"query_per_minute": 1},
             "redis": {"webdis_cluster": "webdis", "cluster": "yes"}}"#
            .to_vec(),
    );
    assert!(
        refused.unwrap_err().to_string().contains("redis.cluster"),
        "names the field"
    );
}
