//! The stack from command-line URLs: loopback only, baselines, paths,
//! token quota and overhead routes, options refused with the option named.

use super::*;

#[test]
fn urls_must_be_loopback_ports() {
    assert_eq!(loopback_port("http://127.0.0.1:10000/"), Ok(10000));
    assert_eq!(loopback_port("localhost:8080"), Ok(8080));
    assert_eq!(loopback_port("6379"), Ok(6379));
    let remote = loopback_port("http://gateway.example.com:80").unwrap_err();
    assert!(remote.contains("loopback only"), "{remote}");
    assert!(loopback_port("http://127.0.0.1/").is_err());
    assert!(loopback_port("http://127.0.0.1:0").is_err());
}

#[test]
fn baselines_are_one_or_one_per_gateway() {
    let g = [
        "http://127.0.0.1:1".to_owned(),
        "http://127.0.0.1:2".to_owned(),
    ];
    let none = QuotaUrls::default();
    let no_pass = PassUrls::default();
    let one = from_urls(
        &g,
        &["127.0.0.1:3".to_owned()],
        "127.0.0.1:6379",
        &[],
        &none,
        &no_pass,
    )
    .unwrap();
    assert_eq!(one.gateways[1].baseline_port, Some(3));
    assert!(one.gateways[0].listener.is_none());
    let three = vec!["127.0.0.1:3".to_owned(); 3];
    assert!(from_urls(&g, &three, "127.0.0.1:6379", &[], &none, &no_pass).is_err());
    assert!(one.quota.is_none());
    let remote = from_urls(
        &g,
        &["127.0.0.1:3".to_owned()],
        "redis:6379",
        &[],
        &none,
        &no_pass,
    );
    assert!(remote.unwrap_err().starts_with("--redis: "));
}

#[test]
fn urls_keep_their_path() {
    assert_eq!(
        loopback_url("http://127.0.0.1:10001/v1/chat/completions"),
        Ok((10001, "/v1/chat/completions".to_owned()))
    );
    assert_eq!(loopback_url("localhost:9"), Ok((9, "/".to_owned())));
    assert!(loopback_url("http://127.0.0.1:1/a b").is_err());
    assert!(loopback_url("http://127.0.0.1:1/a\"b").is_err());
    assert!(loopback_url("http://10.0.0.1:1/v1").is_err());
    let path = loopback_port("http://127.0.0.1:10000/v1").unwrap_err();
    assert!(path.contains("is not used here"), "{path}");
}

fn quota_args(json: bool, sse: bool, baselines: &[&str], rules: &[&str]) -> QuotaUrls {
    QuotaUrls {
        json: json.then(|| "http://127.0.0.1:10001/v1/chat/completions".to_owned()),
        sse: sse.then(|| "http://127.0.0.1:10002/v1/chat/completions".to_owned()),
        baselines: baselines.iter().map(|b| (*b).to_owned()).collect(),
        rules: rules.iter().map(|r| (*r).to_owned()).collect(),
        key_prefix: None,
    }
}

#[test]
fn token_quota_routes_from_options() {
    let both = quota_args(
        true,
        true,
        &["127.0.0.1:10004/", "127.0.0.1:10004/sse"],
        &["json", "sse"],
    );
    let quota = quota_from_urls(&both, Some(15000)).unwrap().unwrap();
    let (json, sse) = (quota.json.unwrap(), quota.sse.unwrap());
    assert_eq!(
        (json.port, json.path.as_str()),
        (10001, "/v1/chat/completions")
    );
    assert_eq!(
        (json.baseline_port, json.baseline_path.as_str()),
        (10004, "/")
    );
    assert_eq!(
        (sse.baseline_port, sse.baseline_path.as_str()),
        (10004, "/sse")
    );
    assert_eq!((json.rule.as_str(), sse.rule.as_str()), ("json", "sse"));
    assert_eq!(json.key_prefix, "token-quota");
    assert!(json.per_minute.is_none() && json.upstream.is_none());
    assert_eq!(json.listener, Some(Listener::new(15000, None)));
    // One baseline serves both routes.
    let shared = quota_args(
        true,
        true,
        &["127.0.0.1:10004/v1/chat/completions"],
        &["a", "b"],
    );
    let quota = quota_from_urls(&shared, None).unwrap().unwrap();
    assert_eq!(quota.sse.unwrap().baseline_path, "/v1/chat/completions");
    // One route alone.
    let sse_only = quota_args(false, true, &["127.0.0.1:10004/sse"], &["s"]);
    let quota = quota_from_urls(&sse_only, None).unwrap().unwrap();
    assert!(quota.json.is_none() && quota.sse.is_some());
    assert!(quota_from_urls(&QuotaUrls::default(), None)
        .unwrap()
        .is_none());
}

