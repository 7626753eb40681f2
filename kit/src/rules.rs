//! Higress's rule syntax: a global configuration plus `_rules_` that
//! override it for some routes, domains, services or path prefixes.
//!
//! ```json
//! {"rule_name": "default", "global_threshold": {"query_per_second": 100},
//!  "_rules_": [{"_match_domain_": ["*.example.com"], "global_threshold": {"query_per_second": 10}}]}
//! ```
//!
//! Rules are compiled once. Per request the first matching rule wins, and
//! the request facts a rule needs (route name, authority, cluster, path) are
//! read lazily, at most once each; a configuration without rules reads
//! nothing.

use crate::config::{ConfigError, Field, Fields};
use crate::host::{HeaderMap, Host};
use std::borrow::Cow;

/// Which configuration applies to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Choice {
    /// The global configuration.
    Global,
    /// The `_rules_` entry at this index.
    Rule(usize),
    /// No configuration applies: the plugin does not see the request.
    Skip,
}

/// A `_match_domain_` entry, lowercased once at configuration; the request's
/// authority is lowercased once too (in [`Facts`]), so each rule tried costs
/// a byte comparison rather than a case-folding one.
#[derive(Debug, Clone)]
enum Domain<'cfg> {
    Exact(Cow<'cfg, [u8]>),
    /// `*.example.com`: the host ends with `.example.com`.
    Suffix(Cow<'cfg, [u8]>),
    /// `api.*`: the host starts with `api.`.
    Prefix(Cow<'cfg, [u8]>),
}

/// `text` in ASCII lowercase, borrowed when it already is.
fn lowercase(text: &str) -> Cow<'_, [u8]> {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(text.as_bytes().to_ascii_lowercase())
    } else {
        Cow::Borrowed(text.as_bytes())
    }
}

impl<'cfg> Domain<'cfg> {
    fn parse(entry: &'cfg str) -> Self {
        if let Some(rest) = entry.strip_prefix('*') {
            Domain::Suffix(lowercase(rest))
        } else if let Some(rest) = entry.strip_suffix('*') {
            Domain::Prefix(lowercase(rest))
        } else {
            Domain::Exact(lowercase(entry))
        }
    }

    /// Whether `host`, already lowercase, matches.
    fn matches(&self, host: &[u8]) -> bool {
        match self {
            Domain::Exact(d) => host == &d[..],
            Domain::Suffix(s) => host.len() > s.len() && host.ends_with(s),
            Domain::Prefix(p) => host.len() > p.len() && host.starts_with(p),
        }
    }
}

/// The conditions of one rule: each listed kind must match (by any of its
/// entries).
#[derive(Debug, Default)]
struct Matcher<'cfg> {
    routes: Vec<&'cfg str>,
    domains: Vec<Domain<'cfg>>,
    services: Vec<&'cfg str>,
    prefixes: Vec<&'cfg str>,
}

const MATCH_KEYS: [&str; 4] = [
    "_match_route_",
    "_match_domain_",
    "_match_service_",
    "_match_route_prefix_",
];

/// The global configuration and the rules, compiled.
#[derive(Debug)]
pub(crate) struct Rules<'cfg, C> {
    pub(crate) global: Option<C>,
    rules: Vec<(Matcher<'cfg>, C)>,
}

impl<'cfg, C> Rules<'cfg, C> {
    /// Compiles the global configuration and every `_rules_` entry with
    /// `compile`. A top level holding only `_rules_` (and kit keys such as
    /// `redis`) has no global configuration: requests no rule matches are
    /// not seen by the plugin.
    pub(crate) fn compile(
        top: &Fields<'_, 'cfg>,
        kit_keys: &[&str],
        mut compile: impl FnMut(&Fields<'_, 'cfg>) -> Result<C, ConfigError>,
    ) -> Result<Self, ConfigError> {
        let rules_field = top.get("_rules_");
        let mut ignored: Vec<&str> = vec!["_rules_"];
        ignored.extend_from_slice(kit_keys);
        let global = if rules_field.is_none() || top.has_keys_besides(&ignored) {
            Some(compile(top)?)
        } else {
            None
        };
        let mut rules = Vec::new();
        if let Some(field) = rules_field {
            field.each(|item| {
                let fields = item.object()?;
                let matcher = compile_matcher(&item, &fields)?;
                let config = compile(&fields.over(*top))?;
                rules.push((matcher, config));
                Ok(())
            })?;
        }
        Ok(Rules { global, rules })
    }

