//! Split-view fork proofs: two checkpoints one author signed for its feed that cannot both
//! describe one append-only tree. Portable like [`crate::fork::ForkProof`] (two entries at
//! one seq), and checkable with nothing else: no entries, no tree.
//!
//! # What a proof shows
//!
//! A [`CheckpointForkProof`] holds checkpoint `a` (size `m`, root `r_a`), checkpoint `b`
//! (size `n`, root `r_b`), `m <= n`, and a consistency path. Either
//!
//! - **same size** (`m == n`): the roots differ; the two signed notes are the whole proof
//!   and the path is empty; or
//! - **growing size** (`m < n`): the path, run through RFC 9162's consistency verification
//!   (section 2.1.4.2) from `m` to `n`, reproduces `r_b` and implies an old root `r' != r_a`
//!   ([`merkle::consistency_old_root`]). By collision resistance `b`'s tree at size `m` is
//!   not `a`'s tree: the author signed two trees, neither a prefix of the other.
//!
//! Who can make the path: any node holding `b`'s entries `1..=n` (its own tree agrees with
//! `b`) computes it from its tree: the standard consistency proof from `m` to `n`, with its
//! root at `m` prepended when `m` is a power of two ([`merkle::seeded_consistency_path`];
//! [`CheckpointForkProof::from_conflict`] does this).
//!
//! [`CheckpointForkProof::check`] accepts a proof if and only if, in this order:
//!
//! - **author checkpoints**: each note is a feed checkpoint its author signed, carrying the
//!   author's line and no other ([`AuthorCheckpoint`]; [`SplitViewError::NotAuthorSigned`],
//!   [`SplitViewError::ExtraSignatures`]): cosignatures are stripped, so every node makes
//!   the same bytes for the same conflict whoever cosigned what;
//! - **same feed**: both origins are one feed's ([`SplitViewError::DifferentFeeds`]);
//! - **canonical order**: `(size, note bytes)` of `a` is strictly below `b`'s
//!   ([`SplitViewError::SameCheckpoint`], [`SplitViewError::NotCanonicalOrder`]);
//! - **conflict**: as above ([`SplitViewError::Consistency`] when the path does not
//!   reproduce `r_b`, [`SplitViewError::NotAConflict`] when it implies `r_a`, or when equal
//!   sizes carry equal roots).
//!
//! # Encoding, version 1
//!
//! For the wire (a sync message) and a data dir file, where records may be concatenated.
//! Integers big-endian; every length is checked against its limit before the bytes it
//! announces are read.
//!
//! | size   | field                                                                 |
//! |--------|-----------------------------------------------------------------------|
//! | 4      | magic `KLCF`                                                          |
//! | 1      | format version, `0x01`                                                |
//! | 2      | `a` length: u16, at most [`MAX_NOTE_BYTES`]                           |
//! | n      | `a`: the signed note's bytes (body, blank line, the author's line)    |
//! | 2      | `b` length: u16, at most [`MAX_NOTE_BYTES`]                           |
//! | n      | `b`: the same                                                         |
//! | 1      | path length in hashes: at most [`MAX_PROOF_HASHES`]                   |
//! | 32 * k | the consistency path                                                  |
//!
//! Decoding checks the format (and that each note parses as a signed checkpoint), not the
//! proof: callers run [`CheckpointForkProof::check`].

use crate::identity::Author;
use crate::tlog::author_checkpoint::{AuthorCheckpoint, AuthorCheckpointError};
use crate::tlog::checkpoint::{CheckpointError, SignedCheckpoint};
use crate::tlog::merkle::{self, Hash, VerifyError, HASH_BYTES, MAX_PROOF_HASHES};

