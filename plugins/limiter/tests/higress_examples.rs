//! Every configuration example of Higress's `cluster-key-rate-limit`
//! README configures the limiter unchanged and limits as the README says.
//!
//! The examples are the README's YAML (alibaba/higress,
//! `plugins/wasm-go/extensions/cluster-key-rate-limit/README.md` and
//! `README_EN.md`, section "Configuration Examples" / "配置示例"; both
//! READMEs hold the same six, differing only in their comments) written
//! out by hand as the JSON a gateway passes the plugin: YAML's unquoted
//! `key: 102234` is a JSON number there, as it is after Higress's own
//! conversion.
//!
//! Their `redis` block names a Higress service (`service_name:
//! redis.static`). A build with the native transport (`--features
//! higress`) takes it as written and sets up Higress's cluster
//! `outbound|80||redis.static`; a default build, made for upstream Envoy,
//! refuses it (`the_native_redis_block_follows_the_build` in `limiter.rs`),
//! so there the block alone is swapped for a webdis one. Requests go
//! through `kit::fake_request`, which answers Redis as either transport
//! is answered.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use kit::fake::FakeHost;
use kit::fake_request::Outcome;
use kit::{Filter, StreamId};
use limiter::Limiter;

/// The README's `redis` block, as every example writes it.
const HIGRESS_REDIS: &str = r#""redis": {"service_name": "redis.static"}"#;

/// "Global Rate Limiting for Custom Rule Group" / "自定义规则组全局限流".
const GLOBAL: &str = r#"{
  "rule_name": "routeA-global-limit-rule",
  "global_threshold": {"query_per_minute": 1000},
  "redis": {"service_name": "redis.static"},
  "show_limit_quota_header": true
}"#;

/// "Rate Limiting by Request Parameter `apikey`" / "识别请求参数 apikey，进行区别限流".
const PARAM: &str = r#"{
  "rule_name": "routeA-request-param-limit-rule",
  "rule_items": [
    {"limit_by_param": "apikey", "limit_keys": [
      {"key": "9a342114-ba8a-11ec-b1bf-00163e1250b5", "query_per_minute": 10},
      {"key": "a6a6d7f2-ba8a-11ec-bec2-00163e1250b5", "query_per_hour": 100}]},
    {"limit_by_per_param": "apikey", "limit_keys": [
      {"key": "regexp:^a.*", "query_per_second": 10},
      {"key": "regexp:^b.*", "query_per_minute": 100},
      {"key": "*", "query_per_hour": 1000}]}
  ],
  "redis": {"service_name": "redis.static"},
  "show_limit_quota_header": true
}"#;

/// "Rate Limiting by Request Header `x-ca-key`" / "识别请求头 x-ca-key，进行区别限流".
/// Its keys `102234` and `308239` are unquoted in the YAML: numbers.
const HEADER: &str = r#"{
  "rule_name": "routeA-request-header-limit-rule",
  "rule_items": [
    {"limit_by_header": "x-ca-key", "limit_keys": [
      {"key": 102234, "query_per_minute": 10},
      {"key": 308239, "query_per_hour": 10}]},
    {"limit_by_per_header": "x-ca-key", "limit_keys": [
      {"key": "regexp:^a.*", "query_per_second": 10},
      {"key": "regexp:^b.*", "query_per_minute": 100},
      {"key": "*", "query_per_hour": 1000}]}
  ],
  "redis": {"service_name": "redis.static"},
  "show_limit_quota_header": true
}"#;

/// "Rate Limiting by Client IP Extracted from `x-forwarded-for` Header" /
/// "根据请求头 x-forwarded-for 获取对端 IP，进行区别限流".
const CLIENT_IP: &str = r#"{
  "rule_name": "routeA-client-ip-limit-rule",
  "rule_items": [
    {"limit_by_per_ip": "from-header-x-forwarded-for", "limit_keys": [
      {"key": "1.1.1.1", "query_per_day": 10},
      {"key": "1.1.1.0/24", "query_per_day": 100},
      {"key": "0.0.0.0/0", "query_per_day": 1000}]}
  ],
  "redis": {"service_name": "redis.static"},
  "show_limit_quota_header": true
}"#;

