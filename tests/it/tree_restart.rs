//! The tree cache across restarts: stopped mid-stream, copied as a crash leaves it,
//! corrupted, beside another log, or deleted, it ends up answering as the model does.

use kappalog::tree::TREE_FILE;

use crate::common;
use crate::common::tree::{
    check_against_model, copy_as_crashed, model_from_node, offer_interleaved, offer_interleaved_as,
    open, wait_covered,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_mid_stream_reopens_with_the_same_roots() {
    let dir = tempfile::tempdir().unwrap();
    let (node, trees) = open(dir.path(), common::identity(1));
    let models = offer_interleaved(&node, &[130, 300]).await;
    for v in 0..50 {
        node.append(v, "own".into()).await.unwrap();
    }
    // Stopped without waiting for the follower: shutdown waits for its last flush.
    node.shutdown().await.unwrap();
    drop(trees);
    let (node, trees) = open(dir.path(), common::identity(1));
    let mut models = models;
    models.push(model_from_node(&node, &node.author()));
    wait_covered(&trees, &models).await;
    for model in &models {
        check_against_model(&trees, model);
    }
    // And it goes on from there.
    node.append(99, "after".into()).await.unwrap();
    let own = model_from_node(&node, &node.author());
    wait_covered(&trees, std::slice::from_ref(&own)).await;
    check_against_model(&trees, &own);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_copied_mid_run_as_a_crash_leaves_it_is_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let (node, trees) = open(dir.path(), common::identity(1));
    let first = offer_interleaved(&node, &[200, 400]).await;
    wait_covered(&trees, &first).await;
    // More entries while the copy is taken: the copy's cache may be behind its log.
    let crashed = tempfile::tempdir().unwrap();
    let more = {
        let node = node.clone();
        tokio::spawn(async move {
            for v in 0..300 {
                node.append(v, "during".into()).await.unwrap();
            }
        })
    };
    copy_as_crashed(dir.path(), crashed.path());
    more.await.unwrap();
    node.shutdown().await.unwrap();
    drop(trees);

    let (node, trees) = open(crashed.path(), common::identity(1));
    let authors: Vec<_> = node.reader().feeds().iter().map(|f| f.author).collect();
    let models: Vec<_> = authors.iter().map(|a| model_from_node(&node, a)).collect();
    wait_covered(&trees, &models).await;
    for model in &models {
        check_against_model(&trees, model);
    }
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_cache_file_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let (node, trees) = open(dir.path(), common::identity(1));
    let models = offer_interleaved(&node, &[129, 3]).await;
    wait_covered(&trees, &models).await;
    node.shutdown().await.unwrap();
    drop(trees);
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("{TREE_FILE}{suffix}")));
    }
    std::fs::write(dir.path().join(TREE_FILE), vec![0x5a; 20_000]).unwrap();

    let (node, trees) = open(dir.path(), common::identity(1));
    wait_covered(&trees, &models).await;
    for model in &models {
        check_against_model(&trees, model);
    }
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_beside_another_log_or_none_is_rebuilt() {
    // Node A's cache, complete, moved beside node B's log of other feeds.
    let a = tempfile::tempdir().unwrap();
    let (node, trees) = open(a.path(), common::identity(1));
    let a_models = offer_interleaved(&node, &[300]).await;
    wait_covered(&trees, &a_models).await;
    node.shutdown().await.unwrap();
    drop(trees);

    // B's log has the same shape (record sizes, batches) with another author's entries:
    // A's cache finds an entry where it says its last one is, but not that one.
    let b = tempfile::tempdir().unwrap();
    let b_models = {
        let (node, _) =
            kappalog::node::Node::open_with_identity(b.path(), common::identity(2)).unwrap();
        let models = offer_interleaved_as(&node, 30, &[300]).await;
        node.shutdown().await.unwrap();
        models
    };
    std::fs::copy(a.path().join(TREE_FILE), b.path().join(TREE_FILE)).unwrap();
    let (node, trees) = open(b.path(), common::identity(2));
    let own = &b_models[0];
    wait_covered(&trees, std::slice::from_ref(own)).await;
    check_against_model(&trees, own);
    assert_eq!(
        trees.size(&a_models[0].author),
        0,
        "A's feed is not in B's log"
    );
    node.shutdown().await.unwrap();
    drop(trees);

    // Deleted: rebuilt from the log.
    std::fs::remove_file(b.path().join(TREE_FILE)).unwrap();
    let (node, trees) = open(b.path(), common::identity(2));
    wait_covered(&trees, std::slice::from_ref(own)).await;
    check_against_model(&trees, own);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_that_does_not_load_is_refused_then_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (node, trees) = open(dir.path(), common::identity(1));
    let models = offer_interleaved(&node, &[300]).await;
    wait_covered(&trees, &models).await;
    node.shutdown().await.unwrap();
    drop(trees);
    // The feed's edge cut short, as damage would leave it.
    let conn = rusqlite::Connection::open(dir.path().join(TREE_FILE)).unwrap();
    let changed = conn
        .execute("UPDATE feeds SET edge = substr(edge, 1, 40)", [])
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);

    let (node, trees) = open(dir.path(), common::identity(1));
    let author = models[0].author;
    crate::common::index::eventually("the cache to open", || trees.size(&author) == 300).await;
    let refused = trees.root(&author, 300).unwrap_err();
    assert!(!refused.is_client_error(), "{refused:?}");
    // The feed grows: the follower finds the edge bad, rebuilds, and answers right.
    let more = common::feed(&common::identity(10), 301);
    node.offer_verified_batch(more[300..].to_vec())
        .await
        .unwrap();
    let model = common::tree::model_from_node(&node, &author);
    wait_covered(&trees, std::slice::from_ref(&model)).await;
    check_against_model(&trees, &model);
    node.shutdown().await.unwrap();
}
