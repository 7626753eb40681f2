//! Several streams open at once with their calls answered out of order,
//! and requests and answers that end with trailers, through our Higress
//! builds and Higress's Go-built plugins, against a real Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Test code: answers indexed after their count was asserted.
#![allow(clippy::indexing_slicing)]

mod common;

use common::{gpustack_plugin, higress_module, setup_with, REDIS_CLUSTER};
use serde_json::{json, Value};
use stack::resp::Resp;
use stack::Redis;
use testhost::{Host, PendingCall, Request, Setup, Verdict};

fn load(wasm: &[u8], config: &Value, setup: Setup) -> Host {
    Host::load(wasm, config.to_string().as_bytes(), setup)
        .unwrap_or_else(|e| panic!("the module did not start: {e}"))
}

fn redis_tokens(pending: &[PendingCall]) -> Vec<u32> {
    pending
        .iter()
        .map(|c| match c {
            PendingCall::Redis { token, cluster } => {
                assert!(!cluster.is_empty());
                *token
            }
            other => panic!("only Redis calls expected: {other:?}"),
        })
        .collect()
}

fn get(redis: &Redis, key: &[u8]) -> Resp {
    redis.command(&[b"GET", key]).unwrap()
}

/// The one Redis key whose name contains `part`.
fn key_with(redis: &Redis, part: &str) -> Vec<u8> {
    let keys: Vec<Vec<u8>> = redis
        .keys()
        .into_iter()
        .filter(|k| String::from_utf8_lossy(k).contains(part))
        .collect();
    let [key] = keys.as_slice() else {
        panic!("one key with {part} expected: {keys:?}")
    };
    key.clone()
}

#[test]
fn limiter_streams_open_at_once_get_their_own_answers() {
    let redis = Redis::start();
    let config = json!({
        "rule_name": "interleaved",
        "rule_items": [{"limit_by_per_header": "x-user",
                        "limit_keys": [{"key": "*", "query_per_minute": 1}]}],
        "show_limit_quota_header": true,
        "redis": {"service_name": "redis.dns", "timeout": 300},
    });
    let mut host = load(
        &higress_module("limiter"),
        &config,
        setup_with(&redis, REDIS_CLUSTER),
    );
    let user = |who: &str| Request::get("/").header("x-user", who);
    // A first request loads the counting script into Redis (its EVALSHA is
    // answered NOSCRIPT and re-sent as EVAL), so each call below is one.
    assert_eq!(host.run(&user("warm-up")).status, 200);
    let a1 = host.open(&user("a"));
    let a2 = host.open(&user("a"));
    let b1 = host.open(&user("b"));
    // One shared call in flight (the kit's shared increments): `a1` sent
    // it, `a2` waits on it as one more increment of `a`, and `b1` waits
    // for its answer too, instead of sending its own.
    let first = redis_tokens(&host.pending_calls());
    assert_eq!(first.len(), 1, "one call, for a");
    assert!(host.deliver(first[0]).unwrap());
    assert!(!host.deliver(first[0]).unwrap(), "delivered once");
    // `a2` and `b1` go on that answer, together in one call over two keys.
    let second = redis_tokens(&host.pending_calls());
    assert_eq!(second.len(), 1, "a2's and b1's increments in one call");
    assert!(host.deliver(second[0]).unwrap());
    let (b1, a2, a1) = (host.finish(b1), host.finish(a2), host.finish(a1));
    assert_eq!(
        (b1.verdict.clone(), b1.status),
        (Verdict::Forwarded, 200),
        "{b1:?}"
    );
    assert_eq!(
        (a1.verdict.clone(), a1.status),
        (Verdict::Forwarded, 200),
        "{a1:?}"
    );
    assert_eq!(a1.header("x-ratelimit-remaining").as_deref(), Some("0"));
    assert_eq!(a2.status, 429, "{a2:?}");
    assert_eq!(a2.upstream_headers, None);
    assert_eq!(
        get(&redis, &key_with(&redis, ":a}")),
        Resp::Bulk(Some(b"2".to_vec()))
    );
    assert_eq!(
        get(&redis, &key_with(&redis, ":b}")),
        Resp::Bulk(Some(b"1".to_vec()))
    );
}

