//! The protocol's messages and its version (docs/PROTOCOL.md section 5), with the limits of
//! section 10 re-exported from [`super::limits`], where they sit below every message.
//!
//! Messages are serde types encoded with bincode 2 by [`super::frame`]; the variant order of
//! [`Message`] and the field order of each struct are part of the protocol. Authors, hashes,
//! nonces and signatures travel as byte strings of their raw bytes (not the hex the JSON
//! facade uses). Entries and fork proofs travel as byte strings holding their **fixed**
//! encodings ([`Entry::encode`], [`ForkProof::encode`]); no serde derive ever defines their
//! bytes.
//!
//! [`Message::check_rules`] enforces the count and shape limits after decoding, so a frame
//! that fits in `MAX_FRAME_BYTES` but carries too much is still refused.
//!
//! The byte examples of docs/PROTOCOL.md (section 5 and after) are checked against this
//! encoding by `doc_examples_tests.rs`, so the text and the code cannot drift apart.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::entry::{self, Entry, Seq, MAX_ENCODED_BYTES};
use crate::fork::{ForkProof, ProofDecodeError, MAX_PROOF_BYTES};
use crate::hash::Hash;
use crate::identity::{Author, Signature};

pub use super::feed_have::FeedHave;
use super::raw::{self, BytesVisitor, RawBytes};
use super::reconcile::Reconcile;

/// The highest protocol version this node speaks (it also speaks 2 and 3, see
/// [`super::opening`]), sent in [`Hello`]. Bump on any change to messages or their meaning.
pub const PROTOCOL_VERSION: u16 = 4;

// The limits are listed in `limits.rs`; they are re-exported here, with the messages they
// bound.
use crate::tlog::note::MAX_NOTE_BYTES;

pub use super::limits::{
    CHECKPOINTS_PER_SECOND, CHECKPOINT_PUSH_INTERVAL_MS, CHECKPOINT_RECONCILE_TIMEOUT_MS,
    CLAIM_DELIVERY_TIMEOUT_MS, COPY_SEARCH_TIMEOUT_MS, FRAME_READ_TIMEOUT_MS, HANDSHAKE_TIMEOUT_MS,
    MAX_CHECKPOINTS_BURST, MAX_CHECKPOINTS_PER_FRAME, MAX_ENTRIES_PER_BATCH, MAX_FRAME_BYTES,
    MAX_PEER_CONNECTIONS, MAX_PENDING_HANDSHAKES, MAX_PROOFS_PER_FRAME, MAX_SUBTREE_ENTRIES,
    MAX_SUBTREE_HASHES, MAX_SUBTREE_WANTS_OUTSTANDING, MAX_WANTS_PER_SESSION, PING_INTERVAL_MS,
    READ_IDLE_TIMEOUT_MS, RECONCILE_TIMEOUT_MS, RECONNECT_BACKOFF_MAX_MS, RECONNECT_BACKOFF_MIN_MS,
    STARTUP_FENCE_TIMEOUT_MS, SUBTREE_WANTS_BURST, SUBTREE_WANTS_PER_SECOND,
};
pub use super::subtrees::{SubtreeData, SubtreeError, SubtreeItem, Subtrees, WantSubtrees};

/// Bytes of a handshake nonce.
pub const NONCE_BYTES: usize = 32;

/// A fresh random value each side sends in its [`Hello`]; the peer signs it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nonce(pub [u8; NONCE_BYTES]);

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({})", hex::encode(self.0))
    }
}

