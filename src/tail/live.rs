//! The live part of a tail stream: forwarding commits, coalesced, at a bounded pace.
//!
//! Rendering is not what a busy node spends on its tails: each committed batch is rendered
//! once for every stream ([`super::frame`]). The cost is per stream and per wake-up: a poll
//! of the stream's task, one of its connection's and a socket write, for each of a thousand
//! streams at each commit. So that cost must not grow with the commit rate:
//!
//! - A stream that wakes takes everything the node's channel holds for it and queues it as
//!   one frame, so its connection writes it in one go however many commits arrived meanwhile.
//! - After each write a stream waits [`pause`] before it takes more: with `n` streams open,
//!   `n / TAIL_WAKES_PER_SEC`. All streams together then wake at most [`TAIL_WAKES_PER_SEC`]
//!   times a second however fast the node commits; what is committed meanwhile goes out in
//!   the next, larger write. A lone stream waits 20 µs, so on a quiet node (commits further
//!   apart than that) nothing waits at all.
//! - Its timers and wake-ups stay armed across commits: one heartbeat timer, moved only
//!   when it fires, and the shutdown and client-gone signals registered once, rather than
//!   two timers and two notifications set up and torn down at every commit.

use std::time::Duration;

use axum::body::Bytes;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use super::fanout::TailEvent;
use super::queue::{queue, shutdown, Stop};
use super::{Format, TailConfig};
use crate::identity::Author;

/// Wake-ups a second that all live streams together may spend (see the module docs). At a
/// few microseconds of CPU each, node and kernel, this keeps the fan-out's fixed cost under
/// about half a core of a small machine, so a thousand subscribers cannot take the CPU the
/// appends need; what is left per subscriber is the bytes it asked for. A thousand streams
/// write every 20 ms at most.
pub const TAIL_WAKES_PER_SEC: u64 = 50_000;

/// How long a stream waits after a write when `open` streams share [`TAIL_WAKES_PER_SEC`].
pub(crate) fn pause(open: u64) -> Duration {
    Duration::from_micros(open.saturating_mul(1_000_000) / TAIL_WAKES_PER_SEC)
}

/// What the live part of one stream forwards, and where to.
pub(super) struct Live<'a> {
    pub events: broadcast::Receiver<TailEvent>,
    pub wanted: Wanted,
    pub config: &'a TailConfig,
    /// Streams open on the node (the `kappalog_tail_streams` gauge), which set the pause.
    pub open: &'a Gauge,
    pub out: &'a mpsc::Sender<Bytes>,
    pub ending: watch::Receiver<bool>,
}

impl Live<'_> {
    /// Forwards commits until the stream must stop; `last_sent` is when the stream last
    /// queued a frame (for heartbeats), kept up to date.
    pub(crate) async fn forward(self, last_sent: &mut Instant) -> Stop {
        let Live {
            mut events,
            wanted,
            config,
            open,
            out,
            ending,
        } = self;
        let format = wanted.format;
        let shutdown = shutdown(ending);
        tokio::pin!(shutdown);
        let gone = out.closed();
        tokio::pin!(gone);
        let beat = tokio::time::sleep_until(*last_sent + config.heartbeat);
        tokio::pin!(beat);
        let paced = tokio::time::sleep_until(Instant::now());
        tokio::pin!(paced);
        let mut taken: Vec<Bytes> = Vec::new();
        loop {
            let first = tokio::select! {
                biased;
                () = &mut shutdown => return shutting_down(),
                () = &mut gone => return Stop::Gone,
                event = events.recv() => event,
                () = &mut beat => {
                    let due = *last_sent + config.heartbeat;
                    if Instant::now() >= due {
                        let sent = queue(out, format.heartbeat(), config.send_deadline, shutdown.as_mut());
                        if let Err(stop) = sent.await {
                            return stop;
                        }
                        *last_sent = Instant::now();
                    }
                    beat.as_mut().reset(*last_sent + config.heartbeat);
                    continue;
                }
            };
            if let Err(stop) = wanted.take(&mut events, first, &mut taken) {
                return stop;
            }
            if taken.is_empty() {
                continue;
            }
            let frame = join(&mut taken);
            if let Err(stop) = queue(out, frame, config.send_deadline, shutdown.as_mut()).await {
                return stop;
            }
            *last_sent = Instant::now();
            let wait = pause(u64::try_from(open.get()).unwrap_or(0));
            if wait.is_zero() {
                continue;
            }
            paced.as_mut().reset(*last_sent + wait);
            tokio::select! {
                biased;
                () = &mut shutdown => return shutting_down(),
                () = &mut gone => return Stop::Gone,
                () = &mut paced => {}
            }
        }
    }
}

/// Which frames of the committed batches a stream sends.
pub(super) struct Wanted {
    /// Entries whose records start before this offset were replayed: not sent again.
    pub from: u64,
    /// The node's author, for the cursors.
    pub node: Author,
    /// Only this feed, if set.
    pub author: Option<Author>,
    pub format: Format,
}

impl Wanted {
    /// Takes `first` and every event queued behind it, adding the frames this stream wants
    /// to `taken`. `Err` when the stream must stop: it fell behind, or the node is closing.
    fn take(
        &self,
        events: &mut broadcast::Receiver<TailEvent>,
        first: Result<TailEvent, RecvError>,
        taken: &mut Vec<Bytes>,
    ) -> Result<(), Stop> {
        let mut event = first;
        loop {
            match event {
                Ok(TailEvent::Batch(batch)) => {
                    let rendered = batch.rendered(self.format, &self.node);
                    taken.extend(rendered.select(self.from, self.author.as_ref()));
                }
                // The fan-out fell behind: as if this stream had.
                Ok(TailEvent::Lagged(missed)) | Err(RecvError::Lagged(missed)) => {
                    return Err(Stop::End(format!(
                        "fell behind the node by {missed} commits: resume from the last cursor"
                    )))
                }
                Err(RecvError::Closed) => return Err(shutting_down()),
            }
            event = match events.try_recv() {
                Ok(next) => Ok(next),
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Lagged(missed)) => Err(RecvError::Lagged(missed)),
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
            };
        }
    }
}

fn shutting_down() -> Stop {
    Stop::End("the node is shutting down".into())
}

/// The frames in `taken` as one (the one itself when there is one: no copy); empties it.
fn join(taken: &mut Vec<Bytes>) -> Bytes {
    if taken.len() == 1 {
        return taken.pop().unwrap_or_default();
    }
    let mut all = Vec::with_capacity(taken.iter().map(Bytes::len).sum());
    for frame in taken.drain(..) {
        all.extend_from_slice(&frame);
    }
    all.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_share_the_wake_budget() {
        assert_eq!(pause(0), Duration::ZERO);
        assert_eq!(pause(1), Duration::from_micros(20));
        assert_eq!(pause(1000), Duration::from_millis(20));
    }

    #[test]
    fn joined_frames_keep_their_order_and_one_is_not_copied() {
        let one = Bytes::from_static(b"a\n");
        let mut taken = vec![one.clone()];
        assert_eq!(join(&mut taken).as_ptr(), one.as_ptr());
        let mut taken = vec![one, Bytes::from_static(b"b\n"), Bytes::from_static(b"c\n")];
        assert_eq!(join(&mut taken), "a\nb\nc\n");
        assert!(taken.is_empty());
    }
}
