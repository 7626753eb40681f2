//! A private `webdis`, the HTTP front through which the limiter reaches
//! Redis from upstream Envoy (which has no Redis host call).

use std::time::Duration;

use serde_json::json;

use crate::process::{tail, Proc};
use crate::{free_port, http, poll, require_tool, Error, RunDir};

const START_TIMEOUT: Duration = Duration::from_secs(10);
const PORT_ATTEMPTS: usize = 3;

/// `webdis` on `127.0.0.1:port`, talking to the Redis at `redis_port`.
#[derive(Debug)]
pub struct Webdis {
    port: u16,
    redis_port: u16,
    proc: Proc,
    dir: RunDir,
}

impl Webdis {
    /// Starts webdis for the Redis on `redis_port` (2 threads, pool of 4
    /// Redis connections per thread) and waits until `GET /PING.raw`
    /// answers `+PONG`, so Redis must be up.
    ///
    /// # Panics
    /// If `webdis` is missing or does not come up within 10 s.
    pub fn start(redis_port: u16) -> Self {
        Self::start_with(redis_port, 2, 4)
    }

    /// Like [`Webdis::start`] with explicit `threads` and `pool_size`.
    pub fn start_with(redis_port: u16, threads: u32, pool_size: u32) -> Self {
        Self::try_start(redis_port, threads, pool_size).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Webdis::start_with`], returning the failure instead of panicking.
    pub fn try_start(redis_port: u16, threads: u32, pool_size: u32) -> Result<Self, Error> {
        let binary = require_tool("webdis", "webdis");
        let dir = RunDir::new("webdis");
        let config_path = dir.file("webdis.json");
        let log = dir.file("webdis.out");
        let mut attempt = 1;
        loop {
            let port = free_port();
            // No "acl" key: every command is allowed, which is what the
            // limiter needs (EVALSHA, EVAL, SCRIPT LOAD).
            let config = json!({
                "redis_host": "127.0.0.1",
                "redis_port": redis_port,
                "http_host": "127.0.0.1",
                "http_port": port,
                "threads": threads,
                "pool_size": pool_size,
                "daemonize": false,
                "database": 0,
                "verbosity": 3,
                "logfile": dir.file("webdis.log").display().to_string(),
            });
            std::fs::write(&config_path, config.to_string())
                .map_err(|e| Error::new(format!("cannot write {}: {e}", config_path.display())))?;
            let args = vec![config_path.display().to_string()];
            let mut proc = Proc::spawn("webdis", &binary, &args, dir.path(), &log)?;
            let ready = poll(START_TIMEOUT, || {
                if let Some(status) = proc.exited() {
                    return Some(Err(format!("exited with {status}")));
                }
                match http::get_with_timeout(port, "/PING.raw", &[], Duration::from_millis(500)) {
                    Ok(r) if r.status == 200 && r.body == b"+PONG\r\n" => Some(Ok(())),
                    _ => None,
                }
            })
            .unwrap_or_else(|| Err(format!("did not answer /PING.raw within {START_TIMEOUT:?}")));
            match ready {
                Ok(()) => {
                    return Ok(Self {
                        port,
                        redis_port,
                        proc,
                        dir,
                    })
                }
                Err(why) => {
                    proc.kill();
                    if attempt >= PORT_ATTEMPTS {
                        return Err(Error::new(format!(
                            "webdis on port {port} (redis {redis_port}) {why}; logs in {}:\n{}\n{}",
                            dir.path().display(),
                            tail(&proc.log(), 10),
                            tail(&crate::process::read_log(&dir.file("webdis.log")), 10),
                        )));
                    }
                    attempt += 1;
                }
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `webdis` process id while it runs (for reading its CPU time
    /// from `/proc`).
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    pub fn redis_port(&self) -> u16 {
        self.redis_port
    }

    /// webdis's own log file (one line per request at verbosity 3+).
    pub fn log(&self) -> String {
        crate::process::read_log(&self.dir.file("webdis.log"))
    }

    /// Kills webdis now instead of at drop.
    pub fn stop(&mut self) {
        self.proc.kill();
    }
}
