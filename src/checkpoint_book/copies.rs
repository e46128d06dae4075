//! The node's side of a copy search (docs/TLOG.md section 8, "Two signatures of one entry
//! hash"): which of a v4 peer's notes start one, the node's tree and log as the pure search
//! ([`CopySearch`]) and the peer read them, and what a finished search does.
//!
//! A search starts when a peer's author checkpoint, validly signed, is of a size the node's
//! tree covers and its root is not the node's: the node holds another copy of some entry
//! (the same entry hash under another signature) or another entry (a fork whose other side
//! has not reached it). At most one search runs per feed (a note that arrives meanwhile is
//! not searched: the author's next checkpoint is), and a peer whose search of a feed ended
//! starts no other of that feed for [`RETRY_AFTER`], so a peer repeating a note it cannot
//! back costs the node one search a minute per feed, and keeps no other peer from trying.
//!
//! What a search finds: fork proofs are recorded before the session hears `Done` (the feed
//! is then excluded, as for any proof); copies are queued and appended as replacement
//! records ([`crate::store::Store::replace_copies`]) by a task of the node's, in batches at
//! least [`REPLACE_INTERVAL`] apart ([`Batches`]: the tree follows a replacement by
//! rebuilding whole, which a misbehaving author must not be able to make a node do once per
//! checkpoint). Each note is then offered to the book again once the tree's root at its size
//! is the note's.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::offer::parse_note;
use crate::checkpoint_book::CheckpointBook;
use crate::copy_search::{
    CopySearch, Found, LocalTree, SearchError, Step, SubtreeWant, MAX_WANT_ENTRIES,
};
use crate::entry::Entry;
use crate::hash::Hash;
use crate::identity::Author;
use crate::node::Node;
use crate::poison::lock;
use crate::store::ReplaceOutcome;
use crate::sync::copy_searches::{CopySearchRun, CopySearches, SearchEnd};
use crate::sync::message::EncodedEntry;
use crate::sync::subtrees::{SubtreeData, WantSubtrees};
use crate::tlog::author_checkpoint::AuthorCheckpoint;
use crate::tlog::merkle::Hash as TreeHash;
use crate::tree::Trees;

/// How long a peer whose search of a feed ended waits before it may start another of it.
pub const RETRY_AFTER: Duration = Duration::from_secs(60);
/// How long a note of entries the store holds waits for the tree follower to cover them.
const TREE_CATCH_UP: Duration = Duration::from_secs(2);
/// The shortest time between two replacement batches ([`Batches`]).
pub const REPLACE_INTERVAL: Duration = Duration::from_secs(60);
/// The most searches whose copies wait for a batch.
const MAX_QUEUED: usize = 256;
/// How long the re-offer of a note waits for the tree to show the copies found.
const REOFFER_TIMEOUT: Duration = Duration::from_secs(600);

/// The node's copy searches, handed to sync ([`crate::sync::SyncConfig::copy_searches`]).
#[derive(Clone)]
pub struct NodeCopySearches {
    inner: Arc<Inner>,
}

struct Inner {
    node: Node,
    trees: Trees,
    book: CheckpointBook,
    slots: Mutex<Slots>,
    batches: Mutex<Batches>,
}

impl NodeCopySearches {
    /// Copy searches over `node`'s log, its `trees` and its checkpoint `book`.
    pub fn new(node: Node, trees: Trees, book: CheckpointBook) -> NodeCopySearches {
        NodeCopySearches {
            inner: Arc::new(Inner {
                node,
                trees,
                book,
                slots: Mutex::new(Slots::default()),
                batches: Mutex::new(Batches::default()),
            }),
        }
    }

