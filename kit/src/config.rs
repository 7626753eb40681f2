//! Reading plugin configuration: parsed once, borrowed for the plugin's life.
//!
//! The proxy hands the configuration over as JSON bytes in `on_configure`.
//! The kit keeps those bytes, parses them once (with its own parser, or
//! `simd-json` under the feature of that name; both unescape strings in
//! place, so every string borrows the kept bytes), and
//! lets the plugin compile them into its own config type through [`Fields`].
//! Strings in that type are `&'cfg str` slices of the kept bytes: the request
//! path never parses, clones or allocates configuration.
//!
//! Every accessor names the field it failed on, so a bad configuration is
//! refused with one line such as
//! `global_threshold.query_per_minute: must be a positive integer, got -1`.

#[cfg(not(feature = "simd-json"))]
use crate::config_json::{Node, StaticNode, Tape};
use crate::hex::{self, Case};
use core::fmt;
#[cfg(feature = "simd-json")]
use simd_json::{Node, StaticNode, Tape};
use std::borrow::Cow;

/// A configuration the plugin refuses, with the field at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    field: String,
    reason: String,
}

impl ConfigError {
    /// An error about `field` (a dotted path such as `redis.timeout`).
    ///
    /// Control characters in either (a configured value quoted in the
    /// reason, a key in the path) are written escaped (`\n`), so that the
    /// error stays one line in the proxy's log.
    ///
    /// # Examples
    /// ```
    /// let e = kit::ConfigError::new("redis.transport", "unknown transport `a\nb`");
    /// assert_eq!(e.to_string(), "redis.transport: unknown transport `a\\nb`");
    /// ```
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            field: one_line(field.into()),
            reason: one_line(reason.into()),
        }
    }

    /// The dotted path of the offending field; empty for the whole document.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// Why the field was refused.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// `text` with its control characters escaped as Rust writes them.
///
/// Written by hand rather than with `char::escape_default`, always into a
/// new string (no scan first), and kept out of line: the error path is in
/// every module and runs once per refused configuration, so what matters
/// is its size.
#[inline(never)]
fn one_line(text: String) -> String {
    // The control characters: C0 (below 0x20), DEL, and C1 (U+0080 to
    // U+009F).
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        let code = u32::from(c);
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            _ if code < 0x20 || (0x7f..=0x9f).contains(&code) => {
                // Below 0xA0 here, so one byte holds it.
                let byte = code as u8;
                out.push_str("\\u{");
                if byte >= 0x10 {
                    out.push(char::from(hex::digit(byte >> 4, Case::Lower)));
                }
                out.push(char::from(hex::digit(byte, Case::Lower)));
                out.push('}');
            }
            _ => out.push(c),
        }
    }
    out
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.field, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Parses JSON bytes in place into a tape whose strings borrow `bytes`.
///
/// The tape is a flat array of nodes, objects and arrays recording how many
/// nodes they span; keys are found by a linear scan, which for objects of a
/// few dozen keys read once at configuration is as fast as hashing and
/// keeps a hash map's code out of the module.
///
/// # Errors
/// Returns an error for invalid JSON or a top level that is not an object.
/// An empty or all-whitespace input is an empty object, as proxies pass no
/// bytes when a filter has no configuration.
pub(crate) fn parse(bytes: &mut [u8]) -> Result<Tape<'_>, ConfigError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Tape(vec![Node::Object { len: 0, count: 0 }]));
    }
    #[cfg(not(feature = "simd-json"))]
    let tape = crate::config_json::to_tape(bytes);
    #[cfg(feature = "simd-json")]
    let tape = simd_json::to_tape(bytes);
    let tape = tape.map_err(|e| {
        ConfigError::new(
            "",
            format!(
                "configuration is not valid JSON (error at byte {})",
                e.index()
            ),
        )
    })?;
    if !matches!(tape.0.first(), Some(Node::Object { .. })) {
        return Err(ConfigError::new("", "configuration must be a JSON object"));
    }
    Ok(tape)
}

