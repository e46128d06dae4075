//! `kill -9` of a witness node while its checkpoint book cosigns: real `kappalog run`
//! processes on 127.0.0.1 (the helpers of `witness_gossip`).
//!
//! Author node A appends all along (a client thread POSTing `/add`); witness W peers with A,
//! and its book cosigns A's grown feed once a second through W's witness journal
//! (`DATA_DIR/witness`, one fdatasync per batch, released only after it). A watcher thread
//! polls the checkpoint of A's feed served by A and by W (while W is up) and keeps every
//! checkpoint it saw carry a cosignature by W that verifies over it: each one left W.
//! W is killed with SIGKILL several times, each after a different number of new
//! cosignatures were seen (the kill lands at varied points of W's tick: journalling notes,
//! deciding, writing the batch, gossiping), and restarted on the same data directory.
//!
//! After each kill, W's witness journal is read as W left it: it must parse (a torn last line
//! is allowed, the open drops it), and for every cosignature seen, it must hold a record of
//! A's origin at that size or larger, with the same root at the same size: a cosignature
//! leaves W only once its record is written, so nothing W released can be forgotten (and W
//! can never cosign a checkpoint of A inconsistent with one it released). W must restart
//! every time (its journals open, torn tails cut). At the end, with the appends stopped,
//! A's checkpoint of its latest size carries W's cosignature again.
//!
//! A kill -9 leaves the page cache, so it cannot catch a record released before its
//! fdatasync: that ordering is `witness_crash`'s (a power cut at each file call). What this
//! test catches is a cosignature released before its record is written at all, or a
//! journal that does not open after a kill.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use kappalog::tlog::checkpoint::{origin_for, SignedCheckpoint};
use kappalog::tlog::merkle::Hash;
use kappalog::tlog::witness::parse_state;
use kappalog::witness_state::WITNESS_FILE;

use crate::common::{identity, try_http, wait_until};
use crate::witness_gossip::{author_hex, cosigned_by, start};

/// Kill rounds: W is killed after `round + 1` new cosignatures seen.
const ROUNDS: usize = 4;

/// The pace of A's appends: A's checkpoint grows between W's ticks (once a second), so most
/// ticks cosign, while each cosigned checkpoint stays served long enough to be seen. A
/// workload rate, not a synchronisation: every wait below polls with a deadline.
const APPEND_EVERY: Duration = Duration::from_millis(100);

/// How often the watcher reads the served checkpoints.
const POLL_EVERY: Duration = Duration::from_millis(10);

/// What the watcher saw: the checkpoints of A cosigned by W, by size.
#[derive(Default)]
struct Seen {
    cosigned: Mutex<BTreeMap<u64, Hash>>,
}

impl Seen {
    fn count(&self) -> usize {
        self.cosigned.lock().unwrap().len()
    }

    fn snapshot(&self) -> BTreeMap<u64, Hash> {
        self.cosigned.lock().unwrap().clone()
    }
}

/// The checkpoint of `author`'s feed served at `http`; None while the node is down or
/// serves none.
fn served_at(http: SocketAddr, author: u8) -> Option<SignedCheckpoint> {
    let path = format!("/feeds/{}/checkpoint", author_hex(author));
    let answer = try_http(http, "GET", &path, b"")?;
    (answer.status == 200).then(|| SignedCheckpoint::parse(answer.body.as_bytes()).unwrap())
}

/// Records `checkpoint` in `seen` if it carries W's cosignature; two roots at one size
/// would be a fork of an honest log: a failure.
fn watch(checkpoint: Option<SignedCheckpoint>, w_seed: u8, seen: &Seen) {
    let Some(checkpoint) = checkpoint else { return };
    if !cosigned_by(&checkpoint, w_seed) {
        return;
    }
    let (size, root) = (
        checkpoint.checkpoint().size(),
        *checkpoint.checkpoint().root(),
    );
    let mut cosigned = seen.cosigned.lock().unwrap();
    let known = cosigned.entry(size).or_insert(root);
    assert_eq!(*known, root, "two roots cosigned at size {size}");
}

