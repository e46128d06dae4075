//! The in-memory index of the log: where each entry is, never the entries themselves.
//!
//! Per feed: a `Vec<u64>` of record offsets (`offsets[seq - 1]`), the head hash and the first
//! and last timestamps. For lookup by hash: a map from the first 8 bytes of a hash to a record
//! offset, plus a small overflow map (full hash -> offset) for the rare entries whose 8-byte
//! prefix is already taken. A prefix hit is only a candidate: the reader confirms it against
//! the full hash recomputed from the record on disk. This keeps resident memory near 8 bytes
//! (offset) + ~17-34 bytes (hash map slot) per entry.
//!
//! The prefix map is split into [`PREFIX_SHARDS`] maps by the prefix's top bits. A hash map
//! grows by moving every slot into a table twice the size, all at once, and the writer holds
//! the index's write lock meanwhile: one map of 8M entries took ~290 ms to grow (and 1M
//! ~34 ms), a stall for every append and every read. With 64 shards each growth moves 1/64
//! of the entries, and the shards, being filled evenly, grow one after another over the next
//! few batches instead of in one pause.
//!
//! Beside them, [`KeyTable`] remembers which record each of the most recent idempotency keys
//! is in ([`super::key_table`]; writable opens only: a read-only open never looks keys up).
//!
//! Replacement records (another signature of an entry already held, docs/STORE.md) leave
//! `offsets` alone: they stay the positions where each entry first entered the log, sorted by
//! log position (readers binary-search them, [`super::StoreReader::entries_before`]). The
//! copy to read instead lives in `replaced` (first record's offset -> the latest
//! replacement's), empty in nearly every log, so a lookup costs one `is_empty` check; every
//! read resolves an offset through [`Index::current`].
//!
//! The index only ever describes synced records: the writer updates it after `fdatasync`.

use std::collections::{BTreeMap, HashMap};

use crate::entry::{Entry, Seq};
use crate::hash::Hash;
use crate::identity::Author;
use crate::validate::FeedHead;

use super::key_table::KeyTable;

/// What the index holds for one feed.
#[derive(Clone, Debug, Default)]
pub struct FeedIndex {
    /// Record offset of seq `i + 1` at index `i`.
    pub offsets: Vec<u64>,
    /// Hash of the last entry held; `None` while the feed is empty.
    pub head: Option<Hash>,
    /// The first entry's timestamp as its author claims it (milliseconds since the Unix epoch).
    pub first_timestamp: u64,
    /// The last entry's timestamp, likewise.
    pub last_timestamp: u64,
}

impl FeedIndex {
    /// Entries held, which is also the seq of the last one (seqs start at 1, no gaps).
    pub fn length(&self) -> Seq {
        self.offsets.len() as Seq
    }

    /// The last entry's seq and hash, what the next entry must chain to; `None` if empty.
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
    /// Every feed with at least one entry held.
    pub feeds: BTreeMap<Author, FeedIndex>,
    /// [`PREFIX_SHARDS`] maps; a prefix lives in the one its top bits name.
    by_prefix: Vec<HashMap<u64, u64>>,
    overflow: HashMap<Hash, u64>,
    /// The most recent idempotency keys -> their records' offsets.
    pub keys: KeyTable,
    /// Entries held.
    pub entries: u64,
    /// Offset just past the last synced record: readers never read beyond it.
    pub end: u64,
    /// The record offset and hash of the last entry in the log, in commit order (the tail
    /// names the position "now" by it).
    pub last_entry: Option<(u64, Hash)>,
    /// Entries whose current copy is a replacement record: the offset of the record that
    /// first held the entry -> the offset of the latest replacement of it.
    pub replaced: HashMap<u64, u64>,
    /// Replacement records in the log (a seq replaced twice counts twice): what the tree
    /// cache compares to know its leaves were hashed from the current copies.
    pub replacements: u64,
}

/// How many maps the hash-prefix lookup is split into (a power of two).
pub const PREFIX_SHARDS: usize = 64;

/// The shard of a prefix: its top bits (prefixes are hash bytes, so evenly spread).
fn shard(prefix: u64) -> usize {
    (prefix >> (64 - PREFIX_SHARDS.trailing_zeros())) as usize
}

/// The first 8 bytes of a hash, little-endian: the key of the prefix maps.
fn hash_prefix(hash: &Hash) -> u64 {
    let mut p = [0u8; 8];
    p.copy_from_slice(&hash.0[..8]);
    u64::from_le_bytes(p)
}

impl Index {
    /// An empty index of a log whose records end at `end` (just past the header).
    pub fn new(end: u64) -> Index {
        Index {
            end,
            ..Index::default()
        }
    }

    /// The shards, made on first use (an empty index allocates none).
    fn shards(&mut self) -> &mut [HashMap<u64, u64>] {
        if self.by_prefix.is_empty() {
            self.by_prefix = vec![HashMap::new(); PREFIX_SHARDS];
        }
        &mut self.by_prefix
    }

