//! The planning half of the writer: takes requests in order, assigns positions, checks
//! placements, deduplicates idempotency keys, keeps the own-feed fence (see "The own-feed
//! fence" in [`super`]), signs, and hands each sealed batch to the
//! syncer ([`super::syncer`]). Each planned request keeps its reply channel beside what it
//! writes (see "Answers are owned values" in [`super`]).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, PoisonError, RwLock};

use rayon::prelude::*;
use tokio::sync::watch;

use super::planned::{Placed, Planned, Record, Sealed};
use super::replace::Copy;
use super::{answer, Checked, OwnAppend, OwnResult, Reply, Request};
use crate::clock::now_ms;
use crate::entry::{Seq, UnsignedEntry};
use crate::fence::{Fence, FenceEvent, Released};
use crate::hash::Hash;
use crate::idempotency::IdempotencyKey;
use crate::identity::{Author, Identity, Signature};
use crate::store::format;
use crate::store::index::Index;
use crate::store::io::{LogFile, LogIo};
use crate::store::keys;
use crate::store::{AppendError, Outcome};
use crate::validate::{self, FeedHead, Placement};

/// Below this many signatures a second core costs more in hand-off than it saves.
const MIN_SIGN_CHUNK: usize = 8;

/// A request being planned: an own entry still to be signed, or already planned.
enum Draft {
    Own {
        unsigned: UnsignedEntry,
        hash: Hash,
        key: Option<IdempotencyKey>,
        reply: Reply<OwnResult>,
        /// Filled in by the signing pass.
        signature: Option<Signature>,
    },
    Ready(Planned),
}

/// A feed's state while batches are planned: the index (up to `base_len`) plus the hashes
/// of entries planned after it, in this batch or in batches not yet durable.
struct PendingFeed {
    base_len: Seq,
    head: Option<FeedHead>,
    last_timestamp: u64,
    planned: VecDeque<Hash>,
}

/// The planner's verdict on a keyed own request.
enum KeyCheck {
    /// The key is new: plan the append.
    Fresh(Reply<OwnResult>),
    /// The key's append is in flight (planned at `FeedHead`): answer with it once durable.
    InFlight(FeedHead, Reply<OwnResult>),
    /// Answered already.
    Answered,
}

pub(super) struct Planner {
    io: Arc<dyn LogIo>,
    file: Arc<LogFile>,
    index: Arc<RwLock<Index>>,
    identity: Option<Identity>,
    feeds: HashMap<Author, PendingFeed>,
    /// Keys of own appends planned but not yet durable -> their seq and hash.
    keys_in_flight: HashMap<IdempotencyKey, FeedHead>,
    /// Failures so far (bumped by the syncer), and the value the view was planned under.
    epoch: Arc<AtomicU64>,
    epoch_seen: u64,
    /// The one live own-feed fence, and where a copy is published after each event.
    fence: Fence,
    published: watch::Sender<Fence>,
}

impl Planner {
    pub(super) fn new(
        io: Arc<dyn LogIo>,
        file: Arc<LogFile>,
        index: Arc<RwLock<Index>>,
        identity: Option<Identity>,
        epoch: Arc<AtomicU64>,
        published: watch::Sender<Fence>,
    ) -> Planner {
        let fence = published.borrow().clone();
        Planner {
            io,
            file,
            index,
            identity,
            feeds: HashMap::new(),
            keys_in_flight: HashMap::new(),
            epoch,
            epoch_seen: 0,
            fence,
            published,
        }
    }

