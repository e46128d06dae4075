//! The durable log: the only code that writes the log file.
//!
//! One data directory per node holds `entries.log` (the append-only log of all feeds, format
//! and recovery rule in [`format`]) and `LOCK` (one writer per directory, [`lock`]).
//! An own append may carry an idempotency key: it is written in the entry's record, and a
//! second append under a key the store remembers ([`keys`]) appends nothing and is answered
//! with the first one's entry ([`OwnAppend::Replayed`], rules in [`writer`]).
//!
//! - [`Store`] is the writable handle. All appends go through one writer thread that
//!   group-commits: an append returns only after its record is `fdatasync`ed ([`writer`]).
//! - [`StoreReader`] is a cheap read-only view sharing the writer's in-memory [`index`]; the
//!   index is updated only after a sync, so readers never see unsynced or torn data. A
//!   read-only open ([`StoreReader::open_read_only`]) takes no lock and never modifies the
//!   file.
//! - Own-feed appends are built, hashed and (in parallel) signed by the writer. Foreign
//!   entries are shape- and signature-checked by the caller's thread (in parallel) before
//!   they reach the writer, which only places and chains them; each gets its own
//!   [`Outcome`].
//! - The writer's file operations go through [`io::LogIo`], so a test can make an
//!   `fdatasync` slow or fail.

pub mod format;
pub mod health;
pub mod index;
pub mod io;
pub mod keys;
pub mod lock;
pub mod open;
pub mod reader;
pub mod verify;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;

use rayon::prelude::*;

use crate::entry::{Entry, Seq, MAX_DATA_BYTES};
use crate::hash::Hash;
use crate::idempotency::IdempotencyKey;
use crate::identity::{Author, Identity};
use crate::signature::{self, BatchItem};
use crate::validate::{self, ValidationError};

pub use reader::StoreReader;
pub use validate::FeedHead;
pub use verify::{VerifyIssue, VerifyProblem, VerifyReport};
pub use writer::OwnAppend;
use writer::{Checked, Reply, Request, Writer};

/// Default cap on entries per group commit.
pub const MAX_BATCH_ENTRIES: usize = 4096;

/// How to open a store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Open without the writer lock and without modifying the file.
    pub read_only: bool,
    /// Cap on entries written by one group commit.
    pub max_batch_entries: usize,
    /// The writer's file operations: [`io::SystemIo`] unless a test makes them slow or fail.
    pub io: Arc<dyn io::LogIo>,
    /// How long an idle writer waits before it writes a commit marker covering its last
    /// write ([`writer::IDLE_MARKER_DELAY`]). `None` writes none until the store closes:
    /// only for tests that count the file operations one by one.
    pub idle_marker_delay: Option<std::time::Duration>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            read_only: false,
            max_batch_entries: MAX_BATCH_ENTRIES,
            io: Arc::new(io::SystemIo),
            idle_marker_delay: Some(writer::IDLE_MARKER_DELAY),
        }
    }
}

/// What an open found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    pub entries: u64,
    pub feeds: usize,
    /// Bytes of a torn tail cut off (writable open) or ignored (read-only open).
    pub truncated_bytes: u64,
    /// Where the torn tail started.
    pub truncated_at: Option<u64>,
    /// Authors with a fork note in the log: the node recorded a fork proof of each (the
    /// proofs themselves live in `DATA_DIR/forks`, see [`crate::forks`]).
    pub fork_notes: std::collections::BTreeSet<Author>,
}

/// One feed as listed by [`StoreReader::feeds`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedInfo {
    pub author: Author,
    pub length: Seq,
    pub head: Hash,
    pub first_timestamp: u64,
    pub last_timestamp: u64,
}

