//! Hostile peers: garbage, an oversize length prefix, a valid handshake followed by an
//! invalid entry, and a peer that stalls mid-frame. Each is disconnected with its reason
//! recorded, nothing of it is stored, and the node keeps serving HTTP and honest peers.
//! Also: batches checked against the append in flight, a batch with a gap (refused whole), a
//! batch continuing another session's append in flight (not a gap), a peer that stops
//! reading, and whole frames before a bad one in the same burst (stored, then the session
//! ends).

use std::net::SocketAddr;
use std::time::Duration;

use crate::common;
use crate::common::held_io::node_with_held_syncs;
use crate::common::net::{fast_config, start, start_with, wait_for, TestNode};
use crate::common::peer::RawPeer;
use crate::common::plain::read_frame;
use axum::body::Body;
use axum::http::Request;
use kappalog::entry::{Entry, UnsignedEntry};
use kappalog::hash::Hash;
use kappalog::http::{router, HttpConfig};
use kappalog::node::{Node, EVENT_CHANNEL_CAPACITY};
use kappalog::sync::message::{
    Bye, ByeReason, EncodedEntry, Entries, FeedHave, Message, Want, MAX_FRAME_BYTES,
};
use kappalog::sync::transport::opening_frame;
use kappalog::sync::SyncConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tower::ServiceExt;

