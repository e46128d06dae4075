//! Fork proofs: two conflicting signed entries of one author, or two conflicting author
//! checkpoints of one feed (a split view), checkable by anyone with nothing else, and the
//! set of authors known to be forked.
//!
//! A [`ForkProof`] is either kind: [`ForkProof::Entries`] (this module's rules below) or
//! [`ForkProof::Checkpoints`] ([`CheckpointForkProof`], its rules in
//! [`crate::tlog::split_view`]). Both exclude the feed alike: recorded in `DATA_DIR/forks`,
//! counted by the fork set, shown by `GET /forks`.
//!
//! # What a proof shows
//!
//! An author forks when its key signs two different entries at the same seq. A
//! [`ForkProof`] holds both; [`ForkProof::check`] accepts it if and only if:
//!
//! - **same author**: both entries name the same author ([`ForkProofError::DifferentAuthors`]);
//! - **same seq**: both entries sit at the same seq ([`ForkProofError::DifferentSeqs`]);
//! - **different entries**: their hashes differ ([`ForkProofError::SameEntry`]);
//! - **canonical order**: `hash(a) < hash(b)` ([`ForkProofError::NotCanonicalOrder`]), so the
//!   same fork gives the same proof bytes on every node;
//! - **shape**: each entry passes [`validate::check_shape`], i.e. it could sit in a feed
//!   ([`ForkProofError::InvalidEntry`]);
//! - **signatures**: each signature verifies over its entry's hash under
//!   [`crate::signature`]'s rule ([`ForkProofError::BadSignature`]).
//!
//! # Encoding, version 1
//!
//! Used on the wire (inside a sync `ForkProofs` message) and in the data dir's `forks` file,
//! where records are concatenated. All integers big-endian.
//!
//! | size | field                                             |
//! |------|---------------------------------------------------|
//! | 4    | magic `KLFP`                                      |
//! | 1    | proof format version, `0x01`                      |
//! | 4    | `a` length: u32, at most [`MAX_ENCODED_BYTES`]    |
//! | n    | `a`: [`Entry::encode`]                            |
//! | 4    | `b` length: u32, at most [`MAX_ENCODED_BYTES`]    |
//! | n    | `b`: [`Entry::encode`]                            |
//!
//! Lengths are checked against the limit before the entry bytes are touched. Decoding does not
//! check the proof; callers run [`ForkProof::check`] (as [`ForkSet::insert`] does).
//!
//! # Encoding, version 2: a split view
//!
//! | size | field                                                          |
//! |------|----------------------------------------------------------------|
//! | 4    | magic `KLFP`                                                   |
//! | 1    | proof format version, `0x02`                                   |
//! | 4    | length: u32, at most [`MAX_SPLIT_VIEW_PROOF_BYTES`]            |
//! | n    | the split-view proof's encoding (`KLCF`, [`CheckpointForkProof::encode`]) |
//!
//! Version 1 records are written exactly as before, so a `forks` file of entry proofs alone
//! is read by older nodes, and an older node's file is read by this one. A peer of sync v2
//! cannot decode a version 2 record: split-view proofs go to v3 peers only
//! ([`ForkProof::is_v1_encodable`] tells the kinds apart).

use std::collections::BTreeMap;

use crate::entry::{self, Entry, Seq, MAX_ENCODED_BYTES};
use crate::hash::Hash;
use crate::identity::Author;
use crate::signature::{self, SignatureError};
use crate::tlog::split_view::{
    CheckpointForkProof, SplitViewDecodeError, SplitViewError, MAX_SPLIT_VIEW_PROOF_BYTES,
};
use crate::validate::{self, ValidationError};

/// The four magic bytes that open every encoded proof.
pub const PROOF_MAGIC: &[u8; 4] = b"KLFP";
/// The proof format version byte of an entry fork.
pub const PROOF_FORMAT_VERSION: u8 = 1;
/// The proof format version byte of a split view (two conflicting author checkpoints).
pub const SPLIT_VIEW_RECORD_VERSION: u8 = 2;
/// Magic, version and the two length prefixes.
pub const PROOF_HEADER_BYTES: usize = 4 + 1 + 4 + 4;
/// The longest encoded proof, in bytes (an entry fork's; a split view's is far shorter).
pub const MAX_PROOF_BYTES: usize = PROOF_HEADER_BYTES + 2 * MAX_ENCODED_BYTES;
const _: () = assert!(4 + 1 + 4 + MAX_SPLIT_VIEW_PROOF_BYTES <= MAX_PROOF_BYTES);

