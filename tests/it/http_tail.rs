//! `GET /tail` over real TCP on 127.0.0.1: both framings, every start, the author filter,
//! resuming (while appends run, and across a restart of the real binary), each refused
//! cursor, a slow consumer, the stream cap and shutdown.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::serve::Server;
use crate::common::{identity, DEADLINE};
use kappalog::entry::EntryJson;
use kappalog::http::{router, HttpConfig};
use kappalog::node::Node;
use kappalog::server::{serve_http, ServeLimits};
use kappalog::tail::TailConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// Serves a fresh node (identity 21) with `tail` settings.
async fn start(tail: TailConfig, limits: ServeLimits) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = Node::open_with_identity(dir.path(), identity(21)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = HttpConfig {
        tail,
        ..HttpConfig::default()
    };
    let api = router(node.clone(), config);
    let open = node.metrics().http_connections.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_http(listener, api, limits, open, async {
        let _ = stopped.await;
    }));
    Server::from_parts(addr, node, stop, task, dir)
}

async fn start_default() -> Server {
    start(TailConfig::default(), ServeLimits::default()).await
}

/// A `GET /tail` response read as it streams: the head, then the de-chunked body split
/// into frames (an SSE event up to its blank line, or an NDJSON line).
struct Tail {
    stream: TcpStream,
    status: u16,
    head: String,
    raw: Vec<u8>,
    body: Vec<u8>,
    ndjson: bool,
    finished: bool,
}

impl Tail {
    async fn open(addr: SocketAddr, query: &str, headers: &[(&str, &str)]) -> Tail {
        let stream = TcpStream::connect(addr).await.unwrap();
        Tail::over(stream, query, headers).await
    }

    async fn over(mut stream: TcpStream, query: &str, headers: &[(&str, &str)]) -> Tail {
        let mut request = format!("GET /tail{query} HTTP/1.1\r\nHost: test\r\n");
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let ndjson = headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("accept") && v.contains("ndjson"));
        let mut tail = Tail {
            stream,
            status: 0,
            head: String::new(),
            raw: Vec::new(),
            body: Vec::new(),
            ndjson,
            finished: false,
        };
        loop {
            if let Some(end) = tail.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                tail.head = String::from_utf8_lossy(&tail.raw[..end]).into_owned();
                tail.status = tail.head[9..12].parse().unwrap();
                tail.raw.drain(..end + 4);
                break;
            }
            assert!(tail.read_more().await, "closed before a response head");
        }
        tail
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    /// Reads more raw bytes; false at the end of the connection.
    async fn read_more(&mut self) -> bool {
        let mut buf = [0u8; 16 * 1024];
        match tokio::time::timeout(DEADLINE, self.stream.read(&mut buf)).await {
            Err(_) => panic!("the stream sent nothing before the deadline"),
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.raw.extend_from_slice(&buf[..n]);
                true
            }
        }
    }

    /// Moves whole chunks from `raw` to `body`; notes the last chunk.
    fn dechunk(&mut self) {
        loop {
            let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size_text = std::str::from_utf8(&self.raw[..line_end]).unwrap();
            let size = usize::from_str_radix(size_text.trim(), 16).unwrap();
            if self.raw.len() < line_end + 2 + size + 2 {
                return;
            }
            if size == 0 {
                self.finished = true;
            }
            self.body
                .extend_from_slice(&self.raw[line_end + 2..line_end + 2 + size]);
            self.raw.drain(..line_end + 2 + size + 2);
        }
    }

    /// The next frame, or `None` once the response is complete or the connection closed.
    async fn next(&mut self) -> Option<String> {
        let separator: &[u8] = if self.ndjson { b"\n" } else { b"\n\n" };
        loop {
            self.dechunk();
            if let Some(at) = self
                .body
                .windows(separator.len())
                .position(|w| w == separator)
            {
                let frame = String::from_utf8(self.body[..at].to_vec()).unwrap();
                self.body.drain(..at + separator.len());
                return Some(frame);
            }
            if self.finished || !self.read_more().await {
                return None;
            }
        }
    }

    /// The next entry frame as (cursor, entry), skipping heartbeats; panics on an `end`.
    async fn entry(&mut self) -> (String, EntryJson) {
        loop {
            let frame = self.next().await.expect("the stream ended");
            match parse(&frame, self.ndjson) {
                Frame::Entry(cursor, entry) => return (cursor, *entry),
                Frame::Heartbeat | Frame::Position(_) => continue,
                Frame::End(reason) => panic!("the stream ended: {reason}"),
            }
        }
    }

    /// The next `n` entries.
    async fn entries(&mut self, n: usize) -> Vec<(String, EntryJson)> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.entry().await);
        }
        out
    }
}

