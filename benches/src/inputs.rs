//! The inputs every group uses, shared by the benchmarks and the tests so
//! that both sides of a comparison, and the tests that check them, see the
//! same bytes.

/// The limiter's counting script.
pub use limiter::config::COUNT_SCRIPT;

/// SHA-1 of [`COUNT_SCRIPT`], as EVALSHA sends it.
pub fn script_sha1() -> String {
    sha1_smol::Sha1::from(COUNT_SCRIPT).digest().to_string()
}

/// The fields of a per-header counter key, as the limiter writes it:
/// `<prefix>:{<rule>:<kind>:<name>:<value>}:<window start>`.
#[derive(Debug, Clone, Copy)]
pub struct KeyFields<'a> {
    /// `redis_key_prefix`.
    pub prefix: &'a str,
    /// `rule_name`.
    pub rule: &'a str,
    /// Source kind (`header`).
    pub kind: &'a str,
    /// Header name.
    pub name: &'a str,
    /// Header value.
    pub value: &'a str,
    /// Window start, seconds since the epoch.
    pub start: u64,
}

/// The key of the encoding benchmarks:
/// `limiter:{api:header:x-api-key:k-3f9a2c71}:1700000000` (52 bytes).
pub const KEY: KeyFields<'static> = KeyFields {
    prefix: "limiter",
    rule: "api",
    kind: "header",
    name: "x-api-key",
    value: "k-3f9a2c71",
    start: 1_700_000_000,
};

/// The TTL argument of the counting command (a per-minute window).
pub const TTL: i64 = 60;

/// Reply of the counting script: the window's count.
pub const INTEGER_REPLY: &[u8] = b":42\r\n";

/// A bulk reply of 40 bytes (a script digest, as `SCRIPT LOAD` answers).
pub const BULK_REPLY: &[u8] = b"$40\r\n9b1b8a8bd5c3c5a3e2f0d1c4b7a6e5f4d3c2b1a0\r\n";

/// The replies of the `resp_decode` group: what INCR and the counting
/// script answer, GET of a missing key, a bulk string, an array (a script
/// returning count, limit and TTL) and the error that makes the kit fall
/// back from EVALSHA to EVAL.
pub const REPLIES: [(&str, &[u8]); 5] = [
    ("integer", b":17\r\n"),
    ("nil", b"$-1\r\n"),
    ("bulk", BULK_REPLY),
    ("array3", b"*3\r\n:17\r\n:100\r\n:42\r\n"),
    (
        "noscript",
        b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
    ),
];

/// A global limit, no `_rules_`, quota headers on allowed answers.
pub const GLOBAL_CONFIG: &str = r#"{
  "rule_name": "api",
  "global_threshold": {"query_per_minute": 100000000},
  "show_limit_quota_header": true,
  "redis": {"webdis_cluster": "webdis", "timeout": 500}
}"#;

/// A realistic Higress-style configuration: three `rule_items` (a shared
/// per-tenant limit, per-API-key and per-user limits) and two `_rules_`
/// (an internal domain with its own items, and the public API domain
/// inheriting the global items under its own rule name).
pub const PER_HEADER_CONFIG: &str = r#"{
  "rule_name": "api",
  "rule_items": [
    {"limit_by_header": "x-tenant", "limit_keys": [
      {"key": "gold", "query_per_second": 5000},
      {"key": "silver", "query_per_second": 500},
      {"key": "bronze", "query_per_minute": 6000}
    ]},
    {"limit_by_per_header": "x-api-key", "limit_keys": [
      {"key": "k-internal-batch", "query_per_minute": 100000000},
      {"key": "*", "query_per_minute": 100000000}
    ]},
    {"limit_by_per_header": "x-user-id", "limit_keys": [
      {"key": "*", "query_per_hour": 360000}
    ]}
  ],
  "show_limit_quota_header": true,
  "rejected_code": 429,
  "rejected_msg": "Too many requests",
  "redis_key_prefix": "limiter",
  "redis": {"webdis_cluster": "webdis", "timeout": 500},
  "_rules_": [
    {"_match_domain_": ["*.internal.example.com"], "rule_name": "internal",
     "rule_items": [{"limit_by_per_header": "x-api-key", "limit_keys": [{"key": "*", "query_per_second": 100000}]}]},
    {"_match_domain_": ["api.example.com", "*.api.example.com"], "rule_name": "public"}
  ]
}"#;

