//! `c2sp.org/tlog-proof@v1` bundles: an entry's inclusion proof with the signed checkpoint it
//! is proved against, verifiable offline.
//!
//! # Format
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64 of opaque data>        (optional)
//! index <leaf index: decimal, no leading zeros>
//! <base64 proof hash>                  (0 to 63 lines, leaf's sibling first)
//! <blank line>
//! <the signed checkpoint, verbatim>
//! ```
//!
//! In kappalog's bundles the `extra` line carries the entry's encoding (docs/FORMAT.md
//! section 2), whose leaf hash is `SHA-256(0x00 || encoding)`; leaf i is the entry at seq
//! i + 1. The extra data is not authenticated by the bundle: a verifier trusts it only
//! through the leaf hash it recomputes from it.
//!
//! [`TlogProof::parse`] is strict and bounded ([`MAX_PROOF_BYTES`], [`MAX_EXTRA_BYTES`],
//! [`MAX_PROOF_HASHES`]; the index must be below the checkpoint's size), one [`ProofError`]
//! variant per rule, and serializes back to the same bytes ([`TlogProof::to_bytes`]).
//!
//! # Verification
//!
//! [`TlogProof::verify`] follows the spec's steps, given the leaf hash (step 1 is the
//! application's: hash the entry), the accepted log keys, the policy's witnesses and quorum,
//! and the Merkle inclusion check, which is passed in so this module stays free of tree code.

use std::collections::BTreeSet;

use base64ct::{Base64, Encoding};

use crate::tlog::checkpoint::{parse_hash, parse_size, CheckpointError, SignedCheckpoint};
use crate::tlog::cosignature::CosignatureVerifier;
use crate::tlog::note::{NoteVerifier, SignatureCheck, MAX_NOTE_BYTES};
use crate::tlog::policy::Policy;
use crate::tlog::vkey::VerifierKey;

/// The first line of every bundle.
pub const PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// The most proof hashes: an inclusion proof in a tree of at most 2^63 leaves has at most 63;
/// no feed comes near 2^63 entries, and the cap bounds what a bundle can make a verifier hash.
pub const MAX_PROOF_HASHES: usize = 63;

/// The largest extra data, decoded: a kappalog entry's encoding is at most about 4.3 KiB
/// (4,096 bytes of data plus fixed fields); other applications' extras (a VRF proof, an
/// artifact's metadata) are smaller still.
pub const MAX_EXTRA_BYTES: usize = 16 * 1024;

/// The largest bundle: the header lines, the extra in base64, the hashes and a note.
pub const MAX_PROOF_BYTES: usize =
    64 + MAX_EXTRA_BYTES * 4 / 3 + 16 + MAX_PROOF_HASHES * 45 + 1 + MAX_NOTE_BYTES;

/// Why a bundle was refused. `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// Larger than [`MAX_PROOF_BYTES`].
    #[error("proof is {0} bytes, more than {MAX_PROOF_BYTES}")]
    TooLarge(usize),
    /// The first line is not [`PROOF_HEADER`].
    #[error("proof does not start with {PROOF_HEADER}")]
    Header,
    /// The bundle ends before the checkpoint (a missing newline or blank line).
    #[error("proof ends before its checkpoint")]
    Truncated,
    /// The extra data is not canonical base64, is empty or is larger than [`MAX_EXTRA_BYTES`].
    #[error("proof extra line is not base64 of 1 to {MAX_EXTRA_BYTES} bytes")]
    Extra,
    /// No `index N` line, or N is not a decimal u64 without leading zeros.
    #[error("line {line}: expected 'index N' with N decimal without leading zeros")]
    Index {
        /// Where.
        line: usize,
    },
    /// A proof line that is not canonical base64 of 32 bytes.
    #[error("line {line}: proof hash is not base64 of 32 bytes")]
    Hash {
        /// Where.
        line: usize,
    },
    /// More than [`MAX_PROOF_HASHES`] hashes.
    #[error("proof has more than {MAX_PROOF_HASHES} hashes")]
    TooManyHashes,
    /// The embedded checkpoint is malformed.
    #[error("proof checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The index is not below the checkpoint's tree size.
    #[error("proof index {index} is not below the checkpoint's size {size}")]
    IndexOutOfRange {
        /// The bundle's index.
        index: u64,
        /// The checkpoint's size.
        size: u64,
    },
}

