//! `docker-compose.yaml` without containers: the same services on the same
//! ports of 127.0.0.1, from the compose file's own configs.
//!
//! Machines without a Docker engine cannot start the compose file, so
//! [`ComposeStack`] reads it and runs each service as a local process:
//! `redis-server` for the Redis image, `webdis` for the webdis image (with
//! its mounted config), and upstream Envoy for every Envoy service (the
//! mounted bootstrap given with `-c`). Nothing is written down twice: the
//! services, their commands, their mounts and their published ports come
//! from the compose file, the Envoy bootstraps and the webdis config from
//! the files it mounts. What changes, and why:
//!
//! * addresses: `0.0.0.0` (a container's way to publish) becomes
//!   `127.0.0.1`, and a service's name (a container's way to reach
//!   another) becomes `127.0.0.1`, which works because every service here
//!   listens on the same port inside its container as on the host;
//! * module paths: each `/etc/envoy/<module>.wasm` becomes the file the
//!   compose file mounts there;
//! * the Higress gateway only: upstream Envoy cannot load the Higress
//!   builds (they import Higress's Redis host calls), so a module mounted
//!   from `target/wasm/higress/` is replaced by the default build of the
//!   same plugin and its native `redis` block (`service_name`) by the
//!   webdis transport, over the compose file's webdis service. Like
//!   Higress with these ABI 0.2.1 modules, the stand-in does not hold
//!   request headers for a plugin (no `allow_on_headers_stop_iteration`,
//!   which Higress's Envoy predates and refuses).
//!
//! Every process is killed when the stack is dropped or the thread that
//! started it dies (`PR_SET_PDEATHSIG`), and listens on 127.0.0.1 only.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::process::{tail, Proc};
use crate::resp::{self, Resp};
use crate::{http, poll, repo_root, require_tool, target_dir, Error, LOCALHOST};

const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The cluster the stand-in of a Higress gateway reaches webdis through.
const WEBDIS_CLUSTER: &str = "compose-stack-webdis";

/// What a compose service is, as far as running it without its image goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    Redis,
    Webdis,
    /// Upstream Envoy, or the Higress gateway (an Envoy fork) standing in.
    Envoy,
}

/// One service as it runs here.
#[derive(Debug)]
pub struct Service {
    pub name: String,
    pub kind: ServiceKind,
    /// The compose file's published ports, host side (all on 127.0.0.1).
    pub ports: Vec<u16>,
    /// What differs from the container, in words.
    pub note: String,
    proc: Proc,
}

impl Service {
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    pub fn log_path(&self) -> &Path {
        self.proc.log_path()
    }
}

/// The compose file's services, running as local processes.
#[derive(Debug)]
pub struct ComposeStack {
    /// In start order (dependencies first).
    pub services: Vec<Service>,
    pub dir: PathBuf,
}

