//! Fixtures shared by the integration tests: fixed-seed identities, a minimal HTTP/1.1
//! client over std TCP (loopback only), and a handle on the real `kappalog` binary.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kappalog::identity::Identity;

pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn identity(n: u8) -> Identity {
    Identity::from_seed([n; 32])
}

/// A response: status code and body text.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request with `Connection: close`; reads the whole response.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> HttpResponse {
    finish_request(begin_request(addr, method, path, body, headers))
}

/// Sends one HTTP/1.1 request with `Connection: close` and returns the connection without
/// reading the answer (for tests that check what happens before it comes).
pub fn begin_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> TcpStream {
    assert!(addr.ip().is_loopback(), "tests only talk to loopback");
    let mut stream = TcpStream::connect_timeout(&addr, DEADLINE).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    stream
}

/// Reads the whole response of a request sent with [`begin_request`] (bounded by
/// [`DEADLINE`]).
pub fn finish_request(mut stream: TcpStream) -> HttpResponse {
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    parse_response(&raw)
}

/// [`http`], for a server that may die mid-request (a `kill -9` test): `None` unless the
/// whole response came back (its header block and every byte its `Content-Length` names).
pub fn try_http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Option<HttpResponse> {
    assert!(addr.ip().is_loopback(), "tests only talk to loopback");
    let mut stream = TcpStream::connect_timeout(&addr, DEADLINE).ok()?;
    stream.set_read_timeout(Some(DEADLINE)).ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))?
        .trim()
        .parse()
        .ok()?;
    (raw.len() - split - 4 == length).then(|| parse_response(&raw))
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response has a header block");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body: String::from_utf8(body).expect("utf-8 body"),
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16)
                .unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

pub fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    http(addr, "GET", path, b"", &[])
}

pub fn post(addr: SocketAddr, path: &str, body: &str) -> HttpResponse {
    http(addr, "POST", path, body.as_bytes(), &[])
}

/// The real binary.
pub fn kappalog() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kappalog"));
    cmd.env_remove("RUST_LOG");
    for var in [
        "KAPPALOG_HTTP",
        "KAPPALOG_TOKEN",
        "KAPPALOG_DATA_DIR",
        "KAPPALOG_KEY",
        "KAPPALOG_LISTEN",
        "KAPPALOG_PEERS",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// A running `kappalog` process and the lines it printed on stdout.
pub struct Running {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
}

impl Running {
    pub fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kappalog");
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, lines: rx }
    }

    /// Waits (bounded) for a printed line containing `needle`.
    pub fn wait_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => continue,
                Err(e) => panic!("no line containing {needle:?} before the deadline: {e}"),
            }
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "node did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The socket address printed right after `marker` in `line`.
fn addr_after(line: &str, marker: &str) -> SocketAddr {
    let start = line
        .find(marker)
        .unwrap_or_else(|| panic!("{line:?} has no {marker:?}"))
        + marker.len();
    line[start..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .expect("a socket address")
}

/// Extracts the `http://ADDR` a node printed.
pub fn printed_addr(line: &str) -> SocketAddr {
    addr_after(line, "http://")
}

/// Starts `kappalog run` on a free port with the given data dir and key.
pub fn run_node(data_dir: &Path, key: &Path, extra: &[&str]) -> (Running, SocketAddr) {
    let mut cmd = kappalog();
    cmd.arg("--data-dir")
        .arg(data_dir)
        .arg("--key")
        .arg(key)
        .args(["run", "--http", "127.0.0.1:0"])
        .args(extra);
    let running = Running::spawn(cmd);
    let line = running.wait_line("http://");
    let addr = printed_addr(&line);
    (running, addr)
}

/// Extracts the `sync ADDR` a node printed.
pub fn printed_sync_addr(line: &str) -> SocketAddr {
    addr_after(line, " sync ")
}

/// Polls `condition` until it holds or the deadline passes.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A valid feed of `n` entries by `id`, starting at seq 1.
pub fn feed(id: &Identity, n: u64) -> Vec<(kappalog::entry::Entry, kappalog::hash::Hash)> {
    let mut out: Vec<(kappalog::entry::Entry, kappalog::hash::Hash)> = Vec::new();
    for seq in 1..=n {
        let prev = out.last().map(|(_, h)| *h);
        out.push(
            kappalog::entry::UnsignedEntry {
                author: id.author(),
                seq,
                timestamp: 1_700_000_000_000 + seq,
                prev,
                value: i64::try_from(seq).unwrap(),
                data: format!("entry {seq}"),
            }
            .sign(id),
        );
    }
    out
}

pub fn entries(
    feed: &[(kappalog::entry::Entry, kappalog::hash::Hash)],
) -> Vec<kappalog::entry::Entry> {
    feed.iter().map(|(e, _)| e.clone()).collect()
}

/// Every record of a log file's bytes: (offset, end, is a commit marker), by the length
/// fields (the bytes must be intact records after the header).
pub fn log_records(bytes: &[u8]) -> Vec<(u64, u64, bool)> {
    use kappalog::store::format;
    let mut out = Vec::new();
    let mut at = format::FILE_HEADER_BYTES as usize;
    while at + format::RECORD_HEADER_BYTES <= bytes.len() {
        let header: [u8; format::RECORD_HEADER_BYTES] = bytes[at..at + 8].try_into().unwrap();
        let header = format::parse_record_header(&header).unwrap();
        let end = at + format::RECORD_HEADER_BYTES + header.len;
        out.push((at as u64, end as u64, header.marker));
        at = end;
    }
    out
}

/// The end of the last entry record (not a commit marker) in the log file at `path`.
pub fn last_entry_end(path: &Path) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    log_records(&bytes)
        .into_iter()
        .filter(|&(_, _, marker)| !marker)
        .map(|(_, end, _)| end)
        .next_back()
        .unwrap_or(kappalog::store::format::FILE_HEADER_BYTES)
}

