//! [`FakeRedis`]: an in-memory Redis that answers a plugin's calls in
//! native tests, as the real one would.
//!
//! It keeps string values with their expiry (measured on the
//! [`FakeHost`](crate::fake::FakeHost) clock the calls are answered at),
//! answers the commands plugins send (`GET`, `SET`, `INCR`, `INCRBY`,
//! `EXPIRE`, `TTL`, `DEL`, `EXISTS`, `PING`, `EVAL`, `EVALSHA`) and runs
//! the scripts a test teaches it. The kit's own counting script
//! ([`COUNT_SCRIPT`]) is known from the start. Like Redis, it answers
//! `EVALSHA` of a script it has not loaded with `NOSCRIPT`, and `EVAL`
//! loads it; [`FakeRedis::forget_scripts`] is Redis's `SCRIPT FLUSH`.
//!
//! It reads both transports' calls (a webdis `GET /CMD/arg.raw` and a
//! native RESP command) and answers with the RESP bytes Redis would send;
//! [`Filter::settle`](crate::Filter::settle) delivers them.

use crate::fake::SentCall;
use crate::increments::COUNT_SCRIPT;
use crate::redis::Script;
use std::collections::BTreeMap;
use std::fmt;

/// A reply as Redis sends it, before its RESP encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisValue {
    /// `:n`
    Integer(i64),
    /// `$len` and the bytes.
    Bulk(Vec<u8>),
    /// `$-1`: no such key.
    Nil,
    /// `+OK` and other status lines.
    Status(&'static str),
    /// `-ERR ...`: the whole line after the `-`.
    Error(String),
    /// `*n` and the elements.
    Array(Vec<RedisValue>),
}

impl RedisValue {
    /// The RESP bytes of this reply.
    ///
    /// # Examples
    /// ```
    /// use kit::fake_redis::RedisValue;
    ///
    /// assert_eq!(RedisValue::Integer(3).to_resp(), b":3\r\n");
    /// assert_eq!(RedisValue::Bulk(b"10".to_vec()).to_resp(), b"$2\r\n10\r\n");
    /// assert_eq!(RedisValue::Nil.to_resp(), b"$-1\r\n");
    /// ```
    pub fn to_resp(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            RedisValue::Integer(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            RedisValue::Bulk(bytes) => {
                out.extend_from_slice(format!("${}\r\n", bytes.len()).as_bytes());
                out.extend_from_slice(bytes);
                out.extend_from_slice(b"\r\n");
            }
            RedisValue::Nil => out.extend_from_slice(b"$-1\r\n"),
            RedisValue::Status(line) => out.extend_from_slice(format!("+{line}\r\n").as_bytes()),
            RedisValue::Error(line) => out.extend_from_slice(format!("-{line}\r\n").as_bytes()),
            RedisValue::Array(items) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for item in items {
                    item.write(out);
                }
            }
        }
    }
}

const WRONG_TYPE: &str = "ERR value is not an integer or out of range";

/// The keys and values of a [`FakeRedis`], with the commands scripts use.
#[derive(Debug, Default, Clone)]
pub struct Store {
    values: BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)>,
    now_nanos: u64,
}

impl Store {
    fn live(&self, expires: Option<u64>) -> bool {
        expires.is_none_or(|at| at > self.now_nanos)
    }

