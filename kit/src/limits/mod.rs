//! Building blocks for per-client limits, in Higress's vocabulary.
//!
//! Higress's rate-limit plugins (`cluster-key-rate-limit`,
//! `ai-token-ratelimit`) share one configuration shape: a
//! `global_threshold`, or `rule_items` that pick a request attribute
//! (`limit_by_header`, `limit_by_per_ip`...) and `limit_keys` that match its
//! values (exact, `*`, `regexp:`, CIDR), each with an amount per second,
//! minute, hour or day. This module compiles that shape once ([`Limits`]),
//! finds the limit of a request without allocating ([`Limits::find`]), and
//! provides the fixed [`Window`](window::Window) and the
//! [`cache::OverLimitCache`] such plugins need.
//!
//! # Counter keys
//!
//! A counter key names everything that tells one limit from another, so
//! that two limits never count in one Redis key:
//!
//! ```text
//! <prefix>:{<scope>:<amount>_per_<seconds>s:global}:<window start>
//! <prefix>:{<scope>:<amount>_per_<seconds>s:<kind>:<name>:<key>}:<window start>
//! <prefix>:{<scope>:<amount>_per_<seconds>s:per_<kind>:<name>:<value>}:<window start>
//! ```
//!
//! - `scope` is the `rule_name`; a `_rules_` entry that inherits the name
//!   adds its place, `:_rules_[2]`, so it never counts with the global
//!   configuration or another entry. An entry that sets its own
//!   `rule_name` is named by it alone: entries, like gateways, that give
//!   the same name to the same limit share its counters.
//! - The amount and the window length: a per-second and a per-minute
//!   limit starting at the same second, or 5 and 2 per minute, are apart.
//! - `kind` is `header`, `param`, `cookie` or `consumer` for an item that
//!   counts all values matching one `limit_keys` entry together (the
//!   entry's `key` follows the name), `per_` and the kind, or `per_ip`,
//!   for an item that counts each value (the request's value follows; an
//!   address in one canonical text, so every spelling of it is one
//!   counter).
//!   `name` is the header, parameter or cookie, `x-mse-consumer`, or the
//!   `limit_by_per_ip` text (`from-remote-addr`, `from-header-<name>`).
//!
//! The configured parts are escaped (`%`, `:`, `{`, `}` as `%25`, `%3A`,
//! `%7B`, `%7D`), so a `:` in a name cannot make one limit's key look
//! like another's; readable names pass unchanged. The request's value is
//! not escaped: it is the last part before `}:` and the window's digits,
//! which are read from the end, so distinct values stay distinct keys.
//! The braces make the key's Redis Cluster hash tag.

pub mod cache;
#[cfg(test)]
mod distinct_keys;
mod heads;
pub(crate) mod ip;
mod items;
pub mod kept;
pub mod key_hash;
pub mod keys;
// The matcher of `regexp:` keys, a module of its own, also under the name
// limit keys know it by.
pub use crate::pattern;
mod siphash;
pub mod window;

use crate::config::{ConfigError, Field, Fields};
/// The key format belongs to the Redis layer; plugins name it here.
pub use crate::counter_key::CounterKey;
use crate::counter_key::KEY_CLOSE;
use crate::host::Host;
use crate::io::Io;
use crate::plugin::{Flow, Setup};
use cache::OverLimitCache;
use core::cell::Cell;
use heads::{Heads, GLOBAL_IDENTITY};
pub use items::{Item, KeyMatch, Limit, LimitKey, Limits, Matched, Unit, LIMIT_BY_FIELDS};
use key_hash::KeyHash;
use keys::Value;

