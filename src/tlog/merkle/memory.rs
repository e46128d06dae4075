//! A tree kept in memory: the stored hashes in a `Vec`, for tests and for wiring a feed's
//! tree before the store persists one.

use super::prove::tree_hash;
use super::reader::TreeError;
use super::stored::hashes_to_store;
use super::{Hash, HashReader};

/// A stored hash asked of a [`MemoryTree`] that it does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored hash {index} asked of a tree holding {stored}")]
pub struct MemoryReadError {
    /// The index asked for.
    pub index: u64,
    /// How many stored hashes the tree holds.
    pub stored: u64,
}

/// A Merkle tree's stored hashes ([`super::stored_hash_index`] order) in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryTree {
    stored: Vec<Hash>,
    size: u64,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> MemoryTree {
        MemoryTree::default()
    }

    /// Appends a leaf by its hash ([`super::leaf_hash`] of its input).
    pub fn append(&mut self, leaf_hash: Hash) -> Result<(), TreeError<MemoryReadError>> {
        let new = hashes_to_store(self.size, leaf_hash, &*self)?;
        self.stored.extend(new);
        self.size += 1;
        Ok(())
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the whole tree.
    pub fn root(&self) -> Result<Hash, TreeError<MemoryReadError>> {
        tree_hash(self.size, self)
    }

    /// The stored hashes, in index order: what a store would persist.
    pub fn stored_hashes(&self) -> &[Hash] {
        &self.stored
    }
}

impl HashReader for MemoryTree {
    type Error = MemoryReadError;

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MemoryReadError> {
        indexes
            .iter()
            .map(|&index| {
                usize::try_from(index)
                    .ok()
                    .and_then(|i| self.stored.get(i))
                    .copied()
                    .ok_or(MemoryReadError {
                        index,
                        stored: u64::try_from(self.stored.len()).unwrap_or(u64::MAX),
                    })
            })
            .collect()
    }
}
