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
    /// Each rule's conditions; `configs` holds its configuration at the
    /// same position. Apart, so that choosing a rule is not generic over
    /// the plugin's configuration type (one copy of that code per module).
    matchers: Vec<Matcher<'cfg>>,
    configs: Vec<C>,
    index: Index,
}

/// Which fact an [`Index`] looks up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Indexed {
    /// Rules whose only condition is `_match_route_`.
    Route,
    /// Rules whose only condition is `_match_domain_` with exact domains.
    Domain,
}

/// One step of choosing a rule, in rule order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Try the rule at this position.
    Try(usize),
    /// Look up every rule of this kind at once; the position is the
    /// kind's first rule.
    Look(Indexed, usize),
}

/// Rules whose only condition is a list of exact routes, or of exact
/// domains, found by binary search over their values instead of tried one
/// by one: with many such rules (a rule per route or per tenant domain is
/// common in Higress configs), choosing costs one lookup rather than a
/// comparison per rule. Every other rule is still tried in order, and the
/// first rule that matches still wins: the steps run in rule order and
/// stop as soon as a lookup has found a rule earlier than the next step.
/// Each fact is read when its first step is reached, as a plain scan would.
#[derive(Debug, Default)]
struct Index {
    steps: Vec<Step>,
    /// (rule, value) pairs, sorted by the value's bytes, then the rule.
    routes: Vec<(usize, usize)>,
    domains: Vec<(usize, usize)>,
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
        let (mut matchers, mut configs) = (Vec::new(), Vec::new());
        if let Some(field) = rules_field {
            field.each(|item| {
                let fields = item.object()?;
                matchers.push(compile_matcher(&item, &fields)?);
                configs.push(compile(&fields.over(*top))?);
                Ok(())
            })?;
        }
        let index = Index::new(&matchers);
        Ok(Rules {
            global,
            matchers,
            configs,
            index,
        })
    }

    /// The configuration a choice refers to.
    pub(crate) fn get(&self, choice: Choice) -> Option<&C> {
        match choice {
            Choice::Global => self.global.as_ref(),
            Choice::Rule(i) => self.configs.get(i),
            Choice::Skip => None,
        }
    }

    /// Picks the configuration for the current request.
    pub(crate) fn choose<H: Host>(&self, host: &mut H, facts: &mut Facts) -> Choice {
        if self.matchers.is_empty() {
            return if self.global.is_some() {
                Choice::Global
            } else {
                Choice::Skip
            };
        }
        facts.clear();
        let found = self.index.choose(&self.matchers, host, facts);
        if let Some(i) = found {
            return Choice::Rule(i);
        }
        if self.global.is_some() {
            Choice::Global
        } else {
            Choice::Skip
        }
    }
}

