//! The node as a C2SP witness of an operator-named log, through the real binary
//! (`kappalog run --witness-for VKEY`, `POST /witness/add-checkpoint`): a test log made
//! here (a fixed-seed Ed25519 key, an RFC 6962 tree, a fork of it that parts after leaf 3)
//! gets a cosignature the node's cosigner vkey verifies, and every refusal tlog-witness
//! prescribes; of concurrent requests from one old size exactly one is cosigned; the record
//! survives a restart and a `kill -9` right after a 200, so a fork of
//! what was cosigned is refused ever after; the node's token is never asked for.

use std::net::SocketAddr;
use std::path::Path;

use base64ct::{Base64, Encoding};
use ed25519_dalek::{SigningKey, VerifyingKey};
use kappalog::tlog::checkpoint::{Checkpoint, SignedCheckpoint};
use kappalog::tlog::cosignature::{cosigner_name, CosignatureVerifier};
use kappalog::tlog::merkle::{prove_consistency, tree_hash, MemoryTree};
use kappalog::tlog::note::Note;
use kappalog::tlog::vkey::{KeyType, VerifierKey};
use kappalog::tlog::witness::{MAX_REQUEST_BYTES, SIZE_CONTENT_TYPE};

use crate::common::log_tree::labelled_tree;
use crate::common::{http, kappalog, run_node, HttpResponse, Running};

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
        Log {
            key: SigningKey::from_bytes(&[41; 32]),
            tree: labelled_tree(20, 3, "log"),
            fork: labelled_tree(20, 3, "fork"),
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
