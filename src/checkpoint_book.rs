//! The node's checkpoint book: per feed it holds, the newest author checkpoint it verified
//! and the cosignatures over it ([`FeedCheckpoints`]), kept, served, gossiped and cosigned.
//! docs/TLOG.md ("The checkpoint book") states the rules for operators.
//!
//! # What a note does ([`CheckpointBook::offer`])
//!
//! A note from a peer is refused before parsing when over [`MAX_NOTE_BYTES`]; it must parse
//! as a signed checkpoint of a feed origin (`kappalog/feed/<hex>`), else it is a violation
//! (`Err`). For a feed the node does not hold it is dropped unchecked (`Ok(false)`): entries
//! come first, so the book holds at most one state per feed held. Otherwise, under the
//! book's one lock:
//!
//! 1. the author's line is checked and the checkpoint offered to the feed's state with
//!    `held_size = trees.size(author)` and `root_at = trees.root` (a bad author signature is
//!    a violation; stale, pending, superseded are `Ok(false)`);
//! 2. each other line is offered as a cosignature, if its key can be known
//!    ([`cosigners`]): at most [`MAX_SIGNATURES`](crate::tlog::note::MAX_SIGNATURES) verifications per note, since a note has
//!    no more lines;
//! 3. if the served note changed, it is journalled ([`journal`]), subscribers are told
//!    ([`CheckpointBook::subscribe`]) and `offer` answers `Ok(true)`.
//!
//! A note an operator submits (`POST /feeds/AUTHOR/checkpoint`, [`CheckpointBook::submit`]),
//! e.g. with a `--witness-key` witness's cosignature, takes the same path after two checks
//! that refuse it whole: it must be of the feed it was submitted for, and every line under
//! a key the book knows must verify. [`NoteReport`] says what became of each part.
//!
//! Checkpoints beyond the entries held wait (one slot per feed) and are offered again
//! each time the trees grow ([`CheckpointBook::entries_arrived`]). The node's own feed's
//! author checkpoint is the tree follower's ([`crate::tree::Trees::own_checkpoint`]),
//! offered as it changes ([`CheckpointBook::offer_own`]).
//!
//! # Cosigning ([`cosign`])
//!
//! Once a second, every feed whose served author checkpoint grew (not the node's own) is
//! cosigned in one batch through the node's witness journal, with one fdatasync for the
//! batch, and only then are the cosignatures added to the book, which serves and gossips
//! them. Nothing is cosigned while the own-feed fence is closed.
//!
//! # Durability
//!
//! The served notes are replayed from `DATA_DIR/checkpoints` at open, without reading the
//! log: the journal was written from verified notes, so replay trusts each note's own root
//! (its signatures are checked again). Cosignatures over other sizes than the served one
//! (they count in k) and the pending checkpoint are not journalled: peers send them again.

pub mod copies;
pub mod cosign;
pub mod cosigners;
mod counters;
mod gossip;
pub mod journal;
mod offer;
mod replay;
mod report;
mod submit;
mod task;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::identity::Author;
use crate::poison::lock;
use crate::store::StoreReader;
use crate::tlog::author_checkpoint::AuthorCheckpointError;
use crate::tlog::checkpoint::{CheckpointError, SignedCheckpoint};
use crate::tlog::feed_checkpoints::{FeedCheckpoints, ForkEvidence, Offer};
use crate::tlog::note::MAX_NOTE_BYTES;
use crate::tlog::split_view::CheckpointForkProof;
use crate::tree::{TreeReadError, Trees};

pub use cosigners::CosignerKeys;
pub use counters::{BookCounters, BookStats};
pub use journal::{Journal, JournalOpenError, JournalOptions, CHECKPOINTS_FILE};
pub use report::{AuthorOutcome, CosignatureTally, NoteOutcome, NoteReport};
pub use task::{record_split_view, start};

/// Served-note changes buffered per subscriber: a subscriber that lags re-reads
/// [`CheckpointBook::items`].
pub const CHANGE_CHANNEL_CAPACITY: usize = 1024;

/// One feed with a served note, as sync advertises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BookItem {
    /// The feed.
    pub author: Author,
    /// The served checkpoint's tree size.
    pub size: u64,
    /// SHA-256 of the served note's bytes.
    pub note_sha256: [u8; 32],
}

