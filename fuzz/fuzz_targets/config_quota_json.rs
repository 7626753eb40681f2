//! The token quota's configuration, structure-aware: config-shaped JSON
//! (the keys it reads, values mostly of their type) generated from the
//! input, so that runs reach the checks behind the first type check.
#![no_main]

use fuzz_support::config_gen::{config, Plugin};
use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;

const BODY: &[u8] = br#"{"model":"m","stream":true,"messages":[]}"#;
const ANSWER: &[u8] = br#"{"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(value) = config(&mut u, Plugin::TokenQuota) else {
        return;
    };
    let Ok(bytes) = serde_json::to_vec(&value) else {
        return;
    };
    fuzz_support::configure_and_drive::<token_quota::TokenQuota>(&bytes, Some(BODY), ANSWER);
});
