//! The token quota's configuration from arbitrary bytes: refused on one
//! line or accepted, never a panic; an accepted one serves a request and
//! charges its answer.
#![no_main]

use libfuzzer_sys::fuzz_target;

const BODY: &[u8] = br#"{"model":"m","stream":true,"messages":[]}"#;
const ANSWER: &[u8] = br#"{"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;

fuzz_target!(|data: &[u8]| {
    fuzz_support::configure_and_drive::<token_quota::TokenQuota>(data, Some(BODY), ANSWER);
});
