//! Child processes that cannot outlive the code that started them.

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use crate::Error;

const PR_SET_PDEATHSIG: i32 = 1;
/// Signal numbers are the same on every Linux architecture we run on.
pub(crate) const SIGKILL: i32 = 9;
pub(crate) const SIGCONT: i32 = 18;
pub(crate) const SIGSTOP: i32 = 19;

extern "C" {
    // Both live in the C library std already links; declaring them avoids a
    // dependency on the `libc` crate for two calls.
    fn kill(pid: i32, sig: i32) -> i32;
    fn prctl(option: i32, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> i32;
}

/// Sends `sig` to `pid` (a negative pid addresses a process group).
pub(crate) fn send_signal(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { kill(pid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes the child `cmd` starts receive SIGKILL when the calling thread
/// dies (`PR_SET_PDEATHSIG`), so a client such as `wrk` cannot outlive a
/// load test that was killed or aborted. Spawn and wait on the same thread.
pub fn kill_with_this_thread(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec and only calls
    // async-signal-safe functions (prctl, getppid); it does not allocate.
    unsafe {
        cmd.pre_exec(move || {
            if prctl(PR_SET_PDEATHSIG, SIGKILL as u64, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if std::os::unix::process::parent_id() != parent {
                return Err(io::Error::other("parent exited during spawn"));
            }
            Ok(())
        });
    }
}

/// A running component process.
///
/// Three layers keep it from leaking:
/// * `Drop` kills its whole process group with SIGKILL and reaps it, also when
///   a test panics (unwinding runs `Drop`);
/// * the child asks the kernel (`PR_SET_PDEATHSIG`) to SIGKILL it when the
///   thread that spawned it dies, which covers a test runner killed with
///   SIGKILL or aborting. Consequence: create and drop components on the same
///   thread (every test and the load test do);
/// * it runs in its own process group, so a wrapper script that forks (for
///   example a custom `ENVOY_BIN`) is killed together with what it started.
#[derive(Debug)]
pub(crate) struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Starts `program args` in `dir` with stdin closed and stdout+stderr
    /// appended to `log`.
    pub(crate) fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        dir: &Path,
        log: &Path,
    ) -> Result<Self, Error> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Error::new(format!("{name}: cannot open log {}: {e}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(|e| Error::new(format!("{name}: cannot dup log fd: {e}")))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        kill_with_this_thread(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| Error::new(format!("{name}: cannot start {}: {e}", program.display())))?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        })
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(status)` once the process has exited (it is then reaped).
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        match self.child.as_mut() {
            None => None,
            Some(child) => child.try_wait().ok().flatten(),
        }
    }

    /// Sends a signal to the process itself (not its group).
    pub(crate) fn signal(&self, sig: i32) -> io::Result<()> {
        match self.pid() {
            Some(pid) => send_signal(pid as i32, sig),
            None => Err(io::Error::other(format!("{} is not running", self.name))),
        }
    }

    /// Kills the process group with SIGKILL and reaps the process, so its
    /// ports are free when this returns. Idempotent.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pgid = child.id() as i32;
            // ESRCH (already gone) is fine: we only need it dead.
            let _ = send_signal(-pgid, SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log
    }

    /// The log so far (lossy UTF-8), or a note saying why it is unreadable.
    pub(crate) fn log(&self) -> String {
        read_log(&self.log)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) fn read_log(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// The last `n` lines of an Envoy log for error messages, without the
/// `[info][main]` start-up banner (extension lists, header maps: long lines
/// that bury the interesting ones) and with lines cut to 400 characters.
pub fn envoy_log_excerpt(log: &str, n: usize) -> String {
    let lines: Vec<String> = log
        .lines()
        .filter(|l| !l.contains("][info][main] "))
        .map(|l| match l.char_indices().nth(400) {
            Some((cut, _)) => format!("{}...", &l[..cut]),
            None => l.to_owned(),
        })
        .collect();
    let start = lines.len().saturating_sub(n);
    lines.get(start..).unwrap_or_default().join("\n")
}

/// The last `n` lines of `text`, for error messages.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines.get(start..).unwrap_or_default().join("\n")
}
