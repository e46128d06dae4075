//! One session over one connection ([`super::net`]: TCP, or the simulation's in-memory
//! network) (docs/PROTOCOL.md section 6): the handshake, then two halves run side by side
//! until either ends: [`super::inbound`] reads and stores,
//! [`super::outbound`] sends the `Have`, the plan's entries and live pushes. The halves
//! share only what the peer is known to hold ([`PeerProgress`], behind a std mutex never
//! held across an await) and a control channel from the receiving to the sending half.
//!
//! Whatever ends a session (a violation, a timeout, the peer leaving, shutdown) is returned
//! in `SessionEnd`, logged with the peer's address and author, and recorded as the peer's
//! `last_error` for `GET /peers`.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::admission::{Admission, JoinRefused, SessionTicket};
use super::budget::Source;
use super::checkpoint_gossip::{CheckpointGossip, NoteBucket, PeerNotes};
use super::config::SyncConfig;
use super::connection::{FrameReader, FrameWriter};
use super::error::SessionError;
use super::handshake::{Binding, Handshake, HandshakeError};
use super::inbound::Inbound;
use super::message::{Message, Nonce, NONCE_BYTES, PROTOCOL_VERSION};
use super::net::{Connection, ReadHalf, WriteHalf};
use super::opening::missing_in;
use super::outbound::{OnHave, Outbound};
use super::pin_file::PinStore;
use super::pins::DialCheck;
use super::plan::PeerProgress;
use super::search_slot::SessionSearch;
use super::self_probe::SelfProbe;
use super::status::{Control, PeerRegistry};
use super::transport::{self, Role};
use crate::identity::Author;
use crate::node::Node;

/// What admitting a stranger's session costs its source's send budget, in bytes: its
/// handshake and reconciliation cost the node CPU before any entry is sent, so a stranger
/// that opens sessions and reads nothing still spends its source's budget (64 sessions a
/// second at the default rate).
pub const STRANGER_SESSION_COST_BYTES: u64 = 64 * 1024;

/// Logs at `info` for a peer that matters and at `debug` for a stranger: anyone can open
/// stranger sessions at any rate, so one line each at `info` would let a churn of them
/// flood the log (the aggregate counts are logged at `info` instead, see
/// [`super::peers`]).
macro_rules! log_session {
    ($trusted:expr, $($arg:tt)+) => {
        if $trusted {
            tracing::info!($($arg)+)
        } else {
            tracing::debug!($($arg)+)
        }
    };
}

/// What a session needs besides its socket.
pub(crate) struct SessionContext {
    /// Where entries and proofs are read and stored.
    pub(crate) node: Node,
    /// Timeouts, caps, network key and policy.
    pub(crate) config: SyncConfig,
    /// The per-peer records the session updates (`GET /peers`).
    pub(crate) registry: Arc<PeerRegistry>,
    /// Decides whether the peer's key may hold a session, and what it may cost.
    pub(crate) admission: Arc<Admission>,
    /// This process's sessions in their handshake: proves a self-connection.
    pub(crate) probe: Arc<SelfProbe>,
    /// Where a learned pin is saved.
    pub(crate) pins: Arc<PinStore>,
    /// Set when a peer authenticated with our own key.
    pub(crate) alarms: Arc<super::status::Alarms>,
    /// The peer's key in the registry (configured address when we dialed, else the remote
    /// address).
    pub(crate) key: String,
    /// Initiator when we dialed.
    pub(crate) role: Role,
    /// The protocol version to open with when we dialed (the dialer's choice for the
    /// address, see [`super::peers`]), the highest to answer with when we accepted.
    pub(crate) version: u16,
    /// Turns true when sync stops: the session says `Bye(Shutdown)` and ends.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Told the own-feed fence outcome once the `Have` exchange completed.
    pub(crate) on_have: Option<OnHave>,
    /// Fires when the listener sheds this connection while it is still in its handshake.
    pub(crate) shed: Option<oneshot::Receiver<()>>,
}

/// How a session ended.
#[derive(Debug)]
pub(crate) struct SessionEnd {
    /// The peer's author, if the handshake completed.
    pub(crate) peer: Option<Author>,
    /// Why it ended (also a clean close or `Bye` from the peer).
    pub(crate) error: SessionError,
}

type Reader = FrameReader<ReadHalf>;
type Writer = FrameWriter<WriteHalf>;