impl ComposeStack {
    /// Starts every service of `compose` (both profiles), dependencies
    /// first, each waited for until it answers. Files go to
    /// `target/stack/compose-stack/` (emptied first, kept afterwards for
    /// their logs).
    ///
    /// # Errors
    /// When the compose file or a file it mounts cannot be read, a service
    /// is of a kind this cannot run, a published port is not
    /// `127.0.0.1:N:N` or is taken, or a process does not come up (with the
    /// end of its log).
    pub fn start(compose: &Path) -> Result<ComposeStack, Error> {
        let file = yaml_as_json(compose)?;
        let root = compose.parent().map_or_else(repo_root, Path::to_path_buf);
        let services = file["services"]
            .as_object()
            .ok_or_else(|| Error::new(format!("{}: no services", compose.display())))?;
        let names: Vec<String> = services.keys().cloned().collect();
        let dir = target_dir().join("stack").join("compose-stack");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::new(format!("cannot create {}: {e}", dir.display())))?;
        let mut plans = BTreeMap::new();
        for (name, service) in services {
            plans.insert(name.clone(), Plan::read(name, service, &root)?);
        }
        for plan in plans.values() {
            for port in &plan.ports {
                if TcpListener::bind((LOCALHOST, *port)).is_err() {
                    return Err(Error::new(format!(
                        "service {}: port 127.0.0.1:{port} is taken (is the stack already up?)",
                        plan.name
                    )));
                }
            }
        }
        let webdis_port = plans
            .values()
            .find(|p| p.kind == ServiceKind::Webdis)
            .and_then(|p| p.webdis_port);
        let mut stack = ComposeStack {
            services: Vec::new(),
            dir,
        };
        // Dependencies first: a service starts once everything it
        // `depends_on` runs. Bounded by the number of services.
        for _ in 0..=plans.len() {
            let ready: Vec<String> = plans
                .values()
                .filter(|p| {
                    p.depends_on
                        .iter()
                        .all(|d| stack.services.iter().any(|s| &s.name == d))
                })
                .map(|p| p.name.clone())
                .collect();
            for name in ready {
                if let Some(plan) = plans.remove(&name) {
                    let service = plan.start(&stack.dir, &names, webdis_port)?;
                    stack.services.push(service);
                }
            }
        }
        if let Some(stuck) = plans.keys().next() {
            return Err(Error::new(format!(
                "service {stuck}: depends_on never satisfied (a cycle or an unknown service)"
            )));
        }
        Ok(stack)
    }

    /// The first service that has exited, with the end of its log.
    pub fn exited(&mut self) -> Option<String> {
        self.services.iter_mut().find_map(|s| {
            let status = s.proc.exited()?;
            Some(format!(
                "service {} exited with {status}; log {}:\n{}",
                s.name,
                s.proc.log_path().display(),
                tail(&s.proc.log(), 20)
            ))
        })
    }
}

/// How one service will be started.
#[derive(Debug)]
struct Plan {
    name: String,
    kind: ServiceKind,
    command: Vec<String>,
    /// Container path -> host path.
    mounts: Vec<(String, PathBuf)>,
    ports: Vec<u16>,
    depends_on: Vec<String>,
    /// The HTTP port of a webdis service (from its config).
    webdis_port: Option<u16>,
}

