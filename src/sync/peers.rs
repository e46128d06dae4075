//! The running peer sync of one node: the listener, one dialer per configured peer, the
//! startup own-feed fence, and the handle HTTP and the server use ([`SyncHandle`]).
//!
//! - **Dialers** redial their peer after every session end or connect failure, after
//!   [`reconnect_delay_ms`] plus up to 25% jitter (a session that completed its handshake
//!   resets the delay). Only a *proven* self-connection (our own nonce on the same channel,
//!   [`super::self_probe`]) stops a dialer: a peer that merely says our name in its unsigned
//!   `Hello` is a failed dial, retried with the backoff. `POST /sync` wakes every dialer at
//!   once; `POST /peers` for a configured address wakes its dialer, or starts it again.
//! - **Versions** ([`super::opening`]): a dialer opens with our highest version; a peer
//!   whose opening names an older one we speak (a v2 or v3 node) is redialled at once with
//!   that one, logged at `info` ("syncing without checkpoints" for 2, "syncing without copy
//!   searches" for 3), and dialed with it for
//!   [`OLDER_VERSION_MEMORY`]. Only a dial at a higher version than the peer's can do
//!   that, so it happens at most once per address per that time: no loop.
//! - **Pins** ([`super::pins`]): each configured peer's key, given (`AUTHOR@HOST:PORT`) or
//!   learned on its first session and saved in `DATA_DIR/peer-pins`.
//! - **Startup fence** (docs/PROTOCOL.md section 8): with configured peers, own appends wait
//!   until every configured peer has completed its exchange or failed once (connect
//!   failure, another key at its address, or a session that ended before its exchange), or
//!   until the startup fence timeout passed; then proceed, logging at `warn` which peers
//!   were not heard from. With [`StartupFence::Pinned`] they wait, with no timeout, until a
//!   configured peer's pinned key has completed an exchange. A refusal as a duplicate of a
//!   session this node does not hold (the peer's stale one from before our restart) is
//!   neither: the dialer redials. Peers added at runtime (`POST /peers`) do not hold the
//!   fence. Sync keeps no fence state of its own: it sends the facts
//!   ([`crate::fence::FenceEvent`]: the peers to wait for at start, each peer tried, the
//!   timeout) to the fence's one owner, the store's writer, which decides and logs.
//! - **Stranger counts**: sessions of strangers are logged one by one only at `debug`; every
//!   [`STRANGER_LOG_INTERVAL_MS`] the counts since the last line are logged at `info`.
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

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, Notify};
use tokio_util::task::TaskTracker;

use super::admission::Admission;
use super::backoff::reconnect_delay_ms;
use super::config::{StartupFence, SyncConfig};
use super::error::SessionError;
use super::listener::accept_loop;
use super::message::ByeReason;
use super::net::{Connection, Listener, Network, Tcp};
use super::pin_file::{self, PinIoError, PinStore};
use super::pins::{PeerSpec, PeerSpecError, Pins, UnpinError};
use super::session::{run_session, SessionContext};
use super::shared::SyncShared;
use super::status::{Control, Direction, KeyCopySeen, PeerInfo, PeerRegistry};
use super::transport::Role;
use crate::fence::{FenceEvent, StartupRelease};
use crate::identity::Author;
use crate::node::Node;

/// How long `POST /sync` waits for one session's resync.
pub const SYNC_ROUND_TIMEOUT_MS: u64 = 30_000;
/// How often the counts of stranger sessions and refusals are logged at `info` (when any).
pub const STRANGER_LOG_INTERVAL_MS: u64 = 60_000;

/// How long a dialer remembers that an address speaks an older protocol version (a v2 or v3 node,
/// found when its opening answered our newer one): an hour, so an upgraded peer is dialed with
/// our highest version again without a restart.
pub const OLDER_VERSION_MEMORY: Duration = Duration::from_secs(3_600);

