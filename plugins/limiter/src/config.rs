//! The limiter's configuration, with Higress `cluster-key-rate-limit`'s
//! field names so existing configurations move over unchanged.

use kit::limits::{Rule, RuleStyle, Unit};
use kit::{ConfigError, Fields, Script, Setup};

/// Atomically counts a request in its window and returns the new count.
/// The expiry is set on the window's first request only; the key carries
/// the window start, so it is never reused after the window ends.
///
/// A key Redis cannot count (someone stored a hash or a string that is not
/// an integer there; `INCR` answers `WRONGTYPE` or `ERR value is not an
/// integer`) would refuse every request of its window. The script replaces
/// it with a new count of 1 in the same call and answers
/// `[1, <Redis's error>, <key>]`, so the plugin can count and name the
/// repair. An error the replacement hits too (out of memory, a read-only
/// replica) is the script's error reply.
pub const COUNT_SCRIPT: &str = "local n = redis.pcall('INCR', KEYS[1])\n\
if type(n) == 'table' then\n\
redis.call('SET', KEYS[1], 1, 'EX', ARGV[1])\n\
return {1, n.err, KEYS[1]}\n\
end\n\
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end\n\
return n";

/// [`COUNT_SCRIPT`] with its digest, computed at compile time.
const COUNT: Script = Script::new(COUNT_SCRIPT);

/// How the limiter's rules read and answer.
pub const STYLE: RuleStyle = RuleStyle {
    unit: Unit::Query,
    key_prefix: "limiter",
    rejected_msg: "Too many requests",
    headers: [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ],
};

/// The compiled configuration of one rule.
#[derive(Debug)]
pub struct Config<'cfg> {
    /// `rule_name`, the limits, `rejected_code`, `rejected_msg`,
    /// `failure_mode_deny`, `redis_key_prefix` (default `limiter`).
    pub rule: Rule<'cfg>,
    /// `show_limit_quota_header`: allowed answers carry the quota headers too.
    pub show_limit_quota_header: bool,
    pub(crate) script: Script,
}

/// Compiles one rule.
///
/// # Errors
/// Names the first field at fault.
pub fn compile<'cfg>(
    fields: &Fields<'_, 'cfg>,
    setup: &mut Setup<'_>,
) -> Result<Config<'cfg>, ConfigError> {
    Ok(Config {
        rule: Rule::parse(fields, setup, &STYLE)?,
        show_limit_quota_header: fields.bool_or("show_limit_quota_header", false)?,
        script: COUNT,
    })
}
