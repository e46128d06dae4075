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
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::config::SyncConfig;
use super::connection::{FrameReader, FrameWriter};
use super::error::SessionError;
use super::handshake::Handshake;
use super::inbound::Inbound;
use super::message::{Message, Nonce, NONCE_BYTES};
use super::outbound::{OnHave, Outbound};
use super::plan::PeerProgress;
use super::status::PeerRegistry;
use crate::identity::Author;
use crate::node::Node;

/// What a session needs besides its socket.
pub struct SessionContext {
    pub node: Node,
    pub config: SyncConfig,
    pub registry: Arc<PeerRegistry>,
    /// The peer's key in the registry (configured address or remote address).
    pub key: String,
    pub shutdown: watch::Receiver<bool>,
    /// Told the own-feed fence outcome once the `Have` exchange completed.
    pub on_have: Option<OnHave>,
}

/// How a session ended.
#[derive(Debug)]
pub struct SessionEnd {
    /// The peer's author, if the handshake completed.
    pub peer: Option<Author>,
    pub error: SessionError,
}

/// Runs one session to its end.
pub async fn run_session(mut ctx: SessionContext, stream: TcpStream) -> SessionEnd {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let mut reader = FrameReader::new(read, ctx.config.idle_timeout, ctx.config.frame_timeout);
    let mut writer = FrameWriter::new(write, ctx.config.frame_timeout);
    let handshake = tokio::time::timeout(
        ctx.config.handshake_timeout,
        handshake(&ctx.node, &mut reader, &mut writer),
    )
    .await
    .unwrap_or(Err(SessionError::Timeout {
        what: "in the handshake",
    }));
    let peer = match handshake {
        Ok(peer) => peer,
        Err(error) => {
            if let Some(reason) = error.bye_reason() {
                writer.bye(reason).await;
            }
            return finish(&ctx, None, error);
        }
    };
    tracing::info!(peer = %ctx.key, peer_author = %peer, "sync session started");
    let progress = Arc::new(Mutex::new(PeerProgress::default()));
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    ctx.registry
        .connected(&ctx.key, peer, progress.clone(), control_tx.clone());
    // Subscribe before the `Have` snapshot, so no commit falls between the two.
    let events = ctx.node.subscribe();
    let inbound = tokio::spawn(
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
        on_have: ctx.on_have.take(),
        no_push: Default::default(),
        last_sent: Instant::now(),
    };
    let out_error = outbound.run().await;
    inbound.abort();
    let error = match inbound.await {
        // The receiving half ended on its own: its reason is the session's.
        Ok(in_error) if matches!(out_error, SessionError::ReceiverEnded(_)) => in_error,
        _ => out_error,
    };
    finish(&ctx, Some(peer), error)
}

fn finish(ctx: &SessionContext, peer: Option<Author>, error: SessionError) -> SessionEnd {
    let peer_author = peer.map(|a| a.to_string()).unwrap_or_default();
    if error.is_problem() {
        tracing::warn!(peer = %ctx.key, %peer_author, reason = %error, "sync session ended");
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
    reader: &mut FrameReader<OwnedReadHalf>,
    writer: &mut FrameWriter<OwnedWriteHalf>,
) -> Result<Author, SessionError> {
    let nonce = Nonce(rand::random::<[u8; NONCE_BYTES]>());
    let ours = Handshake::new(node.author(), nonce);
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
