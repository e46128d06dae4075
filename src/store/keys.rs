//! Finding the record a remembered idempotency key names: the
//! [`KeyTable`](super::key_table::KeyTable) in the index gives a candidate offset, and the
//! record read there (through the store's [`LogIo`]) must hold the very key asked for (see
//! [`super::key_table`] for why a hit is only a candidate).
//!
//! The table itself is in [`super::key_table`], below the index that holds it; this lookup
//! stands above both, since it takes the index's lock and reads the log.

use std::sync::{PoisonError, RwLock};

use super::format::{self, ReadFault, Record};
use super::index::Index;
use super::io::{LogFile, LogIo};
use crate::idempotency::IdempotencyKey;

pub use super::key_table::MAX_REMEMBERED_KEYS;

/// The remembered record appended under `key`, if any: the table's candidate, read from
/// `file` and confirmed to hold `key`. The index lock is held only to copy the offset out.
pub fn find(
    io: &dyn LogIo,
    file: &LogFile,
    index: &RwLock<Index>,
    key: &IdempotencyKey,
) -> Result<Option<Record>, FindFault> {
    let (candidate, end) = {
        // Index updates leave it consistent even if a writer panicked mid-way (see reader.rs).
        let index = index.read().unwrap_or_else(PoisonError::into_inner);
        let candidate = index.keys.candidate(key);
        (candidate.map(|o| (o, index.current(o))), index.end)
    };
    let Some((offset, current)) = candidate else {
        return Ok(None);
    };
    let record = format::read_record_at(io, file, offset, end)
        .map_err(|fault| FindFault { offset, fault })?;
    if record.key.as_ref() != Some(key) {
        return Ok(None);
    }
    if current == offset {
        return Ok(Some(record));
    }
    // The key stays in the record the entry entered the log in; a replacement record holds
    // its current copy (same entry, another signature), which is what every read returns.
    let copy = format::read_record_at(io, file, current, end).map_err(|fault| FindFault {
        offset: current,
        fault,
    })?;
    Ok(Some(Record {
        key: record.key,
        ..copy
    }))
}

/// Reading the record a key's candidate names failed.
#[derive(Debug)]
pub struct FindFault {
    /// The candidate record's offset.
    pub offset: u64,
    /// Why it could not be read.
    pub fault: ReadFault,
}
