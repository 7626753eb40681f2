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

use crate::http::{self, Limit, Reader};
use crate::net::{Connection, Server, Stopping};
use crate::upstream::{Framing, RecordedRequest};

mod api;
mod gzip;
#[cfg(test)]
mod tests;

pub use api::{answer, LlmAnswer, LlmApi, REPORTED_TOKENS};
pub use gzip::{gunzip, Gzip};

const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause between the events of a stream.
const PAUSE: Duration = Duration::from_millis(25);

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
