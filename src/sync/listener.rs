//! Accepting peers: one task per listener. Each accepted connection takes a permit of the
//! node's connection semaphore (shared with the dialers) and runs a session in its own task;
//! beyond the cap the newcomer gets `Bye(Busy)` and is closed without a handshake. Accept
//! errors (e.g. out of file descriptors) back off from 10 ms doubling up to 1 s instead of
//! spinning.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};

use super::connection::FrameWriter;
use super::message::ByeReason;
use super::peers::SyncShared;
use super::session::{run_session, SessionContext};
use super::status::Direction;
use crate::node::Node;

const ACCEPT_BACKOFF_MIN_MS: u64 = 10;
const ACCEPT_BACKOFF_MAX_MS: u64 = 1_000;

pub(super) async fn accept_loop(
    node: Node,
    shared: Arc<SyncShared>,
    listener: TcpListener,
    semaphore: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
) {
    let mut backoff_ms = ACCEPT_BACKOFF_MIN_MS;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (stream, remote) = match accepted {
            Ok(a) => {
                backoff_ms = ACCEPT_BACKOFF_MIN_MS;
                a
            }
            Err(e) => {
                tracing::warn!(error = %e, backoff_ms, "sync accept failed, backing off");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(backoff_ms)) => {}
                    _ = shutdown.changed() => return,
                }
                backoff_ms = (backoff_ms * 2).min(ACCEPT_BACKOFF_MAX_MS);
                continue;
            }
        };
        let Ok(permit) = semaphore.clone().try_acquire_owned() else {
            tracing::warn!(%remote, "sync connection cap reached, refusing a peer");
            let frame_timeout = shared.config.frame_timeout;
            let alive = alive.clone();
            tokio::spawn(async move {
                refuse_busy(stream, frame_timeout).await;
                drop(alive);
            });
            continue;
        };
        let key = remote.to_string();
        shared.registry.ensure(&key, Direction::Inbound);
        let ctx = SessionContext {
            node: node.clone(),
            config: shared.config.clone(),
            registry: shared.registry.clone(),
            key,
            shutdown: shutdown.clone(),
            on_have: None,
        };
        let alive = alive.clone();
        tokio::spawn(async move {
            let _end = run_session(ctx, stream).await;
            drop(permit);
            drop(alive);
        });
    }
}

async fn refuse_busy(stream: TcpStream, frame_timeout: Duration) {
    let (_, write) = stream.into_split();
    FrameWriter::new(write, frame_timeout)
        .bye(ByeReason::Busy)
        .await;
}
