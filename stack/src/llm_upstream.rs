//! An upstream that speaks the major LLM APIs the way the real services do.
//!
//! [`LlmUpstream`] answers, by path:
//! - OpenAI Chat Completions (`…/chat/completions`) and the legacy
//!   Completions API (`…/completions`);
//! - OpenAI Responses (`…/responses`);
//! - Anthropic Messages (`…/messages`);
//! - Gemini (`…/models/{model}:generateContent`, and
//!   `:streamGenerateContent`, server-sent events with `?alt=sse`, else a
//!   JSON array);
//! - Ollama's native API (`/api/chat`, `/api/generate`; JSON lines when
//!   streaming, which is its default).
//!
//! Like the real services it is strict: a request field the API does not
//! know gets a `400` with that service's kind of error message (OpenAI:
//! "Unrecognized request argument supplied", Responses: "Unknown
//! parameter", Anthropic: "Extra inputs are not permitted", Gemini:
//! "Unknown name … Cannot find field"). Real Ollama ignores unknown fields;
//! here it refuses them as Go's `DisallowUnknownFields` would, standing in
//! for the self-hosted servers whose request models forbid unknown fields.
//!
//! Every answer reports [`REPORTED_TOKENS`] in the API's own shape, and
//! an OpenAI chat stream reports usage only when the request asked with
//! `stream_options.include_usage`, as OpenAI does. Answers are compressed
//! with gzip when the request's `accept-encoding` takes it (or always,
//! when told to ignore `accept-encoding`, as some upstreams do); streams
//! are compressed as they go, one flushed block per event. Streamed events
//! are written `pause` apart, each in its own chunk.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::http::{self, Limit, Reader};
use crate::net::{Connection, Server, Stopping};
use crate::upstream::{Framing, RecordedRequest};

/// The tokens every answer reports, split in each API's own way.
pub const REPORTED_TOKENS: u64 = 100;

const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause between the events of a stream.
const PAUSE: Duration = Duration::from_millis(25);

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
    fn json(status: u16, body: String) -> Self {
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

// ---- gzip ----

/// A gzip stream written as it goes: deflate's stored blocks, one per
/// piece, so every piece can be sent (and decoded) before the next exists.
#[derive(Debug)]
pub struct Gzip {
    crc: u32,
    len: u32,
    started: bool,
}

impl Default for Gzip {
    fn default() -> Self {
        Self::new()
    }
}

impl Gzip {
    pub fn new() -> Self {
        Gzip {
            crc: !0,
            len: 0,
            started: false,
        }
    }

    /// The bytes that carry `data` (the header first, on the first call).
    pub fn piece(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            // Magic, deflate, no flags, no time, no extra flags, unknown OS.
            out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
        }
        for block in data.chunks(0xffff) {
            let len = block.len() as u16;
            out.push(0); // not the last block; stored
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(block);
        }
        for &b in data {
            self.crc ^= u32::from(b);
            for _ in 0..8 {
                let mask = (self.crc & 1).wrapping_neg();
                self.crc = (self.crc >> 1) ^ (0xEDB8_8320 & mask);
            }
        }
        self.len = self.len.wrapping_add(data.len() as u32);
        out
    }

    /// The last bytes: an empty final block and the trailer.
    pub fn finish(mut self) -> Vec<u8> {
        let mut out = self.piece(&[]);
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
        out.extend_from_slice(&(!self.crc).to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out
    }

    /// `data` as one gzip member.
    pub fn whole(data: &[u8]) -> Vec<u8> {
        let mut gzip = Gzip::new();
        let mut out = gzip.piece(data);
        out.extend_from_slice(&gzip.finish());
        out
    }
}

/// Decodes a gzip body with the system's `gzip -dc` (any deflate, as
/// Envoy's compressor writes it).
///
/// # Panics
/// If `gzip` is missing or the bytes are not gzip.
pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let gzip = crate::require_tool("gzip", "gzip");
    let mut child = std::process::Command::new(gzip)
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run gzip -dc: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("gzip -dc failed: {e}"));
    let _ = writer.join();
    assert!(
        output.status.success(),
        "gzip -dc refused the body: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

// ---- The server ----

#[derive(Debug, Default)]
struct State {
    requests: Vec<RecordedRequest>,
    errors: Vec<String>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// The LLM API upstream (see the module documentation): HTTP/1.1 on
/// `127.0.0.1`, keep-alive, a thread per connection, every complete
/// request recorded. Dropping it stops and joins every thread.
#[derive(Debug)]
pub struct LlmUpstream {
    server: Server,
    state: Arc<Mutex<State>>,
    ignore_accept_encoding: Arc<AtomicBool>,
}

impl LlmUpstream {
    /// Starts it.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let ignore = Arc::new(AtomicBool::new(false));
        let (for_server, ignore_for_server) = (Arc::clone(&state), Arc::clone(&ignore));
        let server = Server::start("llm-upstream", move |stream, peer, stopping| {
            let clone = stream.try_clone()?;
            let state = Arc::clone(&for_server);
            let ignore = Arc::clone(&ignore_for_server);
            let thread = std::thread::Builder::new()
                .name(format!("llm-upstream-{peer}"))
                .spawn(move || {
                    serve(&stream, peer, &state, &ignore, &stopping);
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                })?;
            Ok(Connection {
                sockets: vec![clone],
                threads: vec![thread],
            })
        });
        LlmUpstream {
            server,
            state,
            ignore_accept_encoding: ignore,
        }
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// From now on, answers compressed whatever `accept-encoding` says.
    pub fn ignore_accept_encoding(&self, ignore: bool) {
        self.ignore_accept_encoding.store(ignore, Ordering::SeqCst);
    }

    /// Every complete request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state).requests.clone()
    }

    /// Connection problems so far.
    pub fn errors(&self) -> Vec<String> {
        let mut errors = self.server.errors();
        errors.extend(lock(&self.state).errors.iter().cloned());
        errors
    }
}

fn serve(
    stream: &TcpStream,
    peer: SocketAddr,
    state: &Mutex<State>,
    ignore: &AtomicBool,
    stopping: &Stopping,
) {
    let what = format!("llm-upstream connection from {peer}");
    let error = |e: String| {
        if !stopping.get() {
            lock(state).errors.push(e);
        }
    };
    if let Err(e) = stream
        .set_nodelay(true)
        .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)))
    {
        error(format!("{what}: setup failed: {e}"));
        return;
    }
    let mut reader = Reader::new(stream, Limit::Idle(IDLE_TIMEOUT), what.clone());
    while !stopping.get() {
        let request = match read_request(&mut reader) {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(e) => return error(e.to_string()),
        };
        let gzip = ignore.load(Ordering::SeqCst)
            || request.header("accept-encoding").is_some_and(takes_gzip);
        let answer = match LlmApi::of(&request.path) {
            Some(api) => answer(api, &request.body),
            None => LlmAnswer::json(404, r#"{"error":"not found"}"#.into()),
        };
        lock(state).requests.push(request);
        if let Err(e) = write_answer(stream, &answer, gzip, stopping) {
            return error(format!("{what}: answer not delivered: {e}"));
        }
    }
}