    /// The value of `key`, unless it is absent or expired (`GET`).
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        match self.values.get(key) {
            Some((value, expires)) if self.live(*expires) => Some(value),
            _ => None,
        }
    }

    /// Sets `key` to `value`, with an expiry in seconds if given (`SET`,
    /// `SET key value EX ttl`).
    pub fn set(&mut self, key: &[u8], value: &[u8], ttl_secs: Option<u64>) {
        let expires = ttl_secs.map(|s| {
            self.now_nanos
                .saturating_add(s.saturating_mul(1_000_000_000))
        });
        self.values.insert(key.to_vec(), (value.to_vec(), expires));
    }

    /// Adds `by` to the integer at `key` (0 when absent), keeping its
    /// expiry (`INCRBY`).
    ///
    /// # Errors
    /// Redis's error when the value is not an integer or the sum overflows.
    pub fn incr_by(&mut self, key: &[u8], by: i64) -> Result<i64, String> {
        let (current, expires) = match self.values.get(key) {
            Some((value, expires)) if self.live(*expires) => {
                let n = parse_i64(value).ok_or(WRONG_TYPE)?;
                (n, *expires)
            }
            _ => (0, None),
        };
        let n = current
            .checked_add(by)
            .ok_or("ERR increment or decrement would overflow")?;
        self.values
            .insert(key.to_vec(), (n.to_string().into_bytes(), expires));
        Ok(n)
    }

    /// Gives `key` an expiry in seconds from now; whether the key exists
    /// (`EXPIRE`).
    pub fn expire(&mut self, key: &[u8], ttl_secs: u64) -> bool {
        let now = self.now_nanos;
        let live = self.get(key).is_some();
        if let (true, Some(entry)) = (live, self.values.get_mut(key)) {
            entry.1 = Some(now.saturating_add(ttl_secs.saturating_mul(1_000_000_000)));
        }
        live
    }

    /// Seconds `key` has left, rounded up: -1 without an expiry, -2 when
    /// absent (`TTL`).
    pub fn ttl(&self, key: &[u8]) -> i64 {
        match self.values.get(key) {
            Some((_, expires)) if self.live(*expires) => match expires {
                None => -1,
                Some(at) => {
                    i64::try_from((at - self.now_nanos).div_ceil(1_000_000_000)).unwrap_or(i64::MAX)
                }
            },
            _ => -2,
        }
    }

    /// Removes `key`; whether it existed (`DEL`).
    pub fn del(&mut self, key: &[u8]) -> bool {
        let live = self.get(key).is_some();
        self.values.remove(key);
        live
    }

    /// The integer at `key`, if it holds one.
    pub fn integer(&self, key: &[u8]) -> Option<i64> {
        self.get(key).and_then(parse_i64)
    }

    /// Every live key with its integer value, in key order (values that
    /// are not integers are left out).
    pub fn integers(&self) -> impl Iterator<Item = (&[u8], i64)> + '_ {
        self.values
            .iter()
            .filter(|(_, (_, expires))| self.live(*expires))
            .filter_map(|(key, (value, _))| Some((key.as_slice(), parse_i64(value)?)))
    }

    /// Every live key, in order.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.values
            .iter()
            .filter(|(_, (_, expires))| self.live(*expires))
            .map(|(key, _)| key.as_slice())
    }

    /// The number of live keys.
    pub fn len(&self) -> usize {
        self.keys().count()
    }

    /// Whether no key is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every key (`FLUSHALL`).
    pub fn clear(&mut self) {
        self.values.clear();
    }
}

fn parse_i64(bytes: &[u8]) -> Option<i64> {
    core::str::from_utf8(bytes).ok()?.parse().ok()
}

fn parse_u64(bytes: &[u8]) -> Option<u64> {
    core::str::from_utf8(bytes).ok()?.parse().ok()
}

/// What a script does, in Rust: the store, `KEYS` and `ARGV` in, the reply out.
pub type ScriptRun = Box<dyn FnMut(&mut Store, &[Vec<u8>], &[Vec<u8>]) -> RedisValue>;

struct KnownScript {
    sha1: String,
    source: &'static str,
    loaded: bool,
    run: ScriptRun,
}

