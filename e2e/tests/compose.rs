//! docker-compose.yaml cannot run here (no Docker engine), so this checks
//! every part of it that can be checked without Docker:
//!
//! * the file against the compose-spec JSON schema (the copy bundled with
//!   PyPI `check-jsonschema`, installed into `.venv` by scripts/setup.sh);
//! * every Envoy config it mounts with `envoy --mode validate` (Envoy 1.40
//!   builds listeners, clusters and filters, loads each Wasm module and
//!   runs the plugin's configuration parsing). Upstream Envoy cannot load
//!   the Higress builds (they import Higress's Redis calls), so the Higress
//!   gateway's config is validated with the default modules and the webdis
//!   transport swapped in for exactly those parts, and separately shown to
//!   fail with the real Higress modules for that reason and no other;
//! * that the cluster each native Redis config needs
//!   (`outbound|<port>||<service_name>`) is defined in the gateway config;
//! * that every mounted file exists (building the Higress modules with the
//!   command scripts/test.sh uses) and every path the configs load is
//!   mounted;
//! * that every port the gateways' configs listen on is published on
//!   127.0.0.1 (the same port inside), and the routes the load test reads
//!   by name are there with rule names of their own and, for the overhead
//!   rows, limits no run reaches.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{json, Value};
use stack::repo_root;

fn venv_tool(name: &str) -> PathBuf {
    let path = repo_root().join(".venv/bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: {}",
        path.display(),
        stack::SETUP_HINT
    );
    path
}

