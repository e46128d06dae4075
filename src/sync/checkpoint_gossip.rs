//! Checkpoint gossip in a v3 session (docs/PROTOCOL.md section 7, "Checkpoints"): what the
//! sending half keeps to push each feed's served note to the peer, no more often than
//! [`CHECKPOINT_PUSH_INTERVAL_MS`] per feed, never to a peer known to hold it; and the bucket
//! the receiving half takes the peer's notes from ([`NoteBucket`]). Pure state: the halves do
//! the I/O. Also the checkpoint reconciliation's deadline ([`ReconcileDeadline`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

use super::checkpoint_book::{note_digest, SharedBook};
use super::feed_have::FeedHave;
use super::message::CHECKPOINT_PUSH_INTERVAL_MS;
use super::plan::Feeds;
use super::reconcile::{Reconcile, Reconciler};
use crate::hash::Hash;
use crate::identity::Author;
use crate::poison::lock;

/// The sending half's checkpoint state.
pub(super) struct CheckpointGossip {
    pub(super) book: Option<SharedBook>,
    /// Changes of the served notes; `None` without a book.
    pub(super) changes: Option<broadcast::Receiver<Author>>,
    /// Per feed, the note the peer is known to hold.
    peer_holds: PeerNotes,
    /// When each feed's note was last pushed on this session.
    pushed_at: BTreeMap<Author, Instant>,
    /// Feeds whose note changed and waits for its push, with the earliest time it may go.
    due: BTreeMap<Author, Instant>,
    /// `CheckpointReconcile` frames that arrived before this half began that reconciliation
    /// (the peer finished its part of the entries exchange first).
    pub(super) early_frames: VecDeque<Reconcile>,
    /// The checkpoint reconciliation while it runs, with our items.
    pub(super) reconcile: Option<(Reconciler, Vec<FeedHave>)>,
    /// Whether the checkpoint reconciliation ended: a frame after it is a violation, and
    /// live pushes wait for it (what the peer holds is known then).
    pub(super) reconciled: bool,
    /// How long the checkpoint reconciliation may run (`SyncConfig::checkpoint_reconcile_timeout`).
    timeout: Duration,
    /// Batches of new entries the receiving half has taken from the peer (it counts them).
    delivered: Arc<AtomicU64>,
    /// The reconciliation's deadline, from when this half began it.
    deadline: Option<ReconcileDeadline>,
}

impl CheckpointGossip {
    /// Subscribes to the book's changes at once, before its items are read, so no change
    /// falls between the two. `timeout` bounds the checkpoint reconciliation; `delivered`
    /// counts the batches of new entries the peer delivered (see [`ReconcileDeadline`]).
    pub(super) fn new(
        book: Option<SharedBook>,
        timeout: Duration,
        delivered: Arc<AtomicU64>,
        peer_holds: PeerNotes,
    ) -> CheckpointGossip {
        let changes = book.as_ref().map(|b| b.0.subscribe());
        CheckpointGossip {
            book,
            changes,
            peer_holds,
            pushed_at: BTreeMap::new(),
            due: BTreeMap::new(),
            early_frames: VecDeque::new(),
            reconcile: None,
            reconciled: false,
            timeout,
            delivered,
            deadline: None,
        }
    }

    /// The checkpoint reconciliation begins on this half at `now`: its deadline starts.
    pub(super) fn start_deadline(&mut self, now: Instant) {
        let delivered = self.delivered.load(Ordering::Relaxed);
        self.deadline = Some(ReconcileDeadline::start(self.timeout, now, delivered));
    }

    /// When the running checkpoint reconciliation's deadline is next checked, if one runs.
    pub(super) fn reconcile_deadline(&self) -> Option<Instant> {
        self.reconcile
            .as_ref()
            .and(self.deadline.as_ref())
            .map(ReconcileDeadline::at)
    }

