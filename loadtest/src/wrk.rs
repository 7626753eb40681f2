//! Running `wrk` with a hard time bound and reading its report.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one `wrk --latency` run reported.
#[derive(Debug, Clone, PartialEq)]
pub struct WrkResult {
    pub requests: u64,
    pub requests_per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
    /// `Non-2xx or 3xx responses` (0 when wrk prints no such line).
    pub non_2xx: u64,
    /// connect + read + write + timeout errors.
    pub socket_errors: u64,
}

/// `wrk -t1 -c<connections> -d<seconds>s --latency` against `/` on
/// `127.0.0.1:port`.
///
/// # Panics
/// If wrk fails, runs 30 s past its duration (it is then killed), or prints
/// something this parser does not understand.
pub fn run(port: u16, seconds: u64, connections: u32) -> WrkResult {
    run_script(port, seconds, connections, None)
}

/// As [`run`], with a wrk Lua `script` shaping the requests (method, body,
/// headers) when given.
pub fn run_script(
    port: u16,
    seconds: u64,
    connections: u32,
    script: Option<&std::path::Path>,
) -> WrkResult {
    let wrk = stack::require_tool("wrk", "wrk");
    let url = format!("http://127.0.0.1:{port}/");
    let mut command = Command::new(wrk);
    command.args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s")]);
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let mut child = command
        .args(["--latency", "--timeout", "2s", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run wrk: {e}"));
    let deadline = Instant::now() + Duration::from_secs(seconds + 30);
    // wrk's output is a few hundred bytes, far below the pipe buffer, so
    // polling for exit before reading cannot deadlock.
    loop {
        if child.try_wait().ok().flatten().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wrk did not finish within {seconds} s + 30 s; killed");
        }
        std::thread::sleep(Duration::from_millis(100));
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
    parse(&text).unwrap_or_else(|e| panic!("cannot parse wrk output ({e}):\n{text}"))
}

/// Parses wrk 4's report (with `--latency`).
pub fn parse(text: &str) -> Result<WrkResult, String> {
    let mut requests = None;
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut non_2xx = 0;
    let mut socket_errors = 0;
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", value] => p50 = Some(parse_duration(value)?),
            ["99%", value] => p99 = Some(parse_duration(value)?),
            [n, "requests", "in", ..] => requests = Some(parse_u64(n)?),
            ["Requests/sec:", value] => {
                rps = Some(
                    value
                        .parse::<f64>()
                        .map_err(|_| format!("bad req/s {value:?}"))?,
                )
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => non_2xx = parse_u64(n)?,
            ["Socket", "errors:", rest @ ..] => {
                // "connect 0, read 0, write 0, timeout 0"
                socket_errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    Ok(WrkResult {
        requests: requests.ok_or("no `N requests in` line")?,
        requests_per_sec: rps.ok_or("no `Requests/sec:` line")?,
        p50: p50.ok_or("no `50%` latency line (was --latency given?)")?,
        p99: p99.ok_or("no `99%` latency line")?,
        non_2xx,
        socket_errors,
    })
}

fn parse_u64(text: &str) -> Result<u64, String> {
    text.parse().map_err(|_| format!("bad count {text:?}"))
}

/// wrk prints latencies as `812.00us`, `1.23ms`, `2.00s` or `1.50m`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .ok_or_else(|| format!("latency without unit: {text:?}"))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("bad latency {text:?}"))?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(format!("unknown latency unit in {text:?}")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

/// Milliseconds with two decimals, so every row of the table uses one unit.
pub fn format_latency(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Running 10s test @ http://127.0.0.1:40000/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.52ms  310.11us   9.87ms   91.20%
    Req/Sec    21.12k     1.01k   22.40k    80.00%
  Latency Distribution
     50%    1.48ms
     75%    1.60ms
     90%    1.77ms
     99%  812.00us
  210210 requests in 10.00s, 25.66MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 210100
Requests/sec:  21015.43
Transfer/sec:      2.57MB
";

    #[test]
    fn parses_a_full_report() {
        let r = parse(SAMPLE).unwrap();
        assert_eq!(r.requests, 210_210);
        assert!((r.requests_per_sec - 21015.43).abs() < 1e-6);
        assert_eq!(r.p50, Duration::from_micros(1480));
        assert_eq!(r.p99, Duration::from_micros(812));
        assert_eq!(r.non_2xx, 210_100);
        assert_eq!(r.socket_errors, 3);
        assert_eq!(format_latency(r.p50), "1.48 ms");
    }

    #[test]
    fn missing_lines_are_errors_not_zeros() {
        let without_latency: String = SAMPLE
            .lines()
            .filter(|l| !l.contains('%') || l.contains("Stdev"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(parse(&without_latency).unwrap_err().contains("50%"));
        assert!(parse("").is_err());
        let clean = SAMPLE.replace("  Non-2xx or 3xx responses: 210100\n", "");
        assert_eq!(parse(&clean).unwrap().non_2xx, 0);
    }

    #[test]
    fn latency_units() {
        assert_eq!(parse_duration("2.00s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.50m").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("12").is_err());
        assert!(parse_duration("1.0xs").is_err());
    }
}
