//! A scripted HTTP/1.1 upstream that imitates an OpenAI-compatible API.
//!
//! Token-quota tests need an LLM API whose answers they control to the byte:
//! the usage numbers, whether the answer is one JSON body or a stream of
//! server-sent events, and exactly where the stream is cut into writes (a
//! usage object split across two chunks is the case proxies get wrong). They
//! also need to see what the proxy forwarded: the exact body bytes and how
//! they were framed, since a plugin that rewrites a body must fix the framing
//! too. [`Upstream`] does both, on threads of the test process, so it needs
//! no binary and cannot outlive its handle.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;

use crate::http::{self, Head, Limit, Reader};
use crate::net::{Connection, Server, Stopping};

/// How long a connection may sit idle between requests, or stall inside
/// one, before the upstream gives up on it. Longer than any client timeout
/// in the tests, so a stall is reported by the client that waited.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one write of an answer may block.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause between the writes of a streamed answer unless a test says
/// otherwise: long enough that Envoy reads (and forwards) each write on its
/// own on loopback, short enough to keep tests quick.
pub const DEFAULT_PAUSE: Duration = Duration::from_millis(20);

/// Token counts as an LLM API reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// `prompt_tokens` (OpenAI) or `input_tokens` (Anthropic).
    pub prompt: u64,
    /// `completion_tokens` (OpenAI) or `output_tokens` (Anthropic).
    pub completion: u64,
    /// `total_tokens` (OpenAI only); `None` leaves the field out. It may
    /// differ from `prompt + completion` (providers count reasoning or
    /// cached tokens there), which shows which field a consumer read.
    pub total: Option<u64>,
}

impl Usage {
    /// `prompt` and `completion` with `total_tokens` their sum.
    pub fn new(prompt: u64, completion: u64) -> Self {
        Self {
            prompt,
            completion,
            total: Some(prompt + completion),
        }
    }

    /// The same counts without `total_tokens`.
    pub fn without_total(self) -> Self {
        Self {
            total: None,
            ..self
        }
    }

    /// With an explicit `total_tokens`.
    pub fn with_total(self, total: u64) -> Self {
        Self {
            total: Some(total),
            ..self
        }
    }

    /// What an OpenAI-style consumer should charge: `total_tokens`, else
    /// prompt plus completion.
    pub fn charged(&self) -> u64 {
        self.total.unwrap_or(self.prompt + self.completion)
    }

    /// The OpenAI `usage` object, compact, fields in the API's order.
    pub fn openai_json(&self) -> String {
        match self.total {
            Some(total) => format!(
                r#"{{"prompt_tokens":{},"completion_tokens":{},"total_tokens":{total}}}"#,
                self.prompt, self.completion
            ),
            None => format!(
                r#"{{"prompt_tokens":{},"completion_tokens":{}}}"#,
                self.prompt, self.completion
            ),
        }
    }
}

/// The body of a [`Reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyBody {
    /// Sent with `content-length`, together with the head in one write.
    Full(Vec<u8>),
    /// Sent with `transfer-encoding: chunked`: the head, then each part as
    /// one chunk in its own write after `pause`, then the last chunk after
    /// another `pause`.
    Chunked {
        parts: Vec<Vec<u8>>,
        pause: Duration,
    },
}

/// One scripted answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// Header fields besides the framing ones (which come from `body`).
    pub headers: Vec<(String, String)>,
    pub body: ReplyBody,
}

