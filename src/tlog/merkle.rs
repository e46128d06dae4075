//! RFC 6962 (and RFC 9162 section 2.1) Merkle trees over a feed's entries, in the *stored
//! hash* model of Go's `golang.org/x/mod/sumdb/tlog` that tlog-tiles is built on.
//!
//! # Hashing
//!
//! - a leaf: `SHA-256(0x00 || leaf input)` ([`leaf_hash`]);
//! - an interior node: `SHA-256(0x01 || left || right)` ([`node_hash`]);
//! - the tree of `n > 1` leaves splits at `k`, the largest power of two below `n`: the left
//!   subtree holds the first `k` leaves, the right one the rest;
//! - the empty tree's hash is `SHA-256("")` ([`EMPTY_ROOT`]; Go's `tlog.TreeHash(0)` returns
//!   zeros instead, the RFC is followed here).
//!
//! # Stored hashes
//!
//! Every *full* subtree (`2^level` leaves starting at a multiple of `2^level`) has one hash,
//! addressed `(level, n)`: level 0 holds the leaf hashes, level `l + 1`'s `n`th hash is
//! `node_hash((l, 2n), (l, 2n + 1))`. Such a hash never changes once the leaves under it
//! exist, so a store appends them and never rewrites one. They are numbered in the order
//! they become known ([`stored_hash_index`]): appending leaf `n` stores its leaf hash, then
//! the hash of each subtree that leaf completes ([`hashes_to_store`]), one per trailing one
//! bit of `n`. A tree of `N` leaves has [`stored_hash_count`]`(N)` `< 2N` stored hashes: at
//! most 64 bytes per entry. Any subtree hash, root, or proof is computed from a bounded
//! number of them (at most two per level), read in one call through a [`HashReader`].
//! A writer that only appends keeps the tree's right edge instead ([`Frontier`]): the root
//! after every append, and the stored hashes to persist, without reading any back. An
//! [`Overlay`] reads a tree as if a few of its leaves were others, for the root they would
//! give.
//!
//! # Limits
//!
//! A tree has at most [`MAX_TREE_SIZE`] leaves, which keeps every proof within
//! [`MAX_PROOF_HASHES`] hashes (the bound tlog-witness puts on a consistency proof) and
//! every stored-hash index within `u64`. Verification checks a proof's length against the
//! one exact length its sizes allow before it hashes anything.

mod frontier;
mod memory;
mod overlay;
mod prove;
mod reader;
mod stored;
mod verify;

use sha2::{Digest, Sha256};

pub use frontier::Frontier;
pub use memory::{MemoryReadError, MemoryTree};
pub use overlay::Overlay;
pub use prove::{peaks, prove_consistency, prove_inclusion, tree_hash};
pub use reader::{HashReader, TreeError};
pub use stored::{hashes_to_store, split_stored_hash_index, stored_hash_count, stored_hash_index};
pub use verify::{
    consistency_old_root, consistency_proof_len, inclusion_proof_len, seeded_consistency_path,
    verify_consistency, verify_inclusion, VerifyError,
};

/// A SHA-256 hash's length, in bytes.
pub const HASH_BYTES: usize = 32;

/// A Merkle tree hash: a leaf hash, an interior node's, or a root.
pub type Hash = [u8; HASH_BYTES];

/// The most leaves a tree may have: 2^62. With it, the longest inclusion proof has 62
/// hashes and the longest consistency proof 63 (from size 3 to 2^62: the old tree's last
/// leaf, then one hash per level above it), within [`MAX_PROOF_HASHES`], and every
/// stored-hash index (< 2 * 2^62) fits a `u64`. No feed comes near: at a million entries a
/// second it takes 146,000 years to fill.
pub const MAX_TREE_SIZE: u64 = 1 << 62;

/// The most hashes a proof may have: tlog-witness refuses more than 63 consistency proof
/// lines, and no proof in a tree of at most [`MAX_TREE_SIZE`] leaves needs more. A longer
/// proof is refused before anything is hashed.
pub const MAX_PROOF_HASHES: usize = 63;

/// Sizes or an index a tree computation or a proof cannot be about: the same for proving
/// and verifying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BoundsError {
    /// A tree larger than [`MAX_TREE_SIZE`].
    #[error("tree size {size} is over the limit of {MAX_TREE_SIZE} leaves")]
    SizeTooLarge {
        /// The size given.
        size: u64,
    },
    /// A leaf index not below the tree size.
    #[error("leaf index {index} is not in a tree of {size} leaves")]
    IndexOutOfRange {
        /// The leaf index given (0-based).
        index: u64,
        /// The tree size given.
        size: u64,
    },
    /// A consistency proof from a larger tree to a smaller one.
    #[error("old tree size {old} is larger than the new size {new}")]
    SizesReversed {
        /// The old size given.
        old: u64,
        /// The new size given.
        new: u64,
    },
}

/// `size` is at most [`MAX_TREE_SIZE`].
fn check_size(size: u64) -> Result<(), BoundsError> {
    match size > MAX_TREE_SIZE {
        true => Err(BoundsError::SizeTooLarge { size }),
        false => Ok(()),
    }
}

/// `index` is a leaf of a tree of `size` leaves, itself within the limit.
fn check_index(index: u64, size: u64) -> Result<(), BoundsError> {
    check_size(size)?;
    match index >= size {
        true => Err(BoundsError::IndexOutOfRange { index, size }),
        false => Ok(()),
    }
}

/// `old <= new`, and `new` within the limit.
fn check_sizes(old: u64, new: u64) -> Result<(), BoundsError> {
    check_size(new)?;
    match old > new {
        true => Err(BoundsError::SizesReversed { old, new }),
        false => Ok(()),
    }
}

/// The hash of the empty tree: SHA-256 of nothing (RFC 6962 section 2.1).
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// The hash of a leaf whose input is `leaf`: `SHA-256(0x00 || leaf)`. For a kappalog feed
/// the input is the encoded entry (body then signature), so the leaf hash is computable
/// from what the store already keeps.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(leaf);
    hasher.finalize().into()
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)`. The distinct first
/// byte keeps a leaf from ever hashing like a node (a second-preimage defence).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

#[cfg(test)]
pub(crate) mod test_vectors;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(EMPTY_ROOT, <[u8; 32]>::from(Sha256::digest([])));
    }

    #[test]
    fn leaf_and_node_hashes_match_the_rfc_6962_reference() {
        // transparency-dev/merkle rfc6962_test.go: HashLeaf("L123456").
        assert_eq!(
            hex::encode(leaf_hash(b"L123456")),
            "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
        );
        let leaves = test_vectors::leaf_hashes();
        assert_eq!(hex::encode(leaves[0]), test_vectors::NODES[0][0]);
        assert_eq!(
            hex::encode(node_hash(&leaves[0], &leaves[1])),
            test_vectors::NODES[1][0]
        );
    }
}
