//! The limiter's decision written the obvious way, for the
//! `limiter_request` and `config_parse` groups.
//!
//! [`NaiveLimiter`] models a plugin written in the style of Higress's Go
//! wrapper (`wasm-go`) or a straightforward use of the proxy-wasm Rust SDK:
//!
//! - the configuration is a serde-derived owned struct ([`RawConfig`]),
//!   `_rules_` merged over the global fields once at configuration;
//! - the SDK's dispatcher is modelled too: one context per request in a
//!   `HashMap<u32, _>` created and dropped with the request, and a
//!   `HashMap<token, context>` routing call answers back (what the Rust
//!   SDK keeps; kit does this itself with a slot pool and a small table);
//! - per-request state is a `HashMap<String, Box<dyn Any>>`, like wasm-go's
//!   `SetContext`/`GetContext`;
//! - headers are read as owned `String`s (the SDK's
//!   `get_http_request_header`), the authority lowercased for rule matching;
//! - the Redis key is built with `format!`, the command as a
//!   `Vec<String>`, the webdis path with [`crate::naive::webdis_path`] and
//!   the call's headers as a fresh `Vec`;
//! - the answer body is copied into a `Vec<u8>` (the SDK's
//!   `get_http_call_response_body`) and decoded to a `redis-protocol`
//!   `OwnedFrame`;
//! - keys over their limit are remembered in a `HashMap<String, (u64, u64)>`
//!   (unless built [`NaiveLimiter::without_over_limit_cache`], which asks
//!   Redis every time, as Higress's plugin does);
//! - response headers are built as a `Vec<(String, String)>`.
//!
//! It does the same work as the kit's limiter on the same host calls
//! (choose the rule, read the header, match the limit keys, check the
//! over-limit cache, build the key, send EVALSHA through webdis, decode the
//! reply, decide, count, set or send the quota headers), and the crate's
//! tests check that it reaches the same decisions, sends the same paths and
//! sets the same headers. Its configuration reads every field of the
//! benchmarks' configurations, the large `config_parse` one included:
//! `global_threshold`, all nine `limit_by_*` kinds with exact, `*`,
//! `regexp:` (compiled with `regex-lite`) and CIDR keys,
//! and the four `_match_*_` matchers. Per request it reads header items
//! only (other kinds are skipped, as if absent) and matches rules by
//! domain, route prefix, route name and service name; the request
//! benchmarks use only header items. It does not retry `NOSCRIPT` as EVAL
//! (the benchmarks never see it).

use crate::inputs::COUNT_SCRIPT;
use kit::host::{BodyBuffer, Direction, HeaderMap, Host};
use kit::{Action, LogLevel};
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::types::OwnedFrame;
use serde::Deserialize;
use std::any::Any;
use std::collections::HashMap;
use std::time::Duration;

/// `query_per_*`: exactly one must be set.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Threshold {
    /// Requests per second.
    pub query_per_second: Option<u64>,
    /// Requests per minute.
    pub query_per_minute: Option<u64>,
    /// Requests per hour.
    pub query_per_hour: Option<u64>,
    /// Requests per day.
    pub query_per_day: Option<u64>,
}

/// One entry of `limit_keys`.
#[derive(Debug, Clone, Deserialize)]
pub struct RawLimitKey {
    /// The value, or `*`.
    pub key: String,
    /// Its limit.
    #[serde(flatten)]
    pub threshold: Threshold,
}

/// One entry of `rule_items`: exactly one `limit_by_*` is set.
#[derive(Debug, Clone, Deserialize)]
pub struct RawItem {
    /// Shared counter per limit key, by header.
    pub limit_by_header: Option<String>,
    /// By query parameter.
    pub limit_by_param: Option<String>,
    /// By cookie.
    pub limit_by_cookie: Option<String>,
    /// By Higress consumer.
    pub limit_by_consumer: Option<String>,
    /// One counter per header value.
    pub limit_by_per_header: Option<String>,
    /// Per query parameter value.
    pub limit_by_per_param: Option<String>,
    /// Per cookie value.
    pub limit_by_per_cookie: Option<String>,
    /// Per consumer.
    pub limit_by_per_consumer: Option<String>,
    /// Per client address (`from-remote-addr`, `from-header-<name>`).
    pub limit_by_per_ip: Option<String>,
    /// The limits, first match wins.
    pub limit_keys: Vec<RawLimitKey>,
}

