//! Tree hashes and proofs computed from stored hashes (RFC 9162 sections 2.1.1, 2.1.3.1,
//! 2.1.4.1).
//!
//! Each computation first lists the subtrees whose hashes it needs (as runs of leaves),
//! then reads every stored hash those runs decompose into in one [`HashReader`] call, then
//! folds them. A run `[lo, hi)` decomposes into full subtrees, largest first; its hash is
//! those full subtrees' hashes folded right to left, which is what RFC 6962's recursive
//! definition gives for runs at the positions proofs use.

use super::reader::{read_exact, TreeError};
use super::stored::stored_hash_index;
use super::{check_index, check_size, check_sizes, node_hash, Hash, HashReader, EMPTY_ROOT};

/// The root hash of the first `size` leaves (RFC 6962's MTH; [`EMPTY_ROOT`] for none).
pub fn tree_hash<R: HashReader>(size: u64, reader: &R) -> Result<Hash, TreeError<R::Error>> {
    check_size(size)?;
    if size == 0 {
        return Ok(EMPTY_ROOT);
    }
    let hashes = run_hashes(&[Run { lo: 0, hi: size }], reader)?;
    // One hash per run, and there is one run.
    Ok(hashes.first().copied().unwrap_or(EMPTY_ROOT))
}

/// The full subtrees ("peaks") the tree of the first `size` leaves is made of, one per set
/// bit of `size`, largest (leftmost) first, as `(level, n)`: the stored hashes
/// [`tree_hash`] folds into the root. None for the empty tree.
pub fn peaks(size: u64) -> impl Iterator<Item = (u32, u64)> {
    Run { lo: 0, hi: size }.subtrees()
}

/// The inclusion proof of leaf `index` in the tree of the first `size` leaves (RFC 9162
/// section 2.1.3.1): the sibling hashes from the leaf up to the root, at most 62 of them.
pub fn prove_inclusion<R: HashReader>(
    size: u64,
    index: u64,
    reader: &R,
) -> Result<Vec<Hash>, TreeError<R::Error>> {
    check_index(index, size)?;
    run_hashes(&inclusion_runs(size, index), reader)
}

/// The consistency proof that the tree of the first `old` leaves is a prefix of the tree
/// of the first `new` (RFC 9162 section 2.1.4.1). Empty when `old` is 0 or equals `new`:
/// there is nothing to prove.
pub fn prove_consistency<R: HashReader>(
    old: u64,
    new: u64,
    reader: &R,
) -> Result<Vec<Hash>, TreeError<R::Error>> {
    check_sizes(old, new)?;
    if old == 0 || old == new {
        return Ok(Vec::new());
    }
    run_hashes(&consistency_runs(old, new), reader)
}

/// The leaves `[lo, hi)`, never empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    lo: u64,
    hi: u64,
}

impl Run {
    /// The full subtrees making up the run, largest (leftmost) first, as `(level, n)`.
    fn subtrees(self) -> impl Iterator<Item = (u32, u64)> {
        let Run { mut lo, hi } = self;
        std::iter::from_fn(move || {
            let width = hi.checked_sub(lo).filter(|&w| w > 0)?;
            let level = width.ilog2();
            debug_assert_eq!(lo % (1 << level), 0, "a run starts on its subtree");
            let subtree = (level, lo >> level);
            lo += 1 << level;
            Some(subtree)
        })
    }
}

/// Where RFC 6962 splits a run of `width >= 2` leaves: the largest power of two below it.
fn split(width: u64) -> u64 {
    1 << (width - 1).ilog2()
}

/// The runs whose hashes form leaf `index`'s inclusion proof in a tree of `size`, in proof
/// order (from the leaf's sibling up): at each split, the side not containing the leaf.
fn inclusion_runs(size: u64, index: u64) -> Vec<Run> {
    let (mut lo, mut hi) = (0, size);
    let mut runs = Vec::new();
    while hi - lo > 1 {
        let mid = lo + split(hi - lo);
        if index < mid {
            runs.push(Run { lo: mid, hi });
            hi = mid;
        } else {
            runs.push(Run { lo, hi: mid });
            lo = mid;
        }
    }
    runs.reverse();
    runs
}

/// The runs whose hashes form the consistency proof from `old` to `new` (`0 < old < new`),
/// in proof order: RFC 6962's SUBPROOF walked from the root, the side without the old
/// tree's edge at each split, ending on the run that is exactly the old tree's right edge
/// (left out when it is the whole old tree, whose hash the verifier has).
fn consistency_runs(old: u64, new: u64) -> Vec<Run> {
    let (mut lo, mut hi) = (0, new);
    let mut runs = Vec::new();
    // Invariant: lo < old <= hi, so a run not ending at `old` has at least two leaves.
    while old != hi {
        let mid = lo + split(hi - lo);
        if old <= mid {
            runs.push(Run { lo: mid, hi });
            hi = mid;
        } else {
            runs.push(Run { lo, hi: mid });
            lo = mid;
        }
    }
    if lo != 0 {
        runs.push(Run { lo, hi });
    }
    runs.reverse();
    runs
}

