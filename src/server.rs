//! Serving nodes over HTTP until a signal: bind, announce, serve, and shut down in one path
//! (stop accepting, let in-flight requests finish, sync and close every store).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::http::{self, HttpConfig};
use crate::identity::Author;
use crate::node::Node;

/// One node to serve.
pub struct NodeSpec {
    pub name: String,
    pub node: Node,
    pub http_addr: SocketAddr,
    pub http: HttpConfig,
}

/// What a node actually bound (port 0 resolved), for the caller to print.
#[derive(Debug, Clone)]
pub struct Bound {
    pub name: String,
    pub author: Author,
    pub http_addr: SocketAddr,
    pub data_dir: PathBuf,
}

/// Serves every node until SIGINT or SIGTERM, then shuts all of them down gracefully.
pub async fn serve_until_signal(
    nodes: Vec<NodeSpec>,
    on_bound: impl FnOnce(&[Bound]),
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut bound = Vec::with_capacity(nodes.len());
    let mut listeners = Vec::with_capacity(nodes.len());
    for spec in nodes {
        let listener = TcpListener::bind(spec.http_addr)
            .await
            .with_context(|| format!("binding HTTP for {} on {}", spec.name, spec.http_addr))?;
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() && spec.http.token.is_none() {
            tracing::warn!(
                node = %spec.name,
                %addr,
                "HTTP is bound to a non-loopback address without --token: anyone who can reach it can write"
            );
        }
        bound.push(Bound {
            name: spec.name.clone(),
            author: spec.node.author(),
            http_addr: addr,
            data_dir: spec.node.data_dir().to_owned(),
        });
        listeners.push((spec, listener));
    }
    on_bound(&bound);

    let mut tasks = Vec::with_capacity(listeners.len());
    let mut nodes = Vec::with_capacity(listeners.len());
    for (spec, listener) in listeners {
        let app = http::router(spec.node.clone(), spec.http.clone());
        let mut stop = stop_rx.clone();
        tracing::info!(node = %spec.name, addr = %listener.local_addr()?, "serving HTTP");
        tasks.push(tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    // Either a stop signal or the sender going away ends serving.
                    let _ = stop.wait_for(|stopped| *stopped).await;
                })
                .await
        }));
        nodes.push(spec.node);
    }

    wait_for_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    let _ = stop_tx.send(true);
    for task in tasks {
        task.await
            .context("HTTP task panicked")?
            .context("serving HTTP")?;
    }
    for node in nodes {
        tokio::task::spawn_blocking(move || node.close())
            .await
            .context("closing a node")??;
    }
    tracing::info!("stopped");
    Ok(())
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
