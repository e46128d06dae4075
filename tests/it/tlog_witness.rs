//! The witness's `add-checkpoint` answers cross-checked by an independent Python witness
//! written from C2SP tlog-witness (`tests/interop/tlog_witness.py`): a sequence of requests
//! (honest growth, a repeat, a fork at the same size and beyond, wrong old sizes, unknown
//! origins, missing and bad signatures, malformed bodies, proofs for other sizes) goes through
//! [`kappalog::tlog::witness::add_checkpoint`], recording each acceptance as the caller's
//! contract says, and Python must give the same status, the same 409 body, and find every
//! cosignature valid. A changed answer must make it disagree.
//!
//! python3 or its `cryptography` module missing: the test skips with a note, unless
//! `KAPPALOG_REQUIRE_PYTHON=1` (CI), where it fails.

use base64ct::{Base64, Encoding};
use ed25519_dalek::SigningKey;
use kappalog::tlog::checkpoint::{Checkpoint, SignedCheckpoint};
use kappalog::tlog::merkle::{prove_consistency, tree_hash, Hash, MemoryTree};
use kappalog::tlog::note::NoteSignature;
use kappalog::tlog::vkey::{KeyType, VerifierKey};
use kappalog::tlog::witness::{
    add_checkpoint, AddCheckpointRequest, Cosigner, Refusal, WitnessState,
};
use serde_json::{json, Value};

use crate::common::log_tree::labelled_tree;
use crate::common::python::python_verdict;

const ORIGIN: &str = "example.com/witnessed";

struct Scenario {
    log_key: SigningKey,
    log: MemoryTree,
    fork: MemoryTree,
}

impl Scenario {
    fn new() -> Self {
        Scenario {
            log_key: SigningKey::from_bytes(&[21; 32]),
            log: labelled_tree(30, 7, "log"),
            fork: labelled_tree(30, 7, "fork"),
        }
    }

    fn signed(&self, origin: &str, size: u64, root: Hash) -> String {
        let checkpoint = Checkpoint::new(origin, size, root).unwrap();
        SignedCheckpoint::sign(checkpoint, &self.log_key)
            .unwrap()
            .to_string()
    }

    /// `old`, the proof from `old` to `new` of `proof_tree`, a checkpoint of `new` of `tree`.
    fn body(&self, old: u64, new: u64, tree: &MemoryTree, proof_tree: &MemoryTree) -> String {
        let mut body = format!("old {old}\n");
        for hash in prove_consistency(old, new, proof_tree).unwrap() {
            body.push_str(&Base64::encode_string(&hash));
            body.push('\n');
        }
        body.push('\n');
        body + &self.signed(ORIGIN, new, tree_hash(new, tree).unwrap())
    }

    /// The request bodies, in order.
    fn requests(&self) -> Vec<String> {
        let (log, fork) = (&self.log, &self.fork);
        let root = |tree: &MemoryTree, size| tree_hash(size, tree).unwrap();
        let impostor = SigningKey::from_bytes(&[22; 32]);
        let forged_line = NoteSignature::new(ORIGIN, self.vkey().key_id(), vec![0x33; 64])
            .unwrap()
            .to_line();
        let checkpoint_12 = Checkpoint::new(ORIGIN, 12, root(log, 12)).unwrap();
        vec![
            format!("old 0\n\n{}", self.signed(ORIGIN, 0, root(log, 0))),
            self.body(3, 10, log, log),
            self.body(0, 10, log, log),
            self.body(10, 10, log, log),
            self.body(10, 10, fork, fork),
            self.body(10, 20, fork, fork),
            self.body(12, 20, log, log),
            format!(
                "old 0\n\n{}",
                self.signed("other.example/log", 5, root(log, 5))
            ),
            format!(
                "old 10\n\n{}",
                SignedCheckpoint::sign(checkpoint_12.clone(), &impostor).unwrap()
            ),
            format!("old 10\n\n{}\n{forged_line}", checkpoint_12.body()),
            format!("old 11\n\n{}", self.signed(ORIGIN, 5, root(log, 5))),
            format!(
                "old 10\nnot*base64\n\n{}",
                self.signed(ORIGIN, 12, root(log, 12))
            ),
            // A valid proof, but from 9 to 20, sent as from 10.
            self.body(9, 20, log, log)
                .replacen("old 9\n", "old 10\n", 1),
            format!("old 10\n\n{}", self.signed(ORIGIN, 10, [9; 32])),
            format!(
                "old 10\n{}\n{}",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n".repeat(64),
                self.signed(ORIGIN, 30, root(log, 30))
            ),
            self.body(10, 30, log, log),
            self.body(0, 30, log, log),
            self.body(30, 30, log, log),
        ]
    }

