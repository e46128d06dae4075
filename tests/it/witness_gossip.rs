//! Every node a witness, end to end: real `kappalog run` processes syncing over TCP on
//! 127.0.0.1, their checkpoint books cosigning and gossiping author checkpoints in v3
//! sessions, read back through the HTTP routes and `kappalog get --policy`.
//!
//! What is covered:
//!
//! - **cosigning over gossip**: A appends; its peers B and C cosign A's checkpoint and the
//!   cosignatures travel back to A (and on to the other peer): A's served checkpoint carries
//!   both, each verifying over exactly the served checkpoint, `/feeds` shows `k = 2`, and a
//!   light client with a policy requiring both witnesses accepts an entry;
//! - **split view on reconnect**: one author key on X1 and X2 kept apart, each side cosigned
//!   by its own witness (W1, W2); connecting W1 and W2 leaves a fork proof for the feed on
//!   all four nodes and the feed `forked` in their `/feeds`. The sides exchange entries as
//!   well as notes, so which proof wins the race (two entries at seq 1, or two checkpoints of
//!   one size) is not fixed: either is accepted;
//! - **split view from checkpoints alone**: W1 (holding side-1 entries only) receives the
//!   side-2 checkpoint, cosigned by W2, in a v3 session from a peer that sends no entries
//!   (a raw protocol peer carrying W2's served note: the only way to withhold a side's
//!   entries while sending its note, since real nodes always offer their entries). W1
//!   records a checkpoint fork proof (no entry fork is possible: it never saw a side-2
//!   entry) and gossips it to X1.
//!
//! Not covered here: a note larger than the tree the receiver holds (it waits for entries,
//! `checkpoint_book`'s tests), and nodes restarted with `--peer` instead of `POST /peers`.

use std::net::SocketAddr;
use std::path::Path;

use ed25519_dalek::SigningKey;
use kappalog::keys::write_key_files;
use kappalog::sync::message::{Checkpoints, EncodedNote, Message};
use kappalog::tlog::checkpoint::{author_vkey, SignedCheckpoint};
use kappalog::tlog::cosignature::{cosigner_name, CosignatureVerifier};
use kappalog::tlog::vkey::{KeyType, VerifierKey};

use crate::common::peer::RawPeer;
use crate::common::{
    get, http, identity, kappalog, printed_addr, printed_sync_addr, wait_until, Running,
};
use crate::sync_binary::add;

/// A running node: its process, HTTP and sync addresses and node key seed.
pub(crate) struct Proc {
    pub(crate) running: Running,
    pub(crate) http: SocketAddr,
    pub(crate) sync: SocketAddr,
    pub(crate) seed: u8,
}

/// Starts `kappalog run` with data dir `dir/name` and the key of seed `seed` (written to
/// `dir/key-SEED.key` once; two nodes of one seed share the key file), dialing `peers`.
pub(crate) fn start(dir: &Path, name: &str, seed: u8, peers: &[SocketAddr]) -> Proc {
    let key = dir.join(format!("key-{seed}.key"));
    if !key.exists() {
        write_key_files(&key, &identity(seed)).unwrap();
    }
    let mut cmd = kappalog();
    cmd.arg("--data-dir")
        .arg(dir.join(name))
        .arg("--key")
        .arg(&key)
        .args(["run", "--http", "127.0.0.1:0", "--listen", "127.0.0.1:0"]);
    for peer in peers {
        cmd.args(["--peer", &peer.to_string()]);
    }
    let running = Running::spawn(cmd);
    let line = running.wait_line("http://");
    Proc {
        http: printed_addr(&line),
        sync: printed_sync_addr(&line),
        running,
        seed,
    }
}

pub(crate) fn author_hex(seed: u8) -> String {
    identity(seed).author().to_hex()
}

/// The cosigner vkey of the node of key `seed`.
fn cosigner_vkey(seed: u8) -> VerifierKey {
    let key = SigningKey::from_bytes(&[seed; 32]).verifying_key();
    VerifierKey::new(&cosigner_name(key.as_bytes()), KeyType::CosignatureV1, key).unwrap()
}

/// The checkpoint `node` serves for the feed of `author` (None while it serves none), its
/// author signature verified.
fn served(node: &Proc, author: u8) -> Option<SignedCheckpoint> {
    let answer = get(
        node.http,
        &format!("/feeds/{}/checkpoint", author_hex(author)),
    );
    if answer.status != 200 {
        return None;
    }
    let checkpoint = SignedCheckpoint::parse(answer.body.as_bytes()).unwrap();
    let key = SigningKey::from_bytes(&[author; 32]).verifying_key();
    checkpoint.verify_author(&author_vkey(&key)).unwrap();
    Some(checkpoint)
}

