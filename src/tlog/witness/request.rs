//! The body of a tlog-witness `add-checkpoint` request, read strictly and within bounds.
//!
//! ```text
//! old <size of the client's previous checkpoint: decimal, no leading zeros>
//! <consistency proof hash: standard base64 of 32 bytes>      (0 to 63 lines)
//! <an empty line>
//! <the signed checkpoint note>
//! ```
//!
//! Every line ends in a newline (U+000A); nothing else (no `\r`, no trailing space) is
//! accepted. The note is read by [`SignedCheckpoint::parse`], so it meets every signed-note
//! and tlog-checkpoint rule (duplicate signature lines included). Any breach is a
//! [`RequestError`], which the spec answers with 400 Bad Request. Signatures, sizes and the
//! proof are judged later, against the witness's state ([`super::add_checkpoint`]).

use crate::tlog::checkpoint::{parse_hash, parse_size, CheckpointError, SignedCheckpoint};
use crate::tlog::merkle::{Hash, MAX_PROOF_HASHES};
use crate::tlog::note::MAX_NOTE_BYTES;

use base64ct::{Base64, Encoding};

/// The longest old size line: `old `, the 20 digits of `u64::MAX`, the newline.
const MAX_OLD_LINE_BYTES: usize = 4 + 20 + 1;
/// One proof line: 44 base64 characters and the newline.
const PROOF_LINE_BYTES: usize = 44 + 1;

/// The largest body a well-formed request can have: the longest old size line, the 63 proof
/// lines the spec allows, the empty line and the largest note accepted. Anything longer is
/// refused before a byte of it is parsed, and the HTTP layer can cap its body read here, so a
/// client without any key can make the witness hold at most this much per request.
pub const MAX_REQUEST_BYTES: usize =
    MAX_OLD_LINE_BYTES + MAX_PROOF_HASHES * PROOF_LINE_BYTES + 1 + MAX_NOTE_BYTES;

/// Why an `add-checkpoint` body was refused: all of them are 400 Bad Request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Longer than [`MAX_REQUEST_BYTES`].
    #[error("request body is {len} bytes, more than {MAX_REQUEST_BYTES}")]
    TooLarge {
        /// The body's length.
        len: usize,
    },
    /// The first line is missing, or is not `old <decimal u64 without leading zeros>`.
    #[error("the first line is not 'old SIZE'")]
    OldLine,
    /// A line before the empty line is not canonical base64 of 32 bytes.
    #[error("consistency proof line {line} is not base64 of a 32-byte hash")]
    ProofLine {
        /// 1-based among the proof lines.
        line: usize,
    },
    /// More than the 63 proof lines the spec allows.
    #[error("more than {MAX_PROOF_HASHES} consistency proof lines")]
    TooManyProofLines,
    /// No empty line ends the proof: the body stops first.
    #[error("no empty line before the checkpoint")]
    NoBlankLine,
    /// The checkpoint note is malformed.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
}

/// A parsed `add-checkpoint` request: the client's idea of the witness's latest size, the
/// proof from that size to the checkpoint's, and the checkpoint with its signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpointRequest {
    old_size: u64,
    proof: Vec<Hash>,
    checkpoint: SignedCheckpoint,
}

impl AddCheckpointRequest {
    /// A request, as a log (or the node itself, witnessing a feed it holds) builds one.
    /// Refuses more than [`MAX_PROOF_HASHES`] proof hashes, which no peer would accept.
    pub fn new(
        old_size: u64,
        proof: Vec<Hash>,
        checkpoint: SignedCheckpoint,
    ) -> Result<Self, RequestError> {
        if proof.len() > MAX_PROOF_HASHES {
            return Err(RequestError::TooManyProofLines);
        }
        Ok(AddCheckpointRequest {
            old_size,
            proof,
            checkpoint,
        })
    }

    /// Parses a request body under every rule of the module docs.
    pub fn parse(body: &[u8]) -> Result<Self, RequestError> {
        if body.len() > MAX_REQUEST_BYTES {
            return Err(RequestError::TooLarge { len: body.len() });
        }
        let (old_line, mut rest) = split_line(body).ok_or(RequestError::OldLine)?;
        let old_size = old_line
            .strip_prefix(b"old ")
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(parse_size)
            .ok_or(RequestError::OldLine)?;
        let mut proof = Vec::new();
        loop {
            let (line, after) = split_line(rest).ok_or(RequestError::NoBlankLine)?;
            rest = after;
            if line.is_empty() {
                break;
            }
            // Counted before decoding, so a flood of lines costs one comparison each.
            if proof.len() == MAX_PROOF_HASHES {
                return Err(RequestError::TooManyProofLines);
            }
            let hash = std::str::from_utf8(line).ok().and_then(parse_hash).ok_or(
                RequestError::ProofLine {
                    line: proof.len() + 1,
                },
            )?;
            proof.push(hash);
        }
        let checkpoint = SignedCheckpoint::parse(rest)?;
        Ok(AddCheckpointRequest {
            old_size,
            proof,
            checkpoint,
        })
    }

    /// The size the client believes the witness last cosigned for this origin.
    pub fn old_size(&self) -> u64 {
        self.old_size
    }
    /// The consistency proof from [`AddCheckpointRequest::old_size`] to the checkpoint.
    pub fn proof(&self) -> &[Hash] {
        &self.proof
    }
    /// The checkpoint to cosign, with every signature it came with.
    pub fn checkpoint(&self) -> &SignedCheckpoint {
        &self.checkpoint
    }

    /// The request body, byte for byte as [`AddCheckpointRequest::parse`] reads it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("old {}\n", self.old_size).into_bytes();
        for hash in &self.proof {
            out.extend_from_slice(Base64::encode_string(hash).as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
        out.extend_from_slice(&self.checkpoint.to_bytes());
        out
    }
}

/// The bytes before the first newline and those after it; None if there is no newline.
fn split_line(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = bytes.iter().position(|&b| b == b'\n')?;
    Some((&bytes[..end], &bytes[end + 1..]))
}