/// Why starting sync, adding a peer or unpinning one failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A peer is not `HOST:PORT` or `AUTHOR@HOST:PORT`: the operator's input is wrong.
    #[error(transparent)]
    BadPeer(#[from] PeerSpecError),
    /// The learned pins in `DATA_DIR/peer-pins` could not be read or saved.
    #[error("peer pins: {0}")]
    Pins(#[from] PinIoError),
    /// The pin cannot be forgotten: none is learned, or it was configured.
    #[error(transparent)]
    Unpin(#[from] UnpinError),
    /// The address given to unpin is not among the configured peers.
    #[error("{0} is not a configured peer")]
    NotConfigured(String),
    /// Sync has stopped: no peer can be added any more.
    #[error("peer sync is shut down")]
    ShutDown,
}

/// What `POST /peers` did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AddedPeer {
    /// The peer's address, `HOST:PORT`, as configured.
    pub addr: String,
    /// A new configured peer.
    pub added: bool,
    /// The pinned key, if any (given now or before, or learned).
    pub pinned: Option<Author>,
    /// An already configured peer whose dialer was woken (or started again) to dial now.
    pub redialled: bool,
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
    /// The session's key: the configured address when we dialed, else the remote address.
    pub addr: String,
    /// Entries sent to the peer by this round.
    pub sent: Option<u64>,
    /// Why the round got no answer (the session ended, or timed out); `None` when `sent` is set.
    pub error: Option<String>,
}

/// Starts sync for `node`: accepts on `listener` (if any) and dials every peer in `peers`
/// (`HOST:PORT` or `AUTHOR@HOST:PORT`). Reads the learned pins (after forgetting those of
/// `config.unpin`). Returns the handle, which whoever started sync keeps (the server hands
/// it to HTTP); the node knows nothing of it, and its shutdown ([`Node::stopping`]) ends
/// sync as [`SyncHandle::shutdown`] does.
pub fn start(
    node: &Node,
    config: SyncConfig,
    listener: Option<TcpListener>,
    peers: Vec<String>,
) -> Result<SyncHandle, SyncError> {
    let listener = listener.map(|l| Box::new(l) as Box<dyn Listener>);
    start_on(node, config, listener, peers, Arc::new(Tcp))
}

/// As [`start`] on another network than TCP: `listener` takes the connections peers open,
/// and the dialers connect through `network` (the simulation's in-memory network).
pub fn start_on(
    node: &Node,
    config: SyncConfig,
    listener: Option<Box<dyn Listener>>,
    peers: Vec<String>,
    network: Arc<dyn Network>,
) -> Result<SyncHandle, SyncError> {
    let specs = peers
        .iter()
        .map(|p| p.parse::<PeerSpec>())
        .collect::<Result<Vec<_>, _>>()?;
    let pins = load_pins(node, &config, &specs)?;
    let (shutdown, _) = watch::channel(false);
    let listen_addr = listener.as_ref().and_then(|l| l.local_addr());
    let pending: BTreeSet<String> = specs.iter().map(|s| s.addr.clone()).collect();
    let shared = Arc::new(SyncShared {
        admission: Arc::new(Admission::new(
            config.policy.clone(),
            config.max_connections,
            pins,
            config.claim_timeout,
        )),
        probe: Arc::default(),
        pins: Arc::new(PinStore::new(node.data_dir().to_owned())),
        alarms: Arc::default(),
        config,
        registry: Arc::new(PeerRegistry::default()),
        shutdown,
        tasks: TaskTracker::new(),
        wake: Mutex::new(BTreeMap::new()),
        listen_addr,
        network,
    });
    let handle = SyncHandle { shared };
    if !pending.is_empty() {
        // Queued before any dialer runs, so before any `PeerTried`, and before `start`
        // returns, so before any own append requested after it.
        let release = match handle.shared.config.startup_fence {
            StartupFence::Timeout => StartupRelease::EachTriedOnce,
            StartupFence::Pinned => StartupRelease::OnePinnedExchange,
        };
        node.fence_event(FenceEvent::HoldStartup {
            peers: pending,
            release,
        });
        let timeout = match handle.shared.config.startup_fence {
            StartupFence::Timeout => Some(handle.shared.config.startup_fence_timeout),
            // The operator asked to wait for a pinned peer, however long that takes.
            StartupFence::Pinned => None,
        };
        if let Some(timeout) = timeout {
            let fence_node = node.clone();
            let mut stop = handle.shared.shutdown.subscribe();
            handle.shared.spawn(node.clone(), async move {
                tokio::select! {
                    _ = tokio::time::sleep(timeout) => {}
                    _ = stop.changed() => {}
                }
                // A fact, not a state: the fence ignores it if every peer was tried by now.
                fence_node.fence_event(FenceEvent::StartupTimeout);
            });
        }
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
    for spec in specs {
        handle.add_spec(node, spec);
    }
    handle.shared.spawn(
        node.clone(),
        log_stranger_counts(handle.shared.clone(), handle.shared.shutdown.subscribe()),
    );
    handle.shared.spawn(
        node.clone(),
        stop_with_node(handle.shared.clone(), node.stopping()),
    );
    Ok(handle)
}

/// The pins at start: the learned ones from the pin file, less those the operator unpins
/// now (the file is rewritten without them), with the keys given as `AUTHOR@HOST:PORT`.
fn load_pins(node: &Node, config: &SyncConfig, specs: &[PeerSpec]) -> Result<Pins, SyncError> {
    let mut learned = pin_file::load(node.data_dir())?;
    let mut unpinned = false;
    for addr in &config.unpin {
        if let Some(author) = learned.remove(addr) {
            tracing::info!(peer = %addr, %author, "unpinned: the next session with this peer learns its key");
            unpinned = true;
        } else {
            tracing::warn!(peer = %addr, "--unpin: this address has no learned pin");
        }
    }
    if unpinned {
        pin_file::save(node.data_dir(), &learned)?;
    }
    let mut pins = Pins::new(learned);
    for spec in specs {
        if let Some(author) = spec.author {
            pins.configure(&spec.addr, author);
        }
    }
    Ok(pins)
}

/// Logs, every [`STRANGER_LOG_INTERVAL_MS`], how many stranger sessions were admitted and
/// evicted and how many connections were refused since the last line (one `info` line in
/// place of one per stranger session).
async fn log_stranger_counts(shared: Arc<SyncShared>, mut stop: watch::Receiver<bool>) {
    let mut last = (0, 0, BTreeMap::new());
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(STRANGER_LOG_INTERVAL_MS)) => {}
            _ = stop.changed() => return,
        }
        let (sessions, evicted) = shared.admission.stranger_counts();
        let refused = shared.admission.refusals();
        let new_refusals: BTreeMap<&str, u64> = refused
            .iter()
            .map(|(k, v)| (*k, v.saturating_sub(last.2.get(k).copied().unwrap_or(0))))
            .filter(|(_, v)| *v > 0)
            .collect();
        let (new_sessions, new_evicted) = (sessions - last.0, evicted - last.1);
        if new_sessions > 0 || !new_refusals.is_empty() {
            tracing::info!(
                stranger_sessions = new_sessions,
                evicted = new_evicted,
                refused = ?new_refusals,
                seconds = STRANGER_LOG_INTERVAL_MS / 1000,
                "sync strangers since the last report"
            );
        }
        last = (sessions, evicted, refused);
    }
}

