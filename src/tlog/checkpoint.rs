//! C2SP tlog-checkpoint: a log's signed tree head, as the text of a signed note.
//!
//! # Body
//!
//! ```text
//! <origin>
//! <tree size: decimal, no leading zeros; "0" for the empty tree>
//! <root hash: standard base64 of the 32-byte RFC 6962 root>
//! [<extension line>...]
//! ```
//!
//! Each line ends in a newline; the origin and extension lines are non-empty; at most
//! [`MAX_EXTENSION_LINES`] extension lines. [`Checkpoint::parse`] refuses anything else, with
//! one [`CheckpointError`] variant per rule, and [`Checkpoint::body`] is the exact text
//! every signature and cosignature covers.
//!
//! # kappalog's checkpoints
//!
//! A feed's **origin** is `kappalog/feed/<64 lowercase hex author key>` ([`origin_for`]): one
//! per feed, derived from its author key, free of spaces and `+`, so it is also a valid key
//! name. The author signs the body as an Ed25519 note signature (type `0x01`) under a key
//! name equal to the origin ([`author_vkey`]), as tlog-checkpoint recommends; kappalog writes
//! no extension lines. A [`SignedCheckpoint`] is the note: the body, the author's signature
//! and any cosignatures ([`crate::tlog::cosignature`]), unknown ones included.

use std::fmt;

use base64ct::{Base64, Encoding};
use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::tlog::ed25519::{sign_ed25519, Ed25519Verifier};
use crate::tlog::note::{Note, NoteError, NoteSignature, VerifyError};
use crate::tlog::vkey::{KeyType, VerifierKey, WrongKeyType};

/// The most extension lines a checkpoint may carry. kappalog writes none and the spec
/// advises against them; a few are accepted so other logs' checkpoints can be witnessed,
/// and the cap (with the note's size cap) bounds what a stranger's checkpoint can carry.
pub const MAX_EXTENSION_LINES: usize = 8;

/// The origin (and author key name) of the feed whose author key is `author`.
pub fn origin_for(author: &[u8; 32]) -> String {
    format!("kappalog/feed/{}", hex::encode(author))
}

/// The vkey that verifies the checkpoints of the feed whose author key is `author`.
pub fn author_vkey(author: &VerifyingKey) -> VerifierKey {
    // The origin is ASCII of fixed length, free of spaces and '+': always a valid key name.
    VerifierKey::new(&origin_for(author.as_bytes()), KeyType::Ed25519, *author)
        .expect("kappalog origins are valid key names")
}

/// Why a checkpoint body (or a signed checkpoint) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Fewer than three lines, or no final newline.
    #[error("a checkpoint body is at least three newline-terminated lines")]
    TooFewLines,
    /// The first line is empty.
    #[error("checkpoint origin is empty")]
    EmptyOrigin,
    /// The size line is not decimal without leading zeros, or does not fit a u64.
    #[error("checkpoint size {0:?} is not a decimal u64 without leading zeros")]
    Size(String),
    /// The root line is not canonical base64 of 32 bytes.
    #[error("checkpoint root hash is not base64 of 32 bytes")]
    Root,
    /// An empty extension line.
    #[error("checkpoint extension line {0} is empty")]
    EmptyExtension(usize),
    /// More than [`MAX_EXTENSION_LINES`] extension lines.
    #[error("checkpoint has more than {MAX_EXTENSION_LINES} extension lines")]
    TooManyExtensions,
    /// The body is not a valid note text (a control character, or too large).
    #[error("checkpoint body: {0}")]
    Note(#[from] NoteError),
    /// The note's signatures do not verify under the author's key.
    #[error("checkpoint signature: {0}")]
    Signature(#[from] VerifyError),
    /// The author key given is not an Ed25519 note key.
    #[error("checkpoint author key: {0}")]
    AuthorKeyType(#[from] WrongKeyType),
    /// The author's key name is not the checkpoint's origin.
    #[error("checkpoint origin {origin:?} is not the author key's name {name:?}")]
    OriginMismatch {
        /// The checkpoint's origin.
        origin: String,
        /// The author vkey's name.
        name: String,
    },
}

/// A checkpoint body: origin, tree size, root hash and extension lines, with its exact text.
#[derive(Clone, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: [u8; 32],
    extensions: Vec<String>,
    body: String,
}

impl Checkpoint {
    /// The checkpoint of a tree of `size` leaves with root `root`, without extension lines.
    pub fn new(origin: &str, size: u64, root: [u8; 32]) -> Result<Self, CheckpointError> {
        let body = format!("{origin}\n{size}\n{}\n", Base64::encode_string(&root));
        // Parsing what was just written applies every rule to the origin, in one place.
        Checkpoint::parse(&body)
    }

    /// Parses a body (a note's text) under every rule of the module docs.
    pub fn parse(body: &str) -> Result<Self, CheckpointError> {
        // The same character rules as any note text (no control characters but newline).
        Note::unsigned(body).map_err(|e| match e {
            NoteError::NoFinalNewline | NoteError::EmptyText => CheckpointError::TooFewLines,
            other => CheckpointError::Note(other),
        })?;
        let mut lines = body
            .strip_suffix('\n')
            .ok_or(CheckpointError::TooFewLines)?
            .split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(CheckpointError::TooFewLines);
        };
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        let size = parse_size(size).ok_or_else(|| CheckpointError::Size(size.to_owned()))?;
        let root = parse_hash(root).ok_or(CheckpointError::Root)?;
        let mut extensions = Vec::new();
        for (i, line) in lines.enumerate() {
            if extensions.len() == MAX_EXTENSION_LINES {
                return Err(CheckpointError::TooManyExtensions);
            }
            if line.is_empty() {
                return Err(CheckpointError::EmptyExtension(i + 1));
            }
            extensions.push(line.to_owned());
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
            body: body.to_owned(),
        })
    }

    /// The log's identity: the first line.
    pub fn origin(&self) -> &str {
        &self.origin
    }
    /// The number of leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }
    /// The RFC 6962 root hash of the tree.
    pub fn root(&self) -> &[u8; 32] {
        &self.root
    }
    /// The extension lines, without their newlines.
    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }
    /// The exact body text, final newline included: what signatures and cosignatures cover.
    pub fn body(&self) -> &str {
        &self.body
    }
}

