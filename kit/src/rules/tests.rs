use super::*;

#[test]
fn domains_match_exact_suffix_and_prefix_wildcards() {
    assert!(Domain::parse("*.x.com").matches(b"a.x.com"));
    assert!(!Domain::parse("*.x.com").matches(b"x.com"));
    assert!(Domain::parse("api.*").matches(b"api.foo.org"));
    assert!(!Domain::parse("api.*").matches(b"web.api.org"));
    assert!(Domain::parse("exact").matches(b"exact"));
    assert!(!Domain::parse("exact").matches(b"exact.org"));
    // Higress tests with strings.HasSuffix / HasPrefix: the rest of a
    // wildcard may be the whole host, and `*` matches any host.
    assert!(Domain::parse("*x.com").matches(b"x.com"));
    assert!(Domain::parse("api.*").matches(b"api."));
    assert!(Domain::parse("*").matches(b"anything.org"));
    // `""` (kept, as Higress keeps it) matches no real host.
    assert!(!Domain::parse("").matches(b"a"));
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
    assert_eq!(facts.get(&mut host, CONSUMER), None);
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
    const PREFIXES: [&str; 2] = ["r1", "r"];
    const SERVICES: [&str; 2] = ["s0", "s1"];
    const CONSUMERS: [&str; 2] = ["c0", "c1"];
    let hosts = ["a.com", "b.com", "c.com:8080", "x.com", "a.org", "d.org"];
    let mut indexed_hits = 0;
    for _ in 0..400 {
        let mut rules = Vec::new();
        for _ in 0..1 + next(12) {
            let mut m = Matcher::default();
            // Mostly single-condition rules, as real configs have.
            let kinds = if next(4) == 0 {
                1 + next(31)
            } else {
                1 << next(5)
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
                    m.route_prefixes.push(PREFIXES[next(2)]);
                }
                if kinds & 8 != 0 {
                    m.services.push(SERVICES[next(2)]);
                }
                if kinds & 16 != 0 {
                    m.consumers.push(CONSUMERS[next(2)]);
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
            ignored: Vec::new(),
        };
        for _ in 0..20 {
            let route = (next(5) > 0).then(|| ROUTES[next(4)]);
            let authority = (next(5) > 0).then(|| hosts[next(hosts.len() as u64)]);
            let (consumer, cluster) = (CONSUMERS[next(2)], SERVICES[next(2)]);
            // Upstream Envoy's property names or Higress's.
            let xds = if next(2) == 0 { "xds." } else { "" };
            let request = || {
                let mut host = crate::fake::FakeHost::new();
                if let Some(route) = route {
                    host.properties
                        .add(&format!("{xds}route_name"), route.as_bytes());
                }
                if let Some(authority) = authority {
                    host.request_headers.add(":authority", authority.as_bytes());
                }
                host.request_headers
                    .add(CONSUMER_HEADER, consumer.as_bytes());
                host.properties
                    .add(&format!("{xds}cluster_name"), cluster.as_bytes());
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
        ignored: Vec::new(),
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
fn services_match_higress_cluster_names() {
    // Higress's serviceMatch: the cluster name split on `|` into
    // exactly four parts; `fqdn:port` compares both, a bare name the
    // FQDN whatever the port.
    assert!(service_matches(
        "foo.default.svc.cluster.local",
        b"outbound|80||foo.default.svc.cluster.local"
    ));
    assert!(service_matches("foo.dns:8080", b"outbound|8080||foo.dns"));
    assert!(!service_matches("foo.dns:80", b"outbound|8080||foo.dns"));
    assert!(service_matches("foo.dns", b"outbound|8080||foo.dns"));
    // `*.static` services are port 80 in Higress's cluster names.
    assert!(service_matches("svc.static", b"outbound|80||svc.static"));
    assert!(service_matches("svc.static:80", b"outbound|80||svc.static"));
    // A subset, and any first part: Higress looks at parts 1 and 3 only.
    assert!(service_matches("foo.dns", b"outbound|8080|v1|foo.dns"));
    assert!(service_matches("foo.dns:8080", b"inbound|8080||foo.dns"));
    // Not four parts: no FQDN, no match.
    assert!(!service_matches("foo.dns", b"outbound|8080|foo.dns"));
    assert!(!service_matches("foo.dns", b"outbound|8080||foo.dns|x"));
    // An entry whose `:port` split fails still compares whole with the FQDN.
    assert!(service_matches("a:b", b"outbound|80||a:b"));
    assert!(!service_matches("foo", b"outbound|80||foo.dns"));
    // Beyond Higress: a plain Envoy cluster by its whole name.
    assert!(service_matches("backend", b"backend"));
    assert!(service_matches("outbound|80||foo", b"outbound|80||foo"));
    assert!(!service_matches("backend", b"backend-b"));
}

/// A FakeHost answering the route and cluster properties under
/// `prefix` (`"xds."` as Envoy 1.33+, `""` as Higress).
fn spelling_host(prefix: &str, route: Option<&str>) -> crate::fake::FakeHost {
    let mut host = crate::fake::FakeHost::new();
    if let Some(route) = route {
        host.properties
            .add(&format!("{prefix}route_name"), route.as_bytes());
    }
    host.properties
        .add(&format!("{prefix}cluster_name"), b"outbound|80||a.dns");
    host
}

/// Reads the route and cluster of one request and returns them with
/// the host calls it took.
fn read_both(facts: &mut Facts, host: &mut crate::fake::FakeHost) -> (String, String, u64) {
    facts.clear();
    let before = host.host_calls.get();
    let text = |v: Option<&[u8]>| String::from_utf8_lossy(v.unwrap_or(b"-")).into_owned();
    let route = text(facts.get(host, ROUTE));
    let cluster = text(facts.get(host, CLUSTER));
    (route, cluster, host.host_calls.get() - before)
}

#[test]
fn upstream_envoy_is_asked_the_xds_names_once_each() {
    let mut facts = Facts::default();
    let mut host = spelling_host("xds.", Some("checkout"));
    let first = read_both(&mut facts, &mut host);
    assert_eq!(first, ("checkout".into(), "outbound|80||a.dns".into(), 2));
    assert_eq!(facts.spellings, [Spelling::Xds; 2]);
    assert_eq!(read_both(&mut facts, &mut host), first);
    // Learnt: a request without a route costs one call, not two.
    let mut unrouted = spelling_host("xds.", None);
    let (route, _, calls) = read_both(&mut facts, &mut unrouted);
    assert_eq!((route.as_str(), calls), ("-", 2));
}

#[test]
fn higress_is_asked_the_bare_names_after_its_first_request() {
    let mut facts = Facts::default();
    let mut host = spelling_host("", Some("checkout"));
    // First request: `xds.` then the bare name, for each property.
    let first = read_both(&mut facts, &mut host);
    assert_eq!(first, ("checkout".into(), "outbound|80||a.dns".into(), 4));
    assert_eq!(facts.spellings, [Spelling::Bare; 2]);
    for _ in 0..3 {
        let (route, cluster, calls) = read_both(&mut facts, &mut host);
        assert_eq!(
            (route.as_str(), cluster.as_str(), calls),
            ("checkout", "outbound|80||a.dns", 2)
        );
    }
}

#[test]
fn a_request_without_the_property_teaches_nothing() {
    let mut facts = Facts::default();
    // No route on this request (Envoy answers NotFound to both names).
    let mut host = spelling_host("", None);
    let (route, _, _) = read_both(&mut facts, &mut host);
    assert_eq!(route, "-");
    assert_eq!(facts.spellings, [Spelling::Unknown, Spelling::Bare]);
    // The next request with a route is read by the name that answers.
    let mut host = spelling_host("", Some("r"));
    let (route, _, calls) = read_both(&mut facts, &mut host);
    assert_eq!((route.as_str(), calls), ("r", 3));
    assert_eq!(facts.spellings, [Spelling::Bare; 2]);
}

#[test]
fn an_unnamed_route_answers_an_empty_name() {
    // Envoy answers `xds.route_name` of a route without `name` with an
    // empty string: found, so the spelling is learnt, and no rule
    // matches it (Higress drops empty route names and prefixes).
    let mut facts = Facts::default();
    let mut host = spelling_host("xds.", Some(""));
    let (route, _, _) = read_both(&mut facts, &mut host);
    assert_eq!(route, "");
    assert_eq!(facts.spellings, [Spelling::Xds; 2]);
}
