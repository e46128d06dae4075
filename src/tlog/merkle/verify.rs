//! Verifying inclusion and consistency proofs (RFC 9162 sections 2.1.3.2 and 2.1.4.2),
//! bounded: a proof is checked against [`MAX_PROOF_HASHES`] and then against the one
//! length its sizes allow before any hashing.

use super::{check_index, check_sizes, node_hash, BoundsError, Hash, EMPTY_ROOT, MAX_PROOF_HASHES};

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// More hashes than any proof may have.
    #[error("a proof of {hashes} hashes is over the limit of {MAX_PROOF_HASHES}")]
    ProofTooLong {
        /// The proof's length, in hashes.
        hashes: usize,
    },
    /// Sizes or an index out of bounds.
    #[error(transparent)]
    Bounds(#[from] BoundsError),
    /// A proof of the wrong length for its sizes.
    #[error("the proof has {found} hashes where its sizes call for {expected}")]
    ProofLength {
        /// The length the sizes call for.
        expected: usize,
        /// The proof's length.
        found: usize,
    },
    /// The inclusion proof does not lead from the leaf to the root.
    #[error("the inclusion proof does not lead to the root")]
    RootMismatch,
    /// The consistency proof does not reproduce the old root.
    #[error("the consistency proof does not reproduce the old root")]
    OldRootMismatch,
    /// The consistency proof does not reproduce the new root.
    #[error("the consistency proof does not reproduce the new root")]
    NewRootMismatch,
}

/// The number of hashes in the inclusion proof of leaf `index` in a tree of `size` leaves
/// (`index < size`): one per level below the point where the leaf's path and the tree's
/// right edge part (`inner`), plus one per left subtree above it (`border`).
pub fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let (inner, border) = inclusion_parts(index, size);
    to_usize(inner + border)
}

/// The number of hashes in the consistency proof from `old` to `new` leaves
/// (`old <= new`): none when `old` is 0 or `new`; otherwise the inclusion path of the old
/// tree's last leaf, without the levels inside the old tree's rightmost full subtree, plus
/// that subtree's hash unless it is the whole old tree (which the verifier has).
pub fn consistency_proof_len(old: u64, new: u64) -> usize {
    if old == 0 || old >= new {
        return 0;
    }
    let (inner, border) = inclusion_parts(old - 1, new);
    let shift = old.trailing_zeros();
    let seed = u32::from(!old.is_power_of_two());
    to_usize(seed + inner.saturating_sub(shift) + border)
}

fn inclusion_parts(index: u64, size: u64) -> (u32, u32) {
    let inner = u64::BITS - (index ^ size.saturating_sub(1)).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner, border)
}

fn to_usize(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Checks that `proof` shows the leaf with hash `leaf` at `index` in the tree of `size`
/// leaves whose root is `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    check_proof_cap(proof)?;
    check_index(index, size)?;
    check_len(proof, inclusion_proof_len(index, size))?;
    // RFC 9162 2.1.3.2: `fnode` walks the leaf's path, `snode` the tree's right edge; where
    // the path is a right child or on the edge, the proof hash is a left sibling.
    let (mut fnode, mut snode) = (index, size - 1);
    let mut hash = *leaf;
    for sibling in proof {
        hash = match climb(&mut fnode, &mut snode) {
            Side::Left => node_hash(sibling, &hash),
            Side::Right => node_hash(&hash, sibling),
        };
    }
    // The exact length checked above brings `snode` to 0 here.
    if snode != 0 || hash != *root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

/// Checks that `proof` shows the tree of `old` leaves with root `old_root` is a prefix of
/// the tree of `new` leaves with root `new_root`. Equal sizes need equal roots and an
/// empty proof; an empty old tree needs [`EMPTY_ROOT`] and an empty proof.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), VerifyError> {
    check_proof_cap(proof)?;
    check_sizes(old, new)?;
    check_len(proof, consistency_proof_len(old, new))?;
    if old == 0 {
        return match *old_root == EMPTY_ROOT {
            true => Ok(()),
            false => Err(VerifyError::OldRootMismatch),
        };
    }
    if old == new {
        return match old_root == new_root {
            true => Ok(()),
            false => Err(VerifyError::NewRootMismatch),
        };
    }
    let (old_hash, new_hash, snode) = consistency_roots(old, new, old_root, proof);
    if old_hash != *old_root {
        return Err(VerifyError::OldRootMismatch);
    }
    if snode != 0 || new_hash != *new_root {
        return Err(VerifyError::NewRootMismatch);
    }
    Ok(())
}

