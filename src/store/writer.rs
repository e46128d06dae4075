//! The single writer: one owner of both files, its group commit, and its lifecycle.
//!
//! Every append is a [`Request`] on one channel, and carries its own reply channel. The
//! writer takes the first request, drains whatever else is queued (up to a batch cap), and
//! then, for the whole batch at once:
//!
//! 1. plans each entry in arrival order against the feed heads (the index plus the entries
//!    planned earlier in the batch): own entries get seq, prev and a timestamp that never
//!    goes below the feed's last one, and their hash; foreign entries get their placement
//!    (next, duplicate, fork, gap) and chain check — their signatures were verified by the
//!    caller before the request was sent, so the writer never waits on verification. A
//!    request placed whole (a sync batch, [`Unplaceable`]) with an entry that is a gap or
//!    breaks its chain is refused here, answered at once, and nothing of it is planned;
//! 2. signs the planned own entries on all cores, in chunks signed as batches: signing
//!    dominates the cost;
//! 3. writes all records, and the fork notes of the batch, with one positional write and
//!    one `fdatasync` (a file of an older format first gets its header upgraded, synced on
//!    its own, see "The header version" in docs/STORE.md);
//! 4. appends the batch's new fork proofs to the forks file with one write and one
//!    `fdatasync` (only when there are any, [`crate::store::fork_log::ForkLog::append`]);
//! 5. updates the shared index and the shared forked set (so readers only ever see synced
//!    data, and never wait on a sync: their locks are taken only after it);
//! 6. calls the commit observer with the added entries in commit order;
//! 7. answers every request.
//!
//! Steps 1-2 (plan, sign: [`planner`]) and 3-7 (write, sync, publish, answer: [`syncer`]) run on
//! two threads. The planner thread is itself a worker of a small rayon pool kept for
//! signing, so it signs a chunk of each batch while the other workers sign the rest. While
//! one `fdatasync` runs, the planner plans and signs whatever arrives, and the syncer then
//! writes *every* batch that is waiting with one write and one `fdatasync`. Signing (CPU)
//! and syncing (disk) overlap, and when the disk is the bottleneck each sync still carries
//! every append that arrived during the previous one. The planner keeps its own view of
//! every feed it has planned entries for (the index plus entries still in flight), trimmed
//! as batches become durable: the one placement that decides where an entry goes, whoever
//! offered it (a sync session only checks what needs no placement before it offers a batch,
//! see "One placement, by the store" in `crate::sync::inbound`). What the two threads hand
//! each other, and how either answers a request that cannot be written, is [`planned`]:
//! below both, so neither imports the other.
//!
//! # Answers are owned values
//!
//! The planner turns each request into one planned request ([`planned::Planned`]) holding what
//! it writes — the signed entry of an own append, the placement of each foreign entry, the
//! fork note or proof — *and* the request's reply channel. The syncer records each record's
//! offset in the record itself as it lays the write out, and answers a request from its own
//! planned value, moving the entries into the answer. Nothing is matched back by position.
//!
//! # Lifecycle
//!
//! The writer thread is started by [`super::Store::open`] and owned by the
//! [`super::StoreOwner`]. A [`Request::Shutdown`] ends it: the planner plans what was queued
//! before it and stops taking requests (later ones are dropped unanswered, which their
//! senders see as [`AppendError::Closed`]); the syncer makes durable and answers what the
//! planner handed it, writes a closing commit marker, and closes both files; then the
//! writer thread releases the directory lock and, as its very last act, tells the owner on
//! a oneshot channel. The planner thread waits for the syncer thread it started before that
//! (its own child, not a `Drop`); nothing ever waits for the writer thread itself.
//!
//! # Idempotency keys
//!
//! An own append may carry an idempotency key, written into its record. The planner is the
//! one place every append passes in order, so it is where a key is deduplicated, which
//! makes two requests with one key unable to both append however they race, and keeps the
//! rule intact if the requester gives up (its request is still the writer's):
//!
//! - a key whose append is still in flight (planned, not yet durable): the new request
//!   appends nothing and waits with its own batch, which is the first one's or a later one,
//!   so it is finished no earlier. It is answered [`OwnAppend::Replayed`] with that entry if
//!   the entry is durable by then, else with the error that failed it (nothing appended);
//! - a key the index remembers ([`super::keys`]) with a record of the own feed: answered
//!   `Replayed` at once;
//! - otherwise the entry is planned with the key, and the key is in flight until the entry
//!   is durable, then dropped. The in-flight keys are no more than the keyed appends the
//!   writer has taken and not yet made durable: one small map entry beside each request the
//!   writer already holds (with its data), so they are bounded by whatever bounds those
//!   (`POST /add`: its requests in flight, `MAX_CONCURRENT_REQUESTS`, each waiting for its
//!   answer); a separate cap would not bound memory any further.
//!
//! # The own-feed fence
//!
//! The planner owns the node's one live [`Fence`] ([`crate::fence`]). Fence events
//! ([`Request::Fence`]: a peer tried, the startup timeout, a claim made, renewed or
//! dropped, a fork of our own feed) come down the same channel as the appends, and the
//! planner applies each one when its turn comes, so events and own appends are in one
//! total order: an append queued after an event that closes the fence is refused
//! ([`AppendError::Fence`]), and one queued after the event that opens it is not. An own
//! append is checked once its idempotency key has been looked up (a replay signs nothing,
//! so it is answered whatever the fence says) and before it gets a seq, against the length
//! of the own feed as planned: the index plus what is in flight, so entries of our own feed
//! delivered by a peer count as soon as they are placed. After each event the planner
//! publishes a copy of the fence, which `/summary` reads.
//!
//! # Fork proofs
//!
//! A proof request (checked by the caller, [`CheckedProof`]) is decided by the syncer, the
//! one place that knows what is durable: a proof of an author that already has one (or gets
//! one earlier in the same write) is answered "not new" and written nowhere; otherwise the
//! author's fork note goes into the log write (unless the log already notes the author)
//! and, once that is synced, the proof into the forks file. If the forks file cannot be
//! written, the proof's request fails with that error while the note stays durable: the
//! author is then forked without a proof, exactly as after a lost proof.
//!
//! # Replacement copies
//!
//! A [`Request::Replace`] offers other signatures of entries the log holds. The planner
//! checks each copy's shape and signature; the syncer decides each against the durable log
//! ([`replace::decide`]: same author, seq and entry hash, another signature, author not
//! forked), writes the replacement records after the write's entry records, and points the
//! index at them once the write is synced. Not told to the commit observer: no entry is new.
//!
//! # Failures and recovery
//!
//! If a write or sync of the log fails, nothing in that write is acknowledged: every request
//! of it is answered with the error, and so is every batch planned before the planner
//! learned of the failure (they may chain onto entries that were never made durable). The
//! writer then **recovers** before it writes again: it cuts the file back to the last
//! durable end it knows, syncs the cut, checks the file's length, and re-reads the last
//! durable record (its checksum must hold). After a failed `fdatasync` the kernel may have
//! dropped the dirty pages of the failed write, so nothing of it is trusted: it is cut, and
//! written afresh only by a later request. Bytes before the durable end were synced by an
//! earlier, successful `fdatasync`, so they are on the disk whatever the page cache says.
//!
//! Failures are counted in epochs: each failure starts a new one, each batch carries the
//! epoch it was planned in, and the syncer fails any batch planned in an earlier epoch. The
//! planner, seeing a new epoch, forgets its view of entries in flight and plans from the
//! index again. Meanwhile the store is *degraded* ([`super::health`]); the first batch
//! written and synced afterwards (say, once a full disk has room again) makes it *ok*.
//! A recovery that fails itself (the cut cannot be made or synced) is retried before the
//! next write, and that write is not attempted until it succeeds.

