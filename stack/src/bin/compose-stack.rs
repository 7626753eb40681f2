//! `compose-stack`: runs `docker-compose.yaml` without Docker, in the
//! foreground, on the same ports of 127.0.0.1 (see `stack::compose`).
//!
//! ```sh
//! cargo run -p stack --bin compose-stack                 # until Ctrl-C
//! cargo run -p stack --bin compose-stack -- --for 600    # at most 10 minutes
//! ```
//!
//! Prints each service with its ports and `compose-stack: ready` once every
//! one answers; exits 1 when one cannot start or exits, 0 at the end of
//! `--for`. Every process it started dies with it (also on Ctrl-C or
//! SIGKILL: they are tied to it with `PR_SET_PDEATHSIG`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

const USAGE: &str = "usage: compose-stack [--file docker-compose.yaml] [--for SECONDS]";

fn main() {
    let mut file = stack::repo_root().join("docker-compose.yaml");
    let mut limit: Option<u64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--file" => match args.next() {
                Some(path) => file = path.into(),
                None => fail_usage("--file needs a path"),
            },
            "--for" => match args.next().and_then(|v| v.parse().ok()).filter(|v| *v > 0) {
                Some(seconds) => limit = Some(seconds),
                None => fail_usage("--for needs a positive number of seconds"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other => fail_usage(&format!("unknown argument {other:?}")),
        }
    }
    let started = Instant::now();
    let mut compose = match stack::ComposeStack::start(&file) {
        Ok(compose) => compose,
        Err(e) => {
            eprintln!("compose-stack: {e}");
            std::process::exit(1);
        }
    };
    for s in &compose.services {
        let ports: Vec<String> = s.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        println!(
            "compose-stack: {:<9} pid {:<8} {:<40} {}",
            s.name,
            s.pid().unwrap_or(0),
            if ports.is_empty() {
                "(no published port)".to_owned()
            } else {
                ports.join(" ")
            },
            s.note
        );
    }
    println!(
        "compose-stack: ready in {:.1} s (from {}; logs in {})",
        started.elapsed().as_secs_f64(),
        file.display(),
        compose.dir.display()
    );
    let deadline = limit.map(|s| Instant::now() + Duration::from_secs(s));
    loop {
        if let Some(why) = compose.exited() {
            eprintln!("compose-stack: {why}");
            std::process::exit(1);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            println!("compose-stack: --for elapsed; stopping");
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn fail_usage(why: &str) -> ! {
    eprintln!("compose-stack: {why}\n{USAGE}");
    std::process::exit(2);
}
