//! Recording fork proofs under injected faults of the forks file (`DATA_DIR/forks`, through
//! the store's `forks_io` seam).
//!
//! Two proofs are recorded, one after the other, with every fault at every call the forks
//! file gets (counted on a clean run first, plus one call past the last). However the calls
//! fail: a proof answered as recorded is in the forks file after a clean shutdown; a proof
//! answered with an error is retried by the writer and recorded once the fault is gone,
//! without anyone asking again; each proof's author is forked from its answer on (its note
//! is in the log), so no forked feed is ever re-admitted; and the reopened store holds both
//! proofs. A forks file that keeps failing degrades the store, over real HTTP too, until the
//! retry succeeds.

use std::path::Path;
use std::sync::Arc;

use crate::common;
use crate::common::faulty_io::{Fault, FaultyIo, Op, FAULTS};
use crate::common::{fork_proof, identity};
use kappalog::fork::ForkProof;
use kappalog::node::Node;
use kappalog::server::ServeLimits;
use kappalog::store::{AppendError, Store, StoreOptions, StoreOwner};

fn open(dir: &Path, forks_io: &Arc<FaultyIo>) -> (Store, StoreOwner) {
    let options = StoreOptions {
        forks_io: forks_io.clone(),
        ..StoreOptions::default()
    };
    let (store, owner, _) = Store::open_with_options(dir, &options, None, None).unwrap();
    (store, owner)
}

fn proofs() -> [ForkProof; 2] {
    [fork_proof(7), fork_proof(8)]
}

/// Polls until `condition` holds (the writer retries an unrecorded proof every second when
/// idle), within the test deadline.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    common::wait_until(what, &mut condition);
}

/// The reopened store (real calls) holds both proofs, and both authors are forked.
fn reopened_holds_both(dir: &Path, case: &str) {
    let set = kappalog::store::fork_log::read_set(dir).unwrap_or_else(|e| panic!("{case}: {e}"));
    let (store, owner, report) = Store::open(dir, None, None).unwrap();
    assert_eq!(report.forks.proofs, 2, "{case}: proofs after reopening");
    assert_eq!(
        report.forks.truncated_bytes, 0,
        "{case}: a half-written proof"
    );
    for proof in proofs() {
        assert!(
            set.contains(&proof.author()),
            "{case}: proof not in the file"
        );
        assert!(report.fork_notes.contains(&proof.author()), "{case}: note");
        assert!(store.forked().proofs().contains(&proof.author()), "{case}");
    }
    owner.shutdown_blocking().unwrap();
}

/// Records both proofs on a store over `io`, answering each as the matrix expects: a refusal
/// only while a fault was injected, naming it. Then waits for the writer's retry to record
/// what was refused, shuts down and checks the reopened store. Returns the refusals.
fn record_both_through(io: &Arc<FaultyIo>, case: &str) -> u32 {
    let dir = tempfile::tempdir().unwrap();
    let (store, owner) = open(dir.path(), io);
    let mut refused = 0;
    for proof in proofs() {
        let author = proof.author();
        match store.record_fork_proof(proof).wait() {
            Ok(new) => assert!(new, "{case}: a first proof is new"),
            Err(AppendError::ForkLog(e)) => {
                assert!(io.injected() >= 1, "{case}: refused with no fault: {e}");
                assert!(e.to_string().contains("injected fault"), "{case}: {e}");
                refused += 1;
            }
            Err(e) => panic!("{case}: {e}"),
        }
        assert!(
            store.forked().contains(&author),
            "{case}: the author is not forked after its answer"
        );
    }
    // What was refused is recorded by the writer's retry, unasked.
    eventually(&format!("{case}: both proofs recorded"), || {
        proofs()
            .iter()
            .all(|p| store.forked().proofs().contains(&p.author()))
    });
    assert!(
        store.health().degraded().is_none(),
        "{case}: still degraded"
    );
    owner.shutdown_blocking().unwrap();
    reopened_holds_both(dir.path(), case);
    refused
}

#[test]
fn every_fault_at_every_call_of_the_forks_file_loses_no_proof_and_admits_no_forked_feed() {
    // A clean run counts the calls.
    let dir = tempfile::tempdir().unwrap();
    let counter = Arc::new(FaultyIo::default());
    let (store, owner) = open(dir.path(), &counter);
    for proof in proofs() {
        assert!(store.record_fork_proof(proof).wait().unwrap());
    }
    owner.shutdown_blocking().unwrap();
    // Two appends, each one write and one sync; nothing to cut back.
    let calls = |op| counter.calls(op);
    assert_eq!(
        (calls(Op::Write), calls(Op::Sync), calls(Op::SetLen)),
        (2, 2, 0)
    );

    let mut refused = 0;
    for op in [Op::Write, Op::Sync] {
        for call in 1..=calls(op) + 1 {
            for fault in FAULTS {
                let case = format!("{op:?} call {call} {fault:?}");
                let io = Arc::new(FaultyIo::default());
                io.fail_once(op, call, fault);
                let refusals = record_both_through(&io, &case);
                // Every call the clean run made is reached (one past the last is not), so
                // the fault really was injected; only a failing one refuses a proof.
                let reached = call <= calls(op);
                assert_eq!(io.injected(), u64::from(reached), "{case}: faults injected");
                let fails = reached && !matches!(fault, Fault::Slow(_));
                assert_eq!(refusals, u32::from(fails), "{case}: refusals");
                refused += refusals;
            }
        }
    }
    // A write or sync failing (EIO, ENOSPC, cut short) refuses the proof it carried: one
    // refusal for each failing fault at each call the clean run made.
    assert_eq!(refused, 3 * (2 + 2));
}

