//! Two signatures of one entry hash, end to end (docs/TLOG.md section 8, "Two signatures of
//! one entry hash"): real `kappalog run` processes on 127.0.0.1. An author node A appends
//! five entries; a node N holds the same five but seq 3 under another valid signature of the
//! author's (made here as only a misbehaving author can, `common::resign`), imported from a
//! CSV. The two trees differ, so A's checkpoint is inconsistent with N's tree.
//!
//! - **The author's checkpoint decides**: once N syncs with A (protocol v4), N searches A's
//!   tree, keeps A's copy of seq 3 (a replacement record), rebuilds its tree and serves A's
//!   checkpoint; a light client verifies seq 3 from N; N's export holds A's copy only; the
//!   choice survives a restart and `kappalog verify` passes. A node holding only seqs 1 to
//!   3 gets 4, 5 and A's copy of 3 in one session (the note a step ahead of its tree).
//! - **Lying peers change nothing**: a raw v4 peer that sends A's checkpoint and answers the
//!   search with the wrong number of hashes is ended with `Bye(ProtocolViolation)`; one that
//!   answers consistently but with a third copy of seq 3 (valid, but not the copy the
//!   checkpoint signs) is not believed (the root check fails, the search gives up) and the
//!   session goes on. N still holds its copy after both, and A's honest answer then decides.
//! - **A v3 peer cannot search**: N meeting A over protocol 3 keeps its copy and does not
//!   serve A's checkpoint.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use kappalog::entry::Entry;
use kappalog::identity::Author;
use kappalog::keys::write_key_files;
use kappalog::store::StoreReader;
use kappalog::sync::message::{
    Bye, ByeReason, Checkpoints, EncodedNote, Message, SubtreeItem, Subtrees, WantSubtrees,
};
use kappalog::tlog::checkpoint::SignedCheckpoint;
use kappalog::tlog::merkle::{leaf_hash, node_hash};

use crate::common::peer::RawPeer;
use crate::common::resign::resign;
use crate::common::{get, http, identity, kappalog, wait_until, DEADLINE};
use crate::sync_binary::add;
use crate::witness_gossip::{author_hex, start, Proc};

/// The author's key seed, the holder's, and the raw peers'.
const AUTHOR: u8 = 61;
const HOLDER: u8 = 62;
const LIAR: u8 = 63;
/// The entry the author signed twice.
const TWICE: u64 = 3;
/// The key seed of the node that speaks protocol 3 at most.
const V3: u8 = 65;

/// The author node with five entries, and its served checkpoint note of size 5.
fn author_with_five(dir: &Path) -> (Proc, Vec<u8>) {
    let a = start(dir, "a", AUTHOR, &[]);
    for i in 0..5 {
        add(
            a.http,
            &format!("{{\"value\": {i}, \"data\": \"entry {i}\"}}"),
        );
    }
    let mut note = Vec::new();
    wait_until("A to serve its checkpoint of size 5", || {
        note = served_note(&a).unwrap_or_default();
        size_of(&note) == Some(5)
    });
    (a, note)
}

/// The checkpoint note `node` serves for the author's feed, if any.
fn served_note(node: &Proc) -> Option<Vec<u8>> {
    let answer = get(
        node.http,
        &format!("/feeds/{}/checkpoint", author_hex(AUTHOR)),
    );
    (answer.status == 200).then(|| answer.body.into_bytes())
}

fn size_of(note: &[u8]) -> Option<u64> {
    SignedCheckpoint::parse(note)
        .ok()
        .map(|c| c.checkpoint().size())
}

fn root_of(note: &[u8]) -> [u8; 32] {
    *SignedCheckpoint::parse(note).unwrap().checkpoint().root()
}

/// The author's five entries as A holds them (read from its running store).
fn authors_entries(dir: &Path) -> Vec<Entry> {
    let (reader, _) = StoreReader::open_read_only(&dir.join("a")).unwrap();
    let author = identity(AUTHOR).author();
    (1..=5)
        .map(|seq| reader.get(&author, seq).unwrap().unwrap().0)
        .collect()
}

