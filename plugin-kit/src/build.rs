//! `plugin-kit build`: a plugin crate into the module that ships.
//!
//! What it does, and why each step:
//! - `cargo rustc --crate-type cdylib`: a plugin crate usually asks for
//!   `["cdylib", "rlib"]` so its tests can link it, and a package that
//!   builds both kinds gets no link-time optimisation across crates (cargo
//!   issue 9672), which costs a module about a tenth of its size.
//! - The release profile is passed on the command line (`opt-level = "z"`,
//!   LTO, one codegen unit, `panic = "abort"`, `strip`), so a crate outside
//!   this workspace gets it without copying a profile, and
//!   `--compress-relocations` for the linker, which otherwise pads every
//!   relocated number to five bytes.
//! - std is compiled with the module (`-Zbuild-std`, std's
//!   `optimize_for_size`, `-Cpanic=immediate-abort`, no panic locations):
//!   a panic is then a bare trap instead of std's panic hook with its
//!   formatting, stderr and allocator. These flags are unstable;
//!   `RUSTC_BOOTSTRAP=1` lets the stable toolchain take them, with std's
//!   source from the same toolchain's `rust-src` component. `--plain`
//!   skips this and links the prebuilt std (a larger module, any toolchain).
//! - `wasm-opt -Oz` with the proposals Rust emits enabled: binaryen enables
//!   none by default and the stripped module carries no section saying
//!   which it uses, so a bare `wasm-opt -Oz` refuses bulk memory.
//!   `--converge` repeats `-Oz` until the module stops shrinking (a few
//!   seconds). `--low-memory-unused` lets it fold a small constant added
//!   to an address into the load or store's offset: the two differ only
//!   when the addition wraps past 4 GiB, which an address Rust computes
//!   never does (only a stack pointer wrapped by a stack overflow would,
//!   and that access then traps instead of writing the first kilobyte of
//!   memory). `--flatten --rereloop` between two `-Oz` rebuilds each
//!   function's control flow from its basic blocks, which the second
//!   `-Oz` then shrinks further than the first could; the request path
//!   runs about as many instructions either way (README "Module size").

use crate::option_value;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What wasm-opt runs on the module cargo built (see the module docs).
pub const WASM_OPT_PASSES: &[&str] = &[
    "--low-memory-unused",
    "-Oz",
    "--flatten",
    "--rereloop",
    "-Oz",
    "--converge",
];

/// Proposals Rust's wasm32-wasip1 output uses, which wasm-opt must allow.
pub const WASM_OPT_FEATURES: &[&str] = &[
    "--enable-reference-types",
    "--enable-multivalue",
    "--enable-bulk-memory",
    "--enable-sign-ext",
    "--enable-nontrapping-float-to-int",
    "--enable-mutable-globals",
    "--enable-extended-const",
];

/// The release profile every shipped module is built with.
const PROFILE: &[&str] = &[
    "profile.release.opt-level=\"z\"",
    "profile.release.lto=true",
    "profile.release.codegen-units=1",
    "profile.release.panic=\"abort\"",
    "profile.release.strip=true",
    "profile.release.debug=false",
];

struct Options {
    manifest_path: Option<PathBuf>,
    package: Option<String>,
    out: Option<PathBuf>,
    target_dir: Option<PathBuf>,
    features: Option<String>,
    plain: bool,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        manifest_path: None,
        package: None,
        out: None,
        target_dir: None,
        features: None,
        plain: false,
    };
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        match arg.as_str() {
            "--manifest-path" => {
                options.manifest_path = Some(option_value(args, &mut i, arg)?.into());
            }
            "-p" | "--package" => options.package = Some(option_value(args, &mut i, arg)?),
            "--out" => options.out = Some(option_value(args, &mut i, arg)?.into()),
            "--target-dir" => options.target_dir = Some(option_value(args, &mut i, arg)?.into()),
            "--features" | "-F" => options.features = Some(option_value(args, &mut i, arg)?),
            "--plain" => options.plain = true,
            other => return Err(format!("build: unknown argument `{other}`")),
        }
        i += 1;
    }
    Ok(options)
}

/// The package to build: its name, the name of its library (the module's
/// file name) and the target directory cargo uses for it.
struct Package {
    name: String,
    lib: String,
    target_dir: PathBuf,
}

