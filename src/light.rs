//! The light client (`kappalog get`): one entry of one feed, fetched from a node with its
//! proof, and believed only once it verifies, without holding the feed and without trusting
//! the node.
//!
//! The node answers `GET /feeds/AUTHOR/proof?seq=N[&size=S]` with a kappalog entry bundle
//! ([`crate::tlog::bundle`]). [`check_answer`] accepts it only when, in this order:
//!
//! 1. it is a bundle that proves its own entry under every rule of
//!    [`verify_entry_proof`] (the entry's shape and signature, its index, the checkpoint's
//!    origin and the author's signature on it, inclusion, and with a policy the witnesses'
//!    quorum);
//! 2. that entry's author is the one asked for: the origin and key the checkpoint was checked
//!    under were derived from the entry's author, so this makes them the asked author's,
//!    never a name the node chose;
//! 3. its seq is the one asked for;
//! 4. with a size asked for, the checkpoint is of exactly that size.
//!
//! [`fetch`] is the I/O half: the request, over plain `http://`, bounded in bytes and time.

use crate::entry::Seq;
use crate::identity::Author;
use crate::tlog::bundle::{verify_entry_proof, EntryProofError, VerifiedEntry};
use crate::tlog::policy::Policy;

pub mod fetch;
pub mod remembered;
pub mod state;

/// What the light client asks a node for: the entry at `seq` of `author`'s feed, proved in
/// the tree of `size` entries if given (the node's newest checkpoint otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRequest {
    /// The feed.
    pub author: Author,
    /// The entry's position in it, from 1.
    pub seq: Seq,
    /// The size of the tree to prove it in, at least `seq`.
    pub size: Option<u64>,
}

/// Why a request cannot be asked (checked before any I/O).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Seqs start at 1.
    #[error("--seq must be at least 1")]
    SeqZero,
    /// A tree of `size` entries holds seqs 1..=size only.
    #[error(
        "the entry at seq {seq} is not in a tree of {size} entries: --size must be at least --seq"
    )]
    SizeBelowSeq {
        /// The seq asked for.
        seq: Seq,
        /// The size asked for.
        size: u64,
    },
}

impl EntryRequest {
    /// A request for the entry at `seq` of `author`, in the tree of `size` entries if given.
    pub fn new(author: Author, seq: Seq, size: Option<u64>) -> Result<Self, RequestError> {
        if seq == 0 {
            return Err(RequestError::SeqZero);
        }
        if let Some(size) = size.filter(|&size| size < seq) {
            return Err(RequestError::SizeBelowSeq { seq, size });
        }
        Ok(EntryRequest { author, seq, size })
    }

    /// The route's path and query, relative to the node's URL.
    pub fn path(&self) -> String {
        match self.size {
            None => format!("/feeds/{}/proof?seq={}", self.author.to_hex(), self.seq),
            Some(size) => format!(
                "/feeds/{}/proof?seq={}&size={size}",
                self.author.to_hex(),
                self.seq
            ),
        }
    }
}

/// Why a node's answer does not prove the entry asked for; each message is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// The answer is not a bundle that proves its own entry.
    #[error("{0}")]
    Proof(#[from] EntryProofError),
    /// The bundle proves an entry of another feed.
    #[error("the node sent an entry of author {found}, not of {asked}")]
    WrongAuthor {
        /// The author asked for.
        asked: Author,
        /// The author of the entry sent.
        found: Author,
    },
    /// The bundle proves another entry of the feed.
    #[error("the node sent the entry at seq {found}, not at seq {asked}")]
    WrongSeq {
        /// The seq asked for.
        asked: Seq,
        /// The seq of the entry sent.
        found: Seq,
    },
    /// With `--state`: the answer's checkpoint and the remembered one are two trees of one
    /// size, both signed by the author.
    #[error("split view: the node's checkpoint of {size} entries has another root than the one remembered, both signed by the author (the node's is kept in {conflict})")]
    SplitView {
        /// The trees' size.
        size: u64,
        /// Where the answer's checkpoint was kept, beside the remembered one.
        conflict: String,
    },
    /// With `--state`: the node did not prove its checkpoint consistent with the remembered
    /// one.
    #[error("the node's checkpoint of {answer} entries is not proved consistent with the one of {remembered} entries remembered: {reason} (the node's is kept in {conflict})")]
    NotConsistent {
        /// The answer's tree size.
        answer: u64,
        /// The remembered tree size.
        remembered: u64,
        /// What is wrong with the node's proof.
        reason: String,
        /// Where the answer's checkpoint was kept.
        conflict: String,
    },
    /// The bundle proves the entry in a tree of another size than the one asked for.
    #[error("the node proved the entry in a tree of {found} entries, not of {asked} as asked")]
    WrongSize {
        /// The size asked for.
        asked: u64,
        /// The size of the checkpoint sent.
        found: u64,
    },
}

/// Checks the node's answer `bytes` to `request` under the rules of the module docs, in
/// their order; the first broken one is the error.
pub fn check_answer(
    bytes: &[u8],
    request: &EntryRequest,
    policy: Option<&Policy>,
) -> Result<VerifiedEntry, AnswerError> {
    let verified = verify_entry_proof(bytes, policy)?;
    if verified.entry.author != request.author {
        return Err(AnswerError::WrongAuthor {
            asked: request.author,
            found: verified.entry.author,
        });
    }
    if verified.entry.seq != request.seq {
        return Err(AnswerError::WrongSeq {
            asked: request.seq,
            found: verified.entry.seq,
        });
    }
    if let Some(asked) = request.size.filter(|&size| size != verified.tree_size()) {
        return Err(AnswerError::WrongSize {
            asked,
            found: verified.tree_size(),
        });
    }
    Ok(verified)
}

#[cfg(test)]
#[path = "light_tests.rs"]
mod tests;
