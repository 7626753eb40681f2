//! `plugin-kit`: the commands a plugin author needs around the kit.
//!
//! - `plugin-kit new <dir>` writes a new plugin crate outside this
//!   repository: a `Cargo.toml` that works, a plugin skeleton, a FakeHost
//!   test, a loopback `envoy.yaml` and a README with the commands.
//! - `plugin-kit build` builds a plugin crate into the module that ships:
//!   the release profile this project uses, std compiled with the module,
//!   a cdylib-only link so link-time optimisation spans every crate, then
//!   `wasm-opt -Oz`. This repository's own plugins are built by it too
//!   (`scripts/build.sh`).
//!
//! Install it with `cargo install --path plugin-kit` from a checkout of this
//! repository, or run it in place with `cargo run -p plugin-kit -- ...`.

mod build;
mod new;
mod tools;

use std::process::ExitCode;

const USAGE: &str = "\
usage:
  plugin-kit new <dir> [--name <crate name>] [--kit-path <path to the kit crate>]
  plugin-kit build [--manifest-path <Cargo.toml>] [-p <package>] [--out <dir>]
                   [--target-dir <dir>] [--features <list>] [--plain]

new    writes a plugin crate into <dir> (which must not exist or be empty)
build  builds the plugin's release module for wasm32-wasip1, then wasm-opt -Oz,
       into <out>/<lib name>.wasm (default: <target dir>/wasm/) and prints its size;
       --plain uses the prebuilt std instead of compiling one with the module";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("new") => new::run(args.get(1..).unwrap_or_default()),
        Some("build") => build::run(args.get(1..).unwrap_or_default()),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => Err(format!("expected a command\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("plugin-kit: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Takes the value of option `name` at `args[*i]`, advancing `i`.
fn option_value(args: &[String], i: &mut usize, name: &str) -> Result<String, String> {
    *i += 1;
    args.get(*i)
        .cloned()
        .ok_or_else(|| format!("{name} needs a value"))
}
