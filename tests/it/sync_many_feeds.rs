//! Two nodes that already hold the same 100,000 feeds reconnect cheaply: reconciliation
//! settles them in one round trip, so the whole session, handshake included, carries at most
//! 64 KiB (counted by a relay on the path), and the peer shows connected with lag 0.
//! (The time it takes is a benchmark figure: `cargo bench --bench sync`.)

use crate::common;
use crate::common::net::{fast_config, start_with, wait_for};
use crate::common::relay::Relay;
use kappalog::entry::{Entry, UnsignedEntry};
use kappalog::identity::Identity;
use kappalog::node::Node;
use rayon::prelude::*;

const FEEDS: u32 = 100_000;
const MAX_RECONNECT_BYTES: u64 = 64 * 1024;

/// One one-entry feed per author, each author from its own fixed seed.
fn many_feeds(n: u32) -> Vec<Entry> {
    (0..n)
        .into_par_iter()
        .map(|i| {
            let mut seed = [0x5a; 32];
            seed[..4].copy_from_slice(&i.to_be_bytes());
            let id = Identity::from_seed(seed);
            UnsignedEntry {
                author: id.author(),
                seq: 1,
                timestamp: 1_700_000_000_000,
                prev: None,
                value: i64::from(i),
                data: String::new(),
            }
            .sign(&id)
            .0
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_sync_nodes_with_100_000_feeds_reconnect_within_64_kib() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    {
        let (node, _) = Node::open_with_identity(da.path(), common::identity(1)).unwrap();
        let report = node.offer_entries(many_feeds(FEEDS)).await.unwrap();
        assert_eq!(report.added, u64::from(FEEDS));
        node.shutdown().await.unwrap();
    }
    // The same log under another key: the two nodes hold the same feeds.
    common::net::copy_dir(da.path(), db.path());
    let (na, _) = Node::open_with_identity(da.path(), common::identity(1)).unwrap();
    let (nb, _) = Node::open_with_identity(db.path(), common::identity(2)).unwrap();
    let a = start_with(na, &[], fast_config()).await;
    let relay = Relay::start(a.addr).await;
    let b = start_with(nb, &[relay.addr], fast_config()).await;
    let key = relay.addr.to_string();
    wait_for("b connected to a with lag 0 after its exchange", || {
        b.sync
            .peers(&b.node)
            .iter()
            .any(|p| p.addr == key && p.connected && p.lag == Some(0) && p.last_sync.is_some())
    })
    .await;
    let bytes = relay.total();
    println!("in-sync reconnect at {FEEDS} feeds: {bytes} bytes over the wire, both directions");
    assert!(
        bytes <= MAX_RECONNECT_BYTES,
        "{bytes} bytes for an in-sync reconnect"
    );
    assert_eq!(a.digest(), b.digest());
    a.stop().await;
    b.stop().await;
}
