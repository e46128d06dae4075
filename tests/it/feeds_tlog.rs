//! The verifiable-feed routes through a real node over TCP (`serve_http` on 127.0.0.1:0 with
//! the tree cache running): a node with its own feed of 300 entries (one full level-0 tile
//! and a partial one) and a foreign feed of 40. The checkpoint verifies under the author's
//! vkey, every proof bundle passes `verify_entry_proof` and `kappalog proof verify`, the
//! consistency proof verifies between two checkpoints, the tiles rebuild the checkpoint's
//! root, `kappalog get` fetches and checks an entry, and the Python cross-check written from
//! the C2SP texts agrees (and fails on a tampered answer). Hostile requests:
//! `feeds_tlog_hostile`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Output;
use std::time::Duration;

use base64ct::{Base64, Encoding};
use kappalog::entry::Entry;
use kappalog::hash::Hash as EntryHash;
use kappalog::http::HttpConfig;
use kappalog::identity::Identity;
use kappalog::node::Node;
use kappalog::query::{index_path, QueryConfig, QueryEngine};
use kappalog::tlog::bundle::verify_entry_proof;
use kappalog::tlog::checkpoint::{author_vkey, origin_for, SignedCheckpoint};
use kappalog::tlog::merkle::{leaf_hash, verify_consistency, Hash, MemoryTree};
use kappalog::tlog::tiles::bundle::parse_entry_bundle;
use kappalog::tree::Trees;
use tokio::runtime::Runtime;

use crate::common::python::python_run;
use crate::common::serve::Server;
use crate::common::tree::{model_of, wait_covered, Model};
use crate::common::{identity, kappalog, wait_until, DEADLINE};

pub(crate) const OWN_ENTRIES: u64 = 300;
const FOREIGN_ENTRIES: u64 = 40;

/// A response with its body as bytes (tiles are binary).
pub(crate) struct Answer {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    /// The JSON error message.
    pub(crate) fn error(&self) -> String {
        let json: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()));
        json["error"].as_str().unwrap().to_owned()
    }
}

/// `GET path` over a fresh connection, the answer read to its close.
pub(crate) fn fetch(addr: SocketAddr, path: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let body = raw[split + 4..].to_vec();
    let answer = Answer {
        status: status.parse().unwrap(),
        headers,
        body,
    };
    if let Some(length) = answer.header("content-length") {
        assert_eq!(length.parse::<usize>().unwrap(), answer.body.len());
    } else {
        assert_eq!(answer.header("transfer-encoding"), None, "chunked: {path}");
    }
    answer
}

/// A served node, its trees and what it holds.
pub(crate) struct Fixture {
    rt: Runtime,
    server: Option<Server>,
    pub(crate) trees: Trees,
    pub(crate) own: Identity,
    own_model: Model,
    foreign: Vec<(Entry, EntryHash)>,
    foreign_model: Model,
}

impl Fixture {
    fn addr(&self) -> SocketAddr {
        self.server.as_ref().unwrap().addr
    }

    pub(crate) fn node(&self) -> &Node {
        &self.server.as_ref().unwrap().node
    }

    pub(crate) fn own_hex(&self) -> String {
        self.own.author().to_hex()
    }

    pub(crate) fn foreign_hex(&self) -> String {
        self.foreign[0].0.author.to_hex()
    }

    pub(crate) fn get(&self, path: &str) -> Answer {
        fetch(self.addr(), path)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.rt.block_on(server.shutdown());
        }
    }
}

/// Serves `node` over TCP with `trees` and a short `--query-wait`.
pub(crate) async fn serve(node: Node, dir: tempfile::TempDir, trees: Trees) -> Server {
    let query = QueryEngine::new(
        index_path(node.data_dir()),
        QueryConfig {
            wait: Duration::from_millis(200),
            ..QueryConfig::default()
        },
    );
    let config = HttpConfig {
        tree: Some(trees),
        query: Some(query),
        ..HttpConfig::default()
    };
    crate::common::serve::serve(node, dir, config).await
}