#[derive(Debug)]
enum Frame {
    Entry(String, Box<EntryJson>),
    /// The first frame: where the stream starts, as a `from` to resume there.
    Position(String),
    Heartbeat,
    End(String),
}

impl Frame {
    fn position(&self) -> Option<&str> {
        match self {
            Frame::Position(at) => Some(at),
            _ => None,
        }
    }
}

fn parse(frame: &str, ndjson: bool) -> Frame {
    if ndjson {
        let v: serde_json::Value = serde_json::from_str(frame).unwrap();
        if v.get("heartbeat") == Some(&serde_json::Value::Bool(true)) {
            return Frame::Heartbeat;
        }
        if let Some(end) = v.get("end") {
            return Frame::End(end["reason"].as_str().unwrap().to_owned());
        }
        if v.as_object().unwrap().len() == 1 {
            return Frame::Position(v["cursor"].as_str().unwrap().to_owned());
        }
        assert_eq!(v.as_object().unwrap().len(), 2, "{frame}");
        let cursor = v["cursor"].as_str().unwrap().to_owned();
        return Frame::Entry(cursor, serde_json::from_value(v["entry"].clone()).unwrap());
    }
    if frame.starts_with(':') {
        return Frame::Heartbeat;
    }
    let lines: Vec<&str> = frame.lines().collect();
    match lines.as_slice() {
        ["event: entry", id, data] => Frame::Entry(
            id.strip_prefix("id: ").unwrap().to_owned(),
            serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap(),
        ),
        ["event: position", id] => Frame::Position(id.strip_prefix("id: ").unwrap().to_owned()),
        ["event: end", data] => {
            let v: serde_json::Value =
                serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            Frame::End(v["reason"].as_str().unwrap().to_owned())
        }
        _ => panic!("not a tail event: {frame:?}"),
    }
}

/// Appends `n` own entries with values `from..from + n`.
async fn append(node: &Node, from: i64, n: i64) -> Vec<EntryJson> {
    let mut out = Vec::new();
    for value in from..from + n {
        out.push(node.append(value, format!("v{value}")).await.unwrap());
    }
    out
}

fn hashes<'a>(entries: impl IntoIterator<Item = &'a EntryJson>) -> Vec<String> {
    entries.into_iter().map(|e| e.hash.to_string()).collect()
}