/// Which of the two entries of a proof a failure is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The entry with the lower hash ([`ForkProof::a`]).
    A,
    /// The entry with the higher hash ([`ForkProof::b`]).
    B,
}

/// Why a proof does not prove a fork. One variant per rule of the module docs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForkProofError {
    /// The two entries name different authors, so they cannot conflict.
    #[error("entries are by different authors ({a} and {b})")]
    DifferentAuthors {
        /// The author of entry `a`.
        a: Author,
        /// The author of entry `b`.
        b: Author,
    },
    /// The two entries sit at different seqs of the feed, so they cannot conflict.
    #[error("entries are at different seqs ({a} and {b})")]
    DifferentSeqs {
        /// The seq of entry `a`.
        a: Seq,
        /// The seq of entry `b`.
        b: Seq,
    },
    /// Both sides are one entry: a repeat, not a fork.
    #[error("both entries are the same entry {hash}")]
    SameEntry {
        /// The hash both sides share.
        hash: Hash,
    },
    /// `hash(a) >= hash(b)`: the same fork would encode to other bytes elsewhere.
    #[error("entries are not in canonical order (hash of a must be below hash of b)")]
    NotCanonicalOrder,
    /// One entry could not sit in any feed ([`validate::check_shape`] refuses it).
    #[error("entry {side:?} is not a valid feed entry: {error}")]
    InvalidEntry {
        /// Which entry fails.
        side: Side,
        /// The shape rule it breaks.
        error: ValidationError,
    },
    /// One entry's signature does not verify over its hash under its author's key.
    #[error("entry {side:?} has a bad signature: {error}")]
    BadSignature {
        /// Which entry fails.
        side: Side,
        /// Why the signature does not verify.
        error: SignatureError,
    },
    /// A split view that does not prove one ([`CheckpointForkProof::check`]).
    #[error("split view: {0}")]
    SplitView(SplitViewError),
}

/// Why bytes are not an encoded proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofDecodeError {
    /// A split-view record's length is over [`MAX_SPLIT_VIEW_PROOF_BYTES`].
    #[error("split-view proof length {0} exceeds the limit")]
    SplitViewTooLong(u32),
    /// A split-view record's bytes are not a split-view proof.
    #[error("split-view proof does not decode: {0}")]
    SplitView(SplitViewDecodeError),
    /// The bytes end before the proof does.
    #[error("proof too short: need {needed} bytes, got {found}")]
    Truncated {
        /// Bytes the proof needs, as far as its header tells.
        needed: usize,
        /// Bytes given.
        found: usize,
    },
    /// The first four bytes are not [`PROOF_MAGIC`].
    #[error("bad proof magic")]
    BadMagic,
    /// The version byte (carried) is not [`PROOF_FORMAT_VERSION`].
    #[error("unsupported proof format version {0}")]
    UnknownVersion(u8),
    /// A length prefix is over [`MAX_ENCODED_BYTES`]; refused before anything is allocated.
    #[error("entry {side:?} length {len} exceeds the limit of {MAX_ENCODED_BYTES} bytes")]
    EntryTooLong {
        /// Which entry's prefix is too long.
        side: Side,
        /// The length the prefix claims, in bytes.
        len: u32,
    },
    /// An entry's bytes are not an encoded entry.
    #[error("entry {side:?} does not decode: {error}")]
    Entry {
        /// Which entry fails.
        side: Side,
        /// Why its bytes do not decode.
        error: entry::DecodeError,
    },
    /// Bytes (count carried) follow a complete proof where none may.
    #[error("{0} trailing bytes after the proof")]
    TrailingBytes(usize),
}

/// A proof that a feed forked: two entries at one seq, or a split view.
// Entry forks are the common kind and were this size before split views existed; boxing
// them would add an allocation to every proof read, for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForkProof {
    /// Two conflicting signed entries at one seq (encoding version 1).
    Entries(EntryFork),
    /// Two conflicting author checkpoints (encoding version 2; v3 sync peers only).
    Checkpoints(Box<CheckpointForkProof>),
}