/// Reads plaintext frames until the node closes the connection (bounded).
async fn read_plain_until_closed(stream: &mut TcpStream) -> Vec<Message> {
    let mut buf = Vec::new();
    let mut got = Vec::new();
    let closed = tokio::time::timeout(common::DEADLINE, async {
        loop {
            match read_frame(stream, &mut buf).await {
                Ok(Some(m)) => got.push(m),
                Ok(None) | Err(_) => return,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the node did not close the connection");
    got
}

fn said_bye(frames: &[Message], reason: ByeReason) -> bool {
    frames.contains(&Message::Bye(Bye { reason }))
}

async fn last_error_of(node: &TestNode, local: SocketAddr) -> String {
    let key = local.to_string();
    let mut error = String::new();
    wait_for("the peer record to show an error", || {
        let peers = node.sync.peers(&node.node);
        match peers.iter().find(|p| p.addr == key) {
            Some(p) if !p.connected && p.last_error.is_some() => {
                error = p.last_error.clone().unwrap();
                true
            }
            _ => false,
        }
    })
    .await;
    error
}

/// Sends `entries` as `Entries` frames of `per_frame`, back to back.
async fn send_in_frames(s: &mut RawPeer, entries: &[Entry], per_frame: usize) {
    for chunk in entries.chunks(per_frame) {
        let frame = Message::Entries(Entries {
            entries: chunk.iter().map(EncodedEntry::from_entry).collect(),
        });
        s.send(&frame).await;
    }
}

async fn healthy(node: &TestNode) {
    let response = router(node.node.clone(), HttpConfig::default())
        .oneshot(Request::get("/health").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_are_dropped_and_honest_ones_keep_syncing() {
    let (dn, dh) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let n = start(dn.path(), 1, &[]).await;
    let honest = start(dh.path(), 2, &[n.addr]).await;
    wait_for("the honest peer to connect", || {
        n.sync.peers(&n.node).iter().any(|p| p.connected)
    })
    .await;

    // 1. Garbage: an HTTP request is a 1.2 GB length prefix where the opening belongs. The
    // node, which answers an opening only once it read one, reads no further than an
    // opening's size and closes without writing anything.
    let mut s = TcpStream::connect(n.addr).await.unwrap();
    let local = s.local_addr().unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let frames = read_plain_until_closed(&mut s).await;
    assert!(frames.is_empty(), "{frames:?}");
    let error = last_error_of(&n, local).await;
    assert!(
        error.contains("bad opening") && error.contains("exceeds the limit"),
        "{error}"
    );

    // 2. A valid opening, then garbage instead of the Noise handshake: no record decrypts.
    let mut s = TcpStream::connect(n.addr).await.unwrap();
    let local = s.local_addr().unwrap();
    s.write_all(&opening_frame()).await.unwrap();
    let too_big = u32::try_from(MAX_FRAME_BYTES + 1).unwrap();
    s.write_all(&too_big.to_be_bytes()).await.unwrap();
    let _ = s.write_all(&[0u8; 64]).await;
    let error = last_error_of(&n, local).await;
    assert!(error.contains("different network"), "{error}");

    // 3. A valid handshake, then a batch with one good entry and one bad signature.
    let mallory = common::identity(66);
    let mut s = RawPeer::connect_and_have(n.addr, &mallory).await;
    let local = s.local;
    let feed = common::feed(&mallory, 2);
    let mut bad = feed[1].0.clone();
    bad.signature.0[10] ^= 1;
    let batch = Message::Entries(Entries {
        entries: vec![
            EncodedEntry::from_entry(&feed[0].0),
            EncodedEntry::from_entry(&bad),
        ],
    });
    s.send(&batch).await;
    let frames = s.read_until_closed().await;
    assert!(said_bye(&frames, ByeReason::InvalidEntry), "{frames:?}");
    let error = last_error_of(&n, local).await;
    assert!(error.contains("invalid entries batch"), "{error}");
    assert!(
        n.node.reader().head(&mallory.author()).is_none(),
        "nothing of the invalid batch is stored"
    );

    // 4. A peer that stalls in the middle of its opening.
    let mut s = TcpStream::connect(n.addr).await.unwrap();
    let local = s.local_addr().unwrap();
    s.write_all(&opening_frame()[..10]).await.unwrap();
    let error = last_error_of(&n, local).await;
    assert!(error.contains("timed out"), "{error}");
    // The stalled socket is closed by the node: reading gives EOF.
    let mut rest = Vec::new();
    let eof = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(eof.is_ok());

    // The node is healthy and the honest peer still syncs both ways.
    healthy(&n).await;
    let from_n = n.node.append(1, "after the attacks".into()).await.unwrap();
    let from_h = honest.node.append(2, "honest".into()).await.unwrap();
    wait_for("both entries on both nodes", || {
        [&n, &honest].iter().all(|t| {
            let r = t.node.reader();
            r.get_by_hash(&from_n.hash).unwrap().is_some()
                && r.get_by_hash(&from_h.hash).unwrap().is_some()
        })
    })
    .await;
    n.stop().await;
    honest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_beyond_the_cap_get_bye_busy_after_their_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) =
        kappalog::node::Node::open_with_identity(dir.path(), common::identity(1)).unwrap();
    let mut config = common::net::fast_config();
    config.max_connections = 1;
    let n = common::net::start_with(node, &[], config).await;
    // The first stranger holds the only stranger slot.
    let _first = RawPeer::connect(n.addr, &common::identity(40)).await;
    // The second completes its handshake (the node cannot know the key before), then is
    // told the node is busy.
    let mut second = RawPeer::connect(n.addr, &common::identity(41)).await;
    let frames = second.read_until_closed().await;
    assert!(said_bye(&frames, ByeReason::Busy), "{frames:?}");
    assert_eq!(n.sync.refusals().0.get("stranger_slots_full"), Some(&1));
    n.stop().await;
}

/// The node checks each batch while the one before it is still being stored, and the store
/// places it against everything in flight. A long stream of frames from one peer therefore
/// continues cleanly (no batch looks like a gap), and a frame that breaks the chain of the
/// batch in flight is still refused, with nothing of it stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_checked_against_the_append_in_flight() {
    let dn = tempfile::tempdir().unwrap();
    let n = start(dn.path(), 1, &[]).await;
    let alice = common::identity(67);
    let feed = common::entries(&common::feed(&alice, 3_000));

    let mut s = RawPeer::connect_and_have(n.addr, &alice).await;
    let local = s.local.to_string();
    send_in_frames(&mut s, &feed[..2_000], 50).await;
    wait_for("2,000 entries stored", || n.count() == 2_000).await;
    let record = n.sync.peers(&n.node);
    let record = record.iter().find(|p| p.addr == local).unwrap();
    assert!(record.connected, "{record:?}");
    assert_eq!(record.last_error, None);

    // More valid frames, then one whose first entry links to the wrong previous hash.
    send_in_frames(&mut s, &feed[2_000..2_500], 50).await;
    let broken = UnsignedEntry {
        author: alice.author(),
        seq: 2_501,
        timestamp: feed[2_500].timestamp,
        prev: Some(Hash([9; 32])),
        value: 1,
        data: String::new(),
    }
    .sign(&alice)
    .0;
    send_in_frames(&mut s, &[broken], 50).await;
    let frames = s.read_until_closed().await;
    assert!(said_bye(&frames, ByeReason::InvalidEntry), "{frames:?}");
    let head = n.node.reader().head(&alice.author()).unwrap();
    assert!(
        (2_000..=2_500).contains(&head.seq),
        "valid batches before the broken one may be stored, the broken one never: {head:?}"
    );
    assert_eq!(
        n.node
            .reader()
            .get(&alice.author(), head.seq)
            .unwrap()
            .unwrap()
            .1,
        common::feed(&alice, head.seq)[head.seq as usize - 1].1
    );
    healthy(&n).await;
    n.stop().await;
}

/// A batch that skips a position is refused whole: the session ends with
/// `Bye(InvalidEntry)` naming the gap, and nothing of the batch is stored, the entries
/// before the gap included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_leaves_a_gap_is_refused_whole() {
    let dn = tempfile::tempdir().unwrap();
    let n = start(dn.path(), 1, &[]).await;
    let alice = common::identity(68);
    let feed = common::entries(&common::feed(&alice, 4));
    let mut s = RawPeer::connect_and_have(n.addr, &alice).await;
    let local = s.local;
    send_in_frames(
        &mut s,
        &[feed[0].clone(), feed[1].clone(), feed[3].clone()],
        50,
    )
    .await;
    let frames = s.read_until_closed().await;
    assert!(said_bye(&frames, ByeReason::InvalidEntry), "{frames:?}");
    let error = last_error_of(&n, local).await;
    assert!(
        error.contains("entry 2") && error.contains("leaves a gap: the next seq is 3"),
        "{error}"
    );
    assert!(
        n.node.reader().head(&alice.author()).is_none(),
        "nothing of the batch is stored"
    );
    healthy(&n).await;
    n.stop().await;
}

/// Where an entry goes is decided once, by the store, against every entry in flight: a
/// batch continuing a feed whose earlier entries another session's append has in flight
/// (written, its `fdatasync` held here) is the feed's next one, not a gap, though the store
/// holds none of the feed durably yet. The second session's batch is checked while the first
/// one's is held: the node answers a `Want` sent behind the batch only once the batch is
/// checked and offered (a session that placed it against the durable store would have ended
/// instead, with `Bye(InvalidEntry)`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_continuing_another_sessions_append_in_flight_is_not_a_gap() {
    let dn = tempfile::tempdir().unwrap();
    let (node, io) = node_with_held_syncs(dn.path());
    let n = start_with(node, &[], fast_config()).await;
    let alice = common::identity(69);
    let feed = common::entries(&common::feed(&alice, 200));
    // A durable entry for the `Want`, of a feed the second peer says it holds (so nothing
    // else is sent to it).
    let carol = common::feed(&common::identity(72), 1);
    n.node.offer_entries(common::entries(&carol)).await.unwrap();

    io.hold();
    let mut first = RawPeer::connect_and_have(n.addr, &common::identity(70)).await;
    send_in_frames(&mut first, &feed[..100], 100).await;
    let held = io.clone();
    tokio::task::spawn_blocking(move || held.wait_until_held())
        .await
        .unwrap();
    assert!(n.node.reader().head(&alice.author()).is_none());

    let mut second = RawPeer::connect(n.addr, &common::identity(71)).await;
    let carol_have = FeedHave {
        author: carol[0].0.author,
        length: 1,
        head: carol[0].1,
    };
    second.reconcile(vec![carol_have]).await;
    send_in_frames(&mut second, &feed[100..], 100).await;
    second
        .send(&Message::Want(Want {
            author: carol[0].0.author,
            seq: 1,
        }))
        .await;
    let answer = tokio::time::timeout(common::DEADLINE, second.reader.next())
        .await
        .expect("an answer within the deadline")
        .expect("the session is still open");
    assert!(
        matches!(&answer, Message::Entries(e) if e.entries == [EncodedEntry::from_entry(&carol[0].0)]),
        "{answer:?}"
    );

    io.release();
    wait_for("both sessions' entries stored", || n.count() == 201).await;
    for peer in [first.local, second.local] {
        let records = n.sync.peers(&n.node);
        let record = records.iter().find(|p| p.addr == peer.to_string()).unwrap();
        assert!(record.connected, "{record:?}");
        assert_eq!(record.last_error, None);
    }
    healthy(&n).await;
    n.stop().await;
}

/// A peer that stops reading while the node commits more than it buffers per session: the
/// session neither buffers without bound nor drops the peer (its write timeout is long here);
/// it falls back to resending from the store, counts the resync in `GET /peers`, and once the
/// peer reads again it gets every entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_falls_behind_resyncs_from_the_store() {
    let dn = tempfile::tempdir().unwrap();
    let (node, _) = Node::open_with_identity(dn.path(), common::identity(1)).unwrap();
    let config = SyncConfig {
        frame_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(60),
        ..fast_config()
    };
    let n = start_with(node, &[], config).await;
    let author = n.node.author();

    // A small receive buffer so the node's pushes back up quickly.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let s = socket.connect(n.addr).await.unwrap();
    let mut s = RawPeer::over(s, &common::identity(69), &Default::default()).await;
    s.reconcile(vec![]).await;
    let local = s.local.to_string();
    let record = || n.sync.peers(&n.node).into_iter().find(|p| p.addr == local);
    wait_for("the session to go live", || {
        record().is_some_and(|p| p.last_sync.is_some())
    })
    .await;

    // One commit per append, 4,000 bytes each, while the peer reads nothing: the socket
    // buffers (at most tcp_wmem's maximum on the node's side) fill first, then more than
    // EVENT_CHANNEL_CAPACITY commits pile up behind the blocked session. Commits never wait
    // for it. The session only notices that it lagged when it next takes an event, after
    // the peer reads again.
    let wmem_max: u64 = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|t| t.split_whitespace().last()?.parse().ok())
        .unwrap_or(4 << 20);
    let appended = wmem_max / 4_000 + EVENT_CHANNEL_CAPACITY as u64 + 1_000;
    let data = "x".repeat(4_000);
    for _ in 0..appended {
        n.node.append(1, data.clone()).await.unwrap();
    }

    // Reading again, the peer gets every entry of the feed.
    let mut seqs = std::collections::BTreeSet::new();
    tokio::time::timeout(common::DEADLINE, async {
        while (seqs.len() as u64) < appended {
            if let Message::Entries(batch) = s.reader.next().await.unwrap() {
                for encoded in batch.entries {
                    let (entry, _) = encoded.decode().unwrap();
                    if entry.author == author {
                        seqs.insert(entry.seq);
                    }
                }
            }
        }
    })
    .await
    .expect("every entry within the deadline");
    assert_eq!(seqs.first(), Some(&1));
    assert_eq!(seqs.last(), Some(&appended));
    wait_for("the resync to be counted", || {
        record().is_some_and(|p| p.resyncs >= 1)
    })
    .await;
    let record = record().unwrap();
    // One lag, one resync: nothing was appended after it, so the session cannot lag again.
    assert_eq!(record.resyncs, 1, "{record:?}");
    assert!(
        record.connected && record.last_error.is_none(),
        "{record:?}"
    );
    healthy(&n).await;
    n.stop().await;
}

