//! The running peer sync of one node: the listener, one dialer per configured peer, the
//! startup own-feed fence, and the handle HTTP and the server use ([`SyncHandle`]).
//!
//! - **Dialers** redial their peer after every session end or connect failure, after
//!   [`reconnect_delay_ms`] plus up to 25% jitter (a session that completed its handshake
//!   resets the delay). A peer that turns out to be ourselves (`SelfConnection`) is not
//!   redialled. `POST /sync` wakes every dialer at once.
//! - **Startup fence** (docs/PROTOCOL.md section 8): with configured peers, own appends wait
//!   until every configured peer has completed the `Have` exchange or failed once (connect
//!   failure or a session that ended before its `Have`), or until the startup fence timeout
//!   passed; then proceed, logging at `warn` which peers were not heard from. A refusal as a
//!   duplicate of a session this node does not hold (the peer's stale one from before our
//!   restart) is neither: the dialer redials. Peers added
//!   at runtime (`POST /peers`) do not hold the fence.
//! - **Shutdown**: one watch channel tells every task to stop. Every task is one of the
//!   node's ([`Node::spawn`], which the node's shutdown waits for) and is also tracked here,
//!   so [`SyncHandle::shutdown`] returns once every session has sent `Bye(Shutdown)` and
//!   every sync task (and its clone of the node) is gone.

use crate::poison::lock;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Notify, Semaphore};
use tokio_util::task::TaskTracker;

use super::admission::Admission;
use super::backoff::reconnect_delay_ms;
use super::config::SyncConfig;
use super::error::SessionError;
use super::handshake::HandshakeError;
use super::listener::accept_loop;
use super::message::ByeReason;
use super::session::{run_session, SessionContext};
use super::status::{Control, Direction, PeerInfo, PeerRegistry};
use super::transport::Role;
use crate::node::Node;

/// How long `POST /sync` waits for one session's resync.
pub const SYNC_ROUND_TIMEOUT_MS: u64 = 30_000;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("peer address {0:?} is not HOST:PORT")]
    BadAddr(String),
    #[error("peer sync is shut down")]
    ShutDown,
}

/// State shared by the tasks of one node's sync. Holds no [`Node`] (the node holds the
/// handle; tasks get the node as an argument), so there is no reference cycle.
pub struct SyncShared {
    pub(super) config: SyncConfig,
    pub(super) registry: Arc<PeerRegistry>,
    pub(super) admission: Arc<Admission>,
    /// Inbound sessions with strangers (see [`super::admission`]).
    pub(super) strangers: Arc<Semaphore>,
    shutdown: watch::Sender<bool>,
    /// The sync tasks (each also one of the node's): closed by [`SyncHandle::shutdown`].
    tasks: TaskTracker,
    wake: Mutex<BTreeMap<String, Arc<Notify>>>,
    listen_addr: Option<SocketAddr>,
    /// Configured peers not yet tried; `None` once the startup fence is released.
    startup: Mutex<Option<BTreeSet<String>>>,
}

/// The running sync of one node. Cheap to clone.
#[derive(Clone)]
pub struct SyncHandle {
    shared: Arc<SyncShared>,
}

impl fmt::Debug for SyncHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncHandle")
            .field("listen_addr", &self.shared.listen_addr)
            .finish()
    }
}

/// One session's answer to `POST /sync`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SyncRound {
    pub addr: String,
    /// Entries sent to the peer by this round.
    pub sent: Option<u64>,
    pub error: Option<String>,
}

