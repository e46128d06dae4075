//! A real full disk under the real binary: the data dir lives on a 2 MiB tmpfs mounted for
//! the test. `POST /add` fills it, is answered 503, `/health` says why; once space is freed
//! appends resume without a restart, and a restart finds exactly the acknowledged entries.
//!
//! Mounting needs root; elsewhere the test is skipped ([`crate::common::tmpfs`]).

use crate::common::tmpfs::Mount;
use crate::common::{get, http, run_node, wait_until};

#[test]
fn a_full_disk_degrades_the_node_and_appends_resume_once_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_mount) = Mount::tmpfs_or_skip(&dir.path().join("disk"), "2m", "a_full_disk_...")
    else {
        return;
    };
    let disk = dir.path().join("disk");
    let filler = disk.join("filler");
    std::fs::write(&filler, vec![1u8; 512 << 10]).unwrap();
    let data = disk.join("data");
    let key = dir.path().join("node.key");
    let (node, addr) = run_node(&data, &key, &[]);

    let body = format!("{{\"value\":1,\"data\":\"{}\"}}", "x".repeat(3000));
    let mut acked = 0u64;
    let full = loop {
        let answer = http(addr, "POST", "/add", body.as_bytes(), &[]);
        match answer.status {
            201 => acked += 1,
            503 => break answer,
            other => panic!("unexpected {other}: {}", answer.body),
        }
        assert!(acked < 2_000, "a 2 MiB disk never filled");
    };
    assert_eq!(full.json()["error"], "unable to write to the log");
    let health = get(addr, "/health");
    assert_eq!(health.status, 503, "{}", health.body);
    assert_eq!(health.json()["status"], "degraded");
    let reason = health.json()["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("No space left on device"), "{reason}");
    // Still full: still refused, with nothing acknowledged lost meanwhile.
    assert_eq!(http(addr, "POST", "/add", body.as_bytes(), &[]).status, 503);
    assert_eq!(get(addr, "/summary").json()["count"], acked);

    std::fs::remove_file(&filler).unwrap();
    let resumed = http(addr, "POST", "/add", body.as_bytes(), &[]);
    assert_eq!(resumed.status, 201, "{}", resumed.body);
    acked += 1;
    assert_eq!(
        resumed.json()["seq"],
        acked,
        "no seq was lost to the failures"
    );
    assert_eq!(get(addr, "/health").json()["status"], "ok");
    let metrics = get(addr, "/metrics").body;
    assert!(metrics.contains("kappalog_store_recoveries 1"), "{metrics}");

    assert!(node.terminate().success());
    let (_node, addr) = run_node(&data, &key, &[]);
    wait_until("the restarted node answers", || {
        get(addr, "/health").status == 200
    });
    assert_eq!(get(addr, "/summary").json()["count"], acked);
}