/// The `redis` object (webdis only).
#[derive(Debug, Clone, Deserialize)]
pub struct RawRedis {
    /// Cluster of the webdis service.
    pub webdis_cluster: String,
    /// Call timeout in milliseconds.
    pub timeout: Option<u64>,
}

/// The configuration as JSON has it: every field owned and optional.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawConfig {
    /// `rule_name`.
    pub rule_name: Option<String>,
    /// `global_threshold`.
    pub global_threshold: Option<Threshold>,
    /// `rule_items`.
    pub rule_items: Option<Vec<RawItem>>,
    /// `rejected_code`.
    pub rejected_code: Option<u16>,
    /// `rejected_msg`.
    pub rejected_msg: Option<String>,
    /// `show_limit_quota_header`.
    pub show_limit_quota_header: Option<bool>,
    /// `failure_mode_deny`.
    pub failure_mode_deny: Option<bool>,
    /// `over_limit_recheck_ms`.
    pub over_limit_recheck_ms: Option<u64>,
    /// `redis_key_prefix`.
    pub redis_key_prefix: Option<String>,
    /// `redis`.
    pub redis: Option<RawRedis>,
    /// `_rules_`.
    #[serde(rename = "_rules_", default)]
    pub rules: Vec<RawRule>,
}

/// One `_rules_` entry: matchers plus fields over the global ones.
#[derive(Debug, Clone, Deserialize)]
pub struct RawRule {
    /// `_match_domain_`.
    #[serde(rename = "_match_domain_", default)]
    pub match_domain: Vec<String>,
    /// `_match_route_`: route names.
    #[serde(rename = "_match_route_", default)]
    pub match_route: Vec<String>,
    /// `_match_service_`: service names, `name` or `name:port`.
    #[serde(rename = "_match_service_", default)]
    pub match_service: Vec<String>,
    /// `_match_route_prefix_`: prefixes of the route name.
    #[serde(rename = "_match_route_prefix_", default)]
    pub match_route_prefix: Vec<String>,
    /// `_match_consumer_`: `x-mse-consumer` values, beside a route prefix.
    #[serde(rename = "_match_consumer_", default)]
    pub match_consumer: Vec<String>,
    /// The rule's own fields.
    #[serde(flatten)]
    pub config: RawConfig,
}

/// A number of requests per fixed window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Window length in seconds.
    pub window_secs: u64,
    /// Requests allowed per window.
    pub max: u64,
}

impl Threshold {
    fn limit(&self) -> Result<Limit, String> {
        let set: Vec<(u64, u64)> = [
            (1, self.query_per_second),
            (60, self.query_per_minute),
            (3_600, self.query_per_hour),
            (86_400, self.query_per_day),
        ]
        .into_iter()
        .filter_map(|(w, n)| n.map(|n| (w, n)))
        .collect();
        match set.as_slice() {
            [(window_secs, max)] if *max > 0 => Ok(Limit {
                window_secs: *window_secs,
                max: *max,
            }),
            _ => Err("set exactly one positive query_per_*".to_string()),
        }
    }
}

/// How a `limit_keys` entry selects values.
#[derive(Debug)]
pub enum KeyMatch {
    /// Equal to the key.
    Exact,
    /// `*`.
    Any,
    /// `regexp:<pattern>`.
    Regex(regex_lite::Regex),
    /// A CIDR range of `limit_by_per_ip`: address bits and prefix length.
    Cidr(std::net::IpAddr, u8),
}

