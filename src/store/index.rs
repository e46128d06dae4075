//! The in-memory index of the log: where each entry is, never the entries themselves.
//!
//! Per feed: a `Vec<u64>` of record offsets (`offsets[seq - 1]`), the head hash and the first
//! and last timestamps. For lookup by hash: a map from the first 8 bytes of a hash to a record
//! offset, plus a small overflow map (full hash -> offset) for the rare entries whose 8-byte
//! prefix is already taken. A prefix hit is only a candidate: the reader confirms it against
//! the full hash recomputed from the record on disk. This keeps resident memory near 8 bytes
//! (offset) + ~17-34 bytes (hash map slot) per entry.
//!
//! The index only ever describes synced records: the writer updates it after `fdatasync`.

use std::collections::{BTreeMap, HashMap};

use crate::entry::{Entry, Seq};
use crate::hash::Hash;
use crate::identity::Author;
use crate::validate::FeedHead;

/// What the index holds for one feed.
#[derive(Clone, Debug, Default)]
pub struct FeedIndex {
    /// Record offset of seq `i + 1` at index `i`.
    pub offsets: Vec<u64>,
    pub head: Option<Hash>,
    pub first_timestamp: u64,
    pub last_timestamp: u64,
}

impl FeedIndex {
    pub fn length(&self) -> Seq {
        self.offsets.len() as Seq
    }

    pub fn head(&self) -> Option<FeedHead> {
        self.head.map(|hash| FeedHead {
            seq: self.length(),
            hash,
        })
    }

    /// The record offset of `seq`, if held.
    pub fn offset_of(&self, seq: Seq) -> Option<u64> {
        let i = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.offsets.get(i).copied()
    }
}

/// The whole index. Feeds in a `BTreeMap` so listings come out sorted by author.
#[derive(Debug, Default)]
pub struct Index {
    pub feeds: BTreeMap<Author, FeedIndex>,
    by_prefix: HashMap<u64, u64>,
    overflow: HashMap<Hash, u64>,
    /// Entries held.
    pub entries: u64,
    /// Offset just past the last synced record: readers never read beyond it.
    pub end: u64,
}

pub fn hash_prefix(hash: &Hash) -> u64 {
    let mut p = [0u8; 8];
    p.copy_from_slice(&hash.0[..8]);
    u64::from_le_bytes(p)
}

impl Index {
    pub fn new(end: u64) -> Index {
        Index {
            end,
            ..Index::default()
        }
    }

    /// Records an entry that extends its feed (the caller checked the chain) at `offset`.
    pub fn insert(&mut self, entry: &Entry, hash: &Hash, offset: u64) {
        let feed = self.feeds.entry(entry.author).or_default();
        if feed.offsets.is_empty() {
            feed.first_timestamp = entry.timestamp;
        }
        feed.offsets.push(offset);
        feed.head = Some(*hash);
        feed.last_timestamp = entry.timestamp;
        match self.by_prefix.entry(hash_prefix(hash)) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(offset);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.overflow.insert(*hash, offset);
            }
        }
        self.entries += 1;
    }

    /// Candidate offsets for `hash`: an exact overflow hit, then the prefix candidate (which
    /// the caller must confirm against the full hash on disk).
    pub fn candidates(&self, hash: &Hash) -> (Option<u64>, Option<u64>) {
        (
            self.overflow.get(hash).copied(),
            self.by_prefix.get(&hash_prefix(hash)).copied(),
        )
    }

    pub fn head(&self, author: &Author) -> Option<FeedHead> {
        self.feeds.get(author).and_then(FeedIndex::head)
    }

    /// Releases the slack left by growth (called once after open).
    pub fn shrink_to_fit(&mut self) {
        for feed in self.feeds.values_mut() {
            feed.offsets.shrink_to_fit();
        }
        self.by_prefix.shrink_to_fit();
        self.overflow.shrink_to_fit();
    }

    /// Pre-sizes the hash map for about `entries` entries (avoids rehashing during open).
    pub fn reserve(&mut self, entries: usize) {
        self.by_prefix.reserve(entries);
    }
}
