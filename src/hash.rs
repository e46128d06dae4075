//! The sha256 [`Hash`] newtype: the identity of an entry everywhere (dedup, `prev` links,
//! HTTP, CSV).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Why a byte string or hex text is not a valid fixed-length value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseBytesError {
    /// A byte string of the wrong length.
    #[error("expected {expected} bytes, got {found}")]
    WrongLength {
        /// The value's fixed length, in bytes.
        expected: usize,
        /// The length given, in bytes.
        found: usize,
    },
    /// Hex text of the wrong length (counted in characters, as the user typed them).
    #[error("expected {expected} hex digits, got {found}")]
    WrongHexLength {
        /// Twice the value's length in bytes.
        expected: usize,
        /// Characters given.
        found: usize,
    },
    /// Text of the right length with a character that is not a hex digit (the hex crate's
    /// message carried).
    #[error("invalid hex: {0}")]
    BadHex(String),
}

/// Decodes lowercase or uppercase hex into exactly `N` bytes.
pub(crate) fn decode_hex_array<const N: usize>(text: &str) -> Result<[u8; N], ParseBytesError> {
    if text.len() != N * 2 {
        // In digits, as the caller wrote them: "64 digits, got 65" says what is wrong, where
        // rounding 65 digits down to bytes would not.
        return Err(ParseBytesError::WrongHexLength {
            expected: N * 2,
            found: text.chars().count(),
        });
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|e| ParseBytesError::BadHex(e.to_string()))?;
    Ok(out)
}

/// A sha256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// A sha256 digest's length, in bytes.
    pub const LEN: usize = 32;

    /// sha256 of the concatenation of `parts`.
    pub fn digest_parts(parts: &[&[u8]]) -> Hash {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        Hash(hasher.finalize().into())
    }

    /// The 32 digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex digits, as [`fmt::Display`] writes them.
    pub fn to_hex(&self) -> String {
        hex_into(&self.0, &mut [0; 128]).to_owned()
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl FromStr for Hash {
    type Err = ParseBytesError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode_hex_array(s).map(Hash)
    }
}

impl TryFrom<&[u8]> for Hash {
    type Error = ParseBytesError;
    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        <[u8; 32]>::try_from(bytes)
            .map(Hash)
            .map_err(|_| ParseBytesError::WrongLength {
                expected: 32,
                found: bytes.len(),
            })
    }
}

/// Lowercase hex of up to 64 bytes into `buf`, without allocating: JSON responses carry four
/// hex fields per entry, and formatting them through `Display` cost an allocation and a
/// per-character escape check each.
pub(crate) fn hex_into<'a>(bytes: &[u8], buf: &'a mut [u8; 128]) -> &'a str {
    let out = &mut buf[..2 * bytes.len().min(64)];
    // Only a longer input can fail, and it was cut to fit above.
    let _ = hex::encode_to_slice(&bytes[..out.len() / 2], out);
    // Hex digits are ASCII, so this is always valid UTF-8.
    std::str::from_utf8(out).unwrap_or_default()
}

/// Implements hex `Serialize`/`Deserialize` for a newtype that has `Display` and `FromStr`.
macro_rules! serde_as_hex {
    ($ty:ty) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut buf = [0u8; 128];
                s.serialize_str($crate::hash::hex_into(&self.0, &mut buf))
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use serde_as_hex;

serde_as_hex!(Hash);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_into_matches_the_hex_crate() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(64).collect();
        for n in [0, 1, 32, 64] {
            let mut buf = [0u8; 128];
            assert_eq!(hex_into(&bytes[..n], &mut buf), hex::encode(&bytes[..n]));
        }
        let sig = crate::identity::Signature([0xab; 64]);
        assert_eq!(
            serde_json::to_string(&sig).unwrap(),
            format!("\"{}\"", "ab".repeat(64))
        );
    }

    #[test]
    fn hex_round_trip() {
        let h = Hash::digest_parts(&[b"abc"]);
        assert_eq!(
            h.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(h.to_string().parse::<Hash>().unwrap(), h);
    }

    #[test]
    fn rejects_wrong_length_and_bad_hex() {
        assert_eq!(
            "abcd".parse::<Hash>(),
            Err(ParseBytesError::WrongHexLength {
                expected: 64,
                found: 4
            })
        );
        // One digit too many is named in digits, not rounded to bytes.
        let long = "ab".repeat(32) + "c";
        assert_eq!(
            long.parse::<Hash>().unwrap_err().to_string(),
            "expected 64 hex digits, got 65"
        );
        let bad = "zz".repeat(32);
        assert!(matches!(
            bad.parse::<Hash>(),
            Err(ParseBytesError::BadHex(_))
        ));
        assert!(Hash::try_from(&[0u8; 31][..]).is_err());
    }
}
