//! What an entry is, its fixed byte layout, and its hash.
//!
//! # Entry layout, version 1
//!
//! One function, [`Entry::encode_body`], produces the bytes that are hashed; nothing else
//! (never a serde derive) defines them. All integers are big-endian.
//!
//! | offset | size | field                                                    |
//! |--------|------|----------------------------------------------------------|
//! | 0      | 1    | format version, `0x01`                                   |
//! | 1      | 32   | author: compressed ed25519 public key                    |
//! | 33     | 8    | seq: u64, a feed's first entry is 1                      |
//! | 41     | 8    | timestamp: u64, ms since the Unix epoch, author's clock  |
//! | 49     | 1    | prev flag: `0x00` absent (seq 1), `0x01` present         |
//! | 50     | 0/32 | prev: sha256 of the previous entry, only if flag is 1    |
//! | ..     | 8    | value: i64, two's complement                             |
//! | ..     | 4    | data length: u32, at most [`MAX_DATA_BYTES`]             |
//! | ..     | n    | data: UTF-8 text                                         |
//!
//! The **entry hash** is `sha256(HASH_TAG || body)` where `HASH_TAG` is the 14 ASCII bytes
//! `kappalog/entry`. The **signature** is ed25519 (RFC 8032) over the 32 hash bytes.
//!
//! The **encoded entry** (store records, sync frames) is `body || signature` (64 bytes).
//!
//! Why the signature signs the hash and the hash leaves the signature out: the next entry's
//! `prev` links to a value that is known before signing, so a batch of appends to one feed can
//! compute its whole chain sequentially (cheap) and then sign every entry in parallel on all
//! cores (signing is ~20x the cost of hashing). The same reason segwit keeps signatures out of
//! Bitcoin's transaction id. Two signatures by the same key over the same hash are the same
//! entry: the store keeps the first one it saw.

use serde::{Deserialize, Serialize};

use crate::hash::Hash;
use crate::identity::{Author, Identity, Signature};

/// The entry format version written in byte 0 of the body.
pub const FORMAT_VERSION: u8 = 1;
/// Domain-separation tag hashed in front of the body.
pub const HASH_TAG: &[u8; 14] = b"kappalog/entry";
/// The longest `data` an entry may carry, in bytes of UTF-8.
pub const MAX_DATA_BYTES: usize = 4096;
/// Body length with `prev` absent and empty data.
pub const MIN_BODY_BYTES: usize = 1 + 32 + 8 + 8 + 1 + 8 + 4;
/// The shortest encoded entry (body + signature).
pub const MIN_ENCODED_BYTES: usize = MIN_BODY_BYTES + Signature::LEN;
/// The longest encoded entry (prev present, data at its limit).
pub const MAX_ENCODED_BYTES: usize = MIN_BODY_BYTES + Hash::LEN + MAX_DATA_BYTES + Signature::LEN;

/// A position in a feed. A feed's first entry has seq 1.
pub type Seq = u64;

/// One signed entry of one author's feed.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Entry {
    /// The feed's owner: the public key the signature must verify under.
    pub author: Author,
    /// The entry's position in the author's feed, from 1.
    pub seq: Seq,
    /// Milliseconds since the Unix epoch by the author's clock; carried, never checked.
    pub timestamp: u64,
    /// The hash of the feed's previous entry; `None` exactly when `seq` is 1.
    pub prev: Option<Hash>,
    /// The number the summary view aggregates (count, sum, min, max, mean).
    pub value: i64,
    /// Free UTF-8 text, at most [`MAX_DATA_BYTES`] bytes.
    pub data: String,
    /// ed25519 over the entry hash (not over the body: see the module docs).
    pub signature: Signature,
}

