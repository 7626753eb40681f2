//! Running `wrk` with a hard time bound and reading what it measured.
//!
//! Every run appends `lua/report.lua` to its script, so wrk ends with one
//! `LOADTEST_RESULT {json}` line: answers by HTTP status, socket errors and
//! the latency percentiles wrk's text report lacks (p99.9). wrk prints
//! nothing while it runs; [`Progress`] does that from Envoy's admin stats.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The status-counting reporter appended to every script.
const REPORTER: &str = include_str!("../lua/report.lua");

/// Socket-level failures wrk counted (`status` counts non-2xx/3xx answers,
/// which are not failures here: 429 is often the expected answer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketErrors {
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    pub status: u64,
    pub timeout: u64,
}

impl SocketErrors {
    /// Everything but `status`.
    pub fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout
    }
}

/// Latency of the answers, in microseconds, from wrk's HdrHistogram.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub min: u64,
    pub mean: f64,
    pub max: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
}

/// One `LOADTEST_RESULT` line.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Reported {
    requests: u64,
    duration_us: u64,
    errors: SocketErrors,
    latency_us: Latency,
    statuses: BTreeMap<String, u64>,
    /// wrk threads whose status table read back as nil (see `report.lua`).
    #[serde(default)]
    statuses_lost: u64,
}

/// Why a wrk run's result cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// wrk lost the per-status counts of some threads: a wrk quirk, worth
    /// running the measurement again.
    CountsLost(u64),
    /// wrk printed its own summary but not the reporter's line, with
    /// nothing on stderr: another wrk quirk (seen once in a few hundred
    /// runs, with four wrk processes sharing one CPU), worth running the
    /// measurement again. A reporter that failed in Lua says so on stderr
    /// and is [`Unusable::Bad`].
    ReportLost,
    /// The output is not what `report.lua` prints.
    Bad(String),
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::CountsLost(n) => write!(f, "wrk lost the status counts of {n} thread(s)"),
            Unusable::ReportLost => f.write_str("wrk ended without the reporter's line"),
            Unusable::Bad(e) => f.write_str(e),
        }
    }
}

/// Measurements retried when wrk loses its counts or its report, before
/// giving up.
pub const ATTEMPTS: u32 = 3;

/// What one or more wrk runs measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WrkResult {
    /// Completed answers.
    pub requests: u64,
    pub seconds: f64,
    pub requests_per_sec: f64,
    pub latency_us: Latency,
    /// Answers by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    pub errors: SocketErrors,
}

impl WrkResult {
    pub fn status(&self, code: u16) -> u64 {
        self.statuses.get(&code).copied().unwrap_or(0)
    }

    /// Answers whose status is not in `expected`.
    pub fn unexpected(&self, expected: &[u16]) -> u64 {
        self.statuses
            .iter()
            .filter(|(code, _)| !expected.contains(code))
            .map(|(_, n)| n)
            .sum()
    }