/// A compiled `limit_keys` entry.
#[derive(Debug)]
pub struct LimitKey {
    key: String,
    matcher: KeyMatch,
    limit: Limit,
}

/// Where an item's value comes from: the kind and name of its key.
#[derive(Debug)]
pub struct Source {
    kind: &'static str,
    name: String,
}

/// A compiled `rule_items` entry.
#[derive(Debug)]
pub struct Item {
    source: Source,
    per_value: bool,
    keys: Vec<LimitKey>,
}

/// The source of an item: exactly one `limit_by_*`, its kind as the
/// counter key labels it, and whether each value counts on its own.
fn source(item: &RawItem) -> Result<(Source, bool), String> {
    let set: Vec<(&'static str, &String, bool)> = [
        ("header", &item.limit_by_header, false),
        ("param", &item.limit_by_param, false),
        ("cookie", &item.limit_by_cookie, false),
        ("consumer", &item.limit_by_consumer, false),
        ("header", &item.limit_by_per_header, true),
        ("param", &item.limit_by_per_param, true),
        ("cookie", &item.limit_by_per_cookie, true),
        ("consumer", &item.limit_by_per_consumer, true),
        ("ip", &item.limit_by_per_ip, true),
    ]
    .into_iter()
    .filter_map(|(kind, name, per_value)| name.as_ref().map(|n| (kind, n, per_value)))
    .collect();
    let [(kind, name, per_value)] = set.as_slice() else {
        return Err("set exactly one limit_by_*".to_string());
    };
    let name = match *kind {
        "consumer" => "x-mse-consumer".to_string(),
        "ip" if name.as_str() == "from-remote-addr" => "remote".to_string(),
        "ip" => name
            .strip_prefix("from-header-")
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("bad limit_by_per_ip {name}"))?
            .to_string(),
        _ if name.is_empty() => return Err("limit_by_* must name something".to_string()),
        _ => name.to_string(),
    };
    Ok((Source { kind, name }, *per_value))
}

fn key_match(key: &str, by_ip: bool) -> Result<KeyMatch, String> {
    if key == "*" {
        Ok(KeyMatch::Any)
    } else if let Some(pattern) = key.strip_prefix("regexp:") {
        regex_lite::Regex::new(pattern)
            .map(KeyMatch::Regex)
            .map_err(|e| e.to_string())
    } else if by_ip {
        let (addr, len) = key.split_once('/').unwrap_or((key, "128"));
        let addr: std::net::IpAddr = addr.parse().map_err(|_| format!("bad address {key}"))?;
        let len: u8 = len.parse().map_err(|_| format!("bad prefix {key}"))?;
        Ok(KeyMatch::Cidr(addr, len))
    } else {
        Ok(KeyMatch::Exact)
    }
}

/// What is limited.
#[derive(Debug)]
pub enum Limits {
    /// One counter.
    Global(Limit),
    /// Counters by header.
    Items(Vec<Item>),
}

/// One rule, resolved.
#[derive(Debug)]
pub struct RuleConfig {
    /// What names the rule's counters: the `rule_name`, escaped, and for a
    /// `_rules_` entry that inherits it, `:_rules_[<i>]`.
    scope: String,
    limits: Limits,
    rejected_code: u16,
    rejected_msg: String,
    show_quota: bool,
    failure_mode_deny: bool,
    recheck_ms: u64,
    key_prefix: String,
    webdis_cluster: String,
    timeout: Duration,
}

