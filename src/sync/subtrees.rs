//! The copy-search messages of protocol version 4 (docs/PROTOCOL.md section 7, "Copy
//! searches"): `WantSubtrees` asks the peer for the hashes of complete subtrees of its tree of
//! a feed (or, at level 0, for the entries themselves), `Subtrees` answers one want exactly.
//! Pure: the shapes, their limits, and the typed data an answer carries.
//!
//! A subtree of height `level` with number `index` covers the leaves
//! `index * 2^level .. (index + 1) * 2^level` (0-based leaf positions: seq minus 1), as in
//! the tile layout of docs/TLOG.md. `data` is a list of byte strings: at level 1 and above
//! `count` hashes of 32 bytes each, at level 0 the `count` entries' fixed encodings (the
//! receiver computes their leaf hashes itself, which covers the signatures). An empty list
//! means "I do not hold that": the range is not covered by the sender's tree, the feed is
//! forked or unknown there.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::limits::{MAX_SUBTREE_ENTRIES, MAX_SUBTREE_HASHES};
use super::message::EncodedEntry;
use super::raw::{self, BytesVisitor};
use crate::entry::MAX_ENCODED_BYTES;
use crate::hash::Hash;
use crate::identity::Author;

/// The highest level a subtree of a tree of at most 2^64 leaves can have.
pub const MAX_SUBTREE_LEVEL: u8 = 63;

/// "Send me the subtrees `index..index + count` of height `level` of your tree of `author`"
/// (v4, message variant 10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WantSubtrees {
    /// The feed whose tree is asked about.
    #[serde(with = "raw")]
    pub author: Author,
    /// The subtrees' height: 0 asks for entries, 1 to 63 for hashes.
    pub level: u8,
    /// The first subtree's number at that height.
    pub index: u64,
    /// How many consecutive subtrees: 1 to [`MAX_SUBTREE_HASHES`] at level 1 and above, 1
    /// to [`MAX_SUBTREE_ENTRIES`] at level 0.
    pub count: u16,
}

/// The answer to one [`WantSubtrees`] (v4, message variant 11): the want's four fields
/// repeated, so the receiver matches it exactly, and the data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subtrees {
    /// As in the want answered.
    #[serde(with = "raw")]
    pub author: Author,
    /// As in the want answered.
    pub level: u8,
    /// As in the want answered.
    pub index: u64,
    /// As in the want answered.
    pub count: u16,
    /// `count` items (see the module docs), or none: not held.
    pub data: Vec<SubtreeItem>,
}

/// One item of [`Subtrees::data`]: a hash's 32 bytes, or an entry's fixed encoding.
#[derive(Clone, PartialEq, Eq)]
pub struct SubtreeItem(pub Vec<u8>);

impl fmt::Debug for SubtreeItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubtreeItem({} bytes)", self.0.len())
    }
}

impl Serialize for SubtreeItem {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for SubtreeItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_byte_buf(BytesVisitor).map(SubtreeItem)
    }
}

/// What a held range of subtrees is, typed: what the node's copy searches hand the session
/// to send, and what a checked [`Subtrees`] gives the search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubtreeData {
    /// Level 1 and above: one hash per subtree, in order.
    Hashes(Vec<Hash>),
    /// Level 0: one entry per leaf, in order, in its fixed encoding.
    Entries(Vec<EncodedEntry>),
}

impl SubtreeData {
    /// How many subtrees it covers.
    pub fn len(&self) -> usize {
        match self {
            SubtreeData::Hashes(h) => h.len(),
            SubtreeData::Entries(e) => e.len(),
        }
    }

    /// Whether it covers none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether it is a whole answer to `want`: hashes at level 1 and above, entries at level
    /// 0, `count` of them, each of a size [`Subtrees::check`] takes.
    pub fn answers(&self, want: &WantSubtrees) -> bool {
        let shaped = matches!(
            (self, want.level),
            (SubtreeData::Entries(_), 0) | (SubtreeData::Hashes(_), 1..)
        );
        shaped
            && self.len() == usize::from(want.count)
            && Subtrees::answer(want, Some(self.clone())).check().is_ok()
    }
}

