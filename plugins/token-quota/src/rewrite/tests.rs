use super::*;

#[test]
fn which_paths_take_include_usage() {
    let openai = DEFAULT_INCLUDE_USAGE_SUFFIXES;
    for (path, takes) in [
        (&b"/v1/chat/completions"[..], true),
        (b"/chat/completions", true),
        (b"/v1/completions", true),
        (b"/api/v1/chat/completions?x=/v1/messages", true),
        (b"/v1/chat/completions#frag", true),
        (b"/v1/messages", false),
        (b"/v1/messages?beta=true", false),
        (b"/v1/responses", false),
        (
            b"/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            false,
        ),
        (b"/api/chat", false),
        (b"/api/generate", false),
        (b"/v1/messages?next=/v1/chat/completions", false),
        (b"/v1/chat/completions/", false),
        (b"/V1/CHAT/COMPLETIONS", false),
        (b"", false),
    ] {
        assert_eq!(
            takes_include_usage(path, &openai),
            takes,
            "{}",
            String::from_utf8_lossy(path)
        );
    }
    assert!(!takes_include_usage(b"/v1/chat/completions", &[]));
    assert!(takes_include_usage(b"/v1/chat", &["/v1/chat"]));
}

fn rewrite(body: &str) -> (Rewrite, String) {
    let mut out = b"stale".to_vec();
    let result = include_usage(body.as_bytes(), &mut out);
    (result, String::from_utf8(out).unwrap())
}

#[test]
fn rewrites() {
    let cases: &[(&str, &str)] = &[
        (
            r#"{"model":"m","stream":true}"#,
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#,
        ),
        (
            r#"{"stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"stream":true,"messages":[{"role":"user","content":"hi"}],"stream_options":{"include_usage":true}}"#,
        ),
        (
            r#"{"stream":true,"tools":{"a":{"b":1}}}"#,
            r#"{"stream":true,"tools":{"a":{"b":1}},"stream_options":{"include_usage":true}}"#,
        ),
        (
            "{\n  \"stream\" : true ,\n  \"n\": 1\n}\n",
            "{\n  \"stream\" : true ,\n  \"n\": 1,\"stream_options\":{\"include_usage\":true}\n}\n",
        ),
        (
            r#"{"stream":true,"stream_options":{}}"#,
            r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
        ),
        (
            r#"{"stream":true,"stream_options":{ }}"#,
            r#"{"stream":true,"stream_options":{"include_usage":true }}"#,
        ),
        (
            r#"{"stream_options":{"x":1},"stream":true}"#,
            r#"{"stream_options":{"x":1,"include_usage":true},"stream":true}"#,
        ),
        (
            r#"{"stream":true,"stream_options":{"x":{"include_usage":true}} }"#,
            r#"{"stream":true,"stream_options":{"x":{"include_usage":true},"include_usage":true} }"#,
        ),
        (
            r#"{"stream":true,"stream_options":{"include_usage":false}}"#,
            r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
        ),
        (
            r#"{"stream":true,"stream_options":{"include_usage": null ,"x":2}}"#,
            r#"{"stream":true,"stream_options":{"include_usage": true ,"x":2}}"#,
        ),
        (
            r#"{"stream":true,"stream_options":{"include_usage":{"a":[1]}}}"#,
            r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
        ),
        (
            r#"{"stream":true,"stream_options":{"include_usage":0}}"#,
            r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
        ),
        (
            r#"{"stream":true,"stream_options":null}"#,
            r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
        ),
        // The last duplicate wins.
        (
            r#"{"stream":false,"stream":true}"#,
            r#"{"stream":false,"stream":true,"stream_options":{"include_usage":true}}"#,
        ),
        (
            r#"{"stream":true,"stream_options":{"include_usage":true,"include_usage":false}}"#,
            r#"{"stream":true,"stream_options":{"include_usage":true,"include_usage":true}}"#,
        ),
        // Escaped keys are the same keys.
        (
            r#"{"str\u0065am":true}"#,
            r#"{"str\u0065am":true,"stream_options":{"include_usage":true}}"#,
        ),
        (
            "{\"c\":\"caf\u{e9} \u{1F600}\",\"stream\":true}",
            "{\"c\":\"caf\u{e9} \u{1F600}\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(
            rewrite(body),
            (Rewrite::Rewritten, expected.to_string()),
            "{body}"
        );
        let value: serde_json::Value = serde_json::from_str(expected).unwrap();
        assert_eq!(value["stream_options"]["include_usage"], true);
        // Rewriting again changes nothing.
        assert_eq!(
            rewrite(expected),
            (Rewrite::Unchanged, String::new()),
            "{expected}"
        );
    }
}

#[test]
fn leaves_alone() {
    for body in [
        r#"{"model":"m"}"#,
        r#"{"stream":false}"#,
        r#"{"stream":"true"}"#,
        r#"{"stream":1}"#,
        r#"{"stream":null}"#,
        r#"{"stream":{"stream":true}}"#,
        r#"{"stream":true,"stream":false}"#,
        r#"{"opts":{"stream":true}}"#,
        r#"{"content":"\"stream\": true"}"#,
        r#"[{"stream":true}]"#,
        r#""stream""#,
        "true",
        r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
        r#"{"stream":true,"stream_options":{"include_usage":false,"include_usage":true}}"#,
        r#"{"stream":true,"stream_options":"x"}"#,
        r#"{"stream":true,"stream_options":[]}"#,
        r#"{}"#,
    ] {
        assert_eq!(rewrite(body), (Rewrite::Unchanged, String::new()), "{body}");
    }
}

#[test]
fn not_json() {
    let long = format!(
        "{{\"stream\":true,\"x\":{}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    for body in [
        "",
        " ",
        r#"{"stream":true"#,
        r#"{"stream":true,}"#,
        r#"{"stream":true}}"#,
        r#"{"stream":true} {}"#,
        r#"{"stream":tru}"#,
        r#"{stream:true}"#,
        r#"{"stream":true,"s":"\ud800"}"#,
        long.as_str(),
    ] {
        assert_eq!(rewrite(body), (Rewrite::NotJson, String::new()), "{body}");
    }
    let mut out = Vec::new();
    assert_eq!(
        include_usage(b"{\"stream\":true,\"c\":\"\xff\"}", &mut out),
        Rewrite::NotJson
    );
}

#[test]
fn every_truncation_is_not_json() {
    let body = br#"{"model":"m","stream":true,"stream_options":{"x":1}}"#;
    let mut out = Vec::new();
    for len in 0..body.len() {
        assert_eq!(
            include_usage(&body[..len], &mut out),
            Rewrite::NotJson,
            "{len}"
        );
    }
}

#[test]
fn the_output_buffer_is_reused() {
    let mut out = Vec::with_capacity(4096);
    let capacity = out.capacity();
    let body = br#"{"model":"m","stream":true}"#;
    for _ in 0..10 {
        assert_eq!(include_usage(body, &mut out), Rewrite::Rewritten);
    }
    assert_eq!(out.capacity(), capacity);
}

#[test]
fn large_requests() {
    let content = "x\\\"y ".repeat(100_000);
    let body = format!(r#"{{"messages":[{{"role":"user","content":"{content}"}}],"stream":true}}"#);
    let mut out = Vec::new();
    assert_eq!(include_usage(body.as_bytes(), &mut out), Rewrite::Rewritten);
    let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(value["stream_options"]["include_usage"], true);
    assert_eq!(
        out.len(),
        body.len() + b",\"stream_options\":{\"include_usage\":true}".len()
    );
}
