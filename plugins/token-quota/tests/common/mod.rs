#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

//! The token quota over a `FakeHost`, its Redis calls answered by the
//! kit's in-memory `FakeRedis` (whose counting script reads by adding 0):
//! a chat request, then the upstream's answer, with the `kit::fake_request`
//! helpers.

#![allow(dead_code)]

use kit::fake::FakeHost;
use kit::fake_redis::FakeRedis;
use kit::fake_request::Outcome as Step;
use kit::Filter;
use std::time::Duration;
use token_quota::TokenQuota;

pub struct Driver {
    pub filter: Filter<TokenQuota, FakeHost>,
    pub redis: FakeRedis,
    /// The response bytes the client got, in order.
    pub released: Vec<u8>,
    /// The end of the last response was held until Redis answered.
    pub charged_before_release: bool,
    /// The `:path` of the requests (`/v1/chat/completions` unless set).
    pub path: &'static str,
    /// The `content-encoding` of the answers, if any.
    pub response_encoding: Option<&'static str>,
}

/// What the client saw.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The request went upstream and the answer came back whole.
    Answered200,
    /// Answered locally with this status.
    Refused(u16),
    /// Stuck somewhere: the test names where.
    Hung(&'static str),
}

/// A response the fake upstream gives.
pub struct Upstream<'a> {
    pub content_type: &'a str,
    pub chunks: &'a [&'a [u8]],
}

pub fn openai_json(total: u64) -> Vec<u8> {
    format!(
        r#"{{"id":"c1","object":"chat.completion","choices":[{{"index":0,"message":{{"role":"assistant","content":"hi"}}}}],"usage":{{"prompt_tokens":{},"completion_tokens":{},"total_tokens":{total}}}}}"#,
        total / 2,
        total - total / 2
    )
    .into_bytes()
}

/// A `FakeRedis`: the kit's counting script, which the token quota's reads
/// (amount 0) and charges both run, is built in.
pub fn redis() -> FakeRedis {
    FakeRedis::new()
}

impl Driver {
    pub fn new(config: &str) -> Driver {
        let mut filter = Filter::new(FakeHost::new());
        filter
            .configure(config.as_bytes().to_vec())
            .expect("config is valid");
        Driver {
            filter,
            redis: redis(),
            released: Vec::new(),
            charged_before_release: false,
            path: "/v1/chat/completions",
            response_encoding: None,
        }
    }

    pub fn host(&mut self) -> &mut FakeHost {
        self.filter.host_mut()
    }

    /// Sets the clock to `secs` seconds into a minute.
    pub fn at_second(&mut self, secs: u64) {
        self.host()
            .set_time_in_window(Duration::from_secs(60), Duration::from_secs(secs));
    }

    /// Counter `name` as the proxy sees it once the counts are published
    /// (which the kit does on its tick).
    pub fn counter(&mut self, name: &str) -> u64 {
        self.filter.flush_counters();
        self.filter.host().counter(name)
    }

    fn settle(&mut self, step: Step) -> Step {
        let step = self.filter.settle(&mut self.redis, step);
        assert!(
            self.redis.unknown.is_empty(),
            "the token quota sent a command Redis does not know: {:?}",
            self.redis.unknown
        );
        step
    }

    /// One request with `headers` and `body` (sent in one chunk after the
    /// headers, as Envoy would with the flag honoured), answered by
    /// `upstream` if it gets through.
    pub fn request(
        &mut self,
        headers: &[(&str, &str)],
        body: &[u8],
        upstream: &Upstream<'_>,
    ) -> Outcome {
        let length = body.len().to_string();
        let mut all = vec![
            (":method", if body.is_empty() { "GET" } else { "POST" }),
            (":path", self.path),
        ];
        all.extend_from_slice(headers);
        let (stream, step) = if body.is_empty() {
            self.filter.send_request(&all)
        } else {
            all.push(("content-length", &length));
            self.filter.send_request_with_body(&all, body)
        };
        let outcome = match self.settle(step) {
            Step::Responded(answer) => Outcome::Refused(answer.status),
            Step::Continued => self.respond(stream, upstream),
            Step::Waiting(_) | Step::Hanging => Outcome::Hung("request"),
        };
        self.filter.close_stream(stream);
        outcome
    }

    fn respond(&mut self, stream: kit::StreamId, upstream: &Upstream<'_>) -> Outcome {
        let mut headers = vec![(":status", "200"), ("content-type", upstream.content_type)];
        if let Some(encoding) = self.response_encoding {
            headers.push(("content-encoding", encoding));
        }
        let step = self
            .filter
            .send_response_headers(stream, &headers, upstream.chunks.is_empty());
        if step != Step::Continued {
            return Outcome::Hung("response headers");
        }
        let mut last = Step::Continued;
        for (i, chunk) in upstream.chunks.iter().enumerate() {
            last = self
                .filter
                .send_response_chunk(stream, chunk, i + 1 == upstream.chunks.len());
        }
        self.charged_before_release = false;
        if last != Step::Continued {
            if self.settle(last) != Step::Continued {
                self.released = self.filter.host().delivered.clone();
                return Outcome::Hung("the held end of the response");
            }
            self.charged_before_release = true;
        }
        self.released = self.filter.host().delivered.clone();
        Outcome::Answered200
    }

    /// The tokens charged to counters whose key contains `needle`.
    pub fn charged(&self, needle: &str) -> i64 {
        self.redis
            .store
            .integers()
            .filter(|(k, _)| String::from_utf8_lossy(k).contains(needle))
            .map(|(_, v)| v)
            .sum()
    }
}