/// The nodes of the value that starts `nodes`: one, or a container's
/// header and everything it holds.
fn value_of<'a, 'cfg>(nodes: &'a [Node<'cfg>]) -> &'a [Node<'cfg>] {
    let span = match nodes.first() {
        Some(Node::Object { count, .. } | Node::Array { count, .. }) => count + 1,
        _ => 1,
    };
    nodes.get(..span).unwrap_or(nodes)
}

/// `keys` separated by `, `, for error messages. A plain loop: the
/// standard `join` is generic over separators, code a single one does
/// not need.
pub(crate) fn comma_list(keys: &[&str]) -> String {
    list_after(String::new(), keys)
}

/// `text` followed by `keys` separated by `, `: one error message built
/// without formatting.
fn list_after(mut text: String, keys: &[&str]) -> String {
    for (i, key) in keys.iter().enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        text.push_str(key);
    }
    text
}

/// Whether a value is JSON `null`, which the accessors treat as absent.
fn is_null(value: &[Node<'_>]) -> bool {
    matches!(value.first(), Some(Node::Static(StaticNode::Null)))
}

/// An object of the tape: its header node and everything it holds.
#[derive(Clone, Copy)]
struct Object<'a, 'cfg>(&'a [Node<'cfg>]);

impl<'a, 'cfg> Object<'a, 'cfg> {
    /// The members in document order.
    fn members(self) -> impl Iterator<Item = (&'cfg str, &'a [Node<'cfg>])> + Clone {
        let len = match self.0.first() {
            Some(Node::Object { len, .. }) => *len,
            _ => 0,
        };
        let mut rest = self.0.get(1..).unwrap_or_default();
        (0..len).map_while(move |_| {
            let Some((Node::String(key), after)) = rest.split_first() else {
                return None;
            };
            let value = value_of(after);
            rest = after.get(value.len()..).unwrap_or_default();
            Some((*key, value))
        })
    }

    /// Where the object starts in the tape: its identity while the tape
    /// lives, for the record of keys asked (`config_keys`).
    fn at(self) -> usize {
        self.0.as_ptr() as usize
    }

    fn get(self, key: &str) -> Option<&'a [Node<'cfg>]> {
        self.members().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The first key that appears twice, if any. Quadratic in the number
    /// of keys, which configuration objects keep small; the keys seen are
    /// kept in a vector (configuration may allocate) so that the members
    /// are walked once.
    fn duplicate(self) -> Option<&'cfg str> {
        let mut seen = Vec::new();
        for (key, _) in self.members() {
            if seen.contains(&key) {
                return Some(key);
            }
            seen.push(key);
        }
        None
    }
}

/// A view of one JSON object in the configuration, with the path that led
/// to it (for error messages) and an optional fallback object.
///
/// The fallback implements Higress's rule syntax: inside a `_rules_` entry a
/// key missing from the rule is looked up in the global configuration.
#[derive(Clone, Copy)]
pub struct Fields<'a, 'cfg> {
    own: Object<'a, 'cfg>,
    fallback: Option<Object<'a, 'cfg>>,
    path: &'a Path<'a>,
}

impl fmt::Debug for Fields<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fields")
            .field("path", &self.path.to_string())
            .finish()
    }
}

/// A linked list of path segments living on the stack of the parser.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Key(Path::Root, key) => f.write_str(key),
            Path::Key(parent, key) => write!(f, "{parent}.{key}"),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

impl<'a> Path<'a> {
    fn join(&'a self, key: &'a str) -> Path<'a> {
        Path::Key(self, key)
    }
}

/// One JSON value with the path that led to it.
#[derive(Clone, Copy)]
pub struct Field<'a, 'cfg> {
    value: &'a [Node<'cfg>],
    path: Path<'a>,
}

impl fmt::Debug for Field<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Field")
            .field("path", &self.path.to_string())
            .finish()
    }
}