/// The largest count the request benchmarks feed back as Redis's answer;
/// below every limit of the two configurations, so each request takes the
/// full allowed path (call, reply, quota headers).
pub const MAX_BENCH_COUNT: i64 = 1_000;

/// A downstream request, as the driver puts it on the host.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `:authority`.
    pub authority: &'a str,
    /// `:path`.
    pub path: &'a str,
    /// The other headers, in order.
    pub headers: &'a [(&'a str, &'a [u8])],
}

/// Headers a browser-ish API client sends besides the limit's own.
const COMMON_HEADERS: [(&str, &[u8]); 6] = [
    ("user-agent", b"Mozilla/5.0 (X11; Linux x86_64) bench/1.0"),
    ("accept", b"application/json"),
    ("accept-encoding", b"gzip, deflate, br"),
    ("x-request-id", b"7c0f3f4e-8a1b-4c55-9d2e-1f0a6b3c9e21"),
    ("x-forwarded-for", b"203.0.113.7, 10.0.0.12"),
    ("x-forwarded-proto", b"https"),
];

const PER_HEADER_HEADERS: [(&str, &[u8]); 8] = [
    COMMON_HEADERS[0],
    COMMON_HEADERS[1],
    COMMON_HEADERS[2],
    COMMON_HEADERS[3],
    COMMON_HEADERS[4],
    COMMON_HEADERS[5],
    ("x-api-key", b"k-3f9a2c71d4e5b6a7"),
    ("x-user-id", b"user-1234"),
];

/// The request the global-limit benchmark sends.
pub const GLOBAL_REQUEST: Request<'static> = Request {
    authority: "api.example.com",
    path: "/v1/items?page=2",
    headers: &COMMON_HEADERS,
};

/// The request the per-header benchmark sends: it matches the `public`
/// rule and the per-API-key item (the tenant item is skipped, no
/// `x-tenant`).
pub const PER_HEADER_REQUEST: Request<'static> = Request {
    authority: "api.example.com",
    path: "/v1/items?page=2",
    headers: &PER_HEADER_HEADERS,
};

/// Headers of the upstream response the driver delivers.
pub const UPSTREAM_RESPONSE_HEADERS: [(&str, &[u8]); 3] = [
    (":status", b"200"),
    ("content-type", b"application/json"),
    ("content-length", b"512"),
];