/// One protocol message (one frame body).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Variant 0: the first message inside the channel, on each side.
    Hello(Hello),
    /// Variant 1: the second message, proving the key the `Hello` named.
    Auth(Auth),
    /// Variant 2: fork proofs, after `Auth` and whenever a new one is learned.
    ForkProofs(ForkProofs),
    /// Variant 3: one frame of a reconciliation round of feed states.
    Reconcile(Reconcile),
    /// Variant 4: a request for one entry, for a fork check.
    Want(Want),
    /// Variant 5: entries the peer lacks, or answers to its `Want`s.
    Entries(Entries),
    /// Variant 6: keepalive, sent after `PING_INTERVAL_MS` without other traffic.
    Ping,
    /// Variant 7: the sender is about to close.
    Bye(Bye),
    /// Variant 8 (v3 sessions only): one frame of the checkpoint reconciliation, a second run
    /// of [`Reconcile`] over checkpoint items after the entries' one ended.
    CheckpointReconcile(Reconcile),
    /// Variant 9 (v3 sessions only): signed checkpoint notes the peer lacks.
    Checkpoints(Checkpoints),
    /// Variant 10 (v4 sessions only): a copy search asks for subtrees of the peer's tree.
    WantSubtrees(WantSubtrees),
    /// Variant 11 (v4 sessions only): the answer to one `WantSubtrees`.
    Subtrees(Subtrees),
}

impl Message {
    /// Whether a session of `version` may carry this message: the checkpoint messages need
    /// version 3, the copy-search ones 4 (an older node would not decode them at all).
    pub fn allowed_in(&self, version: u16) -> bool {
        version >= self.since_version()
    }

    /// The first protocol version with this message.
    pub fn since_version(&self) -> u16 {
        match self {
            Message::CheckpointReconcile(_) | Message::Checkpoints(_) => 3,
            Message::WantSubtrees(_) | Message::Subtrees(_) => 4,
            _ => 2,
        }
    }
}

/// Signed checkpoint notes, each an author checkpoint followed by cosignature lines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoints {
    /// 1 to `MAX_CHECKPOINTS_PER_FRAME` notes of at most `MAX_NOTE_BYTES` each, handed to
    /// the node's checkpoint book, which verifies them.
    pub notes: Vec<EncodedNote>,
}

/// A signed note's bytes as carried in a frame.
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedNote(pub Vec<u8>);

impl fmt::Debug for EncodedNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncodedNote({} bytes)", self.0.len())
    }
}

/// The first message of each side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The session's version, as the openings agreed (2 or 3); any other ends with
    /// `VersionMismatch`.
    pub version: u16,
    /// The key the sender will sign `Auth` with; unproven until that `Auth` verifies.
    #[serde(with = "raw")]
    pub author: Author,
    /// Fresh random per session; the peer's `Auth` signs it, so an old `Auth` cannot be replayed.
    #[serde(with = "raw")]
    pub nonce: Nonce,
}

/// The signature over the handshake message (see [`super::handshake`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auth {
    /// By the `Hello`'s author, over both authors, both nonces and the channel binding.
    #[serde(with = "raw")]
    pub signature: Signature,
}

/// Fork proofs in their fixed encoding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkProofs {
    /// 1 to `MAX_PROOFS_PER_FRAME` proofs, each checked by the receiver before it is kept.
    pub proofs: Vec<EncodedProof>,
}

/// "Send me your entry `seq` of `author`" (a fork check).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Want {
    /// The feed asked about.
    #[serde(with = "raw")]
    pub author: Author,
    /// The position asked for; at least 1 (positions start at 1), else a violation.
    pub seq: Seq,
}

/// Entries in their fixed encoding; within a feed contiguous and ascending.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entries {
    /// 1 to `MAX_ENTRIES_PER_BATCH` entries, checked as one unit before any is stored.
    pub entries: Vec<EncodedEntry>,
}

/// Why the sender is closing the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ByeReason {
    /// The node is stopping, or failed locally (storage, a task); not the peer's fault.
    Shutdown,
    /// The peer's `Hello` or opening named a protocol version other than ours.
    VersionMismatch,
    /// A proven connection to ourselves, or a peer holding a copy of our key.
    SelfConnection,
    /// The peer's `Auth` did not verify, or its `Hello` reflected our nonce.
    BadAuth,
    /// The peer was silent past a handshake, idle, frame or reconcile deadline.
    Timeout,
    /// The peer broke a framing, ordering, reconciliation or count rule.
    ProtocolViolation,
    /// The peer sent an entry that does not decode, verify or link to its feed.
    InvalidEntry,
    /// A connection limit or a stranger budget is reached; try again later.
    Busy,
    /// The peer's key is not on the allow-list.
    NotAllowed,
    /// Another session with the same peer key is kept (one session per key).
    Duplicate,
    /// The peer claimed more of our own feed than it delivered within the deadline.
    ClaimNotDelivered,
}