/// Why an offered note is a peer's violation (or, [`CheckpointOfferError::Storage`], the
/// node's own trouble).
#[derive(Debug, thiserror::Error)]
pub enum CheckpointOfferError {
    /// Over the signed-note cap: refused before parsing.
    #[error("checkpoint note of {len} bytes is over the cap of {MAX_NOTE_BYTES}")]
    TooLarge {
        /// The note's length.
        len: usize,
    },
    /// Not a signed checkpoint.
    #[error("malformed checkpoint note: {0}")]
    Malformed(#[from] CheckpointError),
    /// Not a feed's checkpoint, or the author's signature is missing or bad.
    #[error("not an author checkpoint: {0}")]
    NotAuthorSigned(#[from] AuthorCheckpointError),
    /// Submitted for one feed, but a checkpoint of another ([`CheckpointBook::submit`]).
    #[error("the note is a checkpoint of origin {origin:?}, not of feed {feed}")]
    OtherFeed {
        /// The feed it was submitted for.
        feed: Author,
        /// The note's origin.
        origin: String,
    },
    /// Submitted with a line under a key the book knows that does not verify
    /// ([`CheckpointBook::submit`]).
    #[error("the cosignature line of {name:?} does not verify under its known key")]
    BadCosignature {
        /// The line's key name.
        name: String,
    },
    /// The node's tree could not be read: not the peer's fault.
    #[error("reading the tree: {0}")]
    Storage(TreeReadError),
}

impl CheckpointOfferError {
    /// Whether the peer broke the protocol (everything but the node's own storage error).
    pub fn is_violation(&self) -> bool {
        !matches!(self, CheckpointOfferError::Storage(_))
    }
}

/// Called with each split-view proof the book finds, checked (the node records it).
pub type ForkSink = Arc<dyn Fn(CheckpointForkProof) + Send + Sync>;

/// Whether a feed is forked (entry fork or split view): the book neither serves nor takes
/// notes for it.
pub type ForkedCheck = Arc<dyn Fn(&Author) -> bool + Send + Sync>;

/// The node's checkpoint book: cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct CheckpointBook {
    inner: Arc<Inner>,
}

struct Inner {
    trees: Trees,
    reader: StoreReader,
    own: Author,
    keys: CosignerKeys,
    state: Mutex<State>,
    changed: broadcast::Sender<Author>,
    counters: BookCounters,
    on_fork: Mutex<Option<ForkSink>>,
    is_forked: Mutex<Option<ForkedCheck>>,
}

struct State {
    feeds: BTreeMap<Author, Feed>,
    /// Feeds with a checkpoint waiting for entries.
    pending: BTreeSet<Author>,
    /// Feeds whose served author checkpoint grew since the last cosigning tick.
    to_cosign: BTreeSet<Author>,
    /// None once a write failed: the book serves on from memory, journals nothing more.
    journal: Option<Journal>,
}

struct Feed {
    checkpoints: FeedCheckpoints,
    served: Option<Served>,
}

#[derive(Clone)]
struct Served {
    /// The checkpoint with its cosignature lines, parsed once (HTTP serves it per request).
    checkpoint: Arc<SignedCheckpoint>,
    /// Its bytes, which sync sends.
    note: Arc<[u8]>,
    /// Sync's own digest of the note: equal notes reconcile as equal items.
    digest: [u8; 32],
}

impl Served {
    fn new(checkpoint: SignedCheckpoint) -> Served {
        let note: Arc<[u8]> = checkpoint.to_bytes().into();
        Served {
            digest: crate::sync::checkpoint_book::note_digest(&note).0,
            note,
            checkpoint: Arc::new(checkpoint),
        }
    }

    fn size(&self) -> u64 {
        self.checkpoint.checkpoint().size()
    }
}

impl CheckpointBook {
    /// A book over `trees` and the store `reader` (which feeds are held), with the notes
    /// replayed from `journal` (`replayed`: what [`Journal::open`] read).
    pub fn new(
        trees: Trees,
        reader: StoreReader,
        own: Author,
        keys: CosignerKeys,
        journal: Journal,
        replayed: BTreeMap<Author, Vec<u8>>,
    ) -> CheckpointBook {
        let (changed, _) = broadcast::channel(CHANGE_CHANNEL_CAPACITY);
        let book = CheckpointBook {
            inner: Arc::new(Inner {
                trees,
                reader,
                own,
                keys,
                state: Mutex::new(State {
                    feeds: BTreeMap::new(),
                    pending: BTreeSet::new(),
                    to_cosign: BTreeSet::new(),
                    journal: Some(journal),
                }),
                changed,
                counters: BookCounters::default(),
                on_fork: Mutex::new(None),
                is_forked: Mutex::new(None),
            }),
        };
        book.replay(replayed);
        book
    }

