//! An HTTP/2 upstream that ends its answers with trailers: cleartext
//! HTTP/2 with prior knowledge (h2c), as Envoy speaks to a cluster with
//! `http2_protocol_options`, answering each request with response headers,
//! its body as separate DATA frames (one a step, each sent at once), and
//! a HEADERS frame of trailers that ends the stream, the way gRPC-style
//! services and some LLM gateways end a streamed answer.
//!
//! It is strict where a real API is: the request body must be a JSON
//! object with `model` and `messages` (else `400`), the model one it
//! serves (else `404`), and anything that is not HTTP/2 framing closes
//! the connection. Header blocks are written as
//! literals without Huffman coding or indexing (valid HPACK that needs no
//! table); the request's header block is read past, not decoded.

// Test tooling: slicing a frame just read, at lengths it declares.
#![allow(clippy::indexing_slicing)]

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The answer to the requests for one model.
#[derive(Debug, Clone)]
pub struct H2Answer {
    /// The request's `model` this answers.
    pub model: &'static str,
    pub content_type: &'static str,
    /// The body, one DATA frame each (at most 16,384 bytes each).
    pub chunks: Vec<Vec<u8>>,
    /// The gap before each chunk after the first, and before the trailers.
    pub gap: Duration,
    /// The trailers that end the stream (names in lowercase).
    pub trailers: Vec<(&'static str, String)>,
}

/// The upstream; dropping it stops its threads.
#[derive(Debug)]
pub struct H2Upstream {
    port: u16,
    received: Receiver<Vec<u8>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
/// The largest frame a peer must accept without asking.
const MAX_FRAME: usize = 16_384;

impl H2Upstream {
    /// Starts listening on a free loopback port, answering each request
    /// with the answer of its model.
    ///
    /// # Panics
    /// If no port can be bound.
    pub fn start(answers: Vec<H2Answer>) -> Self {
        assert!(answers
            .iter()
            .all(|a| a.chunks.iter().all(|c| c.len() <= MAX_FRAME)));
        let listener = TcpListener::bind((stack::LOCALHOST, 0)).expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let port = listener.local_addr().expect("bound address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, received) = mpsc::channel();
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || accept(&listener, &answers, &tx, &stop))
        };
        H2Upstream {
            port,
            received,
            stop,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The body of the next request that reached it, within `timeout`.
    ///
    /// # Panics
    /// If none came.
    pub fn received(&self, timeout: Duration) -> Vec<u8> {
        self.received
            .recv_timeout(timeout)
            .expect("a request reached the HTTP/2 upstream")
    }
}

impl Drop for H2Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept(listener: &TcpListener, answers: &[H2Answer], tx: &Sender<Vec<u8>>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let (answers, tx) = (answers.to_vec(), tx.clone());
                // Not joined: a connection ends when Envoy closes it, or
                // at its read timeout.
                std::thread::spawn(move || {
                    let _ = serve(stream, &answers, &tx);
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => break,
        }
    }
}

/// One frame as read.
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

fn read_frame(stream: &mut TcpStream) -> io::Result<Frame> {
    let mut head = [0u8; 9];
    stream.read_exact(&mut head)?;
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0; len];
    stream.read_exact(&mut payload)?;
    Ok(Frame {
        kind: head[3],
        flags: head[4],
        stream: id,
        payload,
    })
}

fn write_frame(
    stream: &mut TcpStream,
    kind: u8,
    flags: u8,
    id: u32,
    payload: &[u8],
) -> io::Result<()> {
    let len = u32::try_from(payload.len()).expect("small frame");
    let mut frame = len.to_be_bytes()[1..].to_vec();
    frame.extend_from_slice(&[kind, flags]);
    frame.extend_from_slice(&id.to_be_bytes());
    frame.extend_from_slice(payload);
    stream.write_all(&frame)?;
    stream.flush()
}

/// An HPACK integer with an `n`-bit prefix whose high bits are `first`.
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | u8::try_from(value).expect("fits the prefix"));
        return;
    }
    out.push(first | u8::try_from(max).expect("prefix"));
    let mut rest = value - max;
    while rest >= 128 {
        out.push(u8::try_from(rest % 128).expect("7 bits") | 0x80);
        rest /= 128;
    }
    out.push(u8::try_from(rest).expect("7 bits"));
}

