//! The single writer thread and its group commit.
//!
//! Every append is a [`Request`] on one channel. The writer takes the first request, drains
//! whatever else is queued (up to a batch cap), and then, for the whole batch at once:
//!
//! 1. plans each entry in arrival order against the feed heads (the index plus the entries
//!    planned earlier in the batch): own entries get seq, prev and a timestamp that never
//!    goes below the feed's last one, and their hash; foreign entries get their placement
//!    (next, duplicate, fork, gap) and chain check — their signatures were verified by the
//!    caller before the request was sent, so the writer never waits on verification;
//! 2. signs the planned own entries on all cores, in chunks signed as batches: signing
//!    dominates the cost;
//! 3. writes all records with one positional write and one `fdatasync` (the first keyed
//!    record ever written is preceded by the header's upgrade to format version 2, synced on
//!    its own, see [`super::format`]);
//! 4. updates the shared index (so readers only ever see synced records);
//! 5. calls the commit observer with the added entries in commit order;
//! 6. replies to every requester.
//!
//! Steps 1-2 (plan, sign) and 3-6 (write, sync, publish, reply) run on two threads. The
//! planner thread is itself a worker of a small rayon pool kept for signing, so it signs a
//! chunk of each batch while the other workers sign the rest. While one `fdatasync` runs,
//! the planner plans and signs whatever arrives, and the syncer then writes *every* batch
//! that is waiting with one write and one `fdatasync`. Signing (CPU) and syncing (disk)
//! overlap, and when the disk is the bottleneck each sync still carries every append that
//! arrived during the previous one.
//! The planner keeps its own view of every feed it has planned entries for (the index plus
//! entries still in flight), trimmed as batches become durable.
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
//! # Failures and recovery
//!
//! If a write or sync fails, nothing in that write is acknowledged: every request of it is
//! answered with the error, and so is every batch planned before the planner learned of the
//! failure (they may chain onto entries that were never made durable). The writer then
//! **recovers** before it writes again: it cuts the file back to the last durable end it
//! knows, syncs the cut, checks the file's length, and re-reads the last durable record
//! (its checksum must hold). After a failed `fdatasync` the kernel may have dropped the
//! dirty pages of the failed write, so nothing of it is trusted: it is cut, and written
//! afresh only by a later request. Bytes before the durable end were synced by an earlier,
//! successful `fdatasync`, so they are on the disk whatever the page cache says.
//!
//! Failures are counted in epochs: each failure starts a new one, each batch carries the
//! epoch it was planned in, and the syncer fails any batch planned in an earlier epoch. The
//! planner, seeing a new epoch, forgets its view of entries in flight and plans from the
//! index again. Meanwhile the store is *degraded* ([`super::health`]); the first batch
//! written and synced afterwards (say, once a full disk has room again) makes it *ok*.
//! A recovery that fails itself (the cut cannot be made or synced) is retried before the
//! next write, and that write is not attempted until it succeeds.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;

use super::format;
use super::health::StoreHealth;
use super::index::Index;
use super::io::LogIo;
use super::keys;
use super::lock::DirLock;
use super::{AppendError, CommitObserver, Outcome};
use crate::entry::{Entry, Seq, UnsignedEntry};
use crate::hash::Hash;
use crate::idempotency::IdempotencyKey;
use crate::identity::{Author, Identity, Signature};
use crate::validate::{self, FeedHead, Placement, ValidationError};

/// Below this many signatures a second core costs more in hand-off than it saves.
const MIN_SIGN_CHUNK: usize = 8;

/// How long the syncer waits for more work after a write before it writes a commit marker
/// covering that write (see the recovery rule in [`super::format`]). Under load the next
/// write's leading marker covers it for free; only an idle store pays for one more
/// `fdatasync`, and only this long after its last append.
pub const IDLE_MARKER_DELAY: std::time::Duration = std::time::Duration::from_millis(20);

/// Where a reply goes: a blocking caller or an async one.
pub enum Reply<T> {
    Blocking(mpsc::SyncSender<T>),
    Async(tokio::sync::oneshot::Sender<T>),
}

impl<T> Reply<T> {
    fn send(self, value: T) {
        // A requester that gave up waiting (dropped its receiver) needs no answer.
        match self {
            Reply::Blocking(tx) => {
                let _ = tx.send(value);
            }
            Reply::Async(tx) => {
                let _ = tx.send(value);
            }
        }
    }
}

