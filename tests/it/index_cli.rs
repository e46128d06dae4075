//! `kappalog index rebuild` as an operator runs it, and the index of `kappalog run` seen
//! through `/health`.

use std::path::Path;
use std::process::Output;

use kappalog::store::StoreReader;

use crate::common::index::{expected, table};
use crate::common::{get, kappalog, run_node, wait_until};

fn rebuild(dir: &Path) -> Output {
    kappalog()
        .current_dir(dir)
        .args(["index", "rebuild"])
        .output()
        .expect("run kappalog")
}

fn append(dir: &Path, n: u64) {
    for v in 0..n {
        let o = kappalog()
            .current_dir(dir)
            .args(["append", "--value", &v.to_string(), "--data", "{\"k\":1}"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
    }
}

#[test]
fn rebuild_works_on_a_stopped_nodes_dir_and_is_refused_on_a_running_one() {
    let dir = tempfile::tempdir().unwrap();
    append(dir.path(), 5);
    let data = dir.path().join("data");

    let o = rebuild(dir.path());
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout.starts_with("indexed 5 entries (5 read"), "{stdout}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let reader = StoreReader::open_read_only(&data).unwrap().0;
    assert_eq!(table(&data), expected(&reader, &Default::default()));

    // A node runs on the directory (and keeps its index itself, as /health says).
    let (node, addr) = run_node(&data, &dir.path().join("keys/node.key"), &[]);
    wait_until("the index to be ready", || {
        get(addr, "/health").json()["index"]["state"] == "ready"
    });
    let o = rebuild(dir.path());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("a node is running on"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(node.terminate().success());
}
