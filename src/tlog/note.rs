//! C2SP signed notes (c2sp.org/signed-note): text signed by one or more keys.
//!
//! # Format
//!
//! ```text
//! <text: one or more lines, each ending in U+000A>
//! <a blank line>
//! — <key name> <base64(4-byte big-endian key ID || signature)>     (one or more lines)
//! ```
//!
//! The parser ([`Note::parse`]) is strict, so a parsed note serializes back to the very bytes
//! it came from ([`Note::to_bytes`]); each rule is its own [`NoteError`] variant:
//!
//! - the note is at most [`MAX_NOTE_BYTES`], valid UTF-8, free of control characters other
//!   than newline (no `\r`, no tab), and ends in a newline;
//! - the text is everything up to and including the newline before the *last* blank line;
//!   it is non-empty (it may itself contain blank lines);
//! - there are 1 to [`MAX_SIGNATURES`] signature lines, each `— ` (em dash, space), a key name
//!   ([`check_key_name`]), one space and canonical standard base64 of 5 to
//!   [`MAX_SIGNATURE_BYTES`] bytes;
//! - no two lines carry the same key name and key ID ([`NoteError::DuplicateSignature`]):
//!   one key signs a given text once, so a second line for it is either a copy or a forgery
//!   placed beside the real one, and refusing it keeps "which of the two did we check" from
//!   ever mattering. The same refusal applies when a signature is added ([`Note::add_signature`]).
//!   (Go's `golang.org/x/mod/sumdb/note` instead checks the first line of a known key and
//!   skips later ones; no honest signer writes two, since its `Sign` replaces a key's old line.)
//!
//! # Verification
//!
//! A verifier is anything implementing [`NoteVerifier`] (a key name, a key ID and a check of
//! signature bytes over the text): [`crate::tlog::ed25519::Ed25519Verifier`] for note signatures (type `0x01`),
//! [`crate::tlog::cosignature::CosignatureVerifier`] for cosignatures (type `0x04`). A line is
//! checked only by a verifier whose name *and* key ID both match it; lines no verifier knows
//! are kept (a node passes on cosignatures it cannot check) but never count as verified.
//! [`Note::check`] reports each line's outcome; [`Note::verify`] applies the spec's verdict:
//! a known key whose signature fails rejects the whole note, and a note with no verified
//! signature is rejected.

use std::fmt;

use base64ct::{Base64, Encoding};

use crate::tlog::vkey::{check_key_name, KeyNameError};

/// The largest note accepted, in bytes. The spec asks verifiers to accept at least 16
/// signatures, up to nearly 5 kB each for post-quantum ones (about 6.7 kB in base64): 16 of
/// those and a checkpoint's text fit. A kappalog checkpoint with 32 Ed25519 cosignatures is
/// under 6 KiB. The cap bounds what one note from a stranger can make a node hold.
pub const MAX_NOTE_BYTES: usize = 128 * 1024;

/// The most signature lines one note may carry: twice the 16 the spec requires verifiers to
/// accept, so an author signature and a feed's cap of cosigners fit with room to spare. (Go's
/// note package stops at 100; a kappalog node has no use for that many on one checkpoint.)
pub const MAX_SIGNATURES: usize = 32;

/// The largest decoded signature (key ID included): an ML-DSA-44 timestamped cosignature is
/// 2,436 bytes, and signatures of types kappalog does not check are still carried through.
pub const MAX_SIGNATURE_BYTES: usize = 8 * 1024;

