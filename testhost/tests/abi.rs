//! The host's own behaviour, on a small hand-written module
//! (`tests/wat/probe.wat`, assembled with wabt's `wat2wasm`): loading, start
//! functions, values handed over through `proxy_on_memory_allocate`, header
//! statuses per ABI version, cumulative body sizes, hangs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Test code: JSON built with `value["key"] = ...` and answers indexed
// after their count was asserted read better than `get` chains.
#![allow(clippy::indexing_slicing)]

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use testhost::{Host, HttpAnswer, Request, Setup, Verdict};

const INITIALIZE_THEN_MAIN: &str = r#"
  (func (export "_initialize") (global.set $started (i32.const 1)))
  (func (export "main") (param i32 i32) (result i32)
    (if (i32.eq (global.get $started) (i32.const 1)) (then (global.set $started (i32.const 2))))
    (i32.const 0))"#;
const START_ONLY: &str = r#"(func (export "_start") (global.set $started (i32.const 2)))"#;

/// Assembles WebAssembly text with wabt's `wat2wasm`.
fn assemble(text: &str) -> Vec<u8> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("testhost-abi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let name = NEXT.fetch_add(1, Ordering::SeqCst);
    let (wat, wasm) = (
        dir.join(format!("{name}.wat")),
        dir.join(format!("{name}.wasm")),
    );
    std::fs::write(&wat, text).unwrap();
    let tool = stack::require_tool("wat2wasm", "wabt");
    let out = Command::new(tool)
        .arg(&wat)
        .arg("-o")
        .arg(&wasm)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "wat2wasm: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&wasm).unwrap()
}

struct Probe {
    abi: &'static str,
    headers: i32,
    body: i32,
    entry: &'static str,
    extra_import: &'static str,
    tick_ms: u32,
}

impl Probe {
    fn new(abi: &'static str, headers: i32, body: i32) -> Self {
        Self {
            abi,
            headers,
            body,
            entry: INITIALIZE_THEN_MAIN,
            extra_import: "",
            tick_ms: 0,
        }
    }

    fn wasm(&self) -> Vec<u8> {
        let text = include_str!("wat/probe.wat")
            .replace("@ABI@", self.abi)
            .replace("@HEADERS@", &self.headers.to_string())
            .replace("@BODY@", &self.body.to_string())
            .replace("@ENTRY@", self.entry)
            .replace("@EXTRA_IMPORT@", self.extra_import)
            .replace("@TICK_MS@", &self.tick_ms.to_string());
        assemble(&text)
    }

    fn load(&self) -> Result<Host, testhost::Error> {
        // Level 0 (trace): the probe logs sizes and statuses as levels.
        let setup = Setup {
            log_level: 0,
            ..Setup::default()
        };
        Host::load(&self.wasm(), b"{}", setup)
    }
}

fn body_sizes(ex: &testhost::Exchange) -> Vec<u32> {
    ex.logs
        .iter()
        .filter(|l| l.message == "body")
        .map(|l| l.level)
        .collect()
}

#[test]
fn values_are_handed_over_through_the_guest_allocator() {
    let mut host = Probe::new("proxy_abi_version_0_2_1", 0, 0).load().unwrap();
    let ex = host.run(&Request::get("/some/path?q=1"));
    assert_eq!((ex.verdict.clone(), ex.status), (Verdict::Forwarded, 200));
    let messages: Vec<(u32, &str)> = ex
        .logs
        .iter()
        .map(|l| (l.level, l.message.as_str()))
        .collect();
    assert_eq!(
        messages,
        [
            (2, "/some/path?q=1"),
            (2, "127.0.0.1:40000"),
            // A missing property answers NotFound (1).
            (1, "no_such_property"),
        ]
    );
}

#[test]
fn abi_0_2_100_honours_header_stop_iteration_and_sizes_are_cumulative() {
    // Headers StopIteration, body StopIterationAndBuffer until the end.
    let mut host = Probe::new("proxy_abi_version_0_2_100", 1, 1)
        .load()
        .unwrap();
    let ex = host.run(&Request::post("/", &[b"ab", b"cde", b"f"]));
    assert_eq!(
        (ex.verdict.clone(), ex.status),
        (Verdict::Forwarded, 200),
        "{ex:?}"
    );
    assert_eq!(body_sizes(&ex), [2, 5, 6]);
    assert_eq!(ex.upstream_body, b"abcdef");
}

#[test]
fn a_continued_body_chunk_is_passed_on_and_the_next_size_starts_over() {
    let mut host = Probe::new("proxy_abi_version_0_2_100", 1, 0)
        .load()
        .unwrap();
    let ex = host.run(&Request::post("/", &[b"ab", b"cde"]));
    assert_eq!(ex.verdict, Verdict::Forwarded, "{ex:?}");
    assert_eq!(body_sizes(&ex), [2, 3]);
    assert_eq!(ex.upstream_body, b"abcde");
}

#[test]
fn abi_0_2_1_header_stop_iteration_stops_everything_and_nothing_resumes() {
    // Higress, like Envoy without allow_on_headers_stop_iteration, turns 1
    // into StopAllIterationAndWatermark for 0_2_1: the body never reaches
    // the module, and a module that never continues hangs the request.
    let mut host = Probe::new("proxy_abi_version_0_2_1", 1, 0).load().unwrap();
    let ex = host.run(&Request::post("/", &[b"ab"]));
    assert_eq!(
        ex.verdict,
        Verdict::Hang {
            waiting: "request headers"
        },
        "{ex:?}"
    );
    assert_eq!(body_sizes(&ex), Vec::<u32>::new());
    assert_eq!(ex.upstream_headers, None);
}