pub(crate) fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let own = identity(61);
    let foreign = crate::common::feed(&identity(62), FOREIGN_ENTRIES);
    let (server, trees) = rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (node, _) = Node::open_with_identity(dir.path(), own.clone()).unwrap();
        let trees = kappalog::tree::start(&node);
        for v in 0..OWN_ENTRIES {
            node.append(v as i64, format!("own {v}")).await.unwrap();
        }
        node.offer_verified_batch(foreign.clone()).await.unwrap();
        (serve(node, dir, trees.clone()).await, trees)
    });
    let own_model = crate::common::tree::model_from_node(&server.node, &own.author());
    let foreign_model = model_of(&foreign);
    rt.block_on(async {
        wait_covered(&trees, std::slice::from_ref(&own_model)).await;
        wait_covered(&trees, std::slice::from_ref(&foreign_model)).await;
    });
    wait_until("the own checkpoint of the whole feed", || {
        trees
            .own_checkpoint()
            .is_some_and(|c| c.checkpoint().size() == OWN_ENTRIES)
    });
    Fixture {
        rt,
        server: Some(server),
        trees,
        own,
        own_model,
        foreign,
        foreign_model,
    }
}

/// The model's leaf `i`.
fn leaf_at(model: &Model, i: u64) -> Hash {
    let index = kappalog::tlog::merkle::stored_hash_index(0, i);
    model.tree.stored_hashes()[usize::try_from(index).unwrap()]
}

fn root_of(model: &Model, size: u64) -> Hash {
    let mut tree = MemoryTree::new();
    for i in 0..size {
        tree.append(leaf_at(model, i)).unwrap();
    }
    tree.root().unwrap()
}

/// A consistency proof's lines: one base64 hash each.
fn proof_lines(text: &str) -> Vec<Hash> {
    text.lines()
        .map(|line| {
            let mut hash = [0u8; 32];
            assert_eq!(Base64::decode(line, &mut hash).unwrap().len(), 32);
            hash
        })
        .collect()
}

fn hashes(bytes: &[u8]) -> Vec<Hash> {
    assert_eq!(bytes.len() % 32, 0);
    bytes.chunks(32).map(|c| c.try_into().unwrap()).collect()
}

fn verify_checkpoint(text: &[u8], id: &Identity) -> SignedCheckpoint {
    let signed = SignedCheckpoint::parse(text).unwrap();
    signed
        .verify_author(&author_vkey(&id.signing_key().verifying_key()))
        .unwrap();
    assert_eq!(
        signed.checkpoint().origin(),
        origin_for(id.author().as_bytes())
    );
    signed
}

