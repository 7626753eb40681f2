//! The limiter's configuration, with Higress `cluster-key-rate-limit`'s
//! field names so existing configurations move over unchanged.

use kit::limits::cache::OverLimitCache;
use kit::limits::{Limits, Unit};
use kit::{ConfigError, Field, Fields, Script, Setup};

/// Atomically counts a request in its window and returns the new count.
/// The expiry is set on the window's first request only; the key carries
/// the window start, so it is never reused after the window ends.
pub(crate) const COUNT_SCRIPT: &str = "local n = redis.call('INCR', KEYS[1])\n\
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end\n\
return n";

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

fn no_braces(field: &Field<'_, '_>, value: &str) -> Result<(), ConfigError> {
    // Braces would move the Redis Cluster hash tag of the counter keys.
    if value.contains(['{', '}']) {
        return Err(field.error("must not contain `{` or `}`"));
    }
    Ok(())
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
    let limits = Limits::parse(fields, Unit::Query)?;
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