    /// Whether the tree covers `size` leaves of `author`'s feed, waiting up to
    /// [`TREE_CATCH_UP`] when the store holds them already and only the follower lags (by
    /// milliseconds, usually): a note sent right behind its entries finds the tree a step
    /// behind, and the book keeps it pending and re-offers it without a peer to search.
    fn tree_covers(&self, author: &Author, size: u64) -> bool {
        let inner = &self.inner;
        let held = inner.node.reader().head(author).map_or(0, |head| head.seq);
        if size > held {
            return false;
        }
        let deadline = Instant::now() + TREE_CATCH_UP;
        // On a blocking thread (the trait's contract), so a short bounded poll is fine.
        while inner.trees.size(author) < size {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    fn take_slot(&self, author: Author, peer: Author) -> bool {
        lock(&self.inner.slots).take(author, peer, Instant::now())
    }

    fn release_slot(&self, author: Author, peer: Author) {
        lock(&self.inner.slots).release(author, peer, Instant::now());
    }
}

/// Which searches may start (module docs): one per feed at a time, and none by a peer whose
/// search of the feed ended within [`RETRY_AFTER`].
#[derive(Debug, Default)]
struct Slots {
    /// Feeds with a search running.
    running: HashSet<Author>,
    /// Per (feed, peer), when their last search ended; entries older than [`RETRY_AFTER`]
    /// are dropped at the next take, so it holds at most the searches of one minute.
    ended: HashMap<(Author, Author), Instant>,
}

impl Slots {
    /// Takes the feed's slot for `peer`, if it may start a search now.
    fn take(&mut self, author: Author, peer: Author, now: Instant) -> bool {
        self.ended
            .retain(|_, at| now.saturating_duration_since(*at) < RETRY_AFTER);
        !self.ended.contains_key(&(author, peer)) && self.running.insert(author)
    }

    /// Gives the slot back when a search ends, however it ends (dropped by the session too).
    fn release(&mut self, author: Author, peer: Author, now: Instant) {
        self.running.remove(&author);
        self.ended.insert((author, peer), now);
    }
}

impl CopySearches for NodeCopySearches {
    fn subtrees(&self, author: &Author, level: u8, index: u64, count: u16) -> Option<SubtreeData> {
        let inner = &self.inner;
        if inner.node.is_forked(author) {
            return None;
        }
        let first_leaf = index.checked_mul(1u64.checked_shl(u32::from(level))?)?;
        let leaves = u64::from(count).checked_shl(u32::from(level))?;
        // Only what the tree covers: the peer compares it with a checkpoint over the tree.
        if first_leaf.checked_add(leaves)? > inner.trees.size(author) {
            return None;
        }
        if level > 0 {
            return inner
                .trees
                .subtree_hashes(author, level, index, count)
                .ok()
                .map(|hashes| SubtreeData::Hashes(hashes.into_iter().map(Hash).collect()));
        }
        let entries = inner
            .node
            .reader()
            .range_encoded(author, index + 1, usize::from(count.min(MAX_WANT_ENTRIES)))
            .ok()?;
        (entries.len() == usize::from(count))
            .then(|| SubtreeData::Entries(entries.into_iter().map(EncodedEntry).collect()))
    }

    fn start(&self, peer: &Author, note: &[u8]) -> Option<Box<dyn CopySearchRun>> {
        // Bounded and parsed as the book parses a peer's note; verified below, once the
        // cheap checks leave a reason to search.
        let (author, signed) = parse_note(note).ok()?;
        let checkpoint = signed.checkpoint();
        let inner = &self.inner;
        let size = checkpoint.size();
        // The own feed's copies are the ones this node signed: a checkpoint over others is
        // a split view of its key, the book's to record, never a reason to replace.
        if author == inner.node.author() || size == 0 || inner.node.is_forked(&author) {
            return None;
        }
        if !self.tree_covers(&author, size) {
            return None;
        }
        if inner.trees.root(&author, size).ok()? == *checkpoint.root() {
            return None;
        }
        AuthorCheckpoint::verify(&signed).ok()?;
        if !self.take_slot(author, *peer) {
            return None;
        }
        inner
            .book
            .inner
            .counters
            .copy_searches
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(%author, size, peer = %peer, "an author checkpoint disagrees with the tree: searching the peer's copies");
        Some(Box::new(Run {
            searches: self.clone(),
            peer: *peer,
            note: note.to_vec(),
            search: CopySearch::new(author, size, *checkpoint.root()),
            author,
            size,
            root: *checkpoint.root(),
            applied: false,
        }))
    }
}

/// One running search.
struct Run {
    searches: NodeCopySearches,
    peer: Author,
    note: Vec<u8>,
    search: CopySearch,
    author: Author,
    size: u64,
    root: TreeHash,
    /// Whether it ended with what it found applied.
    applied: bool,
}

impl Run {
    /// Maps a step of the pure search to the session's terms, applying what it found.
    fn step(&mut self, step: Result<Step, SearchError>) -> Result<Vec<WantSubtrees>, SearchEnd> {
        match step {
            Ok(Step::Want(wants)) => Ok(wants.iter().map(|w| self.want(w)).collect()),
            Ok(Step::Found(found)) => self.apply(found),
            Err(SearchError::BadReply { want, violation }) => Err(SearchEnd::Violation(format!(
                "copy search of {}: bad reply to {want:?}: {violation}",
                self.author
            ))),
            Err(e) => {
                tracing::info!(author = %self.author, size = self.size, peer = %self.peer, "copy search gave up: {e}");
                Err(SearchEnd::GaveUp(e.to_string()))
            }
        }
    }

    fn want(&self, want: &SubtreeWant) -> WantSubtrees {
        WantSubtrees {
            author: self.author,
            level: want.level,
            index: want.index,
            count: want.count,
        }
    }

    /// Records the forks, and queues the copies for the next replacement batch
    /// ([`Batches`]), after which the note is offered again.
    fn apply(&mut self, found: Found) -> Result<Vec<WantSubtrees>, SearchEnd> {
        let inner = &self.searches.inner;
        for proof in found.forks {
            tracing::warn!(author = %self.author, peer = %self.peer, "copy search found a fork");
            if let Err(e) = inner.node.record_proof(proof) {
                return Err(SearchEnd::GaveUp(format!("recording a fork proof: {e}")));
            }
        }
        if !found.copies.is_empty() {
            let queued = Queued {
                copies: found.copies,
                note: self.note.clone(),
                peer: self.peer,
                author: self.author,
                size: self.size,
                root: self.root,
            };
            let start_applier = lock(&inner.batches)
                .push(queued)
                .ok_or_else(|| SearchEnd::GaveUp("too many copies waiting".into()))?;
            if start_applier {
                inner.node.spawn(apply_batches(self.searches.clone()));
            }
        }
        self.applied = true;
        Err(SearchEnd::Done)
    }
}

/// Applies the queued copies in batches at least [`REPLACE_INTERVAL`] apart, until the
/// queue is empty.
async fn apply_batches(searches: NodeCopySearches) {
    let inner = searches.inner.clone();
    loop {
        let due = lock(&inner.batches).due(REPLACE_INTERVAL);
        if let Some(due) = due {
            tokio::time::sleep_until(due.into()).await;
        }
        let batch = lock(&inner.batches).take(Instant::now());
        if batch.is_empty() {
            return;
        }
        let copies: Vec<Entry> = batch.iter().flat_map(|q| q.copies.clone()).collect();
        let node = inner.node.clone();
        let outcomes = crate::determinism::blocking(move || node.replace_copies(copies))
            .await
            .map_err(|e| e.to_string())
            .and_then(|replaced| replaced.map_err(|e| e.to_string()));
        let outcomes = match outcomes {
            Ok(outcomes) => outcomes,
            Err(e) => {
                tracing::error!("replacing copies an author checkpoint chose: {e}");
                count_failed(&inner, batch.len());
                continue;
            }
        };
        let replaced = outcomes
            .iter()
            .filter(|o| **o == ReplaceOutcome::Replaced)
            .count();
        inner
            .book
            .inner
            .counters
            .copies_replaced
            .fetch_add(replaced as u64, Ordering::Relaxed);
        let mut outcomes = outcomes.into_iter();
        for item in batch {
            let mine: Vec<ReplaceOutcome> = outcomes.by_ref().take(item.copies.len()).collect();
            let kept = mine
                .iter()
                .all(|o| matches!(o, ReplaceOutcome::Replaced | ReplaceOutcome::AlreadyCurrent));
            if !kept {
                tracing::warn!(author = %item.author, "the store did not keep the copies found: {mine:?}");
                count_failed(&inner, 1);
                continue;
            }
            tracing::warn!(author = %item.author, size = item.size, peer = %item.peer, copies = mine.len(),
                "kept the author's copies of entries signed twice: its checkpoint chose them");
            reoffer_when_rebuilt(inner.clone(), item);
        }
    }
}

fn count_failed(inner: &Inner, searches: usize) {
    let counters = &inner.book.inner.counters;
    counters
        .copy_searches_failed
        .fetch_add(searches as u64, Ordering::Relaxed);
}

/// Offers `item`'s note to the book again once the feed's tree has the checkpoint's root at
/// its size (the follower rebuilds it after the replacement), within [`REOFFER_TIMEOUT`].
fn reoffer_when_rebuilt(inner: Arc<Inner>, item: Queued) {
    let node = inner.node.clone();
    node.spawn(async move {
        let Queued {
            note,
            peer,
            author,
            size,
            root,
            ..
        } = item;
        let mut published = inner.trees.subscribe();
        let shows = || inner.trees.root(&author, size).is_ok_and(|r| r == root);
        let reached = tokio::time::timeout(REOFFER_TIMEOUT, async {
            while !shows() {
                if published.changed().await.is_err() {
                    return false;
                }
            }
            true
        })
        .await;
        if !matches!(reached, Ok(true)) {
            tracing::warn!(%author, size, "the tree did not show the replaced copies in time: the checkpoint is not re-offered");
            return;
        }
        let book = inner.book.clone();
        let offered = crate::determinism::blocking(move || book.offer(&peer, &note))
            .await
            .map_err(|e| e.to_string())
            .and_then(|offered| offered.map_err(|e| e.to_string()));
        if let Err(e) = offered {
            tracing::warn!(%author, "re-offering the checkpoint: {e}");
        }
    });
}

/// One search's copies waiting for their batch, with the note that chose them.
#[derive(Debug)]
struct Queued {
    copies: Vec<Entry>,
    note: Vec<u8>,
    peer: Author,
    author: Author,
    size: u64,
    root: TreeHash,
}

/// Copies waiting to be replaced. Each replacement makes the tree cache rebuild whole
/// (docs/TLOG.md, end of section 8), so batches are at least the interval apart however
/// many searches find copies: a misbehaving author makes a node rebuild at most once an
/// interval, not once per checkpoint.
#[derive(Debug, Default)]
struct Batches {
    queued: Vec<Queued>,
    /// Whether a task applies the queue (or waits to).
    applier: bool,
    /// When the last batch was applied.
    last: Option<Instant>,
}

impl Batches {
    /// Queues one search's copies: `Some(true)` when the caller must start the applier,
    /// `None` when [`MAX_QUEUED`] searches wait already.
    fn push(&mut self, item: Queued) -> Option<bool> {
        if self.queued.len() >= MAX_QUEUED {
            return None;
        }
        self.queued.push(item);
        let start = !self.applier;
        self.applier = true;
        Some(start)
    }

    /// When the next batch may be applied (`None`: now).
    fn due(&self, interval: Duration) -> Option<Instant> {
        self.last.map(|last| last + interval)
    }

    /// Takes the queue to apply at `now`; an empty one stops the applier.
    fn take(&mut self, now: Instant) -> Vec<Queued> {
        let batch = std::mem::take(&mut self.queued);
        match batch.is_empty() {
            true => self.applier = false,
            false => self.last = Some(now),
        }
        batch
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if !self.applied {
            let counters = &self.searches.inner.book.inner.counters;
            counters
                .copy_searches_failed
                .fetch_add(1, Ordering::Relaxed);
        }
        self.searches.release_slot(self.author, self.peer);
    }
}

impl CopySearchRun for Run {
    fn author(&self) -> Author {
        self.author
    }

    fn start(&mut self) -> Result<Vec<WantSubtrees>, SearchEnd> {
        let step = self.search.start().map(Step::Want);
        self.step(step)
    }

    fn on_reply(
        &mut self,
        want: &WantSubtrees,
        data: Option<SubtreeData>,
    ) -> Result<Vec<WantSubtrees>, SearchEnd> {
        let Some(data) = data else {
            return Err(SearchEnd::GaveUp(format!(
                "the peer does not hold subtrees {}/{}+{}",
                want.level, want.index, want.count
            )));
        };
        let ask = SubtreeWant {
            level: want.level,
            index: want.index,
            count: want.count,
        };
        let inner = self.searches.inner.clone();
        let mut local = Local {
            inner: &inner,
            author: self.author,
        };
        let step = match data {
            SubtreeData::Hashes(hashes) => {
                let hashes: Vec<TreeHash> = hashes.iter().map(|h| h.0).collect();
                self.search.on_hashes(&ask, &hashes, &mut local)
            }
            SubtreeData::Entries(entries) => {
                let bytes: Vec<&[u8]> = entries.iter().map(|e| e.0.as_slice()).collect();
                self.search.on_entries(&ask, &bytes, &mut local)
            }
        };
        self.step(step)
    }
}

/// The node's tree and log as the search reads them.
struct Local<'a> {
    inner: &'a Inner,
    author: Author,
}

impl LocalTree for Local<'_> {
    fn subtree_hashes(
        &mut self,
        level: u8,
        index: u64,
        count: u16,
    ) -> Result<Vec<TreeHash>, String> {
        self.inner
            .trees
            .subtree_hashes(&self.author, level, index, count)
            .map_err(|e| e.to_string())
    }