fn chat_answer(total: u64) -> Vec<u8> {
    json!({
        "id": "c", "object": "chat.completion", "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": total / 2, "completion_tokens": total - total / 2, "total_tokens": total},
    })
    .to_string()
    .into_bytes()
}

fn chat(stream: bool) -> Vec<u8> {
    json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
        .to_string()
        .into_bytes()
}

fn quota_host(redis: &Redis, rule: &str) -> Host {
    quota_host_limited(redis, rule, 100_000)
}

fn quota_host_limited(redis: &Redis, rule: &str, per_minute: u64) -> Host {
    let config = json!({
        "rule_name": rule,
        "global_threshold": {"token_per_minute": per_minute},
        "redis": {"service_name": "redis.dns", "timeout": 300},
    });
    load(
        &higress_module("token_quota"),
        &config,
        setup_with(redis, REDIS_CLUSTER),
    )
}

#[test]
fn token_quota_streams_open_at_once_are_each_charged_their_own_usage() {
    let redis = Redis::start();
    let mut host = quota_host(&redis, "tq-interleaved");
    let ask = |total: u64| {
        let answer = chat_answer(total);
        Request::post("/v1/chat/completions", &[&chat(false)])
            .header("content-type", "application/json")
            .answer(200, &[("content-type", "application/json")], &[&answer])
    };
    let (small, large) = (ask(30), ask(100));
    let mut s = host.open(&small);
    let mut l = host.open(&large);
    // Under Higress an ABI 0.2.1 module's held headers hold the body too;
    // the kit lets them go after 100 ms (its ticks), and the body then
    // brings the quota read.
    assert!(host.pending_calls().is_empty());
    host.advance(std::time::Duration::from_millis(200)).unwrap();
    host.step(&mut s);
    host.step(&mut l);
    // Reads of one counter share calls: the first stream's read is in
    // flight, the second's waits for its reply and goes then.
    let reads = redis_tokens(&host.pending_calls());
    assert_eq!(reads.len(), 1, "one read in flight for the counter");
    assert!(host.deliver(reads[0]).unwrap());
    let next = redis_tokens(&host.pending_calls());
    assert_eq!(next.len(), 1, "the waiting read went at the reply");
    assert!(host.deliver(next[0]).unwrap());
    let (l, s) = (host.finish(l), host.finish(s));
    for (ex, total) in [(&s, 30), (&l, 100)] {
        assert_eq!(
            (ex.verdict.clone(), ex.status),
            (Verdict::Forwarded, 200),
            "{ex:?}"
        );
        assert_eq!(ex.response_body, chat_answer(total));
    }
    assert_eq!(
        get(&redis, &key_with(&redis, "tq-interleaved")),
        Resp::Bulk(Some(b"130".to_vec()))
    );
}