/// A larger configuration, as a gateway fronting several APIs carries:
/// 20 `rule_items` over every kind of source Higress offers (headers,
/// query parameters, cookies, consumers, client addresses by CIDR, exact,
/// `*` and `regexp:` keys) and 10 `_rules_` using all four matchers, some
/// with their own items, some only renaming the counters. About 5.4 KB.
pub const LARGE_CONFIG: &str = r#"{
  "rule_name": "edge",
  "rule_items": [
    {"limit_by_header": "x-tenant", "limit_keys": [
      {"key": "gold", "query_per_second": 5000},
      {"key": "silver", "query_per_second": 500},
      {"key": "bronze", "query_per_minute": 6000}
    ]},
    {"limit_by_per_header": "x-api-key", "limit_keys": [
      {"key": "k-internal-batch", "query_per_minute": 100000000},
      {"key": "regexp:^k-trial-", "query_per_minute": 60},
      {"key": "*", "query_per_minute": 100000000}
    ]},
    {"limit_by_per_header": "x-user-id", "limit_keys": [{"key": "*", "query_per_hour": 360000}]},
    {"limit_by_header": "x-client-version", "limit_keys": [
      {"key": "regexp:^1\\.", "query_per_second": 10},
      {"key": "2.0.0", "query_per_second": 100}
    ]},
    {"limit_by_per_header": "x-device-id", "limit_keys": [{"key": "*", "query_per_minute": 600}]},
    {"limit_by_header": "x-partner", "limit_keys": [
      {"key": "acme", "query_per_second": 200},
      {"key": "globex", "query_per_second": 150},
      {"key": "initech", "query_per_minute": 3000}
    ]},
    {"limit_by_param": "plan", "limit_keys": [
      {"key": "free", "query_per_minute": 60},
      {"key": "pro", "query_per_minute": 6000}
    ]},
    {"limit_by_per_param": "apikey", "limit_keys": [{"key": "*", "query_per_minute": 1200}]},
    {"limit_by_per_param": "session", "limit_keys": [
      {"key": "regexp:^s-[0-9a-f]{8}$", "query_per_second": 20}
    ]},
    {"limit_by_cookie": "tier", "limit_keys": [
      {"key": "premium", "query_per_second": 100},
      {"key": "basic", "query_per_second": 10}
    ]},
    {"limit_by_per_cookie": "sid", "limit_keys": [{"key": "*", "query_per_minute": 300}]},
    {"limit_by_consumer": "", "limit_keys": [
      {"key": "mobile-app", "query_per_second": 1000},
      {"key": "web-portal", "query_per_second": 800}
    ]},
    {"limit_by_per_consumer": "", "limit_keys": [{"key": "*", "query_per_minute": 10000}]},
    {"limit_by_per_ip": "from-header-x-forwarded-for", "limit_keys": [
      {"key": "10.0.0.0/8", "query_per_second": 10000},
      {"key": "192.168.0.0/16", "query_per_second": 5000},
      {"key": "2001:db8::/32", "query_per_second": 1000},
      {"key": "0.0.0.0/0", "query_per_second": 50}
    ]},
    {"limit_by_per_ip": "from-remote-addr", "limit_keys": [
      {"key": "172.16.0.0/12", "query_per_second": 2000},
      {"key": "0.0.0.0/0", "query_per_second": 100}
    ]},
    {"limit_by_per_header": "x-org-id", "limit_keys": [{"key": "*", "query_per_day": 10000000}]},
    {"limit_by_header": "x-region", "limit_keys": [
      {"key": "eu-west-1", "query_per_second": 3000},
      {"key": "us-east-1", "query_per_second": 6000},
      {"key": "ap-south-1", "query_per_second": 1500}
    ]},
    {"limit_by_per_header": "x-forwarded-host", "limit_keys": [{"key": "*", "query_per_second": 400}]},
    {"limit_by_header": "user-agent", "limit_keys": [
      {"key": "regexp:[Bb]ot|[Cc]rawler|[Ss]pider", "query_per_minute": 30}
    ]},
    {"limit_by_per_header": "x-request-source", "limit_keys": [{"key": "*", "query_per_minute": 20000}]}
  ],
  "show_limit_quota_header": true,
  "rejected_code": 429,
  "rejected_msg": "Too many requests",
  "failure_mode_deny": false,
  "redis_key_prefix": "edge-limiter",
  "redis": {"webdis_cluster": "webdis", "timeout": 300},
  "_rules_": [
    {"_match_route_": ["internal-admin", "internal-metrics"], "rule_name": "internal",
     "rule_items": [{"limit_by_per_header": "x-api-key", "limit_keys": [{"key": "*", "query_per_second": 100000}]}]},
    {"_match_domain_": ["*.internal.example.com"], "rule_name": "internal-domains",
     "rule_items": [{"limit_by_per_ip": "from-remote-addr", "limit_keys": [{"key": "10.0.0.0/8", "query_per_second": 50000}]}]},
    {"_match_domain_": ["api.example.com", "*.api.example.com"], "rule_name": "public"},
    {"_match_domain_": ["partners.example.com"], "rule_name": "partners", "rejected_code": 503,
     "rejected_msg": "Partner quota exceeded"},
    {"_match_service_": ["billing.default.svc.cluster.local", "invoices.default.svc.cluster.local:8080"],
     "rule_name": "billing",
     "rule_items": [{"limit_by_consumer": "", "limit_keys": [{"key": "*", "query_per_second": 300}]}]},
    {"_match_service_": ["search.default.svc.cluster.local"], "rule_name": "search",
     "rule_items": [
       {"limit_by_per_header": "x-api-key", "limit_keys": [{"key": "*", "query_per_second": 50}]},
       {"limit_by_per_ip": "from-header-x-real-ip", "limit_keys": [{"key": "0.0.0.0/0", "query_per_second": 5}]}
     ]},
    {"_match_route_prefix_": ["upload-v1", "upload-v2"], "rule_name": "uploads",
     "rule_items": [{"limit_by_per_header": "x-api-key", "limit_keys": [{"key": "*", "query_per_minute": 600}]}],
     "show_limit_quota_header": false},
    {"_match_route_prefix_": ["export-"], "rule_name": "exports",
     "rule_items": [{"limit_by_per_consumer": "", "limit_keys": [{"key": "*", "query_per_hour": 100}]}]},
    {"_match_route_": ["llm-chat"], "_match_route_prefix_": ["chat-"], "rule_name": "chat",
     "redis_key_prefix": "chat-limiter"},
    {"_match_domain_": ["legacy.example.com"], "_match_service_": ["legacy.default.svc.cluster.local:80"],
     "rule_name": "legacy", "failure_mode_deny": true,
     "rule_items": [{"limit_by_per_ip": "from-remote-addr", "limit_keys": [{"key": "0.0.0.0/0", "query_per_second": 20}]}]}
  ]
}"#;

