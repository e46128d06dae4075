//! Cosignatures by a C2SP witness outside kappalog, through the real binary: a node run
//! with `--witness-key` of a test witness (a fixed-seed key named `witness.example/w1`)
//! takes its cosignature by `POST /feeds/AUTHOR/checkpoint`, serves it, counts it in k,
//! keeps it across a restart, and a light client whose policy's quorum is that witness
//! verifies an entry; a node without the key drops the line and counts the drop; hostile
//! bodies are refused with their exact status and message, nothing stored; a malformed or
//! wrong-type `--witness-key` stops the start.

use std::net::SocketAddr;
use std::path::Path;

use ed25519_dalek::SigningKey;
use kappalog::tlog::checkpoint::{author_vkey, origin_for, Checkpoint, SignedCheckpoint};
use kappalog::tlog::cosignature::cosign;
use kappalog::tlog::note::MAX_NOTE_BYTES;
use kappalog::tlog::vkey::{KeyType, VerifierKey};

use crate::common::{
    get, identity, kappalog, post, printed_addr, run_node, wait_until, HttpResponse, Running,
};

const WITNESS: &str = "witness.example/w1";

fn witness_key() -> SigningKey {
    SigningKey::from_bytes(&[0x77; 32])
}

fn witness_vkey() -> String {
    VerifierKey::new(
        WITNESS,
        KeyType::CosignatureV1,
        witness_key().verifying_key(),
    )
    .unwrap()
    .to_string()
}

/// Appends two entries to the node's own feed and waits for its checkpoint of size 2.
fn own_feed_of_two(addr: SocketAddr, key: &Path) -> (String, SignedCheckpoint) {
    for value in [1, 2] {
        assert_eq!(post(addr, "/add", &value.to_string()).status, 201);
    }
    let author = kappalog::keys::load_key(key).unwrap().0.author().to_hex();
    let path = format!("/feeds/{author}/checkpoint");
    let mut served = None;
    wait_until("the own checkpoint of size 2", || {
        let answer = get(addr, &path);
        served = (answer.status == 200)
            .then(|| SignedCheckpoint::parse(answer.body.as_bytes()).unwrap())
            .filter(|s| s.checkpoint().size() == 2);
        served.is_some()
    });
    (author, served.unwrap())
}

/// `signed` with the test witness's cosignature over `over`'s body added.
fn witnessed(signed: &SignedCheckpoint, over: &Checkpoint) -> SignedCheckpoint {
    let line = cosign(WITNESS, &witness_key(), over.body(), 1_700_000_000).unwrap();
    let mut out = signed.clone();
    out.add_signature(line).unwrap();
    out
}

fn submit(addr: SocketAddr, author: &str, note: &[u8]) -> HttpResponse {
    crate::common::http(
        addr,
        "POST",
        &format!("/feeds/{author}/checkpoint"),
        note,
        &[],
    )
}

fn feeds_k(addr: SocketAddr) -> u64 {
    let feeds = get(addr, "/feeds").json();
    feeds["feeds"][0]["k"].as_u64().unwrap()
}

fn assert_refused(answer: &HttpResponse, status: u16, error: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.json()["error"], error, "{}", answer.body);
}

