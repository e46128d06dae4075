//! Fixtures of the tree cache tests: a node holding several feeds appended in interleaved
//! commits, each feed's model (a `MemoryTree` over the same leaves), and checking the
//! node's trees against the models.

use std::path::Path;
use std::time::Duration;

use kappalog::entry::Entry;
use kappalog::hash::Hash as EntryHash;
use kappalog::identity::{Author, Identity};
use kappalog::node::Node;
use kappalog::tlog::merkle::{
    leaf_hash, prove_consistency, prove_inclusion, tree_hash, verify_consistency, verify_inclusion,
    MemoryTree,
};
use kappalog::tlog::tiles::{hash_tile_bytes, Tile, TileKind};
use kappalog::tree::Trees;

use super::DEADLINE;

/// One feed the node holds, and its model.
pub struct Model {
    pub author: Author,
    pub tree: MemoryTree,
}

/// Signs feeds of `sizes` entries (authors `identity(10 + i)`) and offers them to `node`
/// in interleaved batches of varied lengths, so their records alternate in the log.
pub async fn offer_interleaved(node: &Node, sizes: &[u64]) -> Vec<Model> {
    offer_interleaved_as(node, 10, sizes).await
}

/// As [`offer_interleaved`], the authors `identity(first + i)`: the same sizes and
/// batches make a log of the same shape with other entries.
pub async fn offer_interleaved_as(node: &Node, first: u8, sizes: &[u64]) -> Vec<Model> {
    let feeds: Vec<Vec<(Entry, EntryHash)>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| super::feed(&super::identity(first + i as u8), n))
        .collect();
    let mut next = vec![0usize; feeds.len()];
    let mut round = 0usize;
    while next.iter().zip(&feeds).any(|(n, f)| *n < f.len()) {
        for (i, feed) in feeds.iter().enumerate() {
            let left = feed.len() - next[i];
            if left == 0 {
                continue;
            }
            let chunk = (1 + (round * 37 + i * 11) % (feed.len() / 8 + 1)).min(left);
            let batch = feed[next[i]..next[i] + chunk].to_vec();
            node.offer_verified_batch(batch).await.unwrap();
            next[i] += chunk;
        }
        round += 1;
    }
    feeds.iter().map(|feed| model_of(feed)).collect()
}

/// The model of a feed from its entries.
pub fn model_of(feed: &[(Entry, EntryHash)]) -> Model {
    let mut tree = MemoryTree::new();
    for (entry, _) in feed {
        tree.append(leaf_hash(&entry.encode())).unwrap();
    }
    Model {
        author: feed[0].0.author,
        tree,
    }
}

/// The model of `author`'s feed as `node` holds it.
pub fn model_from_node(node: &Node, author: &Author) -> Model {
    let length = node.reader().head(author).map_or(0, |h| h.seq);
    let encoded = node
        .reader()
        .range_encoded(author, 1, length as usize)
        .unwrap();
    let mut tree = MemoryTree::new();
    for bytes in &encoded {
        tree.append(leaf_hash(bytes)).unwrap();
    }
    Model {
        author: *author,
        tree,
    }
}

/// Waits (bounded) until `trees` covers every model's whole feed.
pub async fn wait_covered(trees: &Trees, models: &[Model]) {
    for model in models {
        assert!(
            trees
                .wait_for_size(&model.author, model.tree.size(), DEADLINE)
                .await,
            "the tree of {} never reached {} leaves (state {:?})",
            model.author,
            model.tree.size(),
            trees.state()
        );
    }
}

