//! The limiter's `_rules_` end to end: `limiter.wasm` in a real Envoy 1.40
//! whose route configuration has named routes, an unnamed one, a
//! direct-response one, three virtual hosts (domains) and four clusters,
//! each a real upstream that names itself in its answer. Two clusters are
//! named Higress's way (`outbound|<port>||<fqdn>`), two as plain Envoy
//! clusters. Counting happens in a real Redis through webdis.
//!
//! Upstream Envoy 1.33+ answers only `xds.route_name` and
//! `xds.cluster_name`; these tests fail on a build that reads Higress's
//! `route_name` / `cluster_name` alone (no route or service rule ever
//! applies), and on one that matches `_match_route_prefix_` against the
//! path or requires every `_match_*` key of a rule to match.
//!
//! Which rule applied is read from `X-RateLimit-Limit`: every rule has its
//! own limit. Each test starts its own processes and rule names.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use e2e::{room_in_minute_for, send_all, summary, unique_rule_name, WEBDIS_CLUSTER};
use serde_json::{json, Value};
use stack::{Envoy, EnvoyConfig, Redis, Reply, Response, Upstream, WasmPlugin, Webdis};

/// A Higress-style cluster name: Higress's matcher splits it on `|` into
/// port and FQDN.
const CHECKOUT: &str = "outbound|8080||checkout.dns";
/// A Higress `*.static` service: port 80.
const SEARCH: &str = "outbound|80||search.static";
/// Plain Envoy cluster names.
const PLAIN: &str = "plain-backend";
const OTHER: &str = "other-backend";

const GLOBAL_LIMIT: i64 = 100;

/// `(limit per minute, the rule's conditions)`, in rule order. Every limit
/// is distinct, so `X-RateLimit-Limit` names the rule that applied.
fn rules() -> Vec<(i64, Value)> {
    vec![
        // A route.
        (2, json!({"_match_route_": ["shop-checkout"]})),
        // Route and service combine: api-v1-items goes to checkout, not search.
        (
            3,
            json!({"_match_route_": ["api-v1-items"], "_match_service_": ["search.static"]}),
        ),
        // The route decides; Higress ignores the domain beside it.
        (
            4,
            json!({"_match_route_": ["shop-search"], "_match_domain_": ["eu.api.example.com"]}),
        ),
        // The domain decides; the service beside it is ignored.
        (
            5,
            json!({"_match_domain_": ["*.api.example.com"], "_match_service_": ["search.static"]}),
        ),
        // Route and service, both matching.
        (
            11,
            json!({"_match_route_": ["api-orders"], "_match_service_": ["checkout.dns:8080"]}),
        ),
        // The service (`fqdn:port` of a Higress cluster name) decides; the
        // route prefix beside it is ignored.
        (
            6,
            json!({"_match_service_": ["checkout.dns:8080"], "_match_route_prefix_": ["nothing-"]}),
        ),
        // A prefix of the route name.
        (7, json!({"_match_route_prefix_": ["api-v"]})),
        // A plain Envoy cluster by its whole name (beyond Higress).
        (8, json!({"_match_service_": [PLAIN]})),
        // Also matches api-v2-items, but the prefix rule comes first.
        (9, json!({"_match_route_": ["api-v2-items"]})),
    ]
}

/// The limiter's configuration: a global limit of [`GLOBAL_LIMIT`] and
/// [`rules`], every rule with its own unique `rule_name`.
fn plugin_config() -> Value {
    let rules: Vec<Value> = rules()
        .into_iter()
        .map(|(limit, mut rule)| {
            rule["rule_name"] = json!(unique_rule_name(&format!("rule{limit}")));
            rule["global_threshold"] = json!({"query_per_minute": limit});
            rule
        })
        .collect();
    json!({
        "rule_name": unique_rule_name("rules-global"),
        "global_threshold": {"query_per_minute": GLOBAL_LIMIT},
        "show_limit_quota_header": true,
        "redis": {"webdis_cluster": WEBDIS_CLUSTER, "timeout": 500},
        "_rules_": rules,
    })
}

/// A route `name`d (or not) from `prefix` to `cluster`.
fn route(name: Option<&str>, prefix: &str, cluster: &str) -> Value {
    let mut route = json!({"match": {"prefix": prefix}, "route": {"cluster": cluster}});
    if let Some(name) = name {
        route["name"] = json!(name);
    }
    route
}