/// Runs one session to its end.
pub(crate) async fn run_session(mut ctx: SessionContext, stream: Connection) -> SessionEnd {
    let source = stream.remote.map(|a| Source::of(a.ip()));
    let shed = ctx.shed.take();
    // Not `Sync`: kept out of the context the opening borrows across awaits.
    let on_have = ctx.on_have.take();
    let opening = tokio::time::timeout(ctx.config.handshake_timeout, open(&ctx, stream));
    let opened = match shed {
        Some(shed) => tokio::select! {
            o = opening => o,
            _ = shed => Ok(Err(SessionError::Shed)),
        },
        None => opening.await,
    }
    .unwrap_or(Err(SessionError::Timeout {
        what: "in the handshake",
    }));
    let (reader, mut writer, peer, version) = match opened {
        Ok(opened) => opened,
        Err(error) => {
            if let Some(reason) = error.refusal_counter() {
                ctx.admission.count_refusal(reason);
            }
            return finish(&ctx, None, false, error);
        }
    };
    let trusted = match ctx.role {
        Role::Initiator => dialed_trust(&ctx, peer).await,
        Role::Responder => ctx.admission.is_trusted(&peer),
    };
    let (ticket, control_tx, control_rx) = match admit(&ctx, peer, trusted, source) {
        Ok(admitted) => admitted,
        Err(error) => {
            if let Some(reason) = error.bye_reason() {
                writer.bye(reason).await;
            }
            return finish(&ctx, Some(peer), trusted, error);
        }
    };
    let admitted = Admitted {
        peer,
        trusted,
        source: source.unwrap_or(Source::V4([0; 4])),
        version,
        control_tx,
        control_rx,
    };
    let end = run_admitted(&ctx, on_have, reader, writer, admitted).await;
    ctx.admission.leave(ticket);
    end
}

/// Whether the key a dialed peer proved is the configured peer's: its pin, or learned now
/// (first use, saved). Another key at the address is a stranger there.
async fn dialed_trust(ctx: &SessionContext, peer: Author) -> bool {
    match ctx.admission.check_dialed(&ctx.key, peer) {
        DialCheck::Pinned => true,
        DialCheck::Learned => {
            tracing::info!(peer = %ctx.key, peer_author = %peer, "pinned the key of a configured peer on first use (kept in the data directory; DELETE /peers/ADDR or --unpin ADDR forgets it)");
            if let Err(e) = ctx.pins.save(&ctx.admission).await {
                tracing::warn!(error = %e, "could not save the learned peer pin: it holds until this process stops");
            }
            true
        }
        DialCheck::Mismatch { pinned } => {
            tracing::warn!(peer = %ctx.key, peer_author = %peer, pinned = %pinned, "a configured peer's address answered with another key than its pinned one: a stranger there (if the peer rotated its key, unpin it)");
            ctx.registry.set_error(
                &ctx.key,
                format!(
                    "answered with key {peer}, not the pinned key {pinned}: treated as a stranger"
                ),
            );
            ctx.admission.is_trusted(&peer)
        }
    }
}

/// The opening, the encrypted channel and the identity handshake; the authenticated peer and
/// the session's protocol version.
async fn open(
    ctx: &SessionContext,
    stream: Connection,
) -> Result<(Reader, Writer, Author, u16), SessionError> {
    let Connection { read, write, .. } = stream;
    let channel =
        transport::negotiate(read, write, ctx.role, &ctx.config.network, ctx.version).await?;
    let version = channel.version;
    let mut reader = FrameReader::new(
        channel.reader,
        ctx.config.idle_timeout,
        ctx.config.frame_timeout,
    );
    let mut writer = FrameWriter::new(channel.writer, ctx.config.frame_timeout);
    match handshake(ctx, &mut reader, &mut writer, channel.binding, version).await {
        Ok(peer) => Ok((reader, writer, peer, version)),
        Err(error) => {
            if let Some(reason) = error.bye_reason() {
                writer.bye(reason).await;
            }
            Err(error)
        }
    }
}

/// An admitted session: who, whether trusted, from where, and its control channel.
struct Admitted {
    peer: Author,
    trusted: bool,
    source: Source,
    /// The protocol version the openings agreed on.
    version: u16,
    control_tx: mpsc::UnboundedSender<Control>,
    control_rx: mpsc::UnboundedReceiver<Control>,
}

type Registered = (
    SessionTicket,
    mpsc::UnboundedSender<Control>,
    mpsc::UnboundedReceiver<Control>,
);