/// A want or an answer outside the shape rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubtreeError {
    /// A count of 0, or above the limit of its level.
    #[error("{count} subtrees at level {level}, outside 1..={limit}")]
    Count {
        /// The level asked about.
        level: u8,
        /// The count given.
        count: u16,
        /// The level's limit.
        limit: u16,
    },
    /// Subtrees past the last leaf a tree can have (2^64).
    #[error("subtrees {index}+{count} at level {level} lie past the largest tree")]
    Range {
        /// The level.
        level: u8,
        /// The first subtree.
        index: u64,
        /// The count.
        count: u16,
    },
    /// An answer whose data is neither empty nor `count` items.
    #[error("{found} items for {count} subtrees")]
    DataLength {
        /// The count the answer names.
        count: u16,
        /// The items it carries.
        found: usize,
    },
    /// A hash item (level 1 and above) of another length than 32 bytes.
    #[error("hash {index} is {len} bytes, not 32")]
    HashLength {
        /// Its position in the data, from 0.
        index: usize,
        /// Its length.
        len: usize,
    },
    /// An entry item (level 0) longer than any entry's encoding.
    #[error("entry {index} is {len} bytes, the limit is {MAX_ENCODED_BYTES}")]
    EntryTooLarge {
        /// Its position in the data, from 0.
        index: usize,
        /// Its length.
        len: usize,
    },
}

impl WantSubtrees {
    /// Checks the count against its level's limit and the range against the largest tree.
    pub fn check(&self) -> Result<(), SubtreeError> {
        check_range(self.level, self.index, self.count)
    }

    /// Whether `answer` answers this want: the same author, level, index and count.
    pub fn is_answered_by(&self, answer: &Subtrees) -> bool {
        (self.author, self.level, self.index, self.count)
            == (answer.author, answer.level, answer.index, answer.count)
    }
}

impl Subtrees {
    /// The answer to `want`: `data` if held, else the empty answer.
    pub fn answer(want: &WantSubtrees, data: Option<SubtreeData>) -> Subtrees {
        let data = match data {
            None => Vec::new(),
            Some(SubtreeData::Hashes(hashes)) => hashes
                .iter()
                .map(|h| SubtreeItem(h.as_bytes().to_vec()))
                .collect(),
            Some(SubtreeData::Entries(entries)) => {
                entries.into_iter().map(|e| SubtreeItem(e.0)).collect()
            }
        };
        Subtrees {
            author: want.author,
            level: want.level,
            index: want.index,
            count: want.count,
            data,
        }
    }

    /// Checks the want's fields as [`WantSubtrees::check`] does, and the data: empty, or
    /// `count` hashes of 32 bytes (level 1 and above) or `count` entry encodings no longer
    /// than an entry can be (level 0).
    pub fn check(&self) -> Result<(), SubtreeError> {
        check_range(self.level, self.index, self.count)?;
        if self.data.is_empty() {
            return Ok(());
        }
        if self.data.len() != usize::from(self.count) {
            return Err(SubtreeError::DataLength {
                count: self.count,
                found: self.data.len(),
            });
        }
        let bad = |limit_ok: fn(usize) -> bool| {
            self.data
                .iter()
                .enumerate()
                .find(|(_, item)| !limit_ok(item.0.len()))
                .map(|(index, item)| (index, item.0.len()))
        };
        if self.level == 0 {
            if let Some((index, len)) = bad(|len| len <= MAX_ENCODED_BYTES) {
                return Err(SubtreeError::EntryTooLarge { index, len });
            }
        } else if let Some((index, len)) = bad(|len| len == Hash::LEN) {
            return Err(SubtreeError::HashLength { index, len });
        }
        Ok(())
    }

    /// The data, typed; `None` for the empty answer. Call on a checked answer (a hash item
    /// of the wrong length is dropped here, which [`Subtrees::check`] refuses first).
    pub fn data(&self) -> Option<SubtreeData> {
        if self.data.is_empty() {
            return None;
        }
        Some(if self.level == 0 {
            SubtreeData::Entries(
                self.data
                    .iter()
                    .map(|item| EncodedEntry(item.0.clone()))
                    .collect(),
            )
        } else {
            SubtreeData::Hashes(
                self.data
                    .iter()
                    .filter_map(|item| Hash::try_from(item.0.as_slice()).ok())
                    .collect(),
            )
        })
    }
}