fn kind(value: &[Node<'_>]) -> &'static str {
    match value.first() {
        None | Some(Node::Static(StaticNode::Null)) => "null",
        Some(Node::Static(StaticNode::Bool(_))) => "a boolean",
        Some(Node::Static(StaticNode::I64(_) | StaticNode::U64(_))) => "an integer",
        Some(Node::Static(_)) => "a fraction",
        Some(Node::String(_)) => "a string",
        Some(Node::Array { .. }) => "an array",
        Some(Node::Object { .. }) => "an object",
    }
}

impl<'a, 'cfg> Field<'a, 'cfg> {
    /// The dotted path of this field, for error messages.
    pub fn path(&self) -> String {
        self.path.to_string()
    }

    /// An error about this field.
    pub fn error(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError::new(self.path.to_string(), reason)
    }

    fn wrong_type(&self, wanted: &str) -> ConfigError {
        self.error(format!("must be {wanted}, got {}", kind(self.value)))
    }

    /// The value as a string borrowed from the configuration bytes.
    ///
    /// # Errors
    /// When the value is not a string.
    pub fn str(&self) -> Result<&'cfg str, ConfigError> {
        // The parser unescapes in place: every string borrows the bytes.
        match self.value.first() {
            Some(Node::String(s)) => Ok(s),
            _ => Err(self.wrong_type("a string")),
        }
    }

    /// The value as text, read as Higress's Go plugins read a string field
    /// (gjson's `String()`): a string as it is, an integer in decimal, a
    /// boolean as `true` or `false`.
    ///
    /// A YAML configuration turns an unquoted `key: 102234` into a number
    /// on its way to JSON, and Higress's plugins still take it as the text
    /// `102234`; so does this. Only an integer costs an allocation, once,
    /// at configuration.
    ///
    /// # Examples
    /// A `limit_keys` entry `{"key": 102234}` reads as `"102234"`.
    ///
    /// # Errors
    /// When the value is null, an array, an object or a fraction (Go
    /// would print a fraction in its own shortest form; formatting floats
    /// the same way would cost the module kilobytes for a key nobody
    /// writes unquoted).
    pub fn text(&self) -> Result<Cow<'cfg, str>, ConfigError> {
        match self.value.first() {
            Some(Node::String(s)) => Ok(Cow::Borrowed(s)),
            Some(Node::Static(StaticNode::U64(n))) => Ok(Cow::Owned(n.to_string())),
            Some(Node::Static(StaticNode::I64(n))) => Ok(Cow::Owned(n.to_string())),
            Some(Node::Static(StaticNode::Bool(b))) => {
                Ok(Cow::Borrowed(if *b { "true" } else { "false" }))
            }
            _ => Err(self.wrong_type("a string")),
        }
    }

    /// The value as a non-negative integer.
    ///
    /// A string of decimal digits (`"429"`) is read as its number: Higress's
    /// plugins read integers with gjson's `Int()`, which accepts them, and
    /// configurations written for Higress carry them.
    ///
    /// # Errors
    /// When the value is neither an integer nor a string of digits, or is
    /// negative.
    pub fn u64(&self) -> Result<u64, ConfigError> {
        self.integer("a non-negative integer", 0)
    }

    /// The value as an integer of at least 1 (a string of digits too, as
    /// [`Field::u64`] reads it).
    ///
    /// # Errors
    /// When the value is neither an integer nor a string of digits, or is
    /// below 1.
    pub fn positive(&self) -> Result<u64, ConfigError> {
        self.integer("a positive integer", 1)
    }

    /// The value as an integer of at least `min` (0 or 1), `wanted` naming
    /// it in the error: one body for [`Field::u64`] and
    /// [`Field::positive`], so one error message is formatted.
    fn integer(&self, wanted: &str, min: u64) -> Result<u64, ConfigError> {
        let below = match self.value.first() {
            Some(Node::Static(StaticNode::U64(n))) if *n >= min => return Ok(*n),
            Some(Node::Static(StaticNode::I64(n))) if *n >= 0 && n.unsigned_abs() >= min => {
                return Ok(n.unsigned_abs())
            }
            Some(Node::Static(StaticNode::I64(n))) => *n,
            Some(Node::Static(StaticNode::U64(_))) => 0,
            Some(Node::String(s)) => match self.digits(s, wanted)? {
                n if n >= min => return Ok(n),
                _ => 0,
            },
            _ => return Err(self.wrong_type(wanted)),
        };
        Err(self.error(format!("must be {wanted}, got {below}")))
    }

    /// A string that must hold an integer: decimal digits only, within
    /// 64 bits.
    fn digits(&self, s: &str, wanted: &str) -> Result<u64, ConfigError> {
        crate::config_json::decimal(s.as_bytes())
            .ok_or_else(|| self.error(format!("must be {wanted}, got the string \"{s}\"")))
    }

    /// The value as a boolean.
    ///
    /// # Errors
    /// When the value is not a boolean.
    pub fn bool(&self) -> Result<bool, ConfigError> {
        match self.value.first() {
            Some(Node::Static(StaticNode::Bool(b))) => Ok(*b),
            _ => Err(self.wrong_type("a boolean")),
        }
    }

    /// The value as an object.
    ///
    /// # Errors
    /// When the value is not an object, or has a key twice.
    pub fn object<'s>(&'s self) -> Result<Fields<'s, 'cfg>, ConfigError> {
        match self.value.first() {
            Some(Node::Object { .. }) => Fields::new(Object(self.value), &self.path),
            _ => Err(self.wrong_type("an object")),
        }
    }

    /// Calls `each` for every element of an array value, with its index in
    /// the path.
    ///
    /// # Errors
    /// When the value is not an array, or the first error `each` returns.
    pub fn each(
        &self,
        mut each: impl FnMut(Field<'_, 'cfg>) -> Result<(), ConfigError>,
    ) -> Result<(), ConfigError> {
        self.each_element(&mut each)
    }

    /// The loop of [`Field::each`], once for all its callers: the
    /// closure is called through a pointer (configuration only), so the
    /// walk over the array is not copied into every caller.
    #[inline(never)]
    fn each_element(
        &self,
        each: &mut dyn FnMut(Field<'_, 'cfg>) -> Result<(), ConfigError>,
    ) -> Result<(), ConfigError> {
        let Some(Node::Array { len, .. }) = self.value.first() else {
            return Err(self.wrong_type("an array"));
        };
        let mut rest = self.value.get(1..).unwrap_or_default();
        for i in 0..*len {
            let value = value_of(rest);
            rest = rest.get(value.len()..).unwrap_or_default();
            each(Field {
                value,
                path: Path::Index(&self.path, i),
            })?;
        }
        Ok(())
    }

    /// Collects a string or an array of strings.
    ///
    /// # Errors
    /// When the value is neither.
    pub fn strings(&self) -> Result<Vec<&'cfg str>, ConfigError> {
        let mut out = Vec::new();
        match self.value.first() {
            Some(Node::String(s)) => out.push(*s),
            _ => self.each(|item| {
                out.push(item.str()?);
                Ok(())
            })?,
        }
        Ok(out)
    }
}