/// "Rate Limiting by Consumer" / "识别 consumer，进行区别限流".
const CONSUMER: &str = r#"{
  "rule_name": "routeA-consumer-limit-rule",
  "rule_items": [
    {"limit_by_consumer": "", "limit_keys": [
      {"key": "consumer1", "query_per_second": 10},
      {"key": "consumer2", "query_per_hour": 100}]},
    {"limit_by_per_consumer": "", "limit_keys": [
      {"key": "regexp:^a.*", "query_per_second": 10},
      {"key": "regexp:^b.*", "query_per_minute": 100},
      {"key": "*", "query_per_hour": 1000}]}
  ],
  "redis": {"service_name": "redis.static"},
  "show_limit_quota_header": true
}"#;

/// "Rate Limiting by Cookie Value" / "识别 Cookie 中的键值对，进行区别限流".
const COOKIE: &str = r#"{
  "rule_name": "routeA-cookie-limit-rule",
  "rule_items": [
    {"limit_by_cookie": "key1", "limit_keys": [
      {"key": "value1", "query_per_minute": 10},
      {"key": "value2", "query_per_hour": 100}]},
    {"limit_by_per_cookie": "key1", "limit_keys": [
      {"key": "regexp:^a.*", "query_per_second": 10},
      {"key": "regexp:^b.*", "query_per_minute": 100},
      {"key": "*", "query_per_hour": 1000}]}
  ],
  "rejected_code": 200,
  "rejected_msg": "{\"code\":-1,\"msg\":\"Too many requests\"}",
  "redis": {"service_name": "redis.static"},
  "show_limit_quota_header": true
}"#;

/// Every example, for the checks they share.
const EXAMPLES: [&str; 6] = [GLOBAL, PARAM, HEADER, CLIENT_IP, CONSUMER, COOKIE];

/// The limiter configured with `example`: as written where this build has
/// Higress's Redis transport, with the `redis` block swapped for webdis
/// where it has not.
fn limiter(example: &str) -> Filter<Limiter, FakeHost> {
    assert!(example.contains(HIGRESS_REDIS), "{example}");
    let config = if kit::NATIVE_TRANSPORT {
        example.to_owned()
    } else {
        example.replace(HIGRESS_REDIS, r#""redis": {"webdis_cluster": "webdis"}"#)
    };
    let mut filter = Filter::new(FakeHost::new());
    filter
        .configure(config.into_bytes())
        .unwrap_or_else(|e| panic!("the README's example is refused: {e}\n{example}"));
    if kit::NATIVE_TRANSPORT {
        // `redis.static` is a static service: Higress's port 80.
        assert_eq!(
            filter.host().redis_clusters,
            ["outbound|80||redis.static"],
            "{example}"
        );
    }
    filter
}

/// What one request met.
#[derive(Debug)]
struct Met {
    /// The counter key up to its window start, `None` when no limit applied.
    counter: Option<String>,
    outcome: Outcome,
    /// `X-RateLimit-Limit` and `X-RateLimit-Remaining` of an allowed answer.
    quota: Option<(String, String)>,
}

/// Sends a request with `headers` (plus `:path` `/` unless given); if it
/// waits on Redis, Redis answers that the key's count is now `count`.
fn request(filter: &mut Filter<Limiter, FakeHost>, headers: &[(&str, &str)], count: u64) -> Met {
    let mut all = vec![(":authority", "example.com"), (":method", "GET")];
    if !headers.iter().any(|(name, _)| *name == ":path") {
        all.push((":path", "/"));
    }
    all.extend_from_slice(headers);
    let (stream, outcome) = filter.send_request(&all);
    let (counter, outcome) = match outcome {
        Outcome::Waiting(call) => {
            let args = call.redis_args().unwrap();
            assert_eq!(args[0], b"EVALSHA", "{args:?}");
            let key = String::from_utf8(args[3].clone()).unwrap();
            let head = key[..key.rfind("}:").unwrap() + 1].to_owned();
            let reply = format!(":{count}\r\n");
            (Some(head), filter.answer_redis(&call, reply.as_bytes()))
        }
        other => (None, other),
    };
    let quota = respond(filter, stream, &outcome);
    Met {
        counter,
        outcome,
        quota,
    }
}

/// Lets an allowed request's answer through and reads its quota headers.
fn respond(
    filter: &mut Filter<Limiter, FakeHost>,
    stream: StreamId,
    outcome: &Outcome,
) -> Option<(String, String)> {
    let mut quota = None;
    if *outcome == Outcome::Continued {
        filter.host_mut().response_headers.add(":status", b"200");
        let _ = filter.on_response_headers(stream, true);
        let headers = &filter.host().response_headers;
        quota = headers.get_str("x-ratelimit-limit").map(|limit| {
            let remaining = headers.get_str("x-ratelimit-remaining").unwrap();
            (limit.to_owned(), remaining.to_owned())
        });
    }
    filter.close_stream(stream);
    quota
}

/// The counter key head of a limit.
fn counter(rule: &str, amount: u64, seconds: u64, what: &str) -> Option<String> {
    Some(format!("limiter:{{{rule}:{amount}_per_{seconds}s:{what}}}"))
}

fn quota(limit: u64, remaining: u64) -> Option<(String, String)> {
    Some((limit.to_string(), remaining.to_string()))
}

/// A refusal with the README's default code and message.
fn refused(status: u16, body: &str) -> impl Fn(&Outcome) -> bool + '_ {
    move |outcome| match outcome {
        Outcome::Responded(answer) => answer.status == status && answer.body == body.as_bytes(),
        _ => false,
    }
}

