//! A writable open under injected I/O faults (`common::faulty_io::FaultyIo` through the
//! store's `LogIo` seam). Four logs are opened: none yet (a fresh directory), a torn header
//! (a crash while creating the file), a clean log of acknowledged entries, and the same log
//! with a torn tail. Each is opened with every fault at every call of every operation the
//! open makes, reads included (counted on a clean open first), and must either open with
//! exactly the acknowledged entries, or fail with `StoreError::Io` naming the operation and
//! the injected OS error. Either way the acknowledged bytes are untouched, and a later open
//! with the real file layer holds exactly the acknowledged entries and writes again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::common;
use crate::common::faulty_io::{Fault, FaultyIo, Op, ALL_OPS, FAULTS};
use crate::common::identity;
use kappalog::entry::Entry;
use kappalog::hash::Hash;
use kappalog::store::format::file_header;
use kappalog::store::open::LOG_FILE;
use kappalog::store::{OpenReport, Store, StoreError, StoreOptions, StoreOwner};

/// A log to open, kept as bytes so each case starts from a fresh copy.
struct Scenario {
    name: &'static str,
    /// The log file's bytes; `None`: no file yet.
    bytes: Option<Vec<u8>>,
    /// The acknowledged entries it holds.
    acked: BTreeMap<Hash, Entry>,
    /// Where the intact records end: an open never changes a byte before it, and a
    /// successful writable open leaves the file exactly this long.
    intact: u64,
}

fn entries(store: &Store) -> BTreeMap<Hash, Entry> {
    common::entries_by_hash(&store.reader())
}

/// Own and foreign entries, acknowledged and closed cleanly.
fn acknowledged_log() -> (Vec<u8>, BTreeMap<Hash, Entry>) {
    let dir = tempfile::tempdir().unwrap();
    let (store, owner, _) = Store::open(dir.path(), Some(identity(1)), None).unwrap();
    let mut acked = BTreeMap::new();
    for (entry, hash) in common::feed(&identity(2), 3) {
        store.append_entries(vec![entry.clone()]).wait().unwrap();
        acked.insert(hash, entry);
        let (own, own_hash) = store.append_own(7, "own".into()).wait().unwrap();
        acked.insert(own_hash, own);
    }
    owner.shutdown_blocking().unwrap();
    let bytes = std::fs::read(dir.path().join(LOG_FILE)).unwrap();
    (bytes, acked)
}

fn scenarios() -> Vec<Scenario> {
    let (clean, acked) = acknowledged_log();
    let clean_len = clean.len() as u64;
    // A torn tail: the first 100 bytes of an entry record (the log's first, written again
    // at the end), cut off by a crash mid-write.
    let (first, _, _) = common::log_records(&clean)
        .into_iter()
        .find(|&(_, _, marker)| !marker)
        .unwrap();
    let first = usize::try_from(first).unwrap();
    let mut torn = clean.clone();
    torn.extend_from_slice(&clean[first..first + 100]);
    vec![
        Scenario {
            name: "fresh directory",
            bytes: None,
            acked: BTreeMap::new(),
            intact: 0,
        },
        Scenario {
            name: "torn header",
            bytes: Some(file_header()[..5].to_vec()),
            acked: BTreeMap::new(),
            intact: 0,
        },
        Scenario {
            name: "clean log",
            bytes: Some(clean),
            acked: acked.clone(),
            intact: clean_len,
        },
        Scenario {
            name: "torn tail",
            bytes: Some(torn),
            acked,
            intact: clean_len,
        },
    ]
}

/// A fresh data directory holding the scenario's log.
fn place(scenario: &Scenario) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    if let Some(bytes) = &scenario.bytes {
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(LOG_FILE), bytes).unwrap();
    }
    (root, dir)
}

fn open(dir: &Path, io: &Arc<FaultyIo>) -> Result<(Store, StoreOwner, OpenReport), StoreError> {
    let options = StoreOptions {
        io: io.clone(),
        // No idle markers: the only calls are the open's own.
        idle_marker_delay: None,
        ..StoreOptions::default()
    };
    Store::open_with_options(dir, &options, Some(identity(1)), None)
}

/// What an open reports when `op` fails: the operation, in the words of its context.
fn names(op: Op) -> &'static [&'static str] {
    match op {
        Op::Write => &["write the header of"],
        Op::Sync => &["sync the header of", "sync the cut of the torn tail"],
        Op::SetLen => &["cut the torn tail at offset"],
        Op::Len => &["stat ", "check the length after cutting the torn tail"],
        Op::SyncDir => &["sync directory"],
        Op::Read => &["read header of", "read /"],
    }
}

