//! `kappalog index rebuild`: the index of a stopped node's data directory deleted and
//! built again from its log, reporting progress as it goes.

use std::collections::BTreeSet;

use crate::identity::Author;
use crate::progress::{Progress, Stage};
use crate::store::StoreReader;

use super::db::{IndexDb, IndexError};

/// What a rebuild did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rebuilt {
    /// Entry records read from the log.
    pub read: u64,
    /// Rows written (the entries of authors not forked).
    pub indexed: u64,
}

/// Deletes the index in `data_dir` and builds it again from the log `reader` reads (node
/// `node`), leaving out the entries of `forked` authors, then closes it cleanly. Reports
/// [`Stage::Index`] to `progress`: the log's entries as the total, then each batch read.
/// The caller holds the data directory's lock (no node may write the index meanwhile).
pub fn rebuild(
    data_dir: &std::path::Path,
    node: &Author,
    reader: &StoreReader,
    forked: &BTreeSet<Author>,
    progress: &dyn Progress,
) -> Result<Rebuilt, IndexError> {
    let mut db = IndexDb::create(data_dir, node)?;
    progress.begin(Stage::Index, Some(reader.len()));
    let pass = db.catch_up(reader, forked, &|| false, &mut |_, read| {
        progress.advance(read)
    })?;
    db.close()?;
    Ok(Rebuilt {
        read: pass.read,
        indexed: pass.indexed,
    })
}
