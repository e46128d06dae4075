//! C2SP tlog-cosignature v1, Ed25519 (signature type `0x04`): a cosigner's timestamped
//! statement that a checkpoint is the largest consistent tree it has seen for that origin.
//!
//! - The **key ID** is `SHA-256(name || 0x0A || 0x04 || 32-byte public key)[:4]`
//!   ([`crate::tlog::vkey::key_id`] with [`KeyType::CosignatureV1`]).
//! - The **signed message** is `cosignature/v1\ntime <T>\n` followed by the whole checkpoint
//!   body, final newline included ([`signed_message`]); `T` is decimal, no leading zeros.
//! - The **signature bytes** after the key ID are a `timestamped_signature`: the u64
//!   timestamp (POSIX seconds) big-endian, then the 64-byte Ed25519 signature
//!   ([`TimestampedSignature`]). Timestamps above 2^63 - 1 are refused both when cosigning and
//!   when verifying, as the spec requires.
//!
//! The Ed25519 message does not commit to the cosigner's name, so one public key must never
//! serve two cosigner names; kappalog gives each node one name, [`cosigner_name`]
//! (`kappalog/node/<64 lowercase hex node key>`), and cosigns with the node's own key.
//!
//! Whether a cosignature's timestamp is plausible (not in the future) is the caller's policy:
//! this module reads no clock. The timestamp is returned by [`CosignatureVerifier::verify_line`].

use ed25519_dalek::{Signer, SigningKey};

use crate::identity::{Author, Signature};
use crate::tlog::note::{NoteError, NoteSignature, NoteVerifier};
use crate::tlog::vkey::{KeyNameError, KeyType, VerifierKey, WrongKeyType};

/// The largest timestamp a cosignature may carry: 2^63 - 1, so it fits every signed 64-bit
/// time type a verifier may convert it to.
pub const MAX_TIMESTAMP: u64 = i64::MAX as u64;

/// The header line of the signed message: domain separation from other uses of the key.
const HEADER: &str = "cosignature/v1\n";

/// Bytes of a `timestamped_signature`: 8 for the timestamp, 64 for the Ed25519 signature.
pub const TIMESTAMPED_SIGNATURE_BYTES: usize = 8 + 64;

/// The cosigner name of the node whose public key is `node_key`.
pub fn cosigner_name(node_key: &[u8; 32]) -> String {
    format!("kappalog/node/{}", hex::encode(node_key))
}

/// What a cosigner signs: the header, the timestamp line, then the checkpoint body.
pub fn signed_message(timestamp: u64, checkpoint_body: &str) -> Vec<u8> {
    let time_line = format!("time {timestamp}\n");
    let mut message = Vec::with_capacity(HEADER.len() + time_line.len() + checkpoint_body.len());
    message.extend_from_slice(HEADER.as_bytes());
    message.extend_from_slice(time_line.as_bytes());
    message.extend_from_slice(checkpoint_body.as_bytes());
    message
}

/// Why a cosignature could not be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignatureError {
    /// The timestamp is above [`MAX_TIMESTAMP`].
    #[error("cosignature timestamp {0} is above 2^63 - 1")]
    TimestampTooLarge(u64),
    /// The signature bytes are not 72 long.
    #[error("cosignature is {0} bytes, not {TIMESTAMPED_SIGNATURE_BYTES}")]
    Length(usize),
    /// The cosigner name breaks a key-name rule.
    #[error("cosigner name: {0}")]
    Name(#[from] KeyNameError),
    /// The signature line could not be made.
    #[error("cosignature line: {0}")]
    Note(#[from] NoteError),
}

/// A `timestamped_signature`: when, and the Ed25519 signature over [`signed_message`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimestampedSignature {
    /// POSIX seconds, at most [`MAX_TIMESTAMP`].
    pub timestamp: u64,
    /// The Ed25519 signature.
    pub signature: [u8; 64],
}