    /// `200: 5, 429: 1000` for reports.
    pub fn statuses_text(&self) -> String {
        if self.statuses.is_empty() {
            return "none".to_owned();
        }
        self.statuses
            .iter()
            .map(|(code, n)| format!("{code}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Two runs side by side (two gateways at once): counts add up, req/s
    /// add up, latency is the worse of the two for each percentile (an
    /// upper bound; wrk's histograms cannot be merged from its report).
    pub fn combined(&self, other: &WrkResult) -> WrkResult {
        let mut statuses = self.statuses.clone();
        for (code, n) in &other.statuses {
            *statuses.entry(*code).or_default() += n;
        }
        let a = &self.latency_us;
        let b = &other.latency_us;
        let requests = self.requests + other.requests;
        WrkResult {
            requests,
            seconds: self.seconds.max(other.seconds),
            requests_per_sec: self.requests_per_sec + other.requests_per_sec,
            latency_us: Latency {
                min: a.min.min(b.min),
                mean: (a.mean * self.requests as f64 + b.mean * other.requests as f64)
                    / requests.max(1) as f64,
                max: a.max.max(b.max),
                p50: a.p50.max(b.p50),
                p90: a.p90.max(b.p90),
                p99: a.p99.max(b.p99),
                p99_9: a.p99_9.max(b.p99_9),
            },
            statuses,
            errors: SocketErrors {
                connect: self.errors.connect + other.errors.connect,
                read: self.errors.read + other.errors.read,
                write: self.errors.write + other.errors.write,
                status: self.errors.status + other.errors.status,
                timeout: self.errors.timeout + other.errors.timeout,
            },
        }
    }

    /// Consecutive runs against the same gateway (the soak's phases).
    pub fn followed_by(&self, next: &WrkResult) -> WrkResult {
        let mut sum = self.combined(next);
        sum.seconds = self.seconds + next.seconds;
        sum.requests_per_sec = sum.requests as f64 / sum.seconds.max(1e-9);
        sum
    }
}

/// The shape of the requests: a plain GET of `/`, or a POST with a JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requests<'a> {
    Get,
    PostJson(&'a str),
    /// `POST` of the JSON body `.1` to the path `.0` (printable ASCII,
    /// no space, quote or backslash).
    PostJsonTo(&'a str, &'a str),
    /// `GET /` with header `.0` set to `client-1` … `client-<.1>` in turn,
    /// one value per request (distinct keys for a per-header limit).
    GetRotating(&'a str, u32),
}

/// One wrk invocation.
#[derive(Debug, Clone)]
pub struct Load<'a> {
    pub port: u16,
    pub seconds: u64,
    pub connections: u32,
    pub requests: Requests<'a>,
    /// wrk's `--timeout`: an answer slower than this is counted as a
    /// timeout error instead of a latency.
    pub timeout: Duration,
    /// Runs wrk on this CPU only (`taskset -c`), away from the gateways.
    pub cpu: Option<usize>,
}

/// Writes the wrk script for `requests` into `dir` and returns its path.
fn script(dir: &Path, requests: Requests<'_>) -> PathBuf {
    let (name, shape) = match requests {
        Requests::Get => ("get.lua".to_owned(), String::new()),
        Requests::GetRotating(header, values) => {
            assert!(
                header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-'),
                "header name {header:?} needs quoting in Lua"
            );
            // The requests are formatted once, on the first call (wrk has
            // set the Host header by then), and taken in turn, so the
            // connections in flight carry consecutive, distinct values.
            let shape = format!(
                "local values = {values}\nlocal turn = 0\nlocal formatted = nil\n\
                 request = function()\n\
                 if formatted == nil then\n\
                 formatted = {{}}\n\
                 for k = 1, values do\n\
                 formatted[k] = wrk.format(nil, nil, {{[\"{header}\"] = \"client-\" .. k}})\n\
                 end\n\
                 end\n\
                 turn = turn % values + 1\n\
                 return formatted[turn]\n\
                 end\n"
            );
            (format!("get-rotating-{header}-{values}.lua"), shape)
        }
        Requests::PostJson(body) | Requests::PostJsonTo("/", body) => post_script(body, "", ""),
        Requests::PostJsonTo(path, body) => {
            assert!(
                path.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'),
                "path {path:?} does not fit a Lua string"
            );
            post_script(body, &format!("wrk.path = \"{path}\"\n"), path)
        }
    };
    let path = dir.join(name);
    let text = format!("{shape}{REPORTER}");
    let mut file = std::fs::File::create(&path)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    file.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// The script's name and request shape for a JSON `POST` (`set_path`
/// first, `path` in the name's hash).
fn post_script(body: &str, set_path: &str, path: &str) -> (String, String) {
    // A Lua long bracket holds any JSON without escaping.
    assert!(!body.contains("]==]"), "body closes the Lua long bracket");
    let shape = format!(
        "{set_path}wrk.method = \"POST\"\nwrk.body = [==[{body}]==]\n\
         wrk.headers[\"Content-Type\"] = \"application/json\"\n"
    );
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in path.bytes().chain(body.bytes()) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
    }
    (format!("post-{hash:016x}.lua"), shape)
}

/// Runs `wrk -t1 -c<connections> -d<seconds>s` against `/` on
/// `127.0.0.1:port`, scripts written into `script_dir`.
///
/// # Panics
/// If wrk is missing, fails, runs 30 s past its duration (it is then
/// killed), ends without its `LOADTEST_RESULT` line with an error on
/// stderr, or loses its counts or its report [`ATTEMPTS`] times in a row.
pub fn run(load: &Load<'_>, script_dir: &Path) -> WrkResult {
    for attempt in 1..=ATTEMPTS {
        match try_run(load, script_dir) {
            Ok(result) => return result,
            Err(lost) if attempt < ATTEMPTS => {
                println!("[loadtest]   {lost}; running it again");
            }
            Err(lost) => panic!("{lost}, {ATTEMPTS} times in a row"),
        }
    }
    unreachable!("the last attempt returns or panics")
}

/// [`run`] once: `Err` when wrk lost its per-status counts or the
/// reporter's line (run it again).
///
/// # Panics
/// As [`run`], for every other failure.
pub fn try_run(load: &Load<'_>, script_dir: &Path) -> Result<WrkResult, Unusable> {
    let wrk = stack::require_tool("wrk", "wrk");
    let script = script(script_dir, load.requests);
    let url = format!("http://{}:{}/", stack::LOCALHOST, load.port);
    // wrk takes whole seconds (`2s`), not milliseconds.
    let timeout_s = load.timeout.as_secs_f64().ceil().max(1.0) as u64;
    let mut command = match load.cpu {
        Some(cpu) => {
            let mut pinned = Command::new(stack::require_tool("taskset", "util-linux"));
            pinned.arg("-c").arg(cpu.to_string()).arg(wrk);
            pinned
        }
        None => Command::new(wrk),
    };
    command
        .args([
            "-t1",
            &format!("-c{}", load.connections),
            &format!("-d{}s", load.seconds),
            &format!("--timeout={timeout_s}s"),
            "-s",
        ])
        .arg(&script)
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    stack::kill_with_this_thread(&mut command);
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run wrk: {e}"));
    let deadline = Instant::now() + Duration::from_secs(load.seconds + 30);
    // wrk's output is about a kilobyte, far below the pipe buffer, so
    // polling for exit before reading cannot deadlock.
    loop {
        if child.try_wait().ok().flatten().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "wrk did not finish within {} s + 30 s; killed",
                load.seconds
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wrk output: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wrk failed ({}): {}{}",
        out.status,
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr_empty = out.stderr.iter().all(u8::is_ascii_whitespace);
    match parse(&text) {
        Err(Unusable::ReportLost) if !stderr_empty => panic!(
            "wrk's reporter failed:\n{text}\nwrk's stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(Unusable::Bad(e)) => panic!(
            "cannot read wrk's result ({e}):\n{text}\nwrk's stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        other => other,
    }
}

/// Reads the `LOADTEST_RESULT` line of wrk's output.
pub fn parse(text: &str) -> Result<WrkResult, Unusable> {
    let bad = |e: String| Unusable::Bad(e);
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("LOADTEST_RESULT "));
    let Some(line) = line else {
        // wrk prints its summary before it calls the reporter's `done`.
        return Err(if text.contains("Requests/sec:") {
            Unusable::ReportLost
        } else {
            bad("no LOADTEST_RESULT line: was lua/report.lua appended?".into())
        });
    };
    let reported: Reported =
        serde_json::from_str(line).map_err(|e| bad(format!("bad LOADTEST_RESULT: {e}")))?;
    if reported.statuses_lost > 0 {
        return Err(Unusable::CountsLost(reported.statuses_lost));
    }
    let mut statuses = BTreeMap::new();
    for (code, n) in reported.statuses {
        let code: u16 = code
            .parse()
            .map_err(|_| bad(format!("bad status {code:?} in LOADTEST_RESULT")))?;
        statuses.insert(code, n);
    }
    let counted: u64 = statuses.values().sum();
    if counted != reported.requests {
        return Err(bad(format!(
            "status counts add up to {counted}, wrk counted {} answers",
            reported.requests
        )));
    }
    let seconds = reported.duration_us as f64 / 1e6;
    Ok(WrkResult {
        requests: reported.requests,
        seconds,
        requests_per_sec: reported.requests as f64 / seconds.max(1e-9),
        latency_us: reported.latency_us,
        statuses,
        errors: reported.errors,
    })
}

/// Milliseconds with two decimals, so every row of a table uses one unit.
pub fn format_ms(micros: u64) -> String {
    format!("{:.2} ms", micros as f64 / 1e3)
}

/// Where an Envoy's request counters are read: its admin port and the
/// listener's `stat_prefix` (`None`: every listener but the admin's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listener {
    pub admin_port: u16,
    pub stat_prefix: Option<String>,
}

impl Listener {
    pub fn new(admin_port: u16, stat_prefix: Option<&str>) -> Listener {
        Listener {
            admin_port,
            stat_prefix: stat_prefix.map(str::to_owned),
        }
    }
}

/// Envoy's request counters at one moment, summed over gateways.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub total: u64,
    pub xx2: u64,
    pub xx4: u64,
    pub xx5: u64,
}

impl Counters {
    /// `http.ingress.downstream_rq_{total,2xx,4xx,5xx}` from an Envoy admin
    /// port (`None` if the admin does not answer).
    pub fn read(admin_port: u16) -> Option<Counters> {
        Counters::read_listener(&Listener::new(admin_port, Some("ingress")))
    }

    /// The same counters of one listener (`http.<stat_prefix>.`), or of
    /// every listener but the admin's when it has no known stat prefix.
    pub fn read_listener(listener: &Listener) -> Option<Counters> {
        let page = stack::get_with_timeout(
            listener.admin_port,
            "/stats?filter=downstream_rq_",
            &[],
            Duration::from_secs(2),
        )
        .ok()?;
        if page.status != 200 {
            return None;
        }
        let mut counters = Counters::default();
        for line in page.text().lines() {
            let Some((name, value)) = line.split_once(": ") else {
                continue;
            };
            let Ok(value) = value.trim().parse::<u64>() else {
                continue;
            };
            let Some((prefix, counter)) = name
                .strip_prefix("http.")
                .and_then(|rest| rest.rsplit_once(".downstream_rq_"))
            else {
                continue;
            };
            let counted = match &listener.stat_prefix {
                Some(wanted) => prefix == wanted,
                None => prefix != "admin",
            };
            if !counted {
                continue;
            }
            match counter {
                "total" => counters.total += value,
                "2xx" => counters.xx2 += value,
                "4xx" => counters.xx4 += value,
                "5xx" => counters.xx5 += value,
                _ => {}
            }
        }
        Some(counters)
    }

    fn sum(listeners: &[Listener]) -> Option<Counters> {
        let mut sum = Counters::default();
        for listener in listeners {
            let c = Counters::read_listener(listener)?;
            sum.total += c.total;
            sum.xx2 += c.xx2;
            sum.xx4 += c.xx4;
            sum.xx5 += c.xx5;
        }
        Some(sum)
    }

    pub fn minus(&self, earlier: &Counters) -> Counters {
        Counters {
            total: self.total.saturating_sub(earlier.total),
            xx2: self.xx2.saturating_sub(earlier.xx2),
            xx4: self.xx4.saturating_sub(earlier.xx4),
            xx5: self.xx5.saturating_sub(earlier.xx5),
        }
    }
}

/// One progress sample: counters `at` seconds after the start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    pub at: f64,
    pub counters: Counters,
}

/// Prints a progress line every second while a load runs, from the
/// gateways' admin stats, and keeps the samples (the fault scenario reads
/// them to see what was answered when).
#[derive(Debug)]
pub struct Progress {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<Sample>>>,
}

impl Progress {
    /// Starts sampling `admin_ports`; `label` starts each line; `planned`
    /// is the run's length in seconds, for the `3/10 s` part.
    pub fn start(label: &str, admin_ports: &[u16], planned: u64) -> Progress {
        let listeners: Vec<Listener> = admin_ports
            .iter()
            .map(|port| Listener::new(*port, Some("ingress")))
            .collect();
        Progress::start_on(label, &listeners, planned)
    }