/// Why bytes are not an encoded entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end before the entry does.
    #[error("entry too short: need at least {needed} bytes, got {found}")]
    TooShort {
        /// Bytes the entry needs, as far as the bytes read so far tell.
        needed: usize,
        /// Bytes given.
        found: usize,
    },
    /// Byte 0 (carried) is not [`FORMAT_VERSION`].
    #[error("unsupported entry format version {0}")]
    UnknownVersion(u8),
    /// The prev flag (carried) is neither `0x00` nor `0x01`.
    #[error("invalid prev flag {0:#04x}")]
    BadPrevFlag(u8),
    /// The data length prefix (carried) is over [`MAX_DATA_BYTES`]; refused before allocating.
    #[error("data length {0} exceeds the limit of {MAX_DATA_BYTES} bytes")]
    DataTooLong(u64),
    /// The data bytes are not UTF-8.
    #[error("data is not valid UTF-8")]
    DataNotUtf8,
    /// Bytes (count carried) follow a complete entry where none may.
    #[error("{0} trailing bytes after the entry")]
    TrailingBytes(usize),
}

/// The fields of an entry before it is signed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct UnsignedEntry {
    /// The feed's owner; [`UnsignedEntry::sign`] needs this author's identity.
    pub author: Author,
    /// The position in the feed, from 1.
    pub seq: Seq,
    /// Milliseconds since the Unix epoch, as the author's clock says.
    pub timestamp: u64,
    /// The previous entry's hash; `None` exactly when `seq` is 1.
    pub prev: Option<Hash>,
    /// The number the summary view aggregates.
    pub value: i64,
    /// Free UTF-8 text, at most [`MAX_DATA_BYTES`] bytes.
    pub data: String,
}

impl UnsignedEntry {
    /// The entry hash of these fields.
    pub fn hash(&self) -> Hash {
        let mut body = Vec::with_capacity(MIN_BODY_BYTES + 32 + self.data.len());
        encode_body_into(
            &mut body,
            &self.author,
            self.seq,
            self.timestamp,
            self.prev.as_ref(),
            self.value,
            &self.data,
        );
        hash_body(&body)
    }

    /// Attaches a signature made elsewhere (for instance by a parallel signer).
    pub fn with_signature(self, signature: Signature) -> Entry {
        Entry {
            author: self.author,
            seq: self.seq,
            timestamp: self.timestamp,
            prev: self.prev,
            value: self.value,
            data: self.data,
            signature,
        }
    }

    /// Hashes and signs. The caller is responsible for `identity` matching `author`.
    pub fn sign(self, identity: &Identity) -> (Entry, Hash) {
        let hash = self.hash();
        let signature = identity.sign_hash(&hash);
        (self.with_signature(signature), hash)
    }
}

fn encode_body_into(
    out: &mut Vec<u8>,
    author: &Author,
    seq: Seq,
    timestamp: u64,
    prev: Option<&Hash>,
    value: i64,
    data: &str,
) {
    out.push(FORMAT_VERSION);
    out.extend_from_slice(author.as_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes());
    match prev {
        None => out.push(0),
        Some(hash) => {
            out.push(1);
            out.extend_from_slice(hash.as_bytes());
        }
    }
    out.extend_from_slice(&value.to_be_bytes());
    // Data longer than u32::MAX cannot be built by validated code; saturating keeps the
    // encoding total and validation rejects such an entry anyway.
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data.as_bytes());
}

fn hash_body(body: &[u8]) -> Hash {
    Hash::digest_parts(&[HASH_TAG, body])
}