fn check_range(level: u8, index: u64, count: u16) -> Result<(), SubtreeError> {
    let limit = if level == 0 {
        MAX_SUBTREE_ENTRIES
    } else {
        MAX_SUBTREE_HASHES
    };
    if count == 0 || count > limit {
        return Err(SubtreeError::Count {
            level,
            count,
            limit,
        });
    }
    // The subtrees' last leaf must be a position a tree can have: (index + count) * 2^level
    // leaves at most 2^64.
    let end = u128::from(index) + u128::from(count);
    if level > MAX_SUBTREE_LEVEL || end << level > 1u128 << 64 {
        return Err(SubtreeError::Range {
            level,
            index,
            count,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::frame::{decode_frame, encode_frame};
    use crate::sync::message::Message;

    fn want(level: u8, index: u64, count: u16) -> WantSubtrees {
        WantSubtrees {
            author: Author([3; 32]),
            level,
            index,
            count,
        }
    }

    #[test]
    fn counts_and_ranges_are_bounded_by_level() {
        assert_eq!(want(0, 0, 128).check(), Ok(()));
        assert_eq!(want(8, 0, 256).check(), Ok(()));
        assert_eq!(want(63, 1, 1).check(), Ok(()));
        for (level, count, limit) in [(0, 129, 128), (0, 0, 128), (1, 257, 256), (9, 0, 256)] {
            assert_eq!(
                want(level, 0, count).check(),
                Err(SubtreeError::Count {
                    level,
                    count,
                    limit
                })
            );
        }
        for (level, index, count) in [(63, 2, 1), (64, 0, 1), (0, u64::MAX, 2), (8, 1 << 56, 1)] {
            assert_eq!(
                want(level, index, count).check(),
                Err(SubtreeError::Range {
                    level,
                    index,
                    count
                }),
                "{level} {index}"
            );
        }
    }

    #[test]
    fn answers_carry_nothing_or_exactly_count_items_of_the_levels_shape() {
        let w = want(1, 4, 2);
        let hashes = SubtreeData::Hashes(vec![Hash::digest_parts(&[b"a"]); 2]);
        let answer = Subtrees::answer(&w, Some(hashes.clone()));
        assert_eq!(answer.check(), Ok(()));
        assert!(w.is_answered_by(&answer));
        assert_eq!(answer.data(), Some(hashes.clone()));
        assert!(hashes.answers(&w));
        assert!(!hashes.answers(&want(0, 4, 2)), "hashes at level 0");
        assert!(!hashes.answers(&want(1, 4, 3)), "too few");
        let empty = Subtrees::answer(&w, None);
        assert_eq!((empty.check(), empty.data()), (Ok(()), None));
        assert!(!want(1, 5, 2).is_answered_by(&answer));

        let mut short = answer.clone();
        short.data.pop();
        assert_eq!(
            short.check(),
            Err(SubtreeError::DataLength { count: 2, found: 1 })
        );
        let mut long_hash = answer.clone();
        long_hash.data[1].0.push(0);
        assert_eq!(
            long_hash.check(),
            Err(SubtreeError::HashLength { index: 1, len: 33 })
        );
        let leaves = want(0, 0, 1);
        let big = Subtrees {
            data: vec![SubtreeItem(vec![0; MAX_ENCODED_BYTES + 1])],
            ..Subtrees::answer(&leaves, None)
        };
        assert_eq!(
            big.check(),
            Err(SubtreeError::EntryTooLarge {
                index: 0,
                len: MAX_ENCODED_BYTES + 1
            })
        );
    }

    /// Both messages round-trip through a frame, and the largest answer fits in one.
    #[test]
    fn messages_round_trip_and_the_largest_answer_fits_a_frame() {
        let w = want(0, 7, MAX_SUBTREE_ENTRIES);
        let full = Subtrees::answer(
            &w,
            Some(SubtreeData::Entries(vec![
                EncodedEntry(
                    vec![9; MAX_ENCODED_BYTES]
                );
                usize::from(MAX_SUBTREE_ENTRIES)
            ])),
        );
        for message in [Message::WantSubtrees(w), Message::Subtrees(full)] {
            let mut frame = encode_frame(&message).unwrap();
            assert_eq!(decode_frame(&mut frame).unwrap(), Some(message.clone()));
            assert!(message.allowed_in(4));
            assert!(!message.allowed_in(3));
        }
    }
}