#[test]
fn every_example_is_accepted() {
    for example in EXAMPLES {
        let _ = limiter(example);
    }
}

#[test]
fn global_limit_counts_every_request_of_the_rule_group() {
    let mut f = limiter(GLOBAL);
    let head = counter("routeA-global-limit-rule", 1000, 60, "global");
    let met = request(&mut f, &[(":path", "/any")], 1);
    assert_eq!(met.counter, head);
    assert_eq!(met.outcome, Outcome::Continued);
    assert_eq!(met.quota, quota(1000, 999));
    let met = request(&mut f, &[(":path", "/other?x=1")], 1000);
    assert_eq!((met.counter, met.quota), (head.clone(), quota(1000, 0)));
    let met = request(&mut f, &[], 1001);
    assert_eq!(met.counter, head);
    assert!(refused(429, "Too many requests")(&met.outcome), "{met:?}");
}

#[test]
fn apikey_parameter_limits_listed_keys_then_each_key_by_pattern() {
    let mut f = limiter(PARAM);
    let rule = "routeA-request-param-limit-rule";
    let listed = "/v1?apikey=9a342114-ba8a-11ec-b1bf-00163e1250b5";
    let met = request(&mut f, &[(":path", listed)], 10);
    assert_eq!(
        met.counter,
        counter(
            rule,
            10,
            60,
            "param:apikey:9a342114-ba8a-11ec-b1bf-00163e1250b5"
        )
    );
    assert_eq!(met.quota, quota(10, 0));
    assert!(refused(429, "Too many requests")(
        &request(&mut f, &[(":path", listed)], 11).outcome
    ));
    let met = request(
        &mut f,
        &[(":path", "/v1?apikey=a6a6d7f2-ba8a-11ec-bec2-00163e1250b5")],
        1,
    );
    assert_eq!(
        met.counter,
        counter(
            rule,
            100,
            3600,
            "param:apikey:a6a6d7f2-ba8a-11ec-bec2-00163e1250b5"
        )
    );
    // Keys not listed fall to the per-key item: each its own counter.
    for (path, amount, seconds, value) in [
        ("/v1?apikey=alpha", 10, 1, "alpha"),
        ("/v1?apikey=anna", 10, 1, "anna"),
        ("/v1?apikey=bravo", 100, 60, "bravo"),
        ("/v1?apikey=zulu", 1000, 3600, "zulu"),
    ] {
        let met = request(&mut f, &[(":path", path)], 1);
        let what = format!("per_param:apikey:{value}");
        assert_eq!(met.counter, counter(rule, amount, seconds, &what), "{path}");
        assert_eq!(met.quota, quota(amount, amount - 1), "{path}");
    }
    // No apikey: no item applies and Redis is not asked.
    let met = request(&mut f, &[(":path", "/v1?other=1")], 1);
    assert_eq!((met.counter, met.outcome), (None, Outcome::Continued));
}

