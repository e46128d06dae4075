//! What a v4 session needs from the node to find an author's copies of entries
//! (docs/PROTOCOL.md section 7, "Copy searches"): answers to a peer's `WantSubtrees` from the
//! node's trees, and searches to run with a peer whose author checkpoint the node's tree
//! disagrees with. The node implements [`CopySearches`]; sessions only ferry wants and
//! answers, match each answer against its want, and bound what either side may ask, so
//! every rule about which copy a node keeps lives behind the trait.

use std::fmt;
use std::sync::Arc;

use super::subtrees::{SubtreeData, WantSubtrees};
use crate::identity::Author;

/// The node's trees and copy searches as sync sees them. Every call may block: sessions
/// make them off the async workers.
pub trait CopySearches: Send + Sync + 'static {
    /// Answers a peer's want: the subtrees' hashes (level 1 and above) or the entries
    /// (level 0) of the node's tree of `author`, exactly `count` of them; `None` when the node
    /// does not hold them all (not covered by its tree, a forked or unknown feed).
    fn subtrees(&self, author: &Author, level: u8, index: u64, count: u16) -> Option<SubtreeData>;

    /// The authenticated v4 peer `peer` sent `note`, an author checkpoint note the
    /// checkpoint book did not take (its `offer` returned `Ok(false)`). Returns a search to
    /// run with this peer, or `None`: nothing to search (the tree agrees, the feed is not
    /// held, a search for the author already runs, one failed recently...).
    fn start(&self, peer: &Author, note: &[u8]) -> Option<Box<dyn CopySearchRun>>;
}

/// One search, driven by one session: the session sends its wants in order, hands it each
/// answer (matched against the oldest outstanding want), and sends the wants it returns,
/// until it ends. Every call may block.
pub trait CopySearchRun: Send {
    /// The feed searched.
    fn author(&self) -> Author;

    /// The first wants (the peaks of the checkpoint's tree).
    fn start(&mut self) -> Result<Vec<WantSubtrees>, SearchEnd>;

    /// The peer's answer to the outstanding want `want`: `None` when it does not hold it
    /// (the empty answer). Returns more wants (possibly none, while others are still
    /// outstanding), or the end.
    fn on_reply(
        &mut self,
        want: &WantSubtrees,
        data: Option<SubtreeData>,
    ) -> Result<Vec<WantSubtrees>, SearchEnd>;
}

/// How a search ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchEnd {
    /// Finished: the search applied what it found (or found it held nothing to change).
    Done,
    /// Stopped without a result, not the peer's fault to the search's knowledge (too many
    /// differing leaves, too many requests, a store failure...): logged, the session goes on.
    GaveUp(String),
    /// The peer's answers break the protocol (an answer that cannot be its tree, an entry
    /// that does not verify): the session ends with `Bye(ProtocolViolation)`.
    Violation(String),
}

/// The copy searches a [`super::SyncConfig`] carries; `None` there answers every want with
/// the empty answer and starts no search.
#[derive(Clone)]
pub struct SharedCopySearches(pub Arc<dyn CopySearches>);

impl fmt::Debug for SharedCopySearches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedCopySearches(..)")
    }
}
