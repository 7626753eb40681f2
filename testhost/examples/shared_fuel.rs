//! Wasm instructions per request when requests share Redis calls: the
//! limiter's `--higress` build, `n` requests opened at once (one hot key,
//! or `n` keys), their calls answered until none is left, then finished;
//! fuel (wasmtime's instruction count) and Redis calls per request over
//! many such rounds. Deterministic: the clock is virtual, Redis is real.
//!
//! ```sh
//! bash scripts/build.sh --higress
//! cargo run -p testhost --example shared_fuel [-- target/wasm/higress/limiter.wasm]
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use stack::Redis;
use testhost::{Host, Request, Setup};

/// Rounds per batch size, after the warm-up.
const ROUNDS: u64 = 40;

fn main() {
    let module = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/wasm/higress/limiter.wasm".to_string());
    let wasm = std::fs::read(&module).unwrap_or_else(|e| {
        panic!("{module}: {e}; build it first: bash scripts/build.sh --higress")
    });
    let config = br#"{"rule_name": "measure", "rule_items": [{"limit_by_per_header": "x-mse-consumer", "limit_keys": [{"key": "*", "query_per_second": 1000000000}]}], "redis": {"service_name": "redis.dns", "timeout": 1000}}"#;
    let redis = Redis::start();
    let setup = || {
        Setup::default().redis(
            "outbound|6379||redis.dns",
            format!("127.0.0.1:{}", redis.port()).parse().unwrap(),
        )
    };
    println!("{module}");
    println!("| requests at once | keys | fuel per request | Redis calls per request |");
    println!("|---:|---|---:|---:|");
    for keys in ["one", "each its own"] {
        for n in [1u64, 2, 4, 8, 16, 32] {
            let mut host = Host::load(&wasm, config, setup()).unwrap();
            let request = |i: u64| {
                let who = if keys == "one" {
                    "alice".to_string()
                } else {
                    format!("user-{i}")
                };
                Request::get("/").header("x-mse-consumer", who)
            };
            // The first request loads the script (NOSCRIPT, then EVAL).
            for i in 0..3 {
                assert_eq!(host.run(&request(i)).status, 200);
            }
            let redis_calls = |host: &Host| {
                host.host_calls()
                    .1
                    .get("proxy_redis_call")
                    .copied()
                    .unwrap_or(0)
            };
            let (fuel, calls) = (host.fuel_used(), redis_calls(&host));
            for round in 0..ROUNDS {
                let streams: Vec<_> = (0..n).map(|i| host.open(&request(round * n + i))).collect();
                loop {
                    let pending = host.pending_calls();
                    if pending.is_empty() {
                        break;
                    }
                    for call in pending {
                        host.deliver(call.token()).unwrap();
                    }
                }
                for stream in streams {
                    assert_eq!(host.finish(stream).status, 200);
                }
            }
            let requests = ROUNDS * n;
            println!(
                "| {n} | {keys} | {:.0} | {:.3} |",
                (host.fuel_used() - fuel) as f64 / requests as f64,
                (redis_calls(&host) - calls) as f64 / requests as f64
            );
        }
    }
}
