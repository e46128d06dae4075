//! One session over one TCP connection (docs/PROTOCOL.md section 6): the handshake, then two
//! halves run side by side until either ends: [`super::inbound`] reads and stores,
//! [`super::outbound`] sends the `Have`, the plan's entries and live pushes. The halves
//! share only what the peer is known to hold ([`PeerProgress`], behind a std mutex never
//! held across an await) and a control channel from the receiving to the sending half.
//!
//! Whatever ends a session (a violation, a timeout, the peer leaving, shutdown) is returned
//! in [`SessionEnd`], logged with the peer's address and author, and recorded as the peer's
//! `last_error` for `GET /peers`.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::admission::Admission;
use super::config::SyncConfig;
use super::connection::{FrameReader, FrameWriter};
use super::error::SessionError;
use super::handshake::{Binding, Handshake};
use super::inbound::Inbound;
use super::message::{Message, Nonce, NONCE_BYTES};
use super::outbound::{OnHave, Outbound};
use super::plan::PeerProgress;
use super::status::PeerRegistry;
use super::transport::{self, Role};
use crate::identity::Author;
use crate::node::Node;

/// What a session needs besides its socket.
pub struct SessionContext {
    pub node: Node,
    pub config: SyncConfig,
    pub registry: Arc<PeerRegistry>,
    pub admission: Arc<Admission>,
    /// The stranger slots: an inbound session with a key that is neither allow-listed nor
    /// configured needs one of them after its handshake.
    pub strangers: Arc<Semaphore>,
    /// The peer's key in the registry (configured address or remote address).
    pub key: String,
    /// Initiator when we dialed.
    pub role: Role,
    pub shutdown: watch::Receiver<bool>,
    /// Told the own-feed fence outcome once the `Have` exchange completed.
    pub on_have: Option<OnHave>,
    /// Fires when the listener sheds this connection while it is still in its handshake.
    pub shed: Option<oneshot::Receiver<()>>,
}

/// How a session ended.
#[derive(Debug)]
pub struct SessionEnd {
    /// The peer's author, if the handshake completed.
    pub peer: Option<Author>,
    pub error: SessionError,
}

type Reader = FrameReader<OwnedReadHalf>;
type Writer = FrameWriter<OwnedWriteHalf>;

/// Runs one session to its end.
pub async fn run_session(mut ctx: SessionContext, stream: TcpStream) -> SessionEnd {
    let _ = stream.set_nodelay(true);
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
    let (reader, mut writer, peer) = match opened {
        Ok(opened) => opened,
        Err(error) => {
            if let Some(reason) = error.refusal_counter() {
                ctx.admission.count_refusal(reason);
            }
            return finish(&ctx, None, error);
        }
    };
    let (permit, ticket, control_tx, control_rx) = match admit(&ctx, peer) {
        Ok(admitted) => admitted,
        Err(error) => {
            if let Some(reason) = error.bye_reason() {
                writer.bye(reason).await;
            }
            return finish(&ctx, Some(peer), error);
        }
    };
    let end = run_admitted(&ctx, on_have, reader, writer, peer, control_tx, control_rx).await;
    ctx.admission.leave(ticket);
    drop(permit);
    end
}

/// The opening, the encrypted channel and the identity handshake; the authenticated peer.
async fn open(
    ctx: &SessionContext,
    stream: TcpStream,
) -> Result<(Reader, Writer, Author), SessionError> {
    let (read, write) = stream.into_split();
    let channel = transport::establish(read, write, ctx.role, &ctx.config.network).await?;
    let mut reader = FrameReader::new(
        channel.reader,
        ctx.config.idle_timeout,
        ctx.config.frame_timeout,
    );
    let mut writer = FrameWriter::new(channel.writer, ctx.config.frame_timeout);
    match handshake(&ctx.node, &mut reader, &mut writer, channel.binding).await {
        Ok(peer) => Ok((reader, writer, peer)),
        Err(error) => {
            if let Some(reason) = error.bye_reason() {
                writer.bye(reason).await;
            }
            Err(error)
        }
    }
}

type Admitted = (
    Option<OwnedSemaphorePermit>,
    super::admission::SessionTicket,
    mpsc::UnboundedSender<super::status::Control>,
    mpsc::UnboundedReceiver<super::status::Control>,
);

