//! The durable log: the only code that writes the log file and the fork proofs.
//!
//! One data directory per node holds `entries.log` (the append-only log of all feeds: format
//! and recovery rule specified in docs/STORE.md, implemented in [`format`](mod@format)),
//! `forks` (the fork proofs, [`fork_log`]) and `LOCK` (one writer per directory,
//! [`lock`]). An own append may carry an idempotency key: it is written in the entry's
//! record, and a second append under a key the store remembers ([`keys`]) appends nothing
//! and is answered with the first one's entry ([`OwnAppend::Replayed`], rules in
//! [`writer`]).
//!
//! # One owner, one lifecycle
//!
//! [`Store::open`] takes the directory lock, recovers both files and starts the writer (a
//! thread of its own, [`writer`]). It returns two values:
//!
//! - [`Store`], a cheap, cloneable handle that only *sends requests*: appends, fork notes,
//!   fork proofs. Each request carries its own reply channel, and the writer answers it with
//!   owned values once what it wrote is durable (or with the error that stopped it). Every
//!   request method returns the caller's end as a [`Pending`], awaited by async callers and
//!   [`Pending::wait`]ed for on plain threads: one method per operation.
//! - [`StoreOwner`], the one value that stops the writer: [`StoreOwner::shutdown`] sends a
//!   shutdown request and awaits the writer's last act, a message saying it has answered
//!   every request queued before the shutdown, written its closing commit marker, synced,
//!   and released the directory lock. So once `shutdown().await` returns the directory can
//!   be opened again at once. Requests sent after the shutdown are answered
//!   [`AppendError::Closed`].
//!
//! Nothing waits for the writer in `Drop`: dropping the owner without a shutdown only sends
//! the shutdown request (the writer still finishes what was queued and releases the lock,
//! shortly after), and dropping handles never stops anything. So the last handle can be
//! dropped anywhere, on an async worker included, without blocking it. The writer thread is
//! never joined; the owner learns that it is done from its message, and a writer that died
//! without sending it (a panic) is reported as [`StoreError::WriterPanicked`].
//!
//! # Reading
//!
//! - [`StoreReader`] is a cheap read-only view sharing the writer's in-memory [`index`]; the
//!   index is updated only after a sync, so readers never see unsynced or torn data. A
//!   read-only open ([`StoreReader::open_read_only`]) takes no lock and never modifies the
//!   file.
//! - [`Store::forked`] is who is known forked ([`fork_log::Forked`]): the writer updates
//!   it after the forks file's `fsync`, never holding its lock across one, so readers never
//!   wait on the disk.
//!
//! # Writing
//!
//! - Own-feed appends are built, hashed and (in parallel) signed by the writer. Foreign
//!   entries are shape- and signature-checked by the caller's thread (in parallel) before
//!   they reach the writer, which only places and chains them; each gets its own
//!   [`Outcome`], or, for a sync batch placed whole ([`Store::append_verified_batch`]), the
//!   batch is refused ([`AppendError::Unplaceable`]) if any entry is a gap or breaks its
//!   chain.
//! - A fork proof is checked by the caller, then written by the writer in the same
//!   durability path as entries: the fork note in the log first, then the proof in `forks`
//!   ([`Store::record_fork_proof`]).
//! - Another valid signature of an entry the log holds (which only its author can make) is
//!   kept as a replacement record ([`Store::replace_copies`], docs/STORE.md "Replacement
//!   records"): from then on every read returns that copy.
//! - Own appends pass the own-feed fence ([`crate::fence`]) where the writer orders them:
//!   the writer owns the fence, fed by [`Store::fence_event`] on the same channel as the
//!   appends, and answers a refused one [`AppendError::Fence`] (a replay of an idempotency
//!   key signs nothing and is answered first, fence closed or not).
//! - Every file operation on the log and the forks file (the writer's, the open's and the
//!   readers') goes through an [`io::LogIo`] (one for the log, one for the forks file), so
//!   a test can make any call slow or fail, or run the store on files in memory that can
//!   lose power ([`io::memory::MemoryIo`]).