mod inline;
mod planned;
mod planner;
pub(crate) mod replace;
mod syncer;

use crate::clock::now_ms;
use std::io;
use std::sync::atomic::AtomicU64;
use std::sync::{mpsc, Arc, RwLock};

use tokio::sync::{oneshot, watch};

use super::fork_log::{ForkLog, Forked};
use super::health::StoreHealth;
use super::index::Index;
use super::io::{LogFile, LogIo};
use super::lock::DirLock;
use super::{AppendError, CommitObserver, Outcome, StoreError};
use crate::entry::{Entry, Seq};
use crate::fence::{Fence, FenceEvent};
use crate::fork::ForkProof;
use crate::hash::Hash;
use crate::idempotency::IdempotencyKey;
use crate::identity::{Author, Identity};
use crate::validate::ValidationError;

pub(crate) use inline::Inline;
pub use replace::{ReplaceOutcome, ReplaceRefusal, ReplaceResult};

/// How long the syncer waits for more work after a write before it writes a commit marker
/// covering that write (see the recovery rule in docs/STORE.md). Under load the next
/// write's leading marker covers it for free; only an idle store pays for one more
/// `fdatasync`, and only this long after its last append.
pub const IDLE_MARKER_DELAY: std::time::Duration = std::time::Duration::from_millis(20);

