//! A proxy-wasm host for tests, on wasmtime, modelled on Higress: it loads
//! any proxy-wasm module (ABI `0_2_1` or Higress's `0_2_100`, Rust or Go
//! builds with WASI preview 1), drives streams the way Envoy and Higress do
//! (one at a time, or several open at once with their calls answered in
//! any order),
//! and implements Higress's Redis host calls over real TCP to a real
//! `redis-server`.
//!
//! # Examples
//!
//! ```no_run
//! use testhost::{Host, Request, Setup, Verdict};
//!
//! let wasm = std::fs::read("target/wasm/higress/limiter.wasm").unwrap();
//! let setup = Setup::default().redis("outbound|6379||redis.dns", "127.0.0.1:6379".parse().unwrap());
//! let mut host = Host::load(&wasm, br#"{"rule_name":"r"}"#, setup).unwrap();
//! let ex = host.run(&Request::get("/").header("x-user", "alice"));
//! assert_eq!(ex.verdict, Verdict::Forwarded);
//! ```

pub mod abi;
pub mod clock;
pub mod exchange;
mod fuel_trace;
mod guest;
pub mod host;
mod host_calls;
pub mod redis;
pub mod report;
pub mod resp;
pub mod script;
pub mod state;
mod stream_calls;
pub mod streams;

pub use abi::AbiVersion;
pub use clock::VirtualClock;
pub use exchange::{Exchange, Request, Upstream, Verdict};
pub use host::{Error, Host, Setup};
pub use redis::RedisCall;
pub use state::{HttpAnswer, LogLine, Metric, Pairs};
pub use streams::{OpenStream, PendingCall};
