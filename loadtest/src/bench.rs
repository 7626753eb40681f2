//! The local stack every scenario shares: one Redis behind one webdis, two
//! upstream Envoys answering as an OpenAI-style API, and where results go.

use std::collections::BTreeMap;
use std::path::PathBuf;

use stack::{Envoy, EnvoyConfig, OpenAiStream, Redis, Reply, Usage, Webdis};

use crate::options::Options;
use crate::redis_stats::redis_commands_at;

/// The usage the JSON upstream reports in every answer.
pub const JSON_USAGE: Usage = Usage {
    prompt: 10,
    completion: 20,
    total: Some(30),
};
/// The usage the event-stream upstream reports at the end of every stream.
pub const SSE_USAGE: Usage = Usage {
    prompt: 12,
    completion: 30,
    total: Some(42),
};

/// What every scenario shares: the Redis both gateways count in, webdis in
/// front of it, the upstream Envoys, and where results go.
#[derive(Debug)]
pub struct Bench {
    pub opts: Options,
    pub redis: Redis,
    pub webdis: Webdis,
    pub json_upstream: Envoy,
    pub sse_upstream: Envoy,
    pub results_dir: PathBuf,
    /// Distinguishes this run's Redis keys from earlier runs'.
    pub run_id: String,
}

impl Bench {
    /// Starts the local stack for `opts`, its results under
    /// `loadtest/results/` (`only/` or `smoke/` for a partial run).
    ///
    /// # Panics
    /// When a process does not start or the results folder cannot be made.
    pub fn start(opts: Options) -> Bench {
        let results_dir = stack::repo_root().join("loadtest").join("results");
        // A partial run must not overwrite the last full report.
        let results_dir = if !opts.only.is_empty() {
            results_dir.join("only")
        } else if opts.smoke {
            results_dir.join("smoke")
        } else {
            results_dir
        };
        std::fs::create_dir_all(results_dir.join("wrk"))
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", results_dir.display()));
        println!("[loadtest] starting redis-server, webdis and two upstream Envoys");
        let redis = Redis::start();
        // 2 threads and 16 Redis connections each: enough that webdis is
        // not the first queue on the Redis path of two gateways.
        let webdis = Webdis::start_with(redis.port(), 2, 16);
        let json_body = String::from_utf8(Reply::openai(JSON_USAGE).body_bytes())
            .expect("the JSON answer is UTF-8");
        let json_upstream = Envoy::start(
            EnvoyConfig::new()
                .direct_response(200, "application/json", &json_body)
                .log_level("warning"),
        );
        let sse_body = String::from_utf8(OpenAiStream::new(SSE_USAGE).bytes())
            .expect("the event stream is UTF-8");
        let sse_upstream = Envoy::start(
            EnvoyConfig::new()
                .direct_response(200, "text/event-stream", &sse_body)
                .log_level("warning"),
        );
        Bench {
            opts,
            redis,
            webdis,
            json_upstream,
            sse_upstream,
            results_dir,
            run_id: format!("{}-{}", std::process::id(), stack::unix_now() as u64),
        }
    }

    /// Where wrk scripts go.
    pub fn script_dir(&self) -> PathBuf {
        self.results_dir.join("wrk")
    }

    /// A rule name unique to this run and `label`.
    pub fn rule(&self, label: &str) -> String {
        format!("lt-{label}-{}", self.run_id)
    }

    /// Commands Redis has executed, by name, from `INFO commandstats`
    /// (commands a Lua script runs are counted too, under their own names),
    /// leaving out `info` (this function's own).
    pub fn redis_commands(&self) -> BTreeMap<String, u64> {
        redis_commands_at(self.redis.port())
    }

    /// The sum of the integer values of every key matching `pattern`.
    pub fn redis_sum(&self, pattern: &str) -> u64 {
        let keys = match self.redis.command(&[b"KEYS", pattern.as_bytes()]) {
            Ok(reply) => reply.bulk_items(),
            Err(e) => panic!("KEYS {pattern}: {e}"),
        };
        keys.iter()
            .map(|key| match self.redis.command(&[b"GET", key]) {
                Ok(stack::resp::Resp::Bulk(Some(v))) => String::from_utf8_lossy(&v)
                    .parse::<u64>()
                    .unwrap_or_else(|_| panic!("key {key:?} holds {v:?}, not a count")),
                other => panic!("GET {:?}: {other:?}", String::from_utf8_lossy(key)),
            })
            .sum()
    }
}