/// A header block of literal fields, new names, not indexed, not Huffman
/// coded.
fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_int(&mut out, 0, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, 0, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// The body bytes of a DATA frame, padding taken off.
fn data_of(frame: &Frame) -> &[u8] {
    if frame.flags & PADDED == 0 {
        return &frame.payload;
    }
    let pad = usize::from(frame.payload.first().copied().unwrap_or(0));
    frame
        .payload
        .get(1..frame.payload.len().saturating_sub(pad))
        .unwrap_or_default()
}

/// The model a chat request asks for, if it is one a chat API accepts.
fn model_of(body: &[u8]) -> Option<String> {
    let Ok(serde_json::Value::Object(request)) = serde_json::from_slice(body) else {
        return None;
    };
    if !request
        .get("messages")
        .is_some_and(serde_json::Value::is_array)
    {
        return None;
    }
    request.get("model")?.as_str().map(str::to_owned)
}

fn serve(mut stream: TcpStream, answers: &[H2Answer], tx: &Sender<Vec<u8>>) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut preface = [0u8; PREFACE.len()];
    stream.read_exact(&mut preface)?;
    if preface != PREFACE {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not HTTP/2"));
    }
    write_frame(&mut stream, SETTINGS, 0, 0, &[])?;
    // Request bodies by stream, until their end.
    let mut bodies: Vec<(u32, Vec<u8>)> = Vec::new();
    loop {
        let frame = read_frame(&mut stream)?;
        let ends = match frame.kind {
            SETTINGS if frame.flags & ACK == 0 => {
                write_frame(&mut stream, SETTINGS, ACK, 0, &[])?;
                None
            }
            PING if frame.flags & ACK == 0 => {
                write_frame(&mut stream, PING, ACK, 0, &frame.payload)?;
                None
            }
            HEADERS => {
                bodies.push((frame.stream, Vec::new()));
                // A block split over CONTINUATION frames is read past.
                let mut flags = frame.flags;
                while flags & END_HEADERS == 0 {
                    let next = read_frame(&mut stream)?;
                    if next.kind != CONTINUATION {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "no CONTINUATION",
                        ));
                    }
                    flags = next.flags;
                }
                (frame.flags & END_STREAM != 0).then_some(frame.stream)
            }
            DATA => {
                let data = data_of(&frame).to_vec();
                if let Some((_, body)) = bodies.iter_mut().find(|(id, _)| *id == frame.stream) {
                    body.extend_from_slice(&data);
                }
                if !frame.payload.is_empty() {
                    // Give back the window the frame used, on the
                    // connection and the stream.
                    let credit = u32::try_from(frame.payload.len()).expect("frame size");
                    write_frame(&mut stream, WINDOW_UPDATE, 0, 0, &credit.to_be_bytes())?;
                    if frame.flags & END_STREAM == 0 {
                        write_frame(
                            &mut stream,
                            WINDOW_UPDATE,
                            0,
                            frame.stream,
                            &credit.to_be_bytes(),
                        )?;
                    }
                }
                (frame.flags & END_STREAM != 0).then_some(frame.stream)
            }
            GOAWAY => return Ok(()),
            RST_STREAM => {
                bodies.retain(|(id, _)| *id != frame.stream);
                None
            }
            _ => None,
        };
        let Some(id) = ends else { continue };
        let Some(at) = bodies.iter().position(|(s, _)| *s == id) else {
            continue;
        };
        let (_, body) = bodies.remove(at);
        let model = model_of(&body);
        let _ = tx.send(body);
        let (status, error): (&str, &[u8]) = match model {
            None => (
                "400",
                br#"{"error":{"message":"model and messages are required"}}"#,
            ),
            Some(model) => match answers.iter().find(|a| a.model == model) {
                Some(answer) => {
                    respond(&mut stream, id, answer)?;
                    continue;
                }
                None => ("404", br#"{"error":{"message":"no such model"}}"#),
            },
        };
        let head = header_block(&[(":status", status), ("content-type", "application/json")]);
        write_frame(&mut stream, HEADERS, END_HEADERS, id, &head)?;
        write_frame(&mut stream, DATA, END_STREAM, id, error)?;
    }
}

fn respond(stream: &mut TcpStream, id: u32, answer: &H2Answer) -> io::Result<()> {
    let head = header_block(&[(":status", "200"), ("content-type", answer.content_type)]);
    write_frame(stream, HEADERS, END_HEADERS, id, &head)?;
    for (i, chunk) in answer.chunks.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(answer.gap);
        }
        write_frame(stream, DATA, 0, id, chunk)?;
    }
    std::thread::sleep(answer.gap);
    let trailers: Vec<(&str, &str)> = answer
        .trailers
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    write_frame(
        stream,
        HEADERS,
        END_HEADERS | END_STREAM,
        id,
        &header_block(&trailers),
    )
}
