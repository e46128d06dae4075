//! Two real `kappalog run` processes syncing over TCP on 127.0.0.1.

use crate::common::{
    get, http, kappalog, post, printed_addr, printed_sync_addr, wait_until, Running,
};

fn run(dir: &std::path::Path, name: &str, extra: &[&str]) -> Running {
    let mut cmd = kappalog();
    cmd.arg("--data-dir")
        .arg(dir.join(name))
        .arg("--key")
        .arg(dir.join(format!("{name}.key")))
        .args(["run", "--http", "127.0.0.1:0", "--listen", "127.0.0.1:0"])
        .args(extra);
    Running::spawn(cmd)
}

/// Posts until the own-feed fence lets the append through.
pub(crate) fn add(addr: std::net::SocketAddr, body: &str) -> serde_json::Value {
    let mut r = post(addr, "/add", body);
    wait_until("the own-feed fence to open", || {
        if r.status == 503 {
            r = post(addr, "/add", body);
        }
        r.status != 503
    });
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()
}

#[test]
fn two_binaries_converge_and_report_peers() {
    let dir = tempfile::tempdir().unwrap();
    let a = run(dir.path(), "a", &[]);
    let line = a.wait_line("http://");
    let (a_http, a_sync) = (printed_addr(&line), printed_sync_addr(&line));
    let b = run(dir.path(), "b", &["--peer", &a_sync.to_string()]);
    let b_http = printed_addr(&b.wait_line("http://"));

    for v in 0..5 {
        add(a_http, &v.to_string());
        add(b_http, &(v + 100).to_string());
    }
    wait_until("equal summaries", || {
        let (sa, sb) = (
            get(a_http, "/summary").json(),
            get(b_http, "/summary").json(),
        );
        sa["count"] == 10 && sa["digest"] == sb["digest"]
    });
    assert_eq!(get(b_http, "/summary").json()["own_feed"], "ok");
    let peers = get(b_http, "/peers").json();
    let peer = &peers["peers"].as_array().unwrap()[0];
    assert_eq!(peer["addr"], a_sync.to_string());
    assert_eq!(peer["connected"], true);
    assert_eq!(peer["lag"], 0);
    assert!(peer["last_error"].is_null());

    // The same figures, summed over peers, in /metrics.
    let metrics = get(b_http, "/metrics").body;
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from {metrics}"))
    };
    assert_eq!(value("kappalog_sync_peers{status=\"connected\"}"), 1);
    assert_eq!(value("kappalog_sync_entries{direction=\"received\"}"), 5);
    // A live push racing the initial exchange may send an entry twice; never fewer.
    assert!(value("kappalog_sync_entries{direction=\"sent\"}") >= 5);
    assert_eq!(value("kappalog_stored_entries{status=\"ok\"}"), 10);

    let round = http(b_http, "POST", "/sync", b"", &[]);
    assert_eq!(round.status, 200, "{}", round.body);
    assert_eq!(round.json()["sessions"].as_array().unwrap().len(), 1);
    let added = http(b_http, "POST", "/peers", br#"{"addr": "127.0.0.1:1"}"#, &[]);
    assert_eq!(added.status, 201, "{}", added.body);
    let bad = http(b_http, "POST", "/peers", br#"{"addr": "nope"}"#, &[]);
    assert_eq!(bad.status, 400);
    assert!(get(a_http, "/forks").json().as_array().unwrap().is_empty());

    assert!(b.terminate().success());
    assert!(a.terminate().success());
}

/// The hidden `--sync-protocol-max 2` makes a binary a v2 node: a default (v4) binary dialing
/// it syncs in a v2 session, shown as `protocol: 2` in `GET /peers` on both sides, with no
/// error left on the dialer's record.
#[test]
fn a_binary_held_to_v2_syncs_with_a_v4_one_in_a_v2_session() {
    held_binary_syncs_at(2);
}

/// The same with `--sync-protocol-max 3`: a v3 node, met in a v3 session.
#[test]
fn a_binary_held_to_v3_syncs_with_a_v4_one_in_a_v3_session() {
    held_binary_syncs_at(3);
}

fn held_binary_syncs_at(version: u16) {
    let dir = tempfile::tempdir().unwrap();
    let held = version.to_string();
    let a = run(dir.path(), "a", &["--sync-protocol-max", &held]);
    let line = a.wait_line("http://");
    let (a_http, a_sync) = (printed_addr(&line), printed_sync_addr(&line));
    let b = run(dir.path(), "b", &["--peer", &a_sync.to_string()]);
    let b_http = printed_addr(&b.wait_line("http://"));
    add(a_http, "1");
    add(b_http, "2");
    wait_until("both entries on both", || {
        let (sa, sb) = (
            get(a_http, "/summary").json(),
            get(b_http, "/summary").json(),
        );
        sa["count"] == 2 && sa["digest"] == sb["digest"]
    });
    let peer_of = |http_addr| {
        let peers = get(http_addr, "/peers").json();
        peers["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["connected"] == true)
            .cloned()
            .unwrap()
    };
    assert_eq!(peer_of(b_http)["protocol"], version);
    assert!(peer_of(b_http)["last_error"].is_null());
    assert_eq!(peer_of(a_http)["protocol"], version);
    // A version outside 2..=4 is refused by the flag's parser.
    let refused = kappalog()
        .args(["run", "--sync-protocol-max", "5"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(b.terminate().success());
    assert!(a.terminate().success());
}
