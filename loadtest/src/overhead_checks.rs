//! What the overhead rows of a plugin at a limit never reached must show,
//! whoever started the gateway (the local run, or the external mode
//! against a stack someone else runs): only 200 answers, few Redis round
//! trips per request, and the tokens charged matching the usage reported.

use crate::scenario::Scenario;

/// The round trips per request the hot-key scenario may pay: the target of
/// shared increments.
pub const HOT_KEY_ROUND_TRIPS: f64 = 0.10;

/// The round trips per request the token-quota scenarios may pay: the
/// target of shared reads and charges.
pub const TOKEN_QUOTA_ROUND_TRIPS: f64 = 0.30;

impl Scenario {
    /// Checks a limiter row whose limit is never reached: only 200
    /// answers, and at most [`HOT_KEY_ROUND_TRIPS`] Redis round trips per
    /// request with 32 connections or more on the one key.
    pub(crate) fn judge_limiter_pass(&mut self) {
        self.check_answers(&[200]);
        // Every request is counted, but requests that arrive while their key's
        // call is in flight share the next call: at most one round trip each,
        // and with 32 connections on one key far fewer (the target); with
        // fewer connections, fewer requests wait together.
        self.check_round_trips(&["evalsha", "eval"], HOT_KEY_ROUND_TRIPS, 1.0);
    }

    /// Checks the round trips of `commands` per answered request: at most
    /// `target` with 32 connections or more, and with fewer at most
    /// `calls_each` per request, give or take the requests wrk cut off at
    /// the end (one per connection).
    pub(crate) fn check_round_trips(&mut self, commands: &[&str], target: f64, calls_each: f64) {
        let per_request = self.per_request(commands);
        let requests = self.wrk.requests.max(1) as f64;
        let bound = if self.connections >= 32 {
            target
        } else {
            calls_each * (1.0 + f64::from(self.connections + 2) / requests)
        };
        self.check(
            format!(
                "at most {bound:.3} Redis round trips per request ({})",
                commands.join("/")
            ),
            per_request <= bound,
            format!(
                "{per_request:.3} per request; all commands: {}",
                self.redis_commands_text()
            ),
        );
    }

    /// Checks a token quota row whose quota is never reached: only 200
    /// answers, and at most [`TOKEN_QUOTA_ROUND_TRIPS`] Redis round trips
    /// per request with 32 connections or more.
    pub(crate) fn judge_token_quota_pass(&mut self) {
        self.check_answers(&[200]);
        // A read and a charge per request, both shared increments of the one
        // counter: requests that arrive while its call is in flight share the
        // next call. At most two round trips each, and with 32 connections far
        // fewer (the target).
        let commands = ["evalsha", "eval", "get"];
        self.fact(
            "Redis round trips per request (evalsha/eval/get)",
            format!("{:.3}", self.per_request(&commands)),
        );
        self.check_round_trips(&commands, TOKEN_QUOTA_ROUND_TRIPS, 2.0);
    }

    /// Checks that the tokens a token quota row charged (what its rule's
    /// counters grew by during the run, warm-up included) match the usage
    /// reported by the upstream's answers in the same time, each reporting
    /// `tokens_per_answer`.
    pub(crate) fn judge_tokens_charged(
        &mut self,
        charged: u64,
        upstream_answers: u64,
        tokens_per_answer: u64,
    ) {
        let reported = upstream_answers * tokens_per_answer;
        self.fact("tokens the upstream reported", reported);
        self.fact("tokens charged in Redis", charged);
        // wrk stops with requests in flight: the last request of each
        // connection, in the warm-up and in the measured run, may have been
        // answered upstream and dropped by the gateway before it was scanned.
        // The exact equality is checked by the accuracy scenarios, which end
        // with nothing in flight.
        let cut = 2 * u64::from(self.connections) * tokens_per_answer;
        self.check(
            "tokens charged in Redis match the usage the upstream reported",
            charged <= reported && reported - charged <= cut,
            format!(
                "{charged} charged, {reported} reported by {upstream_answers} upstream answers \
                 (at most {cut} may be lost to requests wrk cut off)"
            ),
        );
    }
}