/// The last message before the sender closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bye {
    /// Why; the receiver logs it and ends its side of the session.
    pub reason: ByeReason,
}

/// An entry's fixed encoding ([`Entry::encode`]) as carried in a frame.
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedEntry(pub Vec<u8>);

impl EncodedEntry {
    /// Carries `entry` in its fixed encoding, the bytes its hash and signature cover.
    pub fn from_entry(entry: &Entry) -> EncodedEntry {
        EncodedEntry(entry.encode())
    }

    /// Decodes the entry and computes its hash from the same bytes.
    pub fn decode(&self) -> Result<(Entry, Hash), entry::DecodeError> {
        Entry::decode(&self.0)
    }
}

impl fmt::Debug for EncodedEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncodedEntry({} bytes)", self.0.len())
    }
}

/// A fork proof's fixed encoding ([`ForkProof::encode`]) as carried in a frame.
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedProof(pub Vec<u8>);

impl EncodedProof {
    /// Carries `proof` in its fixed encoding (docs/PROTOCOL.md section 8).
    pub fn from_proof(proof: &ForkProof) -> EncodedProof {
        EncodedProof(proof.encode())
    }

    /// Decodes the proof (not checked: run [`ForkProof::check`]).
    pub fn decode(&self) -> Result<ForkProof, ProofDecodeError> {
        ForkProof::decode(&self.0)
    }
}

impl fmt::Debug for EncodedProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncodedProof({} bytes)", self.0.len())
    }
}

/// A decoded message that breaks a count or shape rule of docs/PROTOCOL.md.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// An `Entries` batch longer than `MAX_ENTRIES_PER_BATCH`.
    #[error("batch of {count} entries exceeds the limit of {MAX_ENTRIES_PER_BATCH}")]
    TooManyEntries {
        /// Entries in the batch.
        count: usize,
    },
    /// An `Entries` message with no entries (it would cost a frame for nothing).
    #[error("empty entries batch")]
    EmptyBatch,
    /// An entry longer than any valid entry's encoding can be.
    #[error("entry {index} is {len} bytes, the limit is {MAX_ENCODED_BYTES}")]
    EntryTooLarge {
        /// Position of the entry in its batch, from 0.
        index: usize,
        /// Its length in bytes.
        len: usize,
    },
    /// A `ForkProofs` message with more than `MAX_PROOFS_PER_FRAME` proofs.
    #[error("{count} fork proofs exceed the limit of {MAX_PROOFS_PER_FRAME} per frame")]
    TooManyProofs {
        /// Proofs in the message.
        count: usize,
    },
    /// A `ForkProofs` message with no proofs.
    #[error("empty fork proofs message")]
    NoProofs,
    /// A proof longer than any valid proof's encoding can be.
    #[error("fork proof {index} is {len} bytes, the limit is {MAX_PROOF_BYTES}")]
    ProofTooLarge {
        /// Position of the proof in its message, from 0.
        index: usize,
        /// Its length in bytes.
        len: usize,
    },
    /// A `Want` for position 0, which no feed has (positions start at 1).
    #[error("want for seq 0")]
    WantSeqZero,
    /// A `Checkpoints` message with no notes, or more than `MAX_CHECKPOINTS_PER_FRAME`.
    #[error("{count} checkpoint notes in one frame, outside 1..={MAX_CHECKPOINTS_PER_FRAME}")]
    CheckpointCount {
        /// Notes in the message.
        count: usize,
    },
    /// A `WantSubtrees` or `Subtrees` outside its shape rules.
    #[error("subtrees: {0}")]
    Subtrees(#[from] SubtreeError),
    /// A note longer than the note size limit.
    #[error("checkpoint note {index} is {len} bytes, the limit is {MAX_NOTE_BYTES}")]
    NoteTooLarge {
        /// Position of the note in its message, from 0.
        index: usize,
        /// Its length in bytes.
        len: usize,
    },
}

