//! The counting logic of the example: configuration, the webdis command
//! of a request, and what Redis's answer decides. No host call here, so
//! it runs in native tests.

use kit::limits::pattern::Pattern;
use kit::limits::window::{decide, Decision, Window};
use kit::resp::{decode, CommandBuf, Form};
use serde::Deserialize;

/// Counts a request in its window and sets the window's expiry on the
/// first count: one round trip per request.
pub const COUNT_SCRIPT: &str = "local n = redis.call('INCR', KEYS[1]) \
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end return n";

/// The plugin's configuration.
#[derive(Debug)]
pub struct Config {
    /// The request header naming the client; requests without it pass.
    pub header: String,
    /// Requests allowed per client and minute.
    pub per_minute: u64,
    /// The Envoy cluster of webdis.
    pub webdis_cluster: String,
    /// Only clients whose header value matches are counted.
    pub only: Option<Pattern>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    header: String,
    per_minute: u64,
    webdis_cluster: String,
    #[serde(default)]
    only: Option<String>,
}

impl Config {
    /// Reads the plugin configuration.
    ///
    /// # Errors
    /// One line naming what is wrong: bad JSON or an unknown field (serde's
    /// message), a zero `per_minute`, or an `only` pattern the kit's matcher
    /// refuses.
    pub fn parse(bytes: &[u8]) -> Result<Config, String> {
        let raw: Raw = serde_json::from_slice(bytes).map_err(|e| format!("configuration: {e}"))?;
        if raw.per_minute == 0 {
            return Err("per_minute: must be at least 1".to_owned());
        }
        let only = match raw.only {
            Some(text) => Some(Pattern::new(&text).map_err(|e| format!("only: {e}"))?),
            None => None,
        };
        Ok(Config {
            header: raw.header,
            per_minute: raw.per_minute,
            webdis_cluster: raw.webdis_cluster,
            only,
        })
    }

    /// Whether requests from `client` are counted.
    pub fn counts(&self, client: &[u8]) -> bool {
        self.only.as_ref().is_none_or(|p| p.is_match(client))
    }
}

/// Writes into `cmd` the webdis path that counts `client`'s request at
/// `now_secs` in its one-minute window: `/EVAL/<script>/1/<key>/<ttl>.raw`.
pub fn command(cmd: &mut CommandBuf, client: &[u8], now_secs: u64) {
    let window = Window::containing(now_secs, 60);
    let mut start = itoa::Buffer::new();
    cmd.begin(Form::Path);
    cmd.push(b"EVAL");
    cmd.push(COUNT_SCRIPT.as_bytes());
    cmd.push_int(1);
    cmd.push_parts(&[
        b"sdk-interop:{",
        client,
        b"}:",
        start.format(window.start).as_bytes(),
    ]);
    cmd.push_int(i64::try_from(window.reset_after(now_secs)).unwrap_or(60));
    cmd.finish();
}

/// What webdis's answer decides; `None` when it is not a count (an error
/// reply or garbage): the plugin then lets the request go (fail open).
pub fn verdict(answer: &[u8], per_minute: u64) -> Option<Decision> {
    let decoded = decode(answer).ok()?;
    let count = decoded.reply(answer).as_i64()?;
    Some(decide(count, per_minute))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn command_is_a_webdis_eval_path_with_the_window_in_the_key() {
        let mut cmd = CommandBuf::default();
        command(&mut cmd, b"user a", 1_000_000_000 + 42);
        let path = core::str::from_utf8(cmd.bytes()).unwrap();
        assert!(
            path.starts_with("/EVAL/local%20n%20%3D%20redis%2Ecall%28"),
            "{path}"
        );
        // The window starts at the minute, the key expires when it ends.
        assert!(
            path.ends_with("/1/sdk-interop%3A%7Buser%20a%7D%3A1000000020/38.raw"),
            "{path}"
        );
    }

    #[test]
    fn counts_up_to_the_limit_pass_and_the_next_is_refused() {
        assert_eq!(
            verdict(b":3\r\n", 3),
            Some(Decision::Allow { remaining: 0 })
        );
        assert_eq!(verdict(b":4\r\n", 3), Some(Decision::Reject));
        assert_eq!(verdict(b"-ERR unknown command\r\n", 3), None);
        assert_eq!(verdict(b"", 3), None);
    }

    #[test]
    fn bad_configuration_is_refused_naming_the_field() {
        let err =
            Config::parse(br#"{"header":"x","per_minute":0,"webdis_cluster":"w"}"#).unwrap_err();
        assert!(err.starts_with("per_minute:"), "{err}");
        let err =
            Config::parse(br#"{"header":"x","per_minute":1,"webdis_cluster":"w","only":"a(?=b)"}"#)
                .unwrap_err();
        assert!(err.starts_with("only:"), "{err}");
        let err = Config::parse(br#"{"header":"x","per_minute":1,"webdis_cluster":"w","x":1}"#)
            .unwrap_err();
        assert!(err.contains("unknown field `x`"), "{err}");
    }

    #[test]
    fn only_clients_matching_the_pattern_are_counted() {
        let config = Config::parse(
            br#"{"header":"x","per_minute":1,"webdis_cluster":"w","only":"^user-[0-9]+$"}"#,
        )
        .unwrap();
        assert!(config.counts(b"user-17"));
        assert!(!config.counts(b"bot-17"));
    }
}