pub mod fork_log;
pub mod format;
pub mod health;
pub mod index;
pub mod io;
pub mod key_table;
pub mod keys;
pub mod lock;
pub mod open;
pub mod pending;
pub mod reader;
pub mod verify;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};

use rayon::prelude::*;
use tokio::sync::{oneshot, watch};

use crate::entry::{Entry, Seq, MAX_DATA_BYTES};
use crate::fence::{Fence, FenceError, FenceEvent};
use crate::fork::{ForkProof, ForkProofError};
use crate::hash::Hash;
use crate::idempotency::IdempotencyKey;
use crate::identity::{Author, Identity};
use crate::signature::{self, BatchItem};
use crate::validate::{self, ValidationError};
use fork_log::{ForkLog, ForkLogError, ForkLogReport, Forked};

use pending::wait_blocking;
pub use pending::Pending;
pub use reader::{EncodedRecord, StoreReader};
pub use validate::FeedHead;
pub use verify::{VerifyIssue, VerifyProblem, VerifyReport};
use writer::{Checked, Request, Writer};
pub use writer::{Misplaced, OwnAppend, ReplaceOutcome, ReplaceRefusal, Unplaceable};

/// Default cap on entries per group commit.
pub const MAX_BATCH_ENTRIES: usize = 4096;

/// How to open a store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Cap on entries written by one group commit.
    pub max_batch_entries: usize,
    /// Every operation on the log file (the open's, the writer's and the readers'):
    /// [`io::SystemIo`] unless a test makes them slow or fail, or keeps the files in memory.
    pub io: Arc<dyn io::LogIo>,
    /// The same for the forks file ([`fork_log`]).
    pub forks_io: Arc<dyn io::LogIo>,
    /// How long an idle writer waits before it writes a commit marker covering its last
    /// write ([`writer::IDLE_MARKER_DELAY`]). `None` writes none until the store closes:
    /// only for tests that count the file operations one by one.
    pub idle_marker_delay: Option<std::time::Duration>,
    /// Run the writer inline: every request is done on the thread that sends it, before the
    /// send returns, instead of on the writer's threads (one batch per request, no idle
    /// marker until the store closes). Only for a deterministic simulation
    /// ([`crate::determinism`]), where no thread may decide when work happens: a node's
    /// appends would wait on each other's `fdatasync` one by one.
    pub inline_writer: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_batch_entries: MAX_BATCH_ENTRIES,
            io: Arc::new(io::SystemIo),
            forks_io: Arc::new(io::SystemIo),
            idle_marker_delay: Some(writer::IDLE_MARKER_DELAY),
            inline_writer: false,
        }
    }
}

/// What an open found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Entries in the log after recovery (a torn tail not counted).
    pub entries: u64,
    /// Distinct authors with at least one entry.
    pub feeds: usize,
    /// Bytes of a torn tail cut off (writable open) or ignored (read-only open).
    pub truncated_bytes: u64,
    /// Where the torn tail started.
    pub truncated_at: Option<u64>,
    /// Authors with a fork note in the log: the node recorded a fork proof of each (the
    /// proofs themselves live in `DATA_DIR/forks`, see [`fork_log`]).
    pub fork_notes: std::collections::BTreeSet<Author>,
    /// What opening `DATA_DIR/forks` found (a writable open only).
    pub forks: ForkLogReport,
}

/// One feed as listed by [`StoreReader::feeds`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedInfo {
    /// Whose feed.
    pub author: Author,
    /// Entries the store holds of it (seqs `1..=length`, no gaps).
    pub length: Seq,
    /// Hash of the last entry held.
    pub head: Hash,
    /// The first entry's timestamp, as its author claims it (milliseconds since the Unix epoch).
    pub first_timestamp: u64,
    /// The last entry's timestamp, likewise.
    pub last_timestamp: u64,
}

