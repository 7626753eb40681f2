//! One measured run against the external stack: wrk against every port
//! at once, progress from the listeners' counters, Redis commands counted
//! around it; and the run's state it reads them with.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::options::Options;
use crate::redis_stats::commands_since;
use crate::target::Target;
use crate::wrk::{self, settle, Listener, Load, Progress, Requests, Sample, WrkResult};

/// The run's state: options, the stack, and where results go.
#[derive(Debug)]
pub struct External<'a> {
    pub opts: &'a Options,
    pub target: &'a Target,
    pub script_dir: std::path::PathBuf,
}

impl External<'_> {
    pub(super) fn redis_commands(&self) -> BTreeMap<String, u64> {
        crate::redis_stats::redis_commands_at(self.target.redis_port)
    }
}

/// How to drive one measured run.
#[derive(Debug, Clone, Copy)]
pub(super) struct Drive<'a> {
    pub(super) seconds: u64,
    pub(super) connections: u32,
    pub(super) requests: Requests<'a>,
    pub(super) warm_up: bool,
}

/// What one measured run saw.
pub(super) struct Measured {
    pub(super) wrk: WrkResult,
    pub(super) per_gateway: Vec<WrkResult>,
    pub(super) redis_commands: BTreeMap<String, u64>,
    pub(super) samples: Vec<Sample>,
}

/// wrk against every port at once, progress from the listeners' counters,
/// Redis commands counted around the measured part.
pub(super) fn measure(
    ext: &External<'_>,
    label: &str,
    ports: &[u16],
    listeners: &[Listener],
    drive: Drive<'_>,
) -> Measured {
    let load = |port: u16, seconds: u64| Load {
        port,
        seconds,
        connections: drive.connections,
        requests: drive.requests,
        timeout: Duration::from_secs(2),
        cpu: None,
    };
    if drive.warm_up && !ext.opts.smoke {
        for port in ports {
            wrk::run(&load(*port, 1), &ext.script_dir);
        }
        settle();
    }
    let mut attempt = 0;
    let (per_gateway, before, progress) = loop {
        attempt += 1;
        let before = ext.redis_commands();
        let progress = Progress::start_on(label, listeners, drive.seconds);
        let runs: Result<Vec<WrkResult>, wrk::Unusable> = std::thread::scope(|scope| {
            let runs: Vec<_> = ports
                .iter()
                .map(|port| {
                    let load = load(*port, drive.seconds);
                    let dir = &ext.script_dir;
                    scope.spawn(move || wrk::try_run(&load, dir))
                })
                .collect();
            runs.into_iter()
                .map(|run| {
                    run.join()
                        .unwrap_or_else(|_| panic!("{label}: wrk thread panicked"))
                })
                .collect()
        });
        match runs {
            Ok(runs) => break (runs, before, progress),
            Err(lost) if attempt < wrk::ATTEMPTS => {
                drop(progress);
                println!("[loadtest]   {label}: {lost}; measuring again");
            }
            Err(lost) => panic!("{label}: {lost}, {} times in a row", wrk::ATTEMPTS),
        }
    };
    let samples = progress.finish();
    settle();
    let redis_commands = commands_since(&before, &ext.redis_commands());
    let wrk = per_gateway.iter().skip(1).fold(
        per_gateway.first().cloned().unwrap_or_default(),
        |sum, r| sum.combined(r),
    );
    Measured {
        wrk,
        per_gateway,
        redis_commands,
        samples,
    }
}

pub(super) fn current_window() -> u64 {
    (stack::unix_now() / 60.0).floor() as u64 * 60
}