impl Plan {
    fn read(name: &str, service: &Value, root: &Path) -> Result<Plan, Error> {
        let err = |why: String| Error::new(format!("service {name}: {why}"));
        let image = service["image"].as_str().unwrap_or("");
        let strings = |v: &Value| -> Vec<String> {
            match v {
                Value::String(s) => vec![s.clone()],
                Value::Array(items) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let mut command = strings(&service["entrypoint"]);
        command.extend(strings(&service["command"]));
        let kind = if image.starts_with("redis") {
            ServiceKind::Redis
        } else if image.contains("webdis") {
            ServiceKind::Webdis
        } else if image.contains("envoy") || image.contains("higress/gateway") {
            ServiceKind::Envoy
        } else {
            return Err(err(format!("image {image:?} has no local stand-in")));
        };
        let mut mounts = Vec::new();
        for volume in strings(&service["volumes"]) {
            let mut parts = volume.split(':');
            let (Some(host), Some(container)) = (parts.next(), parts.next()) else {
                return Err(err(format!("volume {volume:?} is not host:container")));
            };
            mounts.push((
                container.to_owned(),
                root.join(host.trim_start_matches("./")),
            ));
        }
        let mut ports = Vec::new();
        for spec in strings(&service["ports"]) {
            let parts: Vec<&str> = spec.split(':').collect();
            match parts[..] {
                ["127.0.0.1", host, container] if host == container => {
                    let port = host
                        .parse()
                        .map_err(|_| err(format!("port {spec:?} is not a number")))?;
                    ports.push(port);
                }
                _ => {
                    return Err(err(format!(
                        "port {spec:?}: the stand-in needs 127.0.0.1:N:N (loopback only, the \
                         same port inside and outside)"
                    )))
                }
            }
        }
        let depends_on = match &service["depends_on"] {
            Value::Object(map) => map.keys().cloned().collect(),
            other => strings(other),
        };
        let mut plan = Plan {
            name: name.to_owned(),
            kind,
            command,
            mounts,
            ports,
            depends_on,
            webdis_port: None,
        };
        if kind == ServiceKind::Webdis {
            let config: Value = read_json(&plan.mounted_arg(|a| a.ends_with(".json"))?)?;
            plan.webdis_port = config["http_port"].as_u64().and_then(|p| p.try_into().ok());
        }
        Ok(plan)
    }

    /// The host file mounted at the first command argument `pick` accepts.
    fn mounted_arg(&self, pick: impl Fn(&str) -> bool) -> Result<PathBuf, Error> {
        let arg = self.command.iter().find(|a| pick(a)).ok_or_else(|| {
            Error::new(format!(
                "service {}: no config file in its command",
                self.name
            ))
        })?;
        self.mounted(arg)
    }

    fn mounted(&self, container: &str) -> Result<PathBuf, Error> {
        self.mounts
            .iter()
            .find(|(c, _)| c == container)
            .map(|(_, host)| host.clone())
            .ok_or_else(|| {
                Error::new(format!(
                    "service {}: {container} is not mounted from the repository",
                    self.name
                ))
            })
    }

    fn start(
        self,
        dir: &Path,
        services: &[String],
        webdis_port: Option<u16>,
    ) -> Result<Service, Error> {
        let log = dir.join(format!("{}.log", self.name));
        let (proc, note) = match self.kind {
            ServiceKind::Redis => self.start_redis(dir, &log)?,
            ServiceKind::Webdis => self.start_webdis(dir, &log)?,
            ServiceKind::Envoy => self.start_envoy(dir, &log, services, webdis_port)?,
        };
        Ok(Service {
            name: self.name,
            kind: self.kind,
            ports: self.ports,
            note,
            proc,
        })
    }

    fn start_redis(&self, dir: &Path, log: &Path) -> Result<(Proc, String), Error> {
        let port = self.ports.first().copied().unwrap_or(6379);
        // The image's command with its arguments, bound to loopback.
        let mut args: Vec<String> = self.command.iter().skip(1).cloned().collect();
        args.extend(
            [
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--daemonize",
                "no",
                "--dir",
                &dir.display().to_string(),
            ]
            .map(str::to_owned),
        );
        let binary = require_tool("redis-server", "redis-server");
        let mut proc = Proc::spawn(&self.name, &binary, &args, dir, log)?;
        self.wait(&mut proc, || {
            matches!(
                resp::command(port, &[b"PING"], Duration::from_millis(500)),
                Ok(Resp::Simple(pong)) if pong == "PONG"
            )
        })?;
        Ok((proc, format!("Debian redis-server {}", args.join(" "))))
    }

    fn start_webdis(&self, dir: &Path, log: &Path) -> Result<(Proc, String), Error> {
        let source = self.mounted_arg(|a| a.ends_with(".json"))?;
        let mut config = read_json(&source)?;
        config["redis_host"] = json!("127.0.0.1");
        config["http_host"] = json!("127.0.0.1");
        config["logfile"] = json!(dir.join(format!("{}.webdis.log", self.name)));
        let port = self
            .webdis_port
            .ok_or_else(|| Error::new(format!("{}: no http_port", source.display())))?;
        // Not published, so not checked with the others; another webdis
        // on it would answer the readiness probe in this one's place.
        if TcpListener::bind((LOCALHOST, port)).is_err() {
            return Err(Error::new(format!(
                "service {}: port 127.0.0.1:{port} is taken",
                self.name
            )));
        }
        let path = dir.join(format!("{}.json", self.name));
        write(&path, &config.to_string())?;
        let binary = require_tool("webdis", "webdis");
        let mut proc = Proc::spawn(&self.name, &binary, &[path.display().to_string()], dir, log)?;
        self.wait(&mut proc, || {
            matches!(
                http::get_with_timeout(port, "/PING.raw", &[], Duration::from_millis(500)),
                Ok(r) if r.status == 200 && r.body == b"+PONG\r\n"
            )
        })?;
        Ok((
            proc,
            format!("Debian webdis with {} on 127.0.0.1", source.display()),
        ))
    }

    fn start_envoy(
        &self,
        dir: &Path,
        log: &Path,
        services: &[String],
        webdis_port: Option<u16>,
    ) -> Result<(Proc, String), Error> {
        let config_at = self
            .command
            .iter()
            .position(|a| a == "-c")
            .and_then(|i| self.command.get(i + 1))
            .ok_or_else(|| Error::new(format!("service {}: Envoy without -c", self.name)))?;
        let source = self.mounted(config_at)?;
        let mut bootstrap = yaml_as_json(&source)?;
        let mut notes = vec![format!("upstream Envoy with {}", source.display())];
        rewrite_addresses(&mut bootstrap, services);
        let mut higress = false;
        for wasm in wasm_configs(&mut bootstrap) {
            let in_container = wasm["vm_config"]["code"]["local"]["filename"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            let mut module = self.mounted(&in_container)?;
            if module.parent().and_then(Path::file_name) == Some("higress".as_ref()) {
                // The default build of the same plugin, over webdis.
                let default = module
                    .parent()
                    .and_then(Path::parent)
                    .zip(module.file_name())
                    .map(|(wasm_dir, file)| wasm_dir.join(file))
                    .unwrap_or_default();
                module = default;
                let plugin = wasm["configuration"]["value"].as_str().unwrap_or("{}");
                let mut plugin: Value = serde_json::from_str(plugin).map_err(|e| {
                    Error::new(format!(
                        "{}: a plugin config is not JSON: {e}",
                        source.display()
                    ))
                })?;
                let timeout = plugin["redis"]["timeout"].clone();
                plugin["redis"] = json!({"webdis_cluster": WEBDIS_CLUSTER, "timeout": timeout});
                wasm["configuration"]["value"] = json!(plugin.to_string());
                // No `allow_on_headers_stop_iteration`: Higress does not
                // hold request headers for ABI 0.2.1 modules, and upstream
                // Envoy without the setting behaves the same, so the
                // stand-in meets what the gateway would.
                higress = true;
            }
            if !module.is_file() {
                return Err(Error::new(format!(
                    "service {}: {} does not exist: build it with `bash scripts/build.sh`",
                    self.name,
                    module.display()
                )));
            }
            wasm["vm_config"]["code"]["local"]["filename"] = json!(module);
        }
        if higress {
            let port = webdis_port.ok_or_else(|| {
                Error::new(format!(
                    "service {}: the stand-in of a Higress gateway needs the webdis service",
                    self.name
                ))
            })?;
            let cluster = json!({
                "name": WEBDIS_CLUSTER,
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {"cluster_name": WEBDIS_CLUSTER, "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
                ]}]},
            });
            if let Some(clusters) = bootstrap["static_resources"]["clusters"].as_array_mut() {
                clusters.push(cluster);
            }
            notes.push(
                "the default modules instead of the Higress builds, Redis through webdis, \
                 request headers not held (as Higress with ABI 0.2.1 modules)"
                    .to_owned(),
            );
        }
        let admin = bootstrap["admin"]["address"]["socket_address"]["port_value"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| Error::new(format!("{}: no admin port", source.display())))?;
        let path = dir.join(format!("{}.json", self.name));
        write(&path, &bootstrap.to_string())?;
        // The command's own options, the bootstrap swapped for the
        // rewritten one; several Envoys share this host, so no hot restart.
        let mut args = Vec::new();
        let mut given = self.command.iter().skip_while(|a| !a.starts_with('-'));
        while let Some(arg) = given.next() {
            args.push(arg.clone());
            if arg == "-c" {
                given.next();
                args.push(path.display().to_string());
            }
        }
        args.push("--disable-hot-restart".to_owned());
        let binary = crate::envoy_binary();
        let mut proc = Proc::spawn(&self.name, &binary, &args, dir, log)?;
        self.wait(&mut proc, || {
            matches!(
                http::get_with_timeout(admin, "/ready", &[], Duration::from_millis(500)),
                Ok(r) if r.status == 200 && r.text().trim() == "LIVE"
            )
        })?;
        Ok((proc, notes.join("; ")))
    }

