//! The seam to wherever stored hashes live: the [`HashReader`] trait, and the errors of a
//! computation that reads through one.

use super::{BoundsError, Hash};

/// Reads stored hashes by index ([`super::stored_hash_index`]): the seam between the tree
/// algorithms and wherever the hashes live (a file, memory). Fallible, since the store
/// behind it does I/O.
pub trait HashReader {
    /// Why a read failed.
    type Error;

    /// The stored hashes at `indexes`, in the order asked. Returning a different number of
    /// hashes than indexes is caught by the callers ([`TreeError::ReaderCount`]).
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, Self::Error>;
}

impl<R: HashReader + ?Sized> HashReader for &R {
    type Error = R::Error;

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, Self::Error> {
        (**self).read_hashes(indexes)
    }
}

/// Why a tree hash or proof could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError<E> {
    /// Sizes or an index out of bounds.
    #[error(transparent)]
    Bounds(#[from] BoundsError),
    /// The reader answered with a different number of hashes than it was asked for.
    #[error("the hash reader returned {got} hashes for {asked} indexes")]
    ReaderCount {
        /// Indexes asked for.
        asked: usize,
        /// Hashes returned.
        got: usize,
    },
    /// The reader failed.
    #[error("reading stored hashes: {0}")]
    Read(#[source] E),
}

/// Reads the stored hashes at `indexes`, checking the reader returned one per index.
pub(super) fn read_exact<R: HashReader>(
    reader: &R,
    indexes: &[u64],
) -> Result<Vec<Hash>, TreeError<R::Error>> {
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = reader.read_hashes(indexes).map_err(TreeError::Read)?;
    if hashes.len() != indexes.len() {
        return Err(TreeError::ReaderCount {
            asked: indexes.len(),
            got: hashes.len(),
        });
    }
    Ok(hashes)
}
