//! Support for the criterion suite in `benches/kit.rs`: the inputs, the
//! kit-side helpers, the naive alternatives and the request drivers that
//! the bench groups share with this crate's tests.
//!
//! Every group puts the kit beside the obvious alternative under the same
//! input; the tests in `tests/` check that both sides produce the same
//! bytes and reach the same decisions, so the numbers compare like work.

// Bench support code: a setup failure should stop the run loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod drive;
pub mod inputs;
pub mod naive;
pub mod naive_limiter;
pub mod ours;
pub mod usage;
