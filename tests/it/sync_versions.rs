//! Protocol versions meeting (docs/PROTOCOL.md sections 2 and 4): a v3 node and a v2 node
//! (this build held to 2 with `max_protocol_version`, the hidden `--sync-protocol-max 2`,
//! which runs v2's code path) sync entries both ways whichever dials, in a v2 session; a v4
//! node and a v3 node (held to 3) likewise in a v3 session; the responder reads the dialer's
//! opening before it answers, with the same version if it speaks it; other versions get
//! `Bye(VersionMismatch)`.

use std::net::SocketAddr;

use crate::common;
use crate::common::net::{append_n, fast_config, start_with, wait_for, TestNode};
use crate::common::plain::read_frame;
use kappalog::node::Node;
use kappalog::sync::message::{Bye, ByeReason, Message};
use kappalog::sync::opening::opening_frame_of;
use kappalog::sync::{PeerInfo, SyncConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn node(dir: &std::path::Path, seed: u8, peers: &[SocketAddr], max: u16) -> TestNode {
    let (node, _) = Node::open_with_identity(dir, common::identity(seed)).unwrap();
    let config = SyncConfig {
        max_protocol_version: max,
        ..fast_config()
    };
    start_with(node, peers, config).await
}

/// The record of the connected peer whose key is `peer`'s.
fn record_of(n: &TestNode, peer: &TestNode) -> Option<PeerInfo> {
    let author = peer.node.author();
    n.sync
        .peers(&n.node)
        .into_iter()
        .find(|p| p.connected && p.author == Some(author))
}

/// Starts a listener of version `listener_max` and a dialer of `dialer_max`, appends on
/// both, and waits until each holds both feeds; returns the session's version as each side
/// recorded it, the dialer's last error and the listener's refusals.
async fn sync_pair(
    listener_max: u16,
    dialer_max: u16,
) -> (u16, u16, Option<String>, Vec<(&'static str, u64)>) {
    let (dl, dd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let l = node(dl.path(), 1, &[], listener_max).await;
    let d = node(dd.path(), 2, &[l.addr], dialer_max).await;
    append_n(&l.node, 3, 0).await;
    append_n(&d.node, 4, 100).await;
    wait_for("both feeds on both nodes", || {
        l.count() == 7 && d.count() == 7 && l.digest() == d.digest()
    })
    .await;
    // A live push in the running session, both ways.
    append_n(&l.node, 1, 10).await;
    append_n(&d.node, 1, 110).await;
    wait_for("the live pushes", || l.count() == 9 && d.count() == 9).await;
    let (mut on_l, mut on_d) = (None, None);
    wait_for("both sides to record the session", || {
        on_l = record_of(&l, &d);
        on_d = record_of(&d, &l);
        on_l.is_some() && on_d.is_some()
    })
    .await;
    let (on_l, on_d) = (on_l.unwrap(), on_d.unwrap());
    let refused = l.sync.refusals().0.into_iter().collect();
    l.stop().await;
    d.stop().await;
    (
        on_l.protocol.unwrap(),
        on_d.protocol.unwrap(),
        on_d.last_error,
        refused,
    )
}

/// A v3 dialer reads the v2 node's opening, redials at once with 2, and syncs: no failed
/// dial is left behind (the refusal it read is not an error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v3_node_dialing_a_v2_node_syncs_without_checkpoints() {
    let (on_listener, on_dialer, error, refused) = sync_pair(2, 3).await;
    assert_eq!((on_listener, on_dialer), (2, 2));
    assert_eq!(error, None);
    // The v2 node refused the first, v3 opening, as every v2 node does: once.
    assert_eq!(refused, [("unsupported_version", 1)]);
}

/// A v2 dialer's opening is answered with a v2 opening by a v3 node: a v2 session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_node_dialing_a_v3_node_syncs_without_checkpoints() {
    assert_eq!(sync_pair(3, 2).await, (2, 2, None, vec![]));
}

/// Two nodes held to v2 run today's v2 path; two held to v3 a v3 session; two v4 nodes a
/// v4 session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_version_with_itself_keeps_its_version() {
    assert_eq!(sync_pair(2, 2).await, (2, 2, None, vec![]));
    assert_eq!(sync_pair(3, 3).await, (3, 3, None, vec![]));
    assert_eq!(sync_pair(4, 4).await, (4, 4, None, vec![]));
}

