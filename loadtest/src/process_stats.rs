//! What `/proc` says of a process and of the machine's CPUs: a process's
//! CPU time and resident memory, every CPU's idle and stolen time.

use stack::Envoy;

/// Envoy's resident memory in kB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kb(envoy: &Envoy) -> u64 {
    let pid = envoy.pid().expect("Envoy is running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// CPU time Envoy's process has used so far (user + system, every
/// thread), in seconds, from `/proc/<pid>/stat`. Read around a run, it
/// gives the gateway's CPU cost per request, which the machine's drift
/// moves far less than requests/s (a busy neighbour slows the run without
/// making each request cost more cycles).
pub fn cpu_seconds(envoy: &Envoy) -> f64 {
    process_cpu_seconds(envoy.pid().expect("Envoy is running"))
}

/// CPU time process `pid` has used so far (user + system, every thread),
/// in seconds, from `/proc/<pid>/stat`.
pub fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/stat: {e}"));
    // The command name (field 2) may hold spaces; the fields after its
    // closing parenthesis are plain numbers. utime and stime are fields 14
    // and 15, the 12th and 13th after the parenthesis.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|v| {
            v.parse::<u64>()
                .unwrap_or_else(|_| panic!("bad /proc/{pid}/stat: {stat}"))
        })
        .sum();
    ticks as f64 / clock_ticks_per_second()
}

/// One CPU's time since boot, in clock ticks, from `/proc/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTicks {
    /// Idle or waiting for I/O.
    pub idle: u64,
    /// Taken by the hypervisor for other machines while this one wanted it.
    pub stolen: u64,
    /// Everything, the two above included.
    pub total: u64,
}

impl CpuTicks {
    /// What passed between `earlier` and this reading.
    pub fn since(&self, earlier: &CpuTicks) -> CpuTicks {
        CpuTicks {
            idle: self.idle.saturating_sub(earlier.idle),
            stolen: self.stolen.saturating_sub(earlier.stolen),
            total: self.total.saturating_sub(earlier.total),
        }
    }
}

/// Every CPU's times, by CPU number (`cpuN` lines of `/proc/stat`).
///
/// # Panics
/// When `/proc/stat` cannot be read.
pub fn cpu_ticks() -> Vec<CpuTicks> {
    let stat = std::fs::read_to_string("/proc/stat")
        .unwrap_or_else(|e| panic!("cannot read /proc/stat: {e}"));
    parse_cpu_ticks(&stat)
}

/// The `cpuN` lines of a `/proc/stat` text: user nice system idle iowait
/// irq softirq steal (guest times are already inside user and nice).
fn parse_cpu_ticks(stat: &str) -> Vec<CpuTicks> {
    stat.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .take(8)
                .map(|n| n.parse().unwrap_or(0))
                .collect();
            let at = |i: usize| v.get(i).copied().unwrap_or(0);
            CpuTicks {
                idle: at(3) + at(4),
                stolen: at(7),
                total: v.iter().sum(),
            }
        })
        .collect()
}

/// `getconf CLK_TCK`: the unit of `/proc/<pid>/stat`'s times.
fn clock_ticks_per_second() -> f64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .unwrap_or_else(|e| panic!("cannot run getconf CLK_TCK: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("getconf CLK_TCK printed {:?}", out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_read_per_cpu_lines_only() {
        let stat = "cpu  10 0 5 100 2 0 1 3 0 0\ncpu0 4 0 2 50 1 0 0 1 0 0\ncpu1 6 0 3 50 1 0 1 2 0 0\nintr 5\n";
        let cpus = parse_cpu_ticks(stat);
        assert_eq!(cpus.len(), 2);
        assert_eq!(
            cpus[1],
            CpuTicks {
                idle: 51,
                stolen: 2,
                total: 63
            }
        );
    }
}