impl Entry {
    /// The bytes that are hashed (without the tag): see the module docs.
    pub fn encode_body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MIN_BODY_BYTES + 32 + self.data.len());
        self.encode_body_to(&mut out);
        out
    }

    fn encode_body_to(&self, out: &mut Vec<u8>) {
        encode_body_into(
            out,
            &self.author,
            self.seq,
            self.timestamp,
            self.prev.as_ref(),
            self.value,
            &self.data,
        );
    }

    /// The entry hash: `sha256("kappalog/entry" || body)`.
    pub fn hash(&self) -> Hash {
        hash_body(&self.encode_body())
    }

    /// Appends the encoded entry (`body || signature`) to `out`.
    pub fn encode_to(&self, out: &mut Vec<u8>) {
        self.encode_body_to(out);
        out.extend_from_slice(self.signature.as_bytes());
    }

    /// The encoded entry (`body || signature`), as stored and sent to peers.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_to(&mut out);
        out
    }

    /// The length of [`Entry::encode`]'s output, in bytes, without encoding.
    pub fn encoded_len(&self) -> usize {
        MIN_ENCODED_BYTES + if self.prev.is_some() { 32 } else { 0 } + self.data.len()
    }

    /// The author and seq of an encoded entry, read from their fixed offsets (1 and 33)
    /// without decoding the rest; `None` if the bytes are too short or of another format
    /// version.
    pub fn author_and_seq(bytes: &[u8]) -> Option<(Author, Seq)> {
        if *bytes.first()? != FORMAT_VERSION {
            return None;
        }
        let author = Author(bytes.get(1..33)?.try_into().ok()?);
        let seq = u64::from_be_bytes(bytes.get(33..41)?.try_into().ok()?);
        Some((author, seq))
    }

    /// Decodes exactly one encoded entry and returns it with its hash (computed from the same
    /// bytes, so decoding and hashing cost one pass).
    pub fn decode(bytes: &[u8]) -> Result<(Entry, Hash), DecodeError> {
        let mut reader = Reader { bytes, pos: 0 };
        let version = reader.u8()?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let author = Author(reader.array()?);
        let seq = u64::from_be_bytes(reader.array()?);
        let timestamp = u64::from_be_bytes(reader.array()?);
        let prev = match reader.u8()? {
            0 => None,
            1 => Some(Hash(reader.array()?)),
            flag => return Err(DecodeError::BadPrevFlag(flag)),
        };
        let value = i64::from_be_bytes(reader.array()?);
        let len = u32::from_be_bytes(reader.array()?);
        // Check the length against the limit before touching (or allocating for) the data.
        let len = usize::try_from(len)
            .ok()
            .filter(|&len| len <= MAX_DATA_BYTES)
            .ok_or(DecodeError::DataTooLong(u64::from(len)))?;
        let data = std::str::from_utf8(reader.take(len)?)
            .map_err(|_| DecodeError::DataNotUtf8)?
            .to_owned();
        let body_len = reader.pos;
        let signature = Signature(reader.array()?);
        if reader.pos != bytes.len() {
            return Err(DecodeError::TrailingBytes(bytes.len() - reader.pos));
        }
        let hash = hash_body(&bytes[..body_len]);
        Ok((
            Entry {
                author,
                seq,
                timestamp,
                prev,
                value,
                data,
                signature,
            },
            hash,
        ))
    }

    /// The entry without its signature.
    pub fn unsigned(&self) -> UnsignedEntry {
        UnsignedEntry {
            author: self.author,
            seq: self.seq,
            timestamp: self.timestamp,
            prev: self.prev,
            value: self.value,
            data: self.data.clone(),
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        match end {
            Some(end) => {
                let slice = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(slice)
            }
            None => Err(DecodeError::TooShort {
                needed: self.pos.saturating_add(n),
                found: self.bytes.len(),
            }),
        }
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let slice = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }
}

/// Signed feeds for the crate's unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Entry, Seq, UnsignedEntry};
    use crate::hash::Hash;
    use crate::identity::Identity;

    /// A feed of `n` chained entries signed by `seed`'s key; `variant` changes the values,
    /// so two variants of one key fork at every position.
    pub(crate) fn feed(seed: u8, n: Seq, variant: i64) -> Vec<(Entry, Hash)> {
        let id = Identity::from_seed([seed; 32]);
        let mut out: Vec<(Entry, Hash)> = Vec::new();
        for seq in 1..=n {
            let prev = out.last().map(|(_, h)| *h);
            out.push(
                UnsignedEntry {
                    author: id.author(),
                    seq,
                    timestamp: seq,
                    prev,
                    value: variant * 100 + i64::try_from(seq).unwrap(),
                    data: String::new(),
                }
                .sign(&id),
            );
        }
        out
    }

    /// `entry` under another valid signature of the same entry hash (see the file).
    pub(crate) use super::resign::resign;
}