impl Message {
    /// Checks the count and shape rules a decoded message must meet.
    pub fn check_rules(&self) -> Result<(), MessageError> {
        match self {
            Message::Entries(Entries { entries }) => {
                if entries.is_empty() {
                    return Err(MessageError::EmptyBatch);
                }
                if entries.len() > MAX_ENTRIES_PER_BATCH {
                    return Err(MessageError::TooManyEntries {
                        count: entries.len(),
                    });
                }
                if let Some((index, e)) = entries
                    .iter()
                    .enumerate()
                    .find(|(_, e)| e.0.len() > MAX_ENCODED_BYTES)
                {
                    return Err(MessageError::EntryTooLarge {
                        index,
                        len: e.0.len(),
                    });
                }
            }
            Message::ForkProofs(ForkProofs { proofs }) => {
                if proofs.is_empty() {
                    return Err(MessageError::NoProofs);
                }
                if proofs.len() > MAX_PROOFS_PER_FRAME {
                    return Err(MessageError::TooManyProofs {
                        count: proofs.len(),
                    });
                }
                if let Some((index, p)) = proofs
                    .iter()
                    .enumerate()
                    .find(|(_, p)| p.0.len() > MAX_PROOF_BYTES)
                {
                    return Err(MessageError::ProofTooLarge {
                        index,
                        len: p.0.len(),
                    });
                }
            }
            Message::Want(Want { seq: 0, .. }) => return Err(MessageError::WantSeqZero),
            Message::Checkpoints(Checkpoints { notes }) => {
                if notes.is_empty() || notes.len() > MAX_CHECKPOINTS_PER_FRAME {
                    return Err(MessageError::CheckpointCount { count: notes.len() });
                }
                if let Some((index, n)) = notes
                    .iter()
                    .enumerate()
                    .find(|(_, n)| n.0.len() > MAX_NOTE_BYTES)
                {
                    return Err(MessageError::NoteTooLarge {
                        index,
                        len: n.0.len(),
                    });
                }
            }
            Message::WantSubtrees(want) => want.check()?,
            Message::Subtrees(answer) => answer.check()?,
            // The reconciler checks its frames against the state of the exchange.
            Message::Reconcile(_)
            | Message::CheckpointReconcile(_)
            | Message::Hello(_)
            | Message::Auth(_)
            | Message::Want(_)
            | Message::Ping
            | Message::Bye(_) => {}
        }
        Ok(())
    }
}

/// Splits entries (already in feed order) into [`Message::Entries`] batches of at most
/// [`MAX_ENTRIES_PER_BATCH`].
pub fn entry_batches(entries: &[Entry]) -> Vec<Message> {
    encoded_batches(entries.iter().map(EncodedEntry::from_entry).collect())
}

/// As [`entry_batches`], for entries already encoded.
pub fn encoded_batches(entries: Vec<EncodedEntry>) -> Vec<Message> {
    let mut entries = entries.into_iter();
    let mut out = Vec::new();
    loop {
        let chunk: Vec<EncodedEntry> = entries.by_ref().take(MAX_ENTRIES_PER_BATCH).collect();
        if chunk.is_empty() {
            return out;
        }
        out.push(Message::Entries(Entries { entries: chunk }));
    }
}

/// Splits proofs into [`Message::ForkProofs`] frames of at most [`MAX_PROOFS_PER_FRAME`].
pub fn proof_batches<'a>(proofs: impl IntoIterator<Item = &'a ForkProof>) -> Vec<Message> {
    let encoded: Vec<EncodedProof> = proofs.into_iter().map(EncodedProof::from_proof).collect();
    encoded
        .chunks(MAX_PROOFS_PER_FRAME)
        .map(|chunk| {
            Message::ForkProofs(ForkProofs {
                proofs: chunk.to_vec(),
            })
        })
        .collect()
}

// A nonce travels as its raw bytes, as authors, hashes and signatures do.
impl RawBytes for Nonce {
    fn raw(&self) -> &[u8] {
        &self.0
    }
    fn from_raw(bytes: &[u8]) -> Option<Self> {
        <[u8; NONCE_BYTES]>::try_from(bytes).ok().map(Nonce)
    }
}