/// Reconciliation frames from a hostile peer: a round that does not tile the author space, a
/// claimed feed of length 0, an opening round that answers a round never sent and a frame
/// after the exchange ended each end the session with the reason, and the node keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reconciliation_frames_end_the_session_with_the_reason() {
    use kappalog::sync::message::FeedHave;
    use kappalog::sync::reconcile::{Bound, Range, RangeMode, Reconcile};
    let dn = tempfile::tempdir().unwrap();
    let n = start(dn.path(), 1, &[]).await;
    n.node.append(1, String::new()).await.unwrap();
    let item = |length| FeedHave {
        author: common::identity(70).author(),
        length,
        head: Hash([1; 32]),
    };
    let cases: Vec<(Reconcile, &str)> = vec![
        (
            // Ends before the end of the author space.
            Reconcile {
                ranges: vec![Range {
                    upper: Bound::Author(common::identity(70).author()),
                    mode: RangeMode::Items(vec![]),
                }],
                last: true,
            },
            "ends before the end",
        ),
        (
            Reconcile {
                ranges: vec![Range {
                    upper: Bound::End,
                    mode: RangeMode::Items(vec![item(0)]),
                }],
                last: true,
            },
            "length 0",
        ),
        (
            // Skip answers nothing in an opening round: the node has sent no round yet.
            Reconcile {
                ranges: vec![Range {
                    upper: Bound::End,
                    mode: RangeMode::Skip,
                }],
                last: true,
            },
            "an opening round holds only fingerprints and item lists",
        ),
    ];
    for (seed, (frame, expected)) in (80u8..).zip(cases) {
        let mut mallory = RawPeer::connect(n.addr, &common::identity(seed)).await;
        mallory.send(&Message::Reconcile(frame)).await;
        let frames = mallory.read_until_closed().await;
        assert!(
            said_bye(&frames, ByeReason::ProtocolViolation),
            "{expected}: {frames:?}"
        );
        let error = last_error_of(&n, mallory.local).await;
        assert!(
            error.contains("reconciliation") && error.contains(expected),
            "{error}"
        );
    }
    // A frame after an honest exchange ended.
    let mut late = RawPeer::connect_and_have(n.addr, &common::identity(90)).await;
    let done = Reconcile {
        ranges: vec![Range {
            upper: Bound::End,
            mode: RangeMode::Skip,
        }],
        last: true,
    };
    late.send(&Message::Reconcile(done)).await;
    let frames = late.read_until_closed().await;
    assert!(
        said_bye(&frames, ByeReason::ProtocolViolation),
        "{frames:?}"
    );
    let error = last_error_of(&n, late.local).await;
    assert!(error.contains("after reconciliation ended"), "{error}");
    healthy(&n).await;
    n.stop().await;
}