    /// At the deadline: whether the reconciliation has run out of time (else the peer
    /// delivered new entries meanwhile, and the deadline moved on).
    pub(super) fn reconcile_expired(&mut self, now: Instant) -> bool {
        let delivered = self.delivered.load(Ordering::Relaxed);
        match (&self.reconcile, &mut self.deadline) {
            (Some(_), Some(deadline)) => deadline.passed(now, delivered),
            _ => false,
        }
    }

    /// Our reconciliation items: the book's, but for forked authors (and any of size 0).
    pub(super) fn items(&self, forked: &std::collections::BTreeSet<Author>) -> Vec<FeedHave> {
        let Some(book) = &self.book else {
            return Vec::new();
        };
        book.0
            .items()
            .into_iter()
            .filter(|i| i.length >= 1 && !forked.contains(&i.author))
            .collect()
    }

    /// After the reconciliation: records what the peer holds and returns the feeds whose
    /// note it lacks or holds differently (size or digest), in author order.
    pub(super) fn after_reconcile(&mut self, ours: &[FeedHave], theirs: &Feeds) -> Vec<Author> {
        self.reconciled = true;
        self.peer_holds.merge_reconciled(theirs);
        ours.iter()
            .filter(|i| {
                theirs
                    .get(&i.author)
                    .is_none_or(|s| s.length != i.length || s.head != i.head)
            })
            .map(|i| i.author)
            .collect()
    }

    /// The served note of `author`, if the peer is not known to hold it; noted as sent.
    pub(super) fn note_to_send(&mut self, author: &Author, now: Instant) -> Option<Vec<u8>> {
        let note = self.book.as_ref()?.0.served(author)?;
        let digest = note_digest(&note);
        if self.peer_holds.set(*author, digest) == Some(digest) {
            return None;
        }
        self.pushed_at.insert(*author, now);
        Some(note.to_vec())
    }

    /// A feed's served note changed: it goes once a push interval has passed since its last
    /// push on this session (changes meanwhile coalesce into that one push).
    pub(super) fn changed(&mut self, author: Author, now: Instant) {
        let interval = Duration::from_millis(CHECKPOINT_PUSH_INTERVAL_MS);
        let at = self
            .pushed_at
            .get(&author)
            .map_or(now, |last| (*last + interval).max(now));
        self.due.entry(author).or_insert(at);
    }

    /// The book's changes were missed (the channel lagged): every feed is checked again.
    pub(super) fn changed_all(&mut self, now: Instant) {
        let authors: Vec<Author> = match &self.book {
            Some(book) => book.0.items().into_iter().map(|i| i.author).collect(),
            None => Vec::new(),
        };
        for author in authors {
            self.changed(author, now);
        }
    }

    /// When the next push is due, if any (none before the reconciliation ended).
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.reconciled
            .then(|| self.due.values().min().copied())
            .flatten()
    }

    /// Takes the feeds whose push is due at `now`.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<Author> {
        let ready: Vec<Author> = self
            .due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(a, _)| *a)
            .collect();
        for author in &ready {
            self.due.remove(author);
        }
        ready
    }
}

/// Per feed, the digest of the note a peer is known to hold: from the checkpoint
/// reconciliation, from what the sending half sent it, and from what it sent us. The
/// receiving half records a note the peer sent before offering it to the book, so the
/// change the offer causes is not pushed straight back to that peer (no echo), and takes
/// the record back if the book drops the note (so a peer sending valid notes of feeds the
/// node does not hold grows nothing here). Shared by the two halves of one session.
#[derive(Clone, Debug, Default)]
pub(super) struct PeerNotes(Arc<Mutex<BTreeMap<Author, Hash>>>);

impl PeerNotes {
    /// Records that the peer holds the note of `author` with `digest`; returns the record it
    /// replaces.
    pub(super) fn set(&self, author: Author, digest: Hash) -> Option<Hash> {
        lock(&self.0).insert(author, digest)
    }

