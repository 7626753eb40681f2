//! Concurrent requests of one counter share Redis calls, over the kit's
//! `FakeHost`: quota reads wait behind the read or charge in flight and go
//! as one call; charges batch, and each answer is released only when the
//! call carrying its own charge has answered; a request that ends while
//! its batch waits or flies is still charged, once; a failed shared call
//! fails every request in it, each by `failure_mode_deny`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use kit::fake::{FakeHost, SentCall};
use kit::fake_request::Outcome;
use kit::{Action, Filter, StreamId};
use token_quota::TokenQuota;

const REQUEST: &[u8] = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
const JSON: &[u8] =
    br#"{"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":20,"total_tokens":30}}"#;
const HEADERS: &[(&str, &str)] = &[(":method", "POST"), (":path", "/v1/chat/completions")];

/// Envoy's `response.flags` for a client that closed its connection.
const DOWNSTREAM_CONNECTION_TERMINATION: u64 = 0x4000;

struct Quota {
    filter: Filter<TokenQuota, FakeHost>,
    /// The one counter, as Redis holds it.
    used: i64,
}

impl Quota {
    fn new(limit: u64, deny: bool) -> Quota {
        let mut filter = Filter::new(FakeHost::new());
        filter
            .configure(
                format!(
                    r#"{{"rule_name": "s", "global_threshold": {{"token_per_hour": {limit}}},
                        "failure_mode_deny": {deny}, "redis": {{"webdis_cluster": "webdis"}}}}"#
                )
                .into_bytes(),
            )
            .unwrap();
        filter.host_mut().answers = Some(Vec::new());
        Quota { filter, used: 0 }
    }

    fn host(&mut self) -> &mut FakeHost {
        self.filter.host_mut()
    }

    fn counter(&mut self, name: &str) -> u64 {
        self.filter.flush_counters();
        self.filter.host().counter(&format!("token-quota.{name}"))
    }

    fn calls_sent(&self) -> u64 {
        self.filter.host().calls_sent
    }

    fn last_call(&self) -> SentCall {
        self.filter.host().last_call.clone().unwrap()
    }

    /// A request's headers and body arrive; returns what its client sees.
    fn arrive(&mut self) -> (StreamId, u32, Outcome) {
        let (stream, outcome) = self.filter.send_request_with_body(HEADERS, REQUEST);
        (stream, self.filter.host().last_context, outcome)
    }

    /// Answers `call` as Redis runs the counting script on the counter.
    fn answer(&mut self, call: &SentCall) -> Outcome {
        let args = call.webdis_args().unwrap();
        assert_eq!(args[0], b"EVALSHA", "the kit's counting script");
        self.used += std::str::from_utf8(&args[5])
            .unwrap()
            .parse::<i64>()
            .unwrap();
        let reply = format!(":{}\r\n", self.used);
        self.filter.answer_redis(call, reply.as_bytes())
    }

    /// A request let through alone (its read answered at once).
    fn admitted(&mut self) -> (StreamId, u32) {
        let (stream, context, outcome) = self.arrive();
        let Outcome::Waiting(read) = outcome else {
            panic!("the read went out: {outcome:?}")
        };
        assert_eq!(self.answer(&read), Outcome::Continued);
        (stream, context)
    }

    /// The answer's headers and whole JSON body arrive.
    fn answered(&mut self, stream: StreamId) -> Action {
        let host = self.host();
        host.response_headers.clear();
        host.response_headers.add(":status", b"200");
        host.response_headers
            .add("content-type", b"application/json");
        assert_eq!(
            self.filter.on_response_headers(stream, false),
            Action::Continue
        );
        let host = self.host();
        host.response_body.clear();
        host.response_body.extend_from_slice(JSON);
        self.filter.on_response_body(stream, JSON.len(), true)
    }

    /// The client of `stream` hangs up.
    fn hang_up(&mut self, stream: StreamId) {
        let flags = DOWNSTREAM_CONNECTION_TERMINATION.to_le_bytes();
        self.host().properties.set("response.flags", Some(&flags));
        self.filter.close_stream(stream);
    }

    /// The contexts whose requests went on, in order.
    fn resumed_requests(&self) -> Vec<u32> {
        let answers = self.filter.host().answers.as_ref().unwrap();
        answers
            .iter()
            .filter(|(_, status)| *status == 0)
            .map(|(context, _)| *context)
            .collect()
    }
}