#[test]
fn a_stop_all_resumed_by_a_timer_hands_over_the_body_that_arrived_meanwhile() {
    let mut probe = Probe::new("proxy_abi_version_0_2_1", 1, 0);
    probe.tick_ms = 100;
    let mut host = probe.load().unwrap();
    // The chunks arrived while everything was stopped: one body callback
    // with all of them once the tick resumes the stream.
    let ex = host.run(&Request::post("/", &[b"ab", b"c"]));
    assert_eq!(
        (ex.verdict.clone(), ex.status),
        (Verdict::Forwarded, 200),
        "{ex:?}"
    );
    assert_eq!(body_sizes(&ex), [3]);
    assert_eq!(ex.upstream_body, b"abc");
    // Without a body, resuming passes the headers with the end of stream
    // and no body callback at all.
    let ex = host.run(&Request::get("/"));
    assert_eq!(ex.verdict, Verdict::Forwarded, "{ex:?}");
    assert_eq!(body_sizes(&ex), Vec::<u32>::new());
}

#[test]
fn header_stop_iteration_without_a_body_hangs() {
    let mut host = Probe::new("proxy_abi_version_0_2_100", 1, 0)
        .load()
        .unwrap();
    let ex = host.run(&Request::get("/"));
    assert_eq!(
        ex.verdict,
        Verdict::Hang {
            waiting: "request headers"
        }
    );
    // The host goes on serving: the next request hangs the same way, not worse.
    assert_eq!(
        host.run(&Request::get("/")).verdict,
        Verdict::Hang {
            waiting: "request headers"
        }
    );
}

#[test]
fn start_runs_when_there_is_no_initialize() {
    let mut probe = Probe::new("proxy_abi_version_0_2_1", 0, 0);
    probe.entry = START_ONLY;
    assert!(probe.load().is_ok());
    // Without any start function the module refuses its configuration,
    // which proves on_configure reads what the start functions did.
    probe.entry = "";
    let err = probe.load().unwrap_err();
    assert!(err.0.contains("refused its configuration"), "{err}");
}

#[test]
fn an_unknown_import_fails_loading_naming_it() {
    let mut probe = Probe::new("proxy_abi_version_0_2_1", 0, 0);
    probe.extra_import = r#"(import "env" "proxy_frobnicate" (func (param i32) (result i32)))"#;
    let err = probe.load().unwrap_err();
    assert!(err.0.contains("env.proxy_frobnicate"), "{err}");
}

#[test]
fn a_module_without_an_abi_marker_is_refused() {
    let probe = Probe::new("not_an_abi_marker", 0, 0);
    let err = probe.load().unwrap_err();
    assert!(err.0.contains("ABI version"), "{err}");
}

const AUTH: &str = "outbound|80||auth.static";

fn callout(answers: Option<Vec<HttpAnswer>>) -> Host {
    // Level 0 (trace): the module logs the call's status as the level.
    let mut setup = Setup {
        log_level: 0,
        ..Setup::default()
    };
    if let Some(answers) = answers {
        setup.http.insert(AUTH.to_string(), answers);
    }
    Host::load(&assemble(include_str!("wat/callout.wat")), b"", setup).unwrap()
}

fn call_status(ex: &testhost::Exchange) -> Vec<u32> {
    ex.logs
        .iter()
        .filter(|l| l.message == "call")
        .map(|l| l.level)
        .collect()
}

#[test]
fn an_http_call_is_answered_from_the_script_on_the_root_context() {
    let answer = HttpAnswer {
        headers: vec![(b":status".to_vec(), b"200".to_vec())],
        body: b"denied!".to_vec(),
        trailers: Vec::new(),
    };
    let mut host = callout(Some(vec![answer]));
    let ex = host.run(&Request::get("/private"));
    assert_eq!(call_status(&ex), [0]);
    assert_eq!(ex.status, 403, "{ex:?}");
    assert_eq!(ex.response_body, b"denied!");
    assert_eq!(ex.upstream_headers, None);
    let [call] = ex.http_calls.as_slice() else {
        panic!("{:?}", ex.http_calls)
    };
    assert_eq!(call.upstream, AUTH);
    assert_eq!(call.body, b"ping");
    assert_eq!(call.timeout_ms, 1000);
    assert!(call
        .headers
        .contains(&(b":authority".to_vec(), b"auth".to_vec())));
    // No answer left: the call fails (no headers) and the module lets the
    // request go on.
    let ex = host.run(&Request::get("/private"));
    assert_eq!(
        (ex.verdict.clone(), ex.status),
        (Verdict::Forwarded, 200),
        "{ex:?}"
    );
    assert_eq!(ex.http_calls.len(), 1);
}

#[test]
fn an_http_call_to_an_unknown_cluster_is_a_bad_argument() {
    let mut host = callout(None);
    let ex = host.run(&Request::get("/"));
    assert_eq!(call_status(&ex), [2]);
    assert_eq!(ex.verdict, Verdict::Forwarded);
    assert!(ex.http_calls.is_empty());
}