fn error_of(response: &common::HttpResponse) -> String {
    response.json()["error"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_from_start_replays_the_log_then_streams_commits() {
    let server = start_default().await;
    let before = append(&server.node, 0, 5).await;
    let mut tail = Tail::open(server.addr, "?from=start", &[]).await;
    assert_eq!(tail.status, 200);
    assert_eq!(
        tail.header("content-type").as_deref(),
        Some("text/event-stream")
    );
    let replayed = tail.entries(5).await;
    assert_eq!(hashes(replayed.iter().map(|(_, e)| e)), hashes(&before));
    // Each event's data is exactly the entry's JSON as `GET /entries` lists it.
    let listed = common::get(
        server.addr,
        &format!("/entries?author={}", server.node.author()),
    );
    let listed: Vec<EntryJson> = serde_json::from_value(listed.json()["entries"].clone()).unwrap();
    assert_eq!(
        replayed.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
        listed
    );
    let after = append(&server.node, 5, 3).await;
    let live = tail.entries(3).await;
    assert_eq!(hashes(live.iter().map(|(_, e)| e)), hashes(&after));
    let cursors: BTreeSet<&String> = replayed.iter().chain(&live).map(|(c, _)| c).collect();
    assert_eq!(cursors.len(), 8, "every entry has its own cursor");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_from_now_sends_only_later_commits_and_heartbeats_when_idle() {
    let config = TailConfig {
        heartbeat: Duration::from_millis(100),
        ..TailConfig::default()
    };
    let server = start(config, ServeLimits::default()).await;
    append(&server.node, 0, 3).await;
    let ndjson = [("Accept", "application/x-ndjson")];
    let mut tail = Tail::open(server.addr, "?from=now", &ndjson).await;
    assert_eq!(tail.status, 200);
    assert_eq!(
        tail.header("content-type").as_deref(),
        Some("application/x-ndjson")
    );
    // First where it starts: after the last entry committed, as a cursor.
    let position = tail.next().await.unwrap();
    let Frame::Position(cursor) = parse(&position, true) else {
        panic!("not a position: {position}")
    };
    assert_eq!(cursor.len(), 48, "{cursor}");
    // Nothing is committed: the stream says it is alive.
    let frame = tail.next().await.unwrap();
    assert_eq!(frame, r#"{"heartbeat":true}"#);
    let after = append(&server.node, 3, 2).await;
    let live = tail.entries(2).await;
    assert_eq!(hashes(live.iter().map(|(_, e)| e)), hashes(&after));
    // The default start is `now` too.
    let mut default = Tail::open(server.addr, "", &ndjson).await;
    let next = append(&server.node, 5, 1).await;
    assert_eq!(default.entry().await.1, next[0]);
    server.shutdown().await;
}

/// A stream from `now` begins with its position, so a client that loses the connection
/// before any entry reached it resumes exactly where it began: on an empty log `start`,
/// otherwise the cursor of the last entry committed before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_from_now_dropped_before_any_entry_resumes_from_its_position() {
    let server = start_default().await;
    for (round, expected) in [(0, Some("start")), (1, None)] {
        let mut tail = Tail::open(server.addr, "?from=now", &[]).await;
        let frame = tail.next().await.unwrap();
        let Frame::Position(position) = parse(&frame, false) else {
            panic!("not a position: {frame}")
        };
        if let Some(expected) = expected {
            assert_eq!(position, expected);
        }
        drop(tail);
        // Committed while the client is away.
        let missed = append(&server.node, round * 10, 2).await;
        // As a browser's EventSource reconnects: the position as the Last-Event-ID.
        let mut resumed = Tail::open(server.addr, "", &[("Last-Event-ID", &position)]).await;
        let frame = resumed.next().await.unwrap();
        assert_eq!(parse(&frame, false).position(), Some(position.as_str()));
        let got = resumed.entries(2).await;
        assert_eq!(
            hashes(got.iter().map(|(_, e)| e)),
            hashes(&missed),
            "round {round}"
        );
        let later = append(&server.node, round * 10 + 5, 1).await;
        assert_eq!(resumed.entry().await.1, later[0]);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_author_filter_streams_one_feed() {
    let server = start_default().await;
    let other = identity(33);
    let foreign = common::entries(&common::feed(&other, 6));
    server
        .node
        .offer_entries(foreign[..3].to_vec())
        .await
        .unwrap();
    let own = append(&server.node, 0, 2).await;
    let query = format!("?from=start&author={}", other.author());
    let mut tail = Tail::open(server.addr, &query, &[]).await;
    let first = tail.entries(3).await;
    assert!(first.iter().all(|(_, e)| e.author == other.author()));
    append(&server.node, 2, 2).await;
    server
        .node
        .offer_entries(foreign[3..].to_vec())
        .await
        .unwrap();
    let rest = tail.entries(3).await;
    let seqs: Vec<u64> = first.iter().chain(&rest).map(|(_, e)| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
    // The own feed's stream has only own entries.
    let query = format!("?from=start&author={}", server.node.author());
    let mut mine = Tail::open(server.addr, &query, &[]).await;
    let got = mine.entries(4).await;
    assert_eq!(hashes(got[..2].iter().map(|(_, e)| e)), hashes(&own));
    let bad = common::get(server.addr, "/tail?author=zz");
    assert_eq!(bad.status, 400);
    assert!(error_of(&bad).contains("author"), "{}", bad.body);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_with_last_event_id_gets_exactly_the_rest_while_appends_run() {
    const TOTAL: i64 = 600;
    let server = start_default().await;
    let node = server.node.clone();
    // Four appenders at once, so commits come in batches of several entries.
    let appenders: Vec<_> = (0..4)
        .map(|k| {
            let node = node.clone();
            tokio::spawn(async move {
                for i in 0..TOTAL / 4 {
                    node.append(k * 1000 + i, String::new()).await.unwrap();
                }
            })
        })
        .collect();
    let mut got: Vec<(String, EntryJson)> = Vec::new();
    let mut last: Option<String> = None;
    // Reconnect after every 50 entries, half with Last-Event-ID and half with from=CURSOR.
    let mut round = 0;
    while got.len() < TOTAL as usize {
        let mut tail = match &last {
            None => Tail::open(server.addr, "?from=start", &[]).await,
            Some(c) if round % 2 == 0 => {
                Tail::open(server.addr, "?from=now", &[("Last-Event-ID", c.as_str())]).await
            }
            Some(c) => Tail::open(server.addr, &format!("?from={c}"), &[]).await,
        };
        assert_eq!(tail.status, 200);
        let want = (TOTAL as usize - got.len()).min(50);
        let batch = tail.entries(want).await;
        last = batch.last().map(|(c, _)| c.clone());
        got.extend(batch);
        round += 1;
    }
    for appender in appenders {
        appender.await.unwrap();
    }
    // Exactly the log, in log order: none missing, none twice.
    let mut log = Vec::new();
    server
        .node
        .reader()
        .for_each_in_log_order(|_, h| {
            log.push(h.to_string());
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(hashes(got.iter().map(|(_, e)| e)), log);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_cursor_the_node_cannot_honour_gets_its_own_4xx() {
    let server = start_default().await;
    append(&server.node, 0, 3).await;
    let mut tail = Tail::open(server.addr, "?from=start", &[]).await;
    let entries = tail.entries(3).await;
    drop(tail);
    let good = entries[1].0.clone();
    let cases = [
        ("not-a-cursor".to_owned(), 400, "malformed cursor"),
        (format!("{}0", good), 400, "malformed cursor"),
        // Another node's author prefix.
        (
            format!("{}{}", "00".repeat(8), &good[16..]),
            400,
            "another node",
        ),
        // Beyond the end of the log.
        (
            format!("{}{:016x}{}", &good[..16], 1u64 << 40, &good[32..]),
            404,
            "beyond",
        ),
        // The right offset with another entry's hash: a replaced log.
        (
            format!("{}{}", &good[..32], &entries[0].0[32..]),
            410,
            "does not hold",
        ),
        // Inside a record.
        (
            format!(
                "{}{:016x}{}",
                &good[..16],
                u64::from_str_radix(&good[16..32], 16).unwrap() + 3,
                &good[32..]
            ),
            410,
            "does not hold",
        ),
    ];
    for (cursor, status, needle) in cases {
        for via_header in [false, true] {
            let response = if via_header {
                common::http(
                    server.addr,
                    "GET",
                    "/tail",
                    b"",
                    &[("Last-Event-ID", &cursor)],
                )
            } else {
                common::get(server.addr, &format!("/tail?from={cursor}"))
            };
            assert_eq!(response.status, status, "{cursor}: {}", response.body);
            assert!(
                error_of(&response).contains(needle),
                "{cursor}: {}",
                response.body
            );
        }
    }
    // The good cursor still resumes after its entry.
    let mut resumed = Tail::open(server.addr, &format!("?from={good}"), &[]).await;
    assert_eq!(resumed.entry().await.1, entries[2].1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_ended_with_a_reason_and_the_node_keeps_serving() {
    let config = TailConfig {
        send_deadline: Duration::from_millis(300),
        ..TailConfig::default()
    };
    let server = start(config, ServeLimits::default()).await;
    // A client with a small receive window that reads the head, then nothing.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let mut tail = Tail::over(stream, "?from=now", &[("Accept", "application/x-ndjson")]).await;
    assert_eq!(tail.status, 200);
    // Far more than the sockets and the stream's queue hold: 4,000-byte entries.
    let total = common::entries_beyond_socket_buffers();
    let data = "x".repeat(4000);
    let node = server.node.clone();
    let appenders: Vec<_> = (0..8)
        .map(|k| {
            let (node, data) = (node.clone(), data.clone());
            tokio::spawn(async move {
                for i in (k..total).step_by(8) {
                    node.append(i, data.clone()).await.unwrap();
                }
            })
        })
        .collect();
    for appender in appenders {
        appender.await.unwrap();
    }
    // The stream is cut once a send has waited past the deadline: however fast the appends
    // were, wait for that (the node counts its open streams) before reading anything.
    let addr = server.addr;
    tokio::task::spawn_blocking(move || {
        common::wait_until("the slow stream to be ended", || {
            common::get(addr, "/metrics")
                .body
                .contains("kappalog_tail_streams 0")
        })
    })
    .await
    .unwrap();
    // The node answers others meanwhile.
    let health = tokio::task::spawn_blocking({
        let addr = server.addr;
        move || common::get(addr, "/health")
    })
    .await
    .unwrap();
    assert_eq!(health.status, 200);
    // Now read: whole entries, then the end saying why, then the end of the response.
    let mut received = 0;
    let reason = loop {
        let frame = tail.next().await.expect("the stream closed without an end");
        match parse(&frame, true) {
            Frame::Entry(..) => received += 1,
            Frame::Heartbeat | Frame::Position(_) => {}
            Frame::End(reason) => break reason,
        }
    };
    assert!(reason.contains("slow consumer"), "{reason}");
    assert!(tail.next().await.is_none(), "nothing after the end");
    assert!(
        (received as i64) < total,
        "the node did not hold back what the client could not take: {received} of {total}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_cap_get_503_and_shutdown_ends_open_streams() {
    let config = TailConfig {
        max_streams: 2,
        ..TailConfig::default()
    };
    let limits = ServeLimits {
        // Were the streams to hold the shutdown open, it would take this long.
        shutdown_timeout: Duration::from_secs(600),
        ..ServeLimits::default()
    };
    let mut server = start(config, limits).await;
    let mut a = Tail::open(server.addr, "", &[]).await;
    let mut b = Tail::open(server.addr, "", &[("Accept", "application/x-ndjson")]).await;
    assert_eq!((a.status, b.status), (200, 200));
    let third = tokio::task::spawn_blocking({
        let addr = server.addr;
        move || common::get(addr, "/tail")
    })
    .await
    .unwrap();
    assert_eq!(third.status, 503);
    assert!(error_of(&third).contains("tail streams"), "{}", third.body);
    let began = Instant::now();
    server.stop_serving();
    for (tail, ndjson) in [(&mut a, false), (&mut b, true)] {
        // The position went out first, unless the shutdown came before the body was first
        // polled (the end is preferred to anything still queued).
        let mut frame = parse(&tail.next().await.unwrap(), ndjson);
        if frame.position().is_some() {
            frame = parse(&tail.next().await.unwrap(), ndjson);
        }
        match frame {
            Frame::End(reason) => assert!(reason.contains("shutting down"), "{reason}"),
            other => panic!("expected the end, got {other:?}"),
        }
        assert!(tail.next().await.is_none());
    }
    server.stopped().await;
    assert!(began.elapsed() < DEADLINE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_resumes_exactly_after_the_binary_is_killed_and_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let (data, key) = (dir.path().join("data"), dir.path().join("node.key"));
    let add = |addr, value: i64| -> EntryJson {
        let response = common::post(addr, "/add", &value.to_string());
        assert_eq!(response.status, 201, "{}", response.body);
        serde_json::from_str(&response.body).unwrap()
    };
    let ndjson = [("Accept", "application/x-ndjson")];
    let (node, addr) = tokio::task::block_in_place(|| common::run_node(&data, &key, &[]));
    let first: Vec<EntryJson> =
        tokio::task::block_in_place(|| (0..4).map(|v| add(addr, v)).collect());
    let mut tail = Tail::open(addr, "?from=start", &ndjson).await;
    let got = tail.entries(3).await;
    assert_eq!(hashes(got.iter().map(|(_, e)| e)), hashes(&first[..3]));
    let cursor = got[2].0.clone();
    drop(tail);
    // SIGKILL: no shutdown path runs.
    drop(node);
    let (node, addr) = tokio::task::block_in_place(|| common::run_node(&data, &key, &[]));
    let later: Vec<EntryJson> =
        tokio::task::block_in_place(|| (4..6).map(|v| add(addr, v)).collect());
    let mut resumed = Tail::open(addr, "", &[ndjson[0], ("Last-Event-ID", cursor.as_str())]).await;
    assert_eq!(resumed.status, 200);
    let rest = resumed.entries(3).await;
    let expected: Vec<&EntryJson> = first[3..].iter().chain(&later).collect();
    assert_eq!(hashes(rest.iter().map(|(_, e)| e)), hashes(expected));
    // And nothing more: the next frame is the next commit.
    let next = tokio::task::block_in_place(|| add(addr, 6));
    assert_eq!(resumed.entry().await.1, next);
    drop(node);
}
