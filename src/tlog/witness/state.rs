//! What a witness knows: the logs it serves (origin -> the keys that sign its checkpoints)
//! and, per origin, the latest checkpoint it cosigned (size and root hash).
//!
//! [`add_checkpoint`](super::add_checkpoint) reads this through [`WitnessedLogs`], so the
//! node can back it with the in-memory [`WitnessState`] (the logs its operator names with
//! `--witness-for`) or with its own store (every feed it holds, whose key is the author's);
//! the decision is the same code either way.
//!
//! # The one rule
//!
//! A witness never cosigns two inconsistent checkpoints of one origin. Each cosignature is
//! checked against the latest cosigned tree, so the rule holds as long as that record only
//! moves forward along what was checked, atomically with the check, and is durable before the
//! cosignature is released. [`WitnessState::record`] refuses an update checked against a
//! record that has since moved ([`StateError::Stale`]): the race tlog-witness describes (two
//! requests checked against one size, the larger recorded first, then rolled back by the
//! smaller) becomes an error instead of a rollback, even if a caller forgets to hold its lock
//! across check and record.

use std::collections::BTreeMap;

use crate::tlog::merkle::Hash;
use crate::tlog::vkey::{KeyType, VerifierKey};

/// The most logs one [`WitnessState`] serves. They come from the operator's configuration,
/// not from clients; the cap keeps a mistaken configuration (a generated list) from making
/// every request search a huge map, and is far above what a witness operator names by hand.
pub const MAX_LOGS: usize = 4096;

/// The most keys one log may be trusted under: a log rotating its key is served under the
/// old and the new one for a while; more than a few is a configuration mistake.
pub const MAX_KEYS_PER_LOG: usize = 8;

/// The most origins whose latest cosigned tree one [`WitnessState`] keeps: above the node's
/// cap of 1,000,000 feeds (`sync::policy::MAX_FEEDS`) plus [`MAX_LOGS`] configured logs.
/// Records are never dropped to make room (forgetting one would let the witness cosign a
/// fork of that log), so an update past the cap is refused instead.
pub const MAX_ORIGINS: usize = 1 << 20;

/// The latest checkpoint a witness cosigned for one origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CosignedTree {
    /// The tree size.
    pub size: u64,
    /// The RFC 6962 root hash.
    pub root: Hash,
}

/// A change of one origin's latest cosigned tree, made by
/// [`add_checkpoint`](super::add_checkpoint) only: `tree` was checked consistent with the
/// record of size `previous_size` (0 for none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    pub(super) origin: String,
    pub(super) previous_size: u64,
    pub(super) tree: CosignedTree,
}

impl StateEntry {
    /// The log's origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }
    /// The size of the record the new tree was checked against (0 if there was none).
    pub fn previous_size(&self) -> u64 {
        self.previous_size
    }
    /// The newly cosigned tree: the origin's record once this entry is stored.
    pub fn tree(&self) -> &CosignedTree {
        &self.tree
    }
    /// Whether this is the latest cosigned checkpoint cosigned again: the record does not
    /// change, so there is nothing new to make durable before releasing the cosignature.
    pub fn is_repeat(&self) -> bool {
        self.previous_size == self.tree.size
    }
}

/// What [`add_checkpoint`](super::add_checkpoint) needs to know about an origin.
pub trait WitnessedLogs {
    /// The Ed25519 note keys whose signatures make a checkpoint of `origin` authentic, or
    /// None if the witness does not serve that origin.
    fn log_keys(&self, origin: &str) -> Option<Vec<VerifierKey>>;
    /// The latest tree cosigned for `origin`, if any.
    fn cosigned(&self, origin: &str) -> Option<CosignedTree>;
}