/// The checks every case ends with, whatever the faulty open did: the intact bytes are
/// unchanged, the real file layer opens exactly the acknowledged entries (cutting what is
/// left of a torn tail), and the store writes again.
fn reopen_with_the_real_io(scenario: &Scenario, dir: &Path, case: &str) {
    if let Some(bytes) = &scenario.bytes {
        let now = std::fs::read(dir.join(LOG_FILE)).unwrap();
        let intact = usize::try_from(scenario.intact).unwrap();
        assert!(now.len() >= intact, "{case}: intact bytes cut");
        assert_eq!(
            now[..intact],
            bytes[..intact],
            "{case}: intact bytes changed"
        );
    }
    let (store, owner, _) = Store::open(dir, Some(identity(1)), None).unwrap_or_else(|e| {
        panic!("{case}: the real io cannot open what the faulty open left: {e}")
    });
    assert_eq!(
        entries(&store),
        scenario.acked,
        "{case}: entries after reopening"
    );
    let len = std::fs::metadata(dir.join(LOG_FILE)).unwrap().len();
    assert_eq!(
        len,
        scenario.intact.max(12),
        "{case}: what the real open left"
    );
    let (more, more_hash) = store.append_own(99, "after".into()).wait().unwrap();
    owner.shutdown_blocking().unwrap();
    let (store, owner, _) = Store::open(dir, None, None).unwrap();
    let mut expected = scenario.acked.clone();
    expected.insert(more_hash, more);
    assert_eq!(
        entries(&store),
        expected,
        "{case}: entries after writing again"
    );
    owner.shutdown_blocking().unwrap();
}

#[test]
fn every_fault_at_every_call_of_an_open_fails_it_by_name_or_leaves_the_acknowledged_log() {
    let mut failed_opens = 0;
    for scenario in scenarios() {
        // A clean open counts the calls of each operation.
        let (_root, dir) = place(&scenario);
        let counter = Arc::new(FaultyIo::default());
        let (store, owner, report) = open(&dir, &counter).unwrap();
        // The open's calls only: the reads of the entries below go through the seam too.
        let calls: BTreeMap<Op, u64> = ALL_OPS.iter().map(|&op| (op, counter.calls(op))).collect();
        assert_eq!(entries(&store), scenario.acked, "{}", scenario.name);
        if scenario.name == "torn tail" {
            assert_eq!(report.truncated_at, Some(scenario.intact));
        }
        owner.shutdown_blocking().unwrap();
        // Every open stats the file and syncs its directory; only a header write or a cut
        // writes, syncs or cuts.
        assert_eq!(
            calls[&Op::Len],
            if scenario.name == "torn tail" { 2 } else { 1 }
        );
        assert_eq!(calls[&Op::SyncDir], 1, "{}", scenario.name);
        // The header (the torn header's 5 bytes, or 12), the scan's one chunk, and for the
        // torn tail the search for a commit marker after it.
        let reads = match scenario.name {
            "fresh directory" => 0,
            "torn header" => 1,
            "clean log" => 2,
            _ => 3,
        };
        assert_eq!(calls[&Op::Read], reads, "{}", scenario.name);

        for op in ALL_OPS {
            // One call past the last: a fault that is never reached changes nothing.
            for call in 1..=calls[&op] + 1 {
                for fault in FAULTS {
                    let case = format!("{}: {op:?} call {call} {fault:?}", scenario.name);
                    let (_root, dir) = place(&scenario);
                    let io = Arc::new(FaultyIo::default());
                    io.fail_once(op, call, fault);
                    let reached = call <= calls[&op];
                    // A short read is legal: the open asks again and must not notice.
                    let harmless = matches!(fault, Fault::Slow(_))
                        || (op == Op::Read && fault == Fault::Short);
                    assert_eq!(io.injected(), 0);
                    match open(&dir, &io) {
                        Ok((store, owner, report)) => {
                            assert!(
                                !reached || harmless,
                                "{case}: the fault was injected, yet the open succeeded"
                            );
                            // A fault planned past the open's last call is the open's
                            // matter only: the reads of the entries that check it get none.
                            io.heal();
                            assert_eq!(entries(&store), scenario.acked, "{case}");
                            owner.shutdown_blocking().unwrap();
                            // A cut reported done is done.
                            if let Some(at) = report.truncated_at {
                                let len = std::fs::metadata(dir.join(LOG_FILE)).unwrap().len();
                                assert_eq!(len, at.max(12), "{case}: reported cut not made");
                            }
                        }
                        Err(e) => {
                            assert!(reached && !harmless, "{case}: {e}");
                            let StoreError::Io { context, source } = &e else {
                                panic!("{case}: not an I/O error: {e}");
                            };
                            assert!(
                                names(op).iter().any(|n| context.contains(n)),
                                "{case}: the error does not name the operation: {e}"
                            );
                            assert!(
                                source.to_string().contains("injected fault"),
                                "{case}: the error does not carry the OS error: {e}"
                            );
                            failed_opens += 1;
                        }
                    }
                    assert_eq!(io.injected(), u64::from(reached), "{case}");
                    reopen_with_the_real_io(&scenario, &dir, &case);
                }
            }
        }
    }
    // fresh: write, sync, stat, dir sync (4 calls); torn header: the same; clean: stat,
    // dir sync; torn tail: cut, sync, 2 stats, dir sync. Three failing faults each. Reads
    // (0, 1, 2 and 3 calls) fail with two faults: a short read is asked again.
    assert_eq!(failed_opens, 3 * (4 + 4 + 2 + 5) + 2 * (1 + 2 + 3));
}

