//! The running binary keeps the tree cache and says so in `/health`; `--no-tree` runs
//! without it (benchmarks' A/B).

use crate::common::{get, post, run_node, wait_until};

#[test]
fn health_shows_the_tree_and_no_tree_turns_it_off() {
    let dir = tempfile::tempdir().unwrap();
    let (data, key) = (dir.path().join("data"), dir.path().join("node.key"));
    let (node, addr) = run_node(&data, &key, &[]);
    assert_eq!(post(addr, "/add", r#"{"value":1,"data":"x"}"#).status, 201);
    wait_until("the tree to cover the entry", || {
        let health = get(addr, "/health").json();
        health["tree"]["state"] == "ready" && health["tree"]["lag_bytes"] == 0
    });
    assert!(node.terminate().success());
    assert!(data.join(kappalog::tree::TREE_FILE).exists());

    let (node, addr) = run_node(&data, &key, &["--no-tree"]);
    assert_eq!(get(addr, "/health").json()["tree"]["state"], "off");
    assert!(node.terminate().success());
}