    fn prefix_map(&mut self, prefix: u64) -> &mut HashMap<u64, u64> {
        &mut self.shards()[shard(prefix)]
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
        let prefix = hash_prefix(hash);
        match self.prefix_map(prefix).entry(prefix) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(offset);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.overflow.insert(*hash, offset);
            }
        }
        self.entries += 1;
        if self.last_entry.is_none_or(|(last, _)| offset > last) {
            self.last_entry = Some((offset, *hash));
        }
    }

    /// Records that the replacement record at `offset` holds the current copy of the entry
    /// first held at `original` (the caller checked it is the same entry, another signature).
    pub fn replace(&mut self, original: u64, offset: u64) {
        self.replaced.insert(original, offset);
        self.replacements += 1;
    }

    /// Where the current copy of the entry first held at record `offset` is.
    pub fn current(&self, offset: u64) -> u64 {
        if self.replaced.is_empty() {
            return offset;
        }
        self.replaced.get(&offset).copied().unwrap_or(offset)
    }

    /// Candidate offsets for `hash`: an exact overflow hit, then the prefix candidate (which
    /// the caller must confirm against the full hash on disk).
    pub fn candidates(&self, hash: &Hash) -> (Option<u64>, Option<u64>) {
        let prefix = hash_prefix(hash);
        (
            self.overflow.get(hash).copied(),
            self.by_prefix
                .get(shard(prefix))
                .and_then(|map| map.get(&prefix))
                .copied(),
        )
    }

    /// `author`'s feed head, as [`FeedIndex::head`]; `None` if nothing of it is held.
    pub fn head(&self, author: &Author) -> Option<FeedHead> {
        self.feeds.get(author).and_then(FeedIndex::head)
    }

    /// Releases the slack left by growth (called once after open).
    pub fn shrink_to_fit(&mut self) {
        for feed in self.feeds.values_mut() {
            feed.offsets.shrink_to_fit();
        }
        for map in &mut self.by_prefix {
            map.shrink_to_fit();
        }
        self.overflow.shrink_to_fit();
        self.keys.shrink_to_fit();
    }

    /// Pre-sizes the prefix maps for about `entries` entries (avoids growing them during
    /// open). Each shard gets its even share plus room for the unevenness of a random split
    /// (a few standard deviations).
    pub fn reserve(&mut self, entries: usize) {
        let share = entries / PREFIX_SHARDS;
        let slack = 4 * (share as f64).sqrt() as usize;
        for map in self.shards() {
            map.reserve(share + slack);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Signature;

    fn entry(seq: Seq) -> Entry {
        Entry {
            author: Author([1; 32]),
            seq,
            timestamp: seq,
            prev: None,
            value: 0,
            data: String::new(),
            signature: Signature([0; 64]),
        }
    }

    /// A hash whose 8-byte prefix is `prefix` (little-endian, as `hash_prefix` reads it).
    fn hash(prefix: u64, tail: u8) -> Hash {
        let mut bytes = [tail; 32];
        bytes[..8].copy_from_slice(&prefix.to_le_bytes());
        Hash(bytes)
    }

    #[test]
    fn lookups_find_entries_in_every_shard_and_in_the_overflow() {
        for reserve in [0, 10_000] {
            let mut index = Index::new(0);
            index.reserve(reserve);
            let step = u64::MAX / 1000;
            let prefixes: Vec<u64> = (0..1000).map(|i| i * step).chain([u64::MAX]).collect();
            for (i, &p) in prefixes.iter().enumerate() {
                index.insert(&entry(i as Seq + 1), &hash(p, 0), 100 + i as u64);
            }
            // Same prefixes, different hashes: these go to the overflow map.
            index.insert(&entry(1002), &hash(0, 9), 5000);
            index.insert(&entry(1003), &hash(u64::MAX, 9), 5001);
            let used: std::collections::BTreeSet<usize> =
                prefixes.iter().map(|&p| shard(p)).collect();
            assert_eq!(used.len(), PREFIX_SHARDS, "the prefixes cover every shard");
            for (i, &p) in prefixes.iter().enumerate() {
                assert_eq!(index.candidates(&hash(p, 0)), (None, Some(100 + i as u64)));
            }
            assert_eq!(index.candidates(&hash(0, 9)), (Some(5000), Some(100)));
            assert_eq!(
                index.candidates(&hash(u64::MAX, 9)),
                (Some(5001), Some(100 + 1000))
            );
            assert_eq!(index.candidates(&hash(step / 2, 0)), (None, None));
            assert_eq!(index.entries, 1003);
            index.shrink_to_fit();
            assert_eq!(index.candidates(&hash(7 * step, 0)), (None, Some(107)));
        }
        // An empty index answers without any shard allocated.
        assert_eq!(Index::new(0).candidates(&hash(1, 1)), (None, None));
    }
}
