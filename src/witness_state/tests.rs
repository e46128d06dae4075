use super::*;

use crate::identity::Identity;
use crate::tlog::witness::CosignedTree;

fn cosigner() -> Cosigner {
    Cosigner::for_node(Identity::from_seed([7; 32]).signing_key().clone())
}

fn record(origin: &str, size: u64) -> String {
    encode_record(
        origin,
        &CosignedTree {
            size,
            root: [size as u8; 32],
        },
    )
}

#[test]
fn a_new_file_gets_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let (_, report) = DurableWitness::open(dir.path(), &[], cosigner()).unwrap();
    assert_eq!(report, OpenReport::default());
    let written = std::fs::read_to_string(dir.path().join(WITNESS_FILE)).unwrap();
    assert_eq!(written, STATE_HEADER);
}

#[test]
fn a_torn_last_line_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let whole = format!("{STATE_HEADER}{}", record("example.com/log", 3));
    let torn = record("example.com/log", 5);
    let torn = &torn[..torn.len() - 7];
    std::fs::write(dir.path().join(WITNESS_FILE), format!("{whole}{torn}")).unwrap();
    let (_, report) = DurableWitness::open(dir.path(), &[], cosigner()).unwrap();
    assert_eq!(report.origins, 1);
    assert_eq!(report.torn_tail_bytes, torn.len());
    let written = std::fs::read_to_string(dir.path().join(WITNESS_FILE)).unwrap();
    assert_eq!(written, whole);
}

#[test]
fn a_long_journal_is_compacted_to_its_last_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = String::from(STATE_HEADER);
    for size in 1..=(COMPACT_MIN_LINES as u64 + 1) {
        journal.push_str(&record("example.com/a", size));
    }
    journal.push_str(&record("example.com/b", 2));
    std::fs::write(dir.path().join(WITNESS_FILE), journal).unwrap();
    let (_, report) = DurableWitness::open(dir.path(), &[], cosigner()).unwrap();
    assert!(report.compacted);
    assert_eq!(report.origins, 2);
    let written = std::fs::read_to_string(dir.path().join(WITNESS_FILE)).unwrap();
    let last = COMPACT_MIN_LINES as u64 + 1;
    assert_eq!(
        written,
        format!(
            "{STATE_HEADER}{}{}",
            record("example.com/a", last),
            record("example.com/b", 2)
        )
    );
    assert!(!dir.path().join(format!("{WITNESS_FILE}.tmp")).exists());
}

#[test]
fn a_corrupt_file_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let rollback = format!(
        "{STATE_HEADER}{}{}",
        record("example.com/log", 5),
        record("example.com/log", 3)
    );
    std::fs::write(dir.path().join(WITNESS_FILE), rollback).unwrap();
    let Err(err) = DurableWitness::open(dir.path(), &[], cosigner()) else {
        panic!("a journal going back was accepted");
    };
    assert!(matches!(err, OpenError::Corrupt { .. }), "{err}");

    std::fs::write(dir.path().join(WITNESS_FILE), "not a witness file\n").unwrap();
    assert!(matches!(
        DurableWitness::open(dir.path(), &[], cosigner()),
        Err(OpenError::Corrupt { .. })
    ));
}

mod requests {
    use super::*;

    use crate::tlog::checkpoint::{Checkpoint, SignedCheckpoint};
    use crate::tlog::merkle::{leaf_hash, tree_hash, MemoryTree};
    use crate::tlog::vkey::KeyType;
    use ed25519_dalek::SigningKey;

    const ORIGIN: &str = "example.com/log";

    fn log_key() -> SigningKey {
        SigningKey::from_bytes(&[3; 32])
    }

    fn log_vkey() -> VerifierKey {
        VerifierKey::new(ORIGIN, KeyType::Ed25519, log_key().verifying_key()).unwrap()
    }

    /// `old 0`, no proof, and a checkpoint of a `size`-leaf tree.
    fn from_zero(size: u64) -> AddCheckpointRequest {
        let mut tree = MemoryTree::new();
        for i in 0..size {
            tree.append(leaf_hash(&i.to_be_bytes())).unwrap();
        }
        let checkpoint = Checkpoint::new(ORIGIN, size, tree_hash(size, &tree).unwrap()).unwrap();
        let signed = SignedCheckpoint::sign(checkpoint, &log_key()).unwrap();
        let body = format!("old 0\n\n{signed}");
        AddCheckpointRequest::parse(body.as_bytes()).unwrap()
    }

    fn file(dir: &Path) -> String {
        std::fs::read_to_string(dir.join(WITNESS_FILE)).unwrap()
    }

    #[test]
    fn a_cosignature_is_on_disk_before_it_is_returned_and_a_repeat_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (witness, _) = DurableWitness::open(dir.path(), &[log_vkey()], cosigner()).unwrap();
        let accepted = witness.add_checkpoint(&from_zero(3), 1_000).unwrap();
        let line = encode_record(ORIGIN, accepted.entry.tree());
        assert_eq!(file(dir.path()), format!("{STATE_HEADER}{line}"));

        // The same tree again, from its own size: cosigned, nothing appended.
        let signed = from_zero(3).checkpoint().to_string();
        let repeat = AddCheckpointRequest::parse(format!("old 3\n\n{signed}").as_bytes()).unwrap();
        assert!(witness
            .add_checkpoint(&repeat, 1_001)
            .unwrap()
            .entry
            .is_repeat());
        assert_eq!(file(dir.path()), format!("{STATE_HEADER}{line}"));

        // Read back by the next open: a request from 0 is now a conflict.
        drop(witness);
        let (witness, report) =
            DurableWitness::open(dir.path(), &[log_vkey()], cosigner()).unwrap();
        assert_eq!(report.origins, 1);
        let refused = witness.add_checkpoint(&from_zero(5), 1_002).unwrap_err();
        assert!(
            matches!(
                refused,
                WitnessError::Refused(Refusal::OldSizeMismatch { latest: 3, .. })
            ),
            "{refused}"
        );
    }

    #[test]
    fn a_failed_write_releases_nothing_and_stops_cosigning() {
        let dir = tempfile::tempdir().unwrap();
        let (witness, _) = DurableWitness::open(dir.path(), &[log_vkey()], cosigner()).unwrap();
        // /dev/full refuses every write with ENOSPC: the disk filling up under the witness.
        let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
            eprintln!("no /dev/full here: skipping the write failure case");
            return;
        };
        lock(&witness.inner.locked).file = LogFile::from(full);
        let failed = witness.add_checkpoint(&from_zero(3), 1_000).unwrap_err();
        assert!(matches!(failed, WitnessError::Write(_)), "{failed}");
        let after = witness.add_checkpoint(&from_zero(3), 1_001).unwrap_err();
        assert!(matches!(after, WitnessError::Broken), "{after}");

        // The next start reads the file as it is: nothing was recorded, so nothing is owed.
        drop(witness);
        let (witness, report) =
            DurableWitness::open(dir.path(), &[log_vkey()], cosigner()).unwrap();
        assert_eq!(report.origins, 0);
        assert!(witness.add_checkpoint(&from_zero(3), 1_002).is_ok());
    }
}