    /// [`Progress::start`] for any listeners.
    pub fn start_on(label: &str, listeners: &[Listener], planned: u64) -> Progress {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stopping = std::sync::Arc::clone(&stop);
        let ports = listeners.to_vec();
        let label = label.to_owned();
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let first = Counters::sum(&ports).unwrap_or_default();
            let mut samples = vec![Sample {
                at: 0.0,
                counters: Counters::default(),
            }];
            let mut last = first;
            let mut tick = 1u64;
            while !stopping.load(Ordering::SeqCst) {
                let next = start + Duration::from_secs(tick);
                while Instant::now() < next && !stopping.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Some(now) = Counters::sum(&ports) else {
                    continue;
                };
                let at = start.elapsed().as_secs_f64();
                let run = now.minus(&first);
                let step = now.minus(&last);
                println!(
                    "[loadtest]   {label}: {at:>4.0}/{planned} s  {:>9} answers  {:>7}/s  \
                     2xx {} 4xx {} 5xx {}",
                    run.total, step.total, run.xx2, run.xx4, run.xx5
                );
                samples.push(Sample { at, counters: run });
                last = now;
                tick += 1;
            }
            samples
        });
        Progress {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling and returns the samples.
    pub fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Waits long enough that answers still in flight have been counted.
pub fn settle() {
    std::thread::sleep(Duration::from_millis(200));
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "Running 1s test @ http://127.0.0.1:40000/
  1 threads and 2 connections
Requests/sec:    701.45
LOADTEST_RESULT {\"requests\":703,\"duration_us\":1002209,\"bytes\":390165,\
\"errors\":{\"connect\":0,\"read\":1,\"write\":0,\"status\":700,\"timeout\":2},\
\"latency_us\":{\"min\":331,\"mean\":15647.5,\"max\":170616,\"p50\":2072,\"p90\":66087,\
\"p99\":147776,\"p99_9\":170616},\"statuses\":{\"200\":3,\"429\":700}}
";

    #[test]
    fn reads_the_reporter_line() {
        let r = parse(OUTPUT).unwrap();
        assert_eq!(r.requests, 703);
        assert_eq!(r.status(200), 3);
        assert_eq!(r.status(429), 700);
        assert_eq!(r.unexpected(&[200, 429]), 0);
        assert_eq!(r.unexpected(&[200]), 700);
        assert_eq!(r.errors.total(), 3);
        assert_eq!(r.latency_us.p99_9, 170_616);
        assert!((r.requests_per_sec - 703.0 / 1.002209).abs() < 1e-6);
        assert_eq!(r.statuses_text(), "200: 3, 429: 700");
        assert_eq!(format_ms(r.latency_us.p50), "2.07 ms");
    }

    #[test]
    fn missing_or_inconsistent_results_are_errors() {
        assert!(parse("Running 5s test\n")
            .unwrap_err()
            .to_string()
            .contains("LOADTEST_RESULT"));
        // wrk's other quirk: its summary without the reporter's line.
        assert_eq!(
            parse("Requests/sec:   4042.56\nTransfer/sec:    469.79KB\n").unwrap_err(),
            Unusable::ReportLost
        );
        let wrong = OUTPUT.replace("\"429\":700", "\"429\":699");
        assert!(parse(&wrong).unwrap_err().to_string().contains("add up"));
        // wrk's quirk: a thread's table read back as nil.
        let lost = OUTPUT.replace("}}\n", "},\"statuses_lost\":1}\n");
        assert_eq!(parse(&lost).unwrap_err(), Unusable::CountsLost(1));
        let none_lost = OUTPUT.replace("}}\n", "},\"statuses_lost\":0}\n");
        assert_eq!(parse(&none_lost).unwrap().requests, 703);
    }

    #[test]
    fn combining_adds_counts_and_keeps_the_worse_latency() {
        let a = parse(OUTPUT).unwrap();
        let mut b = a.clone();
        b.latency_us.p99 = 1;
        b.statuses.insert(503, 5);
        let both = a.combined(&b);
        assert_eq!(both.requests, 1406);
        assert_eq!(both.status(429), 1400);
        assert_eq!(both.status(503), 5);
        assert_eq!(both.latency_us.p99, 147_776);
        let serial = a.followed_by(&a);
        assert!((serial.seconds - 2.0 * a.seconds).abs() < 1e-9);
        assert!((serial.requests_per_sec - a.requests_per_sec).abs() < 1e-6);
    }
}