/// A record too short to hold a tag, sent inside an established channel, ends the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_shorter_than_its_tag_ends_the_session() {
    let dn = tempfile::tempdir().unwrap();
    let n = start(dn.path(), 1, &[]).await;
    // Set up a real channel by hand, then write a raw 3-byte record under it.
    let stream = TcpStream::connect(n.addr).await.unwrap();
    let local = stream.local_addr().unwrap();
    let (read, mut write) = stream.into_split();
    let (_r, _w) = {
        use kappalog::sync::transport::{establish, NetworkKey, Role};
        let channel = establish(read, &mut write, Role::Initiator, &NetworkKey::default())
            .await
            .unwrap();
        (channel.reader, channel.writer)
    };
    write.write_all(&[0, 3, 1, 2, 3]).await.unwrap();
    let error = last_error_of(&n, local).await;
    assert!(error.contains("record of 3 bytes"), "{error}");
    healthy(&n).await;
    n.stop().await;
}

/// Entry frames that arrive in one burst with a bad frame behind them: the receiver merges
/// the frames that have arrived into one check, and a bad one among them must not cost the
/// whole frames before it. Those are checked and stored, as they would be one by one, and
/// then the session ends with the bad frame's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_frames_before_a_bad_one_in_the_same_burst_are_stored() {
    let dn = tempfile::tempdir().unwrap();
    let n = start(dn.path(), 1, &[]).await;
    let mut s = RawPeer::connect_and_have(n.addr, &common::identity(9)).await;
    let feed = common::entries(&common::feed(&common::identity(30), 300));
    let mut burst = Vec::new();
    for chunk in feed.chunks(100) {
        let frame = Message::Entries(Entries {
            entries: chunk.iter().map(EncodedEntry::from_entry).collect(),
        });
        burst.extend(kappalog::sync::frame::encode_frame(&frame).unwrap());
    }
    // A frame of five bytes that are no message.
    burst.extend([0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff]);
    s.send_plain(&burst).await;
    let error = last_error_of(&n, s.local).await;
    assert!(!error.is_empty());
    wait_for("the 300 entries before the bad frame", || n.count() == 300).await;
    healthy(&n).await;
    n.stop().await;
}