#[test]
fn x_ca_key_header_limits_the_numeric_keys_as_written() {
    let mut f = limiter(HEADER);
    let rule = "routeA-request-header-limit-rule";
    let met = request(&mut f, &[("x-ca-key", "102234")], 10);
    assert_eq!(met.counter, counter(rule, 10, 60, "header:x-ca-key:102234"));
    assert_eq!(met.quota, quota(10, 0));
    assert!(refused(429, "Too many requests")(
        &request(&mut f, &[("x-ca-key", "102234")], 11).outcome
    ));
    let met = request(&mut f, &[("x-ca-key", "308239")], 3);
    assert_eq!(
        met.counter,
        counter(rule, 10, 3600, "header:x-ca-key:308239")
    );
    assert_eq!(met.quota, quota(10, 7));
    for (value, amount, seconds) in [("a1", 10, 1), ("b1", 100, 60), ("1022345", 1000, 3600)] {
        let met = request(&mut f, &[("x-ca-key", value)], 1);
        let what = format!("per_header:x-ca-key:{value}");
        assert_eq!(
            met.counter,
            counter(rule, amount, seconds, &what),
            "{value}"
        );
    }
}

#[test]
fn client_ip_from_x_forwarded_for_takes_the_first_matching_range() {
    let mut f = limiter(CLIENT_IP);
    let rule = "routeA-client-ip-limit-rule";
    let name = "per_ip:from-header-x-forwarded-for";
    for (forwarded, amount, ip) in [
        ("1.1.1.1", 10, "1.1.1.1"),
        ("1.1.1.1, 10.0.0.1", 10, "1.1.1.1"),
        ("1.1.1.7", 100, "1.1.1.7"),
        ("8.8.8.8", 1000, "8.8.8.8"),
    ] {
        let met = request(&mut f, &[("x-forwarded-for", forwarded)], 1);
        let what = format!("{name}:{ip}");
        assert_eq!(
            met.counter,
            counter(rule, amount, 86400, &what),
            "{forwarded}"
        );
        assert_eq!(met.quota, quota(amount, amount - 1), "{forwarded}");
    }
    assert!(refused(429, "Too many requests")(
        &request(&mut f, &[("x-forwarded-for", "1.1.1.1")], 11).outcome
    ));
    // `0.0.0.0/0` is IPv4's range: an IPv6 client matches no key.
    let met = request(&mut f, &[("x-forwarded-for", "2001:db8::1")], 1);
    assert_eq!((met.counter, met.outcome), (None, Outcome::Continued));
}

#[test]
fn consumers_are_limited_by_name_then_each_by_pattern() {
    let mut f = limiter(CONSUMER);
    let rule = "routeA-consumer-limit-rule";
    let met = request(&mut f, &[("x-mse-consumer", "consumer1")], 10);
    assert_eq!(
        met.counter,
        counter(rule, 10, 1, "consumer:x-mse-consumer:consumer1")
    );
    assert_eq!(met.quota, quota(10, 0));
    let met = request(&mut f, &[("x-mse-consumer", "consumer2")], 1);
    assert_eq!(
        met.counter,
        counter(rule, 100, 3600, "consumer:x-mse-consumer:consumer2")
    );
    for (consumer, amount, seconds) in [("alice", 10, 1), ("bob", 100, 60), ("carol", 1000, 3600)] {
        let met = request(&mut f, &[("x-mse-consumer", consumer)], 1);
        let what = format!("per_consumer:x-mse-consumer:{consumer}");
        assert_eq!(
            met.counter,
            counter(rule, amount, seconds, &what),
            "{consumer}"
        );
    }
    assert!(refused(429, "Too many requests")(
        &request(&mut f, &[("x-mse-consumer", "alice")], 11).outcome
    ));
    // No consumer (no auth plugin ran): not limited.
    let met = request(&mut f, &[], 1);
    assert_eq!((met.counter, met.outcome), (None, Outcome::Continued));
}