/// Whether an `accept-encoding` value takes gzip (not with `q=0`).
fn takes_gzip(value: &str) -> bool {
    value.split(',').any(|coding| {
        let mut parts = coding.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default();
        let refused = parts.any(|p| p.replace(' ', "") == "q=0");
        (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
    })
}

fn read_request(reader: &mut Reader<&TcpStream>) -> io::Result<Option<RecordedRequest>> {
    let Some(head) = reader.read_head()? else {
        return Ok(None);
    };
    let mut parts = head.start.split(' ');
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad request line {:?}", head.start),
        ));
    };
    let (method, path) = (method.to_owned(), path.to_owned());
    let (body, framing) = if head.is_chunked() {
        let mut chunks = 0;
        let body = reader.read_chunked(|_| chunks += 1)?;
        (body, Framing::Chunked { chunks })
    } else if let Some(len) = head.content_length()? {
        (reader.read_fixed(len)?, Framing::ContentLength(len))
    } else {
        (Vec::new(), Framing::None)
    };
    Ok(Some(RecordedRequest {
        method,
        path,
        headers: head.headers,
        body,
        framing,
    }))
}

fn write_answer(
    mut stream: &TcpStream,
    answer: &LlmAnswer,
    gzip: bool,
    stopping: &Stopping,
) -> io::Result<()> {
    let reason = match answer.status {
        200 => "OK",
        400 => "Bad Request",
        _ => "Not Found",
    };
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: {}\r\nvary: accept-encoding\r\n",
        answer.status, answer.content_type
    );
    if gzip {
        head.push_str("content-encoding: gzip\r\n");
    }
    if !answer.streamed {
        let body = answer.body();
        let body = if gzip { Gzip::whole(&body) } else { body };
        head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        let mut all = head.into_bytes();
        all.extend_from_slice(&body);
        return stream.write_all(&all);
    }
    head.push_str("cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    let mut encoder = gzip.then(Gzip::new);
    for piece in &answer.pieces {
        std::thread::sleep(PAUSE);
        if stopping.get() {
            return Err(io::Error::other("the upstream is stopping"));
        }
        let bytes = match &mut encoder {
            Some(gzip) => gzip.piece(piece),
            None => piece.clone(),
        };
        stream.write_all(&http::encode_chunk(&bytes))?;
    }
    if let Some(gzip) = encoder {
        stream.write_all(&http::encode_chunk(&gzip.finish()))?;
    }
    std::thread::sleep(PAUSE);
    stream.write_all(b"0\r\n\r\n")
}

#[cfg(test)]
mod tests {
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
}
