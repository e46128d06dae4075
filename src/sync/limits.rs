//! The protocol's limits and timeouts (docs/PROTOCOL.md section 10). Plain numbers, below
//! every message and frame, so that each part of the protocol can check its own frames
//! against [`MAX_FRAME_BYTES`] ([`super::reconcile`] does) without importing the messages;
//! [`super::message`] re-exports them all.

use crate::entry::MAX_ENCODED_BYTES;
use crate::fork::MAX_PROOF_BYTES;
use crate::tlog::note::MAX_NOTE_BYTES;

/// The largest frame body, in bytes (1 MiB). Checked before the body is allocated.
pub const MAX_FRAME_BYTES: usize = 1 << 20;
/// The most entries in one `Entries` message.
pub const MAX_ENTRIES_PER_BATCH: usize = 128;
/// The most proofs in one `ForkProofs` message.
pub const MAX_PROOFS_PER_FRAME: usize = 64;
/// The most signed checkpoint notes in one `Checkpoints` message (v3): as many of the largest
/// note (`MAX_NOTE_BYTES`, 128 KiB) as fit in a frame. Real notes are a few hundred bytes.
pub const MAX_CHECKPOINTS_PER_FRAME: usize = 7;
/// The most checkpoint notes a peer may send in one session at once (v3): the bucket a
/// session starts with, refilled at [`CHECKPOINTS_PER_SECOND`]; past it, a violation.
/// As many as a session's reconciliation may list items.
pub const MAX_CHECKPOINTS_BURST: u32 = 1 << 20;
/// The refill of the per-session checkpoint bucket, in notes per second: a peer pushes a
/// feed's note at most once a second, so this is a thousand feeds changing every second.
pub const CHECKPOINTS_PER_SECOND: u32 = 1024;
/// The shortest time between two live pushes of one feed's note on one session, in ms.
pub const CHECKPOINT_PUSH_INTERVAL_MS: u64 = 1_000;
/// The most subtree hashes one `Subtrees` answer carries at a level of 1 or more (v4), and
/// so the most a `WantSubtrees` at such a level may ask for: a complete subtree's
/// descendants 8 levels down (docs/PROTOCOL.md section 7, "Copy searches").
pub const MAX_SUBTREE_HASHES: u16 = 256;
/// The most entries one `Subtrees` answer carries at level 0 (v4), and so the most a
/// `WantSubtrees` at level 0 may ask for: one full entries batch, which fits in a frame.
pub const MAX_SUBTREE_ENTRIES: u16 = 128;
/// The `WantSubtrees` a peer may send in one session at once (v4): the bucket a session
/// starts with, refilled at [`SUBTREE_WANTS_PER_SECOND`]; past it, a violation. A search
/// asks for at most the peaks of a tree (64) and a few descents of 16 differing leaves.
pub const SUBTREE_WANTS_BURST: u32 = 256;
/// The refill of the per-session `WantSubtrees` bucket, in wants per second.
pub const SUBTREE_WANTS_PER_SECOND: u32 = 64;
/// The most `WantSubtrees` of a peer a session holds unanswered at once (v4); past it, a
/// violation. A searching node never has more than this outstanding.
pub const MAX_SUBTREE_WANTS_OUTSTANDING: usize = 256;
/// How long one copy search may run in a session, in milliseconds; then it is dropped
/// (the session goes on).
pub const COPY_SEARCH_TIMEOUT_MS: u64 = 30_000;
/// The most `Want` requests a node honours in one session.
pub const MAX_WANTS_PER_SESSION: usize = 8192;
/// From TCP connect until the peer's `Auth` has been verified, in milliseconds.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;
/// The longest a session may go without receiving a frame, in milliseconds.
pub const READ_IDLE_TIMEOUT_MS: u64 = 60_000;
/// Once a frame's first byte arrived, the longest until its last byte, in milliseconds.
pub const FRAME_READ_TIMEOUT_MS: u64 = 10_000;
/// From the end of the handshake until reconciliation is done, in milliseconds (a peer that
/// only pings cannot hold a session in its exchange for ever).
pub const RECONCILE_TIMEOUT_MS: u64 = 120_000;
/// From the start of a v3 session's checkpoint reconciliation until it is done, in
/// milliseconds, not counting time in which the peer still delivers new entries (its own
/// plan goes first): a peer that never answers it, or answers one small step at a time, keeps
/// its reconciliation state for no longer than this.
pub const CHECKPOINT_RECONCILE_TIMEOUT_MS: u64 = 120_000;
/// Send a `Message::Ping` after this long without sending anything, in milliseconds.
pub const PING_INTERVAL_MS: u64 = 20_000;
/// The most concurrent inbound sessions with strangers (dials and trusted keys excluded).
pub const MAX_PEER_CONNECTIONS: usize = 64;
/// The most inbound connections still in their handshake; the oldest is shed beyond it.
pub const MAX_PENDING_HANDSHAKES: usize = 64;
/// How long a trusted peer claiming a longer own feed may go without delivering an entry.
pub const CLAIM_DELIVERY_TIMEOUT_MS: u64 = 5_000;
/// The first reconnect delay after a failure, in milliseconds.
pub const RECONNECT_BACKOFF_MIN_MS: u64 = 500;
/// The longest reconnect delay, in milliseconds.
pub const RECONNECT_BACKOFF_MAX_MS: u64 = 60_000;
/// How long a starting node waits for its peers before it signs, in milliseconds.
pub const STARTUP_FENCE_TIMEOUT_MS: u64 = 10_000;

// Full batches and a full proofs frame each fit in one frame (the sizes docs/PROTOCOL.md
// section 10 states): varint length prefixes of at most 3 bytes per byte string, 16 bytes of
// slack for the variant tag and the vector length. `reconcile.rs` asserts its own frames.
const _: () = assert!((MAX_ENCODED_BYTES + 3) * MAX_ENTRIES_PER_BATCH + 16 < MAX_FRAME_BYTES);
const _: () = assert!((MAX_PROOF_BYTES + 3) * MAX_PROOFS_PER_FRAME + 16 < MAX_FRAME_BYTES);
// A note's varint length takes at most 5 bytes.
const _: () = assert!((MAX_NOTE_BYTES + 5) * MAX_CHECKPOINTS_PER_FRAME + 16 < MAX_FRAME_BYTES);
// A `Subtrees` answer of the largest entries fits in a frame: 64 bytes of slack for the
// variant tag, the author (33), the level (1), the index (at most 9), the count (at most 3)
// and the list's length.
const _: () =
    assert!((MAX_ENCODED_BYTES + 3) * (MAX_SUBTREE_ENTRIES as usize) + 64 < MAX_FRAME_BYTES);
// Each hash travels as a byte string of 32 bytes with its one-byte length.
const _: () = assert!(33 * (MAX_SUBTREE_HASHES as usize) + 64 < MAX_FRAME_BYTES);
