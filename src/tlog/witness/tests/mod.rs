//! Unit tests of the witness, and the fixtures they share: a log serving one origin, its
//! trees and checkpoints, a cosigner.
//!
//! - `request`: the request body, the spec's example and one hostile body per rule;
//! - `add`: every answer of `add-checkpoint`;
//! - `forks`: a randomized run over two diverging trees of one origin that must never
//!   yield two inconsistent cosignatures, across restarts from the journal;
//! - `persist`: the state file.

mod add;
mod forks;
mod persist;
mod request;

use std::collections::BTreeMap;

use base64ct::{Base64, Encoding};
use ed25519_dalek::SigningKey;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::tlog::checkpoint::{Checkpoint, CheckpointError, SignedCheckpoint};
use crate::tlog::cosignature::CosignatureVerifier;
use crate::tlog::merkle::{
    leaf_hash, prove_consistency, tree_hash, Hash, MemoryTree, EMPTY_ROOT, MAX_TREE_SIZE,
};
use crate::tlog::note::{Note, NoteError, NoteSignature, VerifyError};
use crate::tlog::vkey::{KeyType, VerifierKey};

const ORIGIN: &str = "example.com/log";

fn log_key() -> SigningKey {
    SigningKey::from_bytes(&[1; 32])
}

fn log_vkey() -> VerifierKey {
    VerifierKey::new(ORIGIN, KeyType::Ed25519, log_key().verifying_key()).unwrap()
}

fn cosigner() -> Cosigner {
    Cosigner::new("witness.example/w1", SigningKey::from_bytes(&[9; 32])).unwrap()
}

fn serving() -> WitnessState {
    let mut state = WitnessState::new();
    state.serve(log_vkey()).unwrap();
    state
}

/// A tree of `n` leaves whose inputs start with `prefix` after the first `common` leaves.
fn tree(n: u64, common: u64, prefix: &str) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for i in 0..n {
        let input = match i < common {
            true => format!("common {i}"),
            false => format!("{prefix} {i}"),
        };
        tree.append(leaf_hash(input.as_bytes())).unwrap();
    }
    tree
}

fn root(tree: &MemoryTree, size: u64) -> Hash {
    tree_hash(size, tree).unwrap()
}

fn signed(size: u64, root: Hash) -> SignedCheckpoint {
    SignedCheckpoint::sign(Checkpoint::new(ORIGIN, size, root).unwrap(), &log_key()).unwrap()
}

fn request(old: u64, proof: Vec<Hash>, checkpoint: SignedCheckpoint) -> AddCheckpointRequest {
    AddCheckpointRequest::new(old, proof, checkpoint).unwrap()
}

/// The request a well-behaved log sends to move the witness from `old` to `new` of `tree`.
fn honest(tree: &MemoryTree, old: u64, new: u64) -> AddCheckpointRequest {
    let proof = prove_consistency(old, new, tree).unwrap();
    request(old, proof, signed(new, root(tree, new)))
}

/// Decides `request` and, when accepted, records it, as the caller's contract says.
fn submit(state: &mut WitnessState, request: &AddCheckpointRequest) -> Result<Accepted, Refusal> {
    let accepted = add_checkpoint(state, request, 1_700_000_000, &cosigner())?;
    state.record(&accepted.entry).unwrap();
    Ok(accepted)
}
