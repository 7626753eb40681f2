//! Concurrent requests for one key share Redis calls and still get the
//! counts and decisions of requests sent alone, in arrival order: random
//! interleavings of arrivals, replies, failures and clients going away,
//! over the kit's `FakeHost` with a Redis stand-in that applies each call
//! when it answers it.

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
}

const KEYS: [&str; 3] = ["alpha", "beta", "gamma"];

impl Run {
    fn new(limit: u64, deny: bool) -> Run {
        let config = format!(
            r#"{{"rule_name": "r", "rule_items": [{{"limit_by_per_header": "x-api-key",
                "limit_keys": [{{"key": "*", "query_per_minute": {limit}}}]}}],
                "show_limit_quota_header": true, "failure_mode_deny": {deny},
                "redis": {{"webdis_cluster": "webdis", "timeout": 250}}}}"#
        );
        let mut filter = Filter::new(FakeHost::new());
        filter.configure(config.into_bytes()).unwrap();
        filter.host_mut().answers = Some(Vec::new());
        Run {
            filter,
            redis: FakeRedis::new(),
            in_flight: Vec::new(),
            requests: Vec::new(),
            by_context: HashMap::new(),
            ranks: vec![0; KEYS.len()],
            limit,
            calls: 0,
        }
    }

    /// Records the call sent by the last event, if any (one at most).
    fn collect_call(&mut self) {
        let host = self.filter.host();
        let sent = host.calls_sent - self.calls;
        assert!(sent <= 1, "one event sent {sent} calls");
        if sent == 1 {
            self.in_flight.push(host.last_call.clone().unwrap());
        }
        self.calls = host.calls_sent;
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
        host.request_headers.add("x-api-key", KEYS[key].as_bytes());
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
                assert_eq!(args[2], b"1", "one key");
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
#[test]
fn random_interleavings_count_as_if_each_request_went_alone() {
    let mut rng = Rng::new(13);
    let (mut requests, mut calls) = (0, 0);
    for round in 0..300 {
        let limit = 1 + rng.below(12) as u64;
        let mut run = Run::new(limit, round % 2 == 0);
        let arrivals = 1 + rng.below(60);
        let mut arrived = 0;
        while arrived < arrivals || !run.in_flight.is_empty() {
            match rng.below(10) {
                0..=4 if arrived < arrivals => {
                    run.arrive(rng.below(KEYS.len()));
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
        let mut counted = [0i64; KEYS.len()];
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
        for (key, name) in KEYS.iter().enumerate() {
            counted[key] = run
                .redis
                .store
                .integers()
                .filter(|(k, _)| k.windows(name.len()).any(|w| w == name.as_bytes()))
                .map(|(_, v)| v)
                .sum();
            let arrivals = run.ranks[key] as i64;
            assert!(counted[key] <= arrivals, "round {round}: key {name}");
            assert!(
                counted[key] >= arrivals.min(limit as i64 + 1),
                "round {round}: key {name}: {} counted of {arrivals}",
                counted[key]
            );
        }
        requests += run.requests.len() as u64;
        calls += run.calls;
    }
    assert!(
        calls * 3 < requests * 2,
        "requests shared calls: {calls} calls for {requests} requests"
    );
}

/// Calls that fail, time out or meet NOSCRIPT: every request of a failed
/// call follows the failure mode (503 with `failure_mode_deny`), the
/// others count as if the failed ones had never been sent, and a NOSCRIPT
/// retry serves the whole call.
#[test]
fn failed_calls_fail_every_request_in_them_and_only_those() {
    let mut rng = Rng::new(7);
    for round in 0..300 {
        let limit = 1 + rng.below(12) as u64;
        let mut run = Run::new(limit, true);
        let arrivals = 1 + rng.below(60);
        let mut arrived = 0;
        while arrived < arrivals || !run.in_flight.is_empty() {
            if arrived < arrivals && rng.below(2) == 0 {
                run.arrive(rng.below(KEYS.len()));
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
        // Rank among the requests Redis counted, in arrival order.
        let mut applied = [0u64; KEYS.len()];
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
