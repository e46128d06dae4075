//! One feed's tree as the [`merkle::HashReader`] the tree algorithms read through: level 0
//! from the log, partial rows from memory, complete rows from the LRU or SQLite, checked
//! against their seals on the way in (a broken one marks the cache damaged).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::identity::Author;
use crate::tlog::merkle::{self, split_stored_hash_index, Hash};

use crate::poison::lock;

use super::pool::CacheReadError;
use super::{edge, layout, Edge, TreeReadError, Trees};

/// One feed's tree as a [`merkle::HashReader`], read under its lock.
pub(super) struct FeedView<'a> {
    pub(super) trees: &'a Trees,
    pub(super) author: &'a Author,
    pub(super) id: u64,
    /// The generation of the file the feed was numbered in ([`super::FeedSlot`]).
    pub(super) generation: u64,
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
                        let row = self.trees.row(key, slot.layer, self.generation)?;
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

impl Trees {
    /// The complete row at `key` (layer `layer`), from the LRU or SQLite, for a reader of
    /// `generation`.
    pub(super) fn row(
        &self,
        key: i64,
        layer: u32,
        generation: u64,
    ) -> Result<Arc<Vec<u8>>, TreeReadError> {
        let cached = match layer >= 1 {
            true => lock(&self.shared.rows).get(key),
            false => None,
        };
        let from_file = cached.is_none();
        let row = match cached {
            Some(row) => Ok(row),
            None => match self.shared.pool.row(key) {
                Ok(Some(row)) => Ok(Arc::new(row)),
                Ok(None) => Err(TreeReadError::Storage(format!("row {key} is missing"))),
                Err(CacheReadError::Sql(e)) => Err(TreeReadError::Storage(e)),
                Err(CacheReadError::Damaged(reason)) => Err(self.damaged(generation, reason)),
            },
        };
        // Read from a file replaced meanwhile: its key may name another feed's row now.
        self.same_generation(generation)?;
        let row = row?;
        if layer >= 1 && from_file {
            let mut rows = lock(&self.shared.rows);
            // Under the LRU's lock, which a new generation's publish clears it under.
            if self.shared.generation.load(Ordering::Acquire) == generation {
                rows.put(key, Arc::clone(&row));
            }
        }
        Ok(row)
    }

    /// `Err(Rebuilding)` if the file a read of `generation` began on has been replaced.
    pub(super) fn same_generation(&self, generation: u64) -> Result<(), TreeReadError> {
        match self.shared.generation.load(Ordering::Acquire) == generation {
            true => Ok(()),
            false => Err(TreeReadError::Rebuilding(
                "the cache was replaced during the read".into(),
            )),
        }
    }

    /// A read of `generation` found the file damaged: marks it so (logged once a file) for
    /// the follower to rebuild, and answers the reader `Rebuilding`.
    pub(super) fn damaged(&self, generation: u64, reason: String) -> TreeReadError {
        let shared = &self.shared;
        let first = shared.damage.send_if_modified(|damage| {
            // A read of a replaced file says nothing of the new one.
            let current = shared.generation.load(Ordering::Acquire) == generation;
            let first = damage.is_none() && current;
            if first {
                *damage = Some(reason.clone());
            }
            first
        });
        if first {
            tracing::error!(%reason, "the tree cache is damaged: rebuilding it from the log (its reads answer 503 meanwhile; the log is unaffected)");
        }
        TreeReadError::Rebuilding(reason)
    }
}
