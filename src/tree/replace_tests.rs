//! The tree cache after a replacement record (docs/STORE.md, "Replacement records"): its
//! roots, proofs and subtree hashes cover the current copies, once rebuilt and after a
//! reopen, and never a root over the replaced copy once the new one is visible. A unit test,
//! since replacing a copy goes through the node's store, which only the crate reaches.

use std::time::{Duration, Instant};

use crate::entry::testing::{feed, resign};
use crate::entry::Entry;
use crate::hash::Hash as EntryHash;
use crate::identity::Identity;
use crate::node::Node;
use crate::store::ReplaceOutcome;
use crate::tlog::merkle::{leaf_hash, stored_hash_index, Hash, HashReader, MemoryTree};

use super::{TreeReadError, Trees};

const DEADLINE: Duration = Duration::from_secs(60);
/// Past two layer-0 rows (128 leaves each), so rows hold hashes over replaced leaves.
const N: u64 = 300;

fn model(entries: &[Entry]) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for entry in entries {
        tree.append(leaf_hash(&entry.encode())).unwrap();
    }
    tree
}

/// Polls until the tree's root of `author`'s `N` leaves is `want`; reads meanwhile may say
/// `Rebuilding` (or that the rebuilt tree does not cover it yet), never another root: not
/// the root over the replaced copy either, once the replacement is durable and visible.
async fn wait_for_root(trees: &Trees, author: &crate::identity::Author, want: Hash) {
    let start = Instant::now();
    loop {
        match trees.root(author, N) {
            Ok(root) => {
                assert_eq!(root, want, "a root over a replaced copy");
                return;
            }
            Err(
                TreeReadError::Rebuilding(_)
                | TreeReadError::UnknownFeed { .. }
                | TreeReadError::BeyondCovered { .. },
            ) => {}
            Err(e) => panic!("{e}"),
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the tree never covered the new copy"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn subtrees(tree: &MemoryTree, level: u8, index: u64, count: u16) -> Vec<Hash> {
    let indexes: Vec<u64> = (index..index + u64::from(count))
        .map(|n| stored_hash_index(u32::from(level), n))
        .collect();
    tree.read_hashes(&indexes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_replacement_the_tree_covers_the_current_copy_and_keeps_it_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = Node::open_with_identity(dir.path(), Identity::from_seed([1; 32])).unwrap();
    let trees = super::start(&node);
    let id = Identity::from_seed([9; 32]);
    let author = id.author();
    let feed: Vec<(Entry, EntryHash)> = feed(9, N, 0);
    node.offer_verified_batch(feed.clone()).await.unwrap();
    assert!(trees.wait_for_size(&author, N, DEADLINE).await);
    let mut current: Vec<Entry> = feed.iter().map(|(e, _)| e.clone()).collect();
    let old = model(&current).root().unwrap();
    assert_eq!(trees.root(&author, N).unwrap(), old);

    // Leaves in the first and the third row, the last one on the right edge.
    for seq in [5, 200, N] {
        let i = usize::try_from(seq - 1).unwrap();
        current[i] = resign(&id, &current[i], 1);
    }
    let copies = vec![
        current[4].clone(),
        current[199].clone(),
        current[299].clone(),
    ];
    let outcomes = node.store().replace_copies(copies).await.unwrap();
    assert_eq!(outcomes, vec![ReplaceOutcome::Replaced; 3]);
    let tree = model(&current);
    let new = tree.root().unwrap();
    assert_ne!(new, old);
    wait_for_root(&trees, &author, new).await;
    for size in [5, 128, 129, 256, 299, N] {
        let proof = trees.inclusion_proof(&author, 4, size).unwrap();
        assert_eq!(
            proof,
            crate::tlog::merkle::prove_inclusion(size, 4, &tree).unwrap()
        );
    }
    // Subtree hashes: leaves recomputed from the current copies, stored rows above them.
    for (level, index, count) in [(0, 0, 256), (0, 296, 4), (1, 0, 150), (7, 0, 2), (8, 0, 1)] {
        assert_eq!(
            trees.subtree_hashes(&author, level, index, count).unwrap(),
            subtrees(&tree, level, index, count),
            "({level}, {index}, {count})"
        );
    }
    for (level, index, count) in [(0, 0, 301), (1, 149, 2), (8, 1, 1), (9, 0, 1), (0, 0, 0)] {
        assert!(
            matches!(
                trees.subtree_hashes(&author, level, index, count),
                Err(TreeReadError::OutOfRange(_))
            ),
            "({level}, {index}, {count})"
        );
    }
    node.shutdown().await.unwrap();

    // Reopened: the cache resumes under the same count and serves the same root.
    let (node, _) = Node::open_with_identity(dir.path(), Identity::from_seed([1; 32])).unwrap();
    let trees = super::start(&node);
    assert!(trees.wait_for_size(&author, N, DEADLINE).await);
    wait_for_root(&trees, &author, new).await;
    node.shutdown().await.unwrap();
}
