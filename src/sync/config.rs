//! The timing and capacity knobs of the networking layer. The defaults are the protocol's
//! constants (docs/PROTOCOL.md section 10); tests shorten the timeouts so a stalled peer is
//! dropped in well under a second instead of ten.

use std::time::Duration;

use super::admission::Policy;
use super::checkpoint_book::SharedBook;
use super::copy_searches::SharedCopySearches;
use super::message::{
    CHECKPOINTS_PER_SECOND, CHECKPOINT_RECONCILE_TIMEOUT_MS, CLAIM_DELIVERY_TIMEOUT_MS,
    COPY_SEARCH_TIMEOUT_MS, FRAME_READ_TIMEOUT_MS, HANDSHAKE_TIMEOUT_MS, MAX_CHECKPOINTS_BURST,
    MAX_PEER_CONNECTIONS, MAX_PENDING_HANDSHAKES, PING_INTERVAL_MS, PROTOCOL_VERSION,
    READ_IDLE_TIMEOUT_MS, STARTUP_FENCE_TIMEOUT_MS, SUBTREE_WANTS_BURST, SUBTREE_WANTS_PER_SECOND,
};
use super::transport::NetworkKey;

/// How the networking layer runs: timeouts, caps, the network key and the operator's policy.
/// The default is the protocol's constants; tests shorten the timeouts.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// From TCP connect until the peer's `Auth` is verified.
    pub handshake_timeout: Duration,
    /// The longest a session may go without receiving a frame.
    pub idle_timeout: Duration,
    /// Once a frame's first byte arrived, the longest until its last (and the longest one
    /// frame may take to write).
    pub frame_timeout: Duration,
    /// Send `Ping` after this long without sending anything.
    pub ping_interval: Duration,
    /// Inbound sessions with strangers at once (keys neither allow-listed nor configured).
    /// Dials and trusted keys do not count against it.
    pub max_connections: usize,
    /// Inbound connections between accept and a verified `Auth`; beyond it the oldest
    /// pending one is dropped.
    pub max_pending_handshakes: usize,
    /// How long a starting node waits for its configured peers before signing.
    pub startup_fence_timeout: Duration,
    /// How long a trusted peer that claims a longer copy of our feed may go without
    /// delivering an entry of it before the claim is dropped and the peer disconnected.
    pub claim_timeout: Duration,
    /// The network secret's key: only nodes holding the same one complete a session.
    pub network: NetworkKey,
    /// Allow-list, trusted keys, author policy, budgets and per-address limits.
    pub policy: Policy,
    /// What releases the startup fence.
    pub startup_fence: StartupFence,
    /// Configured addresses whose learned pins are forgotten at start (`--unpin`).
    pub unpin: Vec<String>,
    /// The highest protocol version this node speaks: [`PROTOCOL_VERSION`], or 2 or 3 for a
    /// node that runs that version's code path exactly (at 2: its opening at once, only 2
    /// accepted; at 3: no copy-search message): how tests run a v2 or v3 node from this
    /// build (the hidden `--sync-protocol-max 2` or `3`).
    pub max_protocol_version: u16,
    /// The node's checkpoints, gossiped in v3 sessions; `None` is a book with nothing (v3
    /// sessions still run an empty checkpoint reconciliation).
    pub checkpoint_book: Option<SharedBook>,
    /// Checkpoint notes a peer may send at once in one session, and their refill per second
    /// (tests make the bucket small to meet the bound).
    pub checkpoint_burst: u32,
    /// See `checkpoint_burst`.
    pub checkpoints_per_second: u32,
    /// How long a v3 session's checkpoint reconciliation may run, not counting time in
    /// which the peer still delivers new entries (tests shorten it to meet the bound).
    pub checkpoint_reconcile_timeout: Duration,
    /// The node's trees and copy searches, for v4 sessions; `None` answers every
    /// `WantSubtrees` with the empty answer and starts no search.
    pub copy_searches: Option<SharedCopySearches>,
    /// `WantSubtrees` a peer may send at once in one session, and their refill per second
    /// (tests make the bucket small to meet the bound).
    pub subtree_wants_burst: u32,
    /// See `subtree_wants_burst`.
    pub subtree_wants_per_second: u32,
    /// How long one copy search may run in a session (tests shorten it to meet the bound).
    pub copy_search_timeout: Duration,
}

/// What a starting node with configured peers waits for before it signs (docs/PROTOCOL.md
/// section 8).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum StartupFence {
    /// Every configured peer exchanged or failed once, or the startup fence timeout passed.
    #[default]
    Timeout,
    /// A configured peer's pinned key completed an exchange; no timeout. For a node
    /// restored from a backup: it signs nothing before a peer it trusts told it its feed.
    Pinned,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            handshake_timeout: Duration::from_millis(HANDSHAKE_TIMEOUT_MS),
            idle_timeout: Duration::from_millis(READ_IDLE_TIMEOUT_MS),
            frame_timeout: Duration::from_millis(FRAME_READ_TIMEOUT_MS),
            ping_interval: Duration::from_millis(PING_INTERVAL_MS),
            max_connections: MAX_PEER_CONNECTIONS,
            max_pending_handshakes: MAX_PENDING_HANDSHAKES,
            startup_fence_timeout: Duration::from_millis(STARTUP_FENCE_TIMEOUT_MS),
            claim_timeout: Duration::from_millis(CLAIM_DELIVERY_TIMEOUT_MS),
            network: NetworkKey::default(),
            policy: Policy::default(),
            startup_fence: StartupFence::default(),
            unpin: Vec::new(),
            max_protocol_version: PROTOCOL_VERSION,
            checkpoint_book: None,
            checkpoint_burst: MAX_CHECKPOINTS_BURST,
            checkpoints_per_second: CHECKPOINTS_PER_SECOND,
            checkpoint_reconcile_timeout: Duration::from_millis(CHECKPOINT_RECONCILE_TIMEOUT_MS),
            copy_searches: None,
            subtree_wants_burst: SUBTREE_WANTS_BURST,
            subtree_wants_per_second: SUBTREE_WANTS_PER_SECOND,
            copy_search_timeout: Duration::from_millis(COPY_SEARCH_TIMEOUT_MS),
        }
    }
}
