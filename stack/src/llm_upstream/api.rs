//! What each LLM API answers, in its own shape: the API a path belongs to,
//! the request fields it knows (an unknown one gets that service's kind of
//! refusal), and its answers, whole or as the events of a stream, each
//! reporting [`REPORTED_TOKENS`].

use serde_json::{Map, Value};

/// The tokens every answer reports, split in each API's own way.
pub const REPORTED_TOKENS: u64 = 100;

/// The API a request path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmApi {
    OpenAiChat,
    OpenAiCompletions,
    OpenAiResponses,
    Anthropic,
    /// Gemini `generateContent` (`stream: false`) or
    /// `streamGenerateContent`, with `sse` for `?alt=sse`.
    Gemini {
        stream: bool,
        sse: bool,
    },
    OllamaChat,
    OllamaGenerate,
}

impl LlmApi {
    /// The API at `target` (path and query), if any.
    pub fn of(target: &str) -> Option<LlmApi> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        if path.ends_with(":generateContent") {
            return Some(LlmApi::Gemini {
                stream: false,
                sse: false,
            });
        }
        if path.ends_with(":streamGenerateContent") {
            let sse = query.split('&').any(|p| p == "alt=sse");
            return Some(LlmApi::Gemini { stream: true, sse });
        }
        Some(match path {
            _ if path.ends_with("/chat/completions") => LlmApi::OpenAiChat,
            _ if path.ends_with("/completions") => LlmApi::OpenAiCompletions,
            _ if path.ends_with("/responses") => LlmApi::OpenAiResponses,
            _ if path.ends_with("/messages") => LlmApi::Anthropic,
            "/api/chat" => LlmApi::OllamaChat,
            "/api/generate" => LlmApi::OllamaGenerate,
            _ => return None,
        })
    }

    /// The top-level request fields the API knows.
    fn known_fields(self) -> &'static [&'static str] {
        match self {
            LlmApi::OpenAiChat => &[
                "model",
                "messages",
                "stream",
                "stream_options",
                "temperature",
                "top_p",
                "n",
                "stop",
                "max_tokens",
                "max_completion_tokens",
                "presence_penalty",
                "frequency_penalty",
                "logit_bias",
                "logprobs",
                "top_logprobs",
                "user",
                "seed",
                "tools",
                "tool_choice",
                "parallel_tool_calls",
                "response_format",
                "metadata",
                "store",
                "reasoning_effort",
                "modalities",
                "audio",
                "prediction",
                "service_tier",
                "web_search_options",
            ],
            LlmApi::OpenAiCompletions => &[
                "model",
                "prompt",
                "stream",
                "stream_options",
                "max_tokens",
                "temperature",
                "top_p",
                "n",
                "stop",
                "echo",
                "best_of",
                "logprobs",
                "logit_bias",
                "user",
                "seed",
                "suffix",
                "presence_penalty",
                "frequency_penalty",
            ],
            LlmApi::OpenAiResponses => &[
                "model",
                "input",
                "instructions",
                "stream",
                "stream_options",
                "max_output_tokens",
                "temperature",
                "top_p",
                "tools",
                "tool_choice",
                "parallel_tool_calls",
                "previous_response_id",
                "store",
                "metadata",
                "reasoning",
                "text",
                "truncation",
                "user",
                "include",
                "background",
                "service_tier",
                "prompt",
                "conversation",
            ],
            LlmApi::Anthropic => &[
                "model",
                "messages",
                "max_tokens",
                "system",
                "stream",
                "temperature",
                "top_p",
                "top_k",
                "stop_sequences",
                "metadata",
                "tools",
                "tool_choice",
                "thinking",
                "service_tier",
                "container",
                "mcp_servers",
            ],
            LlmApi::Gemini { .. } => &[
                "contents",
                "systemInstruction",
                "generationConfig",
                "safetySettings",
                "tools",
                "toolConfig",
                "cachedContent",
            ],
            LlmApi::OllamaChat => &[
                "model",
                "messages",
                "stream",
                "format",
                "options",
                "keep_alive",
                "tools",
                "think",
            ],
            LlmApi::OllamaGenerate => &[
                "model",
                "prompt",
                "suffix",
                "images",
                "stream",
                "format",
                "options",
                "system",
                "template",
                "raw",
                "keep_alive",
                "context",
                "think",
            ],
        }
    }

    /// The fields `stream_options` may hold, for the APIs that take it.
    fn stream_options_fields(self) -> &'static [&'static str] {
        match self {
            LlmApi::OpenAiChat | LlmApi::OpenAiCompletions => {
                &["include_usage", "include_obfuscation"]
            }
            LlmApi::OpenAiResponses => &["include_obfuscation"],
            _ => &[],
        }
    }

    /// Whether the answer streams.
    fn streams(self, request: &Map<String, Value>) -> bool {
        match self {
            LlmApi::Gemini { stream, .. } => stream,
            // Ollama streams unless told not to.
            LlmApi::OllamaChat | LlmApi::OllamaGenerate => {
                request.get("stream") != Some(&Value::Bool(false))
            }
            _ => request.get("stream") == Some(&Value::Bool(true)),
        }
    }
}

