//! An in-process HTTP/1.1 keep-alive load generator, and serving a node the way
//! `kappalog run` does, for the HTTP benchmarks.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kappalog::http::{router, HttpConfig};
use kappalog::node::Node;
use kappalog::server::{serve_http, ServeLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Keep-alive connections of the generator.
pub const CONNECTIONS: usize = 64;

/// Serves `node` on a free loopback port in its own runtime; returns the address.
pub fn serve(node: Node) -> (SocketAddr, tokio::runtime::Runtime) {
    serve_with(node, ServeLimits::default())
}

/// [`serve`] with other connection limits.
pub fn serve_with(node: Node, limits: ServeLimits) -> (SocketAddr, tokio::runtime::Runtime) {
    serve_configured(node, limits, |_| HttpConfig::default())
}

/// [`serve_with`] with the HTTP configuration `config` makes, called on the serving runtime
/// (so it can start what runs beside the node, such as its tree cache follower).
pub fn serve_configured(
    node: Node,
    limits: ServeLimits,
    config: impl FnOnce(&Node) -> HttpConfig,
) -> (SocketAddr, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let open = node.metrics().http_connections.clone();
    let config = {
        let _runtime = runtime.enter();
        config(&node)
    };
    let app = router(node, config);
    // As `kappalog run` serves: its connection handling and limits.
    runtime.spawn(serve_http(
        listener,
        app,
        limits,
        open,
        std::future::pending(),
    ));
    (addr, runtime)
}

/// The `Content-Length` of a response head (0 without one).
pub fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
}

/// Reads one HTTP/1.1 response (Content-Length bodies only, as the node sends for these
/// routes) from `stream`, keeping any extra bytes in `buf`. Returns the status.
pub async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> u16 {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).unwrap();
            let status: u16 = head[9..12].parse().unwrap();
            let total = end + 4 + content_length(head);
            while buf.len() < total {
                let mut chunk = [0u8; 64 * 1024];
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "server closed the connection");
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..total);
            return status;
        }
        let mut chunk = [0u8; 64 * 1024];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `CONNECTIONS` keep-alive connections send requests back to back for `secs`: request
/// number `i` of connection `conn` is what `write_request(conn, i, buf)` writes into `buf`.
/// Returns requests per second and every latency in microseconds.
pub fn load<W>(addr: SocketAddr, write_request: W, expect: u16, secs: f64) -> (f64, Vec<u64>)
where
    W: Fn(usize, u64, &mut Vec<u8>) + Copy + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let start = Instant::now();
        let mut tasks = vec![];
        for conn in 0..CONNECTIONS {
            tasks.push(tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let mut buf = Vec::with_capacity(32 * 1024);
                let mut request = Vec::with_capacity(256);
                let mut latencies = Vec::new();
                let mut i = 0u64;
                while Instant::now() < deadline {
                    request.clear();
                    write_request(conn, i, &mut request);
                    i += 1;
                    let sent = Instant::now();
                    stream.write_all(&request).await.unwrap();
                    let status = read_response(&mut stream, &mut buf).await;
                    assert_eq!(status, expect);
                    latencies.push(u64::try_from(sent.elapsed().as_micros()).unwrap());
                }
                latencies
            }));
        }
        let mut all = vec![];
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let rate = all.len() as f64 / start.elapsed().as_secs_f64();
        (rate, all)
    })
}

/// [`load`] sending the same bytes every time.
pub fn load_fixed(
    addr: SocketAddr,
    request: &'static [u8],
    expect: u16,
    secs: f64,
) -> (f64, Vec<u64>) {
    load(
        addr,
        move |_, _, buf: &mut Vec<u8>| buf.extend_from_slice(request),
        expect,
        secs,
    )
}

/// Requests/s, and latency p50 and p99 in ms, one value per run.
#[derive(Default)]
pub struct Figures {
    pub rates: Vec<f64>,
    pub p50: Vec<f64>,
    pub p99: Vec<f64>,
}

impl Figures {
    pub fn push(&mut self, (rate, mut latencies): (f64, Vec<u64>)) {
        latencies.sort_unstable();
        self.rates.push(rate);
        self.p50.push(percentile(&latencies, 0.50));
        self.p99.push(percentile(&latencies, 0.99));
    }

    /// Prints `{name}, requests/s`, `... latency p50` and `... latency p99` as medians.
    pub fn report(self, name: &str) {
        super::report(&format!("{name}, requests/s"), "req/s", self.rates);
        super::report(&format!("{name}, latency p50"), "ms", self.p50);
        super::report(&format!("{name}, latency p99"), "ms", self.p99);
    }
}

/// The `p` quantile of `sorted` microseconds, in milliseconds.
pub fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}
