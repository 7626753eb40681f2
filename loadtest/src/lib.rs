//! Load test of both plugins in real Envoy 1.40 gateways sharing one Redis
//! (behind webdis), driven by `wrk`, on loopback only.
//!
//! Builds nothing: it needs the release modules
//! (`cargo build --release --target wasm32-wasip1 -p limiter -p token-quota`;
//! `scripts/run.sh` does that and then runs this). It starts one
//! `redis-server`, one `webdis` in front of it, two upstream Envoys that
//! answer as an OpenAI-style API (`direct_response`: one JSON answer, one
//! server-sent event stream, both reporting usage), and for each scenario
//! one or two fresh gateway Envoys (one worker each). Everything is
//! stopped when it ends, panics or is interrupted (the processes are tied
//! to this one with `PR_SET_PDEATHSIG`).
//!
//! Scenarios (`scenarios.rs` lists them): overhead beside a no-filter
//! baseline with Envoy's C++ `local_ratelimit` as the native reference;
//! accuracy of the limiter across two gateways; token quota accuracy for JSON and SSE
//! answers; Redis calls per request from `INFO commandstats`; a soak of
//! 1,000,000 requests watching Envoy's resident memory; Redis stopped for
//! 5 s mid-run. Results go to `loadtest/results/` (JSON, Markdown, PNG
//! charts drawn by `loadtest/charts.py` with the repo's `.venv`).
//!
//! The exit status is 1 if any check failed, so `--smoke` (every scenario,
//! tiny) can run in `scripts/test.sh`.
//!
//! External mode (`--stack compose`, or `--gateway`/`--baseline`/`--redis`
//! and optionally `--token-quota-*`, `--limiter-pass`; `target.rs`,
//! `external.rs`): starts
//! nothing, drives a stack someone else runs with every scenario that needs
//! no process of its own, and lists the others in the report with the
//! reason. Results go to `loadtest/results/external/`.
//!
//! The crate is this library and the command line over it (`main.rs`:
//! arguments, choosing the local or the external run, printing, exit
//! code). Its files import downward only, in this order (a file imports
//! only files named before it in this list, a folder's files counting as
//! its name; `python3 scripts/kit_layers.py --circles-only --src
//! loadtest/src` checks that no files import each other in a circle):
//!
//! 1. Measuring tools: `wrk` (runs wrk, reads its results), `redis_stats`
//!    (`INFO commandstats`, counter sums), `process_stats` (`/proc`: CPU
//!    time, resident memory, CPU ticks), `pinning` (`taskset`).
//! 2. What a run is: `target` (an external stack's ports and routes),
//!    `options` (the command line's sizes and stack), `scenario` (what a
//!    scenario reports, and its checks), `bench` (the local stack).
//! 3. What both modes share: `soak` (the soak run), `overhead_checks` (what
//!    the overhead rows at a limit never reached must show).
//! 4. The scenarios: `cluster` (the Redis Cluster runs), `scenarios` (the
//!    local run's registry, which lists them too, and a file per family
//!    under `scenarios/`), `external` (the external mode's registry, its
//!    scenarios under `external/`, the overhead rows at limits never
//!    reached in `external/pass`).
//! 5. `report`: `results.json`, `report.md` and the charts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod bench;
pub mod cluster;
pub mod external;
pub mod options;
pub mod overhead_checks;
pub mod pinning;
pub mod process_stats;
pub mod redis_stats;
pub mod report;
pub mod scenario;
pub mod scenarios;
pub mod soak;
pub mod target;
pub mod wrk;
