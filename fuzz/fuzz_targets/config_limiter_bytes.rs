//! The limiter's configuration from arbitrary bytes: refused on one line
//! or accepted, never a panic; an accepted one serves a request.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuzz_support::configure_and_drive::<limiter::Limiter>(data, None, b"{}");
});