    fn vkey(&self) -> VerifierKey {
        VerifierKey::new(ORIGIN, KeyType::Ed25519, self.log_key.verifying_key()).unwrap()
    }
}

/// Runs every request through the witness, recording acceptances, and returns the vectors.
fn exchanges(scenario: &Scenario, cosigner: &Cosigner) -> Value {
    let mut state = WitnessState::new();
    state.serve(scenario.vkey()).unwrap();
    let mut exchanges = Vec::new();
    for (i, body) in scenario.requests().into_iter().enumerate() {
        let answer = AddCheckpointRequest::parse(body.as_bytes())
            .map_err(Refusal::from)
            .and_then(|request| {
                add_checkpoint(&state, &request, 1_700_000_000 + i as u64, cosigner)
            });
        let (status, answer) = match answer {
            Ok(accepted) => {
                state.record(&accepted.entry).unwrap();
                (200, accepted.body())
            }
            Err(refusal) => (refusal.status().code(), refusal.body()),
        };
        exchanges.push(json!({"request": body, "status": status, "body": answer}));
    }
    json!({
        "log_vkey": scenario.vkey().to_string(),
        "witness_vkey": cosigner.vkey().to_string(),
        "exchanges": exchanges,
    })
}

/// Whether Python agrees with `vectors`, and what it printed (None: skipped, see
/// [`python_verdict`]).
fn python_witness(vectors: &Value) -> Option<(bool, String)> {
    let dir = tempfile::tempdir().unwrap();
    python_verdict("tlog_witness.py", dir.path(), &vectors.to_string())
}

#[test]
fn an_independent_python_witness_gives_every_answer_kappalogs_gave() {
    let scenario = Scenario::new();
    let cosigner = Cosigner::for_node(SigningKey::from_bytes(&[23; 32]));
    let vectors = exchanges(&scenario, &cosigner);
    let statuses: Vec<u64> = vectors["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_u64().unwrap())
        .collect();
    // Every answer of the spec is exercised.
    assert_eq!(
        statuses,
        [
            200, 409, 200, 200, 422, 422, 409, 404, 403, 403, 400, 400, 422, 422, 400, 200, 409,
            200
        ]
    );
    let Some((agrees, printed)) = python_witness(&vectors) else {
        return;
    };
    assert!(agrees, "Python disagrees:\n{printed}");

    // A fork cosigned instead of refused, or a 409 with another size: Python must object.
    let mut forked = vectors.clone();
    forked["exchanges"][4]["status"] = json!(200);
    let (agrees, printed) = python_witness(&forked).unwrap();
    assert!(!agrees && printed.contains("exchange 4"), "{printed}");
    let mut wrong_size = vectors.clone();
    wrong_size["exchanges"][6]["body"] = json!("12\n");
    let (agrees, printed) = python_witness(&wrong_size).unwrap();
    assert!(!agrees && printed.contains("exchange 6"), "{printed}");
    // A cosignature over another checkpoint (the empty one) does not pass for this one.
    let mut tampered = vectors;
    tampered["exchanges"][15]["body"] = tampered["exchanges"][0]["body"].clone();
    let (agrees, printed) = python_witness(&tampered).unwrap();
    assert!(!agrees && printed.contains("exchange 15"), "{printed}");
}
