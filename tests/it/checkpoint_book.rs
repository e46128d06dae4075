//! The checkpoint book over a real store and a real tree follower in a temp dir: the offer
//! rules end to end, cosigners and their cap, split views, cosigning in group-committed
//! batches, restarts, a torn journal, and a flood of notes.

use std::path::Path;
use std::sync::{Arc, Mutex};

use kappalog::checkpoint_book::cosign::cosign_tick;
use kappalog::checkpoint_book::{
    record_split_view, CheckpointBook, CheckpointOfferError, CosignerKeys, Journal,
    CHECKPOINTS_FILE,
};
use kappalog::fork::ForkProof;
use kappalog::identity::{Author, Identity};
use kappalog::node::Node;
use kappalog::tlog::checkpoint::{origin_for, Checkpoint, SignedCheckpoint};
use kappalog::tlog::cosignature::{cosign, cosigner_name, CosignatureVerifier};
use kappalog::tlog::merkle::{prove_consistency, tree_hash, Hash, MemoryTree};
use kappalog::tlog::split_view::CheckpointForkProof;
use kappalog::tlog::vkey::{KeyType, VerifierKey};
use kappalog::tlog::witness::{AddCheckpointRequest, Cosigner};
use kappalog::tree::Trees;
use kappalog::witness_state::{DurableWitness, WitnessError};

use crate::common;
use crate::common::index::eventually;
use crate::common::tree::{model_of, open, wait_covered, Model};

/// A signed checkpoint of `id`'s feed at `size` over `tree` (the model).
fn checkpoint(id: &Identity, tree: &MemoryTree, size: u64) -> SignedCheckpoint {
    let root = tree_hash(size, tree).unwrap();
    signed_with_root(id, size, root)
}

fn signed_with_root(id: &Identity, size: u64, root: Hash) -> SignedCheckpoint {
    let body = Checkpoint::new(&origin_for(id.author().as_bytes()), size, root).unwrap();
    SignedCheckpoint::sign(body, id.signing_key()).unwrap()
}

/// `signed` with a cosignature by kappalog node `node` added.
fn cosigned_by(signed: &SignedCheckpoint, node: &Identity) -> SignedCheckpoint {
    let mut out = signed.clone();
    let name = cosigner_name(node.author().as_bytes());
    let line = cosign(
        &name,
        node.signing_key(),
        signed.checkpoint().body(),
        1_700_000_000,
    )
    .unwrap();
    out.add_signature(line).unwrap();
    out
}

/// Appends `id`'s feed of `n` entries to `node` and returns its model.
async fn hold(node: &Node, id: &Identity, n: u64) -> Model {
    let feed = common::feed(id, n);
    node.offer_verified_batch(feed.clone()).await.unwrap();
    model_of(&feed)
}

/// A book over the node with no tasks: the tests drive entries_arrived and cosign_tick.
fn open_book(node: &Node, trees: &Trees, keys: CosignerKeys) -> CheckpointBook {
    let (journal, replayed) = Journal::open(node.data_dir()).unwrap();
    CheckpointBook::new(
        trees.clone(),
        node.reader().clone(),
        node.author(),
        keys,
        journal,
        replayed.notes,
    )
}

fn open_witness(dir: &Path, node: &Identity) -> DurableWitness {
    let cosigner = Cosigner::for_node(node.signing_key().clone());
    DurableWitness::open(dir, &[], cosigner).unwrap().0
}