    /// The configuration a choice refers to.
    pub(crate) fn get(&self, choice: Choice) -> Option<&C> {
        match choice {
            Choice::Global => self.global.as_ref(),
            Choice::Rule(i) => self.rules.get(i).map(|(_, c)| c),
            Choice::Skip => None,
        }
    }

    /// Picks the configuration for the current request.
    pub(crate) fn choose<H: Host>(&self, host: &mut H, facts: &mut Facts) -> Choice {
        if self.rules.is_empty() {
            return if self.global.is_some() {
                Choice::Global
            } else {
                Choice::Skip
            };
        }
        facts.clear();
        for (i, (matcher, _)) in self.rules.iter().enumerate() {
            if matcher.matches(host, facts) {
                return Choice::Rule(i);
            }
        }
        if self.global.is_some() {
            Choice::Global
        } else {
            Choice::Skip
        }
    }
}

fn compile_matcher<'cfg>(
    item: &Field<'_, 'cfg>,
    fields: &Fields<'_, 'cfg>,
) -> Result<Matcher<'cfg>, ConfigError> {
    let mut m = Matcher::default();
    if let Some(f) = fields.get_own("_match_route_") {
        m.routes = f.strings()?;
    }
    if let Some(f) = fields.get_own("_match_domain_") {
        for d in f.strings()? {
            m.domains.push(Domain::parse(d));
        }
    }
    if let Some(f) = fields.get_own("_match_service_") {
        m.services = f.strings()?;
    }
    if let Some(f) = fields.get_own("_match_route_prefix_") {
        m.prefixes = f.strings()?;
    }
    if m.routes.is_empty() && m.domains.is_empty() && m.services.is_empty() && m.prefixes.is_empty()
    {
        return Err(item.error(format!(
            "a rule needs a non-empty one of {}",
            crate::config::comma_list(&MATCH_KEYS)
        )));
    }
    Ok(m)
}

/// Facts about the current request that rules test, read at most once.
#[derive(Debug, Default)]
pub(crate) struct Facts {
    bytes: Vec<u8>,
    /// Route name, authority (without port), cluster name, path (without query).
    ranges: [Option<Option<(usize, usize)>>; 4],
}

const ROUTE: usize = 0;
const AUTHORITY: usize = 1;
const CLUSTER: usize = 2;
const PATH: usize = 3;

impl Facts {
    fn clear(&mut self) {
        self.bytes.clear();
        self.ranges = [None; 4];
    }

    fn get<H: Host>(&mut self, host: &mut H, which: usize) -> Option<&[u8]> {
        let known = self.ranges.get(which).copied().flatten();
        let range = match known {
            Some(range) => range,
            None => {
                let value = match which {
                    ROUTE => host.property(&["route_name"]),
                    AUTHORITY => host
                        .header(HeaderMap::Request, ":authority")
                        .map(strip_port),
                    CLUSTER => host.property(&["cluster_name"]),
                    _ => host.header(HeaderMap::Request, ":path").map(strip_query),
                };
                let range = value.map(|v| {
                    let start = self.bytes.len();
                    self.bytes.extend_from_slice(v);
                    (start, self.bytes.len())
                });
                if which == AUTHORITY {
                    // Domains compare without case (see `Domain`).
                    if let Some(bytes) = range.and_then(|(s, e)| self.bytes.get_mut(s..e)) {
                        bytes.make_ascii_lowercase();
                    }
                }
                if let Some(slot) = self.ranges.get_mut(which) {
                    *slot = Some(range);
                }
                range
            }
        }?;
        self.bytes.get(range.0..range.1)
    }
}

