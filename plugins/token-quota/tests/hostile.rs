//! Hostile input never panics the plugin (a panic in wasm kills the VM for
//! every request on its worker): random configurations, headers, request
//! bodies, Redis replies and answers, from a fixed-seed generator so a
//! failure replays exactly.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use kit::fake::FakeHost;
use kit::{Action, Filter};
use token_quota::TokenQuota;

use kit::fake::Rng;

/// Input helpers on top of the kit's test generator.
trait Pick {
    fn pick<'a>(&mut self, options: &[&'a [u8]]) -> &'a [u8];
    fn bytes(&mut self, max: usize) -> Vec<u8>;
}

impl Pick for Rng {
    fn pick<'a>(&mut self, options: &[&'a [u8]]) -> &'a [u8] {
        options[self.below(options.len())]
    }

    /// Bytes built from JSON-ish and HTTP-ish fragments plus raw noise.
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        const PIECES: &[&[u8]] = &[
            b"{",
            b"}",
            b"[",
            b"]",
            b"\"",
            b":",
            b",",
            b"\\",
            b"\\u",
            b"d800",
            b"usage",
            b"total_tokens",
            b"\"usageMetadata\":{",
            b"\"totalTokenCount\":",
            b"\"thoughtsTokenCount\":",
            b"\"eval_count\":",
            b"\"prompt_eval_count\":",
            b"\"done\":true",
            b"\"stream\":true",
            b"stream_options",
            b"include_usage",
            b"data: ",
            b"\n\n",
            b"\r\n",
            b"[DONE]",
            b"18446744073709551616",
            b"-1",
            b"1e9",
            b"null",
            b"true",
            b"\xff",
            b"\xc3",
            b"\xa9",
            b"%",
            b"/",
            b" ",
            b"\0",
        ];
        let len = self.below(max + 1);
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            if self.below(4) == 0 {
                out.push(self.next() as u8);
            } else {
                out.extend_from_slice(self.pick(PIECES));
            }
        }
        out
    }
}

const CONFIG: &str = r#"{"rule_name": "h", "rule_items": [
    {"limit_by_per_header": "x-api-key", "limit_keys": [{"key": "regexp:^a", "token_per_minute": 50}, {"key": "*", "token_per_hour": 1000}]},
    {"limit_by_per_ip": "from-header-x-forwarded-for", "limit_keys": [{"key": "0.0.0.0/0", "token_per_minute": 10}]},
    {"limit_by_per_param": "user", "limit_keys": [{"key": "*", "token_per_day": 99}]},
    {"limit_by_per_cookie": "sid", "limit_keys": [{"key": "*", "token_per_second": 5}]}],
  "max_body_bytes": 4096, "redis": {"webdis_cluster": "webdis"}}"#;