    /// Waits until `up` says the service answers, or fails with its log.
    fn wait(&self, proc: &mut Proc, mut up: impl FnMut() -> bool) -> Result<(), Error> {
        let ready = poll(START_TIMEOUT, || {
            if let Some(status) = proc.exited() {
                return Some(Err(format!("exited with {status}")));
            }
            up().then_some(Ok(()))
        })
        .unwrap_or_else(|| Err(format!("did not answer within {START_TIMEOUT:?}")));
        ready.map_err(|why| {
            proc.kill();
            Error::new(format!(
                "service {} {why}; log {}:\n{}",
                self.name,
                proc.log_path().display(),
                tail(&proc.log(), 20)
            ))
        })
    }
}

/// Every `socket_address.address` that is `0.0.0.0` or a service name,
/// made `127.0.0.1` (a static address, so DNS clusters still resolve).
fn rewrite_addresses(value: &mut Value, services: &[String]) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(address)) = map.get("address") {
                if address == "0.0.0.0" || services.iter().any(|s| s == address) {
                    map.insert("address".to_owned(), json!("127.0.0.1"));
                }
            }
            for child in map.values_mut() {
                rewrite_addresses(child, services);
            }
        }
        Value::Array(items) => {
            for child in items {
                rewrite_addresses(child, services);
            }
        }
        _ => {}
    }
}