#[cfg(test)]
#[path = "entry/resign.rs"]
mod resign;

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seq: Seq, prev: Option<Hash>, data: &str) -> Entry {
        let id = Identity::from_seed([7; 32]);
        UnsignedEntry {
            author: id.author(),
            seq,
            timestamp: 1_700_000_000_000,
            prev,
            value: -42,
            data: data.into(),
        }
        .sign(&id)
        .0
    }

    #[test]
    fn encode_decode_round_trip() {
        let first = sample(1, None, "");
        let second = sample(2, Some(first.hash()), "héllo, \"world\"");
        for entry in [first, second] {
            let bytes = entry.encode();
            assert_eq!(bytes.len(), entry.encoded_len());
            let (decoded, hash) = Entry::decode(&bytes).unwrap();
            assert_eq!(decoded, entry);
            assert_eq!(hash, entry.hash());
        }
    }

    #[test]
    fn value_only_entry_is_small() {
        let entry = sample(2, Some(Hash([1; 32])), "");
        assert_eq!(entry.encoded_len(), 158);
    }

    #[test]
    fn decode_rejects_each_malformation() {
        let entry = sample(2, Some(Hash([1; 32])), "abc");
        let bytes = entry.encode();
        assert!(matches!(
            Entry::decode(&bytes[..bytes.len() - 1]),
            Err(DecodeError::TooShort { .. })
        ));
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(Entry::decode(&extra), Err(DecodeError::TrailingBytes(1)));
        let mut version = bytes.clone();
        version[0] = 2;
        assert_eq!(Entry::decode(&version), Err(DecodeError::UnknownVersion(2)));
        let mut flag = bytes.clone();
        flag[49] = 7;
        assert_eq!(Entry::decode(&flag), Err(DecodeError::BadPrevFlag(7)));
        let mut long = bytes.clone();
        let len_at = 50 + 32 + 8;
        long[len_at..len_at + 4].copy_from_slice(&5000u32.to_be_bytes());
        assert_eq!(Entry::decode(&long), Err(DecodeError::DataTooLong(5000)));
        let mut utf8 = bytes.clone();
        utf8[len_at + 4] = 0xff;
        assert_eq!(Entry::decode(&utf8), Err(DecodeError::DataNotUtf8));
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = sample(2, Some(Hash([1; 32])), "x").unsigned();
        let h = base.hash();
        let mut variants = vec![];
        let mut e = base.clone();
        e.author = Author([9; 32]);
        variants.push(e);
        let mut e = base.clone();
        e.seq = 3;
        variants.push(e);
        let mut e = base.clone();
        e.timestamp += 1;
        variants.push(e);
        let mut e = base.clone();
        e.prev = Some(Hash([2; 32]));
        variants.push(e);
        let mut e = base.clone();
        e.value = 0;
        variants.push(e);
        let mut e = base.clone();
        e.data = "y".into();
        variants.push(e);
        for v in variants {
            assert_ne!(v.hash(), h, "{v:?}");
        }
    }
}

/// An entry as JSON (CLI output, HTTP): every field plus its hash, binary fields in lowercase
/// hex, in the order users read them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryJson {
    /// See [`Entry::author`].
    pub author: Author,
    /// See [`Entry::seq`].
    pub seq: Seq,
    /// See [`Entry::timestamp`].
    pub timestamp: u64,
    /// See [`Entry::prev`]; JSON `null` on a feed's first entry.
    pub prev: Option<Hash>,
    /// See [`Entry::value`].
    pub value: i64,
    /// See [`Entry::data`].
    pub data: String,
    /// The entry hash of the fields above (where JSON comes in, a claim to check).
    pub hash: Hash,
    /// See [`Entry::signature`].
    pub signature: Signature,
}

impl EntryJson {
    /// The JSON form of `entry`; `hash` must be its entry hash (the caller has it already).
    pub fn new(entry: &Entry, hash: &Hash) -> EntryJson {
        EntryJson {
            author: entry.author,
            seq: entry.seq,
            timestamp: entry.timestamp,
            prev: entry.prev,
            value: entry.value,
            data: entry.data.clone(),
            hash: *hash,
            signature: entry.signature,
        }
    }
}
