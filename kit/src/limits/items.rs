//! The limits of one rule, `global_threshold` or `rule_items`, compiled
//! once, and the search for the limit of one request.

use super::keys::{Cidr, Source, Value};
use crate::config::{ConfigError, Field, Fields};
use crate::host::Host;
use crate::io::Io;
use crate::pattern::Pattern;
use std::borrow::Cow;

/// What a limit counts; names the `<unit>_per_<period>` fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// `query_per_second` ... `query_per_day`: requests.
    Query,
    /// `token_per_second` ... `token_per_day`: LLM tokens.
    Token,
}

impl Unit {
    /// The unit's four `<unit>_per_<period>` field names, from second to day.
    pub fn fields(self) -> &'static [&'static str; 4] {
        match self {
            Unit::Query => &[
                "query_per_second",
                "query_per_minute",
                "query_per_hour",
                "query_per_day",
            ],
            Unit::Token => &[
                "token_per_second",
                "token_per_minute",
                "token_per_hour",
                "token_per_day",
            ],
        }
    }
}

const WINDOWS: [u64; 4] = [1, 60, 3_600, 86_400];

/// An amount allowed per fixed window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Window length in seconds (1, 60, 3600 or 86400).
    pub window_secs: u64,
    /// Amount allowed per window.
    pub max: u64,
}

impl Limit {
    /// Reads exactly one of the four `<unit>_per_<period>` fields.
    ///
    /// # Errors
    /// When none or several are set, or the amount is not a positive integer.
    pub fn parse(fields: &Fields<'_, '_>, unit: Unit) -> Result<Limit, ConfigError> {
        let (which, field) = fields.one_of(unit.fields())?;
        Ok(Limit {
            window_secs: WINDOWS.get(which).copied().unwrap_or(1),
            max: field.positive()?,
        })
    }
}

/// How a `limit_keys` entry's `key` selects request values.
#[derive(Debug)]
pub enum KeyMatch {
    /// The value equals `key`.
    Exact,
    /// `*`: any value.
    Any,
    /// `regexp:<pattern>`: the pattern matches somewhere in the value (an
    /// unanchored search, as Go's `regexp.MatchString`); see [`pattern`](super::pattern).
    Regex(Pattern),
    /// A CIDR range (`limit_by_per_ip` only).
    Cidr(Cidr),
}

/// One entry of `limit_keys`.
#[derive(Debug)]
pub struct LimitKey<'cfg> {
    /// The `key` as written (a number as its decimal text).
    pub key: Cow<'cfg, str>,
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

/// The `rule_items` fields that name where an item's value comes from:
/// `limit_by_*` (values matching one `limit_keys` entry share its
/// counter), then `limit_by_per_*` (a counter per value); an item sets
/// exactly one.
pub const LIMIT_BY_FIELDS: [&str; 9] = [
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

fn non_empty<'cfg>(field: &Field<'_, 'cfg>, name: &'cfg str) -> Result<&'cfg str, ConfigError> {
    if name.is_empty() {
        return Err(field.error("must name a header, parameter or cookie"));
    }
    Ok(name)
}

fn item<'cfg>(field: Field<'_, 'cfg>, unit: Unit) -> Result<Item<'cfg>, ConfigError> {
    let fields = field.object()?;
    let (which, source_field) = fields.one_of(&LIMIT_BY_FIELDS)?;
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
        let key = key_field.text()?;
        let matcher = if key == "*" {
            KeyMatch::Any
        } else if let Some(pattern) = key.strip_prefix("regexp:") {
            KeyMatch::Regex(
                Pattern::new(pattern)
                    .map_err(|e| key_field.error(format!("invalid regular expression: {e}")))?,
            )
        } else if by_ip {
            KeyMatch::Cidr(Cidr::parse(&key).ok_or_else(|| {
                key_field.error(format!("\"{key}\" is not an IP address or CIDR range"))
            })?)
        } else {
            KeyMatch::Exact
        };
        keys.push(LimitKey {
            key,
            matcher,
            limit: Limit::parse(&entry_fields, unit)?,
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

/// [`Matched::slot`] of the global limit.
pub(super) const GLOBAL_SLOT: usize = usize::MAX;

/// [`Matched::slot`] of key `k` of item `i`.
pub(super) fn slot(i: usize, k: usize) -> usize {
    (i << 16) | k
}

/// The limit that applies to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Matched {
    /// The amount per window.
    pub limit: Limit,
    /// Identifies the item and key (for caches); `usize::MAX` for global.
    pub slot: usize,
    pub(super) item: Option<usize>,
    pub(super) key: usize,
    pub(super) per_value: bool,
}

impl<'cfg> Limits<'cfg> {
    /// Reads `global_threshold` or `rule_items`, whichever is set.
    ///
    /// # Errors
    /// Names the first field at fault: neither or both set, an unknown
    /// `limit_by_*`, an invalid regular expression or CIDR range, a limit
    /// that is not a positive integer.
    pub fn parse(fields: &Fields<'_, 'cfg>, unit: Unit) -> Result<Limits<'cfg>, ConfigError> {
        let (which, limits_field) = fields.one_of(&["global_threshold", "rule_items"])?;
        if which == 0 {
            return Ok(Limits::Global(Limit::parse(&limits_field.object()?, unit)?));
        }
        let mut items = Vec::new();
        limits_field.each(|entry| {
            items.push(item(entry, unit)?);
            Ok(())
        })?;
        if items.is_empty() {
            return Err(limits_field.error("must list at least one item"));
        }
        Ok(Limits::Items(items))
    }

    /// Finds the limit of the current request, reading the attribute into
    /// `value`; `None` when no item applies (the request is not limited).
    pub fn find<H: Host>(&self, io: &mut Io<'_, H>, value: &mut Value) -> Option<Matched> {
        let items = match self {
            Limits::Global(limit) => {
                return Some(Matched {
                    limit: *limit,
                    slot: GLOBAL_SLOT,
                    item: None,
                    key: 0,
                    per_value: false,
                })
            }
            Limits::Items(items) => items,
        };
        for (i, item) in items.iter().enumerate() {
            if !item.source.read(io, value) {
                continue;
            }
            for (k, key) in item.keys.iter().enumerate() {
                let hit = match &key.matcher {
                    KeyMatch::Any => true,
                    KeyMatch::Exact => key.key.as_bytes() == value.as_slice(),
                    KeyMatch::Regex(pattern) => pattern.is_match(value),
                    KeyMatch::Cidr(net) => net.contains(value),
                };
                if hit {
                    return Some(Matched {
                        limit: key.limit,
                        slot: slot(i, k),
                        item: Some(i),
                        key: k,
                        per_value: item.per_value,
                    });
                }
            }
        }
        None
    }

    /// The configured `key` of a match, `None` for the global limit.
    pub(super) fn key_text(&self, matched: &Matched) -> Option<&str> {
        match self {
            Limits::Items(items) => Some(&items.get(matched.item?)?.keys.get(matched.key)?.key),
            Limits::Global(_) => None,
        }
    }
}
