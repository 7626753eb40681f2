//! The criterion suite: the kit beside the obvious alternative, one group
//! per question, each group in its own module under `kit/`.
//!
//! ```text
//! cargo bench -p benches                     # everything, about 2 minutes once built
//! cargo bench -p benches -- resp_encode      # one group
//! ```

// Bench code: a failed setup should stop the run loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use criterion::{criterion_main, Criterion};
use std::time::Duration;

#[path = "kit/config.rs"]
mod config;
#[path = "kit/request.rs"]
mod request;
#[path = "kit/resp.rs"]
mod resp;
#[path = "kit/usage.rs"]
mod usage;

/// Settings of every group: 1 s of warm-up, 2 s of measurement and 10,000
/// bootstrap resamples (criterion's 100,000 take seconds per benchmark
/// without its rayon feature) keep the 31 benchmarks near 2 minutes. The
/// command line overrides them (`-- --measurement-time 10 --nresamples
/// 100000` for steadier numbers).
pub(crate) fn settings() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(100)
        .nresamples(10_000)
}

criterion_main!(
    resp::encode,
    resp::decode,
    config::parse,
    request::limiter,
    usage::usage
);
