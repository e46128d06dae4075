//! The one acceptance rule for entry signatures, applied identically by single and batch
//! verification (and so by `append`, import, sync and `kappalog verify`).
//!
//! # The rule
//!
//! A signature `(R, S)` by public key `A` over message `M` (the 32-byte entry hash for
//! entries, [`verify`]; a longer tagged message for the sync handshake, [`verify_message`]) is
//! accepted if and only if:
//!
//! 1. `A` is a canonical encoding (its y coordinate is below p = 2^255 - 19) of a curve point
//!    that is **not of small order** (rejects the eight weak keys);
//! 2. `R` is a canonical encoding of a curve point that is not of small order;
//! 3. `S` is canonical: `S < l`, the group order;
//! 4. the **cofactored** equation holds: `[8]([S]B - R - [k]A) = 0`, where
//!    `k = SHA-512(R || A || M) mod l`.
//!
//! Why cofactored: the cofactorless equation (ed25519-dalek's `verify`/`verify_strict`) and a
//! random-linear-combination batch check disagree on signatures whose `R` or `A` carries a
//! small torsion component: the batch accepts such a signature with probability up to 1/2
//! while the single check rejects it, so two nodes could reach different verdicts on the same
//! entry. With the cofactor in both equations the single and batch checks agree (the batch may
//! wrongly accept only with probability 2^-128), which is the rule ZIP-215 settled on. Rules
//! 1-3 are exact byte and point checks done before any equation, in both paths.
//!
//! Both paths are written here over `curve25519-dalek` (ed25519-dalek's own arithmetic), so
//! there is exactly one implementation of the rule; ed25519-dalek signs.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use std::collections::HashMap;

use rayon::prelude::*;

use crate::hash::Hash;
use crate::identity::{challenge, Author, Signature};

/// Why a signature is rejected. Each variant is one rule of the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Rule 1: the key's y coordinate is not below p, or it decodes to no curve point.
    #[error("public key is not a canonical point encoding")]
    NonCanonicalKey,
    /// Rule 1: the key is one of the eight small-order points.
    #[error("public key is a weak (small-order) point")]
    WeakKey,
    /// Rule 2: `R` is not a canonical encoding of a curve point.
    #[error("signature R is not a canonical point encoding")]
    NonCanonicalR,
    /// Rule 2: `R` is a small-order point.
    #[error("signature R is a small-order point")]
    SmallOrderR,
    /// Rule 3: `S` is not below the group order `l`.
    #[error("signature S is not canonical (S >= group order)")]
    NonCanonicalS,
    /// Rule 4: the encodings are fine but the cofactored equation does not hold.
    #[error("signature does not verify")]
    Mismatch,
}

/// Most entries per batch equation. Larger batches amortise the multiscalar multiplication
/// (Pippenger beats Straus above ~190 points): measured on this machine's 2 cores, 64 gave
/// ~45k verifies/s, 256 ~147k/s, 512 ~171k/s, 1024 ~164k/s. A failed batch falls back to
/// checking its items one by one, which bounds what one bad entry costs.
const MAX_BATCH_SIZE: usize = 512;
/// Fewest entries per batch equation when splitting work across cores.
const MIN_BATCH_SIZE: usize = 64;

/// Whether a 32-byte encoding's y coordinate (sign bit cleared) is below p = 2^255 - 19.
fn is_canonical_y(bytes: &[u8; 32]) -> bool {
    // y >= p exactly when the low 255 bits are in [2^255 - 19, 2^255 - 1]: the top byte (sign
    // bit cleared) is 0x7f, the middle 30 bytes are 0xff, and the low byte is >= 0xed.
    let top = bytes[31] & 0x7f;
    let y_at_least_p = top == 0x7f && bytes[1..31].iter().all(|&b| b == 0xff) && bytes[0] >= 0xed;
    !y_at_least_p
}

/// Decodes a point under rules 1 and 2.
fn decode_point(
    bytes: &[u8; 32],
    non_canonical: SignatureError,
    small_order: SignatureError,
) -> Result<EdwardsPoint, SignatureError> {
    if !is_canonical_y(bytes) {
        return Err(non_canonical);
    }
    let point = CompressedEdwardsY(*bytes)
        .decompress()
        .ok_or(non_canonical)?;
    // The sign bit must also be canonical: x = 0 with the sign bit set decodes to the same
    // point as with it cleared. Both such points (y = 1 and y = -1) are small order, so rule
    // "not small order" below covers it.
    if point.is_small_order() {
        return Err(small_order);
    }
    Ok(point)
}

