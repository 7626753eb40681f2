//! Every configuration example of Higress's `ai-token-ratelimit` README
//! configures the token quota unchanged and limits as the README says.
//!
//! The examples are the README's YAML (alibaba/higress,
//! `plugins/wasm-go/extensions/ai-token-ratelimit/README.md` and
//! `README_EN.md`: the six of "配置示例" / "Configuration Example", the
//! same in both but for their comments, and the plugin's `defaultConfig`
//! of "完整示例" / "Example") written out by hand as the JSON a gateway
//! passes the plugin. YAML's unquoted `key: 102234` and `key: 123456` are
//! JSON numbers. (The Chinese README indents one `token_per_second: 10`
//! with a tab, which YAML forbids; it is read as the English README
//! writes it.)
//!
//! Their `redis` block names a Higress service. A build with the native
//! transport (`--features higress`) takes it as written; a default build,
//! made for upstream Envoy, refuses it, so there the block alone is
//! swapped for a webdis one. Requests go through `kit::fake_request`,
//! which answers Redis as either transport is answered.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use kit::fake::FakeHost;
use kit::fake_request::Outcome;
use kit::{Action, Filter, StreamId};
use token_quota::TokenQuota;

/// The README's `redis` block of the six configuration examples.
const STATIC_REDIS: &str = r#""redis": {"service_name": "redis.static"}"#;

/// "自定义规则组全局限流" / "Custom Rule Group Global Rate Limiting".
const GLOBAL: &str = r#"{
  "rule_name": "routeA-global-limit-rule",
  "global_threshold": {"token_per_minute": 1000},
  "redis": {"service_name": "redis.static"}
}"#;

/// "识别请求参数 apikey，进行区别限流" / "Identify request parameter apikey
/// for differentiated rate limiting".
const PARAM: &str = r#"{
  "rule_name": "default_rule",
  "rule_items": [
    {"limit_by_param": "apikey", "limit_keys": [
      {"key": "9a342114-ba8a-11ec-b1bf-00163e1250b5", "token_per_minute": 10},
      {"key": "a6a6d7f2-ba8a-11ec-bec2-00163e1250b5", "token_per_hour": 100}]},
    {"limit_by_per_param": "apikey", "limit_keys": [
      {"key": "regexp:^a.*", "token_per_second": 10},
      {"key": "regexp:^b.*", "token_per_minute": 100},
      {"key": "*", "token_per_hour": 1000}]}
  ],
  "redis": {"service_name": "redis.static"}
}"#;

/// "识别请求头 x-ca-key，进行区别限流" / "Identify request header x-ca-key
/// for differentiated rate limiting".
const HEADER: &str = r#"{
  "rule_name": "default_rule",
  "rule_items": [
    {"limit_by_header": "x-ca-key", "limit_keys": [
      {"key": 102234, "token_per_minute": 10},
      {"key": 308239, "token_per_hour": 10}]},
    {"limit_by_per_header": "x-ca-key", "limit_keys": [
      {"key": "regexp:^a.*", "token_per_second": 10},
      {"key": "regexp:^b.*", "token_per_minute": 100},
      {"key": "*", "token_per_hour": 1000}]}
  ],
  "redis": {"service_name": "redis.static"}
}"#;

/// "根据请求头 x-forwarded-for 获取对端IP，进行区别限流" / "Get the peer IP
/// using the request header x-forwarded-for for differentiated rate
/// limiting".
const CLIENT_IP: &str = r#"{
  "rule_name": "default_rule",
  "rule_items": [
    {"limit_by_per_ip": "from-header-x-forwarded-for", "limit_keys": [
      {"key": "1.1.1.1", "token_per_day": 10},
      {"key": "1.1.1.0/24", "token_per_day": 100},
      {"key": "0.0.0.0/0", "token_per_day": 1000}]}
  ],
  "redis": {"service_name": "redis.static"}
}"#;

