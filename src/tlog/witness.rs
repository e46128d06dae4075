//! A C2SP tlog-witness, pure: the `add-checkpoint` request, the decision to cosign or refuse,
//! the witness's records and their file format, and how often the node cosigns while
//! gossiping. No file, socket or clock: the caller passes the time and persists the state.
//!
//! A kappalog node witnesses in two ways, with the same decision ([`add_checkpoint`]):
//!
//! - over HTTP (`POST /witness/add-checkpoint`), for the logs its operator names
//!   (`--witness-for VKEY`, served by a [`WitnessState`]): the body is parsed by
//!   [`AddCheckpointRequest::parse`] and the answer is [`Accepted::body`] or the
//!   [`Refusal`]'s status, body and content type;
//! - while gossiping, for each feed it holds, at most once a second per feed
//!   ([`should_cosign`]): the node builds the request itself, with the consistency proof
//!   from its own tree ([`AddCheckpointRequest::new`]), over a [`WitnessedLogs`] whose key
//!   for `kappalog/feed/<hex>` is that author's.
//!
//! The cosigner is [`Cosigner::for_node`]: the node's key, under the name
//! `kappalog/node/<64 lowercase hex node key>`, signing tlog-cosignature v1.
//!
//! # Never two inconsistent cosignatures of one origin
//!
//! Each cosignature is checked against the latest tree cosigned for its origin, and that
//! record only moves along checked consistency proofs. It holds across restarts and crashes
//! if the caller keeps [`add_checkpoint`]'s contract: under one lock, decide, record
//! ([`WitnessState::record`], which refuses a stale update), persist durably
//! ([`encode_state`] or [`encode_record`]), and only then release the cosignature. A
//! record is never forgotten, even when its log stops being served.
//!
//! # Status codes (tlog-witness, `add-checkpoint`)
//!
//! | status | when |
//! |---|---|
//! | 400 | malformed body ([`RequestError`]), or old size above the checkpoint's |
//! | 404 | the origin is not served (or cannot be a key name, hence not a served vkey's) |
//! | 403 | no signature by a log key verifies, or one by a log key fails |
//! | 409 | old size is not the latest cosigned size; body: that size, `text/x.tlog.size` |
//! | 422 | size over 2^62; size 0 without the empty root; a proof from 0; same size, another root; a proof that does not verify |
//! | 500 | the witness's clock reads 0 or past 2^63 - 1 |

mod add;
mod persist;
mod rate;
mod request;
mod state;

pub use add::{
    add_checkpoint, Accepted, Cosigner, Refusal, Status, SIZE_CONTENT_TYPE, TEXT_CONTENT_TYPE,
};
pub use persist::{
    encode_record, encode_state, parse_state, LoadedState, StateFileError, STATE_HEADER,
};
pub use rate::{should_cosign, MIN_COSIGN_INTERVAL_MS};
pub use request::{AddCheckpointRequest, RequestError, MAX_REQUEST_BYTES};
pub use state::{
    CosignedTree, StateEntry, StateError, WitnessState, WitnessedLogs, MAX_KEYS_PER_LOG, MAX_LOGS,
    MAX_ORIGINS,
};

#[cfg(test)]
mod tests;