/// The root of the old tree of `old` leaves that a consistency `path` implies, when the path
/// reproduces `new_root` for `new` leaves: what an auditor holding only the new tree's
/// checkpoint learns about the old tree. Two checkpoints `(old, r)` and `(new, new_root)`
/// describe one append-only tree only if this returns `r` (a split-view proof rests on it
/// returning another hash: [`crate::tlog::split_view`]).
///
/// `path` is RFC 9162 section 2.1.4.2's path *after its step 1*: the standard consistency
/// proof ([`crate::tlog::merkle::prove_consistency`]), with the old root prepended when
/// `old` is a power of two (the standard proof leaves that hash out because a verifier
/// already holds it; here it is the claim). [`seeded_consistency_path`] builds it. From an
/// empty old tree the answer is [`EMPTY_ROOT`], to an equal size it is `new_root`, both
/// with an empty path.
pub fn consistency_old_root(
    old: u64,
    new: u64,
    new_root: &Hash,
    path: &[Hash],
) -> Result<Hash, VerifyError> {
    check_proof_cap(path)?;
    check_sizes(old, new)?;
    if old == 0 || old == new {
        check_len(path, 0)?;
        return Ok(if old == 0 { EMPTY_ROOT } else { *new_root });
    }
    let seeded = usize::from(old.is_power_of_two());
    check_len(path, consistency_proof_len(old, new) + seeded)?;
    // The exact length checked above is at least 1 for 0 < old < new.
    let (old_hash, new_hash, snode) = match path.split_first() {
        Some((seed, rest)) if seeded == 1 => consistency_roots(old, new, seed, rest),
        _ => consistency_roots(old, new, &EMPTY_ROOT, path),
    };
    if snode != 0 || new_hash != *new_root {
        return Err(VerifyError::NewRootMismatch);
    }
    Ok(old_hash)
}

/// The path [`consistency_old_root`] takes, from a standard consistency `proof` from `old`
/// leaves and the root `old_root` of the prover's tree at `old` leaves: the proof itself,
/// with `old_root` prepended when `old` is a power of two (and not 0 nor the new size, where
/// the proof is empty and stays so).
pub fn seeded_consistency_path(old: u64, old_root: &Hash, proof: &[Hash]) -> Vec<Hash> {
    let mut path = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() && !proof.is_empty() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    path
}

/// RFC 9162 2.1.4.2, steps 2 to 6, for `0 < old < new` and a proof of the right length:
/// the old and new roots the proof implies, and the final `snode` (0 when well formed).
fn consistency_roots(old: u64, new: u64, old_root: &Hash, proof: &[Hash]) -> (Hash, Hash, u64) {
    // When the old tree is a full subtree it is the proof's unsent first hash.
    let (seed, rest) = match (old.is_power_of_two(), proof.split_first()) {
        (false, Some((first, rest))) => (*first, rest),
        _ => (*old_root, proof),
    };
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut old_hash, mut new_hash) = (seed, seed);
    for sibling in rest {
        match climb(&mut fnode, &mut snode) {
            Side::Left => {
                old_hash = node_hash(sibling, &old_hash);
                new_hash = node_hash(sibling, &new_hash);
            }
            // A right sibling is past the old tree: it only grows the new root.
            Side::Right => new_hash = node_hash(&new_hash, sibling),
        }
    }
    (old_hash, new_hash, snode)
}

/// Which side of the running hash a proof hash goes on.
enum Side {
    Left,
    Right,
}

