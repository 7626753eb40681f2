//! The limiter over a `FakeHost`, its Redis calls answered by the kit's
//! in-memory `FakeRedis` (which runs the kit's counting script): one
//! request at a time with the `kit::fake_request` helpers.

#![allow(dead_code)]

use kit::fake::FakeHost;
use kit::fake_redis::FakeRedis;
use kit::fake_request::Outcome as Step;
use kit::Filter;
use limiter::Limiter;
use std::time::Duration;

pub struct Driver {
    pub filter: Filter<Limiter, FakeHost>,
    pub redis: FakeRedis,
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
            redis: FakeRedis::new(),
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

    /// The counts in Redis, in key order.
    pub fn counts(&self) -> Vec<i64> {
        self.redis.store.integers().map(|(_, n)| n).collect()
    }

    /// The Redis keys, as text.
    pub fn keys(&self) -> Vec<String> {
        self.redis
            .store
            .keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect()
    }

    /// Sends one request with `headers`, answers its Redis calls, lets a
    /// forwarded one have its response headers, and ends it.
    pub fn request(&mut self, headers: &[(&str, &str)]) -> Outcome {
        let (stream, step) = self.filter.send_request(headers);
        let step = self.filter.settle(&mut self.redis, step);
        assert!(
            self.redis.unknown.is_empty(),
            "the limiter sent a command Redis does not know: {:?}",
            self.redis.unknown
        );
        let outcome = match step {
            Step::Continued => {
                let _ = self
                    .filter
                    .send_response_headers(stream, &[(":status", "200")], true);
                Outcome::Forwarded
            }
            Step::Responded(answer) => Outcome::Answered(answer.status),
            Step::Waiting(_) | Step::Hanging => Outcome::Hanging,
        };
        self.filter.close_stream(stream);
        outcome
    }
}
