//! Live tail benchmark: `KAPPALOG_BENCH_TAIL_SUBSCRIBERS` (default 1,000) concurrent
//! `GET /tail` subscribers (NDJSON, `from=now`) on a node served in-process on 127.0.0.1:0,
//! while `POST /add` runs with 64 keep-alive connections in a closed loop. Prints the append
//! rate, the latency from commit (the store telling the node, [`NodeEvent::Committed`]) to
//! receipt of the entry's line by a subscriber (p50, p99, over a sample of subscribers that
//! parse their lines; the others only count them), how many subscribers the node ended as
//! slow consumers, the bytes the node pushed to the subscribers, and CPU and peak memory of
//! the node and of the clients apart. Asserts nothing. `KAPPALOG_BENCH_SECS` sets each run's
//! length (default 5 s); three runs, medians. `cargo bench --bench tail`.
//!
//! The clients (subscribers and appenders) run in a child process, this same executable
//! started with [`CLIENT_ADDR_ENV`] set: in one process they could not be told apart from
//! the node in CPU or memory, and a client that costs more than the node it measures (the
//! first version scanned every received byte for patterns) hides the node's figures. The
//! child reports over its stdout, one line per fact (see [`clients`]); times cross the
//! process boundary as wall-clock nanoseconds, which both processes read from one clock.

use std::collections::HashMap;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kappalog::identity::Identity;
use kappalog::node::{Node, NodeEvent};
use kappalog::server::ServeLimits;

mod common;
use common::load::serve_with;
use common::{cpu_seconds, env_usize, report, rss_bytes, syscalls};

const ADD_CONNECTIONS: usize = 64;
const RUNS: usize = 3;
/// Subscribers that parse every line for its seq and time of receipt.
const SAMPLED_SUBSCRIBERS: usize = 8;
/// Set (to the node's address) in the child process that runs the clients.
const CLIENT_ADDR_ENV: &str = "KAPPALOG_BENCH_TAIL_CLIENTS_OF";

/// Wall-clock nanoseconds: comparable between the node's process and the clients'.
fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// The peak memory (`VmHWM`) of the process reading it, in bytes.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The client side, run in the child process.
mod clients {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::common::load::read_response;
    use super::common::{cpu_seconds, env_usize};
    use super::{peak_rss_bytes, unix_nanos, ADD_CONNECTIONS, SAMPLED_SUBSCRIBERS};

    /// What the subscribers saw.
    #[derive(Default)]
    struct Seen {
        /// Entry lines received (heartbeats too; none come in a run this short).
        lines: AtomicU64,
        /// Body bytes received.
        bytes: AtomicU64,
        /// Streams that ended with the node's `end` line.
        ended: AtomicU64,
        /// Streams whose response head has arrived.
        opened: AtomicU64,
        /// (seq, received at) of the sampled subscribers.
        samples: Mutex<Vec<(u64, u64)>>,
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

    /// NDJSON lines in a piece of a chunked body: every line ends in `\n`; the chunked
    /// encoding's own lines end in `\r\n`, and JSON never holds a raw `\r`. Two byte counts
    /// the compiler vectorises, so the client keeps up with what it measures.
    fn lines_in(data: &[u8]) -> u64 {
        let newlines = data.iter().filter(|&&b| b == b'\n').count();
        let returns = data.iter().filter(|&&b| b == b'\r').count();
        newlines.saturating_sub(returns) as u64
    }

