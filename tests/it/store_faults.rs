//! The store under injected I/O faults (`common::faulty_io::FaultyIo` through the store's
//! `LogIo` seam): every fault at every step of a run of appends, own and foreign. After
//! each run the log is reopened with the real file layer and must hold exactly the entries
//! that were acknowledged: none lost or changed, none answered with an error yet stored.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::common;
use crate::common::faulty_io::{Fault, FaultyIo, Op, FAULTS, OPS};
use crate::common::identity;
use kappalog::entry::Entry;
use kappalog::hash::Hash;
use kappalog::store::io::memory::MemoryIo;
use kappalog::store::{Outcome, Store, StoreOptions, StoreOwner};

/// Appends in one run: own and foreign alternating, so each write batch is one of them.
const STEPS: u64 = 8;

fn open(dir: &Path, io: &Arc<FaultyIo>) -> (Store, StoreOwner) {
    // No idle commit markers: each case fails one counted call of one operation, so the
    // calls must come from the appends alone (`an_idle_marker_that_fails_...` covers them).
    common::open_with_counted_io(dir, io.clone())
}

/// Every entry in the log, reopened with the real file layer, by hash.
fn held(dir: &Path) -> BTreeMap<Hash, Entry> {
    let (store, owner, _) = Store::open(dir, None, None).unwrap();
    let all = common::entries_by_hash(&store.reader());
    owner.shutdown_blocking().unwrap();
    all
}

/// What a run was told: the acknowledged entries, and how many appends failed.
#[derive(Default)]
struct Told {
    acked: BTreeMap<Hash, Entry>,
    failed: u64,
}

/// `STEPS` appends, own and foreign alternating; a failed foreign append is offered again
/// with the next one (a peer resends what was not acknowledged).
fn run(store: &Store, told: &mut Told) {
    let foreign = common::feed(&identity(2), STEPS);
    let mut next_foreign = 0;
    for step in 0..STEPS {
        if step % 2 == 0 {
            match store
                .append_own(i64::try_from(step).unwrap(), format!("step {step}"))
                .wait()
            {
                Ok((entry, hash)) => {
                    told.acked.insert(hash, entry);
                }
                Err(_) => told.failed += 1,
            }
        } else {
            let (entry, hash) = foreign[next_foreign].clone();
            match store.append_entries(vec![entry.clone()]).wait() {
                Ok(outcomes) => {
                    assert_eq!(outcomes, vec![Outcome::Added(hash)]);
                    told.acked.insert(hash, entry);
                    next_foreign += 1;
                }
                Err(_) => told.failed += 1,
            }
        }
    }
}

/// Where a case's log lives: a real file, or a file in memory (reopened through the same
/// memory, with nothing lost: no crash here, see `store_crash.rs` for those).
#[derive(Clone, Copy, Debug)]
enum Backend {
    Disk,
    Memory,
}

/// Every entry in the log in memory, reopened without faults, by hash.
fn held_in(dir: &Path, memory: MemoryIo) -> BTreeMap<Hash, Entry> {
    let options = StoreOptions {
        io: Arc::new(memory),
        ..StoreOptions::default()
    };
    let (store, owner, _) = Store::open_with_options(dir, &options, None, None).unwrap();
    let all = common::entries_by_hash(&store.reader());
    owner.shutdown_blocking().unwrap();
    all
}

#[test]
fn every_fault_at_every_call_loses_nothing_acknowledged_and_the_store_writes_again() {
    fault_matrix(Backend::Disk);
}

#[test]
fn the_fault_matrix_holds_on_files_in_memory_too() {
    fault_matrix(Backend::Memory);
}