/// The fields every Higress-style limit rule has, compiled.
#[derive(Debug)]
pub struct Rule<'cfg> {
    /// `rule_name`: names the counters, so gateways sharing it share limits.
    pub rule_name: &'cfg str,
    /// `global_threshold` or `rule_items`.
    pub limits: Limits<'cfg>,
    /// `rejected_code` (default 429).
    pub rejected_code: u16,
    /// `rejected_msg`.
    pub rejected_msg: &'cfg str,
    /// `failure_mode_deny`: refuse with 503 when Redis cannot be asked,
    /// instead of letting requests through.
    pub failure_mode_deny: bool,
    /// `redis_key_prefix`: first part of the counter keys.
    pub key_prefix: &'cfg str,
    /// `key_hash` with `key_hash_secret`: counter keys name values (the
    /// request's, and the configured `key` of a `limit_keys` entry) by a
    /// keyed hash, never in clear; see [`key_hash`].
    pub key_hash: Option<KeyHash>,
    /// Keys known to be over their limit, until their window ends.
    pub cache: OverLimitCache,
    /// `over_limit_recheck_ms` (default 1000): how long a key Redis said
    /// is over its limit is refused from the cache before the next request
    /// asks Redis again (never past the key's window).
    pub over_limit_recheck_ms: u64,
    /// Counter keys up to their variable parts (see the module
    /// documentation), and the
    /// cache hashes of the counters whose identity is configured (the
    /// global one, every key of an item that is not `limit_by_per_*`),
    /// computed once here. A request then copies two to four pieces into
    /// its key instead of building it, and only per-value counters pay for
    /// a keyed hash.
    heads: Heads,
    /// The digits of the last window start, for the counter keys.
    window_text: WindowText,
    /// The digits of the last limit shown, for [`Rule::limit_digits`].
    limit_text: WindowText,
}

const NANOS_PER_SEC: u64 = 1_000_000_000;
const NANOS_PER_MS: u64 = 1_000_000;

/// What a plugin's [`Rule`] defaults to and how it answers.
#[derive(Clone, Copy, Debug)]
pub struct RuleStyle {
    /// What the limits count.
    pub unit: Unit,
    /// Default `redis_key_prefix`.
    pub key_prefix: &'static str,
    /// Default `rejected_msg`.
    pub rejected_msg: &'static str,
    /// Names of the limit, remaining and reset headers of a refusal.
    pub headers: [&'static str; 3],
}

fn no_braces(field: &Field<'_, '_>, value: &str) -> Result<(), ConfigError> {
    // Braces would move the Redis Cluster hash tag of the counter keys.
    if value.contains(['{', '}']) {
        return Err(field.error("must not contain `{` or `}`"));
    }
    Ok(())
}

impl<'cfg> Rule<'cfg> {
    /// Reads `rule_name`, the limits, `rejected_code`, `rejected_msg`,
    /// `failure_mode_deny`, `redis_key_prefix`, `over_limit_recheck_ms`,
    /// `key_hash` and `key_hash_secret`.
    ///
    /// # Errors
    /// Names the first field at fault.
    pub fn parse(
        fields: &Fields<'_, 'cfg>,
        setup: &Setup<'_>,
        style: &RuleStyle,
    ) -> Result<Rule<'cfg>, ConfigError> {
        let rule_field = fields.require("rule_name")?;
        let rule_name = rule_field.str()?;
        if rule_name.is_empty() {
            return Err(rule_field.error("must not be empty"));
        }
        no_braces(&rule_field, rule_name)?;
        let limits = Limits::parse(fields, style.unit)?;
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
        let key_prefix = match fields.get("redis_key_prefix") {
            Some(field) => {
                let prefix = field.str()?;
                no_braces(&field, prefix)?;
                prefix
            }
            None => style.key_prefix,
        };
        // Read before the cache is made, so that its refusal shares the
        // cleanup of the refusals above.
        let key_hash = KeyHash::parse(fields)?;
        let cache = OverLimitCache::new(setup.now_nanos());
        // A `_rules_` entry that inherits its `rule_name` is told apart by
        // its place (`_rules_[2]`), which names it in error messages too.
        let place = fields.get_own("rule_name").is_none().then(|| fields.path());
        let heads = Heads::new(
            &limits,
            &cache,
            key_prefix,
            rule_name,
            place.as_deref(),
            key_hash.as_ref(),
        );
        Ok(Rule {
            rule_name,
            limits,
            rejected_code,
            rejected_msg: fields
                .opt_str("rejected_msg")?
                .unwrap_or(style.rejected_msg),
            failure_mode_deny: fields.bool_or("failure_mode_deny", false)?,
            over_limit_recheck_ms: match fields.u64_or("over_limit_recheck_ms", 1000)? {
                0 => {
                    return Err(
                        fields.error("over_limit_recheck_ms", "must be at least 1 (milliseconds)")
                    )
                }
                ms => ms,
            },
            key_prefix,
            key_hash,
            cache,
            heads,
            window_text: WindowText::default(),
            limit_text: WindowText::default(),
        })
    }