    /// One subscriber: opens the stream, then reads until the node closes it (the process
    /// exits at the end of the run).
    async fn subscribe(addr: SocketAddr, sampled: bool, seen: Arc<Seen>) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                b"GET /tail?from=now HTTP/1.1\r\nHost: bench\r\nAccept: application/x-ndjson\r\n\r\n",
            )
            .await
            .unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut head: Vec<u8> = Vec::new();
        let mut head_done = false;
        let mut partial: Vec<u8> = Vec::new();
        // The last bytes received: where the node's `end` line would be.
        let mut last: Vec<u8> = Vec::new();
        loop {
            let n = match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let received = unix_nanos();
            let mut data = &buf[..n];
            if !head_done {
                head.extend_from_slice(data);
                let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                assert!(head.starts_with(b"HTTP/1.1 200"), "tail refused");
                seen.opened.fetch_add(1, Ordering::Relaxed);
                head_done = true;
                // What followed the head in this read is body.
                data = &buf[n - (head.len() - end - 4)..n];
            }
            seen.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
            last.extend_from_slice(data);
            let keep = last.len().saturating_sub(256);
            last.drain(..keep);
            if !sampled {
                seen.lines.fetch_add(lines_in(data), Ordering::Relaxed);
                continue;
            }
            partial.extend_from_slice(data);
            let mut samples = Vec::new();
            let mut from = 0;
            while let Some(at) = partial[from..].iter().position(|&b| b == b'\n') {
                if let Some(seq) = seq_of(&partial[from..from + at]) {
                    samples.push((seq, received));
                }
                from += at + 1;
            }
            partial.drain(..from);
            seen.lines
                .fetch_add(samples.len() as u64, Ordering::Relaxed);
            seen.samples.lock().unwrap().extend(samples);
        }
        if last.windows(7).any(|w| w == b"{\"end\":") {
            seen.ended.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
        let since = Instant::now();
        while !done() {
            if since.elapsed() > limit {
                eprintln!("clients: gave up waiting for {what}");
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs the clients against `addr` and prints, one per line: `start` (appending
    /// begins), `stop APPENDED SECONDS` (appending ended), then `delivered LINES`, `bytes
    /// BYTES` (received by the subscribers while appending), `ended N`, `cpu SECONDS` (the
    /// clients' CPU while appending), `peak_rss BYTES`, a `sample SEQ NANOS` line per
    /// sampled receipt, and `done`.
    pub fn main(addr: &str) {
        let addr: SocketAddr = addr.parse().expect("the node's address");
        let subscribers = env_usize("KAPPALOG_BENCH_TAIL_SUBSCRIBERS", 1000);
        let secs = env_usize("KAPPALOG_BENCH_SECS", 5) as f64;
        let readers = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let seen = Arc::new(Seen::default());
        for i in 0..subscribers {
            readers.spawn(subscribe(addr, i < SAMPLED_SUBSCRIBERS, seen.clone()));
        }
        wait_for("every stream to open", Duration::from_secs(60), || {
            seen.opened.load(Ordering::Relaxed) >= subscribers as u64
        });
        // The appenders get a runtime of their own: behind 1,000 readers on one worker they
        // would measure the readers, not the node.
        let adders = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        // One commit every open stream must deliver (a stream resolves `now` before it
        // answers, so it gets this entry whether it has subscribed yet or not).
        adders.block_on(async {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"POST /add HTTP/1.1\r\nHost: bench\r\nContent-Length: 1\r\n\r\n0")
                .await
                .unwrap();
            read_response(&mut s, &mut Vec::new()).await;
        });
        wait_for("the first entry", Duration::from_secs(30), || {
            seen.lines.load(Ordering::Relaxed) >= subscribers as u64
        });
        let (lines_before, bytes_before) = (
            seen.lines.load(Ordering::Relaxed),
            seen.bytes.load(Ordering::Relaxed),
        );
        println!("start");
        let cpu_before = cpu_seconds();
        let started = Instant::now();
        let deadline = started + Duration::from_secs_f64(secs);
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
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu_before;
        let bytes = seen.bytes.load(Ordering::Relaxed) - bytes_before;
        println!("stop {appended} {elapsed}");
        // Let the subscribers take what is on its way (bounded).
        let want = lines_before + appended * subscribers as u64;
        wait_for("the entries on their way", Duration::from_secs(10), || {
            seen.lines.load(Ordering::Relaxed) + seen.ended.load(Ordering::Relaxed) * appended
                >= want
        });
        println!(
            "delivered {}",
            seen.lines.load(Ordering::Relaxed) - lines_before
        );
        println!("bytes {bytes}");
        println!("ended {}", seen.ended.load(Ordering::Relaxed));
        println!("cpu {cpu}");
        println!("peak_rss {}", peak_rss_bytes());
        for (seq, at) in seen.samples.lock().unwrap().iter() {
            println!("sample {seq} {at}");
        }
        println!("done");
        // The streams are still open: leaving the process closes them.
        std::process::exit(0);
    }
}

struct Run {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    ended: u64,
    batch_entries: f64,
    delivered_share: f64,
    pushed_mb_s: f64,
    node_cpu_us: f64,
    /// Write system calls of the node per append, its log's included.
    node_writes: f64,
    clients_cpu_us: f64,
    node_rss_mb: f64,
    clients_rss_mb: f64,
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
    // When each own entry was committed, by seq; and how many batches were committed.
    let commits: Arc<Mutex<HashMap<u64, u64>>> = Arc::default();
    let batches = Arc::new(AtomicU64::new(0));
    {
        let (commits, batches) = (commits.clone(), batches.clone());
        let mut events = node.subscribe();
        server.spawn(async move {
            loop {
                match events.recv().await {
                    Ok(NodeEvent::Committed(batch)) => {
                        let now = unix_nanos();
                        batches.fetch_add(1, Ordering::Relaxed);
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
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CLIENT_ADDR_ENV, addr.to_string())
        .env("KAPPALOG_BENCH_TAIL_SUBSCRIBERS", subscribers.to_string())
        .env("KAPPALOG_BENCH_SECS", secs.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    let (mut node_cpu_before, mut node_cpu) = (0.0, 0.0);
    let (mut batches_before, mut batches_during) = (0, 0);
    let (mut writes_before, mut node_writes) = (0, 0);
    let (mut appended, mut elapsed, mut delivered, mut bytes, mut ended) = (0, 1.0, 0, 0, 0);
    let (mut clients_cpu, mut clients_rss) = (0.0, 0);
    let mut samples: Vec<(u64, u64)> = Vec::new();
    for line in out.lines() {
        let line = line.unwrap();
        let mut words = line.split_whitespace();
        let (what, a, b) = (words.next(), words.next(), words.next());
        let num = |w: Option<&str>| w.and_then(|w| w.parse::<f64>().ok()).unwrap_or(0.0);
        match what {
            Some("start") => {
                node_cpu_before = cpu_seconds();
                writes_before = syscalls().1;
                batches_before = batches.load(Ordering::Relaxed);
            }
            Some("stop") => {
                node_cpu = cpu_seconds() - node_cpu_before;
                node_writes = syscalls().1 - writes_before;
                batches_during = batches.load(Ordering::Relaxed) - batches_before;
                (appended, elapsed) = (num(a) as u64, num(b));
            }
            Some("delivered") => delivered = num(a) as u64,
            Some("bytes") => bytes = num(a) as u64,
            Some("ended") => ended = num(a) as u64,
            Some("cpu") => clients_cpu = num(a),
            Some("peak_rss") => clients_rss = num(a) as u64,
            Some("sample") => samples.push((num(a) as u64, num(b) as u64)),
            _ => {}
        }
    }
    child.wait().unwrap();
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let commits = commits.lock().unwrap();
    let mut latencies: Vec<f64> = samples
        .iter()
        .filter_map(|(seq, got)| {
            let committed = commits.get(seq)?;
            Some(got.saturating_sub(*committed) as f64 / 1e6)
        })
        .collect();
    latencies.sort_by(|a, b| a.total_cmp(b));
    drop(server);
    node.shutdown_blocking().unwrap();
    let per_append = |cpu: f64| cpu * 1e6 / (appended.max(1) as f64);
    Run {
        rate: appended as f64 / elapsed,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        ended,
        batch_entries: appended as f64 / batches_during.max(1) as f64,
        delivered_share: delivered as f64 / (appended as f64 * subscribers as f64).max(1.0),
        pushed_mb_s: bytes as f64 / elapsed / 1e6,
        node_cpu_us: per_append(node_cpu),
        node_writes: node_writes as f64 / appended.max(1) as f64,
        clients_cpu_us: per_append(clients_cpu),
        node_rss_mb: peak_rss.load(Ordering::Relaxed) as f64 / (1 << 20) as f64,
        clients_rss_mb: clients_rss as f64 / (1 << 20) as f64,
    }
}

fn main() {
    if let Ok(addr) = std::env::var(CLIENT_ADDR_ENV) {
        return clients::main(&addr);
    }
    let subscribers = env_usize("KAPPALOG_BENCH_TAIL_SUBSCRIBERS", 1000);
    let secs = env_usize("KAPPALOG_BENCH_SECS", 5) as f64;
    println!(
        "kappalog tail benchmark: {subscribers} GET /tail subscribers (NDJSON) while POST /add runs on {ADD_CONNECTIONS} connections, {secs} s runs"
    );
    let runs: Vec<Run> = (0..RUNS).map(|_| run(subscribers, secs)).collect();
    let figures: [common::Figure<Run>; 12] = [
        (
            "POST /add (durable) with the subscribers, requests/s",
            "req/s",
            |r| r.rate,
        ),
        ("commit to receipt by a subscriber, p50", "ms", |r| r.p50_ms),
        ("commit to receipt by a subscriber, p99", "ms", |r| r.p99_ms),
        ("subscribers ended by the node (slow consumer)", "", |r| {
            r.ended as f64
        }),
        ("entries per committed batch while appending", "", |r| {
            r.batch_entries
        }),
        ("share of (entries x subscribers) delivered", "", |r| {
            r.delivered_share
        }),
        (
            "bytes the subscribers received while appending",
            "MB/s",
            |r| r.pushed_mb_s,
        ),
        ("node CPU per append (all its threads)", "us", |r| {
            r.node_cpu_us
        }),
        (
            "node write system calls per append (socket writes, the log's)",
            "",
            |r| r.node_writes,
        ),
        (
            "clients' CPU per append (subscribers and appenders)",
            "us",
            |r| r.clients_cpu_us,
        ),
        ("peak RSS of the node", "MiB", |r| r.node_rss_mb),
        ("peak RSS of the clients' process", "MiB", |r| {
            r.clients_rss_mb
        }),
    ];
    for (name, unit, figure) in figures {
        report(name, unit, runs.iter().map(figure).collect());
    }
}
