//! Checks that the tools a build needs are installed, and says how to
//! install the ones that are not.

use std::process::{Command, Stdio};

/// Runs `program args` and returns its standard output, or `None` when it
/// cannot be started or fails.
pub fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `program` can be started at all.
pub fn exists(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Fails with the install command of the first missing tool a build needs.
///
/// # Errors
/// A message naming what is missing and the command that installs it.
pub fn check(own_std: bool) -> Result<(), String> {
    if !exists("cargo") {
        return Err("cargo not found: install Rust from https://rustup.rs".into());
    }
    match output("rustup", &["target", "list", "--installed"]) {
        None => {
            return Err(
                "rustup not found: the build needs rustup's wasm32-wasip1 target (install Rust from https://rustup.rs)"
                    .into(),
            )
        }
        Some(targets) if !targets.lines().any(|t| t.trim() == "wasm32-wasip1") => {
            return Err(
                "the wasm32-wasip1 target is not installed: run `rustup target add wasm32-wasip1`"
                    .into(),
            )
        }
        Some(_) => {}
    }
    if own_std {
        let components =
            output("rustup", &["component", "list", "--installed"]).unwrap_or_default();
        if !components.lines().any(|c| c.trim().starts_with("rust-src")) {
            return Err(
                "the rust-src component is not installed (std is compiled with the module): run \
                 `rustup component add rust-src`, or build with --plain for the prebuilt std"
                    .into(),
            );
        }
    }
    if !exists("wasm-opt") {
        return Err(
            "wasm-opt not found: install binaryen (`apt-get install binaryen` on Debian and \
             Ubuntu, `brew install binaryen` on macOS)"
                .into(),
        );
    }
    Ok(())
}
