//! What a view is: a deterministic fold over the log.
//!
//! A view never reads the log itself. The node feeds it every entry the store holds — while
//! appending (live) or by replaying the log from the start (rebuild) — and tells it when a
//! feed is found forked. The contract that lets a view be rebuilt at any time and compared
//! across nodes:
//!
//! - entries of one feed arrive in seq order (1, 2, 3, ...), each exactly once; entries of
//!   different feeds interleave arbitrarily;
//! - `mark_forked` may arrive before, between or after a feed's entries, any number of times;
//! - a view's output depends only on the *set* of entries applied and the *set* of forked
//!   authors, never on the interleaving, and a view built live equals a rebuilt one.
//!
//! A new view is one new file implementing [`View`]; `node::rebuild_summary` shows the
//! replay that rebuilds one from the log.

use crate::entry::Entry;
use crate::hash::Hash;
use crate::identity::Author;

/// A deterministic fold over the log. See the module docs for the ordering contract.
pub trait View: Send {
    /// Folds in one entry (with its already computed hash). Signatures are not checked here:
    /// only validated entries reach the store, and only stored entries reach a view.
    fn apply(&mut self, entry: &Entry, hash: &Hash);

    /// The feed of `author` was found forked: exclude it from the view from now on.
    fn mark_forked(&mut self, author: &Author);
}