    /// Where split-view proofs go (the node's fork set); without one they are logged only.
    pub fn set_fork_sink(&self, sink: ForkSink) {
        *lock(&self.inner.on_fork) = Some(sink);
    }

    /// How the book learns which feeds are forked (the node's fork set); without one, none.
    pub fn set_forked_check(&self, check: ForkedCheck) {
        *lock(&self.inner.is_forked) = Some(check);
    }

    fn is_forked(&self, author: &Author) -> bool {
        let check = lock(&self.inner.is_forked).clone();
        check.is_some_and(|check| check(author))
    }

    /// Per feed with a served note (forked feeds left out): its author, size and the
    /// note's SHA-256, by author.
    pub fn items(&self) -> Vec<BookItem> {
        let check = lock(&self.inner.is_forked).clone();
        let state = lock(&self.inner.state);
        state
            .feeds
            .iter()
            .filter(|(author, _)| !check.as_ref().is_some_and(|forked| forked(author)))
            .filter_map(|(author, feed)| {
                feed.served.as_ref().map(|s| BookItem {
                    author: *author,
                    size: s.size(),
                    note_sha256: s.digest,
                })
            })
            .collect()
    }

    /// The served note of `author`'s feed: the author checkpoint with the cosignatures over
    /// it. None before any author checkpoint of it was kept.
    pub fn served(&self, author: &Author) -> Option<Arc<[u8]>> {
        self.with_served(author, |s| s.note.clone())
    }

    /// The served note of `author`'s feed, parsed: what `GET /feeds/AUTHOR/checkpoint` and
    /// proofs serve. None as for [`CheckpointBook::served`].
    pub fn served_checkpoint(&self, author: &Author) -> Option<Arc<SignedCheckpoint>> {
        self.with_served(author, |s| Arc::clone(&s.checkpoint))
    }

    /// `f` of `author`'s served note, under the lock; None for a forked feed or one with no
    /// served note.
    fn with_served<T>(&self, author: &Author, f: impl FnOnce(&Served) -> T) -> Option<T> {
        if self.is_forked(author) {
            return None;
        }
        lock(&self.inner.state)
            .feeds
            .get(author)?
            .served
            .as_ref()
            .map(f)
    }

    /// The served checkpoint's size and k (cosigners consistent with it) of `author`'s
    /// feed, for `/feeds`: (0, 0) without one.
    pub fn size_and_k(&self, author: &Author) -> (u64, usize) {
        let state = lock(&self.inner.state);
        state.feeds.get(author).map_or((0, 0), |feed| {
            let size = feed.served.as_ref().map_or(0, Served::size);
            (size, feed.checkpoints.k())
        })
    }

    /// Tells of each feed whose served note changed.
    pub fn subscribe(&self) -> broadcast::Receiver<Author> {
        self.inner.changed.subscribe()
    }

    /// The counters so far.
    pub fn stats(&self) -> BookStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        BookStats {
            feeds: lock(&self.inner.state).feeds.len() as u64,
            notes_received: get(&c.notes_received),
            notes_kept: get(&c.notes_kept),
            notes_refused: get(&c.notes_refused),
            notes_unknown_feed: get(&c.notes_unknown_feed),
            cosignatures_unknown_key: get(&c.cosignatures_unknown_key),
            cosignatures_made: get(&c.cosignatures_made),
            forks_found: get(&c.forks_found),
            copy_searches: get(&c.copy_searches),
            copy_searches_failed: get(&c.copy_searches_failed),
            copies_replaced: get(&c.copies_replaced),
        }
    }

