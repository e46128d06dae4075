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
