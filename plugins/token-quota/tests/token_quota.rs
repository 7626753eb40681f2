//! The token quota's behaviour, natively, over the kit's `FakeHost`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use common::{openai_json, Driver, Outcome, Upstream};
use kit::fake::FakeHost;
use kit::Filter;
use token_quota::TokenQuota;

fn config(body: &str) -> String {
    format!(r#"{{{body}, "redis": {{"webdis_cluster": "webdis", "timeout": 250}}}}"#)
}

const CHAT: &[u8] = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

#[test]
fn quota_of_250_with_100_per_answer_goes_200_200_200_429() {
    let mut d = Driver::new(&config(
        r#""rule_name": "t", "global_threshold": {"token_per_minute": 250}"#,
    ));
    d.at_second(10);
    let answer = openai_json(100);
    let upstream = Upstream {
        content_type: "application/json",
        chunks: &[&answer],
    };
    let outcomes: Vec<_> = (0..4).map(|_| d.request(&[], CHAT, &upstream)).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Answered200,
            Outcome::Answered200,
            Outcome::Answered200,
            Outcome::Refused(429)
        ]
    );
    let response = d.host().response.clone().unwrap();
    assert_eq!(
        response.headers.get_str("x-tokenratelimit-limit"),
        Some("250")
    );
    assert_eq!(
        response.headers.get_str("x-tokenratelimit-remaining"),
        Some("0")
    );
    assert_eq!(
        response.headers.get_str("x-tokenratelimit-reset"),
        Some("50")
    );
    assert_eq!(response.body, b"Too many requests");
    assert_eq!(d.charged("token-quota:{t:250_per_60s:global}:"), 300);
    // Now over: refused from the cache, without asking Redis.
    let calls = d.host().calls_sent;
    assert_eq!(d.request(&[], CHAT, &upstream), Outcome::Refused(429));
    assert_eq!(d.host().calls_sent, calls);
    assert_eq!(d.counter("token-quota.limited_locally"), 1);
    assert_eq!(d.counter("token-quota.tokens"), 300);
}

#[test]
fn streamed_answers_are_charged_their_final_usage_split_across_chunks() {
    let mut d = Driver::new(&config(
        r#""rule_name": "s", "global_threshold": {"token_per_hour": 100000}"#,
    ));
    let stream = concat!(
        "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}],\"usage\":null}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":31,\"total_tokens\":42}}\n\n",
        "data: [DONE]\n\n"
    )
    .as_bytes();
    let split = stream.windows(7).position(|w| w == b"\"total_").unwrap() + 3;
    let upstream = Upstream {
        content_type: "text/event-stream",
        chunks: &[&stream[..40], &stream[40..split], &stream[split..]],
    };
    let body = br#"{"model":"m","stream":true,"messages":[]}"#;
    assert_eq!(d.request(&[], body, &upstream), Outcome::Answered200);
    assert_eq!(d.charged("{s:100000_per_3600s:global}"), 42);
}

#[test]
fn streaming_requests_ask_for_usage_with_an_exact_content_length() {
    let mut d = Driver::new(&config(
        r#""rule_name": "r", "global_threshold": {"token_per_hour": 100000}"#,
    ));
    let body = br#"{"model":"m","stream":true,"messages":[]}"#;
    let upstream = Upstream {
        content_type: "application/json",
        chunks: &[&openai_json(1)],
    };
    assert_eq!(d.request(&[], body, &upstream), Outcome::Answered200);
    let sent = d.host().request_body.clone();
    let json: serde_json::Value = serde_json::from_slice(&sent).unwrap();
    assert_eq!(
        json["stream_options"]["include_usage"],
        serde_json::Value::Bool(true)
    );
    assert_eq!(
        d.host().request_headers.get_str("content-length"),
        Some(sent.len().to_string().as_str())
    );
}

#[test]
fn bodies_that_are_not_json_pass_untouched() {
    let mut d = Driver::new(&config(
        r#""rule_name": "r", "global_threshold": {"token_per_hour": 100000}"#,
    ));
    let upstream = Upstream {
        content_type: "text/plain",
        chunks: &[b"fine"],
    };
    for body in [&b"plain text, not json"[..], b"{\"stream\": true", b"[1,2]"] {
        assert_eq!(d.request(&[], body, &upstream), Outcome::Answered200);
        assert_eq!(d.host().request_body, body);
        assert_eq!(
            d.host().request_headers.get_str("content-length"),
            Some(body.len().to_string().as_str())
        );
    }
    assert_eq!(
        d.counter("token-quota.usage_missing"),
        0,
        "text answers are not scanned"
    );
}

#[test]
fn requests_without_a_body_never_hang() {
    let mut d = Driver::new(&config(
        r#""rule_name": "r", "global_threshold": {"token_per_hour": 100000}"#,
    ));
    let upstream = Upstream {
        content_type: "application/json",
        chunks: &[&openai_json(5)],
    };
    assert_eq!(d.request(&[], b"", &upstream), Outcome::Answered200);
    assert_eq!(d.charged("{r:100000_per_3600s:global}"), 5);
}