/// Told about every durable batch, by the writer thread, in commit order, before the
/// appenders get their replies (views fold here). Keep it quick: the writer waits for it.
///
/// `offsets[i]` is where the record of `entries[i]` starts in the log file (the two slices
/// have one length): the live tail names log positions in its cursors, so it learns them
/// here rather than by reading the file back. When the observer runs, the index already
/// covers the batch ([`StoreReader::committed_end`] is past its last record).
pub trait CommitObserver: Send + Sync {
    fn committed(&self, entries: &[(Entry, Hash)], offsets: &[u64]);
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
    Fork { seq: Seq, held: Hash, offered: Hash },
    /// Invalid (shape, chain or signature): nothing written.
    Rejected(ValidationError),
    /// Entries before it are missing: the feed's next seq is `next`.
    Gap { next: Seq },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store directory {dir} is locked by another writer")]
    Locked { dir: PathBuf },
    #[error("{path} is corrupt at byte offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("{path} is not a kappalog store: {reason}")]
    BadHeader { path: PathBuf, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the store writer thread panicked")]
    WriterPanicked,
}

impl StoreError {
    pub(crate) fn io(context: String, source: std::io::Error) -> StoreError {
        StoreError::Io { context, source }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    #[error("no identity: this store cannot append to an own feed")]
    NoIdentity,
    #[error("the store is closed")]
    Closed,
    #[error("store write failed: {0}")]
    Io(#[source] Arc<std::io::Error>),
    #[error("data is {len} bytes, the limit is {MAX_DATA_BYTES}")]
    DataTooLong { len: usize },
}

/// The writable store. Cheap to clone; all clones share one writer thread.
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    sender: Option<mpsc::Sender<Request>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    reader: StoreReader,
    has_identity: bool,
    health: Arc<health::StoreHealth>,
}

impl Drop for StoreInner {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish what is queued and exit; joining
        // releases the directory lock before the drop returns.
        self.sender.take();
        let thread = self
            .thread
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// A store opened either way by [`open_with`].
pub enum OpenedStore {
    Writable(Store),
    ReadOnly(StoreReader),
}

impl OpenedStore {
    pub fn reader(&self) -> StoreReader {
        match self {
            OpenedStore::Writable(store) => store.reader(),
            OpenedStore::ReadOnly(reader) => reader.clone(),
        }
    }
}

/// Opens writable or read-only according to `options`.
pub fn open_with(
    dir: &Path,
    options: &StoreOptions,
    identity: Option<Identity>,
    observer: Option<Arc<dyn CommitObserver>>,
) -> Result<(OpenedStore, OpenReport), StoreError> {
    if options.read_only {
        let (reader, report) = StoreReader::open_read_only(dir)?;
        Ok((OpenedStore::ReadOnly(reader), report))
    } else {
        let (store, report) = Store::open_writable(dir, options, identity, observer)?;
        Ok((OpenedStore::Writable(store), report))
    }
}

impl Store {
    /// Creates `dir` if missing, takes the writer lock, recovers the log and starts the
    /// writer thread.
    pub fn open(
        dir: &Path,
        identity: Option<Identity>,
        observer: Option<Arc<dyn CommitObserver>>,
    ) -> Result<(Store, OpenReport), StoreError> {
        Store::open_writable(dir, &StoreOptions::default(), identity, observer)
    }

    /// As [`Store::open`] with `options` (`read_only` is ignored: this opens the writer).
    pub fn open_with_options(
        dir: &Path,
        options: &StoreOptions,
        identity: Option<Identity>,
        observer: Option<Arc<dyn CommitObserver>>,
    ) -> Result<(Store, OpenReport), StoreError> {
        Store::open_writable(dir, options, identity, observer)
    }

    fn open_writable(
        dir: &Path,
        options: &StoreOptions,
        identity: Option<Identity>,
        observer: Option<Arc<dyn CommitObserver>>,
    ) -> Result<(Store, OpenReport), StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::io(format!("create directory {}", dir.display()), e))?;
        let lock = lock::DirLock::acquire(dir)?;
        let opened = open::open_log(dir, true, options.io.as_ref())?;
        let path = dir.join(open::LOG_FILE);
        let reader_file = std::fs::File::open(&path)
            .map_err(|e| StoreError::io(format!("open {}", path.display()), e))?;
        let end = opened.index.end;
        let index = Arc::new(RwLock::new(opened.index));
        let reader = StoreReader::new(path, reader_file, index.clone());
        let has_identity = identity.is_some();
        let health = Arc::new(health::StoreHealth::default());
        let writer = Writer {
            file: opened.file,
            version: opened.version,
            io: options.io.clone(),
            end,
            index,
            identity,
            observer,
            max_batch_entries: options.max_batch_entries.max(1),
            health: health.clone(),
            idle_marker_delay: options.idle_marker_delay,
            lock,
        };
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("kappalog-store-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| StoreError::io("spawn the store writer thread".into(), e))?;
        let store = Store {
            inner: Arc::new(StoreInner {
                sender: Some(sender),
                thread: Mutex::new(Some(thread)),
                reader,
                has_identity,
                health,
            }),
        };
        Ok((store, opened.report))
    }

    pub fn reader(&self) -> StoreReader {
        self.inner.reader.clone()
    }

    /// Makes a fork note for `author` durable in the log (blocking until it is): the record
    /// that a fork proof of `author` was recorded, so the author stays forked even if the
    /// proof itself (in `DATA_DIR/forks`) is later lost ([`crate::forks`]).
    pub fn append_fork_note(&self, author: Author) -> Result<(), AppendError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Request::ForkNote {
            author,
            reply: Reply::Blocking(tx),
        })?;
        rx.recv().map_err(|_| AppendError::Closed)?
    }

    /// Whether the writer can write right now ([`health`]).
    pub fn health(&self) -> &health::StoreHealth {
        &self.inner.health
    }

    fn send(&self, request: Request) -> Result<(), AppendError> {
        let sender = self.inner.sender.as_ref().ok_or(AppendError::Closed)?;
        sender.send(request).map_err(|_| AppendError::Closed)
    }