    /// The trees grew: checkpoints waiting for entries that are now held are offered again.
    /// Returns how many served notes changed.
    pub fn entries_arrived(&self) -> usize {
        let trees = &self.inner.trees;
        let mut state = lock(&self.inner.state);
        let waiting: Vec<Author> = state.pending.iter().copied().collect();
        let mut changed = 0;
        let mut forks = Vec::new();
        for author in waiting {
            let Some(feed) = state.feeds.get_mut(&author) else {
                state.pending.remove(&author);
                continue;
            };
            let held_size = trees.size(&author);
            let outcome = feed
                .checkpoints
                .entries_arrived(held_size, |size| trees.root(&author, size));
            match outcome {
                Ok(None) => continue,
                Ok(Some(Offer::Fork(evidence))) => forks.push((author, *evidence)),
                Ok(Some(_)) => {}
                Err(e) => {
                    tracing::warn!(%author, "checkpoint waiting for entries not checked: {e}");
                    continue;
                }
            }
            if feed.checkpoints.pending().is_none() {
                state.pending.remove(&author);
            }
            if self.settle(&mut state, author) {
                changed += 1;
            }
        }
        drop(state);
        for (author, evidence) in forks {
            self.fork_found(author, evidence);
        }
        changed
    }

    /// Step 3: if `author`'s served note changed, journal it, tell subscribers, and mark it
    /// for cosigning if its author checkpoint grew. Whether it changed.
    fn settle(&self, state: &mut State, author: Author) -> bool {
        let Some(feed) = state.feeds.get_mut(&author) else {
            return false;
        };
        let Some(served) = feed.checkpoints.served() else {
            return false;
        };
        let served = Served::new(served);
        if feed.served.as_ref().is_some_and(|s| s.note == served.note) {
            return false;
        }
        let grew = feed
            .served
            .as_ref()
            .is_none_or(|s| s.size() < served.size());
        feed.served = Some(served);
        let note = feed.served.as_ref().map(|s| s.note.clone());
        if grew && author != self.inner.own {
            state.to_cosign.insert(author);
        }
        if let (Some(journal), Some(note)) = (state.journal.as_mut(), note) {
            if let Err(e) = journal.append(&author, &note) {
                tracing::error!(
                    "checkpoints journal: {e}; served notes are kept in memory only until restart"
                );
                state.journal = None;
            }
        }
        let _ = self.inner.changed.send(author);
        true
    }

    /// Builds, checks and hands on the proof of a split view.
    fn fork_found(&self, author: Author, evidence: ForkEvidence) {
        let proof_hashes = match evidence.consistency_sizes() {
            Some((old, new)) => match self.inner.trees.consistency_proof(&author, old, new) {
                Ok(hashes) => hashes,
                Err(e) => {
                    tracing::warn!(%author, "split view found, proof not built: {e}");
                    return;
                }
            },
            None => Vec::new(),
        };
        let Some(proof) = evidence.into_proof(&proof_hashes) else {
            tracing::warn!(%author, "split view found, but the node's proof does not check");
            return;
        };
        self.inner
            .counters
            .forks_found
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%author, "split view: two author checkpoints conflict");
        let sink = lock(&self.inner.on_fork).clone();
        if let Some(sink) = sink {
            sink(proof);
        }
    }

    /// Makes the journal's appends so far durable (at most once a second, by the task).
    pub fn flush(&self) {
        let mut state = lock(&self.inner.state);
        let Some(journal) = state.journal.as_mut() else {
            return;
        };
        if let Err(e) = journal.flush() {
            tracing::error!(
                "checkpoints journal: {e}; served notes are kept in memory only until restart"
            );
            state.journal = None;
        }
    }

    /// Takes the feeds to cosign this tick, with their served author checkpoints.
    fn take_to_cosign(&self) -> Vec<(Author, SignedCheckpoint)> {
        let mut state = lock(&self.inner.state);
        let authors = std::mem::take(&mut state.to_cosign);
        authors
            .into_iter()
            .filter_map(|author| {
                let current = state.feeds.get(&author)?.checkpoints.current()?;
                Some((author, current.signed().clone()))
            })
            .collect()
    }

    /// Puts feeds back for the next tick (their cosigning could not be tried now).
    fn retry_cosign(&self, authors: impl IntoIterator<Item = Author>) {
        lock(&self.inner.state).to_cosign.extend(authors);
    }

    fn trees(&self) -> &Trees {
        &self.inner.trees
    }
}

impl std::fmt::Debug for CheckpointBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointBook")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
