//! The v2 transport seen from the path and from outside the network: a relay between two
//! nodes reads no entry data; a byte it flips ends the session with nothing invalid stored,
//! and sync resumes once it stops; nodes with different network secrets never sync, the
//! same secret does; a v1 peer, or one of any other version, is refused with a clear reason.

use std::sync::atomic::Ordering;

use crate::common;
use crate::common::net::{fast_config, start_with, wait_for, TestNode};
use crate::common::plain::read_frame;
use crate::common::relay::Relay;
use kappalog::node::Node;
use kappalog::sync::frame::encode_frame;
use kappalog::sync::message::{Bye, ByeReason, Hello, Message, Nonce, PROTOCOL_VERSION};
use kappalog::sync::transport::NetworkKey;
use kappalog::sync::SyncConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn node(
    dir: &std::path::Path,
    seed: u8,
    peers: &[std::net::SocketAddr],
    network: &str,
) -> TestNode {
    let (node, _) = Node::open_with_identity(dir, common::identity(seed)).unwrap();
    let config = SyncConfig {
        network: NetworkKey::from_secret(network),
        ..fast_config()
    };
    start_with(node, peers, config).await
}

fn error_of(node: &TestNode, addr: &str) -> Option<String> {
    node.sync
        .peers(&node.node)
        .into_iter()
        .find(|p| p.addr == addr)
        .and_then(|p| p.last_error)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_on_the_path_sees_no_entry_data() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(da.path(), 1, &[], "n").await;
    let relay = Relay::start(a.addr).await;
    let b = node(db.path(), 2, &[relay.addr], "n").await;
    let marker = "a distinctive marker 7f3e9b that must never cross in plaintext";
    let from_a = a.node.append(11, marker.into()).await.unwrap();
    let from_b = common::net::append_n(&b.node, 1, 5);
    from_b.await;
    wait_for("the entry to arrive through the relay", || {
        b.node.reader().get_by_hash(&from_a.hash).unwrap().is_some() && a.count() == 2
    })
    .await;
    // The data arrived at b, intact, and the relay carried the session...
    let (entry, _) = b.node.reader().get_by_hash(&from_a.hash).unwrap().unwrap();
    assert_eq!(entry.data, marker);
    assert!(relay.total() > 1_000, "{} bytes", relay.total());
    // ...but never the data, the authors or the entry hash in the clear.
    assert!(!relay.carried(marker.as_bytes()));
    assert!(!relay.carried(&marker.as_bytes()[..16]));
    assert!(!relay.carried(a.node.author().as_bytes()));
    assert!(!relay.carried(b.node.author().as_bytes()));
    assert!(!relay.carried(from_a.hash.as_bytes()));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_ends_the_session_and_sync_resumes_when_the_path_heals() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(da.path(), 1, &[], "n").await;
    let relay = Relay::start(a.addr).await;
    let b = node(db.path(), 2, &[relay.addr], "n").await;
    let key = relay.addr.to_string();
    common::net::append_n(&a.node, 3, 0).await;
    wait_for("the first entries to arrive", || b.count() == 3).await;

    // The relay starts flipping one bit per chunk from a to b; a keeps appending.
    relay.seen.flip.store(true, Ordering::SeqCst);
    for i in 0..20 {
        a.node
            .append(100 + i, "sent while tampered".into())
            .await
            .unwrap();
    }
    wait_for("b to drop the tampered session", || {
        error_of(&b, &key).is_some_and(|e| e.contains("decrypt"))
    })
    .await;
    let error = error_of(&b, &key).unwrap();
    assert!(error.contains("damaged or tampered"), "{error}");
    assert!(relay.seen.flipped.load(Ordering::SeqCst) > 0);
    // Whatever b stored is a prefix of a's feed: nothing from a damaged record.
    let head = b.node.reader().head(&a.node.author()).unwrap();
    let theirs = a
        .node
        .reader()
        .get(&a.node.author(), head.seq)
        .unwrap()
        .unwrap();
    assert_eq!(theirs.1, head.hash);

    // The path heals: b redials and catches up.
    relay.seen.flip.store(false, Ordering::SeqCst);
    b.sync.sync_now().await;
    wait_for("b to catch up after the path healed", || {
        b.count() == 23 && b.digest() == a.digest()
    })
    .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_network_secrets_never_sync_the_same_secret_does() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = node(dirs[0].path(), 1, &[], "alpha").await;
    a.node.append(1, "alpha only".into()).await.unwrap();
    let outsider = node(dirs[1].path(), 2, &[a.addr], "beta").await;
    let member = node(dirs[2].path(), 3, &[a.addr], "alpha").await;
    let key = a.addr.to_string();
    wait_for("the outsider to be refused", || {
        error_of(&outsider, &key).is_some_and(|e| e.contains("different network"))
    })
    .await;
    wait_for("a to count the refusal", || {
        a.sync
            .refusals()
            .0
            .get("different_network")
            .is_some_and(|n| *n >= 1)
    })
    .await;
    wait_for("the member to sync", || member.count() == 1).await;
    // The outsider's sessions never got past the handshake: nothing could arrive.
    assert_eq!(outsider.count(), 0);
    assert!(outsider
        .sync
        .peers(&outsider.node)
        .iter()
        .all(|p| !p.connected));
    for n in [a, outsider, member] {
        n.stop().await;
    }
}

/// Opens a plaintext connection to `n` with a `Hello` of `version`, reads what the node
/// answers in v1 framing until it closes, and checks it refused with its own opening and a
/// plaintext `Bye(VersionMismatch)`, recorded and counted.
async fn refused_for_version(n: &TestNode, version: u16, opening_bytes: usize) {
    let mut s = TcpStream::connect(n.addr).await.unwrap();
    let local = s.local_addr().unwrap().to_string();
    let hello = Message::Hello(Hello {
        version,
        author: common::identity(9).author(),
        nonce: Nonce([3; 32]),
    });
    let opening = encode_frame(&hello).unwrap();
    assert_eq!(opening.len(), opening_bytes);
    s.write_all(&opening).await.unwrap();
    let mut buf = Vec::new();
    let mut got = Vec::new();
    tokio::time::timeout(common::DEADLINE, async {
        while let Ok(Some(m)) = read_frame(&mut s, &mut buf).await {
            got.push(m);
        }
    })
    .await
    .unwrap();
    assert!(
        matches!(got.first(), Some(Message::Hello(h)) if h.version == PROTOCOL_VERSION),
        "{got:?}"
    );
    assert_eq!(
        got.get(1),
        Some(&Message::Bye(Bye {
            reason: ByeReason::VersionMismatch
        })),
        "{got:?}"
    );
    let said = format!("unsupported protocol version {version}");
    wait_for("the refusal to be recorded", || {
        error_of(n, &local).is_some_and(|e| e.contains(&said))
    })
    .await;
    assert_eq!(n.sync.refusals().0.get("unsupported_version"), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_peer_is_refused_with_a_version_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path(), 1, &[], "n").await;
    // A v1 node opens with its Hello (version 1, author, nonce) in plaintext, and reads, in
    // its own framing, our opening (version 4, which it refuses itself) and our Bye.
    refused_for_version(&n, 1, 72).await;
    n.stop().await;
}

/// Versions of 251 and above take 3 varint bytes, so their opening is 74 bytes, longer than
/// ours: it is still a `Hello`, answered with `Bye(VersionMismatch)` in plaintext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_of_a_version_above_250_is_refused_with_a_version_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path(), 1, &[], "n").await;
    refused_for_version(&n, 300, 74).await;
    n.stop().await;
}