impl fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checkpoint({:?})", self.body)
    }
}

/// Decimal without leading zeros (except "0" itself), fitting a u64.
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    text.parse().ok()
}

/// Canonical standard base64 of exactly 32 bytes (44 characters).
pub(crate) fn parse_hash(text: &str) -> Option<[u8; 32]> {
    if text.len() != 44 {
        return None;
    }
    let mut hash = [0u8; 32];
    let decoded = Base64::decode(text, &mut hash).ok()?;
    (decoded.len() == 32).then_some(hash)
}

/// A checkpoint and its note: the author's signature and any cosignatures.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    checkpoint: Checkpoint,
    note: Note,
}

impl SignedCheckpoint {
    /// Signs `checkpoint` with the author's `key`, under the checkpoint's origin as key name.
    pub fn sign(checkpoint: Checkpoint, key: &SigningKey) -> Result<Self, CheckpointError> {
        let mut note = Note::unsigned(checkpoint.body())?;
        sign_ed25519(&mut note, checkpoint.origin(), key)?;
        Ok(SignedCheckpoint { checkpoint, note })
    }

    /// Parses a signed checkpoint: a note whose text is a checkpoint body. Signatures are not
    /// checked here ([`SignedCheckpoint::verify_author`]).
    pub fn parse(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let note = Note::parse(bytes)?;
        let checkpoint = Checkpoint::parse(note.text())?;
        Ok(SignedCheckpoint { checkpoint, note })
    }

    /// The checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }
    /// The note: body and every signature line, unknown ones included.
    pub fn note(&self) -> &Note {
        &self.note
    }

    /// Checks that `author` signed this checkpoint under a key name equal to its origin. Other
    /// lines (cosignatures, unknown keys) are ignored here.
    pub fn verify_author(&self, author: &VerifierKey) -> Result<(), CheckpointError> {
        if author.name() != self.checkpoint.origin() {
            return Err(CheckpointError::OriginMismatch {
                origin: self.checkpoint.origin().to_owned(),
                name: author.name().to_owned(),
            });
        }
        let verifier = Ed25519Verifier::new(author.clone())?;
        self.note.verify(&[&verifier])?;
        Ok(())
    }

    /// Adds a signature line (a cosignature), under the note's limits.
    pub fn add_signature(&mut self, signature: NoteSignature) -> Result<(), CheckpointError> {
        Ok(self.note.add_signature(signature)?)
    }

    /// The signed note's bytes, as served and as embedded in a proof bundle.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.note.to_bytes()
    }
}

impl fmt::Display for SignedCheckpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.note, f)
    }
}

impl fmt::Debug for SignedCheckpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignedCheckpoint({:?})", self.to_string())
    }
}

#[cfg(test)]
#[path = "checkpoint_tests.rs"]
mod tests;
