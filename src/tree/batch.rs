//! One pass of the follower: the log's entries since the covered offset appended to their
//! feeds' working edges, the rows they complete gathered for one transaction. Nothing here
//! is visible to readers until the follower commits and publishes it.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crate::identity::Author;
use crate::poison::lock;
use crate::store::EncodedRecord;
use crate::tlog::merkle::leaf_hash;

use super::db::Covered;
use super::edge::{row_bytes, CompleteRow, Edge};
use super::layout::{row_key, MAX_FEED_ID};
use super::{FeedEdge, FeedSlot, Trees};

/// Why a pass failed.
pub(super) struct PassError {
    pub(super) reason: String,
    /// The cache contradicts the log (an edge that does not load, a feed's size not its
    /// entries): rebuilt from the log rather than retried.
    pub(super) corrupt: bool,
}

impl From<String> for PassError {
    fn from(reason: String) -> PassError {
        PassError {
            reason,
            corrupt: false,
        }
    }
}

pub(super) fn corrupt(reason: String) -> PassError {
    PassError {
        reason,
        corrupt: true,
    }
}

/// What one pass has read and not yet committed.
pub(super) struct Batch {
    /// The feeds it touched: their slots and working copies of their edges.
    pub(super) working: HashMap<Author, (Arc<FeedSlot>, Edge)>,
    /// Feeds numbered in this pass.
    pub(super) new_feeds: Vec<(u64, Author)>,
    /// Complete rows to write, by key.
    pub(super) rows: Vec<(i64, Vec<u8>)>,
    /// Those of layers >= 1, for the LRU once committed.
    pub(super) upper_rows: Vec<(i64, Vec<u8>)>,
    completed: Vec<CompleteRow>,
    pub(super) covered: Covered,
    pub(super) next_id: u64,
}

impl Batch {
    pub(super) fn new(covered: Covered, next_id: u64) -> Batch {
        Batch {
            working: HashMap::new(),
            new_feeds: Vec::new(),
            rows: Vec::new(),
            upper_rows: Vec::new(),
            completed: Vec::new(),
            covered,
            next_id,
        }
    }

    /// Appends one entry's leaf to its feed's working edge.
    pub(super) fn add(
        &mut self,
        trees: &Trees,
        record: EncodedRecord<'_>,
    ) -> Result<(), PassError> {
        let (slot, edge) = match self.working.get_mut(&record.author) {
            Some(found) => found,
            None => {
                let taken = self.take_feed(trees, &record.author)?;
                self.working.entry(record.author).or_insert(taken)
            }
        };
        if record.seq != edge.size() + 1 {
            return Err(corrupt(format!(
                "the log holds seq {} of {} at offset {} where the tree expects seq {}",
                record.seq,
                record.author,
                record.offset,
                edge.size() + 1
            )));
        }
        let leaf = leaf_hash(record.bytes);
        edge.append(leaf, &mut self.completed)
            .map_err(|e| e.to_string())?;
        for row in self.completed.drain(..) {
            let key = row_key(slot.id, row.layer, row.row).map_err(|e| e.to_string())?;
            let bytes = row_bytes(&row.nodes);
            if row.layer >= 1 {
                self.upper_rows.push((key, bytes.clone()));
            }
            self.rows.push((key, bytes));
        }
        self.covered = Covered {
            offset: record.next,
            last: Some((record.offset, leaf)),
        };
        Ok(())
    }

    /// The slot and a working copy of the edge of `author`, numbered anew if the cache has
    /// never seen it.
    fn take_feed(
        &mut self,
        trees: &Trees,
        author: &Author,
    ) -> Result<(Arc<FeedSlot>, Edge), PassError> {
        if let Some(slot) = trees.slot(author) {
            let mut guard = lock(&slot.edge);
            let edge = trees
                .loaded(author, &slot, &mut guard)
                .map_err(|e| corrupt(e.to_string()))?
                .as_ref()
                .clone();
            drop(guard);
            return Ok((slot, edge));
        }
        let id = self.next_id;
        if id > MAX_FEED_ID {
            return Err(format!("the tree cache numbers at most {MAX_FEED_ID} feeds").into());
        }
        self.next_id += 1;
        self.new_feeds.push((id, *author));
        let slot = Arc::new(FeedSlot {
            id,
            generation: trees.shared.generation.load(Ordering::Acquire),
            edge: Mutex::new(FeedEdge::Loaded(Arc::new(Edge::new()))),
        });
        Ok((slot, Edge::new()))
    }
}