/// The allow-list, a stranger's source send budget and slot, and one session per key (see
/// [`super::admission`]).
fn admit(
    ctx: &SessionContext,
    peer: Author,
    trusted: bool,
    source: Option<Source>,
) -> Result<Registered, SessionError> {
    let admission = &ctx.admission;
    if !admission.allowed(&peer) {
        admission.count_refusal("not_allowed");
        return Err(SessionError::NotAllowed(peer));
    }
    let now = crate::clock::instant();
    if let (false, Some(source)) = (trusted, source) {
        // A source that has spent its send budget waits before the next session's first
        // frame anyway; refusing it here spares the handshake and reconciliation as well.
        if admission.send_wait(source, now) > ctx.config.handshake_timeout {
            admission.count_refusal("stranger_send_budget");
            return Err(SessionError::Busy);
        }
        // What the session costs before it sends a byte (the handshake's signatures and
        // Diffie-Hellman, the reconciliation's fingerprints), in the budget's unit.
        admission.send_spent(source, STRANGER_SESSION_COST_BYTES, now);
    }
    let dialer = match ctx.role {
        Role::Initiator => ctx.node.author(),
        Role::Responder => peer,
    };
    let stranger_slot = ctx.role == Role::Responder && !trusted;
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let ticket = admission
        .join(peer, dialer, control_tx.clone(), stranger_slot, now)
        .map_err(|refused| match refused {
            JoinRefused::Duplicate => SessionError::Duplicate,
            JoinRefused::Busy => SessionError::Busy,
        })?;
    Ok((ticket, control_tx, control_rx))
}

async fn run_admitted(
    ctx: &SessionContext,
    on_have: Option<OnHave>,
    reader: Reader,
    writer: Writer,
    admitted: Admitted,
) -> SessionEnd {
    let Admitted {
        peer,
        trusted,
        source,
        version,
        control_tx,
        control_rx,
    } = admitted;
    log_started(ctx, peer, trusted, version);
    let progress = Arc::new(Mutex::new(PeerProgress::default()));
    let stop = Arc::new(AtomicBool::new(false));
    ctx.registry.connected(
        &ctx.key,
        (peer, version),
        trusted,
        progress.clone(),
        control_tx.clone(),
    );
    // Subscribe before the `Have` snapshot, so no commit falls between the two (and so
    // with the checkpoint book's changes).
    let events = ctx.node.subscribe();
    let (gossip, delivered, peer_notes) = checkpoint_gossip(ctx, version);
    let search = SessionSearch::new(&ctx.config, Instant::now());
    let answering = search.answering();
    // One of the node's tasks; the session aborts and awaits it below.
    let inbound = ctx.node.spawn(
        Inbound {
            node: ctx.node.clone(),
            reader,
            progress: progress.clone(),
            control: control_tx,
            stop: stop.clone(),
            registry: ctx.registry.clone(),
            key: ctx.key.clone(),
            peer,
            trusted,
            source,
            in_flight: None,
            in_flight_view: Arc::default(),
            admission: ctx.admission.clone(),
            skipped: Arc::default(),
            reconcile_permits: None,
            version,
            book: ctx.config.checkpoint_book.clone(),
            delivered,
            peer_notes,
            notes: note_bucket(&ctx.config),
            search,
        }
        .run(),
    );
    let outbound = Outbound {
        node: ctx.node.clone(),
        writer,
        progress,
        registry: ctx.registry.clone(),
        key: ctx.key.clone(),
        events,
        control: control_rx,
        shutdown: ctx.shutdown.clone(),
        stop,
        ping_interval: ctx.config.ping_interval,
        on_have,
        no_push: Default::default(),
        last_sent: Instant::now(),
        peer,
        throttle: (!trusted).then_some(source),
        admission: ctx.admission.clone(),
        claim_timeout: ctx.config.claim_timeout,
        claim: None,
        role: ctx.role,
        gossip,
        answering,
    };
    let out_error = outbound.run().await;
    inbound.abort();
    let error = match inbound.await {
        // The receiving half ended on its own: its reason is the session's.
        Ok(in_error) if matches!(out_error, SessionError::ReceiverEnded(_)) => in_error,
        _ => out_error,
    };
    finish(ctx, Some(peer), trusted, error)
}

/// A v3 session's checkpoint gossip (none in v2), and what the receiving half shares with
/// it: the count of the peer's batches of new entries, which the checkpoint
/// reconciliation's deadline reads, and the notes the peer is known to hold (it records
/// the ones the peer sends).
fn checkpoint_gossip(
    ctx: &SessionContext,
    version: u16,
) -> (Option<CheckpointGossip>, Arc<AtomicU64>, PeerNotes) {
    let delivered = Arc::new(AtomicU64::new(0));
    let peer_notes = PeerNotes::default();
    let gossip = (version >= 3).then(|| {
        CheckpointGossip::new(
            ctx.config.checkpoint_book.clone(),
            ctx.config.checkpoint_reconcile_timeout,
            delivered.clone(),
            peer_notes.clone(),
        )
    });
    (gossip, delivered, peer_notes)
}