fn merged(own: &RawConfig, base: &RawConfig) -> RawConfig {
    RawConfig {
        rule_name: own.rule_name.clone().or_else(|| base.rule_name.clone()),
        global_threshold: own
            .global_threshold
            .clone()
            .or_else(|| base.global_threshold.clone()),
        rule_items: own.rule_items.clone().or_else(|| base.rule_items.clone()),
        rejected_code: own.rejected_code.or(base.rejected_code),
        rejected_msg: own
            .rejected_msg
            .clone()
            .or_else(|| base.rejected_msg.clone()),
        show_limit_quota_header: own.show_limit_quota_header.or(base.show_limit_quota_header),
        failure_mode_deny: own.failure_mode_deny.or(base.failure_mode_deny),
        over_limit_recheck_ms: own.over_limit_recheck_ms.or(base.over_limit_recheck_ms),
        redis_key_prefix: own
            .redis_key_prefix
            .clone()
            .or_else(|| base.redis_key_prefix.clone()),
        redis: own.redis.clone().or_else(|| base.redis.clone()),
        rules: Vec::new(),
    }
}

/// `text` with `%`, `:`, `{` and `}` percent-encoded, as counter keys
/// hold configured names.
fn escaped(text: &str) -> String {
    text.replace('%', "%25")
        .replace(':', "%3A")
        .replace('{', "%7B")
        .replace('}', "%7D")
}

fn resolve(raw: &RawConfig, place: Option<String>) -> Result<RuleConfig, String> {
    let limits = match (&raw.global_threshold, &raw.rule_items) {
        (Some(t), None) => Limits::Global(t.limit()?),
        (None, Some(items)) => {
            let mut out = Vec::new();
            for item in items {
                let (source, per_value) = source(item)?;
                let by_ip = source.kind == "ip";
                let mut keys = Vec::new();
                for k in &item.limit_keys {
                    keys.push(LimitKey {
                        key: k.key.clone(),
                        matcher: key_match(&k.key, by_ip)?,
                        limit: k.threshold.limit()?,
                    });
                }
                out.push(Item {
                    source,
                    per_value,
                    keys,
                });
            }
            Limits::Items(out)
        }
        _ => return Err("set one of global_threshold, rule_items".to_string()),
    };
    let redis = raw.redis.as_ref().ok_or("redis is required")?;
    let rule_name = raw.rule_name.clone().ok_or("rule_name is required")?;
    let scope = match place {
        Some(place) => format!("{}:{place}", escaped(&rule_name)),
        None => escaped(&rule_name),
    };
    Ok(RuleConfig {
        scope,
        limits,
        rejected_code: raw.rejected_code.unwrap_or(429),
        rejected_msg: raw
            .rejected_msg
            .clone()
            .unwrap_or_else(|| "Too many requests".to_string()),
        show_quota: raw.show_limit_quota_header.unwrap_or(false),
        failure_mode_deny: raw.failure_mode_deny.unwrap_or(false),
        recheck_ms: raw.over_limit_recheck_ms.unwrap_or(1000),
        key_prefix: raw
            .redis_key_prefix
            .clone()
            .unwrap_or_else(|| "limiter".to_string()),
        webdis_cluster: redis.webdis_cluster.clone(),
        timeout: Duration::from_millis(redis.timeout.unwrap_or(1000)),
    })
}

/// Per-request state, wasm-go style.
pub type HttpContext = HashMap<String, Box<dyn Any>>;

const COUNTERS: [&str; 4] = ["allowed", "limited", "limited_locally", "redis_errors"];

/// The naive limiter: configuration, SDK-style dispatch tables, state.
pub struct NaiveLimiter {
    configs: Vec<RuleConfig>,
    global: Option<usize>,
    rules: Vec<(Matcher, usize)>,
    script_sha: String,
    /// Whether keys over their limit are remembered and refused without
    /// Redis until their window ends, as the kit does. Higress's plugin
    /// has no such cache: it asks Redis every time.
    remember_over_limit: bool,
    /// Until which millisecond a key is refused locally, and its window's end.
    over_limit: HashMap<String, (u64, u64)>,
    counters: HashMap<String, u32>,
    contexts: HashMap<u32, HttpContext>,
    callouts: HashMap<u32, u32>,
}

impl core::fmt::Debug for NaiveLimiter {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NaiveLimiter")
            .field("configs", &self.configs)
            .field("requests", &self.contexts.len())
            .finish_non_exhaustive()
    }
}

