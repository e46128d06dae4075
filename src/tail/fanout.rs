//! The tail's fan-out: the node publishes committed batches ([`NodeEvent::Committed`]); one
//! task per node hands each, with a render cache of its own, to every tail stream. So a
//! batch is rendered once per format for all streams (the first stream that needs a format
//! renders it, the others share the bytes), and the node knows nothing of how tails render.
//!
//! The fan-out subscribes to the node when it starts, before any stream subscribes to it, so
//! a batch committed after a stream subscribed reaches that stream (the rule of "no gap, no
//! repeat" in [`super`]); one committed before may reach it too, and the stream drops it by
//! its offsets.

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

use super::frame::{Format, RenderCache, Rendered};
use crate::identity::Author;
use crate::node::{Committed, Node, NodeEvent, EVENT_CHANNEL_CAPACITY};

/// What tail streams are told, in commit order.
#[derive(Clone, Debug)]
pub(super) enum TailEvent {
    /// A durable batch, with its renderings.
    Batch(Arc<Batch>),
    /// The fan-out fell behind the node by this many events: continuity is lost for every
    /// stream (each ends, and its client resumes from its cursor).
    Lagged(u64),
}

/// One committed batch and the tail's renderings of it, shared by every stream.
#[derive(Debug)]
pub(super) struct Batch {
    committed: Arc<Committed>,
    rendered: RenderCache,
}

impl Batch {
    /// This batch as tail streams of `format` send it (rendered on first use).
    pub(super) fn rendered(&self, format: Format, node: &Author) -> &Rendered {
        self.rendered
            .get(format, node, &self.committed, self.committed.offsets())
    }
}

/// The sending side of a node's fan-out; streams subscribe to it.
#[derive(Debug)]
pub(super) struct Fanout {
    events: broadcast::Sender<TailEvent>,
}

impl Fanout {
    /// Subscribes to `node`'s events now and starts forwarding them as one of the node's
    /// tasks; it ends when the node ends its streams ([`Node::end_streams`]) or is gone.
    pub(super) fn start(node: &Node) -> Fanout {
        let (events, _) = broadcast::channel(EVENT_CHANNEL_CAPACITY);
        node.spawn(forward(
            node.subscribe(),
            events.clone(),
            node.streams_ending(),
        ));
        Fanout { events }
    }

    /// Batches from now on (see [`TailEvent`]).
    pub(super) fn subscribe(&self) -> broadcast::Receiver<TailEvent> {
        self.events.subscribe()
    }
}

async fn forward(
    mut from: broadcast::Receiver<NodeEvent>,
    to: broadcast::Sender<TailEvent>,
    mut ending: watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            biased;
            // An error means the node is gone: the same as ending.
            _ = ending.wait_for(|ending| *ending) => return,
            event = from.recv() => event,
        };
        let event = match event {
            Ok(NodeEvent::Committed(committed)) => TailEvent::Batch(Arc::new(Batch {
                committed,
                rendered: RenderCache::default(),
            })),
            Ok(NodeEvent::Proof(_)) => continue,
            Err(RecvError::Lagged(missed)) => TailEvent::Lagged(missed),
            Err(RecvError::Closed) => return,
        };
        // An error only means no stream is open: nothing to tell.
        let _ = to.send(event);
    }
}
