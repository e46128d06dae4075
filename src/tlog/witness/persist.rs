//! The witness's records on disk: one line per cosigned tree, written as a snapshot or
//! appended as a journal, and read back strictly.
//!
//! # Format (version 1)
//!
//! ```text
//! kappalog witness state v1
//! <origin> <size> <root>
//! ...
//! ```
//!
//! - The first line is [`STATE_HEADER`] (without its newline above); a format change bumps
//!   its version.
//! - Each later line is one record: the origin (a note key name: no spaces, no `+`, at most
//!   256 bytes, as every served log's origin is), one space, the tree size in decimal
//!   without leading zeros (at most `MAX_TREE_SIZE`), one space, the root as standard base64 of
//!   32 bytes. Every line ends in a newline.
//! - An origin may appear on several lines: a journal appends one line per cosignature and
//!   the last line wins. A later line must not move an origin back: its size is larger than
//!   the earlier one's, or equal with the same root. Anything else is corruption
//!   ([`StateFileError::Rollback`]), since the witness writes a record only after checking
//!   it extends the previous one.
//! - [`encode_state`] writes a snapshot: header, then one line per origin in origin order.
//!   [`encode_record`] writes one journal line.
//!
//! # A torn tail
//!
//! A crash while appending can leave the last line without its newline. That record's
//! cosignature was never released (the witness persists before it answers), so the torn
//! bytes are dropped: [`parse_state`] reports how many ([`LoadedState::torn_tail_bytes`])
//! and the caller truncates the file to [`LoadedState::valid_len`] before appending again.
//! Only the final piece may be torn; an empty file, or a torn header, is an empty state.

use std::collections::BTreeMap;

use base64ct::{Base64, Encoding};

use crate::tlog::checkpoint::{parse_hash, parse_size};
use crate::tlog::merkle::MAX_TREE_SIZE;
use crate::tlog::vkey::check_key_name;

use super::state::{CosignedTree, MAX_ORIGINS};

/// The first line of a state file, newline included.
pub const STATE_HEADER: &str = "kappalog witness state v1\n";

/// Why a state file could not be read. Each carries the 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateFileError {
    /// The first line is not [`STATE_HEADER`].
    #[error("line 1 is not the witness state header")]
    Header,
    /// A record line is not `<origin> <size> <base64 root>` under the module's rules.
    #[error("line {line}: not '<origin> <size> <base64 root>'")]
    Record {
        /// Where.
        line: usize,
    },
    /// A record moves its origin back (smaller size, or same size with another root).
    #[error("line {line}: the record of {origin} goes back from an earlier line")]
    Rollback {
        /// Where.
        line: usize,
        /// The origin.
        origin: String,
    },
    /// More than [`MAX_ORIGINS`] origins.
    #[error("line {line}: more than {MAX_ORIGINS} origins")]
    TooManyOrigins {
        /// Where.
        line: usize,
    },
}

/// A state file, read back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadedState {
    /// Each origin's latest cosigned tree.
    pub cosigned: BTreeMap<String, CosignedTree>,
    /// The bytes up to the last complete line: where to truncate before appending.
    pub valid_len: usize,
    /// Bytes of a final line without its newline, dropped (0 for a clean file).
    pub torn_tail_bytes: usize,
}

/// The snapshot of `cosigned`: header, then one record per origin in origin order.
pub fn encode_state(cosigned: &BTreeMap<String, CosignedTree>) -> String {
    let mut out = String::from(STATE_HEADER);
    for (origin, tree) in cosigned {
        out.push_str(&encode_record(origin, tree));
    }
    out
}

/// One record line, to append to a journal that starts with [`STATE_HEADER`].
pub fn encode_record(origin: &str, tree: &CosignedTree) -> String {
    format!(
        "{origin} {} {}\n",
        tree.size,
        Base64::encode_string(&tree.root)
    )
}

/// Reads a state file (snapshot or journal) under every rule of the module docs. Memory is
/// bounded by [`MAX_ORIGINS`], whatever the file's length.
pub fn parse_state(bytes: &[u8]) -> Result<LoadedState, StateFileError> {
    let valid_len = bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |last| last + 1);
    let (complete, torn) = bytes.split_at(valid_len);
    let mut loaded = LoadedState {
        valid_len,
        torn_tail_bytes: torn.len(),
        ..LoadedState::default()
    };
    if complete.is_empty() {
        // Nothing written, or the header itself torn: nothing was ever cosigned.
        return match STATE_HEADER.as_bytes().starts_with(torn) {
            true => Ok(loaded),
            false => Err(StateFileError::Header),
        };
    }
    let mut lines = complete[..complete.len() - 1].split(|&b| b == b'\n');
    if lines.next() != Some(&STATE_HEADER.as_bytes()[..STATE_HEADER.len() - 1]) {
        return Err(StateFileError::Header);
    }
    for (i, raw) in lines.enumerate() {
        let line = i + 2;
        let (origin, tree) = parse_record(raw).ok_or(StateFileError::Record { line })?;
        match loaded.cosigned.get(origin) {
            Some(earlier) if !moves_forward(earlier, &tree) => {
                return Err(StateFileError::Rollback {
                    line,
                    origin: origin.to_owned(),
                })
            }
            Some(_) => {}
            None if loaded.cosigned.len() >= MAX_ORIGINS => {
                return Err(StateFileError::TooManyOrigins { line })
            }
            None => {}
        }
        loaded.cosigned.insert(origin.to_owned(), tree);
    }
    Ok(loaded)
}

/// `later` extends `earlier`, or repeats it.
fn moves_forward(earlier: &CosignedTree, later: &CosignedTree) -> bool {
    later.size > earlier.size || later == earlier
}

fn parse_record(raw: &[u8]) -> Option<(&str, CosignedTree)> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut fields = text.split(' ');
    let (origin, size, root) = (fields.next()?, fields.next()?, fields.next()?);
    if fields.next().is_some() || check_key_name(origin).is_err() {
        return None;
    }
    let size = parse_size(size).filter(|&size| size <= MAX_TREE_SIZE)?;
    let root = parse_hash(root)?;
    Some((origin, CosignedTree { size, root }))
}