/// Sizes worth checking in a tree of `n` leaves: the small ones, around powers of two and
/// row boundaries, and `n`.
fn sizes_to_check(n: u64) -> Vec<u64> {
    let mut sizes: Vec<u64> = (1..=n.min(20)).collect();
    for p in [
        63u64, 64, 65, 127, 128, 129, 255, 256, 257, 16_383, 16_384, 16_385,
    ] {
        sizes.push(p);
    }
    sizes.extend([n / 3, n / 2, n - 1, n]);
    sizes.retain(|&s| s >= 1 && s <= n);
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

/// Checks every read of `trees` for `model`'s feed against the model, and that each proof
/// verifies.
pub fn check_against_model(trees: &Trees, model: &Model) {
    let (author, mem) = (&model.author, &model.tree);
    let n = mem.size();
    assert_eq!(trees.size(author), n);
    let sizes = sizes_to_check(n);
    for &size in &sizes {
        let root = trees.root(author, size).unwrap();
        assert_eq!(root, tree_hash(size, mem).unwrap(), "root of size {size}");
        // Inclusion: the first, last, and some leaves between.
        let mut indexes = vec![0, size - 1, size / 2, size / 3];
        indexes.extend((0..size).step_by((size as usize / 7).max(1)));
        for index in indexes {
            let proof = trees.inclusion_proof(author, index, size).unwrap();
            assert_eq!(
                proof,
                prove_inclusion(size, index, mem).unwrap(),
                "({index}, {size})"
            );
            let leaf = tree_hash_of_leaf(mem, index);
            verify_inclusion(&leaf, index, size, &proof, &root).unwrap();
        }
        for &old in sizes.iter().filter(|&&old| old <= size).step_by(3) {
            let proof = trees.consistency_proof(author, old, size).unwrap();
            assert_eq!(
                proof,
                prove_consistency(old, size, mem).unwrap(),
                "({old}, {size})"
            );
            let old_root = tree_hash(old, mem).unwrap();
            verify_consistency(old, size, &old_root, &root, &proof).unwrap();
        }
    }
    // Hash tiles of the whole tree: every full tile and the partial one at level 0, the
    // partial (or full) one at level 1.
    for level in [0u8, 1] {
        let leaves_per_hash = 1u64 << (8 * u32::from(level));
        let hashes = n / leaves_per_hash;
        for index in 0..hashes.div_ceil(256) {
            let width = (hashes - index * 256).min(256) as u16;
            let tile = Tile::new(TileKind::Hashes { level }, index, width).unwrap();
            let want = hash_tile_bytes(&tile, n, mem).unwrap();
            assert_eq!(
                trees.hash_tile(author, level, index, width).unwrap(),
                want,
                "tile {level}/{index} width {width} of {n}"
            );
            if width > 1 {
                let narrower = trees.hash_tile(author, level, index, width - 1).unwrap();
                assert_eq!(narrower, want[..want.len() - 32]);
            }
        }
    }
}

/// The leaf hash at `index` of a model (a tree of one leaf's root is its leaf hash).
fn tree_hash_of_leaf(mem: &MemoryTree, index: u64) -> kappalog::tlog::merkle::Hash {
    use kappalog::tlog::merkle::{stored_hash_index, HashReader};
    mem.read_hashes(&[stored_hash_index(0, index)]).unwrap()[0]
}

/// Copies a node's data directory while it runs, as a crash would leave it: the tree
/// cache's files first, then the log (so the log holds at least what the cache covers).
pub fn copy_as_crashed(from: &Path, to: &Path) {
    for name in ["tree.sqlite", "tree.sqlite-wal"] {
        if from.join(name).exists() {
            std::fs::copy(from.join(name), to.join(name)).unwrap();
        }
    }
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if entry.file_type().unwrap().is_file()
            && !name.starts_with("tree.sqlite")
            && name != "LOCK"
        {
            std::fs::copy(entry.path(), to.join(&*name)).unwrap();
        }
    }
}

/// Opens the node of `dir` as `identity` and starts its tree follower.
pub fn open(dir: &Path, identity: Identity) -> (Node, Trees) {
    let (node, _) = Node::open_with_identity(dir, identity).unwrap();
    let trees = kappalog::tree::start(&node);
    (node, trees)
}

/// Long enough for any wait in these tests.
pub const WAIT: Duration = DEADLINE;
