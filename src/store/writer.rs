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
//! If a write or sync fails the writer cuts the file back to the last synced length, fails
//! that batch and every later request: after a failed `fdatasync` the kernel may have dropped
//! the dirty pages, so carrying on could silently lose acknowledged data.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;

use super::format;
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
    /// Stop after everything queued before it.
    Shutdown,
}

impl Request {
    fn weight(&self) -> usize {
        match self {
            Request::Own { .. } | Request::Shutdown => 1,
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
    pub failed: Option<Arc<io::Error>>,
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
    answers: Vec<Answer>,
}

/// The first failed write or sync; after it every request fails.
type Failure = Arc<Mutex<Option<Arc<io::Error>>>>;

fn failure(failed: &Failure) -> Option<Arc<io::Error>> {
    failed
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
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
    failed: Failure,
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
    failed: Failure,
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
            failed,
            lock,
        } = self;
        let file = Arc::new(file);
        let failed: Failure = Arc::new(Mutex::new(failed));
        let finished = Arc::new(AtomicU64::new(0));
        let syncer = Syncer {
            file: file.clone(),
            version,
            io,
            end,
            index: index.clone(),
            observer,
            finished: finished.clone(),
            failed: failed.clone(),
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
            failed,
        };
        let syncer = match syncer {
            Ok(handle) => handle,
            Err(e) => {
                // Without a second thread there is nobody to sync: fail every request.
                let e = Arc::new(e);
                *planner
                    .failed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(e.clone());
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
        if let Some(err) = failure(&self.failed) {
            let answers = batch
                .into_iter()
                .filter_map(|request| request.into_failed_answer(&err))
                .collect();
            return Sealed {
                committed: Vec::new(),
                keys: Vec::new(),
                answers,
            };
        }
        self.refresh_feeds();
        let mut feeds = std::mem::take(&mut self.feeds);
        // Entries to write, in order; own ones are signed after planning.
        let mut planned: Vec<(Option<Entry>, Hash)> = Vec::new();
        let mut to_sign: Vec<(usize, UnsignedEntry)> = Vec::new();
        let mut keys = Vec::new();
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
            answers,
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
        while let Ok(first) = sealed.recv() {
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
    /// observer and answers everyone, batch by batch in planning order.
    fn finish(&mut self, batches: Vec<Sealed>) {
        let result = match failure(&self.failed) {
            Some(err) => Err(err),
            None => self.write(&batches).map_err(|err| {
                let err = Arc::new(err);
                tracing::error!(error = %err, "store write failed; the writer stops accepting appends");
                *self.failed.lock().unwrap_or_else(PoisonError::into_inner) = Some(err.clone());
                err
            }),
        };
        // Each batch's record offsets, in the order `write` laid the batches out.
        let mut offsets: &[u64] = result.as_deref().unwrap_or_default();
        for Sealed {
            committed, answers, ..
        } in batches
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
        if count == 0 {
            return Ok(Vec::new());
        }
        let keyed = batches.iter().any(|b| !b.keys.is_empty());
        if keyed && self.version < format::STORE_FORMAT_V2 {
            self.upgrade_header()?;
        }
        let mut buf = Vec::with_capacity(count * 200);
        let mut offsets = Vec::with_capacity(count);
        for batch in batches {
            let mut keys = batch.keys.iter().peekable();
            for (i, (entry, _)) in batch.committed.iter().enumerate() {
                offsets.push(self.end + buf.len() as u64);
                let key = keys.next_if(|(at, _)| *at == i).map(|(_, key)| key);
                format::encode_keyed_record(entry, key, &mut buf);
            }
        }
        let result = self
            .io
            .write_all_at(&self.file, &buf, self.end)
            .and_then(|()| self.io.sync_data(&self.file));
        if let Err(e) = result {
            // Best effort: drop the unsynced bytes so a reader or reopen never sees them.
            let _ = self.io.set_len(&self.file, self.end);
            return Err(e);
        }
        self.end += buf.len() as u64;
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

    /// Rewrites the header's version to 2 and syncs it, before the first keyed record is
    /// written (see the header rule in [`super::format`]).
    fn upgrade_header(&mut self) -> io::Result<()> {
        self.io
            .write_all_at(
                &self.file,
                &format::STORE_FORMAT_V2.to_le_bytes(),
                format::VERSION_OFFSET,
            )
            .and_then(|()| self.io.sync_data(&self.file))?;
        tracing::info!(
            version = format::STORE_FORMAT_V2,
            "upgraded the log's header for its first idempotency key"
        );
        self.version = format::STORE_FORMAT_V2;
        Ok(())
    }
}

impl Answer {
    fn fail(self, err: AppendError) {
        match self {
            Answer::Own(_, reply) | Answer::Replay { reply, .. } => reply.send(Err(err)),
            Answer::Foreign(_, reply) => reply.send(Err(err)),
        }
    }
}

impl Request {
    /// The answer that fails this request (none for a shutdown marker).
    fn into_failed_answer(self, err: &Arc<io::Error>) -> Option<Answer> {
        match self {
            Request::Own { reply, .. } => {
                Some(Answer::Own(Err(AppendError::Io(err.clone())), reply))
            }
            Request::Foreign { reply, .. } => {
                Some(Answer::Foreign(Err(AppendError::Io(err.clone())), reply))
            }
            Request::Shutdown => None,
        }
    }
}

fn fail(request: Request, err: AppendError) {
    match request {
        Request::Own { reply, .. } => reply.send(Err(err)),
        Request::Foreign { reply, .. } => reply.send(Err(err)),
        Request::Shutdown => {}
    }
}