#[test]
fn a_configured_witness_cosignature_is_kept_served_counted_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let (data, key) = (dir.path().join("data"), dir.path().join("node.key"));
    let vkey = witness_vkey();
    let (node, addr) = run_node(&data, &key, &["--witness-key", &vkey]);
    let (author, served) = own_feed_of_two(addr, &key);
    let path = format!("/feeds/{author}/checkpoint");
    assert_eq!(feeds_k(addr), 0);

    let note = witnessed(&served, served.checkpoint()).to_bytes();
    let answer = submit(addr, &author, &note);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let summary = answer.json();
    assert_eq!(summary["size"], 2);
    assert_eq!(summary["served_size"], 2);
    assert_eq!(summary["k"], 1);
    assert_eq!(summary["changed"], true);
    assert_eq!(summary["cosignatures"]["kept"], 1);
    assert_eq!(summary["cosignatures_dropped"], 0);

    let shown = get(addr, &path).body;
    assert!(shown.contains(&format!("— {WITNESS} ")), "{shown}");
    assert_eq!(feeds_k(addr), 1);
    // Offered again: nothing new.
    let again = submit(addr, &author, &note).json();
    assert_eq!(
        (&again["changed"], &again["cosignatures"]["not_newer"]),
        (&serde_json::json!(false), &serde_json::json!(1))
    );

    // A light client whose quorum is the witness verifies an entry.
    let policy = dir.path().join("w1.policy");
    let log = author_vkey(&ed25519_dalek::VerifyingKey::from_bytes(&hex32(&author)).unwrap());
    std::fs::write(
        &policy,
        format!("log {log}\nwitness w1 {vkey}\nquorum w1\n"),
    )
    .unwrap();
    let out = kappalog()
        .env_remove("KAPPALOG_URL")
        .args(["get", "--url", &format!("http://{addr}")])
        .args(["--author", &author, "--seq", "1", "--policy"])
        .arg(&policy)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("cosigned by w1"), "{stdout}");

    // Journalled: a restart serves it again.
    node.terminate();
    let (_node, addr) = run_node(&data, &key, &["--witness-key", &vkey]);
    wait_until("the restarted node serves the witness's line", || {
        get(addr, &path).body.contains(&format!("— {WITNESS} "))
    });
    assert_eq!(feeds_k(addr), 1);
}

#[test]
fn without_the_key_the_line_is_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (data, key) = (dir.path().join("data"), dir.path().join("node.key"));
    let (_node, addr) = run_node(&data, &key, &[]);
    let (author, served) = own_feed_of_two(addr, &key);
    let answer = submit(
        addr,
        &author,
        &witnessed(&served, served.checkpoint()).to_bytes(),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let summary = answer.json();
    assert_eq!(summary["k"], 0);
    assert_eq!(summary["cosignatures"]["unknown_key"], 1);
    assert_eq!(summary["cosignatures_dropped"], 1);
    assert!(!get(addr, &format!("/feeds/{author}/checkpoint"))
        .body
        .contains(WITNESS));
    assert_eq!(feeds_k(addr), 0);
    let metrics = get(addr, "/metrics").body;
    assert!(
        metrics
            .lines()
            .any(|l| l == "kappalog_cosignatures_unknown_key 1"),
        "{metrics}"
    );
}

