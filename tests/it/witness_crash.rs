//! Power cuts at every file operation of the witness (`DATA_DIR/witness`), on the in-memory
//! backend that can lose what was not synced (`common::crash_io`).
//!
//! A workload drives both ways a node cosigns, on a [`DurableWitness`] whose file is in
//! memory: growing checkpoints of an operator-named log through `add_checkpoint` (the
//! `POST /witness/add-checkpoint` path, a repeat among them) and batches of kappalog feed
//! checkpoints through `add_feed_checkpoints` (the checkpoint book's group commit: two
//! origins in one batch, one origin twice in a batch); then it reopens the witness, which
//! compacts the journal (a tmp file, its flush, a rename, a directory flush), and cosigns
//! more on the compacted file. A clean run counts the calls that change a file (the header's
//! creation, each record's write and flush, the compaction's). Then for each call and one
//! past the last the workload runs again and the power goes at that call; each image the
//! crash may leave (several seeds) is reopened. Each must:
//!
//! - open (a crash never makes the witness unopenable);
//! - honour every cosignature RELEASED before the cut: for each released tree of an origin,
//!   the witness's record is that tree or a larger one; a fork's checkpoint of that size is
//!   refused (422 if it is still the latest, else 409 with the latest size), a larger fork
//!   with a proof from the latest size is refused 422, and a request from a size below the
//!   released one is refused 409 naming the latest;
//! - hold nothing that was never decided: every record is a tree the witness decided to
//!   cosign (released, or whose write the power cut);
//! - cosign a new consistent checkpoint of every origin.
//!
//! Releasing a cosignature before its record is flushed fails this test (an image drawn
//! at the cut flush loses the record); so does a compaction that renames before it flushes.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use kappalog::store::io::LogIo;
use kappalog::tlog::checkpoint::{origin_for, Checkpoint, SignedCheckpoint};
use kappalog::tlog::merkle::{prove_consistency, tree_hash, Hash, MemoryTree};
use kappalog::tlog::vkey::{KeyType, VerifierKey};
use kappalog::tlog::witness::{parse_state, AddCheckpointRequest, Cosigner, Refusal, STATE_HEADER};
use kappalog::witness_state::{DurableWitness, WitnessError, WitnessOptions, WITNESS_FILE};

use crate::common::crash_io::CrashIo;
use crate::common::identity;
use crate::common::log_tree::labelled_tree;

/// Images drawn per crash point.
const SEEDS: u64 = 6;

/// Lines above which the journal compacts at open: low, so the workload's reopen compacts.
const COMPACT_AT: usize = 4;

/// The operator-named log (`--witness-for`): `LOGS[OPERATOR]`.
const OPERATOR: usize = 0;

/// The witness's time: any nonzero second.
const NOW: u64 = 1_700_000_000;

/// Leaves in every test tree: more than any size the tests reach.
const LEAVES: u32 = 24;

fn dir() -> &'static Path {
    Path::new("/mem/data")
}

/// A log the witness serves: its origin, key, tree, and a fork of it that parts from the
/// first leaf (so the fork is inconsistent with the log at every size).
struct Log {
    origin: String,
    key: SigningKey,
    tree: MemoryTree,
    fork: MemoryTree,
}

impl Log {
    fn operator() -> Log {
        Log {
            origin: "example.com/witnessed".into(),
            key: SigningKey::from_bytes(&[41; 32]),
            tree: labelled_tree(LEAVES, 0, "log"),
            fork: labelled_tree(LEAVES, 0, "log fork"),
        }
    }

    /// The feed of `identity(n)`, witnessed as a feed the node holds.
    fn feed(n: u8) -> Log {
        let key = identity(n).signing_key().clone();
        Log {
            origin: origin_for(key.verifying_key().as_bytes()),
            key,
            tree: labelled_tree(LEAVES, 0, &format!("feed {n}")),
            fork: labelled_tree(LEAVES, 0, &format!("feed {n} fork")),
        }
    }

    fn root(&self, size: u64, fork: bool) -> Hash {
        tree_hash(size, self.pick(fork)).unwrap()
    }

    fn pick(&self, fork: bool) -> &MemoryTree {
        match fork {
            true => &self.fork,
            false => &self.tree,
        }
    }

    /// `old`, the proof from `old` to `size` in the log (or its fork), and its checkpoint
    /// at `size`, signed by the log.
    fn request(&self, old: u64, size: u64, fork: bool) -> AddCheckpointRequest {
        let tree = self.pick(fork);
        let proof = match old {
            0 => Vec::new(),
            _ => prove_consistency(old, size, tree).unwrap(),
        };
        let checkpoint = Checkpoint::new(&self.origin, size, self.root(size, fork)).unwrap();
        let signed = SignedCheckpoint::sign(checkpoint, &self.key).unwrap();
        AddCheckpointRequest::new(old, proof, signed).unwrap()
    }
}