    /// Takes requests until a shutdown arrives (or every sender is gone), handing each
    /// planned, signed batch to the syncer. Returning drops `requests` (requests still
    /// queued are dropped unanswered: [`AppendError::Closed`] to their senders) and
    /// `to_syncer` (the syncer finishes what it holds, then stops).
    pub(super) fn plan(
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
            if let Err(mpsc::SendError(sealed)) = to_syncer.send(sealed) {
                // The syncer is gone (it panicked): nothing can become durable any more.
                for request in sealed.requests {
                    request.fail(
                        AppendError::Internal("the store's sync thread stopped"),
                        None,
                    );
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
    fn held_hash(
        &self,
        feed: &PendingFeed,
        author: &Author,
        seq: Seq,
    ) -> Result<Hash, AppendError> {
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
        // The feed's length covers `seq`, so the index has its offset; if not, that is a bug.
        let offset = offset.ok_or(AppendError::Internal(
            "a held entry is missing from the index",
        ))?;
        match format::read_record_at(&*self.io, &self.file, offset, end) {
            Ok(record) => Ok(record.hash),
            Err(format::ReadFault::Io(e)) => Err(AppendError::Io(Arc::new(e))),
            Err(format::ReadFault::Bad(reason)) => Err(AppendError::Io(Arc::new(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("record at offset {offset}: {reason}"),
            )))),
        }
    }

    /// Plans and signs one batch; the syncer makes it durable and answers.
    pub(super) fn commit(&mut self, batch: Vec<Request>) -> Sealed {
        let epoch = self.follow_epoch();
        self.refresh_feeds();
        let mut feeds = std::mem::take(&mut self.feeds);
        let mut drafts = Vec::with_capacity(batch.len());
        for request in batch {
            drafts.extend(self.draft(request, &mut feeds));
        }
        self.feeds = feeds;
        self.sign(&mut drafts);
        self.seal(drafts, epoch)
    }

    /// The failure epoch to plan the next batch in; forgets what was in flight if it moved.
    fn follow_epoch(&mut self) -> u64 {
        let epoch = self.epoch.load(Ordering::Acquire);
        if epoch != self.epoch_seen {
            // A write failed: what was in flight will never be durable, so plan from the
            // index alone (every batch of the old epoch is failed by the syncer).
            self.feeds.clear();
            self.keys_in_flight.clear();
            self.epoch_seen = epoch;
        }
        epoch
    }

    /// Plans one request against `feeds`; `None` if it was answered here (or is a shutdown).
    fn draft(
        &mut self,
        request: Request,
        feeds: &mut HashMap<Author, PendingFeed>,
    ) -> Option<Draft> {
        let planned = match request {
            Request::Shutdown => return None,
            Request::Fence(event) => {
                self.apply_fence(event);
                return None;
            }
            Request::Own {
                value,
                data,
                key,
                reply,
            } => return self.draft_own(value, data, key, reply, feeds),
            Request::Foreign {
                entries,
                whole: false,
                reply,
            } => {
                let (placed, failed) = self.plan_foreign(entries, feeds);
                Planned::Foreign {
                    placed,
                    failed,
                    reply,
                }
            }
            Request::Foreign {
                entries,
                whole: true,
                reply,
            } => match self.plan_whole(entries, feeds) {
                Ok(placed) => Planned::Foreign {
                    placed,
                    failed: None,
                    reply,
                },
                // Refused before anything of it is written: answered now, not after the
                // batch's `fdatasync`.
                Err(e) => {
                    answer(reply, Err(e));
                    return None;
                }
            },
            Request::ForkNote { author, reply } => Planned::Note { author, reply },
            // Shape and signature checked here, on the planning side: the syncer decides
            // against the durable log ([`super::replace`]).
            Request::Replace { copies, reply } => Planned::Replace {
                copies: copies.into_iter().map(Copy::checked).collect(),
                failed: None,
                reply,
            },
            Request::ForkProof { proof, reply } => Planned::Proof {
                proof: proof.0,
                new: false,
                reply,
            },
        };
        Some(Draft::Ready(planned))
    }

    /// Plans an own append at the head of the own feed, to be signed with the batch; a
    /// keyed request already appended (or in flight) is answered with that entry instead,
    /// before the fence is consulted (a replay signs nothing); a request the fence refuses
    /// is answered with why.
    fn draft_own(
        &mut self,
        value: i64,
        data: String,
        key: Option<IdempotencyKey>,
        reply: Reply<OwnResult>,
        feeds: &mut HashMap<Author, PendingFeed>,
    ) -> Option<Draft> {
        let Some(identity) = &self.identity else {
            answer(reply, Err(AppendError::NoIdentity));
            return None;
        };
        let author = identity.author();
        let reply = match &key {
            Some(key) => match self.check_key(key, author, reply) {
                KeyCheck::Fresh(reply) => reply,
                KeyCheck::InFlight(head, reply) => {
                    return Some(Draft::Ready(Planned::Replay {
                        author,
                        head,
                        reply,
                    }));
                }
                KeyCheck::Answered => return None,
            },
            None => reply,
        };
        let feed = self.pending(feeds, author);
        let length = feed.head.map_or(0, |h| h.seq);
        if let Err(refused) = self.fence.check(length, crate::clock::instant()) {
            answer(reply, Err(AppendError::Fence(refused)));
            return None;
        }
        let seq = length + 1;
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
        if let Some(key) = &key {
            self.keys_in_flight
                .insert(key.clone(), FeedHead { seq, hash });
        }
        Some(Draft::Own {
            unsigned,
            hash,
            key,
            reply,
            signature: None,
        })
    }

    /// Applies a fence event in its turn and publishes the result (see the module docs).
    fn apply_fence(&mut self, event: FenceEvent) {
        match self.fence.apply(event) {
            Some(Released::AllTried) => {
                tracing::info!("own-feed fence: every configured peer tried, own appends open");
            }
            Some(Released::TimedOut { unheard }) => {
                tracing::warn!(
                    peers = %unheard.join(", "),
                    "own-feed fence: no confirmation from these peers, proceeding"
                );
            }
            None => {}
        }
        self.published.send_if_modified(|copy| {
            let changed = *copy != self.fence;
            if changed {
                copy.clone_from(&self.fence);
            }
            changed
        });
    }

    /// Turns signed drafts into the batch for the syncer.
    fn seal(&self, drafts: Vec<Draft>, epoch: u64) -> Sealed {
        let mut requests = Vec::with_capacity(drafts.len());
        let mut unsigned = false;
        for draft in drafts {
            match draft {
                Draft::Ready(planned) => requests.push(planned),
                Draft::Own {
                    unsigned: entry,
                    hash,
                    key,
                    reply,
                    signature: Some(signature),
                } => requests.push(Planned::Own {
                    record: Record::new(entry.with_signature(signature), hash, key),
                    reply,
                }),
                Draft::Own {
                    reply,
                    signature: None,
                    ..
                } => {
                    unsigned = true;
                    answer(
                        reply,
                        Err(AppendError::Internal("an own entry was left unsigned")),
                    );
                }
            }
        }
        if unsigned {
            // Cannot happen (`sign` gives every own draft a signature); if it did, the view
            // counts an entry that will never be written, so start a new epoch: this batch
            // and every one in flight fail, and planning starts again from the index.
            tracing::error!("an own entry was left unsigned; failing the batches in flight");
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
        Sealed { requests, epoch }
    }

    /// Signs every own draft. One chunk per core, each signed as a batch (which shares the
    /// costly field inversion, see `Identity::sign_hashes`). The planner thread is a worker
    /// of its own pool, so it signs one chunk itself instead of waiting for a woken thread.
    fn sign(&self, drafts: &mut [Draft]) {
        // Own drafts exist only with an identity (checked when they were planned).
        let Some(identity) = &self.identity else {
            return;
        };
        let chunk = drafts
            .len()
            .div_ceil(rayon::current_num_threads().max(1))
            .max(MIN_SIGN_CHUNK);
        drafts.par_chunks_mut(chunk).for_each(|part| {
            let hashes: Vec<Hash> = part
                .iter()
                .filter_map(|d| match d {
                    Draft::Own { hash, .. } => Some(*hash),
                    Draft::Ready(_) => None,
                })
                .collect();
            if hashes.is_empty() {
                return;
            }
            // One signature per hash, in order (`sign_hashes`'s contract).
            let mut signatures = identity.sign_hashes(&hashes).into_iter();
            for draft in part.iter_mut() {
                if let Draft::Own { signature, .. } = draft {
                    *signature = signatures.next();
                }
            }
        });
    }

    /// Deduplicates a keyed own request (see the module docs): `Fresh` if it is to be
    /// appended, `InFlight` if it waits for the append under its key, else answered here.
    fn check_key(&self, key: &IdempotencyKey, author: Author, reply: Reply<OwnResult>) -> KeyCheck {
        if let Some(&head) = self.keys_in_flight.get(key) {
            return KeyCheck::InFlight(head, reply);
        }
        match keys::find(&*self.io, &self.file, &self.index, key) {
            // A record of another feed holds the key only if this data directory once ran
            // under another identity: not an append of this feed, so not a replay.
            Ok(Some(record)) if record.entry.author == author => {
                answer(
                    reply,
                    Ok(OwnAppend::Replayed {
                        seq: record.entry.seq,
                        hash: record.hash,
                    }),
                );
                KeyCheck::Answered
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
                answer(reply, Err(AppendError::Io(Arc::new(reason))));
                KeyCheck::Answered
            }
        }
    }

    /// Drops what has become durable from the planner's view of each feed, and forgets a
    /// feed with nothing left in flight: the index is then the whole truth about it, and the
    /// view is rebuilt from it on demand.
    fn refresh_feeds(&mut self) {
        if self.feeds.is_empty() && self.keys_in_flight.is_empty() {
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
        self.feeds.retain(|author, feed| {
            let durable = index.feeds.get(author).map_or(0, |f| f.length());
            while feed.base_len < durable && !feed.planned.is_empty() {
                feed.planned.pop_front();
                feed.base_len += 1;
            }
            !feed.planned.is_empty()
        });
    }

    /// Places each entry against the feed heads; stops at the first held entry that cannot
    /// be read back, returning the error beside what was placed before it.
    fn plan_foreign(
        &self,
        entries: Vec<Checked>,
        feeds: &mut HashMap<Author, PendingFeed>,
    ) -> (Vec<Placed>, Option<AppendError>) {
        let mut placed = Vec::with_capacity(entries.len());
        for checked in entries {
            if let Err(e) = checked.verdict {
                placed.push(Placed::Decided(Outcome::Rejected(e)));
                continue;
            }
            let entry = checked.entry;
            let hash = checked.hash;
            let feed = self.pending(feeds, entry.author);
            let length = feed.head.map_or(0, |h| h.seq);
            let held = if entry.seq >= 1 && entry.seq <= length {
                match self.held_hash(feed, &entry.author, entry.seq) {
                    Ok(hash) => Some(hash),
                    Err(e) => return (placed, Some(e)),
                }
            } else {
                None
            };
            let feed = self.pending(feeds, entry.author);
            let decided = match validate::place(entry.seq, &hash, length, held) {
                Placement::Duplicate => Outcome::Duplicate(hash),
                Placement::Fork { held } => Outcome::Fork {
                    seq: entry.seq,
                    held,
                    offered: hash,
                },
                Placement::Gap { next } => Outcome::Gap { next },
                // Unreachable here: `held` was read above for every held position.
                Placement::Held => {
                    tracing::error!(
                        seq = entry.seq, author = %entry.author,
                        "the index holds an entry without its hash"
                    );
                    let missing =
                        AppendError::Internal("the index holds an entry without its hash");
                    return (placed, Some(missing));
                }
                Placement::Next => {
                    if let Err(e) = validate::check_link(&entry, feed.head.as_ref()) {
                        placed.push(Placed::Decided(Outcome::Rejected(e)));
                        continue;
                    }
                    feed.head = Some(FeedHead {
                        seq: entry.seq,
                        hash,
                    });
                    feed.last_timestamp = entry.timestamp;
                    feed.planned.push_back(hash);
                    placed.push(Placed::Write(Record::new(entry, hash, None)));
                    continue;
                }
            };
            placed.push(Placed::Decided(decided));
        }
        (placed, None)
    }
}

mod whole;

#[cfg(test)]
#[path = "planner_tests.rs"]
mod tests;