fn virtual_hosts() -> Value {
    json!([
        {"name": "shop", "domains": ["shop.example.com"], "routes": [
            route(Some("shop-checkout"), "/checkout", CHECKOUT),
            route(Some("shop-search"), "/search", SEARCH),
            route(None, "/", PLAIN),
        ]},
        {"name": "api", "domains": ["api.example.com", "*.api.example.com"], "routes": [
            route(Some("api-v1-items"), "/v1/items", CHECKOUT),
            route(Some("api-orders"), "/orders", CHECKOUT),
            route(Some("api-cart"), "/cart", CHECKOUT),
            route(Some("api-v2-items"), "/v2", SEARCH),
            route(Some("api-v3-search"), "/v3", SEARCH),
            {"name": "api-status", "match": {"prefix": "/status"},
             "direct_response": {"status": 200, "body": {"inline_string": "status\n"}}},
        ]},
        {"name": "other", "domains": ["*"], "routes": [route(Some("fallback"), "/", OTHER)]},
    ])
}

/// Redis, webdis, four upstreams and the Envoy routing to them.
struct RulesStack {
    // Drop order: Envoy first, so it never sees its backends vanish first.
    envoy: Envoy,
    _upstreams: Vec<Upstream>,
    _webdis: Webdis,
    _redis: Redis,
}

impl RulesStack {
    fn start() -> Self {
        let redis = Redis::start();
        let webdis = Webdis::start(redis.port());
        // Each upstream answers with its own name, so a test sees which
        // cluster served it.
        let upstreams: Vec<(&str, Upstream)> = [
            (CHECKOUT, "checkout"),
            (SEARCH, "search"),
            (PLAIN, "plain"),
            (OTHER, "other"),
        ]
        .into_iter()
        .map(|(cluster, name)| {
            let reply = Reply::full(200, "text/plain", format!("{name}\n"));
            (cluster, Upstream::start_with(reply))
        })
        .collect();
        let mut config = EnvoyConfig::new()
            .wasm(WasmPlugin::new(
                e2e::limiter_wasm(),
                plugin_config().to_string(),
            ))
            .cluster(WEBDIS_CLUSTER, webdis.port())
            .virtual_hosts(virtual_hosts());
        for (cluster, upstream) in &upstreams {
            config = config.cluster(cluster, upstream.port());
        }
        let envoy = Envoy::start(config);
        Self {
            envoy,
            _upstreams: upstreams.into_iter().map(|(_, u)| u).collect(),
            _webdis: webdis,
            _redis: redis,
        }
    }

    /// `count` sequential `GET path` with `Host: host`.
    fn burst(&self, count: usize, host: &str, path: &str) -> Vec<Response> {
        send_all(
            count,
            |_| stack::get(self.envoy.port(), path, &[("host", host)]),
            || self.envoy.log(),
        )
    }

    fn get(&self, host: &str, path: &str) -> Response {
        self.burst(1, host, path).remove(0)
    }
}

/// An answer from upstream `served_by` under the rule of limit `limit`.
fn assert_served(r: &Response, what: &str, served_by: &str, limit: i64) {
    let summary = summary(r);
    assert_eq!(r.status, 200, "{what}: {summary}");
    assert_eq!(r.text(), format!("{served_by}\n"), "{what}: {summary}");
    assert_eq!(
        r.header_i64("x-ratelimit-limit"),
        Some(limit),
        "{what}: the rule of limit {limit} should apply; {summary}"
    );
}

fn statuses(responses: &[Response]) -> Vec<u16> {
    responses.iter().map(|r| r.status).collect()
}

#[test]
fn each_request_gets_the_rule_higress_would_choose() {
    let stack = RulesStack::start();
    // (host, path, upstream that serves it, limit of the rule that applies, why)
    let cases = [
        (
            "shop.example.com",
            "/checkout",
            "checkout",
            2,
            "_match_route_",
        ),
        (
            "shop.example.com",
            "/search",
            "search",
            4,
            "the route decides; the domain beside it is ignored",
        ),
        (
            "shop.example.com",
            "/anything",
            "plain",
            8,
            "an unnamed route: no route rule, the plain cluster name",
        ),
        (
            "api.example.com",
            "/v1/items",
            "checkout",
            6,
            "route + service need both (search.static is not its service); \
             then the service decides, the route prefix beside it ignored",
        ),
        (
            "eu.api.example.com",
            "/v1/items",
            "checkout",
            5,
            "the domain decides; the service beside it is ignored",
        ),
        (
            "EU.API.Example.COM",
            "/v1/items",
            "checkout",
            5,
            "domains compare without case (deliberately unlike Higress)",
        ),
        (
            "api.example.com",
            "/orders",
            "checkout",
            11,
            "route + service, both matching",
        ),
        (
            "api.example.com",
            "/v2",
            "search",
            7,
            "a prefix of the route name, before a later rule naming the route",
        ),
        (
            "api.example.com",
            "/v3",
            "search",
            7,
            "a prefix of the route name",
        ),
        (
            "other.org",
            "/v1/items",
            "other",
            GLOBAL_LIMIT,
            "no rule: the global limit",
        ),
    ];
    room_in_minute_for(cases.len() as u32 + 1);
    for (host, path, served_by, limit, why) in cases {
        let r = stack.get(host, path);
        assert_served(&r, &format!("{host}{path} ({why})"), served_by, limit);
    }
    // A direct response has a route but no cluster: service rules do not
    // apply, and nothing breaks.
    let r = stack.get("api.example.com", "/status");
    assert_eq!(r.status, 200, "{}", summary(&r));
    assert_eq!(r.text(), "status\n");
    assert_eq!(r.header_i64("x-ratelimit-limit"), Some(GLOBAL_LIMIT));
    // The keys Higress ignores were named at configuration.
    let log = stack.envoy.log();
    for warning in [
        "_rules_[2]: _match_domain_ is ignored: _match_route_ decides, as in Higress",
        "_rules_[3]: _match_service_ is ignored: _match_domain_ decides, as in Higress",
        "_rules_[5]: _match_route_prefix_ is ignored: _match_service_ decides, as in Higress",
    ] {
        assert!(log.contains(warning), "no `{warning}` in the Envoy log");
    }
}

