//! [`TreeReadError`]: why a read of a tree failed, the asker's fault or the node's.

use crate::identity::Author;
use crate::tlog::merkle::{BoundsError, TreeError};

/// Why a tree read failed: the first three are the asker's (4xx), `Storage` and
/// `Rebuilding` the node's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeReadError {
    /// The tree covers no entry of this feed (not held, or not yet followed).
    #[error("no tree for feed {author}")]
    UnknownFeed {
        /// The feed asked for.
        author: Author,
    },
    /// A size past what the tree covers so far.
    #[error("size {size} is beyond the {covered} entries the tree covers")]
    BeyondCovered {
        /// The size asked for.
        size: u64,
        /// The size covered.
        covered: u64,
    },
    /// An index, sizes or tile that no tree has (index not below size, old above new, a
    /// width outside 1..=256).
    #[error("{0}")]
    OutOfRange(String),
    /// The cache or the log could not be read.
    #[error("reading the tree: {0}")]
    Storage(String),
    /// The cache failed its integrity check (or was replaced during the read) and is being
    /// rebuilt from the log: asking again later will do.
    #[error("the tree cache is being rebuilt from the log: {0}")]
    Rebuilding(String),
}

impl TreeReadError {
    /// Whether the asker is to blame (a 4xx), not the node.
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self,
            TreeReadError::Storage(_) | TreeReadError::Rebuilding(_)
        )
    }
}

impl From<TreeError<TreeReadError>> for TreeReadError {
    fn from(e: TreeError<TreeReadError>) -> TreeReadError {
        match e {
            TreeError::Bounds(b) => TreeReadError::OutOfRange(b.to_string()),
            TreeError::Read(e) => e,
            e @ TreeError::ReaderCount { .. } => TreeReadError::Storage(e.to_string()),
        }
    }
}

impl From<BoundsError> for TreeReadError {
    fn from(e: BoundsError) -> TreeReadError {
        TreeReadError::OutOfRange(e.to_string())
    }
}