/// A v4 dialer reads the v3 node's answer (its own v3 opening and the refusal), redials at
/// once with 3, and syncs: no failed dial is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v4_node_dialing_a_v3_node_syncs_without_copy_searches() {
    let (on_listener, on_dialer, error, refused) = sync_pair(3, 4).await;
    assert_eq!((on_listener, on_dialer), (3, 3));
    assert_eq!(error, None);
    assert_eq!(refused, [("unsupported_version", 1)]);
}

/// A v3 dialer's opening is answered with a v3 opening by a v4 node: a v3 session. A v2
/// dialer's with a v2 one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_nodes_dialing_a_v4_node_sync_at_their_version() {
    assert_eq!(sync_pair(4, 3).await, (3, 3, None, vec![]));
    assert_eq!(sync_pair(4, 2).await, (2, 2, None, vec![]));
}

/// Sends `opening` to `addr` and reads what the node answers in plaintext: its first frames,
/// until it closed or `enough` frames arrived.
async fn answer_to(addr: SocketAddr, opening: &[u8], enough: usize) -> Vec<Message> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(opening).await.unwrap();
    let mut buf = Vec::new();
    let mut got = Vec::new();
    tokio::time::timeout(common::DEADLINE, async {
        while got.len() < enough {
            match read_frame(&mut s, &mut buf).await {
                Ok(Some(m)) => got.push(m),
                Ok(None) | Err(_) => break,
            }
        }
    })
    .await
    .expect("the node answered before the deadline");
    got
}

fn hello_of(version: u16) -> Message {
    let mut frame = opening_frame_of(version);
    kappalog::sync::frame::decode_frame(&mut frame)
        .unwrap()
        .unwrap()
}

fn version_mismatch() -> Message {
    Message::Bye(Bye {
        reason: ByeReason::VersionMismatch,
    })
}

/// The responder reads first: a v2 opening gets a v2 one back (a node writing first would
/// have sent 3), a v3 one a v3 one, and 1 or 4 our own opening and `Bye(VersionMismatch)`.
/// A node held to v2 answers as every v2 node: its v2 opening, and the refusal of 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responder_answers_the_dialers_version_if_it_speaks_it() {
    let (d3, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let v3 = node(d3.path(), 1, &[], 3).await;
    let v2 = node(d2.path(), 2, &[], 2).await;
    assert_eq!(
        answer_to(v3.addr, &opening_frame_of(2), 1).await,
        [hello_of(2)]
    );
    assert_eq!(
        answer_to(v3.addr, &opening_frame_of(3), 1).await,
        [hello_of(3)]
    );
    for refused in [1, 4] {
        assert_eq!(
            answer_to(v3.addr, &opening_frame_of(refused), 3).await,
            [hello_of(3), version_mismatch()],
            "version {refused}"
        );
    }
    assert_eq!(
        answer_to(v2.addr, &opening_frame_of(3), 3).await,
        [hello_of(2), version_mismatch()]
    );
    assert_eq!(
        answer_to(v2.addr, &opening_frame_of(2), 1).await,
        [hello_of(2)]
    );
    v3.stop().await;
    v2.stop().await;
}

/// A v4 node answers 2, 3 and 4 with the same version, and 1 or 5 with its v4 opening and
/// `Bye(VersionMismatch)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v4_responder_answers_2_3_and_4() {
    let d4 = tempfile::tempdir().unwrap();
    let v4 = node(d4.path(), 1, &[], 4).await;
    for spoken in [2, 3, 4] {
        assert_eq!(
            answer_to(v4.addr, &opening_frame_of(spoken), 1).await,
            [hello_of(spoken)]
        );
    }
    for refused in [1, 5] {
        assert_eq!(
            answer_to(v4.addr, &opening_frame_of(refused), 3).await,
            [hello_of(4), version_mismatch()],
            "version {refused}"
        );
    }
    v4.stop().await;
}
