//! The network sync runs over: TCP for every node ([`Tcp`], [`tokio::net::TcpListener`]),
//! or anything else that carries bytes both ways, such as the in-memory network of the
//! deterministic simulation (tests/it/sim.rs).
//!
//! Below this seam sync needs only a byte stream each way and the remote address (its IP
//! decides the per-address caps and the send budget's source); above it nothing knows what
//! carries the bytes. Each half is boxed: one indirect call per read or write, next to a
//! record's decryption, buys one session type for every network.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

/// The receiving half of a connection.
pub type ReadHalf = Box<dyn AsyncRead + Send + Sync + Unpin>;
/// The sending half of a connection.
pub type WriteHalf = Box<dyn AsyncWrite + Send + Sync + Unpin>;
/// What connecting or accepting yields, once it is done.
pub type Connecting<'a> = Pin<Box<dyn Future<Output = io::Result<Connection>> + Send + 'a>>;

/// One connection: both halves and who is at the other end.
pub struct Connection {
    /// Bytes from the peer.
    pub read: ReadHalf,
    /// Bytes to the peer.
    pub write: WriteHalf,
    /// The peer's address, if the network knows it.
    pub remote: Option<SocketAddr>,
}

impl Connection {
    /// A TCP connection, with Nagle's algorithm off: frames are written whole and each
    /// one is waited for.
    pub fn tcp(stream: TcpStream) -> Connection {
        let _ = stream.set_nodelay(true);
        let remote = stream.peer_addr().ok();
        let (read, write) = stream.into_split();
        Connection {
            read: Box::new(read),
            write: Box::new(write),
            remote,
        }
    }
}

/// Where dialers connect to (`HOST:PORT` as configured).
pub trait Network: Send + Sync + 'static {
    /// Opens a connection to `addr`.
    fn connect<'a>(&'a self, addr: &'a str) -> Connecting<'a>;
}

/// Where the listener takes connections from.
pub trait Listener: Send + 'static {
    /// The next connection (an error is the accept's, and is retried with a backoff).
    fn accept(&mut self) -> Connecting<'_>;
    /// The address it listens on, if it has one.
    fn local_addr(&self) -> Option<SocketAddr>;
}

/// The real network: TCP.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tcp;

impl Network for Tcp {
    fn connect<'a>(&'a self, addr: &'a str) -> Connecting<'a> {
        Box::pin(async move { TcpStream::connect(addr).await.map(Connection::tcp) })
    }
}

impl Listener for TcpListener {
    fn accept(&mut self) -> Connecting<'_> {
        Box::pin(async move {
            let (stream, remote) = TcpListener::accept(self).await?;
            Ok(Connection {
                remote: Some(remote),
                ..Connection::tcp(stream)
            })
        })
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        TcpListener::local_addr(self).ok()
    }
}