/// The `config` of every Wasm filter in every listener of `bootstrap`.
fn wasm_configs(bootstrap: &mut Value) -> Vec<&mut Value> {
    let mut found = Vec::new();
    collect_wasm(bootstrap, &mut found);
    found
}

fn collect_wasm<'a>(value: &'a mut Value, found: &mut Vec<&'a mut Value>) {
    match value {
        Value::Object(map) => {
            let is_wasm = map.get("@type").and_then(Value::as_str)
                == Some("type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm");
            if is_wasm {
                if let Some(config) = map.get_mut("config") {
                    found.push(config);
                }
                return;
            }
            for child in map.values_mut() {
                collect_wasm(child, found);
            }
        }
        Value::Array(items) => {
            for child in items {
                collect_wasm(child, found);
            }
        }
        _ => {}
    }
}

/// A YAML file as JSON, read by the `.venv`'s ruamel.yaml (a dependency of
/// check-jsonschema, installed by `scripts/setup.sh`): the workspace has no
/// YAML crate, and this is the loader the compose checks use too.
///
/// # Errors
/// When the Python or the file is missing or the file is not YAML.
pub fn yaml_as_json(path: &Path) -> Result<Value, Error> {
    let python = repo_root().join(".venv/bin/python");
    let out = Command::new(&python)
        .args([
            "-c",
            "import json, sys\nfrom ruamel.yaml import YAML\n\
             json.dump(YAML(typ='safe', pure=True).load(open(sys.argv[1])), sys.stdout)",
        ])
        .arg(path)
        .output()
        .map_err(|e| {
            Error::new(format!(
                "cannot run {}: {e}: {}",
                python.display(),
                crate::SETUP_HINT
            ))
        })?;
    if !out.status.success() {
        return Err(Error::new(format!(
            "cannot read {} as YAML: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::new(format!("{} as JSON: {e}", path.display())))
}

fn read_json(path: &Path) -> Result<Value, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::new(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| Error::new(format!("{}: {e}", path.display())))
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text)
        .map_err(|e| Error::new(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_and_wildcards_become_loopback() {
        let mut bootstrap = json!({
            "admin": {"address": {"socket_address": {"address": "0.0.0.0", "port_value": 1}}},
            "clusters": [{"socket_address": {"address": "redis", "port_value": 6379}},
                         {"socket_address": {"address": "example.com", "port_value": 80}}],
        });
        rewrite_addresses(&mut bootstrap, &["redis".to_owned()]);
        assert_eq!(
            bootstrap["admin"]["address"]["socket_address"]["address"],
            "127.0.0.1"
        );
        assert_eq!(
            bootstrap["clusters"][0]["socket_address"]["address"],
            "127.0.0.1"
        );
        // Not a service: left alone.
        assert_eq!(
            bootstrap["clusters"][1]["socket_address"]["address"],
            "example.com"
        );
    }

    #[test]
    fn ports_must_be_loopback_and_the_same_on_both_sides() {
        let root = Path::new("/");
        let ok = json!({"image": "redis:7", "ports": ["127.0.0.1:6379:6379"]});
        assert_eq!(Plan::read("redis", &ok, root).unwrap().ports, [6379]);
        for bad in ["6379:6379", "127.0.0.1:16379:6379", "0.0.0.0:6379:6379"] {
            let service = json!({"image": "redis:7", "ports": [bad]});
            let e = Plan::read("redis", &service, root).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
        let unknown = json!({"image": "postgres:16"});
        assert!(Plan::read("db", &unknown, root).is_err());
    }
}