#[test]
fn hostile_notes_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (data, key) = (dir.path().join("data"), dir.path().join("node.key"));
    let (_node, addr) = run_node(&data, &key, &["--witness-key", &witness_vkey()]);
    let (author, served) = own_feed_of_two(addr, &key);
    let path = format!("/feeds/{author}/checkpoint");
    let before = get(addr, &path).body;

    assert_refused(
        &submit(addr, &author, b"garbage"),
        400,
        "malformed checkpoint note: checkpoint body: note does not end in a newline",
    );

    // Signed under the origin's name by a key that is not the author's.
    let stranger = SigningKey::from_bytes(&[0x55; 32]);
    let forged = SignedCheckpoint::sign(served.checkpoint().clone(), &stranger).unwrap();
    assert_refused(
        &submit(
            addr,
            &author,
            &witnessed(&forged, served.checkpoint()).to_bytes(),
        ),
        403,
        "not an author checkpoint: author signature: checkpoint signature: no signature by a known key",
    );

    // Another feed's checkpoint, properly signed by its author.
    let other = SigningKey::from_bytes(&[0x66; 32]);
    let other_origin = origin_for(other.verifying_key().as_bytes());
    let body = Checkpoint::new(&other_origin, 1, [0u8; 32]).unwrap();
    let other_note = SignedCheckpoint::sign(body, &other).unwrap();
    assert_refused(
        &submit(addr, &author, &other_note.to_bytes()),
        422,
        &format!("the note is a checkpoint of origin {other_origin:?}, not of feed {author}"),
    );

    // The configured witness's name and key ID, but a signature over another checkpoint.
    let elsewhere = Checkpoint::new(served.checkpoint().origin(), 1, [0u8; 32]).unwrap();
    assert_refused(
        &submit(addr, &author, &witnessed(&served, &elsewhere).to_bytes()),
        403,
        &format!("the cosignature line of {WITNESS:?} does not verify under its known key"),
    );

    // 40 cosignature lines: more than a note may carry.
    let mut many = String::from_utf8(served.to_bytes()).unwrap();
    for i in 0..40u8 {
        let line = cosign(&format!("w{i}.example/x"), &stranger, "x\n", 1).unwrap();
        let mut one = served.clone();
        one.add_signature(line).unwrap();
        let text = String::from_utf8(one.to_bytes()).unwrap();
        many.push_str(text.lines().last().unwrap());
        many.push('\n');
    }
    assert_refused(
        &submit(addr, &author, many.as_bytes()),
        400,
        "malformed checkpoint note: checkpoint body: note has more than 32 signatures",
    );

    let oversized = vec![b'a'; MAX_NOTE_BYTES + 1];
    assert_refused(
        &submit(addr, &author, &oversized),
        413,
        &format!("body exceeds the limit of {MAX_NOTE_BYTES} bytes"),
    );

    assert_refused(
        &submit(addr, &"ab".repeat(32), &served.to_bytes()),
        422,
        &format!(
            "the note is a checkpoint of origin {:?}, not of feed {}",
            served.checkpoint().origin(),
            "ab".repeat(32)
        ),
    );

    assert_eq!(get(addr, &path).body, before);
    assert_eq!(feeds_k(addr), 0);
}

#[test]
fn a_bad_witness_key_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let log_type = VerifierKey::new(WITNESS, KeyType::Ed25519, witness_key().verifying_key())
        .unwrap()
        .to_string();
    for bad in ["witness.example/w1+nothex+AAAA", log_type.as_str()] {
        let out = kappalog()
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--key")
            .arg(dir.path().join("node.key"))
            .args(["run", "--http", "127.0.0.1:0", "--witness-key", bad])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().next().unwrap();
        assert!(first.contains("--witness-key"), "{stderr}");
        assert!(first.contains(bad), "{stderr}");
    }
}

/// Starts `kappalog run` of key seed `seed` in `dir/SEED` with sync, dialing `peer`, with
/// `extra` flags: its process, HTTP address, sync address and key file.
fn start_syncing(
    dir: &Path,
    seed: u8,
    peer: Option<SocketAddr>,
    extra: &[&str],
) -> (Running, SocketAddr, SocketAddr, std::path::PathBuf) {
    let key = dir.join(format!("key-{seed}.key"));
    kappalog::keys::write_key_files(&key, &identity(seed)).unwrap();
    let mut cmd = kappalog();
    cmd.arg("--data-dir")
        .arg(dir.join(seed.to_string()))
        .arg("--key")
        .arg(&key)
        .args(["run", "--http", "127.0.0.1:0", "--listen", "127.0.0.1:0"])
        .args(extra);
    if let Some(peer) = peer {
        cmd.args(["--peer", &peer.to_string()]);
    }
    let running = Running::spawn(cmd);
    let line = running.wait_line("http://");
    let sync = crate::common::printed_sync_addr(&line);
    (running, printed_addr(&line), sync, key)
}