impl Index {
    /// Sorts the rules into lookups and tries, in rule order.
    fn new(matchers: &[Matcher<'_>]) -> Index {
        let mut index = Index::default();
        // Whether a lookup step of each kind is in `steps` yet.
        let mut looked = [false; 2];
        for (i, m) in matchers.iter().enumerate() {
            let only_routes = !m.routes.is_empty()
                && m.domains.is_empty()
                && m.services.is_empty()
                && m.prefixes.is_empty();
            let only_exact_domains = m.routes.is_empty()
                && !m.domains.is_empty()
                && m.domains.iter().all(|d| matches!(d, Domain::Exact(_)))
                && m.services.is_empty()
                && m.prefixes.is_empty();
            let (kind, values) = match (only_routes, only_exact_domains) {
                (true, _) => (Indexed::Route, m.routes.len()),
                (_, true) => (Indexed::Domain, m.domains.len()),
                _ => {
                    index.steps.push(Step::Try(i));
                    continue;
                }
            };
            if let Some(looked) = looked.get_mut(usize::from(kind == Indexed::Domain)) {
                if !*looked {
                    *looked = true;
                    index.steps.push(Step::Look(kind, i));
                }
            }
            let value = |entry| indexed_value(matchers, kind, entry);
            let entries = match kind {
                Indexed::Route => &mut index.routes,
                Indexed::Domain => &mut index.domains,
            };
            // Inserted in place, sorted by value then rule: configure time
            // only, and the standard sort would add about 3 KB to the
            // module (see `pattern::normalize`).
            for v in 0..values {
                let entry = (i, v);
                let at = entries
                    .partition_point(|&other| (value(other), other.0) < (value(entry), entry.0));
                entries.insert(at, entry);
            }
        }
        index
    }

    /// The first rule that matches the request, if any.
    fn choose<H: Host>(
        &self,
        matchers: &[Matcher<'_>],
        host: &mut H,
        facts: &mut Facts,
    ) -> Option<usize> {
        // The earliest rule a lookup has found so far.
        let mut found = usize::MAX;
        for &step in &self.steps {
            match step {
                Step::Try(i) => {
                    if i >= found {
                        break;
                    }
                    if matchers.get(i).is_some_and(|m| m.matches(host, facts)) {
                        return Some(i);
                    }
                }
                Step::Look(kind, first) => {
                    if first >= found {
                        break;
                    }
                    if let Some(i) = self.look_up(matchers, kind, host, facts) {
                        found = found.min(i);
                    }
                }
            }
        }
        (found != usize::MAX).then_some(found)
    }

    /// The first rule of `kind` whose value is the request's fact.
    fn look_up<H: Host>(
        &self,
        matchers: &[Matcher<'_>],
        kind: Indexed,
        host: &mut H,
        facts: &mut Facts,
    ) -> Option<usize> {
        let (entries, fact) = match kind {
            Indexed::Route => (&self.routes, ROUTE),
            Indexed::Domain => (&self.domains, AUTHORITY),
        };
        let fact = facts.get(host, fact)?;
        // Sorted by value, then rule: the first entry not below the fact
        // is its earliest rule, if the values are equal.
        let at = entries.partition_point(|&entry| indexed_value(matchers, kind, entry) < fact);
        let entry = *entries.get(at)?;
        (indexed_value(matchers, kind, entry) == fact).then_some(entry.0)
    }
}

/// The bytes of value `v` of rule `rule`'s condition of `kind`.
fn indexed_value<'r>(
    matchers: &'r [Matcher<'_>],
    kind: Indexed,
    (rule, v): (usize, usize),
) -> &'r [u8] {
    let Some(matcher) = matchers.get(rule) else {
        return &[];
    };
    match kind {
        Indexed::Route => matcher.routes.get(v).map_or(&[], |r| r.as_bytes()),
        Indexed::Domain => match matcher.domains.get(v) {
            Some(Domain::Exact(d)) => d,
            _ => &[],
        },
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

    /// The fact `which` of the request, read on first use.
    // Inlined, so that a fact already read (the authority, for the second
    // domain rule tried) costs a look at its range rather than a call
    // that saves and restores a dozen registers; the reading stays out of
    // line.
    #[inline(always)]
    fn get<H: Host>(&mut self, host: &mut H, which: usize) -> Option<&[u8]> {
        let range = match self.ranges.get(which).copied().flatten() {
            Some(range) => range,
            None => self.read(host, which),
        }?;
        self.bytes.get(range.0..range.1)
    }

    /// Reads the fact `which` into `bytes` and records where it is.
    #[inline(never)]
    fn read<H: Host>(&mut self, host: &mut H, which: usize) -> Option<(usize, usize)> {
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
                lowercase_ascii(bytes);
            }
        }
        if let Some(slot) = self.ranges.get_mut(which) {
            *slot = Some(range);
        }
        range
    }
}

/// `bytes` in ASCII lowercase, eight at a time.
///
/// `make_ascii_lowercase` goes byte by byte, about 13 instructions each for
/// an authority too short for the compiler's vector loop (under 16
/// bytes): 200 instructions of a request for `api.example.com`. As
/// words, it is about 15 per 8 bytes; a tail shorter than a word is done
/// as the last 8 bytes again (lowercasing twice changes nothing).
fn lowercase_ascii(bytes: &mut [u8]) {
    if bytes.len() < 8 {
        bytes.make_ascii_lowercase();
        return;
    }
    let mut words = bytes.chunks_exact_mut(8);
    for word in &mut words {
        lowercase_word(word);
    }
    if !words.into_remainder().is_empty() {
        let tail = bytes.len() - 8;
        if let Some(last) = bytes.get_mut(tail..) {
            lowercase_word(last);
        }
    }
}

/// Lowercases the ASCII letters of 8 bytes; other bytes, non-ASCII
/// included, are left as they are.
fn lowercase_word(word: &mut [u8]) {
    const LOW_BITS: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(word);
    let w = u64::from_le_bytes(bytes);
    // Per byte, on its low 7 bits (so no sum carries into the next byte):
    // the high bit of `at_least_a` is set from `A` up, that of `past_z`
    // from `[` up; a letter is the first without the second, in a byte
    // whose own high bit is clear.
    let low = w & LOW_BITS;
    let at_least_a = low + (0x80 - u64::from(b'A')) * 0x0101_0101_0101_0101;
    let past_z = low + (0x80 - u64::from(b'Z') - 1) * 0x0101_0101_0101_0101;
    let upper = at_least_a & !past_z & !w & HIGH_BITS;
    // 0x80 >> 2 is 0x20, the ASCII case bit.
    word.copy_from_slice(&(w | upper >> 2).to_le_bytes());
}

