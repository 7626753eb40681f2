//! Config-shaped JSON from fuzz input: the keys both plugins read, each
//! usually given a value of its type, sometimes any JSON at all, with
//! unknown keys and odd numbers mixed in, so that the fuzzer spends its
//! time past the first type check.

use arbitrary::{Result, Unstructured};
use kit::limits::{Unit, LIMIT_BY_FIELDS};
use serde_json::{json, Map, Value};

/// Which plugin's configuration to shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plugin {
    Limiter,
    TokenQuota,
}

/// A `limit_by_*` field the kit does not know, chosen beside the kit's
/// own ([`LIMIT_BY_FIELDS`]) so the fuzzer meets items that name it.
const UNKNOWN_LIMIT_BY: &str = "limit_by_ip";

const MATCHERS: [&str; 4] = [
    "_match_route_",
    "_match_domain_",
    "_match_service_",
    "_match_route_prefix_",
];
const WORDS: [&str; 24] = [
    "",
    "*",
    "api",
    "x-api-key",
    "authorization",
    "webdis",
    "native",
    "from-header-x-forwarded-for",
    "from-remote-addr",
    "from-header-x-real-ip",
    "10.0.0.0/8",
    "::ffff:1.2.3.4/120",
    "2001:db8::/33",
    "1.2.3.4",
    "regexp:^test-",
    "regexp:(?i)a[b-d]{2,3}$",
    "regexp:(",
    "*.example.com",
    "/chat/completions",
    "estimate",
    "allow",
    "outbound|6379||redis.dns",
    "a:b{c}",
    "\u{e9}\u{0}",
];

/// A value of `plugin`'s configuration for the limiter or the token quota.
///
/// # Errors
/// When the input runs out in a way `arbitrary` reports.
pub fn config(u: &mut Unstructured<'_>, plugin: Plugin) -> Result<Value> {
    if u.ratio(1, 32)? {
        return any(u, 3);
    }
    let mut top = rule_body(u, plugin, 3)?;
    if u.ratio(1, 3)? {
        let mut rules = Vec::new();
        for _ in 0..u.int_in_range(0..=3)? {
            let mut rule = rule_body(u, plugin, 2)?;
            if let Value::Object(o) = &mut rule {
                for _ in 0..u.int_in_range(0..=2)? {
                    let name = *u.choose(&MATCHERS)?;
                    o.insert(name.into(), strings(u)?);
                }
            }
            rules.push(rule);
        }
        if let Value::Object(o) = &mut top {
            o.insert("_rules_".into(), Value::Array(rules));
        }
    }
    Ok(top)
}

fn rule_body(u: &mut Unstructured<'_>, plugin: Plugin, extra: u32) -> Result<Value> {
    let mut o = Map::new();
    if u.ratio(7, 8)? {
        o.insert("rule_name".into(), string(u)?);
    }
    match u.int_in_range(0..=3)? {
        0 => {}
        1 => {
            o.insert("global_threshold".into(), threshold(u, plugin)?);
        }
        2 => {
            o.insert("rule_items".into(), items(u, plugin)?);
        }
        _ => {
            o.insert("global_threshold".into(), threshold(u, plugin)?);
            o.insert("rule_items".into(), items(u, plugin)?);
        }
    }
    if u.ratio(7, 8)? {
        o.insert("redis".into(), redis(u)?);
    }
    let mut optional: Vec<(&str, Value)> = vec![
        ("rejected_code", number(u)?),
        ("rejected_msg", string(u)?),
        ("show_limit_quota_header", boolean(u)?),
        ("failure_mode_deny", boolean(u)?),
        ("redis_key_prefix", string(u)?),
        ("over_limit_recheck_ms", number(u)?),
    ];
    if plugin == Plugin::TokenQuota {
        optional.push(("include_usage_path_suffixes", strings(u)?));
        optional.push(("on_missing_usage", string(u)?));
        optional.push(("estimate_bytes_per_token", number(u)?));
    }
    for (key, value) in optional {
        if u.ratio(1, 4)? {
            o.insert(key.into(), value);
        }
    }
    for _ in 0..u.int_in_range(0..=extra)? {
        if u.ratio(1, 4)? {
            o.insert(string_raw(u)?, any(u, 2)?);
        }
    }
    Ok(Value::Object(o))
}

fn threshold(u: &mut Unstructured<'_>, plugin: Plugin) -> Result<Value> {
    if u.ratio(1, 16)? {
        return any(u, 2);
    }
    let mut o = Map::new();
    for _ in 0..u.int_in_range(0..=2)? {
        o.insert(unit(u, plugin)?.into(), number(u)?);
    }
    Ok(Value::Object(o))
}

