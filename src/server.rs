//! Serving nodes over HTTP and peer sync until a signal: bind (HTTP and sync listeners),
//! announce, start sync, serve, and shut down in one path (stop accepting, let in-flight
//! requests finish, then [`Node::shutdown`] each node: every sync session ends with
//! `Bye(Shutdown)`, the node's tasks end, and the store syncs and releases its lock).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::http::{self, HttpConfig};
use crate::identity::Author;
use crate::node::Node;
use crate::query::{QueryConfig, QueryEngine};
use crate::sync::{self, SyncConfig};
use crate::views::{ViewRequest, Views};

mod connections;
mod error;
mod framing;
mod head;
mod screen;
mod shed;
mod stall;

pub use connections::{
    serve_http, ServeLimits, HEADER_READ_TIMEOUT_MS, MAX_HTTP_CONNECTIONS, SHUTDOWN_TIMEOUT_MS,
};
pub use error::ServerError;
pub use head::{MAX_HEAD_BYTES, MAX_URI_BYTES};

/// One node to serve.
pub struct NodeSpec {
    /// The node's name: labels its log lines and its errors.
    pub name: String,
    /// The opened node; served, then shut down.
    pub node: Node,
    /// Where to serve HTTP (port 0: a free port).
    pub http_addr: SocketAddr,
    /// The HTTP API's settings.
    pub http: HttpConfig,
    /// Connection limits and the shutdown deadline of the HTTP server.
    pub limits: ServeLimits,
    /// Peer sync, if any.
    pub sync: Option<SyncSpec>,
    /// Whether to run the node's SQL indexer ([`crate::index`]); off only for benchmarks
    /// (`--no-index`).
    pub index: bool,
    /// Whether to run the node's Merkle tree cache follower ([`crate::tree`]); off only for
    /// benchmarks (`--no-tree`).
    pub tree: bool,
    /// Views declared with `--views FILE`, added (vetted, replacing a view of the same
    /// name) before the node serves; the node's other views stay.
    pub views: BTreeMap<String, ViewRequest>,
    /// The cosignature keys of witnesses outside kappalog (`--witness-key`) whose
    /// cosignatures the checkpoint book keeps, ranked first.
    pub witness_keys: Vec<crate::tlog::vkey::VerifierKey>,
}

/// A node's peer sync.
#[derive(Clone, Debug, Default)]
pub struct SyncSpec {
    /// Where to accept peers (port 0: a free port); `None`: dial only.
    pub listen: Option<SocketAddr>,
    /// Peers to dial, `HOST:PORT`.
    pub peers: Vec<String>,
    /// Other nodes of the same `serve_until_signal` call to dial (indices into its list):
    /// their bound sync addresses are added to `peers`, each with its key pinned.
    pub peer_nodes: Vec<usize>,
    /// Other nodes of the same call whose keys this node trusts (pins in the other
    /// direction: a node trusts the nodes that dial it as it trusts those it dials).
    pub trust_nodes: Vec<usize>,
    /// The sync protocol's settings.
    pub config: SyncConfig,
}

/// What a node actually bound (port 0 resolved), for the caller to print.
#[derive(Debug, Clone)]
pub struct Bound {
    /// The node's name, from its [`NodeSpec`].
    pub name: String,
    /// The node's own feed's author (its public key).
    pub author: Author,
    /// The HTTP listener's address.
    pub http_addr: SocketAddr,
    /// The sync listener's address; `None` when the node only dials.
    pub sync_addr: Option<SocketAddr>,
    /// The node's data directory.
    pub data_dir: PathBuf,
}

