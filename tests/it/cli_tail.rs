//! `kappalog tail` against the real binary: it prints each entry as a JSON line, resumes by
//! itself after the node is killed and restarted on the same data directory (none missing,
//! none twice, also when no entry had reached it yet), and exits non-zero with a one-line
//! reason when the node refuses its cursor.

use std::process::Stdio;

use crate::common::{kappalog, post, printed_addr, run_node, Running, DEADLINE};
use kappalog::entry::EntryJson;

/// Reads `n` printed lines of the tail process (bounded by the deadline).
fn lines(tail: &Running, n: usize) -> Vec<EntryJson> {
    (0..n)
        .map(|_| {
            let line = tail
                .lines
                .recv_timeout(DEADLINE)
                .expect("kappalog tail printed no line before the deadline");
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
        })
        .collect()
}

fn add(addr: std::net::SocketAddr, value: i64) -> EntryJson {
    let response = post(addr, "/add", &value.to_string());
    assert_eq!(response.status, 201, "{}", response.body);
    serde_json::from_str(&response.body).unwrap()
}

/// Restarts the killed node on `data` at `addr` (the port `kappalog tail` keeps dialling).
fn restart(data: &std::path::Path, key: &std::path::Path, addr: std::net::SocketAddr) -> Running {
    let mut cmd = kappalog();
    cmd.arg("--data-dir").arg(data).arg("--key").arg(key);
    cmd.args(["run", "--http", &addr.to_string()]);
    let node = Running::spawn(cmd);
    assert_eq!(printed_addr(&node.wait_line("http://")), addr);
    node
}

/// `--from now`, and the node dies before any entry reached the tail: entries committed
/// while it was away (here by `kappalog append` on the stopped node's directory) are printed
/// once it is back, because the stream's first line told the tail where it began.
#[test]
fn tail_from_now_resumes_where_it_began_when_no_entry_had_reached_it() {
    let dir = tempfile::tempdir().unwrap();
    let (data, key) = (dir.path().join("data"), dir.path().join("node.key"));
    let (node, addr) = run_node(&data, &key, &[]);
    for v in 0..2 {
        add(addr, v);
    }
    let mut cmd = kappalog();
    cmd.env("RUST_LOG", "info")
        .args(["tail", "--url", &format!("http://{addr}"), "--from", "now"]);
    let mut tail = Running::spawn(cmd);
    // The tail logs where its stream began (on stderr) once it has read the position.
    let stderr = tail.child.stderr.take().unwrap();
    let (began_tx, began) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("stream began") && began_tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = began.recv_timeout(DEADLINE).expect("the tail never began");
    assert!(
        !line.contains("position=start"),
        "the log has entries: {line}"
    );
    drop(node);
    // Committed while the node is down, so before the tail can reconnect.
    let mut expected = Vec::new();
    for v in [7, 8] {
        let out = kappalog()
            .arg("--data-dir")
            .arg(&data)
            .arg("--key")
            .arg(&key)
            .args(["append", "--value", &v.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        expected.push(serde_json::from_slice::<EntryJson>(&out.stdout).unwrap());
    }
    let node = restart(&data, &key, addr);
    assert_eq!(lines(&tail, 2), expected);
    let last = add(addr, 9);
    assert_eq!(lines(&tail, 1), [last]);
    drop(node);
    drop(tail);
}

#[test]
fn tail_prints_entries_and_resumes_across_a_node_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (data, key) = (dir.path().join("data"), dir.path().join("node.key"));
    let (node, addr) = run_node(&data, &key, &[]);
    let mut expected: Vec<EntryJson> = (0..3).map(|v| add(addr, v)).collect();
    let mut cmd = kappalog();
    cmd.args([
        "tail",
        "--url",
        &format!("http://{addr}"),
        "--from",
        "start",
    ]);
    let tail = Running::spawn(cmd);
    let mut printed = lines(&tail, 3);
    assert_eq!(printed, expected);
    // Killed, not stopped: no goodbye on the stream.
    drop(node);
    // Restarted on the same port, which `kappalog tail` keeps dialling.
    let node = restart(&data, &key, addr);
    expected.extend((3..6).map(|v| add(addr, v)));
    printed.extend(lines(&tail, 3));
    assert_eq!(printed, expected);
    // Nothing printed twice: no further line arrives once the node is quiet, which the
    // next append proves (its line is the very next one).
    let last = add(addr, 6);
    assert_eq!(lines(&tail, 1), [last]);
    drop(node);
    drop(tail);
}

/// Runs `kappalog tail --url http://ADDR --from FROM` to its exit.
fn tail_from(addr: std::net::SocketAddr, from: &str) -> std::process::Output {
    kappalog()
        .args(["tail", "--url", &format!("http://{addr}"), "--from", from])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_refused_cursor_exits_non_zero_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (data, key) = (dir.path().join("data"), dir.path().join("node.key"));
    let (_node, addr) = run_node(&data, &key, &[]);
    add(addr, 1);
    let cursor = format!("{}{:016x}{}", "00".repeat(8), 12, "11".repeat(8));
    let output = tail_from(addr, &cursor);
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("error: ") && last.contains("400") && last.contains("another node"),
        "{stderr}"
    );
    // A malformed --from never reaches the node.
    let output = tail_from(addr, "yesterday");
    assert!(!output.status.success());
    assert!(String::from_utf8(output.stderr)
        .unwrap()
        .contains("malformed cursor"));
}