/// A cut back is only reached after a failed append: the first proof's write is cut short
/// (half a record lands in the file), then the cut that removes it fails. The proof is
/// refused naming the write; the writer cuts back before its retry, so the file never holds
/// a record after the half one and both proofs are there after a clean shutdown.
#[test]
fn a_failing_cut_back_after_a_torn_write_loses_no_proof() {
    // With the write cut short and no other fault, the first append cuts back once (the
    // retry has nothing left to cut).
    let counter = Arc::new(FaultyIo::default());
    counter.fail_once(Op::Write, 1, Fault::Short);
    assert_eq!(record_both_through(&counter, "write cut short"), 1);
    assert_eq!(counter.calls(Op::SetLen), 1, "the failed write is cut back");

    for call in 1..=counter.calls(Op::SetLen) + 1 {
        for fault in FAULTS {
            let case = format!("write cut short, then SetLen call {call} {fault:?}");
            let io = Arc::new(FaultyIo::default());
            io.fail_once(Op::Write, 1, Fault::Short);
            io.fail_once(Op::SetLen, call, fault);
            assert_eq!(record_both_through(&io, &case), 1, "{case}: refusals");
            let reached = call <= counter.calls(Op::SetLen);
            assert_eq!(
                io.injected(),
                1 + u64::from(reached),
                "{case}: faults injected"
            );
            // A cut that failed is made again before the next append: one more set_len.
            let cut_failed = reached && !matches!(fault, Fault::Slow(_));
            assert_eq!(io.calls(Op::SetLen), 1 + u64::from(cut_failed), "{case}");
        }
    }
}

/// A cut that keeps failing leaves half a record at the end of the file when the store
/// shuts down: the next open cuts the torn tail, keeps the proof acknowledged before it,
/// and the refused proof's author stays forked by its note in the log.
#[test]
fn a_torn_proof_left_by_a_failing_cut_is_cut_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let io = Arc::new(FaultyIo::default());
    let (store, owner) = open(dir.path(), &io);
    let [first, second] = proofs();
    assert!(store.record_fork_proof(first.clone()).wait().unwrap());
    io.fail_once(Op::Write, 1, Fault::Short);
    io.fail_from_now(Op::SetLen, Fault::Eio);
    let Err(AppendError::ForkLog(e)) = store.record_fork_proof(second.clone()).wait() else {
        panic!("a torn write was answered as recorded")
    };
    assert!(e.to_string().contains("write cut short"), "{e}");
    assert!(store.health().degraded().is_some());
    owner.shutdown_blocking().unwrap();
    assert!(io.injected() >= 2, "the write and the cut failed");
    let torn = u64::try_from(second.encode().len() / 2).unwrap();
    let on_disk = std::fs::metadata(dir.path().join("forks")).unwrap().len();
    assert_eq!(
        on_disk,
        u64::try_from(first.encode().len()).unwrap() + torn,
        "half of the second record is left"
    );

    let (store, owner, report) = Store::open(dir.path(), None, None).unwrap();
    assert_eq!(report.forks.truncated_bytes, torn);
    assert_eq!(report.forks.proofs, 1);
    assert!(store.forked().proofs().contains(&first.author()));
    assert!(!store.forked().proofs().contains(&second.author()));
    assert!(
        report.fork_notes.contains(&second.author()),
        "the refused proof's note is in the log"
    );
    assert!(store.forked().contains(&second.author()));
    owner.shutdown_blocking().unwrap();
    let set = kappalog::store::fork_log::read_set(dir.path()).unwrap();
    assert!(set.contains(&first.author()) && !set.contains(&second.author()));
}