/// Told about every durable batch, by the writer thread, in commit order, before the
/// appenders get their replies (views fold here). Keep it quick: the writer waits for it.
///
/// `offsets[i]` is where the record of `entries[i]` starts in the log file (the two have one
/// length): the live tail names log positions in its cursors, so it learns them
/// here rather than by reading the file back. When the observer runs, the index already
/// covers the batch ([`StoreReader::committed_end`] is past its last record).
pub trait CommitObserver: Send + Sync {
    /// Called once per durable batch, on the writer thread (see the trait docs).
    fn committed(&self, entries: Vec<(Entry, Hash)>, offsets: Vec<u64>);
}

/// What happened to one offered foreign entry. Expected outcomes, not errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Written and durable.
    Added(Hash),
    /// The store already holds this very entry: nothing written.
    Duplicate(Hash),
    /// The author signed a different entry at a position the store holds: detected and
    /// reported, not stored.
    Fork {
        /// The contested position.
        seq: Seq,
        /// Hash of the entry the store holds there.
        held: Hash,
        /// Hash of the offered entry.
        offered: Hash,
    },
    /// Invalid (shape, chain or signature): nothing written.
    Rejected(ValidationError),
    /// Entries before it are missing: the feed's next seq is `next`.
    Gap {
        /// The feed's next seq in the store (its length).
        next: Seq,
    },
}

/// Why a store could not be opened, or did not shut down cleanly.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer holds the directory's `LOCK`.
    #[error("store directory {dir} is locked by another writer")]
    Locked {
        /// The data directory.
        dir: PathBuf,
    },
    /// Damage that is not a torn tail (docs/STORE.md): the open refuses to cut it off.
    #[error("{path} is corrupt at byte offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the bad record from the start of the file.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The file's header is missing, of another format or of an unknown version.
    #[error("{path} is not a kappalog store: {reason}")]
    BadHeader {
        /// The file.
        path: PathBuf,
        /// What is wrong with the header.
        reason: String,
    },
    /// An I/O call failed.
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing, with the path.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Opening the forks file failed.
    #[error(transparent)]
    Forks(#[from] ForkLogError),
    /// The writer thread ended without its last message (see the module docs).
    #[error("the store writer stopped without confirming its shutdown (it panicked)")]
    WriterPanicked,
}

impl StoreError {
    pub(crate) fn io(context: String, source: std::io::Error) -> StoreError {
        StoreError::Io { context, source }
    }
}