impl ForkProof {
    /// An entry-fork proof from two entries in either order (the result is in canonical
    /// order). Not checked: run [`ForkProof::check`].
    pub fn new(x: Entry, y: Entry) -> ForkProof {
        ForkProof::Entries(EntryFork::new(x, y))
    }

    /// The author the proof is about (whether or not it checks; for a split view whose
    /// first origin is not a feed's, the zero author, which its check refuses).
    pub fn author(&self) -> Author {
        match self {
            ForkProof::Entries(fork) => fork.a.author,
            ForkProof::Checkpoints(view) => {
                crate::tlog::author_checkpoint::author_of_origin(view.a.checkpoint().origin())
                    .unwrap_or(Author([0; 32]))
            }
        }
    }

    /// Where the feed forks: the seq of an entry fork; for a split view, the first seq
    /// the two checkpoints may disagree on (one past the smaller size, at least 1).
    pub fn seq(&self) -> Seq {
        match self {
            ForkProof::Entries(fork) => fork.a.seq,
            ForkProof::Checkpoints(view) => view.a.checkpoint().size().max(1),
        }
    }

    /// The entry fork, if this is one.
    pub fn entries(&self) -> Option<&EntryFork> {
        match self {
            ForkProof::Entries(fork) => Some(fork),
            ForkProof::Checkpoints(_) => None,
        }
    }

    /// Whether the proof has a version 1 encoding, which every sync peer decodes; a split
    /// view (version 2) goes to v3 peers only.
    pub fn is_v1_encodable(&self) -> bool {
        matches!(self, ForkProof::Entries(_))
    }

    /// Checks the proof with nothing else; returns the forked author.
    pub fn check(&self) -> Result<Author, ForkProofError> {
        match self {
            ForkProof::Entries(fork) => fork.check(),
            ForkProof::Checkpoints(view) => view.check().map_err(ForkProofError::SplitView),
        }
    }

    /// The encoding of the module docs: version 1 for entries, version 2 for a split view.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ForkProof::Entries(fork) => fork.encode(),
            ForkProof::Checkpoints(view) => {
                let inner = view.encode();
                let mut out = Vec::with_capacity(9 + inner.len());
                out.extend_from_slice(PROOF_MAGIC);
                out.push(SPLIT_VIEW_RECORD_VERSION);
                // Bounded by MAX_SPLIT_VIEW_PROOF_BYTES for a proof that decoded or was built.
                let len = u32::try_from(inner.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&inner);
                out
            }
        }
    }

    /// Decodes exactly one encoded proof.
    pub fn decode(bytes: &[u8]) -> Result<ForkProof, ProofDecodeError> {
        match decode_prefix(bytes)? {
            Prefix::Complete { proof, used } if used == bytes.len() => Ok(*proof),
            Prefix::Complete { used, .. } => Err(ProofDecodeError::TrailingBytes(
                bytes.len().saturating_sub(used),
            )),
            Prefix::Incomplete { needed } => Err(ProofDecodeError::Truncated {
                needed,
                found: bytes.len(),
            }),
        }
    }
}

impl From<CheckpointForkProof> for ForkProof {
    fn from(view: CheckpointForkProof) -> ForkProof {
        ForkProof::Checkpoints(Box::new(view))
    }
}

/// Two conflicting signed entries of one author. Build with [`EntryFork::new`], which puts
/// them in canonical order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryFork {
    /// The entry with the lower hash.
    pub a: Entry,
    /// The entry with the higher hash; same author and seq as `a` in a proof that checks.
    pub b: Entry,
}

impl EntryFork {
    /// A proof from two entries in either order (the result is in canonical order).
    pub fn new(x: Entry, y: Entry) -> EntryFork {
        if x.hash() <= y.hash() {
            EntryFork { a: x, b: y }
        } else {
            EntryFork { a: y, b: x }
        }
    }

    /// Checks the proof with nothing else (the module docs' rules); returns the author.
    pub fn check(&self) -> Result<Author, ForkProofError> {
        let (a, b) = (&self.a, &self.b);
        if a.author != b.author {
            return Err(ForkProofError::DifferentAuthors {
                a: a.author,
                b: b.author,
            });
        }
        if a.seq != b.seq {
            return Err(ForkProofError::DifferentSeqs { a: a.seq, b: b.seq });
        }
        let (hash_a, hash_b) = (a.hash(), b.hash());
        if hash_a == hash_b {
            return Err(ForkProofError::SameEntry { hash: hash_a });
        }
        if hash_a > hash_b {
            return Err(ForkProofError::NotCanonicalOrder);
        }
        for (side, entry, hash) in [(Side::A, a, &hash_a), (Side::B, b, &hash_b)] {
            validate::check_shape(entry)
                .map_err(|error| ForkProofError::InvalidEntry { side, error })?;
            signature::verify(&entry.author, hash, &entry.signature)
                .map_err(|error| ForkProofError::BadSignature { side, error })?;
        }
        Ok(a.author)
    }