fn unit(u: &mut Unstructured<'_>, plugin: Plugin) -> Result<&'static str> {
    let (own, other) = match plugin {
        Plugin::Limiter => (Unit::Query.fields(), Unit::Token.fields()),
        Plugin::TokenQuota => (Unit::Token.fields(), Unit::Query.fields()),
    };
    Ok(if u.ratio(1, 16)? {
        u.choose(other)?
    } else {
        u.choose(own)?
    })
}

fn items(u: &mut Unstructured<'_>, plugin: Plugin) -> Result<Value> {
    if u.ratio(1, 16)? {
        return any(u, 2);
    }
    let mut list = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        let mut item = Map::new();
        for _ in 0..u.int_in_range(0..=2)? {
            // One choice among the kit's fields and the unknown one.
            let which = u.choose_index(LIMIT_BY_FIELDS.len() + 1)?;
            let field = LIMIT_BY_FIELDS
                .get(which)
                .copied()
                .unwrap_or(UNKNOWN_LIMIT_BY);
            item.insert(field.into(), string(u)?);
        }
        let mut keys = Vec::new();
        for _ in 0..u.int_in_range(0..=3)? {
            let mut key = Map::new();
            if u.ratio(15, 16)? {
                key.insert("key".into(), limit_key(u)?);
            }
            for _ in 0..u.int_in_range(0..=2)? {
                key.insert(unit(u, plugin)?.into(), number(u)?);
            }
            keys.push(Value::Object(key));
        }
        if u.ratio(15, 16)? {
            item.insert("limit_keys".into(), Value::Array(keys));
        }
        list.push(Value::Object(item));
    }
    Ok(Value::Array(list))
}

/// A limit key: a word, a CIDR or a `regexp:` pattern of fuzz bytes.
fn limit_key(u: &mut Unstructured<'_>) -> Result<Value> {
    Ok(match u.int_in_range(0..=3)? {
        0 => Value::String(format!("regexp:{}", string_raw(u)?)),
        1 => Value::String(format!("{}/{}", string_raw(u)?, u.int_in_range(0..=130u8)?)),
        _ => string(u)?,
    })
}

fn redis(u: &mut Unstructured<'_>) -> Result<Value> {
    if u.ratio(1, 16)? {
        return any(u, 2);
    }
    let mut o = Map::new();
    let fields: [(&str, Value); 9] = [
        ("transport", string(u)?),
        ("webdis_cluster", string(u)?),
        ("service_name", string(u)?),
        ("service_port", number(u)?),
        ("timeout", number(u)?),
        ("database", number(u)?),
        ("username", string(u)?),
        ("password", string(u)?),
        ("cluster", string(u)?),
    ];
    for (i, (key, value)) in fields.into_iter().enumerate() {
        // webdis_cluster usually, the rest now and then.
        if (i == 1 && u.ratio(7, 8)?) || u.ratio(1, 6)? {
            o.insert(key.into(), value);
        }
    }
    Ok(Value::Object(o))
}

fn boolean(u: &mut Unstructured<'_>) -> Result<Value> {
    Ok(if u.ratio(1, 8)? {
        any(u, 1)?
    } else {
        Value::Bool(u.arbitrary()?)
    })
}

fn number(u: &mut Unstructured<'_>) -> Result<Value> {
    Ok(match u.int_in_range(0..=9)? {
        0 => json!(0),
        1 => json!(u64::MAX),
        2 => json!(u.arbitrary::<i64>()?),
        3 => json!(u
            .arbitrary::<f64>()
            .map(|f| if f.is_finite() { f } else { 1.5 })?),
        4 => any(u, 1)?,
        5 => json!(u.arbitrary::<u64>()?),
        _ => json!(u.int_in_range(1..=1000u64)?),
    })
}

fn string_raw(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(if u.ratio(1, 2)? {
        (*u.choose(&WORDS)?).to_string()
    } else {
        u.arbitrary::<String>()?
    })
}

fn string(u: &mut Unstructured<'_>) -> Result<Value> {
    Ok(if u.ratio(1, 16)? {
        any(u, 1)?
    } else {
        Value::String(string_raw(u)?)
    })
}

fn strings(u: &mut Unstructured<'_>) -> Result<Value> {
    if u.ratio(1, 16)? {
        return any(u, 1);
    }
    let mut list = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        list.push(string(u)?);
    }
    Ok(Value::Array(list))
}

/// Any JSON value, nested at most `depth` deep.
fn any(u: &mut Unstructured<'_>, depth: u32) -> Result<Value> {
    let top = if depth == 0 { 3 } else { 5 };
    Ok(match u.int_in_range(0..=top)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => number(u).unwrap_or(Value::Null),
        3 => Value::String(string_raw(u)?),
        4 => {
            let mut list = Vec::new();
            for _ in 0..u.int_in_range(0..=3)? {
                list.push(any(u, depth - 1)?);
            }
            Value::Array(list)
        }
        _ => {
            let mut o = Map::new();
            for _ in 0..u.int_in_range(0..=3)? {
                o.insert(string_raw(u)?, any(u, depth - 1)?);
            }
            Value::Object(o)
        }
    })
}