/// The four magic bytes that open an encoded split-view proof.
pub const SPLIT_VIEW_MAGIC: &[u8; 4] = b"KLCF";
/// The format version byte.
pub const SPLIT_VIEW_FORMAT_VERSION: u8 = 1;
/// The longest note a proof carries, in bytes. A kappalog checkpoint with only its author's
/// line is about 330 bytes (78-byte origin, size, root, one signature line); the margin
/// allows a few extension lines, which other software might write.
pub const MAX_NOTE_BYTES: usize = 1024;
/// The longest encoded proof, in bytes.
pub const MAX_SPLIT_VIEW_PROOF_BYTES: usize =
    4 + 1 + 2 * (2 + MAX_NOTE_BYTES) + 1 + MAX_PROOF_HASHES * HASH_BYTES;

/// Which checkpoint of a proof something is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The smaller checkpoint ([`CheckpointForkProof::a`]).
    A,
    /// The larger one ([`CheckpointForkProof::b`]).
    B,
}

/// Why a proof does not prove a split view. One variant per rule of the module docs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitViewError {
    /// A note is not a feed checkpoint signed by its author.
    #[error("checkpoint {side:?} is not author-signed: {error}")]
    NotAuthorSigned {
        /// Which checkpoint.
        side: Side,
        /// Why.
        error: AuthorCheckpointError,
    },
    /// A note carries lines besides the author's: not the canonical bytes.
    #[error("checkpoint {side:?} carries signature lines besides the author's")]
    ExtraSignatures {
        /// Which checkpoint.
        side: Side,
    },
    /// The checkpoints are of two feeds.
    #[error("checkpoints are of different feeds ({a} and {b})")]
    DifferentFeeds {
        /// `a`'s author.
        a: Author,
        /// `b`'s author.
        b: Author,
    },
    /// Both sides are the same note.
    #[error("both sides are the same checkpoint")]
    SameCheckpoint,
    /// `(size, bytes)` of `a` is above `b`'s.
    #[error("checkpoints are not in canonical order (by size, then note bytes)")]
    NotCanonicalOrder,
    /// The path does not lead to `b`'s root (or has the wrong length for the sizes).
    #[error("the consistency path does not check against checkpoint b: {0}")]
    Consistency(VerifyError),
    /// The checkpoints are consistent: `b`'s tree at `a`'s size is `a`'s.
    #[error("the checkpoints are consistent: no split view")]
    NotAConflict,
}

/// Why bytes are not an encoded split-view proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitViewDecodeError {
    /// The bytes end before the proof does.
    #[error("split-view proof too short: need {needed} bytes, got {found}")]
    Truncated {
        /// Bytes needed, as far as the header tells.
        needed: usize,
        /// Bytes given.
        found: usize,
    },
    /// The first four bytes are not [`SPLIT_VIEW_MAGIC`].
    #[error("bad split-view proof magic")]
    BadMagic,
    /// The version byte (carried) is not [`SPLIT_VIEW_FORMAT_VERSION`].
    #[error("unsupported split-view proof version {0}")]
    UnknownVersion(u8),
    /// A note's length prefix is over [`MAX_NOTE_BYTES`].
    #[error("checkpoint {side:?} length {len} exceeds the limit of {MAX_NOTE_BYTES} bytes")]
    NoteTooLong {
        /// Which note.
        side: Side,
        /// The length claimed.
        len: u16,
    },
    /// A note is not a signed checkpoint.
    #[error("checkpoint {side:?} does not parse: {error}")]
    Note {
        /// Which note.
        side: Side,
        /// Why.
        error: CheckpointError,
    },
    /// The path length is over [`MAX_PROOF_HASHES`].
    #[error("path of {0} hashes exceeds the limit of {MAX_PROOF_HASHES}")]
    PathTooLong(u8),
    /// Bytes (count carried) after a complete proof.
    #[error("{0} trailing bytes after the split-view proof")]
    TrailingBytes(usize),
}

/// Two author checkpoints of one feed and the consistency path that shows they conflict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointForkProof {
    /// The checkpoint with the smaller `(size, note bytes)`.
    pub a: SignedCheckpoint,
    /// The other one.
    pub b: SignedCheckpoint,
    /// The seeded consistency path from `a`'s size to `b`'s in `b`'s tree (empty for equal
    /// sizes): see the module docs.
    pub consistency: Vec<Hash>,
}