#[test]
fn a_forks_file_that_keeps_failing_degrades_the_store_until_the_retry_records_the_proof() {
    let dir = tempfile::tempdir().unwrap();
    let io = Arc::new(FaultyIo::default());
    io.fail_from_now(Op::Sync, Fault::Eio);
    let (store, owner) = open(dir.path(), &io);
    let [first, second] = proofs();
    let Err(AppendError::ForkLog(e)) = store.record_fork_proof(first.clone()).wait() else {
        panic!("recorded on a failing disk")
    };
    assert!(e.to_string().contains("forks"), "names the file: {e}");
    let spell = store.health().degraded().expect("degraded");
    assert!(
        spell.reason.starts_with("record fork proofs: "),
        "{spell:?}"
    );
    assert!(spell.reason.contains("injected fault"), "{spell:?}");
    assert!(
        store.forked().contains(&first.author()),
        "forked by its note"
    );
    assert!(!store.forked().proofs().contains(&first.author()));
    // The writer keeps retrying, idle, and stays degraded.
    let failures = store.health().failures();
    eventually("two more retries", || {
        store.health().failures() >= failures + 2
    });
    assert!(store.health().degraded().is_some());
    // A second proof while the first waits is refused too, and both wait.
    assert!(store.record_fork_proof(second.clone()).wait().is_err());

    io.heal();
    eventually("the retry to record both proofs", || {
        store.health().degraded().is_none()
    });
    assert!(store.forked().proofs().contains(&first.author()));
    assert!(store.forked().proofs().contains(&second.author()));
    assert_eq!(store.health().recoveries(), 1);
    owner.shutdown_blocking().unwrap();
    reopened_holds_both(dir.path(), "after healing");
}

/// A node (key 1) whose forks file's writes fail with ENOSPC until the returned io heals.
fn node_with_a_full_forks_file(dir: &Path) -> (Node, Arc<FaultyIo>) {
    let io = Arc::new(FaultyIo::default());
    io.fail_from_now(Op::Write, Fault::NoSpace);
    let options = StoreOptions {
        forks_io: io.clone(),
        ..StoreOptions::default()
    };
    let (node, _) = Node::open_with_store_options(dir, identity(1), &options).unwrap();
    (node, io)
}

/// The same over real HTTP: a node whose forks file fails while it imports a fork answers
/// `GET /health` with 503 and the reason, and `ok` again once the proof is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_a_failing_forks_file_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let (node, io) = node_with_a_full_forks_file(dir.path());
    let server = common::serve::start_over(
        node.clone(),
        tempfile::tempdir().unwrap(),
        ServeLimits::default(),
    )
    .await;
    let addr = server.addr;
    let proof = fork_proof(9);
    let mut csv = Vec::new();
    let mut writer = kappalog::csv::CsvWriter::new(&mut csv).unwrap();
    let entries = proof.entries().unwrap();
    for entry in [&entries.a, &entries.b] {
        writer.write_entry(entry, &entry.hash()).unwrap();
    }
    writer.finish().unwrap();
    let importer = node.clone();
    let imported = tokio::task::spawn_blocking(move || importer.import(&csv[..]))
        .await
        .unwrap();
    assert!(imported.is_err(), "the fork's proof could not be recorded");

    // Acted on at once although not durable yet: the feed is excluded.
    assert!(node.is_forked(&proof.author()));
    assert!(node.fork_proofs().is_empty());

    let (health, metrics) = tokio::task::spawn_blocking(move || {
        let health = common::get(addr, "/health");
        let metrics = common::get(addr, "/metrics").body;
        io.heal();
        common::wait_until("/health ok again", || {
            common::get(addr, "/health").status == 200
        });
        (health, metrics)
    })
    .await
    .unwrap();
    assert_eq!(health.status, 503, "{}", health.body);
    assert_eq!(health.json()["status"], "degraded");
    let reason = health.json()["reason"].as_str().unwrap().to_owned();
    assert!(reason.starts_with("record fork proofs: "), "{reason}");
    assert!(reason.contains("injected fault: write"), "{reason}");
    assert!(metrics.contains("kappalog_store_degraded 1"), "{metrics}");
    assert_eq!(node.fork_proofs(), vec![proof]);
    node.shutdown().await.unwrap();
}

/// A proof of the node's own feed is acted on even while the forks file cannot record it:
/// the fence stops own appends at once (the proof is signed evidence either way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrecorded_proof_of_our_own_feed_stops_own_appends_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _io) = node_with_a_full_forks_file(dir.path());
    let mut events = node.subscribe();
    let recorder = node.clone();
    let recorded = tokio::task::spawn_blocking(move || recorder.record_proof(fork_proof(1)))
        .await
        .unwrap();
    assert!(recorded.is_err(), "recorded on a failing disk");
    let refused = node.append(1, "after the fork".into()).await;
    let Err(e) = refused else {
        panic!("an own append after a proof of our own fork")
    };
    assert!(e.to_string().contains("diverged"), "{e}");
    // Peers are handed the proof: the sync sessions hear of it as of a recorded one.
    let told = tokio::time::timeout(common::DEADLINE, async {
        loop {
            if let kappalog::node::NodeEvent::Proof(p) = events.recv().await.unwrap() {
                return p;
            }
        }
    })
    .await
    .expect("no proof event");
    assert_eq!(told.author(), identity(1).author());
    node.shutdown().await.unwrap();
}
