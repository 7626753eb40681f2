//! Which `_rules_` entry applies, as Higress's `wasm-go` matcher
//! (`pkg/matcher/rule_matcher.go`, `ParseRuleConfig` and `GetMatchConfig`)
//! decides, over the `FakeHost` playing both hosts: upstream Envoy 1.33+
//! (`xds.route_name`, `xds.cluster_name`) and Higress (`route_name`,
//! `cluster_name`).
//!
//! Every rule has its own limit, and allowed answers carry
//! `X-RateLimit-Limit`, so one request shows which rule applied.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use common::{Driver, Outcome};
use kit::fake::FakeHost;
use kit::Filter;
use limiter::Limiter;

/// The property names of the two hosts.
const HOSTS: [(&str, &str); 2] = [("upstream Envoy", "xds."), ("Higress", "")];

const GLOBAL: i64 = 100;

/// A limiter with a global limit of [`GLOBAL`] a minute and `rules`, each
/// given as its `_match_*` keys and its limit.
fn driver(rules: &[(&str, i64)]) -> Driver {
    let rules: Vec<String> = rules
        .iter()
        .map(|(matchers, limit)| {
            format!(
                r#"{{{matchers}, "rule_name": "rule{limit}", "global_threshold": {{"query_per_minute": {limit}}}}}"#
            )
        })
        .collect();
    Driver::new(&format!(
        r#"{{"rule_name": "global", "global_threshold": {{"query_per_minute": {GLOBAL}}},
            "show_limit_quota_header": true, "redis": {{"webdis_cluster": "webdis"}},
            "_rules_": [{}]}}"#,
        rules.join(", ")
    ))
}

/// What one request looks like to the rules.
#[derive(Clone, Copy, Default)]
struct Request<'a> {
    authority: Option<&'a str>,
    route: Option<&'a str>,
    cluster: Option<&'a str>,
    consumer: Option<&'a str>,
}

/// The limit of the rule that applied to `request` on the host whose
/// properties are spelt with `prefix`; `None` when the plugin stayed out.
fn limit_applied(d: &mut Driver, prefix: &str, request: Request<'_>) -> Option<i64> {
    let host = d.host();
    host.properties.clear();
    if let Some(route) = request.route {
        host.properties
            .add(&format!("{prefix}route_name"), route.as_bytes());
    }
    if let Some(cluster) = request.cluster {
        host.properties
            .add(&format!("{prefix}cluster_name"), cluster.as_bytes());
    }
    let mut headers = vec![(":path", "/")];
    if let Some(authority) = request.authority {
        headers.push((":authority", authority));
    }
    if let Some(consumer) = request.consumer {
        headers.push(("x-mse-consumer", consumer));
    }
    assert_eq!(d.request(&headers), Outcome::Forwarded);
    d.host()
        .response_headers
        .get_str("x-ratelimit-limit")
        .map(|v| v.parse().unwrap())
}

fn route(name: &str) -> Request<'_> {
    Request {
        route: Some(name),
        ..Request::default()
    }
}

fn cluster(name: &str) -> Request<'_> {
    Request {
        cluster: Some(name),
        ..Request::default()
    }
}

