//! A second valid signature of an entry, for tests: what only a misbehaving author can make,
//! and what the store's replacement records keep (docs/STORE.md, "Replacement records").
//!
//! One file for both kinds of tests: the crate's unit tests reach it as
//! `crate::entry::testing::resign`, the integration tests include it with `#[path]` from
//! `tests/it/common/resign.rs`. So it names the entry types only through `super`, which
//! each includer provides.

use curve25519_dalek::{EdwardsPoint, Scalar};
use ed25519_dalek::hazmat::ExpandedSecretKey;
use sha2::{Digest, Sha512};

use super::{Entry, Identity, Signature};

/// `entry` (signed by `id`) under another valid signature of the same entry hash. Ed25519
/// signing is deterministic, one signature a message; RFC 8032's algorithm with another
/// nonce prefix (32 bytes of `nonce`) gives another, valid under the same key. Each `nonce`
/// gives its own.
pub(crate) fn resign(id: &Identity, entry: &Entry, nonce: u8) -> Entry {
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