#[test]
fn separate_keys_have_separate_quotas() {
    let mut d = Driver::new(&config(
        r#""rule_name": "k", "rule_items": [{"limit_by_per_header": "x-api-key", "limit_keys": [{"key": "*", "token_per_minute": 150}]}]"#,
    ));
    d.at_second(0);
    let answer = openai_json(100);
    let upstream = Upstream {
        content_type: "application/json",
        chunks: &[&answer],
    };
    for key in ["alice", "bob/with slash"] {
        assert_eq!(
            d.request(&[("x-api-key", key)], CHAT, &upstream),
            Outcome::Answered200
        );
        assert_eq!(
            d.request(&[("x-api-key", key)], CHAT, &upstream),
            Outcome::Answered200
        );
        assert_eq!(
            d.request(&[("x-api-key", key)], CHAT, &upstream),
            Outcome::Refused(429),
            "{key}"
        );
    }
    assert_eq!(d.charged("header:x-api-key:alice}"), 200);
    assert_eq!(d.charged("header:x-api-key:bob/with slash}"), 200);
}

#[test]
fn malformed_or_missing_usage_charges_nothing() {
    let mut d = Driver::new(&config(
        r#""rule_name": "m", "global_threshold": {"token_per_hour": 100000}"#,
    ));
    let cases: [&[u8]; 5] = [
        br#"{"usage": {"total_tokens": 99999999999999999999999}}"#,
        br#"{"content": "\"usage\": {\"total_tokens\": 9}"}"#,
        br#"{"usage": {"total_tokens": 12"#,
        b"not json at all",
        br#"{"choices": []}"#,
    ];
    for answer in cases {
        let upstream = Upstream {
            content_type: "application/json",
            chunks: &[answer],
        };
        assert_eq!(d.request(&[], CHAT, &upstream), Outcome::Answered200);
    }
    let deep = "[".repeat(10_000);
    let upstream = Upstream {
        content_type: "application/json",
        chunks: &[deep.as_bytes()],
    };
    assert_eq!(d.request(&[], CHAT, &upstream), Outcome::Answered200);
    assert_eq!(d.charged("{m:100000_per_3600s:global}"), 0);
    assert_eq!(d.counter("token-quota.usage_missing"), 6);
}

#[test]
fn anthropic_usage_is_input_plus_output() {
    let mut d = Driver::new(&config(
        r#""rule_name": "a", "global_threshold": {"token_per_hour": 100000}"#,
    ));
    let answer = br#"{"type":"message","content":[],"usage":{"input_tokens":7,"output_tokens":5}}"#;
    let upstream = Upstream {
        content_type: "application/json",
        chunks: &[&answer[..20], &answer[20..]],
    };
    assert_eq!(d.request(&[], CHAT, &upstream), Outcome::Answered200);
    assert_eq!(d.charged("{a:100000_per_3600s:global}"), 12);
}

#[test]
fn redis_failure_follows_the_failure_mode() {
    let upstream_answer = openai_json(3);
    let upstream = Upstream {
        content_type: "application/json",
        chunks: &[&upstream_answer],
    };
    let mut d = Driver::new(&config(
        r#""rule_name": "f", "global_threshold": {"token_per_hour": 10}"#,
    ));
    d.redis.down = true;
    assert_eq!(d.request(&[], CHAT, &upstream), Outcome::Answered200);
    let mut d = Driver::new(&config(
        r#""rule_name": "f", "global_threshold": {"token_per_hour": 10}, "failure_mode_deny": true"#,
    ));
    d.redis.down = true;
    assert_eq!(d.request(&[], CHAT, &upstream), Outcome::Refused(503));
}

#[test]
fn oversized_request_bodies_get_413() {
    let mut d = Driver::new(&config(
        r#""rule_name": "b", "global_threshold": {"token_per_hour": 10}, "max_body_bytes": 1024"#,
    ));
    let upstream = Upstream {
        content_type: "application/json",
        chunks: &[b"{}"],
    };
    assert_eq!(
        d.request(&[], &[b'x'; 4096], &upstream),
        Outcome::Refused(413)
    );
}