impl Reply {
    /// `status` with a JSON `body` and `content-length`.
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: ReplyBody::Full(body.into()),
        }
    }

    /// `200` with any `content_type` and `body`, with `content-length`.
    pub fn full(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: ReplyBody::Full(body.into()),
        }
    }

    /// An OpenAI chat completion (`"object":"chat.completion"`) reporting
    /// `usage`, with `content-length`.
    pub fn openai(usage: Usage) -> Self {
        let body = format!(
            r#"{{"id":"x","object":"chat.completion","created":1700000000,"model":"test-model","choices":[{{"index":0,"message":{{"role":"assistant","content":"Hello, world!"}},"finish_reason":"stop"}}],"usage":{}}}"#,
            usage.openai_json()
        );
        Self::json(200, body)
    }

    /// An Anthropic message reporting `"usage":{"input_tokens":..,
    /// "output_tokens":..}`, with `content-length`.
    pub fn anthropic(input_tokens: u64, output_tokens: u64) -> Self {
        let body = format!(
            r#"{{"id":"msg_x","type":"message","role":"assistant","model":"test-model","content":[{{"type":"text","text":"Hello, world!"}}],"stop_reason":"end_turn","stop_sequence":null,"usage":{{"input_tokens":{input_tokens},"output_tokens":{output_tokens}}}}}"#
        );
        Self::json(200, body)
    }

    /// A `text/event-stream` of exactly these `parts`, one chunk (and one
    /// write) each, `pause` apart. The parts are sent as given, so a test can
    /// cut events anywhere.
    pub fn sse(parts: Vec<Vec<u8>>, pause: Duration) -> Self {
        Self {
            status: 200,
            headers: vec![
                ("content-type".into(), "text/event-stream".into()),
                ("cache-control".into(), "no-cache".into()),
            ],
            body: ReplyBody::Chunked { parts, pause },
        }
    }

    /// The OpenAI stream `stream` describes (see [`OpenAiStream`]).
    pub fn openai_stream(stream: &OpenAiStream) -> Self {
        Self::sse(stream.parts(), stream.pause)
    }

    /// Adds a header field.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The body bytes a client must receive, chunked coding removed.
    pub fn body_bytes(&self) -> Vec<u8> {
        match &self.body {
            ReplyBody::Full(body) => body.clone(),
            ReplyBody::Chunked { parts, .. } => parts.concat(),
        }
    }

    fn encode_head(&self) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status)).into_bytes();
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        match &self.body {
            ReplyBody::Full(body) => {
                out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes())
            }
            ReplyBody::Chunked { .. } => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// An OpenAI chat-completion stream as sent with
/// `stream_options.include_usage`: one `chat.completion.chunk` event per
/// word (with `"usage":null`), an event with `finish_reason: "stop"`, the
/// usage event (`"choices":[]`) cut into two writes inside its usage object,
/// and `data: [DONE]`. Every event is its own write otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiStream {
    pub words: Vec<String>,
    /// The usage of the final event, the one to charge.
    pub usage: Usage,
    /// How many bytes of the usage object (from its `{`) go in the first of
    /// the two writes; `None` cuts it in the middle. Must leave at least one
    /// byte on each side.
    pub usage_split: Option<usize>,
    /// The pause before each write.
    pub pause: Duration,
    /// Every word event also carries the usage so far (as vLLM's
    /// `continuous_usage_stats` does), all smaller than the final one: only
    /// the last usage seen is the answer's.
    pub running_usage: bool,
}

impl OpenAiStream {
    /// Four words, `usage` cut in the middle, [`DEFAULT_PAUSE`], no running
    /// usage.
    pub fn new(usage: Usage) -> Self {
        Self {
            words: ["Hello", ",", " world", "!"].map(String::from).to_vec(),
            usage,
            usage_split: None,
            pause: DEFAULT_PAUSE,
            running_usage: false,
        }
    }

    pub fn usage_split(mut self, bytes: usize) -> Self {
        self.usage_split = Some(bytes);
        self
    }

    pub fn pause(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }

    pub fn running_usage(mut self, on: bool) -> Self {
        self.running_usage = on;
        self
    }

    /// The writes, in order.
    ///
    /// # Panics
    /// If `usage_split` does not fall strictly inside the usage object.
    pub fn parts(&self) -> Vec<Vec<u8>> {
        const HEAD: &str = r#""id":"chatcmpl-x","object":"chat.completion.chunk","created":1700000000,"model":"test-model""#;
        let event = |choices: &str, usage: &str| {
            format!("data: {{{HEAD},\"choices\":{choices},\"usage\":{usage}}}\n\n").into_bytes()
        };
        let mut parts = Vec::new();
        for (i, word) in self.words.iter().enumerate() {
            let content = Value::String(word.clone()).to_string();
            let choices =
                format!(r#"[{{"index":0,"delta":{{"content":{content}}},"finish_reason":null}}]"#);
            let usage = if self.running_usage {
                let so_far = (i as u64 + 1).min(self.usage.completion.saturating_sub(1));
                Usage::new(self.usage.prompt, so_far).openai_json()
            } else {
                "null".to_owned()
            };
            parts.push(event(&choices, &usage));
        }
        parts.push(event(
            r#"[{"index":0,"delta":{},"finish_reason":"stop"}]"#,
            "null",
        ));
        let usage = self.usage.openai_json();
        let last = event("[]", &usage);
        let usage_at = last.len() - usage.len() - "}\n\n".len();
        let split = self.usage_split.unwrap_or(usage.len() / 2);
        assert!(
            (1..usage.len()).contains(&split),
            "usage_split {split} is not inside the {}-byte usage object {usage}",
            usage.len()
        );
        let (first, second) = last.split_at(usage_at + split);
        parts.push(first.to_vec());
        parts.push(second.to_vec());
        parts.push(b"data: [DONE]\n\n".to_vec());
        parts
    }

    /// The whole stream as a client must receive it.
    pub fn bytes(&self) -> Vec<u8> {
        self.parts().concat()
    }
}

/// How a request body was framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Neither `content-length` nor `transfer-encoding`: no body.
    None,
    /// `content-length` with this value (the body had exactly this length).
    ContentLength(usize),
    /// `transfer-encoding: chunked`, in this many non-empty chunks.
    Chunked { chunks: usize },
}

