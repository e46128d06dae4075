//! A node's HTTP API served over real TCP on 127.0.0.1:0 from a runtime of its own (as
//! `kappalog run` serves it), for tests that drive it with the blocking client of `common`.

use std::net::SocketAddr;

use kappalog::http::{router, HttpConfig};
use kappalog::node::Node;
use kappalog::server::{serve_http, ServeLimits};

pub struct Served {
    pub addr: SocketAddr,
    runtime: tokio::runtime::Runtime,
}

/// Serves `node` with `config` until [`Served::stop`] (or drop).
pub fn serve(node: &Node, config: HttpConfig) -> Served {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let open = node.metrics().http_connections.clone();
    let api = router(node.clone(), config);
    runtime.spawn(serve_http(
        listener,
        api,
        ServeLimits::default(),
        open,
        std::future::pending(),
    ));
    Served { addr, runtime }
}

impl Served {
    /// Stops serving: every connection task is dropped with the runtime, releasing its
    /// handle on the node (so the node can be closed and its directory reopened).
    pub fn stop(self) {
        self.runtime.shutdown_timeout(super::DEADLINE);
    }
}