/// The signature line prefix: em dash (U+2014) then a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Why a note (or a signature added to one) was refused. One variant per rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// Larger than [`MAX_NOTE_BYTES`].
    #[error("note is {len} bytes, more than {MAX_NOTE_BYTES}")]
    TooLarge {
        /// The note's size.
        len: usize,
    },
    /// Not valid UTF-8.
    #[error("note is not valid UTF-8")]
    NotUtf8,
    /// A control character other than newline (e.g. `\r`, tab, NUL).
    #[error("note contains control character 0x{byte:02x} at byte {offset}")]
    ControlChar {
        /// The character's code.
        byte: u8,
        /// Where it is.
        offset: usize,
    },
    /// The note (or a text to sign) does not end in a newline.
    #[error("note does not end in a newline")]
    NoFinalNewline,
    /// No blank line separates text from signatures.
    #[error("note has no blank line before its signatures")]
    NoSeparator,
    /// The text before the blank line is empty.
    #[error("note text is empty")]
    EmptyText,
    /// Nothing follows the blank line.
    #[error("note has no signature lines")]
    NoSignatures,
    /// More than [`MAX_SIGNATURES`] signature lines.
    #[error("note has more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    /// A line after the blank line that is not `— NAME BASE64`.
    #[error("signature line {line} is not '\u{2014} NAME BASE64'")]
    MalformedSignatureLine {
        /// 1-based among the signature lines.
        line: usize,
    },
    /// A signature line's key name breaks a rule.
    #[error("signature line {line}: {source}")]
    KeyName {
        /// 1-based among the signature lines.
        line: usize,
        /// The rule broken.
        source: KeyNameError,
    },
    /// A signature that is not canonical standard base64.
    #[error("signature line {line}: invalid base64")]
    Base64 {
        /// 1-based among the signature lines.
        line: usize,
    },
    /// A decoded signature shorter than 5 or longer than [`MAX_SIGNATURE_BYTES`] bytes.
    #[error("signature line {line}: {len} bytes, not 5 to {MAX_SIGNATURE_BYTES}")]
    SignatureLength {
        /// 1-based among the signature lines.
        line: usize,
        /// Decoded bytes, key ID included.
        len: usize,
    },
    /// Two lines for one key name and key ID.
    #[error("two signatures by {name} with key ID {key_id:08x}")]
    DuplicateSignature {
        /// The key name.
        name: String,
        /// The key ID.
        key_id: u32,
    },
}

/// Why a note did not verify against a set of verifiers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A known key's signature failed: the whole note is rejected, as the spec recommends.
    #[error("signature by {name} ({key_id:08x}) does not verify")]
    BadSignature {
        /// The key name.
        name: String,
        /// The key ID.
        key_id: u32,
    },
    /// No line was signed by a known key.
    #[error("no signature by a known key")]
    NoKnownSignature,
}

/// One signature line: key name, key ID and the signature bytes after the ID.
#[derive(Clone, PartialEq, Eq)]
pub struct NoteSignature {
    name: String,
    key_id: u32,
    signature: Vec<u8>,
}

impl NoteSignature {
    /// A signature line; `signature` excludes the key ID. Refuses a bad name and a signature
    /// of 0 or more than `MAX_SIGNATURE_BYTES - 4` bytes.
    pub fn new(name: &str, key_id: u32, signature: Vec<u8>) -> Result<Self, NoteError> {
        check_key_name(name).map_err(|source| NoteError::KeyName { line: 1, source })?;
        let len = signature.len() + 4;
        if signature.is_empty() || len > MAX_SIGNATURE_BYTES {
            return Err(NoteError::SignatureLength { line: 1, len });
        }
        Ok(NoteSignature {
            name: name.to_owned(),
            key_id,
            signature,
        })
    }
    /// The signer's key name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The signer's key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }
    /// The signature bytes, without the key ID.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }
    /// The line as written in a note, final newline included: also a witness's answer to
    /// `add-checkpoint` (tlog-witness).
    pub fn to_line(&self) -> String {
        let mut line = String::with_capacity(self.line_len());
        self.write_line(&mut line);
        line
    }
    /// Appends [`NoteSignature::to_line`] to `out`.
    fn write_line(&self, out: &mut String) {
        let mut raw = Vec::with_capacity(4 + self.signature.len());
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&self.signature);
        out.push_str(SIGNATURE_PREFIX);
        out.push_str(&self.name);
        out.push(' ');
        out.push_str(&Base64::encode_string(&raw));
        out.push('\n');
    }
    fn line_len(&self) -> usize {
        SIGNATURE_PREFIX.len()
            + self.name.len()
            + 1
            + (4 + self.signature.len()).div_ceil(3) * 4
            + 1
    }
}