/// The allow-list, the stranger slots and one session per key (see [`super::admission`]).
fn admit(ctx: &SessionContext, peer: Author) -> Result<Admitted, SessionError> {
    let admission = &ctx.admission;
    if !admission.allowed(&peer) {
        admission.count_refusal("not_allowed");
        return Err(SessionError::NotAllowed(peer));
    }
    let dialer = match ctx.role {
        Role::Initiator => {
            // Every dial goes to a configured peer: its key is trusted from now on.
            admission.learn_configured(peer);
            ctx.node.author()
        }
        Role::Responder => peer,
    };
    let permit = if ctx.role == Role::Responder && !admission.is_trusted(&peer) {
        match ctx.strangers.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                admission.count_refusal("stranger_slots_full");
                return Err(SessionError::Busy);
            }
        }
    } else {
        None
    };
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let ticket = admission
        .join(peer, dialer, control_tx.clone())
        .map_err(|_| SessionError::Duplicate)?;
    Ok((permit, ticket, control_tx, control_rx))
}

async fn run_admitted(
    ctx: &SessionContext,
    on_have: Option<OnHave>,
    reader: Reader,
    writer: Writer,
    peer: Author,
    control_tx: mpsc::UnboundedSender<super::status::Control>,
    control_rx: mpsc::UnboundedReceiver<super::status::Control>,
) -> SessionEnd {
    tracing::info!(peer = %ctx.key, peer_author = %peer, "sync session started");
    let progress = Arc::new(Mutex::new(PeerProgress::default()));
    let stop = Arc::new(AtomicBool::new(false));
    ctx.registry.connected(
        &ctx.key,
        peer,
        ctx.admission.is_trusted(&peer),
        progress.clone(),
        control_tx.clone(),
    );
    // Subscribe before the `Have` snapshot, so no commit falls between the two.
    let events = ctx.node.subscribe();
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
            in_flight: None,
            in_flight_view: Arc::default(),
            admission: ctx.admission.clone(),
            skipped: Arc::default(),
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
        admission: ctx.admission.clone(),
        claim_timeout: ctx.config.claim_timeout,
        claim: None,
        role: ctx.role,
    };
    let out_error = outbound.run().await;
    inbound.abort();
    let error = match inbound.await {
        // The receiving half ended on its own: its reason is the session's.
        Ok(in_error) if matches!(out_error, SessionError::ReceiverEnded(_)) => in_error,
        _ => out_error,
    };
    finish(ctx, Some(peer), error)
}

fn finish(ctx: &SessionContext, peer: Option<Author>, error: SessionError) -> SessionEnd {
    let peer_author = peer.map(|a| a.to_string()).unwrap_or_default();
    if error.is_problem() {
        if peer.is_none() && ctx.role == Role::Responder {
            // Anyone can open connections that never authenticate, at any rate: each is
            // counted and shown in `GET /peers`, and logged below `warn` so a flood cannot
            // flood the log. A wrong version or network is worth an `info`: it is usually a
            // misconfigured node.
            match error.refusal_counter() {
                Some("unsupported_version" | "different_network") => {
                    tracing::info!(peer = %ctx.key, reason = %error, "sync connection refused")
                }
                _ => tracing::debug!(peer = %ctx.key, reason = %error, "sync connection refused"),
            }
        } else {
            tracing::warn!(peer = %ctx.key, %peer_author, reason = %error, "sync session ended");
        }
        ctx.registry.disconnected(&ctx.key, Some(error.to_string()));
    } else {
        tracing::info!(peer = %ctx.key, %peer_author, reason = %error, "sync session ended");
        ctx.registry.disconnected(&ctx.key, None);
    }
    SessionEnd { peer, error }
}

/// Hello, Hello, Auth, Auth: returns the authenticated peer.
async fn handshake(
    node: &Node,
    reader: &mut Reader,
    writer: &mut Writer,
    binding: Binding,
) -> Result<Author, SessionError> {
    let nonce = Nonce(rand::random::<[u8; NONCE_BYTES]>());
    let ours = Handshake::new(node.author(), nonce, binding);
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
    let auth = ours.on_hello(node.identity(), &theirs)?;
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
    Ok(ours.on_auth(&theirs, &their_auth)?)
}
