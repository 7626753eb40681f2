//! Higress's rule syntax: a global configuration plus `_rules_` that
//! override it for some routes, domains, services or route-name prefixes.
//!
//! ```json
//! {"rule_name": "default", "global_threshold": {"query_per_second": 100},
//!  "_rules_": [{"_match_domain_": ["*.example.com"], "global_threshold": {"query_per_second": 10}}]}
//! ```
//!
//! A rule matches as in Higress's `wasm-go` matcher: one kind of condition
//! decides, the first present of `_match_route_` (joined by
//! `_match_service_` when both are given), `_match_domain_`,
//! `_match_service_`, `_match_route_prefix_` (a prefix of the **route
//! name**, joined by `_match_consumer_` when both are given); the other
//! `_match_*` keys of that rule are ignored, and empty strings in their
//! lists are dropped. Where this kit departs from Higress on purpose
//! (domains compare without case; a request without `:authority` is still
//! limited; `_match_service_` also takes a plain Envoy cluster name), the
//! README's table of differences says why.
//!
//! Rules are compiled once. Per request the first matching rule wins, and
//! the request facts a rule needs (route name, authority, cluster,
//! consumer) are read lazily, at most once each; a configuration without
//! rules reads nothing. The route and cluster names are properties that
//! Envoy 1.33 renamed (`xds.route_name`, `xds.cluster_name`; Higress's
//! Envoy answers `route_name`, `cluster_name`): see [`Spelling`].

use crate::authority::{lowercase_ascii, strip_port};
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

    /// Whether `host`, already lowercase, matches. As in Higress, a
    /// wildcard's rest may be the whole host (`*example.com` matches
    /// `example.com`, and `*` matches every host).
    fn matches(&self, host: &[u8]) -> bool {
        match self {
            Domain::Exact(d) => host == &d[..],
            Domain::Suffix(s) => host.ends_with(s),
            Domain::Prefix(p) => host.starts_with(p),
        }
    }
}

/// The conditions of one rule that decide, as [`compile_matcher`] keeps
/// them: each non-empty list must match (by any of its entries). Higress
/// combines at most two kinds (route with service, route prefix with
/// consumer); the lists of the kinds it ignores are left empty.
#[derive(Debug, Default)]
struct Matcher<'cfg> {
    routes: Vec<&'cfg str>,
    domains: Vec<Domain<'cfg>>,
    services: Vec<&'cfg str>,
    /// Prefixes of the route name.
    route_prefixes: Vec<&'cfg str>,
    /// `x-mse-consumer` values, only beside `route_prefixes`.
    consumers: Vec<&'cfg str>,
}

/// The keys of which a rule needs one, in Higress's order of precedence.
const MATCH_KEYS: [&str; 4] = [
    "_match_route_",
    "_match_domain_",
    "_match_service_",
    "_match_route_prefix_",
];

/// Higress's consumer condition, honoured beside `_match_route_prefix_`.
const MATCH_CONSUMER: &str = "_match_consumer_";

/// The header Higress's authentication plugins name the consumer in.
const CONSUMER_HEADER: &str = "x-mse-consumer";

