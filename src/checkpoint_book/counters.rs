//! The checkpoint book's counters, read by `/metrics`.

use std::sync::atomic::AtomicU64;

use serde::Serialize;

/// The book's counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct BookCounters {
    /// Notes offered by peers.
    pub notes_received: AtomicU64,
    /// Notes that changed a served note.
    pub notes_kept: AtomicU64,
    /// Notes refused as violations.
    pub notes_refused: AtomicU64,
    /// Notes dropped unchecked: their feed is not held.
    pub notes_unknown_feed: AtomicU64,
    /// Cosignature lines dropped: no key known for them.
    pub cosignatures_unknown_key: AtomicU64,
    /// Cosignatures this node made and added.
    pub cosignatures_made: AtomicU64,
    /// Split views found (two author checkpoints that conflict).
    pub forks_found: AtomicU64,
    /// Copy searches started: author checkpoints the tree disagreed with ([`super::copies`]).
    pub copy_searches: AtomicU64,
    /// Copy searches that ended without a result (gave up, a violation, dropped).
    pub copy_searches_failed: AtomicU64,
    /// Copies kept in place of the node's because an author checkpoint chose them.
    pub copies_replaced: AtomicU64,
}

/// A snapshot of [`BookCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BookStats {
    /// Feeds with state in the book.
    pub feeds: u64,
    /// Notes offered by peers.
    pub notes_received: u64,
    /// Notes that changed a served note.
    pub notes_kept: u64,
    /// Notes refused as violations.
    pub notes_refused: u64,
    /// Notes dropped unchecked: their feed is not held.
    pub notes_unknown_feed: u64,
    /// Cosignature lines dropped: no key known for them.
    pub cosignatures_unknown_key: u64,
    /// Cosignatures this node made.
    pub cosignatures_made: u64,
    /// Split views found.
    pub forks_found: u64,
    /// Copy searches started.
    pub copy_searches: u64,
    /// Copy searches that ended without a result.
    pub copy_searches_failed: u64,
    /// Copies replaced.
    pub copies_replaced: u64,
}
