//! A TCP relay that adds latency, for making a fast loopback backend slow.
//!
//! On loopback, a Redis round trip through webdis takes about a millisecond,
//! so "X happened before Y" can hold by luck: a plugin that releases an
//! answer without waiting for its Redis write still looks correct when the
//! test reads Redis a moment later. Put a [`Relay`] between Envoy and webdis
//! and every call takes at least twice its delay; then the order shows.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::net::{Connection, Server, Stopping};
use crate::LOCALHOST;

/// How long connecting to the target may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one delayed write may block.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Listens on `127.0.0.1` and forwards each connection to `target_port`,
/// delivering every byte, in both directions, `delay` after it arrived
/// (pure latency: bytes arriving back to back keep their spacing, no
/// delays add up). End of stream is forwarded too, after the same delay.
///
/// Dropping it stops the accept thread, shuts down every connection and
/// joins every thread.
#[derive(Debug)]
pub struct Relay {
    server: Server,
    accepted: Arc<AtomicUsize>,
    delay: Duration,
}

impl Relay {
    /// # Panics
    /// If no loopback port can be bound.
    pub fn start(target_port: u16, delay: Duration) -> Self {
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let server = Server::start("relay", move |client, peer, stopping| {
            let target = SocketAddr::from((LOCALHOST, target_port));
            let upstream = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT)?;
            count.fetch_add(1, Ordering::SeqCst);
            let mut connection = Connection::default();
            for socket in [&client, &upstream] {
                socket.set_nodelay(true)?;
                socket.set_write_timeout(Some(WRITE_TIMEOUT))?;
                connection.sockets.push(socket.try_clone()?);
            }
            let name = format!("relay-{peer}-{target_port}");
            for (from, to) in [(&client, &upstream), (&upstream, &client)] {
                let (sender, receiver) = mpsc::channel();
                let from = from.try_clone()?;
                let to = to.try_clone()?;
                connection.threads.push(
                    std::thread::Builder::new()
                        .name(format!("{name}-read"))
                        .spawn(move || read_side(from, &sender, delay))?,
                );
                let stopping = stopping.clone();
                connection.threads.push(
                    std::thread::Builder::new()
                        .name(format!("{name}-write"))
                        .spawn(move || write_side(to, &receiver, &stopping))?,
                );
            }
            Ok(connection)
        });
        Self {
            server,
            accepted,
            delay,
        }
    }

    /// The port to point clients at.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// Connections accepted and connected to the target so far (proves the
    /// traffic really went through the relay).
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Failures to accept or to reach the target.
    pub fn errors(&self) -> Vec<String> {
        self.server.errors()
    }
}

/// Reads until the end of the stream, handing each read to the writer with
/// the instant it is due; the end of the stream goes as an empty piece. A
/// read error drops the sender without one, which makes the writer abort.
fn read_side(mut from: TcpStream, sender: &mpsc::Sender<(Instant, Vec<u8>)>, delay: Duration) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let piece = match from.read(&mut buf) {
            Ok(0) => Vec::new(),
            Ok(n) => buf[..n].to_vec(),
            Err(_) => return,
        };
        let end = piece.is_empty();
        if sender.send((Instant::now() + delay, piece)).is_err() || end {
            return;
        }
    }
}

/// Writes each piece when it is due, and at the end of the stream
/// half-closes `to` so the peer sees it. Anything else ends both ways.
fn write_side(
    mut to: TcpStream,
    receiver: &mpsc::Receiver<(Instant, Vec<u8>)>,
    stopping: &Stopping,
) {
    while let Ok((due, bytes)) = receiver.recv() {
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        if stopping.get() {
            break;
        }
        if bytes.is_empty() {
            let _ = to.shutdown(Shutdown::Write);
            return;
        }
        if to.write_all(&bytes).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}
