//! A feed's tree right edge as the cache keeps it in memory (pure): the [`Frontier`] (the
//! root after every append) and, per layer, the nodes of the row being filled, which is not
//! in SQLite until it completes. Appending a leaf hands back the rows it completes, for the
//! follower to write.
//!
//! At a flush the edge is written as one blob ([`Edge::encode`]): the frontier's hashes
//! above level 0, then each layer's partial row level by level. Counts are not stored: the
//! feed's size fixes them ([`super::layout::row_counts`]), so a blob of the wrong length for
//! the size it is read under is refused. A frontier's level-0 hash (an odd size) is a leaf
//! hash: not stored, the caller recomputes it from the log.

use crate::tlog::merkle::{BoundsError, Frontier, Hash};

use super::layout::{row_counts, slot_of, top_level, LAYER_LEVELS, ROW_NODES};

/// The nodes of one layer's partial row, by depth (the layer's first level first).
type PartialRow = [Vec<Hash>; LAYER_LEVELS as usize];

/// A row that an append completed: write it, it never changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleteRow {
    /// Its layer.
    pub layer: u32,
    /// Its index in the layer.
    pub row: u64,
    /// Its 127 nodes, in row order.
    pub nodes: Vec<Hash>,
}

/// A feed's right edge (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edge {
    frontier: Frontier,
    /// Indexed by layer; a layer with no node yet is absent or empty.
    partial: Vec<PartialRow>,
}

impl Edge {
    /// The empty tree's edge.
    pub fn new() -> Edge {
        Edge::default()
    }

    /// Leaves in the tree.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The tree's root.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// Appends a leaf by its hash; rows it completes are pushed onto `completed`.
    pub fn append(
        &mut self,
        leaf_hash: Hash,
        completed: &mut Vec<CompleteRow>,
    ) -> Result<(), BoundsError> {
        let new_size = self.size() + 1;
        let stored = self.frontier.append(leaf_hash)?;
        // stored[k] is the node (k, (new_size >> k) - 1): the leaf, then each subtree it closes.
        for (level, hash) in stored.into_iter().enumerate().skip(1) {
            let level = level as u32;
            let n = (new_size >> level) - 1;
            let Some(slot) = slot_of(level, n) else {
                continue;
            };
            let layer = slot.layer as usize;
            if self.partial.len() <= layer {
                self.partial.resize_with(layer + 1, Default::default);
            }
            let depth = (level - 1 - slot.layer * LAYER_LEVELS) as usize;
            self.partial[layer][depth].push(hash);
            if level == top_level(slot.layer) {
                let row = std::mem::take(&mut self.partial[layer]);
                completed.push(CompleteRow {
                    layer: slot.layer,
                    row: slot.row,
                    nodes: row.into_iter().flatten().collect(),
                });
            }
        }
        Ok(())
    }

    /// Node `(level, n)` if it is in a partial row (a complete row's are in SQLite, leaves in
    /// the log).
    pub fn partial_node(&self, level: u32, n: u64) -> Option<Hash> {
        let slot = slot_of(level, n)?;
        if !self.row_is_partial(slot.layer, slot.row) {
            return None;
        }
        let depth = level - 1 - slot.layer * LAYER_LEVELS;
        let within = n - (slot.row << (LAYER_LEVELS - 1 - depth));
        self.partial
            .get(slot.layer as usize)?
            .get(depth as usize)?
            .get(usize::try_from(within).ok()?)
            .copied()
    }

    /// Whether row `row` of `layer` is the one being filled (its top node not yet made).
    pub fn row_is_partial(&self, layer: u32, row: u64) -> bool {
        self.size().checked_shr(top_level(layer)).unwrap_or(0) == row
    }