/// A request the kit refuses from its over-limit cache once Redis has
/// counted past [`GLOBAL_CONFIG`]'s limit: same as [`GLOBAL_REQUEST`].
pub const OVER_LIMIT_REQUEST: Request<'static> = GLOBAL_REQUEST;

/// What Redis answers on the over-limit path: one past
/// [`GLOBAL_CONFIG`]'s 100,000,000 a minute.
pub const OVER_LIMIT_COUNT: i64 = 100_000_001;

/// A limiter configuration with a global per-API-key limit and `rules`
/// `_rules_` entries, for `rule_matching`. Rule `i` matches the domain
/// `tenant-<i>.example.com` (exact) or any host under
/// `tenant-<i>.eu.example.com` (suffix), so the matcher compares a
/// request's authority with two patterns per rule before it reaches the
/// last one; every rule limits per API key under its own rule name.
/// [`rule_matching_request`] builds the requests.
pub fn rules_config(rules: usize) -> String {
    rules_config_with(rules, |i| {
        format!(r#"["tenant-{i}.example.com", "*.tenant-{i}.eu.example.com"]"#)
    })
}

/// [`rules_config`] with exact domains only: rule `i` matches
/// `tenant-<i>.example.com` or `tenant-<i>.example.net`, so the kit finds
/// the rule by looking the authority up instead of trying each rule.
pub fn exact_rules_config(rules: usize) -> String {
    rules_config_with(rules, |i| {
        format!(r#"["tenant-{i}.example.com", "tenant-{i}.example.net"]"#)
    })
}

fn rules_config_with(rules: usize, domains: impl Fn(usize) -> String) -> String {
    let mut entries = Vec::with_capacity(rules);
    for i in 0..rules {
        entries.push(format!(
            r#"    {{"_match_domain_": {}, "rule_name": "tenant-{i}"}}"#,
            domains(i)
        ));
    }
    format!(
        r#"{{
  "rule_name": "default",
  "rule_items": [{{"limit_by_per_header": "x-api-key", "limit_keys": [{{"key": "*", "query_per_minute": 100000000}}]}}],
  "show_limit_quota_header": true,
  "redis": {{"webdis_cluster": "webdis", "timeout": 500}},
  "_rules_": [
{}
  ]
}}"#,
        entries.join(",\n")
    )
}