/// Why a request to the writer was not done. Expected outcomes of a foreign entry are
/// [`Outcome`]s instead.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    /// The store was opened without an identity, so it has no own feed.
    #[error("no identity: this store cannot append to an own feed")]
    NoIdentity,
    /// The writer has shut down (or is shutting down): nothing was done.
    #[error("the store is closed")]
    Closed,
    /// Reading or writing the log failed: the disk's fault, not the request's (the store is
    /// degraded until a write succeeds, see [`health`]).
    #[error("store write failed: {0}")]
    Io(#[source] Arc<std::io::Error>),
    /// A request placed whole (a sync batch) has an entry that cannot be placed: nothing of
    /// it was written ([`Store::append_verified_batch`]).
    #[error("{0}")]
    Unplaceable(Unplaceable),
    /// A rule the store keeps itself was found broken: a bug in the store, not a fault of
    /// the disk or of the request, so it is never reported as either.
    #[error("store invariant broken: {0}")]
    Internal(&'static str),
    /// An own append's data is over [`MAX_DATA_BYTES`]: refused before the writer.
    #[error("data is {len} bytes, the limit is {MAX_DATA_BYTES}")]
    DataTooLong {
        /// The data's length in bytes (UTF-8).
        len: usize,
    },
    /// The offered fork proof failed [`ForkProof::check`]: nothing recorded.
    #[error("fork proof does not check: {0}")]
    InvalidProof(#[source] ForkProofError),
    /// Writing the forks file failed.
    #[error("recording the fork proof failed: {0}")]
    ForkLog(#[source] Arc<ForkLogError>),
    /// The own-feed fence refused an own append where the writer orders it
    /// ([`Store::fence_event`]).
    #[error(transparent)]
    Fence(FenceError),
}

/// The writable store's request handle. Cheap to clone; all clones send to one writer.
/// Holding one does not keep the writer running: its [`StoreOwner`] decides that.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

struct Shared {
    requests: Submit,
    /// The fence as the writer last published it (see [`Store::fence`]).
    fence: watch::Receiver<Fence>,
    reader: StoreReader,
    has_identity: bool,
    health: Arc<health::StoreHealth>,
    forked: Arc<RwLock<Forked>>,
}

/// The one owner of a writable store's writer: stops it with [`StoreOwner::shutdown`].
/// Dropping it instead sends the same shutdown request without waiting for it.
#[must_use = "dropping the owner shuts the store down"]
pub struct StoreOwner {
    requests: Submit,
    /// The writer's last act sends on this (see the module docs).
    stopped: Option<oneshot::Receiver<Result<(), StoreError>>>,
}

impl StoreOwner {
    /// Stops the writer once it has answered every request queued before this call, and
    /// returns when it has synced, closed both files and released the directory lock.
    pub async fn shutdown(mut self) -> Result<(), StoreError> {
        let stopped = self.request_shutdown();
        match stopped {
            Some(stopped) => stopped.await.unwrap_or(Err(StoreError::WriterPanicked)),
            None => Ok(()),
        }
    }

    /// [`StoreOwner::shutdown`] for a caller with no async runtime (the one-shot CLI
    /// commands, tests on plain threads). Blocks the calling thread until the writer is done:
    /// never call it on an async worker.
    pub fn shutdown_blocking(mut self) -> Result<(), StoreError> {
        match self.request_shutdown() {
            Some(stopped) => wait_blocking(stopped).unwrap_or(Err(StoreError::WriterPanicked)),
            None => Ok(()),
        }
    }

    /// Sends the shutdown request (once) and hands back the receiver of the writer's last
    /// message.
    fn request_shutdown(&mut self) -> Option<oneshot::Receiver<Result<(), StoreError>>> {
        let stopped = self.stopped.take()?;
        // A send error means the writer is gone already; its last message (or the closed
        // channel, if it panicked) tells how.
        self.requests.send(Request::Shutdown);
        Some(stopped)
    }
}

impl Drop for StoreOwner {
    fn drop(&mut self) {
        // Never waits: the writer finishes what is queued and releases the lock on its own.
        drop(self.request_shutdown());
    }
}

impl Store {
    /// Creates `dir` if missing, takes the writer lock, recovers the log and the forks file,
    /// and starts the writer. Returns the request handle, the writer's owner and what the
    /// open found.
    pub fn open(
        dir: &Path,
        identity: Option<Identity>,
        observer: Option<Arc<dyn CommitObserver>>,
    ) -> Result<(Store, StoreOwner, OpenReport), StoreError> {
        Store::open_with_options(dir, &StoreOptions::default(), identity, observer)
    }

    /// As [`Store::open`] with `options`.
    pub fn open_with_options(
        dir: &Path,
        options: &StoreOptions,
        identity: Option<Identity>,
        observer: Option<Arc<dyn CommitObserver>>,
    ) -> Result<(Store, StoreOwner, OpenReport), StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::io(format!("create directory {}", dir.display()), e))?;
        let lock = lock::DirLock::acquire(dir)?;
        let opened = open::open_log(dir, true, options.io.as_ref())?;
        let (forks, proofs, forks_report) = ForkLog::open(dir, options.forks_io.as_ref())?;
        let mut report = opened.report;
        report.forks = forks_report;
        let forked = Arc::new(RwLock::new(Forked::new(proofs, report.fork_notes.clone())));
        let path = dir.join(open::LOG_FILE);
        let reader_file = options
            .io
            .open(&path, io::OpenMode::Read)
            .map_err(|e| StoreError::io(format!("open {}", path.display()), e))?;
        let end = opened.index.end;
        let index = Arc::new(RwLock::new(opened.index));
        let reader = StoreReader::new(path, options.io.clone(), reader_file, index.clone());
        let has_identity = identity.is_some();
        let health = Arc::new(health::StoreHealth::default());
        let (stopped_tx, stopped) = oneshot::channel();
        // A recorded fork of our own author closes the fence before any request is taken,
        // and before `open` returns, so the published copy says so from the start too.
        let mut initial = Fence::default();
        if let Some(author) = identity.as_ref().map(Identity::author) {
            if forked
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&author)
            {
                initial.apply(FenceEvent::Diverged {
                    reason: format!("a fork proof of our own author {author} is recorded"),
                });
            }
        }
        let (fence_tx, fence) = watch::channel(initial);
        let writer = Writer {
            durable: writer::Durable {
                file: Arc::new(opened.file),
                version: opened.version,
                io: options.io.clone(),
                end,
                index,
                forks,
                forks_io: options.forks_io.clone(),
                forked: forked.clone(),
                observer,
                health: health.clone(),
                idle_marker_delay: options.idle_marker_delay,
            },
            identity,
            fence: fence_tx,
            max_batch_entries: options.max_batch_entries.max(1),
            lock,
            stopped: stopped_tx,
        };
        let requests = if options.inline_writer {
            Submit::Inline(Arc::new(Mutex::new(writer::Inline::new(writer))))
        } else {
            let (requests, receiver) = mpsc::channel();
            // Detached on purpose: the owner learns the writer is done from its last
            // message, so nobody ever joins it (see the module docs).
            std::thread::Builder::new()
                .name("kappalog-store-writer".into())
                .spawn(move || writer.run(receiver))
                .map_err(|e| StoreError::io("spawn the store writer thread".into(), e))?;
            Submit::Thread(requests)
        };
        let store = Store {
            shared: Arc::new(Shared {
                requests: requests.clone(),
                fence,
                reader,
                has_identity,
                health,
                forked,
            }),
        };
        let owner = StoreOwner {
            requests,
            stopped: Some(stopped),
        };
        Ok((store, owner, report))
    }

    /// A read-only view sharing this store's index (see "Reading" in the module docs).
    pub fn reader(&self) -> StoreReader {
        self.shared.reader.clone()
    }

    /// Who is known forked (proofs held, authors noted), as of the last durable write. An
    /// in-memory read: the writer holds this lock only to insert, never across an `fsync`.
    pub fn forked(&self) -> RwLockReadGuard<'_, Forked> {
        // Changed in single inserts, so a writer that panicked cannot have left it torn.
        self.shared
            .forked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes a fork note for `author` durable in the log: the record that a fork proof of
    /// `author` was recorded, so the author stays forked even if the proof itself (in
    /// `DATA_DIR/forks`) is later lost ([`fork_log`]).
    pub fn append_fork_note(&self, author: Author) -> Pending<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::ForkNote { author, reply });
        Pending::new(answer)
    }

    /// Checks `proof` and records it durably, unless its author has a proof already: a fork
    /// note for the author in the log (if it has none), then the proof in `DATA_DIR/forks`,
    /// each synced, in the writer's durability path. Answers whether the proof was new.
    /// After a failure to write the forks file (answered with [`AppendError::ForkLog`]) the
    /// note may be durable: the author is then forked without a proof ([`Forked::unproven`])
    /// while the writer keeps the proof and retries it, with the next proofs and every
    /// second when idle, until it is recorded; the store is degraded meanwhile
    /// ([`health`]).
    pub fn record_fork_proof(&self, proof: ForkProof) -> Pending<bool> {
        // Checked before it reaches the writer: a proof in the forks file that does not check
        // would make the next open refuse the file. Peers send proofs; this is where a bad
        // one stops.
        if let Err(e) = proof.check() {
            return Pending::ready(Err(AppendError::InvalidProof(e)));
        }
        if self.forked().proofs().contains(&proof.author()) {
            return Pending::ready(Ok(false));
        }
        let (reply, answer) = oneshot::channel();
        self.send(Request::ForkProof {
            proof: writer::CheckedProof(Box::new(proof)),
            reply,
        });
        Pending::new(answer)
    }

    /// Makes each of `copies` the current copy of the entry the store holds at its author
    /// and seq: another signature of the same entry hash, which only the author can have
    /// made (two signatures of one entry hash; the author's checkpoint decides which the
    /// node keeps, docs/TLOG.md). Each copy's shape and signature are checked by the writer
    /// itself, and each is compared with the durable log: one [`ReplaceOutcome`] per copy, in
    /// order, answered once the replacement records are durable (one group commit with
    /// whatever else is queued, `fdatasync`ed before any reader sees the new copies). From
    /// then on every read returns the new copy; the log keeps the old one where it was
    /// (docs/STORE.md, "Replacement records"). A failed write is answered with the error and
    /// degrades the store, as for any write.
    pub fn replace_copies(&self, copies: Vec<Entry>) -> Pending<Vec<ReplaceOutcome>> {
        if copies.is_empty() {
            return Pending::ready(Ok(Vec::new()));
        }
        let (reply, answer) = oneshot::channel();
        self.send(Request::Replace { copies, reply });
        Pending::new(answer)
    }

    /// Whether the writer can write right now ([`health`]).
    pub fn health(&self) -> &health::StoreHealth {
        &self.shared.health
    }

    /// Tells the own-feed fence of `event` ([`crate::fence`]). The writer owns the fence and
    /// applies events in the order of its request channel, the order own appends are
    /// checked in: an own append requested after this call returns sees the event. Not
    /// waited for, so a caller on an async worker or holding a lock may call it. A closed
    /// store drops it: it appends nothing any more either.
    pub fn fence_event(&self, event: FenceEvent) {
        self.send(Request::Fence(event));
    }

    /// The own-feed fence as the writer last published it: what `/summary` reports. It may
    /// lag an event just sent by the writer's next turn; appends are checked by the writer
    /// itself, never against this copy.
    pub fn fence(&self) -> Fence {
        self.shared.fence.borrow().clone()
    }

    /// Hands `request` to the writer. A writer that is gone drops the request, and with it
    /// its reply sender: the caller's [`Pending`] is answered [`AppendError::Closed`].
    fn send(&self, request: Request) {
        self.shared.requests.send(request);
    }

    fn check_own(&self, data: &str) -> Result<(), AppendError> {
        if !self.shared.has_identity {
            return Err(AppendError::NoIdentity);
        }
        if data.len() > MAX_DATA_BYTES {
            return Err(AppendError::DataTooLong { len: data.len() });
        }
        Ok(())
    }

    /// Appends to the own feed; answered once the entry is durable.
    pub fn append_own(&self, value: i64, data: String) -> Pending<(Entry, Hash), OwnAppend> {
        let (reply, answer) = oneshot::channel();
        match self.check_own(&data) {
            Ok(()) => self.send(Request::Own {
                value,
                data,
                key: None,
                reply,
            }),
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
        Pending::mapped(answer, added)
    }

    /// Appends to the own feed under an idempotency key, if given: answered once the entry
    /// is durable, or, when the key was used before and is remembered, appends nothing and
    /// answers [`OwnAppend::Replayed`] with the entry appended under it.
    pub fn append_own_keyed(
        &self,
        value: i64,
        data: String,
        key: Option<IdempotencyKey>,
    ) -> Pending<OwnAppend> {
        if let Err(e) = self.check_own(&data) {
            return Pending::ready(Err(e));
        }
        let (reply, answer) = oneshot::channel();
        self.send(Request::Own {
            value,
            data,
            key,
            reply,
        });
        Pending::new(answer)
    }

    /// Offers foreign entries (replicated or imported). Shape and signatures are checked
    /// before the writer sees them, in parallel on the rayon pool (so an async caller's
    /// worker is never blocked by them), and the checked entries are sent from there; the
    /// answer is one outcome per entry, in order, once the added ones are durable.
    pub fn append_entries(&self, entries: Vec<Entry>) -> Pending<Vec<Outcome>> {
        let (reply, answer) = oneshot::channel();
        let store = self.clone();
        let offer = move || {
            store.send(Request::Foreign {
                entries: precheck(entries),
                whole: false,
                reply,
            });
        };
        // Checked off the caller's thread, except when the writer runs inline: then
        // everything happens on the caller's thread, in order (see [`StoreOptions`]).
        match &self.shared.requests {
            Submit::Thread(_) => rayon::spawn(offer),
            Submit::Inline(_) => offer(),
        }
        Pending::new(answer)
    }

    /// Offers a sync batch whose shape and signatures the caller has already checked
    /// (skipping the second verification, which would otherwise double the cost of
    /// replication), to be placed *whole*: the writer places it against its own view of every
    /// feed (the index plus every entry in flight, whoever offered it), and if any entry
    /// would leave a gap or break its chain link it writes nothing of the batch and answers
    /// at once with [`AppendError::Unplaceable`], naming the first such entry. Otherwise one
    /// outcome per entry, in order, once the added ones are durable (duplicates and forks
    /// are outcomes, not refusals).
    pub fn append_verified_batch(&self, entries: VerifiedEntries) -> Pending<Vec<Outcome>> {
        let checked = entries
            .0
            .into_iter()
            .map(|(entry, hash)| Checked {
                entry,
                hash,
                verdict: Ok(()),
            })
            .collect();
        let (reply, answer) = oneshot::channel();
        self.send(Request::Foreign {
            entries: checked,
            whole: true,
            reply,
        });
        Pending::new(answer)
    }
}