/// What a node's tree says about the two checkpoints of a proof ([`CheckpointForkProof::agreeing_side`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agreement {
    /// The node's tree at the smaller size is `a`'s.
    A,
    /// The node's tree at the smaller size is `b`'s tree there.
    B,
    /// Neither: the node holds a third tree.
    Neither,
}

impl CheckpointForkProof {
    /// The proof that `x` and `y` (in either order, any extra lines) conflict, made by a node
    /// whose tree agrees with the larger of the two (`own_root_at_smaller` is its root at
    /// the smaller size, `proof` its standard consistency proof from the smaller size to
    /// the larger, as `Trees::consistency_proof` returns it; both ignored for equal sizes).
    /// None if the result does not check: the two are not a conflict, or not author
    /// checkpoints of one feed, or the node's tree does not agree with the larger one.
    pub fn from_conflict(
        x: &SignedCheckpoint,
        y: &SignedCheckpoint,
        own_root_at_smaller: &Hash,
        proof: &[Hash],
    ) -> Option<CheckpointForkProof> {
        let (x, y) = (
            AuthorCheckpoint::verify(x).ok()?,
            AuthorCheckpoint::verify(y).ok()?,
        );
        let key = |c: &AuthorCheckpoint| (c.size(), c.to_bytes());
        let (a, b) = match key(&x) <= key(&y) {
            true => (x, y),
            false => (y, x),
        };
        let consistency = match a.size() == b.size() {
            true => Vec::new(),
            false => merkle::seeded_consistency_path(a.size(), own_root_at_smaller, proof),
        };
        let proof = CheckpointForkProof {
            a: a.signed().clone(),
            b: b.signed().clone(),
            consistency,
        };
        proof.check().ok().map(|_| proof)
    }

    /// Checks the proof under the rules of the module docs, with nothing else; returns the
    /// author whose feed is forked.
    pub fn check(&self) -> Result<Author, SplitViewError> {
        let a = author_checkpoint(&self.a, Side::A)?;
        let b = author_checkpoint(&self.b, Side::B)?;
        if a.author() != b.author() {
            return Err(SplitViewError::DifferentFeeds {
                a: a.author(),
                b: b.author(),
            });
        }
        let (bytes_a, bytes_b) = (a.to_bytes(), b.to_bytes());
        match (a.size(), &bytes_a).cmp(&(b.size(), &bytes_b)) {
            std::cmp::Ordering::Equal => return Err(SplitViewError::SameCheckpoint),
            std::cmp::Ordering::Greater => return Err(SplitViewError::NotCanonicalOrder),
            std::cmp::Ordering::Less => {}
        }
        let implied = self.implied_root_of_b_at_a()?;
        if implied == *a.root() {
            return Err(SplitViewError::NotAConflict);
        }
        Ok(a.author())
    }

    /// Which of the two trees the node's own tree agrees with, from its root at the
    /// smaller size (`a`'s): a node that holds the entries up to there needs nothing else.
    /// Meaningful for a proof that checks; for one whose path does not, `b`'s side cannot be
    /// told and only `A` or `Neither` is returned.
    pub fn agreeing_side(&self, own_root_at_smaller: &Hash) -> Agreement {
        if own_root_at_smaller == self.a.checkpoint().root() {
            return Agreement::A;
        }
        match self.implied_root_of_b_at_a() {
            Ok(root) if root == *own_root_at_smaller => Agreement::B,
            _ => Agreement::Neither,
        }
    }

    /// `b`'s tree's root at `a`'s size, as the path implies it.
    fn implied_root_of_b_at_a(&self) -> Result<Hash, SplitViewError> {
        let (a, b) = (self.a.checkpoint(), self.b.checkpoint());
        merkle::consistency_old_root(a.size(), b.size(), b.root(), &self.consistency)
            .map_err(SplitViewError::Consistency)
    }

