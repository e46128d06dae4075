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
//! 2. signs the planned own entries in parallel (rayon): signing dominates the cost;
//! 3. writes all records with one positional write and one `fdatasync`;
//! 4. updates the shared index (so readers only ever see synced records);
//! 5. calls the commit observer with the added entries in commit order;
//! 6. replies to every requester.
//!
//! If a write or sync fails the writer cuts the file back to the last synced length, fails
//! that batch and every later request: after a failed `fdatasync` the kernel may have dropped
//! the dirty pages, so carrying on could silently lose acknowledged data.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{mpsc, Arc, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;

use super::format;
use super::index::Index;
use super::lock::DirLock;
use super::{AppendError, CommitObserver, Outcome};
use crate::entry::{Entry, Seq, UnsignedEntry};
use crate::hash::Hash;
use crate::identity::{Author, Identity};
use crate::validate::{self, FeedHead, Placement, ValidationError};

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

pub type OwnResult = Result<(Entry, Hash), AppendError>;
pub type ForeignResult = Result<Vec<Outcome>, AppendError>;

pub enum Request {
    Own {
        value: i64,
        data: String,
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
    pub end: u64,
    pub index: Arc<RwLock<Index>>,
    pub identity: Option<Identity>,
    pub observer: Option<Arc<dyn CommitObserver>>,
    pub max_batch_entries: usize,
    pub failed: Option<Arc<io::Error>>,
    pub lock: DirLock,
}

/// A feed's state while a batch is planned: the index plus entries planned in this batch.
struct PendingFeed {
    base_len: Seq,
    head: Option<FeedHead>,
    last_timestamp: u64,
    planned: Vec<Hash>,
}

/// What a request gets back once the batch is durable.
enum Answer {
    Own(Result<usize, AppendError>, Reply<OwnResult>),
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
    pub fn run(mut self, requests: mpsc::Receiver<Request>) {
        while let Ok(first) = requests.recv() {
            if matches!(first, Request::Shutdown) {
                break;
            }
            let mut weight = first.weight();
            let mut batch = vec![first];
            let mut shutdown = false;
            while weight < self.max_batch_entries {
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
            self.commit(batch);
            if shutdown {
                break;
            }
        }
        drop(self.lock);
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
                planned: Vec::new(),
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
            Ok((_, hash)) => Ok(hash),
            Err(format::ReadFault::Io(e)) => Err(e),
            Err(format::ReadFault::Bad(reason)) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("record at offset {offset}: {reason}"),
            )),
        }
    }

    fn commit(&mut self, batch: Vec<Request>) {
        if let Some(err) = &self.failed {
            let err = err.clone();
            for request in batch {
                fail(request, AppendError::Io(err.clone()));
            }
            return;
        }
        let mut feeds: HashMap<Author, PendingFeed> = HashMap::new();
        // Entries to write, in order; own ones are signed after planning.
        let mut planned: Vec<(Option<Entry>, Hash)> = Vec::new();
        let mut to_sign: Vec<(usize, UnsignedEntry)> = Vec::new();
        let mut answers = Vec::with_capacity(batch.len());
        for request in batch {
            match request {
                Request::Shutdown => {}
                Request::Own { value, data, reply } => {
                    let Some(identity) = &self.identity else {
                        answers.push(Answer::Own(Err(AppendError::NoIdentity), reply));
                        continue;
                    };
                    let author = identity.author();
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
                    feed.planned.push(hash);
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
        if !to_sign.is_empty() {
            // Checked when the request was planned: own entries exist only with an identity.
            if let Some(identity) = &self.identity {
                let signed: Vec<(usize, Entry)> = to_sign
                    .into_par_iter()
                    .map(|(i, unsigned)| {
                        let signature = identity.sign_hash(&planned[i].1);
                        (i, unsigned.with_signature(signature))
                    })
                    .collect();
                for (i, entry) in signed {
                    planned[i].0 = Some(entry);
                }
            }
        }
        let committed: Vec<(Entry, Hash)> = planned
            .into_iter()
            .filter_map(|(entry, hash)| entry.map(|e| (e, hash)))
            .collect();
        if let Err(err) = self.write(&committed) {
            let err = Arc::new(err);
            tracing::error!(error = %err, "store write failed; the writer stops accepting appends");
            self.failed = Some(err.clone());
            for answer in answers {
                match answer {
                    Answer::Own(_, reply) => reply.send(Err(AppendError::Io(err.clone()))),
                    Answer::Foreign(_, reply) => reply.send(Err(AppendError::Io(err.clone()))),
                }
            }
            return;
        }
        if !committed.is_empty() {
            if let Some(observer) = &self.observer {
                observer.committed(&committed);
            }
        }
        for answer in answers {
            match answer {
                Answer::Own(result, reply) => {
                    reply.send(result.map(|i| committed[i].clone()));
                }
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
                    feed.planned.push(hash);
                    slots.push(Slot::Added(planned.len()));
                    planned.push((Some(entry), hash));
                }
            }
        }
        Ok(slots)
    }

    /// Writes and syncs the records, then publishes them in the index.
    fn write(&mut self, committed: &[(Entry, Hash)]) -> io::Result<()> {
        if committed.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(committed.len() * 200);
        let mut offsets = Vec::with_capacity(committed.len());
        for (entry, _) in committed {
            offsets.push(self.end + buf.len() as u64);
            format::encode_record(entry, &mut buf);
        }
        let result = self
            .file
            .write_all_at(&buf, self.end)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = result {
            // Best effort: drop the unsynced bytes so a reader or reopen never sees them.
            let _ = self.file.set_len(self.end);
            return Err(e);
        }
        self.end += buf.len() as u64;
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        for ((entry, hash), offset) in committed.iter().zip(offsets) {
            index.insert(entry, hash, offset);
        }
        index.end = self.end;
        Ok(())
    }
}

fn fail(request: Request, err: AppendError) {
    match request {
        Request::Own { reply, .. } => reply.send(Err(err)),
        Request::Foreign { reply, .. } => reply.send(Err(err)),
        Request::Shutdown => {}
    }
}