/// The amount a counting call adds.
fn amount(call: &SentCall) -> Vec<u8> {
    call.webdis_args().unwrap()[5].clone()
}

#[test]
fn concurrent_quota_reads_share_one_call() {
    let mut q = Quota::new(1_000, false);
    let (_, a, first) = q.arrive();
    let Outcome::Waiting(read) = first else {
        panic!("{first:?}")
    };
    assert_eq!(amount(&read), b"0", "a read adds nothing");
    // Two more arrive while the read is in flight: they wait for it, no
    // call of their own.
    let (_, b, second) = q.arrive();
    let (_, c, third) = q.arrive();
    assert_eq!((second, third), (Outcome::Hanging, Outcome::Hanging));
    assert_eq!(q.calls_sent(), 1);
    // Its reply lets the first through and sends the two as one read.
    assert_eq!(q.answer(&read), Outcome::Continued);
    assert_eq!(q.calls_sent(), 2);
    let shared = q.last_call();
    assert_eq!(amount(&shared), b"0");
    assert_eq!(q.resumed_requests(), [a]);
    q.answer(&shared);
    assert_eq!(
        q.resumed_requests(),
        [a, b, c],
        "both go on, in arrival order"
    );
    assert_eq!(q.counter("allowed"), 3);
    assert_eq!(q.counter("redis_errors"), 0);
}

#[test]
fn a_read_behind_a_charge_sees_the_charge() {
    // A quota of 30: the first answer uses it up.
    let mut q = Quota::new(30, false);
    let (a, _) = q.admitted();
    assert_eq!(q.answered(a), Action::Pause, "held while charging");
    let charge = q.last_call();
    assert_eq!(amount(&charge), b"30");
    // A read arriving meanwhile waits behind the charge, in its batch.
    let (_, b, outcome) = q.arrive();
    assert_eq!(outcome, Outcome::Hanging);
    q.answer(&charge);
    q.filter.close_stream(a);
    let read = q.last_call();
    assert_eq!(amount(&read), b"0");
    match q.answer(&read) {
        Outcome::Responded(answer) => assert_eq!(answer.status, 429),
        other => panic!("{other:?}"),
    }
    assert_eq!(q.filter.host().effective_context, b);
    assert_eq!(q.counter("limited"), 1);
    assert_eq!(q.used, 30);
}

#[test]
fn charges_batch_and_each_answer_waits_for_its_own() {
    let mut q = Quota::new(1_000_000, false);
    let (a, ctx_a) = q.admitted();
    let (b, _) = q.admitted();
    let (c, _) = q.admitted();
    let reads = q.calls_sent();
    assert_eq!(q.answered(a), Action::Pause);
    let first = q.last_call();
    assert_eq!(amount(&first), b"30");
    // Two more answers complete while A's charge is in flight: held, no
    // call of their own.
    assert_eq!(q.answered(b), Action::Pause);
    assert_eq!(q.answered(c), Action::Pause);
    assert_eq!(q.calls_sent(), reads + 1);
    // A's charge answers: A is released, B's and C's go as one call.
    q.answer(&first);
    assert_eq!(q.filter.host().resumed[1], 1, "only A's answer goes on");
    assert_eq!(q.filter.host().effective_context, ctx_a);
    assert_eq!(q.calls_sent(), reads + 2);
    let batch = q.last_call();
    assert_eq!(amount(&batch), b"60", "one call of their sum");
    q.answer(&batch);
    assert_eq!(q.filter.host().resumed[1], 3, "B's and C's go on now");
    for stream in [a, b, c] {
        q.filter.close_stream(stream);
    }
    assert_eq!(q.used, 90);
    assert_eq!(q.counter("tokens"), 90);
    assert_eq!(q.counter("redis_errors"), 0);
    assert_eq!(q.counter("client_gone"), 0);
}