/// Starts sync for `node`: accepts on `listener` (if any) and dials every peer in `peers`
/// (`HOST:PORT`). Attaches the handle to the node and returns it.
pub fn start(
    node: &Node,
    config: SyncConfig,
    listener: Option<TcpListener>,
    peers: Vec<String>,
) -> Result<SyncHandle, SyncError> {
    for addr in &peers {
        check_addr(addr)?;
    }
    let (shutdown, _) = watch::channel(false);
    let listen_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
    let pending: BTreeSet<String> = peers.iter().cloned().collect();
    let shared = Arc::new(SyncShared {
        strangers: Arc::new(Semaphore::new(config.max_connections)),
        admission: Arc::new(Admission::new(config.policy.clone())),
        config,
        registry: Arc::new(PeerRegistry::default()),
        shutdown,
        tasks: TaskTracker::new(),
        wake: Mutex::new(BTreeMap::new()),
        listen_addr,
        startup: Mutex::new((!pending.is_empty()).then_some(pending.clone())),
    });
    let handle = SyncHandle { shared };
    if !pending.is_empty() {
        let names: Vec<&str> = pending.iter().map(String::as_str).collect();
        node.with_fence(|f| f.hold_startup(names.join(", ")));
        let shared = handle.shared.clone();
        let node = node.clone();
        let mut stop = handle.shared.shutdown.subscribe();
        handle.shared.spawn(node.clone(), async move {
            tokio::select! {
                _ = tokio::time::sleep(shared.config.startup_fence_timeout) => {}
                _ = stop.changed() => {}
            }
            // Under the same lock as `peer_tried` changes the fence (see there).
            let mut startup = lock(&shared.startup);
            if let Some(unheard) = startup.take() {
                let names: Vec<&str> = unheard.iter().map(String::as_str).collect();
                tracing::warn!(
                    peers = %names.join(", "),
                    "own-feed fence: no confirmation from these peers, proceeding"
                );
                node.with_fence(|f| f.release_startup());
            }
        });
    }
    if let Some(listener) = listener {
        handle.shared.spawn(
            node.clone(),
            accept_loop(
                node.clone(),
                handle.shared.clone(),
                listener,
                handle.shared.shutdown.subscribe(),
            ),
        );
    }
    for addr in peers {
        handle.add_peer(node, addr)?;
    }
    if !node.set_sync(handle.clone()) {
        tracing::warn!("sync started twice for one node; the first handle stays attached");
    }
    Ok(handle)
}

fn check_addr(addr: &str) -> Result<(), SyncError> {
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(SyncError::BadAddr(addr.to_owned())),
    }
}

impl SyncShared {
    /// Runs `task` as one of `node`'s tasks, tracked here too (see the module docs).
    pub(super) fn spawn<F>(&self, node: Node, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        node.spawn(self.tasks.track_future(task));
    }

    /// The context of a session with the peer known as `key`, neither told the own-feed
    /// fence outcome nor shed by the listener: each side adds the one it needs.
    pub(super) fn session_context(
        &self,
        node: &Node,
        key: String,
        role: Role,
        shutdown: watch::Receiver<bool>,
    ) -> SessionContext {
        SessionContext {
            node: node.clone(),
            config: self.config.clone(),
            registry: self.registry.clone(),
            admission: self.admission.clone(),
            strangers: self.strangers.clone(),
            key,
            role,
            shutdown,
            on_have: None,
            shed: None,
        }
    }

    /// After the peer refused our session as a duplicate: waits until no session with
    /// `peer` is live here (`None`: shutting down). The configured `addr` counts as tried
    /// for the startup fence once that session has exchanged, or once it is gone. Returns
    /// whether there was such a session at all: if not, the session the peer keeps is not
    /// one with this node (a stale one from before a restart of ours, which the peer has not
    /// seen close yet), nothing was learned about our feed, and `addr` is not tried.
    async fn wait_while_connected(
        &self,
        node: &Node,
        addr: &str,
        peer: &crate::identity::Author,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<bool> {
        let mut seen = false;
        loop {
            let changed = self.admission.changed();
            match self.admission.session(peer) {
                None if !seen => return Some(false),
                None => {
                    self.peer_tried(node, addr);
                    return Some(true);
                }
                Some(exchanged) => {
                    seen = true;
                    if exchanged {
                        self.peer_tried(node, addr);
                    }
                }
            }
            tokio::select! {
                _ = changed => {}
                _ = shutdown.changed() => return None,
            }
        }
    }

    /// A configured peer was heard from or failed once (startup fence bookkeeping).
    ///
    /// The fence is changed while `startup` is still locked: released, the lock would let a
    /// concurrent call (another peer's, or the startup timeout's) release the fence between
    /// this call's bookkeeping and its `hold_startup`, which would then close the fence
    /// again with nobody left to open it.
    fn peer_tried(&self, node: &Node, addr: &str) {
        let mut startup = lock(&self.startup);
        let Some(pending) = startup.as_mut() else {
            return;
        };
        pending.remove(addr);
        if pending.is_empty() {
            *startup = None;
            tracing::info!("own-feed fence: every configured peer tried, own appends open");
            node.with_fence(|f| f.release_startup());
        } else {
            let names: Vec<&str> = pending.iter().map(String::as_str).collect();
            let waiting = names.join(", ");
            node.with_fence(|f| f.hold_startup(waiting));
        }
    }
}

impl SyncHandle {
    /// The bound sync listen address, if listening.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.shared.listen_addr
    }

