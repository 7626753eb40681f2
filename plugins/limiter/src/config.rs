//! The limiter's configuration, with Higress `cluster-key-rate-limit`'s
//! field names so existing configurations move over unchanged.

use crate::cache::OverLimitCache;
use crate::keys::{Cidr, Source};
use kit::{ConfigError, Field, Fields, Script, Setup};

/// Atomically counts a request in its window and returns the new count.
/// The expiry is set on the window's first request only; the key carries
/// the window start, so it is never reused after the window ends.
pub(crate) const COUNT_SCRIPT: &str = "local n = redis.call('INCR', KEYS[1])\n\
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end\n\
return n";

/// A number of requests allowed per fixed window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Window length in seconds (1, 60, 3600 or 86400).
    pub window_secs: u64,
    /// Requests allowed per window.
    pub max: u64,
}

const LIMIT_KEYS: [&str; 4] = [
    "query_per_second",
    "query_per_minute",
    "query_per_hour",
    "query_per_day",
];
const WINDOWS: [u64; 4] = [1, 60, 3_600, 86_400];

impl Limit {
    fn from_fields(fields: &Fields<'_, '_>) -> Result<Limit, ConfigError> {
        let (which, field) = fields.one_of(&LIMIT_KEYS)?;
        Ok(Limit {
            window_secs: WINDOWS.get(which).copied().unwrap_or(1),
            max: field.positive()?,
        })
    }
}

/// How a limit key's `key` selects request values.
#[derive(Debug)]
pub enum KeyMatch {
    /// The value equals `key`.
    Exact,
    /// `*`: any value.
    Any,
    /// `regexp:<pattern>`: the value matches the pattern.
    Regex(regex_lite::Regex),
    /// A CIDR range (`limit_by_per_ip` only).
    Cidr(Cidr),
}

/// One entry of `limit_keys`.
#[derive(Debug)]
pub struct LimitKey<'cfg> {
    /// The `key` as written.
    pub key: &'cfg str,
    /// How it matches.
    pub matcher: KeyMatch,
    /// The limit for matching values.
    pub limit: Limit,
}

/// One entry of `rule_items`.
#[derive(Debug)]
pub struct Item<'cfg> {
    /// Where the value comes from.
    pub source: Source<'cfg>,
    /// `limit_by_per_*`: each distinct value has its own counter; otherwise
    /// all values matching one `limit_keys` entry share that entry's counter.
    pub per_value: bool,
    /// The limits, first match wins.
    pub keys: Vec<LimitKey<'cfg>>,
}

/// What is limited.
#[derive(Debug)]
pub enum Limits<'cfg> {
    /// `global_threshold`: one counter for every request.
    Global(Limit),
    /// `rule_items`: counters by request attribute; the first item whose
    /// value is present and matches one of its keys applies.
    Items(Vec<Item<'cfg>>),
}

/// The compiled configuration of one rule.
#[derive(Debug)]
pub struct Config<'cfg> {
    /// `rule_name`: names the counters, so gateways sharing it share limits.
    pub rule_name: &'cfg str,
    /// `global_threshold` or `rule_items`.
    pub limits: Limits<'cfg>,
    /// `rejected_code` (default 429).
    pub rejected_code: u16,
    /// `rejected_msg` (default `Too many requests`).
    pub rejected_msg: &'cfg str,
    /// `show_limit_quota_header`: allowed answers carry the quota headers too.
    pub show_limit_quota_header: bool,
    /// `failure_mode_deny`: answer 503 when Redis fails instead of letting
    /// requests through.
    pub failure_mode_deny: bool,
    /// `redis_key_prefix` (default `limiter`).
    pub key_prefix: &'cfg str,
    pub(crate) script: Script,
    pub(crate) cache: OverLimitCache,
}

const SOURCES: [&str; 9] = [
    "limit_by_header",
    "limit_by_param",
    "limit_by_cookie",
    "limit_by_consumer",
    "limit_by_per_header",
    "limit_by_per_param",
    "limit_by_per_cookie",
    "limit_by_per_consumer",
    "limit_by_per_ip",
];

fn no_braces(field: &Field<'_, '_>, value: &str) -> Result<(), ConfigError> {
    // Braces would move the Redis Cluster hash tag of the counter keys.
    if value.contains(['{', '}']) {
        return Err(field.error("must not contain `{` or `}`"));
    }
    Ok(())
}