    /// Refuses the request: `rejected_code` and `rejected_msg`, with the
    /// limit, `0` remaining, and the seconds until the window resets.
    pub fn refuse<H: Host>(
        &self,
        io: &mut Io<'_, H>,
        style: &RuleStyle,
        limit: u64,
        reset_after: u64,
    ) -> Flow {
        let mut limit_digits = itoa::Buffer::new();
        let mut reset_digits = itoa::Buffer::new();
        let [limit_name, remaining_name, reset_name] = style.headers;
        let headers: [(&str, &[u8]); 3] = [
            (limit_name, limit_digits.format(limit).as_bytes()),
            (remaining_name, b"0"),
            (reset_name, reset_digits.format(reset_after).as_bytes()),
        ];
        io.respond(self.rejected_code, &headers, self.rejected_msg.as_bytes())
    }

    /// The counter key of a match in the window starting at `window`
    /// (decimal seconds): the rule's scope, the limit's amount and window
    /// length, its source and the matching `key` (or, for
    /// `limit_by_per_*`, the request's value), then the window start, as
    /// the [module documentation](self) lays out; the braces keep the key
    /// in one Redis Cluster slot. Pieces borrow their sources, for
    /// [`Command::key_parts`](crate::redis::Command::key_parts). Also the
    /// key's cache hash when its identity is configured. `None` only if the
    /// match does not come from this rule's limits.
    pub fn counter_key<'a>(
        &'a self,
        matched: &Matched,
        value: &'a [u8],
        window: &'a [u8],
    ) -> Option<(CounterKey<'a>, Option<u64>)> {
        let heads = &self.heads;
        let (head, identity) = match matched.item {
            None => (heads.global, GLOBAL_IDENTITY),
            Some(i) if matched.per_value => {
                let head = heads.key(i, matched.key)?;
                let parts = [heads.bytes(head), value, KEY_CLOSE, window];
                let key = CounterKey::of(&parts, heads.segment(head), value);
                return Some((key, None));
            }
            Some(i) => (
                heads.key(i, matched.key)?,
                self.limits.key_text(matched)?.as_bytes(),
            ),
        };
        Some((
            CounterKey::of(&[heads.bytes(head), window], heads.segment(head), identity),
            Some(head.hash),
        ))
    }

    /// Finds what limits the current request at `now_nanos` (since the
    /// epoch): its limit,
    /// window, counter key (built in `scratch`) and whether the over-limit
    /// cache already knows the key is over. `None` when no limit applies.
    pub fn apply<'a, H: Host>(
        &'a self,
        io: &mut Io<'_, H>,
        now_nanos: u64,
        scratch: &'a mut KeyScratch,
    ) -> Option<Applied<'a>> {
        let now = now_nanos / NANOS_PER_SEC;
        let matched = self.limits.find(io, &mut scratch.value)?;
        if let (true, Some(key_hash)) = (matched.per_value, &self.key_hash) {
            // Matched on the value itself; only the key holds its hash.
            scratch.value = Value::from_slice(&key_hash.digits(&scratch.value));
        }
        let window = window::Window::containing(now, matched.limit.window_secs);
        let (digits, len) = self.window_text.of(window.start);
        scratch.window = digits;
        let start = scratch.window.get(..len).unwrap_or_default();
        let (key, hash) = self.counter_key(&matched, &scratch.value, start)?;
        let cache_hash = match hash {
            Some(hash) => hash,
            None => self.cache.hash(matched.slot, key.identity()),
        };
        Some(Applied {
            limit: matched.limit,
            window,
            key,
            cache_hash,
            known_over: self.cache.is_over(cache_hash, now_nanos / NANOS_PER_MS),
        })
    }

    /// Remembers that the key of `hash` is over its limit, as Redis just
    /// said at `now_nanos`: its requests are refused from the cache until
    /// its window ends at second `window_end` or `over_limit_recheck_ms`
    /// has passed, whichever comes first.
    pub fn remember_over(&self, hash: u64, window_end: u64, now_nanos: u64) {
        let recheck = (now_nanos / NANOS_PER_MS).saturating_add(self.over_limit_recheck_ms);
        let until = window_end.saturating_mul(1000).min(recheck);
        self.cache.remember(hash, until);
    }

    /// The decimal digits of `limit`, in the first `len` bytes of the
    /// array, for a quota header. A rule's requests show few distinct
    /// limits, usually one: the digits of the last one are kept, and
    /// copying them costs a fraction of formatting them again.
    pub fn limit_digits(&self, limit: u64) -> ([u8; 20], usize) {
        self.limit_text.of(limit)
    }

    /// Redis could not be asked: `503` with `failure_mode_deny`, else
    /// `None` (the caller lets the request through).
    pub fn unavailable<H: Host>(&self, io: &mut Io<'_, H>) -> Option<Flow> {
        self.failure_mode_deny
            .then(|| io.respond(503, &[], b"limit service unavailable"))
    }
}

