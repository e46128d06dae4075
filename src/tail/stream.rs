//! One tail stream: a task that replays, then forwards commits, into a short queue the
//! response body drains (see the parent module for the rules).
//!
//! The body prefers the final `end` frame to whatever is still queued: a stream is ended
//! because its client is behind (or the node is stopping), and a client resumes from the
//! last cursor it received, so frames skipped for the `end` are not lost, only not sent.

use std::convert::Infallible;
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Bytes;
use futures_util::Stream;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::fanout::Fanout;
use super::live::{Live, Wanted};
use super::queue::{queue, shutdown, Stop};
use super::{Format, TailConfig, FRAME_BYTES, QUEUED_FRAMES, REPLAY_CHUNK_BYTES};
use crate::identity::Author;
use crate::node::Node;
use crate::tail::Cursor;

/// What a stream needs to run.
pub(super) struct Plan {
    pub node: Node,
    /// The node's committed batches, rendered for the tail.
    pub fanout: Arc<Fanout>,
    /// Offset of the first record to send.
    pub from: u64,
    /// The same place as a start to resume from: the stream's first frame.
    pub position: super::Start,
    pub author: Option<Author>,
    pub format: Format,
    pub config: TailConfig,
    pub replays: Arc<Semaphore>,
    /// The stream's slot under the stream cap, held until it ends.
    pub slot: Slot,
}

/// A stream's slot under the cap, counted in `/metrics` (`kappalog_tail_streams`) while
/// the stream lives.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    open: prometheus_client::metrics::gauge::Gauge,
}

impl Slot {
    pub(crate) fn new(
        permit: OwnedSemaphorePermit,
        open: prometheus_client::metrics::gauge::Gauge,
    ) -> Slot {
        open.inc();
        Slot {
            _permit: permit,
            open,
        }
    }