/// A `Hello` is unsigned, so anyone answering a configured address can say it is the node
/// itself. That used to stop the dialer for good ("connected to ourselves", and `POST
/// /peers` answered `added: false` with nothing dialed). Now it is a failed handshake: the
/// liar cannot sign as the node, the dialer redials with its backoff, and the link comes
/// back as soon as the address answers honestly; `POST /peers` dials the address now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_with_the_nodes_own_author_does_not_stop_its_dialer() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let v = start(dir.path(), 1, &[addr]).await;
    for _ in 0..3 {
        let frames =
            common::peer::answer_as(&listener, v.node.author(), &common::identity(66)).await;
        assert!(said_bye(&frames, ByeReason::BadAuth), "{frames:?}");
    }
    assert!(v.sync.is_dialing(&addr.to_string()));
    let added = v.sync.add_peer(&v.node, addr.to_string()).unwrap();
    assert!(!added.added && added.redialled, "{added:?}");
    let _honest = RawPeer::accept(&listener, &common::identity(67)).await;
    wait_for("the link to come back", || {
        v.sync
            .peers(&v.node)
            .iter()
            .any(|p| p.addr == addr.to_string() && p.connected)
    })
    .await;
    assert!(v.sync.key_copy_seen().is_none());
    v.stop().await;
}