/// Why a well-formed bundle does not prove what it claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofVerifyError {
    /// No accepted log key is named after the checkpoint's origin.
    #[error("no accepted log has origin {0:?}")]
    UnknownOrigin(String),
    /// The checkpoint is not signed by an accepted log key for its origin.
    #[error("checkpoint is not signed by the log: {0}")]
    LogSignature(CheckpointError),
    /// A known witness's cosignature fails to verify: the bundle was tampered with.
    #[error("cosignature by {0} does not verify")]
    BadCosignature(String),
    /// The valid cosignatures do not meet the policy's quorum.
    #[error("{cosigned} valid cosignatures do not meet the policy's quorum")]
    Quorum {
        /// How many known witnesses did cosign.
        cosigned: usize,
    },
    /// The inclusion proof does not lead from the leaf to the checkpoint's root.
    #[error("inclusion proof does not verify")]
    Inclusion,
}

/// What an inclusion check is asked: is `leaf_hash` at `index` in the tree of `size` leaves
/// with root `root`, by the RFC 6962 audit path `proof`.
#[derive(Debug, Clone, Copy)]
pub struct Inclusion<'a> {
    /// The leaf's RFC 6962 hash.
    pub leaf_hash: &'a [u8; 32],
    /// The leaf's index.
    pub index: u64,
    /// The tree's size.
    pub size: u64,
    /// The audit path, sibling first.
    pub proof: &'a [[u8; 32]],
    /// The tree's root.
    pub root: &'a [u8; 32],
}

/// What a verified bundle established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// The index (into the accepted logs) of the key that signed the checkpoint.
    pub log: usize,
    /// The indexes (into [`Policy::witnesses`]) of the witnesses whose cosignatures verified.
    pub cosigners: BTreeSet<usize>,
}

/// A parsed bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    extra: Option<Vec<u8>>,
    index: u64,
    hashes: Vec<[u8; 32]>,
    checkpoint: SignedCheckpoint,
}

impl TlogProof {
    /// A bundle; refuses what [`TlogProof::parse`] would refuse.
    pub fn new(
        extra: Option<Vec<u8>>,
        index: u64,
        hashes: Vec<[u8; 32]>,
        checkpoint: SignedCheckpoint,
    ) -> Result<Self, ProofError> {
        if extra
            .as_ref()
            .is_some_and(|e| e.is_empty() || e.len() > MAX_EXTRA_BYTES)
        {
            return Err(ProofError::Extra);
        }
        if hashes.len() > MAX_PROOF_HASHES {
            return Err(ProofError::TooManyHashes);
        }
        let size = checkpoint.checkpoint().size();
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        Ok(TlogProof {
            extra,
            index,
            hashes,
            checkpoint,
        })
    }

    /// Parses a bundle under every rule of the module docs.
    pub fn parse(bytes: &[u8]) -> Result<Self, ProofError> {
        if bytes.len() > MAX_PROOF_BYTES {
            return Err(ProofError::TooLarge(bytes.len()));
        }
        let mut lines = Lines {
            rest: bytes,
            number: 0,
        };
        if lines.next()? != PROOF_HEADER.as_bytes() {
            return Err(ProofError::Header);
        }
        let mut line = lines.next()?;
        let mut extra = None;
        if let Some(encoded) = line.strip_prefix(b"extra ") {
            extra = Some(decode_extra(encoded)?);
            line = lines.next()?;
        }
        let index = line
            .strip_prefix(b"index ")
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(parse_size)
            .ok_or(ProofError::Index { line: lines.number })?;
        let mut hashes = Vec::new();
        loop {
            let line = lines.next()?;
            if line.is_empty() {
                break;
            }
            if hashes.len() == MAX_PROOF_HASHES {
                return Err(ProofError::TooManyHashes);
            }
            let hash = std::str::from_utf8(line).ok().and_then(parse_hash);
            hashes.push(hash.ok_or(ProofError::Hash { line: lines.number })?);
        }
        let checkpoint = SignedCheckpoint::parse(lines.rest)?;
        TlogProof::new(extra, index, hashes, checkpoint)
    }

    /// The extra data (in kappalog, the entry's encoding); not authenticated.
    pub fn extra(&self) -> Option<&[u8]> {
        self.extra.as_deref()
    }
    /// The leaf's index (in kappalog, the entry's seq minus one).
    pub fn index(&self) -> u64 {
        self.index
    }
    /// The inclusion proof, sibling first.
    pub fn hashes(&self) -> &[[u8; 32]] {
        &self.hashes
    }
    /// The signed checkpoint the proof is against.
    pub fn checkpoint(&self) -> &SignedCheckpoint {
        &self.checkpoint
    }

