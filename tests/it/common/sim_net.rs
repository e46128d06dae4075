//! The simulated network of `tests/it/sim.rs`: real nodes on 127.0.0.1, and between every two of
//! them a pair of TCP relays (one per dialing direction) whose behaviour a test sets per link.
//!
//! Node `i` reaches node `j` only through the relay `relay_addr(i, j)`, which forwards to
//! whatever address `j` listens on now (a restarted node listens on a new port; while a node
//! is down its relays close every connection at once, like a refused connect). The two relays
//! of one pair of nodes share one [`LinkMode`], so a partition cuts both directions.
//!
//! What a mode does to the bytes is the transport's problem, never the relay's: it only
//! forwards, holds, delays, cuts or flips bytes. The encrypted transport must end a session
//! whose records no longer authenticate, and the dialers must reconnect.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long a relay waits for the node behind it to accept (loopback: a slow accept means
/// the node is stopping).
const UPSTREAM_CONNECT_TIMEOUT_MS: u64 = 1_000;
/// Bytes read per chunk; a mode applies per chunk.
const CHUNK_BYTES: usize = 16 * 1024;

/// What a link does to the connections that cross it. A change applies to live connections
/// from their next chunk on (a partition cuts them at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkMode {
    /// Forward everything as it comes.
    Pass,
    /// No connection crosses: new ones are closed at once, live ones are cut.
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

/// Where a node listens now; `None` while it is down.
type Target = Arc<Mutex<Option<SocketAddr>>>;

pub struct SimNet {
    /// One mode per unordered pair `(a, b)` with `a < b`.
    links: BTreeMap<(usize, usize), watch::Sender<LinkMode>>,
    targets: Vec<Target>,
    /// `relays[(from, to)]`: the address `from` dials to reach `to`.
    relays: BTreeMap<(usize, usize), SocketAddr>,
    tasks: JoinSet<()>,
}

impl SimNet {
    /// Starts the relays of `nodes` nodes, every link in [`LinkMode::Pass`], every node down.
    pub async fn start(nodes: usize) -> SimNet {
        let targets: Vec<Target> = (0..nodes).map(|_| Arc::default()).collect();
        let mut links = BTreeMap::new();
        for a in 0..nodes {
            for b in a + 1..nodes {
                links.insert((a, b), watch::channel(LinkMode::Pass).0);
            }
        }
        let mut relays = BTreeMap::new();
        let mut tasks = JoinSet::new();
        for from in 0..nodes {
            for to in (0..nodes).filter(|&to| to != from) {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                relays.insert((from, to), listener.local_addr().unwrap());
                let mode = links[&(from.min(to), from.max(to))].subscribe();
                tasks.spawn(accept_loop(listener, targets[to].clone(), mode));
            }
        }
        SimNet {
            links,
            targets,
            relays,
            tasks,
        }
    }

    /// The addresses node `i` is configured to dial: one relay per other node.
    pub fn peers_of(&self, i: usize) -> Vec<SocketAddr> {
        self.relays
            .iter()
            .filter(|((from, _), _)| *from == i)
            .map(|(_, addr)| *addr)
            .collect()
    }

    /// Points the relays towards node `i` at its listener (`None`: the node is down).
    pub fn set_listener(&self, i: usize, addr: Option<SocketAddr>) {
        *self.targets[i].lock().unwrap() = addr;
    }

    pub fn set_link(&self, a: usize, b: usize, mode: LinkMode) {
        self.links[&(a.min(b), a.max(b))].send_replace(mode);
    }

    pub fn link(&self, a: usize, b: usize) -> LinkMode {
        *self.links[&(a.min(b), a.max(b))].borrow()
    }

    /// Every link of node `i` back to [`LinkMode::Pass`].
    pub fn heal_node(&self, i: usize) {
        for ((a, b), mode) in &self.links {
            if *a == i || *b == i {
                mode.send_replace(LinkMode::Pass);
            }
        }
    }

    pub fn heal_all(&self) {
        for mode in self.links.values() {
            mode.send_replace(LinkMode::Pass);
        }
    }

    /// Stops every relay and cuts every connection they carry.
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
    }
}

/// Accepts connections to one relay; each runs in a task of this loop's own set, so ending
/// the loop (abort at [`SimNet::shutdown`]) ends them all.
async fn accept_loop(listener: TcpListener, target: Target, mode: watch::Receiver<LinkMode>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((dialer, _)) = accepted else { continue };
                if *mode.borrow() == LinkMode::Partitioned {
                    continue;
                }
                let Some(upstream) = *target.lock().unwrap() else { continue };
                connections.spawn(carry(dialer, upstream, mode.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One relayed connection: both directions until either ends or the link is partitioned;
/// then both sockets are dropped (closed), whatever was in flight.
async fn carry(dialer: TcpStream, upstream: SocketAddr, mode: watch::Receiver<LinkMode>) {
    let connect = tokio::time::timeout(
        Duration::from_millis(UPSTREAM_CONNECT_TIMEOUT_MS),
        TcpStream::connect(upstream),
    );
    let Ok(Ok(upstream)) = connect.await else {
        return;
    };
    let carried = AtomicU64::new(0);
    let (dr, dw) = dialer.into_split();
    let (ur, uw) = upstream.into_split();
    tokio::select! {
        _ = pipe(dr, uw, mode.clone(), &carried) => {}
        _ = pipe(ur, dw, mode.clone(), &carried) => {}
        _ = until_partitioned(mode) => {}
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
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
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
            LinkMode::Pass | LinkMode::Hold => {}
            LinkMode::Partitioned => return,
            LinkMode::Delay { ms } => tokio::time::sleep(Duration::from_millis(ms)).await,
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
    }
}