/// An in-memory Redis for native tests: see the [module](self) docs.
///
/// # Examples
/// ```
/// use kit::fake_redis::FakeRedis;
///
/// let mut redis = FakeRedis::new();
/// assert_eq!(redis.run(&[b"INCRBY", b"k", b"5"]), b":5\r\n");
/// assert_eq!(redis.run(&[b"GET", b"k"]), b"$1\r\n5\r\n");
/// assert_eq!(redis.store.integer(b"k"), Some(5));
/// ```
pub struct FakeRedis {
    /// Keys and values.
    pub store: Store,
    /// When set, every call fails as a network error would (Redis down,
    /// a timeout, a reset): the call gets no reply.
    pub down: bool,
    /// When set, the next command is answered with these bytes instead,
    /// once, without being carried out (a garbled or unexpected reply, an
    /// error such as `-OOM`).
    pub next_reply: Option<Vec<u8>>,
    /// Every command received, its arguments decoded.
    pub commands: Vec<Vec<Vec<u8>>>,
    /// Commands it does not know, answered with Redis's error: a test
    /// checks this is empty to catch a plugin sending something unexpected.
    pub unknown: Vec<Vec<Vec<u8>>>,
    scripts: Vec<KnownScript>,
}

impl fmt::Debug for FakeRedis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeRedis")
            .field("store", &self.store)
            .field("down", &self.down)
            .field("commands", &self.commands.len())
            .finish_non_exhaustive()
    }
}

impl Default for FakeRedis {
    fn default() -> Self {
        FakeRedis::new()
    }
}

impl FakeRedis {
    /// An empty Redis that knows the kit's counting script.
    pub fn new() -> Self {
        let mut redis = FakeRedis {
            store: Store::default(),
            down: false,
            next_reply: None,
            commands: Vec::new(),
            unknown: Vec::new(),
            scripts: Vec::new(),
        };
        redis.script(COUNT_SCRIPT, count_script);
        redis
    }

    /// Teaches it a script: `EVAL` of `source`, or `EVALSHA` of its digest,
    /// runs `run`. The script starts loaded, as after `SCRIPT LOAD`.
    ///
    /// # Examples
    /// ```
    /// use kit::fake_redis::{FakeRedis, RedisValue};
    /// use kit::Script;
    ///
    /// const DOUBLE: &str = "return 2 * redis.call('INCR', KEYS[1])";
    /// let mut redis = FakeRedis::new();
    /// redis.script(DOUBLE, |store, keys, _| match store.incr_by(&keys[0], 1) {
    ///     Ok(n) => RedisValue::Integer(2 * n),
    ///     Err(e) => RedisValue::Error(e),
    /// });
    /// let sha = Script::new(DOUBLE).sha1_hex().to_owned();
    /// assert_eq!(redis.run(&[b"EVALSHA", sha.as_bytes(), b"1", b"k"]), b":2\r\n");
    /// redis.forget_scripts();
    /// assert!(redis.run(&[b"EVALSHA", sha.as_bytes(), b"1", b"k"]).starts_with(b"-NOSCRIPT"));
    /// assert_eq!(redis.run(&[b"EVAL", DOUBLE.as_bytes(), b"1", b"k"]), b":4\r\n");
    /// ```
    pub fn script(
        &mut self,
        source: &'static str,
        run: impl FnMut(&mut Store, &[Vec<u8>], &[Vec<u8>]) -> RedisValue + 'static,
    ) {
        let sha1 = Script::new(source).sha1_hex().to_owned();
        self.scripts.retain(|s| s.source != source);
        self.scripts.push(KnownScript {
            sha1,
            source,
            loaded: true,
            run: Box::new(run),
        });
    }

    /// Forgets every loaded script, as `SCRIPT FLUSH` or a restarted Redis
    /// does: `EVALSHA` answers `NOSCRIPT` until an `EVAL` loads it again.
    pub fn forget_scripts(&mut self) {
        for script in &mut self.scripts {
            script.loaded = false;
        }
    }

    /// The reply to a call a plugin sent, at the host's time `now_nanos`;
    /// `None` when the call fails without one ([`FakeRedis::down`]).
    pub fn answer(&mut self, call: &SentCall, now_nanos: u64) -> Option<Vec<u8>> {
        if self.down {
            return None;
        }
        self.store.now_nanos = now_nanos;
        let args = call.redis_args().unwrap_or_default();
        Some(self.run_args(args))
    }

