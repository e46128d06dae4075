//! kappalog's use of `c2sp.org/tlog-proof@v1` bundles: one entry of one feed, proved to be
//! in a checkpoint its author signed, verifiable offline by anyone holding the bundle.
//! (Not to be confused with tlog-tiles' *entry bundles*, a tile's entries concatenated:
//! [`crate::tlog::tiles`].)
//!
//! # What a kappalog bundle is
//!
//! A [`TlogProof`] whose
//!
//! - `extra` line carries the entry's encoded bytes (docs/FORMAT.md section 2,
//!   [`Entry::encode`]); the leaf hash is [`merkle::leaf_hash`] of exactly those bytes;
//! - `index` is the entry's `seq - 1` (leaf i is the entry at seq i + 1);
//! - checkpoint's origin is [`origin_for`] the entry's author, and the author's signature on
//!   it verifies under [`author_vkey`] of the entry's author key.
//!
//! A feed is self-certifying: the author key in the entry is the log key, so no outside
//! trust is needed to check that the author vouched for the tree. Witnesses are what a
//! policy adds: they say the author showed the *same* tree to them, which rules out a
//! split view.
//!
//! # Verification, in order ([`verify_entry_proof`])
//!
//! Each rule is its own [`EntryProofError`] variant; the first that fails is reported.
//!
//! 1. **Size**: at most [`MAX_BUNDLE_BYTES`], checked before parsing.
//! 2. **Parse**: the bundle is well-formed ([`TlogProof::parse`]: strict and bounded).
//! 3. **Entry**: there is an extra line, it decodes as exactly one entry, the entry's shape
//!    is valid and its own signature verifies ([`crate::validate`]'s rules, the same the
//!    store applies).
//! 4. **Index**: the bundle's index is the entry's seq minus one.
//! 5. **Origin**: the checkpoint's origin is the entry's feed.
//! 6. **Checkpoint signature**: the entry's author signed the checkpoint.
//! 7. **Inclusion**: the audit path leads from the entry's leaf hash to the checkpoint's
//!    root ([`merkle::verify_inclusion`]).
//! 8. **Policy** (when one is given): if it lists logs, the feed is one of them; the
//!    cosignatures of its witnesses verify and meet its quorum. Without a policy nothing is
//!    said about witnesses: the result lists the names on the other signature lines as
//!    present but unchecked.

use ed25519_dalek::VerifyingKey;

use crate::entry::{DecodeError, Entry};
use crate::hash::Hash;
use crate::tlog::checkpoint::{author_vkey, origin_for, CheckpointError, SignedCheckpoint};
use crate::tlog::merkle;
use crate::tlog::policy::Policy;
use crate::tlog::proof::{ProofError, ProofVerifyError, TlogProof, MAX_PROOF_BYTES};
use crate::tlog::vkey::VerifierKey;
use crate::validate::{check_shape, check_signature, ValidationError};

/// The largest bundle read: the bundle format's own cap ([`MAX_PROOF_BYTES`]: a 16 KiB
/// extra, 63 hashes and a 128 KiB note). A reader stops one byte past it, so a hostile file
/// or pipe costs at most this much memory.
pub const MAX_BUNDLE_BYTES: usize = MAX_PROOF_BYTES;