fn item<'cfg>(field: Field<'_, 'cfg>) -> Result<Item<'cfg>, ConfigError> {
    let fields = field.object()?;
    let (which, source_field) = fields.one_of(&SOURCES)?;
    let name = source_field.str()?;
    let per_value = which >= 4;
    let source = match which {
        0 | 4 => Source::Header(non_empty(&source_field, name)?),
        1 | 5 => Source::Param(non_empty(&source_field, name)?),
        2 | 6 => Source::Cookie(non_empty(&source_field, name)?),
        3 | 7 => Source::Consumer,
        _ => match name {
            "from-remote-addr" => Source::RemoteAddr,
            other => match other.strip_prefix("from-header-") {
                Some(header) if !header.is_empty() => Source::ForwardedHeader(header),
                _ => {
                    return Err(source_field.error(format!(
                        "must be \"from-remote-addr\" or \"from-header-<name>\", got \"{other}\""
                    )))
                }
            },
        },
    };
    let by_ip = matches!(source, Source::RemoteAddr | Source::ForwardedHeader(_));
    let keys_field = fields.require("limit_keys")?;
    let mut keys = Vec::new();
    keys_field.each(|entry| {
        let entry_fields = entry.object()?;
        let key_field = entry_fields.require("key")?;
        let key = key_field.str()?;
        let matcher = if key == "*" {
            KeyMatch::Any
        } else if let Some(pattern) = key.strip_prefix("regexp:") {
            KeyMatch::Regex(
                regex_lite::Regex::new(pattern)
                    .map_err(|e| key_field.error(format!("invalid regular expression: {e}")))?,
            )
        } else if by_ip {
            KeyMatch::Cidr(Cidr::parse(key).ok_or_else(|| {
                key_field.error(format!("\"{key}\" is not an IP address or CIDR range"))
            })?)
        } else {
            KeyMatch::Exact
        };
        keys.push(LimitKey {
            key,
            matcher,
            limit: Limit::from_fields(&entry_fields)?,
        });
        Ok(())
    })?;
    if keys.is_empty() {
        return Err(keys_field.error("must list at least one key"));
    }
    Ok(Item {
        source,
        per_value,
        keys,
    })
}

fn non_empty<'cfg>(field: &Field<'_, 'cfg>, name: &'cfg str) -> Result<&'cfg str, ConfigError> {
    if name.is_empty() {
        return Err(field.error("must name a header, parameter or cookie"));
    }
    Ok(name)
}

/// Compiles one rule.
///
/// # Errors
/// Names the first field at fault.
pub fn compile<'cfg>(
    fields: &Fields<'_, 'cfg>,
    setup: &mut Setup<'_>,
) -> Result<Config<'cfg>, ConfigError> {
    let rule_field = fields.require("rule_name")?;
    let rule_name = rule_field.str()?;
    if rule_name.is_empty() {
        return Err(rule_field.error("must not be empty"));
    }
    no_braces(&rule_field, rule_name)?;
    let (which, limits_field) = fields.one_of(&["global_threshold", "rule_items"])?;
    let limits = if which == 0 {
        Limits::Global(Limit::from_fields(&limits_field.object()?)?)
    } else {
        let mut items = Vec::new();
        limits_field.each(|entry| {
            items.push(item(entry)?);
            Ok(())
        })?;
        if items.is_empty() {
            return Err(limits_field.error("must list at least one item"));
        }
        Limits::Items(items)
    };
    let code = fields.u64_or("rejected_code", 429)?;
    let rejected_code = u16::try_from(code)
        .ok()
        .filter(|c| (200..=599).contains(c))
        .ok_or_else(|| {
            fields.error(
                "rejected_code",
                format!("must be an HTTP status (200-599), got {code}"),
            )
        })?;
    let key_prefix = fields.opt_str("redis_key_prefix")?.unwrap_or("limiter");
    if let Some(f) = fields.get("redis_key_prefix") {
        no_braces(&f, key_prefix)?;
    }
    Ok(Config {
        rule_name,
        limits,
        rejected_code,
        rejected_msg: fields
            .opt_str("rejected_msg")?
            .unwrap_or("Too many requests"),
        show_limit_quota_header: fields.bool_or("show_limit_quota_header", false)?,
        failure_mode_deny: fields.bool_or("failure_mode_deny", false)?,
        key_prefix,
        script: Script::new(COUNT_SCRIPT),
        cache: OverLimitCache::new(setup.now_nanos()),
    })
}
