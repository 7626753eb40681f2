//! The limiter's configuration, structure-aware: config-shaped JSON
//! (the keys it reads, values mostly of their type) generated from the
//! input, so that runs reach the checks behind the first type check.
#![no_main]

use fuzz_support::config_gen::{config, Plugin};
use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(value) = config(&mut u, Plugin::Limiter) else {
        return;
    };
    let Ok(bytes) = serde_json::to_vec(&value) else {
        return;
    };
    fuzz_support::configure_and_drive::<limiter::Limiter>(&bytes, None, b"{}");
});