fn signature_hex(entry: &Entry) -> String {
    hex::encode(entry.signature.0)
}

/// A node N holding the author's five entries with `copy` in place of seq 3, imported from
/// A's export with the one signature changed.
fn holder_of(dir: &Path, a: &Proc, entries: &[Entry], copy: &Entry) -> Proc {
    holder_of_first(dir, a, entries, copy, 5)
}

/// A node N holding the author's first `held` entries (at least 3) with `copy` in place of
/// seq 3.
fn holder_of_first(dir: &Path, a: &Proc, entries: &[Entry], copy: &Entry, held: usize) -> Proc {
    let csv = get(a.http, "/export.csv").body;
    let mut lines: Vec<&str> = csv.lines().collect();
    lines.truncate(1 + held);
    let csv = lines.join("\n") + "\n";
    let original = signature_hex(&entries[(TWICE - 1) as usize]);
    assert_eq!(csv.matches(&original).count(), 1, "{csv}");
    let csv = csv.replace(&original, &signature_hex(copy));
    let n = start(dir, "n", HOLDER, &[]);
    let imported = http(n.http, "POST", "/import", csv.as_bytes(), &[]);
    assert_eq!(imported.status, 200, "{}", imported.body);
    assert_eq!(imported.json()["added"], held, "{}", imported.body);
    n
}

/// Whether `node`'s export holds `entry`'s signature.
fn exports(node: &Proc, entry: &Entry) -> bool {
    get(node.http, "/export.csv")
        .body
        .contains(&signature_hex(entry))
}

fn connect(from: &Proc, to: &Proc) {
    let body = format!("{{\"addr\": \"{}@{}\"}}", author_hex(to.seed), to.sync);
    let added = http(from.http, "POST", "/peers", body.as_bytes(), &[]);
    assert_eq!(added.status, 201, "{}", added.body);
}