/// W's witness journal as the kill left it covers every cosignature seen (module docs).
fn assert_journal_covers(w_data: &Path, a_seed: u8, seen: &BTreeMap<u64, Hash>, case: &str) {
    let bytes = std::fs::read(w_data.join(WITNESS_FILE)).unwrap();
    let state = parse_state(&bytes).unwrap_or_else(|e| panic!("{case}: journal: {e}"));
    let origin = origin_for(identity(a_seed).author().as_bytes());
    let Some((&largest, _)) = seen.last_key_value() else {
        panic!("{case}: no cosignature seen: the check would be empty");
    };
    let record = state
        .cosigned
        .get(&origin)
        .unwrap_or_else(|| panic!("{case}: A's origin cosigned (size {largest}), no record"));
    assert!(
        record.size >= largest,
        "{case}: cosignature at {largest} released, record at {}",
        record.size
    );
    if let Some(root) = seen.get(&record.size) {
        assert_eq!(record.root, *root, "{case}: record at {}", record.size);
    }
}

#[test]
fn every_released_book_cosignature_is_on_disk_after_repeated_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path(), "a", 61, &[]);
    let (w_seed, w_data) = (62, dir.path().join("w"));
    let mut w = start(dir.path(), "w", w_seed, &[a.sync]);
    let w_http = Mutex::new(Some(w.http));
    let seen = Seen::default();
    let (appended, stop) = (AtomicU64::new(0), AtomicBool::new(false));

    let (a_http, a_seed) = (a.http, a.seed);
    std::thread::scope(|scope| {
        scope.spawn(|| append(a_http, &appended, &stop));
        scope.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                watch(served_at(a_http, a_seed), w_seed, &seen);
                let w_now = *w_http.lock().unwrap();
                if let Some(http) = w_now {
                    watch(served_at(http, a_seed), w_seed, &seen);
                }
                // A polling interval, as `wait_until`'s.
                std::thread::sleep(POLL_EVERY);
            }
        });
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for round in 0..ROUNDS {
                let before = seen.count();
                wait_until("new cosignatures by W", || seen.count() > before + round);
                *w_http.lock().unwrap() = None;
                w.running.child.kill().unwrap();
                w.running.child.wait().unwrap();
                let case = format!("after kill {round}");
                assert_journal_covers(&w_data, a.seed, &seen.snapshot(), &case);
                // Restarts cleanly: `start` waits for the printed address, which a node
                // whose journals do not open never prints.
                w = start(dir.path(), "w", w_seed, &[a.sync]);
                *w_http.lock().unwrap() = Some(w.http);
            }
        }));
        stop.store(true, Ordering::SeqCst);
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    });

    // The appends stopped: A's checkpoint of its latest size is cosigned by W again.
    let latest = appended.load(Ordering::SeqCst);
    wait_until("A's latest checkpoint cosigned by W", || {
        served_at(a.http, a.seed)
            .is_some_and(|cp| cp.checkpoint().size() == latest && cosigned_by(&cp, w_seed))
    });
    assert!(w.running.terminate().success());
    let seen = seen.snapshot();
    assert_journal_covers(&w_data, a.seed, &seen, "after the last stop");
    eprintln!(
        "{} cosignatures by W seen over sizes {:?}..={:?}; A appended {latest}",
        seen.len(),
        seen.keys().next(),
        seen.keys().last()
    );
}

/// A's client: appends one entry per [`APPEND_EVERY`] until `stop`, counting the appended.
fn append(a_http: SocketAddr, appended: &AtomicU64, stop: &AtomicBool) {
    let mut value = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let answer =
            try_http(a_http, "POST", "/add", value.to_string().as_bytes()).expect("A stays up");
        match answer.status {
            201 => {
                value += 1;
                appended.store(value, Ordering::SeqCst);
            }
            // The own-feed fence is not open yet: try again.
            503 => {}
            other => panic!("A's /add: {other}: {}", answer.body),
        }
        std::thread::sleep(APPEND_EVERY);
    }
}