impl fmt::Debug for NoteSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoteSignature({:?})", self.to_line().trim_end())
    }
}

/// Something that checks one key's signatures: the key's name and ID select the lines it
/// checks, `verify` checks the signature bytes (key ID stripped) over the note text.
pub trait NoteVerifier {
    /// The key name signature lines must carry.
    fn name(&self) -> &str;
    /// The key ID signature lines must carry.
    fn key_id(&self) -> u32;
    /// Whether `signature` is this key's valid signature of `text` (the note text, final
    /// newline included).
    fn verify(&self, text: &[u8], signature: &[u8]) -> bool;
}

/// What one signature line came to against a set of verifiers ([`Note::check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureCheck {
    /// Verified by the verifier at this index.
    Verified(usize),
    /// The verifier at this index knows the key, and the signature is wrong.
    Failed(usize),
    /// No verifier has this name and key ID: kept, not counted.
    Unknown,
}

/// A signed note: its text and its signature lines, in order.
#[derive(Clone, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<NoteSignature>,
}

impl Note {
    /// A note with `text` and no signatures yet (it serializes only once signed). `text` must
    /// be non-empty, end in a newline and contain no control character but newline.
    pub fn unsigned(text: &str) -> Result<Note, NoteError> {
        check_characters(text)?;
        if text.is_empty() {
            return Err(NoteError::EmptyText);
        }
        if !text.ends_with('\n') {
            return Err(NoteError::NoFinalNewline);
        }
        let note = Note {
            text: text.to_owned(),
            signatures: Vec::new(),
        };
        note.check_size(0)?;
        Ok(note)
    }

    /// Parses a note under every rule of the module docs.
    pub fn parse(bytes: &[u8]) -> Result<Note, NoteError> {
        if bytes.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge { len: bytes.len() });
        }
        let all = std::str::from_utf8(bytes).map_err(|_| NoteError::NotUtf8)?;
        check_characters(all)?;
        if !all.ends_with('\n') {
            return Err(NoteError::NoFinalNewline);
        }
        let split = all.rfind("\n\n").ok_or(NoteError::NoSeparator)?;
        // The text keeps its final newline, so it is never empty and always ends in one.
        let (text, signature_lines) = (&all[..=split], &all[split + 2..]);
        if signature_lines.is_empty() {
            return Err(NoteError::NoSignatures);
        }
        let mut note = Note {
            text: text.to_owned(),
            signatures: Vec::new(),
        };
        // Every line, the last included, ends in '\n' (checked above), so the split leaves
        // one empty piece after the final newline, which is skipped.
        for (i, line) in signature_lines.split_terminator('\n').enumerate() {
            let number = i + 1;
            if number > MAX_SIGNATURES {
                return Err(NoteError::TooManySignatures);
            }
            let signature = parse_signature_line(line, number)?;
            note.push_unique(signature)?;
        }
        Ok(note)
    }

    /// The signed text, final newline included: what every signature covers.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signature lines, in order.
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Appends a signature line, under the limits [`Note::parse`] applies (count, size, one
    /// line per key name and ID).
    pub fn add_signature(&mut self, signature: NoteSignature) -> Result<(), NoteError> {
        if self.signatures.len() >= MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures);
        }
        self.check_size(signature.line_len())?;
        self.push_unique(signature)
    }

    /// The note's bytes: text, blank line, signature lines.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    /// Each signature line's outcome against `verifiers`, in line order. A line is checked by
    /// the first verifier with its key name and key ID.
    pub fn check(&self, verifiers: &[&dyn NoteVerifier]) -> Vec<SignatureCheck> {
        self.signatures
            .iter()
            .map(|line| {
                let known = verifiers
                    .iter()
                    .position(|v| v.name() == line.name && v.key_id() == line.key_id);
                match known {
                    None => SignatureCheck::Unknown,
                    Some(i) if verifiers[i].verify(self.text.as_bytes(), &line.signature) => {
                        SignatureCheck::Verified(i)
                    }
                    Some(i) => SignatureCheck::Failed(i),
                }
            })
            .collect()
    }

    /// The spec's verdict: the indexes (into `verifiers`, sorted) of the verifiers whose
    /// signatures verified; an error if any known key's signature fails or none verifies.
    pub fn verify(&self, verifiers: &[&dyn NoteVerifier]) -> Result<Vec<usize>, VerifyError> {
        let mut verified = Vec::new();
        for (line, outcome) in self.signatures.iter().zip(self.check(verifiers)) {
            match outcome {
                SignatureCheck::Verified(i) => verified.push(i),
                SignatureCheck::Failed(_) => {
                    return Err(VerifyError::BadSignature {
                        name: line.name.clone(),
                        key_id: line.key_id,
                    })
                }
                SignatureCheck::Unknown => {}
            }
        }
        if verified.is_empty() {
            return Err(VerifyError::NoKnownSignature);
        }
        verified.sort_unstable();
        verified.dedup();
        Ok(verified)
    }

    fn push_unique(&mut self, signature: NoteSignature) -> Result<(), NoteError> {
        let duplicate = self
            .signatures
            .iter()
            .any(|s| s.name == signature.name && s.key_id == signature.key_id);
        if duplicate {
            return Err(NoteError::DuplicateSignature {
                name: signature.name,
                key_id: signature.key_id,
            });
        }
        self.signatures.push(signature);
        Ok(())
    }

    /// Refuses a note that would exceed [`MAX_NOTE_BYTES`] with `extra` more bytes.
    fn check_size(&self, extra: usize) -> Result<(), NoteError> {
        let len = self.text.len()
            + 1
            + self
                .signatures
                .iter()
                .map(NoteSignature::line_len)
                .sum::<usize>()
            + extra;
        if len > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge { len });
        }
        Ok(())
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::with_capacity(self.text.len() + 1 + 128 * self.signatures.len());
        out.push_str(&self.text);
        out.push('\n');
        for signature in &self.signatures {
            signature.write_line(&mut out);
        }
        f.write_str(&out)
    }
}

