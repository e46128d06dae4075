//! Fixed-size values (authors, hashes, signatures, nonces) travel in messages as byte
//! strings of their raw bytes, not the hex the JSON facade uses: `#[serde(with = "raw")]`
//! on a field of a [`RawBytes`] type. Below every message type ([`super::message`],
//! [`super::feed_have`], [`super::reconcile`]), which all use it.

use std::fmt;

use serde::{Deserializer, Serializer};

use crate::hash::Hash;
use crate::identity::{Author, Signature};

/// Fixed-size values that travel as a byte string of their raw bytes.
pub trait RawBytes: Sized {
    /// The value's bytes, as they travel.
    fn raw(&self) -> &[u8];
    /// The value from its bytes; `None` when their number is wrong for the type.
    fn from_raw(bytes: &[u8]) -> Option<Self>;
}

impl RawBytes for Author {
    fn raw(&self) -> &[u8] {
        self.as_bytes()
    }
    fn from_raw(bytes: &[u8]) -> Option<Self> {
        Author::try_from(bytes).ok()
    }
}
impl RawBytes for Hash {
    fn raw(&self) -> &[u8] {
        self.as_bytes()
    }
    fn from_raw(bytes: &[u8]) -> Option<Self> {
        Hash::try_from(bytes).ok()
    }
}
impl RawBytes for Signature {
    fn raw(&self) -> &[u8] {
        self.as_bytes()
    }
    fn from_raw(bytes: &[u8]) -> Option<Self> {
        Signature::try_from(bytes).ok()
    }
}

/// Writes `value` as a byte string of exactly its length.
pub fn serialize<T: RawBytes, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(value.raw())
}

/// Reads a byte string and refuses any of the wrong length.
pub fn deserialize<'de, T: RawBytes, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    let bytes = d.deserialize_bytes(BytesVisitor)?;
    let len = bytes.len();
    T::from_raw(&bytes).ok_or_else(|| {
        serde::de::Error::invalid_length(len, &"a fixed-size byte string of the right length")
    })
}

/// Accepts a byte string in any of the forms a deserializer may offer.
pub(super) struct BytesVisitor;

impl<'de> serde::de::Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }
    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }
    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }
}
