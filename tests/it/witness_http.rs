//! The node as a C2SP witness of an operator-named log, through the real binary
//! (`kappalog run --witness-for VKEY`, `POST /witness/add-checkpoint`): a test log made
//! here (a fixed-seed Ed25519 key, an RFC 6962 tree, a fork of it that parts after leaf 3)
//! gets a cosignature the node's cosigner vkey verifies, and every refusal tlog-witness
//! prescribes; of concurrent requests from one old size exactly one is cosigned; the record
//! survives a restart and a `kill -9` right after a 200, so a fork of
//! what was cosigned is refused ever after; the node's token is never asked for. Killed
//! repeatedly (`kill -9` right after a 200, and among requests in flight from two clients),
//! the node keeps every cosignature a client received.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use base64ct::{Base64, Encoding};
use ed25519_dalek::{SigningKey, VerifyingKey};
use kappalog::tlog::checkpoint::{Checkpoint, SignedCheckpoint};
use kappalog::tlog::cosignature::{cosigner_name, CosignatureVerifier};
use kappalog::tlog::merkle::{prove_consistency, tree_hash, MemoryTree};
use kappalog::tlog::note::Note;
use kappalog::tlog::vkey::{KeyType, VerifierKey};
use kappalog::tlog::witness::{MAX_REQUEST_BYTES, SIZE_CONTENT_TYPE};

use crate::common::log_tree::labelled_tree;
use crate::common::{http, kappalog, run_node, try_http, wait_until, HttpResponse, Running};

const ORIGIN: &str = "example.com/witnessed";
const PATH: &str = "/witness/add-checkpoint";
const TOKEN: &str = "witness-token";

/// The log the node witnesses, and a fork of it.
struct Log {
    key: SigningKey,
    tree: MemoryTree,
    fork: MemoryTree,
}

impl Log {
    fn new() -> Self {
        Log::with_leaves(20, 3)
    }

    /// A log of `leaves` leaves and a fork of it that parts after leaf `common`.
    fn with_leaves(leaves: u32, common: u32) -> Self {
        Log {
            key: SigningKey::from_bytes(&[41; 32]),
            tree: labelled_tree(leaves, common, "log"),
            fork: labelled_tree(leaves, common, "fork"),
        }
    }

    fn vkey(&self) -> String {
        VerifierKey::new(ORIGIN, KeyType::Ed25519, self.key.verifying_key())
            .unwrap()
            .to_string()
    }

    /// A checkpoint of `tree` at `size`, signed by `key`.
    fn signed(key: &SigningKey, origin: &str, size: u64, tree: &MemoryTree) -> String {
        let checkpoint = Checkpoint::new(origin, size, tree_hash(size, tree).unwrap()).unwrap();
        SignedCheckpoint::sign(checkpoint, key).unwrap().to_string()
    }

    /// `old OLD`, the proof from `old` to `new` in `tree`, and its checkpoint at `new`.
    fn body(&self, old: u64, new: u64, tree: &MemoryTree) -> String {
        body_with(old, new, tree, &Log::signed(&self.key, ORIGIN, new, tree))
    }
}

fn body_with(old: u64, new: u64, tree: &MemoryTree, checkpoint: &str) -> String {
    let mut body = format!("old {old}\n");
    if old > 0 {
        for hash in prove_consistency(old, new, tree).unwrap() {
            body.push_str(&Base64::encode_string(&hash));
            body.push('\n');
        }
    }
    body.push('\n');
    body + checkpoint
}

fn submit(addr: SocketAddr, body: &str) -> HttpResponse {
    http(addr, "POST", PATH, body.as_bytes(), &[])
}

fn start(data: &Path, key: &Path, log: &Log) -> (Running, SocketAddr, CosignatureVerifier) {
    let vkey = log.vkey();
    let (node, addr) = run_node(data, key, &["--token", TOKEN, "--witness-for", &vkey]);
    (node, addr, cosigner_of(key))
}