#[test]
fn random_requests_replies_and_answers_never_panic() {
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
    let mut filter: Filter<TokenQuota, FakeHost> = Filter::new(FakeHost::new());
    filter.configure(CONFIG.as_bytes().to_vec()).unwrap();
    for i in 0..3_000u32 {
        let host = filter.host_mut();
        host.next_request();
        host.last_call = None;
        for name in [
            "x-api-key",
            "x-forwarded-for",
            ":path",
            "cookie",
            "content-type",
        ] {
            if rng.below(3) > 0 {
                let mut value = rng.bytes(40);
                if name == ":path" {
                    let api: &[u8] = [
                        &b"/v1/chat/completions"[..],
                        b"/v1/messages",
                        b"/api/chat",
                        b"/v1",
                    ][rng.below(4)];
                    value.splice(0..0, api.iter().chain(b"?user=").copied());
                }
                host.request_headers.add(name, &value);
            }
        }
        let body = rng.bytes(200);
        host.request_body = body.clone();
        let s = filter.open_stream(i + 2);
        let _ = filter.on_request_headers(s, body.is_empty());
        if !body.is_empty() {
            let _ = filter.on_request_body(s, body.len(), true);
        }
        if rng.below(10) == 0 {
            filter
                .host_mut()
                .advance(std::time::Duration::from_millis(150));
            filter.on_tick();
        }
        // Whatever was asked of Redis gets a random answer, or none.
        if let Some(call) = filter.host().last_call.clone() {
            let reply = rng.bytes(30);
            let status = *[200u16, 503, 504, 0].get(rng.below(4)).unwrap();
            let _ = if status == 0 {
                filter.fail_call(&call)
            } else {
                filter.answer_http(&call, status, &reply)
            };
        }
        let host = filter.host_mut();
        host.response_headers.clear();
        let content_type: &[u8] = [
            &b"application/json"[..],
            b"text/event-stream",
            b"application/x-ndjson",
            b"text/plain",
            b"\xff",
        ][rng.below(5)];
        host.response_headers.add("content-type", content_type);
        if rng.below(4) == 0 {
            let encoding: &[u8] = [&b"gzip"[..], b"identity", b"", b"\xff"][rng.below(4)];
            host.response_headers.add("content-encoding", encoding);
        }
        if filter.on_response_headers(s, false) == Action::Continue {
            let answer = rng.bytes(600);
            let cut = rng.below(answer.len() + 1);
            for (part, last) in [(&answer[..cut], false), (&answer[cut..], true)] {
                filter.host_mut().response_body = part.to_vec();
                let _ = filter.on_response_body(s, part.len(), last);
            }
        }
        if let Some(call) = filter.host().last_call.clone() {
            let reply = rng.bytes(20);
            let _ = filter.answer_http(&call, 200, &reply);
        }
        filter.close_stream(s);
    }
}

#[test]
fn random_configurations_are_accepted_or_refused_never_panic() {
    let mut rng = Rng::new(0xD1B5_4A32_D192_ED03);
    let fragments: &[&[u8]] = &[
        br#""rule_name": "r""#,
        br#""rule_name": 7"#,
        br#""global_threshold": {"token_per_minute": 10}"#,
        br#""global_threshold": {"token_per_minute": -10}"#,
        br#""global_threshold": []"#,
        br#""rule_items": [{"limit_by_per_header": "k", "limit_keys": [{"key": "regexp:((", "token_per_hour": 1}]}]"#,
        br#""rule_items": [{"limit_by_per_ip": "from-nowhere", "limit_keys": []}]"#,
        br#""rule_items": [{}]"#,
        br#""redis": {"webdis_cluster": "w"}"#,
        br#""redis": {"transport": "smoke"}"#,
        br#""redis": {"service_name": ""}"#,
        br#""max_body_bytes": 0"#,
        br#""max_body_bytes": 18446744073709551615"#,
        br#""_rules_": [{"_match_domain_": ["*.x"], "rule_name": "{bad}"}]"#,
        br#""_rules_": [{"_match_route_": []}]"#,
        br#""_rules_": 5"#,
        br#""rejected_code": 99999999999999999999"#,
        br#""include_usage_path_suffixes": ["/chat/completions"]"#,
        br#""include_usage_path_suffixes": [""]"#,
        br#""include_usage_path_suffixes": [null]"#,
        br#""include_usage_path_suffixes": "/x""#,
    ];
    for _ in 0..2_000 {
        let mut config = b"{".to_vec();
        for k in 0..rng.below(7) {
            if k > 0 {
                config.push(b',');
            }
            config.extend_from_slice(rng.pick(fragments));
        }
        if rng.below(5) > 0 {
            config.push(b'}');
        }
        if rng.below(8) == 0 {
            let at = rng.below(config.len() + 1);
            config.insert(at, rng.next() as u8);
        }
        let mut filter: Filter<TokenQuota, FakeHost> = Filter::new(FakeHost::new());
        if let Err(e) = filter.configure(config.clone()) {
            let line = e.to_string();
            assert!(
                !line.is_empty() && !line.contains('\n'),
                "{line:?} for {}",
                String::from_utf8_lossy(&config)
            );
        }
    }
}