impl fmt::Debug for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Note({:?})", self.to_string())
    }
}

/// UTF-8 is given by the `&str`; refuses every control character but newline.
fn check_characters(text: &str) -> Result<(), NoteError> {
    // Control characters below U+0020 are single bytes in UTF-8, so a byte scan finds them.
    match text
        .bytes()
        .enumerate()
        .find(|&(_, b)| b < 0x20 && b != b'\n')
    {
        Some((offset, byte)) => Err(NoteError::ControlChar { byte, offset }),
        None => Ok(()),
    }
}

fn parse_signature_line(line: &str, number: usize) -> Result<NoteSignature, NoteError> {
    let malformed = NoteError::MalformedSignatureLine { line: number };
    let rest = line
        .strip_prefix(SIGNATURE_PREFIX)
        .ok_or(malformed.clone())?;
    // The key name has no spaces, so the first space ends it; base64 has none either, so
    // anything after a second space is malformed (caught as bad base64).
    let (name, encoded) = rest.split_once(' ').ok_or(malformed)?;
    check_key_name(name).map_err(|source| NoteError::KeyName {
        line: number,
        source,
    })?;
    // Refuse before decoding: base64 of MAX_SIGNATURE_BYTES is at most this long.
    if encoded.len() > MAX_SIGNATURE_BYTES.div_ceil(3) * 4 {
        return Err(NoteError::SignatureLength {
            line: number,
            len: encoded.len() / 4 * 3,
        });
    }
    let raw = Base64::decode_vec(encoded).map_err(|_| NoteError::Base64 { line: number })?;
    if raw.len() < 5 || raw.len() > MAX_SIGNATURE_BYTES {
        return Err(NoteError::SignatureLength {
            line: number,
            len: raw.len(),
        });
    }
    Ok(NoteSignature {
        name: name.to_owned(),
        key_id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
        signature: raw[4..].to_vec(),
    })
}

#[cfg(test)]
#[path = "note_tests.rs"]
mod tests;
