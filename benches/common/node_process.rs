//! The node under test as the real `kappalog` binary in its own process: started, its bound
//! addresses read from what it prints, its memory and CPU read from `/proc`, its HTTP API
//! called, and stopped. A benchmark that plays hostile peers in its own process then measures
//! the node alone.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a node may take to print its addresses, an import to finish, a stop to exit.
const START_DEADLINE: Duration = Duration::from_secs(30);
const IMPORT_DEADLINE: Duration = Duration::from_secs(300);
const STOP_DEADLINE: Duration = Duration::from_secs(15);
/// One HTTP request to the node, connect to last byte.
const HTTP_DEADLINE: Duration = Duration::from_secs(10);
/// Clock ticks per second of `/proc/PID/stat` times (`getconf CLK_TCK`, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// The binary, with none of the environment that would change how it runs: the node logs at
/// its default level (`RUST_LOG` unset) and takes its addresses from the flags only.
fn kappalog(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kappalog"));
    for var in [
        "RUST_LOG",
        "KAPPALOG_HTTP",
        "KAPPALOG_TOKEN",
        "KAPPALOG_DATA_DIR",
        "KAPPALOG_KEY",
        "KAPPALOG_LISTEN",
        "KAPPALOG_PEERS",
        "KAPPALOG_NETWORK",
    ] {
        cmd.env_remove(var);
    }
    cmd.arg("--data-dir")
        .arg(dir)
        .arg("--key")
        .arg(dir.join("node.key"));
    cmd
}

/// Imports `csv` into the data directory `dir` with `kappalog import` (before the node runs).
pub fn import(dir: &Path, csv: &Path) {
    let mut child = kappalog(dir)
        .arg("import")
        .arg(csv)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kappalog import");
    let status = wait_bounded(&mut child, IMPORT_DEADLINE).expect("import within its deadline");
    assert!(status.success(), "kappalog import failed: {status}");
}

fn wait_bounded(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().ok().flatten() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A running `kappalog run`; killed if dropped before [`NodeProcess::stop`].
pub struct NodeProcess {
    child: Child,
    pub http: SocketAddr,
    pub sync: Option<SocketAddr>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl NodeProcess {
    /// `kappalog run --data-dir DIR --key DIR/node.key --http 127.0.0.1:0 ARGS...`, its
    /// stdout and stderr written to `DIR.stdout` and `DIR.stderr`. Returns once it printed
    /// its addresses.
    pub fn start(dir: &Path, args: &[String]) -> NodeProcess {
        let stdout = dir.with_extension("stdout");
        let stderr = dir.with_extension("stderr");
        let child = kappalog(dir)
            .args(["run", "--http", "127.0.0.1:0"])
            .args(args)
            .stdout(std::fs::File::create(&stdout).expect("create the stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("create the stderr file"))
            .spawn()
            .expect("spawn kappalog run");
        let mut node = NodeProcess {
            child,
            http: SocketAddr::from(([0, 0, 0, 0], 0)),
            sync: None,
            stdout,
            stderr,
        };
        let line = node.wait_for_addresses();
        node.http = addr_after(&line, "http://").expect("the node prints http://ADDR");
        node.sync = addr_after(&line, " sync ");
        node
    }

    /// The line `kappalog node AUTHOR http://ADDR [sync ADDR] dashboard URL`.
    fn wait_for_addresses(&mut self) -> String {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let printed = std::fs::read_to_string(&self.stdout).unwrap_or_default();
            if let Some(line) = printed.lines().find(|l| l.starts_with("kappalog node ")) {
                return line.to_owned();
            }
            if let Some(status) = self.child.try_wait().ok().flatten() {
                let log = std::fs::read_to_string(&self.stderr).unwrap_or_default();
                panic!("the node exited ({status}) before printing its addresses: {log}");
            }
            assert!(
                Instant::now() < deadline,
                "the node printed no addresses within {START_DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now (`VmRSS`), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        status_kib(self.pid(), "VmRSS:") * 1024
    }

    /// The most resident memory the process has had (`VmHWM`), in bytes.
    pub fn hwm_bytes(&self) -> u64 {
        status_kib(self.pid(), "VmHWM:") * 1024
    }

    /// CPU time the process has used (user + system, every thread), in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
        (ticks(11).unwrap_or(0.0) + ticks(12).unwrap_or(0.0)) / TICKS_PER_SEC
    }

    /// Bytes the node has written to stdout and stderr (its log) so far.
    pub fn log_bytes(&self) -> u64 {
        let len = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        len(&self.stdout) + len(&self.stderr)
    }

    /// Lines the node has written to stdout and stderr so far.
    pub fn log_lines(&self) -> u64 {
        let lines = |p: &Path| {
            std::fs::read(p).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count() as u64)
        };
        lines(&self.stdout) + lines(&self.stderr)
    }

    /// `POST /add` with body `5`: the status code (0 when the request itself failed).
    pub async fn add(&self) -> u16 {
        http(self.http, "POST", "/add", "5")
            .await
            .map_or(0, |(status, _)| status)
    }

    /// `feed_count` of `GET /summary`.
    pub async fn feed_count(&self) -> Option<u64> {
        let (status, body) = http(self.http, "GET", "/summary", "").await.ok()?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        (status == 200).then(|| json["feed_count"].as_u64())?
    }

    /// Connected sync sessions in `GET /peers` (`None` if the request failed).
    pub async fn connected_peers(&self) -> Option<u64> {
        let (status, body) = http(self.http, "GET", "/peers", "").await.ok()?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        let peers = json["peers"].as_array()?;
        (status == 200).then(|| peers.iter().filter(|p| p["connected"] == true).count() as u64)
    }

    /// SIGTERM, then a kill if it has not exited within [`STOP_DEADLINE`].
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        if wait_bounded(&mut self.child, STOP_DEADLINE).is_none() {
            eprintln!("the node did not exit within {STOP_DEADLINE:?} of SIGTERM: killed");
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The socket address right after `marker` in `line`.
fn addr_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once(marker)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// A `kB` field of `/proc/PID/status` (0 once the process is gone).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Samples a process's `VmRSS` every `every` on a thread of its own, keeping the peak.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl RssSampler {
    pub fn start(pid: u32, every: Duration) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !stopped.load(Ordering::Relaxed) {
                peak = peak.max(status_kib(pid, "VmRSS:") * 1024);
                std::thread::sleep(every);
            }
            peak
        });
        RssSampler { stop, thread }
    }

    /// Stops sampling; the peak `VmRSS` seen, in bytes.
    pub fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

/// One HTTP/1.1 request with `Connection: close` (bounded by [`HTTP_DEADLINE`]): the status
/// and the body (the node answers these routes with `Content-Length` bodies).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        let text = String::from_utf8_lossy(&raw);
        let status = text
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other("no HTTP status line"))?;
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        Ok((status, body.to_owned()))
    };
    tokio::time::timeout(HTTP_DEADLINE, exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "HTTP request"))?
}