impl<'a, 'cfg> Fields<'a, 'cfg> {
    fn new(own: Object<'a, 'cfg>, path: &'a Path<'a>) -> Result<Self, ConfigError> {
        crate::config_keys::opened(own.at(), || path.to_string(), own.members().map(|(k, _)| k));
        let fields = Fields {
            own,
            fallback: None,
            path,
        };
        match own.duplicate() {
            Some(key) => Err(fields.error(key, "appears twice")),
            None => Ok(fields),
        }
    }

    /// The top-level object of a tape made by [`parse`].
    ///
    /// # Errors
    /// When it has a key twice.
    pub(crate) fn top(tape: &'a Tape<'cfg>, path: &'a Path<'a>) -> Result<Self, ConfigError> {
        Fields::new(Object(value_of(&tape.0)), path)
    }

    /// The dotted path of this object, for error messages.
    pub fn path(&self) -> String {
        self.path.to_string()
    }

    /// An error about `key` of this object.
    pub fn error(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::new(self.path.join(key).to_string(), reason)
    }

    /// Looks `key` up, in the rule first and then in the global config.
    /// A JSON `null` counts as absent.
    pub fn get(&self, key: &'a str) -> Option<Field<'a, 'cfg>> {
        crate::config_keys::asked(self.own.at(), key);
        if let Some(fallback) = self.fallback {
            crate::config_keys::asked(fallback.at(), key);
        }
        let value = self
            .own
            .get(key)
            .or_else(|| self.fallback.and_then(|f| f.get(key)))?;
        if is_null(value) {
            return None;
        }
        Some(Field {
            value,
            path: self.path.join(key),
        })
    }

