//! An import under injected I/O faults: one `common::faulty_io::FaultyIo` serves both the
//! store and the import's sort files, so a single matrix fails every call of an import,
//! whether it writes or reads back a sort run, writes or syncs a batch of entries, or
//! records a fork. Each run must either import what a clean run imports, or stop with the
//! error and the exact count of entries that are durable; importing the same input again
//! with the real file layer then completes it, reporting what was stored as duplicates.
//!
//! The last test fills a real disk (a tmpfs) under the real binary: `kappalog import` exits
//! non-zero with a one-line reason naming the count, and imports the rest once there is room.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use crate::common;
use crate::common::faulty_io::{Fault, FaultyIo, Op, ALL_OPS, FAULTS};
use crate::common::tmpfs::Mount;
use crate::common::{feed, identity};
use kappalog::csv::{CsvWriter, ImportReport};
use kappalog::entry::Entry;
use kappalog::hash::Hash;
use kappalog::import::{import_with_sorter, ImportError, SpillSorter};
use kappalog::node::NodeError;
use kappalog::store::{Store, StoreOptions, StoreOwner};

/// Entries offered to the store per call: several calls per import.
const BATCH_ENTRIES: usize = 8;

/// Three feeds (16, 16 and 8 entries), a repeated line, and the other side of a fork of the
/// third feed at its last seq (so either side links): rows in an order that needs the sort.
fn input() -> Vec<u8> {
    let mut rows: Vec<(Entry, Hash)> = Vec::new();
    for (seed, len) in [(2u8, 16u64), (3, 16), (4, 8)] {
        rows.extend(feed(&identity(seed), len));
    }
    let mut other = rows[32 + 7].0.unsigned();
    other.value += 1_000;
    rows.push(other.sign(&identity(4)));
    rows.push(rows[5].clone());
    // Newest first, so the sort has to put every feed back in order.
    rows.reverse();
    let mut out = CsvWriter::new(Vec::new()).unwrap();
    for (entry, hash) in &rows {
        out.write_entry(entry, hash).unwrap();
    }
    out.finish().unwrap()
}

/// A sort budget of a few entries: the import spills several runs and merges them.
fn sorter(dir: &Path, io: &Arc<FaultyIo>) -> SpillSorter {
    SpillSorter::with_budget(dir, 2_000).with_io(io.clone())
}

fn open(dir: &Path, io: &Arc<FaultyIo>) -> (Store, StoreOwner) {
    let options = StoreOptions {
        io: io.clone(),
        // No idle markers: every call counted comes from the import.
        idle_marker_delay: None,
        ..StoreOptions::default()
    };
    let (store, owner, _) = Store::open_with_options(dir, &options, None, None).unwrap();
    (store, owner)
}

/// Imports through `io`; a fork is recorded as the node does first, by a fork note in the
/// log (so recording it can fail too).
fn import(store: &Store, dir: &Path, io: &Arc<FaultyIo>) -> Result<ImportReport, ImportError> {
    import_with_sorter(
        store,
        &input()[..],
        sorter(dir, io),
        BATCH_ENTRIES,
        |_| false,
        |offered: Entry| {
            store
                .append_fork_note(offered.author)
                .wait()
                .map_err(NodeError::from)
        },
    )
}

/// The entries in the log, reopened with the real file layer.
fn held(dir: &Path) -> BTreeSet<Hash> {
    let (store, owner, _) = Store::open(dir, None, None).unwrap();
    let all = common::entries_by_hash(&store.reader())
        .into_keys()
        .collect();
    owner.shutdown_blocking().unwrap();
    all
}

/// The counts a report is compared by.
fn counts(report: &ImportReport) -> (u64, u64, u64, usize) {
    (
        report.added,
        report.duplicates,
        report.rejected.total(),
        report.forks.len(),
    )
}

