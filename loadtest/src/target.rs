//! What the external mode drives: a stack someone else started, described
//! by the compose files (`--stack compose`) or by URLs on the command line
//! (`--gateway`, `--baseline`, `--redis`, and for a token quota
//! `--token-quota-json`/`-sse`, `--token-quota-baseline`,
//! `--token-quota-rule`).
//!
//! Nothing about the compose stack is written down here: its ports, stat
//! prefixes, rule names and limits are read from `docker-compose.yaml` and
//! the Envoy configs it mounts, by listener name (`limiter`,
//! `token-quota-json`, `token-quota-sse`, `baseline`, `baseline-llm` in the
//! gateway; `main` and `baseline` in the `envoy` profile's; `json` and
//! `sse` in the upstream's).

// serde_json's `Value` index answers `Null` for a missing key or position;
// it never panics.
#![allow(clippy::indexing_slicing)]

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::wrk::Listener;

/// One limiter gateway of the stack, with its own no-filter route.
#[derive(Debug, Clone, Serialize)]
pub struct Gateway {
    pub name: String,
    pub port: u16,
    /// The same answers without any filter, on the same Envoy.
    pub baseline_port: Option<u16>,
    /// The limiter's listener counters; `None` without an admin port.
    pub listener: Option<Listener>,
    pub baseline_listener: Option<Listener>,
    /// The Envoy's admin port (`/memory`, `/server_info`).
    pub admin_port: Option<u16>,
}

/// A token quota route and what it is configured with.
#[derive(Debug, Clone, Serialize)]
pub struct QuotaRoute {
    pub port: u16,
    /// The path the chat requests are sent to.
    pub path: String,
    pub listener: Option<Listener>,
    pub rule: String,
    /// `redis_key_prefix`: the first part of the quota's counter keys.
    pub key_prefix: String,
    /// `global_threshold.token_per_minute`; `None` when the stack's
    /// configuration is not read (`--token-quota-*`): the gateway's
    /// refusal tells it then (`x-tokenratelimit-limit`).
    pub per_minute: Option<u64>,
    /// The upstream listener that answers it (its answers are counted);
    /// `None` when its admin is not known.
    pub upstream: Option<Listener>,
    /// No filter to the same upstream, where the usage one answer
    /// reports is read: port and path.
    pub baseline_port: u16,
    pub baseline_path: String,
}

/// The token quota part of a stack: a JSON route, an event-stream route,
/// or both.
#[derive(Debug, Clone, Serialize)]
pub struct Quota {
    pub json: Option<QuotaRoute>,
    pub sse: Option<QuotaRoute>,
}

/// The stack's routes whose limits are never reached, for the overhead
/// rows (`limiter-pass`, `token-quota-json`, `token-quota-sse` beside
/// their no-filter routes): the accuracy runs reach the other routes'
/// limits within seconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PassRoutes {
    /// The limiter; compared with the first gateway's no-filter route.
    pub limiter: Option<PassLimiter>,
    /// The token quota answering JSON; its `rule` is empty when the
    /// stack's configuration is not read (`--token-quota-pass-json`).
    pub json: Option<QuotaRoute>,
    /// The token quota answering event streams; `rule` as for `json`.
    pub sse: Option<QuotaRoute>,
}

/// A limiter route whose limit is never reached.
#[derive(Debug, Clone, Serialize)]
pub struct PassLimiter {
    pub port: u16,
    pub listener: Option<Listener>,
}

/// The overhead route options of the generic mode, before they are
/// checked (their no-filter routes: `--baseline`, `--token-quota-baseline`).
#[derive(Debug, Clone, Default)]
pub struct PassUrls {
    /// `--limiter-pass URL`.
    pub limiter: Option<String>,
    /// `--token-quota-pass-json URL`.
    pub json: Option<String>,
    /// `--token-quota-pass-sse URL`.
    pub sse: Option<String>,
}

