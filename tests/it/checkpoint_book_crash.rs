//! Power cuts at every file operation of the checkpoint book's journal
//! (`DATA_DIR/checkpoints`), on the in-memory backend that can lose what was not synced
//! (`common::crash_io`).
//!
//! A workload opens the journal (its header is created: a cut, a write, a flush, a directory
//! flush), appends the served notes of three feeds in steps, each step flushed as the book's
//! tick does (one author twice in a step, and a last append never flushed), reopens it, which
//! compacts it (a tmp file, its flush, a rename, a directory flush), and appends and flushes
//! more on the compacted file. A clean run counts the calls that change a file. Then for each
//! call the workload runs again and the power goes at that call, and each image the crash may
//! leave (several seeds; the clean run's images stand for one call past the last) is
//! reopened. Each must:
//!
//! - open (a crash never makes the journal unopenable: a torn tail is cut);
//! - replay exactly the notes after some prefix of the appends: never less than every append
//!   whose flush completed before the cut (or that a completed compaction rewrote), nothing
//!   torn (a record cut short is dropped, not replayed in part) and nothing made up;
//! - take new records: an append and a flush after the reopen are replayed at the next open.
//!
//! Flushing nothing (or acknowledging a flush before the fdatasync) fails this test: an image
//! drawn at a later cut loses appends whose flush had returned.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use kappalog::checkpoint_book::{Journal, JournalOptions};
use kappalog::identity::Author;
use kappalog::store::io::LogIo;

use crate::common::crash_io::CrashIo;
use crate::common::identity;

/// Images drawn per crash point.
const SEEDS: u64 = 6;

/// Bytes above which the journal compacts at open: low, so the workload's reopen compacts.
const COMPACT_AT: u64 = 64;

fn dir() -> &'static Path {
    Path::new("/mem/data")
}

fn options(io: Arc<dyn LogIo>) -> JournalOptions {
    JournalOptions {
        io,
        compact_min_bytes: COMPACT_AT,
    }
}

/// One step of appends `(feed, note number)`, then a flush unless it is the last step before
/// the reopen (appends never flushed, which the crash may keep or lose).
type Step = &'static [(u8, usize)];

/// Before the reopen: the last step is not flushed.
const BEFORE: &[Step] = &[
    &[(1, 0), (2, 1)],
    &[(1, 2)],
    &[(1, 3), (3, 4), (1, 5)],
    &[(2, 6)],
    &[(3, 7)],
];

/// After the reopen (which compacts eight records of three feeds), every step flushed.
const AFTER: &[Step] = &[&[(2, 8)], &[(1, 9), (3, 10)]];

/// The note number `n`: distinct bytes of varied lengths (the journal keeps notes as bytes;
/// the book verifies them at replay).
fn note(n: usize) -> Vec<u8> {
    format!("note {n}\n{}\n", "x".repeat(n * 7)).into_bytes()
}

fn author(feed: u8) -> Author {
    identity(feed).author()
}

/// What the workload did: the appends tried, in order (the one the power cut among them),
/// and how many of them were durable when the power went.
#[derive(Default, Debug)]
struct Done {
    appends: Vec<(Author, Vec<u8>)>,
    durable: usize,
}

impl Done {
    /// The notes replayed after the first `k` appends.
    fn state_after(&self, k: usize) -> BTreeMap<Author, Vec<u8>> {
        self.appends[..k].iter().cloned().collect()
    }
}

/// Runs `steps` on `journal`; false once a call failed (the power is gone).
fn run_steps(journal: &mut Journal, steps: &[Step], flush_last: bool, done: &mut Done) -> bool {
    for (i, step) in steps.iter().enumerate() {
        for &(feed, n) in step.iter() {
            done.appends.push((author(feed), note(n)));
            if journal.append(&author(feed), &note(n)).is_err() {
                return false;
            }
        }
        if flush_last || i + 1 < steps.len() {
            match journal.flush() {
                Ok(flushed) => assert!(flushed, "a step appended: its flush syncs"),
                Err(_) => return false,
            }
            done.durable = done.appends.len();
        }
    }
    true
}

/// Runs the workload on `io`; every failure after the crash is expected.
fn workload(io: Arc<dyn LogIo>) -> Done {
    let mut done = Done::default();
    let Ok((mut journal, replayed)) = Journal::open_with_options(dir(), &options(io.clone()))
    else {
        return done;
    };
    assert!(replayed.notes.is_empty());
    if !run_steps(&mut journal, BEFORE, false, &mut done) {
        return done;
    }
    drop(journal);
    let Ok((mut journal, replayed)) = Journal::open_with_options(dir(), &options(io)) else {
        return done;
    };
    // An open that returned made everything it read durable: the compaction's rename and
    // directory flush completed.
    assert!(replayed.compacted, "the reopen compacts");
    assert_eq!(replayed.notes, done.state_after(done.appends.len()));
    done.durable = done.appends.len();
    run_steps(&mut journal, AFTER, true, &mut done);
    done
}

/// Reopens `image` and checks it against what the workload did (module docs).
fn check(image: Arc<dyn LogIo>, done: &Done, case: &str) {
    let (mut journal, replayed) = Journal::open_with_options(dir(), &options(image.clone()))
        .unwrap_or_else(|e| panic!("{case}: the image does not open: {e}"));
    let prefix = (done.durable..=done.appends.len())
        .find(|&k| done.state_after(k) == replayed.notes)
        .unwrap_or_else(|| {
            panic!(
                "{case}: replayed {} notes, not the state after {} or more of {} appends",
                replayed.notes.len(),
                done.durable,
                done.appends.len()
            )
        });
    let after = (author(4), b"after the cut".to_vec());
    journal.append(&after.0, &after.1).unwrap();
    assert!(journal.flush().unwrap(), "{case}");
    drop(journal);
    let (_, again) = Journal::open_with_options(dir(), &options(image))
        .unwrap_or_else(|e| panic!("{case}: the second open: {e}"));
    let mut expected = done.state_after(prefix);
    expected.insert(after.0, after.1);
    assert_eq!(again.notes, expected, "{case}");
}

#[test]
fn a_power_cut_at_every_file_operation_keeps_every_flushed_note() {
    let clean = Arc::new(CrashIo::new(None, SEEDS));
    let done = workload(clean.clone());
    let calls = clean.state().calls;
    let appends: usize = BEFORE.iter().chain(AFTER).map(|step| step.len()).sum();
    assert_eq!(done.appends.len(), appends);
    assert_eq!(done.durable, appends, "the clean run flushes its last step");
    // The header (cut, write, flush, directory flush), one write per append, one flush per
    // flushed step, the compaction (cut and write of the tmp file, its flush, the rename,
    // the directory flush).
    let flushes = BEFORE.len() - 1 + AFTER.len();
    assert_eq!(calls, (4 + appends + flushes + 5) as u64, "{calls} calls");
    for seed in 0..SEEDS {
        let case = format!("no crash, seed {seed}");
        check(Arc::new(clean.memory.crash(seed)), &done, &case);
    }
    for crash_at in 1..=calls {
        let io = Arc::new(CrashIo::new(Some(crash_at), SEEDS));
        let done = workload(io.clone());
        let images = std::mem::take(&mut io.state().images);
        assert_eq!(images.len() as u64, SEEDS, "call {crash_at} was made");
        for (seed, image) in images.into_iter().enumerate() {
            let case = format!("crash at call {crash_at} of {calls}, seed {seed}");
            check(Arc::new(image), &done, &case);
        }
    }
}
