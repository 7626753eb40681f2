//! Property: two different limits never count in one Redis key.
//!
//! Every configuration built from a set of limit blocks is tried: a global
//! configuration (or none) and up to two `_rules_` entries, each inheriting
//! the `rule_name` or naming itself, each with one of the blocks. Every
//! entry then sees every request of a set chosen to collide (values with
//! `:`, `}` and `%`, a parameter whose name holds `:`, a header named like
//! the peer source), at a second where every window length starts
//! together and at one where they do not. A counter's identity is the
//! entry, the item and `limit_keys` entry that matched, and for a
//! `limit_by_per_*` item the request's value: one key must never serve two
//! identities.

use super::{Rule, RuleStyle, Unit};
use crate::config::{parse, Fields, Path};
use crate::fake::FakeHost;
use crate::io::Io;
use crate::plugin::Setup;
use std::collections::HashMap;

const STYLE: RuleStyle = RuleStyle {
    unit: Unit::Query,
    key_prefix: "limiter",
    rejected_msg: "",
    headers: ["a", "b", "c"],
};

/// The limit blocks an entry may hold.
const BLOCKS: &[&str] = &[
    r#""global_threshold": {"query_per_minute": 5}"#,
    r#""global_threshold": {"query_per_second": 5}"#,
    r#""global_threshold": {"query_per_minute": 2}"#,
    r#""rule_items": [{"limit_by_per_header": "x", "limit_keys": [
        {"key": "regexp:^a", "query_per_second": 5}, {"key": "*", "query_per_minute": 5}]}]"#,
    r#""rule_items": [
        {"limit_by_header": "x", "limit_keys": [{"key": "a:b", "query_per_minute": 5},
            {"key": "a%3Ab", "query_per_minute": 5}, {"key": "regexp:b", "query_per_minute": 5}]},
        {"limit_by_per_header": "x", "limit_keys": [{"key": "*", "query_per_minute": 5}]}]"#,
    r#""rule_items": [
        {"limit_by_per_param": "x:a", "limit_keys": [{"key": "*", "query_per_minute": 5}]},
        {"limit_by_per_param": "x", "limit_keys": [{"key": "*", "query_per_minute": 5}]},
        {"limit_by_param": "x", "limit_keys": [{"key": "a:b", "query_per_minute": 5}]}]"#,
    r#""rule_items": [
        {"limit_by_per_ip": "from-header-remote", "limit_keys": [{"key": "0.0.0.0/0", "query_per_minute": 5}]},
        {"limit_by_per_ip": "from-remote-addr", "limit_keys": [{"key": "0.0.0.0/0", "query_per_minute": 5}]}]"#,
    r#""rule_items": [
        {"limit_by_per_cookie": "x", "limit_keys": [{"key": "*", "query_per_minute": 5}]},
        {"limit_by_consumer": "", "limit_keys": [{"key": "a", "query_per_minute": 5}]},
        {"limit_by_per_consumer": "", "limit_keys": [{"key": "*", "query_per_minute": 5}]},
        {"limit_by_per_header": "x-mse-consumer", "limit_keys": [{"key": "*", "query_per_minute": 5}]}]"#,
];

/// A request: headers, the path and the peer address.
type Request = (
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static str,
);

const REQUESTS: &[Request] = &[
    (&[], "/", "10.0.0.1:5"),
    (&[("x", "a")], "/", "10.0.0.1:5"),
    (&[("x", "a:b")], "/", "10.0.0.1:5"),
    (&[("x", "a%3Ab")], "/", "10.0.0.1:5"),
    (&[("x", "b")], "/", "10.0.0.1:5"),
    (&[("x", "b}:5_per_60s")], "/", "10.0.0.1:5"),
    (&[("x", "")], "/", "10.0.0.1:5"),
    (&[], "/?x=a:b", "10.0.0.1:5"),
    (&[], "/?x:a=b", "10.0.0.1:5"),
    (&[], "/?x=a&x%3Aa=b", "10.0.0.1:5"),
    (&[], "/?x=b", "10.0.0.2:5"),
    (&[("remote", "10.0.0.1")], "/", "10.0.0.1:5"),
    (&[("remote", "10.0.0.2")], "/", "[::1]:5"),
    (&[("cookie", "x=a")], "/", "10.0.0.1:5"),
    (&[("x-mse-consumer", "a")], "/", "10.0.0.1:5"),
    (&[("x-mse-consumer", "b")], "/", "10.0.0.1:5"),
];

/// Which counter a key serves.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Identity {
    entry: usize,
    item: Option<usize>,
    key: usize,
    value: Option<Vec<u8>>,
}

