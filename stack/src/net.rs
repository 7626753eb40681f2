//! Loopback TCP servers run by threads of the test process ([`Upstream`],
//! [`Relay`]): one accept thread, threads per connection, and a drop that
//! stops and joins all of them.
//!
//! [`Upstream`]: crate::Upstream
//! [`Relay`]: crate::Relay

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::LOCALHOST;

/// How often the accept loop looks at the stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(2);

/// What a connection handler started: sockets to shut down and threads to
/// join when the server stops.
#[derive(Debug, Default)]
pub(crate) struct Connection {
    pub(crate) sockets: Vec<TcpStream>,
    pub(crate) threads: Vec<JoinHandle<()>>,
}

impl Connection {
    fn is_finished(&self) -> bool {
        self.threads.iter().all(JoinHandle::is_finished)
    }

    fn stop(self) {
        for socket in &self.sockets {
            // Wakes threads blocked reading; threads between writes see
            // the stop flag or a failed write.
            let _ = socket.shutdown(Shutdown::Both);
        }
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    stopping: AtomicBool,
    connections: Mutex<Vec<Connection>>,
    errors: Mutex<Vec<String>>,
}

/// A listener on `127.0.0.1`, port chosen by the kernel (held from bind to
/// drop, so no other test can take it), handing each accepted connection to
/// a handler.
#[derive(Debug)]
pub(crate) struct Server {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

/// A shared stop flag for connection threads.
#[derive(Debug, Clone)]
pub(crate) struct Stopping(Arc<Shared>);

impl Stopping {
    pub(crate) fn get(&self) -> bool {
        self.0.stopping.load(Ordering::SeqCst)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking connection thread must not hide what was recorded.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Server {
    /// Binds and starts accepting. `handle` runs on the accept thread for
    /// each connection and must start its own threads.
    ///
    /// # Panics
    /// If no loopback port can be bound or no thread started.
    pub(crate) fn start(
        name: &str,
        mut handle: impl FnMut(TcpStream, SocketAddr, Stopping) -> io::Result<Connection>
            + Send
            + 'static,
    ) -> Self {
        let listener = TcpListener::bind((LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("{name}: cannot bind 127.0.0.1:0: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{name}: no local address: {e}"))
            .port();
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("{name}: cannot make the listener non-blocking: {e}"));
        let shared = Arc::new(Shared::default());
        let accept_shared = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name(format!("{name}-{port}"))
            .spawn(move || {
                accept_until_stopped(&listener, &accept_shared, &mut handle);
                stop_listening(&listener);
            })
            .unwrap_or_else(|e| panic!("{name}: cannot spawn the accept thread: {e}"));
        Self {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Accept and handler failures so far.
    pub(crate) fn errors(&self) -> Vec<String> {
        lock(&self.shared.errors).clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        // The acceptor is gone, so the list is final.
        let connections = std::mem::take(&mut *lock(&self.shared.connections));
        for connection in connections {
            connection.stop();
        }
    }
}

fn accept_until_stopped(
    listener: &TcpListener,
    shared: &Arc<Shared>,
    handle: &mut impl FnMut(TcpStream, SocketAddr, Stopping) -> io::Result<Connection>,
) {
    while !shared.stopping.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                // Accepted sockets may inherit non-blocking mode.
                let started = stream
                    .set_nonblocking(false)
                    .and_then(|()| handle(stream, peer, Stopping(Arc::clone(shared))));
                match started {
                    Ok(connection) => {
                        let mut connections = lock(&shared.connections);
                        // Forget connections that ended, keep the rest.
                        let (done, mut live): (Vec<_>, Vec<_>) = std::mem::take(&mut *connections)
                            .into_iter()
                            .partition(Connection::is_finished);
                        live.push(connection);
                        *connections = live;
                        drop(connections);
                        for connection in done {
                            connection.stop();
                        }
                    }
                    Err(e) => lock(&shared.errors).push(format!("connection from {peer}: {e}")),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_POLL),
            Err(e) => {
                lock(&shared.errors).push(format!("accept failed: {e}"));
                std::thread::sleep(ACCEPT_POLL);
            }
        }
    }
}

extern "C" {
    // From the C library std already links (as in `process.rs`).
    fn shutdown(fd: i32, how: i32) -> i32;
}

/// Takes the listening socket out of the LISTEN state now. Closing our file
/// descriptor is not enough: a child that another test thread is forking at
/// that moment holds a copy until its `exec`, and the port keeps accepting
/// until then (seen as a flaky "port still accepts after drop" when tests
/// start Envoys in parallel). On Linux, `shutdown(2)` on a listening socket
/// stops it whoever holds descriptors to it.
fn stop_listening(listener: &TcpListener) {
    const SHUT_RDWR: i32 = 2;
    // SAFETY: shutdown(2) takes a descriptor we own (borrowed for the call)
    // and a flag; it touches no memory of ours.
    let _ = unsafe { shutdown(listener.as_raw_fd(), SHUT_RDWR) };
}