impl TimestampedSignature {
    /// Reads the 72 bytes after a signature line's key ID.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CosignatureError> {
        let bytes: &[u8; TIMESTAMPED_SIGNATURE_BYTES] = bytes
            .try_into()
            .map_err(|_| CosignatureError::Length(bytes.len()))?;
        let (time, signature) = bytes.split_at(8);
        // Both conversions are of slices split at fixed offsets of a fixed-size array.
        let timestamp = u64::from_be_bytes(time.try_into().expect("8 bytes"));
        if timestamp > MAX_TIMESTAMP {
            return Err(CosignatureError::TimestampTooLarge(timestamp));
        }
        Ok(TimestampedSignature {
            timestamp,
            signature: signature.try_into().expect("64 bytes"),
        })
    }
    /// The 72 bytes: timestamp big-endian, then the signature.
    pub fn to_bytes(&self) -> [u8; TIMESTAMPED_SIGNATURE_BYTES] {
        let mut bytes = [0; TIMESTAMPED_SIGNATURE_BYTES];
        bytes[..8].copy_from_slice(&self.timestamp.to_be_bytes());
        bytes[8..].copy_from_slice(&self.signature);
        bytes
    }
}

/// Cosigns `checkpoint_body` at `timestamp` with `key` under `name`: the signature line to
/// add to the checkpoint's note. Deterministic: same key, body and time give the same line.
pub fn cosign(
    name: &str,
    key: &SigningKey,
    checkpoint_body: &str,
    timestamp: u64,
) -> Result<NoteSignature, CosignatureError> {
    if timestamp > MAX_TIMESTAMP {
        return Err(CosignatureError::TimestampTooLarge(timestamp));
    }
    let vkey = VerifierKey::new(name, KeyType::CosignatureV1, key.verifying_key())?;
    let signature = key.sign(&signed_message(timestamp, checkpoint_body));
    let timestamped = TimestampedSignature {
        timestamp,
        signature: signature.to_bytes(),
    };
    Ok(NoteSignature::new(
        name,
        vkey.key_id(),
        timestamped.to_bytes().to_vec(),
    )?)
}

/// Verifies one cosigner's v1 cosignatures, under the crate's one signature acceptance rule
/// ([`crate::signature`]). As a [`NoteVerifier`] it checks lines of a checkpoint note.
#[derive(Clone, Debug)]
pub struct CosignatureVerifier {
    vkey: VerifierKey,
    key_id: u32,
}

impl CosignatureVerifier {
    /// A verifier for `vkey`, which must be of type `0x04`.
    pub fn new(vkey: VerifierKey) -> Result<Self, WrongKeyType> {
        let vkey = vkey.require(KeyType::CosignatureV1)?;
        let key_id = vkey.key_id();
        Ok(CosignatureVerifier { vkey, key_id })
    }

    /// The key this verifier checks.
    pub fn vkey(&self) -> &VerifierKey {
        &self.vkey
    }

    /// The cosignature's timestamp if `line` is this cosigner's valid cosignature of
    /// `checkpoint_body`; None if the line is another key's, malformed, or does not verify.
    pub fn verify_line(&self, checkpoint_body: &str, line: &NoteSignature) -> Option<u64> {
        if line.name() != self.vkey.name() || line.key_id() != self.key_id {
            return None;
        }
        self.verify_timestamped(checkpoint_body.as_bytes(), line.signature())
    }

    fn verify_timestamped(&self, checkpoint_body: &[u8], signature: &[u8]) -> Option<u64> {
        let timestamped = TimestampedSignature::from_bytes(signature).ok()?;
        // Note text is UTF-8 by construction; a non-UTF-8 body cannot be a checkpoint.
        let body = std::str::from_utf8(checkpoint_body).ok()?;
        let message = signed_message(timestamped.timestamp, body);
        let author = Author(*self.vkey.key().as_bytes());
        crate::signature::verify_message(&author, &message, &Signature(timestamped.signature))
            .ok()
            .map(|()| timestamped.timestamp)
    }
}