/// A foreign entry with what the caller already checked: its hash and the shape and
/// signature rules.
pub struct Checked {
    pub entry: Entry,
    pub hash: Hash,
    pub verdict: Result<(), ValidationError>,
}

/// What an own append came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnAppend {
    /// Written and durable.
    Added(Entry, Hash),
    /// The request's idempotency key was already used: nothing written; the own feed's
    /// entry at `seq` (durable) is the one appended under that key.
    Replayed { seq: Seq, hash: Hash },
}

pub type OwnResult = Result<OwnAppend, AppendError>;
pub type ForeignResult = Result<Vec<Outcome>, AppendError>;

pub enum Request {
    Own {
        value: i64,
        data: String,
        key: Option<IdempotencyKey>,
        reply: Reply<OwnResult>,
    },
    Foreign {
        entries: Vec<Checked>,
        reply: Reply<ForeignResult>,
    },
    /// A fork note for `author` (see [`super::format`]): durable before the reply.
    ForkNote {
        author: Author,
        reply: Reply<Result<(), AppendError>>,
    },
    /// Stop after everything queued before it.
    Shutdown,
}

impl Request {
    fn weight(&self) -> usize {
        match self {
            Request::Own { .. } | Request::ForkNote { .. } | Request::Shutdown => 1,
            Request::Foreign { entries, .. } => entries.len().max(1),
        }
    }
}

pub struct Writer {
    pub file: File,
    /// The header's store format version (1 until the first keyed record).
    pub version: u32,
    pub io: Arc<dyn LogIo>,
    pub end: u64,
    pub index: Arc<RwLock<Index>>,
    pub identity: Option<Identity>,
    pub observer: Option<Arc<dyn CommitObserver>>,
    pub max_batch_entries: usize,
    pub health: Arc<StoreHealth>,
    pub idle_marker_delay: Option<std::time::Duration>,
    pub lock: DirLock,
}

/// A feed's state while batches are planned: the index (up to `base_len`) plus the hashes
/// of entries planned after it, in this batch or in batches not yet durable.
struct PendingFeed {
    base_len: Seq,
    head: Option<FeedHead>,
    last_timestamp: u64,
    planned: VecDeque<Hash>,
}

/// A planned, signed batch on its way to the syncer.
struct Sealed {
    committed: Vec<(Entry, Hash)>,
    /// Keys of keyed records: (position in `committed`, key), in order.
    keys: Vec<(usize, IdempotencyKey)>,
    /// Fork notes, written after the entries.
    notes: Vec<Author>,
    answers: Vec<Answer>,
    /// The failure epoch it was planned in (see the module docs).
    epoch: u64,
}

/// The planning half of the writer: assigns positions, checks placements, signs.
struct Planner {
    file: Arc<File>,
    index: Arc<RwLock<Index>>,
    identity: Option<Identity>,
    feeds: HashMap<Author, PendingFeed>,
    /// Keys of own appends planned but not yet durable -> their seq and hash.
    keys_in_flight: HashMap<IdempotencyKey, FeedHead>,
    /// Batches handed to the syncer, and batches it has finished (durable or failed).
    sent: u64,
    finished: Arc<AtomicU64>,
    /// Failures so far (bumped by the syncer), and the value the view was planned under.
    epoch: Arc<AtomicU64>,
    epoch_seen: u64,
}

/// The durable half: writes, syncs, publishes to the index, notifies, replies.
struct Syncer {
    file: Arc<File>,
    version: u32,
    io: Arc<dyn LogIo>,
    end: u64,
    index: Arc<RwLock<Index>>,
    observer: Option<Arc<dyn CommitObserver>>,
    finished: Arc<AtomicU64>,
    epoch: Arc<AtomicU64>,
    health: Arc<StoreHealth>,
    /// The error of the latest failure: what batches of earlier epochs are failed with.
    last_error: Option<Arc<io::Error>>,
    /// A failure left bytes past `end` that must be cut before the next write.
    needs_recovery: bool,
    /// Offset of the last durable record, re-read by a recovery.
    last_record: Option<u64>,
    /// Records were written since the last commit marker: write one when idle.
    marker_due: bool,
    idle_marker_delay: Option<std::time::Duration>,
}