/// One answer: status, content type, and the body in the pieces it is
/// written in (one piece: a whole body with `content-length`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmAnswer {
    pub status: u16,
    pub content_type: &'static str,
    pub pieces: Vec<Vec<u8>>,
    pub streamed: bool,
}

impl LlmAnswer {
    pub(super) fn json(status: u16, body: String) -> Self {
        LlmAnswer {
            status,
            content_type: "application/json",
            pieces: vec![body.into_bytes()],
            streamed: false,
        }
    }

    fn stream(content_type: &'static str, pieces: Vec<String>) -> Self {
        LlmAnswer {
            status: 200,
            content_type,
            pieces: pieces.into_iter().map(String::into_bytes).collect(),
            streamed: true,
        }
    }

    /// The whole body, uncompressed.
    pub fn body(&self) -> Vec<u8> {
        self.pieces.concat()
    }
}

/// What `api` answers to a request with `body`.
pub fn answer(api: LlmApi, body: &[u8]) -> LlmAnswer {
    let request = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        Ok(_) | Err(_) => return invalid_json(api),
    };
    if let Some(refusal) = unknown_field(api, &request) {
        return refusal;
    }
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("gemini-2.5-flash")
        .to_owned();
    let stream = api.streams(&request);
    match api {
        LlmApi::OpenAiChat | LlmApi::OpenAiCompletions => {
            let include_usage = request
                .get("stream_options")
                .and_then(|o| o.get("include_usage"))
                == Some(&Value::Bool(true));
            if request.contains_key("stream_options") && !stream {
                return openai_error(
                    "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                    "null",
                    "null",
                );
            }
            if stream {
                openai_chat_stream(&model, include_usage)
            } else {
                LlmAnswer::json(200, openai_chat_json(&model))
            }
        }
        LlmApi::OpenAiResponses if stream => responses_stream(&model),
        LlmApi::OpenAiResponses => LlmAnswer::json(200, responses_json(&model, "completed")),
        LlmApi::Anthropic if stream => anthropic_stream(&model),
        LlmApi::Anthropic => LlmAnswer::json(200, anthropic_json(&model)),
        LlmApi::Gemini { stream: false, .. } => LlmAnswer::json(200, gemini_last_chunk()),
        LlmApi::Gemini { sse: true, .. } => gemini_sse(),
        LlmApi::Gemini { .. } => gemini_array(),
        LlmApi::OllamaChat | LlmApi::OllamaGenerate => {
            let chat = api == LlmApi::OllamaChat;
            if stream {
                ollama_lines(&model, chat)
            } else {
                let mut answer = LlmAnswer::json(200, ollama_line(&model, chat, "Hello!", true));
                answer.content_type = "application/json; charset=utf-8";
                answer
            }
        }
    }
}

/// The refusal of a request field `api` does not know, if there is one.
fn unknown_field(api: LlmApi, request: &Map<String, Value>) -> Option<LlmAnswer> {
    let known = api.known_fields();
    let mut unknown = request
        .keys()
        .find(|k| !known.contains(&k.as_str()))
        .cloned();
    if unknown.is_none() {
        if let Some(Value::Object(options)) = request.get("stream_options") {
            let fields = api.stream_options_fields();
            unknown = options
                .keys()
                .find(|k| !fields.contains(&k.as_str()))
                .map(|k| format!("stream_options.{k}"));
        }
    }
    let field = unknown?;
    Some(match api {
        LlmApi::OpenAiChat | LlmApi::OpenAiCompletions => openai_error(
            &format!("Unrecognized request argument supplied: {field}"),
            "null",
            "null",
        ),
        LlmApi::OpenAiResponses => openai_error(
            &format!("Unknown parameter: '{field}'."),
            &format!("\"{field}\""),
            "\"unknown_parameter\"",
        ),
        LlmApi::Anthropic => LlmAnswer::json(
            400,
            format!(
                r#"{{"type":"error","error":{{"type":"invalid_request_error","message":"{field}: Extra inputs are not permitted"}},"request_id":"req_mock"}}"#
            ),
        ),
        LlmApi::Gemini { .. } => {
            let message = format!(
                r#"Invalid JSON payload received. Unknown name \"{field}\": Cannot find field."#
            );
            LlmAnswer::json(
                400,
                format!(
                    r#"{{"error":{{"code":400,"message":"{message}","status":"INVALID_ARGUMENT","details":[{{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{{"description":"{message}"}}]}}]}}}}"#
                ),
            )
        }
        LlmApi::OllamaChat | LlmApi::OllamaGenerate => LlmAnswer::json(
            400,
            format!(r#"{{"error":"json: unknown field \"{field}\""}}"#),
        ),
    })
}

fn invalid_json(api: LlmApi) -> LlmAnswer {
    match api {
        LlmApi::Anthropic => LlmAnswer::json(
            400,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"There was an error parsing the body of your request."}}"#.into(),
        ),
        _ => openai_error("We could not parse the JSON body of your request.", "null", "null"),
    }
}

