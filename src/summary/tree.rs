//! [`DigestTree`]: the fixed-shape hash tree under the summary digest (docs/SUMMARY.md).
//!
//! Feeds are bucketed by the first two bytes of their author into [`LEAF_BUCKETS`] leaves;
//! above them [`INNER_LEVELS`] levels of nodes each hash their [`TREE_FANOUT`] children, up
//! to one root. The shape never depends on the data, so two nodes holding the same feeds
//! build the same tree whatever order the feeds arrived in, and a change to one feed
//! re-hashes one leaf and one node per level: about 2 KB of sha256 input plus the leaf's
//! records, instead of every feed's record.
//!
//! A change only marks its leaf dirty ([`DigestTree::mark`], O(log leaves)); the hashes are
//! brought up to date when the root is read ([`DigestTree::root`]), so a burst of changes
//! between two reads costs one re-hash per touched node, not one per change.
//!
//! Threat: authors are public keys, so a stranger can grind keys into one bucket (about
//! 65,536 key generations per key placed); that makes only that bucket's re-hash longer
//! (linear in the feeds it holds) and changes no digest. Admission bounds how many feeds
//! a stranger adds (`--new-feeds-per-hour`, `--max-feeds`).

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use crate::hash::Hash;
use crate::identity::Author;

/// Leaf buckets: one per value of an author's first two bytes.
pub const LEAF_BUCKETS: usize = 1 << 16;
/// Children per inner node.
pub const TREE_FANOUT: usize = 16;
/// Levels of inner nodes above the leaves: `TREE_FANOUT ^ INNER_LEVELS == LEAF_BUCKETS`.
pub const INNER_LEVELS: usize = 4;
/// First byte of a leaf's hash input.
pub const LEAF_PREFIX: u8 = 0x00;
/// First byte of an inner node's hash input.
pub const NODE_PREFIX: u8 = 0x01;

const _: () = assert!(TREE_FANOUT.pow(INNER_LEVELS as u32) == LEAF_BUCKETS);

/// The leaf bucket of `author`: its first two bytes, big-endian.
pub fn bucket_of(author: &Author) -> u16 {
    u16::from_be_bytes([author.0[0], author.0[1]])
}

/// The smallest author in `bucket`.
pub fn first_author_of(bucket: u16) -> Author {
    let mut bytes = [0u8; 32];
    bytes[..2].copy_from_slice(&bucket.to_be_bytes());
    Author(bytes)
}

/// The tree's hashes and which leaves changed since they were computed.
#[derive(Debug, Default)]
pub struct DigestTree {
    /// `levels[d]` holds the `TREE_FANOUT^d` hashes of depth `d`: `levels[0]` is the root,
    /// `levels[INNER_LEVELS]` the leaves: 2.1 MiB in all, allocated when the root is first
    /// read (a view that is never read, as in `kappalog append` or `import`, costs none).
    levels: Vec<Vec<Hash>>,
    /// Leaves whose feeds changed since `levels` was computed.
    dirty: BTreeSet<u16>,
}

impl DigestTree {
    /// Records that a feed in `bucket` changed.
    pub fn mark(&mut self, bucket: u16) {
        self.dirty.insert(bucket);
    }

    /// The root hash, re-hashing the dirty leaves (`hash_leaf` writes a leaf's records into
    /// the hasher) and their ancestors first.
    pub fn root(&mut self, mut hash_leaf: impl FnMut(u16, &mut Sha256)) -> Hash {
        if self.levels.is_empty() {
            self.levels = empty_levels();
        }
        let leaves = std::mem::take(&mut self.dirty);
        for &leaf in &leaves {
            let mut hasher = Sha256::new();
            hasher.update([LEAF_PREFIX]);
            hash_leaf(leaf, &mut hasher);
            self.levels[INNER_LEVELS][usize::from(leaf)] = Hash(hasher.finalize().into());
        }
        let mut dirty: Vec<usize> = leaves.into_iter().map(usize::from).collect();
        for depth in (0..INNER_LEVELS).rev() {
            // `dirty` is sorted, so the parents come out sorted and repeats are adjacent.
            dirty = dirty.iter().map(|i| i / TREE_FANOUT).collect();
            dirty.dedup();
            let (upper, lower) = self.levels.split_at_mut(depth + 1);
            for &node in &dirty {
                let children = &lower[0][node * TREE_FANOUT..(node + 1) * TREE_FANOUT];
                upper[depth][node] = hash_node(children);
            }
        }
        self.levels[0][0]
    }
}

fn hash_node(children: &[Hash]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([NODE_PREFIX]);
    for child in children {
        hasher.update(child.as_bytes());
    }
    Hash(hasher.finalize().into())
}

/// The hashes of a tree whose every leaf is empty (each level hashed once, then copied).
fn empty_levels() -> Vec<Vec<Hash>> {
    let mut hash = Hash(Sha256::digest([LEAF_PREFIX]).into());
    let mut width = LEAF_BUCKETS;
    let mut levels = Vec::with_capacity(INNER_LEVELS + 1);
    while width >= 1 {
        levels.push(vec![hash; width]);
        hash = hash_node(&[hash; TREE_FANOUT]);
        width /= TREE_FANOUT;
    }
    levels.reverse();
    levels
}
