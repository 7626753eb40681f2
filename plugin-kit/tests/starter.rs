//! The path a new plugin author takes, on every commit: `plugin-kit new`
//! writes a crate outside the workspace, its own tests pass, `plugin-kit
//! build` makes a module under the size target, and the generated
//! `envoy.yaml` serves it in Envoy 1.40, denying and allowing as the
//! skeleton says.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The starter's module must stay this small.
const STARTER_BUDGET: u64 = 70_000;

const TOOL: &str = env!("CARGO_BIN_EXE_plugin-kit");

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Kills Envoy when the test ends, also when it fails.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until_ready(admin_port: u16, envoy: &mut Running, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = envoy.0.try_wait() {
            panic!(
                "Envoy exited ({status}) with the generated envoy.yaml:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if stack::get(admin_port, "/ready", &[]).is_ok_and(|r| r.status == 200) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "Envoy not ready in 30 s:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

#[test]
fn a_new_plugin_builds_tests_and_serves_in_envoy() {
    let envoy_binary = stack::envoy_binary();
    // Outside the repository, as a user's crate is (inside it, cargo would
    // take it for a member of this workspace).
    let dir = std::env::temp_dir().join(format!("plugin-kit-starter-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // Its own target directory, kept between runs so only the first
    // compiles std and the kit's dependencies.
    let target_dir: PathBuf = stack::target_dir().join("starter");

    run(
        Command::new(TOOL)
            .args(["new"])
            .arg(&dir)
            .args(["--name", "demo-gate"]),
        "plugin-kit new",
    );
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "tests/plugin.rs",
        "envoy.yaml",
        "README.md",
    ] {
        assert!(dir.join(file).is_file(), "plugin-kit new wrote no {file}");
    }
    // A second `new` into the same directory is refused.
    let again = Command::new(TOOL).arg("new").arg(&dir).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    run(
        Command::new("cargo")
            .arg("test")
            .arg("--manifest-path")
            .arg(dir.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir),
        "cargo test in the new crate",
    );
    run(
        Command::new(TOOL)
            .arg("build")
            .arg("--manifest-path")
            .arg(dir.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            .arg("--out")
            .arg(dir.join("target/wasm")),
        "plugin-kit build of the new crate",
    );
    let module = dir.join("target/wasm/demo_gate.wasm");
    let size = std::fs::metadata(&module).unwrap().len();
    println!("starter module: {size} bytes");
    assert!(
        size <= STARTER_BUDGET,
        "the starter's module is {size} bytes, over {STARTER_BUDGET}"
    );

    // The generated envoy.yaml as written, on free ports instead of the
    // fixed ones a user gets.
    let (port, admin_port) = (stack::free_port(), stack::free_port());
    let yaml = std::fs::read_to_string(dir.join("envoy.yaml")).unwrap();
    assert!(yaml.contains("port_value: 10000") && yaml.contains("port_value: 9901"));
    let yaml = yaml
        .replace("port_value: 10000", &format!("port_value: {port}"))
        .replace("port_value: 9901", &format!("port_value: {admin_port}"));
    let bootstrap = dir.join("envoy.test.yaml");
    std::fs::write(&bootstrap, yaml).unwrap();
    let log = dir.join("envoy.log");
    let mut envoy = Running(
        Command::new(&envoy_binary)
            .arg("-c")
            .arg(&bootstrap)
            .args(["--disable-hot-restart", "--concurrency", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", envoy_binary.display())),
    );
    wait_until_ready(admin_port, &mut envoy, &log);

    let denied = stack::get(port, "/", &[]).unwrap();
    assert_eq!(denied.status, 401);
    assert_eq!(denied.text(), "missing x-api-key");
    let allowed = stack::get(port, "/", &[("x-api-key", "k1")]).unwrap();
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.text(), "hello\n");
    // Counters reach Envoy on the kit's one-second tick.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = stack::get(admin_port, "/stats", &[]).unwrap().text();
        if stats.contains("wasmcustom.demo-gate.denied: 1")
            && stats.contains("wasmcustom.demo-gate.allowed: 1")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "counters never appeared:\n{stats}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(envoy);
    let _ = std::fs::remove_dir_all(&dir);
}