    /// Streams open on the node, this one included.
    pub(crate) fn open(&self) -> &prometheus_client::metrics::gauge::Gauge {
        &self.open
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// Starts the stream's task; returns the body side.
pub(super) fn spawn(plan: Plan) -> TailStream {
    let (frames_tx, frames) = mpsc::channel(QUEUED_FRAMES);
    // The queue is empty and ours alone: the position always fits, first.
    let _ = frames_tx.try_send(plan.format.position(&plan.position));
    let (end_tx, end) = oneshot::channel();
    // One of the node's tasks, so the node's shutdown knows it (it ends on `ending`).
    let node = plan.node.clone();
    node.spawn(async move {
        let format = plan.format;
        let mut driver = Driver {
            last_sent: Instant::now(),
            ending: plan.node.streams_ending(),
            out: frames_tx,
            plan,
        };
        if let Err(Stop::End(reason)) = driver.run().await {
            tracing::debug!(%reason, "tail stream ended");
            let _ = end_tx.send(format.end(&reason));
        }
    });
    TailStream {
        frames,
        end: Some(end),
    }
}

/// The response body of a tail stream.
pub struct TailStream {
    frames: mpsc::Receiver<Bytes>,
    end: Option<oneshot::Receiver<Bytes>>,
}

impl Stream for TailStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(end) = self.end.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(last) = Pin::new(end).poll(cx) {
            self.end = None;
            return Poll::Ready(last.ok().map(Ok));
        }
        match self.frames.poll_recv(cx) {
            Poll::Ready(Some(frame)) => Poll::Ready(Some(Ok(frame))),
            // The task is done: its `end` (if it had one) was sent before it dropped the
            // queue, so it is ready now.
            Poll::Ready(None) => match self.end.take().map(|mut end| end.try_recv()) {
                Some(Ok(last)) => Poll::Ready(Some(Ok(last))),
                _ => Poll::Ready(None),
            },
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A replay's output, from its blocking thread.
enum Replayed {
    Frame(Bytes),
    Done,
    Failed(String),
}

struct Driver {
    plan: Plan,
    out: mpsc::Sender<Bytes>,
    ending: watch::Receiver<bool>,
    last_sent: Instant,
}

impl Driver {
    async fn run(&mut self) -> Result<Infallible, Stop> {
        let reader = self.plan.node.reader().clone();
        let e1 = reader.committed_end();
        self.replay(self.plan.from, e1).await?;
        let events = self.plan.fanout.subscribe();
        let e2 = reader.committed_end();
        self.replay(e1.max(self.plan.from), e2).await?;
        let live = Live {
            events,
            wanted: Wanted {
                from: e2.max(self.plan.from),
                node: self.plan.node.author(),
                author: self.plan.author,
                format: self.plan.format,
            },
            config: &self.plan.config,
            open: self.plan.slot.open(),
            out: &self.out,
            ending: self.ending.clone(),
        };
        Err(live.forward(&mut self.last_sent).await)
    }

    /// Completes when the stream must stop while it waits for something else: the node is
    /// ending, or the client went away. Sends heartbeats meanwhile.
    async fn idle(&mut self) -> Stop {
        loop {
            let beat_at = self.last_sent + self.plan.config.heartbeat;
            let ending = self.ending.wait_for(|ending| *ending);
            let beat = tokio::select! {
                _ = ending => Err(Stop::End("the node is shutting down".into())),
                () = self.out.closed() => Err(Stop::Gone),
                () = tokio::time::sleep_until(beat_at) => Ok(()),
            };
            if let Err(stop) = beat {
                return stop;
            }
            if let Err(stop) = self.send(self.plan.format.heartbeat()).await {
                return stop;
            }
        }
    }

    /// Queues `frame` (see [`queue`]).
    async fn send(&mut self, frame: Bytes) -> Result<(), Stop> {
        let shutdown = pin!(shutdown(self.ending.clone()));
        queue(&self.out, frame, self.plan.config.send_deadline, shutdown).await?;
        self.last_sent = Instant::now();
        Ok(())
    }

    /// Sends every record in `[from, to)`, read on a blocking thread.
    async fn replay(&mut self, from: u64, to: u64) -> Result<(), Stop> {
        if from >= to {
            return Ok(());
        }
        let permit = tokio::select! {
            permit = self.plan.replays.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                // The semaphore is never closed.
                Err(_) => return Err(Stop::End("internal error: replay slots closed".into())),
            },
            stop = self.idle() => return Err(stop),
        };
        let (tx, mut rx) = mpsc::channel(QUEUED_FRAMES);
        let reader = self.plan.node.reader().clone();
        let (node, author, format) = (self.plan.node.author(), self.plan.author, self.plan.format);
        // Detached: it stops by itself when done, or at its next frame once `rx` is gone.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut frame = Vec::with_capacity(FRAME_BYTES + 8 * 1024);
            let mut gone = false;
            let read = reader.for_each_record_between(
                from,
                to,
                REPLAY_CHUNK_BYTES,
                |offset, entry, hash| {
                    if author.is_some_and(|a| a != entry.author) {
                        return ControlFlow::Continue(());
                    }
                    format.write_entry(&Cursor::new(&node, offset, hash), entry, hash, &mut frame);
                    if frame.len() >= FRAME_BYTES {
                        let full = std::mem::replace(
                            &mut frame,
                            Vec::with_capacity(FRAME_BYTES + 8 * 1024),
                        );
                        if tx.blocking_send(Replayed::Frame(full.into())).is_err() {
                            gone = true;
                            return ControlFlow::Break(());
                        }
                    }
                    ControlFlow::Continue(())
                },
            );
            if gone {
                return;
            }
            let last = match read {
                Ok(()) if frame.is_empty() => Replayed::Done,
                Ok(()) => {
                    if tx.blocking_send(Replayed::Frame(frame.into())).is_err() {
                        return;
                    }
                    Replayed::Done
                }
                Err(e) => {
                    tracing::error!(error = %e, "tail replay failed");
                    Replayed::Failed("reading the log failed".into())
                }
            };
            let _ = tx.blocking_send(last);
        });
        loop {
            let replayed = tokio::select! {
                replayed = rx.recv() => replayed,
                stop = self.idle() => return Err(stop),
            };
            match replayed {
                Some(Replayed::Frame(frame)) => self.send(frame).await?,
                Some(Replayed::Done) => return Ok(()),
                Some(Replayed::Failed(reason)) => return Err(Stop::End(reason)),
                None => return Err(Stop::End("internal error: the replay stopped".into())),
            }
        }
    }
}