fn fault_matrix(backend: Backend) {
    let mut cases = 0;
    for op in OPS {
        for fault in FAULTS {
            // Calls 1..=6 of each operation cover the header-less first write, writes in
            // the middle of the run, and the recovery's own calls after a failure.
            for call in 1..=6u64 {
                let dir = tempfile::tempdir().unwrap();
                let memory = MemoryIo::new();
                let io = Arc::new(match backend {
                    Backend::Disk => FaultyIo::default(),
                    Backend::Memory => FaultyIo::over(Arc::new(memory.clone())),
                });
                let (store, owner) = open(dir.path(), &io);
                let recovery_op = matches!(op, Op::SetLen | Op::Len);
                if recovery_op {
                    // The cut and the length check run only in a recovery: fail a write at
                    // step `call` to start one, and the recovery's own first call.
                    io.fail_once(Op::Write, call, Fault::Eio);
                    io.fail_once(op, 1, fault);
                } else {
                    io.fail_once(op, call, fault);
                }
                let mut told = Told::default();
                run(&store, &mut told);
                let case = format!("{backend:?}: {op:?} call {call} {fault:?}");
                // Every planned call is reached: the one fault, and in a recovery case the
                // write that starts the recovery too.
                let planned = 1 + u64::from(recovery_op);
                assert_eq!(io.injected(), planned, "{case}: faults injected");
                if !matches!(fault, Fault::Slow(_)) || recovery_op {
                    assert!(
                        told.failed > 0,
                        "{case}: a fault was injected, yet nothing failed"
                    );
                }
                // The fault was a single one: a further append succeeds, and the store is ok.
                let after = store.append_own(99, "after".into()).wait();
                let (entry, hash) = after.unwrap_or_else(|e| panic!("{case}: {e}"));
                told.acked.insert(hash, entry);
                assert!(
                    store.health().degraded().is_none(),
                    "{case}: still degraded"
                );
                owner.shutdown_blocking().unwrap();
                let held = match backend {
                    Backend::Disk => held(dir.path()),
                    Backend::Memory => held_in(dir.path(), memory),
                };
                assert_eq!(
                    held.keys().collect::<Vec<_>>(),
                    told.acked.keys().collect::<Vec<_>>(),
                    "{case}: the log must hold exactly the acknowledged entries"
                );
                assert_eq!(held, told.acked, "{case}: an entry changed");
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 4 * 4 * 6);
}

#[test]
fn a_lasting_fault_fails_every_append_with_the_reason_until_healed() {
    for (op, fault, reason) in [
        (
            Op::Write,
            Fault::NoSpace,
            "write the log: injected fault: write",
        ),
        (
            Op::Write,
            Fault::Short,
            "write the log: injected fault: write cut short",
        ),
        (Op::Sync, Fault::Eio, "injected fault: fdatasync"),
        (
            Op::SetLen,
            Fault::Eio,
            "recover the log's tail: injected fault: truncate",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let io = Arc::new(FaultyIo::default());
        let (store, owner) = open(dir.path(), &io);
        let (first, first_hash) = store.append_own(1, String::new()).wait().unwrap();
        if op == Op::SetLen {
            // A cut that fails leaves the store unable to recover: the write that needed it
            // fails for its own reason first, then every later one for the cut's, unwritten.
            io.fail_once(Op::Write, 1, Fault::Eio);
            io.fail_from_now(Op::SetLen, fault);
        } else {
            io.fail_from_now(op, fault);
        }
        for i in 0..5 {
            let err = store
                .append_own(i, String::new())
                .wait()
                .unwrap_err()
                .to_string();
            assert!(err.contains("injected fault"), "{op:?}: {err}");
        }
        let spell = store.health().degraded().expect("degraded while failing");
        assert!(spell.reason.contains("injected fault"), "{}", spell.reason);
        assert!(spell.reason.contains(reason), "{op:?}: {}", spell.reason);
        assert!(store.health().failures() >= 5);
        // Reads still work, and see only the durable entry.
        assert_eq!(store.reader().len(), 1);

        io.heal();
        let (entry, _) = store.append_own(7, String::new()).wait().unwrap();
        assert_eq!(entry.seq, 2, "the failed appends left no seq behind");
        assert_eq!(entry.prev, Some(first_hash));
        assert!(store.health().degraded().is_none());
        assert_eq!(store.health().recoveries(), 1);
        owner.shutdown_blocking().unwrap();
        let held = held(dir.path());
        assert_eq!(held.len(), 2, "{op:?}");
        assert_eq!(held[&first_hash], first);
    }
}

#[test]
fn concurrent_appenders_through_a_failed_sync_get_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let io = Arc::new(FaultyIo::default());
    let (store, owner) = open(dir.path(), &io);
    io.fail_once(Op::Sync, 4, Fault::Eio);
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                scope.spawn(move || {
                    (0..40)
                        .map(|i| store.append_own(t * 100 + i, String::new()).wait())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let acked: BTreeMap<Hash, Entry> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|(e, h)| (*h, e.clone()))
        .collect();
    let failed = results.iter().filter(|r| r.is_err()).count();
    assert!(failed > 0, "the injected fsync failure failed someone");
    assert_eq!(acked.len() + failed, 320);
    owner.shutdown_blocking().unwrap();
    let held = held(dir.path());
    assert_eq!(
        held, acked,
        "exactly the acknowledged entries, as acknowledged"
    );
    // They form one chain 1..=n: nothing of a failed batch survived in the middle.
    let mut seqs: Vec<u64> = held.values().map(|e| e.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=acked.len() as u64).collect::<Vec<_>>());
}

/// The commit marker an idle store writes after its last append can fail too: the store is
/// degraded (nothing acknowledged is at risk: the marker covers entries already durable), and
/// the next append recovers and writes once the fault is gone.
#[test]
fn an_idle_marker_that_fails_degrades_the_store_until_a_write_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let io = Arc::new(FaultyIo::default());
    let (store, owner, _) = Store::open_with_options(
        dir.path(),
        &StoreOptions {
            io: io.clone(),
            ..StoreOptions::default()
        },
        Some(identity(1)),
        None,
    )
    .unwrap();
    let (first, first_hash) = store.append_own(1, String::new()).wait().unwrap();
    io.fail_from_now(Op::Write, Fault::Eio);
    common::wait_until("the idle marker's write to fail", || {
        store.health().degraded().is_some()
    });
    let spell = store.health().degraded().unwrap();
    assert!(spell.reason.contains("commit marker"), "{}", spell.reason);
    assert!(store.append_own(2, String::new()).wait().is_err());
    io.heal();
    let (second, second_hash) = store.append_own(3, String::new()).wait().unwrap();
    assert_eq!(second.seq, 2);
    assert!(store.health().degraded().is_none());
    owner.shutdown_blocking().unwrap();
    let held = held(dir.path());
    assert_eq!(
        held,
        BTreeMap::from([(first_hash, first), (second_hash, second)])
    );
}
