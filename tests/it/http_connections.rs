//! The HTTP server's connection handling over real TCP on 127.0.0.1: the header deadline,
//! idle keep-alive connections, the connection cap and graceful shutdown.

use std::time::{Duration, Instant};

use crate::common;
use crate::common::serve::{read_to_close, start, start_over};
use kappalog::node::Node;
use kappalog::server::ServeLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const DEADLINE: Duration = Duration::from_secs(10);

/// Sends one `GET /health` on `stream` and reads its response head.
async fn health(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    read_head(stream).await
}

/// Reads one (small, whole) response head; panics if none arrives before the deadline.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let until = Instant::now() + DEADLINE;
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut buf = [0u8; 4096];
        let left = until
            .checked_duration_since(Instant::now())
            .expect("no response before the deadline");
        let n = tokio::time::timeout(left, stream.read(&mut buf))
            .await
            .expect("no response before the deadline")
            .unwrap();
        assert!(n > 0, "connection closed before a response");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn quick_headers() -> ServeLimits {
    ServeLimits {
        header_read_timeout: Duration::from_millis(300),
        ..ServeLimits::default()
    }
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_head_is_closed() {
    let server = start(quick_headers()).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /hea").await.unwrap();
    let got = read_to_close(&mut slow, DEADLINE).await;
    assert!(got.is_some(), "still open long after the header deadline");
    // The server still answers others.
    let mut fresh = TcpStream::connect(server.addr).await.unwrap();
    assert!(health(&mut fresh).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = start(quick_headers()).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    assert!(health(&mut client).await.starts_with("HTTP/1.1 200"));
    // A second request in time is served on the same connection...
    assert!(health(&mut client).await.starts_with("HTTP/1.1 200"));
    // ...and then, sending nothing, the connection is closed.
    let got = read_to_close(&mut client, DEADLINE).await;
    assert!(
        got.is_some(),
        "idle connection still open long after the deadline"
    );
}

/// At the cap, a newcomer is served by closing the connection that has been quiet longest;
/// the number open never exceeds the cap.
#[tokio::test]
async fn at_the_cap_the_quietest_idle_connection_makes_room() {
    let server = start(ServeLimits {
        max_connections: 2,
        ..ServeLimits::default()
    })
    .await;
    let mut a = TcpStream::connect(server.addr).await.unwrap();
    let mut b = TcpStream::connect(server.addr).await.unwrap();
    assert!(health(&mut a).await.starts_with("HTTP/1.1 200"));
    assert!(health(&mut b).await.starts_with("HTTP/1.1 200"));
    assert_eq!(server.node.metrics().http_connections.get(), 2);
    // A third client is served at once: `a`, idle longest, is closed for it.
    let mut c = TcpStream::connect(server.addr).await.unwrap();
    assert!(health(&mut c).await.starts_with("HTTP/1.1 200"));
    assert!(
        read_to_close(&mut a, DEADLINE).await.is_some(),
        "a was not closed"
    );
    assert!(
        health(&mut b).await.starts_with("HTTP/1.1 200"),
        "b was closed instead"
    );
    assert_eq!(server.node.metrics().http_connections.get(), 2);
}

/// With every slot held by bad clients (idle, a head sent byte by byte, a stalled upload, a
/// reader that stopped reading), a new client is still served: the idle ones go at once,
/// the stalled ones as soon as they have been stalled for a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_client_is_served_while_bad_clients_hold_every_slot() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = Node::open_with_identity(dir.path(), common::identity(21)).unwrap();
    for i in 0..common::entries_beyond_socket_buffers() {
        node.append(i, "x".repeat(4_000)).await.unwrap();
    }
    let server = start_over(
        node,
        dir,
        ServeLimits {
            max_connections: 40,
            ..ServeLimits::default()
        },
    )
    .await;
    let mut bad = Vec::new();
    for i in 0..60 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        match i % 4 {
            0 => {}
            1 => s.write_all(b"GET /hea").await.unwrap(),
            2 => s
                .write_all(b"POST /import HTTP/1.1\r\nHost: t\r\nContent-Length: 99999\r\n\r\na,")
                .await
                .unwrap(),
            _ => s
                .write_all(b"GET /export.csv HTTP/1.1\r\nHost: t\r\n\r\n")
                .await
                .unwrap(),
        }
        bad.push(s);
    }
    for _ in 0..5 {
        let mut fresh = TcpStream::connect(server.addr).await.unwrap();
        assert!(health(&mut fresh).await.starts_with("HTTP/1.1 200"));
    }
    assert!(server.node.metrics().http_connections.get() <= 40);
    drop(bad);
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_returns() {
    let mut server = start(ServeLimits::default()).await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    assert!(health(&mut idle).await.starts_with("HTTP/1.1 200"));
    server.stop_serving();
    server.stopped().await;
    // (The listener was dropped when `serve_http` returned; connecting again is not tested,
    // as another test may already have been given the freed port.)
    assert!(read_to_close(&mut idle, DEADLINE).await.is_some());
}

fn quick_streams() -> ServeLimits {
    ServeLimits {
        stream_idle_timeout: Duration::from_millis(500),
        ..ServeLimits::default()
    }
}

/// An upload that stops sending gets 408 with a JSON reason after the stream idle timeout,
/// imports nothing, and takes no blocking thread meanwhile: 100 of them at once leave the
/// node serving and appending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_get_408_import_nothing_and_do_not_stall_the_node() {
    let server = start(quick_streams()).await;
    let head = b"POST /import HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\nauthor,seq";
    let mut stalled = Vec::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(head).await.unwrap();
        stalled.push(s);
    }
    // Meanwhile the node answers and appends.
    let mut fresh = TcpStream::connect(server.addr).await.unwrap();
    assert!(health(&mut fresh).await.starts_with("HTTP/1.1 200"));
    server.node.append(1, String::new()).await.unwrap();
    // Each stalled upload is answered 408 with a reason.
    for s in &mut stalled {
        let response = read_head(s).await;
        assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    }
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    first.write_all(head).await.unwrap();
    let body = read_to_close_or_body(&mut first).await;
    assert!(body.contains("sent no bytes for"), "{body}");
    // Nothing of them was imported: only the one append.
    let summary: serde_json::Value = serde_json::from_str(&server.node.summary_json()).unwrap();
    assert_eq!(summary["count"], 1);
    server.shutdown().await;
}

