//! The limiter's configuration, with Higress `cluster-key-rate-limit`'s
//! field names so existing configurations move over unchanged.

use kit::limits::{Rule, RuleStyle, Unit};
use kit::{ConfigError, Fields, Setup};

/// The counting script the limiter's requests go through: the kit's
/// [`kit::COUNT_SCRIPT`] (an atomic `INCRBY` with the first write's
/// `EXPIRE`, and the repair of a key Redis cannot count).
pub const COUNT_SCRIPT: &str = kit::COUNT_SCRIPT;

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
    })
}
