//! Where processes run: every thread of a process pinned to some CPUs
//! with `taskset -a -p`.

use stack::Envoy;

/// Pins every thread of `envoy` to `cpu` (`taskset -a -p`). Threads Envoy
/// starts later inherit it from the thread that starts them.
pub fn pin_to_cpu(envoy: &Envoy, cpu: usize) {
    taskset(envoy, &cpu.to_string());
}

/// Lets every thread of `envoy` run on CPUs `first..=last` again.
pub fn pin_to_cpu_range(envoy: &Envoy, first: usize, last: usize) {
    taskset(envoy, &format!("{first}-{last}"));
}

/// Pins every thread of process `pid` to `cpu` (`taskset -a -p`).
pub fn pin_process_to_cpu(pid: u32, cpu: usize) {
    taskset_pid(pid, &cpu.to_string());
}

fn taskset(envoy: &Envoy, cpus: &str) {
    taskset_pid(envoy.pid().expect("Envoy is running"), cpus);
}

fn taskset_pid(pid: u32, cpus: &str) {
    let status = std::process::Command::new(stack::require_tool("taskset", "util-linux"))
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run taskset: {e}"));
    assert!(
        status.success(),
        "taskset -a -p -c {cpus} {pid} failed: {status}"
    );
}
