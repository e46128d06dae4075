//! How far the index covers the log, as its `meta` table says (docs/QUERY.md, "The table
//! `meta`"): the `as_of` of an answer, and whether a cursor is covered.

use std::fmt;

use crate::hash::Hash;
use crate::identity::Author;
use crate::tail::cursor::Cursor;

/// The rows of `meta` a query reads, as SQLite returned them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetaRows {
    /// `node`: the author hex of the node whose log is indexed.
    pub node: Option<String>,
    /// `covered`: the log offset up to which every record has been read.
    pub covered: Option<i64>,
    /// `last_offset`: where the last indexed entry's record starts.
    pub last_offset: Option<i64>,
    /// `last_hash`: that entry's hash hex.
    pub last_hash: Option<String>,
}

/// How far the index covers, decoded from [`MetaRows`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coverage {
    /// Every record below this log offset has been read.
    pub covered: u64,
    /// The tail cursor of the last entry indexed; `None` while it covers no entry.
    pub last: Option<Cursor>,
}

/// Why `meta` does not say how far the index covers: an index being created, or not one
/// this build reads.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the index's meta table is incomplete: {0}")]
pub struct MetaError(pub &'static str);

impl MetaRows {
    /// Decodes the rows; an index that has not written them yet is not ready.
    pub fn coverage(&self) -> Result<Coverage, MetaError> {
        let covered = self
            .covered
            .and_then(|c| u64::try_from(c).ok())
            .ok_or(MetaError("no valid `covered`"))?;
        let last = match (self.last_offset, &self.last_hash) {
            (Some(offset), Some(hash)) => {
                let node: Author = self
                    .node
                    .as_deref()
                    .and_then(|n| n.parse().ok())
                    .ok_or(MetaError("no valid `node`"))?;
                let hash: Hash = hash
                    .parse()
                    .map_err(|_| MetaError("no valid `last_hash`"))?;
                let offset =
                    u64::try_from(offset).map_err(|_| MetaError("a negative `last_offset`"))?;
                Some(Cursor::new(&node, offset, &hash))
            }
            _ => None,
        };
        Ok(Coverage { covered, last })
    }
}

impl Coverage {
    /// Whether every entry up to and including the one `cursor` names is indexed (or
    /// excluded as forked).
    pub fn covers(&self, cursor: &Cursor) -> bool {
        self.covered > cursor.offset
    }
}

/// `as_of` as answers write it: the cursor of the last entry indexed, or `start`.
impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.last {
            Some(cursor) => cursor.fmt(f),
            None => f.write_str("start"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_is_the_last_entrys_cursor_or_start() {
        let node = Author([0xab; 32]);
        let hash = Hash([0xcd; 32]);
        let rows = MetaRows {
            node: Some(node.to_string()),
            covered: Some(200),
            last_offset: Some(100),
            last_hash: Some(hash.to_string()),
        };
        let coverage = rows.coverage().unwrap();
        assert_eq!(
            coverage.to_string(),
            Cursor::new(&node, 100, &hash).to_string()
        );
        assert!(coverage.covers(&Cursor::new(&node, 199, &hash)));
        assert!(!coverage.covers(&Cursor::new(&node, 200, &hash)));
        let empty = MetaRows {
            covered: Some(64),
            ..MetaRows::default()
        };
        assert_eq!(empty.coverage().unwrap().to_string(), "start");
        assert!(MetaRows::default().coverage().is_err());
    }
}
