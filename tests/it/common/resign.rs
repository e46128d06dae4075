//! A second valid signature of an entry: what only a misbehaving author can make, and what
//! the store's replacement records keep (docs/STORE.md, "Replacement records"). The unit
//! tests' twin is `kappalog::entry::testing::resign` (crate-private, so written twice).

use curve25519_dalek::{EdwardsPoint, Scalar};
use ed25519_dalek::hazmat::ExpandedSecretKey;
use kappalog::entry::Entry;
use kappalog::identity::{Identity, Signature};
use sha2::{Digest, Sha512};

/// `entry` (signed by `id`) under another valid signature of the same entry hash. Ed25519
/// signing is deterministic, one signature a message; RFC 8032's algorithm with another
/// nonce prefix (32 bytes of `nonce`) gives another, valid under the same key. Each `nonce`
/// gives its own.
pub fn resign(id: &Identity, entry: &Entry, nonce: u8) -> Entry {
    let secret = ExpandedSecretKey::from(&id.signing_key().to_bytes());
    let message = entry.hash();
    let wide = |parts: &[&[u8]]| {
        let mut digest = Sha512::new();
        for part in parts {
            digest.update(part);
        }
        Scalar::from_bytes_mod_order_wide(&digest.finalize().into())
    };
    // R = r·B, S = r + H(R || A || M)·a.
    let r = wide(&[&[nonce; 32], message.as_bytes()]);
    let big_r = EdwardsPoint::mul_base(&r).compress();
    let k = wide(&[
        big_r.as_bytes(),
        entry.author.as_bytes(),
        message.as_bytes(),
    ]);
    let s = r + k * secret.scalar;
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(big_r.as_bytes());
    bytes[32..].copy_from_slice(s.as_bytes());
    Entry {
        signature: Signature(bytes),
        ..entry.clone()
    }
}