/// The planner's verdict on a keyed own request.
enum KeyCheck {
    /// The key is new: plan the append.
    Fresh(Reply<OwnResult>),
    /// Not to be appended; the answer to hold until the batch is durable, if any.
    Handled(Option<Answer>),
}

/// What a request gets back once the batch is durable.
enum Answer {
    Own(Result<usize, AppendError>, Reply<OwnResult>),
    /// A keyed request whose key's append was in flight: answered with that entry.
    Replay {
        author: Author,
        head: FeedHead,
        reply: Reply<OwnResult>,
    },
    Foreign(Result<Vec<Slot>, AppendError>, Reply<ForeignResult>),
    Note(Reply<Result<(), AppendError>>),
}

enum Slot {
    Added(usize),
    Other(Outcome),
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

impl Writer {
    pub fn run(self, requests: mpsc::Receiver<Request>) {
        let Writer {
            file,
            version,
            io,
            end,
            index,
            identity,
            observer,
            max_batch_entries,
            health,
            idle_marker_delay,
            lock,
        } = self;
        let file = Arc::new(file);
        let epoch = Arc::new(AtomicU64::new(0));
        let finished = Arc::new(AtomicU64::new(0));
        let syncer = Syncer {
            file: file.clone(),
            version,
            io,
            end,
            index: index.clone(),
            observer,
            finished: finished.clone(),
            epoch: epoch.clone(),
            health: health.clone(),
            last_error: None,
            needs_recovery: false,
            last_record: None,
            marker_due: false,
            idle_marker_delay,
        };
        // Unbounded, yet bounded in practice: every sealed batch answers requesters that
        // are waiting for it, so the queue never holds more than the appends in flight.
        let (to_syncer, sealed) = mpsc::channel::<Sealed>();
        let syncer = std::thread::Builder::new()
            .name("kappalog-store-sync".into())
            .spawn(move || syncer.run(sealed));
        let planner = Planner {
            file,
            index,
            identity,
            feeds: HashMap::new(),
            keys_in_flight: HashMap::new(),
            sent: 0,
            finished,
            epoch,
            epoch_seen: 0,
        };
        let syncer = match syncer {
            Ok(handle) => handle,
            Err(e) => {
                // Without a second thread there is nobody to sync: fail every request.
                health.fail(format!("spawn the sync thread: {e}"), now_ms());
                let e = Arc::new(e);
                while let Ok(request) = requests.recv() {
                    fail(request, AppendError::Io(e.clone()));
                }
                drop(lock);
                return;
            }
        };
        // A pool whose workers include the planner thread (see the module docs). Without it
        // (no threads to be had) signing falls back to the global pool.
        match rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("kappalog-sign-{i}"))
            .build()
        {
            Ok(pool) => pool.install(move || planner.plan(requests, to_syncer, max_batch_entries)),
            Err(e) => {
                tracing::warn!(error = %e, "no signing pool; signing on the global pool");
                planner.plan(requests, to_syncer, max_batch_entries);
            }
        }
        let _ = syncer.join();
        drop(lock);
    }
}

impl Planner {
    /// Takes requests until the channel closes or a shutdown arrives, handing each planned,
    /// signed batch to the syncer. Dropping `to_syncer` on return lets the syncer finish
    /// what it holds, then stop.
    fn plan(
        mut self,
        requests: mpsc::Receiver<Request>,
        to_syncer: mpsc::Sender<Sealed>,
        max_batch_entries: usize,
    ) {
        while let Ok(first) = requests.recv() {
            if matches!(first, Request::Shutdown) {
                break;
            }
            let mut weight = first.weight();
            let mut batch = vec![first];
            let mut shutdown = false;
            while weight < max_batch_entries {
                match requests.try_recv() {
                    Ok(Request::Shutdown) => {
                        shutdown = true;
                        break;
                    }
                    Ok(request) => {
                        weight += request.weight();
                        batch.push(request);
                    }
                    Err(_) => break,
                }
            }
            let sealed = self.commit(batch);
            self.sent += 1;
            if let Err(mpsc::SendError(sealed)) = to_syncer.send(sealed) {
                // The syncer is gone (it panicked): nothing can become durable any more.
                let e = Arc::new(io::Error::other("the store's sync thread stopped"));
                for answer in sealed.answers {
                    answer.fail(AppendError::Io(e.clone()));
                }
                break;
            }
            if shutdown {
                break;
            }
        }
    }

