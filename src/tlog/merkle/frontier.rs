//! A tree's right edge: what a writer keeps in memory to give the root after every append
//! without reading anything back (docs/TLOG.md section 6, "The right edge").
//!
//! A tree of `n` leaves is, from the left, one full subtree per set bit of `n`, largest
//! first: 7 leaves are the full subtrees of 4, 2 and 1 leaves. Their hashes are the frontier
//! (at most 62 of them, [`super::MAX_TREE_SIZE`] being 2^62), and the root folds them from
//! the right: `node(h4, node(h2, h1))`, which is RFC 6962's split at the largest power of
//! two below `n` applied again to the rest. Appending a leaf adds its hash as a subtree of
//! one leaf and merges equal-sized neighbours, as a binary counter carries: each merge is a
//! subtree the leaf completes, so the hashes an append returns are exactly the stored hashes
//! [`super::hashes_to_store`] names for it, in the same order, computed without a reader.

use super::{node_hash, BoundsError, Hash, EMPTY_ROOT, MAX_TREE_SIZE};

/// The full subtrees along a tree's right edge (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// One hash per set bit of `size`, the largest subtree first.
    right: Vec<Hash>,
}

impl Frontier {
    /// The empty tree's frontier.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// The frontier of a tree of `size` leaves from its full subtrees' hashes, largest first
    /// (one per set bit of `size`; for a store that persists stored hashes, those at
    /// `(level, n)` for each set bit, read back at open). `None` when the count is wrong or
    /// the size is over [`MAX_TREE_SIZE`].
    pub fn from_subtrees(size: u64, right: Vec<Hash>) -> Option<Frontier> {
        (size <= MAX_TREE_SIZE && right.len() == size.count_ones() as usize)
            .then_some(Frontier { size, right })
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The full subtrees' hashes, largest first.
    pub fn subtrees(&self) -> &[Hash] {
        &self.right
    }

    /// Appends the leaf whose hash is `leaf_hash` ([`super::leaf_hash`] of its input).
    /// Returns the stored hashes it adds: the leaf's, then each subtree it completes, the
    /// same as [`super::hashes_to_store`]. A tree already of [`MAX_TREE_SIZE`] leaves takes
    /// no more.
    pub fn append(&mut self, leaf_hash: Hash) -> Result<Vec<Hash>, BoundsError> {
        if self.size >= MAX_TREE_SIZE {
            return Err(BoundsError::SizeTooLarge {
                size: self.size.saturating_add(1),
            });
        }
        let mut stored = vec![leaf_hash];
        let mut carry = leaf_hash;
        // One merge per trailing one bit of the old size: the subtrees of 1, 2, 4, ...
        // leaves at the end of the edge, each the left sibling of what is carried.
        for _ in 0..self.size.trailing_ones() {
            // The edge holds one hash per set bit, so a trailing one has its hash here.
            let Some(left) = self.right.pop() else { break };
            carry = node_hash(&left, &carry);
            stored.push(carry);
        }
        self.right.push(carry);
        self.size += 1;
        Ok(stored)
    }

    /// The root of the tree ([`EMPTY_ROOT`] when empty).
    pub fn root(&self) -> Hash {
        let mut subtrees = self.right.iter().rev();
        let Some(last) = subtrees.next() else {
            return EMPTY_ROOT;
        };
        subtrees.fold(*last, |right, left| node_hash(left, &right))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{leaf_hash, stored_hash_index, HashReader, MemoryTree};
    use super::*;

    fn leaf(i: u64) -> Hash {
        leaf_hash(&i.to_be_bytes())
    }

    #[test]
    fn roots_and_stored_hashes_are_the_trees_at_every_size() {
        let (mut frontier, mut tree) = (Frontier::new(), MemoryTree::new());
        assert_eq!(frontier.root(), EMPTY_ROOT);
        for i in 0..300u64 {
            let before = tree.stored_hashes().len();
            tree.append(leaf(i)).unwrap();
            let added = frontier.append(leaf(i)).unwrap();
            assert_eq!(added, tree.stored_hashes()[before..], "leaf {i}");
            assert_eq!(frontier.size(), tree.size());
            assert_eq!(frontier.root(), tree.root().unwrap(), "size {}", i + 1);
        }
    }

    #[test]
    fn a_frontier_rebuilt_from_stored_hashes_goes_on_as_the_original() {
        let (mut original, mut tree) = (Frontier::new(), MemoryTree::new());
        for i in 0..77u64 {
            original.append(leaf(i)).unwrap();
            tree.append(leaf(i)).unwrap();
        }
        // The full subtrees of 77 = 64 + 8 + 4 + 1 leaves, read back as a store would.
        let size = tree.size();
        let mut indexes = Vec::new();
        let mut start = 0u64;
        for level in (0..64u32).rev() {
            if size & (1 << level) != 0 {
                indexes.push(stored_hash_index(level, start >> level));
                start += 1 << level;
            }
        }
        let read = tree.read_hashes(&indexes).unwrap();
        let mut rebuilt = Frontier::from_subtrees(size, read).unwrap();
        assert_eq!(rebuilt, original);
        rebuilt.append(leaf(77)).unwrap();
        tree.append(leaf(77)).unwrap();
        assert_eq!(rebuilt.root(), tree.root().unwrap());
    }

    #[test]
    fn a_wrong_count_of_subtrees_or_size_is_refused() {
        assert!(Frontier::from_subtrees(3, vec![[0; 32]]).is_none());
        assert!(Frontier::from_subtrees(MAX_TREE_SIZE + 1, vec![[0; 32]; 2]).is_none());
        let mut full = Frontier::from_subtrees(MAX_TREE_SIZE, vec![[0; 32]]).unwrap();
        assert!(full.append([1; 32]).is_err());
        assert_eq!(
            full.size(),
            MAX_TREE_SIZE,
            "a refused append changes nothing"
        );
    }
}