/// A seq-1 entry of `id` with `value` (two of them with different values fork the feed).
pub fn first_entry(id: &Identity, value: i64) -> kappalog::entry::Entry {
    kappalog::entry::UnsignedEntry {
        author: id.author(),
        seq: 1,
        timestamp: 1,
        prev: None,
        value,
        data: String::new(),
    }
    .sign(id)
    .0
}

/// A valid fork proof of `identity(seed)`: two different entries at seq 1.
pub fn fork_proof(seed: u8) -> kappalog::fork::ForkProof {
    let id = identity(seed);
    kappalog::fork::ForkProof::new(first_entry(&id, 1), first_entry(&id, 2))
}

pub mod crash_io;
pub mod faulty_io;
pub mod held_io;
pub mod index;
pub mod log_tree;
pub mod net;
pub mod peer;
pub mod plain;
pub mod python;
pub mod query_db;
pub mod relay;
pub mod resign;
pub mod serve;
pub mod serve_blocking;
pub mod sim_log;
pub mod sim_net;
pub mod sim_schedule;
pub mod tmpfs;
pub mod tree;

/// How many 4,000-byte entries make an export larger than the sockets on both ends can
/// buffer (twice the kernel's largest send buffer plus the default receive buffer), so a
/// client that stops reading really stalls the server's writes.
pub fn entries_beyond_socket_buffers() -> i64 {
    let max_of = |path: &str, field: usize| -> u64 {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.split_whitespace().nth(field)?.parse().ok())
            .unwrap_or(4 << 20)
    };
    let bytes =
        2 * max_of("/proc/sys/net/ipv4/tcp_wmem", 2) + max_of("/proc/sys/net/ipv4/tcp_rmem", 1);
    i64::try_from(bytes / 4_000 + 100).unwrap_or(i64::MAX)
}

/// Every entry a store holds, by hash (what fault tests compare with what was acknowledged).
pub fn entries_by_hash(
    reader: &kappalog::store::StoreReader,
) -> std::collections::BTreeMap<kappalog::hash::Hash, kappalog::entry::Entry> {
    let mut all = std::collections::BTreeMap::new();
    reader
        .for_each_in_log_order(|entry, hash| {
            all.insert(*hash, entry.clone());
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    all
}

/// How many entries the (closed) store in `dir` holds, read without taking the writer lock.
pub fn entries_in(dir: &Path) -> u64 {
    let (reader, _) = kappalog::store::StoreReader::open_read_only(dir).unwrap();
    reader.len()
}

/// Opens the writable store in `dir` with `io` under it and no idle commit markers, signing
/// as `identity(1)`: the tests that count or fail the file layer's calls one by one need
/// every call to come from their own appends.
pub fn open_with_counted_io(
    dir: &Path,
    io: std::sync::Arc<dyn kappalog::store::io::LogIo>,
) -> (kappalog::store::Store, kappalog::store::StoreOwner) {
    let options = kappalog::store::StoreOptions {
        io,
        idle_marker_delay: None,
        ..kappalog::store::StoreOptions::default()
    };
    let (store, owner, _) =
        kappalog::store::Store::open_with_options(dir, &options, Some(identity(1)), None).unwrap();
    (store, owner)
}