    /// Runs one command given as its arguments and answers its RESP bytes.
    pub fn run(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.run_args(args.iter().map(|a| a.to_vec()).collect())
    }

    fn run_args(&mut self, args: Vec<Vec<u8>>) -> Vec<u8> {
        // A scripted reply stands for a command Redis did not carry out.
        let reply = match self.next_reply.take() {
            Some(bytes) => bytes,
            None => self.execute(&args).to_resp(),
        };
        self.commands.push(args);
        reply
    }

    fn execute(&mut self, args: &[Vec<u8>]) -> RedisValue {
        let name = args
            .first()
            .map(|a| a.to_ascii_uppercase())
            .unwrap_or_default();
        let arg = |i: usize| args.get(i).map(Vec::as_slice);
        let store = &mut self.store;
        let result = match (name.as_slice(), args.len()) {
            (b"PING", 1) => Ok(RedisValue::Status("PONG")),
            (b"GET", 2) => Ok(store
                .get(arg(1).unwrap_or_default())
                .map_or(RedisValue::Nil, |v| RedisValue::Bulk(v.to_vec()))),
            (b"SET", 3) => {
                store.set(arg(1).unwrap_or_default(), arg(2).unwrap_or_default(), None);
                Ok(RedisValue::Status("OK"))
            }
            (b"SET", 5) if arg(3).is_some_and(|o| o.eq_ignore_ascii_case(b"EX")) => {
                match arg(4).and_then(parse_u64) {
                    Some(ttl) => {
                        store.set(
                            arg(1).unwrap_or_default(),
                            arg(2).unwrap_or_default(),
                            Some(ttl),
                        );
                        Ok(RedisValue::Status("OK"))
                    }
                    None => Err(WRONG_TYPE.to_owned()),
                }
            }
            (b"INCR", 2) => store
                .incr_by(arg(1).unwrap_or_default(), 1)
                .map(RedisValue::Integer),
            (b"INCRBY", 3) => match arg(2).and_then(parse_i64) {
                Some(by) => store
                    .incr_by(arg(1).unwrap_or_default(), by)
                    .map(RedisValue::Integer),
                None => Err(WRONG_TYPE.to_owned()),
            },
            (b"EXPIRE", 3) => match arg(2).and_then(parse_u64) {
                Some(ttl) => Ok(RedisValue::Integer(i64::from(
                    store.expire(arg(1).unwrap_or_default(), ttl),
                ))),
                None => Err(WRONG_TYPE.to_owned()),
            },
            (b"TTL", 2) => Ok(RedisValue::Integer(store.ttl(arg(1).unwrap_or_default()))),
            (b"DEL", n) if n >= 2 => Ok(RedisValue::Integer(
                args.iter().skip(1).filter(|k| store.del(k)).count() as i64,
            )),
            (b"EXISTS", n) if n >= 2 => Ok(RedisValue::Integer(
                args.iter()
                    .skip(1)
                    .filter(|k| store.get(k).is_some())
                    .count() as i64,
            )),
            (b"EVAL" | b"EVALSHA", n) if n >= 3 => return self.eval(&name, args),
            _ => {
                self.unknown.push(args.to_vec());
                Err(format!(
                    "ERR unknown command or wrong number of arguments for '{}'",
                    String::from_utf8_lossy(args.first().map(Vec::as_slice).unwrap_or_default())
                ))
            }
        };
        result.unwrap_or_else(RedisValue::Error)
    }

