//! The harness proves itself here, against real processes, without the
//! plugin under development: a failure in these tests is a harness bug.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use stack::resp::{self, Resp};
use stack::{get, require_tool, Envoy, EnvoyConfig, Redis, WasmPlugin, Webdis};

/// Compiles the WAT fixture with `result`/`level` filled in and returns the
/// `.wasm` path.
fn fixture_wasm(name: &str, result: u32, level: u32) -> PathBuf {
    let wat2wasm = require_tool("wat2wasm", "wabt");
    let source = include_str!("fixtures/echo_config.wat")
        .replace("RESULT", &result.to_string())
        .replace("LEVEL", &level.to_string());
    let dir = stack::target_dir().join("stack-fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let wat = dir.join(format!("{name}.wat"));
    let wasm = dir.join(format!("{name}.wasm"));
    std::fs::write(&wat, source).unwrap();
    let out = Command::new(wat2wasm)
        .arg(&wat)
        .arg("-o")
        .arg(&wasm)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "wat2wasm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wasm
}

fn refused(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).is_err()
}

#[test]
fn redis_stops_and_restarts_empty_on_the_same_port() {
    let mut redis = Redis::start();
    let port = redis.port();
    assert_eq!(
        redis.command(&[b"SET", b"k", b"v"]).unwrap(),
        Resp::Simple("OK".into())
    );
    assert_eq!(redis.keys(), vec![b"k".to_vec()]);

    redis.stop();
    assert!(!redis.is_running());
    assert!(refused(port), "port {port} still accepts after stop()");
    assert!(redis.command(&[b"PING"]).is_err());

    redis.restart();
    assert_eq!(redis.port(), port);
    assert_eq!(redis.command(&[b"GET", b"k"]).unwrap(), Resp::Bulk(None));
}

#[test]
fn a_frozen_redis_accepts_but_never_answers() {
    let mut redis = Redis::start();
    redis.freeze();
    let err = resp::command(redis.port(), &[b"PING"], Duration::from_millis(300)).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
        ),
        "{err:?}"
    );
    redis.thaw();
    assert_eq!(
        redis.command(&[b"PING"]).unwrap(),
        Resp::Simple("PONG".into())
    );
}

#[test]
fn dropping_components_kills_them() {
    let (redis_port, webdis_port, envoy_port, admin_port);
    {
        let redis = Redis::start();
        let webdis = Webdis::start(redis.port());
        let envoy = Envoy::start(EnvoyConfig::new());
        redis_port = redis.port();
        webdis_port = webdis.port();
        envoy_port = envoy.port();
        admin_port = envoy.admin_port();
        for port in [redis_port, webdis_port, envoy_port, admin_port] {
            assert!(!refused(port), "port {port} not listening while running");
        }
    }
    for port in [redis_port, webdis_port, envoy_port, admin_port] {
        assert!(refused(port), "port {port} still listening after drop");
    }
}

#[test]
fn webdis_fronts_its_redis() {
    let redis = Redis::start();
    let webdis = Webdis::start(redis.port());
    let r = get(webdis.port(), "/SET/harness/1.raw", &[]).unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"+OK\r\n"[..]));
    assert_eq!(
        redis.command(&[b"GET", b"harness"]).unwrap(),
        Resp::Bulk(Some(b"1".to_vec()))
    );
}

#[test]
fn envoy_without_a_filter_answers_directly() {
    let envoy = Envoy::start(EnvoyConfig::new());
    for _ in 0..3 {
        let r = get(envoy.port(), "/anything?x=1", &[]).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "ok\n");
        assert_eq!(r.header("server"), Some("envoy"));
    }
    assert_eq!(envoy.stat("http.ingress.downstream_rq_2xx"), Some(3));
    assert!(
        envoy.log().contains("starting main dispatch loop"),
        "{}",
        envoy.log()
    );
}

#[test]
fn envoy_routes_to_a_cluster() {
    let redis = Redis::start();
    let webdis = Webdis::start(redis.port());
    let envoy = Envoy::start(
        EnvoyConfig::new()
            .cluster("webdis", webdis.port())
            .route_to("webdis")
            .concurrency(2),
    );
    let r = get(envoy.port(), "/PING.raw", &[]).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "+PONG\r\n"));
    assert_eq!(envoy.stat("cluster.webdis.upstream_rq_200"), Some(1));
}

#[test]
fn envoy_loads_a_wasm_filter_and_passes_it_the_configuration() {
    let wasm = fixture_wasm("accept", 1, 2);
    let config = r#"{"harness": "accept \"quoted\""}"#;
    let envoy = Envoy::start(
        EnvoyConfig::new()
            .wasm(WasmPlugin::new(&wasm, config).allow_on_headers_stop_iteration(true)),
    );
    let r = get(envoy.port(), "/", &[]).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    let log = envoy.log();
    assert!(
        log.lines()
            .any(|l| l.contains("[info][wasm]") && l.contains(config)),
        "module's info log of its configuration missing:\n{log}"
    );
}

#[test]
fn envoy_exits_when_the_wasm_plugin_refuses_its_configuration() {
    let wasm = fixture_wasm("refuse", 0, 4);
    let log =
        Envoy::start_expect_failure(EnvoyConfig::new().wasm(WasmPlugin::new(&wasm, "refuse me")));
    assert!(
        log.lines()
            .any(|l| l.contains("[error][wasm]") && l.contains("refuse me")),
        "module's error log missing:\n{log}"
    );
    assert!(log.contains("Unable to create Wasm plugin refuse"), "{log}");
}

#[test]
#[should_panic(expected = "Envoy started although its configuration should be refused")]
fn expecting_failure_from_a_valid_config_panics() {
    Envoy::start_expect_failure(EnvoyConfig::new());
}

#[test]
#[should_panic(expected = "bash scripts/build.sh")]
fn a_missing_module_names_the_build_command() {
    stack::wasm_path("no-such-plugin");
}

#[test]
#[should_panic(expected = "no_such_plugin.wasm does not exist")]
fn a_module_is_looked_up_under_its_library_name() {
    // Cargo names `-p no-such-plugin`'s cdylib `no_such_plugin.wasm`.
    stack::wasm_path("no-such-plugin");
}