/// The authority of a `rule_matching` request: the last rule's domain
/// (`tenant-<rules - 1>.example.com`) or, for `None`, a domain no rule
/// matches (the request falls to the global configuration).
pub fn rule_matching_authority(last_of: Option<usize>) -> String {
    match last_of {
        Some(rules) => format!("tenant-{}.example.com", rules.saturating_sub(1)),
        None => "www.example.org".to_string(),
    }
}

/// A `rule_matching` request to `authority` with the per-header request's
/// headers (its `x-api-key` is what every rule limits by).
pub fn rule_matching_request(authority: &str) -> Request<'_> {
    Request {
        authority,
        path: PER_HEADER_REQUEST.path,
        headers: PER_HEADER_REQUEST.headers,
    }
}

/// The token quota of `token_quota_request`: a per-API-key budget large
/// enough that no benchmark run uses it up, so every request is read,
/// let through and charged.
pub const TOKEN_QUOTA_CONFIG: &str = r#"{
  "rule_name": "llm",
  "rule_items": [{"limit_by_per_header": "x-api-key", "limit_keys": [{"key": "*", "token_per_minute": 1000000000000000}]}],
  "redis": {"webdis_cluster": "webdis", "timeout": 500}
}"#;

/// The request headers of a chat completion, besides the pseudo-headers
/// and `content-length` the driver adds.
pub const CHAT_HEADERS: [(&str, &[u8]); 5] = [
    ("content-type", b"application/json"),
    ("authorization", b"Bearer sk-bench-0000000000000000"),
    ("x-api-key", b"team-a-3f9a2c71"),
    ("user-agent", b"openai-python/1.54.0"),
    ("x-request-id", b"5b1e0c7a-9d3f-4e2b-8a61-0c7d2f4e9b13"),
];

/// A streaming chat completion request; the token quota rewrites it to ask
/// for usage (`stream_options.include_usage`).
pub const CHAT_BODY: &[u8] = br#"{"model":"gpt-4o-mini","stream":true,"temperature":0.7,"messages":[{"role":"system","content":"You are a concise assistant."},{"role":"user","content":"Summarise the plot of Hamlet in three sentences."}]}"#;

/// Total tokens the answer of [`chat_stream_answer`] reports.
pub const CHAT_USAGE_TOTAL: u64 = 187;

/// An OpenAI event stream answering [`CHAT_BODY`]: 48 content events of a
/// few tokens each, the `finish_reason` event, the usage event (prompt 41,
/// completion 146, total [`CHAT_USAGE_TOTAL`]) and `data: [DONE]`; 10,302
/// bytes.
pub fn chat_stream_answer() -> Vec<u8> {
    const WORDS: [&str; 8] = [
        "Prince Hamlet",
        " learns from his father's ghost",
        " that his uncle Claudius",
        " murdered the king",
        " and married his mother;",
        " feigning madness,",
        " he hesitates,",
        " and the tragedy ends in deaths.",
    ];
    let mut out = Vec::new();
    for i in 0..48 {
        let word = WORDS[i % WORDS.len()];
        out.extend_from_slice(format!(
            "data: {{\"id\":\"chatcmpl-9x\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{word}\"}},\"finish_reason\":null}}],\"usage\":null}}\n\n"
        ).as_bytes());
    }
    out.extend_from_slice(b"data: {\"id\":\"chatcmpl-9x\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n");
    out.extend_from_slice(b"data: {\"id\":\"chatcmpl-9x\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":41,\"completion_tokens\":146,\"total_tokens\":187}}\n\n");
    out.extend_from_slice(b"data: [DONE]\n\n");
    out
}

/// [`chat_stream_answer`] cut in three chunks of about a third each, cut
/// inside events; the usage event is whole in the last.
pub fn chat_stream_chunks(answer: &[u8]) -> [&[u8]; 3] {
    let third = answer.len() / 3;
    [
        &answer[..third],
        &answer[third..2 * third],
        &answer[2 * third..],
    ]
}