impl SyncShared {
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
                    self.peer_tried(node, addr, false);
                    return Some(true);
                }
                Some(exchanged) => {
                    seen = true;
                    if exchanged {
                        self.peer_tried(node, addr, self.admission.is_trusted(peer));
                    }
                }
            }
            tokio::select! {
                _ = changed => {}
                _ = shutdown.changed() => return None,
            }
        }
    }

    /// A configured peer was heard from or failed once (startup fence bookkeeping);
    /// `pinned_exchange` when its pinned key completed an exchange. The fence's owner (the
    /// store's writer) decides what that releases: this only states the fact, so calls
    /// racing each other and the startup timeout cannot leave a stale state behind (the
    /// race of commit 59d2ade, pinned by the fence's tests).
    fn peer_tried(&self, node: &Node, addr: &str, pinned_exchange: bool) {
        node.fence_event(FenceEvent::PeerTried {
            peer: addr.to_owned(),
            pinned_exchange,
        });
    }
}

impl SyncHandle {
    /// The bound sync listen address, if listening.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.shared.listen_addr
    }

    /// Adds a peer to dial (and redial): `HOST:PORT`, or `AUTHOR@HOST:PORT` to pin its key.
    /// An already configured address is dialed now (its dialer woken, or started again if
    /// it had stopped), with the key pinned if one is given.
    pub fn add_peer(&self, node: &Node, spec: String) -> Result<AddedPeer, SyncError> {
        let spec: PeerSpec = spec.parse()?;
        if self.shared.tasks.is_closed() {
            return Err(SyncError::ShutDown);
        }
        if let Some(author) = spec.author {
            // The operator's word for this process's life (a flag keeps it across restarts);
            // a learned pin it replaces leaves the pin file too.
            self.shared.admission.configure_pin(&spec.addr, author);
            let shared = self.shared.clone();
            self.shared.spawn(node.clone(), async move {
                if let Err(e) = shared.pins.save(&shared.admission).await {
                    tracing::warn!(error = %e, "could not save the peer pins");
                }
            });
        }
        let addr = spec.addr.clone();
        let added = self.add_spec(node, spec);
        let redialled = !added;
        if redialled {
            if let Some(wake) = lock(&self.shared.wake).get(&addr) {
                wake.notify_one();
            }
        }
        Ok(AddedPeer {
            pinned: self.shared.admission.pin_of(&addr).map(|(a, _)| a),
            addr,
            added,
            redialled,
        })
    }

    /// Starts the dialer of `spec` unless one runs; returns whether the address is new.
    fn add_spec(&self, node: &Node, spec: PeerSpec) -> bool {
        let added = self.shared.registry.ensure(&spec.addr, Direction::Outbound);
        let wake = {
            let mut dialers = lock(&self.shared.wake);
            if dialers.contains_key(&spec.addr) {
                return added;
            }
            let wake = Arc::new(Notify::new());
            dialers.insert(spec.addr.clone(), wake.clone());
            wake
        };
        self.shared.spawn(
            node.clone(),
            dial_loop(node.clone(), self.shared.clone(), spec.addr, wake),
        );
        added
    }

    /// Forgets the learned pin of the configured peer `addr` (saved at once) and dials it
    /// now: the next session learns its key. Returns the key that was pinned.
    pub async fn unpin(&self, addr: &str) -> Result<Author, SyncError> {
        if !lock(&self.shared.wake).contains_key(addr)
            && self.shared.admission.pin_of(addr).is_none()
        {
            return Err(SyncError::NotConfigured(addr.to_owned()));
        }
        let author = self.shared.admission.unpin(addr)?;
        self.shared.pins.save(&self.shared.admission).await?;
        tracing::info!(peer = %addr, %author, "unpinned: the next session with this peer learns its key");
        if let Some(wake) = lock(&self.shared.wake).get(addr) {
            wake.notify_one();
        }
        Ok(author)
    }

    /// Whether a dialer runs for the configured address `addr` (it stops only at shutdown or
    /// on a proven self-connection).
    pub fn is_dialing(&self, addr: &str) -> bool {
        lock(&self.shared.wake).contains_key(addr)
    }

    /// The last copy of our own key seen authenticating, for `GET /health`.
    pub fn key_copy_seen(&self) -> Option<KeyCopySeen> {
        self.shared.alarms.key_copy_seen()
    }

    /// Every peer record, for `GET /peers`, with each configured peer's pin.
    pub fn peers(&self, node: &Node) -> Vec<PeerInfo> {
        let mut peers = self.shared.registry.list(node);
        for peer in &mut peers {
            if peer.direction == Direction::Outbound {
                if let Some((author, source)) = self.shared.admission.pin_of(&peer.addr) {
                    peer.pinned = Some(author);
                    peer.pin = Some(source);
                }
            }
        }
        peers
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
        self.shared.stop();
        self.shared.tasks.wait().await;
    }
}