/// Reads a whole response (head and a short body) until the body is complete or closed.
async fn read_to_close_or_body(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let until = Instant::now() + DEADLINE;
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|n| body.len() >= n) {
                return text;
            }
        }
        let mut buf = [0u8; 4096];
        let left = until
            .checked_duration_since(Instant::now())
            .expect("no whole response before the deadline");
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return text,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("no whole response before the deadline"),
        }
    }
}

/// A client that asks for the export and reads none of it is disconnected after the stream
/// idle timeout; the node keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_nobody_reads_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = Node::open_with_identity(dir.path(), common::identity(21)).unwrap();
    // More than the socket buffers on both sides hold.
    for i in 0..common::entries_beyond_socket_buffers() {
        node.append(i, "x".repeat(4_000)).await.unwrap();
    }
    let server = start_over(node, dir, quick_streams()).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut reader = socket.connect(server.addr).await.unwrap();
    reader
        .write_all(b"GET /export.csv HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 16];
    reader.read_exact(&mut first).await.unwrap();
    // Stop reading: the server's writes stall, and the connection is closed.
    let open = server.node.metrics().http_connections.clone();
    let until = Instant::now() + DEADLINE;
    while open.get() > 0 {
        assert!(
            Instant::now() < until,
            "the stalled export was never cut off"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut fresh = TcpStream::connect(server.addr).await.unwrap();
    assert!(health(&mut fresh).await.starts_with("HTTP/1.1 200"));
    drop(reader);
    server.shutdown().await;
}

/// HTTP abuse does not stop replication: with 100 stalled uploads and 20 stalled export
/// readers open on a node's HTTP port, a peer's new entries are still stored (the uploads
/// and exports hold no blocking thread, which sync's checks and store reads need). How fast
/// is a benchmark's question; this waits with the usual test deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_http_clients_do_not_delay_replication() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = Node::open_with_identity(dir.path(), common::identity(21)).unwrap();
    for i in 0..common::entries_beyond_socket_buffers() {
        node.append(i, "x".repeat(4_000)).await.unwrap();
    }
    let server = start_over(node.clone(), dir, ServeLimits::default()).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sync = kappalog::sync::start(
        &node,
        common::net::fast_config(),
        Some(listener),
        Vec::new(),
    )
    .unwrap();
    let mut bad = Vec::new();
    for i in 0..120 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let request: &[u8] = if i % 6 == 0 {
            b"GET /export.csv HTTP/1.1\r\nHost: t\r\n\r\n"
        } else {
            b"POST /import HTTP/1.1\r\nHost: t\r\nContent-Length: 99999\r\n\r\nauthor,"
        };
        s.write_all(request).await.unwrap();
        bad.push(s);
    }
    // A peer dials in and appends; its entries arrive while the abuse goes on.
    let peer_dir = tempfile::tempdir().unwrap();
    let peer = common::net::start(peer_dir.path(), 22, &[sync.local_addr().unwrap()]).await;
    common::net::append_n(&peer.node, 200, 0).await;
    let author = peer.node.author();
    common::net::wait_for("the peer's entries to be stored", || {
        node.reader().head(&author).map(|h| h.seq) == Some(200)
    })
    .await;
    drop(bad);
    peer.stop().await;
    sync.shutdown().await;
    server.shutdown().await;
}