/// The bound on the checkpoint notes the peer sends (v3).
fn note_bucket(config: &SyncConfig) -> NoteBucket {
    NoteBucket::new(
        config.checkpoint_burst,
        config.checkpoints_per_second,
        Instant::now(),
    )
}

/// Logs a session's start, and what a session of an older version goes without.
fn log_started(ctx: &SessionContext, peer: Author, trusted: bool, version: u16) {
    log_session!(trusted, peer = %ctx.key, peer_author = %peer, version, "sync session started");
    if let Some(missing) = missing_in(version, PROTOCOL_VERSION) {
        log_session!(trusted, peer = %ctx.key, peer_author = %peer, "peer speaks protocol version {version}: {missing}");
    }
}

fn finish(
    ctx: &SessionContext,
    peer: Option<Author>,
    trusted: bool,
    error: SessionError,
) -> SessionEnd {
    let peer_author = peer.map(|a| a.to_string()).unwrap_or_default();
    // Dials are to configured peers: their ends matter whoever answered.
    let matters = trusted || ctx.role == Role::Initiator;
    if let SessionError::Transport(older) = &error {
        if let Some(version) = older.older_version() {
            // Not a failure: the dialer redials at once with this version.
            let missing = missing_in(version, PROTOCOL_VERSION).unwrap_or("redialling");
            tracing::info!(peer = %ctx.key, "peer speaks protocol version {version}: {missing}");
            ctx.registry.disconnected(&ctx.key, None);
            return SessionEnd { peer, error };
        }
    }
    if error.is_problem() {
        if !matters {
            // Anyone can open connections and sessions at any rate: each end is counted
            // (`GET /peers`, the aggregate `info` line) and logged below `warn` so a flood
            // cannot flood the log. A wrong version or network is worth an `info`: it is
            // usually a misconfigured node.
            match error.refusal_counter() {
                Some("unsupported_version" | "different_network") if peer.is_none() => {
                    tracing::info!(peer = %ctx.key, reason = %error, "sync connection refused")
                }
                _ => {
                    tracing::debug!(peer = %ctx.key, %peer_author, reason = %error, "sync session ended")
                }
            }
        } else {
            tracing::warn!(peer = %ctx.key, %peer_author, reason = %error, "sync session ended");
        }
        ctx.registry.disconnected(&ctx.key, Some(error.to_string()));
    } else {
        log_session!(matters, peer = %ctx.key, %peer_author, reason = %error, "sync session ended");
        ctx.registry.disconnected(&ctx.key, None);
    }
    SessionEnd { peer, error }
}

/// Hello, Hello, Auth, Auth: returns the authenticated peer. A peer `Hello` with our own
/// author is a proven self-connection, a copy of our key, or a lie ([`super::self_probe`]).
async fn handshake(
    ctx: &SessionContext,
    reader: &mut Reader,
    writer: &mut Writer,
    binding: Binding,
    version: u16,
) -> Result<Author, SessionError> {
    let node = &ctx.node;
    let nonce = Nonce(crate::determinism::random_bytes::<NONCE_BYTES>());
    let ours = Handshake::for_version(version, node.author(), nonce, binding);
    // Recorded before our Hello leaves, so our other end (if this is a self-connection)
    // finds it when it reads that Hello.
    let _probe = SelfProbe::register(&ctx.probe, binding, &nonce);
    writer.send(&Message::Hello(ours.hello().clone())).await?;
    let theirs = match reader.next().await? {
        Message::Hello(hello) => hello,
        Message::Bye(bye) => return Err(SessionError::PeerBye(bye.reason)),
        _ => {
            return Err(SessionError::OutOfOrder {
                got: "non-Hello",
                when: "at the start of the handshake",
            })
        }
    };
    let auth = match ours.on_hello(node.identity(), &theirs) {
        Err(HandshakeError::SelfConnection(_)) if ctx.probe.is_own(&binding, &theirs.nonce) => {
            return Err(SessionError::OwnAddress)
        }
        Err(HandshakeError::SelfConnection(_)) => ours.on_own_hello(node.identity(), &theirs)?,
        other => other?,
    };
    writer.send(&Message::Auth(auth)).await?;
    let their_auth = match reader.next().await? {
        Message::Auth(auth) => auth,
        Message::Bye(bye) => return Err(SessionError::PeerBye(bye.reason)),
        _ => {
            return Err(SessionError::OutOfOrder {
                got: "non-Auth",
                when: "after Hello",
            })
        }
    };
    let peer = ours.on_auth(&theirs, &their_auth)?;
    if peer == node.author() {
        // It signed with our key: another process holds a copy of it.
        ctx.alarms.key_copy(&ctx.key);
        return Err(SessionError::KeyCopy);
    }
    Ok(peer)
}
