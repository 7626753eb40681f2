//! A private `redis-server`.

use std::path::PathBuf;
use std::time::Duration;

use crate::process::{tail, Proc, SIGCONT, SIGSTOP};
use crate::resp::{self, Resp};
use crate::{free_port, poll, require_tool, Error, RunDir};

const START_TIMEOUT: Duration = Duration::from_secs(10);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts with a new port when the first one was taken in the meantime.
const PORT_ATTEMPTS: usize = 3;

/// A `redis-server` on `127.0.0.1:port` without persistence. It can be
/// stopped and started again on the same port ([`Redis::stop`],
/// [`Redis::restart`]) or frozen with SIGSTOP ([`Redis::freeze`]) to look
/// like a Redis that accepts connections but never answers.
#[derive(Debug)]
pub struct Redis {
    port: u16,
    binary: PathBuf,
    // Field order matters: the process dies before its directory is removed.
    proc: Option<Proc>,
    frozen: bool,
    dir: RunDir,
}

impl Redis {
    /// Starts Redis on a free port and waits until `PING` answers.
    ///
    /// # Panics
    /// If `redis-server` is missing or does not come up within 10 s.
    pub fn start() -> Self {
        Self::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Redis::start`], returning the failure instead of panicking.
    pub fn try_start() -> Result<Self, Error> {
        let mut redis = Self {
            port: free_port(),
            binary: require_tool("redis-server", "redis-server"),
            proc: None,
            frozen: false,
            dir: RunDir::new("redis"),
        };
        let mut attempt = 1;
        loop {
            match redis.spawn() {
                Ok(()) => return Ok(redis),
                Err(e) if attempt >= PORT_ATTEMPTS => return Err(e),
                Err(_) => {
                    attempt += 1;
                    redis.port = free_port();
                }
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_running(&self) -> bool {
        self.proc.is_some()
    }

    /// The `redis-server` process id while it runs (for reading its CPU
    /// time from `/proc`).
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().and_then(Proc::pid)
    }

    /// Kills Redis (SIGKILL, no shutdown courtesy: a crash is the harder
    /// case) and waits until it is gone. Its port is free afterwards.
    pub fn stop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill();
        }
        self.frozen = false;
    }

    /// Starts a fresh, empty Redis on the same port (stopping the old one
    /// first if it still runs).
    ///
    /// # Panics
    /// If it does not come up.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("{e}");
        }
    }

    /// Stops the process with SIGSTOP: connections still open, nothing is
    /// answered, the way a hung Redis looks to its clients.
    pub fn freeze(&mut self) {
        let proc = self.proc.as_ref().expect("freeze: Redis is not running");
        proc.signal(SIGSTOP)
            .unwrap_or_else(|e| panic!("SIGSTOP to redis failed: {e}"));
        self.frozen = true;
    }

    /// Resumes a frozen Redis (SIGCONT).
    pub fn thaw(&mut self) {
        if let Some(proc) = self.proc.as_ref() {
            proc.signal(SIGCONT)
                .unwrap_or_else(|e| panic!("SIGCONT to redis failed: {e}"));
        }
        self.frozen = false;
    }

    /// Runs one command with a fresh connection (5 s timeout).
    pub fn command(&self, args: &[&[u8]]) -> std::io::Result<Resp> {
        resp::command(self.port, args, COMMAND_TIMEOUT)
    }

    /// Every key, via `KEYS *` (fine for the few keys a test creates).
    ///
    /// # Panics
    /// If Redis does not answer with an array.
    pub fn keys(&self) -> Vec<Vec<u8>> {
        match self.command(&[b"KEYS", b"*"]) {
            Ok(reply @ Resp::Array(_)) => reply.bulk_items(),
            other => panic!("KEYS * on redis:{} answered {other:?}", self.port),
        }
    }

    /// The Redis log so far.
    pub fn log(&self) -> String {
        crate::process::read_log(&self.dir.file("redis.log"))
    }

    fn spawn(&mut self) -> Result<(), Error> {
        let args: Vec<String> = [
            "--bind",
            "127.0.0.1",
            "--port",
            &self.port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--dir",
            &self.dir.path().display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let log = self.dir.file("redis.log");
        let mut proc = Proc::spawn("redis-server", &self.binary, &args, self.dir.path(), &log)?;
        let port = self.port;
        let ready = poll(START_TIMEOUT, || {
            if let Some(status) = proc.exited() {
                return Some(Err(status));
            }
            match resp::command(port, &[b"PING"], Duration::from_millis(500)) {
                Ok(Resp::Simple(pong)) if pong == "PONG" => Some(Ok(())),
                _ => None,
            }
        });
        match ready {
            Some(Ok(())) => {
                self.proc = Some(proc);
                Ok(())
            }
            other => {
                let why = match other {
                    Some(Err(status)) => format!("exited with {status}"),
                    _ => format!("did not answer PING within {START_TIMEOUT:?}"),
                };
                proc.kill();
                Err(Error::new(format!(
                    "redis-server on port {port} {why}; log {}:\n{}",
                    proc.log_path().display(),
                    tail(&proc.log(), 20)
                )))
            }
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if self.frozen {
            // SIGKILL works on stopped processes too; thaw anyway so nothing
            // is left half-dead should the kill race with something else.
            if let Some(proc) = self.proc.as_ref() {
                let _ = proc.signal(SIGCONT);
            }
        }
        self.stop();
    }
}
