//! Whether an index found on disk can be resumed, or must be rebuilt from the log (pure:
//! what was read from the database and the log comes in as values). The rules are
//! docs/QUERY.md's, checked as a tail cursor is checked: the index must be of this node's
//! log, not past its committed end, and the log must hold the entry it says it indexed
//! last where it says.

use crate::hash::Hash;
use crate::identity::Author;

use super::schema::{Meta, LAYOUT_VERSION};

/// Why an index is rebuilt rather than resumed; said in the warning the indexer logs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Stale {
    /// No index file: a first start, or its directory was deleted.
    #[error("no index yet")]
    Missing,
    /// The file is not a database this build can read, or reading it failed.
    #[error("the index cannot be read: {0}")]
    Unreadable(String),
    /// Its layout is another build's.
    #[error("the index's layout version is {found}, this build writes {LAYOUT_VERSION}")]
    Layout {
        /// `PRAGMA user_version` of the file.
        found: i64,
    },
    /// Not closed cleanly, and SQLite's own check found damage.
    #[error("the index was not closed cleanly and is damaged: {0}")]
    Damaged(String),
    /// `meta` is missing a key or holds a malformed value.
    #[error("the index's meta table is unusable: {0}")]
    BadMeta(String),
    /// It indexes another node's log.
    #[error("the index is of node {found}, not of this node")]
    OtherNode {
        /// The node `meta` names.
        found: Author,
    },
    /// It covers more of the log than the log holds: the log was restored from an older
    /// copy, or replaced.
    #[error("the index covers the log up to offset {covered}, past its end at {end}")]
    PastEnd {
        /// `meta.covered`.
        covered: u64,
        /// The log's committed end.
        end: u64,
    },
    /// The log holds no record of the entry `meta` says was indexed last, or another one.
    #[error(
        "the log does not hold the entry {hash} at offset {offset} the index says it indexed last"
    )]
    OtherLog {
        /// `meta.last_offset`.
        offset: u64,
        /// `meta.last_hash`.
        hash: Hash,
    },
}

/// Checks `meta` of an index against the log of node `node`, whose committed end is `end`
/// and whose record at an offset has the hash `hash_at(offset)` (`None`: no record starts
/// there). `start` is where the log's first record starts.
pub fn check(
    meta: &Meta,
    node: &Author,
    start: u64,
    end: u64,
    hash_at: impl FnOnce(u64) -> Option<Hash>,
) -> Result<(), Stale> {
    if meta.node != *node {
        return Err(Stale::OtherNode { found: meta.node });
    }
    if meta.covered > end {
        return Err(Stale::PastEnd {
            covered: meta.covered,
            end,
        });
    }
    if meta.covered < start {
        return Err(Stale::BadMeta(format!(
            "covered {} is inside the log's header",
            meta.covered
        )));
    }
    if let Some((offset, hash)) = meta.last {
        if offset >= meta.covered || hash_at(offset) != Some(hash) {
            return Err(Stale::OtherLog { offset, hash });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(covered: u64, last: Option<(u64, Hash)>) -> Meta {
        Meta {
            node: Author([1; 32]),
            covered,
            last,
            clean: true,
        }
    }

    const START: u64 = 12;

    #[test]
    fn an_index_of_this_log_is_resumed() {
        let h = Hash([9; 32]);
        let node = Author([1; 32]);
        assert_eq!(
            check(&meta(START, None), &node, START, START, |_| None),
            Ok(())
        );
        assert_eq!(
            check(&meta(300, Some((100, h))), &node, START, 500, |at| {
                (at == 100).then_some(h)
            }),
            Ok(())
        );
    }

    #[test]
    fn each_mismatch_is_its_own_reason() {
        let h = Hash([9; 32]);
        let node = Author([1; 32]);
        let other = Author([2; 32]);
        assert_eq!(
            check(&meta(300, None), &other, START, 500, |_| None),
            Err(Stale::OtherNode { found: node })
        );
        assert_eq!(
            check(&meta(600, None), &node, START, 500, |_| None),
            Err(Stale::PastEnd {
                covered: 600,
                end: 500
            })
        );
        assert!(matches!(
            check(&meta(3, None), &node, START, 500, |_| None),
            Err(Stale::BadMeta(_))
        ));
        let other_log = Err(Stale::OtherLog {
            offset: 100,
            hash: h,
        });
        assert_eq!(
            check(&meta(300, Some((100, h))), &node, START, 500, |_| None),
            other_log
        );
        assert_eq!(
            check(&meta(300, Some((100, h))), &node, START, 500, |_| Some(
                Hash([8; 32])
            )),
            other_log
        );
        // The last entry must lie below what is covered.
        assert_eq!(
            check(&meta(100, Some((100, h))), &node, START, 500, |_| Some(h)),
            other_log
        );
    }
}
