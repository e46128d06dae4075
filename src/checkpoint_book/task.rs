//! The book's two tasks, both the node's ([`Node::spawn`], ended by its shutdown):
//!
//! - **follow**: on every publish of the trees, checkpoints waiting for entries are offered
//!   again and the node's own newest checkpoint is offered;
//! - **tick**, once a second: the journal's appends are made durable (one fdatasync, only
//!   if anything was appended), then the feeds whose checkpoint grew are cosigned in one
//!   batch ([`super::cosign`]). At shutdown the journal is flushed once more.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::fence::OwnFeedState;
use crate::fork::ForkProof;
use crate::node::Node;
use crate::tlog::split_view::CheckpointForkProof;
use crate::tlog::witness::MIN_COSIGN_INTERVAL_MS;
use crate::tree::Trees;
use crate::witness_state::DurableWitness;

use super::cosign::cosign_tick;
use super::cosigners::CosignerKeys;
use super::journal::{Journal, JournalOpenError};
use super::CheckpointBook;

/// Opens `DATA_DIR/checkpoints`, builds the book over `trees`, and starts its tasks;
/// `witness` cosigns the feeds held (none: the book keeps and serves, cosigns nothing).
/// Reads the journal on the calling thread (at startup, before serving).
pub fn start(
    node: &Node,
    trees: Trees,
    witness: Option<DurableWitness>,
    keys: CosignerKeys,
) -> Result<CheckpointBook, JournalOpenError> {
    let (journal, replayed) = Journal::open(node.data_dir())?;
    if replayed.records > 0 || replayed.compacted {
        tracing::info!(
            feeds = replayed.notes.len(),
            records = replayed.records,
            compacted = replayed.compacted,
            "checkpoint book replayed"
        );
    }
    let book = CheckpointBook::new(
        trees.clone(),
        node.reader().clone(),
        node.author(),
        keys,
        journal,
        replayed.notes,
    );
    let forked = node.clone();
    book.set_forked_check(Arc::new(move |author| forked.is_forked(author)));
    let recorder = node.clone();
    book.set_fork_sink(Arc::new(move |proof| record_split_view(&recorder, proof)));
    node.spawn(follow(book.clone(), trees, node.stopping()));
    node.spawn(tick(book.clone(), witness, node.clone(), node.stopping()));
    Ok(book)
}

/// Records a split view in the node's fork set (`DATA_DIR/forks`, the fork note, the feed
/// excluded), as one of the node's tasks when called on a runtime, else blocking.
pub fn record_split_view(node: &Node, proof: CheckpointForkProof) {
    let proof = ForkProof::from(proof);
    if tokio::runtime::Handle::try_current().is_ok() {
        let node_for_task = node.clone();
        node.spawn(async move {
            if let Err(e) = node_for_task.record_proof_async(proof).await {
                tracing::error!("recording a split view: {e}");
            }
        });
    } else if let Err(e) = node.record_proof(proof) {
        tracing::error!("recording a split view: {e}");
    }
}

async fn follow(book: CheckpointBook, trees: Trees, mut stopping: watch::Receiver<bool>) {
    let mut published = trees.subscribe();
    let _ = book.offer_own();
    loop {
        tokio::select! {
            changed = published.changed() => {
                if changed.is_err() {
                    break;
                }
                // Each offer reads a few tree nodes: µs, as the HTTP readers do inline.
                book.entries_arrived();
                let _ = book.offer_own();
            }
            _ = stopping.wait_for(|s| *s) => break,
        }
    }
}

async fn tick(
    book: CheckpointBook,
    witness: Option<DurableWitness>,
    node: Node,
    mut stopping: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(Duration::from_millis(MIN_COSIGN_INTERVAL_MS));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stopping.wait_for(|s| *s) => break,
        }
        let fence_open = node.own_feed_state() == OwnFeedState::Ok;
        let (book, witness) = (book.clone(), witness.clone());
        let done = tokio::task::spawn_blocking(move || {
            book.flush();
            if let Some(witness) = witness {
                let now_secs = crate::clock::now_ms() / 1000;
                cosign_tick(&book, &witness, fence_open, now_secs);
            }
        })
        .await;
        if let Err(e) = done {
            tracing::error!("checkpoint book tick failed: {e}");
        }
    }
    let _ = tokio::task::spawn_blocking(move || book.flush()).await;
}
