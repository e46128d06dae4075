//! Item hashes and fingerprints, laid out byte by byte in the [`super`] module docs
//! (*Items and fingerprints*), and the prefix sums that give a range's fingerprint in
//! constant time once its item indices are known.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::sync::feed_have::FeedHave;

/// The domain tag of the item hash.
const ITEM_TAG: &[u8; 21] = b"kappalog/reconcile/v2";

/// The first 16 bytes of the fingerprint hash (see the module docs). Travels as 16 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint(pub [u8; 16]);

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fingerprint({})", hex::encode(self.0))
    }
}

/// `sums[k]` is the sum of the item hashes of `items[..k]`, so `sums` has one more entry
/// than the items it was built from.
#[derive(Clone, Debug)]
pub(super) struct PrefixSums {
    sums: Vec<Sum>,
}

impl PrefixSums {
    pub(super) fn new(items: &[FeedHave]) -> PrefixSums {
        let mut sums = Vec::with_capacity(items.len().saturating_add(1));
        let mut sum = Sum::default();
        sums.push(sum);
        for item in items {
            sum = sum.add(item_hash(item));
            sums.push(sum);
        }
        PrefixSums { sums }
    }

    /// The fingerprint of `items[lo..hi]`, for `lo <= hi <= items.len()` (the caller's
    /// indices come from binary searches over those same items).
    pub(super) fn fingerprint(&self, lo: usize, hi: usize) -> Fingerprint {
        fingerprint_of_sum(self.sums[hi].sub(self.sums[lo]), hi - lo)
    }
}

/// The fingerprint of `items`, computed directly.
pub fn fingerprint(items: &[FeedHave]) -> Fingerprint {
    let sum = items
        .iter()
        .fold(Sum::default(), |sum, item| sum.add(item_hash(item)));
    fingerprint_of_sum(sum, items.len())
}

fn fingerprint_of_sum(sum: Sum, count: usize) -> Fingerprint {
    // usize is at most 64 bits wide on every target Rust supports.
    let count = u64::try_from(count).unwrap_or(u64::MAX);
    let digest = Sha256::new()
        .chain_update(sum.to_le_bytes())
        .chain_update(count.to_be_bytes())
        .finalize();
    let mut fingerprint = [0; 16];
    fingerprint.copy_from_slice(&digest[..16]);
    Fingerprint(fingerprint)
}

fn item_hash(item: &FeedHave) -> Sum {
    let digest = Sha256::new()
        .chain_update(ITEM_TAG)
        .chain_update(item.author.as_bytes())
        .chain_update(item.length.to_be_bytes())
        .chain_update(item.head.as_bytes())
        .finalize();
    Sum::from_le_bytes(&digest.into())
}

/// A 256-bit unsigned integer modulo 2^256, as four little-endian u64 limbs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Sum([u64; 4]);

impl Sum {
    fn from_le_bytes(bytes: &[u8; 32]) -> Sum {
        let mut limbs = [0; 4];
        for (limb, chunk) in limbs.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut word = [0; 8];
            // `chunks_exact(8)` yields 8-byte chunks only.
            word.copy_from_slice(chunk);
            *limb = u64::from_le_bytes(word);
        }
        Sum(limbs)
    }

    fn to_le_bytes(self) -> [u8; 32] {
        let mut bytes = [0; 32];
        for (chunk, limb) in bytes.chunks_exact_mut(8).zip(self.0) {
            chunk.copy_from_slice(&limb.to_le_bytes());
        }
        bytes
    }

    fn add(self, other: Sum) -> Sum {
        let mut out = [0; 4];
        let mut carry = false;
        for ((out, a), b) in out.iter_mut().zip(self.0).zip(other.0) {
            let (sum, c1) = a.overflowing_add(b);
            let (sum, c2) = sum.overflowing_add(u64::from(carry));
            *out = sum;
            carry = c1 || c2;
        }
        Sum(out)
    }

    fn sub(self, other: Sum) -> Sum {
        let mut out = [0; 4];
        let mut borrow = false;
        for ((out, a), b) in out.iter_mut().zip(self.0).zip(other.0) {
            let (diff, b1) = a.overflowing_sub(b);
            let (diff, b2) = diff.overflowing_sub(u64::from(borrow));
            *out = diff;
            borrow = b1 || b2;
        }
        Sum(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Hash;
    use crate::identity::Author;
    use proptest::prelude::*;

    /// The fingerprint by the module docs, with the sum taken byte by byte.
    fn naive_fingerprint(items: &[FeedHave]) -> Fingerprint {
        let mut sum = [0u8; 32];
        for item in items {
            let length = item.length.to_be_bytes();
            let hash = Hash::digest_parts(&[ITEM_TAG, &item.author.0, &length, &item.head.0]);
            let mut carry = 0u16;
            for (s, h) in sum.iter_mut().zip(hash.0) {
                let total = u16::from(*s) + u16::from(h) + carry;
                *s = total.to_le_bytes()[0];
                carry = total >> 8;
            }
        }
        let count = u64::try_from(items.len()).unwrap();
        let digest = Hash::digest_parts(&[&sum, &count.to_be_bytes()]);
        Fingerprint(digest.0[..16].try_into().unwrap())
    }

    fn feed(a: u8, length: u64, h: u8) -> FeedHave {
        FeedHave {
            author: Author([a; 32]),
            length,
            head: Hash([h; 32]),
        }
    }

    #[test]
    fn golden_values() {
        let three = [feed(1, 1, 0xaa), feed(2, 2, 0xbb), feed(3, 3, 0xcc)];
        // Computed independently (Python hashlib and big integers) from the module docs.
        let golden = |hex: &str| Fingerprint(hex::decode(hex).unwrap().try_into().unwrap());
        assert_eq!(
            fingerprint(&three),
            golden("a80d91c3d9c1b1585cb257b25d0ffd0e")
        );
        assert_eq!(fingerprint(&[]), golden("2c34ce1df23b838c5abf2a7f6437cca3"));
        let prefix = PrefixSums::new(&three);
        assert_eq!(prefix.fingerprint(0, 3), fingerprint(&three));
        assert_eq!(prefix.fingerprint(1, 3), fingerprint(&three[1..]));
        assert_eq!(prefix.fingerprint(2, 2), fingerprint(&[]));
    }

    #[test]
    fn sums_wrap_modulo_2_pow_256() {
        let max = Sum([u64::MAX; 4]);
        let one = Sum([1, 0, 0, 0]);
        assert_eq!(max.add(one), Sum::default());
        assert_eq!(Sum::default().sub(one), max);
        assert_eq!(Sum([0, 1, 0, 0]).sub(one), Sum([u64::MAX, 0, 0, 0]));
    }

    proptest! {
        #[test]
        fn prefix_sums_agree_with_the_byte_by_byte_sum(
            raw in prop::collection::vec((any::<u8>(), 1u64..5, any::<u8>()), 0..60),
            a in 0usize..61,
            b in 0usize..61,
        ) {
            let items: Vec<FeedHave> = raw.iter().map(|&(a, n, h)| feed(a, n, h)).collect();
            let (lo, hi) = (a.min(b).min(items.len()), a.max(b).min(items.len()));
            let prefix = PrefixSums::new(&items);
            prop_assert_eq!(prefix.fingerprint(lo, hi), naive_fingerprint(&items[lo..hi]));
            prop_assert_eq!(fingerprint(&items[lo..hi]), naive_fingerprint(&items[lo..hi]));
        }
    }
}