/// The node's cosigner: `kappalog/node/<hex key>`, tlog-cosignature v1 (type 0x04).
fn cosigner_of(key_file: &Path) -> CosignatureVerifier {
    let author = kappalog::keys::load_key(key_file).unwrap().0.author();
    let key = VerifyingKey::from_bytes(author.as_bytes()).unwrap();
    let name = cosigner_name(author.as_bytes());
    CosignatureVerifier::new(VerifierKey::new(&name, KeyType::CosignatureV1, key).unwrap()).unwrap()
}

/// A 200 whose one line is the node's valid cosignature of the submitted checkpoint.
fn assert_cosigned(answer: &HttpResponse, body: &str, cosigner: &CosignatureVerifier) {
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.starts_with('\u{2014}') && answer.body.ends_with('\n'));
    assert_eq!(answer.body.lines().count(), 1, "{}", answer.body);
    // As the spec suggests a client reads it: appended to the checkpoint's note.
    let checkpoint = &body[body.find("\n\n").unwrap() + 2..];
    let note = Note::parse(format!("{checkpoint}{}", answer.body).as_bytes()).unwrap();
    let cosigned = note
        .signatures()
        .iter()
        .filter_map(|line| cosigner.verify_line(note.text(), line))
        .count();
    assert_eq!(
        cosigned, 1,
        "no valid cosignature by the node in {}",
        answer.body
    );
}

fn assert_conflict(answer: &HttpResponse, latest: u64) {
    assert_eq!(answer.status, 409, "{}", answer.body);
    assert_eq!(answer.body, format!("{latest}\n"));
    assert_eq!(answer.header("content-type"), Some(SIZE_CONTENT_TYPE));
}

#[test]
fn cosigns_refuses_and_remembers_across_restart_and_kill() {
    let dir = tempfile::tempdir().unwrap();
    let (data, key) = (dir.path().join("data"), dir.path().join("node.key"));
    let log = Log::new();
    let (node, addr, cosigner) = start(&data, &key, &log);

    // The token guards writes, but not this route: no request below carries it.
    assert_eq!(
        http(addr, "POST", "/add", b"{\"value\":1}", &[]).status,
        401
    );

    let first = log.body(0, 5, &log.tree);
    assert_cosigned(&submit(addr, &first), &first, &cosigner);
    // The same checkpoint again, from the size just cosigned, is cosigned again.
    let again = log.body(5, 5, &log.tree);
    assert_cosigned(&submit(addr, &again), &again, &cosigner);
    assert_conflict(&submit(addr, &first), 5);

    assert_eq!(submit(addr, "old 0\n\nnot a checkpoint\n").status, 400);
    let other = SigningKey::from_bytes(&[42; 32]);
    let unknown = body_with(
        0,
        5,
        &log.tree,
        &Log::signed(&other, "example.com/other", 5, &log.tree),
    );
    assert_eq!(submit(addr, &unknown).status, 404);
    let impostor = body_with(0, 5, &log.tree, &Log::signed(&other, ORIGIN, 5, &log.tree));
    assert_eq!(submit(addr, &impostor).status, 403);
    assert_conflict(&submit(addr, &log.body(0, 8, &log.tree)), 5);
    // A fork of the cosigned tree: the same size with another root, then a longer fork
    // whose proof from 5 is the fork's own.
    assert_eq!(submit(addr, &log.body(5, 5, &log.fork)).status, 422);
    assert_eq!(submit(addr, &log.body(5, 9, &log.fork)).status, 422);
    let mut too_long = log.body(5, 9, &log.tree).into_bytes();
    too_long.resize(MAX_REQUEST_BYTES + 1, b'\n');
    assert_eq!(http(addr, "POST", PATH, &too_long, &[]).status, 413);

    // A clean restart: the record is read back.
    assert!(node.terminate().success());
    let (node, addr, _) = start(&data, &key, &log);
    assert_eq!(submit(addr, &log.body(5, 5, &log.fork)).status, 422);
    assert_conflict(&submit(addr, &log.body(0, 9, &log.fork)), 5);
    let grown = log.body(5, 9, &log.tree);
    assert_cosigned(&submit(addr, &grown), &grown, &cosigner);

    // kill -9 right after a 200: the record was durable before the answer left.
    drop(node);
    let (_node, addr, _) = start(&data, &key, &log);
    assert_conflict(&submit(addr, &log.body(5, 12, &log.tree)), 9);
    assert_eq!(submit(addr, &log.body(9, 12, &log.fork)).status, 422);
    let grown = log.body(9, 12, &log.tree);
    assert_cosigned(&submit(addr, &grown), &grown, &cosigner);
}