/// Why the state refused a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// A served log's key is not an Ed25519 note key (type 0x01).
    #[error("log key {name} is not an Ed25519 note key")]
    NotANoteKey {
        /// The key's name.
        name: String,
    },
    /// More than [`MAX_LOGS`] logs.
    #[error("more than {MAX_LOGS} logs")]
    TooManyLogs,
    /// More than [`MAX_KEYS_PER_LOG`] keys for one log.
    #[error("more than {MAX_KEYS_PER_LOG} keys for log {origin}")]
    TooManyKeys {
        /// The log's origin.
        origin: String,
    },
    /// The update was checked against a record that has moved since: storing it could roll
    /// the record back or skip a consistency check.
    #[error("update of {origin} was checked against size {checked}, the record is at {current}")]
    Stale {
        /// The log's origin.
        origin: String,
        /// The size the update was checked against.
        checked: u64,
        /// The size recorded now (0 for none).
        current: u64,
    },
    /// A record for a new origin past [`MAX_ORIGINS`].
    #[error("more than {MAX_ORIGINS} origins")]
    TooManyOrigins,
}

/// The logs a witness serves and the latest tree it cosigned for each origin.
#[derive(Debug, Clone, Default)]
pub struct WitnessState {
    logs: BTreeMap<String, Vec<VerifierKey>>,
    cosigned: BTreeMap<String, CosignedTree>,
}

impl WitnessState {
    /// A witness serving no log and remembering no cosignature.
    pub fn new() -> Self {
        WitnessState::default()
    }

    /// Serves the log whose checkpoints `vkey` signs; its origin is the key's name, as
    /// tlog-checkpoint recommends and tlog-policy's `log` lines assume. Serving a key twice
    /// is a no-op.
    pub fn serve(&mut self, vkey: VerifierKey) -> Result<(), StateError> {
        if vkey.key_type() != KeyType::Ed25519 {
            return Err(StateError::NotANoteKey {
                name: vkey.name().to_owned(),
            });
        }
        if !self.logs.contains_key(vkey.name()) && self.logs.len() >= MAX_LOGS {
            return Err(StateError::TooManyLogs);
        }
        let keys = self.logs.entry(vkey.name().to_owned()).or_default();
        if keys.contains(&vkey) {
            return Ok(());
        }
        if keys.len() >= MAX_KEYS_PER_LOG {
            return Err(StateError::TooManyKeys {
                origin: vkey.name().to_owned(),
            });
        }
        keys.push(vkey);
        Ok(())
    }

    /// Stores an accepted update. Call it under the same lock as the
    /// [`add_checkpoint`](super::add_checkpoint) that made `entry`, and persist the result
    /// before releasing the cosignature. Refuses an update checked against a record that
    /// has moved since ([`StateError::Stale`]).
    pub fn record(&mut self, entry: &StateEntry) -> Result<(), StateError> {
        let current = self.cosigned.get(&entry.origin).map_or(0, |tree| tree.size);
        if current != entry.previous_size {
            return Err(StateError::Stale {
                origin: entry.origin.clone(),
                checked: entry.previous_size,
                current,
            });
        }
        self.insert(entry.origin.clone(), entry.tree)
    }

    /// Replaces the cosigned records with those read back from storage
    /// ([`super::parse_state`]), at startup, before any request is answered.
    pub fn restore(&mut self, cosigned: BTreeMap<String, CosignedTree>) -> Result<(), StateError> {
        if cosigned.len() > MAX_ORIGINS {
            return Err(StateError::TooManyOrigins);
        }
        self.cosigned = cosigned;
        Ok(())
    }

    /// Every origin's latest cosigned tree, by origin: what [`super::encode_state`] writes.
    /// Origins no longer served are kept: were a log served again, forgetting its record
    /// would let the witness cosign a fork of what it cosigned before.
    pub fn cosigned_trees(&self) -> &BTreeMap<String, CosignedTree> {
        &self.cosigned
    }

    fn insert(&mut self, origin: String, tree: CosignedTree) -> Result<(), StateError> {
        if !self.cosigned.contains_key(&origin) && self.cosigned.len() >= MAX_ORIGINS {
            return Err(StateError::TooManyOrigins);
        }
        self.cosigned.insert(origin, tree);
        Ok(())
    }
}

impl WitnessedLogs for WitnessState {
    fn log_keys(&self, origin: &str) -> Option<Vec<VerifierKey>> {
        self.logs.get(origin).cloned()
    }
    fn cosigned(&self, origin: &str) -> Option<CosignedTree> {
        self.cosigned.get(origin).copied()
    }
}