    /// Puts back the record [`PeerNotes::set`] replaced, unless another replaced it since.
    pub(super) fn restore(&self, author: Author, digest: Hash, before: Option<Hash>) {
        let mut holds = lock(&self.0);
        if holds.get(&author) != Some(&digest) {
            return;
        }
        match before {
            Some(before) => holds.insert(author, before),
            None => holds.remove(&author),
        };
    }

    /// What the checkpoint reconciliation found the peer holds. A note the peer sent while
    /// it ran is kept over its item: the peer held that note at least as late.
    fn merge_reconciled(&self, theirs: &Feeds) {
        let mut holds = lock(&self.0);
        for (author, state) in theirs {
            holds.entry(*author).or_insert(state.head);
        }
    }
}

/// The checkpoint reconciliation's deadline: it runs out `timeout` after this half began the
/// reconciliation, unless the peer delivered new entries in that time. The peer begins (or
/// answers) the checkpoint reconciliation only once its own entries' plan is sent, so an
/// honest peer sending a long plan is still delivering when the first deadline comes: each
/// deadline at which the peer has delivered since the last one gives it another `timeout`.
/// A peer that stalls, or drags the reconciliation out one small step at a time while
/// delivering nothing new, runs out. Pure: the caller passes the time and the count of
/// batches of new entries received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ReconcileDeadline {
    timeout: Duration,
    at: Instant,
    /// The peer's delivered batches when `at` was set.
    delivered: u64,
}

impl ReconcileDeadline {
    pub(super) fn start(timeout: Duration, now: Instant, delivered: u64) -> ReconcileDeadline {
        ReconcileDeadline {
            timeout,
            at: now + timeout,
            delivered,
        }
    }

    /// When to check next.
    pub(super) fn at(&self) -> Instant {
        self.at
    }

    /// Whether the time ran out at `now`, the peer having delivered `delivered` batches of
    /// new entries in all; a delivery since the last check starts the next window instead.
    pub(super) fn passed(&mut self, now: Instant, delivered: u64) -> bool {
        if delivered != self.delivered {
            self.delivered = delivered;
            self.at = now + self.timeout;
            return false;
        }
        now >= self.at
    }
}

/// The receiving half's bound on the peer's notes: a bucket of `burst` notes, refilled at
/// `per_second`. Each note costs the book a parse and signature checks, so a peer sending
/// more is disconnected rather than slowed.
pub(super) struct NoteBucket {
    tokens: f64,
    /// The bucket's size, in notes.
    pub(super) burst: u32,
    /// Its refill, in notes per second.
    pub(super) per_second: u32,
    at: Instant,
}

impl NoteBucket {
    pub(super) fn new(burst: u32, per_second: u32, now: Instant) -> NoteBucket {
        NoteBucket {
            tokens: f64::from(burst),
            burst,
            per_second,
            at: now,
        }
    }

    /// Takes `count` notes at `now`; false if the bucket holds fewer.
    pub(super) fn take(&mut self, count: usize, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * f64::from(self.per_second)).min(f64::from(self.burst));
        self.at = now;
        // Counts of one frame are at most `MAX_CHECKPOINTS_PER_FRAME`: exact in an f64.
        let count = count as f64;
        if count > self.tokens {
            return false;
        }
        self.tokens -= count;
        true
    }
}