#[test]
fn without_witness_for_every_origin_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let (data, key) = (dir.path().join("data"), dir.path().join("node.key"));
    let log = Log::new();
    let (_node, addr) = run_node(&data, &key, &[]);
    let answer = submit(addr, &log.body(0, 5, &log.tree));
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert_eq!(submit(addr, "garbage").status, 400);
    // The journal exists all the same: the node witnesses the feeds it holds through it.
    assert!(data.join("witness").exists());
}

#[test]
fn a_bad_vkey_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::new();
    let cosigner_type = VerifierKey::new(ORIGIN, KeyType::CosignatureV1, log.key.verifying_key())
        .unwrap()
        .to_string();
    for bad in ["example.com/log+nothex+AAAA", cosigner_type.as_str()] {
        let out = kappalog()
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--key")
            .arg(dir.path().join("node.key"))
            .args(["run", "--http", "127.0.0.1:0", "--witness-for", bad])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--witness-for"), "{stderr}");
        assert!(
            stderr.lines().next().unwrap().contains("--witness-for"),
            "{stderr}"
        );
    }
}

/// tlog-witness's race: requests checked against one old size at once. Exactly one is
/// cosigned, and every other is told the winner's size, whatever the interleaving.
#[test]
fn concurrent_requests_from_one_old_size_get_one_cosignature() {
    let dir = tempfile::tempdir().unwrap();
    let (data, key) = (dir.path().join("data"), dir.path().join("node.key"));
    let log = Log::new();
    let (_node, addr, cosigner) = start(&data, &key, &log);
    let bodies: Vec<String> = (1..=8).map(|size| log.body(0, size, &log.tree)).collect();
    let answers: Vec<HttpResponse> = std::thread::scope(|scope| {
        let sent: Vec<_> = bodies
            .iter()
            .map(|body| scope.spawn(move || submit(addr, body)))
            .collect();
        sent.into_iter().map(|s| s.join().unwrap()).collect()
    });
    let winners: Vec<usize> = (0..answers.len())
        .filter(|&i| answers[i].status == 200)
        .collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    let winner = winners[0];
    assert_cosigned(&answers[winner], &bodies[winner], &cosigner);
    for (_, answer) in answers.iter().enumerate().filter(|&(i, _)| i != winner) {
        assert_conflict(answer, winner as u64 + 1);
    }
}

/// Leaves of the log the kill test grows: more than its rounds can cosign.
const KILL_LEAVES: u32 = 600;

/// What the clients of the kill test received: every size cosigned with a 200 whose
/// cosignature verified.
#[derive(Default)]
struct Received {
    sizes: Mutex<Vec<u64>>,
    largest: AtomicU64,
}

impl Received {
    fn record(&self, size: u64) {
        self.sizes.lock().unwrap().push(size);
        self.largest.fetch_max(size, Ordering::SeqCst);
    }
}

