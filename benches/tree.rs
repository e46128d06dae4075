//! Tree cache benchmark (issue 22): the cache's bytes on disk per entry, the follower's
//! cost to build it from a log, the node's open time with a complete cache against without
//! the tree, and inclusion proofs per second in a big feed. Prints figures, asserts
//! nothing. `cargo bench --bench tree`.
//!
//! `KAPPALOG_BENCH_TREE_ENTRIES` sets the own feed's length (default 1,000,000); the
//! second log is 1,000 feeds of 100 entries. Target: at most 64 bytes an entry on disk.

use std::path::Path;
use std::time::{Duration, Instant};

use kappalog::identity::Identity;
use kappalog::node::Node;
use kappalog::tree::{self, Trees};

mod common;
use common::{cpu_seconds, env_usize, median};

const WAIT: Duration = Duration::from_secs(3600);

/// The tree cache's files' bytes (the database and its WAL).
fn tree_bytes(dir: &Path) -> u64 {
    ["tree.sqlite", "tree.sqlite-wal"]
        .iter()
        .filter_map(|name| std::fs::metadata(dir.join(name)).ok())
        .map(|m| m.len())
        .sum()
}

/// Opens the node of `dir`, starts its tree, waits until every feed is covered; the
/// seconds from open to covered, and the CPU seconds spent after the open.
fn build(rt: &tokio::runtime::Runtime, dir: &Path, identity: Identity) -> (f64, f64, Node, Trees) {
    let start = Instant::now();
    let (node, _) = Node::open_with_identity(dir, identity).unwrap();
    let cpu = cpu_seconds();
    let trees = rt.block_on(async { tree::start(&node) });
    rt.block_on(async {
        for feed in node.reader().feeds() {
            assert!(trees.wait_for_size(&feed.author, feed.length, WAIT).await);
        }
    });
    (
        start.elapsed().as_secs_f64(),
        cpu_seconds() - cpu,
        node,
        trees,
    )
}

fn main() {
    let entries = env_usize("KAPPALOG_BENCH_TREE_ENTRIES", 1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();

    // One own feed of `entries`.
    let big = tmp.path().join("big");
    std::fs::create_dir_all(&big).unwrap();
    common::build_store_with_feeds(&big, entries, 1);
    let own = || Identity::from_seed([2; 32]);
    let (secs, cpu, node, trees) = build(&rt, &big, own());
    println!(
        "build from scratch, {entries} entries of one feed: {secs:.2} s wall, {:.2} µs CPU an entry (open excluded)",
        cpu * 1e6 / entries as f64
    );
    let author = node.author();
    assert_eq!(trees.size(&author), entries as u64);
    // Inclusion proofs at random seqs, one thread.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let calls = 200_000u64;
    let start = Instant::now();
    for _ in 0..calls {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let index = x % entries as u64;
        let proof = trees
            .inclusion_proof(&author, index, entries as u64)
            .unwrap();
        std::hint::black_box(proof);
    }
    let rate = calls as f64 / start.elapsed().as_secs_f64();
    println!("inclusion proofs, random seqs of {entries}, one thread: {rate:.0} calls/s");
    rt.block_on(node.shutdown()).unwrap();
    drop(trees);
    let bytes = tree_bytes(&big);
    println!(
        "on disk, one feed of {entries}: {bytes} bytes, {:.1} bytes an entry",
        bytes as f64 / entries as f64
    );

    // Open with a complete cache against without the tree, in turn.
    let (mut with_tree, mut without) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let start = Instant::now();
        let (node, _) = Node::open_with_identity(&big, own()).unwrap();
        let trees = rt.block_on(async { tree::start(&node) });
        rt.block_on(async {
            assert!(trees.wait_for_size(&author, entries as u64, WAIT).await);
        });
        with_tree.push(start.elapsed().as_secs_f64());
        rt.block_on(node.shutdown()).unwrap();
        let start = Instant::now();
        let (node, _) = Node::open_with_identity(&big, own()).unwrap();
        without.push(start.elapsed().as_secs_f64());
        rt.block_on(node.shutdown()).unwrap();
    }
    println!(
        "open of {entries} entries: {:.3} s with the tree (to covered), {:.3} s without (medians of 3)",
        median(with_tree),
        median(without)
    );

    // 1,000 feeds of 100.
    let many = tmp.path().join("many");
    std::fs::create_dir_all(&many).unwrap();
    common::build_store_of_authors(&many, 1000, 100);
    let (secs, _, node, trees) = build(&rt, &many, Identity::from_seed([1; 32]));
    rt.block_on(node.shutdown()).unwrap();
    drop(trees);
    let bytes = tree_bytes(&many);
    println!(
        "1,000 feeds of 100: built in {secs:.2} s, {bytes} bytes, {:.1} bytes an entry",
        bytes as f64 / 100_000.0
    );
}