/// The logs: the operator-named one, then two feeds.
fn logs() -> Vec<Log> {
    vec![Log::operator(), Log::feed(1), Log::feed(2)]
}

fn operator_vkey(logs: &[Log]) -> VerifierKey {
    let log = &logs[OPERATOR];
    VerifierKey::new(&log.origin, KeyType::Ed25519, log.key.verifying_key()).unwrap()
}

fn cosigner() -> Cosigner {
    Cosigner::for_node(identity(9).signing_key().clone())
}

fn options(io: Arc<dyn LogIo>) -> WitnessOptions {
    WitnessOptions {
        io,
        compact_min_lines: COMPACT_AT,
    }
}

fn open(io: Arc<dyn LogIo>, logs: &[Log]) -> Result<DurableWitness, String> {
    DurableWitness::open_with_options(dir(), &[operator_vkey(logs)], cosigner(), &options(io))
        .map(|(witness, _)| witness)
        .map_err(|e| e.to_string())
}

/// A tree of an origin: (origin, size, root).
type Tree = (String, u64, Hash);

/// What the workload was told, and what the witness decided.
#[derive(Default, Debug)]
struct Told {
    /// Trees whose cosignature was returned, in order.
    released: Vec<Tree>,
    /// Trees the witness decided to cosign: released, or whose write failed.
    decided: BTreeSet<Tree>,
}

/// One step of the workload: (log, old size, new size) requests, each through the path of
/// its log: one `add_checkpoint` for the operator's log, one batch for feeds.
type Step = &'static [(usize, u64, u64)];

/// Before the reopen: a fresh file, the operator's log growing (a repeat among its
/// requests), feed batches of two origins and of one origin twice.
const BEFORE: &[Step] = &[
    &[(0, 0, 2)],
    &[(1, 0, 3), (2, 0, 2)],
    &[(0, 2, 4)],
    &[(0, 4, 4)],
    &[(1, 3, 5), (1, 5, 6), (2, 2, 4)],
    &[(0, 4, 7)],
    &[(0, 7, 9)],
];

/// After the reopen (which compacts ten lines of three origins): more on the new file.
const AFTER: &[Step] = &[&[(0, 9, 12)], &[(1, 6, 8), (2, 4, 7)]];

/// Submits one step's requests on the path of their logs.
fn submit(
    witness: &DurableWitness,
    logs: &[Log],
    requests: &[(usize, AddCheckpointRequest)],
) -> Vec<Result<kappalog::tlog::witness::Accepted, WitnessError>> {
    match requests {
        [(OPERATOR, request)] => vec![witness.add_checkpoint(request, NOW)],
        _ => {
            assert!(requests.iter().all(|(log, _)| *log != OPERATOR));
            let batch: Vec<AddCheckpointRequest> =
                requests.iter().map(|(_, r)| r.clone()).collect();
            let answers = witness.add_feed_checkpoints(&batch, NOW);
            assert_eq!(
                answers.len(),
                batch.len(),
                "{:?}",
                logs[requests[0].0].origin
            );
            answers
        }
    }
}

fn run_steps(witness: &DurableWitness, logs: &[Log], steps: &[Step], told: &mut Told) {
    for step in steps {
        let requests: Vec<(usize, AddCheckpointRequest)> = step
            .iter()
            .map(|&(log, old, size)| (log, logs[log].request(old, size, false)))
            .collect();
        for (&(log, _, size), answer) in step.iter().zip(submit(witness, logs, &requests)) {
            let tree = (logs[log].origin.clone(), size, logs[log].root(size, false));
            match answer {
                Ok(accepted) => {
                    assert_eq!(accepted.entry.tree().size, size);
                    told.decided.insert(tree.clone());
                    told.released.push(tree);
                }
                // The write (or its flush) failed when the power went: decided, not released.
                Err(WitnessError::Write(_)) => {
                    told.decided.insert(tree);
                }
                // After the failed write: nothing decided.
                Err(WitnessError::Broken) => {}
                Err(other) => panic!("the workload's request {log}:{size} got {other}"),
            }
        }
    }
}

/// Runs the workload on `io`; returns what it was told. Every failure after the crash is
/// expected (the witness answers Write, then Broken, and a reopen fails).
fn workload(io: Arc<dyn LogIo>, logs: &[Log]) -> Told {
    let mut told = Told::default();
    let Ok(witness) = open(io.clone(), logs) else {
        return told;
    };
    run_steps(&witness, logs, BEFORE, &mut told);
    drop(witness);
    let Ok(witness) = open(io, logs) else {
        return told;
    };
    run_steps(&witness, logs, AFTER, &mut told);
    told
}