    fn pending<'a>(
        &self,
        feeds: &'a mut HashMap<Author, PendingFeed>,
        author: Author,
    ) -> &'a mut PendingFeed {
        feeds.entry(author).or_insert_with(|| {
            let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
            let feed = index.feeds.get(&author);
            PendingFeed {
                base_len: feed.map_or(0, |f| f.length()),
                head: feed.and_then(|f| f.head()),
                last_timestamp: feed.map_or(0, |f| f.last_timestamp),
                planned: VecDeque::new(),
            }
        })
    }

    /// The hash held at `seq` of a feed, from this batch or from disk.
    fn held_hash(&self, feed: &PendingFeed, author: &Author, seq: Seq) -> io::Result<Hash> {
        if seq > feed.base_len {
            let i = usize::try_from(seq - feed.base_len - 1).unwrap_or(usize::MAX);
            if let Some(hash) = feed.planned.get(i) {
                return Ok(*hash);
            }
        }
        let (offset, end) = {
            let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
            let offset = index.feeds.get(author).and_then(|f| f.offset_of(seq));
            (offset, index.end)
        };
        let offset = offset.ok_or_else(|| io::Error::other("held entry missing from the index"))?;
        match format::read_record_at(&self.file, offset, end) {
            Ok(record) => Ok(record.hash),
            Err(format::ReadFault::Io(e)) => Err(e),
            Err(format::ReadFault::Bad(reason)) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("record at offset {offset}: {reason}"),
            )),
        }
    }

    /// Plans and signs one batch; the syncer makes it durable and answers.
    fn commit(&mut self, batch: Vec<Request>) -> Sealed {
        let epoch = self.epoch.load(Ordering::Acquire);
        if epoch != self.epoch_seen {
            // A write failed: what was in flight will never be durable, so plan from the
            // index alone (every batch of the old epoch is failed by the syncer).
            self.feeds.clear();
            self.keys_in_flight.clear();
            self.epoch_seen = epoch;
        }
        self.refresh_feeds();
        let mut feeds = std::mem::take(&mut self.feeds);
        // Entries to write, in order; own ones are signed after planning.
        let mut planned: Vec<(Option<Entry>, Hash)> = Vec::new();
        let mut to_sign: Vec<(usize, UnsignedEntry)> = Vec::new();
        let mut keys = Vec::new();
        let mut notes = Vec::new();
        let mut answers = Vec::with_capacity(batch.len());
        for request in batch {
            match request {
                Request::Shutdown => {}
                Request::Own {
                    value,
                    data,
                    key,
                    reply,
                } => {
                    let Some(identity) = &self.identity else {
                        answers.push(Answer::Own(Err(AppendError::NoIdentity), reply));
                        continue;
                    };
                    let author = identity.author();
                    let reply = match &key {
                        Some(key) => match self.check_key(key, author, reply) {
                            KeyCheck::Fresh(reply) => reply,
                            KeyCheck::Handled(answer) => {
                                answers.extend(answer);
                                continue;
                            }
                        },
                        None => reply,
                    };
                    let feed = self.pending(&mut feeds, author);
                    let seq = feed.head.map_or(1, |h| h.seq + 1);
                    let unsigned = UnsignedEntry {
                        author,
                        seq,
                        timestamp: now_ms().max(feed.last_timestamp),
                        prev: feed.head.map(|h| h.hash),
                        value,
                        data,
                    };
                    let hash = unsigned.hash();
                    feed.head = Some(FeedHead { seq, hash });
                    feed.last_timestamp = unsigned.timestamp;
                    feed.planned.push_back(hash);
                    if let Some(key) = key {
                        self.keys_in_flight
                            .insert(key.clone(), FeedHead { seq, hash });
                        keys.push((planned.len(), key));
                    }
                    to_sign.push((planned.len(), unsigned));
                    answers.push(Answer::Own(Ok(planned.len()), reply));
                    planned.push((None, hash));
                }
                Request::Foreign { entries, reply } => {
                    let slots = self.plan_foreign(entries, &mut feeds, &mut planned);
                    answers.push(Answer::Foreign(slots, reply));
                }
                Request::ForkNote { author, reply } => {
                    notes.push(author);
                    answers.push(Answer::Note(reply));
                }
            }
        }
        self.feeds = feeds;
        if !to_sign.is_empty() {
            // Checked when the request was planned: own entries exist only with an identity.
            if let Some(identity) = &self.identity {
                // One chunk per core, each signed as a batch (which shares the costly field
                // inversion, see `Identity::sign_hashes`). The planner thread is a worker of
                // its own pool, so it signs one chunk itself instead of waiting for a woken
                // thread to start.
                let chunk = to_sign
                    .len()
                    .div_ceil(rayon::current_num_threads().max(1))
                    .max(MIN_SIGN_CHUNK);
                let signatures: Vec<Signature> = to_sign
                    .par_chunks(chunk)
                    .flat_map_iter(|part| {
                        let hashes: Vec<Hash> = part.iter().map(|(i, _)| planned[*i].1).collect();
                        identity.sign_hashes(&hashes)
                    })
                    .collect();
                for ((i, unsigned), signature) in to_sign.into_iter().zip(signatures) {
                    planned[i].0 = Some(unsigned.with_signature(signature));
                }
            }
        }
        let committed: Vec<(Entry, Hash)> = planned
            .into_iter()
            .filter_map(|(entry, hash)| entry.map(|e| (e, hash)))
            .collect();
        Sealed {
            committed,
            keys,
            notes,
            answers,
            epoch,
        }
    }

    /// Deduplicates a keyed own request (see the module docs): `Fresh` if it is to be
    /// appended, else what answers it (nothing more if it was answered already).
    fn check_key(&self, key: &IdempotencyKey, author: Author, reply: Reply<OwnResult>) -> KeyCheck {
        if let Some(&head) = self.keys_in_flight.get(key) {
            return KeyCheck::Handled(Some(Answer::Replay {
                author,
                head,
                reply,
            }));
        }
        match keys::find(&self.file, &self.index, key) {
            // A record of another feed holds the key only if this data directory once ran
            // under another identity: not an append of this feed, so not a replay.
            Ok(Some(record)) if record.entry.author == author => {
                reply.send(Ok(OwnAppend::Replayed {
                    seq: record.entry.seq,
                    hash: record.hash,
                }));
                KeyCheck::Handled(None)
            }
            Ok(_) => KeyCheck::Fresh(reply),
            Err(e) => {
                let reason = match e.fault {
                    format::ReadFault::Io(e) => e,
                    format::ReadFault::Bad(reason) => io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("record at offset {}: {reason}", e.offset),
                    ),
                };
                KeyCheck::Handled(Some(Answer::Own(
                    Err(AppendError::Io(Arc::new(reason))),
                    reply,
                )))
            }
        }
    }

    /// Drops what has become durable from the planner's view of each feed: with nothing in
    /// flight the index is the whole truth and the view is rebuilt from it on demand.
    fn refresh_feeds(&mut self) {
        if self.finished.load(Ordering::Acquire) == self.sent {
            self.feeds.clear();
            self.keys_in_flight.clear();
            return;
        }
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        if !self.keys_in_flight.is_empty() {
            // Durable keys are in the index's key table (inserted with their records).
            let own = self.identity.as_ref().map(Identity::author);
            let durable = own
                .and_then(|author| index.feeds.get(&author))
                .map_or(0, |f| f.length());
            self.keys_in_flight.retain(|_, head| head.seq > durable);
        }
        for (author, feed) in self.feeds.iter_mut() {
            let durable = index.feeds.get(author).map_or(0, |f| f.length());
            while feed.base_len < durable && !feed.planned.is_empty() {
                feed.planned.pop_front();
                feed.base_len += 1;
            }
        }
    }

    fn plan_foreign(
        &self,
        entries: Vec<Checked>,
        feeds: &mut HashMap<Author, PendingFeed>,
        planned: &mut Vec<(Option<Entry>, Hash)>,
    ) -> Result<Vec<Slot>, AppendError> {
        let mut slots = Vec::with_capacity(entries.len());
        for checked in entries {
            if let Err(e) = checked.verdict {
                slots.push(Slot::Other(Outcome::Rejected(e)));
                continue;
            }
            let entry = checked.entry;
            let hash = checked.hash;
            let feed = self.pending(feeds, entry.author);
            let length = feed.head.map_or(0, |h| h.seq);
            let held = if entry.seq >= 1 && entry.seq <= length {
                Some(
                    self.held_hash(feed, &entry.author, entry.seq)
                        .map_err(|e| AppendError::Io(Arc::new(e)))?,
                )
            } else {
                None
            };
            let feed = self.pending(feeds, entry.author);
            match validate::place(entry.seq, &hash, length, held) {
                Placement::Duplicate => slots.push(Slot::Other(Outcome::Duplicate(hash))),
                Placement::Fork { held } => slots.push(Slot::Other(Outcome::Fork {
                    seq: entry.seq,
                    held,
                    offered: hash,
                })),
                Placement::Gap { next } => slots.push(Slot::Other(Outcome::Gap { next })),
                // Unreachable here: `held` was read above for every held position.
                Placement::Held => {
                    return Err(AppendError::Io(Arc::new(io::Error::other(format!(
                        "the index holds entry {} of {} without its hash",
                        entry.seq, entry.author
                    )))))
                }
                Placement::Next => {
                    if let Err(e) = validate::check_link(&entry, feed.head.as_ref()) {
                        slots.push(Slot::Other(Outcome::Rejected(e)));
                        continue;
                    }
                    feed.head = Some(FeedHead {
                        seq: entry.seq,
                        hash,
                    });
                    feed.last_timestamp = entry.timestamp;
                    feed.planned.push_back(hash);
                    slots.push(Slot::Added(planned.len()));
                    planned.push((Some(entry), hash));
                }
            }
        }
        Ok(slots)
    }
}