/// Serves every node until SIGINT or SIGTERM, then shuts all of them down gracefully.
pub async fn serve_until_signal(
    nodes: Vec<NodeSpec>,
    on_bound: impl FnOnce(&[Bound]),
) -> Result<(), ServerError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut bound = Vec::with_capacity(nodes.len());
    let mut listening = Vec::with_capacity(nodes.len());
    for spec in nodes {
        let (node, node_bound) = bind(spec).await?;
        bound.push(node_bound);
        listening.push(node);
    }
    on_bound(&bound);

    for node in &mut listening {
        if node.spec.tree {
            // Before sync, which gossips the book's checkpoints. The node's shutdown
            // waits for the follower's last flush.
            let trees = crate::tree::start(&node.spec.node);
            node.spec.http.tree = Some(trees.clone());
            let book = start_book(&node.spec, trees)?;
            node.spec.http.book = Some(book);
        }
        node.start_sync(&bound)?;
        if node.spec.index {
            let views = open_views(&node.spec).await?;
            // The node's shutdown waits for its indexer to close the file cleanly.
            node.spec.http.index = Some(crate::index::start(&node.spec.node, views));
        }
    }

    let mut tasks = Vec::with_capacity(listening.len());
    let mut nodes = Vec::with_capacity(listening.len());
    for Listening { spec, http, .. } in listening {
        tasks.push(spawn_http(&spec, http, stop_rx.clone())?);
        nodes.push(spec.node);
    }

    wait_for_signal().await;
    tracing::info!("shutting down: finishing in-flight requests (aborted at the shutdown timeout)");
    let _ = stop_tx.send(true);
    for task in tasks {
        task.await.map_err(ServerError::HttpTaskPanicked)?;
    }
    // Each node's shutdown ends its sync (which watches `Node::stopping`) and its other
    // tasks, then closes its store.
    for node in nodes {
        node.shutdown().await.map_err(ServerError::NodeShutdown)?;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The node's checkpoint book over `trees`: cosigning through the node's witness (if the
/// app opened one), the configured witnesses' and pinned and allow-listed peers'
/// cosignatures ranked first.
fn start_book(
    spec: &NodeSpec,
    trees: crate::tree::Trees,
) -> Result<crate::checkpoint_book::CheckpointBook, ServerError> {
    let trusted = spec.sync.as_ref().map_or_else(Vec::new, |sync| {
        let policy = &sync.config.policy;
        policy
            .trusted
            .iter()
            .chain(&policy.allow_peers)
            .map(|author| *author.as_bytes())
            .collect()
    });
    let keys = crate::checkpoint_book::CosignerKeys::new(spec.witness_keys.clone(), trusted);
    crate::checkpoint_book::start(&spec.node, trees, spec.http.witness.clone(), keys).map_err(
        |source| ServerError::CheckpointBook {
            name: spec.name.clone(),
            source,
        },
    )
}

/// The node's views, with those `--views` declares vetted and added.
async fn open_views(spec: &NodeSpec) -> Result<Views, ServerError> {
    let data_dir = spec.node.data_dir();
    let views = Views::open(data_dir).map_err(|source| ServerError::Views {
        name: spec.name.clone(),
        source,
    })?;
    let engine = spec.http.query.clone().unwrap_or_else(|| {
        QueryEngine::new(crate::query::index_path(data_dir), QueryConfig::default())
    });
    for (view, request) in &spec.views {
        let declared = |reason: String| ServerError::DeclaredView {
            name: spec.name.clone(),
            view: view.clone(),
            reason,
        };
        let def = engine
            .vet(view, request)
            .await
            .map_err(|e| declared(e.to_string()))?;
        let keeper = views.clone();
        crate::determinism::blocking(move || keeper.put(def))
            .await
            .map_err(|e| declared(e.to_string()))?
            .map_err(|e| declared(e.to_string()))?;
    }
    Ok(views)
}

/// A node whose listeners are bound but not served yet.
struct Listening {
    spec: NodeSpec,
    http: TcpListener,
    /// Taken by [`Listening::start_sync`].
    sync: Option<TcpListener>,
}

/// Binds a node's HTTP listener and, if it accepts peers, its sync listener; returns them
/// with what was bound (port 0 resolved).
async fn bind(spec: NodeSpec) -> Result<(Listening, Bound), ServerError> {
    let http = TcpListener::bind(spec.http_addr)
        .await
        .map_err(|source| ServerError::BindHttp {
            name: spec.name.clone(),
            addr: spec.http_addr,
            source,
        })?;
    let addr = http.local_addr().map_err(ServerError::LocalAddr)?;
    if !addr.ip().is_loopback() && spec.http.token.is_none() {
        tracing::warn!(
            node = %spec.name,
            %addr,
            "HTTP is bound to a non-loopback address without --token: anyone who can reach it can write"
        );
    }
    let sync =
        match spec.sync.as_ref().and_then(|s| s.listen) {
            Some(sync_addr) => Some(TcpListener::bind(sync_addr).await.map_err(|source| {
                ServerError::BindSync {
                    name: spec.name.clone(),
                    addr: sync_addr,
                    source,
                }
            })?),
            None => None,
        };
    let sync_addr = match &sync {
        Some(l) => Some(l.local_addr().map_err(ServerError::LocalAddr)?),
        None => None,
    };
    let bound = Bound {
        name: spec.name.clone(),
        author: spec.node.author(),
        http_addr: addr,
        sync_addr,
        data_dir: spec.node.data_dir().to_owned(),
    };
    Ok((Listening { spec, http, sync }, bound))
}

impl Listening {
    /// Starts the node's peer sync, if it has one: its configured peers plus the bound sync
    /// addresses of the nodes it names in `peer_nodes` (indices into `bound`). The handle
    /// goes to the node's HTTP ([`HttpConfig::sync`]).
    fn start_sync(&mut self, bound: &[Bound]) -> Result<(), ServerError> {
        let Some(sync_spec) = self.spec.sync.take() else {
            return Ok(());
        };
        let mut peers = sync_spec.peers.clone();
        for &i in &sync_spec.peer_nodes {
            if let Some(b) = bound.get(i) {
                if let Some(addr) = b.sync_addr {
                    peers.push(format!("{}@{addr}", b.author));
                }
            }
        }
        let mut config = sync_spec.config;
        // v3 sessions gossip the book's checkpoints and cosignatures (none without the
        // tree, `--no-tree`: then v3 sessions reconcile an empty book).
        if let Some(book) = &self.spec.http.book {
            config.checkpoint_book = Some(sync::checkpoint_book::SharedBook(std::sync::Arc::new(
                book.clone(),
            )));
            // v4 sessions search a peer's tree when its author checkpoint disagrees with
            // ours, and answer the peer's searches from our tree.
            if let Some(trees) = &self.spec.http.tree {
                let searches = crate::checkpoint_book::copies::NodeCopySearches::new(
                    self.spec.node.clone(),
                    trees.clone(),
                    book.clone(),
                );
                config.copy_searches = Some(sync::copy_searches::SharedCopySearches(
                    std::sync::Arc::new(searches),
                ));
            }
        }
        for &i in &sync_spec.trust_nodes {
            if let Some(b) = bound.get(i) {
                config.policy.trusted.insert(b.author);
            }
        }
        let handle =
            sync::start(&self.spec.node, config, self.sync.take(), peers).map_err(|source| {
                ServerError::StartSync {
                    name: self.spec.name.clone(),
                    source,
                }
            })?;
        if let Some(addr) = handle.local_addr() {
            tracing::info!(node = %self.spec.name, %addr, "serving peer sync");
        }
        self.spec.http.sync = Some(handle);
        Ok(())
    }
}

/// Serves a node's HTTP on `listener` on its own task, until `stop` turns true (or its
/// sender is gone).
fn spawn_http(
    spec: &NodeSpec,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ServerError> {
    let app = http::router(spec.node.clone(), spec.http.clone());
    let addr = listener.local_addr().map_err(ServerError::LocalAddr)?;
    tracing::info!(node = %spec.name, %addr, "serving HTTP");
    Ok(tokio::spawn(connections::serve_http(
        listener,
        app,
        spec.limits,
        spec.node.metrics().http_connections.clone(),
        async move {
            // Either a stop signal or the sender going away ends serving.
            let _ = stop.wait_for(|stopped| *stopped).await;
        },
    )))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            // Without a SIGTERM handler, SIGINT still works.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