impl PassUrls {
    /// Whether any overhead route option was given.
    pub fn any(&self) -> bool {
        self.limiter.is_some() || self.json.is_some() || self.sse.is_some()
    }
}

/// The token quota options of the generic mode, before they are checked.
#[derive(Debug, Clone, Default)]
pub struct QuotaUrls {
    /// `--token-quota-json URL`: a route whose answers are JSON.
    pub json: Option<String>,
    /// `--token-quota-sse URL`: a route whose answers are event streams.
    pub sse: Option<String>,
    /// `--token-quota-baseline URL[,URL]`: no filter to the same upstream
    /// (one for both routes, or the JSON route's then the event-stream
    /// route's).
    pub baselines: Vec<String>,
    /// `--token-quota-rule NAME[,NAME]`: `rule_name` (one per route).
    pub rules: Vec<String>,
    /// `--token-quota-key-prefix P`: `redis_key_prefix`.
    pub key_prefix: Option<String>,
}

impl QuotaUrls {
    /// Whether any token quota option was given.
    pub fn any(&self) -> bool {
        self.json.is_some()
            || self.sse.is_some()
            || !self.baselines.is_empty()
            || !self.rules.is_empty()
            || self.key_prefix.is_some()
    }
}

/// Everything the external mode needs to know about the stack.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Target {
    /// One line for the report's header.
    pub description: String,
    pub gateways: Vec<Gateway>,
    pub quota: Option<Quota>,
    /// The routes of the overhead rows.
    pub pass: PassRoutes,
    pub redis_port: u16,
    /// Shell commands that stop and start the stack's Redis.
    pub redis_stop: Option<String>,
    pub redis_start: Option<String>,
}

/// A loopback `http://127.0.0.1:PORT[/]` (or `localhost`, or a bare port).
///
/// # Errors
/// Anything else: the load test targets loopback only (a remote gateway is
/// reached through a tunnel, e.g. `ssh -L`), and these routes are driven
/// at `/`.
pub fn loopback_port(url: &str) -> Result<u16, String> {
    match loopback_url(url)? {
        (port, path) if path == "/" => Ok(port),
        (_, path) => Err(format!(
            "{url}: the path {path} is not used here (the route is driven at /); give              http://127.0.0.1:PORT"
        )),
    }
}

