//! The simulated network of `tests/it/sim.rs`: in memory, on the simulation's one runtime.
//!
//! Node `i` is at `10.0.0.{i+1}:7000`. Its sync dials through [`SimNet::network_of`] and
//! accepts from [`SimNet::listener_of`]. Every connection between two nodes is a relay the
//! test controls: two in-memory pipes, and between them a task per direction that forwards
//! chunks as the link's [`LinkMode`] says. The two directions of one pair of nodes share one
//! mode, so a partition cuts both. A connect to a node that is down, or across a partition,
//! is refused at once.
//!
//! Every chunk takes [`LATENCY`] to cross (one chunk after the other, like a link of
//! limited rate). What a mode does to the bytes is the transport's problem, never the relay's: it only
//! forwards, holds, delays, cuts or flips bytes. The encrypted transport must end a session
//! whose records no longer authenticate, and the dialers must reconnect.
//!
//! Nothing here reads a clock or a random number: on a runtime whose time is paused, the
//! same operations in the same order carry the same bytes at the same simulated times.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kappalog::sync::net::{Connecting, Connection, Listener, Network};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

/// Bytes read per chunk; a mode applies per chunk.
const CHUNK_BYTES: usize = 16 * 1024;
/// What a pipe buffers before its writer waits (a socket's buffer, roughly).
const PIPE_BYTES: usize = 64 * 1024;
/// How long every chunk takes to cross a link: without it a simulated network would carry
/// anything in no time at all, and no append could ever land while a node waits for bytes.
pub const LATENCY: Duration = Duration::from_millis(1);
/// The port every node listens on.
const PORT: u16 = 7000;

/// What a link does to the connections that cross it. A change applies to live connections
/// from their next chunk on (a partition cuts them at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkMode {
    /// Forward everything as it comes.
    Pass,
    /// No connection crosses: new ones are refused, live ones are cut.
    Partitioned,
    /// Every chunk waits this long before it is forwarded (order kept).
    Delay { ms: u64 },
    /// Nothing is forwarded; what arrives is held and released, in order, when the mode
    /// changes (the sessions' frame and idle deadlines may end them first).
    Hold,
    /// Each connection is cut once this many bytes crossed it, both directions together.
    CutAfter { bytes: u64 },
    /// In each direction of each connection, the byte at this offset is flipped.
    FlipAt { offset: u64 },
}

struct State {
    /// One mode per unordered pair `(a, b)` with `a < b`.
    links: BTreeMap<(usize, usize), watch::Sender<LinkMode>>,
    /// Where connections to each node go; `None` while it is down.
    listeners: Vec<Option<mpsc::UnboundedSender<Connection>>>,
    /// The source port of the next connection (each connection its own, as with TCP).
    next_port: u16,
}

/// The network of one simulation. Cheap to clone.
#[derive(Clone)]
pub struct SimNet {
    state: Arc<Mutex<State>>,
}

/// Node `i`'s address.
pub fn addr_of(i: usize) -> SocketAddr {
    let host = u8::try_from(i + 1).expect("at most 255 nodes");
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, host)), PORT)
}

fn node_at(addr: &str) -> Option<usize> {
    let addr: SocketAddr = addr.parse().ok()?;
    match addr.ip() {
        IpAddr::V4(ip) if ip.octets()[..3] == [10, 0, 0] && addr.port() == PORT => {
            usize::from(ip.octets()[3]).checked_sub(1)
        }
        _ => None,
    }
}

impl SimNet {
    /// The network of `nodes` nodes, every link in [`LinkMode::Pass`], every node down.
    pub fn new(nodes: usize) -> SimNet {
        let mut links = BTreeMap::new();
        for a in 0..nodes {
            for b in a + 1..nodes {
                links.insert((a, b), watch::channel(LinkMode::Pass).0);
            }
        }
        SimNet {
            state: Arc::new(Mutex::new(State {
                links,
                listeners: (0..nodes).map(|_| None).collect(),
                next_port: 40_000,
            })),
        }
    }

    /// The addresses node `i` is configured to dial: every other node's.
    pub fn peers_of(&self, i: usize) -> Vec<String> {
        let n = self.state.lock().unwrap().listeners.len();
        (0..n)
            .filter(|&j| j != i)
            .map(|j| addr_of(j).to_string())
            .collect()
    }

    /// What node `i` dials through.
    pub fn network_of(&self, i: usize) -> Arc<dyn Network> {
        Arc::new(NodeNet {
            net: self.clone(),
            from: i,
        })
    }

