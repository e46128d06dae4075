//! The verifiable-feed routes refuse what they must, through a real node over TCP: every
//! 400/404/409/410/503 with its message, for malformed and out-of-range authors, seqs,
//! sizes and tile paths, and none of them writes anything.

use kappalog::entry::Entry;
use kappalog::hash::Hash as EntryHash;
use kappalog::node::Node;
use kappalog::tlog::bundle::verify_entry_proof;
use tokio::runtime::Runtime;

use crate::common::{identity, last_entry_end, DEADLINE};
use crate::feeds_tlog::{fetch, fixture, serve, OWN_ENTRIES};

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
    assert_eq!((verified.entry.seq, verified.tree_size()), (2, 3));
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
