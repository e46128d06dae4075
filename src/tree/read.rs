//! One feed's tree as the [`merkle::HashReader`] the tree algorithms read through: level 0
//! from the log, partial rows from memory, complete rows from the LRU or SQLite.

use std::collections::HashMap;
use std::sync::Arc;

use crate::identity::Author;
use crate::tlog::merkle::{self, split_stored_hash_index, Hash};

use super::{edge, layout, Edge, TreeReadError, Trees};

/// One feed's tree as a [`merkle::HashReader`], read under its lock.
pub(super) struct FeedView<'a> {
    pub(super) trees: &'a Trees,
    pub(super) author: &'a Author,
    pub(super) id: u64,
    pub(super) edge: &'a Edge,
}

/// Leaf runs read in one call to the log when no wider than this (a level-0 tile, a
/// proof's one leaf); scattered leaves are read one by one.
const LEAF_RUN: u64 = 256;

impl merkle::HashReader for FeedView<'_> {
    type Error = TreeReadError;

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TreeReadError> {
        let nodes: Vec<(u32, u64)> = indexes
            .iter()
            .map(|&i| split_stored_hash_index(i))
            .collect();
        let size = self.edge.size();
        if let Some(&(level, n)) = nodes.iter().find(|(level, n)| {
            n.checked_add(1)
                .and_then(|m| m.checked_shl(*level))
                .is_none_or(|end| end > size)
        }) {
            return Err(TreeReadError::OutOfRange(format!(
                "node ({level}, {n}) is not in a tree of {size} leaves"
            )));
        }
        // A level-0 hash tile asks for a run of leaves and nothing else: hashed in order
        // straight from the log, without the lookup table the mixed case needs.
        if let Some(&(0, lo)) = nodes.first() {
            if nodes.len() as u64 <= LEAF_RUN
                && nodes
                    .iter()
                    .zip(lo..)
                    .all(|(&(level, n), want)| level == 0 && n == want)
            {
                return self.trees.leaves(self.author, lo, nodes.len());
            }
        }
        let leaves: Vec<u64> = nodes
            .iter()
            .filter(|(l, _)| *l == 0)
            .map(|(_, n)| *n)
            .collect();
        let leaf_hashes: HashMap<u64, Hash> = match (leaves.iter().min(), leaves.iter().max()) {
            (Some(&lo), Some(&hi)) if hi - lo < LEAF_RUN => {
                let run = self.trees.leaves(self.author, lo, (hi - lo + 1) as usize)?;
                (lo..=hi).zip(run).collect()
            }
            _ => leaves
                .iter()
                .map(|&n| Ok((n, self.trees.leaves(self.author, n, 1)?[0])))
                .collect::<Result<_, TreeReadError>>()?,
        };
        let mut rows: HashMap<i64, Arc<Vec<u8>>> = HashMap::new();
        nodes
            .iter()
            .map(|&(level, n)| {
                if level == 0 {
                    return leaf_hashes
                        .get(&n)
                        .copied()
                        .ok_or_else(|| TreeReadError::Storage("a leaf went unread".into()));
                }
                if let Some(hash) = self.edge.partial_node(level, n) {
                    return Ok(hash);
                }
                let slot = layout::slot_of(level, n)
                    .ok_or_else(|| TreeReadError::Storage(format!("no slot for ({level}, {n})")))?;
                let key = layout::row_key(self.id, slot.layer, slot.row)?;
                let row = match rows.get(&key) {
                    Some(row) => Arc::clone(row),
                    None => {
                        let row = self.trees.row(key, slot.layer)?;
                        rows.insert(key, Arc::clone(&row));
                        row
                    }
                };
                edge::row_node(&row, slot.pos).ok_or_else(|| {
                    TreeReadError::Storage(format!("row {key} is {} bytes, not a row", row.len()))
                })
            })
            .collect()
    }
}