/// A signature that passed rules 1-3, ready for the equation.
struct Prepared {
    a: EdwardsPoint,
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
}

/// Rule 1: the public key as a point.
fn decode_key(author: &Author) -> Result<EdwardsPoint, SignatureError> {
    decode_point(
        author.as_bytes(),
        SignatureError::NonCanonicalKey,
        SignatureError::WeakKey,
    )
}

fn prepare(author: &Author, message: &[u8], sig: &Signature) -> Result<Prepared, SignatureError> {
    prepare_with_key(decode_key(author)?, author, message, sig)
}

/// Rules 2 and 3 and the challenge `k`, for a key already decoded under rule 1.
fn prepare_with_key(
    a: EdwardsPoint,
    author: &Author,
    message: &[u8],
    sig: &Signature,
) -> Result<Prepared, SignatureError> {
    let mut r_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&sig.as_bytes()[..32]);
    let r = decode_point(
        &r_bytes,
        SignatureError::NonCanonicalR,
        SignatureError::SmallOrderR,
    )?;
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&sig.as_bytes()[32..]);
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))
        .ok_or(SignatureError::NonCanonicalS)?;
    let k = challenge(&r_bytes, author.as_bytes(), message);
    Ok(Prepared { a, r, s, k })
}

/// Verifies one signature over an entry hash under the module's rule.
pub fn verify(author: &Author, hash: &Hash, sig: &Signature) -> Result<(), SignatureError> {
    verify_message(author, hash.as_bytes(), sig)
}

