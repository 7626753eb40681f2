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