/// Stack space for [`Rule::apply`]: the request's value and the window's
/// digits, which the counter key borrows.
#[derive(Default)]
pub struct KeyScratch {
    value: Value,
    window: [u8; 20],
}

/// The decimal text of the window start a rule formatted last: every
/// request of a window needs the same digits, and copying them costs a
/// fraction of formatting them again. (Also the last limit shown.)
#[derive(Debug, Default)]
struct WindowText(Cell<(u64, [u8; 20], usize)>);

impl WindowText {
    /// The digits of `start` (the first `len` bytes of the array).
    fn of(&self, start: u64) -> ([u8; 20], usize) {
        let (last, digits, len) = self.0.get();
        if len > 0 && last == start {
            return (digits, len);
        }
        let mut buffer = itoa::Buffer::new();
        let text = buffer.format(start).as_bytes();
        let mut digits = [0u8; 20];
        // A u64 has at most 20 digits.
        let len = text.len().min(digits.len());
        if let (Some(to), Some(from)) = (digits.get_mut(..len), text.get(..len)) {
            to.copy_from_slice(from);
        }
        self.0.set((start, digits, len));
        (digits, len)
    }
}

impl core::fmt::Debug for KeyScratch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyScratch")
            .field("value", &self.value)
            .finish_non_exhaustive()
    }
}

/// What limits one request; see [`Rule::apply`].
#[derive(Debug)]
pub struct Applied<'a> {
    /// The limit that applies.
    pub limit: Limit,
    /// The current window of that limit.
    pub window: window::Window,
    /// The counter's key.
    pub key: CounterKey<'a>,
    /// The key's hash in the over-limit cache.
    pub cache_hash: u64,
    /// The over-limit cache knows the key is over until its window ends:
    /// refuse without asking Redis.
    pub known_over: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_digits_are_the_formatted_ones() {
        // Repeated, changing, zero and extreme values: what the cache
        // hands out is always what formatting gives.
        let text = WindowText::default();
        for n in [
            0,
            0,
            7,
            100_000_000,
            100_000_000,
            99,
            1_700_000_000,
            u64::MAX,
            u64::MAX,
            1,
        ] {
            let (digits, len) = text.of(n);
            assert_eq!(&digits[..len], n.to_string().as_bytes());
        }
    }
}
