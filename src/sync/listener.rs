//! Accepting peers: one task per listener, each accepted connection a session task (all of
//! them the node's tasks, see [`super::peers`]), started from the state the dialers share
//! ([`super::shared`]).
//!
//! Defences, each against a stranger who can open connections at will:
//! - **Per address**: at most `max_inbound_per_addr` connections from one IP address at once
//!   (pending or in session); more get `Bye(Busy)` in plaintext and are closed at once.
//! - **Pending handshakes**: at most `max_pending_handshakes` connections between accept and
//!   a verified `Auth`. A newcomer beyond that sheds the *oldest* pending one, so a flood of
//!   connections that never finish their handshake cannot keep the door shut: an honest
//!   handshake takes milliseconds, a junk one is dropped as soon as newer ones arrive.
//! - **Stranger slots** are taken after the handshake, when the key is known (see
//!   [`super::session`]): trusted keys never wait behind strangers.
//!
//! Accept errors (e.g. out of file descriptors) back off from 10 ms doubling up to 1 s
//! instead of spinning.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{oneshot, watch};

use super::frame::encode_frame;
use super::message::{Bye, ByeReason, Message};
use super::net::{Listener, WriteHalf};
use super::session::{run_session, SessionContext};
use super::shared::SyncShared;
use super::status::Direction;
use super::transport::Role;
use crate::backoff::exponential_ms;
use crate::node::Node;

const ACCEPT_BACKOFF_MIN_MS: u64 = 10;
const ACCEPT_BACKOFF_MAX_MS: u64 = 1_000;

/// Connections still in their handshake, oldest first, each with the sender that sheds it. A
/// session drops its receiver when its handshake ends, which closes the sender: closed
/// entries are no longer pending.
type Pending = VecDeque<oneshot::Sender<()>>;

pub(super) async fn accept_loop(
    node: Node,
    shared: Arc<SyncShared>,
    mut listener: Box<dyn Listener>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut pending = Pending::new();
    // Accept errors in a row (a full descriptor table, say): each waits longer.
    let mut failures: u32 = 0;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (stream, remote) = match accepted {
            Ok(connection) => {
                failures = 0;
                match connection.remote {
                    Some(remote) => (connection, remote),
                    // A connection whose address the network cannot tell would fall under no
                    // per-address cap: refused (TCP always tells it).
                    None => {
                        tracing::debug!("sync connection without a remote address, refusing");
                        continue;
                    }
                }
            }
            Err(e) => {
                let backoff_ms =
                    exponential_ms(ACCEPT_BACKOFF_MIN_MS, ACCEPT_BACKOFF_MAX_MS, failures);
                tracing::warn!(error = %e, backoff_ms, "sync accept failed, backing off");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(backoff_ms)) => {}
                    _ = shutdown.changed() => return,
                }
                failures = failures.saturating_add(1);
                continue;
            }
        };
        let ip = remote.ip();
        if !shared.admission.inbound_opened(ip) {
            tracing::debug!(%remote, "too many sync connections from this address, refusing");
            shared.spawn(node.clone(), refuse_busy(stream.write));
            continue;
        }
        let (shed_tx, shed_rx) = oneshot::channel();
        pending.retain(|shed| !shed.is_closed());
        while pending.len() >= shared.config.max_pending_handshakes.max(1) {
            if let Some(oldest) = pending.pop_front() {
                let _ = oldest.send(());
            }
        }
        pending.push_back(shed_tx);
        let key = remote.to_string();
        shared.registry.ensure(&key, Direction::Inbound);
        let ctx = SessionContext {
            shed: Some(shed_rx),
            ..shared.session_context(&node, key, Role::Responder, shutdown.clone())
        };
        let session_shared = shared.clone();
        shared.spawn(node.clone(), async move {
            let _end = run_session(ctx, stream).await;
            session_shared.admission.inbound_closed(ip);
        });
    }
}

/// The plaintext refusal a connection over a limit gets instead of an opening.
async fn refuse_busy(mut stream: WriteHalf) {
    let bye = Message::Bye(Bye {
        reason: ByeReason::Busy,
    });
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        if let Ok(frame) = encode_frame(&bye) {
            let _ = stream.write_all(&frame).await;
        }
        let _ = stream.shutdown().await;
    })
    .await;
}
