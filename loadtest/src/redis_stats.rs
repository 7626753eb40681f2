//! What Redis has done, read over RESP: commands executed by name from
//! `INFO commandstats`, and the sum of the counters under a key pattern.

use std::collections::BTreeMap;
use std::time::Duration;

/// Commands the Redis on `127.0.0.1:port` has executed, by name (see
/// [`Bench::redis_commands`]).
///
/// # Panics
/// When Redis does not answer `INFO commandstats`.
pub fn redis_commands_at(port: u16) -> BTreeMap<String, u64> {
    try_redis_commands_at(port).unwrap_or_else(|e| panic!("{e}"))
}

/// [`redis_commands_at`], the failure returned.
pub fn try_redis_commands_at(port: u16) -> Result<BTreeMap<String, u64>, String> {
    let reply = stack::resp::command(port, &[b"INFO", b"commandstats"], Duration::from_secs(5))
        .map_err(|e| format!("INFO commandstats on 127.0.0.1:{port}: {e}"))?;
    let stack::resp::Resp::Bulk(Some(text)) = reply else {
        return Err(format!("INFO commandstats answered {reply:?}"));
    };
    Ok(commandstats(&String::from_utf8_lossy(&text)))
}

/// The sum of the integer values of the keys matching `pattern` whose
/// names end with `suffix`, in the Redis on `127.0.0.1:port`.
///
/// # Panics
/// When Redis does not answer or a key holds something else than a count.
pub fn redis_sum_at(port: u16, pattern: &str, suffix: &str) -> u64 {
    let command = |args: &[&[u8]]| {
        stack::resp::command(port, args, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("Redis 127.0.0.1:{port}: {e}"))
    };
    command(&[b"KEYS", pattern.as_bytes()])
        .bulk_items()
        .iter()
        .filter(|key| key.ends_with(suffix.as_bytes()))
        .map(|key| match command(&[b"GET", key]) {
            stack::resp::Resp::Bulk(Some(v)) => String::from_utf8_lossy(&v)
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("key {key:?} holds {v:?}, not a count")),
            other => panic!("GET {:?}: {other:?}", String::from_utf8_lossy(key)),
        })
        .sum()
}

/// `calls=` of every `cmdstat_<name>` line but `cmdstat_info`.
fn commandstats(info: &str) -> BTreeMap<String, u64> {
    info.lines()
        .filter_map(|line| line.trim().strip_prefix("cmdstat_"))
        .filter_map(|line| {
            let (name, stats) = line.split_once(':')?;
            let calls = stats
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse::<u64>()
                .ok()?;
            (name != "info").then(|| (name.to_owned(), calls))
        })
        .collect()
}

/// What ran between two `INFO commandstats` readings.
pub fn commands_since(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(name, n)| {
            let earlier = before.get(name).copied().unwrap_or(0);
            (name.clone(), n.saturating_sub(earlier))
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commandstats_reads_calls_without_info() {
        let info = "# Commandstats\r\n\
            cmdstat_evalsha:calls=120,usec=900,usec_per_call=7.50,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_info:calls=7,usec=70,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_get:calls=3,usec=3,usec_per_call=1.00,rejected_calls=0,failed_calls=0\r\n";
        let calls = commandstats(info);
        assert_eq!(calls.len(), 2);
        assert_eq!(calls["evalsha"], 120);
        assert_eq!(calls["get"], 3);
        assert!(commandstats("# Commandstats\r\n").is_empty());
        let later = commandstats(&info.replace("calls=120", "calls=150"));
        let ran = commands_since(&calls, &later);
        assert_eq!(
            ran.into_iter().collect::<Vec<_>>(),
            [("evalsha".to_owned(), 30)]
        );
    }
}
