//! Why serving stopped before or after the signal: each variant names the step and the node,
//! and keeps its cause as the source, so the binary's one line reads as it did when these
//! were `anyhow` contexts (`binding HTTP for node on 127.0.0.1:8080: Address already in use`).

use std::io;
use std::net::SocketAddr;

use crate::node::NodeError;
use crate::sync::SyncError;

/// An error of [`super::serve_until_signal`].
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The node's HTTP listener could not be bound.
    #[error("binding HTTP for {name} on {addr}")]
    BindHttp {
        /// The node's name.
        name: String,
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The node's sync listener could not be bound.
    #[error("binding sync for {name} on {addr}")]
    BindSync {
        /// The node's name.
        name: String,
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A bound listener could not say its address.
    #[error(transparent)]
    LocalAddr(io::Error),
    /// The node's peer sync did not start (a bad peer, the pin file).
    #[error("starting sync for {name}")]
    StartSync {
        /// The node's name.
        name: String,
        /// Why sync did not start.
        #[source]
        source: SyncError,
    },
    /// The node's views file could not be read.
    #[error("the views of {name}")]
    Views {
        /// The node's name.
        name: String,
        /// Why.
        #[source]
        source: crate::views::file::ViewsFileError,
    },
    /// The node's checkpoint journal (`DATA_DIR/checkpoints`) could not be opened.
    #[error("the checkpoint book of {name}")]
    CheckpointBook {
        /// The node's name.
        name: String,
        /// Why.
        #[source]
        source: crate::checkpoint_book::JournalOpenError,
    },
    /// A view `--views` declares is refused.
    #[error("--views: view {view} of {name}: {reason}")]
    DeclaredView {
        /// The node's name.
        name: String,
        /// The view's name.
        view: String,
        /// Why it is refused.
        reason: String,
    },
    /// A node's HTTP task panicked while serving.
    #[error("HTTP task panicked")]
    HttpTaskPanicked(#[source] tokio::task::JoinError),
    /// A node's shutdown failed (its tasks or its store).
    #[error("shutting a node down")]
    NodeShutdown(#[source] NodeError),
}
