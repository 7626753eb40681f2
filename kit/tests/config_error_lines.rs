//! A refused configuration is reported on one line, whatever the values
//! it quotes hold. Found by fuzzing (`fuzz/`, targets `config_*_json`): a
//! `redis.transport` of `"\n"` made the refusal two lines in the log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kit::fake::FakeHost;
use kit::{ConfigError, Cx, Fields, Filter, Flow, Host, LogLevel, Plugin, RedisUse, Setup};

/// A plugin that needs Redis, so the kit reads the `redis` block.
struct Counts;

impl Plugin for Counts {
    const NAME: &'static str = "counts";
    const REDIS: RedisUse = RedisUse::Required;
    type Config<'cfg> = ();
    type State = ();

    fn configure<'cfg>(f: &Fields<'_, 'cfg>, _: &mut Setup<'_>) -> Result<(), ConfigError> {
        if let Some(name) = f.opt_str("name")? {
            return Err(f.error("name", format!("`{name}` is taken")));
        }
        Ok(())
    }

    fn on_request_headers<H: Host>(_: Cx<'_, '_, Self, H>, _: bool) -> Flow {
        Flow::Continue
    }
}

fn refusal(config: &str) -> (String, Vec<String>) {
    let mut filter = Filter::<Counts, FakeHost>::new(FakeHost::new());
    let e = filter.configure(config.as_bytes().to_vec()).unwrap_err();
    let errors = filter
        .host()
        .logs
        .iter()
        .filter(|(level, _)| *level == LogLevel::Error)
        .map(|(_, line)| line.clone())
        .collect();
    (e.to_string(), errors)
}

#[test]
fn a_quoted_newline_stays_escaped() {
    let (e, logged) = refusal(r#"{"redis": {"transport": "\n", "webdis_cluster": "w"}}"#);
    assert_eq!(
        e,
        "redis.transport: unknown transport `\\n`: use \"webdis\" (upstream Envoy) or \"native\" (Higress)"
    );
    assert_eq!(logged.len(), 1);
    assert!(!logged[0].contains('\n'), "{:?}", logged[0]);
}

#[test]
fn plugin_reasons_and_every_control_character_are_escaped() {
    let (e, _) =
        refusal(r#"{"redis": {"webdis_cluster": "w"}, "name": "a\r\nb\u0000\t\u007f\u0085é"}"#);
    assert_eq!(e, "name: `a\\r\\nb\\u{0}\\t\\u{7f}\\u{85}é` is taken");
    // Text without control characters is kept as written.
    let plain = ConfigError::new("a.b", "`x y` is é");
    assert_eq!(plain.to_string(), "a.b: `x y` is é");
}