    fn entry(&mut self, seq: u64) -> Result<Entry, String> {
        match self.inner.node.reader().get(&self.author, seq) {
            Ok(Some((entry, _))) => Ok(entry),
            Ok(None) => Err(format!("no entry at seq {seq}")),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(seed: u8) -> Queued {
        Queued {
            copies: Vec::new(),
            note: Vec::new(),
            peer: Author([seed; 32]),
            author: Author([seed; 32]),
            size: 1,
            root: [seed; 32],
        }
    }

    #[test]
    fn replacement_batches_are_an_interval_apart_and_one_applier_runs() {
        let interval = Duration::from_secs(60);
        let start = Instant::now();
        let mut batches = Batches::default();
        assert_eq!(
            batches.push(queued(1)),
            Some(true),
            "the first starts the applier"
        );
        assert_eq!(
            batches.push(queued(2)),
            Some(false),
            "one applier at a time"
        );
        assert_eq!(batches.due(interval), None, "the first batch goes at once");
        assert_eq!(batches.take(start).len(), 2, "both in one batch");
        assert_eq!(
            batches.push(queued(3)),
            Some(false),
            "the applier still runs"
        );
        assert_eq!(batches.due(interval), Some(start + interval));
        assert_eq!(batches.take(start + interval).len(), 1);
        assert!(
            batches.take(start + interval).is_empty(),
            "empty: the applier stops"
        );
        assert_eq!(
            batches.push(queued(4)),
            Some(true),
            "and the next push starts one"
        );
        assert_eq!(batches.due(interval), Some(start + 2 * interval));
        for seed in 0..u8::try_from(MAX_QUEUED - 1).unwrap() {
            assert!(batches.push(queued(seed)).is_some());
        }
        assert_eq!(batches.push(queued(5)), None, "a bounded queue");
    }

    #[test]
    fn one_search_a_feed_and_a_peer_retries_a_feed_after_a_minute() {
        let (feed, other_feed) = (Author([1; 32]), Author([2; 32]));
        let (peer, other_peer) = (Author([3; 32]), Author([4; 32]));
        let start = Instant::now();
        let mut slots = Slots::default();
        assert!(slots.take(feed, peer, start));
        assert!(
            !slots.take(feed, other_peer, start),
            "one search a feed at a time"
        );
        assert!(
            slots.take(other_feed, other_peer, start),
            "other feeds search on"
        );
        slots.release(feed, peer, start);
        assert!(!slots.take(feed, peer, start), "the same peer waits");
        let later = start + RETRY_AFTER - Duration::from_millis(1);
        assert!(!slots.take(feed, peer, later));
        assert!(
            slots.take(feed, other_peer, later),
            "another peer need not wait"
        );
        slots.release(feed, other_peer, later);
        assert!(
            slots.take(feed, peer, start + RETRY_AFTER),
            "after a minute it may"
        );
        assert_eq!(slots.ended.len(), 1, "what is past the minute is forgotten");
    }
}