/// "识别consumer，进行区别限流" / "Identify consumer for differentiated
/// rate limiting".
const CONSUMER: &str = r#"{
  "rule_name": "default_rule",
  "rule_items": [
    {"limit_by_consumer": "", "limit_keys": [
      {"key": "consumer1", "token_per_second": 10},
      {"key": "consumer2", "token_per_hour": 100}]},
    {"limit_by_per_consumer": "", "limit_keys": [
      {"key": "regexp:^a.*", "token_per_second": 10},
      {"key": "regexp:^b.*", "token_per_minute": 100},
      {"key": "*", "token_per_hour": 1000}]}
  ],
  "redis": {"service_name": "redis.static"}
}"#;

/// "识别cookie中的键值对，进行区别限流" / "Identify key-value pairs in
/// cookies for differentiated rate limiting".
const COOKIE: &str = r#"{
  "rule_name": "default_rule",
  "rule_items": [
    {"limit_by_cookie": "key1", "limit_keys": [
      {"key": "value1", "token_per_minute": 10},
      {"key": "value2", "token_per_hour": 100}]},
    {"limit_by_per_cookie": "key1", "limit_keys": [
      {"key": "regexp:^a.*", "token_per_second": 10},
      {"key": "regexp:^b.*", "token_per_minute": 100},
      {"key": "*", "token_per_hour": 1000}]}
  ],
  "rejected_code": 200,
  "rejected_msg": "{\"code\":-1,\"msg\":\"Too many requests\"}",
  "redis": {"service_name": "redis.static"}
}"#;

/// "完整示例" / "Example": the `defaultConfig` of the plugin's
/// `WasmPlugin`, its Redis a DNS service on 6379.
const FULL: &str = r#"{
  "rule_name": "default_limit_by_param_apikey",
  "rule_items": [
    {"limit_by_param": "apikey", "limit_keys": [{"key": 123456, "token_per_minute": 200}]}
  ],
  "redis": {"service_name": "redis.dns", "service_port": 6379}
}"#;

/// Every example with the Higress cluster its `redis` block names.
const EXAMPLES: [(&str, &str); 7] = [
    (GLOBAL, "outbound|80||redis.static"),
    (PARAM, "outbound|80||redis.static"),
    (HEADER, "outbound|80||redis.static"),
    (CLIENT_IP, "outbound|80||redis.static"),
    (CONSUMER, "outbound|80||redis.static"),
    (COOKIE, "outbound|80||redis.static"),
    (FULL, "outbound|6379||redis.dns"),
];

/// The README's question of "完整示例".
const QUESTION: &[u8] = br#"{"model":"gpt-3","messages":[{"role":"user","content":"Hello, who are you?"}],"stream":false}"#;

/// The README's answer to it (its content shortened): 46 tokens.
const ANSWER: &[u8] = br#"{"id":"88cfa80f-545d-93b4-8ff3-3f5245ca33ba","choices":[{"index":0,"message":{"role":"assistant","content":"I am Tongyi Qianwen."},"finish_reason":"stop"}],"created":1719909825,"model":"qwen-turbo","object":"chat.completion","usage":{"prompt_tokens":13,"completion_tokens":33,"total_tokens":46}}"#;

