//! Where an interior node of a feed's tree lives in the cache (pure): its *layer*, *row*
//! and *position* in the row, and the row's key in SQLite.
//!
//! Layer `t` holds levels `7t + 1 ..= 7t + 7`. Row `j` of layer `t` holds the 127 nodes of
//! those levels under node `(7t + 7, j)`: 64 at the layer's first level, 32 at the next, ...
//! 1 (the row's top) at the last, stored in that order (level by level, left to right).
//! Level 0 (the leaves) is in no row: leaf hashes are recomputed from the log.

use super::TreeReadError;

/// Levels per layer.
pub const LAYER_LEVELS: u32 = 7;

/// Nodes per complete row: 64 + 32 + 16 + 8 + 4 + 2 + 1.
pub const ROW_NODES: usize = 127;

/// A hash's bytes.
pub const HASH_BYTES: usize = crate::tlog::merkle::HASH_BYTES;

/// A complete row's bytes in SQLite (4,064).
pub const ROW_BYTES: usize = ROW_NODES * HASH_BYTES;

/// Bits of a row key given to the row index: rows of layer 0 cover 128 leaves each, so a
/// feed of up to 2^35 * 128 = 4.4 * 10^12 entries fits.
const ROW_BITS: u32 = 35;
/// Bits given to the layer (layers 0..=8 cover every level of a tree of 2^62 leaves).
const LAYER_BITS: u32 = 4;
/// Bits left for the feed id (16.7 million feeds), so a key is a non-negative `i64`.
const FEED_BITS: u32 = 63 - ROW_BITS - LAYER_BITS;

/// The most feeds a cache numbers: beyond it the follower stops with an error (the feed
/// cap of sync admission is far below).
pub const MAX_FEED_ID: u64 = (1 << FEED_BITS) - 1;

/// Where node `(level, n)` (level >= 1) is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot {
    /// The layer: `(level - 1) / 7`.
    pub layer: u32,
    /// The row within the layer: the index of the node at the layer's top level above it.
    pub row: u64,
    /// The position within the row, `0..127`.
    pub pos: usize,
}

/// The first position of each depth `d` (level `7t + 1 + d`) in a row.
const DEPTH_START: [usize; LAYER_LEVELS as usize] = [0, 64, 96, 112, 120, 124, 126];

/// The slot of node `(level, n)`; `None` for a leaf (level 0), which no row holds.
pub fn slot_of(level: u32, n: u64) -> Option<Slot> {
    let layer = level.checked_sub(1)? / LAYER_LEVELS;
    let depth = level - 1 - layer * LAYER_LEVELS;
    // Nodes of this depth per row: 64 at depth 0, 1 at depth 6.
    let per_row_shift = LAYER_LEVELS - 1 - depth;
    let row = n >> per_row_shift;
    let within = n - (row << per_row_shift);
    Some(Slot {
        layer,
        row,
        pos: DEPTH_START[depth as usize] + usize::try_from(within).ok()?,
    })
}

/// The node `(level, n)` a slot holds: the inverse of [`slot_of`].
pub fn node_of(slot: Slot) -> (u32, u64) {
    let depth = DEPTH_START
        .iter()
        .rposition(|&start| start <= slot.pos)
        .unwrap_or(0);
    let per_row_shift = LAYER_LEVELS - 1 - depth as u32;
    let level = slot.layer * LAYER_LEVELS + 1 + depth as u32;
    let n = (slot.row << per_row_shift) + (slot.pos - DEPTH_START[depth]) as u64;
    (level, n)
}

/// The level of a layer's top node: a row is complete once that node exists.
pub fn top_level(layer: u32) -> u32 {
    layer * LAYER_LEVELS + LAYER_LEVELS
}

/// How many nodes of row `row` of `layer` exist in a tree of `size` leaves, level by level
/// (depth 0 first): a partial row's nodes, in the order they are kept.
pub fn row_counts(layer: u32, row: u64, size: u64) -> [usize; LAYER_LEVELS as usize] {
    let mut counts = [0usize; LAYER_LEVELS as usize];
    for (depth, count) in counts.iter_mut().enumerate() {
        let level = layer * LAYER_LEVELS + 1 + depth as u32;
        let per_row_shift = LAYER_LEVELS - 1 - depth as u32;
        let existing = size.checked_shr(level).unwrap_or(0);
        let before = row << per_row_shift;
        let cap = 1u64 << per_row_shift;
        *count = usize::try_from(existing.saturating_sub(before).min(cap)).unwrap_or(0);
    }
    counts
}

/// The SQLite key of row `row` of `layer` of feed `feed`.
pub fn row_key(feed: u64, layer: u32, row: u64) -> Result<i64, TreeReadError> {
    if feed > MAX_FEED_ID || layer >= 1 << LAYER_BITS || row >= 1 << ROW_BITS {
        return Err(TreeReadError::Storage(format!(
            "no row key for feed {feed}, layer {layer}, row {row}: beyond the cache's numbering"
        )));
    }
    let key = (feed << (LAYER_BITS + ROW_BITS)) | (u64::from(layer) << ROW_BITS) | row;
    // Below 2^63 by the checks above.
    Ok(i64::try_from(key).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_node_of_trees_to_600_leaves_round_trips_to_its_own_slot() {
        let mut seen = BTreeSet::new();
        for size in 0..=600u64 {
            for level in 1..12u32 {
                for n in 0..(size >> level) {
                    let slot = slot_of(level, n).unwrap();
                    assert!(slot.pos < ROW_NODES);
                    assert_eq!(node_of(slot), (level, n), "size {size}");
                    seen.insert((slot, (level, n)));
                }
            }
        }
        // No two nodes share a slot.
        let slots: BTreeSet<Slot> = seen.iter().map(|(s, _)| *s).collect();
        assert_eq!(slots.len(), seen.len());
        assert_eq!(slot_of(0, 5), None);
    }

    #[test]
    fn a_row_is_complete_with_its_top_node_and_holds_127_nodes() {
        // Layer 0, row 1: leaves 128..256.
        assert_eq!(row_counts(0, 1, 128), [0; 7]);
        assert_eq!(row_counts(0, 1, 131), [1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(row_counts(0, 1, 256).iter().sum::<usize>(), ROW_NODES);
        assert_eq!(row_counts(0, 0, 10_000).iter().sum::<usize>(), ROW_NODES);
        assert_eq!(slot_of(top_level(0), 1).unwrap().pos, ROW_NODES - 1);
        assert_eq!(slot_of(top_level(1), 0).unwrap().layer, 1);
        assert_eq!(row_counts(1, 0, 16_384 + 255)[0], 64);
    }

    #[test]
    fn row_keys_are_distinct_and_bounded() {
        let a = row_key(1, 0, 5).unwrap();
        let b = row_key(1, 1, 5).unwrap();
        let c = row_key(2, 0, 5).unwrap();
        assert!(a != b && b != c && a != c && a >= 0);
        assert!(row_key(MAX_FEED_ID + 1, 0, 0).is_err());
        assert!(row_key(0, 0, 1 << ROW_BITS).is_err());
    }
}
