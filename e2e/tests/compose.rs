//! docker-compose.yaml cannot run here (no Docker engine), so this checks
//! what can be checked without Docker: its Envoy bootstrap is valid for
//! Envoy 1.40 with the built limiter (validation loads the module and runs
//! its configuration parsing) and the files it mounts exist.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use stack::repo_root;

#[test]
fn compose_envoy_bootstrap_validates_with_the_built_limiter() {
    let root = repo_root();
    let yaml = std::fs::read_to_string(root.join("loadtest/envoy.yaml")).unwrap();
    let in_container = "/etc/envoy/limiter.wasm";
    assert!(
        yaml.contains(in_container),
        "loadtest/envoy.yaml no longer loads {in_container}"
    );
    let local = yaml.replace(in_container, &e2e::limiter_wasm().display().to_string());
    let dir = stack::target_dir().join("compose-check");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("envoy.yaml");
    std::fs::write(&path, local).unwrap();
    let (ok, log) = stack::validate_envoy_config(&path);
    assert!(
        ok,
        "envoy --mode validate refused loadtest/envoy.yaml:\n{}",
        stack::envoy_log_excerpt(&log, 30)
    );
}

#[test]
fn compose_mounts_files_that_exist() {
    let root = repo_root();
    let compose = std::fs::read_to_string(root.join("docker-compose.yaml")).unwrap();
    let mounts: Vec<&str> = compose
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- ./"))
        .filter_map(|m| m.split(':').next())
        .collect();
    assert!(
        mounts.len() >= 3,
        "expected the webdis, envoy and wasm mounts: {mounts:?}"
    );
    for mount in mounts {
        if mount.starts_with("target/") {
            // Build output; its presence is the business of the build step.
            assert_eq!(mount, "target/wasm32-wasip1/release/limiter.wasm");
            continue;
        }
        assert!(
            root.join(mount).is_file(),
            "docker-compose.yaml mounts missing ./{mount}"
        );
    }
    let webdis: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("loadtest/webdis.json")).unwrap())
            .unwrap();
    assert_eq!(webdis["redis_host"], "redis");
    assert_eq!(webdis["http_port"], 7379);
    assert_eq!(webdis["daemonize"], false);
}