fn exit(out: &Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn checkpoint_proofs_consistency_and_tiles_verify() {
    let f = fixture();
    let own = f.own_hex();
    let root = root_of(&f.own_model, OWN_ENTRIES);

    // The checkpoint: the author's signed note of the whole feed.
    let answer = f.get(&format!("/feeds/{own}/checkpoint"));
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let signed = verify_checkpoint(&answer.body, &f.own);
    assert_eq!(signed.checkpoint().size(), OWN_ENTRIES);
    assert_eq!(*signed.checkpoint().root(), root);

    // Proofs of entries across both level-0 tiles, against the served checkpoint.
    let dir = tempfile::tempdir().unwrap();
    for seq in [1, 2, 150, 256, 257, 300] {
        let answer = f.get(&format!("/feeds/{own}/proof?seq={seq}"));
        assert_eq!(answer.status, 200, "seq {seq}: {}", answer.text());
        let verified = verify_entry_proof(&answer.body, None).unwrap();
        assert_eq!(verified.entry.seq, seq);
        assert_eq!(verified.entry.author, f.own.author());
        assert_eq!(verified.tree_size(), OWN_ENTRIES);
        assert_eq!(*verified.root(), root);
        let file = dir.path().join(format!("{seq}.proof"));
        std::fs::write(&file, &answer.body).unwrap();
        let out = kappalog()
            .args(["proof", "verify", file.to_str().unwrap()])
            .output()
            .unwrap();
        let (code, stdout, stderr) = exit(&out);
        assert_eq!(code, 0, "proof verify of seq {seq}: {stdout}{stderr}");
    }

    // The own feed signs a checkpoint of any size on demand, the same bytes every time.
    let small = f.get(&format!("/feeds/{own}/proof?seq=5&size=100"));
    assert_eq!(small.status, 200, "{}", small.text());
    let verified = verify_entry_proof(&small.body, None).unwrap();
    assert_eq!(verified.tree_size(), 100);
    assert_eq!(*verified.root(), root_of(&f.own_model, 100));
    assert_eq!(
        f.get(&format!("/feeds/{own}/proof?seq=5&size=100")).body,
        small.body,
        "deterministic"
    );
    let exact = f.get(&format!("/feeds/{own}/proof?seq=7&size=7"));
    assert_eq!(
        verify_entry_proof(&exact.body, None).unwrap().tree_size(),
        7
    );

    // Consistency from the checkpoint of 100 (in the bundle just fetched) to the served one.
    let old = kappalog::tlog::proof::TlogProof::parse(&small.body)
        .unwrap()
        .checkpoint()
        .clone();
    old.verify_author(&author_vkey(&f.own.signing_key().verifying_key()))
        .unwrap();
    let answer = f.get(&format!(
        "/feeds/{own}/consistency?from=100&to={OWN_ENTRIES}"
    ));
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let text = answer.text();
    assert!(text.ends_with('\n'));
    let proof = proof_lines(&text);
    assert!(!proof.is_empty());
    verify_consistency(100, OWN_ENTRIES, old.checkpoint().root(), &root, &proof).unwrap();
    for (from, to) in [(0, 0), (0, 5), (300, 300)] {
        let answer = f.get(&format!("/feeds/{own}/consistency?from={from}&to={to}"));
        assert_eq!((answer.status, answer.body.len()), (200, 0), "{from}..{to}");
    }

    // Tiles: the full level-0 tile is immutable, the partial one short-lived; together their
    // leaves rebuild the checkpoint's root, and the level-1 tile holds the full tile's root.
    let full = f.get(&format!("/feeds/{own}/tile/0/000"));
    assert_eq!(full.status, 200);
    assert_eq!(
        full.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(
        full.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(full.body.len(), 8192);
    let partial = f.get(&format!("/feeds/{own}/tile/0/001.p/44"));
    assert_eq!(partial.status, 200);
    assert_eq!(partial.header("cache-control"), Some("public, max-age=60"));
    let mut leaves = hashes(&full.body);
    leaves.extend(hashes(&partial.body));
    let mut rebuilt = MemoryTree::new();
    for leaf in &leaves {
        rebuilt.append(*leaf).unwrap();
    }
    assert_eq!(rebuilt.root().unwrap(), root, "the tiles rebuild the root");
    let level1 = f.get(&format!("/feeds/{own}/tile/1/000.p/1"));
    assert_eq!(level1.status, 200);
    assert_eq!(hashes(&level1.body), vec![root_of(&f.own_model, 256)]);
    let narrower = f.get(&format!("/feeds/{own}/tile/0/001.p/10"));
    assert_eq!(hashes(&narrower.body), leaves[256..266].to_vec());

    // Entry bundles: each entry hashes to its level-0 tile hash.
    for (path, width, first) in [
        ("entries/000", 256u16, 0usize),
        ("entries/001.p/44", 44, 256),
    ] {
        let bundle = f.get(&format!("/feeds/{own}/tile/{path}"));
        assert_eq!(bundle.status, 200, "{path}");
        let entries = parse_entry_bundle(&bundle.body, width).unwrap();
        let hashed: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
        assert_eq!(hashed, leaves[first..first + usize::from(width)].to_vec());
    }

    // The foreign feed: no author checkpoint held, so none served and no proof; its tree,
    // tiles and consistency proofs are served all the same.
    let foreign = f.foreign_hex();
    let answer = f.get(&format!("/feeds/{foreign}/checkpoint"));
    assert_eq!(answer.status, 404);
    assert!(
        answer.error().contains("no checkpoint of feed"),
        "{}",
        answer.error()
    );
    let answer = f.get(&format!("/feeds/{foreign}/proof?seq=3"));
    assert_eq!(answer.status, 404);
    assert!(
        answer.error().contains("no checkpoint of feed"),
        "{}",
        answer.error()
    );
    let tile = f.get(&format!("/feeds/{foreign}/tile/0/000.p/40"));
    assert_eq!(tile.status, 200);
    let expected: Vec<Hash> = f
        .foreign
        .iter()
        .map(|(e, _)| leaf_hash(&e.encode()))
        .collect();
    assert_eq!(hashes(&tile.body), expected);
    let answer = f.get(&format!("/feeds/{foreign}/consistency?from=10&to=40"));
    let proof = proof_lines(&answer.text());
    verify_consistency(
        10,
        40,
        &root_of(&f.foreign_model, 10),
        &root_of(&f.foreign_model, 40),
        &proof,
    )
    .unwrap();

    // /feeds says what is proved of each feed.
    let feeds: serde_json::Value = serde_json::from_slice(&f.get("/feeds").body).unwrap();
    let line = |author: &str| {
        feeds["feeds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["author"] == author)
            .unwrap()
            .clone()
    };
    assert_eq!(line(&own)["tree_size"], OWN_ENTRIES);
    assert_eq!(line(&own)["checkpoint_size"], OWN_ENTRIES);
    assert_eq!(line(&foreign)["tree_size"], FOREIGN_ENTRIES);
    assert_eq!(line(&foreign)["checkpoint_size"], serde_json::Value::Null);
    assert_eq!(
        line(&own)["length"],
        OWN_ENTRIES,
        "the summary's fields stay"
    );
}

#[test]
fn kappalog_get_fetches_and_checks_an_entry_from_the_node() {
    let f = fixture();
    let url = format!("http://{}", f.addr());
    let get = |author: &str, seq: &str, extra: &[&str]| {
        exit(
            &kappalog()
                .env_remove("KAPPALOG_URL")
                .env_remove("KAPPALOG_GET_TIMEOUT")
                .args(["get", "--url", &url, "--author", author, "--seq", seq])
                .args(extra)
                .output()
                .unwrap(),
        )
    };
    let (code, stdout, stderr) = get(&f.own_hex(), "257", &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("own 256"), "prints the entry: {stdout}");
    let (code, stdout, stderr) = get(&f.own_hex(), "5", &["--size", "100"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("a tree of 100 entries"), "{stdout}");
    // A feed the node holds no checkpoint of, and one it does not hold: no answer to check.
    let (code, _, stderr) = get(&f.foreign_hex(), "3", &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no checkpoint of feed"), "{stderr}");
    let stranger = identity(63).author().to_hex();
    let (code, _, stderr) = get(&stranger, "1", &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no feed for author"), "{stderr}");
}

#[test]
fn the_python_cross_check_agrees_with_a_live_node_and_catches_tampering() {
    let f = fixture();
    let url = format!("http://{}", f.addr());
    let own = f.own_hex();
    let Some((agreed, printed)) = python_run("tlog_live.py", &[&url, &own]) else {
        return;
    };
    assert!(agreed, "{printed}");
    assert!(printed.contains("all checks passed"), "{printed}");
    for kind in ["checkpoint", "proof", "consistency", "tile"] {
        let (agreed, printed) =
            python_run("tlog_live.py", &[&url, &own, "--tamper", kind]).unwrap();
        assert!(!agreed, "a tampered {kind} passed: {printed}");
        assert!(printed.contains("FAILED:"), "{kind}: {printed}");
    }
}

/// `kappalog get --state DIR` against the live node: the first answer is remembered, a larger
/// one is proved consistent with it (the node's consistency route) and replaces it, an older
/// one is proved consistent and changes nothing; a remembered checkpoint the node's tree
/// contradicts (same size, another root: a split view; or a size the node's proof cannot
/// reach) fails with exit 1 and keeps the node's checkpoint as evidence; one the node cannot
/// prove anything about, or a state file that is not the feed's, is exit 2.
#[test]
fn kappalog_get_with_state_holds_the_node_to_what_it_showed_before() {
    use kappalog::tlog::checkpoint::Checkpoint;
    let f = fixture();
    let url = format!("http://{}", f.addr());
    let hex = f.own_hex();
    let dir = tempfile::tempdir().unwrap();
    // Created by the first `get`.
    let state = dir.path().join("seen");
    let remembered_file = state.join(format!("{hex}.checkpoint"));
    let conflict_file = state.join(format!("{hex}.conflict"));
    let saved = dir.path().join("bundle");
    let get = |extra: &[&str]| {
        exit(
            &kappalog()
                .env_remove("KAPPALOG_URL")
                .env_remove("KAPPALOG_GET_TIMEOUT")
                .env_remove("KAPPALOG_GET_STATE")
                .args(["get", "--url", &url, "--author", &hex, "--seq", "5"])
                .args(["--state", state.to_str().unwrap()])
                .args(["--save", saved.to_str().unwrap()])
                .args(extra)
                .output()
                .unwrap(),
        )
    };
    let remembered = || {
        let signed = verify_checkpoint(&std::fs::read(&remembered_file).unwrap(), &f.own);
        (signed.checkpoint().size(), *signed.checkpoint().root())
    };
    let root_at = |size| root_of(&f.own_model, size);
    let forge = |size: u64, root: [u8; 32]| {
        let checkpoint = Checkpoint::new(&origin_for(f.own.author().as_bytes()), size, root);
        SignedCheckpoint::sign(checkpoint.unwrap(), f.own.signing_key())
            .unwrap()
            .note()
            .to_bytes()
    };

    let (code, stdout, stderr) = get(&["--size", "100"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        remembered(),
        (100, root_at(100)),
        "the first answer is remembered"
    );
    let (code, stdout, stderr) = get(&[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains(&format!("a tree of {OWN_ENTRIES} entries")));
    assert_eq!(remembered(), (OWN_ENTRIES, root_at(OWN_ENTRIES)), "grown");
    let (code, stdout, stderr) = get(&["--size", "200"]);
    assert_eq!(code, 0, "an older tree proved consistent: {stdout}{stderr}");
    assert_eq!(remembered(), (OWN_ENTRIES, root_at(OWN_ENTRIES)), "kept");
    assert!(!conflict_file.exists());

    // The author's key signed another tree of the node's size: a split view, whatever the
    // node proves. Nothing is saved, nothing remembered.
    std::fs::remove_file(&saved).unwrap();
    let other = forge(OWN_ENTRIES, [7; 32]);
    std::fs::write(&remembered_file, &other).unwrap();
    let (code, stdout, stderr) = get(&[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!(
            "FAILED: split view: the node's checkpoint of {OWN_ENTRIES} entries has another root"
        )),
        "{stdout}"
    );
    assert_eq!(std::fs::read(&remembered_file).unwrap(), other);
    let kept = verify_checkpoint(&std::fs::read(&conflict_file).unwrap(), &f.own);
    assert_eq!(*kept.checkpoint().root(), root_at(OWN_ENTRIES));
    assert!(!saved.exists(), "a failed answer is not saved");

    // Another tree of 250 entries remembered: the node's true proof from 250 does not reach
    // it, whether the answer is larger or smaller.
    std::fs::write(&remembered_file, forge(250, [8; 32])).unwrap();
    for extra in [&[][..], &["--size", "100"][..]] {
        let (code, stdout, stderr) = get(extra);
        assert_eq!(code, 1, "{stdout}{stderr}");
        assert!(stdout.contains("is not proved consistent with the one of 250 entries remembered"));
    }
    assert_eq!(remembered().0, 250, "a failed answer is never remembered");

    // A remembered tree larger than the node's: the node cannot prove anything (409).
    std::fs::write(&remembered_file, forge(OWN_ENTRIES + 100, [9; 32])).unwrap();
    let (code, stdout, stderr) = get(&[]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.starts_with("error: asking the node to prove its checkpoint of 300 entries consistent with the one of 400 remembered"), "{stderr}");
    assert!(stderr.contains("409"), "{stderr}");

    // A state file that is not this feed's checkpoint: refused before any request.
    let stranger = identity(63);
    let theirs = Checkpoint::new(&origin_for(stranger.author().as_bytes()), 3, [1; 32]);
    let theirs = SignedCheckpoint::sign(theirs.unwrap(), stranger.signing_key()).unwrap();
    for bad in [theirs.note().to_bytes(), b"not a note".to_vec()] {
        std::fs::write(&remembered_file, bad).unwrap();
        let (code, stdout, stderr) = get(&[]);
        assert_eq!(code, 2, "{stdout}{stderr}");
        assert!(
            stderr.contains("is not a checkpoint of this feed signed by its author"),
            "{stderr}"
        );
        assert!(stderr.contains("delete it to start afresh"), "{stderr}");
    }
}