/// A loopback `http://127.0.0.1:PORT[/PATH]`: its port and path (`/` when
/// none is given).
///
/// # Errors
/// As [`loopback_port`], and a path with a character a request line or
/// the load driver's script cannot carry (space, control, `"`, `\`).
pub fn loopback_url(url: &str) -> Result<(u16, String), String> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    };
    if path
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'"' || b == b'\\' || !b.is_ascii())
    {
        return Err(format!(
            "{url}: the path may hold only printable ASCII without spaces, quotes or backslashes"
        ));
    }
    let (host, port) = authority
        .rsplit_once(':')
        .unwrap_or(("127.0.0.1", authority));
    if !matches!(host, "127.0.0.1" | "localhost" | "") {
        return Err(format!(
            "{url}: the load test drives loopback only (127.0.0.1 or localhost); reach a remote \
             gateway through a tunnel such as `ssh -L 10000:gateway:10000 host`"
        ));
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{url}: no port (expected http://127.0.0.1:PORT)"))?;
    Ok((port, path.to_owned()))
}

/// The token quota routes the generic mode's options name, if any.
///
/// `admin` (the first `--admin`, if given) serves the progress lines; the
/// upstream's answers cannot be counted (its admin is not known), and the
/// quota's limit is read from the gateway's refusal.
///
/// # Errors
/// One line naming the option: a URL that is not on loopback, a route
/// without its no-filter route or rule name, a count of baselines or rule
/// names that does not match the routes, two routes with one rule (the
/// two accuracy runs share one window, so they need their own counters),
/// an option that needs a route without one, or a key prefix Redis keys
/// of the token quota cannot start with.
pub fn quota_from_urls(args: &QuotaUrls, admin: Option<u16>) -> Result<Option<Quota>, String> {
    let routes_or_their_options = args.json.is_some()
        || args.sse.is_some()
        || !args.rules.is_empty()
        || args.key_prefix.is_some();
    if !routes_or_their_options {
        // A --token-quota-baseline alone serves the overhead routes
        // ([`pass_from_urls`] checks it).
        return Ok(None);
    }
    let routes: Vec<(&str, &String)> = [
        ("--token-quota-json", args.json.as_ref()),
        ("--token-quota-sse", args.sse.as_ref()),
    ]
    .into_iter()
    .filter_map(|(option, url)| Some((option, url?)))
    .collect();
    if routes.is_empty() {
        return Err(
            "--token-quota-baseline, --token-quota-rule and --token-quota-key-prefix go with \
             --token-quota-json URL and/or --token-quota-sse URL"
                .to_owned(),
        );
    }
    let both = routes.len() == 2;
    if args.baselines.is_empty() {
        return Err(
            "--token-quota-baseline: needed with the token quota routes (a route without \
                    any filter to the same upstream, where the usage one answer reports is read)"
                .to_owned(),
        );
    }
    if args.baselines.len() > routes.len() {
        return Err(format!(
            "--token-quota-baseline: one URL, or one per token quota route (JSON, then event \
             streams); {} given for {} route(s)",
            args.baselines.len(),
            routes.len()
        ));
    }
    if args.rules.is_empty() {
        return Err(
            "--token-quota-rule: needed with the token quota routes (the `rule_name` \
                    of each, which names its counters in Redis)"
                .to_owned(),
        );
    }
    if args.rules.len() != routes.len() {
        return Err(format!(
            "--token-quota-rule: one rule_name per token quota route (JSON, then event \
             streams); {} given for {} route(s){}",
            args.rules.len(),
            routes.len(),
            if both {
                ": both accuracy runs share one window, so each route needs its own counters"
            } else {
                ""
            }
        ));
    }
    if both && args.rules.first() == args.rules.get(1) {
        return Err(
            "--token-quota-rule: the JSON and event-stream routes need two different rule names \
             (both accuracy runs share one window, so each needs its own counters); give one \
             route to measure a quota that serves both"
                .to_owned(),
        );
    }
    if args.rules.iter().any(|r| r.trim().is_empty()) {
        return Err("--token-quota-rule: a rule name is empty".to_owned());
    }
    let key_prefix = args
        .key_prefix
        .clone()
        .unwrap_or_else(|| "token-quota".to_owned());
    if key_prefix.is_empty() || key_prefix.contains(['{', '}']) {
        return Err(format!(
            "--token-quota-key-prefix: {key_prefix:?} cannot be a redis_key_prefix (empty, or \
             holds a brace)"
        ));
    }
    let mut quota = Quota {
        json: None,
        sse: None,
    };
    for (i, (option, url)) in routes.into_iter().enumerate() {
        let mut route = route_from_url(option, url, args, i, admin)?;
        route.rule = args.rules.get(i).cloned().unwrap_or_default();
        route.key_prefix = key_prefix.clone();
        if option == "--token-quota-json" {
            quota.json = Some(route);
        } else {
            quota.sse = Some(route);
        }
    }
    Ok(Some(quota))
}

/// A token quota route from its `option`'s `url`, with the no-filter route
/// of `--token-quota-baseline` at `index` (or the first), no rule and
/// the default key prefix.
///
/// # Errors
/// One line naming the option: a URL that is not on loopback, or no
/// `--token-quota-baseline`.
fn route_from_url(
    option: &str,
    url: &str,
    args: &QuotaUrls,
    index: usize,
    admin: Option<u16>,
) -> Result<QuotaRoute, String> {
    let (port, path) = loopback_url(url).map_err(|e| format!("{option}: {e}"))?;
    let baseline = args
        .baselines
        .get(index)
        .or(args.baselines.first())
        .ok_or_else(|| {
            format!(
                "--token-quota-baseline: needed with {option} (a route without any filter to \
                 the same upstream)"
            )
        })?;
    let (baseline_port, baseline_path) =
        loopback_url(baseline).map_err(|e| format!("--token-quota-baseline: {e}"))?;
    Ok(QuotaRoute {
        port,
        path,
        listener: admin.map(|a| Listener::new(a, None)),
        rule: String::new(),
        key_prefix: args
            .key_prefix
            .clone()
            .unwrap_or_else(|| "token-quota".to_owned()),
        per_minute: None,
        upstream: None,
        baseline_port,
        baseline_path,
    })
}

/// The overhead routes the generic mode's options name: `--limiter-pass`
/// (its no-filter route is the first `--baseline`), and
/// `--token-quota-pass-json`/`-sse` (theirs from `--token-quota-baseline`:
/// one, or the JSON route's then the event-stream route's).
///
/// # Errors
/// One line naming the option: a URL that is not on loopback, a token
/// quota route without `--token-quota-baseline`, or that option given with
/// no token quota route at all.
pub fn pass_from_urls(
    pass: &PassUrls,
    quota: &QuotaUrls,
    admin: Option<u16>,
) -> Result<PassRoutes, String> {
    let any_quota_route =
        pass.json.is_some() || pass.sse.is_some() || quota.json.is_some() || quota.sse.is_some();
    if !quota.baselines.is_empty() && !any_quota_route {
        return Err(
            "--token-quota-baseline goes with a token quota route (--token-quota-json/-sse URL \
             or --token-quota-pass-json/-sse URL)"
                .to_owned(),
        );
    }
    let limiter = pass
        .limiter
        .as_deref()
        .map(|url| {
            Ok::<_, String>(PassLimiter {
                port: loopback_port(url).map_err(|e| format!("--limiter-pass: {e}"))?,
                listener: admin.map(|a| Listener::new(a, None)),
            })
        })
        .transpose()?;
    let route = |option: &str, url: &Option<String>, index: usize| {
        url.as_deref()
            .map(|url| route_from_url(option, url, quota, index, admin))
            .transpose()
    };
    Ok(PassRoutes {
        limiter,
        json: route("--token-quota-pass-json", &pass.json, 0)?,
        sse: route("--token-quota-pass-sse", &pass.sse, 1)?,
    })
}

/// One line for the report's header: the overhead routes, if any.
fn pass_description(pass: &PassRoutes) -> String {
    let limiter = pass
        .limiter
        .as_ref()
        .map(|l| format!("limiter, limit never reached :{}", l.port));
    let quota = [("JSON", &pass.json), ("event streams", &pass.sse)]
        .into_iter()
        .filter_map(|(kind, route)| {
            let r = route.as_ref()?;
            Some(format!(
                "token quota ({kind}), quota never reached :{}{} (no filter :{}{})",
                r.port, r.path, r.baseline_port, r.baseline_path
            ))
        });
    limiter
        .into_iter()
        .chain(quota)
        .map(|part| format!(", {part}"))
        .collect()
}

/// One line for the report's header: the token quota routes.
fn quota_description(quota: &Quota) -> String {
    [("JSON", &quota.json), ("event streams", &quota.sse)]
        .into_iter()
        .filter_map(|(kind, route)| {
            let r = route.as_ref()?;
            Some(format!(
                "token quota ({kind}) :{}{} rule {:?} (no filter :{}{})",
                r.port, r.path, r.rule, r.baseline_port, r.baseline_path
            ))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// An admin port from `--admin`, if any, for gateway `index`.
fn admin_for(admins: &[u16], index: usize) -> Option<u16> {
    admins.get(index).or(admins.first()).copied()
}

/// The stack given on the command line.
///
/// # Errors
/// A URL that is not a loopback port, or a baseline count that does not
/// match the gateways.
pub fn from_urls(
    gateways: &[String],
    baselines: &[String],
    redis: &str,
    admins: &[String],
    quota: &QuotaUrls,
    pass: &PassUrls,
) -> Result<Target, String> {
    let admins: Vec<u16> = admins
        .iter()
        .map(|a| loopback_port(a).map_err(|e| format!("--admin: {e}")))
        .collect::<Result<_, _>>()?;
    if baselines.len() != 1 && baselines.len() != gateways.len() {
        return Err(format!(
            "--baseline: one URL, or one per gateway ({} given for {} gateways)",
            baselines.len(),
            gateways.len()
        ));
    }
    let mut out = Vec::new();
    for (i, url) in gateways.iter().enumerate() {
        let admin = admin_for(&admins, i);
        let baseline = baselines.get(i).or(baselines.first());
        out.push(Gateway {
            name: format!("gateway {}", i + 1),
            port: loopback_port(url).map_err(|e| format!("--gateway: {e}"))?,
            baseline_port: baseline
                .map(|b| loopback_port(b).map_err(|e| format!("--baseline: {e}")))
                .transpose()?,
            listener: admin.map(|a| Listener::new(a, None)),
            baseline_listener: admin.map(|a| Listener::new(a, None)),
            admin_port: admin,
        });
    }
    let redis_port = loopback_port(redis).map_err(|e| format!("--redis: {e}"))?;
    let pass = pass_from_urls(pass, quota, admins.first().copied())?;
    let quota = quota_from_urls(quota, admins.first().copied())?;
    Ok(Target {
        description: format!(
            "external: limiter gateway(s) {}, baseline {}, Redis 127.0.0.1:{redis_port}{}{}{}",
            gateways.join(", "),
            baselines.join(", "),
            if admins.is_empty() {
                String::new()
            } else {
                format!(
                    ", admin {}",
                    admins
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            quota
                .as_ref()
                .map(|q| format!(", {}", quota_description(q)))
                .unwrap_or_default(),
            pass_description(&pass)
        ),
        gateways: out,
        quota,
        pass,
        redis_port,
        redis_stop: None,
        redis_start: None,
    })
}

/// A listener of an Envoy bootstrap, by name.
struct Found {
    port: u16,
    stat_prefix: String,
    /// The Wasm plugin's configuration, parsed.
    plugin: Option<Value>,
}

fn listener(bootstrap: &Value, file: &str, name: &str) -> Result<Found, String> {
    let listeners = bootstrap["static_resources"]["listeners"]
        .as_array()
        .ok_or_else(|| format!("{file}: no listeners"))?;
    let l = listeners
        .iter()
        .find(|l| l["name"] == name)
        .ok_or_else(|| format!("{file}: no listener named {name:?}"))?;
    let port = l["address"]["socket_address"]["port_value"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| format!("{file}: listener {name} has no port"))?;
    let hcm = &l["filter_chains"][0]["filters"][0]["typed_config"];
    let stat_prefix = hcm["stat_prefix"]
        .as_str()
        .ok_or_else(|| format!("{file}: listener {name} has no stat_prefix"))?
        .to_owned();
    let plugin = hcm["http_filters"]
        .as_array()
        .and_then(|filters| {
            filters
                .iter()
                .find_map(|f| f["typed_config"]["config"]["configuration"]["value"].as_str())
        })
        .map(|text| {
            serde_json::from_str(text)
                .map_err(|e| format!("{file}: listener {name}: plugin config is not JSON: {e}"))
        })
        .transpose()?;
    Ok(Found {
        port,
        stat_prefix,
        plugin,
    })
}

fn admin_port(bootstrap: &Value, file: &str) -> Result<u16, String> {
    bootstrap["admin"]["address"]["socket_address"]["port_value"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| format!("{file}: no admin port"))
}

/// The compose file's service `name` and the host file it starts Envoy
/// with (`-c`).
fn envoy_config(compose: &Value, root: &Path, name: &str) -> Result<Value, String> {
    let service = &compose["services"][name];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let command = strings(&service["command"]);
    let config = command
        .iter()
        .position(|a| a == "-c")
        .and_then(|i| command.get(i + 1))
        .ok_or_else(|| format!("docker-compose.yaml: service {name} starts no Envoy with -c"))?;
    let host = strings(&service["volumes"])
        .into_iter()
        .find_map(|v| {
            let (host, rest) = v.split_once(':')?;
            let container = rest.split(':').next()?;
            (container == config).then(|| host.trim_start_matches("./").to_owned())
        })
        .ok_or_else(|| format!("docker-compose.yaml: service {name} does not mount {config}"))?;
    stack::compose::yaml_as_json(&root.join(&host)).map_err(|e| e.to_string())
}

fn published(compose: &Value, service: &str, port: u16) -> Result<(), String> {
    let wanted = format!("127.0.0.1:{port}:{port}");
    let ports = compose["services"][service]["ports"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if ports.iter().any(|p| p == wanted.as_str()) {
        Ok(())
    } else {
        Err(format!(
            "docker-compose.yaml: service {service} does not publish {wanted}"
        ))
    }
}

/// Whether something answers HTTP on `port` now.
fn answers(port: u16) -> bool {
    stack::get_with_timeout(port, "/", &[], Duration::from_secs(2)).is_ok()
}

/// The compose stack: read from `docker-compose.yaml` and its configs.
/// The `envoy` profile's gateway is included when it answers.
///
/// # Errors
/// When a file, listener, published port or config field the scenarios
/// need is missing, or the Higress gateway does not answer.
pub fn compose() -> Result<Target, String> {
    let root = stack::repo_root();
    let compose = stack::compose::yaml_as_json(&root.join("docker-compose.yaml"))
        .map_err(|e| e.to_string())?;
    let gw = envoy_config(&compose, &root, "gateway")?;
    let upstream = envoy_config(&compose, &root, "upstream")?;
    let file = "loadtest/compose/gateway.yaml";
    let gw_admin = admin_port(&gw, file)?;
    let up_admin = admin_port(&upstream, "loadtest/compose/upstream.yaml")?;
    let limiter = listener(&gw, file, "limiter")?;
    let baseline = listener(&gw, file, "baseline")?;
    let json = listener(&gw, file, "token-quota-json")?;
    let sse = listener(&gw, file, "token-quota-sse")?;
    let baseline_llm = listener(&gw, file, "baseline-llm")?;
    let limiter_pass = listener(&gw, file, "limiter-pass")?;
    let json_pass = listener(&gw, file, "token-quota-json-pass")?;
    let sse_pass = listener(&gw, file, "token-quota-sse-pass")?;
    let up_json = listener(&upstream, "loadtest/compose/upstream.yaml", "json")?;
    let up_sse = listener(&upstream, "loadtest/compose/upstream.yaml", "sse")?;
    for port in [
        limiter.port,
        baseline.port,
        json.port,
        sse.port,
        baseline_llm.port,
        limiter_pass.port,
        json_pass.port,
        sse_pass.port,
        gw_admin,
    ] {
        published(&compose, "gateway", port)?;
    }
    published(&compose, "upstream", up_admin)?;
    let redis_port = compose["services"]["redis"]["ports"][0]
        .as_str()
        .and_then(|p| p.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| "docker-compose.yaml: the redis service publishes no port".to_owned())?;
    published(&compose, "redis", redis_port)?;
    if !answers(limiter.port) {
        return Err(format!(
            "nothing answers on 127.0.0.1:{} (the compose gateway): start the stack first \
             (`docker compose up -d`, or without Docker `cargo run -p stack --bin compose-stack`)",
            limiter.port
        ));
    }
    let quota_route =
        |found: &Found, upstream: &Found, baseline_path: &str| -> Result<QuotaRoute, String> {
            let plugin = found.plugin.as_ref().ok_or_else(|| {
                format!("{file}: listener on {} has no plugin config", found.port)
            })?;
            Ok(QuotaRoute {
                port: found.port,
                path: "/".to_owned(),
                listener: Some(Listener::new(gw_admin, Some(&found.stat_prefix))),
                rule: plugin["rule_name"]
                    .as_str()
                    .ok_or_else(|| format!("{file}: port {}: no rule_name", found.port))?
                    .to_owned(),
                key_prefix: plugin["redis_key_prefix"]
                    .as_str()
                    .unwrap_or("token-quota")
                    .to_owned(),
                per_minute: Some(
                    plugin["global_threshold"]["token_per_minute"]
                        .as_u64()
                        .ok_or_else(|| {
                            format!(
                                "{file}: port {}: no global_threshold.token_per_minute",
                                found.port
                            )
                        })?,
                ),
                upstream: Some(Listener::new(up_admin, Some(&upstream.stat_prefix))),
                baseline_port: baseline_llm.port,
                baseline_path: baseline_path.to_owned(),
            })
        };
    let mut gateways = vec![Gateway {
        name: "Higress gateway (compose `gateway`)".to_owned(),
        port: limiter.port,
        baseline_port: Some(baseline.port),
        listener: Some(Listener::new(gw_admin, Some(&limiter.stat_prefix))),
        baseline_listener: Some(Listener::new(gw_admin, Some(&baseline.stat_prefix))),
        admin_port: Some(gw_admin),
    }];
    let mut parts = vec![format!(
        "compose stack: `gateway` :{} (no filter :{}, admin :{gw_admin})",
        limiter.port, baseline.port
    )];
    // The `envoy` profile, when it runs.
    if compose["services"]["envoy"].is_object() {
        let envoy = envoy_config(&compose, &root, "envoy")?;
        let file = "loadtest/envoy.yaml";
        let main = listener(&envoy, file, "main")?;
        let plain = listener(&envoy, file, "baseline")?;
        let admin = admin_port(&envoy, file)?;
        if answers(main.port) {
            gateways.push(Gateway {
                name: "upstream Envoy (compose profile `envoy`)".to_owned(),
                port: main.port,
                baseline_port: Some(plain.port),
                listener: Some(Listener::new(admin, Some(&main.stat_prefix))),
                baseline_listener: Some(Listener::new(admin, Some(&plain.stat_prefix))),
                admin_port: Some(admin),
            });
            parts.push(format!(
                "profile `envoy` :{} (no filter :{}, admin :{admin})",
                main.port, plain.port
            ));
        } else {
            parts.push(format!(
                "profile `envoy` not running (nothing on :{}; `docker compose --profile envoy up -d` adds it)",
                main.port
            ));
        }
    }
    parts.push(format!(
        "token quota :{} and :{} (no filter :{}), upstream admin :{up_admin}, Redis :{redis_port}",
        json.port, sse.port, baseline_llm.port
    ));
    parts.push(format!(
        "limits never reached: limiter :{}, token quota :{} and :{}",
        limiter_pass.port, json_pass.port, sse_pass.port
    ));
    let server = server_info(gw_admin);
    parts.push(format!("gateway Envoy {server}"));
    Ok(Target {
        description: parts.join("; "),
        gateways,
        quota: Some(Quota {
            json: Some(quota_route(&json, &up_json, "/")?),
            sse: Some(quota_route(&sse, &up_sse, "/sse")?),
        }),
        pass: PassRoutes {
            limiter: Some(PassLimiter {
                port: limiter_pass.port,
                listener: Some(Listener::new(gw_admin, Some(&limiter_pass.stat_prefix))),
            }),
            json: Some(quota_route(&json_pass, &up_json, "/")?),
            sse: Some(quota_route(&sse_pass, &up_sse, "/sse")?),
        },
        redis_port,
        redis_stop: None,
        redis_start: None,
    })
}

/// The version an Envoy's admin reports (`/server_info`).
pub fn server_info(admin_port: u16) -> String {
    stack::get_with_timeout(admin_port, "/server_info", &[], Duration::from_secs(2))
        .ok()
        .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "version unknown".to_owned())
}

#[cfg(test)]
mod tests;