/// The next change of the served notes, or never without a book.
pub(super) async fn next_change(
    changes: &mut Option<broadcast::Receiver<Author>>,
) -> Result<Author, broadcast::error::RecvError> {
    match changes {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = NoteBucket::new(10, 2, t0);
        assert!(b.take(7, t0));
        assert!(b.take(3, t0));
        assert!(!b.take(1, t0));
        assert!(b.take(2, t0 + Duration::from_secs(1)));
        assert!(!b.take(1, t0 + Duration::from_secs(1)));
        // Refill stops at the burst.
        assert!(!b.take(11, t0 + Duration::from_secs(100)));
        assert!(b.take(10, t0 + Duration::from_secs(100)));
    }

    #[test]
    fn the_reconcile_deadline_runs_out_unless_the_peer_delivers_in_its_window() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut d = ReconcileDeadline::start(s, t0, 5);
        assert_eq!(d.at(), t0 + s);
        // Nothing delivered: out of time at the deadline, not before.
        assert!(!d.passed(t0 + s / 2, 5));
        assert!(d.passed(t0 + s, 5));
        // Entries delivered since it was set: another window from the check.
        let mut d = ReconcileDeadline::start(s, t0, 5);
        assert!(!d.passed(t0 + s, 7));
        assert_eq!(d.at(), t0 + 2 * s);
        assert!(!d.passed(t0 + 2 * s, 8));
        // And once the deliveries stop, the next deadline ends it.
        assert!(d.passed(t0 + 3 * s, 8));
    }

    #[test]
    fn the_deadline_runs_only_while_the_reconciliation_does() {
        let t0 = Instant::now();
        let delivered = Arc::new(AtomicU64::new(0));
        let mut g = CheckpointGossip::new(
            None,
            Duration::from_secs(1),
            delivered.clone(),
            PeerNotes::default(),
        );
        g.start_deadline(t0);
        // Not running (not begun, or ended): no deadline to keep.
        assert_eq!(g.reconcile_deadline(), None);
        assert!(!g.reconcile_expired(t0 + Duration::from_secs(5)));
        g.reconcile = Some((Reconciler::new(Vec::new()), Vec::new()));
        assert_eq!(g.reconcile_deadline(), Some(t0 + Duration::from_secs(1)));
        delivered.store(1, Ordering::Relaxed);
        assert!(!g.reconcile_expired(t0 + Duration::from_secs(1)));
        assert!(g.reconcile_expired(t0 + Duration::from_secs(2)));
    }

    #[test]
    fn peer_notes_keep_what_the_peer_sent_and_forget_what_the_book_dropped() {
        let notes = PeerNotes::default();
        let (a, b) = (Author([1; 32]), Author([2; 32]));
        let (d1, d2, d3) = (Hash([1; 32]), Hash([2; 32]), Hash([3; 32]));
        assert_eq!(notes.set(a, d1), None);
        // The reconciliation's items do not replace a note the peer sent.
        let state = |head| crate::sync::plan::FeedState { length: 1, head };
        notes.merge_reconciled(&Feeds::from([(a, state(d2)), (b, state(d2))]));
        assert_eq!(notes.set(a, d1), Some(d1));
        assert_eq!(notes.set(b, d2), Some(d2));
        // A dropped note's record goes back to what it replaced, unless replaced since.
        let before = notes.set(b, d3);
        notes.restore(b, d3, before);
        assert_eq!(notes.set(b, d2), Some(d2));
        let before = notes.set(a, d3);
        notes.set(a, d2);
        notes.restore(a, d3, before);
        assert_eq!(notes.set(a, d2), Some(d2));
    }

    #[test]
    fn pushes_of_one_feed_coalesce_within_the_interval() {
        let t0 = Instant::now();
        let mut g = CheckpointGossip::new(
            None,
            Duration::from_secs(1),
            Arc::default(),
            PeerNotes::default(),
        );
        g.reconciled = true;
        let a = Author([1; 32]);
        g.pushed_at.insert(a, t0);
        g.changed(a, t0 + Duration::from_millis(100));
        g.changed(a, t0 + Duration::from_millis(200));
        assert_eq!(g.next_due(), Some(t0 + Duration::from_secs(1)));
        assert!(g.take_due(t0 + Duration::from_millis(999)).is_empty());
        assert_eq!(g.take_due(t0 + Duration::from_secs(1)), [a]);
        assert_eq!(g.next_due(), None);
    }
}