/// Stops sync when the node begins its shutdown: the node waits for its tasks, sync's
/// among them, and cannot tell them itself (it knows nothing of sync). Ends at once if sync
/// is stopped first.
async fn stop_with_node(shared: Arc<SyncShared>, mut node_stopping: watch::Receiver<bool>) {
    let mut stopped = shared.shutdown.subscribe();
    tokio::select! {
        // An error means the node is gone: stop as well.
        _ = node_stopping.wait_for(|stopping| *stopping) => shared.stop(),
        _ = stopped.wait_for(|stopped| *stopped) => {}
    }
}

/// Dials `addr` until shutdown: one session at a time, redialled after each end or failed
/// connect (see the module docs).
async fn dial_loop(node: Node, shared: Arc<SyncShared>, addr: String, wake: Arc<Notify>) {
    dial_until_stopped(&node, &shared, &addr, &wake).await;
    // `POST /peers` starts a new dialer for an address whose dialer has stopped.
    lock(&shared.wake).remove(&addr);
}

async fn dial_until_stopped(node: &Node, shared: &Arc<SyncShared>, addr: &str, wake: &Notify) {
    let node = node.clone();
    let addr = addr.to_owned();
    let mut shutdown = shared.shutdown.subscribe();
    let mut failures: u32 = 0;
    // Until when this address is known to speak an older version (a v2 or v3 node): dialed with
    // that version meanwhile, so an upgraded peer gets our highest again after a while.
    let mut older: Option<(u16, std::time::Instant)> = None;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let now = crate::clock::instant();
        let version = match older {
            Some((version, until)) if now < until => version,
            _ => shared.config.max_protocol_version,
        };
        // Dials take no inbound slot: a flood of strangers never delays a configured peer.
        let connected = tokio::select! {
            c = tokio::time::timeout(shared.config.handshake_timeout, shared.network.connect(addr.as_str())) => c,
            _ = shutdown.changed() => break,
        };
        let dialed = match connected {
            Ok(Ok(stream)) => {
                run_dialed(&node, shared, &addr, stream, version, &mut shutdown).await
            }
            Ok(Err(e)) => connect_failed(&node, shared, &addr, format!("connect failed: {e}")),
            Err(_) => connect_failed(&node, shared, &addr, "connect timed out".into()),
        };
        match dialed {
            Dialed::Stop => break,
            // At most once per `OLDER_VERSION_MEMORY` per address: the redial opens with the
            // older version, which the peer accepts or refuses like any other dial.
            Dialed::Older(theirs) if theirs < version => {
                older = Some((theirs, now + OLDER_VERSION_MEMORY));
                continue;
            }
            Dialed::Older(_) => failures = failures.saturating_add(1),
            Dialed::KeptPeerSessionEnded => {
                failures = 0;
                continue;
            }
            Dialed::Redial { handshaken: true } => failures = 0,
            Dialed::Redial { handshaken: false } => failures = failures.saturating_add(1),
        }
        if !wait_to_redial(failures, wake, &mut shutdown).await {
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
    /// Shutting down, or the address is proven to reach this node itself: stop dialing.
    Stop,
    /// The peer's opening named this older version we speak: redial at once with it.
    Older(u16),
}

/// Runs one session over a dialed connection and says what the dialer does next.
async fn run_dialed(
    node: &Node,
    shared: &Arc<SyncShared>,
    addr: &str,
    stream: Connection,
    version: u16,
    shutdown: &mut watch::Receiver<bool>,
) -> Dialed {
    let on_have = {
        let (shared, node, addr) = (shared.clone(), node.clone(), addr.to_owned());
        Box::new(move |_, trusted| shared.peer_tried(&node, &addr, trusted))
            as super::outbound::OnHave
    };
    let ctx = SessionContext {
        on_have: Some(on_have),
        version,
        ..shared.session_context(node, addr.to_owned(), Role::Initiator, shutdown.clone())
    };
    let end = run_session(ctx, stream).await;
    if let SessionError::Transport(t) = &end.error {
        if let Some(theirs) = t.older_version() {
            // Not a try for the startup fence: the redial that follows at once is.
            return Dialed::Older(theirs);
        }
    }
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
    shared.peer_tried(node, addr, false);
    // Only a proven self-connection stops the dialer: anyone can say our name in a `Hello`
    // (or send `Bye(SelfConnection)`), and that must not disable a configured peer.
    if matches!(end.error, SessionError::OwnAddress) {
        tracing::warn!(peer = %addr, "peer address reaches this node itself: not redialling");
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
    shared.peer_tried(node, addr, false);
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
    let jitter = crate::determinism::random_u64() % (base / 4 + 1);
    let delay = Duration::from_millis(base.saturating_add(jitter));
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = wake.notified() => true,
        _ = shutdown.changed() => false,
    }
}
