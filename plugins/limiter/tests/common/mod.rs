//! Drives the limiter through the kit's engine over a `FakeHost`, with a
//! small Redis stand-in that runs the limiter's counting script.

#![allow(dead_code)]

use kit::fake::FakeHost;
use kit::{Action, Filter, StreamId};
use limiter::Limiter;
use std::collections::HashMap;

pub struct Driver {
    pub filter: Filter<Limiter, FakeHost>,
    pub redis: HashMap<Vec<u8>, i64>,
    /// Calls that failed with no answer instead of reaching Redis.
    pub redis_down: bool,
    /// Answer the next EVALSHA with NOSCRIPT once.
    pub forget_scripts: bool,
    /// Answer the next EVALSHA or EVAL with these bytes once.
    pub next_reply: Option<Vec<u8>>,
    next_context: u32,
}

/// What the client saw.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Forwarded upstream (by the headers phase or after Redis answered).
    Forwarded,
    /// Answered locally with this status.
    Answered(u16),
    /// Still paused: nothing answered and nothing resumed.
    Hanging,
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
            forget_scripts: false,
            next_reply: None,
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

    /// Sends one request with `headers` and answers its Redis call, if any.
    pub fn request(&mut self, headers: &[(&str, &str)]) -> Outcome {
        let host = self.filter.host_mut();
        host.next_request();
        for (name, value) in headers {
            host.request_headers.add(name, value.as_bytes());
        }
        let context = self.next_context;
        self.next_context += 1;
        let stream = self.filter.open_stream(context);
        let responses_before = self.filter.host().responses_sent;
        let resumed_before = self.filter.host().resumed[0];
        let action = self.filter.on_request_headers(stream, true);
        if action == Action::Continue {
            self.filter.close_stream(stream);
            return Outcome::Forwarded;
        }
        // Answer Redis calls until the request is decided.
        for _ in 0..3 {
            if self.filter.host().responses_sent > responses_before
                || self.filter.host().resumed[0] > resumed_before
            {
                break;
            }
            let Some(call) = self.filter.host().last_call.clone() else {
                break;
            };
            self.answer(stream, &call);
        }
        let host = self.filter.host();
        let outcome = if host.responses_sent > responses_before {
            Outcome::Answered(host.response.as_ref().unwrap().status)
        } else if host.resumed[0] > resumed_before {
            Outcome::Forwarded
        } else {
            Outcome::Hanging
        };
        if outcome == Outcome::Forwarded {
            let _ = self.filter.on_response_headers(stream, true);
        }
        self.filter.close_stream(stream);
        outcome
    }

    fn answer(&mut self, _stream: StreamId, call: &kit::fake::SentCall) {
        let token = call.token;
        if self.redis_down {
            self.filter.host_mut().call_response_headers.clear();
            self.filter.host_mut().call_response_body.clear();
            self.filter.on_http_call_response(token, 0, 0, false);
            return;
        }
        let args = call.webdis_args().unwrap();
        let reply = match args[0].as_slice() {
            b"EVALSHA" if self.forget_scripts => {
                self.forget_scripts = false;
                b"-NOSCRIPT No matching script. Please use EVAL.\r\n".to_vec()
            }
            b"EVALSHA" | b"EVAL" if self.next_reply.is_some() => {
                self.next_reply.take().unwrap_or_default()
            }
            b"EVALSHA" | b"EVAL" => {
                assert_eq!(args[2], b"1", "one key");
                let n = self.redis.entry(args[3].clone()).or_insert(0);
                *n += 1;
                format!(":{n}\r\n").into_bytes()
            }
            other => panic!("unexpected command {}", String::from_utf8_lossy(other)),
        };
        self.filter.host_mut().answer_http(200, &reply);
        let len = reply.len();
        self.filter.on_http_call_response(token, 1, len, false);
    }
}