#[test]
fn token_quota_charges_an_answer_that_ends_with_trailers_once() {
    let redis = Redis::start();
    let mut host = quota_host(&redis, "tq-trailers");
    let stream = concat!(
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n",
        "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":26,\"total_tokens\":46}}\n\n",
        "data: [DONE]\n\n",
    );
    let (a, b) = stream.as_bytes().split_at(40);
    // The request ends with trailers too: its body is still read whole
    // (the plugin asks a streaming request for usage).
    let request = Request::post("/v1/chat/completions", &[&chat(true)])
        .header("content-type", "application/json")
        .trailer("x-request-checksum", "abc")
        .answer(200, &[("content-type", "text/event-stream")], &[a, b])
        .answer_trailer("x-upstream-done", "1");
    let ex = host.run(&request);
    assert_eq!(
        (ex.verdict.clone(), ex.status),
        (Verdict::Forwarded, 200),
        "{ex:?}"
    );
    assert_eq!(
        ex.response_body,
        stream.as_bytes(),
        "the stream passes byte for byte"
    );
    assert_eq!(
        ex.response_trailers,
        [(b"x-upstream-done".to_vec(), b"1".to_vec())]
    );
    assert_eq!(
        ex.upstream_trailers,
        [(b"x-request-checksum".to_vec(), b"abc".to_vec())]
    );
    let sent: Value = serde_json::from_slice(&ex.upstream_body).unwrap();
    assert_eq!(
        sent["stream_options"]["include_usage"],
        json!(true),
        "{sent}"
    );
    assert_eq!(
        get(&redis, &key_with(&redis, "tq-trailers")),
        Resp::Bulk(Some(b"46".to_vec()))
    );
    // A JSON answer the plugin holds whole until its end: the trailers end
    // it, the charge is made, and the held answer is let go.
    let json_answer = chat_answer(54);
    let request = Request::post("/v1/chat/completions", &[&chat(false)])
        .header("content-type", "application/json")
        .answer(
            200,
            &[("content-type", "application/json")],
            &[&json_answer[..10], &json_answer[10..]],
        )
        .answer_trailer("grpc-status", "0");
    let ex = host.run(&request);
    assert_eq!(
        (ex.verdict.clone(), ex.status),
        (Verdict::Forwarded, 200),
        "{ex:?}"
    );
    assert_eq!(ex.response_body, json_answer);
    assert_eq!(
        ex.response_trailers,
        [(b"grpc-status".to_vec(), b"0".to_vec())]
    );
    assert_eq!(
        get(&redis, &key_with(&redis, "tq-trailers")),
        Resp::Bulk(Some(b"100".to_vec()))
    );
}

