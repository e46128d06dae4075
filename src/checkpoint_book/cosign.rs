//! Cosigning at gossip time: one tick (once a second, [`MIN_COSIGN_INTERVAL_MS`]) cosigns
//! every feed whose served author checkpoint grew since the last tick, in one batch.
//!
//! For each such feed the request proves from the largest checkpoint the witness journal
//! (`DATA_DIR/witness`) holds for its origin, with the consistency proof computed from the
//! node's own tree; [`DurableWitness::add_feed_checkpoints`] decides each against that
//! record, appends every accepted record and makes them durable with one fdatasync, and only
//! then are the cosignatures added to the book (which serves and gossips them). So the node
//! never cosigns two inconsistent checkpoints of one origin, across restarts and `kill -9`:
//! the journal, read back at open, is what each decision is checked against.
//!
//! A node restored from a backup may hold a log behind what it already cosigned (and its
//! own key may be live elsewhere): it cosigns nothing while its own-feed fence is closed
//! (`starting`, `catching_up`, `diverged`), so nothing is cosigned before the node has
//! caught up with its peers' claims about it.
//!
//! [`MIN_COSIGN_INTERVAL_MS`]: crate::tlog::witness::MIN_COSIGN_INTERVAL_MS

use crate::identity::Author;
use crate::tlog::checkpoint::SignedCheckpoint;
use crate::tlog::witness::AddCheckpointRequest;
use crate::witness_state::{DurableWitness, WitnessError};

use super::CheckpointBook;

/// What one tick did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CosignReport {
    /// Feeds whose checkpoint was put to the witness.
    pub tried: usize,
    /// Cosignatures made and added to the book (repeats included).
    pub cosigned: usize,
    /// Refused by the witness (a checkpoint inconsistent with one it cosigned, or an error).
    pub refused: usize,
}

/// One tick: cosigns every feed whose author checkpoint grew, as one batch (module docs).
/// `fence_open`: the node's own-feed fence allows appends now. Blocks on the witness's
/// fdatasync: run it on a blocking thread.
pub fn cosign_tick(
    book: &CheckpointBook,
    witness: &DurableWitness,
    fence_open: bool,
    now_secs: u64,
) -> CosignReport {
    let mut report = CosignReport::default();
    if !fence_open {
        return report;
    }
    let candidates = book.take_to_cosign();
    let mut requests = Vec::with_capacity(candidates.len());
    let mut authors = Vec::with_capacity(candidates.len());
    let mut retry = Vec::new();
    for (author, signed) in candidates {
        match request_for(book, witness, &author, signed) {
            Some(Ok(request)) => {
                requests.push(request);
                authors.push(author);
            }
            Some(Err(())) => retry.push(author),
            None => {}
        }
    }
    book.retry_cosign(retry);
    report.tried = requests.len();
    if requests.is_empty() {
        return report;
    }
    let vkey = witness.cosigner_vkey();
    let answers = witness.add_feed_checkpoints(&requests, now_secs);
    for ((author, request), answer) in authors.into_iter().zip(&requests).zip(answers) {
        match answer {
            Ok(accepted) => {
                let checkpoint = request.checkpoint().checkpoint();
                match book.add_own_cosignature(author, &vkey, checkpoint, &accepted.cosignature) {
                    Ok(_) => report.cosigned += 1,
                    Err(e) => tracing::warn!(%author, "own cosignature not added: {e}"),
                }
            }
            Err(WitnessError::Refused(refusal)) => {
                report.refused += 1;
                tracing::warn!(%author, "not cosigned: {refusal}");
            }
            Err(e) => {
                report.refused += 1;
                tracing::error!(%author, "not cosigned: {e}");
            }
        }
    }
    report
}

/// The request for `author`'s checkpoint `signed`: from the witness's record, with the
/// node's consistency proof. None when there is nothing to do (the witness cosigned a larger
/// one); `Err` when the tree cannot prove it yet (retried next tick).
fn request_for(
    book: &CheckpointBook,
    witness: &DurableWitness,
    author: &Author,
    signed: SignedCheckpoint,
) -> Option<Result<AddCheckpointRequest, ()>> {
    let origin = signed.checkpoint().origin();
    let size = signed.checkpoint().size();
    let old = witness.cosigned(origin).map_or(0, |tree| tree.size);
    if old > size {
        return None;
    }
    let proof = if old == 0 || old == size {
        Vec::new()
    } else {
        match book.trees().consistency_proof(author, old, size) {
            Ok(proof) => proof,
            Err(e) => {
                tracing::debug!(%author, "cosigning waits for the tree: {e}");
                return Some(Err(()));
            }
        }
    };
    Some(AddCheckpointRequest::new(old, proof, signed).map_err(|_| ()))
}