/// Byte-string serde for the encoded newtypes.
macro_rules! serde_as_byte_string {
    ($ty:ident) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_byte_buf(BytesVisitor).map($ty)
            }
        }
    };
}
serde_as_byte_string!(EncodedEntry);
serde_as_byte_string!(EncodedProof);
serde_as_byte_string!(EncodedNote);

/// Splits notes into [`Message::Checkpoints`] frames of at most [`MAX_CHECKPOINTS_PER_FRAME`].
pub fn checkpoint_batches(notes: Vec<EncodedNote>) -> Vec<Message> {
    notes
        .chunks(MAX_CHECKPOINTS_PER_FRAME)
        .map(|chunk| {
            Message::Checkpoints(Checkpoints {
                notes: chunk.to_vec(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_rules() {
        let e = |n: usize| EncodedEntry(vec![0; n]);
        let batch = |v: Vec<EncodedEntry>| Message::Entries(Entries { entries: v });
        assert_eq!(batch(vec![e(10)]).check_rules(), Ok(()));
        assert_eq!(batch(vec![]).check_rules(), Err(MessageError::EmptyBatch));
        assert_eq!(
            batch(vec![e(1); MAX_ENTRIES_PER_BATCH + 1]).check_rules(),
            Err(MessageError::TooManyEntries {
                count: MAX_ENTRIES_PER_BATCH + 1
            })
        );
        assert_eq!(
            batch(vec![e(1), e(MAX_ENCODED_BYTES + 1)]).check_rules(),
            Err(MessageError::EntryTooLarge {
                index: 1,
                len: MAX_ENCODED_BYTES + 1
            })
        );
    }

    #[test]
    fn proof_and_want_rules() {
        let p = |v: Vec<EncodedProof>| Message::ForkProofs(ForkProofs { proofs: v });
        assert_eq!(p(vec![]).check_rules(), Err(MessageError::NoProofs));
        assert_eq!(
            p(vec![EncodedProof(vec![]); MAX_PROOFS_PER_FRAME + 1]).check_rules(),
            Err(MessageError::TooManyProofs {
                count: MAX_PROOFS_PER_FRAME + 1
            })
        );
        assert_eq!(
            p(vec![EncodedProof(vec![0; MAX_PROOF_BYTES + 1])]).check_rules(),
            Err(MessageError::ProofTooLarge {
                index: 0,
                len: MAX_PROOF_BYTES + 1
            })
        );
        let want = |seq| {
            Message::Want(Want {
                author: Author([1; 32]),
                seq,
            })
        };
        assert_eq!(want(0).check_rules(), Err(MessageError::WantSeqZero));
        assert_eq!(want(1).check_rules(), Ok(()));
    }

    #[test]
    fn checkpoint_rules_and_versions() {
        let c = |notes: Vec<EncodedNote>| Message::Checkpoints(Checkpoints { notes });
        let n = |len: usize| EncodedNote(vec![b'x'; len]);
        assert_eq!(c(vec![n(10)]).check_rules(), Ok(()));
        assert_eq!(
            c(vec![]).check_rules(),
            Err(MessageError::CheckpointCount { count: 0 })
        );
        assert_eq!(
            c(vec![n(1); MAX_CHECKPOINTS_PER_FRAME + 1]).check_rules(),
            Err(MessageError::CheckpointCount {
                count: MAX_CHECKPOINTS_PER_FRAME + 1
            })
        );
        assert_eq!(
            c(vec![n(1), n(MAX_NOTE_BYTES + 1)]).check_rules(),
            Err(MessageError::NoteTooLarge {
                index: 1,
                len: MAX_NOTE_BYTES + 1
            })
        );
        // A full frame of the largest notes fits in a frame.
        let full = c(vec![n(MAX_NOTE_BYTES); MAX_CHECKPOINTS_PER_FRAME]);
        assert!(crate::sync::frame::encode_frame(&full).is_ok());
        assert!(!full.allowed_in(2));
        assert!(full.allowed_in(3));
        assert!(Message::Ping.allowed_in(2));
    }
}

#[cfg(test)]
#[path = "doc_examples_tests.rs"]
mod doc_examples_tests;