/// Where a request's answer goes: a oneshot channel, awaited by an async requester or
/// waited for on a plain thread (see [`super::Store`]).
pub type Reply<T> = oneshot::Sender<T>;

/// Answers a request. A requester that gave up waiting (dropped its receiver) needs no
/// answer, so a failed send is not an error.
fn answer<T>(reply: Reply<T>, value: T) {
    let _ = reply.send(value);
}

/// A foreign entry with what the caller already checked: its hash and the shape and
/// signature rules.
pub struct Checked {
    /// The entry as received.
    pub entry: Entry,
    /// The entry's hash, computed by the caller (the writer does not hash it again).
    pub hash: Hash,
    /// The shape and signature check's result; the writer still checks placement and chain.
    pub verdict: Result<(), ValidationError>,
}

/// A fork proof that passed [`ForkProof::check`]. Built only by [`super::Store`] after the
/// check: the forks file holds nothing else, since its open refuses a proof that does not
/// check.
pub struct CheckedProof(pub(super) Box<ForkProof>);

/// What an own append came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnAppend {
    /// Written and durable; the `u64` is the log offset where its record starts (the
    /// offset a tail cursor names, so `/add` can answer the entry's cursor).
    Added(Entry, Hash, u64),
    /// The request's idempotency key was already used: nothing written; the own feed's
    /// entry at `seq` (durable) is the one appended under that key.
    Replayed {
        /// The own feed's position of the entry first appended under the key.
        seq: Seq,
        /// That entry's hash.
        hash: Hash,
    },
}

/// Why a request placed whole (a sync batch, [`super::Store::append_verified_batch`]) was
/// refused: its first entry that cannot be placed. Nothing of the request was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry {index} ({author} seq {seq}) {reason}")]
pub struct Unplaceable {
    /// The entry's position in the request, from 0.
    pub index: usize,
    /// The entry's author.
    pub author: Author,
    /// The entry's seq.
    pub seq: Seq,
    /// Why it cannot be placed.
    pub reason: Misplaced,
}

/// Why an entry of a request placed whole cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Misplaced {
    /// It lies beyond its feed's next position (counting every entry in flight).
    #[error("leaves a gap: the next seq is {next}")]
    Gap {
        /// The seq the feed needs next.
        next: Seq,
    },
    /// It breaks a validation rule: its chain link, or a check its caller failed.
    #[error("is invalid: {0}")]
    Invalid(ValidationError),
}

/// The writer's answer to an own append.
pub type OwnResult = Result<OwnAppend, AppendError>;
/// The writer's answer to a batch of foreign entries: one [`Outcome`] per entry, in order.
pub type ForeignResult = Result<Vec<Outcome>, AppendError>;

/// One request on the writer's channel; each answerable kind carries its own reply end.
pub(crate) enum Request {
    /// Append to the own feed: the writer builds, hashes and signs the entry.
    Own {
        value: i64,
        data: String,
        key: Option<IdempotencyKey>,
        reply: Reply<OwnResult>,
    },
    /// Place already checked foreign entries, answered with one outcome each. `whole`: a
    /// sync batch, placed whole or not at all ([`Unplaceable`]).
    Foreign {
        entries: Vec<Checked>,
        whole: bool,
        reply: Reply<ForeignResult>,
    },
    /// A fork note for `author` (see [`super::format`]): durable before the reply.
    ForkNote {
        author: Author,
        reply: Reply<Result<(), AppendError>>,
    },
    /// A fork proof to record (see the module docs); answered whether it was new.
    ForkProof {
        proof: CheckedProof,
        reply: Reply<Result<bool, AppendError>>,
    },
    /// Other copies of entries the log holds (same entry hash, another signature), each to
    /// become the current copy ([`replace`]); answered with one outcome per copy once the
    /// replacement records are durable.
    Replace {
        copies: Vec<Entry>,
        reply: Reply<ReplaceResult>,
    },
    /// An own-feed fence event, applied by the planner in channel order (see "The own-feed
    /// fence" in the module docs). Unanswered: nothing waits for it.
    Fence(FenceEvent),
    /// Finish everything queued before it, then stop (see the module docs).
    Shutdown,
}

impl Request {
    fn weight(&self) -> usize {
        match self {
            Request::Foreign { entries, .. } => entries.len().max(1),
            Request::Replace { copies, .. } => copies.len().max(1),
            _ => 1,
        }
    }