fn header<H: Host>(host: &mut H, map: HeaderMap, name: &str) -> Option<String> {
    host.header(map, name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The conditions of one `_rules_` entry that decide (Higress ignores the
/// others): each listed kind must match by one of its entries. Domains are
/// kept lowercased.
#[derive(Debug)]
pub struct Matcher {
    domains: Vec<String>,
    routes: Vec<String>,
    services: Vec<String>,
    /// Prefixes of the route name.
    prefixes: Vec<String>,
    consumers: Vec<String>,
}

/// The request facts rules test, each read as an owned `String` when a
/// rule first needs it.
#[derive(Default)]
struct Facts {
    authority: Option<Option<String>>,
    route: Option<Option<String>>,
    cluster: Option<Option<String>>,
    consumer: Option<Option<String>>,
}

/// Property `xds.<name>` (Envoy 1.33+), else `<name>` (Higress).
fn property<H: Host>(host: &mut H, name: &str) -> Option<String> {
    let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    if let Some(value) = host.property(&["xds", name]).map(text) {
        return Some(value);
    }
    host.property(&[name]).map(text)
}

impl Matcher {
    fn matches<H: Host>(&self, host: &mut H, facts: &mut Facts) -> bool {
        if !self.routes.is_empty() {
            let route = facts
                .route
                .get_or_insert_with(|| property(host, "route_name"));
            if !route.as_ref().is_some_and(|r| self.routes.contains(r)) {
                return false;
            }
        }
        if !self.domains.is_empty() {
            let authority = facts.authority.get_or_insert_with(|| {
                header(host, HeaderMap::Request, ":authority").map(|a| {
                    match a.rsplit_once(':') {
                        Some((name, _port)) => name,
                        None => &a,
                    }
                    .to_lowercase()
                })
            });
            let Some(name) = authority else {
                return false;
            };
            if !self.domains.iter().any(|d| domain_matches(d, name)) {
                return false;
            }
        }
        if !self.services.is_empty() {
            let cluster = facts
                .cluster
                .get_or_insert_with(|| property(host, "cluster_name"));
            let Some(cluster) = cluster else {
                return false;
            };
            if !self.services.iter().any(|s| service_matches(s, cluster)) {
                return false;
            }
        }
        if !self.prefixes.is_empty() {
            let route = facts
                .route
                .get_or_insert_with(|| property(host, "route_name"));
            let Some(route) = route else {
                return false;
            };
            if !self.prefixes.iter().any(|p| route.starts_with(p.as_str())) {
                return false;
            }
        }
        if !self.consumers.is_empty() {
            let consumer = facts
                .consumer
                .get_or_insert_with(|| header(host, HeaderMap::Request, "x-mse-consumer"));
            if !consumer
                .as_ref()
                .is_some_and(|c| self.consumers.contains(c))
            {
                return false;
            }
        }
        true
    }
}

/// A service entry (`name` or `name:port`) against Higress's cluster name
/// `<direction>|port|subset|name` (exactly four parts), or the plain Envoy
/// cluster name.
fn service_matches(entry: &str, cluster: &str) -> bool {
    if cluster == entry {
        return true;
    }
    let parts: Vec<&str> = cluster.split('|').collect();
    let [_, port, _subset, name] = parts.as_slice() else {
        return false;
    };
    let with_port = entry
        .rsplit_once(':')
        .is_some_and(|(host, p)| host == *name && p == *port);
    with_port || entry == *name
}

fn domain_matches(pattern: &str, host: &str) -> bool {
    if let Some(suffix) = pattern.strip_prefix('*') {
        host.ends_with(suffix)
    } else if let Some(prefix) = pattern.strip_suffix('*') {
        host.starts_with(prefix)
    } else {
        host == pattern
    }
}

const NANOS_PER_SEC: u64 = 1_000_000_000;

impl NaiveLimiter {
    /// Parses `bytes` with serde, resolves the rules, computes the script
    /// digest and defines the counters on `host`.
    ///
    /// # Errors
    /// A description of what is wrong with the configuration.
    pub fn configure<H: Host>(bytes: &[u8], host: &mut H) -> Result<NaiveLimiter, String> {
        let raw: RawConfig = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let mut configs = Vec::new();
        let global = if raw.rules.is_empty()
            || raw.rule_name.is_some()
            || raw.global_threshold.is_some()
            || raw.rule_items.is_some()
        {
            configs.push(resolve(&raw, None)?);
            Some(0)
        } else {
            None
        };
        let mut rules = Vec::new();
        for rule in &raw.rules {
            let non_empty = |list: &[String]| -> Vec<String> {
                list.iter().filter(|s| !s.is_empty()).cloned().collect()
            };
            let mut matcher = Matcher {
                domains: rule.match_domain.iter().map(|d| d.to_lowercase()).collect(),
                routes: non_empty(&rule.match_route),
                services: non_empty(&rule.match_service),
                prefixes: non_empty(&rule.match_route_prefix),
                consumers: non_empty(&rule.match_consumer),
            };
            // Higress: the first present of route (+ service), domain,
            // service, route prefix (+ consumer) decides.
            if !matcher.routes.is_empty() {
                matcher.domains.clear();
                matcher.prefixes.clear();
                matcher.consumers.clear();
            } else if !matcher.domains.is_empty() {
                matcher.services.clear();
                matcher.prefixes.clear();
                matcher.consumers.clear();
            } else if !matcher.services.is_empty() {
                matcher.prefixes.clear();
                matcher.consumers.clear();
            } else if matcher.prefixes.is_empty() {
                return Err("a rule needs one of the _match_*_ fields".to_string());
            }
            let place = rule
                .config
                .rule_name
                .is_none()
                .then(|| format!("_rules_[{}]", rules.len()));
            configs.push(resolve(&merged(&rule.config, &raw), place)?);
            rules.push((matcher, configs.len() - 1));
        }
        let mut counters = HashMap::new();
        for name in COUNTERS {
            let full = format!("limiter.{name}");
            let id = host.define_counter(&full).map_err(|e| e.to_string())?;
            counters.insert(name.to_string(), id);
        }
        if host.log_level() <= LogLevel::Info {
            host.log(LogLevel::Info, &format!("[{}] configured", "limiter"));
        }
        Ok(NaiveLimiter {
            configs,
            global,
            rules,
            script_sha: sha1_smol::Sha1::from(COUNT_SCRIPT).digest().to_string(),
            remember_over_limit: true,
            over_limit: HashMap::new(),
            counters,
            contexts: HashMap::new(),
            callouts: HashMap::new(),
        })
    }

    /// Turns the over-limit cache off: every request asks Redis and is
    /// refused from its answer, as in Higress's `cluster-key-rate-limit`.
    #[must_use]
    pub fn without_over_limit_cache(mut self) -> NaiveLimiter {
        self.remember_over_limit = false;
        self
    }

    fn count<H: Host>(&self, host: &mut H, name: &str) {
        if let Some(&id) = self.counters.get(name) {
            host.increment_counter(id, 1);
        }
    }

    fn choose<H: Host>(&self, host: &mut H) -> Option<usize> {
        if self.rules.is_empty() {
            return self.global;
        }
        let mut facts = Facts::default();
        self.rules
            .iter()
            .find(|(matcher, _)| matcher.matches(host, &mut facts))
            .map(|(_, index)| *index)
            .or(self.global)
    }

    /// The SDK created the request's context.
    pub fn on_create_context(&mut self, context_id: u32) {
        self.contexts.insert(context_id, HttpContext::new());
    }

    /// The SDK dropped the request's context.
    pub fn on_done(&mut self, context_id: u32) {
        self.contexts.remove(&context_id);
    }

    /// Request headers: pick the limit, check the cache, send EVALSHA.
    pub fn on_request_headers<H: Host>(&mut self, host: &mut H, context_id: u32) -> Action {
        let Some(index) = self.choose(host) else {
            return Action::Continue;
        };
        let Some(config) = self.configs.get(index) else {
            return Action::Continue;
        };
        let now_nanos = host.now_nanos();
        let now = now_nanos / NANOS_PER_SEC;
        let (limit, key) = match &config.limits {
            Limits::Global(limit) => {
                let start = now - now % limit.window_secs;
                let key = format!(
                    "{}:{{{}:{}_per_{}s:global}}:{}",
                    config.key_prefix, config.scope, limit.max, limit.window_secs, start
                );
                (*limit, key)
            }
            Limits::Items(items) => {
                let mut found = None;
                'items: for item in items {
                    // Only header items are read per request (see the
                    // module documentation).
                    if item.source.kind != "header" {
                        continue;
                    }
                    let Some(value) = header(host, HeaderMap::Request, &item.source.name) else {
                        continue;
                    };
                    for k in &item.keys {
                        let hit = match &k.matcher {
                            KeyMatch::Any => true,
                            KeyMatch::Exact => k.key == value,
                            KeyMatch::Regex(re) => re.is_match(&value),
                            KeyMatch::Cidr(..) => false,
                        };
                        if hit {
                            let (per, identity) = if item.per_value {
                                ("per_", value.clone())
                            } else {
                                ("", escaped(&k.key))
                            };
                            let start = now - now % k.limit.window_secs;
                            let key = format!(
                                "{}:{{{}:{}_per_{}s:{per}header:{}:{}}}:{}",
                                config.key_prefix,
                                config.scope,
                                k.limit.max,
                                k.limit.window_secs,
                                escaped(&item.source.name),
                                identity,
                                start
                            );
                            found = Some((k.limit, key));
                            break 'items;
                        }
                    }
                }
                match found {
                    Some(found) => found,
                    None => return Action::Continue,
                }
            }
        };
        let window_end = now - now % limit.window_secs + limit.window_secs;
        if let Some(&(until_ms, until)) = self.over_limit.get(&key) {
            if now_nanos / 1_000_000 < until_ms {
                self.count(host, "limited_locally");
                return reject(host, config, limit.max, until - now);
            }
        }
        let args = vec![
            "EVALSHA".to_string(),
            self.script_sha.clone(),
            "1".to_string(),
            key.clone(),
            limit.window_secs.to_string(),
            "1".to_string(),
        ];
        let path = crate::naive::webdis_path(&args);
        let headers: Vec<(&str, &[u8])> = vec![
            (":method", b"GET"),
            (":path", path.as_bytes()),
            (":authority", b"webdis"),
        ];
        match host.http_call(&config.webdis_cluster, &headers, None, config.timeout) {
            Ok(token) => {
                self.callouts.insert(token, context_id);
            }
            Err(_) => return self.redis_failed(host, index),
        }
        if let Some(ctx) = self.contexts.get_mut(&context_id) {
            ctx.insert("config".to_string(), Box::new(index));
            ctx.insert("limit".to_string(), Box::new(limit.max));
            ctx.insert("window_end".to_string(), Box::new(window_end));
            ctx.insert("cache_key".to_string(), Box::new(key));
        }
        Action::Pause
    }

    fn redis_failed<H: Host>(&self, host: &mut H, index: usize) -> Action {
        self.count(host, "redis_errors");
        match self.configs.get(index) {
            Some(config) if config.failure_mode_deny => {
                host.send_response(503, &[], b"rate limit unavailable");
                Action::Pause
            }
            _ => Action::Continue,
        }
    }

    /// The webdis answer arrived: decode, decide, resume or reject.
    pub fn on_http_call_response<H: Host>(
        &mut self,
        host: &mut H,
        token: u32,
        num_headers: usize,
        body_size: usize,
    ) {
        let Some(context_id) = self.callouts.remove(&token) else {
            return;
        };
        let Some(ctx) = self.contexts.get(&context_id) else {
            return;
        };
        let get_u64 = |name: &str| ctx.get(name).and_then(|v| v.downcast_ref::<u64>()).copied();
        let (Some(index), Some(limit), Some(window_end), Some(cache_key)) = (
            ctx.get("config")
                .and_then(|v| v.downcast_ref::<usize>())
                .copied(),
            get_u64("limit"),
            get_u64("window_end"),
            ctx.get("cache_key")
                .and_then(|v| v.downcast_ref::<String>())
                .cloned(),
        ) else {
            return;
        };
        let status: Option<u16> = if num_headers == 0 {
            None
        } else {
            header(host, HeaderMap::HttpCallResponse, ":status").and_then(|s| s.parse().ok())
        };
        let body: Vec<u8> = host
            .body(BodyBuffer::HttpCallResponse, 0, body_size)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let count = match (status, decode(&body)) {
            (Some(200), Ok(Some((OwnedFrame::Integer(n), used)))) if used == body.len() => Some(n),
            (Some(200), Ok(Some((OwnedFrame::BulkString(s), used)))) if used == body.len() => {
                String::from_utf8(s).ok().and_then(|s| s.parse().ok())
            }
            _ => None,
        };
        let Some(count) = count else {
            if self.redis_failed(host, index) == Action::Continue {
                host.resume(Direction::Request);
            }
            return;
        };
        let count = u64::try_from(count).unwrap_or(0).max(1);
        let now_nanos = host.now_nanos();
        let now = now_nanos / NANOS_PER_SEC;
        if count <= limit {
            self.count(host, "allowed");
            let show = self.configs.get(index).is_some_and(|c| c.show_quota);
            if show {
                if let Some(ctx) = self.contexts.get_mut(&context_id) {
                    ctx.insert("quota".to_string(), Box::new((limit, limit - count)));
                }
            }
            host.resume(Direction::Request);
        } else {
            if self.remember_over_limit {
                // Refused locally until the window ends or
                // `over_limit_recheck_ms` has passed, as the kit does.
                let recheck_ms = self.configs.get(index).map_or(1000, |c| c.recheck_ms);
                let recheck = (now_nanos / 1_000_000 + recheck_ms).min(window_end * 1000);
                self.over_limit.insert(cache_key, (recheck, window_end));
            }
            self.count(host, "limited");
            if let Some(config) = self.configs.get(index) {
                reject(host, config, limit, window_end.saturating_sub(now).max(1));
            }
        }
    }

    /// Response headers: the quota headers of an allowed request.
    pub fn on_response_headers<H: Host>(&mut self, host: &mut H, context_id: u32) -> Action {
        let quota = self
            .contexts
            .get(&context_id)
            .and_then(|ctx| ctx.get("quota"))
            .and_then(|v| v.downcast_ref::<(u64, u64)>())
            .copied();
        if let Some((limit, remaining)) = quota {
            let headers: Vec<(String, String)> = vec![
                ("x-ratelimit-limit".to_string(), limit.to_string()),
                ("x-ratelimit-remaining".to_string(), remaining.to_string()),
            ];
            for (name, value) in &headers {
                host.set_header(HeaderMap::Response, name, Some(value.as_bytes()));
            }
        }
        Action::Continue
    }
}

fn reject<H: Host>(host: &mut H, config: &RuleConfig, limit: u64, reset: u64) -> Action {
    let headers: Vec<(String, String)> = vec![
        ("x-ratelimit-limit".to_string(), limit.to_string()),
        ("x-ratelimit-remaining".to_string(), "0".to_string()),
        ("x-ratelimit-reset".to_string(), reset.to_string()),
    ];
    let refs: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    host.send_response(config.rejected_code, &refs, config.rejected_msg.as_bytes());
    Action::Pause
}