/// Where a store's requests go: the writer's channel, or the writer itself when it runs
/// inline ([`StoreOptions::inline_writer`]).
#[derive(Clone)]
enum Submit {
    Thread(mpsc::Sender<Request>),
    Inline(Arc<Mutex<writer::Inline>>),
}

impl Submit {
    /// Hands `request` over. A writer that is gone drops it, and with it its reply sender.
    fn send(&self, request: Request) {
        match self {
            Submit::Thread(requests) => {
                let _ = requests.send(request);
            }
            Submit::Inline(writer) => crate::poison::lock(writer).handle(request),
        }
    }
}

/// The entry of an unkeyed own append. The writer replays only keyed requests, so an
/// unkeyed one is always `Added`; the other arm fails closed rather than panicking.
fn added(append: OwnAppend) -> Result<(Entry, Hash), AppendError> {
    match append {
        OwnAppend::Added(entry, hash, _) => Ok((entry, hash)),
        OwnAppend::Replayed { .. } => Err(AppendError::Internal(
            "the writer replayed an append that carried no key",
        )),
    }
}

/// Entries with their hashes whose shape and signatures passed the acceptance rule. Only
/// code in this crate that ran those checks builds one ([`VerifiedEntries::vouch`]), so
/// the store can skip verifying them again.
pub struct VerifiedEntries(Vec<(Entry, Hash)>);