/// Whether `checkpoint` carries a cosignature line of the node of key `seed` that verifies
/// over exactly its body.
pub(crate) fn cosigned_by(checkpoint: &SignedCheckpoint, seed: u8) -> bool {
    let verifier = CosignatureVerifier::new(cosigner_vkey(seed)).unwrap();
    let note = checkpoint.note();
    note.signatures()
        .iter()
        .any(|line| verifier.verify_line(note.text(), line).is_some())
}

/// The `/feeds` line of `author` on `node`.
fn feed_line(node: &Proc, author: u8) -> Option<serde_json::Value> {
    let feeds = get(node.http, "/feeds").json();
    feeds["feeds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["author"] == author_hex(author))
        .cloned()
}

/// The fork proofs `node` holds for the feed of `author`.
fn forks_of(node: &Proc, author: u8) -> Vec<serde_json::Value> {
    let forks = get(node.http, "/forks").json();
    forks
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["author"] == author_hex(author))
        .cloned()
        .collect()
}

fn is_split_view(fork: &serde_json::Value) -> bool {
    fork.get("checkpoints").is_some_and(|c| !c.is_null())
}

#[test]
fn peers_cosign_an_authors_checkpoint_and_the_cosignatures_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path(), "a", 31, &[]);
    let b = start(dir.path(), "b", 32, &[a.sync]);
    let c = start(dir.path(), "c", 33, &[a.sync]);
    for v in 0..5 {
        add(a.http, &v.to_string());
    }
    // No more appends from here: a cosignature covers one exact checkpoint.
    let cosigned_by_both = |node: &Proc| {
        served(node, a.seed).is_some_and(|cp| {
            cp.checkpoint().size() == 5 && cosigned_by(&cp, b.seed) && cosigned_by(&cp, c.seed)
        })
    };
    wait_until("A's checkpoint of 5 cosigned by B and C, on A", || {
        cosigned_by_both(&a)
    });
    let line = feed_line(&a, a.seed).unwrap();
    assert_eq!(line["checkpoint_size"], 5, "{line}");
    assert_eq!(line["k"], 2, "{line}");
    // The author does not cosign its own feed.
    assert!(!cosigned_by(&served(&a, a.seed).unwrap(), a.seed));
    // The peers serve A's checkpoint too, with both cosignatures (C's reached B through A).
    wait_until("A's checkpoint cosigned by both, on B and C", || {
        cosigned_by_both(&b) && cosigned_by_both(&c)
    });
    assert_eq!(feed_line(&b, a.seed).unwrap()["k"], 2);

    // A light client requiring both witnesses accepts an entry of A from A.
    let author_key = SigningKey::from_bytes(&[a.seed; 32]).verifying_key();
    let author_log = format!("log {}", author_vkey(&author_key));
    let both = format!(
        "{author_log}\nwitness b {}\nwitness c {}\ngroup both all b c\nquorum both\n",
        cosigner_vkey(b.seed),
        cosigner_vkey(c.seed),
    );
    let out = get_with_policy(dir.path(), &a, &both);
    assert!(
        out.status.success(),
        "kappalog get: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A quorum of a witness that never cosigned is not met: the check above could fail.
    let stranger = format!("{author_log}\nwitness d {}\nquorum d\n", cosigner_vkey(34));
    assert!(!get_with_policy(dir.path(), &a, &stranger).status.success());
}

/// `kappalog get` of entry 3 of `node`'s own feed from `node`, checked against `policy`.
fn get_with_policy(dir: &Path, node: &Proc, policy: &str) -> std::process::Output {
    let path = dir.join("policy");
    std::fs::write(&path, policy).unwrap();
    kappalog()
        .env_remove("KAPPALOG_URL")
        .args(["get", "--url", &format!("http://{}", node.http)])
        .args(["--author", &author_hex(node.seed), "--seq", "3", "--policy"])
        .arg(&path)
        .output()
        .unwrap()
}

/// The author key of both sides.
const SPLIT_AUTHOR: u8 = 41;

