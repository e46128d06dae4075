//! Who signs: the [`Author`] (an ed25519 public key), the [`Signature`] bytes, and the
//! [`Identity`] that holds a secret key and signs entry hashes.
//!
//! Verification is not here: the one acceptance rule for signatures lives in
//! [`crate::signature`], so every path (single, batch, import, sync) reaches the same verdict.

use std::fmt;
use std::str::FromStr;

use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::hazmat::ExpandedSecretKey;
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha512};

use crate::hash::{decode_hex_array, serde_as_hex, Hash, ParseBytesError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An author: the 32-byte compressed ed25519 public key that signs a feed.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Author(pub [u8; 32]);

/// An ed25519 signature: 32 bytes `R` then 32 bytes `S`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl Author {
    /// Bytes in an encoded author: one compressed curve point.
    pub const LEN: usize = 32;
    /// The key's 32 bytes, as signed into entries and written in the log.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// 64 lowercase hex digits: how authors appear in JSON, CSV, URLs and logs.
    pub fn to_hex(&self) -> String {
        crate::hash::hex_into(&self.0, &mut [0; 128]).to_owned()
    }
}

impl Signature {
    /// Bytes in an encoded signature: `R` (32) then `S` (32).
    pub const LEN: usize = 64;
    /// The 64 signature bytes, as written in the log.
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }
    /// 128 lowercase hex digits: how signatures appear in JSON and CSV.
    pub fn to_hex(&self) -> String {
        crate::hash::hex_into(&self.0, &mut [0; 128]).to_owned()
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
pub struct Identity {
    key: SigningKey,
    /// The RFC 8032 expansion of the secret (the clamped scalar `a` and the nonce prefix),
    /// computed once instead of on every signature. Zeroed on drop.
    expanded: ExpandedSecretKey,
    author: Author,
}

impl Clone for Identity {
    fn clone(&self) -> Identity {
        Identity::from_signing_key(self.key.clone())
    }
}

impl Identity {
    /// An identity from a 32-byte ed25519 seed (the RFC 8032 secret key). Tests use fixed seeds.
    pub fn from_seed(seed: [u8; 32]) -> Identity {
        Identity::from_signing_key(SigningKey::from_bytes(&seed))
    }

    /// A fresh identity from the operating system's random number generator.
    pub fn generate() -> Identity {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        Identity::from_seed(seed)
    }

    /// An identity from a key already loaded (the key file); expands the secret once for
    /// [`Identity::sign_hashes`].
    pub(crate) fn from_signing_key(key: SigningKey) -> Identity {
        let expanded = ExpandedSecretKey::from_bytes(&Sha512::digest(key.as_bytes()).into());
        let author = Author(key.verifying_key().to_bytes());
        Identity {
            key,
            expanded,
            author,
        }
    }

    /// The secret key, for writing the key file. Never log or send it.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The public key: the author of every entry this identity signs.
    pub fn author(&self) -> Author {
        self.author
    }

    /// Signs an entry hash. The signed message is exactly the 32 hash bytes; every other
    /// message this key ever signs (the sync handshake) is longer and starts with its own tag,
    /// so no other signature can be replayed as an entry signature.
    pub fn sign_hash(&self, hash: &Hash) -> Signature {
        Signature(self.key.sign(hash.as_bytes()).to_bytes())
    }

    /// Signs many entry hashes at once: the same signatures, byte for byte, as
    /// [`Identity::sign_hash`] on each (RFC 8032 signing is deterministic), about a fifth
    /// cheaper per signature.
    ///
    /// The saving is the compression of each nonce point `R = r·B`: compressing needs the
    /// inverse of the point's projective `Z`, and one batch inversion (Montgomery's trick,
    /// constant time) replaces an inversion per signature. Everything else is the RFC 8032
    /// algorithm: `r = SHA-512(prefix || M)`, `k = SHA-512(R || A || M)`, `S = r + k·a`.
    pub fn sign_hashes(&self, hashes: &[Hash]) -> Vec<Signature> {
        let nonces: Vec<Scalar> = hashes
            .iter()
            .map(|hash| {
                let digest = Sha512::new()
                    .chain_update(self.expanded.hash_prefix)
                    .chain_update(hash.as_bytes())
                    .finalize();
                Scalar::from_bytes_mod_order_wide(&digest.into())
            })
            .collect();
        let points: Vec<EdwardsPoint> = nonces.iter().map(EdwardsPoint::mul_base).collect();
        let compressed = EdwardsPoint::compress_batch_alloc(&points);
        hashes
            .iter()
            .zip(nonces)
            .zip(compressed)
            .map(|((hash, r), big_r)| {
                let k = challenge(big_r.as_bytes(), &self.author.0, &hash.0);
                let s = r + k * self.expanded.scalar;
                let mut bytes = [0u8; 64];
                bytes[..32].copy_from_slice(big_r.as_bytes());
                bytes[32..].copy_from_slice(s.as_bytes());
                Signature(bytes)
            })
            .collect()
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

/// The RFC 8032 challenge `k = SHA-512(R || A || M) mod l`: signing computes it
/// ([`Identity::sign_hashes`]) and verification recomputes it ([`crate::signature`]), so
/// it stands here, below both, in one copy.
pub(crate) fn challenge(r: &[u8; 32], a: &[u8; 32], message: &[u8]) -> Scalar {
    Scalar::from_bytes_mod_order_wide(
        &Sha512::new()
            .chain_update(r)
            .chain_update(a)
            .chain_update(message)
            .finalize()
            .into(),
    )
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        write!(f, "Identity({})", self.author())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batch signer is our own code on top of curve25519-dalek, so it is checked against
    /// ed25519-dalek's signer byte for byte, for batch sizes around the edges (empty, one,
    /// odd lengths) and several keys.
    #[test]
    fn batch_signatures_equal_single_signatures() {
        for seed in [0u8, 1, 7, 255] {
            let id = Identity::from_seed([seed; 32]);
            for n in [0usize, 1, 2, 3, 17, 64] {
                let hashes: Vec<Hash> = (0..n).map(|i| message(seed, i)).collect();
                let batch = id.sign_hashes(&hashes);
                assert_eq!(batch.len(), n);
                for (hash, sig) in hashes.iter().zip(&batch) {
                    assert_eq!(*sig, id.sign_hash(hash), "seed {seed}, batch of {n}");
                    assert_eq!(crate::signature::verify(&id.author(), hash, sig), Ok(()));
                }
            }
        }
    }

    #[test]
    fn clone_signs_identically() {
        let id = Identity::from_seed([9; 32]);
        let copy = id.clone();
        let hash = Hash([5; 32]);
        assert_eq!(id.author(), copy.author());
        assert_eq!(id.sign_hashes(&[hash]), copy.sign_hashes(&[hash]));
    }

    /// Distinct, arbitrary-looking 32-byte messages.
    fn message(seed: u8, i: usize) -> Hash {
        let digest = Sha512::new()
            .chain_update([seed])
            .chain_update(i.to_be_bytes())
            .finalize();
        let mut out = [0u8; 32];
        out.copy_from_slice(&digest[..32]);
        Hash(out)
    }
}