/// One request as the upstream received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// The request target as sent (path and query).
    pub path: String,
    /// Header fields in wire order, names as received.
    pub headers: Vec<(String, String)>,
    /// The body bytes, chunked coding removed.
    pub body: Vec<u8>,
    pub framing: Framing,
}

impl RecordedRequest {
    /// The first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    ///
    /// # Panics
    /// If it is not JSON, showing the body.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {} body is not JSON ({e}): {:?}",
                self.method,
                self.path,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// What the connection threads share with the handle.
#[derive(Debug)]
struct State {
    queue: VecDeque<Reply>,
    default: Reply,
    requests: Vec<RecordedRequest>,
    errors: Vec<String>,
}

type Shared = Mutex<State>;

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A panicking connection thread must not hide what was recorded.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

fn record_error(shared: &Shared, stopping: &Stopping, what: String) {
    if !stopping.get() {
        lock(shared).errors.push(what);
    }
}

/// A scripted HTTP/1.1 server on `127.0.0.1` (keep-alive, any number of
/// connections, one thread each). Every complete request is recorded, then
/// answered with the next queued [`Reply`] ([`Upstream::push`]), or the
/// default one when the queue is empty.
///
/// Dropping it stops the accept thread, shuts down every connection and
/// joins every thread; the port is closed when drop returns.
#[derive(Debug)]
pub struct Upstream {
    server: Server,
    shared: Arc<Shared>,
}

impl Upstream {
    /// Starts an upstream answering [`Reply::openai`] with
    /// `Usage::new(10, 20)` until told otherwise.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub fn start() -> Self {
        Self::start_with(Reply::openai(Usage::new(10, 20)))
    }

    /// Starts an upstream answering `default` until told otherwise.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub fn start_with(default: Reply) -> Self {
        let shared = Arc::new(Mutex::new(State {
            queue: VecDeque::new(),
            default,
            requests: Vec::new(),
            errors: Vec::new(),
        }));
        let for_server = Arc::clone(&shared);
        let server = Server::start("upstream", move |stream, peer, stopping| {
            let clone = stream.try_clone()?;
            let shared = Arc::clone(&for_server);
            let thread = std::thread::Builder::new()
                .name(format!("upstream-conn-{peer}"))
                .spawn(move || serve(stream, peer, &shared, &stopping))?;
            Ok(Connection {
                sockets: vec![clone],
                threads: vec![thread],
            })
        });
        Self { server, shared }
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Queues `reply` for the next request that finds the queue non-empty
    /// (first in, first out).
    pub fn push(&self, reply: Reply) {
        lock(&self.shared).queue.push_back(reply);
    }

    /// Replaces the answer given when the queue is empty.
    pub fn set_default(&self, reply: Reply) {
        lock(&self.shared).default = reply;
    }

    /// Every complete request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared).requests.clone()
    }

    /// How many complete requests arrived.
    pub fn request_count(&self) -> usize {
        lock(&self.shared).requests.len()
    }

    /// Connection problems seen so far: a request cut off mid-body, bad
    /// framing, a client gone before its answer was written.
    pub fn errors(&self) -> Vec<String> {
        let mut errors = self.server.errors();
        errors.extend(lock(&self.shared).errors.iter().cloned());
        errors
    }
}

/// Serves requests on one connection until the peer closes it, asks to
/// close it, breaks the protocol, or the upstream stops.
fn serve(stream: TcpStream, peer: SocketAddr, shared: &Shared, stopping: &Stopping) {
    serve_requests(&stream, peer, shared, stopping);
    // The server keeps a clone of the socket, so dropping ours would not
    // close the connection: say goodbye explicitly.
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

fn serve_requests(stream: &TcpStream, peer: SocketAddr, shared: &Shared, stopping: &Stopping) {
    let what = format!("upstream connection from {peer}");
    let setup = stream
        .set_nodelay(true)
        .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)));
    if let Err(e) = setup {
        record_error(shared, stopping, format!("{what}: setup failed: {e}"));
        return;
    }
    let mut reader = Reader::new(stream, Limit::Idle(IDLE_TIMEOUT), what.clone());
    while !stopping.get() {
        let request = match read_request(&mut reader) {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(e) => {
                record_error(shared, stopping, e.to_string());
                return;
            }
        };
        let close = request
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let reply = {
            let mut state = lock(shared);
            state.requests.push(request);
            let next = state.queue.pop_front();
            next.unwrap_or_else(|| state.default.clone())
        };
        if let Err(e) = write_reply(stream, &reply, stopping) {
            record_error(
                shared,
                stopping,
                format!("{what}: answer not delivered: {e}"),
            );
            return;
        }
        if close {
            return;
        }
    }
}

