//! Real local components for end-to-end tests and the load test.
//!
//! Every component ([`Redis`], [`Webdis`], [`Envoy`]) is a real process bound
//! to 127.0.0.1 on a free port, with its files in a private run directory
//! under `target/stack/`. Dropping the handle kills the process and waits for
//! it, also when a test panics; a run directory is deleted on drop unless the
//! thread is panicking (so a failing test leaves its logs behind) or
//! `STACK_KEEP=1` is set.
//!
//! Two more components are threads of the test process: [`Upstream`], a
//! scripted OpenAI-compatible API that records what reaches it, and
//! [`Relay`], a TCP relay that adds latency. Dropping either stops and joins
//! all its threads and closes its port.
//!
//! Missing binaries are errors with the command that installs them, never a
//! reason to skip: a test that silently does nothing proves nothing.
//! Everything that waits has a timeout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Test tooling: slicing a buffer we just length-checked is clearer than `get`.
#![allow(clippy::indexing_slicing)]

pub mod cluster;
pub mod compose;
mod envoy;
pub mod http;
pub mod llm_upstream;
mod net;
mod process;
mod redis;
mod relay;
pub mod resp;
mod upstream;
mod webdis;

use std::collections::BTreeSet;
use std::fmt;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use cluster::RedisCluster;
pub use compose::ComposeStack;
pub use envoy::{
    envoy_binary, validate as validate_envoy_config, DirectResponse, Envoy, EnvoyConfig, WasmPlugin,
};
pub use http::{get, get_with_timeout, request, request_with_timeout, Body, Chunk, Response};
pub use process::{envoy_log_excerpt, kill_with_this_thread};
pub use redis::Redis;
pub use relay::Relay;
pub use upstream::{
    Framing, OpenAiStream, RecordedRequest, Reply, ReplyBody, Upstream, Usage, DEFAULT_PAUSE,
};
pub use webdis::Webdis;

/// Why a component could not be started or queried; the message carries the
/// log tail of the process involved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// The loopback address every component binds to and every client uses.
pub const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// Installs missing system tools (apt packages, Rust target, `.venv`).
pub const SETUP_HINT: &str = "run `bash scripts/setup.sh` from the repository root";

/// The workspace root (the parent of this crate's directory).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` if set, else `<repo>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                repo_root().join(dir)
            }
        }
        _ => repo_root().join("target"),
    }
}

/// The module of plugin package `name` that is deployed and tested:
/// `target/wasm/<name>.wasm`, the release build for `wasm32-wasip1` after
/// `wasm-opt -Oz` (`scripts/build.sh`). Cargo names the module after the
/// library, with `-` turned into `_` (`token-quota` builds
/// `token_quota.wasm`).
///
/// `KIT_WASM_DIR` names another directory (relative to the repository
/// root unless absolute) to test another build of the same plugins:
/// `KIT_WASM_DIR=target/wasm-sdk` for the build on the `proxy-wasm` crate
/// (`bash scripts/build.sh --sdk`).
///
/// # Panics
/// If the module has not been built, naming the build command.
pub fn wasm_path(name: &str) -> PathBuf {
    let dir = match std::env::var_os("KIT_WASM_DIR") {
        Some(dir) if !dir.is_empty() => repo_root().join(dir),
        _ => target_dir().join("wasm"),
    };
    let path = dir.join(format!("{}.wasm", name.replace('-', "_")));
    if !path.is_file() {
        panic!(
            "{} does not exist: build it first with `bash scripts/build.sh` \
             (scripts/test.sh does this)",
            path.display()
        );
    }
    path
}

/// Finds `tool` on `PATH`.
///
/// # Panics
/// If it is missing, naming the package that provides it.
pub fn require_tool(tool: &str, package: &str) -> PathBuf {
    find_on_path(tool).unwrap_or_else(|| {
        panic!(
            "`{tool}` is not installed (Debian package `{package}`): \
             {SETUP_HINT}, or `apt-get install -y {package}`"
        )
    })
}

fn find_on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Ports this process has already handed out. Two components started in
/// parallel tests must not both get the port the kernel happened to free.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A loopback TCP port that was free a moment ago and that this process has
/// not handed out before. Someone else can still take it before the caller
/// binds it; the components retry with a new port when their bind fails.
pub fn free_port() -> u16 {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..100 {
        let port = TcpListener::bind((LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("cannot bind an ephemeral port on 127.0.0.1: {e}"));
        if handed_out.insert(port) {
            return port;
        }
    }
    panic!("no fresh free port after 100 attempts");
}

/// A private directory for one component's config and logs.
#[derive(Debug)]
pub(crate) struct RunDir {
    path: PathBuf,
}

impl RunDir {
    pub(crate) fn new(label: &str) -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let unique = format!(
            "{label}-{}-{}-{nanos:09}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let path = target_dir().join("stack").join(unique);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        Self { path }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let keep = std::thread::panicking() || std::env::var("STACK_KEEP").is_ok_and(|v| v == "1");
        if keep {
            eprintln!("stack: kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Polls `probe` every 25 ms until it yields a value or `timeout` passes.
pub(crate) fn poll<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Seconds since the Unix epoch, as a float, from the system clock (the
/// clock fixed rate-limit windows are aligned to).
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Sleeps, if needed, until at least `needed` remains in the current
/// clock-aligned window of `period` (e.g. 60 s for per-minute limits), so a
/// burst of requests all land in one window. Returns the start of the window
/// the burst will fall into, in seconds since the epoch.
///
/// # Panics
/// If `needed` does not fit in one period.
pub fn wait_for_window_room(period: Duration, needed: Duration) -> u64 {
    let period_s = period.as_secs_f64();
    assert!(
        needed.as_secs_f64() < period_s - 0.5,
        "{needed:?} does not fit in a {period:?} window"
    );
    let now = unix_now();
    let into = now % period_s;
    let left = period_s - into;
    if left < needed.as_secs_f64() {
        // Skip into the next window, with a margin against clock jitter.
        std::thread::sleep(Duration::from_secs_f64(left + 0.25));
    }
    let now = unix_now();
    (now - now % period_s) as u64
}