    /// Node `i` is up: the listener its sync accepts from. Dropping it (the node stops)
    /// takes it down again.
    pub fn listener_of(&self, i: usize) -> Box<dyn Listener> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.state.lock().unwrap().listeners[i] = Some(tx);
        Box::new(SimListener {
            incoming: rx,
            addr: addr_of(i),
        })
    }

    /// Node `i` is down: connects to it are refused.
    pub fn set_down(&self, i: usize) {
        self.state.lock().unwrap().listeners[i] = None;
    }

    pub fn set_link(&self, a: usize, b: usize, mode: LinkMode) {
        self.state.lock().unwrap().links[&(a.min(b), a.max(b))].send_replace(mode);
    }

    pub fn link(&self, a: usize, b: usize) -> LinkMode {
        *self.state.lock().unwrap().links[&(a.min(b), a.max(b))].borrow()
    }

    /// Every link of node `i` back to [`LinkMode::Pass`].
    pub fn heal_node(&self, i: usize) {
        for ((a, b), mode) in &self.state.lock().unwrap().links {
            if *a == i || *b == i {
                mode.send_replace(LinkMode::Pass);
            }
        }
    }

    pub fn heal_all(&self) {
        for mode in self.state.lock().unwrap().links.values() {
            mode.send_replace(LinkMode::Pass);
        }
    }

    /// A connection from node `from` to node `to`, through a relay; refused if `to` is down
    /// or the link is partitioned.
    fn connect(&self, from: usize, to: usize) -> io::Result<Connection> {
        let mut state = self.state.lock().unwrap();
        let mode = state
            .links
            .get(&(from.min(to), from.max(to)))
            .ok_or_else(|| io::Error::new(io::ErrorKind::AddrNotAvailable, "no such node"))?
            .subscribe();
        let refused = || io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused");
        if *mode.borrow() == LinkMode::Partitioned {
            return Err(refused());
        }
        let Some(listener) = state.listeners[to].clone() else {
            return Err(refused());
        };
        let port = state.next_port;
        state.next_port = state.next_port.checked_add(1).unwrap_or(40_000);
        drop(state);
        // dialer -> relay -> listener, and back.
        // Duplex pipes, not simplex ones: dropping both halves of an end closes it, so the
        // other end reads EOF, as with a closed socket.
        let (dialer_end, relay_near) = tokio::io::duplex(PIPE_BYTES);
        let (relay_far, listener_end) = tokio::io::duplex(PIPE_BYTES);
        let (dialer_read, dialer_write) = tokio::io::split(dialer_end);
        let (listener_read, listener_write) = tokio::io::split(listener_end);
        let (near_read, near_write) = tokio::io::split(relay_near);
        let (far_read, far_write) = tokio::io::split(relay_far);
        tokio::spawn(carry((near_read, far_write), (far_read, near_write), mode));
        let mut remote = addr_of(from);
        remote.set_port(port);
        listener
            .send(Connection {
                read: Box::new(listener_read),
                write: Box::new(listener_write),
                remote: Some(remote),
            })
            .map_err(|_| refused())?;
        Ok(Connection {
            read: Box::new(dialer_read),
            write: Box::new(dialer_write),
            remote: Some(addr_of(to)),
        })
    }
}

struct NodeNet {
    net: SimNet,
    from: usize,
}

impl Network for NodeNet {
    fn connect<'a>(&'a self, addr: &'a str) -> Connecting<'a> {
        Box::pin(async move {
            let to = node_at(addr).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    format!("no node at {addr}"),
                )
            })?;
            self.net.connect(self.from, to)
        })
    }
}

struct SimListener {
    incoming: mpsc::UnboundedReceiver<Connection>,
    addr: SocketAddr,
}

impl Listener for SimListener {
    fn accept(&mut self) -> Connecting<'_> {
        Box::pin(async move {
            match self.incoming.recv().await {
                Some(connection) => Ok(connection),
                // Taken down while still accepting: nothing comes any more.
                None => std::future::pending().await,
            }
        })
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        Some(self.addr)
    }
}

/// One relayed connection: both directions until either ends or the link is partitioned;
/// then every pipe end is dropped (closed), whatever was in flight.
async fn carry<R1, W1, R2, W2>(up: (R1, W1), down: (R2, W2), mode: watch::Receiver<LinkMode>)
where
    R1: AsyncRead + Unpin,
    W1: AsyncWrite + Unpin,
    R2: AsyncRead + Unpin,
    W2: AsyncWrite + Unpin,
{
    let carried = AtomicU64::new(0);
    tokio::select! {
        biased;
        _ = until_partitioned(mode.clone()) => {}
        _ = pipe(up.0, up.1, mode.clone(), &carried) => {}
        _ = pipe(down.0, down.1, mode, &carried) => {}
    }
}

async fn until_partitioned(mut mode: watch::Receiver<LinkMode>) {
    while *mode.borrow_and_update() != LinkMode::Partitioned {
        if mode.changed().await.is_err() {
            return;
        }
    }
}

/// One direction of a connection. Returns when it should be cut (or the peer closed).
async fn pipe(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut mode: watch::Receiver<LinkMode>,
    carried: &AtomicU64,
) {
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut offset: u64 = 0;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let len = u64::try_from(n).unwrap();
        let mut current = *mode.borrow_and_update();
        while current == LinkMode::Hold {
            if mode.changed().await.is_err() {
                return;
            }
            current = *mode.borrow_and_update();
        }
        let mut forward = n;
        match current {
            LinkMode::Pass | LinkMode::Hold => tokio::time::sleep(LATENCY).await,
            LinkMode::Partitioned => return,
            LinkMode::Delay { ms } => {
                tokio::time::sleep(LATENCY + Duration::from_millis(ms)).await;
            }
            LinkMode::CutAfter { bytes } => {
                let before = carried.fetch_add(len, Ordering::SeqCst);
                if before.saturating_add(len) > bytes {
                    forward = usize::try_from(bytes.saturating_sub(before)).unwrap();
                }
            }
            LinkMode::FlipAt { offset: at } => {
                if (offset..offset + len).contains(&at) {
                    buf[usize::try_from(at - offset).unwrap()] ^= 0x01;
                }
            }
        }
        offset += len;
        if to.write_all(&buf[..forward]).await.is_err() || forward < n {
            return;
        }
        // Pipes buffer: a write returns before the reader took it. Flushing is a no-op
        // for them, kept for any writer that needs it.
        let _ = to.flush().await;
    }
}
