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
    #[serde(with = "raw")]
    pub author: Author,
    pub length: Seq,
    #[serde(with = "raw")]
    pub head: Hash,
}
