//! Who signs: the [`Author`] (an ed25519 public key), the [`Signature`] bytes, and the
//! [`Identity`] that holds a secret key and signs entry hashes.
//!
//! Verification is not here: the one acceptance rule for signatures lives in
//! [`crate::signature`], so every path (single, batch, import, sync) reaches the same verdict.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signer, SigningKey};

use crate::hash::{decode_hex_array, serde_as_hex, Hash, ParseBytesError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An author: the 32-byte compressed ed25519 public key that signs a feed.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Author(pub [u8; 32]);

/// An ed25519 signature: 32 bytes `R` then 32 bytes `S`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl Author {
    pub const LEN: usize = 32;
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl Signature {
    pub const LEN: usize = 64;
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Author {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl fmt::Debug for Author {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Author({})", self.to_hex())
    }
}
impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_hex())
    }
}

impl FromStr for Author {
    type Err = ParseBytesError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode_hex_array(s).map(Author)
    }
}
impl FromStr for Signature {
    type Err = ParseBytesError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode_hex_array(s).map(Signature)
    }
}

impl TryFrom<&[u8]> for Author {
    type Error = ParseBytesError;
    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        <[u8; 32]>::try_from(bytes)
            .map(Author)
            .map_err(|_| ParseBytesError::WrongLength {
                expected: 32,
                found: bytes.len(),
            })
    }
}
impl TryFrom<&[u8]> for Signature {
    type Error = ParseBytesError;
    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        <[u8; 64]>::try_from(bytes)
            .map(Signature)
            .map_err(|_| ParseBytesError::WrongLength {
                expected: 64,
                found: bytes.len(),
            })
    }
}

serde_as_hex!(Author);
serde_as_hex!(Signature);

/// A node's secret key. Signing is deterministic (RFC 8032), so the same key and hash always
/// give the same signature.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

impl Identity {
    /// An identity from a 32-byte ed25519 seed (the RFC 8032 secret key). Tests use fixed seeds.
    pub fn from_seed(seed: [u8; 32]) -> Identity {
        Identity {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// A fresh identity from the operating system's random number generator.
    pub fn generate() -> Identity {
        Identity {
            key: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    pub fn from_signing_key(key: SigningKey) -> Identity {
        Identity { key }
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    pub fn author(&self) -> Author {
        Author(self.key.verifying_key().to_bytes())
    }

    /// Signs an entry hash. The signed message is exactly the 32 hash bytes; every other
    /// message this key ever signs (the sync handshake) is longer and starts with its own tag,
    /// so no other signature can be replayed as an entry signature.
    pub fn sign_hash(&self, hash: &Hash) -> Signature {
        Signature(self.key.sign(hash.as_bytes()).to_bytes())
    }

    /// Signs an arbitrary tagged message (used by the sync handshake). The message must not be
    /// 32 bytes long, so it can never be mistaken for an entry hash.
    pub fn sign_tagged(&self, message: &[u8]) -> Signature {
        debug_assert_ne!(
            message.len(),
            Hash::LEN,
            "tagged messages must not look like hashes"
        );
        Signature(self.key.sign(message).to_bytes())
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        write!(f, "Identity({})", self.author())
    }
}