#[test]
fn cookie_values_are_limited_and_refused_with_the_configured_answer() {
    let mut f = limiter(COOKIE);
    let rule = "routeA-cookie-limit-rule";
    let met = request(&mut f, &[("cookie", "session=s1; key1=value1")], 10);
    assert_eq!(met.counter, counter(rule, 10, 60, "cookie:key1:value1"));
    assert_eq!(met.quota, quota(10, 0));
    let over = request(&mut f, &[("cookie", "key1=value1")], 11);
    // The README's `rejected_code: 200` and JSON `rejected_msg`.
    assert!(
        refused(200, r#"{"code":-1,"msg":"Too many requests"}"#)(&over.outcome),
        "{over:?}"
    );
    let met = request(&mut f, &[("cookie", "key1=value2")], 1);
    assert_eq!(met.counter, counter(rule, 100, 3600, "cookie:key1:value2"));
    for (value, amount, seconds) in [
        ("apple", 10, 1),
        ("banana", 100, 60),
        ("cherry", 1000, 3600),
    ] {
        let cookie = format!("key1={value}");
        let met = request(&mut f, &[("cookie", &cookie)], 1);
        let what = format!("per_cookie:key1:{value}");
        assert_eq!(
            met.counter,
            counter(rule, amount, seconds, &what),
            "{value}"
        );
    }
}

/// Higress's plugins read `timeout: 0` and `service_port: 0` as "unset"
/// (`redisConfig.Get(..).Int()` is 0 for both a missing and a zero
/// value); so does the limiter.
#[test]
fn zero_timeout_and_port_mean_the_defaults() {
    let redis = if kit::NATIVE_TRANSPORT {
        r#"{"service_name": "redis.dns", "service_port": 0, "timeout": 0}"#
    } else {
        r#"{"webdis_cluster": "webdis", "timeout": 0}"#
    };
    let mut f = Filter::<Limiter, FakeHost>::new(FakeHost::new());
    f.configure(
        format!(r#"{{"rule_name": "z", "global_threshold": {{"query_per_second": 1}}, "redis": {redis}}}"#)
            .into_bytes(),
    )
    .unwrap();
    if kit::NATIVE_TRANSPORT {
        // The timeout goes to `proxy_redis_init`, which the FakeHost does
        // not record; it is read by the code the webdis case runs.
        assert_eq!(f.host().redis_clusters, ["outbound|6379||redis.dns"]);
        return;
    }
    match f.send_request(&[(":path", "/")]).1 {
        Outcome::Waiting(call) => {
            assert_eq!(call.timeout, std::time::Duration::from_millis(1000));
        }
        other => panic!("{other:?}"),
    }
}

/// Higress's plugins read integers with gjson's `Int()`, which takes a
/// string of digits as its number: `rejected_code: "429"`, a limit of
/// `"2"`, `service_port: "6379"`, `timeout: "250"` configure the limiter
/// as the numbers would.
#[test]
fn integers_written_as_strings_configure_as_numbers() {
    let redis = if kit::NATIVE_TRANSPORT {
        r#"{"service_name": "redis.dns", "service_port": "6380", "timeout": "250"}"#
    } else {
        r#"{"webdis_cluster": "webdis", "timeout": "250"}"#
    };
    let mut f = Filter::<Limiter, FakeHost>::new(FakeHost::new());
    f.configure(
        format!(
            r#"{{"rule_name": "s", "global_threshold": {{"query_per_minute": "2"}},
                "rejected_code": "503", "redis": {redis}}}"#
        )
        .into_bytes(),
    )
    .unwrap_or_else(|e| panic!("strings of digits refused: {e}"));
    if kit::NATIVE_TRANSPORT {
        assert_eq!(f.host().redis_clusters, ["outbound|6380||redis.dns"]);
    }
    let (stream, outcome) = f.send_request(&[(":path", "/")]);
    let Outcome::Waiting(call) = outcome else {
        panic!("{outcome:?}")
    };
    if !kit::NATIVE_TRANSPORT {
        assert_eq!(call.timeout, std::time::Duration::from_millis(250));
    }
    assert_eq!(f.answer_redis(&call, b":1\r\n"), Outcome::Continued);
    f.close_stream(stream);
    let met = request(&mut f, &[], 2);
    assert_eq!(met.counter, counter("s", 2, 60, "global"));
    let over = request(&mut f, &[], 3);
    assert!(refused(503, "Too many requests")(&over.outcome), "{over:?}");
}
