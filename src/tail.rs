//! The live tail: committed entries as a stream (`GET /tail`), each with a cursor a client
//! resumes from, exactly once and in this node's commit order, across restarts of the node.
//!
//! # Cursors
//!
//! The log file is in commit order and append-only, and a record is written once and never
//! moves (a torn tail cut at open was never acknowledged, so never streamed). So a position
//! in it names a point in the commit order for good. A [`Cursor`] (format in [`cursor`]) is
//! the log offset where the delivered entry's record starts, with a prefix of the node's
//! author (so a cursor from another node is refused, not misread) and a prefix of the
//! entry's hash (so a cursor into a replaced or restored data directory is refused, not
//! silently resumed at whatever record lies there). Resuming from a cursor means: check that
//! an intact record of an entry with that hash prefix starts at that offset, below the
//! committed end, and stream from the record after it. Each failed check is its own
//! [`TailError`] and its own 4xx: a cursor the node cannot honour never becomes a gap.
//!
//! # No gap, no repeat between replay and live
//!
//! A stream from a position `p` first replays the log from `p` to its end `e1` at the start,
//! without subscribing (a long replay must not fill the subscription). Then it subscribes to
//! commits, reads the end again (`e2`; the store publishes a batch in its index before it
//! tells subscribers), replays `e1..e2`, and from then on forwards each committed batch,
//! dropping the entries whose records start before `e2`: those were replayed. A batch
//! committed before the subscription is below `e2`; one committed after it reaches the
//! subscription. The store tells each batch's record offsets with the batch
//! ([`crate::store::CommitObserver`]), which is how live entries get their cursors.
//!
//! # Bounds
//!
//! - Replays read the file in [`REPLAY_CHUNK_BYTES`] chunks on a blocking thread, at most
//!   [`MAX_CONCURRENT_REPLAYS`] at once (others wait, with heartbeats), and hand the stream
//!   at most [`QUEUED_FRAMES`] frames of at most about [`FRAME_BYTES`] ahead of the socket.
//! - A live stream holds only its place in the tail's channel of committed batches
//!   (`tail/fanout.rs`: one per node, shared by every stream, each batch rendered once per
//!   format; [`crate::node::EVENT_CHANNEL_CAPACITY`] batches) and [`QUEUED_FRAMES`]
//!   frames. It sends what it takes at a wake-up as one frame, and waits a little after each
//!   write, so that all streams together wake at most [`TAIL_WAKES_PER_SEC`] times a
//!   second however fast the node commits (`tail/live.rs`): a thousand subscribers cost the
//!   appends the bytes they take, not a wake-up and a socket write each per commit. A client that falls further behind than the channel holds, or takes nothing
//!   for [`TailConfig::send_deadline`], is sent `end` with the reason and cut off; it
//!   resumes from its cursor. Nothing is ever buffered for a slow client beyond that.
//! - At most [`TailConfig::max_streams`] streams at once (503 beyond).
//! - A heartbeat goes out after [`TailConfig::heartbeat`] without a frame, so proxies and
//!   clients can tell an idle stream from a dead one.
//! - [`crate::node::Node::end_streams`] (the server's shutdown) ends every stream with
//!   `end`, so a graceful shutdown does not wait on them.

pub mod client;
pub mod cursor;
mod fanout;
pub mod frame;
mod live;
mod queue;
mod stream;

use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::Semaphore;

pub use cursor::{Cursor, CursorError};
pub use frame::{Format, RenderCache, Rendered};
pub use live::TAIL_WAKES_PER_SEC;
pub use stream::TailStream;

use crate::identity::Author;
use crate::node::Node;
use crate::store::format::FILE_HEADER_BYTES;
use crate::store::{StoreError, StoreReader};

/// Tail streams open at once by default (`GET /tail` beyond it: 503). Each holds one HTTP
/// connection, a task and up to [`QUEUED_FRAMES`] frames; 1,024 leaves room for the
/// 1,000-subscriber benchmark.
pub const MAX_TAIL_STREAMS: usize = 1024;
/// Replays reading the log at once; each holds a blocking thread and one chunk.
pub const MAX_CONCURRENT_REPLAYS: usize = 4;
/// Bytes of log a replay reads at a time.
pub const REPLAY_CHUNK_BYTES: usize = 256 * 1024;
/// Rendered bytes a replay gathers into one frame before handing it over.
pub const FRAME_BYTES: usize = 64 * 1024;
/// Frames a stream may have produced that the socket has not taken yet.
pub const QUEUED_FRAMES: usize = 4;
/// Quiet time after which a heartbeat is sent.
pub const HEARTBEAT_MS: u64 = 15_000;
/// How long a frame may wait for the client to make room before the stream is ended as a
/// slow consumer.
pub const SEND_DEADLINE_MS: u64 = 10_000;

/// The tail's limits and timings (tests shorten them).
#[derive(Clone, Debug)]
pub struct TailConfig {
    /// Streams open at once; one more is refused 503 ([`MAX_TAIL_STREAMS`] by default).
    pub max_streams: usize,
    /// Quiet time after which a stream sends a heartbeat ([`HEARTBEAT_MS`] by default).
    pub heartbeat: Duration,
    /// How long a frame may wait for room in the socket before the stream is ended as a
    /// slow consumer ([`SEND_DEADLINE_MS`] by default).
    pub send_deadline: Duration,
}

impl Default for TailConfig {
    fn default() -> Self {
        TailConfig {
            max_streams: MAX_TAIL_STREAMS,
            heartbeat: Duration::from_millis(HEARTBEAT_MS),
            send_deadline: Duration::from_millis(SEND_DEADLINE_MS),
        }
    }
}

