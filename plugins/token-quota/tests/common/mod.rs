#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

//! Drives the token quota through the kit's engine over a `FakeHost`, with
//! a Redis stand-in that runs the kit's counting script (reads add 0).

#![allow(dead_code)]

use kit::fake::FakeHost;
use kit::{Action, Filter, StreamId};
use std::collections::HashMap;
use token_quota::TokenQuota;

pub struct Driver {
    pub filter: Filter<TokenQuota, FakeHost>,
    pub redis: HashMap<Vec<u8>, i64>,
    pub redis_down: bool,
    /// The response bytes the client got, in order.
    pub released: Vec<u8>,
    /// The end of the last response was held until Redis answered.
    pub charged_before_release: bool,
    /// The `:path` of the requests (`/v1/chat/completions` unless set).
    pub path: &'static str,
    /// The `content-encoding` of the answers, if any.
    pub response_encoding: Option<&'static str>,
    next_context: u32,
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

impl Driver {
    pub fn new(config: &str) -> Driver {
        let mut filter = Filter::new(FakeHost::new());
        filter
            .configure(config.as_bytes().to_vec())
            .expect("config is valid");
        Driver {
            filter,
            redis: HashMap::new(),
            redis_down: false,
            released: Vec::new(),
            charged_before_release: false,
            path: "/v1/chat/completions",
            response_encoding: None,
            next_context: 2,
        }
    }

    pub fn host(&mut self) -> &mut FakeHost {
        self.filter.host_mut()
    }

    /// Counter `name` as the proxy sees it once the counts are published
    /// (which the kit does on its tick).
    #[allow(dead_code)] // not every test binary reads counters
    pub fn counter(&mut self, name: &str) -> u64 {
        self.filter.flush_counters();
        self.filter.host().counter(name)
    }

    /// Answers Redis calls until the stream stops waiting on one; returns
    /// whether anything was answered.
    fn pump(&mut self) -> bool {
        let mut answered = false;
        for _ in 0..4 {
            let Some(call) = self.filter.host().last_call.clone() else {
                break;
            };
            if self.filter.host().calls_sent == 0 {
                break;
            }
            let token = call.token;
            self.filter.host_mut().last_call = None;
            answered = true;
            if self.redis_down {
                self.filter.host_mut().call_response_headers.clear();
                self.filter.on_http_call_response(token, 0, 0, false);
                continue;
            }
            let args = call.webdis_args().unwrap();
            let reply = match args[0].as_slice() {
                // The kit's counting script: key, ttl, amount (0 reads).
                b"EVALSHA" | b"EVAL" => {
                    let by: i64 = std::str::from_utf8(&args[5]).unwrap().parse().unwrap();
                    let n = self.redis.entry(args[3].clone()).or_insert(0);
                    *n += by;
                    format!(":{n}\r\n").into_bytes()
                }
                other => panic!("unexpected command {}", String::from_utf8_lossy(other)),
            };
            self.filter.host_mut().answer_http(200, &reply);
            self.filter
                .on_http_call_response(token, 1, reply.len(), false);
        }
        answered
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
        let host = self.filter.host_mut();
        host.next_request();
        host.request_headers
            .add(":method", if body.is_empty() { b"GET" } else { b"POST" });
        let path = self.path;
        let host = self.filter.host_mut();
        host.request_headers.add(":path", path.as_bytes());
        for (name, value) in headers {
            host.request_headers.add(name, value.as_bytes());
        }
        if !body.is_empty() {
            host.request_headers
                .add("content-length", body.len().to_string().as_bytes());
        }
        host.request_body = body.to_vec();
        host.last_call = None;
        let context = self.next_context;
        self.next_context += 1;
        let stream = self.filter.open_stream(context);
        let sent_before = self.filter.host().responses_sent;
        let resumed_before = self.filter.host().resumed;
        let mut through = match self.filter.on_request_headers(stream, body.is_empty()) {
            Action::Continue => true,
            Action::Pause => false,
        };
        if !through && !body.is_empty() {
            through = self.filter.on_request_body(stream, body.len(), true) == Action::Continue;
        }
        self.pump();
        if self.filter.host().responses_sent > sent_before {
            let status = self.filter.host().response.as_ref().unwrap().status;
            self.filter.close_stream(stream);
            return Outcome::Refused(status);
        }
        through |= self.filter.host().resumed[0] > resumed_before[0];
        if !through {
            self.filter.close_stream(stream);
            return Outcome::Hung("request");
        }
        self.respond(stream, upstream, resumed_before[1])
    }

    fn respond(
        &mut self,
        stream: StreamId,
        upstream: &Upstream<'_>,
        resumed_before: u64,
    ) -> Outcome {
        let host = self.filter.host_mut();
        host.response_headers.clear();
        host.response_headers.add(":status", b"200");
        host.response_headers
            .add("content-type", upstream.content_type.as_bytes());
        if let Some(encoding) = self.response_encoding {
            host.response_headers
                .add("content-encoding", encoding.as_bytes());
        }
        if self
            .filter
            .on_response_headers(stream, upstream.chunks.is_empty())
            != Action::Continue
        {
            self.filter.close_stream(stream);
            return Outcome::Hung("response headers");
        }
        // Envoy's buffer: bytes a handler held back stay in it, and the next
        // callback sees them plus the new chunk.
        let mut buffer: Vec<u8> = Vec::new();
        self.released.clear();
        let mut held = false;
        for (i, chunk) in upstream.chunks.iter().enumerate() {
            let last = i + 1 == upstream.chunks.len();
            buffer.extend_from_slice(chunk);
            self.filter.host_mut().response_body = buffer.clone();
            held = self.filter.on_response_body(stream, buffer.len(), last) == Action::Pause;
            if !held {
                self.released.extend_from_slice(&buffer);
                buffer.clear();
            }
        }
        if held {
            self.charged_before_release = false;
            self.pump();
            if self.filter.host().resumed[1] <= resumed_before {
                self.filter.close_stream(stream);
                return Outcome::Hung("the held end of the response");
            }
            self.charged_before_release = true;
            self.released.extend_from_slice(&buffer);
        }
        self.filter.close_stream(stream);
        Outcome::Answered200
    }

    /// The tokens charged to counters whose key contains `needle`.
    pub fn charged(&self, needle: &str) -> i64 {
        self.redis
            .iter()
            .filter(|(k, _)| String::from_utf8_lossy(k).contains(needle))
            .map(|(_, v)| *v)
            .sum()
    }
}
