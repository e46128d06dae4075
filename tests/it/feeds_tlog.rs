//! The verifiable-feed routes through a real node over TCP (`serve_http` on 127.0.0.1:0 with
//! the tree cache running): a node with its own feed of 300 entries (one full level-0 tile
//! and a partial one) and a foreign feed of 40. The checkpoint verifies under the author's
//! vkey, every proof bundle passes `verify_entry_proof` and `kappalog proof verify`, the
//! consistency proof verifies between two checkpoints, the tiles rebuild the checkpoint's
//! root, `kappalog get` fetches and checks an entry, and the Python cross-check written from
//! the C2SP texts agrees (and fails on a tampered answer). Hostile requests get their
//! status and message, and nothing is written.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Output;
use std::time::Duration;

use base64ct::{Base64, Encoding};
use kappalog::entry::Entry;
use kappalog::hash::Hash as EntryHash;
use kappalog::http::{router, HttpConfig};
use kappalog::identity::Identity;
use kappalog::node::Node;
use kappalog::query::{index_path, QueryConfig, QueryEngine};
use kappalog::server::{serve_http, ServeLimits};
use kappalog::tlog::bundle::verify_entry_proof;
use kappalog::tlog::checkpoint::{author_vkey, origin_for, SignedCheckpoint};
use kappalog::tlog::merkle::{leaf_hash, verify_consistency, Hash, MemoryTree};
use kappalog::tlog::tiles::bundle::parse_entry_bundle;
use kappalog::tree::Trees;
use tokio::runtime::Runtime;

use crate::common::python::python_run;
use crate::common::serve::Server;
use crate::common::tree::{model_of, wait_covered, Model};
use crate::common::{identity, kappalog, last_entry_end, wait_until, DEADLINE};

const OWN_ENTRIES: u64 = 300;
const FOREIGN_ENTRIES: u64 = 40;

/// A response with its body as bytes (tiles are binary).
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    /// The JSON error message.
    fn error(&self) -> String {
        let json: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()));
        json["error"].as_str().unwrap().to_owned()
    }
}

