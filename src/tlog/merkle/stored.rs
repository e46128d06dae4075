//! The stored-hash numbering: where the hash of full subtree `(level, n)` sits in the
//! append-only sequence of stored hashes, and which hashes appending a leaf adds.

use super::reader::{read_exact, TreeError};
use super::{node_hash, BoundsError, Hash, HashReader, MAX_TREE_SIZE};

/// The position of stored hash `(level, n)` (the hash of leaves `n * 2^level ..
/// (n + 1) * 2^level`) in the stored-hash sequence.
///
/// Hashes are numbered in the order appends produce them: leaf `m`'s hash, then the
/// hashes of the subtrees it completes, lowest level first. So level `l`'s `n`th hash comes
/// right after level `l - 1`'s `(2n + 1)`th, and level 0's `m`th hash is at `m + m/2 + m/4
/// + ...` (each earlier leaf's hash plus the subtree hashes completed before it).
///
/// Meant for subtrees inside a tree of at most [`MAX_TREE_SIZE`] leaves; beyond that the
/// arithmetic saturates (no panic) and the result means nothing.
pub fn stored_hash_index(level: u32, n: u64) -> u64 {
    let mut n = n;
    for _ in 0..level {
        n = n.saturating_mul(2).saturating_add(1);
    }
    let mut index = 0u64;
    while n > 0 {
        index = index.saturating_add(n);
        n >>= 1;
    }
    index.saturating_add(u64::from(level))
}

/// The `(level, n)` of the stored hash at `index`: the inverse of [`stored_hash_index`].
pub fn split_stored_hash_index(index: u64) -> (u32, u64) {
    // stored_hash_index(0, n) is 2n - popcount(n), so the leaf whose append stored `index`
    // is at least index / 2 and within 64 leaves of it.
    let mut n = index / 2;
    let mut index_n = stored_hash_index(0, n);
    loop {
        // Appending leaf n + 1 stores its own hash and one per subtree it completes.
        let next = index_n
            .saturating_add(1)
            .saturating_add(u64::from((n.saturating_add(1)).trailing_zeros()));
        if next > index {
            break;
        }
        n += 1;
        index_n = next;
    }
    // The hash at `index` was stored with leaf n: it is (0, n), (1, n/2), (2, n/4), ...
    let level = u32::try_from(index - index_n).unwrap_or(u32::MAX);
    (level, n.checked_shr(level).unwrap_or(0))
}

/// How many hashes a tree of `size` leaves stores (fewer than `2 * size`).
pub fn stored_hash_count(size: u64) -> u64 {
    match size.checked_sub(1) {
        None => 0,
        // The last leaf's hash, then one per subtree the last leaf completed.
        Some(last) => stored_hash_index(0, last) + 1 + u64::from(last.trailing_ones()),
    }
}

/// The hashes to append to the stored-hash sequence when leaf `n` (0-based; the tree had
/// `n` leaves) with hash `leaf_hash` is appended: the leaf hash, then the hash of each
/// subtree the leaf completes, one per trailing one bit of `n`, read back from `reader`
/// for the left halves. The store appends them in order at index [`stored_hash_count`]`(n)`.
pub fn hashes_to_store<R: HashReader>(
    n: u64,
    leaf_hash: Hash,
    reader: &R,
) -> Result<Vec<Hash>, TreeError<R::Error>> {
    if n >= MAX_TREE_SIZE {
        let size = n.saturating_add(1);
        return Err(BoundsError::SizeTooLarge { size }.into());
    }
    let completed = n.trailing_ones();
    // The left sibling of each subtree completed at level i + 1 is (i, (n >> i) - 1): the
    // lowest level's is read last, so list them from the highest level down (ascending
    // indexes).
    let indexes: Vec<u64> = (0..completed)
        .rev()
        .map(|level| stored_hash_index(level, (n >> level) - 1))
        .collect();
    let lefts = read_exact(reader, &indexes)?;
    let mut hashes = Vec::with_capacity(lefts.len() + 1);
    let mut hash = leaf_hash;
    hashes.push(hash);
    for left in lefts.iter().rev() {
        hash = node_hash(left, &hash);
        hashes.push(hash);
    }
    Ok(hashes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::merkle::test_vectors::{h, leaf_hashes, NODES};
    use crate::tlog::merkle::MemoryTree;

    #[test]
    fn indexes_follow_the_append_order() {
        // Leaves 0..4 store: (0,0) | (0,1) (1,0) | (0,2) | (0,3) (1,1) (2,0) | (0,4)
        let order = [
            (0, 0),
            (0, 1),
            (1, 0),
            (0, 2),
            (0, 3),
            (1, 1),
            (2, 0),
            (0, 4),
        ];
        for (index, &(level, n)) in order.iter().enumerate() {
            let index = index as u64;
            assert_eq!(stored_hash_index(level, n), index, "({level}, {n})");
            assert_eq!(split_stored_hash_index(index), (level, n), "{index}");
        }
        let counts = [0, 1, 3, 4, 7, 8];
        for (size, &count) in counts.iter().enumerate() {
            assert_eq!(stored_hash_count(size as u64), count, "size {size}");
        }
    }

    #[test]
    fn split_inverts_index_over_a_long_run() {
        for index in 0..100_000u64 {
            let (level, n) = split_stored_hash_index(index);
            assert_eq!(stored_hash_index(level, n), index);
        }
        let far = stored_hash_index(0, MAX_TREE_SIZE - 1);
        assert_eq!(split_stored_hash_index(far), (0, MAX_TREE_SIZE - 1));
        let top = stored_hash_index(62, 0);
        assert_eq!(split_stored_hash_index(top), (62, 0));
        assert_eq!(stored_hash_count(MAX_TREE_SIZE), top + 1);
    }

    #[test]
    fn appending_the_reference_leaves_stores_every_subtree_hash() {
        let mut tree = MemoryTree::new();
        for leaf in leaf_hashes() {
            tree.append(leaf).unwrap();
        }
        for (level, row) in NODES.iter().enumerate() {
            for (n, hash) in row.iter().enumerate() {
                let index = stored_hash_index(level as u32, n as u64);
                assert_eq!(
                    tree.stored_hashes()[index as usize],
                    h(hash),
                    "({level}, {n})"
                );
            }
        }
        assert_eq!(tree.stored_hashes().len() as u64, stored_hash_count(8));
    }

    #[test]
    fn a_full_tree_refuses_another_leaf() {
        let tree = MemoryTree::new();
        assert_eq!(
            hashes_to_store(MAX_TREE_SIZE, [0; 32], &tree),
            Err(BoundsError::SizeTooLarge {
                size: MAX_TREE_SIZE + 1
            }
            .into())
        );
    }
}