    /// Answers the request with `err` without doing it.
    fn fail(self, err: AppendError) {
        match self {
            Request::Own { reply, .. } => answer(reply, Err(err)),
            Request::Foreign { reply, .. } => answer(reply, Err(err)),
            Request::ForkNote { reply, .. } => answer(reply, Err(err)),
            Request::ForkProof { reply, .. } => answer(reply, Err(err)),
            Request::Replace { reply, .. } => answer(reply, Err(err)),
            Request::Fence(_) | Request::Shutdown => {}
        }
    }
}

/// What the durable half of the writer ([`syncer`]) works on: both files, their I/O seams,
/// and what it publishes to.
pub(crate) struct Durable {
    pub(crate) file: Arc<LogFile>,
    /// The header's store format version.
    pub(crate) version: u32,
    pub(crate) io: Arc<dyn LogIo>,
    pub(crate) end: u64,
    pub(crate) index: Arc<RwLock<Index>>,
    pub(crate) forks: ForkLog,
    pub(crate) forks_io: Arc<dyn LogIo>,
    pub(crate) forked: Arc<RwLock<Forked>>,
    pub(crate) observer: Option<Arc<dyn CommitObserver>>,
    pub(crate) health: Arc<StoreHealth>,
    pub(crate) idle_marker_delay: Option<std::time::Duration>,
}

/// Everything the writer thread owns, handed over by [`super::Store::open`].
pub(crate) struct Writer {
    pub(crate) durable: Durable,
    pub(crate) identity: Option<Identity>,
    /// Where the planner publishes the fence after each event (read by [`super::Store::fence`]).
    pub(crate) fence: watch::Sender<Fence>,
    pub(crate) max_batch_entries: usize,
    pub(crate) lock: DirLock,
    /// The owner's end of the last message (see the module docs).
    pub(crate) stopped: oneshot::Sender<Result<(), StoreError>>,
}

impl Writer {
    /// The writer thread: runs until a shutdown request (or until every sender is gone),
    /// then releases the lock and tells the owner, last.
    pub(crate) fn run(self, requests: mpsc::Receiver<Request>) {
        let Writer {
            durable,
            identity,
            fence,
            max_batch_entries,
            lock,
            stopped,
        } = self;
        let (io, file, index, health) = (
            durable.io.clone(),
            durable.file.clone(),
            durable.index.clone(),
            durable.health.clone(),
        );
        let epoch = Arc::new(AtomicU64::new(0));
        let syncer = syncer::Syncer::new(durable, epoch.clone());
        // Unbounded, yet bounded in practice: every sealed batch answers requesters that
        // are waiting for it, so the queue never holds more than the appends in flight.
        let (to_syncer, sealed) = mpsc::channel();
        let syncer = std::thread::Builder::new()
            .name("kappalog-store-sync".into())
            .spawn(move || syncer.run(sealed));
        let result = match syncer {
            Ok(syncer) => {
                let planner = planner::Planner::new(io, file, index, identity, epoch, fence);
                // A pool whose workers include the planner thread (see the module docs).
                // Without it (no threads to be had) signing falls back to the global pool.
                match rayon::ThreadPoolBuilder::new()
                    .thread_name(|i| format!("kappalog-sign-{i}"))
                    .build()
                {
                    Ok(pool) => {
                        pool.install(move || planner.plan(requests, to_syncer, max_batch_entries))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "no signing pool; signing on the global pool");
                        planner.plan(requests, to_syncer, max_batch_entries);
                    }
                }
                // The planner dropped `to_syncer`: the syncer finishes what it holds and ends.
                // Waiting for it here (our own child thread) is what makes the closing
                // marker and the file closes happen before the lock is released.
                syncer.join().map_err(|_| StoreError::WriterPanicked)
            }
            Err(e) => {
                // Without a second thread there is nobody to sync: fail every request.
                health.fail(
                    super::health::Part::Log,
                    format!("spawn the sync thread: {e}"),
                    now_ms(),
                );
                let e = Arc::new(e);
                while let Ok(request) = requests.recv() {
                    if matches!(request, Request::Shutdown) {
                        break;
                    }
                    request.fail(AppendError::Io(e.clone()));
                }
                Ok(())
            }
        };
        drop(lock);
        // The last act: the owner may reopen the directory as soon as it hears this.
        let _ = stopped.send(result);
    }
}

/// The error a request gets when nothing could be made durable.
fn io_error(e: &Arc<io::Error>) -> AppendError {
    AppendError::Io(e.clone())
}
