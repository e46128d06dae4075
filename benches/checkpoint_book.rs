//! Checkpoint book benchmark (issue 22): the cost of `offer` per note (a valid author
//! checkpoint, with and without a cosignature), and the cosigning rate with group commit
//! (checkpoints cosigned and made durable per second, one fdatasync per batch). Prints
//! figures, asserts nothing. `cargo bench --bench checkpoint_book`.
//!
//! `KAPPALOG_BENCH_BOOK_FEEDS` sets the feeds cosigned per batch (default 2,000, each of
//! 20 entries). Target: at least 1,000 checkpoints/s persisted.

use std::time::{Duration, Instant};

use kappalog::checkpoint_book::cosign::cosign_tick;
use kappalog::checkpoint_book::{CheckpointBook, CosignerKeys, Journal};
use kappalog::entry::UnsignedEntry;
use kappalog::identity::Identity;
use kappalog::node::Node;
use kappalog::tlog::checkpoint::{origin_for, Checkpoint, SignedCheckpoint};
use kappalog::tlog::cosignature::{cosign, cosigner_name};
use kappalog::tlog::merkle::{leaf_hash, MemoryTree};
use kappalog::tlog::witness::Cosigner;
use kappalog::witness_state::DurableWitness;

mod common;
use common::env_usize;

const WAIT: Duration = Duration::from_secs(3600);
const ENTRIES_PER_FEED: u64 = 20;

fn identity(n: usize) -> Identity {
    let mut seed = [7u8; 32];
    seed[..8].copy_from_slice(&(n as u64).to_le_bytes());
    Identity::from_seed(seed)
}

/// `id`'s feed of `n` entries and the root of its first `size`.
fn feed(
    id: &Identity,
    n: u64,
) -> (
    Vec<(kappalog::entry::Entry, kappalog::hash::Hash)>,
    MemoryTree,
) {
    let mut out: Vec<(kappalog::entry::Entry, kappalog::hash::Hash)> = Vec::new();
    let mut tree = MemoryTree::new();
    for seq in 1..=n {
        let prev = out.last().map(|(_, h)| *h);
        let signed = UnsignedEntry {
            author: id.author(),
            seq,
            timestamp: 1_700_000_000_000 + seq,
            prev,
            value: seq as i64,
            data: String::new(),
        }
        .sign(id);
        tree.append(leaf_hash(&signed.0.encode())).unwrap();
        out.push(signed);
    }
    (out, tree)
}

fn checkpoint(id: &Identity, tree: &MemoryTree) -> SignedCheckpoint {
    let body = Checkpoint::new(
        &origin_for(id.author().as_bytes()),
        tree.size(),
        tree.root().unwrap(),
    )
    .unwrap();
    SignedCheckpoint::sign(body, id.signing_key()).unwrap()
}

fn main() {
    let feeds = env_usize("KAPPALOG_BENCH_BOOK_FEEDS", 2_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let me = identity(usize::MAX);
    let (node, _) = Node::open_with_identity(tmp.path(), me.clone()).unwrap();
    let trees = rt.block_on(async { kappalog::tree::start(&node) });
    let ids: Vec<Identity> = (0..feeds).map(identity).collect();
    let mut notes = Vec::with_capacity(feeds);
    rt.block_on(async {
        for id in &ids {
            let (entries, tree) = feed(id, ENTRIES_PER_FEED);
            node.offer_verified_batch(entries).await.unwrap();
            notes.push(checkpoint(id, &tree));
        }
        for id in &ids {
            assert!(
                trees
                    .wait_for_size(&id.author(), ENTRIES_PER_FEED, WAIT)
                    .await
            );
        }
    });
    let (journal, replayed) = Journal::open(tmp.path()).unwrap();
    let book = CheckpointBook::new(
        trees.clone(),
        node.reader().clone(),
        node.author(),
        CosignerKeys::default(),
        journal,
        replayed.notes,
    );
    let peer = identity(usize::MAX - 1).author();

    // offer: each note new (kept, journalled), then each again (not newer).
    let bytes: Vec<Vec<u8>> = notes.iter().map(|n| n.to_bytes()).collect();
    let start = Instant::now();
    for note in &bytes {
        assert!(book.offer(&peer, note).unwrap());
    }
    let kept = start.elapsed().as_secs_f64() / feeds as f64;
    let start = Instant::now();
    for note in &bytes {
        assert!(!book.offer(&peer, note).unwrap());
    }
    let repeat = start.elapsed().as_secs_f64() / feeds as f64;
    // With one cosignature by a kappalog node: one more verification.
    let witness_id = identity(usize::MAX - 2);
    let name = cosigner_name(witness_id.author().as_bytes());
    let cosigned: Vec<Vec<u8>> = notes
        .iter()
        .map(|n| {
            let mut n = n.clone();
            let line = cosign(&name, witness_id.signing_key(), n.checkpoint().body(), 1).unwrap();
            n.add_signature(line).unwrap();
            n.to_bytes()
        })
        .collect();
    let start = Instant::now();
    for note in &cosigned {
        assert!(book.offer(&peer, note).unwrap());
    }
    let with_cosig = start.elapsed().as_secs_f64() / feeds as f64;
    println!(
        "offer, per note: kept {:.1} µs, repeat {:.1} µs, kept with one cosignature {:.1} µs",
        kept * 1e6,
        repeat * 1e6,
        with_cosig * 1e6
    );

    // Cosigning: every feed grew, one tick, one batch.
    let (witness, _) = DurableWitness::open(
        tmp.path(),
        &[],
        Cosigner::for_node(me.signing_key().clone()),
    )
    .unwrap();
    let syncs = witness.sync_count();
    let start = Instant::now();
    let report = cosign_tick(&book, &witness, true, 1_700_000_000);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "cosigning: {} checkpoints cosigned and persisted in {:.3} s with {} fdatasync: {:.0} checkpoints/s",
        report.cosigned,
        secs,
        witness.sync_count() - syncs,
        report.cosigned as f64 / secs
    );
    rt.block_on(async { node.shutdown().await.unwrap() });
}
