//! The node's own checkpoint: signed by the tree follower after its own feed grows, it
//! verifies under the feed's vkey, names the own feed's size and the model's root, and a
//! restart signs the same bytes again.

use std::sync::Arc;

use kappalog::tlog::checkpoint::{author_vkey, origin_for, SignedCheckpoint};
use kappalog::tree::Trees;

use crate::common;
use crate::common::index::eventually;
use crate::common::tree::{model_from_node, open, wait_covered};

async fn checkpoint_of_size(trees: &Trees, size: u64) -> Arc<SignedCheckpoint> {
    eventually("the own checkpoint", || {
        trees
            .own_checkpoint()
            .is_some_and(|c| c.checkpoint().size() == size)
    })
    .await;
    trees.own_checkpoint().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_own_checkpoint_verifies_and_is_the_same_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (node, trees) = open(dir.path(), common::identity(1));
    assert!(
        trees.own_checkpoint().is_none(),
        "no checkpoint of an empty feed"
    );
    for v in 0..131 {
        node.append(v, format!("own {v}")).await.unwrap();
    }
    let model = model_from_node(&node, &node.author());
    wait_covered(&trees, std::slice::from_ref(&model)).await;
    let signed = checkpoint_of_size(&trees, 131).await;
    let vkey = author_vkey(&node.identity().signing_key().verifying_key());
    signed.verify_author(&vkey).unwrap();
    assert_eq!(
        signed.checkpoint().origin(),
        origin_for(node.author().as_bytes())
    );
    assert_eq!(*signed.checkpoint().root(), model.tree.root().unwrap());
    let bytes = signed.to_bytes();
    node.shutdown().await.unwrap();
    drop(trees);

    let (node, trees) = open(dir.path(), common::identity(1));
    let again = checkpoint_of_size(&trees, 131).await;
    assert_eq!(
        again.to_bytes(),
        bytes,
        "deterministic: the same bytes without storing them"
    );
    node.shutdown().await.unwrap();
}