/// `refusal` of `request` by the path of `log`.
fn refusal(
    witness: &DurableWitness,
    logs: &[Log],
    log: usize,
    request: AddCheckpointRequest,
) -> Refusal {
    match submit(witness, logs, &[(log, request)]).remove(0) {
        Err(WitnessError::Refused(refusal)) => refusal,
        other => panic!("not refused: {other:?}"),
    }
}

/// Reopens `image` and checks it against what the workload was told (module docs).
fn check(image: Arc<dyn LogIo>, logs: &[Log], told: &Told, case: &str) {
    let witness = open(image.clone(), logs)
        .unwrap_or_else(|e| panic!("{case}: the image does not open: {e}"));
    let file = image
        .open(
            &dir().join(WITNESS_FILE),
            kappalog::store::io::OpenMode::Read,
        )
        .unwrap();
    let bytes = kappalog::store::io::read_to_end(&*image, &file).unwrap();
    assert!(bytes.starts_with(STATE_HEADER.as_bytes()), "{case}");
    let state = parse_state(&bytes).unwrap();
    for (origin, tree) in &state.cosigned {
        let record = (origin.clone(), tree.size, tree.root);
        assert!(
            told.decided.contains(&record),
            "{case}: a record never decided: {origin} {}",
            tree.size
        );
    }
    for (origin, size, root) in &told.released {
        let log = logs.iter().position(|l| &l.origin == origin).unwrap();
        let latest = witness
            .cosigned(origin)
            .unwrap_or_else(|| panic!("{case}: {origin} {size} released, then forgotten"));
        assert!(
            latest.size >= *size,
            "{case}: {origin} {size} rolled back to {}",
            latest.size
        );
        if latest.size == *size {
            assert_eq!(latest.root, *root, "{case}: {origin} {size}");
        }
        let at_size = refusal(&witness, logs, log, logs[log].request(*size, *size, true));
        match latest.size == *size {
            true => assert_eq!(at_size, Refusal::RootMismatch, "{case}: {origin} {size}"),
            false => assert_eq!(
                at_size,
                Refusal::OldSizeMismatch {
                    old: *size,
                    latest: latest.size
                },
                "{case}: {origin} {size}"
            ),
        }
        let larger = logs[log].request(latest.size, latest.size + 2, true);
        let larger = refusal(&witness, logs, log, larger);
        assert!(
            matches!(larger, Refusal::Inconsistent(_)),
            "{case}: {origin} {size}: {larger:?}"
        );
        let below = logs[log].request(size - 1, latest.size + 1, false);
        assert_eq!(
            refusal(&witness, logs, log, below),
            Refusal::OldSizeMismatch {
                old: size - 1,
                latest: latest.size
            },
            "{case}: {origin} {size}"
        );
    }
    // Every origin grows on: the operator's log alone, the feeds in one batch.
    let next = |log: usize| {
        let latest = witness.cosigned(&logs[log].origin).map_or(0, |t| t.size);
        (log, logs[log].request(latest, latest + 1, false))
    };
    for step in [vec![next(0)], vec![next(1), next(2)]] {
        for answer in submit(&witness, logs, &step) {
            let accepted = answer.unwrap_or_else(|e| panic!("{case}: no cosignature after: {e}"));
            assert!(!accepted.entry.is_repeat(), "{case}");
        }
    }
}

#[test]
fn a_power_cut_at_every_file_operation_keeps_every_released_cosignature() {
    let logs = logs();
    let clean = Arc::new(CrashIo::new(None, SEEDS));
    let told = workload(clean.clone(), &logs);
    let calls = clean.state().calls;
    let steps: usize = BEFORE.iter().chain(AFTER).map(|step| step.len()).sum();
    assert_eq!(
        told.released.len(),
        steps,
        "the clean run cosigns every request"
    );
    // The header (cut, write, flush, directory flush), one write and flush per changing
    // step (the repeat writes nothing), the compaction (cut and write of the tmp file, its
    // flush, the rename, the directory flush).
    let changing = BEFORE.len() - 1 + AFTER.len();
    assert_eq!(calls, 4 + 2 * changing as u64 + 5, "{calls} calls");
    for seed in 0..SEEDS {
        check(
            Arc::new(clean.memory.crash(seed)),
            &logs,
            &told,
            &format!("no crash, seed {seed}"),
        );
    }
    for crash_at in 1..=calls {
        let io = Arc::new(CrashIo::new(Some(crash_at), SEEDS));
        let told = workload(io.clone(), &logs);
        let images = std::mem::take(&mut io.state().images);
        assert_eq!(images.len() as u64, SEEDS, "call {crash_at} was made");
        for (seed, image) in images.into_iter().enumerate() {
            let case = format!("crash at call {crash_at} of {calls}, seed {seed}");
            check(Arc::new(image), &logs, &told, &case);
        }
    }
}
