//! The writer stepping inline, for a deterministic simulation
//! ([`crate::store::StoreOptions::inline_writer`]): each request is planned, signed, written,
//! synced and answered on the thread that sends it, before the send returns, under one
//! mutex. Nothing runs on a thread of its own, so what the store does, and when, follows
//! from the order of the requests alone.
//!
//! The planner and the syncer are the threaded writer's own ([`super::planner`],
//! [`super::syncer`]): one batch per request, one write and one `fdatasync` per batch, the
//! same records, answers and recovery. What has no place without a thread of its own: the
//! idle commit marker is written only when the store closes (a later write's leading
//! marker covers the one before, as under load), and a fork proof the forks file refused is
//! retried with the next request rather than after a delay.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::planner::Planner;
use super::syncer::Syncer;
use super::{Request, StoreError, Writer};
use crate::store::lock::DirLock;

/// The writer's state between two requests.
pub(crate) struct Inline {
    /// `None` once shut down: later requests are dropped unanswered
    /// ([`crate::store::AppendError::Closed`] to their senders), as after the threaded
    /// writer's end.
    running: Option<Running>,
}

struct Running {
    planner: Planner,
    syncer: Syncer,
    lock: DirLock,
    stopped: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
}

impl Inline {
    pub(crate) fn new(writer: Writer) -> Inline {
        let Writer {
            durable,
            identity,
            fence,
            max_batch_entries: _,
            lock,
            stopped,
        } = writer;
        let epoch = Arc::new(AtomicU64::new(0));
        let planner = Planner::new(
            durable.io.clone(),
            durable.file.clone(),
            durable.index.clone(),
            identity,
            epoch.clone(),
            fence,
        );
        let syncer = Syncer::new(durable, epoch);
        Inline {
            running: Some(Running {
                planner,
                syncer,
                lock,
                stopped,
            }),
        }
    }

    /// Does `request` to the end: answered (or, for a shutdown, the store closed and the
    /// owner told) before this returns.
    pub(crate) fn handle(&mut self, request: Request) {
        if matches!(request, Request::Shutdown) {
            if let Some(running) = self.running.take() {
                let Running {
                    planner,
                    mut syncer,
                    lock,
                    stopped,
                } = running;
                drop(planner);
                // Covers the last write with a marker; dropping the syncer closes both files.
                syncer.on_idle();
                drop(syncer);
                drop(lock);
                let _ = stopped.send(Ok(()));
            }
            return;
        }
        let Some(running) = self.running.as_mut() else {
            return;
        };
        let sealed = running.planner.commit(vec![request]);
        running.syncer.finish(vec![sealed]);
    }
}