/// Verifies one signature over an arbitrary message (the sync handshake's tagged message)
/// under exactly the same rule as [`verify`]: both run this one implementation.
pub fn verify_message(
    author: &Author,
    message: &[u8],
    sig: &Signature,
) -> Result<(), SignatureError> {
    let p = prepare(author, message, sig)?;
    // [S]B - [k]A - R, then clear the cofactor.
    let check = EdwardsPoint::vartime_double_scalar_mul_basepoint(&p.k, &(-p.a), &p.s) - p.r;
    if check.mul_by_cofactor().is_identity() {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// One item of a batch: who signed, what hash, which signature.
#[derive(Clone, Copy, Debug)]
pub struct BatchItem<'a> {
    /// The signer's public key (`A`).
    pub author: &'a Author,
    /// The signed message (`M`): the entry's 32-byte hash.
    pub hash: &'a Hash,
    /// The signature to check (`R || S`).
    pub signature: &'a Signature,
}

/// The cofactored batch equation over prepared signatures:
/// `[8]( [-sum z_i S_i]B + sum [z_i]R_i + sum [z_i k_i]A_i ) = 0` with random 128-bit `z_i`.
///
/// Items of one author share their `A` term (`[sum z_i k_i]A`), so a batch from one feed is
/// a multiscalar multiplication over about n + 2 points rather than 2n + 1.
fn batch_equation_holds(items: &[(Prepared, &Author)]) -> bool {
    use rand::RngCore;
    let mut rng = rand::thread_rng();
    let mut scalars = Vec::with_capacity(items.len() + 2);
    let mut points = Vec::with_capacity(items.len() + 2);
    let mut key_terms: Vec<(&Author, Scalar, EdwardsPoint)> = Vec::new();
    let mut b_coefficient = Scalar::ZERO;
    for (p, author) in items {
        let mut z_bytes = [0u8; 32];
        rng.fill_bytes(&mut z_bytes[..16]);
        let z = Scalar::from_bytes_mod_order(z_bytes);
        b_coefficient -= z * p.s;
        scalars.push(z);
        points.push(p.r);
        match key_terms.iter_mut().find(|(a, _, _)| a == author) {
            Some((_, coefficient, _)) => *coefficient += z * p.k,
            None => key_terms.push((author, z * p.k, p.a)),
        }
    }
    for (_, coefficient, point) in key_terms {
        scalars.push(coefficient);
        points.push(point);
    }
    scalars.push(b_coefficient);
    points.push(ED25519_BASEPOINT_POINT);
    EdwardsPoint::vartime_multiscalar_mul(scalars, points)
        .mul_by_cofactor()
        .is_identity()
}

/// Public keys decoded once per call: a batch usually holds few authors, and decoding a
/// point costs about as much as a quarter of a verification.
type KeyCache = HashMap<Author, Result<EdwardsPoint, SignatureError>>;

/// Verifies one chunk: rules 1-3 item by item, then one batch equation over the items that
/// passed; if it fails, each of those is checked alone so every item gets its exact verdict.
fn verify_chunk(items: &[BatchItem<'_>], keys: &KeyCache) -> Vec<Result<(), SignatureError>> {
    let mut verdicts = Vec::with_capacity(items.len());
    let mut prepared = Vec::with_capacity(items.len());
    let mut prepared_at = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let key = match keys.get(item.author) {
            Some(key) => *key,
            // Every author was decoded up front; decoding again is only a fallback.
            None => decode_key(item.author),
        };
        let result = key
            .and_then(|a| prepare_with_key(a, item.author, item.hash.as_bytes(), item.signature));
        match result {
            Ok(p) => {
                prepared.push((p, item.author));
                prepared_at.push(i);
                verdicts.push(Ok(()));
            }
            Err(e) => verdicts.push(Err(e)),
        }
    }
    if !prepared.is_empty() && !batch_equation_holds(&prepared) {
        for &i in &prepared_at {
            let item = &items[i];
            verdicts[i] = verify(item.author, item.hash, item.signature);
        }
    }
    verdicts
}

/// Verifies many signatures across all cores, in batches. Returns one verdict per item, in
/// order, identical to calling [`verify`] on each (up to the 2^-128 batch false-accept bound).
pub fn verify_many(items: &[BatchItem<'_>]) -> Vec<Result<(), SignatureError>> {
    let mut authors: Vec<Author> = items.iter().map(|item| *item.author).collect();
    authors.sort_unstable();
    authors.dedup();
    let keys: KeyCache = authors
        .par_iter()
        .map(|author| (*author, decode_key(author)))
        .collect();
    // Enough chunks to keep every core busy, each as large as that allows.
    let per_core = items.len().div_ceil(rayon::current_num_threads().max(1));
    let chunk = per_core.clamp(MIN_BATCH_SIZE, MAX_BATCH_SIZE);
    items
        .par_chunks(chunk)
        .flat_map_iter(|chunk| verify_chunk(chunk, &keys))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use sha2::{Digest, Sha512};

    fn signed(seed: u8, msg: u8) -> (Author, Hash, Signature) {
        let id = Identity::from_seed([seed; 32]);
        let hash = Hash([msg; 32]);
        (id.author(), hash, id.sign_hash(&hash))
    }

    fn batch_verdicts(cases: &[(Author, Hash, Signature)]) -> Vec<Result<(), SignatureError>> {
        let items: Vec<_> = cases
            .iter()
            .map(|(a, h, s)| BatchItem {
                author: a,
                hash: h,
                signature: s,
            })
            .collect();
        verify_many(&items)
    }

    #[test]
    fn valid_signature_verifies_and_agrees_with_dalek_strict() {
        let (a, h, s) = signed(1, 2);
        assert_eq!(verify(&a, &h, &s), Ok(()));
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&a.0).unwrap();
        vk.verify_strict(&h.0, &ed25519_dalek::Signature::from_bytes(&s.0))
            .unwrap();
    }

    #[test]
    fn wrong_message_or_key_is_mismatch() {
        let (a, _, s) = signed(1, 2);
        assert_eq!(
            verify(&a, &Hash([3; 32]), &s),
            Err(SignatureError::Mismatch)
        );
        let (other, h, _) = signed(9, 2);
        assert_eq!(verify(&other, &h, &s), Err(SignatureError::Mismatch));
    }

    #[test]
    fn non_canonical_s_is_rejected() {
        let (a, h, mut s) = signed(1, 2);
        // S + l encodes the same scalar mod l but is not canonical.
        // l = 2^252 + 27742317777372353535851937790883648493, little-endian.
        let l: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for (i, &l_byte) in l.iter().enumerate() {
            let sum = u16::from(s.0[32 + i]) + u16::from(l_byte) + carry;
            s.0[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(verify(&a, &h, &s), Err(SignatureError::NonCanonicalS));
    }

    #[test]
    fn weak_key_is_rejected() {
        // The identity point as a public key, with S = 0 and R = identity, satisfies the
        // equation for every message: the classic weak-key forgery.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let a = Author(identity);
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&identity);
        assert_eq!(
            verify(&a, &Hash([5; 32]), &Signature(sig)),
            Err(SignatureError::WeakKey)
        );
    }

    #[test]
    fn non_canonical_key_encoding_is_rejected() {
        // y = p (encodes y = 0 non-canonically).
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        let (_, h, s) = signed(1, 2);
        assert_eq!(
            verify(&Author(p), &h, &s),
            Err(SignatureError::NonCanonicalKey)
        );
    }

    /// A signature whose R carries an order-8 torsion component: the cofactorless check (and
    /// ed25519-dalek's `verify_strict`) rejects it, a random batch would accept it about half
    /// the time, and our cofactored rule accepts it on every path.
    #[test]
    fn torsion_in_r_is_accepted_consistently_by_single_and_batch() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        let seed = [3u8; 32];
        let id = Identity::from_seed(seed);
        let a = id.author();
        let expanded = Sha512::digest(seed);
        let mut a_scalar_bytes = [0u8; 32];
        a_scalar_bytes.copy_from_slice(&expanded[..32]);
        a_scalar_bytes[0] &= 248;
        a_scalar_bytes[31] &= 127;
        a_scalar_bytes[31] |= 64;
        let a_scalar = Scalar::from_bytes_mod_order(a_scalar_bytes);
        let hash = Hash([11; 32]);
        let r_scalar = Scalar::from_bytes_mod_order([42; 32]);
        let r_point = ED25519_BASEPOINT_POINT * r_scalar + EIGHT_TORSION[1];
        let r_bytes = r_point.compress().to_bytes();
        let k = challenge(&r_bytes, a.as_bytes(), hash.as_bytes());
        let s_scalar = r_scalar + k * a_scalar;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r_bytes);
        sig[32..].copy_from_slice(s_scalar.as_bytes());
        let sig = Signature(sig);

        assert_eq!(verify(&a, &hash, &sig), Ok(()));
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&a.0).unwrap();
        assert!(vk
            .verify_strict(&hash.0, &ed25519_dalek::Signature::from_bytes(&sig.0))
            .is_err());
        // Many batches with fresh random coefficients all accept.
        let cases = vec![(a, hash, sig); 40];
        assert!(batch_verdicts(&cases).iter().all(|v| v.is_ok()));
    }

    #[test]
    fn small_order_r_is_rejected() {
        let (a, h, mut s) = signed(1, 2);
        let mut identity = [0u8; 32];
        identity[0] = 1;
        s.0[..32].copy_from_slice(&identity);
        assert_eq!(verify(&a, &h, &s), Err(SignatureError::SmallOrderR));
    }

    #[test]
    fn verify_message_applies_the_same_rule_to_tagged_messages() {
        let id = Identity::from_seed([4; 32]);
        let msg = b"kappalog/test/v1 some longer tagged message";
        let sig = id.sign_tagged(msg);
        assert_eq!(verify_message(&id.author(), msg, &sig), Ok(()));
        assert_eq!(
            verify_message(&id.author(), b"kappalog/test/v1 another", &sig),
            Err(SignatureError::Mismatch)
        );
        // An entry signature is a message signature over the 32 hash bytes.
        let (a, h, s) = signed(1, 2);
        assert_eq!(verify_message(&a, h.as_bytes(), &s), verify(&a, &h, &s));
        let mut weak = [0u8; 32];
        weak[0] = 1;
        assert_eq!(
            verify_message(&Author(weak), msg, &sig),
            Err(SignatureError::WeakKey)
        );
    }

    #[test]
    fn batch_gives_each_item_its_own_verdict() {
        let mut cases: Vec<_> = (0..150u8).map(|i| signed(i % 5 + 1, i)).collect();
        cases[7].1 = Hash([0xee; 32]);
        cases[100].2 .0[40] ^= 1;
        let verdicts = batch_verdicts(&cases);
        for (i, v) in verdicts.iter().enumerate() {
            let single = verify(&cases[i].0, &cases[i].1, &cases[i].2);
            assert_eq!(*v, single, "item {i}");
            assert_eq!(v.is_err(), i == 7 || i == 100, "item {i}");
        }
    }
}
