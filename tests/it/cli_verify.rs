//! `kappalog verify` on damaged and torn data dirs, as an operator runs it: exit 1 with a
//! `FAILED` line when anything acknowledged is damaged (the log or the fork proofs), exit 0
//! with an explicit `torn tail` line when only a never-acknowledged tail is incomplete.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common;
use crate::common::{kappalog, last_entry_end};

fn verify(dir: &Path) -> (bool, String) {
    let o: Output = kappalog()
        .current_dir(dir)
        .arg("verify")
        .output()
        .expect("run kappalog");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), all)
}

/// A data dir with `n` entries appended one by one through the CLI; returns the log's path.
fn appended(dir: &Path, n: u64) -> PathBuf {
    for v in 0..n {
        let o = kappalog()
            .current_dir(dir)
            .args(["append", "--value", &v.to_string()])
            .output()
            .unwrap();
        assert!(o.status.success());
    }
    dir.join("data/entries.log")
}

#[test]
fn a_sound_dir_verifies_with_its_proofs_counted() {
    let dir = tempfile::tempdir().unwrap();
    appended(dir.path(), 3);
    let (ok, out) = verify(dir.path());
    assert!(ok, "{out}");
    assert!(out.contains("ok: 3 entries in 1 feeds"), "{out}");
    assert!(out.contains("ok: 0 fork proofs checked"), "{out}");
    assert!(!out.contains("torn tail"), "{out}");
}

#[test]
fn a_torn_tail_is_reported_and_is_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let log = appended(dir.path(), 3);
    // A crash in the middle of writing the third entry: its record cut short, no marker after.
    let end = last_entry_end(&log);
    let file = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    file.set_len(end - 40).unwrap();
    let (ok, out) = verify(dir.path());
    assert!(ok, "{out}");
    assert!(out.contains("ok: 2 entries"), "{out}");
    assert!(out.contains("torn tail: "), "{out}");
    assert!(out.contains("never acknowledged"), "{out}");
}

/// Issue 11's attack: one length field overwritten so the record seems to run past the end
/// of the file. `verify` used to print `ok` and exit 0; the markers after it show the
/// records were acknowledged.
#[test]
fn damage_that_looks_like_a_torn_tail_fails_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = appended(dir.path(), 12);
    let mut bytes = std::fs::read(&log).unwrap();
    let records: Vec<u64> = common::log_records(&bytes)
        .into_iter()
        .filter(|&(_, _, marker)| !marker)
        .map(|(at, _, _)| at)
        .collect();
    let at = usize::try_from(records[2]).unwrap();
    bytes[at..at + 4].copy_from_slice(&0x109e_u32.to_le_bytes());
    std::fs::write(&log, &bytes).unwrap();
    let (ok, out) = verify(dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("FAILED"), "{out}");
    assert!(out.contains(&format!("offset {at}")), "{out}");
    assert!(out.contains("commit marker"), "{out}");
}

#[test]
fn the_forks_file_is_checked_damage_fails_and_a_torn_tail_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    appended(dir.path(), 1);
    let forks = dir.path().join("data/forks");
    let (one, two) = (
        common::fork_proof(7).encode(),
        common::fork_proof(8).encode(),
    );

    std::fs::write(&forks, [one.clone(), two.clone()].concat()).unwrap();
    let (ok, out) = verify(dir.path());
    assert!(ok, "{out}");
    assert!(out.contains("ok: 2 fork proofs checked"), "{out}");

    std::fs::write(
        &forks,
        [one.clone(), two[..two.len() - 9].to_vec()].concat(),
    )
    .unwrap();
    let (ok, out) = verify(dir.path());
    assert!(ok, "{out}");
    assert!(out.contains("ok: 1 fork proofs checked"), "{out}");
    assert!(out.contains("torn tail"), "{out}");

    // A flipped byte inside a side's signature: the proof no longer checks.
    let mut flipped = [one, two].concat();
    let at = flipped.len() - 10;
    flipped[at] ^= 1;
    std::fs::write(&forks, &flipped).unwrap();
    let (ok, out) = verify(dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("FAILED"), "{out}");
}