/// A header whose sync failed leaves an empty file (the next open writes it afresh). If even
/// emptying it fails, the error still names the first failure, and the next open takes the
/// header the file holds.
#[test]
fn a_failed_header_sync_whose_cleanup_fails_too_is_reported_by_its_first_cause() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let io = Arc::new(FaultyIo::default());
    io.fail_once(Op::Sync, 1, Fault::Eio);
    let Err(e) = open(&dir, &io) else {
        panic!("the open succeeded")
    };
    assert!(e.to_string().contains("sync the header of"), "{e}");
    assert_eq!(std::fs::metadata(dir.join(LOG_FILE)).unwrap().len(), 0);

    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let io = Arc::new(FaultyIo::default());
    io.fail_once(Op::Sync, 1, Fault::Eio);
    io.fail_once(Op::SetLen, 1, Fault::Eio);
    let Err(e) = open(&dir, &io) else {
        panic!("the open succeeded")
    };
    assert!(e.to_string().contains("sync the header of"), "{e}");
    assert_eq!(io.injected(), 2);
    let (store, owner, _) = Store::open(&dir, Some(identity(1)), None).unwrap();
    assert!(store.reader().is_empty());
    store.append_own(1, String::new()).wait().unwrap();
    owner.shutdown_blocking().unwrap();
}

/// A cut that keeps failing fails every open, with the same reason, and leaves the torn tail
/// in place (never reported cut); once the fault is gone the next open cuts it.
#[test]
fn a_cut_that_keeps_failing_fails_every_open_until_healed() {
    let torn = scenarios().pop().unwrap();
    let (_root, dir) = place(&torn);
    let io = Arc::new(FaultyIo::default());
    io.fail_from_now(Op::SetLen, Fault::NoSpace);
    let torn_len = torn.bytes.as_ref().unwrap().len() as u64;
    for _ in 0..3 {
        let Err(e) = open(&dir, &io) else {
            panic!("the open succeeded")
        };
        let line = e.to_string();
        assert!(
            line.contains(&format!("cut the torn tail at offset {}", torn.intact)),
            "{line}"
        );
        assert!(line.contains("injected fault: truncate"), "{line}");
        assert_eq!(
            std::fs::metadata(dir.join(LOG_FILE)).unwrap().len(),
            torn_len
        );
    }
    io.heal();
    let (store, owner, report) = open(&dir, &io).unwrap();
    assert_eq!(report.truncated_at, Some(torn.intact));
    assert_eq!(report.truncated_bytes, torn_len - torn.intact);
    assert_eq!(entries(&store), torn.acked);
    owner.shutdown_blocking().unwrap();
    assert_eq!(
        std::fs::metadata(dir.join(LOG_FILE)).unwrap().len(),
        torn.intact
    );
}

/// `kappalog run` on a data directory whose log cannot be opened (an OS error; damage)
/// exits non-zero before it listens, with a one-line reason naming the file and the cause.
#[test]
fn run_on_a_log_that_cannot_be_opened_exits_with_a_one_line_reason() {
    let root = tempfile::tempdir().unwrap();
    let key = root.path().join("node.key");
    // The log's name taken by a directory: the open itself fails with the OS error.
    let unopenable = root.path().join("unopenable");
    std::fs::create_dir_all(unopenable.join(LOG_FILE)).unwrap();
    // A flipped byte in an acknowledged record: damage, refused with its offset.
    let damaged = root.path().join("damaged");
    std::fs::create_dir(&damaged).unwrap();
    let (mut bytes, _) = acknowledged_log();
    bytes[40] ^= 0x40;
    std::fs::write(damaged.join(LOG_FILE), bytes).unwrap();

    for (dir, cause) in [
        (&unopenable, "Is a directory (os error 21)"),
        (&damaged, "is corrupt at byte offset"),
    ] {
        let mut cmd = common::kappalog();
        cmd.arg("--data-dir").arg(dir).arg("--key").arg(&key).args([
            "run",
            "--http",
            "127.0.0.1:0",
        ]);
        let mut running = common::Running::spawn(cmd);
        let mut status = None;
        common::wait_until("the node to exit", || {
            status = running.child.try_wait().unwrap();
            status.is_some()
        });
        assert!(!status.unwrap().success(), "{}", dir.display());
        let printed: Vec<String> = running.lines.try_iter().collect();
        assert!(
            printed.iter().all(|line| !line.contains("http://")),
            "it listened: {printed:?}"
        );
        let mut stderr = String::new();
        std::io::Read::read_to_string(running.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        let reason = stderr.lines().last().unwrap_or_default();
        assert!(reason.starts_with("error: "), "{stderr}");
        assert!(
            reason.contains(&dir.join(LOG_FILE).display().to_string()),
            "{reason}"
        );
        assert!(reason.contains(cause), "{reason}");
    }
}