fn strip_port(authority: &[u8]) -> &[u8] {
    // `[v6]:port` keeps its brackets; `host:port` loses the port.
    if authority.first() == Some(&b'[') {
        return match authority.iter().position(|&b| b == b']') {
            Some(end) => authority.get(..=end).unwrap_or(authority),
            None => authority,
        };
    }
    match authority.iter().rposition(|&b| b == b':') {
        Some(colon) => authority.get(..colon).unwrap_or(authority),
        None => authority,
    }
}

fn strip_query(path: &[u8]) -> &[u8] {
    match path.iter().position(|&b| b == b'?') {
        Some(q) => path.get(..q).unwrap_or(path),
        None => path,
    }
}

/// Whether a Higress service entry (`name` or `name:port`) names the
/// cluster `outbound|port|subset|name` (or, on plain Envoy, equals it).
fn service_matches(entry: &str, cluster: &[u8]) -> bool {
    if cluster == entry.as_bytes() {
        return true;
    }
    let mut parts = cluster.split(|&b| b == b'|');
    let (Some(b"outbound"), Some(port), Some(_subset), Some(name)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    match entry.rsplit_once(':') {
        Some((host, p)) => host.as_bytes() == name && p.as_bytes() == port,
        None => entry.as_bytes() == name,
    }
}

impl Matcher<'_> {
    fn matches<H: Host>(&self, host: &mut H, facts: &mut Facts) -> bool {
        if !self.routes.is_empty() {
            let Some(route) = facts.get(host, ROUTE) else {
                return false;
            };
            if !self.routes.iter().any(|r| r.as_bytes() == route) {
                return false;
            }
        }
        if !self.domains.is_empty() {
            let Some(authority) = facts.get(host, AUTHORITY) else {
                return false;
            };
            if !self.domains.iter().any(|d| d.matches(authority)) {
                return false;
            }
        }
        if !self.services.is_empty() {
            let Some(cluster) = facts.get(host, CLUSTER) else {
                return false;
            };
            if !self.services.iter().any(|s| service_matches(s, cluster)) {
                return false;
            }
        }
        if !self.prefixes.is_empty() {
            let Some(path) = facts.get(host, PATH) else {
                return false;
            };
            if !self.prefixes.iter().any(|p| path.starts_with(p.as_bytes())) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_match_exact_suffix_and_prefix_wildcards() {
        assert!(Domain::parse("*.x.com").matches(b"a.x.com"));
        assert!(!Domain::parse("*.x.com").matches(b"x.com"));
        assert!(Domain::parse("api.*").matches(b"api.foo.org"));
        assert!(!Domain::parse("api.*").matches(b"web.api.org"));
        assert!(Domain::parse("exact").matches(b"exact"));
        // Configured in any case; hosts arrive lowercased by `Facts`.
        assert!(Domain::parse("EXACT").matches(b"exact"));
        assert!(Domain::parse("*.X.Com").matches(b"a.x.com"));
        assert!(Domain::parse("API.*").matches(b"api.foo.org"));
    }

    #[test]
    fn the_authority_is_lowercased_once_for_domain_rules() {
        let mut host = crate::fake::FakeHost::new();
        host.request_headers
            .add(":authority", b"API.Example.COM:8443");
        let mut facts = Facts::default();
        assert_eq!(
            facts.get(&mut host, AUTHORITY),
            Some(&b"api.example.com"[..])
        );
        assert_eq!(facts.get(&mut host, PATH), None);
    }

    #[test]
    fn authority_loses_its_port_but_not_ipv6_brackets() {
        assert_eq!(strip_port(b"example.com:8080"), b"example.com");
        assert_eq!(strip_port(b"[::1]:80"), b"[::1]");
        assert_eq!(strip_port(b"example.com"), b"example.com");
    }

    #[test]
    fn services_match_higress_cluster_names() {
        assert!(service_matches(
            "foo.default.svc.cluster.local",
            b"outbound|80||foo.default.svc.cluster.local"
        ));
        assert!(service_matches("foo.dns:8080", b"outbound|8080||foo.dns"));
        assert!(!service_matches("foo.dns:80", b"outbound|8080||foo.dns"));
        assert!(service_matches("backend", b"backend"));
    }
}
