//! Live tail benchmark: `KAPPALOG_BENCH_TAIL_SUBSCRIBERS` (default 1,000) concurrent
//! `GET /tail` subscribers (NDJSON, `from=now`) on a node served in-process on 127.0.0.1:0,
//! while `POST /add` runs with 64 keep-alive connections in a closed loop. Prints the append
//! rate, the latency from commit (the store telling the node, [`NodeEvent::Committed`]) to
//! receipt of the entry's line by a subscriber (p50, p99, over a sample of subscribers that
//! parse their lines; the others only count them), how many subscribers the node ended as
//! slow consumers, and the process's RSS (node and clients together: one process).
//! Asserts nothing. `KAPPALOG_BENCH_SECS` sets each run's length (default 5 s); three runs,
//! medians. `cargo bench --bench tail`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kappalog::identity::Identity;
use kappalog::node::{Node, NodeEvent};
use kappalog::server::ServeLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;
use common::load::{read_response, serve_with};
use common::{env_usize, report, rss_bytes};

const ADD_CONNECTIONS: usize = 64;
const RUNS: usize = 3;
/// Subscribers that parse every line for its seq and time of receipt.
const SAMPLED_SUBSCRIBERS: usize = 8;

/// What the subscribers saw.
#[derive(Default)]
struct Seen {
    lines: AtomicU64,
    ended: AtomicU64,
    /// (seq, received) of the sampled subscribers.
    samples: Mutex<Vec<(u64, Instant)>>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// The `"seq":N` of an NDJSON entry line.
fn seq_of(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?;
    let at = text.find("\"seq\":")? + 6;
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// One subscriber: opens the stream, then reads until the run is over or the node ends it.
async fn subscribe(addr: SocketAddr, sampled: bool, seen: Arc<Seen>, done: Arc<AtomicBool>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"GET /tail?from=now HTTP/1.1\r\nHost: bench\r\nAccept: application/x-ndjson\r\n\r\n",
        )
        .await
        .unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    let mut partial: Vec<u8> = Vec::new();
    let mut head_done = false;
    while !done.load(Ordering::Relaxed) {
        let n = match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await
        {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
        };
        let received = Instant::now();
        let mut data = &buf[..n];
        if !head_done {
            partial.extend_from_slice(data);
            let Some(end) = partial.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            assert!(partial.starts_with(b"HTTP/1.1 200"), "tail refused");
            head_done = true;
            partial.drain(..end + 4);
            let rest = std::mem::take(&mut partial);
            count(&rest, sampled, received, &seen, &mut partial);
            continue;
        }
        if data.windows(7).any(|w| w == b"{\"end\":") {
            seen.ended.fetch_add(1, Ordering::Relaxed);
        }
        count(
            std::mem::take(&mut data),
            sampled,
            received,
            &seen,
            &mut partial,
        );
    }
}

/// Counts the lines in `data` (chunk-size lines of the chunked encoding aside, every line
/// of the body is one entry or a heartbeat; counting entries by `"cursor"` keeps it exact).
fn count(data: &[u8], sampled: bool, received: Instant, seen: &Seen, partial: &mut Vec<u8>) {
    if !sampled {
        let n = data.windows(9).filter(|w| w == b"{\"cursor\"").count();
        seen.lines.fetch_add(n as u64, Ordering::Relaxed);
        return;
    }
    partial.extend_from_slice(data);
    let mut samples = Vec::new();
    while let Some(at) = partial.iter().position(|&b| b == b'\n') {
        if let Some(seq) = seq_of(&partial[..at]) {
            samples.push((seq, received));
        }
        partial.drain(..=at);
    }
    seen.lines
        .fetch_add(samples.len() as u64, Ordering::Relaxed);
    seen.samples.lock().unwrap().extend(samples);
}

struct Run {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    ended: u64,
    rss_mb: f64,
    delivered_share: f64,
}

fn run(subscribers: usize, secs: f64) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = Node::open_with_identity(dir.path(), Identity::from_seed([1; 32])).unwrap();
    let limits = ServeLimits {
        // Every subscriber and appender holds a connection: above the default cap of 512.
        max_connections: subscribers + ADD_CONNECTIONS + 64,
        ..ServeLimits::default()
    };
    let (addr, server) = serve_with(node.clone(), limits);
    // When each own entry was committed, by seq.
    let commits: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    {
        let (commits, mut events) = (commits.clone(), node.subscribe());
        server.spawn(async move {
            loop {
                match events.recv().await {
                    Ok(NodeEvent::Committed(batch)) => {
                        let now = Instant::now();
                        let mut commits = commits.lock().unwrap();
                        for (entry, _) in batch.iter() {
                            commits.insert(entry.seq, now);
                        }
                    }
                    Ok(NodeEvent::Proof(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                }
            }
        });
    }
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let seen = Arc::new(Seen::default());
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for i in 0..subscribers {
        let (seen, done) = (seen.clone(), done.clone());
        readers.push(clients.spawn(subscribe(addr, i < SAMPLED_SUBSCRIBERS, seen, done)));
    }
    // Every stream is open before the load starts.
    let opened = Instant::now();
    while node.metrics().http_connections.get() < i64::try_from(subscribers).unwrap() {
        assert!(
            opened.elapsed() < Duration::from_secs(60),
            "subscribers did not connect"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Opened streams subscribe once their (empty) replay is done: give them a first commit.
    clients.block_on(async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /add HTTP/1.1\r\nHost: bench\r\nContent-Length: 1\r\n\r\n0")
            .await
            .unwrap();
        read_response(&mut s, &mut Vec::new()).await;
    });
    let first = Instant::now();
    while seen.lines.load(Ordering::Relaxed) < subscribers as u64 {
        if first.elapsed() > Duration::from_secs(30) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let peak_rss = Arc::new(AtomicU64::new(rss_bytes()));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak_rss.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let lines_before = seen.lines.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    // The appenders get a runtime of their own: behind 1,000 readers on one worker they would
    // measure the readers, not the node.
    let adders = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let appended: u64 = adders.block_on(async move {
        let mut tasks = Vec::new();
        for _ in 0..ADD_CONNECTIONS {
            tasks.push(tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.unwrap();
                s.set_nodelay(true).unwrap();
                let mut buf = Vec::with_capacity(4096);
                let mut n = 0u64;
                while Instant::now() < deadline {
                    s.write_all(
                        b"POST /add HTTP/1.1\r\nHost: bench\r\nContent-Length: 2\r\n\r\n42",
                    )
                    .await
                    .unwrap();
                    assert_eq!(read_response(&mut s, &mut buf).await, 201);
                    n += 1;
                }
                n
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        total
    });
    let rate = appended as f64 / started.elapsed().as_secs_f64();
    // Let the subscribers take what is on its way (bounded).
    let want = lines_before + appended * subscribers as u64;
    let settle = Instant::now();
    while seen.lines.load(Ordering::Relaxed) + seen.ended.load(Ordering::Relaxed) * appended < want
        && settle.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    done.store(true, Ordering::Relaxed);
    clients.block_on(async {
        for r in readers {
            let _ = r.await;
        }
    });
    let delivered = seen.lines.load(Ordering::Relaxed) - lines_before;
    let commits = commits.lock().unwrap();
    let mut latencies: Vec<f64> = seen
        .samples
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(seq, got)| {
            let committed = commits.get(seq)?;
            Some(got.saturating_duration_since(*committed).as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(|a, b| a.total_cmp(b));
    drop(clients);
    drop(server);
    node.shutdown_blocking().unwrap();
    Run {
        rate,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        ended: seen.ended.load(Ordering::Relaxed),
        rss_mb: peak_rss.load(Ordering::Relaxed) as f64 / (1 << 20) as f64,
        delivered_share: delivered as f64 / (appended as f64 * subscribers as f64).max(1.0),
    }
}

fn main() {
    let subscribers = env_usize("KAPPALOG_BENCH_TAIL_SUBSCRIBERS", 1000);
    let secs = env_usize("KAPPALOG_BENCH_SECS", 5) as f64;
    println!(
        "kappalog tail benchmark: {subscribers} GET /tail subscribers (NDJSON) while POST /add runs on {ADD_CONNECTIONS} connections, {secs} s runs"
    );
    let runs: Vec<Run> = (0..RUNS).map(|_| run(subscribers, secs)).collect();
    let pick = |f: fn(&Run) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    report(
        "POST /add (durable) with the subscribers, requests/s",
        "req/s",
        pick(|r| r.rate),
    );
    report(
        "commit to receipt by a subscriber, p50",
        "ms",
        pick(|r| r.p50_ms),
    );
    report(
        "commit to receipt by a subscriber, p99",
        "ms",
        pick(|r| r.p99_ms),
    );
    report(
        "subscribers ended by the node (slow consumer)",
        "",
        pick(|r| r.ended as f64),
    );
    report(
        "share of (entries x subscribers) delivered",
        "",
        pick(|r| r.delivered_share),
    );
    report(
        "peak RSS of the process (node and clients)",
        "MiB",
        pick(|r| r.rss_mb),
    );
}