/// Why a bundle does not prove its entry; each message is one line for a user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryProofError {
    /// More than [`MAX_BUNDLE_BYTES`].
    #[error("the bundle is larger than {MAX_BUNDLE_BYTES} bytes")]
    TooLarge,
    /// Not a well-formed `c2sp.org/tlog-proof@v1` bundle.
    #[error("not a proof bundle: {0}")]
    Malformed(ProofError),
    /// The bundle has no extra line, so no entry to prove.
    #[error("the bundle carries no entry (no extra line)")]
    NoEntry,
    /// The extra line is not one encoded entry.
    #[error("the bundle's entry does not decode: {0}")]
    EntryDecode(DecodeError),
    /// The entry breaks a rule of its own shape (seq, prev, data length).
    #[error("the bundle's entry is invalid: {0}")]
    EntryShape(ValidationError),
    /// The entry's own signature does not verify under its author key.
    #[error("the entry's signature does not verify: {0}")]
    EntrySignature(ValidationError),
    /// The bundle's index is not the entry's seq minus one.
    #[error("the bundle proves leaf {index}, but the entry at seq {seq} is leaf {}", seq - 1)]
    WrongIndex {
        /// The bundle's index.
        index: u64,
        /// The entry's seq (at least 1: the shape rule checked it).
        seq: u64,
    },
    /// The checkpoint is another feed's (or another log's).
    #[error("the checkpoint is for {found}, not the entry's feed {expected}")]
    WrongOrigin {
        /// The checkpoint's origin.
        found: String,
        /// The entry's feed origin.
        expected: String,
    },
    /// The entry's author key is not an Ed25519 public key that can check a note.
    #[error("the entry's author key is not a usable Ed25519 public key")]
    AuthorKey,
    /// The checkpoint is not signed by the entry's author.
    #[error("the checkpoint is not signed by the entry's author: {0}")]
    CheckpointSignature(CheckpointError),
    /// The audit path does not lead to the checkpoint's root.
    #[error("the entry is not in the checkpoint's tree: {0}")]
    NotIncluded(merkle::VerifyError),
    /// The policy lists logs, and this feed is not one of them.
    #[error("the policy does not trust this feed (its log lines do not name {0})")]
    UntrustedFeed(String),
    /// A witness of the policy signed a line that does not verify: the bundle was altered.
    #[error("the cosignature by witness {0} does not verify")]
    BadCosignature(String),
    /// The verified cosignatures do not meet the policy's quorum.
    #[error("the policy's witness quorum is not met ({cosigned} of its witnesses cosigned)")]
    QuorumNotMet {
        /// How many of the policy's witnesses cosigned.
        cosigned: usize,
    },
}

/// What a verified bundle established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEntry {
    /// The entry, whose own signature verified.
    pub entry: Entry,
    /// Its entry hash (docs/FORMAT.md).
    pub hash: Hash,
    /// The checkpoint of the tree it was proved in, as the bundle carried it (cosignature
    /// lines included): what a light client remembers.
    pub checkpoint: SignedCheckpoint,
    /// What is known about the checkpoint's witnesses.
    pub cosigners: Cosigners,
}

impl VerifiedEntry {
    /// The size of the tree it was proved in.
    pub fn tree_size(&self) -> u64 {
        self.checkpoint.checkpoint().size()
    }

    /// That tree's root.
    pub fn root(&self) -> &[u8; 32] {
        self.checkpoint.checkpoint().root()
    }
}

/// The checkpoint's cosignatures, as far as they were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cosigners {
    /// A policy was given: the witnesses (their policy names, in the policy's order) whose
    /// cosignatures verified; they meet its quorum.
    Verified(Vec<String>),
    /// No policy: the key names of the signature lines other than the author's, which
    /// nothing checked (the verifier knows no witness keys).
    Unchecked(Vec<String>),
}

