//! The LLM upstream's answers in each API's shape, its gzip, and which
//! `accept-encoding` values take gzip.

use serde_json::Value;

use super::*;

#[test]
fn gzip_pieces_decode_to_the_data() {
    let mut gzip = Gzip::new();
    let mut bytes = gzip.piece(b"data: {\"a\":1}\n\n");
    bytes.extend(gzip.piece(&vec![b'x'; 70_000]));
    bytes.extend(gzip.finish());
    let mut expected = b"data: {\"a\":1}\n\n".to_vec();
    expected.extend(vec![b'x'; 70_000]);
    assert_eq!(gunzip(&bytes), expected);
    assert_eq!(gunzip(&Gzip::whole(b"")), b"");
}

#[test]
fn accept_encoding() {
    assert!(takes_gzip("gzip"));
    assert!(takes_gzip("deflate, gzip, br, zstd"));
    assert!(takes_gzip("gzip;q=0.5"));
    assert!(takes_gzip("*"));
    assert!(!takes_gzip("identity"));
    assert!(!takes_gzip("gzip;q=0"));
    assert!(!takes_gzip("br"));
}

#[test]
fn paths() {
    assert_eq!(LlmApi::of("/v1/chat/completions"), Some(LlmApi::OpenAiChat));
    assert_eq!(
        LlmApi::of("/v1/completions"),
        Some(LlmApi::OpenAiCompletions)
    );
    assert_eq!(LlmApi::of("/v1/responses"), Some(LlmApi::OpenAiResponses));
    assert_eq!(
        LlmApi::of("/v1/messages?beta=true"),
        Some(LlmApi::Anthropic)
    );
    assert_eq!(
        LlmApi::of("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"),
        Some(LlmApi::Gemini {
            stream: true,
            sse: true
        })
    );
    assert_eq!(LlmApi::of("/api/generate"), Some(LlmApi::OllamaGenerate));
    assert_eq!(LlmApi::of("/v1/models"), None);
}

/// Every answer is valid JSON (per event, per line) reporting the
/// tokens in the API's own fields.
#[test]
fn answers_report_the_tokens_in_each_shape() {
    let total = |v: &Value| -> u64 {
        let n = |p: &str| v.pointer(p).and_then(Value::as_u64);
        n("/usage/total_tokens")
            .or_else(|| Some(n("/usage/input_tokens")? + n("/usage/output_tokens")?))
            .or_else(|| n("/response/usage/total_tokens"))
            .or_else(|| n("/usageMetadata/totalTokenCount"))
            .or_else(|| Some(n("/prompt_eval_count")? + n("/eval_count")?))
            .unwrap_or(0)
    };
    let chat = answer(LlmApi::OpenAiChat, br#"{"model":"m","messages":[]}"#);
    assert_eq!(total(&serde_json::from_slice(&chat.body()).unwrap()), 100);
    let anthropic = answer(
        LlmApi::Anthropic,
        br#"{"model":"m","max_tokens":9,"messages":[]}"#,
    );
    assert_eq!(
        total(&serde_json::from_slice(&anthropic.body()).unwrap()),
        100
    );
    let gemini = answer(
        LlmApi::Gemini {
            stream: false,
            sse: false,
        },
        br#"{"contents":[]}"#,
    );
    let json: Value = serde_json::from_slice(&gemini.body()).unwrap();
    assert_eq!(total(&json), 100);
    assert_eq!(json["usageMetadata"]["promptTokenCount"], 20);
    let array = answer(
        LlmApi::Gemini {
            stream: true,
            sse: false,
        },
        br#"{"contents":[]}"#,
    );
    let chunks: Vec<Value> = serde_json::from_slice(&array.body()).unwrap();
    assert_eq!(total(&chunks[2]), 100);
    let lines = answer(LlmApi::OllamaChat, br#"{"model":"m","messages":[]}"#);
    let last = String::from_utf8(lines.body()).unwrap();
    let last: Value = serde_json::from_str(last.lines().last().unwrap()).unwrap();
    assert_eq!(total(&last), 100);
}

#[test]
fn a_chat_stream_reports_usage_only_when_asked() {
    let plain = answer(
        LlmApi::OpenAiChat,
        br#"{"model":"m","messages":[],"stream":true}"#,
    );
    assert!(!String::from_utf8(plain.body()).unwrap().contains("usage"));
    let asked = answer(
        LlmApi::OpenAiChat,
        br#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#,
    );
    assert!(String::from_utf8(asked.body())
        .unwrap()
        .contains(r#""choices":[],"usage":{"prompt_tokens":40"#));
}

#[test]
fn unknown_fields_are_refused_as_each_service_does() {
    let options = r#""stream":true,"stream_options":{"include_usage":true}"#;
    for (api, body, message) in [
        (
            LlmApi::OpenAiChat,
            r#"{"model":"m","messages":[],"foo":1}"#.to_owned(),
            "Unrecognized request argument supplied: foo",
        ),
        (
            LlmApi::OpenAiChat,
            r#"{"model":"m","messages":[],"stream_options":{"include_usage":true}}"#.to_owned(),
            "only allowed when 'stream' is enabled",
        ),
        (
            LlmApi::OpenAiResponses,
            format!(r#"{{"model":"m","input":"hi",{options}}}"#),
            "Unknown parameter: 'stream_options.include_usage'.",
        ),
        (
            LlmApi::Anthropic,
            format!(r#"{{"model":"m","max_tokens":9,"messages":[],{options}}}"#),
            "stream_options: Extra inputs are not permitted",
        ),
        (
            LlmApi::Gemini {
                stream: true,
                sse: true,
            },
            format!(r#"{{"contents":[],{options}}}"#),
            r#"Unknown name \"stream\": Cannot find field."#,
        ),
        (
            LlmApi::OllamaChat,
            format!(r#"{{"model":"m","messages":[],{options}}}"#),
            r#"json: unknown field \"stream_options\""#,
        ),
    ] {
        let refused = answer(api, body.as_bytes());
        assert_eq!(refused.status, 400, "{api:?} {body}");
        let text = String::from_utf8(refused.body()).unwrap();
        assert!(text.contains(message), "{api:?}: {text}");
        serde_json::from_str::<Value>(&text).unwrap();
    }
    let fine = format!(r#"{{"model":"m","messages":[],{options}}}"#);
    assert_eq!(answer(LlmApi::OpenAiChat, fine.as_bytes()).status, 200);
}
