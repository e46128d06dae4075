//! The item both sides of a session state about each feed they hold: in reconciliation
//! ([`super::reconcile`], whose fingerprints hash it) and in the plan ([`super::plan`]).
//! Below both, and below [`super::message`], which carries it.

use serde::{Deserialize, Serialize};

use crate::entry::Seq;
use crate::hash::Hash;
use crate::identity::Author;

use super::raw;

/// One feed the sender holds: `length >= 1` entries, the last with hash `head`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedHave {
    /// The feed; items are listed in ascending author order.
    #[serde(with = "raw")]
    pub author: Author,
    /// Entries the sender holds of it; at least 1 (an empty feed is not listed).
    pub length: Seq,
    /// The hash of the sender's entry `length`: equal heads at equal lengths mean equal feeds.
    #[serde(with = "raw")]
    pub head: Hash,
}