    /// The bundle's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{PROOF_HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", Base64::encode_string(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        for hash in &self.hashes {
            out.push_str(&Base64::encode_string(hash));
            out.push('\n');
        }
        out.push('\n');
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.checkpoint.to_bytes());
        bytes
    }

    /// Verifies the bundle for the leaf whose RFC 6962 hash is `leaf_hash`: the checkpoint is
    /// signed by one of `logs` named after its origin, the cosignatures of `policy`'s
    /// witnesses meet its quorum (a known witness's bad cosignature rejects the bundle), and
    /// `inclusion` confirms the proof. `logs` is usually [`Policy::logs`]' keys; kappalog can
    /// also pass the feed's author key ([`crate::tlog::checkpoint::author_vkey`]).
    pub fn verify(
        &self,
        leaf_hash: &[u8; 32],
        logs: &[VerifierKey],
        policy: &Policy,
        inclusion: impl Fn(&Inclusion<'_>) -> bool,
    ) -> Result<VerifiedProof, ProofVerifyError> {
        let checkpoint = self.checkpoint.checkpoint();
        let log = self.verify_log(logs)?;
        let cosigners = self.verify_cosignatures(policy)?;
        if !policy.quorum_met(&cosigners) {
            return Err(ProofVerifyError::Quorum {
                cosigned: cosigners.len(),
            });
        }
        let question = Inclusion {
            leaf_hash,
            index: self.index,
            size: checkpoint.size(),
            proof: &self.hashes,
            root: checkpoint.root(),
        };
        if !inclusion(&question) {
            return Err(ProofVerifyError::Inclusion);
        }
        Ok(VerifiedProof { log, cosigners })
    }

    /// The index of the first log key, named after the origin, that signed the checkpoint.
    fn verify_log(&self, logs: &[VerifierKey]) -> Result<usize, ProofVerifyError> {
        let origin = self.checkpoint.checkpoint().origin();
        let mut last_error = None;
        for (i, log) in logs.iter().enumerate().filter(|(_, l)| l.name() == origin) {
            match self.checkpoint.verify_author(log) {
                Ok(()) => return Ok(i),
                Err(e) => last_error = Some(e),
            }
        }
        Err(match last_error {
            Some(e) => ProofVerifyError::LogSignature(e),
            None => ProofVerifyError::UnknownOrigin(origin.to_owned()),
        })
    }

    /// The indexes (into [`Policy::witnesses`]) of the policy's witnesses whose cosignatures
    /// of the checkpoint verify; a known witness's line that fails to verify is
    /// [`ProofVerifyError::BadCosignature`]. The quorum is not evaluated here: callers that
    /// check the other steps in their own order (kappalog's entry bundles) call this, then
    /// [`Policy::quorum_met`].
    pub fn verify_cosignatures(
        &self,
        policy: &Policy,
    ) -> Result<BTreeSet<usize>, ProofVerifyError> {
        let verifiers: Vec<CosignatureVerifier> = policy
            .witnesses()
            .iter()
            // Policy parsing admits only cosigner keys for witnesses, so none is dropped here.
            .filter_map(|w| CosignatureVerifier::new(w.vkey.clone()).ok())
            .collect();
        let dyn_verifiers: Vec<&dyn NoteVerifier> =
            verifiers.iter().map(|v| v as &dyn NoteVerifier).collect();
        let mut cosigners = BTreeSet::new();
        for outcome in self.checkpoint.note().check(&dyn_verifiers) {
            match outcome {
                SignatureCheck::Verified(i) => {
                    cosigners.insert(i);
                }
                SignatureCheck::Failed(i) => {
                    return Err(ProofVerifyError::BadCosignature(
                        verifiers[i].vkey().name().to_owned(),
                    ))
                }
                SignatureCheck::Unknown => {}
            }
        }
        Ok(cosigners)
    }
}

fn decode_extra(encoded: &[u8]) -> Result<Vec<u8>, ProofError> {
    if encoded.is_empty() || encoded.len() > MAX_EXTRA_BYTES.div_ceil(3) * 4 {
        return Err(ProofError::Extra);
    }
    let encoded = std::str::from_utf8(encoded).map_err(|_| ProofError::Extra)?;
    let extra = Base64::decode_vec(encoded).map_err(|_| ProofError::Extra)?;
    if extra.is_empty() || extra.len() > MAX_EXTRA_BYTES {
        return Err(ProofError::Extra);
    }
    Ok(extra)
}

/// Newline-terminated lines of the bundle's head, and the rest once they stop.
struct Lines<'a> {
    rest: &'a [u8],
    number: usize,
}

impl<'a> Lines<'a> {
    /// The next line without its newline; a line without one means the checkpoint is missing.
    fn next(&mut self) -> Result<&'a [u8], ProofError> {
        let end = self
            .rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(ProofError::Truncated)?;
        let (line, rest) = (&self.rest[..end], &self.rest[end + 1..]);
        self.rest = rest;
        self.number += 1;
        Ok(line)
    }
}

#[cfg(test)]
#[path = "proof_tests.rs"]
mod tests;