fn metric(addr: SocketAddr, name: &str) -> u64 {
    let metrics = get(addr, "/metrics").body;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// A peer that configured the same witness takes its line by gossip; one that did not
/// drops it and counts the drop.
#[test]
fn the_line_is_gossiped_to_peers_that_know_the_witness() {
    let dir = tempfile::tempdir().unwrap();
    let vkey = witness_vkey();
    let keyed = ["--witness-key", vkey.as_str()];
    let (_a, a_http, a_sync, a_key) = start_syncing(dir.path(), 1, None, &keyed);
    let (_b, b_http, _, _) = start_syncing(dir.path(), 2, Some(a_sync), &keyed);
    let (_c, c_http, _, _) = start_syncing(dir.path(), 3, Some(a_sync), &[]);
    let (author, _) = own_feed_of_two(a_http, &a_key);
    let path = format!("/feeds/{author}/checkpoint");
    let size_two = |addr| {
        let answer = get(addr, &path);
        answer.status == 200
            && SignedCheckpoint::parse(answer.body.as_bytes())
                .unwrap()
                .checkpoint()
                .size()
                == 2
    };
    wait_until("both peers serve the feed's checkpoint of size 2", || {
        size_two(b_http) && size_two(c_http)
    });

    let served = SignedCheckpoint::parse(get(a_http, &path).body.as_bytes()).unwrap();
    let note = witnessed(&served, served.checkpoint()).to_bytes();
    let answer = submit(a_http, &author, &note);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["cosignatures"]["kept"], 1, "{}", answer.body);

    let line = format!("— {WITNESS} ");
    wait_until("the keyed peer serves the witness's line", || {
        get(b_http, &path).body.contains(&line)
    });
    wait_until("the peer without the key drops it", || {
        metric(c_http, "kappalog_cosignatures_unknown_key") >= 1
    });
    assert!(!get(c_http, &path).body.contains(&line));
}

fn hex32(text: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).unwrap();
    out
}

/// The answers that depend on what the node holds: a stranger's checkpoint at its own path is
/// 404; the author's key signing a smaller tree the kept checkpoint does not extend is a split
/// view: 409, recorded as a fork proof (`GET /forks`), after which any note of the feed is
/// 410. (409 for a checkpoint that only disagrees with the node's tree, with no kept one to
/// pair it with, is tested on the book: `checkpoint_book`.)
#[test]
fn unknown_inconsistent_and_forked_feeds_get_their_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (data, key) = (dir.path().join("data"), dir.path().join("node.key"));
    let (_node, addr) = run_node(&data, &key, &["--witness-key", &witness_vkey()]);
    let (author, served) = own_feed_of_two(addr, &key);

    let stranger = SigningKey::from_bytes(&[0x66; 32]);
    let stranger_hex = hex::encode(stranger.verifying_key().as_bytes());
    let body = Checkpoint::new(&origin_for(stranger.verifying_key().as_bytes()), 1, [0; 32]);
    let theirs = SignedCheckpoint::sign(body.unwrap(), &stranger).unwrap();
    assert_refused(
        &submit(addr, &stranger_hex, &theirs.to_bytes()),
        404,
        &format!("no feed for author {stranger_hex}"),
    );

    // The book takes the own checkpoint a moment after the tree signs it (served meanwhile
    // from the tree): resubmitting it says when the book keeps it.
    wait_until("the book keeping the own checkpoint of size 2", || {
        let answer = submit(addr, &author, &served.to_bytes());
        answer.status == 200 && answer.json()["served_size"] == 2
    });
    // The author's key signing a smaller tree whose root the kept checkpoint's tree does not
    // extend: two author checkpoints no append-only tree can both describe.
    let identity = kappalog::keys::load_key(&key).unwrap().0;
    let smaller = Checkpoint::new(served.checkpoint().origin(), 1, [1; 32]).unwrap();
    let smaller = SignedCheckpoint::sign(smaller, identity.signing_key()).unwrap();
    assert_refused(
        &submit(addr, &author, &smaller.to_bytes()),
        409,
        &format!(
            "the checkpoint of size 1 conflicts with the author checkpoint the node keeps of \
             feed {author}: a split view, recorded as a fork proof"
        ),
    );
    wait_until("the split view among the fork proofs", || {
        get(addr, "/forks").body.contains(&author)
    });
    assert_refused(
        &submit(addr, &author, &served.to_bytes()),
        410,
        &format!("feed {author} is forked (GET /forks has the proof): no checkpoint of it is kept"),
    );
}