/// `kappalog get` of seq 3 of the author's feed from `node`: whether it verified.
fn light_client_verifies(node: SocketAddr) -> bool {
    let url = format!("http://{node}");
    let status = kappalog()
        .args(["get", "--url", &url, "--author", &author_hex(AUTHOR)])
        .args(["--seq", &TWICE.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    status.success()
}

#[test]
fn the_authors_checkpoint_chooses_the_copy_a_node_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let (a, note) = author_with_five(dir.path());
    let entries = authors_entries(dir.path());
    let chosen = &entries[(TWICE - 1) as usize];
    let other = resign(&identity(AUTHOR), chosen, 7);
    assert_ne!(other.signature, chosen.signature);
    let n = holder_of(dir.path(), &a, &entries, &other);
    assert!(exports(&n, &other) && !exports(&n, chosen));
    assert_eq!(served_note(&n), None, "no checkpoint travels in a CSV");

    connect(&n, &a);
    wait_until("N to serve A's checkpoint of size 5", || {
        served_note(&n)
            .is_some_and(|served| size_of(&served) == Some(5) && root_of(&served) == root_of(&note))
    });
    assert!(exports(&n, chosen), "N keeps the copy A's checkpoint signs");
    assert!(!exports(&n, &other), "and only that copy");
    assert!(light_client_verifies(n.http));
    assert_eq!(metric(&n, "kappalog_copies_replaced"), 1);

    // The choice is durable: after a restart N still holds and serves it, and the log
    // (with its replacement record) verifies.
    let Proc { running, .. } = n;
    assert!(running.terminate().success());
    let verified = kappalog()
        .arg("--data-dir")
        .arg(dir.path().join("n"))
        .arg("verify")
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let n = start(dir.path(), "n", HOLDER, &[]);
    assert!(exports(&n, chosen) && !exports(&n, &other));
    assert!(light_client_verifies(n.http));
}

#[test]
fn a_node_short_of_the_last_entries_gets_them_and_the_authors_copy() {
    // N holds seqs 1 to 3 (3 under the other signature): A's entries 4 and 5 arrive in the
    // same session as A's checkpoint of size 5, which the tree covers only a step later.
    let dir = tempfile::tempdir().unwrap();
    let (a, note) = author_with_five(dir.path());
    let entries = authors_entries(dir.path());
    let chosen = &entries[(TWICE - 1) as usize];
    let other = resign(&identity(AUTHOR), chosen, 7);
    let n = holder_of_first(dir.path(), &a, &entries, &other, 3);
    connect(&n, &a);
    wait_until("N to serve A's checkpoint of size 5", || {
        served_note(&n).is_some_and(|s| root_of(&s) == root_of(&note))
    });
    assert!(exports(&n, chosen) && !exports(&n, &other));
    assert!(exports(&n, &entries[4]), "and the entries it lacked");
}

#[test]
fn a_v3_peer_cannot_search_and_the_node_keeps_its_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _note) = author_with_five(dir.path());
    let entries = authors_entries(dir.path());
    let other = resign(&identity(AUTHOR), &entries[(TWICE - 1) as usize], 7);
    let n = holder_of(dir.path(), &a, &entries, &other);
    // A third node at protocol 3 takes A's entries and note and passes the note on to N:
    // N's session with it is a v3 one, where no search can run.
    let v3_key = dir.path().join("v3.key");
    write_key_files(&v3_key, &identity(V3)).unwrap();
    let mut cmd = kappalog();
    cmd.arg("--data-dir")
        .arg(dir.path().join("v3"))
        .arg("--key")
        .arg(&v3_key)
        .args(["run", "--http", "127.0.0.1:0", "--listen", "127.0.0.1:0"])
        .args(["--sync-protocol-max", "3"]);
    let v3 = crate::common::Running::spawn(cmd);
    let line = v3.wait_line("http://");
    let v3 = Proc {
        http: crate::common::printed_addr(&line),
        sync: crate::common::printed_sync_addr(&line),
        running: v3,
        seed: V3,
    };
    let v3_author = author_hex(V3);
    let added = http(
        v3.http,
        "POST",
        "/peers",
        format!("{{\"addr\": \"{}@{}\"}}", author_hex(AUTHOR), a.sync).as_bytes(),
        &[],
    );
    assert_eq!(added.status, 201, "{}", added.body);
    wait_until("the v3 node to serve A's checkpoint", || {
        served_note(&v3).is_some_and(|n| size_of(&n) == Some(5))
    });
    let added = http(
        n.http,
        "POST",
        "/peers",
        format!("{{\"addr\": \"{v3_author}@{}\"}}", v3.sync).as_bytes(),
        &[],
    );
    assert_eq!(added.status, 201, "{}", added.body);
    // The note reached N and was dropped, inconsistent with its tree; no search started.
    wait_until("N to receive A's note", || {
        metric(&n, "kappalog_checkpoint_notes_received") >= 1
    });
    assert_eq!(metric(&n, "kappalog_copy_searches"), 0);
    assert!(exports(&n, &other));
    assert_eq!(served_note(&n), None);
}