/// A `_match_*` key that a rule gives but that Higress's matcher never
/// looks at, because another kind of condition decides the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ignored {
    /// The rule's position in `_rules_`.
    pub(crate) rule: usize,
    pub(crate) key: &'static str,
    pub(crate) decided_by: &'static str,
}

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
    /// Keys the rules give that do not count, to warn about once.
    ignored: Vec<Ignored>,
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
        let (mut matchers, mut configs, mut ignored) = (Vec::new(), Vec::new(), Vec::new());
        if let Some(field) = rules_field {
            field.each(|item| {
                let fields = item.object()?;
                let rule = matchers.len();
                matchers.push(compile_matcher(&item, &fields, |key, decided_by| {
                    ignored.push(Ignored {
                        rule,
                        key,
                        decided_by,
                    });
                })?);
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
            ignored,
        })
    }

    /// The `_match_*` keys the rules give that do not count (see
    /// [`Ignored`]), for the plugin to warn about at configuration.
    pub(crate) fn ignored(&self) -> &[Ignored] {
        &self.ignored
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
            let others_empty =
                m.services.is_empty() && m.route_prefixes.is_empty() && m.consumers.is_empty();
            let only_routes = !m.routes.is_empty() && m.domains.is_empty() && others_empty;
            let only_exact_domains = m.routes.is_empty()
                && !m.domains.is_empty()
                && m.domains.iter().all(|d| matches!(d, Domain::Exact(_)))
                && others_empty;
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
            // only, and the standard sort would add its generic code to
            // the module (see `pattern::class::normalize`).
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

/// The strings of list `key` of a rule, without empty ones (Higress drops
/// them: an empty route name or prefix would otherwise match requests
/// without a route, or every route).
fn non_empty<'cfg>(fields: &Fields<'_, 'cfg>, key: &str) -> Result<Vec<&'cfg str>, ConfigError> {
    let mut list = match fields.get_own(key) {
        Some(f) => f.strings()?,
        None => Vec::new(),
    };
    list.retain(|s| !s.is_empty());
    Ok(list)
}

/// A rule's conditions, kept as Higress's matcher weighs them: the first
/// present of routes (with services), domains, services, route prefixes
/// (with consumers) decides, and the other lists are emptied; each
/// non-empty one is told to `ignore(key, deciding key)`.
fn compile_matcher<'cfg>(
    item: &Field<'_, 'cfg>,
    fields: &Fields<'_, 'cfg>,
    mut ignore: impl FnMut(&'static str, &'static str),
) -> Result<Matcher<'cfg>, ConfigError> {
    // Read in a loop: one error path for the four lists instead of one
    // per list, each dropping the lists before it.
    let mut lists: [Vec<&'cfg str>; 4] = Default::default();
    let keys = [
        "_match_route_",
        "_match_service_",
        "_match_route_prefix_",
        MATCH_CONSUMER,
    ];
    for (list, key) in lists.iter_mut().zip(keys) {
        *list = non_empty(fields, key)?;
    }
    let [routes, services, route_prefixes, consumers] = lists;
    let mut m = Matcher {
        routes,
        services,
        route_prefixes,
        consumers,
        domains: Vec::new(),
    };
    // Domains keep empty entries, as Higress does: `""` matches no host.
    if let Some(f) = fields.get_own("_match_domain_") {
        for d in f.strings()? {
            m.domains.push(Domain::parse(d));
        }
    }
    let decided_by = if !m.routes.is_empty() {
        "_match_route_"
    } else if !m.domains.is_empty() {
        "_match_domain_"
    } else if !m.services.is_empty() {
        "_match_service_"
    } else {
        "_match_route_prefix_"
    };
    let mut note = |key: &'static str, empty: bool| {
        if !empty {
            ignore(key, decided_by);
        }
    };
    if !m.routes.is_empty() {
        note("_match_domain_", m.domains.is_empty());
        note("_match_route_prefix_", m.route_prefixes.is_empty());
        note(MATCH_CONSUMER, m.consumers.is_empty());
        m.domains.clear();
        m.route_prefixes.clear();
        m.consumers.clear();
    } else if !m.domains.is_empty() {
        note("_match_service_", m.services.is_empty());
        note("_match_route_prefix_", m.route_prefixes.is_empty());
        note(MATCH_CONSUMER, m.consumers.is_empty());
        m.services.clear();
        m.route_prefixes.clear();
        m.consumers.clear();
    } else if !m.services.is_empty() {
        note("_match_route_prefix_", m.route_prefixes.is_empty());
        note(MATCH_CONSUMER, m.consumers.is_empty());
        m.route_prefixes.clear();
        m.consumers.clear();
    } else if m.route_prefixes.is_empty() {
        return Err(item.error(format!(
            "a rule needs a non-empty one of {}",
            crate::config::comma_list(&MATCH_KEYS)
        )));
    }
    Ok(m)
}

/// Which name of a renamed property the host answers.
///
/// Envoy 1.33 dropped `route_name` and `cluster_name` from `get_property`
/// for `xds.route_name` and `xds.cluster_name`; Higress's Envoy answers the
/// old names. A host that answers one spelling is asked by that spelling
/// only from then on (per filter, so per worker): a request costs one host
/// call per property, not two. Until a host has answered either, both are
/// tried, the `xds.` one first, as Envoy documents it; a request without a
/// route or cluster (a direct response has no cluster) teaches nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Spelling {
    /// Not learnt yet: try `xds.<name>`, then `<name>`.
    #[default]
    Unknown,
    /// `xds.<name>` (upstream Envoy 1.33 and later).
    Xds,
    /// `<name>` alone (Higress, and Envoy before 1.33).
    Bare,
}