#[test]
fn overhead_routes_from_options() {
    let pass = PassUrls {
        limiter: Some("http://127.0.0.1:10005".to_owned()),
        json: Some("http://127.0.0.1:10006/v1/chat/completions".to_owned()),
        sse: Some("http://127.0.0.1:10007/v1/chat/completions".to_owned()),
    };
    let baselines = quota_args(
        false,
        false,
        &["127.0.0.1:10004/", "127.0.0.1:10004/sse"],
        &[],
    );
    let routes = pass_from_urls(&pass, &baselines, Some(15000)).unwrap();
    let limiter = routes.limiter.unwrap();
    assert_eq!(limiter.port, 10005);
    assert_eq!(limiter.listener, Some(Listener::new(15000, None)));
    let (json, sse) = (routes.json.unwrap(), routes.sse.unwrap());
    assert_eq!((json.port, json.baseline_path.as_str()), (10006, "/"));
    assert_eq!((sse.port, sse.baseline_path.as_str()), (10007, "/sse"));
    assert_eq!(sse.path, "/v1/chat/completions");
    // Without the stack's configuration the rule is not known.
    assert!(json.rule.is_empty() && json.upstream.is_none());
    // The baseline alone is not a token quota run to measure.
    assert!(quota_from_urls(&baselines, None).unwrap().is_none());
    let none = pass_from_urls(&PassUrls::default(), &QuotaUrls::default(), None).unwrap();
    assert!(none.limiter.is_none() && none.json.is_none() && none.sse.is_none());
    let refused = |pass: &PassUrls, quota: &QuotaUrls, option: &str| {
        let e = pass_from_urls(pass, quota, None).unwrap_err();
        assert!(e.starts_with(option), "{e}");
        assert!(!e.contains('\n'), "{e}");
    };
    let json_only = PassUrls {
        json: pass.json.clone(),
        ..PassUrls::default()
    };
    refused(&json_only, &QuotaUrls::default(), "--token-quota-baseline");
    refused(&PassUrls::default(), &baselines, "--token-quota-baseline");
    let remote = PassUrls {
        limiter: Some("http://gateway:10005".to_owned()),
        ..PassUrls::default()
    };
    refused(&remote, &QuotaUrls::default(), "--limiter-pass");
}

#[test]
fn token_quota_options_are_refused_with_the_option_named() {
    let refused = |args: QuotaUrls, option: &str| {
        let e = quota_from_urls(&args, None).unwrap_err();
        assert!(e.starts_with(option), "{e}");
        assert!(!e.contains('\n'), "{e}");
    };
    refused(
        quota_args(true, false, &[], &["r"]),
        "--token-quota-baseline",
    );
    refused(
        quota_args(true, false, &["127.0.0.1:1", "127.0.0.1:2"], &["r"]),
        "--token-quota-baseline",
    );
    refused(
        quota_args(true, false, &["127.0.0.1:1"], &[]),
        "--token-quota-rule",
    );
    refused(
        quota_args(true, true, &["127.0.0.1:1"], &["r"]),
        "--token-quota-rule",
    );
    refused(
        quota_args(true, true, &["127.0.0.1:1"], &["r", "r"]),
        "--token-quota-rule",
    );
    refused(
        quota_args(false, false, &["127.0.0.1:1"], &["r"]),
        "--token-quota-baseline",
    );
    refused(
        quota_args(true, false, &["gateway:1"], &["r"]),
        "--token-quota-baseline",
    );
    let mut remote = quota_args(true, false, &["127.0.0.1:1"], &["r"]);
    remote.json = Some("http://gateway:10001/v1".to_owned());
    refused(remote, "--token-quota-json");
    let mut braces = quota_args(false, true, &["127.0.0.1:1"], &["r"]);
    braces.key_prefix = Some("a{b".to_owned());
    refused(braces, "--token-quota-key-prefix");
}