    /// Adds a peer to dial (and redial). Returns false if it was already configured.
    pub fn add_peer(&self, node: &Node, addr: String) -> Result<bool, SyncError> {
        check_addr(&addr)?;
        if self.shared.tasks.is_closed() {
            return Err(SyncError::ShutDown);
        }
        if !self.shared.registry.ensure(&addr, Direction::Outbound) {
            return Ok(false);
        }
        let wake = Arc::new(Notify::new());
        lock(&self.shared.wake).insert(addr.clone(), wake.clone());
        self.shared.spawn(
            node.clone(),
            dial_loop(node.clone(), self.shared.clone(), addr, wake),
        );
        Ok(true)
    }

    /// Every peer record, for `GET /peers`.
    pub fn peers(&self, node: &Node) -> Vec<PeerInfo> {
        self.shared.registry.list(node)
    }

    /// Refusals by reason and skipped new feeds by reason, since start.
    pub fn refusals(&self) -> (BTreeMap<&'static str, u64>, BTreeMap<&'static str, u64>) {
        (
            self.shared.admission.refusals(),
            self.shared.admission.skipped(),
        )
    }

    /// A sync round now: every connected session sends what its peer is known to lack, and
    /// every dialer waiting to redial dials at once.
    pub async fn sync_now(&self) -> Vec<SyncRound> {
        for wake in lock(&self.shared.wake).values() {
            wake.notify_one();
        }
        let mut rounds = Vec::new();
        for (addr, control) in self.shared.registry.controls() {
            let (tx, rx) = oneshot::channel();
            let round = if control.send(Control::Resync(tx)).is_err() {
                SyncRound {
                    addr,
                    sent: None,
                    error: Some("session ended".into()),
                }
            } else {
                match tokio::time::timeout(Duration::from_millis(SYNC_ROUND_TIMEOUT_MS), rx).await {
                    Ok(Ok(sent)) => SyncRound {
                        addr,
                        sent: Some(sent),
                        error: None,
                    },
                    Ok(Err(_)) => SyncRound {
                        addr,
                        sent: None,
                        error: Some("session ended".into()),
                    },
                    Err(_) => SyncRound {
                        addr,
                        sent: None,
                        error: Some("timed out".into()),
                    },
                }
            };
            rounds.push(round);
        }
        rounds
    }

    /// Stops listening and dialing, ends every session with `Bye(Shutdown)`, and returns once
    /// every sync task has finished.
    pub async fn shutdown(&self) {
        self.shared.tasks.close();
        let _ = self.shared.shutdown.send(true);
        self.shared.tasks.wait().await;
    }
}