#[test]
fn every_fault_at_every_call_of_an_import_reports_exactly_what_was_stored() {
    // A clean run: what an import does, and how many calls of each operation it makes.
    let dir = tempfile::tempdir().unwrap();
    let counter = Arc::new(FaultyIo::default());
    let (store, owner) = open(dir.path(), &counter);
    let before: BTreeMap<Op, u64> = ALL_OPS.iter().map(|&op| (op, counter.calls(op))).collect();
    let clean = import(&store, dir.path(), &counter).unwrap();
    let calls: BTreeMap<Op, u64> = ALL_OPS
        .iter()
        .map(|&op| (op, counter.calls(op) - before[&op]))
        .collect();
    owner.shutdown_blocking().unwrap();
    let clean_held = held(dir.path());
    // 40 entries, one of them the stored side of the fork; the other side and the repeated
    // line are not stored.
    assert_eq!(counts(&clean), (40, 1, 0, 1));
    assert_eq!(clean_held.len(), 40);
    // Several runs written and read back; the 41 entries offered (both sides of the fork)
    // written and synced in 6 batches, and one fork note.
    assert!(calls[&Op::Write] > 6 + 1 + 2, "{calls:?}");
    assert!(calls[&Op::Read] > 3, "{calls:?}");
    assert_eq!(
        calls[&Op::Sync],
        41usize.div_ceil(BATCH_ENTRIES) as u64 + 1,
        "{calls:?}"
    );

    let mut stopped = 0;
    for op in ALL_OPS {
        for call in 1..=calls[&op] + 1 {
            for fault in FAULTS {
                let case = format!("{op:?} call {call} {fault:?}");
                let dir = tempfile::tempdir().unwrap();
                let io = Arc::new(FaultyIo::default());
                let (store, owner) = open(dir.path(), &io);
                io.fail_once(op, call, fault);
                let result = import(&store, dir.path(), &io);
                let reached = call <= calls[&op];
                assert_eq!(io.injected(), u64::from(reached), "{case}");
                // A fault past the import's last call is not for the closing marker.
                io.heal();
                owner.shutdown_blocking().unwrap();
                // A slow call, or a read that returns fewer bytes, is no failure.
                let benign =
                    matches!(fault, Fault::Slow(_)) || (op == Op::Read && fault == Fault::Short);
                let first = match result {
                    Ok(report) => {
                        assert!(!reached || benign, "{case}: the fault was lost");
                        assert_eq!(counts(&report), counts(&clean), "{case}");
                        assert_eq!(held(dir.path()), clean_held, "{case}");
                        continue;
                    }
                    Err(e) => e,
                };
                assert!(reached && !benign, "{case}: {first}");
                let added = match &first {
                    ImportError::Spill { source, added } => {
                        assert!(matches!(op, Op::Write | Op::Read), "{case}: {first}");
                        assert!(source.to_string().contains("injected fault"), "{case}");
                        *added
                    }
                    ImportError::Stopped { source, added } => {
                        // A read too: the store's own record reads (the held entry a
                        // duplicate is checked against) go through the same seam.
                        assert!(
                            matches!(op, Op::Write | Op::Sync | Op::Read),
                            "{case}: {first}"
                        );
                        assert!(source.to_string().contains("injected fault"), "{case}");
                        *added
                    }
                    other => panic!("{case}: not an import failure: {other}"),
                };
                assert!(
                    first.to_string().contains("injected fault"),
                    "{case}: {first}"
                );
                let durable = held(dir.path());
                assert_eq!(
                    u64::try_from(durable.len()).unwrap(),
                    added,
                    "{case}: reported {added} stored"
                );
                assert!(durable.is_subset(&clean_held), "{case}");

                // The same input again, with the real file layer, completes the import.
                let real = Arc::new(FaultyIo::default());
                let (store, owner) = open(dir.path(), &real);
                let again = import(&store, dir.path(), &real).unwrap();
                owner.shutdown_blocking().unwrap();
                let (all, duplicates, rejected, forks) = counts(&clean);
                assert_eq!(
                    counts(&again),
                    (all - added, duplicates + added, rejected, forks),
                    "{case}: the second import of {added} already stored"
                );
                assert_eq!(held(dir.path()), clean_held, "{case}");
                stopped += 1;
            }
        }
    }
    // Every write, sync and read call fails the import under each of three faults, except
    // a short read (legal) and a short sync (an EIO like the others).
    let failing = 3 * (calls[&Op::Write] + calls[&Op::Sync]) + 2 * calls[&Op::Read];
    assert_eq!(stopped, failing);
}

/// The real binary, its data directory on a 1 MiB disk: the first batch of 4,096 entries
/// fits, the second does not. The import exits 1 naming the count stored; once the disk has
/// room, the same file imports the rest.
#[test]
fn a_full_disk_stops_the_cli_import_with_the_count_and_a_second_import_completes_it() {
    let root = tempfile::tempdir().unwrap();
    let disk = root.path().join("disk");
    let Some(mount) = Mount::tmpfs_or_skip(&disk, "1m", "a_full_disk_stops_the_cli_import...")
    else {
        return;
    };
    let csv = root.path().join("in.csv");
    let mut out = CsvWriter::new(Vec::new()).unwrap();
    for (entry, hash) in feed(&identity(2), 8_000) {
        out.write_entry(&entry, &hash).unwrap();
    }
    std::fs::write(&csv, out.finish().unwrap()).unwrap();
    let run = || {
        common::kappalog()
            .arg("--data-dir")
            .arg(disk.join("data"))
            .arg("--key")
            .arg(root.path().join("node.key"))
            .arg("import")
            .arg(&csv)
            .output()
            .unwrap()
    };

    let first = run();
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(!first.status.success(), "{stderr}");
    let reason = stderr.lines().last().unwrap_or_default();
    assert!(reason.starts_with("error: "), "{stderr}");
    assert!(reason.contains("No space left on device"), "{reason}");
    assert!(
        reason.contains("(4096 entries were imported before"),
        "{reason}"
    );
    assert_eq!(common::entries_in(&disk.join("data")), 4_096);

    mount.resize("8m");
    let second = run();
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(
        stdout.contains("added 3904, duplicates 4096, rejected 0, forks 0"),
        "{stdout}"
    );
    assert_eq!(common::entries_in(&disk.join("data")), 8_000);
}