/// The configuration text: the global block (if any), then the entries
/// with their own `rule_name` (if any) and block.
fn config_text(global: Option<usize>, entries: &[(Option<&str>, usize)]) -> String {
    let mut text = String::from(r#"{"rule_name": "r""#);
    if let Some(block) = global {
        text.push_str(", ");
        text.push_str(BLOCKS[block]);
    }
    if !entries.is_empty() {
        text.push_str(r#", "_rules_": ["#);
        for (i, (name, block)) in entries.iter().enumerate() {
            if i > 0 {
                text.push_str(", ");
            }
            text.push_str(&format!(r#"{{"_match_domain_": ["d{i}"], "#));
            if let Some(name) = name {
                text.push_str(&format!(r#""rule_name": "{name}", "#));
            }
            text.push_str(BLOCKS[*block]);
            text.push('}');
        }
        text.push(']');
    }
    text.push('}');
    text
}

/// Compiles every configuration of `text` (the global one first, if it
/// has a block) and records each key each request gets at each second;
/// the first key that two identities share is an error.
fn check(
    text: &str,
    has_global: bool,
    keys: &mut HashMap<Vec<u8>, Identity>,
) -> Result<(), String> {
    let mut bytes = text.as_bytes().to_vec();
    let tape = parse(&mut bytes).unwrap();
    let root = Path::Root;
    let top = Fields::top(&tape, &root).unwrap();
    let setup = Setup {
        now_nanos: 7,
        _marker: core::marker::PhantomData,
    };
    let mut rules = Vec::new();
    if has_global {
        rules.push(Rule::parse(&top, &setup, &STYLE).unwrap());
    }
    if let Some(field) = top.get("_rules_") {
        field
            .each(|item| {
                let fields = item.object()?;
                rules.push(Rule::parse(&fields.over(top), &setup, &STYLE)?);
                Ok(())
            })
            .unwrap();
    }
    let mut host = FakeHost::new();
    let (mut calls, mut counters, mut responded, mut rewritten) =
        (Default::default(), [0u64; 0], false, Vec::new());
    let (mut increments, mut counting) = (Default::default(), false);
    keys.clear();
    // A second where every window length starts, and one where none does.
    for now in [1_700_006_400u64, 1_700_006_461] {
        for (headers, path, peer) in REQUESTS {
            host.next_request();
            for (name, value) in headers.iter() {
                host.request_headers.add(name, value.as_bytes());
            }
            host.request_headers.add(":path", path.as_bytes());
            host.properties.set("source.address", Some(peer.as_bytes()));
            let mut io = Io {
                host: &mut host,
                redis: None,
                calls: &mut calls,
                stream: Default::default(),
                counters: &mut counters,
                log_level: crate::host::LogLevel::Info,
                plugin: "test",
                responded: &mut responded,
                body: None,
                rewritten: &mut rewritten,
                replaced: &mut None,
                increments: &mut increments,
                counting: &mut counting,
            };
            for (entry, rule) in rules.iter().enumerate() {
                let mut value = super::Value::new();
                let Some(matched) = rule.limits.find(&mut io, &mut value) else {
                    continue;
                };
                let window = super::window::Window::containing(now, matched.limit.window_secs);
                let start = window.start.to_string();
                let (key, _) = rule
                    .counter_key(&matched, &value, start.as_bytes())
                    .unwrap();
                let key: Vec<u8> = key.parts().concat();
                let identity = Identity {
                    entry,
                    item: matched.item,
                    key: matched.key,
                    value: matched.per_value.then(|| value.to_vec()),
                };
                if let Some(other) = keys.insert(key.clone(), identity.clone()) {
                    if other != identity {
                        return Err(format!(
                            "{} serves {other:?} and {identity:?} in {text}",
                            String::from_utf8_lossy(&key)
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

#[test]
fn two_different_limits_never_share_a_key() {
    let names = [None, Some("s"), Some("t")];
    let mut keys = HashMap::new();
    let mut configs = 0;
    let mut counted = 0;
    for global in core::iter::once(None).chain((0..BLOCKS.len()).map(Some)) {
        let mut entry_sets: Vec<Vec<(Option<&str>, usize)>> = vec![vec![]];
        for a in 0..BLOCKS.len() {
            for &na in &names {
                entry_sets.push(vec![(na, a)]);
                for b in 0..BLOCKS.len() {
                    for &nb in &names {
                        // Entries that give themselves one name share its
                        // counters by design (see `heads`).
                        if na.is_some() && na == nb {
                            continue;
                        }
                        entry_sets.push(vec![(na, a), (nb, b)]);
                    }
                }
            }
        }
        for entries in &entry_sets {
            if global.is_none() && entries.is_empty() {
                continue;
            }
            let text = config_text(global, entries);
            if let Err(e) = check(&text, global.is_some(), &mut keys) {
                panic!("{e}");
            }
            configs += 1;
            counted += keys.len();
        }
    }
    assert_eq!(configs, 4_256);
    // Enough keys were made for the property to mean something.
    assert!(counted > 50_000, "{counted} keys");
}

#[test]
fn entries_that_name_themselves_alike_share_counters() {
    let text = config_text(None, &[(Some("s"), 0), (Some("s"), 0)]);
    let error = check(&text, false, &mut HashMap::new()).unwrap_err();
    assert!(
        error.starts_with("limiter:{s:5_per_60s:global}:1700006400 serves"),
        "{error}"
    );
}

#[test]
fn keys_read_as_documented() {
    let text = config_text(Some(0), &[(None, 2), (Some("s"), 4)]);
    let mut keys = HashMap::new();
    check(&text, true, &mut keys).unwrap();
    let mut all: Vec<String> = keys
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .filter(|k| k.ends_with(":1700006400"))
        .collect();
    all.sort();
    assert_eq!(
        all,
        [
            "limiter:{r:5_per_60s:global}:1700006400",
            "limiter:{r:_rules_[0]:2_per_60s:global}:1700006400",
            "limiter:{s:5_per_60s:header:x:a%253Ab}:1700006400",
            "limiter:{s:5_per_60s:header:x:a%3Ab}:1700006400",
            "limiter:{s:5_per_60s:header:x:regexp%3Ab}:1700006400",
            "limiter:{s:5_per_60s:per_header:x:a}:1700006400",
            "limiter:{s:5_per_60s:per_header:x:}:1700006400",
        ]
    );
}