/// gpustack-rate-limit (its README's "Example 2", one request a minute per
/// consumer): two requests of one consumer open at once. Redis runs their
/// scripts in the order sent, so the first is counted and the second
/// refused, whichever reply the plugin is handed first.
#[test]
fn go_rate_limit_pairs_each_reply_with_its_request_whatever_the_order() {
    let redis = Redis::start();
    let config = json!({
        "rule_name": "per-consumer-rule",
        "limit_combinations": [{
            "name": "per-consumer",
            "match": [{"source": "consumer", "value": "*"}],
            "query_limits": {"per_minute": 1},
        }],
        "show_limit_quota_header": true,
        "redis": {"service_name": "redis.static", "timeout": 300},
    });
    let mut host = load(
        &gpustack_plugin("gpustack-rate-limit", "1.0.1"),
        &config,
        setup_with(&redis, "outbound|80||redis.static"),
    );
    let completion = |who: &str| {
        Request::post(
            "/v1/chat/completions",
            &[br#"{"model":"qwen-turbo","messages":[]}"#],
        )
        .header("content-type", "application/json")
        .header("x-mse-consumer", who)
        // The upload ends with trailers: they reach the upstream.
        .trailer("x-upload-checksum", who)
    };
    let first = host.open(&completion("alice"));
    let second = host.open(&completion("alice"));
    let other = host.open(&completion("bob"));
    let calls = redis_tokens(&host.pending_calls());
    assert_eq!(calls.len(), 3, "one script call per request");
    for token in calls.iter().rev() {
        assert!(host.deliver(*token).unwrap());
    }
    let (other, second, first) = (host.finish(other), host.finish(second), host.finish(first));
    assert_eq!(
        (first.verdict.clone(), first.status),
        (Verdict::Forwarded, 200),
        "{first:?}"
    );
    assert_eq!(
        first.upstream_trailers,
        [(b"x-upload-checksum".to_vec(), b"alice".to_vec())]
    );
    assert_eq!(
        (other.verdict.clone(), other.status),
        (Verdict::Forwarded, 200),
        "{other:?}"
    );
    assert_eq!(second.status, 429, "{second:?}");
    assert_eq!(second.upstream_headers, None);
    assert_eq!(
        second.header("x-ratelimit-limited-key").as_deref(),
        Some("per-consumer-rule|per-consumer|consumer=alice|q:60s")
    );
}

/// ai-statistics (alibaba/higress `plugins/wasm-go/extensions/ai-statistics`
/// README, "Metric") on two streams open at once, each with its own model:
/// the per-stream state stays apart. An answer that ends with trailers
/// passes with them.
#[test]
fn go_statistics_keeps_streams_open_at_once_apart() {
    let setup = Setup::default()
        .property("route_name", "ai-route-aliyun.internal")
        .property("cluster_name", "outbound|443||llm-aliyun.internal.dns");
    let mut host = load(
        &gpustack_plugin("ai-statistics", "2.0.0"),
        &json!({}),
        setup,
    );
    let ask = |model: &str, input: u64, output: u64| {
        let answer = json!({
            "id": "c", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output},
        })
        .to_string();
        let question =
            format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hello"}}]}}"#);
        Request::post("/v1/chat/completions", &[question.as_bytes()])
            .header("content-type", "application/json")
            .answer(
                200,
                &[("content-type", "application/json")],
                &[answer.as_bytes()],
            )
    };
    let turbo = host.open(&ask("qwen-turbo", 10, 69));
    let max = host.open(&ask("qwen-max", 7, 3));
    assert!(host.pending_calls().is_empty());
    let (max, turbo) = (host.finish(max), host.finish(turbo));
    assert_eq!(max.status, 200, "{max:?}");
    assert_eq!(turbo.status, 200, "{turbo:?}");
    let metric = |host: &Host, model: &str, name: &str| {
        host.metric(&format!(
            "route.ai-route-aliyun.internal.upstream.outbound|443||llm-aliyun.internal.dns.model.{model}.consumer.none.metric.{name}"
        ))
    };
    assert_eq!(
        metric(&host, "qwen-turbo", "input_token"),
        Some(10),
        "{:?}",
        host.metrics()
    );
    assert_eq!(metric(&host, "qwen-turbo", "output_token"), Some(69));
    assert_eq!(metric(&host, "qwen-max", "input_token"), Some(7));
    assert_eq!(metric(&host, "qwen-max", "output_token"), Some(3));
    let with_trailers = ask("qwen-turbo", 1, 1).answer_trailer("x-upstream-done", "1");
    let ex = host.run(&with_trailers);
    assert_eq!(
        (ex.verdict.clone(), ex.status),
        (Verdict::Forwarded, 200),
        "{ex:?}"
    );
    assert_eq!(
        ex.response_trailers,
        [(b"x-upstream-done".to_vec(), b"1".to_vec())]
    );
}

/// Requests admitted together, before any of them was charged, are each
/// charged what they used, even once the count is past the limit (Higress's
/// `ai-token-ratelimit` adds nothing to a count already over it); the next
/// request is refused.
#[test]
fn token_quota_charges_streams_admitted_together_past_the_limit() {
    let redis = Redis::start();
    let mut host = quota_host_limited(&redis, "tq-together", 100);
    let ask = |total: u64| {
        let answer = chat_answer(total);
        Request::post("/v1/chat/completions", &[&chat(false)])
            .header("content-type", "application/json")
            .answer(200, &[("content-type", "application/json")], &[&answer])
    };
    let mut open: Vec<_> = [100, 30, 20].map(|total| host.open(&ask(total))).into();
    host.advance(std::time::Duration::from_millis(200)).unwrap();
    for stream in &mut open {
        host.step(stream);
    }
    // The three reads share calls: one in flight, two waiting for it.
    assert_eq!(
        redis_tokens(&host.pending_calls()).len(),
        1,
        "one quota read in flight"
    );
    for stream in open {
        let ex = host.finish(stream);
        assert_eq!(
            (ex.verdict.clone(), ex.status),
            (Verdict::Forwarded, 200),
            "{ex:?}"
        );
    }
    assert_eq!(
        get(&redis, &key_with(&redis, "tq-together")),
        Resp::Bulk(Some(b"150".to_vec()))
    );
    let ex = host.run(&ask(1));
    assert_eq!(ex.status, 429, "{ex:?}");
}