/// A YAML file as JSON, read by the `.venv`'s ruamel.yaml (a dependency of
/// check-jsonschema), so the checks below see what a YAML loader sees.
fn yaml(path: &Path) -> Value {
    let out = Command::new(venv_tool("python"))
        .args([
            "-c",
            "import json, sys\nfrom ruamel.yaml import YAML\n\
             json.dump(YAML(typ='safe', pure=True).load(open(sys.argv[1])), sys.stdout)",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cannot read {} as YAML: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn scratch_dir() -> PathBuf {
    let dir = stack::target_dir().join("compose-check");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn check_compose_schema(path: &Path) -> (bool, String) {
    let out = Command::new(venv_tool("check-jsonschema"))
        .args(["--builtin-schema", "vendor.compose-spec"])
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn compose_file_matches_the_compose_spec_schema() {
    let compose = repo_root().join("docker-compose.yaml");
    let (ok, output) = check_compose_schema(&compose);
    assert!(
        ok,
        "docker-compose.yaml is not valid compose-spec:\n{output}"
    );
    // The validator must be able to say no: a key the spec does not know.
    let text = std::fs::read_to_string(&compose).unwrap();
    let broken = text.replacen(
        "    image: redis:7\n",
        "    image: redis:7\n    imagee: x\n",
        1,
    );
    assert_ne!(broken, text, "the redis service's image line moved");
    let path = scratch_dir().join("broken-compose.yaml");
    std::fs::write(&path, broken).unwrap();
    let (ok, output) = check_compose_schema(&path);
    assert!(!ok, "a misspelt key passed the schema check:\n{output}");
    assert!(output.contains("imagee"), "{output}");
}

fn validate(bootstrap: &Path, what: &str) {
    let (ok, log) = stack::validate_envoy_config(bootstrap);
    assert!(
        ok,
        "envoy --mode validate refused {what}:\n{}",
        stack::envoy_log_excerpt(&log, 30)
    );
}

/// `text` with each `/etc/envoy/<module>.wasm` replaced by a local build.
fn with_local_modules(text: &str, modules: &[(&str, PathBuf)]) -> String {
    let mut text = text.to_owned();
    for (name, local) in modules {
        let in_container = format!("/etc/envoy/{name}.wasm");
        assert!(
            text.contains(&in_container),
            "the config no longer loads {in_container}"
        );
        text = text.replace(&in_container, &local.display().to_string());
    }
    text
}

#[test]
fn compose_envoy_bootstrap_validates_with_the_built_limiter() {
    let yaml = std::fs::read_to_string(repo_root().join("loadtest/envoy.yaml")).unwrap();
    let local = with_local_modules(&yaml, &[("limiter", e2e::limiter_wasm())]);
    let path = scratch_dir().join("envoy.yaml");
    std::fs::write(&path, local).unwrap();
    validate(&path, "loadtest/envoy.yaml");
}

#[test]
fn compose_upstream_config_validates() {
    validate(
        &repo_root().join("loadtest/compose/upstream.yaml"),
        "loadtest/compose/upstream.yaml",
    );
}

/// Every Wasm filter's `config` in a bootstrap (as JSON), with a path to
/// it for error messages.
fn wasm_configs(bootstrap: &mut Value) -> Vec<&mut Value> {
    let mut found = Vec::new();
    for listener in bootstrap["static_resources"]["listeners"]
        .as_array_mut()
        .unwrap()
    {
        for chain in listener["filter_chains"].as_array_mut().unwrap() {
            for filter in chain["filters"].as_array_mut().unwrap() {
                let Some(http_filters) = filter["typed_config"]["http_filters"].as_array_mut()
                else {
                    continue;
                };
                for http_filter in http_filters {
                    if http_filter["name"] == "envoy.filters.http.wasm" {
                        found.push(&mut http_filter["typed_config"]["config"]);
                    }
                }
            }
        }
    }
    found
}

fn cluster_names(bootstrap: &Value) -> Vec<String> {
    bootstrap["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn higress_gateway_config_validates_with_the_higress_parts_swapped() {
    let mut bootstrap = yaml(&repo_root().join("loadtest/compose/gateway.yaml"));
    let clusters = cluster_names(&bootstrap);
    let local = |file: &str| match file {
        "/etc/envoy/limiter.wasm" => stack::wasm_path("limiter"),
        "/etc/envoy/token_quota.wasm" => stack::wasm_path("token-quota"),
        other => panic!("gateway.yaml loads an unknown module {other}"),
    };
    let configs = wasm_configs(&mut bootstrap);
    assert_eq!(
        configs.len(),
        6,
        "a limiter and two token quota filters, each with a limit reached and one never reached"
    );
    for config in configs {
        let name = config["name"].as_str().unwrap().to_owned();
        let file = config["vm_config"]["code"]["local"]["filename"]
            .as_str()
            .unwrap()
            .to_owned();
        config["vm_config"]["code"]["local"]["filename"] = json!(local(&file));
        let mut plugin: Value =
            serde_json::from_str(config["configuration"]["value"].as_str().unwrap()).unwrap();
        let redis = plugin["redis"].clone();
        let service = redis["service_name"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: redis has no service_name: {redis}"));
        assert!(
            redis.get("webdis_cluster").is_none(),
            "{name}: the gateway must use Higress's native Redis transport: {redis}"
        );
        let port = redis["service_port"].as_u64().unwrap_or(6379);
        let cluster = format!("outbound|{port}||{service}");
        assert!(
            clusters.contains(&cluster),
            "{name}: Higress's Redis calls look up cluster {cluster:?}, which gateway.yaml does \
             not define (it has {clusters:?}): every call would fail with 'bad argument'"
        );
        // What upstream Envoy can load: the same plugin config, counting
        // over webdis through the same cluster name.
        plugin["redis"] = json!({"webdis_cluster": cluster, "timeout": redis["timeout"]});
        config["configuration"]["value"] = json!(plugin.to_string());
    }
    let path = scratch_dir().join("gateway-swapped.json");
    std::fs::write(&path, bootstrap.to_string()).unwrap();
    validate(
        &path,
        "loadtest/compose/gateway.yaml (default modules, webdis transport)",
    );
}

/// The Higress builds docker-compose.yaml mounts, built with the command
/// scripts/test.sh uses (quick when it has run already).
fn higress_modules() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = repo_root();
        let status = Command::new("bash")
            .current_dir(&root)
            .args(["scripts/build.sh", "--higress"])
            .status()
            .unwrap();
        assert!(status.success(), "building the Higress modules failed");
        let dir = root.join("target/wasm/higress");
        (dir.join("limiter.wasm"), dir.join("token_quota.wasm"))
    })
}

#[test]
fn upstream_envoy_refuses_the_higress_gateway_only_for_the_redis_import() {
    e2e::default_build_only(
        "the Higress build (native Redis host calls), which the proxy-wasm crate cannot make",
    );
    let (limiter, token_quota) = higress_modules();
    let text = std::fs::read_to_string(repo_root().join("loadtest/compose/gateway.yaml")).unwrap();
    let local = with_local_modules(
        &text,
        &[
            ("limiter", limiter.clone()),
            ("token_quota", token_quota.clone()),
        ],
    );
    let path = scratch_dir().join("gateway-higress.yaml");
    std::fs::write(&path, local).unwrap();
    let (ok, log) = stack::validate_envoy_config(&path);
    assert!(
        !ok,
        "upstream Envoy accepted a module importing Higress's Redis calls"
    );
    assert!(
        log.contains("missing import: env.proxy_redis_call"),
        "the Higress gateway config failed for another reason than Higress's Redis import:\n{}",
        stack::envoy_log_excerpt(&log, 30)
    );
}

/// `./host:container[:mode]` volumes of a compose service.
fn mounts(service: &Value) -> Vec<(String, String)> {
    service["volumes"]
        .as_array()
        .map(|volumes| {
            volumes
                .iter()
                .map(|v| {
                    let spec = v.as_str().unwrap();
                    let mut parts = spec.split(':');
                    let host = parts.next().unwrap();
                    let container = parts.next().unwrap_or_else(|| panic!("volume {spec}"));
                    let host = host
                        .strip_prefix("./")
                        .unwrap_or_else(|| panic!("volume {spec} is not relative to the repo"));
                    (host.to_owned(), container.to_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn compose_mounts_files_that_exist_and_the_configs_load_only_mounted_files() {
    e2e::default_build_only("docker-compose.yaml mounts the default and Higress builds");
    let root = repo_root();
    let compose = yaml(&root.join("docker-compose.yaml"));
    let services = compose["services"].as_object().unwrap();
    let (limiter, token_quota) = higress_modules();
    // The default build's path, whatever `KIT_WASM_DIR` picks for the
    // modules the tests load: the compose file names that one.
    let built = [
        limiter.clone(),
        token_quota.clone(),
        stack::target_dir().join("wasm").join("limiter.wasm"),
    ];
    for name in ["redis", "upstream", "gateway", "webdis", "envoy"] {
        assert!(services.contains_key(name), "no service {name}");
    }
    assert!(
        services["gateway"]["image"]
            .as_str()
            .unwrap()
            .starts_with("higress-registry.cn-hangzhou.cr.aliyuncs.com/higress/gateway:v2.1"),
        "the gateway is Higress v2.1"
    );
    assert_eq!(services["redis"]["image"], "redis:7");
    let mut checked = 0;
    for (name, service) in services {
        let mounts = mounts(service);
        for (host, _) in &mounts {
            let path = root.join(host);
            if host.starts_with("target/") {
                assert!(
                    built.contains(&path),
                    "service {name} mounts build output {host}, which no build here makes"
                );
            }
            assert!(path.is_file(), "service {name} mounts missing ./{host}");
            checked += 1;
        }
        // The Envoy config given with -c must be mounted, and every module
        // it loads too.
        let command: Vec<&str> = service["command"]
            .as_array()
            .map(|c| c.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let Some(config) = command
            .iter()
            .position(|a| *a == "-c")
            .and_then(|i| command.get(i + 1))
        else {
            continue;
        };
        let (host, _) = mounts
            .iter()
            .find(|(_, container)| container == config)
            .unwrap_or_else(|| panic!("service {name} starts Envoy with {config}, not mounted"));
        let text = std::fs::read_to_string(root.join(host)).unwrap();
        for line in text.lines() {
            let Some(rest) = line.split("filename:").nth(1) else {
                continue;
            };
            let file = rest.trim().trim_end_matches(['}', ' ']).trim();
            assert!(
                mounts.iter().any(|(_, container)| container == file),
                "service {name}: {host} loads {file}, which is not mounted"
            );
        }
    }
    assert!(
        checked >= 7,
        "expected the configs and modules to be mounted"
    );
    let webdis: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("loadtest/webdis.json")).unwrap())
            .unwrap();
    assert_eq!(webdis["redis_host"], "redis");
    assert_eq!(webdis["http_port"], 7379);
    assert_eq!(webdis["daemonize"], false);
}

/// The port of a listener or admin `address`.
fn port_of(address: &Value) -> u64 {
    address["socket_address"]["port_value"].as_u64().unwrap()
}

/// Each listener of `bootstrap` by name: its port and its Wasm plugin's
/// configuration, if it has one.
fn listeners(bootstrap: &Value) -> Vec<(String, u64, Option<Value>)> {
    bootstrap["static_resources"]["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let plugin = l["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
                .as_array()
                .unwrap()
                .iter()
                .find_map(|f| f["typed_config"]["config"]["configuration"]["value"].as_str())
                .map(|text| serde_json::from_str(text).unwrap());
            (
                l["name"].as_str().unwrap().to_owned(),
                port_of(&l["address"]),
                plugin,
            )
        })
        .collect()
}

#[test]
fn compose_publishes_the_gateways_ports_and_the_load_test_finds_its_routes() {
    let root = repo_root();
    let compose = yaml(&root.join("docker-compose.yaml"));
    let published = |service: &str| -> Vec<String> {
        compose["services"][service]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_owned())
            .collect()
    };
    for (service, file, names) in [
        (
            "gateway",
            "loadtest/compose/gateway.yaml",
            &[
                "limiter",
                "token-quota-json",
                "token-quota-sse",
                "limiter-pass",
                "token-quota-json-pass",
                "token-quota-sse-pass",
                "baseline",
                "baseline-llm",
            ][..],
        ),
        (
            "envoy",
            "loadtest/envoy.yaml",
            &["main", "limiter-pass", "baseline"][..],
        ),
    ] {
        let bootstrap = yaml(&root.join(file));
        let ports = published(service);
        let found = listeners(&bootstrap);
        let admin = port_of(&bootstrap["admin"]["address"]);
        for port in found.iter().map(|(_, port, _)| *port).chain([admin]) {
            let wanted = format!("127.0.0.1:{port}:{port}");
            assert!(
                ports.contains(&wanted),
                "{file} listens on {port}, which service {service} does not publish as \
                 {wanted} (it publishes {ports:?})"
            );
        }
        assert_eq!(
            ports.len(),
            found.len() + 1,
            "service {service} publishes a port {file} does not listen on: {ports:?}"
        );
        let by_name: Vec<&str> = found.iter().map(|(name, _, _)| name.as_str()).collect();
        assert_eq!(by_name, names, "{file}: the listeners the load test reads");
        let rules: Vec<&str> = found
            .iter()
            .filter_map(|(_, _, plugin)| plugin.as_ref()?["rule_name"].as_str())
            .collect();
        let mut distinct = rules.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            rules.len(),
            "{file}: two plugins share a rule name, so their counters too: {rules:?}"
        );
        // The overhead rows measure a request that passes: no run of the
        // load test comes near these limits.
        for (name, _, plugin) in found.iter().filter(|(name, ..)| name.ends_with("-pass")) {
            let limit = &plugin.as_ref().unwrap()["global_threshold"];
            let out_of_reach = limit["query_per_minute"].as_u64() >= Some(1_000_000_000)
                || limit["token_per_minute"].as_u64() >= Some(1_000_000_000_000);
            assert!(
                out_of_reach,
                "{file}: listener {name} has a limit a load test reaches: {limit}"
            );
        }
    }
}