#[test]
fn route_rules_apply_on_both_hosts() {
    // Higress: `rule.routes[routeName]`, an exact route name.
    for (host, prefix) in HOSTS {
        let mut d = driver(&[(r#""_match_route_": ["checkout", "cart"]"#, 10)]);
        for _ in 0..3 {
            assert_eq!(
                limit_applied(&mut d, prefix, route("checkout")),
                Some(10),
                "{host}"
            );
            assert_eq!(
                limit_applied(&mut d, prefix, route("cart")),
                Some(10),
                "{host}"
            );
        }
        assert_eq!(
            limit_applied(&mut d, prefix, route("checkout-v2")),
            Some(GLOBAL)
        );
        assert_eq!(
            limit_applied(&mut d, prefix, Request::default()),
            Some(GLOBAL)
        );
    }
}

#[test]
fn service_rules_compare_higress_service_names_on_both_hosts() {
    // Higress's serviceMatch: the cluster name in four `|` parts; an entry
    // `fqdn:port` needs both, a bare `fqdn` any port.
    for (host, prefix) in HOSTS {
        let mut d = driver(&[
            (r#""_match_service_": ["checkout.dns:8080"]"#, 2),
            (r#""_match_service_": ["search.static"]"#, 3),
            (r#""_match_service_": ["plain-backend"]"#, 4),
        ]);
        let cases = [
            ("outbound|8080||checkout.dns", 2),
            ("outbound|8080|v1|checkout.dns", 2),
            ("outbound|80||checkout.dns", GLOBAL),
            ("outbound|80||search.static", 3),
            ("outbound|8080||search.static", 3),
            // Not four parts: Higress finds no FQDN in it.
            ("outbound|80|search.static", GLOBAL),
            // A plain Envoy cluster by its whole name (beyond Higress).
            ("plain-backend", 4),
            ("checkout.dns", GLOBAL),
        ];
        for (name, limit) in cases {
            assert_eq!(
                limit_applied(&mut d, prefix, cluster(name)),
                Some(limit),
                "{host}: cluster {name}"
            );
        }
    }
}

#[test]
fn a_route_prefix_is_a_prefix_of_the_route_name() {
    // Higress: strings.HasPrefix(routeName, routePrefix); the path plays
    // no part.
    for (host, prefix) in HOSTS {
        let mut d = driver(&[(r#""_match_route_prefix_": ["api-v1", "admin"]"#, 10)]);
        for (name, limit) in [
            ("api-v1-items", 10),
            ("api-v1", 10),
            ("admin", 10),
            ("api-v2-items", GLOBAL),
            ("/api-v1", GLOBAL),
        ] {
            assert_eq!(
                limit_applied(&mut d, prefix, route(name)),
                Some(limit),
                "{host}: route {name}"
            );
        }
        // The driver's path `/` would match a path prefix `/`; a route
        // name does not start with it.
        let mut d = driver(&[(r#""_match_route_prefix_": ["/"]"#, 2)]);
        assert_eq!(limit_applied(&mut d, prefix, route("r")), Some(GLOBAL));
    }
}

#[test]
fn one_kind_of_condition_decides_in_higress_order() {
    // ParseRuleConfig: route (with service: RouteAndService), else domain,
    // else service, else route prefix (with consumer); the other keys of
    // the rule are never looked at.
    let all = Request {
        authority: Some("api.example.com"),
        route: Some("checkout"),
        cluster: Some("outbound|80||svc.dns"),
        consumer: Some("alice"),
    };
    let cases: [(&str, Request<'_>, bool); 12] = [
        // Route beside a domain: the domain is ignored, either way.
        (
            r#""_match_route_": ["checkout"], "_match_domain_": ["other.org"]"#,
            all,
            true,
        ),
        (
            r#""_match_route_": ["cart"], "_match_domain_": ["api.example.com"]"#,
            all,
            false,
        ),
        // Route beside a route prefix: the prefix is ignored.
        (
            r#""_match_route_": ["checkout"], "_match_route_prefix_": ["x"]"#,
            all,
            true,
        ),
        (
            r#""_match_route_": ["cart"], "_match_route_prefix_": ["check"]"#,
            all,
            false,
        ),
        // Route and service: both must match.
        (
            r#""_match_route_": ["checkout"], "_match_service_": ["svc.dns"]"#,
            all,
            true,
        ),
        (
            r#""_match_route_": ["checkout"], "_match_service_": ["other.dns"]"#,
            all,
            false,
        ),
        // Domain beside a service or a route prefix: the domain decides.
        (
            r#""_match_domain_": ["*.example.com"], "_match_service_": ["other.dns"]"#,
            all,
            true,
        ),
        (
            r#""_match_domain_": ["other.org"], "_match_service_": ["svc.dns"]"#,
            all,
            false,
        ),
        (
            r#""_match_domain_": ["other.org"], "_match_route_prefix_": ["check"]"#,
            all,
            false,
        ),
        // Service beside a route prefix: the service decides.
        (
            r#""_match_service_": ["svc.dns"], "_match_route_prefix_": ["x"]"#,
            all,
            true,
        ),
        (
            r#""_match_service_": ["other.dns"], "_match_route_prefix_": ["check"]"#,
            all,
            false,
        ),
        // Route prefix and consumer: both must match.
        (
            r#""_match_route_prefix_": ["check"], "_match_consumer_": ["bob"]"#,
            all,
            false,
        ),
    ];
    for (host, prefix) in HOSTS {
        for (matchers, request, applies) in cases {
            let mut d = driver(&[(matchers, 2)]);
            let want = if applies { 2 } else { GLOBAL };
            assert_eq!(
                limit_applied(&mut d, prefix, request),
                Some(want),
                "{host}: {{{matchers}}}"
            );
        }
    }
}

#[test]
fn the_first_rule_that_matches_wins() {
    // GetMatchConfig returns the first rule in order that matches.
    let mut d = driver(&[
        (r#""_match_route_prefix_": ["check"]"#, 2),
        (r#""_match_route_": ["checkout"]"#, 3),
        (r#""_match_domain_": ["api.example.com"]"#, 4),
    ]);
    let request = Request {
        authority: Some("api.example.com"),
        route: Some("checkout"),
        ..Request::default()
    };
    assert_eq!(limit_applied(&mut d, "xds.", request), Some(2));
    let request = Request {
        route: Some("cart"),
        ..request
    };
    assert_eq!(limit_applied(&mut d, "xds.", request), Some(4));
}

#[test]
fn a_consumer_condition_counts_only_beside_a_route_prefix() {
    let consumer = |name| Request {
        route: Some("api-items"),
        consumer: Some(name),
        ..Request::default()
    };
    let mut d = driver(&[(
        r#""_match_route_prefix_": ["api-"], "_match_consumer_": ["alice"]"#,
        2,
    )]);
    assert_eq!(limit_applied(&mut d, "", consumer("alice")), Some(2));
    assert_eq!(limit_applied(&mut d, "", consumer("bob")), Some(GLOBAL));
    let without = Request {
        route: Some("api-items"),
        ..Request::default()
    };
    assert_eq!(limit_applied(&mut d, "", without), Some(GLOBAL));
    // Beside a route, Higress ignores it.
    let mut d = driver(&[(
        r#""_match_route_": ["api-items"], "_match_consumer_": ["alice"]"#,
        2,
    )]);
    assert_eq!(limit_applied(&mut d, "", consumer("bob")), Some(2));
    // Alone it is no condition: the rule is refused, as in Higress.
    let err = refused(r#""_match_consumer_": ["alice"]"#);
    assert!(err.contains("a rule needs a non-empty one of"), "{err}");
}

/// The error configuring a limiter with one rule of `matchers` gives.
fn refused(matchers: &str) -> String {
    let json = format!(
        r#"{{"rule_name": "g", "global_threshold": {{"query_per_minute": 1}}, "redis": {{"webdis_cluster": "webdis"}},
            "_rules_": [{{{matchers}, "global_threshold": {{"query_per_minute": 1}}}}]}}"#
    );
    let mut f = Filter::<Limiter, FakeHost>::new(FakeHost::new());
    f.configure(json.into_bytes()).unwrap_err().to_string()
}

#[test]
fn empty_entries_are_dropped_as_higress_drops_them() {
    // parseRouteMatchConfig and its siblings skip "" entries.
    let err = refused(r#""_match_route_": [""]"#);
    assert!(
        err.contains("_rules_[0]: a rule needs a non-empty one of"),
        "{err}"
    );
    let err = refused(r#""_match_route_prefix_": ["", ""], "_match_service_": []"#);
    assert!(err.contains("a rule needs a non-empty one of"), "{err}");
    // An empty prefix would match every route; dropped, it matches none.
    let mut d = driver(&[(r#""_match_route_prefix_": ["", "api-"]"#, 2)]);
    assert_eq!(limit_applied(&mut d, "xds.", route("web")), Some(GLOBAL));
    assert_eq!(limit_applied(&mut d, "xds.", route("api-x")), Some(2));
    // An unnamed route (Envoy answers an empty name) matches no route rule.
    let mut d = driver(&[(r#""_match_route_": ["", "x"]"#, 2)]);
    assert_eq!(limit_applied(&mut d, "xds.", route("")), Some(GLOBAL));
}

#[test]
fn a_request_without_an_authority_is_still_limited() {
    // Deliberately unlike Higress, whose GetMatchConfig fails without
    // `:authority` and leaves the request unlimited: here only domain
    // rules miss it.
    let mut d = driver(&[
        (r#""_match_domain_": ["*"]"#, 2),
        (r#""_match_route_": ["checkout"]"#, 3),
    ]);
    assert_eq!(limit_applied(&mut d, "", route("checkout")), Some(3));
    assert_eq!(limit_applied(&mut d, "", Request::default()), Some(GLOBAL));
    let with_host = Request {
        authority: Some("anything.org"),
        ..route("checkout")
    };
    assert_eq!(limit_applied(&mut d, "", with_host), Some(2));
}

#[test]
fn domains_compare_without_case_and_without_port() {
    // Higress strips the port as Envoy does, then compares bytes with case;
    // here the case does not matter (an uppercase Host is the same site).
    let mut d = driver(&[
        (r#""_match_domain_": ["api.example.com"]"#, 2),
        (r#""_match_domain_": ["*.Example.org"]"#, 3),
        (r#""_match_domain_": ["*example.net"]"#, 4),
    ]);
    let host = |authority| Request {
        authority: Some(authority),
        ..Request::default()
    };
    for (authority, limit) in [
        ("api.example.com", 2),
        ("API.Example.COM:8443", 2),
        ("eu.EXAMPLE.org", 3),
        ("example.org", GLOBAL),
        // A wildcard's rest may be the whole host, as strings.HasSuffix has it.
        ("example.net", 4),
        ("[::1]:80", GLOBAL),
    ] {
        assert_eq!(
            limit_applied(&mut d, "", host(authority)),
            Some(limit),
            "{authority}"
        );
    }
}

#[test]
fn a_learnt_spelling_costs_one_host_call_per_property() {
    // A route rule and a service rule, neither matching: both properties
    // read. Higress answers the bare names: the first request asks both
    // spellings, later ones only the bare one.
    let mut d = driver(&[
        (r#""_match_route_": ["checkout"]"#, 2),
        (r#""_match_service_": ["svc.dns"]"#, 3),
    ]);
    let request = Request {
        route: Some("cart"),
        cluster: Some("outbound|80||other.dns"),
        ..Request::default()
    };
    let calls = |d: &mut Driver| d.host().host_calls.get();
    let before = calls(&mut d);
    assert_eq!(limit_applied(&mut d, "", request), Some(GLOBAL));
    let first = calls(&mut d) - before;
    let before = calls(&mut d);
    assert_eq!(limit_applied(&mut d, "", request), Some(GLOBAL));
    let second = calls(&mut d) - before;
    assert_eq!(
        first - second,
        2,
        "two misses of xds.* on the first request only"
    );
}

#[test]
fn keys_that_do_not_count_are_warned_about_once() {
    let d = driver(&[
        (
            r#""_match_route_": ["a"], "_match_domain_": ["x.org"], "_match_service_": ["s"]"#,
            2,
        ),
        (
            r#""_match_domain_": ["x.org"], "_match_route_prefix_": ["a"], "_match_consumer_": ["c"]"#,
            3,
        ),
        (
            r#""_match_route_prefix_": ["a"], "_match_consumer_": ["c"]"#,
            4,
        ),
    ]);
    let warnings: Vec<&str> = d
        .filter
        .host()
        .logs
        .iter()
        .filter(|(level, _)| *level == kit::LogLevel::Warn)
        .map(|(_, line)| line.as_str())
        .collect();
    assert_eq!(
        warnings,
        [
            "limiter: _rules_[0]: _match_domain_ is ignored: _match_route_ decides, as in Higress",
            "limiter: _rules_[1]: _match_route_prefix_ is ignored: _match_domain_ decides, as in Higress",
            "limiter: _rules_[1]: _match_consumer_ is ignored: _match_domain_ decides, as in Higress",
        ]
    );
}
