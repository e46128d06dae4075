//! Ed25519 note signatures (signed-note signature type `0x01`): signing a note's text, and
//! the [`NoteVerifier`] that checks them. A feed author signs its checkpoints this way.
//!
//! Signing uses ed25519-dalek (deterministic, RFC 8032); verification uses the crate's one
//! acceptance rule for signatures ([`crate::signature`]), so a note signature and an entry
//! signature by one key get the same verdict.

use ed25519_dalek::{Signer, SigningKey};

use crate::identity::{Author, Signature};
use crate::tlog::note::{Note, NoteError, NoteSignature, NoteVerifier};
use crate::tlog::vkey::{KeyType, VerifierKey, WrongKeyType};

/// Verifies Ed25519 note signatures (type `0x01`) of one key, under the crate's one
/// signature acceptance rule ([`crate::signature`]).
#[derive(Clone, Debug)]
pub struct Ed25519Verifier {
    vkey: VerifierKey,
    key_id: u32,
}

impl Ed25519Verifier {
    /// A verifier for `vkey`, which must be of type `0x01`.
    pub fn new(vkey: VerifierKey) -> Result<Self, WrongKeyType> {
        let vkey = vkey.require(KeyType::Ed25519)?;
        let key_id = vkey.key_id();
        Ok(Ed25519Verifier { vkey, key_id })
    }
    /// The key this verifier checks.
    pub fn vkey(&self) -> &VerifierKey {
        &self.vkey
    }
}

impl NoteVerifier for Ed25519Verifier {
    fn name(&self) -> &str {
        self.vkey.name()
    }
    fn key_id(&self) -> u32 {
        self.key_id
    }
    fn verify(&self, text: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        let author = Author(*self.vkey.key().as_bytes());
        crate::signature::verify_message(&author, text, &Signature(signature)).is_ok()
    }
}

/// Signs `note`'s text with `key` as an Ed25519 note signature (type `0x01`) under `name`,
/// and appends the line. Ed25519 is deterministic: the same key and text give the same line.
pub fn sign_ed25519(note: &mut Note, name: &str, key: &SigningKey) -> Result<(), NoteError> {
    let vkey = VerifierKey::new(name, KeyType::Ed25519, key.verifying_key())
        .map_err(|source| NoteError::KeyName { line: 1, source })?;
    let signature = key.sign(note.text().as_bytes()).to_bytes().to_vec();
    note.add_signature(NoteSignature::new(name, vkey.key_id(), signature)?)
}