    /// The blob a flush writes (see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let above_leaves = self.frontier.subtrees().len() - (self.size() & 1) as usize;
        for hash in &self.frontier.subtrees()[..above_leaves] {
            out.extend_from_slice(hash);
        }
        for row in &self.partial {
            for hash in row.iter().flatten() {
                out.extend_from_slice(hash);
            }
        }
        out
    }

    /// The edge of a tree of `size` leaves from its blob; `last_leaf` is the hash of leaf
    /// `size - 1` (needed when `size` is odd: the frontier's level-0 hash is not stored).
    pub fn decode(size: u64, blob: &[u8], last_leaf: Option<Hash>) -> Result<Edge, String> {
        let mut hashes = blob.chunks_exact(32).map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        });
        if !blob.len().is_multiple_of(32) {
            return Err(format!("an edge of {} bytes, not whole hashes", blob.len()));
        }
        let above_leaves = (size.count_ones() - (size & 1) as u32) as usize;
        let mut subtrees: Vec<Hash> = hashes.by_ref().take(above_leaves).collect();
        if size & 1 == 1 {
            subtrees.push(last_leaf.ok_or("an odd size needs its last leaf's hash")?);
        }
        let frontier = Frontier::from_subtrees(size, subtrees)
            .ok_or_else(|| format!("the edge holds too few frontier hashes for size {size}"))?;
        let mut partial = Vec::new();
        let mut layer = 0u32;
        while size.checked_shr(layer * LAYER_LEVELS + 1).unwrap_or(0) > 0 {
            let counts = row_counts(layer, size >> top_level(layer), size);
            let mut row: PartialRow = Default::default();
            for (depth, count) in counts.into_iter().enumerate() {
                row[depth] = hashes.by_ref().take(count).collect();
                if row[depth].len() != count {
                    return Err(format!("the edge is short for size {size}"));
                }
            }
            partial.push(row);
            layer += 1;
        }
        if hashes.next().is_some() {
            return Err(format!("the edge is long for size {size}"));
        }
        Ok(Edge { frontier, partial })
    }
}

/// A complete row's nodes as SQLite keeps them: 127 hashes, concatenated.
pub fn row_bytes(nodes: &[Hash]) -> Vec<u8> {
    nodes.iter().flatten().copied().collect()
}

/// Node `pos` of a complete row read from SQLite; `None` if the blob is not a row.
pub fn row_node(bytes: &[u8], pos: usize) -> Option<Hash> {
    if bytes.len() != ROW_NODES * 32 {
        return None;
    }
    bytes.get(pos * 32..pos * 32 + 32)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::super::layout::node_of;
    use super::*;
    use crate::tlog::merkle::{leaf_hash, stored_hash_index, HashReader, MemoryTree};

    fn leaf(i: u64) -> Hash {
        leaf_hash(&i.to_be_bytes())
    }

    #[test]
    fn rows_and_partial_nodes_hold_the_trees_nodes() {
        let (mut edge, mut tree, mut rows) = (Edge::new(), MemoryTree::new(), Vec::new());
        for i in 0..700u64 {
            edge.append(leaf(i), &mut rows).unwrap();
            tree.append(leaf(i)).unwrap();
            assert_eq!(edge.root(), tree.root().unwrap());
        }
        assert_eq!(
            rows.len(),
            5,
            "rows 0..5 of layer 0 are complete at 700 leaves"
        );
        for row in &rows {
            for (pos, hash) in row.nodes.iter().enumerate() {
                let (level, n) = node_of(super::super::layout::Slot {
                    layer: row.layer,
                    row: row.row,
                    pos,
                });
                let want = tree.read_hashes(&[stored_hash_index(level, n)]).unwrap();
                assert_eq!(*hash, want[0]);
            }
        }
        for level in 1..10u32 {
            for n in 0..(700u64 >> level) {
                if let Some(hash) = edge.partial_node(level, n) {
                    let want = tree.read_hashes(&[stored_hash_index(level, n)]).unwrap();
                    assert_eq!(hash, want[0], "({level}, {n})");
                }
            }
        }
    }

    #[test]
    fn an_edge_flushed_and_loaded_goes_on_as_the_original() {
        for size in [0u64, 1, 2, 3, 127, 128, 129, 300, 16_385] {
            let (mut edge, mut rows) = (Edge::new(), Vec::new());
            for i in 0..size {
                edge.append(leaf(i), &mut rows).unwrap();
            }
            let last = size.checked_sub(1).map(leaf);
            let mut loaded = Edge::decode(size, &edge.encode(), last).unwrap();
            assert_eq!(loaded, edge, "size {size}");
            loaded.append(leaf(size), &mut rows).unwrap();
            edge.append(leaf(size), &mut rows).unwrap();
            assert_eq!(loaded.root(), edge.root());
            let blob = edge.encode();
            let last = Some(leaf(size));
            if !blob.is_empty() {
                assert!(Edge::decode(size + 1, &blob[..blob.len() - 32], last).is_err());
            }
            let mut long = blob.clone();
            long.extend_from_slice(&[0; 32]);
            assert!(Edge::decode(size + 1, &long, last).is_err());
        }
    }

    #[test]
    fn a_one_entry_feed_costs_nothing_on_disk() {
        let (mut edge, mut rows) = (Edge::new(), Vec::new());
        edge.append(leaf(0), &mut rows).unwrap();
        assert!(edge.encode().is_empty());
    }
}