/// A gauge of `node`'s `/metrics`.
fn metric(node: &Proc, name: &str) -> u64 {
    let metrics = get(node.http, "/metrics").body;
    metrics
        .lines()
        .find(|l| l.split(' ').next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The next want the node sends, skipping other messages.
async fn next_want(peer: &mut RawPeer) -> WantSubtrees {
    tokio::time::timeout(DEADLINE, async {
        loop {
            if let Message::WantSubtrees(want) = peer.reader.next().await.unwrap() {
                return want;
            }
        }
    })
    .await
    .expect("a want before the deadline")
}

/// Whether the node ends the session with a violation (before the deadline).
async fn ended_with_violation(peer: &mut RawPeer) -> bool {
    let until = tokio::time::timeout(DEADLINE, async {
        loop {
            match peer.reader.next().await {
                Ok(Message::Bye(Bye { reason })) => return reason == ByeReason::ProtocolViolation,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    });
    until.await.unwrap_or(false)
}

/// The honest answer to `want` from the tree over `leaves` (entries in seq order), with
/// `entries` as the copies sent at level 0.
fn answer(author: Author, want: &WantSubtrees, leaves: &[Entry], sent: &[Entry]) -> Subtrees {
    let data = if want.level == 0 {
        (0..u64::from(want.count))
            .map(|i| SubtreeItem(sent[(want.index + i) as usize].encode()))
            .collect()
    } else {
        (0..u64::from(want.count))
            .map(|i| SubtreeItem(subtree(leaves, want.level, want.index + i).to_vec()))
            .collect()
    };
    Subtrees {
        author,
        level: want.level,
        index: want.index,
        count: want.count,
        data,
    }
}

/// The hash of the complete subtree (`level`, `index`) over `leaves`.
fn subtree(leaves: &[Entry], level: u8, index: u64) -> [u8; 32] {
    if level == 0 {
        return leaf_hash(&leaves[index as usize].encode());
    }
    node_hash(
        &subtree(leaves, level - 1, 2 * index),
        &subtree(leaves, level - 1, 2 * index + 1),
    )
}

#[test]
fn lying_peers_change_nothing_and_the_author_decides_after_them() {
    let dir = tempfile::tempdir().unwrap();
    let (a, note) = author_with_five(dir.path());
    let entries = authors_entries(dir.path());
    let author = identity(AUTHOR).author();
    let chosen = entries[(TWICE - 1) as usize].clone();
    let other = resign(&identity(AUTHOR), &chosen, 7);
    let third = resign(&identity(AUTHOR), &chosen, 9);
    let n = holder_of(dir.path(), &a, &entries, &other);
    let runtime = tokio::runtime::Runtime::new().unwrap();

    // Liar 1: the tree's hashes, then the entries with seq 3 under a signature that does
    // not verify (its copy's, one bit flipped).
    let mut forged = other.clone();
    forged.signature.0[63] ^= 1;
    let mut with_forged = entries.clone();
    with_forged[(TWICE - 1) as usize] = forged;
    runtime.block_on(async {
        let mut peer = RawPeer::connect(n.sync, &identity(LIAR)).await;
        peer.send(&Message::Checkpoints(Checkpoints {
            notes: vec![EncodedNote(note.clone())],
        }))
        .await;
        for _ in 0..3 {
            let want = next_want(&mut peer).await;
            let reply = answer(author, &want, &entries, &with_forged);
            let _ = peer.try_send(&Message::Subtrees(reply)).await;
            if want.level == 0 && want.count > 1 {
                break;
            }
        }
        assert!(ended_with_violation(&mut peer).await);
    });
    assert!(exports(&n, &other) && !exports(&n, &chosen));

    // Liar 2: an honest tree, but a third valid copy of seq 3 at the leaves. The copies do
    // not give the checkpoint's root: the search gives up, the session goes on.
    let mut with_third = entries.clone();
    with_third[(TWICE - 1) as usize] = third.clone();
    let _liar = runtime.block_on(async {
        let mut peer = RawPeer::connect(n.sync, &identity(LIAR + 1)).await;
        peer.send(&Message::Checkpoints(Checkpoints {
            notes: vec![EncodedNote(note.clone())],
        }))
        .await;
        let mut answered = 0;
        while answered < 3 {
            let want = tokio::time::timeout(Duration::from_secs(5), next_want(&mut peer)).await;
            let Ok(want) = want else { break };
            let reply = answer(author, &want, &entries, &with_third);
            peer.send(&Message::Subtrees(reply)).await;
            answered += 1;
        }
        peer
    });
    wait_until("both liars' searches to end without a result", || {
        metric(&n, "kappalog_copy_searches_failed") == 2
    });
    assert_eq!(metric(&n, "kappalog_copy_searches"), 2);
    assert!(exports(&n, &other) && !exports(&n, &third) && !exports(&n, &chosen));
    assert_eq!(served_note(&n), None);

    // The author itself answers: its copy is kept.
    connect(&n, &a);
    wait_until("N to serve A's checkpoint", || {
        served_note(&n).is_some_and(|s| root_of(&s) == root_of(&note))
    });
    assert!(exports(&n, &chosen) && !exports(&n, &other) && !exports(&n, &third));
}
