//! The tree cache against the model: a node holding feeds of many sizes, appended in
//! interleaved commits (one crossing a layer-1 row: 128 * 128 = 16,384 leaves), answers
//! every root, inclusion and consistency proof and hash tile as a `MemoryTree` over the
//! same leaves does, and every proof verifies.

use kappalog::tree::TreeReadError;

use crate::common;
use crate::common::tree::{
    check_against_model, model_from_node, offer_interleaved, open, wait_covered,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_equals_the_models_for_feeds_of_many_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let (node, trees) = open(dir.path(), common::identity(1));
    for v in 0..3 {
        node.append(v, format!("own {v}")).await.unwrap();
    }
    let mut models = offer_interleaved(&node, &[1, 2, 127, 128, 129, 300, 16_400]).await;
    models.push(model_from_node(&node, &node.author()));
    wait_covered(&trees, &models).await;
    for model in &models {
        check_against_model(&trees, model);
    }
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_past_the_tree_are_the_askers_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (node, trees) = open(dir.path(), common::identity(1));
    let models = offer_interleaved(&node, &[5]).await;
    wait_covered(&trees, &models).await;
    let author = models[0].author;
    let stranger = common::identity(99).author();
    let errors = [
        trees.root(&stranger, 1).unwrap_err(),
        trees.root(&author, 6).unwrap_err(),
        trees.inclusion_proof(&author, 5, 5).unwrap_err(),
        trees.consistency_proof(&author, 4, 3).unwrap_err(),
        trees.hash_tile(&author, 0, 0, 6).unwrap_err(),
        trees.hash_tile(&author, 0, 0, 0).unwrap_err(),
    ];
    assert!(matches!(errors[0], TreeReadError::UnknownFeed { .. }));
    assert_eq!(
        errors[1],
        TreeReadError::BeyondCovered {
            size: 6,
            covered: 5
        }
    );
    assert!(
        errors.iter().all(TreeReadError::is_client_error),
        "{errors:?}"
    );
    node.shutdown().await.unwrap();
}
