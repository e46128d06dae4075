//! A tree with some leaves replaced, read through the original's stored hashes: what the
//! root would be with other leaf hashes at a few positions, without rebuilding the tree.

use std::collections::BTreeMap;

use super::reader::{read_exact, TreeError};
use super::stored::{split_stored_hash_index, stored_hash_index};
use super::{node_hash, Hash, HashReader};

/// The stored hashes of `base`'s tree with the leaf hashes in `changed` (by leaf index) in
/// place of its own: a stored hash with no changed leaf under it is read from `base`, one
/// above a changed leaf is recomputed from its children. So [`super::tree_hash`] over an
/// overlay reads at most two hashes of `base` per level per changed leaf.
pub struct Overlay<'a, R> {
    base: R,
    changed: &'a BTreeMap<u64, Hash>,
}

impl<'a, R: HashReader> Overlay<'a, R> {
    /// `base` with the leaf hashes of `changed` in place.
    pub fn new(base: R, changed: &'a BTreeMap<u64, Hash>) -> Overlay<'a, R> {
        Overlay { base, changed }
    }

    /// The hash of full subtree `(level, n)`.
    fn subtree(&self, level: u32, n: u64) -> Result<Hash, TreeError<R::Error>> {
        // Saturating: a subtree beyond any tree has no changed leaf under it, and reading
        // it is the base's to refuse.
        let lo = n.checked_shl(level).unwrap_or(u64::MAX);
        let hi = n.saturating_add(1).checked_shl(level).unwrap_or(u64::MAX);
        let changed_under = lo < hi && self.changed.range(lo..hi).next().is_some();
        match (changed_under, level.checked_sub(1)) {
            (true, Some(below)) => Ok(node_hash(
                &self.subtree(below, 2 * n)?,
                &self.subtree(below, 2 * n + 1)?,
            )),
            (true, None) => match self.changed.get(&n) {
                Some(leaf) => Ok(*leaf),
                None => self.read_base(level, n),
            },
            (false, _) => self.read_base(level, n),
        }
    }

    fn read_base(&self, level: u32, n: u64) -> Result<Hash, TreeError<R::Error>> {
        let hashes = read_exact(&self.base, &[stored_hash_index(level, n)])?;
        // `read_exact` returned one hash for the one index.
        Ok(hashes[0])
    }
}

impl<R: HashReader> HashReader for Overlay<'_, R> {
    /// The base's errors, and a base answering with another number of hashes than asked.
    type Error = TreeError<R::Error>;

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, Self::Error> {
        indexes
            .iter()
            .map(|&index| {
                let (level, n) = split_stored_hash_index(index);
                self.subtree(level, n)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::merkle::{leaf_hash, tree_hash, MemoryTree};

    fn tree(leaves: &[Hash]) -> MemoryTree {
        let mut tree = MemoryTree::new();
        for leaf in leaves {
            tree.append(*leaf).unwrap();
        }
        tree
    }

    #[test]
    fn an_overlays_root_is_the_root_of_the_tree_with_the_leaves_replaced() {
        let leaves: Vec<Hash> = (0..300u64).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let base = tree(&leaves);
        for changed_at in [
            vec![],
            vec![0],
            vec![299],
            vec![1, 2, 255, 256],
            vec![7, 100],
        ] {
            let changed: BTreeMap<u64, Hash> = changed_at
                .iter()
                .map(|&i| (i, leaf_hash(&[0xff, u8::try_from(i % 256).unwrap()])))
                .collect();
            let mut replaced = leaves.clone();
            for (&i, leaf) in &changed {
                replaced[usize::try_from(i).unwrap()] = *leaf;
            }
            let expected = tree(&replaced);
            let overlay = Overlay::new(&base, &changed);
            for size in 0..=300u64 {
                assert_eq!(
                    tree_hash(size, &overlay).unwrap(),
                    tree_hash(size, &expected).unwrap(),
                    "size {size}, changed {changed_at:?}"
                );
            }
        }
    }
}