/// A peer that does sign with the node's own key holds a copy of it: an alarm (the log at
/// `error`, `GET /health` `alarms.key_copy`), and the dialer keeps dialing with its
/// backoff rather than going quiet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_the_nodes_key_is_an_alarm_and_the_dialer_keeps_dialing() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let v = start(dir.path(), 1, &[addr]).await;
    for _ in 0..2 {
        let frames =
            common::peer::answer_as(&listener, v.node.author(), &common::identity(1)).await;
        assert!(said_bye(&frames, ByeReason::SelfConnection), "{frames:?}");
    }
    assert_eq!(v.sync.key_copy_seen().map(|s| s.sessions), Some(2));
    let config = HttpConfig {
        sync: Some(v.sync.clone()),
        ..HttpConfig::default()
    };
    let health = router(v.node.clone(), config)
        .oneshot(Request::get("/health").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let body = axum::body::to_bytes(health.into_body(), 1 << 20)
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["alarms"]["key_copy"]["sessions"], 2, "{json}");
    // Still dialing: the address is answered again.
    let _third = common::peer::answer_as(&listener, v.node.author(), &common::identity(1)).await;
    assert!(v.sync.is_dialing(&addr.to_string()));
    v.stop().await;
}

/// A node given its own address as a peer reaches itself: both ends of that one channel are
/// its own sessions, which proves it, and only then does the dialer stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_dialing_its_own_address_stops_once_it_is_proven() {
    let dir = tempfile::tempdir().unwrap();
    let v = start(dir.path(), 1, &[]).await;
    let own = v.addr.to_string();
    v.sync.add_peer(&v.node, own.clone()).unwrap();
    wait_for(
        "the dialer to stop after the proven self-connection",
        || !v.sync.is_dialing(&own),
    )
    .await;
    let record = v
        .sync
        .peers(&v.node)
        .into_iter()
        .find(|p| p.addr == own)
        .unwrap();
    assert!(
        record
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("reaches this node itself")),
        "{record:?}"
    );
    assert!(v.sync.key_copy_seen().is_none());
    v.stop().await;
}