/// Dials `addr` until shutdown: one session at a time, redialled after each end or failed
/// connect (see the module docs).
async fn dial_loop(node: Node, shared: Arc<SyncShared>, addr: String, wake: Arc<Notify>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut failures: u32 = 0;
    loop {
        if *shutdown.borrow() {
            break;
        }
        // Dials take no inbound slot: a flood of strangers never delays a configured peer.
        let connected = tokio::select! {
            c = tokio::time::timeout(shared.config.handshake_timeout, TcpStream::connect(addr.as_str())) => c,
            _ = shutdown.changed() => break,
        };
        let dialed = match connected {
            Ok(Ok(stream)) => run_dialed(&node, &shared, &addr, stream, &mut shutdown).await,
            Ok(Err(e)) => connect_failed(&node, &shared, &addr, format!("connect failed: {e}")),
            Err(_) => connect_failed(&node, &shared, &addr, "connect timed out".into()),
        };
        match dialed {
            Dialed::Stop => break,
            Dialed::KeptPeerSessionEnded => {
                failures = 0;
                continue;
            }
            Dialed::Redial { handshaken: true } => failures = 0,
            Dialed::Redial { handshaken: false } => failures = failures.saturating_add(1),
        }
        if !wait_to_redial(failures, &wake, &mut shutdown).await {
            break;
        }
    }
}

/// What a dialer does after one dial.
enum Dialed {
    /// Redial after the backoff; a completed handshake resets it.
    Redial { handshaken: bool },
    /// The peer's own session to us was kept instead of ours and has ended: redial at once.
    KeptPeerSessionEnded,
    /// Shutting down, or the address reaches this node itself: stop dialing.
    Stop,
}

/// Runs one session over a dialed connection and says what the dialer does next.
async fn run_dialed(
    node: &Node,
    shared: &Arc<SyncShared>,
    addr: &str,
    stream: TcpStream,
    shutdown: &mut watch::Receiver<bool>,
) -> Dialed {
    let on_have = {
        let (shared, node, addr) = (shared.clone(), node.clone(), addr.to_owned());
        Box::new(move |_| shared.peer_tried(&node, &addr)) as super::outbound::OnHave
    };
    let ctx = SessionContext {
        on_have: Some(on_have),
        ..shared.session_context(node, addr.to_owned(), Role::Initiator, shutdown.clone())
    };
    let end = run_session(ctx, stream).await;
    let duplicate = matches!(
        end.error,
        SessionError::Duplicate | SessionError::PeerBye(ByeReason::Duplicate)
    );
    if let (true, Some(peer)) = (duplicate, end.peer) {
        // The session the peer dialed is kept; its exchange settles the startup
        // fence, and redialling waits until it ends.
        tracing::debug!(peer = %addr, "one session per key: keeping the one the peer dialed");
        return match shared
            .wait_while_connected(node, addr, &peer, shutdown)
            .await
        {
            Some(true) => Dialed::KeptPeerSessionEnded,
            // The peer holds a stale session with our key: redial after the backoff, until
            // it notices, without counting the peer as heard from.
            Some(false) => Dialed::Redial { handshaken: false },
            None => Dialed::Stop,
        };
    }
    shared.peer_tried(node, addr);
    let own = matches!(
        end.error,
        SessionError::Handshake(HandshakeError::SelfConnection(_))
            | SessionError::PeerBye(ByeReason::SelfConnection)
    );
    if own {
        tracing::warn!(peer = %addr, "peer address reaches this node itself (or a copy of its key): not redialling");
        return Dialed::Stop;
    }
    Dialed::Redial {
        handshaken: end.peer.is_some(),
    }
}

/// A connect failed or timed out: recorded for `GET /peers`, and the peer counts as tried
/// for the startup fence.
fn connect_failed(node: &Node, shared: &SyncShared, addr: &str, error: String) -> Dialed {
    shared.registry.set_error(addr, error);
    shared.peer_tried(node, addr);
    Dialed::Redial { handshaken: false }
}

/// Waits out the reconnect delay after `failures` failures in a row, plus up to 25% jitter,
/// or until `POST /sync` wakes the dialer. False: shutting down.
async fn wait_to_redial(
    failures: u32,
    wake: &Notify,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let base = reconnect_delay_ms(failures.saturating_sub(1));
    let jitter = rand::random::<u64>() % (base / 4 + 1);
    let delay = Duration::from_millis(base.saturating_add(jitter));
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = wake.notified() => true,
        _ = shutdown.changed() => false,
    }
}