fn strip_port(authority: &[u8]) -> &[u8] {
    // `[v6]:port` keeps its brackets; `host:port` loses the port.
    if authority.first() == Some(&b'[') {
        return match authority.iter().position(|&b| b == b']') {
            Some(end) => authority.get(..=end).unwrap_or(authority),
            None => authority,
        };
    }
    if !has_colon(authority) {
        return authority;
    }
    match authority.iter().rposition(|&b| b == b':') {
        Some(colon) => authority.get(..colon).unwrap_or(authority),
        None => authority,
    }
}

/// Whether `bytes` hold a `:`, looked for eight bytes at a time.
///
/// Most authorities carry no port: looking byte by byte cost about 2
/// instructions a byte (30 for `api.example.com`), a word about 6; only
/// an authority with a colon is scanned again for the last one. A tail
/// shorter than a word is looked at as the last 8 bytes.
fn has_colon(bytes: &[u8]) -> bool {
    if bytes.len() < 8 {
        return bytes.contains(&b':');
    }
    let mut words = bytes.chunks_exact(8);
    let mut found = false;
    for word in &mut words {
        found |= word_has_colon(word);
    }
    let tail = bytes.len() - 8;
    if !words.remainder().is_empty() {
        found |= bytes.get(tail..).is_some_and(word_has_colon);
    }
    found
}