/// `n` made-up feed states in ascending author order: a claim of any size.
fn claimed_feeds(n: u32, tag: u8) -> Vec<kappalog::sync::message::FeedHave> {
    (0..n)
        .map(|i| {
            let mut author = [tag; 32];
            author[..4].copy_from_slice(&i.to_be_bytes());
            kappalog::sync::message::FeedHave {
                author: kappalog::identity::Author(author),
                length: 1,
                head: Hash([1; 32]),
            }
        })
        .collect()
}

/// Eight strangers at once each claim 1,048,576 feeds. What strangers' claims make the node
/// hold is one node-wide budget (here 100,000 items and ranges): each session past it is
/// closed with `Bye(Busy)`, counted as `reconcile_budget`, whatever the number of
/// sessions. A trusted peer is not charged: it reconciles 200,000 feeds meanwhile. (Each
/// such session used to cost the node ~140 MB: 8 of them 1.2 GB, kept after they closed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_claiming_a_million_feeds_share_one_budget_a_trusted_peer_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let friend = common::identity(7);
    let (node, _) = Node::open_with_identity(dir.path(), common::identity(1)).unwrap();
    let mut config = fast_config();
    config.policy.stranger_reconcile_items = 100_000;
    config.policy.trusted.insert(friend.author());
    let n = start_with(node, &[], config).await;
    let frames = std::sync::Arc::new(common::peer::items_round(
        &claimed_feeds(1 << 20, 0xaa),
        8192,
    ));
    let strangers = (0..8u8).map(|s| {
        let frames = frames.clone();
        async move {
            let from = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 3, 1 + s));
            let mut peer = RawPeer::connect_from(from, n.addr, &common::identity(50 + s)).await;
            for frame in frames.iter() {
                let message = Message::Reconcile(frame.clone());
                if peer.try_send(&message).await.is_err() {
                    break;
                }
            }
            peer.read_until_closed().await
        }
    });
    let trusted = async {
        let mut peer = RawPeer::connect(n.addr, &friend).await;
        peer.reconcile(claimed_feeds(200_000, 0xbb)).await
    };
    let (ends, theirs) = tokio::join!(futures_util::future::join_all(strangers), trusted);
    for frames in &ends {
        assert!(said_bye(frames, ByeReason::Busy), "{frames:?}");
    }
    assert_eq!(n.sync.refusals().0.get("reconcile_budget"), Some(&8));
    assert!(theirs.is_empty(), "the node holds no feeds to state");
    n.stop().await;
}

/// What a stranger can make the node send is charged to its source: a few hundred bytes of
/// claims pull the node's log at the source's rate once its burst is spent (here 50 kB
/// and 50 kB/s), never faster; and everything still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_stranger_pulls_is_held_to_its_sources_send_rate() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = Node::open_with_identity(dir.path(), common::identity(1)).unwrap();
    let mut config = fast_config();
    config.policy.stranger_send_rate = 50_000;
    config.policy.stranger_send_burst = 50_000;
    let n = start_with(node, &[], config).await;
    let entries = 800u64;
    for i in 0..entries {
        let value = i64::try_from(i).unwrap();
        n.node.append(value, "x".repeat(100)).await.unwrap();
    }
    let started = std::time::Instant::now();
    let mut peer = RawPeer::connect(n.addr, &common::identity(60)).await;
    peer.reconcile(vec![]).await;
    let (mut got, mut bytes) = (0u64, 0usize);
    let mut over = Vec::new();
    tokio::time::timeout(common::DEADLINE, async {
        while got < entries {
            if let Message::Entries(batch) = peer.reader.next().await.unwrap() {
                got += batch.entries.len() as u64;
                bytes += batch.entries.iter().map(|e| e.0.len()).sum::<usize>();
                // The burst, the rate since we dialed, and one frame of debt.
                let allowed = 50_000.0 + 50_000.0 * started.elapsed().as_secs_f64() + 40_000.0;
                if bytes as f64 > allowed {
                    over.push((bytes, allowed as usize));
                }
            }
        }
    })
    .await
    .expect("every entry within the deadline");
    assert!(bytes > 150_000, "{bytes} bytes");
    assert!(over.is_empty(), "faster than the source's rate: {over:?}");
    n.stop().await;
}
