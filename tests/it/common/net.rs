//! In-process nodes with peer sync on 127.0.0.1:0, with short protocol timeouts.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use kappalog::node::Node;
use kappalog::sync::{self, SyncConfig, SyncHandle};
use tokio::net::TcpListener;

use super::{identity, DEADLINE};

/// Timeouts short enough that a stalled peer is dropped in a test's time.
pub fn fast_config() -> SyncConfig {
    SyncConfig {
        handshake_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(10),
        frame_timeout: Duration::from_millis(500),
        ping_interval: Duration::from_secs(1),
        max_connections: 16,
        startup_fence_timeout: Duration::from_secs(10),
        claim_timeout: Duration::from_secs(2),
        ..SyncConfig::default()
    }
}

pub struct TestNode {
    pub node: Node,
    pub sync: SyncHandle,
    pub addr: SocketAddr,
}

/// Opens a node in `dir` with the fixed identity `seed` and starts sync dialing `peers`.
pub async fn start(dir: &Path, seed: u8, peers: &[SocketAddr]) -> TestNode {
    let (node, _) = Node::open_with_identity(dir, identity(seed)).unwrap();
    start_with(node, peers, fast_config()).await
}

pub async fn start_with(node: Node, peers: &[SocketAddr], config: SyncConfig) -> TestNode {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peers = peers.iter().map(|a| a.to_string()).collect();
    let sync = sync::start(&node, config, Some(listener), peers).unwrap();
    let addr = sync.local_addr().unwrap();
    TestNode { node, sync, addr }
}

impl TestNode {
    /// Ends every session and closes the store (releasing the directory lock).
    pub async fn stop(self) {
        self.node.shutdown().await.unwrap();
    }

    pub fn digest(&self) -> String {
        digest(&self.node)
    }

    pub fn count(&self) -> u64 {
        summary(&self.node)["count"].as_u64().unwrap()
    }
}

pub fn summary(node: &Node) -> serde_json::Value {
    serde_json::from_str(&node.summary_json()).unwrap()
}

pub fn digest(node: &Node) -> String {
    summary(node)["digest"].as_str().unwrap().to_owned()
}

/// Polls `condition` (every 10 ms) until it holds; panics at the deadline.
pub async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Appends `n` own entries, retrying while the own-feed fence holds appends back.
pub async fn append_n(node: &Node, n: u64, base: i64) {
    for i in 0..n {
        let value = base + i64::try_from(i).unwrap();
        let deadline = Instant::now() + DEADLINE;
        loop {
            match node.append(value, String::new()).await {
                Ok(_) => break,
                Err(kappalog::node::NodeError::Fence(e)) => {
                    assert!(Instant::now() < deadline, "fence never opened: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("append failed: {e}"),
            }
        }
    }
}

/// Copies a (closed) data directory.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}