    fn check_own(&self, data: &str) -> Result<(), AppendError> {
        if !self.inner.has_identity {
            return Err(AppendError::NoIdentity);
        }
        if data.len() > MAX_DATA_BYTES {
            return Err(AppendError::DataTooLong { len: data.len() });
        }
        Ok(())
    }

    /// Appends to the own feed; returns once the entry is durable.
    pub fn append_own(&self, value: i64, data: String) -> Result<(Entry, Hash), AppendError> {
        self.append_own_keyed(value, data, None).and_then(added)
    }

    /// Like [`Store::append_own`], awaiting the writer's reply without blocking the runtime.
    pub async fn append_own_async(
        &self,
        value: i64,
        data: String,
    ) -> Result<(Entry, Hash), AppendError> {
        self.append_own_keyed_async(value, data, None)
            .await
            .and_then(added)
    }

    /// Appends to the own feed under an idempotency key, if given: returns once the entry is
    /// durable, or, when the key was used before and is remembered, appends nothing and
    /// returns [`OwnAppend::Replayed`] with the entry appended under it.
    pub fn append_own_keyed(
        &self,
        value: i64,
        data: String,
        key: Option<IdempotencyKey>,
    ) -> Result<OwnAppend, AppendError> {
        self.check_own(&data)?;
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Request::Own {
            value,
            data,
            key,
            reply: Reply::Blocking(tx),
        })?;
        rx.recv().map_err(|_| AppendError::Closed)?
    }

    /// Like [`Store::append_own_keyed`], without blocking the runtime.
    pub async fn append_own_keyed_async(
        &self,
        value: i64,
        data: String,
        key: Option<IdempotencyKey>,
    ) -> Result<OwnAppend, AppendError> {
        self.check_own(&data)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Request::Own {
            value,
            data,
            key,
            reply: Reply::Async(tx),
        })?;
        rx.await.map_err(|_| AppendError::Closed)?
    }

    /// Offers foreign entries (replicated or imported). Shape and signatures are checked
    /// here, in parallel, before the writer sees them; returns one outcome per entry, in
    /// order, once the added ones are durable.
    pub fn append_entries(&self, entries: Vec<Entry>) -> Result<Vec<Outcome>, AppendError> {
        let checked = precheck(entries);
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Request::Foreign {
            entries: checked,
            reply: Reply::Blocking(tx),
        })?;
        rx.recv().map_err(|_| AppendError::Closed)?
    }

    /// Like [`Store::append_entries`]; the signature checks run on the rayon pool, so the
    /// async runtime's workers are never blocked.
    pub async fn append_entries_async(
        &self,
        entries: Vec<Entry>,
    ) -> Result<Vec<Outcome>, AppendError> {
        let (checked_tx, checked_rx) = tokio::sync::oneshot::channel();
        rayon::spawn(move || {
            let _ = checked_tx.send(precheck(entries));
        });
        let checked = checked_rx.await.map_err(|_| AppendError::Closed)?;
        self.commit_checked(checked).await
    }

    /// As [`Store::append_entries_async`] for entries whose shape and signatures the caller
    /// has already checked (a sync batch is checked whole before it is offered): skips the
    /// second verification, which would otherwise double the cost of replication.
    pub async fn append_verified_async(
        &self,
        entries: VerifiedEntries,
    ) -> Result<Vec<Outcome>, AppendError> {
        let checked = entries
            .0
            .into_iter()
            .map(|(entry, hash)| Checked {
                entry,
                hash,
                verdict: Ok(()),
            })
            .collect();
        self.commit_checked(checked).await
    }

    /// Hands checked foreign entries to the writer and awaits their outcomes.
    async fn commit_checked(&self, checked: Vec<Checked>) -> Result<Vec<Outcome>, AppendError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Request::Foreign {
            entries: checked,
            reply: Reply::Async(tx),
        })?;
        rx.await.map_err(|_| AppendError::Closed)?
    }

    /// Stops the writer after it has committed every request queued before this call, and
    /// releases the directory lock. Other clones get [`AppendError::Closed`] afterwards.
    pub fn sync_and_close(self) -> Result<(), StoreError> {
        // A send error means the writer is already gone; joining below reports how.
        let _ = self.send(Request::Shutdown);
        let thread = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match thread {
            Some(thread) => thread.join().map_err(|_| StoreError::WriterPanicked),
            None => Ok(()),
        }
    }
}

/// The entry of an unkeyed own append. The writer replays only keyed requests, so an
/// unkeyed one is always `Added`; the other arm fails closed rather than panicking.
fn added(append: OwnAppend) -> Result<(Entry, Hash), AppendError> {
    match append {
        OwnAppend::Added(entry, hash) => Ok((entry, hash)),
        OwnAppend::Replayed { .. } => Err(AppendError::Io(Arc::new(std::io::Error::other(
            "the writer replayed an append that carried no key",
        )))),
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