/// The token quota configured with `example`: as written where this build
/// has Higress's Redis transport, with the `redis` block swapped for
/// webdis where it has not.
fn quota(example: &str) -> Filter<TokenQuota, FakeHost> {
    let cluster = EXAMPLES
        .iter()
        .find(|(e, _)| *e == example)
        .map(|(_, cluster)| *cluster)
        .unwrap();
    let config = if kit::NATIVE_TRANSPORT {
        example.to_owned()
    } else {
        let start = example.find(r#""redis": {"#).unwrap();
        let end = start + example[start..].find('}').unwrap() + 1;
        format!(
            r#"{}"redis": {{"webdis_cluster": "webdis"}}{}"#,
            &example[..start],
            &example[end..]
        )
    };
    let mut filter = Filter::new(FakeHost::new());
    filter
        .configure(config.into_bytes())
        .unwrap_or_else(|e| panic!("the README's example is refused: {e}\n{example}"));
    if kit::NATIVE_TRANSPORT {
        assert_eq!(filter.host().redis_clusters, [cluster], "{example}");
    }
    filter
}

/// What one request met at its quota check.
#[derive(Debug)]
struct Checked {
    stream: StreamId,
    /// The counter key up to its window start, `None` when no limit applied.
    counter: Option<String>,
    outcome: Outcome,
}

/// Sends the README's question to `path` with `headers`; if its quota is
/// read, Redis answers that `used` tokens are counted so far.
fn ask(
    filter: &mut Filter<TokenQuota, FakeHost>,
    path: &str,
    headers: &[(&str, &str)],
    used: u64,
) -> Checked {
    let mut all = vec![
        (":authority", "qwen-test.com"),
        (":method", "POST"),
        (":path", path),
        ("content-type", "application/json"),
    ];
    all.extend_from_slice(headers);
    let (stream, outcome) = filter.send_request_with_body(&all, QUESTION);
    let (counter, outcome) = match outcome {
        Outcome::Waiting(call) => {
            let args = call.redis_args().unwrap();
            // The read is the kit's counting script adding 0:
            // EVALSHA <sha> 1 <key> <ttl> 0.
            assert_eq!(args[0], b"EVALSHA", "{args:?}");
            assert_eq!(args[5], b"0", "a read adds nothing: {args:?}");
            let key = String::from_utf8(args[3].clone()).unwrap();
            let head = key[..key.rfind("}:").unwrap() + 1].to_owned();
            let reply = format!(":{used}\r\n");
            (Some(head), filter.answer_redis(&call, reply.as_bytes()))
        }
        other => (None, other),
    };
    Checked {
        stream,
        counter,
        outcome,
    }
}

/// Lets the README's answer through an admitted request and returns the
/// tokens charged for it (the charge answered as Redis would).
fn answer(filter: &mut Filter<TokenQuota, FakeHost>, checked: &Checked) -> u64 {
    assert_eq!(checked.outcome, Outcome::Continued, "{checked:?}");
    let stream = checked.stream;
    let host = filter.host_mut();
    host.response_headers.add(":status", b"200");
    host.response_headers
        .add("content-type", b"application/json");
    let _ = filter.on_response_headers(stream, false);
    let calls = filter.host().calls_sent;
    filter.host_mut().response_body = ANSWER.to_vec();
    let action = filter.on_response_body(stream, ANSWER.len(), true);
    assert_eq!(filter.host().calls_sent, calls + 1, "one charge");
    let charge = filter.host().last_call.clone().unwrap();
    let args = charge.redis_args().unwrap();
    let key = String::from_utf8(args[3].clone()).unwrap();
    assert!(
        key.starts_with(checked.counter.as_deref().unwrap()),
        "{key}"
    );
    let tokens: u64 = std::str::from_utf8(&args[5]).unwrap().parse().unwrap();
    if action == Action::Pause {
        let resumed = filter.host().resumed[1];
        let _ = filter.answer_redis(&charge, format!(":{tokens}\r\n").as_bytes());
        assert_eq!(
            filter.host().resumed[1],
            resumed + 1,
            "released once charged"
        );
    }
    filter.close_stream(stream);
    tokens
}

/// The counter key head of a limit.
fn counter(rule: &str, amount: u64, seconds: u64, what: &str) -> Option<String> {
    Some(format!(
        "token-quota:{{{rule}:{amount}_per_{seconds}s:{what}}}"
    ))
}

fn is_refused(outcome: &Outcome, status: u16, body: &str) -> bool {
    match outcome {
        Outcome::Responded(answer) => answer.status == status && answer.body == body.as_bytes(),
        _ => false,
    }
}

/// Higress's default `rejected_msg`.
const TOO_MANY: &str = "Too many requests";

#[test]
fn every_example_is_accepted() {
    for (example, _) in EXAMPLES {
        let _ = quota(example);
        if example != FULL {
            assert!(example.contains(STATIC_REDIS), "{example}");
        }
    }
}

#[test]
fn global_quota_charges_the_usage_and_refuses_at_the_limit() {
    let mut f = quota(GLOBAL);
    let head = counter("routeA-global-limit-rule", 1000, 60, "global");
    let checked = ask(&mut f, "/v1/chat/completions", &[], 0);
    assert_eq!(checked.counter, head);
    assert_eq!(answer(&mut f, &checked), 46);
    let checked = ask(&mut f, "/v1/chat/completions", &[], 954);
    assert_eq!(answer(&mut f, &checked), 46);
    let checked = ask(&mut f, "/v1/chat/completions", &[], 1000);
    assert_eq!(checked.counter, head);
    assert!(is_refused(&checked.outcome, 429, TOO_MANY), "{checked:?}");
}

#[test]
fn apikey_parameter_quotas_listed_keys_then_each_key_by_pattern() {
    let mut f = quota(PARAM);
    let listed = "/v1/chat/completions?apikey=9a342114-ba8a-11ec-b1bf-00163e1250b5";
    let checked = ask(&mut f, listed, &[], 9);
    let what = "param:apikey:9a342114-ba8a-11ec-b1bf-00163e1250b5";
    assert_eq!(checked.counter, counter("default_rule", 10, 60, what));
    assert_eq!(answer(&mut f, &checked), 46);
    assert!(is_refused(
        &ask(&mut f, listed, &[], 55).outcome,
        429,
        TOO_MANY
    ));
    for (value, amount, seconds, what) in [
        (
            "a6a6d7f2-ba8a-11ec-bec2-00163e1250b5",
            100,
            3600,
            "param:apikey:",
        ),
        ("alpha", 10, 1, "per_param:apikey:"),
        ("bravo", 100, 60, "per_param:apikey:"),
        ("zulu", 1000, 3600, "per_param:apikey:"),
    ] {
        let path = format!("/v1/chat/completions?apikey={value}");
        let checked = ask(&mut f, &path, &[], 0);
        let what = format!("{what}{value}");
        assert_eq!(
            checked.counter,
            counter("default_rule", amount, seconds, &what)
        );
        assert_eq!(answer(&mut f, &checked), 46);
    }
    let checked = ask(&mut f, "/v1/chat/completions", &[], 0);
    assert_eq!(
        (checked.counter, checked.outcome),
        (None, Outcome::Continued)
    );
}

#[test]
fn x_ca_key_header_quotas_the_numeric_keys_as_written() {
    let mut f = quota(HEADER);
    let path = "/v1/chat/completions";
    let checked = ask(&mut f, path, &[("x-ca-key", "102234")], 0);
    assert_eq!(
        checked.counter,
        counter("default_rule", 10, 60, "header:x-ca-key:102234")
    );
    assert_eq!(answer(&mut f, &checked), 46);
    let over = ask(&mut f, path, &[("x-ca-key", "102234")], 46);
    assert!(is_refused(&over.outcome, 429, TOO_MANY), "{over:?}");
    let checked = ask(&mut f, path, &[("x-ca-key", "308239")], 0);
    assert_eq!(
        checked.counter,
        counter("default_rule", 10, 3600, "header:x-ca-key:308239")
    );
    for (value, amount, seconds) in [("a1", 10, 1), ("b1", 100, 60), ("c1", 1000, 3600)] {
        let checked = ask(&mut f, path, &[("x-ca-key", value)], 0);
        let what = format!("per_header:x-ca-key:{value}");
        assert_eq!(
            checked.counter,
            counter("default_rule", amount, seconds, &what)
        );
    }
}

#[test]
fn client_ip_from_x_forwarded_for_takes_the_first_matching_range() {
    let mut f = quota(CLIENT_IP);
    let name = "per_ip:from-header-x-forwarded-for";
    for (forwarded, amount, ip) in [
        ("1.1.1.1", 10, "1.1.1.1"),
        (" 1.1.1.9 , 10.0.0.1", 100, "1.1.1.9"),
        ("8.8.8.8", 1000, "8.8.8.8"),
    ] {
        let checked = ask(
            &mut f,
            "/v1/chat/completions",
            &[("x-forwarded-for", forwarded)],
            0,
        );
        let what = format!("{name}:{ip}");
        assert_eq!(
            checked.counter,
            counter("default_rule", amount, 86400, &what),
            "{forwarded}"
        );
        assert_eq!(answer(&mut f, &checked), 46);
    }
    let over = ask(
        &mut f,
        "/v1/chat/completions",
        &[("x-forwarded-for", "1.1.1.1")],
        46,
    );
    assert!(is_refused(&over.outcome, 429, TOO_MANY), "{over:?}");
}

#[test]
fn consumers_are_quotaed_by_name_then_each_by_pattern() {
    let mut f = quota(CONSUMER);
    for (consumer, amount, seconds, what) in [
        ("consumer1", 10, 1, "consumer:x-mse-consumer:"),
        ("consumer2", 100, 3600, "consumer:x-mse-consumer:"),
        ("alice", 10, 1, "per_consumer:x-mse-consumer:"),
        ("bob", 100, 60, "per_consumer:x-mse-consumer:"),
        ("carol", 1000, 3600, "per_consumer:x-mse-consumer:"),
    ] {
        let checked = ask(
            &mut f,
            "/v1/chat/completions",
            &[("x-mse-consumer", consumer)],
            0,
        );
        let what = format!("{what}{consumer}");
        assert_eq!(
            checked.counter,
            counter("default_rule", amount, seconds, &what)
        );
        assert_eq!(answer(&mut f, &checked), 46);
    }
    let checked = ask(&mut f, "/v1/chat/completions", &[], 0);
    assert_eq!(
        (checked.counter, checked.outcome),
        (None, Outcome::Continued)
    );
}

#[test]
fn cookie_values_are_refused_with_the_configured_answer() {
    let mut f = quota(COOKIE);
    let path = "/v1/chat/completions";
    let checked = ask(&mut f, path, &[("cookie", "session=s1; key1=value1")], 0);
    assert_eq!(
        checked.counter,
        counter("default_rule", 10, 60, "cookie:key1:value1")
    );
    assert_eq!(answer(&mut f, &checked), 46);
    let over = ask(&mut f, path, &[("cookie", "key1=value1")], 46);
    assert!(
        is_refused(
            &over.outcome,
            200,
            r#"{"code":-1,"msg":"Too many requests"}"#
        ),
        "{over:?}"
    );
    for (value, amount, seconds, what) in [
        ("value2", 100, 3600, "cookie:key1:"),
        ("apple", 10, 1, "per_cookie:key1:"),
        ("banana", 100, 60, "per_cookie:key1:"),
        ("cherry", 1000, 3600, "per_cookie:key1:"),
    ] {
        let cookie = format!("key1={value}");
        let checked = ask(&mut f, path, &[("cookie", &cookie)], 0);
        let what = format!("{what}{value}");
        assert_eq!(
            checked.counter,
            counter("default_rule", amount, seconds, &what)
        );
    }
}

/// The README's walk-through: 200 tokens a minute for `apikey=123456`;
/// the question costs 46 tokens; once the minute's 200 are used the next
/// question is refused with "Too many requests".
#[test]
fn the_full_example_refuses_once_the_minutes_tokens_are_used() {
    let mut f = quota(FULL);
    let path = "/v1/chat/completions?apikey=123456";
    let head = counter(
        "default_limit_by_param_apikey",
        200,
        60,
        "param:apikey:123456",
    );
    let mut used = 0;
    for _ in 0..5 {
        let checked = ask(&mut f, path, &[], used);
        assert_eq!(checked.counter, head);
        used += answer(&mut f, &checked);
    }
    assert_eq!(used, 230);
    let refused = ask(&mut f, path, &[], used);
    assert_eq!(refused.counter, head);
    assert!(is_refused(&refused.outcome, 429, TOO_MANY), "{refused:?}");
    // Another key has a quota of its own; no key, no quota.
    let checked = ask(&mut f, "/v1/chat/completions?apikey=654321", &[], 0);
    assert_eq!(
        (checked.counter, checked.outcome),
        (None, Outcome::Continued)
    );
}