/// `GET path` over a fresh connection, the answer read to its close.
fn fetch(addr: SocketAddr, path: &str) -> Answer {
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
struct Fixture {
    rt: Runtime,
    server: Option<Server>,
    trees: Trees,
    own: Identity,
    own_model: Model,
    foreign: Vec<(Entry, EntryHash)>,
    foreign_model: Model,
}

impl Fixture {
    fn addr(&self) -> SocketAddr {
        self.server.as_ref().unwrap().addr
    }

    fn node(&self) -> &Node {
        &self.server.as_ref().unwrap().node
    }

    fn own_hex(&self) -> String {
        self.own.author().to_hex()
    }

    fn foreign_hex(&self) -> String {
        self.foreign[0].0.author.to_hex()
    }

    fn get(&self, path: &str) -> Answer {
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
async fn serve(node: Node, dir: tempfile::TempDir, trees: Trees) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
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
    let api = router(node.clone(), config);
    let open = node.metrics().http_connections.clone();
    let task = tokio::spawn(serve_http(
        listener,
        api,
        ServeLimits::default(),
        open,
        async {
            let _ = stopped.await;
        },
    ));
    Server::from_parts(addr, node, stop, task, dir)
}

fn fixture() -> Fixture {
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
        assert_eq!(verified.tree_size, OWN_ENTRIES);
        assert_eq!(verified.root, root);
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
    assert_eq!(verified.tree_size, 100);
    assert_eq!(verified.root, root_of(&f.own_model, 100));
    assert_eq!(
        f.get(&format!("/feeds/{own}/proof?seq=5&size=100")).body,
        small.body,
        "deterministic"
    );
    let exact = f.get(&format!("/feeds/{own}/proof?seq=7&size=7"));
    assert_eq!(verify_entry_proof(&exact.body, None).unwrap().tree_size, 7);

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
    let proof: Vec<Hash> = text
        .lines()
        .map(|line| {
            let mut hash = [0u8; 32];
            Base64::decode(line, &mut hash).unwrap();
            hash
        })
        .collect();
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
    let proof: Vec<Hash> = answer
        .text()
        .lines()
        .map(|line| {
            let mut hash = [0u8; 32];
            Base64::decode(line, &mut hash).unwrap();
            hash
        })
        .collect();
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

#[test]
fn hostile_requests_get_their_status_and_message_and_write_nothing() {
    let f = fixture();
    let own = f.own_hex();
    let foreign = f.foreign_hex();
    let stranger = identity(64).author().to_hex();
    let entries_before = f.node().reader().len();
    let log = f.node().data_dir().join("entries.log");
    // The store writes idle commit markers on its own: entry records are what count.
    let log_before = last_entry_end(&log);
    let cases: Vec<(String, u16, &str)> = vec![
        (
            format!("/feeds/{own}/proof"),
            400,
            "missing query parameter \"seq\"",
        ),
        (format!("/feeds/{own}/proof?seq=0"), 400, "at least 1"),
        (format!("/feeds/{own}/proof?seq=-1"), 400, "decimal integer"),
        (format!("/feeds/{own}/proof?seq=x"), 400, "decimal integer"),
        (
            format!("/feeds/{own}/proof?seq=18446744073709551616"),
            400,
            "decimal integer",
        ),
        (
            format!("/feeds/{own}/proof?seq=18446744073709551615"),
            404,
            "there is no seq",
        ),
        (
            format!("/feeds/{own}/proof?seq=301"),
            404,
            "has 300 entries",
        ),
        (
            format!("/feeds/{own}/proof?seq=9&size=8"),
            400,
            "below seq 9",
        ),
        (
            format!("/feeds/{own}/proof?seq=9&size=301"),
            409,
            "no checkpoint of size 301",
        ),
        (format!("/feeds/{own}/proof?seq=1&size=x"), 400, "\"size\""),
        (
            format!("/feeds/{foreign}/proof?seq=1&size=40"),
            404,
            "no checkpoint of feed",
        ),
        (
            format!("/feeds/{stranger}/proof?seq=1"),
            404,
            "no feed for author",
        ),
        (
            format!("/feeds/{stranger}/checkpoint"),
            404,
            "no feed for author",
        ),
        ("/feeds/zz/checkpoint".into(), 400, "author"),
        (format!("/feeds/{}/checkpoint", &own[..62]), 400, "author"),
        (
            format!("/feeds/{own}/consistency?from=5"),
            400,
            "missing query parameter \"to\"",
        ),
        (
            format!("/feeds/{own}/consistency?from=6&to=5"),
            400,
            "a tree only grows",
        ),
        (
            format!("/feeds/{own}/consistency?from=5&to=301"),
            409,
            "300 entries",
        ),
        (
            format!("/feeds/{stranger}/consistency?from=0&to=1"),
            404,
            "no feed",
        ),
        (
            format!("/feeds/{own}/tile/0/x018/x446/x744/x073/x709/x551/615"),
            404,
            "no tile",
        ),
        (
            format!("/feeds/{own}/tile/0/002"),
            404,
            "covers 300 entries",
        ),
        (
            format!("/feeds/{own}/tile/0/001"),
            404,
            "no tile tile/0/001",
        ),
        (format!("/feeds/{own}/tile/0/001.p/45"), 404, "no tile"),
        (format!("/feeds/{own}/tile/1/000"), 404, "no tile"),
        (format!("/feeds/{own}/tile/entries/002"), 404, "no tile"),
        (
            format!("/feeds/{own}/tile/0/000.p/0"),
            400,
            "bad partial tile width",
        ),
        (
            format!("/feeds/{own}/tile/0/000.p/256"),
            400,
            "bad partial tile width",
        ),
        (
            format!("/feeds/{own}/tile/0/001.p/"),
            400,
            "bad partial tile width",
        ),
        (format!("/feeds/{own}/tile/64/000"), 400, "bad tile level"),
        (format!("/feeds/{own}/tile/0/x000/001"), 400, "canonical"),
        (format!("/feeds/{own}/tile/0/1"), 400, "bad tile index"),
        (
            format!("/feeds/{own}/tile/0/000/001"),
            400,
            "bad tile index",
        ),
        (
            format!("/feeds/{own}/tile/0/000/extra/segments"),
            400,
            "tile",
        ),
        (
            format!("/feeds/{own}/tile/hashes/000"),
            400,
            "bad tile level",
        ),
        (
            format!("/feeds/{stranger}/tile/0/000"),
            404,
            "no feed for author",
        ),
        ("/feeds/zz/tile/0/000".into(), 400, "author"),
        (format!("/feeds/{own}/nothing"), 404, "no such route"),
    ];
    for (path, status, needle) in &cases {
        let answer = f.get(path);
        assert_eq!(answer.status, *status, "{path}: {}", answer.text());
        let error = answer.error();
        assert!(error.contains(needle), "{path}: {error:?} lacks {needle:?}");
    }
    // No token is asked of the reads, and none of them wrote anything.
    assert_eq!(f.node().reader().len(), entries_before);
    assert_eq!(last_entry_end(&log), log_before);
    assert_eq!(f.trees.size(&f.own.author()), OWN_ENTRIES);
}

/// A tree behind the log: node A served with the trees of node B, which holds only a prefix
/// of A's feed (the state between an append and the tree follower reading it, held still).
#[test]
fn what_the_tree_has_not_covered_yet_is_a_503_with_retry_after() {
    let rt = Runtime::new().unwrap();
    let own = identity(65);
    let b_dir = tempfile::tempdir().unwrap();
    let (server, b) = rt.block_on(async {
        let a_dir = tempfile::tempdir().unwrap();
        let (a, _) = Node::open_with_identity(a_dir.path(), own.clone()).unwrap();
        for v in 0..5 {
            a.append(v, format!("own {v}")).await.unwrap();
        }
        let prefix: Vec<(Entry, EntryHash)> = (1..=3)
            .map(|seq| {
                let (entry, hash) = a.reader().get(&own.author(), seq).unwrap().unwrap();
                (entry, hash)
            })
            .collect();
        let (b, _) = Node::open_with_identity(b_dir.path(), identity(66)).unwrap();
        let b_trees = kappalog::tree::start(&b);
        b.offer_verified_batch(prefix).await.unwrap();
        assert!(
            b_trees.wait_for_size(&own.author(), 3, DEADLINE).await,
            "B's tree covers the prefix"
        );
        (serve(a, a_dir, b_trees).await, b)
    });
    let hex = own.author().to_hex();
    let behind = |path: String| {
        let answer = fetch(server.addr, &path);
        assert_eq!(answer.status, 503, "{path}: {}", answer.text());
        assert_eq!(answer.header("retry-after"), Some("1"), "{path}");
        assert!(
            answer.error().contains("its tree covers 3 so far"),
            "{path}"
        );
    };
    behind(format!("/feeds/{hex}/proof?seq=4"));
    behind(format!("/feeds/{hex}/proof?seq=1&size=5"));
    behind(format!("/feeds/{hex}/consistency?from=1&to=4"));
    // The own feed has entries, but no checkpoint is signed yet (B signs its own feed).
    let answer = fetch(server.addr, &format!("/feeds/{hex}/checkpoint"));
    assert_eq!(answer.status, 503, "{}", answer.text());
    assert_eq!(answer.header("retry-after"), Some("1"));
    // What the tree covers is proved, against a checkpoint signed now with A's key.
    let answer = fetch(server.addr, &format!("/feeds/{hex}/proof?seq=2"));
    assert_eq!(answer.status, 200, "{}", answer.text());
    let verified = verify_entry_proof(&answer.body, None).unwrap();
    assert_eq!((verified.entry.seq, verified.tree_size), (2, 3));
    rt.block_on(async {
        server.shutdown().await;
        b.shutdown().await.unwrap();
    });
}

/// The own feed of a node without entries: nothing to sign, said so; a forked feed: gone.
#[test]
fn an_empty_own_feed_has_no_checkpoint_to_serve() {
    let rt = Runtime::new().unwrap();
    let own = identity(67);
    let (server, _trees) = rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (node, _) = Node::open_with_identity(dir.path(), own.clone()).unwrap();
        let trees = kappalog::tree::start(&node);
        (serve(node, dir, trees.clone()).await, trees)
    });
    let hex = own.author().to_hex();
    let answer = fetch(server.addr, &format!("/feeds/{hex}/checkpoint"));
    assert_eq!(answer.status, 404);
    assert!(
        answer.error().contains("has no entries to sign"),
        "{}",
        answer.error()
    );
    let answer = fetch(server.addr, &format!("/feeds/{hex}/proof?seq=1"));
    assert_eq!(answer.status, 404, "{}", answer.text());
    let answer = fetch(server.addr, &format!("/feeds/{hex}/tile/0/000.p/1"));
    assert_eq!(answer.status, 404, "{}", answer.text());
    // A forked feed: 410, pointing at the proof.
    assert!(server
        .node
        .record_proof(crate::common::fork_proof(68))
        .unwrap());
    let forked = identity(68).author().to_hex();
    for path in [
        "checkpoint",
        "proof?seq=1",
        "consistency?from=0&to=1",
        "tile/0/000.p/1",
    ] {
        let answer = fetch(server.addr, &format!("/feeds/{forked}/{path}"));
        assert_eq!(answer.status, 410, "{path}: {}", answer.text());
        assert!(answer.error().contains("is forked"), "{path}");
    }
    rt.block_on(server.shutdown());
}