#[test]
fn invalid_configs_are_refused_naming_the_field() {
    let cases = [
        (
            config(r#""global_threshold": {"token_per_minute": 10}"#),
            "rule_name: is required",
        ),
        (
            config(r#""rule_name": "r", "global_threshold": {"query_per_minute": 10}"#),
            "global_threshold: needs one of token_per_second",
        ),
        (
            config(r#""rule_name": "r", "global_threshold": {"token_per_minute": 0}"#),
            "global_threshold.token_per_minute: must be a positive integer, got 0",
        ),
        (
            config(
                r#""rule_name": "r", "global_threshold": {"token_per_minute": 1}, "max_body_bytes": -5"#,
            ),
            "max_body_bytes: must be a non-negative integer, got -5",
        ),
    ];
    for (json, want) in cases {
        let mut filter: Filter<TokenQuota, FakeHost> = Filter::new(FakeHost::new());
        let err = filter
            .configure(json.clone().into_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{json}\n got: {err}\nwant: {want}");
    }
}

#[test]
fn the_charge_is_written_before_the_last_bytes_are_released() {
    // Envoy ends a content-length answer with an empty last chunk: the
    // bytes before it must be held, or the client is done before the charge.
    let mut d = Driver::new(&config(
        r#""rule_name": "e", "global_threshold": {"token_per_hour": 100000}"#,
    ));
    let answer = openai_json(9);
    let upstream = Upstream {
        content_type: "application/json",
        chunks: &[&answer, b""],
    };
    assert_eq!(d.request(&[], CHAT, &upstream), Outcome::Answered200);
    assert!(d.charged_before_release);
    assert_eq!(d.released, answer);
    assert_eq!(d.charged("{e:100000_per_3600s:global}"), 9);

    // An event stream flows until its usage event, then holds the rest.
    let head = b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n";
    let usage = b"data: {\"choices\":[],\"usage\":{\"total_tokens\":4}}\n\n";
    let upstream = Upstream {
        content_type: "text/event-stream",
        chunks: &[head, usage, b"data: [DONE]\n\n", b""],
    };
    assert_eq!(d.request(&[], CHAT, &upstream), Outcome::Answered200);
    assert!(d.charged_before_release);
    assert_eq!(d.released.len(), head.len() + usage.len() + 14);
    assert_eq!(d.charged("{e:100000_per_3600s:global}"), 13);
}

#[test]
fn per_key_quotas_hold_when_headers_leave_before_the_body() {
    // Without allow_on_headers_stop_iteration the kit lets the headers go
    // before the body; Envoy then refuses header reads, so the key must
    // come from the headers phase.
    let mut d = Driver::new(&config(
        r#""rule_name": "h", "rule_items": [{"limit_by_per_header": "x-api-key", "limit_keys": [{"key": "*", "token_per_hour": 10}]}]"#,
    ));
    let host = d.host();
    host.next_request();
    host.request_headers.add("x-api-key", b"carol");
    host.request_headers.add("content-length", b"2");
    host.request_body = b"{}".to_vec();
    let s = d.filter.open_stream(9);
    assert_eq!(d.filter.on_request_headers(s, false), kit::Action::Pause);
    d.host().advance(std::time::Duration::from_millis(150));
    d.filter.on_tick();
    assert_eq!(d.host().resumed[0], 1, "headers let go by the probe");
    d.host().request_headers_sent = true;
    assert_eq!(
        d.filter.on_request_body(s, 2, true),
        kit::Action::Pause,
        "reading the quota"
    );
    let call = d.host().last_call.clone().unwrap();
    let args = call.webdis_args().unwrap();
    // The read: the counting script adding 0 to the key.
    assert_eq!(args[0], b"EVALSHA");
    assert_eq!(args[5], b"0");
    assert!(
        String::from_utf8_lossy(&args[3]).contains("header:x-api-key:carol}"),
        "{:?}",
        String::from_utf8_lossy(&args[3])
    );
}

#[test]
fn host_calls_per_request_stay_few() {
    // Each host call is a VM crossing in the proxy. A chat request with a
    // body, its quota read, a JSON answer in one chunk plus Envoy's empty
    // last one, and its charge:
    let mut d = Driver::new(&config(
        r#""rule_name": "c", "global_threshold": {"token_per_hour": 100000}"#,
    ));
    let answer = openai_json(10);
    let upstream = Upstream {
        content_type: "application/json",
        chunks: &[&answer, b""],
    };
    let before = d.host().host_calls.get();
    assert_eq!(d.request(&[], CHAT, &upstream), Outcome::Answered200);
    let calls = d.host().host_calls.get() - before;
    //   request headers: clock (plugin), accept-encoding set, :path read,
    //     clock (kit, holding), probe tick
    //   request body: read it, read the quota (an increment by 0)
    //   quota reply (delivered on the root context, as Envoy delivers
    //     it): the request's context made effective, reply, resume
    //   response headers: content-encoding, content-type
    //   answer: read the chunk (the empty last one needs no read), charge
    //   charge reply: the request's context, reply, resume
    // Counters are published on the tick, not per request.
    assert_eq!(calls, 17);

    // The first body arrived while its headers were held: the proxy
    // honours held headers, the probe is over, and later requests need
    // neither the kit's clock nor the probe tick.
    let before = d.host().host_calls.get();
    assert_eq!(d.request(&[], CHAT, &upstream), Outcome::Answered200);
    assert_eq!(d.host().host_calls.get() - before, 15);
}