    /// The fixed encoding of the module docs (version 1).
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(PROOF_HEADER_BYTES + self.a.encoded_len() + self.b.encoded_len());
        out.extend_from_slice(PROOF_MAGIC);
        out.push(PROOF_FORMAT_VERSION);
        for entry in [&self.a, &self.b] {
            // Encoded entries are at most MAX_ENCODED_BYTES for validated entries; saturating
            // keeps encoding total and decoding rejects such a length.
            let len = u32::try_from(entry.encoded_len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            entry.encode_to(&mut out);
        }
        out
    }
}

/// The outcome of decoding a proof at the start of a byte slice.
enum Prefix {
    Complete {
        proof: Box<ForkProof>,
        used: usize,
    },
    /// The slice ends inside the proof; `needed` is a lower bound on the bytes required.
    Incomplete {
        needed: usize,
    },
}

fn decode_prefix(bytes: &[u8]) -> Result<Prefix, ProofDecodeError> {
    let header = 4 + 1;
    if bytes.len() < header {
        // Judge the magic on what is there, so garbage is not mistaken for a torn tail.
        if !PROOF_MAGIC.starts_with(&bytes[..bytes.len().min(4)]) {
            return Err(ProofDecodeError::BadMagic);
        }
        return Ok(Prefix::Incomplete { needed: header });
    }
    if &bytes[..4] != PROOF_MAGIC {
        return Err(ProofDecodeError::BadMagic);
    }
    if bytes[4] == SPLIT_VIEW_RECORD_VERSION {
        return decode_split_view(bytes);
    }
    if bytes[4] != PROOF_FORMAT_VERSION {
        return Err(ProofDecodeError::UnknownVersion(bytes[4]));
    }
    let mut pos = header;
    let mut entries = Vec::with_capacity(2);
    for side in [Side::A, Side::B] {
        let Some(len_bytes) = bytes.get(pos..pos + 4) else {
            return Ok(Prefix::Incomplete { needed: pos + 4 });
        };
        let mut len_array = [0u8; 4];
        len_array.copy_from_slice(len_bytes);
        let len32 = u32::from_be_bytes(len_array);
        let len = usize::try_from(len32)
            .ok()
            .filter(|&len| len <= MAX_ENCODED_BYTES)
            .ok_or(ProofDecodeError::EntryTooLong { side, len: len32 })?;
        pos += 4;
        // pos + len cannot overflow: both are bounded by the slice length and the limit.
        let Some(entry_bytes) = bytes.get(pos..pos + len) else {
            return Ok(Prefix::Incomplete { needed: pos + len });
        };
        let (entry, _) =
            Entry::decode(entry_bytes).map_err(|error| ProofDecodeError::Entry { side, error })?;
        entries.push(entry);
        pos += len;
    }
    let b = entries.pop();
    let a = entries.pop();
    match (a, b) {
        (Some(a), Some(b)) => Ok(Prefix::Complete {
            proof: Box::new(ForkProof::Entries(EntryFork { a, b })),
            used: pos,
        }),
        // The loop above pushes exactly two entries or returns early.
        _ => Ok(Prefix::Incomplete { needed: pos }),
    }
}

/// A version 2 record at the start of `bytes` (magic and version already checked).
fn decode_split_view(bytes: &[u8]) -> Result<Prefix, ProofDecodeError> {
    let Some(len_bytes) = bytes.get(5..9) else {
        return Ok(Prefix::Incomplete { needed: 9 });
    };
    let mut len_array = [0u8; 4];
    len_array.copy_from_slice(len_bytes);
    let len32 = u32::from_be_bytes(len_array);
    let len = usize::try_from(len32)
        .ok()
        .filter(|&len| len <= MAX_SPLIT_VIEW_PROOF_BYTES)
        .ok_or(ProofDecodeError::SplitViewTooLong(len32))?;
    let Some(inner) = bytes.get(9..9 + len) else {
        return Ok(Prefix::Incomplete { needed: 9 + len });
    };
    let view = CheckpointForkProof::decode(inner).map_err(ProofDecodeError::SplitView)?;
    Ok(Prefix::Complete {
        proof: Box::new(ForkProof::Checkpoints(Box::new(view))),
        used: 9 + len,
    })
}

