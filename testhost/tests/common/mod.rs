//! Shared by the test files: where the modules are, Redis routing.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use stack::Redis;
use testhost::Setup;

/// The cluster name our modules' `redis` block maps to.
pub const REDIS_CLUSTER: &str = "outbound|6379||redis.dns";

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A module built by `bash scripts/build.sh --higress`; fails with how to
/// build it when missing.
pub fn higress_module(name: &str) -> Vec<u8> {
    let path = workspace()
        .join("target/wasm/higress")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the Higress modules first: bash scripts/build.sh --higress",
            path.display()
        )
    })
}

/// A plugin of PyPI `gpustack-higress-plugins` 0.5.1 installed in `.venv`;
/// fails with how to install it when missing.
pub fn gpustack_plugin(name: &str, version: &str) -> Vec<u8> {
    let lib = workspace().join(".venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|dirs| {
        dirs.flatten()
            .map(|d| {
                d.path()
                    .join("site-packages/gpustack_higress_plugins/plugins")
                    .join(name)
                    .join(version)
                    .join("plugin.wasm")
            })
            .find(|p| p.is_file())
    });
    match found {
        Some(path) => std::fs::read(path).unwrap(),
        None => panic!(
            "{name} {version} from PyPI gpustack-higress-plugins 0.5.1 is not installed under {}; \
             install it with: bash scripts/setup.sh (or .venv/bin/pip install 'gpustack-higress-plugins==0.5.1')",
            lib.display()
        ),
    }
}

/// A host setup whose Redis cluster `cluster` reaches `redis`.
pub fn setup_with(redis: &Redis, cluster: &str) -> Setup {
    Setup::default().redis(
        cluster,
        format!("127.0.0.1:{}", redis.port()).parse().unwrap(),
    )
}