impl VerifiedEntries {
    /// The caller vouches that every entry passed `validate::check_shape` and
    /// `signature::verify` (or `verify_many`) against the given hash.
    pub(crate) fn vouch(entries: Vec<(Entry, Hash)>) -> VerifiedEntries {
        VerifiedEntries(entries)
    }
}

/// The checks that need no feed state: shape, hash and signature (batched, parallel).
fn precheck(entries: Vec<Entry>) -> Vec<Checked> {
    let hashes: Vec<Hash> = entries.par_iter().map(Entry::hash).collect();
    let shapes: Vec<Result<(), ValidationError>> =
        entries.iter().map(validate::check_shape).collect();
    let items: Vec<BatchItem<'_>> = entries
        .iter()
        .zip(&hashes)
        .zip(&shapes)
        .filter(|(_, shape)| shape.is_ok())
        .map(|((entry, hash), _)| BatchItem {
            author: &entry.author,
            hash,
            signature: &entry.signature,
        })
        .collect();
    let mut verdicts = signature::verify_many(&items).into_iter();
    let signature_verdicts: Vec<Result<(), ValidationError>> = shapes
        .into_iter()
        .map(|shape| {
            shape?;
            // verify_many returns one verdict per item and the items are exactly the Ok
            // shapes, so `next` always yields; failing closed keeps that assumption safe.
            verdicts
                .next()
                .unwrap_or(Err(signature::SignatureError::Mismatch))
                .map_err(ValidationError::from)
        })
        .collect();
    entries
        .into_iter()
        .zip(hashes)
        .zip(signature_verdicts)
        .map(|((entry, hash), verdict)| Checked {
            entry,
            hash,
            verdict,
        })
        .collect()
}