#[test]
fn a_per_route_limit_applies() {
    let stack = RulesStack::start();
    let window = room_in_minute_for(6);
    let checkout = stack.burst(4, "shop.example.com", "/checkout");
    // Other routes of the same virtual host keep their own limits.
    let search = stack.get("shop.example.com", "/search");
    e2e::assert_same_window(window);
    assert_eq!(statuses(&checkout), [200, 200, 429, 429], "{checkout:#?}");
    for r in &checkout[..2] {
        assert_served(r, "shop-checkout", "checkout", 2);
    }
    for r in &checkout[2..] {
        e2e::assert_refusal(
            r,
            &summary(r),
            &e2e::RATE_LIMIT_HEADERS,
            "Too many requests",
            2,
            window,
        );
    }
    assert_served(&search, "shop-search", "search", 4);
}

#[test]
fn a_per_service_limit_counts_every_route_to_the_service() {
    // `checkout.dns:8080` against the cluster `outbound|8080||checkout.dns`:
    // two routes to it share the service's 6 a minute.
    let stack = RulesStack::start();
    let window = room_in_minute_for(8);
    let mut answers = stack.burst(3, "api.example.com", "/v1/items");
    answers.extend(stack.burst(3, "api.example.com", "/cart"));
    answers.extend(stack.burst(1, "api.example.com", "/v1/items"));
    answers.extend(stack.burst(1, "api.example.com", "/cart"));
    e2e::assert_same_window(window);
    assert_eq!(
        statuses(&answers),
        [200, 200, 200, 200, 200, 200, 429, 429],
        "{answers:#?}"
    );
    for r in &answers[..6] {
        assert_served(r, "a route to checkout.dns:8080", "checkout", 6);
    }
}

#[test]
fn a_route_prefix_limit_counts_routes_by_their_names() {
    // `api-v` is a prefix of the names `api-v2-items` and `api-v3-search`,
    // not of their paths `/v2` and `/v3`.
    let stack = RulesStack::start();
    let window = room_in_minute_for(9);
    let mut answers = stack.burst(4, "api.example.com", "/v2");
    answers.extend(stack.burst(4, "api.example.com", "/v3"));
    let unrelated = stack.get("api.example.com", "/orders");
    e2e::assert_same_window(window);
    assert_eq!(
        statuses(&answers),
        [200, 200, 200, 200, 200, 200, 200, 429],
        "{answers:#?}"
    );
    for r in &answers[..7] {
        assert_served(r, "a route named api-v*", "search", 7);
    }
    assert_served(&unrelated, "api-orders", "checkout", 11);
}

#[test]
fn a_domain_limit_applies_per_virtual_host() {
    // `*.api.example.com`: eu.api.example.com in any case, 5 a minute;
    // api.example.com itself is not under it.
    let stack = RulesStack::start();
    let window = room_in_minute_for(8);
    let mut answers = stack.burst(3, "eu.api.example.com", "/v1/items");
    answers.extend(stack.burst(2, "EU.API.EXAMPLE.COM", "/v2"));
    answers.extend(stack.burst(1, "eu.api.example.com", "/v3"));
    let apex = stack.get("api.example.com", "/v1/items");
    e2e::assert_same_window(window);
    assert_eq!(
        statuses(&answers),
        [200, 200, 200, 200, 200, 429],
        "{answers:#?}"
    );
    for r in &answers[..5] {
        assert_eq!(r.header_i64("x-ratelimit-limit"), Some(5), "{}", summary(r));
    }
    assert_served(&apex, "api.example.com", "checkout", 6);
}
