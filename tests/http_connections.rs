//! The HTTP server's connection handling over real TCP on 127.0.0.1: the header deadline,
//! idle keep-alive connections, the connection cap and graceful shutdown.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kappalog::http::{router, HttpConfig};
use kappalog::node::Node;
use kappalog::server::{serve_http, ServeLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const DEADLINE: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    node: Node,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn start(limits: ServeLimits) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = Node::open_with_identity(dir.path(), common::identity(21)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let api = router(node.clone(), HttpConfig::default());
    let open = node.metrics().http_connections.clone();
    let task = tokio::spawn(serve_http(listener, api, limits, open, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        node,
        stop: Some(stop),
        task,
        _dir: dir,
    }
}

/// Reads until the peer closes (or resets) the connection; `None` if it is still open at
/// the deadline.
async fn read_to_close(stream: &mut TcpStream, deadline: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let until = Instant::now() + deadline;
    loop {
        let mut buf = [0u8; 4096];
        let left = until.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

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

#[tokio::test]
async fn connections_over_the_cap_wait_for_a_free_slot() {
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
    // The kernel completes the third handshake, but the server does not take the
    // connection while two are open: its request waits.
    let mut c = TcpStream::connect(server.addr).await.unwrap();
    c.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(300), c.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "a third connection was served over the cap of 2"
    );
    // Closing one frees its slot, and the waiting request is answered.
    drop(a);
    assert!(read_head(&mut c).await.starts_with("HTTP/1.1 200"));
    assert_eq!(server.node.metrics().http_connections.get(), 2);
    drop(c);
    let until = Instant::now() + DEADLINE;
    while server.node.metrics().http_connections.get() != 1 {
        assert!(
            Instant::now() < until,
            "closed connections still counted as open"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(health(&mut b).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_returns() {
    let mut server = start(ServeLimits::default()).await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    assert!(health(&mut idle).await.starts_with("HTTP/1.1 200"));
    let _ = server.stop.take().unwrap().send(());
    tokio::time::timeout(DEADLINE, &mut server.task)
        .await
        .expect("serving did not end after the stop signal")
        .unwrap();
    // (The listener was dropped when `serve_http` returned; connecting again is not tested,
    // as another test may already have been given the freed port.)
    assert!(read_to_close(&mut idle, DEADLINE).await.is_some());
}