/// The hash of each run, read in one call.
fn run_hashes<R: HashReader>(runs: &[Run], reader: &R) -> Result<Vec<Hash>, TreeError<R::Error>> {
    let indexes: Vec<u64> = runs
        .iter()
        .flat_map(|run| run.subtrees())
        .map(|(level, n)| stored_hash_index(level, n))
        .collect();
    let stored = read_exact(reader, &indexes)?;
    let mut stored = stored.into_iter();
    Ok(runs
        .iter()
        .map(|run| {
            let parts: Vec<Hash> = stored.by_ref().take(run.subtrees().count()).collect();
            // Right to left: the smallest subtree is the right child of the one before it.
            parts
                .into_iter()
                .rev()
                .reduce(|right, left| node_hash(&left, &right))
                .unwrap_or(EMPTY_ROOT)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::merkle::test_vectors::{h, hs, leaf_hashes, CONSISTENCY, INCLUSION, ROOTS};
    use crate::tlog::merkle::{leaf_hash, MemoryTree};
    use crate::tlog::merkle::{BoundsError, MAX_TREE_SIZE};

    fn reference_tree() -> MemoryTree {
        let mut tree = MemoryTree::new();
        for leaf in leaf_hashes() {
            tree.append(leaf).unwrap();
        }
        tree
    }

    #[test]
    fn roots_of_every_size_match_the_reference() {
        let tree = reference_tree();
        for (size, root) in ROOTS.iter().enumerate() {
            assert_eq!(
                tree_hash(size as u64, &tree).unwrap(),
                h(root),
                "size {size}"
            );
        }
    }

    #[test]
    fn proofs_match_the_reference() {
        let tree = reference_tree();
        for (index, size, proof) in INCLUSION {
            assert_eq!(prove_inclusion(size, index, &tree).unwrap(), hs(proof));
        }
        for (old, new, proof) in CONSISTENCY {
            assert_eq!(prove_consistency(old, new, &tree).unwrap(), hs(proof));
        }
    }

    /// RFC 6962's MTH, straight from its recursive definition.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => EMPTY_ROOT,
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn tree_hash_matches_the_recursive_definition() {
        let mut tree = MemoryTree::new();
        let mut leaves = Vec::new();
        for i in 0..300u64 {
            assert_eq!(tree_hash(i, &tree).unwrap(), mth(&leaves), "size {i}");
            let leaf = leaf_hash(&i.to_be_bytes());
            tree.append(leaf).unwrap();
            leaves.push(leaf);
        }
        // Every earlier size is still computable from the grown tree.
        for size in 0..=300u64 {
            assert_eq!(
                tree_hash(size, &tree).unwrap(),
                mth(&leaves[..size as usize])
            );
        }
    }

    #[test]
    fn peaks_are_one_full_subtree_per_set_bit_largest_first() {
        assert_eq!(peaks(0).count(), 0);
        assert_eq!(peaks(1).collect::<Vec<_>>(), [(0, 0)]);
        assert_eq!(peaks(256).collect::<Vec<_>>(), [(8, 0)]);
        // 70,000 = 2^16 + 2^12 + 2^8 + 2^6 + 2^5 + 2^4.
        assert_eq!(
            peaks(70_000).collect::<Vec<_>>(),
            [(16, 0), (12, 16), (8, 272), (6, 1092), (5, 2186), (4, 4374)]
        );
    }

    #[test]
    fn bad_sizes_are_typed_errors() {
        let tree = reference_tree();
        assert_eq!(
            prove_inclusion(8, 8, &tree),
            Err(BoundsError::IndexOutOfRange { index: 8, size: 8 }.into())
        );
        assert_eq!(
            prove_consistency(5, 4, &tree),
            Err(BoundsError::SizesReversed { old: 5, new: 4 }.into())
        );
        let size = MAX_TREE_SIZE + 1;
        assert_eq!(
            tree_hash(size, &tree),
            Err(BoundsError::SizeTooLarge { size }.into())
        );
        // A size within the limit but beyond what the reader holds is the reader's error.
        assert!(matches!(tree_hash(9, &tree), Err(TreeError::Read(_))));
        assert_eq!(prove_consistency(0, 8, &tree), Ok(vec![]));
    }

    /// A reader that returns one hash too few.
    struct ShortReader;
    impl HashReader for ShortReader {
        type Error = std::convert::Infallible;
        fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, Self::Error> {
            Ok(vec![[0; 32]; indexes.len() - 1])
        }
    }

    /// A reader holding every stored hash of any tree, all zeros.
    struct ZeroReader;
    impl HashReader for ZeroReader {
        type Error = std::convert::Infallible;
        fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, Self::Error> {
            Ok(vec![[0; 32]; indexes.len()])
        }
    }

    #[test]
    fn the_largest_tree_proves_within_the_limits() {
        let max = MAX_TREE_SIZE;
        assert!(tree_hash(max, &ZeroReader).is_ok());
        assert_eq!(
            prove_inclusion(max, max - 1, &ZeroReader).unwrap().len(),
            62
        );
        assert_eq!(prove_inclusion(max, 0, &ZeroReader).unwrap().len(), 62);
        let longest = prove_consistency(3, max, &ZeroReader).unwrap();
        assert_eq!(longest.len(), crate::tlog::merkle::MAX_PROOF_HASHES);
        let last = prove_consistency(max - 1, max, &ZeroReader).unwrap();
        assert_eq!(last.len(), crate::tlog::merkle::MAX_PROOF_HASHES);
    }

    #[test]
    fn a_reader_returning_too_few_hashes_is_caught() {
        assert_eq!(
            tree_hash(3, &ShortReader),
            Err(TreeError::ReaderCount { asked: 2, got: 1 })
        );
    }
}
