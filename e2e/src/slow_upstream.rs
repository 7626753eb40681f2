//! A slow upstream the test drives step by step: an HTTP/1.1 server on
//! loopback that answers each request with a script of chunks, pauses,
//! and an ending (a clean end of the chunked body, or the connection cut
//! mid-body), and tells the test when it sent each step.
//!
//! It stands for an LLM API streaming its answer at the pace of the model:
//! the events of a `text/event-stream` answer, or the parts of a JSON
//! answer, leave as separate chunked-encoding chunks, each flushed at once,
//! with the gaps the script says between them.

// Test tooling: slicing a buffer just read, at offsets just found in it.
#![allow(clippy::indexing_slicing)]

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One step of an answer.
#[derive(Debug, Clone)]
pub enum Step {
    /// Sends these bytes as one chunk, flushed at once.
    Chunk(Vec<u8>),
    /// Waits this long.
    Pause(Duration),
    /// Ends the body (the last chunk) and closes the connection.
    End,
    /// Closes the connection without ending the body: an upstream that
    /// drops the connection mid-answer (Envoy flags it `UC`).
    Cut,
}

/// An answer: a content type and its steps.
#[derive(Debug, Clone)]
pub struct Script {
    pub content_type: &'static str,
    pub steps: Vec<Step>,
}

/// What the upstream did for one request.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The index of the step in the script.
    pub step: usize,
    /// When it was done.
    pub at: Instant,
}

/// What reached the upstream: the request's body.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: Vec<u8>,
}

/// The upstream; dropping it stops its threads.
#[derive(Debug)]
pub struct SlowUpstream {
    port: u16,
    scripts: Arc<Mutex<VecDeque<Script>>>,
    sent: Receiver<Sent>,
    received: Receiver<Received>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// How long a connection waits for its request, and a step for the client.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

impl SlowUpstream {
    /// Starts listening on a free loopback port.
    ///
    /// # Panics
    /// If no port can be bound.
    pub fn start() -> Self {
        let listener = TcpListener::bind((stack::LOCALHOST, 0)).expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let port = listener.local_addr().expect("its address").port();
        let scripts: Arc<Mutex<VecDeque<Script>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (sent_tx, sent) = mpsc::channel();
        let (received_tx, received) = mpsc::channel();
        let thread = {
            let scripts = Arc::clone(&scripts);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || accept(&listener, &scripts, &stop, &sent_tx, &received_tx))
        };
        SlowUpstream {
            port,
            scripts,
            sent,
            received,
            stop,
            thread: Some(thread),
        }
    }

    /// The port Envoy's cluster points at.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Queues the answer to the next request.
    ///
    /// # Panics
    /// If the queue's lock is poisoned.
    pub fn answer_next(&self, script: Script) {
        self.scripts.lock().expect("scripts lock").push_back(script);
    }

    /// Waits until step `step` of the current answer was done, within
    /// `timeout`; steps done before it are skipped.
    ///
    /// # Panics
    /// If it does not happen in time.
    pub fn wait_step(&self, step: usize, timeout: Duration) -> Instant {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.sent.recv_timeout(left) {
                Ok(sent) if sent.step == step => return sent.at,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    panic!("the upstream did not do step {step} within {timeout:?}")
                }
            }
        }
    }

    /// The next request that reached the upstream, within `timeout`.
    ///
    /// # Panics
    /// If none does.
    pub fn received(&self, timeout: Duration) -> Received {
        self.received
            .recv_timeout(timeout)
            .unwrap_or_else(|e| panic!("no request reached the upstream within {timeout:?}: {e}"))
    }
}

impl Drop for SlowUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept(
    listener: &TcpListener,
    scripts: &Arc<Mutex<VecDeque<Script>>>,
    stop: &AtomicBool,
    sent: &Sender<Sent>,
    received: &Sender<Received>,
) {
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let scripts = Arc::clone(scripts);
                let sent = sent.clone();
                let received = received.clone();
                connections.push(std::thread::spawn(move || {
                    let _ = serve(stream, &scripts, &sent, &received);
                }));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
        connections.retain(|c| !c.is_finished());
    }
    for connection in connections {
        let _ = connection.join();
    }
}

/// Serves the request of one connection with the next queued script.
fn serve(
    mut stream: TcpStream,
    scripts: &Mutex<VecDeque<Script>>,
    sent: &Sender<Sent>,
    received: &Sender<Received>,
) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let body = read_request(&mut stream)?;
    let _ = received.send(Received { body });
    // The answer is taken once its request has arrived, in order.
    let script = scripts.lock().ok().and_then(|mut q| q.pop_front());
    let Some(script) = script else {
        stream.write_all(
            b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 9\r\n\r\nno script",
        )?;
        return Ok(());
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {}\r\ntransfer-encoding: chunked\r\n\r\n",
        script.content_type
    );
    stream.write_all(head.as_bytes())?;
    for (i, step) in script.steps.iter().enumerate() {
        match step {
            Step::Chunk(bytes) => {
                let mut chunk = format!("{:x}\r\n", bytes.len()).into_bytes();
                chunk.extend_from_slice(bytes);
                chunk.extend_from_slice(b"\r\n");
                stream.write_all(&chunk)?;
                stream.flush()?;
            }
            Step::Pause(gap) => std::thread::sleep(*gap),
            Step::End => {
                stream.write_all(b"0\r\n\r\n")?;
                stream.flush()?;
            }
            Step::Cut => {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
        let _ = sent.send(Sent {
            step: i,
            at: Instant::now(),
        });
        if matches!(step, Step::End | Step::Cut) {
            break;
        }
    }
    // Closing once the answer is done keeps one request per connection.
    let _ = stream.shutdown(Shutdown::Both);
    Ok(())
}

/// Reads one request's head and body (`content-length` or chunked).
fn read_request(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut piece = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = find(&buf, b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut piece)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&piece[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length = head.lines().find_map(|line| {
        line.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    let chunked = head.contains("transfer-encoding: chunked");
    let mut body = buf.split_off(head_end);
    loop {
        let complete = match length {
            Some(length) => body.len() >= length,
            None if chunked => find(&body, b"0\r\n\r\n").is_some(),
            None => true,
        };
        if complete {
            break;
        }
        let n = stream.read(&mut piece)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&piece[..n]);
    }
    if chunked {
        body = dechunk(&body);
    }
    Ok(body)
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = find(raw, b"\r\n") {
        let size = std::str::from_utf8(&raw[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        let end = (start + size).min(raw.len());
        out.extend_from_slice(&raw[start..end]);
        raw = raw.get(end + 2..).unwrap_or_default();
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