    /// Looks `key` up and fails when it is absent.
    ///
    /// # Errors
    /// When the key is absent or null.
    pub fn require(&self, key: &'a str) -> Result<Field<'a, 'cfg>, ConfigError> {
        self.get(key).ok_or_else(|| self.error(key, "is required"))
    }

    /// A required string.
    ///
    /// # Errors
    /// When absent or not a string.
    pub fn required_str(&self, key: &'a str) -> Result<&'cfg str, ConfigError> {
        self.require(key)?.str()
    }

    /// An optional string.
    ///
    /// # Errors
    /// When present and not a string.
    pub fn opt_str(&self, key: &'a str) -> Result<Option<&'cfg str>, ConfigError> {
        match self.get(key) {
            Some(field) => field.str().map(Some),
            None => Ok(None),
        }
    }

    /// An optional boolean, with a default.
    ///
    /// # Errors
    /// When present and not a boolean.
    pub fn bool_or(&self, key: &'a str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key) {
            Some(field) => field.bool(),
            None => Ok(default),
        }
    }

    /// An optional non-negative integer, with a default.
    ///
    /// # Errors
    /// When present and not a non-negative integer.
    pub fn u64_or(&self, key: &'a str, default: u64) -> Result<u64, ConfigError> {
        match self.get(key) {
            Some(field) => field.u64(),
            None => Ok(default),
        }
    }

    /// Finds which one of `keys` is set.
    ///
    /// In a `_rules_` entry that sets any of them, only the entry's own keys
    /// count: its choice replaces the global configuration's instead of
    /// conflicting with it (a rule may set `global_threshold` where the
    /// global configuration has `rule_items`, or `query_per_second` where
    /// it has `query_per_minute`).
    ///
    /// # Errors
    /// When none or more than one of them is set.
    pub fn one_of(&self, keys: &[&'a str]) -> Result<(usize, Field<'a, 'cfg>), ConfigError> {
        let own_choice = keys.iter().any(|key| self.own_value(key).is_some());
        let mut found = None;
        for (i, key) in keys.iter().enumerate() {
            let field = if own_choice {
                self.own_value(key)
            } else {
                self.get(key)
            };
            if let Some(field) = field {
                if let Some((j, _)) = found {
                    let first: &str = keys.get(j).copied().unwrap_or_default();
                    let mut reason = String::from("conflicts with `");
                    reason.push_str(first);
                    reason.push_str("`: set only one of ");
                    return Err(self.error(key, list_after(reason, keys)));
                }
                found = Some((i, field));
            }
        }
        found.ok_or_else(|| {
            ConfigError::new(
                self.path.to_string(),
                list_after(String::from("needs one of "), keys),
            )
        })
    }

    /// This object looked up before `base`: a `_rules_` entry over the
    /// global configuration.
    pub(crate) fn over(self, base: Fields<'a, 'cfg>) -> Fields<'a, 'cfg> {
        Fields {
            own: self.own,
            fallback: Some(base.own),
            path: self.path,
        }
    }

    /// Looks `key` up in this object only, ignoring the fallback; a JSON
    /// `null` counts as absent.
    fn own_value(&self, key: &'a str) -> Option<Field<'a, 'cfg>> {
        self.get_own(key).filter(|f| !is_null(f.value))
    }

    /// Looks `key` up in this object only, ignoring the fallback.
    pub(crate) fn get_own(&self, key: &'a str) -> Option<Field<'a, 'cfg>> {
        crate::config_keys::asked(self.own.at(), key);
        let value = self.own.get(key)?;
        Some(Field {
            value,
            path: self.path.join(key),
        })
    }

    /// Whether the object (without fallback) has any key besides `ignored`.
    pub(crate) fn has_keys_besides(&self, ignored: &[&str]) -> bool {
        self.own.members().any(|(k, _)| !ignored.contains(&k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_top<R>(json: &str, f: impl FnOnce(Result<Fields<'_, '_>, ConfigError>) -> R) -> R {
        let mut bytes = json.as_bytes().to_vec();
        let tape = parse(&mut bytes).unwrap();
        let root = Path::Root;
        f(Fields::top(&tape, &root))
    }

    #[test]
    fn text_reads_numbers_and_booleans_as_gjson_prints_them() {
        let json = r#"{"s": "a b", "u": 102234, "i": -5, "t": true, "f": 1.5, "n": null, "o": {}}"#;
        with_top(json, |top| {
            let top = top.unwrap();
            let text = |key| {
                top.require(key)
                    .and_then(|f| f.text().map(|t| t.into_owned()))
            };
            assert_eq!(text("s").unwrap(), "a b");
            assert_eq!(text("u").unwrap(), "102234");
            assert_eq!(text("i").unwrap(), "-5");
            assert_eq!(text("t").unwrap(), "true");
            assert_eq!(
                text("f").unwrap_err().to_string(),
                "f: must be a string, got a fraction"
            );
            assert!(text("n").is_err());
            assert_eq!(
                text("o").unwrap_err().to_string(),
                "o: must be a string, got an object"
            );
        });
    }

    #[test]
    fn integers_written_as_strings_of_digits_are_read() {
        let json = r#"{"code": "429", "zero": "0", "neg": "-1", "word": "abc", "big": "99999999999999999999", "empty": "", "spaced": " 7"}"#;
        with_top(json, |top| {
            let top = top.unwrap();
            let field = |key| top.require(key).unwrap();
            assert_eq!(field("code").u64().unwrap(), 429);
            assert_eq!(field("code").positive().unwrap(), 429);
            assert_eq!(field("zero").u64().unwrap(), 0);
            assert_eq!(
                field("zero").positive().unwrap_err().to_string(),
                "zero: must be a positive integer, got 0"
            );
            for key in ["neg", "word", "big", "empty", "spaced"] {
                let error = field(key).u64().unwrap_err().to_string();
                assert!(
                    error.starts_with(&format!(
                        "{key}: must be a non-negative integer, got the string"
                    )),
                    "{error}"
                );
            }
        });
    }

    #[test]
    fn members_after_nested_containers_are_found() {
        let json =
            r#"{"a": {"x": [1, {"y": [2, 3]}, []], "z": {}}, "b": [[], [[4]]], "c": "last"}"#;
        with_top(json, |top| {
            let top = top.unwrap();
            assert_eq!(top.required_str("c").unwrap(), "last");
            let a = top.require("a").unwrap();
            let a = a.object().unwrap();
            assert!(a.get("z").is_some());
            let mut lens = Vec::new();
            top.require("b")
                .unwrap()
                .each(|item| {
                    let mut n = 0;
                    item.each(|_| {
                        n += 1;
                        Ok(())
                    })?;
                    lens.push(n);
                    Ok(())
                })
                .unwrap();
            assert_eq!(lens, [0, 1]);
        });
    }

    #[test]
    fn a_key_given_twice_is_refused_with_its_path() {
        with_top(r#"{"a": 1, "b": 2, "a": 3}"#, |top| {
            assert_eq!(top.unwrap_err().to_string(), "a: appears twice");
        });
        with_top(r#"{"r": {"k": 1, "k": 1}}"#, |top| {
            let top = top.unwrap();
            let r = top.require("r").unwrap();
            assert_eq!(r.object().unwrap_err().to_string(), "r.k: appears twice");
        });
    }

    #[test]
    fn empty_input_is_an_empty_object_and_errors_name_the_byte() {
        with_top("  \n", |top| assert!(!top.unwrap().has_keys_besides(&[])));
        let mut bytes = br#"{"a": tru}"#.to_vec();
        let err = parse(&mut bytes).unwrap_err().to_string();
        assert!(
            err.starts_with("configuration is not valid JSON (error at byte"),
            "{err}"
        );
        let mut bytes = b"[1]".to_vec();
        assert_eq!(
            parse(&mut bytes).unwrap_err().to_string(),
            "configuration must be a JSON object"
        );
    }
}