impl NoteVerifier for CosignatureVerifier {
    fn name(&self) -> &str {
        self.vkey.name()
    }
    fn key_id(&self) -> u32 {
        self.key_id
    }
    fn verify(&self, text: &[u8], signature: &[u8]) -> bool {
        self.verify_timestamped(text, signature).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::note::Note;

    const BODY: &str =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    fn witness() -> (SigningKey, CosignatureVerifier) {
        let key = SigningKey::from_bytes(&[4; 32]);
        let vkey =
            VerifierKey::new("w.example/1", KeyType::CosignatureV1, key.verifying_key()).unwrap();
        (key, CosignatureVerifier::new(vkey).unwrap())
    }

    #[test]
    fn the_signed_message_is_the_specs_example() {
        assert_eq!(
            signed_message(1679315147, BODY),
            b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        );
        assert_eq!(&signed_message(0, "")[..], b"cosignature/v1\ntime 0\n");
    }

    #[test]
    fn a_cosignature_verifies_with_its_timestamp_and_only_over_its_body() {
        let (key, verifier) = witness();
        let line = cosign("w.example/1", &key, BODY, 1_700_000_000).unwrap();
        assert_eq!(line.key_id(), verifier.key_id());
        assert_eq!(line.signature().len(), TIMESTAMPED_SIGNATURE_BYTES);
        assert_eq!(&line.signature()[..8], &1_700_000_000u64.to_be_bytes());
        assert_eq!(verifier.verify_line(BODY, &line), Some(1_700_000_000));
        let other_body = BODY.replace("20852163", "20852164");
        assert_eq!(verifier.verify_line(&other_body, &line), None);

        // The timestamp is signed: changing it breaks the signature.
        let mut raw = line.signature().to_vec();
        raw[7] ^= 1;
        let moved = NoteSignature::new("w.example/1", line.key_id(), raw).unwrap();
        assert_eq!(verifier.verify_line(BODY, &moved), None);

        // Through a note, as a checkpoint's cosignature line.
        let mut note = Note::unsigned(BODY).unwrap();
        note.add_signature(line).unwrap();
        assert_eq!(note.verify(&[&verifier]), Ok(vec![0]));
    }

    #[test]
    fn timestamps_above_2_63_minus_1_are_refused() {
        let (key, verifier) = witness();
        assert_eq!(
            cosign("w.example/1", &key, BODY, MAX_TIMESTAMP + 1),
            Err(CosignatureError::TimestampTooLarge(MAX_TIMESTAMP + 1))
        );
        assert!(cosign("w.example/1", &key, BODY, MAX_TIMESTAMP).is_ok());
        // A line carrying 2^63 with a real signature over that message is still refused.
        let message = signed_message(1 << 63, BODY);
        let mut raw = (1u64 << 63).to_be_bytes().to_vec();
        raw.extend_from_slice(&key.sign(&message).to_bytes());
        assert_eq!(
            TimestampedSignature::from_bytes(&raw),
            Err(CosignatureError::TimestampTooLarge(1 << 63))
        );
        let line = NoteSignature::new("w.example/1", verifier.key_id(), raw).unwrap();
        assert_eq!(verifier.verify_line(BODY, &line), None);
    }

    #[test]
    fn wrong_lengths_and_wrong_key_types_are_refused() {
        assert_eq!(
            TimestampedSignature::from_bytes(&[0; 71]),
            Err(CosignatureError::Length(71))
        );
        let (key, verifier) = witness();
        let as_note_key =
            VerifierKey::new("w.example/1", KeyType::Ed25519, key.verifying_key()).unwrap();
        assert!(CosignatureVerifier::new(as_note_key).is_err());
        // A plain note signature by the same key is not a cosignature (other ID, other bytes).
        let mut note = Note::unsigned(BODY).unwrap();
        crate::tlog::ed25519::sign_ed25519(&mut note, "w.example/1", &key).unwrap();
        assert_eq!(verifier.verify_line(BODY, &note.signatures()[0]), None);
    }

    #[test]
    fn the_cosigner_name_is_the_nodes_key_in_hex() {
        assert_eq!(
            cosigner_name(&[0xab; 32]),
            format!("kappalog/node/{}", "ab".repeat(32))
        );
    }
}