/// Facts about the current request that rules test, read at most once.
#[derive(Debug, Default)]
pub(crate) struct Facts {
    bytes: Vec<u8>,
    /// Route name, authority (without port), cluster name, consumer.
    ranges: [Option<Option<(usize, usize)>>; 4],
    /// How the host spells the route and cluster properties; kept across
    /// requests.
    spellings: [Spelling; 2],
}

const ROUTE: usize = 0;
const AUTHORITY: usize = 1;
const CLUSTER: usize = 2;
const CONSUMER: usize = 3;

/// The route name property: the `xds.` spelling, then the bare one.
const ROUTE_NAME: [&[&str]; 2] = [&["xds", "route_name"], &["route_name"]];
/// The cluster name property, spelt as [`ROUTE_NAME`].
const CLUSTER_NAME: [&[&str]; 2] = [&["xds", "cluster_name"], &["cluster_name"]];

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

    /// Copies `value` to the end of `bytes` and returns where it is.
    fn keep(&mut self, value: &[u8]) -> (usize, usize) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(value);
        (start, self.bytes.len())
    }

    /// Reads the fact `which` into `bytes` and records where it is.
    #[inline(never)]
    fn read<H: Host>(&mut self, host: &mut H, which: usize) -> Option<(usize, usize)> {
        let range = match which {
            ROUTE => self.read_property(host, 0, ROUTE_NAME),
            CLUSTER => self.read_property(host, 1, CLUSTER_NAME),
            AUTHORITY => {
                let range = host
                    .header(HeaderMap::Request, ":authority")
                    .map(strip_port)
                    .map(|v| self.keep(v));
                // Domains compare without case (see `Domain`).
                if let Some(bytes) = range.and_then(|(s, e)| self.bytes.get_mut(s..e)) {
                    lowercase_ascii(bytes);
                }
                range
            }
            _ => host
                .header(HeaderMap::Request, CONSUMER_HEADER)
                .map(|v| self.keep(v)),
        };
        if let Some(slot) = self.ranges.get_mut(which) {
            *slot = Some(range);
        }
        range
    }

    /// Reads a renamed property by the spelling the host is known to
    /// answer, or by both until it is known (see [`Spelling`]).
    fn read_property<H: Host>(
        &mut self,
        host: &mut H,
        which: usize,
        [xds, bare]: [&[&str]; 2],
    ) -> Option<(usize, usize)> {
        let spelling = self.spellings.get(which).copied().unwrap_or_default();
        if spelling != Spelling::Bare {
            if let Some(value) = host.property(xds) {
                let range = self.keep(value);
                self.learn(which, Spelling::Xds);
                return Some(range);
            }
            if spelling == Spelling::Xds {
                return None;
            }
        }
        let range = host.property(bare).map(|value| self.keep(value))?;
        self.learn(which, Spelling::Bare);
        Some(range)
    }

    fn learn(&mut self, which: usize, spelling: Spelling) {
        if let Some(slot) = self.spellings.get_mut(which) {
            *slot = spelling;
        }
    }
}

/// Whether a `_match_service_` entry names the cluster, as Higress's
/// matcher decides: a cluster name of exactly four `|`-separated parts
/// (`outbound|8080||svc.dns`) gives a port and an FQDN; an entry
/// `fqdn:port` needs both to be equal, an entry without a port (or whose
/// `fqdn:port` split does not fit) the FQDN alone. Beyond Higress, an entry
/// equal to the whole cluster name matches too: plain Envoy clusters are
/// not named Higress's way.
fn service_matches(entry: &str, cluster: &[u8]) -> bool {
    if cluster == entry.as_bytes() {
        return true;
    }
    let mut parts = cluster.split(|&b| b == b'|');
    let (Some(_), Some(port), Some(_), Some(fqdn), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let with_port = entry
        .rsplit_once(':')
        .is_some_and(|(name, p)| name.as_bytes() == fqdn && p.as_bytes() == port);
    with_port || entry.as_bytes() == fqdn
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
        if !self.route_prefixes.is_empty() {
            let Some(route) = facts.get(host, ROUTE) else {
                return false;
            };
            if !self
                .route_prefixes
                .iter()
                .any(|p| route.starts_with(p.as_bytes()))
            {
                return false;
            }
        }
        if !self.consumers.is_empty() {
            let Some(consumer) = facts.get(host, CONSUMER) else {
                return false;
            };
            if !self.consumers.iter().any(|c| c.as_bytes() == consumer) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests;