#[test]
fn a_request_that_ends_while_its_charge_waits_is_charged_once() {
    let mut q = Quota::new(1_000_000, false);
    let (a, _) = q.admitted();
    let (b, _) = q.admitted();
    assert_eq!(q.answered(a), Action::Pause);
    let first = q.last_call();
    assert_eq!(q.answered(b), Action::Pause);
    // B's client hangs up while its charge waits behind A's.
    q.hang_up(b);
    q.answer(&first);
    // Its charge still goes, with the batch, and nothing more for it.
    let batch = q.last_call();
    assert_eq!(amount(&batch), b"30");
    q.answer(&batch);
    q.filter.close_stream(a);
    assert_eq!(q.used, 60);
    assert_eq!(q.filter.host().resumed[1], 1, "only A's answer went on");
    assert_eq!(q.counter("client_gone"), 1);
    assert_eq!(q.counter("tokens"), 60);
    assert_eq!(q.counter("redis_errors"), 0);
}

#[test]
fn a_batch_whose_sender_ended_still_answers_the_others() {
    let mut q = Quota::new(1_000_000, false);
    let (a, _) = q.admitted();
    let (b, _) = q.admitted();
    let (c, _) = q.admitted();
    assert_eq!(q.answered(a), Action::Pause);
    let first = q.last_call();
    assert_eq!(q.answered(b), Action::Pause);
    q.answer(&first);
    let batch = q.last_call();
    // C's charge waits behind B's, which is in flight; then B's client
    // hangs up: its call is the root's, and still answers C's.
    assert_eq!(q.answered(c), Action::Pause);
    q.hang_up(b);
    q.answer(&batch);
    let last = q.last_call();
    assert_eq!(amount(&last), b"30");
    q.answer(&last);
    assert_eq!(q.filter.host().resumed[1], 2, "A's and C's answers went on");
    assert_eq!(q.used, 90);
    assert_eq!(q.counter("client_gone"), 1);
}

#[test]
fn a_failed_shared_read_follows_the_failure_mode_for_every_request() {
    for deny in [true, false] {
        let mut q = Quota::new(1_000, deny);
        let (_, a, first) = q.arrive();
        let Outcome::Waiting(read) = first else {
            panic!("{first:?}")
        };
        let (_, b, _) = q.arrive();
        let (_, c, _) = q.arrive();
        let first = q.filter.fail_call(&read);
        let shared = q.last_call();
        assert_ne!(shared.token, read.token, "the queue went out");
        let rest = q.filter.fail_call(&shared);
        if deny {
            assert!(matches!(first, Outcome::Responded(ref r) if r.status == 503));
            assert!(matches!(rest, Outcome::Responded(ref r) if r.status == 503));
            let refused: Vec<u32> = q
                .filter
                .host()
                .answers
                .as_ref()
                .unwrap()
                .iter()
                .filter(|(_, status)| *status == 503)
                .map(|(context, _)| *context)
                .collect();
            assert_eq!(refused, [a, b, c]);
        } else {
            assert_eq!(first, Outcome::Continued);
            assert_eq!(q.resumed_requests(), [a, b, c]);
        }
        assert_eq!(q.counter("redis_errors"), 3, "deny: {deny}");
    }
}

#[test]
fn a_failed_shared_charge_releases_every_answer_and_counts_each() {
    let mut q = Quota::new(1_000_000, true);
    let (a, _) = q.admitted();
    let (b, _) = q.admitted();
    let (c, _) = q.admitted();
    assert_eq!(q.answered(a), Action::Pause);
    let first = q.last_call();
    assert_eq!(q.answered(b), Action::Pause);
    assert_eq!(q.answered(c), Action::Pause);
    q.answer(&first);
    let batch = q.last_call();
    // C hangs up while the batch is in flight; the batch fails.
    q.hang_up(c);
    q.filter.fail_call(&batch);
    assert_eq!(q.filter.host().resumed[1], 2, "A's and B's answers went on");
    // B's failure and C's (reported to the root) are counted.
    assert_eq!(q.counter("redis_errors"), 2);
    q.filter.close_stream(a);
    q.filter.close_stream(b);
    assert_eq!(q.used, 30);
}
