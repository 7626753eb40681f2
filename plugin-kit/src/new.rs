//! `plugin-kit new`: a plugin crate outside this repository that builds,
//! tests and loads in Envoy as written.

use crate::option_value;
use std::path::{Path, PathBuf};

const CARGO_TOML: &str = include_str!("../template/Cargo.toml.txt");
const LIB_RS: &str = include_str!("../template/lib.rs.txt");
const TEST_RS: &str = include_str!("../template/test.rs.txt");
const ENVOY_YAML: &str = include_str!("../template/envoy.yaml.txt");
const README: &str = include_str!("../template/README.md.txt");
const GITIGNORE: &str = include_str!("../template/gitignore.txt");

/// The kit crate this tool was built from: a new crate depends on it by path.
fn default_kit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../kit")
}

/// A crate name cargo takes: ASCII letters, digits, `-` and `_`, starting
/// with a letter.
fn valid_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `my-plugin` -> `MyPlugin`.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// Runs `plugin-kit new`.
///
/// # Errors
/// A bad name, a directory that exists and is not empty, or a failed write.
pub fn run(args: &[String]) -> Result<(), String> {
    let mut dir = None;
    let mut name = None;
    let mut kit_path = None;
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        match arg.as_str() {
            "--name" => name = Some(option_value(args, &mut i, arg)?),
            "--kit-path" => kit_path = Some(PathBuf::from(option_value(args, &mut i, arg)?)),
            other if other.starts_with('-') => {
                return Err(format!("new: unknown option `{other}`"))
            }
            other if dir.is_none() => dir = Some(PathBuf::from(other)),
            other => return Err(format!("new: unexpected argument `{other}`")),
        }
        i += 1;
    }
    let dir = dir.ok_or("new: which directory? `plugin-kit new <dir>`")?;
    let name = match name {
        Some(name) => name,
        None => dir
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .ok_or("new: cannot take a crate name from the directory; give --name")?,
    };
    if !valid_name(&name) {
        return Err(format!(
            "new: `{name}` is not a crate name (letters, digits, - and _, starting with a letter); give --name"
        ));
    }
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map_err(|e| format!("new: cannot read {}: {e}", dir.display()))?
            .next()
            .is_some()
    {
        return Err(format!("new: {} exists and is not empty", dir.display()));
    }
    let kit_path = kit_path.unwrap_or_else(default_kit_path);
    let kit_path = kit_path
        .canonicalize()
        .map_err(|e| format!("new: the kit crate at {}: {e}", kit_path.display()))?;
    if !kit_path.join("Cargo.toml").is_file() {
        return Err(format!("new: no kit crate at {}", kit_path.display()));
    }

    std::fs::create_dir_all(dir.join("src"))
        .and_then(|()| std::fs::create_dir_all(dir.join("tests")))
        .map_err(|e| format!("new: cannot create {}: {e}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("new: {}: {e}", dir.display()))?;
    let lib_name = name.replace('-', "_");
    let wasm_path = dir.join("target/wasm").join(format!("{lib_name}.wasm"));
    let fill = |template: &str| {
        template
            .replace("{{name}}", &name)
            .replace("{{crate}}", &lib_name)
            .replace("{{type}}", &type_name(&name))
            .replace("{{kit_path}}", &kit_path.display().to_string())
            .replace("{{wasm_path}}", &wasm_path.display().to_string())
    };
    let files = [
        ("Cargo.toml", CARGO_TOML),
        ("src/lib.rs", LIB_RS),
        ("tests/plugin.rs", TEST_RS),
        ("envoy.yaml", ENVOY_YAML),
        ("README.md", README),
        (".gitignore", GITIGNORE),
    ];
    for (file, template) in files {
        let path = dir.join(file);
        std::fs::write(&path, fill(template))
            .map_err(|e| format!("new: cannot write {}: {e}", path.display()))?;
    }
    println!("[plugin-kit] created {} ({name}): next,", dir.display());
    println!("  cd {}", dir.display());
    println!("  cargo test");
    println!("  plugin-kit build");
    println!("  envoy -c envoy.yaml   # then: curl -i -H 'x-api-key: k1' http://127.0.0.1:10000/");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_are_camel_case() {
        assert_eq!(type_name("my-plugin"), "MyPlugin");
        assert_eq!(type_name("auth_gate"), "AuthGate");
        assert_eq!(type_name("x"), "X");
    }

    #[test]
    fn crate_names_are_checked() {
        assert!(valid_name("my-plugin"));
        assert!(!valid_name("1plugin"));
        assert!(!valid_name("my plugin"));
        assert!(!valid_name(""));
    }
}