/// Verifies a kappalog entry bundle under every rule of the module docs, in their order.
pub fn verify_entry_proof(
    bytes: &[u8],
    policy: Option<&Policy>,
) -> Result<VerifiedEntry, EntryProofError> {
    if bytes.len() > MAX_BUNDLE_BYTES {
        return Err(EntryProofError::TooLarge);
    }
    let proof = TlogProof::parse(bytes).map_err(EntryProofError::Malformed)?;
    let encoded = proof.extra().ok_or(EntryProofError::NoEntry)?;
    let (entry, hash) = Entry::decode(encoded).map_err(EntryProofError::EntryDecode)?;
    check_shape(&entry).map_err(EntryProofError::EntryShape)?;
    check_signature(&entry, &hash).map_err(EntryProofError::EntrySignature)?;

    // The shape rule refused seq 0, so this cannot wrap.
    if proof.index() != entry.seq - 1 {
        return Err(EntryProofError::WrongIndex {
            index: proof.index(),
            seq: entry.seq,
        });
    }
    let signed = proof.checkpoint();
    let checkpoint = signed.checkpoint();
    let origin = origin_for(entry.author.as_bytes());
    if checkpoint.origin() != origin {
        return Err(EntryProofError::WrongOrigin {
            found: checkpoint.origin().to_owned(),
            expected: origin,
        });
    }
    // The entry's signature verified under this key, so it decodes; should the two Ed25519
    // decoders ever disagree, the bundle is refused rather than trusted.
    let author = VerifyingKey::from_bytes(entry.author.as_bytes())
        .map_err(|_| EntryProofError::AuthorKey)?;
    let author = author_vkey(&author);
    signed
        .verify_author(&author)
        .map_err(EntryProofError::CheckpointSignature)?;
    merkle::verify_inclusion(
        &merkle::leaf_hash(encoded),
        proof.index(),
        checkpoint.size(),
        proof.hashes(),
        checkpoint.root(),
    )
    .map_err(EntryProofError::NotIncluded)?;

    let cosigners = match policy {
        Some(policy) => Cosigners::Verified(check_policy(&proof, &author, policy)?),
        None => Cosigners::Unchecked(other_signers(signed, &origin)),
    };
    Ok(VerifiedEntry {
        checkpoint: signed.clone(),
        entry,
        hash,
        cosigners,
    })
}

/// The policy's verdict: the feed is trusted (when the policy names logs at all), and the
/// names of the witnesses whose cosignatures verified, which meet the quorum.
fn check_policy(
    proof: &TlogProof,
    author: &VerifierKey,
    policy: &Policy,
) -> Result<Vec<String>, EntryProofError> {
    // A policy without log lines is about witnesses only: any self-certified feed will do.
    if !policy.logs().is_empty() && !policy.logs().iter().any(|log| log.vkey == *author) {
        return Err(EntryProofError::UntrustedFeed(author.name().to_owned()));
    }
    let cosigned = proof.verify_cosignatures(policy).map_err(|e| match e {
        ProofVerifyError::BadCosignature(name) => EntryProofError::BadCosignature(name),
        // verify_cosignatures reports nothing else; should that change, refusing is the
        // safe reading: the witnesses did not vouch for the checkpoint.
        _ => EntryProofError::QuorumNotMet { cosigned: 0 },
    })?;
    if !policy.quorum_met(&cosigned) {
        return Err(EntryProofError::QuorumNotMet {
            cosigned: cosigned.len(),
        });
    }
    Ok(cosigned
        .iter()
        .filter_map(|&i| policy.witnesses().get(i))
        .map(|w| String::from_utf8_lossy(&w.name).into_owned())
        .collect())
}

/// The key names on the checkpoint's signature lines other than the author's, in order,
/// each once.
fn other_signers(signed: &SignedCheckpoint, origin: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for line in signed.note().signatures() {
        if line.name() != origin && !names.iter().any(|n| n == line.name()) {
            names.push(line.name().to_owned());
        }
    }
    names
}

/// The bundle of the entry whose encoding is `encoded` (docs/FORMAT.md section 2), at leaf
/// `index` (its seq minus one), with its audit path `hashes` (sibling first) against the
/// author-signed `checkpoint`: what a node serves for `GET /feeds/AUTHOR/proof`. Refuses what
/// [`TlogProof::new`] refuses (an empty or oversized entry, too many hashes, an index not
/// below the checkpoint's size).
pub fn make_entry_proof(
    encoded: Vec<u8>,
    index: u64,
    hashes: Vec<[u8; 32]>,
    checkpoint: SignedCheckpoint,
) -> Result<TlogProof, ProofError> {
    TlogProof::new(Some(encoded), index, hashes, checkpoint)
}

#[cfg(test)]
#[path = "bundle_tests.rs"]
mod tests;