/// The proofs read from a `forks` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedProofs {
    /// Every complete record, in file order (not checked: see [`ForkSet::insert`]).
    pub proofs: Vec<ForkProof>,
    /// Bytes of complete records; a torn tail starts here (truncate the file to this length).
    pub valid_len: usize,
    /// Whether the file ends in an incomplete record (a crash during an append).
    pub torn_tail: bool,
}

/// A complete record in the middle of a `forks` file that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt fork proof at byte {offset}: {error}")]
pub struct CorruptProof {
    /// Byte offset in the file where the bad record starts.
    pub offset: usize,
    /// Why the record does not decode.
    pub error: ProofDecodeError,
}

/// Decodes concatenated proof records. An incomplete last record is a torn tail (an expected
/// outcome after a crash), reported in the result; anything else that does not decode is
/// corruption, reported with its byte offset.
pub fn decode_all(bytes: &[u8]) -> Result<DecodedProofs, CorruptProof> {
    let mut proofs = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        match decode_prefix(&bytes[offset..]) {
            Ok(Prefix::Complete { proof, used }) => {
                proofs.push(*proof);
                offset += used;
            }
            Ok(Prefix::Incomplete { .. }) => {
                return Ok(DecodedProofs {
                    proofs,
                    valid_len: offset,
                    torn_tail: true,
                })
            }
            Err(error) => return Err(CorruptProof { offset, error }),
        }
    }
    Ok(DecodedProofs {
        proofs,
        valid_len: offset,
        torn_tail: false,
    })
}

/// The authors known to be forked, each with the first valid proof recorded for it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForkSet {
    proofs: BTreeMap<Author, ForkProof>,
}

impl ForkSet {
    /// No author known to be forked.
    pub fn new() -> ForkSet {
        ForkSet::default()
    }

    /// Checks `proof` and records it. Returns `Ok(true)` if its author was not known to be
    /// forked (the caller persists and broadcasts it), `Ok(false)` if it already was (the
    /// first proof is kept).
    pub fn insert(&mut self, proof: ForkProof) -> Result<bool, ForkProofError> {
        let author = proof.check()?;
        if self.proofs.contains_key(&author) {
            return Ok(false);
        }
        self.proofs.insert(author, proof);
        Ok(true)
    }

    /// Whether `author` is known to be forked.
    pub fn contains(&self, author: &Author) -> bool {
        self.proofs.contains_key(author)
    }

    /// The first proof recorded for `author`, if it is known to be forked.
    pub fn get(&self, author: &Author) -> Option<&ForkProof> {
        self.proofs.get(author)
    }

    /// The proofs in ascending author order.
    pub fn iter(&self) -> impl Iterator<Item = (&Author, &ForkProof)> {
        self.proofs.iter()
    }

    /// The forked authors in ascending order.
    pub fn authors(&self) -> impl Iterator<Item = &Author> {
        self.proofs.keys()
    }

    /// How many authors are known to be forked.
    pub fn len(&self) -> usize {
        self.proofs.len()
    }