/// Whether 8 bytes hold a `:`: the bytes XOR `:` have a zero byte. The
/// borrow of the subtraction only runs up from a zero byte, so the test
/// (unlike the mask it computes) is exact.
fn word_has_colon(word: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(word);
    let x = u64::from_le_bytes(bytes) ^ (u64::from(b':') * ONES);
    x.wrapping_sub(ONES) & !x & HIGH_BITS != 0
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
    fn words_lowercase_as_bytes_do() {
        // Every byte value at every position of every length up to 40,
        // against the standard per-byte lowercasing.
        for len in 0..40usize {
            for b in 0..=255u8 {
                for at in 0..len {
                    let mut text: Vec<u8> = (0..len).map(|i| b"aZ.-9Q@[`{"[i % 10]).collect();
                    text[at] = b;
                    let mut ours = text.clone();
                    lowercase_ascii(&mut ours);
                    text.make_ascii_lowercase();
                    assert_eq!(ours, text, "length {len}, byte {b} at {at}");
                }
            }
        }
    }

    #[test]
    fn ports_are_stripped_as_a_byte_scan_strips_them() {
        // Every byte value at every position of every length up to 40,
        // against the last colon found byte by byte.
        fn by_bytes(authority: &[u8]) -> &[u8] {
            if authority.first() == Some(&b'[') {
                return match authority.iter().position(|&b| b == b']') {
                    Some(end) => &authority[..=end],
                    None => authority,
                };
            }
            match authority.iter().rposition(|&b| b == b':') {
                Some(colon) => &authority[..colon],
                None => authority,
            }
        }
        for len in 0..40usize {
            for b in 0..=255u8 {
                for at in 0..len {
                    let mut text: Vec<u8> = (0..len).map(|i| b"a.9-Z;9\x80"[i % 8]).collect();
                    text[at] = b;
                    assert_eq!(
                        strip_port(&text),
                        by_bytes(&text),
                        "length {len}, byte {b} at {at}"
                    );
                    // And with a port after it.
                    text.extend_from_slice(b":8443");
                    assert_eq!(
                        strip_port(&text),
                        by_bytes(&text),
                        "length {len}+port, byte {b} at {at}"
                    );
                }
            }
        }
    }

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

    /// The first matching rule by trying every rule in order: what the
    /// index must agree with.
    fn choose_by_scan<C, H: Host>(rules: &Rules<'_, C>, host: &mut H) -> Choice {
        let mut facts = Facts::default();
        for (i, matcher) in rules.matchers.iter().enumerate() {
            if matcher.matches(host, &mut facts) {
                return Choice::Rule(i);
            }
        }
        if rules.global.is_some() {
            Choice::Global
        } else {
            Choice::Skip
        }
    }

    #[test]
    fn the_index_chooses_the_rule_a_scan_would() {
        // A small LCG: rules mixing indexed kinds (exact routes, exact
        // domains) with every other condition, over few values so that
        // rules overlap and order decides.
        let mut seed = 0x5eed_u64;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ((seed >> 33) % n) as usize
        };
        const ROUTES: [&str; 4] = ["r0", "r1", "r2", "r3"];
        const DOMAINS: [&str; 6] = ["a.com", "b.com", "C.com", "*.com", "a.*", "d.org"];
        const PREFIXES: [&str; 2] = ["/v1", "/v2"];
        const SERVICES: [&str; 2] = ["s0", "s1"];
        let hosts = ["a.com", "b.com", "c.com:8080", "x.com", "a.org", "d.org"];
        let mut indexed_hits = 0;
        for _ in 0..400 {
            let mut rules = Vec::new();
            for _ in 0..1 + next(12) {
                let mut m = Matcher::default();
                // Mostly single-condition rules, as real configs have.
                let kinds = if next(4) == 0 {
                    1 + next(15)
                } else {
                    1 << next(4)
                };
                for _ in 0..1 + next(2) {
                    if kinds & 1 != 0 {
                        m.routes.push(ROUTES[next(4)]);
                    }
                    if kinds & 2 != 0 {
                        // Exact domains twice as often as wildcards.
                        let d = if next(3) > 0 {
                            DOMAINS[next(3)]
                        } else {
                            DOMAINS[next(6)]
                        };
                        m.domains.push(Domain::parse(d));
                    }
                    if kinds & 4 != 0 {
                        m.prefixes.push(PREFIXES[next(2)]);
                    }
                    if kinds & 8 != 0 {
                        m.services.push(SERVICES[next(2)]);
                    }
                }
                rules.push(m);
            }
            let index = Index::new(&rules);
            let rules = Rules {
                global: (next(2) == 0).then_some(()),
                configs: vec![(); rules.len()],
                matchers: rules,
                index,
            };
            for _ in 0..20 {
                let route = (next(5) > 0).then(|| ROUTES[next(4)]);
                let authority = (next(5) > 0).then(|| hosts[next(hosts.len() as u64)]);
                let (path, cluster) = (PREFIXES[next(2)], SERVICES[next(2)]);
                let request = || {
                    let mut host = crate::fake::FakeHost::new();
                    if let Some(route) = route {
                        host.properties.add("route_name", route.as_bytes());
                    }
                    if let Some(authority) = authority {
                        host.request_headers.add(":authority", authority.as_bytes());
                    }
                    host.request_headers.add(":path", path.as_bytes());
                    host.properties.add("cluster_name", cluster.as_bytes());
                    host
                };
                let (mut host, mut scan_host) = (request(), request());
                let chosen = rules.choose(&mut host, &mut Facts::default());
                let scanned = choose_by_scan(&rules, &mut scan_host);
                assert_eq!(chosen, scanned, "{:?}", rules.matchers);
                // The index never reads more of the request than a scan.
                assert!(host.host_calls.get() <= scan_host.host_calls.get());
                if let Choice::Rule(i) = chosen {
                    let looked_up = !rules.index.steps.contains(&Step::Try(i));
                    indexed_hits += usize::from(looked_up);
                }
            }
        }
        // The generator reaches the index often, not by accident.
        assert!(indexed_hits > 1000, "{indexed_hits}");
    }

    #[test]
    fn exact_rules_are_looked_up_and_the_rest_tried_in_order() {
        let rule = |routes: &[&'static str], domains: &[&'static str]| {
            let mut m = Matcher::default();
            m.routes.extend_from_slice(routes);
            m.domains.extend(domains.iter().map(|d| Domain::parse(d)));
            m
        };
        let rules = vec![
            rule(&[], &["*.example.com"]),
            rule(&["checkout"], &[]),
            rule(&[], &["api.example.com", "API.other.com"]),
            rule(&["search", "checkout"], &[]),
        ];
        let index = Index::new(&rules);
        assert_eq!(
            index.steps,
            [
                Step::Try(0),
                Step::Look(Indexed::Route, 1),
                Step::Look(Indexed::Domain, 2)
            ]
        );
        let rules = Rules {
            global: Some(()),
            configs: vec![(); rules.len()],
            matchers: rules,
            index,
        };
        let choose = |route: Option<&str>, authority: &str| {
            let mut host = crate::fake::FakeHost::new();
            if let Some(route) = route {
                host.properties.add("route_name", route.as_bytes());
            }
            host.request_headers.add(":authority", authority.as_bytes());
            rules.choose(&mut host, &mut Facts::default())
        };
        // The wildcard comes first and wins over the later exact domain.
        assert_eq!(choose(Some("checkout"), "api.example.com"), Choice::Rule(0));
        assert_eq!(choose(Some("checkout"), "x.org"), Choice::Rule(1));
        assert_eq!(choose(Some("search"), "x.org"), Choice::Rule(3));
        assert_eq!(choose(Some("search"), "api.other.com"), Choice::Rule(2));
        assert_eq!(choose(None, "API.OTHER.COM:443"), Choice::Rule(2));
        assert_eq!(choose(None, "x.org"), Choice::Global);
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