impl Syncer {
    fn run(mut self, sealed: mpsc::Receiver<Sealed>) {
        loop {
            let idle_delay = self.idle_marker_delay.filter(|_| self.marker_due);
            let first = if let Some(delay) = idle_delay {
                match sealed.recv_timeout(delay) {
                    Ok(first) => first,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.write_idle_marker();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        self.write_idle_marker();
                        break;
                    }
                }
            } else {
                match sealed.recv() {
                    Ok(first) => first,
                    Err(_) => {
                        // Closing: cover the last write with a marker either way.
                        self.write_idle_marker();
                        break;
                    }
                }
            };
            let mut batches = vec![first];
            while let Ok(more) = sealed.try_recv() {
                batches.push(more);
            }
            let n = u64::try_from(batches.len()).unwrap_or(u64::MAX);
            tracing::trace!(
                batches = n,
                entries = batches.iter().map(|b| b.committed.len()).sum::<usize>(),
                "group commit"
            );
            self.finish(batches);
            self.finished.fetch_add(n, Ordering::Release);
        }
    }

    /// Makes the batches durable with one write and one sync, publishes them, notifies the
    /// observer and answers everyone, batch by batch in planning order. Batches planned
    /// before the latest failure are failed unwritten (see the module docs).
    fn finish(&mut self, batches: Vec<Sealed>) {
        let epoch = self.epoch.load(Ordering::Acquire);
        let (fresh, stale): (Vec<Sealed>, Vec<Sealed>) =
            batches.into_iter().partition(|b| b.epoch == epoch);
        for batch in stale {
            let err = self.failure_error();
            for answer in batch.answers {
                self.fail(answer, AppendError::Io(err.clone()));
            }
        }
        let result = self.make_durable(&fresh);
        // Each batch's record offsets, in the order `write` laid the batches out.
        let mut offsets: &[u64] = result.as_deref().unwrap_or_default();
        for Sealed {
            committed, answers, ..
        } in fresh
        {
            if let Err(err) = &result {
                for answer in answers {
                    self.fail(answer, AppendError::Io(err.clone()));
                }
                continue;
            }
            let (mine, rest) = offsets.split_at(committed.len().min(offsets.len()));
            offsets = rest;
            if !committed.is_empty() {
                if let Some(observer) = &self.observer {
                    observer.committed(&committed, mine);
                }
            }
            for answer in answers {
                match answer {
                    Answer::Note(reply) => reply.send(Ok(())),
                    Answer::Own(result, reply) => {
                        reply.send(result.map(|i| {
                            let (entry, hash) = committed[i].clone();
                            OwnAppend::Added(entry, hash)
                        }));
                    }
                    Answer::Replay { head, reply, .. } => reply.send(Ok(OwnAppend::Replayed {
                        seq: head.seq,
                        hash: head.hash,
                    })),
                    Answer::Foreign(result, reply) => reply.send(result.map(|slots| {
                        slots
                            .into_iter()
                            .map(|slot| match slot {
                                Slot::Added(i) => Outcome::Added(committed[i].1),
                                Slot::Other(outcome) => outcome,
                            })
                            .collect()
                    })),
                }
            }
        }
    }

    /// Recovers if a failure asked for it, then writes and syncs the batches' records. Any
    /// failure starts a new epoch and degrades the store.
    fn make_durable(&mut self, batches: &[Sealed]) -> Result<Vec<u64>, Arc<io::Error>> {
        if batches
            .iter()
            .all(|b| b.committed.is_empty() && b.notes.is_empty())
        {
            return Ok(Vec::new());
        }
        if self.needs_recovery {
            if let Err(e) = self.recover() {
                return Err(self.record_failure("recover the log's tail", e));
            }
        }
        match self.write(batches) {
            Ok(offsets) => {
                if let Some(spell) = self.health.succeed() {
                    tracing::info!(
                        after_ms = now_ms().saturating_sub(spell.since_ms),
                        failure = %spell.reason,
                        "store writes resumed"
                    );
                }
                Ok(offsets)
            }
            Err(e) => {
                let err = self.record_failure("write the log", e);
                // Cut the unacknowledged bytes now rather than at the next write, so the
                // file holds only durable records while nobody writes.
                if let Err(e) = self.recover() {
                    self.record_failure("recover the log's tail", e);
                }
                Err(err)
            }
        }
    }

    /// Starts a new failure epoch and degrades the store; returns the error to answer with.
    fn record_failure(&mut self, what: &str, e: io::Error) -> Arc<io::Error> {
        let reason = format!("{what}: {e}");
        tracing::error!(
            error = %reason,
            durable_end = self.end,
            "store write failed; appends fail until the log is recovered and a write succeeds"
        );
        self.health.fail(reason, now_ms());
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.needs_recovery = true;
        let err = Arc::new(e);
        self.last_error = Some(err.clone());
        err
    }

    /// The error batches of a past epoch are failed with.
    fn failure_error(&self) -> Arc<io::Error> {
        self.last_error
            .clone()
            .unwrap_or_else(|| Arc::new(io::Error::other("an earlier write of the log failed")))
    }

    /// Cuts the file back to the durable end, syncs the cut, and checks what is left: the
    /// file's length, and the last durable record re-read from the file.
    fn recover(&mut self) -> io::Result<()> {
        self.io.set_len(&self.file, self.end)?;
        self.io.sync_data(&self.file)?;
        let len = self.io.len(&self.file)?;
        if len != self.end {
            return Err(io::Error::other(format!(
                "the log is {len} bytes after being cut back to its durable end {}",
                self.end
            )));
        }
        if let Some(offset) = self.last_record {
            format::read_record_at(&self.file, offset, self.end).map_err(|fault| match fault {
                format::ReadFault::Io(e) => e,
                format::ReadFault::Bad(reason) => io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the last durable record, at offset {offset}, reads back bad: {reason}"
                    ),
                ),
            })?;
        }
        self.needs_recovery = false;
        tracing::info!(
            durable_end = self.end,
            "cut the log back to its durable end"
        );
        Ok(())
    }

    /// Fails one answer of a batch whose write failed. A replay whose entry became durable
    /// in an earlier write is still answered with it: this request appended nothing, and the
    /// entry its key names exists.
    fn fail(&self, answer: Answer, err: AppendError) {
        if let Answer::Replay {
            author,
            head,
            reply,
        } = answer
        {
            let durable = {
                let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
                index.feeds.get(&author).map_or(0, |f| f.length())
            };
            if head.seq <= durable {
                reply.send(Ok(OwnAppend::Replayed {
                    seq: head.seq,
                    hash: head.hash,
                }));
            } else {
                reply.send(Err(err));
            }
            return;
        }
        answer.fail(err);
    }

    /// Writes and syncs the records, then publishes them in the index. Returns where each
    /// record starts, batch after batch.
    fn write(&mut self, batches: &[Sealed]) -> io::Result<Vec<u64>> {
        let count: usize = batches.iter().map(|b| b.committed.len()).sum();
        let notes: usize = batches.iter().map(|b| b.notes.len()).sum();
        if count + notes == 0 {
            return Ok(Vec::new());
        }
        if self.version < format::STORE_FORMAT_V3 {
            self.upgrade_header()?;
        }
        let mut buf = Vec::with_capacity(count * 200 + 16);
        // Every write starts with a commit marker: all before it is durable (see the
        // recovery rule in `format`).
        format::encode_marker(self.end, &mut buf);
        let mut offsets = Vec::with_capacity(count);
        for batch in batches {
            let mut keys = batch.keys.iter().peekable();
            for (i, (entry, _)) in batch.committed.iter().enumerate() {
                offsets.push(self.end + buf.len() as u64);
                let key = keys.next_if(|(at, _)| *at == i).map(|(_, key)| key);
                format::encode_keyed_record(entry, key, &mut buf);
            }
        }
        for author in batches.iter().flat_map(|b| &b.notes) {
            format::encode_fork_note(self.end + buf.len() as u64, author, &mut buf);
        }
        let result = self
            .io
            .write_all_at(&self.file, &buf, self.end)
            .and_then(|()| self.io.sync_data(&self.file));
        result?;
        self.end += buf.len() as u64;
        self.last_record = offsets.last().copied().or(self.last_record);
        self.marker_due = true;
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        let mut at = offsets.iter().copied();
        for batch in batches {
            let mut keys = batch.keys.iter().peekable();
            for (i, ((entry, hash), offset)) in batch.committed.iter().zip(&mut at).enumerate() {
                index.insert(entry, hash, offset);
                if let Some((_, key)) = keys.next_if(|(at, _)| *at == i) {
                    index.keys.insert(key, offset);
                }
            }
        }
        index.end = self.end;
        Ok(offsets)
    }

    /// Rewrites the header's version to 3 and syncs it, before the first record this code
    /// writes into a file of an older version (see the header rule in [`super::format`]).
    fn upgrade_header(&mut self) -> io::Result<()> {
        self.io
            .write_all_at(
                &self.file,
                &format::STORE_FORMAT_V3.to_le_bytes(),
                format::VERSION_OFFSET,
            )
            .and_then(|()| self.io.sync_data(&self.file))?;
        tracing::info!(
            from = self.version,
            to = format::STORE_FORMAT_V3,
            "upgraded the log's header version before writing to it"
        );
        self.version = format::STORE_FORMAT_V3;
        Ok(())
    }

    /// Writes and syncs a commit marker at the end, so the records of the last write are
    /// covered by one (see the recovery rule in [`super::format`]). Skipped while a failure
    /// waits for its recovery: the next append recovers first.
    fn write_idle_marker(&mut self) {
        if !self.marker_due || self.needs_recovery {
            return;
        }
        let mut buf = Vec::with_capacity(16);
        format::encode_marker(self.end, &mut buf);
        let result = self
            .io
            .write_all_at(&self.file, &buf, self.end)
            .and_then(|()| self.io.sync_data(&self.file));
        match result {
            Ok(()) => {
                self.end += buf.len() as u64;
                self.marker_due = false;
                self.index
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .end = self.end;
            }
            Err(e) => {
                self.record_failure("write a commit marker", e);
                if let Err(e) = self.recover() {
                    self.record_failure("recover the log's tail", e);
                }
            }
        }
    }
}

impl Answer {
    fn fail(self, err: AppendError) {
        match self {
            Answer::Own(_, reply) | Answer::Replay { reply, .. } => reply.send(Err(err)),
            Answer::Foreign(_, reply) => reply.send(Err(err)),
            Answer::Note(reply) => reply.send(Err(err)),
        }
    }
}

fn fail(request: Request, err: AppendError) {
    match request {
        Request::Own { reply, .. } => reply.send(Err(err)),
        Request::Foreign { reply, .. } => reply.send(Err(err)),
        Request::ForkNote { reply, .. } => reply.send(Err(err)),
        Request::Shutdown => {}
    }
}