    /// Whether no author is known to be forked.
    pub fn is_empty(&self) -> bool {
        self.proofs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::UnsignedEntry;
    use crate::identity::Identity;

    fn entry(id: &Identity, seq: Seq, value: i64) -> Entry {
        UnsignedEntry {
            author: id.author(),
            seq,
            timestamp: 1_700_000_000_000,
            prev: if seq == 1 { None } else { Some(Hash([7; 32])) },
            value,
            data: format!("value {value}"),
        }
        .sign(id)
        .0
    }

    fn valid() -> EntryFork {
        let id = Identity::from_seed([1; 32]);
        EntryFork::new(entry(&id, 3, 10), entry(&id, 3, 20))
    }

    /// Re-signs `e` after a change so that only the intended rule fails.
    fn resign(mut e: Entry, id: &Identity) -> Entry {
        e.signature = id.sign_hash(&e.hash());
        e
    }

    #[test]
    fn valid_proof_checks_and_names_the_author() {
        let p = valid();
        assert_eq!(p.check(), Ok(Identity::from_seed([1; 32]).author()));
        assert!(p.a.hash() < p.b.hash());
    }

    #[test]
    fn new_is_order_independent() {
        let p = valid();
        assert_eq!(EntryFork::new(p.b.clone(), p.a.clone()), p);
        assert_eq!(
            EntryFork::new(p.b.clone(), p.a.clone()).encode(),
            p.encode()
        );
    }

    #[test]
    fn different_authors() {
        let mut p = valid();
        let other = Identity::from_seed([2; 32]);
        p.b.author = other.author();
        let b = resign(p.b.clone(), &other);
        let p = EntryFork::new(p.a, b);
        assert!(matches!(
            p.check(),
            Err(ForkProofError::DifferentAuthors { .. })
        ));
    }

    #[test]
    fn different_seqs() {
        let id = Identity::from_seed([1; 32]);
        let p = valid();
        let mut b = p.b.clone();
        b.seq = 4;
        let p = EntryFork::new(p.a, resign(b, &id));
        assert_eq!(
            p.check(),
            Err(ForkProofError::DifferentSeqs {
                a: p.a.seq,
                b: p.b.seq
            })
        );
    }

    #[test]
    fn same_entry() {
        let p = valid();
        let same = EntryFork {
            a: p.a.clone(),
            b: p.a.clone(),
        };
        assert_eq!(
            same.check(),
            Err(ForkProofError::SameEntry { hash: p.a.hash() })
        );
    }

    #[test]
    fn not_canonical_order() {
        let p = valid();
        let swapped = EntryFork { a: p.b, b: p.a };
        assert_eq!(swapped.check(), Err(ForkProofError::NotCanonicalOrder));
    }

    #[test]
    fn invalid_entry_shape() {
        let id = Identity::from_seed([1; 32]);
        let p = valid();
        let mut b = p.b.clone();
        b.prev = None; // seq 3 without prev
        let b = resign(b, &id);
        let p = EntryFork::new(p.a, b);
        let side = if p.a.prev.is_none() { Side::A } else { Side::B };
        assert_eq!(
            p.check(),
            Err(ForkProofError::InvalidEntry {
                side,
                error: ValidationError::PrevMissing { seq: 3 }
            })
        );
    }

    #[test]
    fn bad_signature() {
        let mut p = valid();
        p.b.signature.0[40] ^= 1;
        assert!(matches!(
            p.check(),
            Err(ForkProofError::BadSignature { side: Side::B, .. })
        ));
        let mut p = valid();
        p.a.signature = p.b.signature;
        assert_eq!(
            p.check(),
            Err(ForkProofError::BadSignature {
                side: Side::A,
                error: SignatureError::Mismatch
            })
        );
    }

    #[test]
    fn encoding_round_trips_and_has_the_documented_layout() {
        let p = valid();
        let bytes = p.encode();
        assert_eq!(&bytes[..4], b"KLFP");
        assert_eq!(bytes[4], 1);
        let len_a = u32::from_be_bytes(bytes[5..9].try_into().unwrap()) as usize;
        assert_eq!(&bytes[9..9 + len_a], p.a.encode().as_slice());
        assert_eq!(ForkProof::decode(&bytes), Ok(ForkProof::Entries(p)));
        assert!(bytes.len() <= MAX_PROOF_BYTES);
    }

    #[test]
    fn decode_rejects_each_malformation() {
        let bytes = valid().encode();
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert_eq!(ForkProof::decode(&bad), Err(ProofDecodeError::BadMagic));
        let mut bad = bytes.clone();
        bad[4] = 3;
        assert_eq!(
            ForkProof::decode(&bad),
            Err(ProofDecodeError::UnknownVersion(3))
        );
        let mut bad = bytes.clone();
        bad[5..9].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            ForkProof::decode(&bad),
            Err(ProofDecodeError::EntryTooLong {
                side: Side::A,
                len: u32::MAX
            })
        );
        let mut bad = bytes.clone();
        bad[9] = 9; // entry format version
        assert!(matches!(
            ForkProof::decode(&bad),
            Err(ProofDecodeError::Entry { side: Side::A, .. })
        ));
        assert!(matches!(
            ForkProof::decode(&bytes[..bytes.len() - 1]),
            Err(ProofDecodeError::Truncated { .. })
        ));
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            ForkProof::decode(&long),
            Err(ProofDecodeError::TrailingBytes(1))
        );
    }

    #[test]
    fn decode_all_reports_torn_tail_and_corruption() {
        let one = valid().encode();
        let id = Identity::from_seed([5; 32]);
        let two = EntryFork::new(entry(&id, 1, 1), entry(&id, 1, 2)).encode();
        let mut file = [one.clone(), two.clone()].concat();
        let all = decode_all(&file).unwrap();
        assert_eq!(all.proofs.len(), 2);
        assert!(!all.torn_tail);
        assert_eq!(all.valid_len, file.len());

        for cut in [1, 4, 5, 7, 9, 100, two.len() - 1] {
            let torn = &file[..one.len() + cut];
            let d = decode_all(torn).unwrap();
            assert_eq!(d.proofs.len(), 1, "cut {cut}");
            assert!(d.torn_tail, "cut {cut}");
            assert_eq!(d.valid_len, one.len());
        }

        file[one.len()] = b'Z';
        assert_eq!(
            decode_all(&file),
            Err(CorruptProof {
                offset: one.len(),
                error: ProofDecodeError::BadMagic
            })
        );
        assert_eq!(
            decode_all(&[]).unwrap(),
            DecodedProofs {
                proofs: vec![],
                valid_len: 0,
                torn_tail: false
            }
        );
    }

    #[test]
    fn fork_set_insert_checks_and_keeps_the_first() {
        let mut set = ForkSet::new();
        let entries = valid();
        let p = ForkProof::Entries(entries.clone());
        assert_eq!(set.insert(p.clone()), Ok(true));
        assert_eq!(set.insert(p.clone()), Ok(false));
        let id = Identity::from_seed([1; 32]);
        let other = ForkProof::new(entry(&id, 5, 1), entry(&id, 5, 2));
        assert_eq!(set.insert(other), Ok(false));
        assert_eq!(set.get(&p.author()), Some(&p));
        let swapped = ForkProof::Entries(EntryFork {
            a: entries.b.clone(),
            b: entries.a.clone(),
        });
        let mut empty = ForkSet::new();
        assert_eq!(
            empty.insert(swapped),
            Err(ForkProofError::NotCanonicalOrder)
        );
        assert!(empty.is_empty());
        assert!(set.contains(&p.author()));
        assert_eq!(set.len(), 1);
    }

    fn split_view() -> ForkProof {
        let id = Identity::from_seed([4; 32]);
        let signed = |root| {
            let body = crate::tlog::checkpoint::Checkpoint::new(
                &crate::tlog::checkpoint::origin_for(id.author().as_bytes()),
                5,
                root,
            )
            .unwrap();
            crate::tlog::checkpoint::SignedCheckpoint::sign(body, id.signing_key()).unwrap()
        };
        let view =
            CheckpointForkProof::from_conflict(&signed([1; 32]), &signed([2; 32]), &[0; 32], &[])
                .expect("two roots at one size conflict");
        ForkProof::from(view)
    }

    #[test]
    fn split_views_are_version_2_records_beside_entry_forks() {
        let view = split_view();
        assert_eq!(view.check(), Ok(Identity::from_seed([4; 32]).author()));
        assert!(!view.is_v1_encodable());
        assert!(ForkProof::Entries(valid()).is_v1_encodable());
        let bytes = view.encode();
        assert_eq!(
            (&bytes[..4], bytes[4]),
            (&b"KLFP"[..], SPLIT_VIEW_RECORD_VERSION)
        );
        assert_eq!(ForkProof::decode(&bytes), Ok(view.clone()));
        let entries = valid().encode();
        let file = [entries.clone(), bytes.clone()].concat();
        assert_eq!(decode_all(&file).unwrap().proofs.len(), 2);
        for cut in [1, 5, 8, 9, bytes.len() - 1] {
            let d = decode_all(&file[..entries.len() + cut]).unwrap();
            assert!(d.torn_tail && d.valid_len == entries.len(), "cut {cut}");
        }
        let mut long = bytes.clone();
        long[5..9].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            ForkProof::decode(&long),
            Err(ProofDecodeError::SplitViewTooLong(u32::MAX))
        );
    }
}