fn served(book: &CheckpointBook, author: &Author) -> SignedCheckpoint {
    SignedCheckpoint::parse(&book.served(author).expect("a served note")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_keep_wait_and_refuse_by_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let (node, trees) = open(dir.path(), common::identity(1));
    let (a, b, c) = (
        common::identity(10),
        common::identity(11),
        common::identity(12),
    );
    let model_a = hold(&node, &a, 20).await;
    let feed_b = common::feed(&b, 9);
    node.offer_verified_batch(feed_b[..5].to_vec())
        .await
        .unwrap();
    let model_b = model_of(&feed_b);
    wait_covered(&trees, std::slice::from_ref(&model_a)).await;
    let book = open_book(&node, &trees, CosignerKeys::default());
    let mut changes = book.subscribe();
    let peer = common::identity(2).author();

    let at_10 = checkpoint(&a, &model_a.tree, 10).to_bytes();
    assert!(book.offer(&peer, &at_10).unwrap(), "kept and served");
    assert_eq!(changes.try_recv().unwrap(), a.author());
    assert_eq!(book.served(&a.author()).unwrap().as_ref(), at_10.as_slice());
    assert!(!book.offer(&peer, &at_10).unwrap(), "the same again");
    let at_8 = checkpoint(&a, &model_a.tree, 8).to_bytes();
    assert!(!book.offer(&peer, &at_8).unwrap(), "older");
    assert_eq!(book.size_and_k(&a.author()), (10, 0));

    // Beyond the entries held: waits, then is served once they arrive.
    let at_9 = checkpoint(&b, &model_b.tree, 9).to_bytes();
    assert!(!book.offer(&peer, &at_9).unwrap());
    assert!(book.served(&b.author()).is_none());
    node.offer_verified_batch(feed_b[5..].to_vec())
        .await
        .unwrap();
    wait_covered(&trees, std::slice::from_ref(&model_b)).await;
    assert_eq!(book.entries_arrived(), 1);
    assert_eq!(book.served(&b.author()).unwrap().as_ref(), at_9.as_slice());

    // A feed not held: dropped unchecked.
    let c_tree = model_of(&common::feed(&c, 3)).tree;
    assert!(!book
        .offer(&peer, &checkpoint(&c, &c_tree, 3).to_bytes())
        .unwrap());
    assert!(book.served(&c.author()).is_none());

    // Violations: malformed, not a feed's, a bad author signature, over the cap.
    let refuse = |bytes: &[u8]| book.offer(&peer, bytes).unwrap_err();
    assert!(matches!(
        refuse(b"not a note"),
        CheckpointOfferError::Malformed(_)
    ));
    let forged = {
        let body = Checkpoint::new(&origin_for(a.author().as_bytes()), 20, [7; 32]).unwrap();
        SignedCheckpoint::sign(body, c.signing_key()).unwrap()
    };
    let e = refuse(&forged.to_bytes());
    assert!(matches!(e, CheckpointOfferError::NotAuthorSigned(_)), "{e}");
    assert!(e.is_violation());
    let huge = vec![b'a'; kappalog::tlog::note::MAX_NOTE_BYTES + 1];
    assert!(matches!(
        refuse(&huge),
        CheckpointOfferError::TooLarge { .. }
    ));
    let stats = book.stats();
    assert_eq!(stats.notes_refused, 3);
    assert_eq!(stats.notes_unknown_feed, 1);
    assert_eq!(book.items().len(), 2);
    assert_eq!(node.author(), common::identity(1).author());
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosignatures_are_kept_by_known_keys_up_to_the_cap_trusted_first() {
    let dir = tempfile::tempdir().unwrap();
    let (node, trees) = open(dir.path(), common::identity(1));
    let a = common::identity(10);
    let model = hold(&node, &a, 12).await;
    wait_covered(&trees, std::slice::from_ref(&model)).await;
    let trusted = common::identity(200);
    let keys = CosignerKeys::new(vec![], vec![*trusted.author().as_bytes()]);
    let book = open_book(&node, &trees, keys);
    let peer = common::identity(2).author();
    let plain = checkpoint(&a, &model.tree, 12);

    // One known node, one unknown name: the first is kept and served, the second counted.
    let mut note = cosigned_by(&plain, &common::identity(100));
    let other = common::identity(101);
    let line = cosign(
        "example.com/w",
        other.signing_key(),
        plain.checkpoint().body(),
        5,
    )
    .unwrap();
    note.add_signature(line).unwrap();
    assert!(book.offer(&peer, &note.to_bytes()).unwrap());
    assert_eq!(book.size_and_k(&a.author()), (12, 1));
    assert_eq!(served(&book, &a.author()).note().signatures().len(), 2);
    assert_eq!(book.stats().cosignatures_unknown_key, 1);

    // Strangers up to and past the cap, then the trusted one: it is kept, a stranger goes.
    let cap = kappalog::tlog::feed_checkpoints::MAX_COSIGNERS_PER_FEED;
    for seed in 102..(102 + cap as u8) {
        let note = cosigned_by(&plain, &common::identity(seed));
        book.offer(&peer, &note.to_bytes()).unwrap();
    }
    assert_eq!(book.size_and_k(&a.author()).1, cap);
    assert!(book
        .offer(&peer, &cosigned_by(&plain, &trusted).to_bytes())
        .unwrap());
    assert_eq!(book.size_and_k(&a.author()).1, cap);
    let lines = served(&book, &a.author());
    let first = &lines.note().signatures()[1];
    assert_eq!(
        first.name(),
        cosigner_name(trusted.author().as_bytes()),
        "trusted first"
    );
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_conflicting_author_checkpoints_fork_the_feed_durably() {
    let dir = tempfile::tempdir().unwrap();
    let (node, trees) = open(dir.path(), common::identity(1));
    let a = common::identity(10);
    let model = hold(&node, &a, 16).await;
    wait_covered(&trees, std::slice::from_ref(&model)).await;
    let book = open_book(&node, &trees, CosignerKeys::default());
    let found: Arc<Mutex<Vec<CheckpointForkProof>>> = Arc::default();
    let (sink, recorder) = (found.clone(), node.clone());
    book.set_fork_sink(Arc::new(move |proof| {
        sink.lock().unwrap().push(proof.clone());
        record_split_view(&recorder, proof);
    }));
    let peer = common::identity(2).author();
    assert!(book
        .offer(&peer, &checkpoint(&a, &model.tree, 16).to_bytes())
        .unwrap());
    // The author signs another root for size 9: the node's tree and its kept checkpoint
    // say otherwise.
    let other = signed_with_root(&a, 9, [0x55; 32]);
    assert!(!book.offer(&peer, &other.to_bytes()).unwrap());
    let proofs = found.lock().unwrap().clone();
    assert_eq!(proofs.len(), 1);
    assert_eq!(proofs[0].check().unwrap(), a.author());
    assert_eq!(book.stats().forks_found, 1);

    // Recorded like an entry fork: forked, in GET /forks, in DATA_DIR/forks; not among the
    // proofs sync v2 gossips.
    let forked = node.clone();
    book.set_forked_check(Arc::new(move |author| forked.is_forked(author)));
    eventually("the feed forked", || node.is_forked(&a.author())).await;
    // The store marks the author forked with its note in the log, then writes the proof to
    // DATA_DIR/forks, and only then does the proof show in GET /forks.
    eventually("the proof recorded", || !node.all_fork_proofs().is_empty()).await;
    assert!(
        book.served(&a.author()).is_none(),
        "a forked feed is not served"
    );
    assert!(book.items().is_empty());
    assert!(
        node.fork_proofs().is_empty(),
        "a v2 peer cannot decode a split view"
    );
    let api = kappalog::http::router(node.clone(), kappalog::http::HttpConfig::default());
    let request = axum::http::Request::get("/forks")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(api, request).await.unwrap();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let forks: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(forks[0]["author"], a.author().to_string());
    assert!(
        forks[0]["checkpoints"][0]
            .as_str()
            .unwrap()
            .contains("\n9\n"),
        "{forks}"
    );
    node.shutdown().await.unwrap();
    drop(book);
    drop(trees);

    let recorded = kappalog::store::fork_log::read_set(dir.path()).unwrap();
    let proof = recorded
        .get(&a.author())
        .expect("the proof in DATA_DIR/forks");
    assert!(!proof.is_v1_encodable());
    assert_eq!(proof, &ForkProof::from(proofs[0].clone()));
    let (node, _) = Node::open_with_identity(dir.path(), common::identity(1)).unwrap();
    assert!(
        node.forked_authors().contains(&a.author()),
        "still forked after a restart"
    );
    assert_eq!(node.all_fork_proofs().len(), 1);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosigning_is_one_fdatasync_per_batch_and_the_journal_keeps_refusing_a_fork() {
    let dir = tempfile::tempdir().unwrap();
    let me = common::identity(1);
    let (node, trees) = open(dir.path(), me.clone());
    let ids: Vec<Identity> = (10..13).map(common::identity).collect();
    let mut models = Vec::new();
    for id in &ids {
        models.push(hold(&node, id, 30).await);
    }
    wait_covered(&trees, &models).await;
    let book = open_book(&node, &trees, CosignerKeys::default());
    let witness = open_witness(dir.path(), &me);
    let peer = common::identity(2).author();
    for (id, model) in ids.iter().zip(&models) {
        book.offer(&peer, &checkpoint(id, &model.tree, 20).to_bytes())
            .unwrap();
    }
    let syncs = witness.sync_count();
    let report = cosign_tick(&book, &witness, true, 1_700_000_000);
    assert_eq!((report.tried, report.cosigned, report.refused), (3, 3, 0));
    assert_eq!(
        witness.sync_count() - syncs,
        1,
        "one fdatasync for the batch"
    );
    let vkey = witness.cosigner_vkey();
    let verifier = CosignatureVerifier::new(vkey.clone()).unwrap();
    for id in &ids {
        let note = served(&book, &id.author());
        let line = note
            .note()
            .signatures()
            .iter()
            .find(|l| l.name() == vkey.name());
        assert!(verifier
            .verify_line(note.checkpoint().body(), line.unwrap())
            .is_some());
    }
    assert_eq!(book.stats().cosignatures_made, 3);

    // Nothing grew: the next tick does nothing. The fence closed: nothing either.
    assert_eq!(cosign_tick(&book, &witness, true, 1_700_000_001).tried, 0);
    for (id, model) in ids.iter().zip(&models) {
        book.offer(&peer, &checkpoint(id, &model.tree, 30).to_bytes())
            .unwrap();
    }
    assert_eq!(cosign_tick(&book, &witness, false, 1_700_000_002).tried, 0);
    let syncs = witness.sync_count();
    let report = cosign_tick(&book, &witness, true, 1_700_000_003);
    assert_eq!(
        report.cosigned, 3,
        "grown from 20 to 30, with the node's proofs"
    );
    assert_eq!(witness.sync_count() - syncs, 1);

    // After a restart the witness journal still refuses a checkpoint of feed 0 that is
    // inconsistent with the one it cosigned at 30.
    drop(witness);
    node.shutdown().await.unwrap();
    let (node, _trees) = open(dir.path(), me.clone());
    let witness = open_witness(dir.path(), &me);
    let origin = origin_for(ids[0].author().as_bytes());
    assert_eq!(witness.cosigned(&origin).unwrap().size, 30);
    let mut forked = models[0].tree.clone();
    forked.append([0xAA; 32]).unwrap();
    let fake = signed_with_root(&ids[0], 31, [0xBB; 32]);
    let proof = prove_consistency(30, 31, &forked).unwrap();
    let request = AddCheckpointRequest::new(30, proof, fake).unwrap();
    let answers = witness.add_feed_checkpoints(&[request], 1_700_000_010);
    assert!(
        matches!(&answers[0], Err(WitnessError::Refused(_))),
        "{answers:?}"
    );
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_notes_survive_a_restart_and_a_torn_journal_tail() {
    let dir = tempfile::tempdir().unwrap();
    let me = common::identity(1);
    let (node, trees) = open(dir.path(), me.clone());
    let (a, b) = (common::identity(10), common::identity(11));
    let models = [hold(&node, &a, 8).await, hold(&node, &b, 8).await];
    wait_covered(&trees, &models).await;
    let [model_a, model_b] = models;
    let book = open_book(&node, &trees, CosignerKeys::default());
    let peer = common::identity(2).author();
    let note_a = cosigned_by(&checkpoint(&a, &model_a.tree, 8), &common::identity(100));
    assert!(book.offer(&peer, &note_a.to_bytes()).unwrap());
    assert!(book
        .offer(&peer, &checkpoint(&b, &model_b.tree, 8).to_bytes())
        .unwrap());
    book.flush();
    drop(book);
    node.shutdown().await.unwrap();

    // A torn tail: the last record (b's) loses its last byte.
    let path = dir.path().join(CHECKPOINTS_FILE);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 1)
        .unwrap();

    // Reopened without the tree follower: open does not need the log.
    let (node, _) = Node::open_with_identity(dir.path(), me.clone()).unwrap();
    let trees = kappalog::tree::start(&node);
    let book = open_book(&node, &trees, CosignerKeys::default());
    assert_eq!(
        book.served(&a.author()).unwrap().as_ref(),
        note_a.to_bytes().as_slice()
    );
    assert_eq!(book.size_and_k(&a.author()), (8, 1));
    assert!(
        book.served(&b.author()).is_none(),
        "the torn record is dropped"
    );
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_notes_for_one_feed_keeps_one_pending_and_journals_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (node, trees) = open(dir.path(), common::identity(1));
    let a = common::identity(10);
    let model = hold(&node, &a, 4).await;
    wait_covered(&trees, std::slice::from_ref(&model)).await;
    let book = open_book(&node, &trees, CosignerKeys::default());
    let peer = common::identity(2).author();
    assert!(book
        .offer(&peer, &checkpoint(&a, &model.tree, 4).to_bytes())
        .unwrap());
    book.flush();
    let path = dir.path().join(CHECKPOINTS_FILE);
    let journal_len = std::fs::metadata(&path).unwrap().len();
    // 10,000 valid notes of growing sizes beyond the entries held: each replaces the one
    // pending slot, nothing is served or journalled.
    let notes: Vec<Vec<u8>> = (5..10_005u64)
        .map(|size| signed_with_root(&a, size, [size as u8; 32]).to_bytes())
        .collect();
    for note in &notes {
        assert!(!book.offer(&peer, note).unwrap());
    }
    book.flush();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), journal_len);
    assert_eq!(book.items().len(), 1);
    assert_eq!(book.size_and_k(&a.author()), (4, 0));
    assert_eq!(book.stats().notes_received, 10_001);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_started_book_serves_the_own_checkpoint_and_cosigns_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let me = common::identity(1);
    let (node, trees) = open(dir.path(), me.clone());
    let a = common::identity(10);
    let model = hold(&node, &a, 5).await;
    for v in 0..3 {
        node.append(v, format!("own {v}")).await.unwrap();
    }
    wait_covered(&trees, std::slice::from_ref(&model)).await;
    let witness = open_witness(dir.path(), &me);
    let book = kappalog::checkpoint_book::start(
        &node,
        trees.clone(),
        Some(witness.clone()),
        CosignerKeys::default(),
    )
    .unwrap();
    eventually("the own checkpoint served", || {
        book.size_and_k(&me.author()).0 == 3
    })
    .await;
    let peer = common::identity(2).author();
    book.offer(&peer, &checkpoint(&a, &model.tree, 5).to_bytes())
        .unwrap();
    // No sync configured: the own-feed fence is open, so the tick cosigns within a second.
    eventually("the node's own cosignature", || {
        book.size_and_k(&a.author()).1 == 1
    })
    .await;
    let vkey: VerifierKey = witness.cosigner_vkey();
    assert_eq!(vkey.key_type(), KeyType::CosignatureV1);
    node.shutdown().await.unwrap();
}

#[test]
fn a_running_node_serves_its_own_checkpoint_in_feeds_and_counts_in_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (data, key) = (dir.path().join("data"), dir.path().join("node.key"));
    let (_node, addr) = common::run_node(&data, &key, &[]);
    for value in 0..3 {
        let response = common::post(addr, "/add", &value.to_string());
        assert_eq!(response.status, 201, "{}", response.body);
    }
    common::wait_until("the own checkpoint in /feeds", || {
        let page: serde_json::Value =
            serde_json::from_str(&common::get(addr, "/feeds").body).unwrap();
        page["feeds"][0]["checkpoint_size"] == 3 && page["feeds"][0]["k"] == 0
    });
    let metrics = common::get(addr, "/metrics").body;
    assert!(
        metrics.contains("kappalog_checkpoint_notes_received 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kappalog_cosignatures_made 0"),
        "{metrics}"
    );
    assert!(data.join(CHECKPOINTS_FILE).exists());
}

/// `submit` (`POST /feeds/AUTHOR/checkpoint`) over a foreign feed the node holds: a
/// configured witness's line kept, a checkpoint beyond the entries waiting, a feed not
/// held, and the two refusals of the whole note (another feed's, a bad line under a known
/// key), which store nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_notes_report_each_part_and_refuse_whole() {
    use kappalog::checkpoint_book::{AuthorOutcome, NoteOutcome};
    let dir = tempfile::tempdir().unwrap();
    let (node, trees) = open(dir.path(), common::identity(1));
    let (a, b) = (common::identity(10), common::identity(11));
    let model = hold(&node, &a, 6).await;
    wait_covered(&trees, std::slice::from_ref(&model)).await;
    let witness = common::identity(77);
    let vkey = VerifierKey::new(
        "witness.example/w1",
        KeyType::CosignatureV1,
        witness.signing_key().verifying_key(),
    )
    .unwrap();
    let book = open_book(&node, &trees, CosignerKeys::new(vec![vkey], vec![]));
    let report = |outcome: NoteOutcome| match outcome {
        NoteOutcome::Checked(report) => report,
        other => panic!("{other:?}"),
    };
    let witnessed = |signed: &SignedCheckpoint, body: &str| {
        let mut out = signed.clone();
        let line = cosign("witness.example/w1", witness.signing_key(), body, 5).unwrap();
        out.add_signature(line).unwrap();
        out.to_bytes()
    };

    // Nothing kept yet to pair it with: a root the node's entries do not give is only
    // inconsistent with its tree (HTTP answers 409), and nothing is kept.
    let wrong = report(
        book.submit(&a.author(), &signed_with_root(&a, 3, [4; 32]).to_bytes())
            .unwrap(),
    );
    assert_eq!(
        (wrong.checkpoint, wrong.changed),
        (AuthorOutcome::Inconsistent, false)
    );
    assert!(book.served(&a.author()).is_none());

    let at_4 = checkpoint(&a, &model.tree, 4);
    let kept = report(
        book.submit(&a.author(), &witnessed(&at_4, at_4.checkpoint().body()))
            .unwrap(),
    );
    assert_eq!(kept.checkpoint, AuthorOutcome::Kept);
    assert_eq!((kept.cosignatures.kept, kept.changed), (1, true));
    assert_eq!(book.size_and_k(&a.author()), (4, 1));

    // Refused whole: the served note stays as it was.
    let before = book.served(&a.author()).unwrap();
    let at_6 = checkpoint(&a, &model.tree, 6);
    let bad_line = witnessed(&at_6, at_4.checkpoint().body());
    let e = book.submit(&a.author(), &bad_line).unwrap_err();
    assert!(
        matches!(&e, CheckpointOfferError::BadCosignature { name } if name == "witness.example/w1"),
        "{e}"
    );
    let e = book.submit(&b.author(), &at_6.to_bytes()).unwrap_err();
    assert!(matches!(e, CheckpointOfferError::OtherFeed { .. }), "{e}");
    assert_eq!(book.served(&a.author()).unwrap(), before);

    // Beyond the entries: waits (HTTP answers 202).
    let beyond = signed_with_root(&a, 9, [3; 32]);
    let pending = report(book.submit(&a.author(), &beyond.to_bytes()).unwrap());
    assert_eq!(
        (pending.checkpoint, pending.changed),
        (AuthorOutcome::Pending, false)
    );
    let unheld = common::identity(12);
    let outcome = book
        .submit(
            &unheld.author(),
            &checkpoint(&unheld, &model.tree, 1).to_bytes(),
        )
        .unwrap();
    assert_eq!(outcome, NoteOutcome::UnknownFeed(unheld.author()));
    assert_eq!(book.stats().notes_refused, 2);
    node.shutdown().await.unwrap();
}