fn find_package(options: &Options) -> Result<Package, String> {
    let mut metadata = Command::new("cargo");
    metadata.args(["metadata", "--no-deps", "--format-version", "1"]);
    if let Some(path) = &options.manifest_path {
        metadata.arg("--manifest-path").arg(path);
    }
    let out = metadata
        .output()
        .map_err(|e| format!("cargo metadata could not start: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let json: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("cargo metadata printed something that is not JSON: {e}"))?;
    let packages = field(&json, "packages")
        .as_array()
        .cloned()
        .unwrap_or_default();
    let wanted_manifest = match (&options.package, &options.manifest_path) {
        (Some(_), _) => None,
        (None, Some(path)) => Some(canonical(path)),
        (None, None) => Some(canonical(&locate_project()?)),
    };
    let package = packages
        .iter()
        .find(|p| match (&options.package, &wanted_manifest) {
            (Some(name), _) => field(p, "name").as_str() == Some(name),
            (None, Some(manifest)) => {
                field(p, "manifest_path")
                    .as_str()
                    .map(|m| canonical(Path::new(m)))
                    == Some(manifest.clone())
            }
            (None, None) => false,
        })
        .ok_or_else(|| match &options.package {
            Some(name) => format!("no package `{name}` in this workspace"),
            None => "no package at this manifest (in a workspace root, name one with -p)".into(),
        })?;
    let name = field(package, "name")
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let lib = field(package, "targets")
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| {
            field(t, "crate_types")
                .as_array()
                .is_some_and(|types| types.iter().any(|k| k == "cdylib"))
        })
        .and_then(|t| field(t, "name").as_str())
        .map(|n| n.replace('-', "_"))
        .ok_or_else(|| {
            format!(
                "package `{name}` has no cdylib library: add\n  [lib]\n  crate-type = [\"cdylib\", \"rlib\"]\nto its Cargo.toml"
            )
        })?;
    let target_dir = match &options.target_dir {
        Some(dir) => dir.clone(),
        None => PathBuf::from(
            field(&json, "target_directory")
                .as_str()
                .unwrap_or("target"),
        ),
    };
    Ok(Package {
        name,
        lib,
        target_dir,
    })
}

/// `value[key]`, or null: what cargo metadata leaves out is absent.
fn field<'v>(value: &'v Value, key: &str) -> &'v Value {
    value.get(key).unwrap_or(&Value::Null)
}

fn locate_project() -> Result<PathBuf, String> {
    let out = Command::new("cargo")
        .args(["locate-project", "--message-format", "plain"])
        .output()
        .map_err(|e| format!("cargo locate-project could not start: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "no Cargo.toml here or above: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

/// Runs `plugin-kit build`.
///
/// # Errors
/// A missing tool (with its install command), a package that cannot be
/// found or has no cdylib, or a failed cargo or wasm-opt run.
pub fn run(args: &[String]) -> Result<(), String> {
    let options = parse(args)?;
    crate::tools::check(!options.plain)?;
    let package = find_package(&options)?;

    let mut cargo = Command::new("cargo");
    cargo.args(["rustc", "--release", "--target", "wasm32-wasip1", "--lib"]);
    cargo.args(["-p", &package.name, "--crate-type", "cdylib"]);
    if let Some(path) = &options.manifest_path {
        cargo.arg("--manifest-path").arg(path);
    }
    cargo.arg("--target-dir").arg(&package.target_dir);
    if let Some(features) = &options.features {
        cargo.args(["--features", features]);
    }
    for setting in PROFILE {
        cargo.args(["--config", setting]);
    }
    if options.plain {
        cargo.args([
            "--config",
            "target.wasm32-wasip1.rustflags=[\"-Clink-arg=--compress-relocations\"]",
        ]);
    } else {
        cargo.env("RUSTC_BOOTSTRAP", "1");
        cargo.args([
            "-Zbuild-std=std,panic_abort",
            "-Zbuild-std-features=optimize_for_size",
            "--config",
            "target.wasm32-wasip1.rustflags=[\"-Zunstable-options\", \"-Cpanic=immediate-abort\", \
             \"-Zlocation-detail=none\", \"-Clink-arg=--compress-relocations\"]",
        ]);
    }
    eprintln!(
        "[plugin-kit] building {} (release, wasm32-wasip1, cdylib only, {})",
        package.name,
        if options.plain {
            "prebuilt std"
        } else {
            "std compiled with the module"
        }
    );
    let status = cargo
        .status()
        .map_err(|e| format!("cargo could not start: {e}"))?;
    if !status.success() {
        return Err(format!("cargo rustc failed for {}", package.name));
    }

    let built = package
        .target_dir
        .join("wasm32-wasip1/release")
        .join(format!("{}.wasm", package.lib));
    let out_dir = options
        .out
        .clone()
        .unwrap_or_else(|| package.target_dir.join("wasm"));
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let shipped = out_dir.join(format!("{}.wasm", package.lib));
    let status = Command::new("wasm-opt")
        .args(WASM_OPT_FEATURES)
        .args(WASM_OPT_PASSES)
        .arg(&built)
        .arg("-o")
        .arg(&shipped)
        .status()
        .map_err(|e| format!("wasm-opt could not start: {e}"))?;
    if !status.success() {
        return Err(format!("wasm-opt failed on {}", built.display()));
    }
    for path in [&built, &shipped] {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        println!("[plugin-kit] {:<56} {size:>8} bytes", path.display());
    }
    Ok(())
}
