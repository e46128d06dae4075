//! Import in bounded memory: the on-disk sort gives exactly the outcome of an in-memory plan,
//! and a large upload to the real binary does not grow the node's memory with its size.

use std::cell::RefCell;
use std::collections::BTreeSet;

use crate::common;
use crate::common::{feed, http, identity, run_node};
use kappalog::csv::{CsvWriter, ImportReport};
use kappalog::entry::{Entry, UnsignedEntry};
use kappalog::hash::Hash;
use kappalog::identity::{Author, Signature};
use kappalog::import::{import_with_sorter, SpillSorter, IMPORT_BATCH_ENTRIES, MAX_MERGE_FAN_IN};
use kappalog::store::Store;

fn csv(entries: &[(Entry, Hash)]) -> Vec<u8> {
    let mut w = CsvWriter::new(Vec::new()).unwrap();
    for (e, h) in entries {
        w.write_entry(e, h).unwrap();
    }
    w.finish().unwrap()
}

/// The same entry at the same position with another value: a fork, signed by the author.
fn forked(entry: &Entry, seed: u8) -> (Entry, Hash) {
    let mut other = entry.unsigned();
    other.value += 1_000;
    other.sign(&identity(seed))
}

/// A row whose hash is right but whose signature is not the author's.
fn forged(entry: &Entry) -> (Entry, Hash) {
    let mut e = entry.clone();
    e.data.push('!');
    let hash = e.unsigned().hash();
    e.signature = Signature([7; 64]);
    (e, hash)
}