/// One side of a split view: the author's node X (key [`SPLIT_AUTHOR`], data dir
/// `xNAME`) with `entries` own entries of values `base..`, and its witness W (key
/// `witness`) syncing only with X, once W serves X's checkpoint cosigned by itself.
fn side(dir: &Path, name: &str, witness: u8, base: i64) -> (Proc, Proc) {
    let x = start(dir, &format!("x{name}"), SPLIT_AUTHOR, &[]);
    let w = start(dir, &format!("w{name}"), witness, &[x.sync]);
    for v in base..base + 3 {
        add(x.http, &v.to_string());
    }
    wait_or_show(
        "the side's witness to cosign its author's checkpoint",
        || {
            served(&w, SPLIT_AUTHOR)
                .is_some_and(|cp| cp.checkpoint().size() == 3 && cosigned_by(&cp, witness))
        },
        &[("X", &x), ("W", &w)],
    );
    (x, w)
}

/// Polls `condition` until it holds; at the deadline, panics with what each of `nodes`
/// shows of the split author's feed, so a failure says where it stopped.
fn wait_or_show(what: &str, mut condition: impl FnMut() -> bool, nodes: &[(&str, &Proc)]) {
    let deadline = std::time::Instant::now() + crate::common::DEADLINE;
    while !condition() {
        if std::time::Instant::now() > deadline {
            let state: Vec<String> = nodes
                .iter()
                .map(|(name, node)| {
                    let checkpoint = get(
                        node.http,
                        &format!("/feeds/{}/checkpoint", author_hex(SPLIT_AUTHOR)),
                    );
                    format!(
                        "{name}: checkpoint {} {:?}\n  forks {:?}\n  feed {:?}\n  peers {}\n  health {}",
                        checkpoint.status,
                        checkpoint.body,
                        forks_of(node, SPLIT_AUTHOR),
                        feed_line(node, SPLIT_AUTHOR),
                        get(node.http, "/peers").body,
                        get(node.http, "/health").body,
                    )
                })
                .collect();
            panic!("timed out waiting for {what}:\n{}", state.join("\n"));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Whether `node` holds a fork proof of the split author and shows the feed forked.
fn knows_the_fork(node: &Proc) -> bool {
    !forks_of(node, SPLIT_AUTHOR).is_empty()
        && feed_line(node, SPLIT_AUTHOR).is_some_and(|f| f["status"] == "forked")
}

#[test]
fn a_split_view_is_caught_when_the_sides_witnesses_meet() {
    let dir = tempfile::tempdir().unwrap();
    let (x1, w1) = side(dir.path(), "1", 42, 0);
    let (x2, w2) = side(dir.path(), "2", 43, 100);
    for node in [&x1, &w1, &x2, &w2] {
        assert!(forks_of(node, SPLIT_AUTHOR).is_empty(), "no fork before");
    }
    let added = http(
        w2.http,
        "POST",
        "/peers",
        format!("{{\"addr\": \"{}\"}}", w1.sync).as_bytes(),
        &[],
    );
    assert_eq!(added.status, 201, "{}", added.body);
    let nodes = [("X1", &x1), ("W1", &w1), ("X2", &x2), ("W2", &w2)];
    wait_or_show(
        "every node to hold the fork proof",
        || nodes.iter().all(|(_, node)| knows_the_fork(node)),
        &nodes,
    );
    for (name, node) in [("X1", &x1), ("W1", &w1), ("X2", &x2), ("W2", &w2)] {
        let kinds: Vec<&str> = forks_of(node, SPLIT_AUTHOR)
            .iter()
            .map(|f| {
                if is_split_view(f) {
                    "checkpoints"
                } else {
                    "entries"
                }
            })
            .collect();
        eprintln!("{name} holds fork proofs: {kinds:?}");
    }
}

#[test]
fn a_split_view_is_caught_from_cosigned_checkpoints_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (x1, w1) = side(dir.path(), "1", 44, 0);
    let (_x2, w2) = side(dir.path(), "2", 45, 100);
    // Side 2's note as W2 serves it: X2's signature and W2's cosignature.
    let other = served(&w2, SPLIT_AUTHOR).unwrap();
    assert!(cosigned_by(&other, 45));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _peer = runtime.block_on(async {
        let mut peer = RawPeer::connect(w1.sync, &identity(46)).await;
        peer.send(&Message::Checkpoints(Checkpoints {
            notes: vec![EncodedNote(other.to_bytes())],
        }))
        .await;
        peer
    });
    wait_until("W1 and X1 to hold the split view", || {
        knows_the_fork(&w1) && knows_the_fork(&x1)
    });
    // Only split views: a side-2 entry reaching either would have made an entry fork at
    // seq 1 (the sides' first entries differ), so the proof came from the checkpoints.
    for node in [&w1, &x1] {
        let forks = forks_of(node, SPLIT_AUTHOR);
        assert!(forks.iter().all(is_split_view), "{forks:?}");
    }
}
