//! A second valid signature of an entry: `resign(id, entry, nonce)`, shared with the crate's
//! unit tests (one file, `src/entry/resign.rs`, included here).

use kappalog::entry::Entry;
use kappalog::identity::{Identity, Signature};

#[path = "../../../src/entry/resign.rs"]
mod shared;

pub(crate) use shared::resign;