/// Imports `input` into a fresh store holding `held`, sorting with `budget` bytes of memory.
/// Returns the report, the authors proofs were handed over for, the export, and the runs.
fn import(
    budget: usize,
    held: &[(Entry, Hash)],
    input: &[u8],
) -> (ImportReport, Vec<Author>, Vec<u8>, usize) {
    let dir = tempfile::tempdir().unwrap();
    let (store, _owner, _) = Store::open(dir.path(), None, None).unwrap();
    store
        .append_entries(held.iter().map(|(e, _)| e.clone()).collect())
        .wait()
        .unwrap();
    let mut sorter = SpillSorter::with_budget(dir.path(), budget);
    // Run the parse by hand once to learn how many runs this budget makes.
    for line in kappalog::csv::CsvParser::new(input) {
        if let kappalog::csv::ParsedLine::Entry(p) = line.unwrap() {
            sorter.push(p).unwrap();
        }
    }
    let runs = sorter.runs();
    let proved = RefCell::new(Vec::new());
    let sorter = SpillSorter::with_budget(dir.path(), budget);
    let report = import_with_sorter(
        &store,
        input,
        sorter,
        IMPORT_BATCH_ENTRIES,
        |_| false,
        |offered: Entry| {
            proved.borrow_mut().push(offered.author);
            Ok(())
        },
    )
    .unwrap();
    let mut out = CsvWriter::new(Vec::new()).unwrap();
    // Log order: the two imports must have appended the same entries in the same order.
    store
        .reader()
        .for_each_in_log_order(|entry, hash| {
            out.write_entry(entry, hash).unwrap();
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    (report, proved.into_inner(), out.finish().unwrap(), runs)
}

/// A messy input: three feeds, each twice, shuffled; a fork inside the input, a fork against
/// an entry the store already holds, a forged row. Sorted on disk in more runs than one merge
/// takes, it imports exactly as when sorted in memory.
#[test]
fn an_import_sorted_on_disk_equals_one_sorted_in_memory() {
    let held = feed(&identity(4), 3);
    let mut rows: Vec<(Entry, Hash)> = Vec::new();
    for seed in 1..=3 {
        rows.extend(feed(&identity(seed), 30));
    }
    rows.extend(rows.clone());
    rows.push(forked(&rows[9].0, 1)); // seed 1, seq 10: a fork inside the input
    rows.push(forked(&held[1].0, 4)); // seed 4, seq 2: a fork against the store
    rows.push(forged(&rows[40].0)); // seed 2, seq 11: a bad signature
    rows.extend(feed(&identity(4), 5)[3..].iter().cloned()); // seed 4, seqs 4 and 5
                                                             // A fixed shuffle: order by the hash of each row's position.
    let mut keyed: Vec<(Hash, (Entry, Hash))> = rows
        .into_iter()
        .enumerate()
        .map(|(i, row)| (Hash::digest_parts(&[&i.to_le_bytes()]), row))
        .collect();
    keyed.sort_by_key(|(k, _)| *k);
    let rows: Vec<(Entry, Hash)> = keyed.into_iter().map(|(_, row)| row).collect();
    let input = csv(&rows);

    let (memory, memory_proved, memory_log, runs) = import(usize::MAX, &held, &input);
    assert_eq!(runs, 0);
    let (disk, disk_proved, disk_log, runs) = import(250, &held, &input);
    assert!(runs > MAX_MERGE_FAN_IN, "only {runs} runs");
    assert_eq!(disk, memory);
    assert_eq!(disk_proved, memory_proved);
    assert_eq!(disk_log, memory_log);

    // And the outcome is the one expected.
    assert_eq!(memory.duplicates, 90, "{memory}");
    assert_eq!(memory.forks.len(), 2, "{memory}");
    let proved: BTreeSet<Author> = memory_proved.into_iter().collect();
    assert_eq!(
        proved,
        BTreeSet::from([identity(1).author(), identity(4).author()])
    );
    let fork_lines: Vec<Vec<Option<u64>>> = memory
        .forks
        .listed()
        .iter()
        .map(|f| f.entries.iter().map(|s| s.line).collect())
        .collect();
    // The fork against the store has one side without a line (the held entry).
    assert!(fork_lines.iter().any(|l| l.contains(&None)), "{memory}");
    assert!(
        fork_lines.iter().any(|l| l.iter().all(Option::is_some)),
        "{memory}"
    );
    assert!(memory.rejected.total() >= 1, "{memory}");
}

/// Reads a field (in kB) of /proc/PID/status.
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Rows that parse as entries (right hash, any signature) of one author, `n` of them.
fn unsigned_rows(author: Author, n: u64) -> Vec<u8> {
    let mut w = CsvWriter::new(Vec::new()).unwrap();
    let mut prev = Hash([1; 32]);
    for seq in 2..n + 2 {
        let unsigned = UnsignedEntry {
            author,
            seq,
            timestamp: 1_700_000_000_000 + seq,
            prev: Some(prev),
            value: i64::try_from(seq).unwrap(),
            data: "d".repeat(200),
        };
        let hash = unsigned.hash();
        w.write_entry(&unsigned.with_signature(Signature([9; 64])), &hash)
            .unwrap();
        prev = hash;
    }
    w.finish().unwrap()
}

/// A quarter of a gigabyte of distinct entries plus garbage, uploaded to the real binary: the
/// node's peak resident memory grows by far less than the body (the import used to hold
/// every parsed entry: ~2x the body). The entries belong to a feed the node already knows is
/// forked, so they are parsed, sorted and counted like any others but cost no signature
/// checks, which keeps the test quick; the bench measures a 1 GiB import of valid entries.
#[test]
fn a_large_upload_does_not_grow_the_node_with_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let (node, addr) = run_node(&dir.path().join("data"), &dir.path().join("k.key"), &[]);
    let pid = node.child.id();

    // A fork of seed 9 at seq 1: the node records the proof and refuses the feed from now on.
    let first = feed(&identity(9), 1);
    let fork = forked(&first[0].0, 9);
    let r = http(
        addr,
        "POST",
        "/import",
        &csv(&[first[0].clone(), fork]),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["forks"], 1, "{}", r.body);

    let entries: u64 = 450_000;
    let mut body = unsigned_rows(identity(9).author(), entries);
    let garbage_rows: u64 = 200_000;
    for i in 0..garbage_rows {
        body.extend_from_slice(format!("garbage row {i:0>80}\n").as_bytes());
    }
    let body_mib = body.len() >> 20;
    assert!(body_mib >= 200, "{body_mib} MiB");

    let before = status_kb(pid, "VmRSS:");
    let r = http(addr, "POST", "/import", &body, &[]);
    drop(body);
    assert_eq!(r.status, 200, "{}", &r.body[..r.body.len().min(300)]);
    let report = r.json();
    assert_eq!(report["added"], 0);
    assert_eq!(report["rejected"], entries + garbage_rows);
    assert_eq!(report["rejections"].as_array().unwrap().len(), 1000);
    assert!(r.body.len() < 200_000, "report of {} bytes", r.body.len());

    let peak = status_kb(pid, "VmHWM:");
    let growth_mib = peak.saturating_sub(before) / 1024;
    println!(
        "import of {body_mib} MiB ({entries} entries, {garbage_rows} garbage rows): \
         resident {} MiB before, peak {} MiB, growth {growth_mib} MiB",
        before / 1024,
        peak / 1024
    );
    assert!(
        growth_mib <= 128,
        "peak resident memory grew by {growth_mib} MiB for a {body_mib} MiB import"
    );
    // The node still serves, and the sort left no files behind in the data directory.
    assert_eq!(common::get(addr, "/health").status, 200);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