    fn eval(&mut self, name: &[u8], args: &[Vec<u8>]) -> RedisValue {
        let body = args.get(1).map(Vec::as_slice).unwrap_or_default();
        let Some(count) = args.get(2).and_then(|n| parse_u64(n)) else {
            return RedisValue::Error("ERR value is not an integer or out of range".into());
        };
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        let Some(keys) = args.get(3..3usize.saturating_add(count)) else {
            return RedisValue::Error(
                "ERR Number of keys can't be greater than number of args".into(),
            );
        };
        let argv = args.get(3 + count..).unwrap_or_default();
        let by_sha = name == b"EVALSHA";
        let found = self.scripts.iter_mut().find(|s| {
            if by_sha {
                s.sha1.as_bytes().eq_ignore_ascii_case(body)
            } else {
                s.source.as_bytes() == body
            }
        });
        match found {
            Some(script) if script.loaded || !by_sha => {
                script.loaded = true;
                (script.run)(&mut self.store, keys, argv)
            }
            Some(_) => RedisValue::Error("NOSCRIPT No matching script. Please use EVAL.".into()),
            None if by_sha => {
                RedisValue::Error("NOSCRIPT No matching script. Please use EVAL.".into())
            }
            None => {
                self.unknown.push(args.to_vec());
                RedisValue::Error("ERR a script this FakeRedis was not taught".into())
            }
        }
    }
}

/// [`COUNT_SCRIPT`] in Rust: for each key, add its amount, set its expiry
/// on the key's first write, replace a value that cannot be counted; one
/// key answers its count, several an array of them.
fn count_script(store: &mut Store, keys: &[Vec<u8>], argv: &[Vec<u8>]) -> RedisValue {
    let mut out: Vec<RedisValue> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let ttl = argv.get(2 * i).and_then(|t| parse_u64(t)).unwrap_or(0);
            let by = argv.get(2 * i + 1).and_then(|b| parse_i64(b)).unwrap_or(1);
            count_one(store, key, ttl, by)
        })
        .collect();
    if out.len() == 1 {
        out.remove(0)
    } else {
        RedisValue::Array(out)
    }
}

/// A count as the script returns it: past 2^31 - 1, the digits of the
/// double Lua holds it in as a string, and 2^63 - 1 for a count that
/// rounds to 2^63 (see [`COUNT_SCRIPT`]).
fn big(n: i64) -> RedisValue {
    if n <= i64::from(i32::MAX) {
        return RedisValue::Integer(n);
    }
    // As Lua: the count is a double, printed with `%.0f`.
    #[allow(clippy::cast_precision_loss)] // the rounding is what is modelled
    let double = n as f64;
    if double >= 9_223_372_036_854_775_807.0 {
        return RedisValue::Bulk(i64::MAX.to_string().into_bytes());
    }
    RedisValue::Bulk(format!("{double:.0}").into_bytes())
}

