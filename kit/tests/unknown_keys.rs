//! Configuration keys nobody reads: a warning naming the key and the
//! nearest known one, or with `strict_config` a refusal; keys of features a
//! plugin does not have (Higress configurations carry them) still load.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kit::fake::FakeHost;
use kit::{ConfigError, Cx, Fields, Filter, Flow, Host, LogLevel, Plugin, Setup};

struct Gate;

#[allow(dead_code)]
struct Config<'cfg> {
    header: &'cfg str,
    deny_status: u64,
    window: u64,
}

impl Plugin for Gate {
    const NAME: &'static str = "gate";
    type Config<'cfg> = Config<'cfg>;
    type State = ();

    fn configure<'cfg>(
        f: &Fields<'_, 'cfg>,
        _: &mut Setup<'_>,
    ) -> Result<Config<'cfg>, ConfigError> {
        let limits = f.get("limits");
        let window = match limits {
            Some(field) => field.object()?.u64_or("window", 60)?,
            None => 60,
        };
        Ok(Config {
            header: f.required_str("header")?,
            deny_status: f.u64_or("deny_status", 403)?,
            window,
        })
    }

    fn on_request_headers<H: Host>(_: Cx<'_, '_, Self, H>, _: bool) -> Flow {
        Flow::Continue
    }
}

fn configure(json: &str) -> (Result<(), ConfigError>, Vec<(LogLevel, String)>) {
    let mut filter = Filter::<Gate, FakeHost>::new(FakeHost::new());
    let result = filter.configure(json.as_bytes().to_vec());
    (result, filter.host().logs.clone())
}

fn warnings(logs: &[(LogLevel, String)]) -> Vec<&str> {
    logs.iter()
        .filter(|(level, _)| *level == LogLevel::Warn)
        .map(|(_, line)| line.as_str())
        .collect()
}

#[test]
fn a_misspelt_key_is_named_with_the_key_it_resembles() {
    let (result, logs) = configure(r#"{"header": "x-key", "deny_satus": 401}"#);
    assert!(result.is_ok());
    let warnings = warnings(&logs);
    assert_eq!(warnings.len(), 1, "{logs:?}");
    assert!(
        warnings[0].contains("deny_satus: unknown key (did you mean `deny_status`?)"),
        "{}",
        warnings[0]
    );
}

#[test]
fn nested_keys_are_checked_with_their_path() {
    let (result, logs) = configure(r#"{"header": "x-key", "limits": {"windw": 10}}"#);
    assert!(result.is_ok());
    let warnings = warnings(&logs);
    assert_eq!(warnings.len(), 1, "{logs:?}");
    assert!(warnings[0].contains("limits.windw: unknown key (did you mean `window`?)"));
}

#[test]
fn a_key_of_another_feature_warns_without_a_guess_and_still_loads() {
    let (result, logs) = configure(r#"{"header": "x-key", "show_limit_quota_header": true}"#);
    assert!(result.is_ok());
    let warnings = warnings(&logs);
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].ends_with("show_limit_quota_header: unknown key; ignored"),
        "{}",
        warnings[0]
    );
}

#[test]
fn a_configuration_of_known_keys_warns_about_nothing() {
    let (result, logs) =
        configure(r#"{"header": "x-key", "deny_status": 401, "limits": {"window": 1}}"#);
    assert!(result.is_ok());
    assert!(warnings(&logs).is_empty(), "{logs:?}");
}

#[test]
fn strict_config_refuses_an_unknown_key() {
    let (result, _) = configure(r#"{"strict_config": true, "header": "x-key", "deny_satus": 401}"#);
    let error = result.unwrap_err();
    assert_eq!(error.field(), "deny_satus");
    assert_eq!(
        error.to_string(),
        "deny_satus: unknown key (did you mean `deny_status`?)"
    );
    let (result, _) = configure(r#"{"strict_config": true, "header": "x-key"}"#);
    assert!(result.is_ok());
}