/// OpenAI's error object; `param` and `code` as JSON.
fn openai_error(message: &str, param: &str, code: &str) -> LlmAnswer {
    LlmAnswer::json(
        400,
        format!(
            r#"{{"error":{{"message":"{message}","type":"invalid_request_error","param":{param},"code":{code}}}}}"#
        ),
    )
}

// ---- OpenAI Chat Completions: 40 + 60 ----

fn openai_usage() -> &'static str {
    r#"{"prompt_tokens":40,"completion_tokens":60,"total_tokens":100,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}"#
}

fn openai_chat_json(model: &str) -> String {
    format!(
        r#"{{"id":"chatcmpl-mock","object":"chat.completion","created":1700000000,"model":"{model}","choices":[{{"index":0,"message":{{"role":"assistant","content":"Hello! \"usage\": {{\"total_tokens\": 1}}","refusal":null,"annotations":[]}},"logprobs":null,"finish_reason":"stop"}}],"usage":{},"service_tier":"default","system_fingerprint":"fp_mock"}}"#,
        openai_usage()
    )
}

fn openai_chat_stream(model: &str, include_usage: bool) -> LlmAnswer {
    let null_usage = if include_usage {
        r#","usage":null"#
    } else {
        ""
    };
    let chunk = |delta: &str, finish: &str| {
        format!(
            "data: {{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"{model}\",\"system_fingerprint\":\"fp_mock\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}]{null_usage}}}\n\n"
        )
    };
    let mut pieces = vec![
        chunk(
            r#"{"role":"assistant","content":"","refusal":null}"#,
            "null",
        ),
        chunk(r#"{"content":"Hel"}"#, "null"),
        chunk(r#"{"content":"lo!"}"#, "null"),
        chunk("{}", "\"stop\""),
    ];
    if include_usage {
        pieces.push(format!(
            "data: {{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"{model}\",\"system_fingerprint\":\"fp_mock\",\"choices\":[],\"usage\":{}}}\n\n",
            openai_usage()
        ));
    }
    pieces.push("data: [DONE]\n\n".into());
    LlmAnswer::stream("text/event-stream; charset=utf-8", pieces)
}

// ---- OpenAI Responses: 30 + 70 ----

fn responses_json(model: &str, status: &str) -> String {
    let (output, usage) = if status == "completed" {
        (
            r#"[{"type":"message","id":"msg_mock","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hello!","annotations":[]}]}]"#,
            r#"{"input_tokens":30,"input_tokens_details":{"cached_tokens":0},"output_tokens":70,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":100}"#,
        )
    } else {
        ("[]", "null")
    };
    format!(
        r#"{{"id":"resp_mock","object":"response","created_at":1700000000,"status":"{status}","error":null,"incomplete_details":null,"instructions":null,"model":"{model}","output":{output},"parallel_tool_calls":true,"temperature":1.0,"tool_choice":"auto","tools":[],"top_p":1.0,"usage":{usage},"metadata":{{}}}}"#
    )
}

fn responses_stream(model: &str) -> LlmAnswer {
    let event = |name: &str, seq: u32, rest: String| {
        format!("event: {name}\ndata: {{\"type\":\"{name}\",\"sequence_number\":{seq},{rest}}}\n\n")
    };
    let delta = |seq: u32, text: &str| {
        event(
            "response.output_text.delta",
            seq,
            format!(r#""item_id":"msg_mock","output_index":0,"content_index":0,"delta":"{text}""#),
        )
    };
    LlmAnswer::stream(
        "text/event-stream; charset=utf-8",
        vec![
            event(
                "response.created",
                0,
                format!(r#""response":{}"#, responses_json(model, "in_progress")),
            ),
            event(
                "response.in_progress",
                1,
                format!(r#""response":{}"#, responses_json(model, "in_progress")),
            ),
            delta(2, "Hel"),
            delta(3, "lo!"),
            event(
                "response.output_text.done",
                4,
                r#""item_id":"msg_mock","output_index":0,"content_index":0,"text":"Hello!""#.into(),
            ),
            event(
                "response.completed",
                5,
                format!(r#""response":{}"#, responses_json(model, "completed")),
            ),
        ],
    )
}

// ---- Anthropic Messages: 25 + 75 ----

fn anthropic_json(model: &str) -> String {
    format!(
        r#"{{"id":"msg_mock","type":"message","role":"assistant","model":"{model}","content":[{{"type":"text","text":"Hello!"}}],"stop_reason":"end_turn","stop_sequence":null,"usage":{{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0}},"output_tokens":75,"service_tier":"standard"}}}}"#
    )
}

fn anthropic_stream(model: &str) -> LlmAnswer {
    let event = |name: &str, data: String| format!("event: {name}\ndata: {data}\n\n");
    LlmAnswer::stream(
        "text/event-stream; charset=utf-8",
        vec![
            event(
                "message_start",
                format!(
                    r#"{{"type":"message_start","message":{{"id":"msg_mock","type":"message","role":"assistant","model":"{model}","content":[],"stop_reason":null,"stop_sequence":null,"usage":{{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1,"service_tier":"standard"}}}}}}"#
                ),
            ),
            event(
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#
                    .into(),
            ),
            event("ping", r#"{"type": "ping"}"#.into()),
            event(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}"#
                    .into(),
            ),
            event(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo!"}}"#
                    .into(),
            ),
            event(
                "content_block_stop",
                r#"{"type":"content_block_stop","index":0}"#.into(),
            ),
            event(
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":75}}"#
                    .into(),
            ),
            event("message_stop", r#"{"type":"message_stop"}"#.into()),
        ],
    )
}

// ---- Gemini: 20 prompt + 50 candidates + 30 thoughts ----

/// One `GenerateContentResponse`; the usage grows chunk by chunk and the
/// last has `finishReason`.
fn gemini_chunk(text: &str, candidates: u64, thoughts: u64, last: bool) -> String {
    let finish = if last {
        r#","finishReason":"STOP""#
    } else {
        ""
    };
    let total = 20 + candidates + thoughts;
    format!(
        r#"{{"candidates":[{{"content":{{"parts":[{{"text":"{text}"}}],"role":"model"}}{finish},"index":0}}],"usageMetadata":{{"promptTokenCount":20,"candidatesTokenCount":{candidates},"totalTokenCount":{total},"promptTokensDetails":[{{"modality":"TEXT","tokenCount":20}}],"thoughtsTokenCount":{thoughts}}},"modelVersion":"gemini-2.5-flash","responseId":"mock"}}"#
    )
}

fn gemini_last_chunk() -> String {
    gemini_chunk("Hello!", 50, 30, true)
}

fn gemini_chunks() -> Vec<String> {
    vec![
        gemini_chunk("Hel", 10, 30, false),
        gemini_chunk("lo", 35, 30, false),
        gemini_chunk("!", 50, 30, true),
    ]
}

fn gemini_sse() -> LlmAnswer {
    let pieces = gemini_chunks()
        .into_iter()
        .map(|c| format!("data: {c}\r\n\r\n"))
        .collect();
    LlmAnswer::stream("text/event-stream", pieces)
}

fn gemini_array() -> LlmAnswer {
    let chunks = gemini_chunks();
    let last = chunks.len() - 1;
    let pieces = chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let open = if i == 0 { "[" } else { "" };
            let close = if i == last { "]" } else { ",\r\n" };
            format!("{open}{c}{close}")
        })
        .collect();
    LlmAnswer::stream("application/json; charset=UTF-8", pieces)
}

// ---- Ollama: 26 + 74 ----

fn ollama_line(model: &str, chat: bool, text: &str, done: bool) -> String {
    let content = if chat {
        format!(r#""message":{{"role":"assistant","content":"{text}"}}"#)
    } else {
        format!(r#""response":"{text}""#)
    };
    let end = if done {
        let context = if chat { "" } else { r#","context":[1,2,3]"# };
        format!(
            r#","done_reason":"stop","done":true{context},"total_duration":500000000,"load_duration":1000000,"prompt_eval_count":26,"prompt_eval_duration":2000000,"eval_count":74,"eval_duration":400000000"#
        )
    } else {
        r#","done":false"#.into()
    };
    format!(r#"{{"model":"{model}","created_at":"2025-01-01T00:00:00.000000Z",{content}{end}}}"#)
}

fn ollama_lines(model: &str, chat: bool) -> LlmAnswer {
    LlmAnswer::stream(
        "application/x-ndjson",
        vec![
            format!("{}\n", ollama_line(model, chat, "Hel", false)),
            format!("{}\n", ollama_line(model, chat, "lo!", false)),
            format!("{}\n", ollama_line(model, chat, "", true)),
        ],
    )
}