/// One step of RFC 9162's walk up the tree, shared by both verifiers: `fnode` is the
/// running hash's node, `snode` the tree's last node at the same level. Where `fnode` is a
/// right child or on the right edge, the next proof hash is its left sibling, and levels
/// where the edge node has no right sibling are skipped; otherwise it is a right sibling.
/// Both move up a level.
fn climb(fnode: &mut u64, snode: &mut u64) -> Side {
    let side = match *fnode & 1 == 1 || *fnode == *snode {
        true => Side::Left,
        false => Side::Right,
    };
    if let Side::Left = side {
        while *fnode & 1 == 0 && *fnode != 0 {
            *fnode >>= 1;
            *snode >>= 1;
        }
    }
    *fnode >>= 1;
    *snode >>= 1;
    side
}

fn check_proof_cap(proof: &[Hash]) -> Result<(), VerifyError> {
    if proof.len() > MAX_PROOF_HASHES {
        return Err(VerifyError::ProofTooLong {
            hashes: proof.len(),
        });
    }
    Ok(())
}

fn check_len(proof: &[Hash], expected: usize) -> Result<(), VerifyError> {
    if proof.len() != expected {
        return Err(VerifyError::ProofLength {
            expected,
            found: proof.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::merkle::test_vectors::{h, hs, leaf_hashes, CONSISTENCY, INCLUSION, ROOTS};
    use crate::tlog::merkle::MAX_TREE_SIZE;
    use crate::tlog::merkle::{leaf_hash, prove_consistency, prove_inclusion, MemoryTree};

    #[test]
    fn reference_proofs_verify() {
        let leaves = leaf_hashes();
        for (index, size, proof) in INCLUSION {
            let root = h(ROOTS[size as usize]);
            let leaf = &leaves[index as usize];
            assert_eq!(
                verify_inclusion(leaf, index, size, &hs(proof), &root),
                Ok(())
            );
        }
        for (old, new, proof) in CONSISTENCY {
            let (a, b) = (h(ROOTS[old as usize]), h(ROOTS[new as usize]));
            assert_eq!(verify_consistency(old, new, &a, &b, &hs(proof)), Ok(()));
        }
    }

    /// Every tree of 1..=70 leaves, its roots, and the tree itself.
    fn trees() -> (MemoryTree, Vec<Hash>, Vec<Hash>) {
        let mut tree = MemoryTree::new();
        let (mut leaves, mut roots) = (Vec::new(), vec![EMPTY_ROOT]);
        for i in 0..70u64 {
            let leaf = leaf_hash(format!("leaf {i}").as_bytes());
            tree.append(leaf).unwrap();
            leaves.push(leaf);
            roots.push(tree.root().unwrap());
        }
        (tree, leaves, roots)
    }

    fn flipped(proof: &[Hash], at: usize) -> Vec<Hash> {
        let mut proof = proof.to_vec();
        proof[at][at % 32] ^= 1;
        proof
    }

    #[test]
    fn every_inclusion_proof_up_to_70_leaves_verifies_and_no_tampered_one_does() {
        let (tree, leaves, roots) = trees();
        for size in 1..=70u64 {
            let root = roots[size as usize];
            for index in 0..size {
                let leaf = &leaves[index as usize];
                let proof = prove_inclusion(size, index, &tree).unwrap();
                assert_eq!(proof.len(), inclusion_proof_len(index, size));
                assert_eq!(verify_inclusion(leaf, index, size, &proof, &root), Ok(()));
                for at in 0..proof.len() {
                    let bad = flipped(&proof, at);
                    assert!(verify_inclusion(leaf, index, size, &bad, &root).is_err());
                }
                let mut wrong_leaf = *leaf;
                wrong_leaf[0] ^= 0x80;
                assert!(verify_inclusion(&wrong_leaf, index, size, &proof, &root).is_err());
                for other in (0..size).filter(|&other| other != index) {
                    assert!(verify_inclusion(leaf, other, size, &proof, &root).is_err());
                }
                // The proof claims nothing about another size: not with that size's root,
                // nor this size with another root. (With this size's own root, a proof can
                // "verify" for a size that walks the same path: a claim no tree of that size
                // could back, the root being this size's.)
                for other_size in (1..=70).filter(|&s| s != size) {
                    let other_root = &roots[other_size as usize];
                    assert!(verify_inclusion(leaf, index, other_size, &proof, other_root).is_err());
                    assert!(verify_inclusion(leaf, index, size, &proof, other_root).is_err());
                }
            }
        }
    }

    #[test]
    fn every_consistency_proof_up_to_70_leaves_verifies_and_no_tampered_one_does() {
        let (tree, _, roots) = trees();
        for new in 1..=70u64 {
            for old in 0..=new {
                let (a, b) = (roots[old as usize], roots[new as usize]);
                let proof = prove_consistency(old, new, &tree).unwrap();
                assert_eq!(proof.len(), consistency_proof_len(old, new));
                assert_eq!(verify_consistency(old, new, &a, &b, &proof), Ok(()));
                for at in 0..proof.len() {
                    let bad = flipped(&proof, at);
                    assert!(verify_consistency(old, new, &a, &b, &bad).is_err());
                }
                // Another size with its own root fails, except where the empty proof is
                // the right one for it too (from size 0, or to the same size).
                let trivial = |old: u64, new: u64| old == 0 || old == new;
                for other in (0..=new).filter(|&o| o != old && !trivial(o, new)) {
                    let other_root = &roots[other as usize];
                    let verdict = verify_consistency(other, new, other_root, &b, &proof);
                    assert!(verdict.is_err(), "{old}->{new} as {other}->{new}");
                }
                for other in (old..=70u64).filter(|&n| n != new && !trivial(old, n)) {
                    let other_root = &roots[other as usize];
                    let verdict = verify_consistency(old, other, &a, other_root, &proof);
                    assert!(verdict.is_err(), "{old}->{new} as {old}->{other}");
                }
                // Swapped roots fail (from size 0 the new root is not constrained: every
                // tree extends the empty one).
                if a != b && old != 0 {
                    assert!(verify_consistency(old, new, &b, &b, &proof).is_err());
                    assert!(verify_consistency(old, new, &a, &a, &proof).is_err());
                }
            }
        }
    }

    #[test]
    fn the_old_root_a_path_implies_is_the_provers_and_another_trees_differs() {
        let (tree, _, roots) = trees();
        // A second tree sharing the first 20 leaves, then forking.
        let mut other = MemoryTree::new();
        let mut other_roots = vec![EMPTY_ROOT];
        for i in 0..70u64 {
            let input = match i < 20 {
                true => format!("leaf {i}"),
                false => format!("other {i}"),
            };
            other.append(leaf_hash(input.as_bytes())).unwrap();
            other_roots.push(other.root().unwrap());
        }
        for new in 0..=70u64 {
            for old in 0..=new {
                let proof = prove_consistency(old, new, &tree).unwrap();
                let path = seeded_consistency_path(old, &roots[old as usize], &proof);
                let implied = consistency_old_root(old, new, &roots[new as usize], &path);
                assert_eq!(implied, Ok(roots[old as usize]), "{old}->{new}");
                for at in 0..path.len() {
                    let bad = flipped(&path, at);
                    let verdict = consistency_old_root(old, new, &roots[new as usize], &bad);
                    assert_ne!(verdict, Ok(roots[old as usize]), "{old}->{new} at {at}");
                }
                // The other tree's path to its own new root implies its own old root: where
                // the trees part, not the first tree's.
                let proof = prove_consistency(old, new, &other).unwrap();
                let path = seeded_consistency_path(old, &other_roots[old as usize], &proof);
                let implied = consistency_old_root(old, new, &other_roots[new as usize], &path);
                assert_eq!(implied, Ok(other_roots[old as usize]));
                let same = roots[old as usize] == other_roots[old as usize];
                assert_eq!(same, old <= 20, "{old}->{new}");
                // Against the first tree's new root the other tree's path fails.
                if new > 20 && old != 0 && old != new {
                    assert_eq!(
                        consistency_old_root(old, new, &roots[new as usize], &path),
                        Err(VerifyError::NewRootMismatch)
                    );
                }
            }
        }
        assert_eq!(
            consistency_old_root(3, 8, &roots[8], &[]),
            Err(VerifyError::ProofLength {
                expected: 4,
                found: 0
            })
        );
        assert_eq!(
            consistency_old_root(2, 1, &roots[1], &[]),
            Err(BoundsError::SizesReversed { old: 2, new: 1 }.into())
        );
    }

    #[test]
    fn lengths_are_checked_before_hashing() {
        let leaf = [7; 32];
        let long = vec![[0; 32]; MAX_PROOF_HASHES + 1];
        assert_eq!(
            verify_inclusion(&leaf, 0, 1 << 40, &long, &leaf),
            Err(VerifyError::ProofTooLong { hashes: 64 })
        );
        assert_eq!(
            verify_consistency(1, 2, &leaf, &leaf, &long),
            Err(VerifyError::ProofTooLong { hashes: 64 })
        );
        assert_eq!(
            verify_inclusion(&leaf, 0, 8, &[[0; 32]; 4], &leaf),
            Err(VerifyError::ProofLength {
                expected: 3,
                found: 4
            })
        );
        let size = MAX_TREE_SIZE + 1;
        assert_eq!(
            verify_inclusion(&leaf, 0, size, &[], &leaf),
            Err(BoundsError::SizeTooLarge { size }.into())
        );
        assert_eq!(
            verify_inclusion(&leaf, 3, 3, &[], &leaf),
            Err(BoundsError::IndexOutOfRange { index: 3, size: 3 }.into())
        );
        assert_eq!(
            verify_consistency(4, 3, &leaf, &leaf, &[]),
            Err(BoundsError::SizesReversed { old: 4, new: 3 }.into())
        );
        assert_eq!(
            verify_consistency(0, 3, &leaf, &leaf, &[]),
            Err(VerifyError::OldRootMismatch)
        );
    }

    #[test]
    fn the_longest_proofs_fit_the_limit() {
        assert_eq!(inclusion_proof_len(0, MAX_TREE_SIZE), 62);
        assert_eq!(inclusion_proof_len(MAX_TREE_SIZE - 1, MAX_TREE_SIZE), 62);
        assert_eq!(consistency_proof_len(3, MAX_TREE_SIZE), MAX_PROOF_HASHES);
        let worst = (1..200u64)
            .map(|old| consistency_proof_len(old, MAX_TREE_SIZE))
            .chain((1..200u64).map(|old| consistency_proof_len(MAX_TREE_SIZE - old, MAX_TREE_SIZE)))
            .max();
        assert_eq!(worst, Some(MAX_PROOF_HASHES));
    }

    proptest::proptest! {
        /// Any sizes, indexes and proofs: an answer, never a panic or an overflow.
        #[test]
        fn verification_never_panics(
            index in proptest::prelude::any::<u64>(),
            size in proptest::prelude::any::<u64>(),
            small in 0u64..200,
            hashes in proptest::collection::vec(proptest::prelude::any::<[u8; 32]>(), 0..70),
        ) {
            let leaf = [1; 32];
            let _ = verify_inclusion(&leaf, index, size, &hashes, &leaf);
            let _ = verify_inclusion(&leaf, index % (small + 1), small, &hashes, &leaf);
            let _ = verify_consistency(index, size, &leaf, &leaf, &hashes);
            let _ = verify_consistency(small, size, &leaf, &leaf, &hashes);
            let _ = verify_consistency(small, small + index % 100, &leaf, &leaf, &hashes);
            let _ = consistency_old_root(index, size, &leaf, &hashes);
            let _ = consistency_old_root(small, small + index % 100, &leaf, &hashes);
        }
    }
}
