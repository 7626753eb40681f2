//! The `token_quota_request` driver does the whole request: every request
//! has its quota read, is let through, has its answer released and is
//! charged the usage of its answer, with the key of its client, so the
//! benchmark cannot be timing a shortcut.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use benches::drive::TokenQuotaDriver;
use benches::inputs::{
    chat_stream_answer, chat_stream_chunks, CHAT_BODY, CHAT_USAGE_TOTAL, TOKEN_QUOTA_CONFIG,
};

#[test]
fn the_answer_reports_its_usage_in_the_last_chunk_only() {
    let answer = chat_stream_answer();
    let chunks = chat_stream_chunks(&answer);
    assert_eq!(chunks.concat(), answer);
    let usage = br#""total_tokens":187"#;
    let has = |hay: &[u8]| hay.windows(usage.len()).any(|w| w == usage);
    assert!(!has(chunks[0]) && !has(chunks[1]) && has(chunks[2]));
    assert_eq!(CHAT_USAGE_TOTAL, 187);
}

#[test]
fn every_request_is_read_let_through_and_charged_its_usage() {
    let answer = chat_stream_answer();
    let chunks = chat_stream_chunks(&answer);
    let mut driver = TokenQuotaDriver::new(TOKEN_QUOTA_CONFIG).unwrap();
    for i in 1..=50 {
        assert_eq!(driver.request(CHAT_BODY, &chunks), 200, "request {i}");
        assert_eq!(driver.tokens_charged(), i * CHAT_USAGE_TOTAL as i64);
        assert_eq!(driver.redis_calls(), (i as u64, i as u64));
    }
    assert_eq!(driver.counter("token-quota.allowed"), 50);
    assert_eq!(driver.counter("token-quota.tokens"), 50 * CHAT_USAGE_TOTAL);
    assert_eq!(driver.counter("token-quota.usage_missing"), 0);
    assert_eq!(driver.counter("token-quota.redis_errors"), 0);

    // The last call is the charge, on the client's counter.
    let call = driver.host().last_call.as_ref().unwrap();
    let args = call.webdis_args().unwrap();
    assert_eq!(args[0], b"EVALSHA");
    let key = String::from_utf8(args[3].clone()).unwrap();
    assert!(
        key.starts_with(
            "token-quota:{llm:1000000000000000_per_60s:per_header:x-api-key:team-a-3f9a2c71}:"
        ),
        "{key}"
    );
    assert_eq!(args[5], CHAT_USAGE_TOTAL.to_string().as_bytes());

    // The streaming request went upstream asking for usage.
    let sent: serde_json::Value = serde_json::from_slice(&driver.host().request_body).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
}

#[test]
fn a_client_over_its_quota_is_refused_and_not_charged() {
    // The same driver refuses once the stand-in's count reaches the
    // limit: the 200s above are the plugin's decisions, not the driver's.
    let config = TOKEN_QUOTA_CONFIG.replace("1000000000000000", "300");
    let answer = chat_stream_answer();
    let chunks = chat_stream_chunks(&answer);
    let mut driver = TokenQuotaDriver::new(&config).unwrap();
    assert_eq!(driver.request(CHAT_BODY, &chunks), 200);
    assert_eq!(driver.request(CHAT_BODY, &chunks), 200);
    assert_eq!(driver.request(CHAT_BODY, &chunks), 429);
    assert_eq!(driver.tokens_charged(), 2 * CHAT_USAGE_TOTAL as i64);
    assert_eq!(driver.redis_calls().0, 2);
}
