//! A TCP relay between a dialing node and a listening one that counts the bytes each way, so
//! the benchmark sees what a session puts on the wire (TCP/IP headers not included) without
//! any hook in the library.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

pub struct Relay {
    addr: SocketAddr,
    /// Bytes from the dialer to the listener, over every connection relayed.
    to_listener: Arc<AtomicU64>,
    /// Bytes from the listener back to the dialer.
    to_dialer: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Listens on a fresh loopback port and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let to_listener = Arc::new(AtomicU64::new(0));
        let to_dialer = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(
            listener,
            target,
            to_listener.clone(),
            to_dialer.clone(),
            stopped,
        ));
        Relay {
            addr,
            to_listener,
            to_dialer,
            stop,
            task,
        }
    }

    /// The address the dialer dials instead of the listener's.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Bytes relayed so far: (dialer to listener, listener to dialer).
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.to_listener.load(Ordering::Relaxed),
            self.to_dialer.load(Ordering::Relaxed),
        )
    }

    /// Stops accepting, drops every relayed connection and returns once all its tasks ended.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap();
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    to_listener: Arc<AtomicU64>,
    to_dialer: Arc<AtomicU64>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut pipes = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped.changed() => break,
        };
        let Ok((dialer, _)) = accepted else { continue };
        let Ok(upstream) = TcpStream::connect(target).await else {
            continue;
        };
        // Without it, Nagle's algorithm would hold back the small handshake and
        // reconciliation frames and the relay would add delay the nodes do not have.
        let _ = dialer.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let (dialer_read, dialer_write) = dialer.into_split();
        let (upstream_read, upstream_write) = upstream.into_split();
        pipes.spawn(pipe(dialer_read, upstream_write, to_listener.clone()));
        pipes.spawn(pipe(upstream_read, dialer_write, to_dialer.clone()));
    }
    pipes.shutdown().await;
}

/// Copies `from` to `to`, counting, until either side closes.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, count: Arc<AtomicU64>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        count.fetch_add(n as u64, Ordering::Relaxed);
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