    /// The fixed encoding of the module docs.
    pub fn encode(&self) -> Vec<u8> {
        let (a, b) = (self.a.to_bytes(), self.b.to_bytes());
        let mut out = Vec::with_capacity(4 + 1 + 2 + a.len() + 2 + b.len() + 1 + 32 * 64);
        out.extend_from_slice(SPLIT_VIEW_MAGIC);
        out.push(SPLIT_VIEW_FORMAT_VERSION);
        for note in [&a, &b] {
            // A proof that checks has notes within the limit; saturating keeps encoding
            // total, and decoding refuses such a length.
            let len = u16::try_from(note.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(note);
        }
        out.push(u8::try_from(self.consistency.len()).unwrap_or(u8::MAX));
        for hash in &self.consistency {
            out.extend_from_slice(hash);
        }
        out
    }

    /// Decodes exactly one encoded proof (not checked: run [`CheckpointForkProof::check`]).
    pub fn decode(bytes: &[u8]) -> Result<CheckpointForkProof, SplitViewDecodeError> {
        let mut reader = Reader { bytes, pos: 0 };
        if reader.take(4)? != SPLIT_VIEW_MAGIC {
            return Err(SplitViewDecodeError::BadMagic);
        }
        let version = reader.take(1)?[0];
        if version != SPLIT_VIEW_FORMAT_VERSION {
            return Err(SplitViewDecodeError::UnknownVersion(version));
        }
        let a = reader.note(Side::A)?;
        let b = reader.note(Side::B)?;
        let count = reader.take(1)?[0];
        if usize::from(count) > MAX_PROOF_HASHES {
            return Err(SplitViewDecodeError::PathTooLong(count));
        }
        let consistency = reader
            .take(usize::from(count) * HASH_BYTES)?
            .chunks_exact(HASH_BYTES)
            .map(|chunk| {
                let mut hash = [0u8; HASH_BYTES];
                hash.copy_from_slice(chunk);
                hash
            })
            .collect();
        let trailing = bytes.len() - reader.pos;
        if trailing != 0 {
            return Err(SplitViewDecodeError::TrailingBytes(trailing));
        }
        Ok(CheckpointForkProof { a, b, consistency })
    }
}

/// `signed` as an author checkpoint that carries no line but the author's.
fn author_checkpoint(
    signed: &SignedCheckpoint,
    side: Side,
) -> Result<AuthorCheckpoint, SplitViewError> {
    let checkpoint = AuthorCheckpoint::verify(signed)
        .map_err(|error| SplitViewError::NotAuthorSigned { side, error })?;
    if signed.note().signatures().len() != 1 {
        return Err(SplitViewError::ExtraSignatures { side });
    }
    Ok(checkpoint)
}

/// A cursor over the bytes being decoded.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// The next `len` bytes (`len` is bounded by the caller's limits, so `pos + len` cannot
    /// overflow).
    fn take(&mut self, len: usize) -> Result<&'a [u8], SplitViewDecodeError> {
        let end = self.pos + len;
        let taken = self
            .bytes
            .get(self.pos..end)
            .ok_or(SplitViewDecodeError::Truncated {
                needed: end,
                found: self.bytes.len(),
            })?;
        self.pos = end;
        Ok(taken)
    }

    fn note(&mut self, side: Side) -> Result<SignedCheckpoint, SplitViewDecodeError> {
        let prefix = self.take(2)?;
        let len = u16::from_be_bytes([prefix[0], prefix[1]]);
        if usize::from(len) > MAX_NOTE_BYTES {
            return Err(SplitViewDecodeError::NoteTooLong { side, len });
        }
        let note = self.take(usize::from(len))?;
        SignedCheckpoint::parse(note).map_err(|error| SplitViewDecodeError::Note { side, error })
    }
}

#[cfg(test)]
#[path = "split_view_tests.rs"]
mod tests;