fn read_request(reader: &mut Reader<&TcpStream>) -> io::Result<Option<RecordedRequest>> {
    let Some(head) = reader.read_head()? else {
        return Ok(None);
    };
    let mut parts = head.start.split(' ');
    let (Some(method), Some(path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad_request(&head));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad_request(&head));
    }
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
        method: method.to_owned(),
        path: path.to_owned(),
        body,
        framing,
        headers: head.headers,
    }))
}

fn bad_request(head: &Head) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("bad request line {:?}", head.start),
    )
}

fn write_reply(mut stream: &TcpStream, reply: &Reply, stopping: &Stopping) -> io::Result<()> {
    let stopped = || io::Error::other("the upstream is stopping");
    match &reply.body {
        ReplyBody::Full(body) => {
            let mut all = reply.encode_head();
            all.extend_from_slice(body);
            stream.write_all(&all)
        }
        ReplyBody::Chunked { parts, pause } => {
            stream.write_all(&reply.encode_head())?;
            for part in parts.iter().filter(|p| !p.is_empty()) {
                std::thread::sleep(*pause);
                if stopping.get() {
                    return Err(stopped());
                }
                stream.write_all(&http::encode_chunk(part))?;
            }
            std::thread::sleep(*pause);
            stream.write_all(b"0\r\n\r\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

    #[test]
    fn the_usage_event_is_cut_inside_its_usage_object() {
        let usage = Usage::new(12, 30);
        let stream = OpenAiStream::new(usage).usage_split(8);
        let parts = stream.parts();
        assert_eq!(parts.len(), 4 + 1 + 2 + 1);
        let first = String::from_utf8(parts[5].clone()).unwrap();
        let second = String::from_utf8(parts[6].clone()).unwrap();
        assert!(first.ends_with(r#""usage":{"prompt"#), "{first}");
        assert!(second.starts_with(r#"_tokens":12,"#), "{second}");
        assert_eq!(parts[7], b"data: [DONE]\n\n");
        // Each complete event is valid JSON after `data: `.
        let text = String::from_utf8(stream.bytes()).unwrap();
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 7);
        for event in &events[..6] {
            let json: Value = serde_json::from_str(event.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(json["object"], "chat.completion.chunk");
        }
        let last: Value = serde_json::from_str(events[5].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(last["usage"]["total_tokens"], 42);
        assert_eq!(last["choices"], json!([]));
    }

    #[test]
    fn running_usage_stays_below_the_final_usage() {
        let stream = OpenAiStream::new(Usage::new(5, 40)).running_usage(true);
        let text = String::from_utf8(stream.bytes()).unwrap();
        let totals: Vec<u64> = text
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter_map(|e| serde_json::from_str::<Value>(e).ok())
            .filter_map(|e| e["usage"]["total_tokens"].as_u64())
            .collect();
        assert_eq!(totals, [6, 7, 8, 9, 45]);
    }

    #[test]
    #[should_panic(expected = "is not inside")]
    fn a_split_outside_the_usage_object_is_refused() {
        OpenAiStream::new(Usage::new(1, 2)).usage_split(0).parts();
    }

    #[test]
    fn json_replies_carry_the_usage() {
        let openai: Value =
            serde_json::from_slice(&Reply::openai(Usage::new(30, 20).with_total(70)).body_bytes())
                .unwrap();
        assert_eq!(
            openai["usage"],
            json!({"prompt_tokens": 30, "completion_tokens": 20, "total_tokens": 70})
        );
        let no_total: Value =
            serde_json::from_slice(&Reply::openai(Usage::new(3, 4).without_total()).body_bytes())
                .unwrap();
        assert!(no_total["usage"].get("total_tokens").is_none());
        let anthropic: Value =
            serde_json::from_slice(&Reply::anthropic(7, 5).body_bytes()).unwrap();
        assert_eq!(
            anthropic["usage"],
            json!({"input_tokens": 7, "output_tokens": 5})
        );
        let head = String::from_utf8(Reply::openai(Usage::new(1, 1)).encode_head()).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("content-length: "), "{head}");
    }
}
