//! An OpenAI event stream cut into three chunks at every pair of places
//! (the usage event split as a proxy may split it, with the charge still in
//! flight while later chunks arrive): exactly one quota read and one
//! charge go to Redis, for exactly the reported tokens, and the answer
//! is released.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code
mod common;
use common::{Driver, Outcome, Upstream};

#[test]
fn one_charge_per_stream_at_every_split() {
    let head = r#""id":"chatcmpl-x","object":"chat.completion.chunk","created":1700000000,"model":"test-model""#;
    let mut body = String::new();
    for w in ["a", "b", "c", "d"] {
        body.push_str(&format!("data: {{{head},\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{w}\"}},\"finish_reason\":null}}],\"usage\":null}}\n\n"));
    }
    body.push_str(&format!("data: {{{head},\"choices\":[],\"usage\":{{\"prompt_tokens\":12,\"completion_tokens\":30,\"total_tokens\":42}}}}\n\n"));
    body.push_str("data: [DONE]\n\n");
    let bytes = body.as_bytes();
    let config = r#"{"rule_name": "s", "global_threshold": {"token_per_hour": 100000000}, "redis": {"webdis_cluster": "webdis"}}"#;
    let req = br#"{"model":"m","stream":true,"messages":[]}"#;
    let mut bad = Vec::new();
    for a in 1..bytes.len() {
        for b in [a + 1, a + 7, bytes.len() - 1] {
            if b <= a || b >= bytes.len() {
                continue;
            }
            let mut d = Driver::new(config);
            d.path = "/v1/chat/completions";
            let sent0 = d.host().calls_sent;
            let chunks: [&[u8]; 3] = [&bytes[..a], &bytes[a..b], &bytes[b..]];
            let out = d.request(
                &[],
                req,
                &Upstream {
                    content_type: "text/event-stream",
                    chunks: &chunks,
                },
            );
            let calls = d.host().calls_sent - sent0;
            let charged = d.charged("{s:");
            if out != Outcome::Answered200 || charged != 42 || calls != 2 {
                bad.push(format!(
                    "split {a},{b}: {out:?} charged {charged} calls {calls}"
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} bad of many, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
}