/// One key of [`count_script`].
fn count_one(store: &mut Store, key: &[u8], ttl: u64, by: i64) -> RedisValue {
    match store.incr_by(key, by) {
        Ok(n) => {
            if n == by {
                store.expire(key, ttl);
            }
            big(n)
        }
        // Saturated: the key stays as it is.
        Err(error) if error.contains("overflow") => big(i64::MAX),
        Err(error) => {
            store.set(key, by.to_string().as_bytes(), Some(ttl));
            RedisValue::Array(vec![
                big(by),
                RedisValue::Bulk(error.into_bytes()),
                RedisValue::Bulk(key.to_vec()),
            ])
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::fake::Headers;
    use crate::redis::Script;

    const SECOND: u64 = 1_000_000_000;

    fn native(args: &[&[u8]]) -> SentCall {
        let mut body = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            body.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            body.extend_from_slice(arg);
            body.extend_from_slice(b"\r\n");
        }
        SentCall {
            body,
            ..SentCall::default()
        }
    }

    fn webdis(path: &str) -> SentCall {
        let mut headers = Headers::default();
        headers.add(":path", path.as_bytes());
        SentCall {
            headers,
            ..SentCall::default()
        }
    }

    #[test]
    fn keys_expire_on_the_clock_the_calls_are_answered_at() {
        let mut redis = FakeRedis::new();
        let call = native(&[b"SET", b"k", b"v", b"EX", b"2"]);
        assert_eq!(redis.answer(&call, 10 * SECOND).unwrap(), b"+OK\r\n");
        let get = webdis("/GET/k.raw");
        assert_eq!(redis.answer(&get, 11 * SECOND).unwrap(), b"$1\r\nv\r\n");
        assert_eq!(
            redis.answer(&native(&[b"TTL", b"k"]), 11 * SECOND).unwrap(),
            b":1\r\n"
        );
        assert_eq!(redis.answer(&get, 12 * SECOND).unwrap(), b"$-1\r\n");
        assert!(redis.store.is_empty());
    }

    #[test]
    fn the_count_script_counts_expires_and_repairs() {
        let mut redis = FakeRedis::new();
        let sha = Script::new(COUNT_SCRIPT).sha1_hex().to_owned();
        let path = format!("/EVALSHA/{sha}/1/c/60.raw");
        assert_eq!(redis.answer(&webdis(&path), 0).unwrap(), b":1\r\n");
        assert_eq!(redis.answer(&webdis(&path), SECOND).unwrap(), b":2\r\n");
        assert_eq!(redis.store.ttl(b"c"), 59, "the expiry of the first write");
        redis.store.set(b"c", b"not a number", None);
        let repaired = redis.answer(&webdis(&path), SECOND).unwrap();
        assert!(repaired.starts_with(b"*3\r\n:1\r\n"), "{repaired:?}");
        assert_eq!(redis.store.integer(b"c"), Some(1));
        assert_eq!(redis.store.ttl(b"c"), 60);
    }

    #[test]
    fn the_count_script_saturates_near_2_pow_63_as_redis_runs_it() {
        let mut redis = FakeRedis::new();
        let sha = Script::new(COUNT_SCRIPT).sha1_hex().to_owned();
        let max = b"$19\r\n9223372036854775807\r\n";
        // 1,023 charges of 2^53 fit; the 1,024th would overflow: the key
        // stays, and every later count is 2^63 - 1.
        let charge = format!("/EVALSHA/{sha}/1/c/60/9007199254740992.raw");
        for _ in 0..1_023 {
            redis.answer(&webdis(&charge), 0).unwrap();
        }
        assert_eq!(redis.store.integer(b"c"), Some(1_023 << 53));
        for _ in 0..3 {
            assert_eq!(redis.answer(&webdis(&charge), 0).unwrap(), max);
        }
        assert_eq!(redis.store.integer(b"c"), Some(1_023 << 53), "kept");
        // A count Lua's doubles round up to 2^63 reads as 2^63 - 1.
        redis.store.set(b"r", b"9223372036854775500", None);
        let read = format!("/EVALSHA/{sha}/1/r/60/0.raw");
        assert_eq!(redis.answer(&webdis(&read), 0).unwrap(), max);
        // One that rounds down keeps the digits of its double.
        redis.store.set(b"d", b"9223372036854770000", None);
        let read = format!("/EVALSHA/{sha}/1/d/60/0.raw");
        assert_eq!(
            redis.answer(&webdis(&read), 0).unwrap(),
            b"$19\r\n9223372036854769664\r\n"
        );
    }

    #[test]
    fn down_scripted_and_unknown_commands() {
        let mut redis = FakeRedis::new();
        redis.down = true;
        assert_eq!(redis.answer(&native(&[b"INCR", b"k"]), 0), None);
        redis.down = false;
        redis.next_reply = Some(b"-OOM no\r\n".to_vec());
        assert_eq!(redis.run(&[b"INCR", b"k"]), b"-OOM no\r\n");
        assert_eq!(redis.store.integer(b"k"), None, "not carried out");
        assert!(redis
            .run(&[b"HSET", b"h", b"f", b"v"])
            .starts_with(b"-ERR unknown"));
        assert_eq!(redis.unknown.len(), 1);
        assert!(redis.run(&[b"INCR", b"k", b"extra"]).starts_with(b"-ERR"));
        redis.store.set(b"s", b"x", None);
        assert_eq!(
            redis.run(&[b"INCRBY", b"s", b"1"]),
            b"-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            redis.commands.len(),
            4,
            "the call while down never reached it"
        );
    }
}