/// Where a stream starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The first entry of the log (`from=start`).
    Beginning,
    /// The next entry committed (`from=now`).
    Now,
    /// The entry after the one the cursor names.
    After(Cursor),
}

impl std::fmt::Display for Start {
    /// The `from` parameter that asks for this start.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Start::Beginning => f.write_str("start"),
            Start::Now => f.write_str("now"),
            Start::After(cursor) => cursor.fmt(f),
        }
    }
}

impl FromStr for Start {
    type Err = TailError;

    fn from_str(text: &str) -> Result<Start, TailError> {
        match text {
            "start" => Ok(Start::Beginning),
            "now" => Ok(Start::Now),
            cursor => Ok(Start::After(cursor.parse()?)),
        }
    }
}

/// Why a tail stream was not opened.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// `from` (or `Last-Event-ID`) is neither `start`, `now` nor a well-formed cursor (400).
    #[error("malformed cursor: {0} (expected start, now or a cursor this node sent)")]
    Malformed(#[from] CursorError),
    /// The cursor was issued by another node (its node-key prefix differs): positions are
    /// per log (400).
    #[error("the cursor is from another node's log, not this node's")]
    OtherNode,
    /// The cursor's position is at or past the committed end of this log (404).
    #[error("the cursor names log position {offset}, beyond this node's log (it ends at {end})")]
    Beyond {
        /// The byte offset in the log the cursor names.
        offset: u64,
        /// The committed end of the log, in bytes.
        end: u64,
    },
    /// No record at the cursor's offset, or one with another hash: the log is not the one
    /// that issued the cursor (410).
    #[error("the cursor names an entry this node's log does not hold at position {offset} (was the data directory replaced?)")]
    NotHeld {
        /// The byte offset in the log the cursor names.
        offset: u64,
    },
    /// Every stream slot is taken (503).
    #[error("{max} tail streams are open, the most this node serves: retry later")]
    Busy {
        /// [`TailConfig::max_streams`], for the message.
        max: usize,
    },
    /// The node is shutting down: no new stream (503).
    #[error("the node is shutting down")]
    Ending,
    /// Reading the record a cursor names failed (500).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blocking read of a cursor's record panicked or was cancelled (500).
    #[error("a background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Where the stream from `start` begins: the offset of the first record it sends, and the
/// same place as a start a client can resume from (the stream's first frame, see
/// [`frame::Format::position`]): `now` becomes the cursor of the last entry committed
/// before it, or `start` if there is none. Blocking for a cursor (reads the record it
/// names).
pub fn resolve(
    reader: &StoreReader,
    node: &Author,
    start: Start,
) -> Result<(u64, Start), TailError> {
    let cursor = match start {
        Start::Beginning => return Ok((FILE_HEADER_BYTES, start)),
        Start::Now => {
            let (end, last) = reader.end_and_last_entry();
            let position = last.map_or(Start::Beginning, |(offset, hash)| {
                Start::After(Cursor::new(node, offset, &hash))
            });
            return Ok((end, position));
        }
        Start::After(cursor) => cursor,
    };
    if !cursor.is_of(node) {
        return Err(TailError::OtherNode);
    }
    let end = reader.committed_end();
    if cursor.offset >= end {
        return Err(TailError::Beyond {
            offset: cursor.offset,
            end,
        });
    }
    match reader.record_at(cursor.offset)? {
        Some((_, hash, next)) if cursor.names(&hash) => Ok((next, start)),
        _ => Err(TailError::NotHeld {
            offset: cursor.offset,
        }),
    }
}

/// The node's tail streams: their limits, shared by every request.
#[derive(Clone, Debug)]
pub struct Tails {
    config: TailConfig,
    streams: Arc<Semaphore>,
    replays: Arc<Semaphore>,
    /// The node's commits for the streams, started with the first stream (it needs the
    /// node, and a runtime to run on).
    fanout: Arc<OnceLock<Arc<fanout::Fanout>>>,
}

impl Tails {
    /// No streams yet; the fan-out of commits starts with the first.
    pub fn new(config: TailConfig) -> Tails {
        Tails {
            streams: Arc::new(Semaphore::new(config.max_streams)),
            replays: Arc::new(Semaphore::new(MAX_CONCURRENT_REPLAYS)),
            fanout: Arc::default(),
            config,
        }
    }

    /// Opens a stream of `node`'s commits from `start`, of one feed with `author`. Every
    /// stream of one `Tails` must be of the same node (its fan-out is that node's).
    pub async fn open(
        &self,
        node: &Node,
        start: Start,
        author: Option<Author>,
        format: Format,
    ) -> Result<TailStream, TailError> {
        if *node.streams_ending().borrow() {
            return Err(TailError::Ending);
        }
        let permit = self
            .streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| TailError::Busy {
                max: self.config.max_streams,
            })?;
        let (from, position) = match start {
            // Both read only the index: no blocking read.
            Start::Beginning | Start::Now => resolve(node.reader(), &node.author(), start)?,
            Start::After(_) => {
                let (reader, author) = (node.reader().clone(), node.author());
                tokio::task::spawn_blocking(move || resolve(&reader, &author, start)).await??
            }
        };
        let fanout = self
            .fanout
            .get_or_init(|| Arc::new(fanout::Fanout::start(node)))
            .clone();
        Ok(stream::spawn(stream::Plan {
            node: node.clone(),
            fanout,
            from,
            position,
            author,
            format,
            config: self.config.clone(),
            replays: self.replays.clone(),
            slot: stream::Slot::new(permit, node.metrics().tail_streams.clone()),
        }))
    }
}