/// One client: grows the log one leaf at a time from the size it believes the witness
/// holds (a 409 tells it the right one), until the node dies under it, `stop` is set, or
/// the tree runs out. What a 409 says is the witness's latest; a dead connection is no
/// answer at all.
fn grow(
    addr: SocketAddr,
    log: &Log,
    cosigner: &CosignatureVerifier,
    mut known: u64,
    received: &Received,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::SeqCst) && known + 1 < u64::from(KILL_LEAVES) - 4 {
        let body = log.body(known, known + 1, &log.tree);
        let Some(answer) = try_http(addr, "POST", PATH, body.as_bytes()) else {
            return;
        };
        match answer.status {
            200 => {
                assert_cosigned(&answer, &body, cosigner);
                received.record(known + 1);
                known += 1;
            }
            409 => known = answer.body.trim().parse().unwrap(),
            // The witness is broken (a write failed) or shutting down: no answer to count.
            503 => return,
            other => panic!("{other}: {}", answer.body),
        }
    }
}

/// After a restart: every size in `received` still holds (a fork at that size is refused,
/// 422 while it is the latest, else 409 with a latest at least as large), a larger fork is
/// refused 422, a request from below the largest received is refused 409, and a consistent
/// larger checkpoint is cosigned. Returns the new latest size.
fn assert_received_hold(
    addr: SocketAddr,
    log: &Log,
    cosigner: &CosignatureVerifier,
    received: &Received,
) -> u64 {
    let largest = received.largest.load(Ordering::SeqCst);
    let probe = submit(addr, &log.body(largest, largest, &log.fork));
    let latest = match probe.status {
        422 => largest,
        409 => probe.body.trim().parse().unwrap(),
        other => panic!("the fork at {largest} got {other}: {}", probe.body),
    };
    assert!(latest >= largest, "rolled back from {largest} to {latest}");
    for &size in received.sizes.lock().unwrap().iter() {
        let answer = submit(addr, &log.body(size, size, &log.fork));
        match size == latest {
            true => assert_eq!(answer.status, 422, "{size}: {}", answer.body),
            false => assert_conflict(&answer, latest),
        }
    }
    let larger = submit(addr, &log.body(latest, latest + 2, &log.fork));
    assert_eq!(larger.status, 422, "{}", larger.body);
    assert_conflict(
        &submit(addr, &log.body(largest - 1, latest + 1, &log.tree)),
        latest,
    );
    let grown = log.body(latest, latest + 1, &log.tree);
    assert_cosigned(&submit(addr, &grown), &grown, cosigner);
    received.record(latest + 1);
    latest + 1
}

/// `kill -9` at several points of cosigning, repeatedly: right after a 200, then (each
/// round) while two clients keep requests in flight, killed once the witness has cosigned
/// a few more. After each restart every cosignature a client received holds.
#[test]
fn every_received_cosignature_holds_after_repeated_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let (data, key) = (dir.path().join("data"), dir.path().join("node.key"));
    // The fork parts from the first leaf: a fork at any size is inconsistent.
    let log = Log::with_leaves(KILL_LEAVES, 0);
    let received = Received::default();

    // Killed right after a 200.
    let (mut node, addr, cosigner) = start(&data, &key, &log);
    for size in 1..=3 {
        let body = log.body(size - 1, size, &log.tree);
        assert_cosigned(&submit(addr, &body), &body, &cosigner);
        received.record(size);
    }
    node.child.kill().unwrap();
    node.child.wait().unwrap();

    for round in 0..4u64 {
        let (mut node, addr, _) = start(&data, &key, &log);
        let latest = assert_received_hold(addr, &log, &cosigner, &received);
        // Killed among requests in flight: two clients race each other from the latest
        // size; the kill lands once a few more were received, while both still send.
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| grow(addr, &log, &cosigner, latest, &received, &stop));
            }
            wait_until("a few more cosignatures", || {
                received.largest.load(Ordering::SeqCst) >= latest + 3 + round
            });
            node.child.kill().unwrap();
            node.child.wait().unwrap();
            // Clients whose requests were all answered before the kill stop here.
            stop.store(true, Ordering::SeqCst);
        });
    }

    let (node, addr, _) = start(&data, &key, &log);
    assert_received_hold(addr, &log, &cosigner, &received);
    assert!(node.terminate().success());
}
