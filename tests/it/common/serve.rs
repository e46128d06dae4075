//! The real HTTP server (`serve_http`) over a node on 127.0.0.1:0, and a raw-bytes client
//! for tests that must send what no well-behaved client would.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kappalog::http::{router, HttpConfig};
use kappalog::node::Node;
use kappalog::server::{serve_http, ServeLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::{identity, HttpResponse, DEADLINE};

pub struct Server {
    pub addr: SocketAddr,
    pub node: Node,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// Serves a fresh node (identity 21) with `limits`.
pub async fn start(limits: ServeLimits) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = Node::open_with_identity(dir.path(), identity(21)).unwrap();
    start_over(node, dir, limits).await
}

/// Serves `node`'s API with `http` on 127.0.0.1 (port 0) until the server is shut down.
pub async fn serve(node: Node, dir: tempfile::TempDir, http: HttpConfig) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let api = router(node.clone(), http);
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

/// Serves `node`, whose data lives in `dir`, with `limits`.
pub async fn start_over(node: Node, dir: tempfile::TempDir, limits: ServeLimits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let config = HttpConfig {
        stream_idle_timeout: limits.stream_idle_timeout,
        ..HttpConfig::default()
    };
    let api = router(node.clone(), config);
    let open = node.metrics().http_connections.clone();
    let task = tokio::spawn(serve_http(listener, api, limits, open, async {
        let _ = stopped.await;
    }));
    Server::from_parts(addr, node, stop, task, dir)
}

impl Server {
    /// A server started by the caller: `task` runs `serve_http` until `stop` is sent.
    pub fn from_parts(
        addr: SocketAddr,
        node: Node,
        stop: oneshot::Sender<()>,
        task: tokio::task::JoinHandle<()>,
        dir: tempfile::TempDir,
    ) -> Server {
        Server {
            addr,
            node,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    /// Stops serving and waits (bounded) for `serve_http` to return.
    pub async fn shutdown(mut self) {
        self.stop_serving();
        tokio::time::timeout(DEADLINE, &mut self.task)
            .await
            .expect("serving did not end after the stop signal")
            .unwrap();
    }

    /// Sends the stop signal without waiting.
    pub fn stop_serving(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits (bounded) for `serve_http` to return after [`Server::stop_serving`].
    pub async fn stopped(&mut self) {
        tokio::time::timeout(DEADLINE, &mut self.task)
            .await
            .expect("serving did not end after the stop signal")
            .unwrap();
    }

    /// The node's entry count.
    pub fn count(&self) -> u64 {
        let summary: serde_json::Value = serde_json::from_str(&self.node.summary_json()).unwrap();
        summary["count"].as_u64().unwrap()
    }
}

/// Reads until the peer closes (or resets) the connection; `None` if it is still open at
/// the deadline.
pub async fn read_to_close(stream: &mut TcpStream, deadline: Duration) -> Option<Vec<u8>> {
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

/// Sends `bytes` on a new connection and returns every response until the server closes
/// it; panics if it is still open at the deadline.
pub async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<HttpResponse> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let raw = read_to_close(&mut stream, DEADLINE)
        .await
        .expect("the server did not close the connection");
    responses(&raw)
}

/// Splits raw bytes into responses; each must carry a `content-length` (all of this
/// server's small responses do).
pub fn responses(mut raw: &[u8]) -> Vec<HttpResponse> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no whole head in {:?}", String::from_utf8_lossy(raw)));
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {head:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let mut response = HttpResponse {
            status,
            headers,
            body: String::new(),
        };
        let length: usize = response
            .header("content-length")
            .unwrap_or_else(|| panic!("no content-length in {head:?}"))
            .parse()
            .unwrap();
        let body = raw
            .get(split + 4..split + 4 + length)
            .unwrap_or_else(|| panic!("body cut short after {head:?}"));
        response.body = String::from_utf8(body.to_vec()).expect("utf-8 body");
        out.push(response);
        raw = &raw[split + 4 + length..];
    }
    out
}
