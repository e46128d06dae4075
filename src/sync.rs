//! Peer sync: the TCP replication protocol. The full specification, with every limit and
//! what happens when a peer does not comply, is docs/PROTOCOL.md.
//!
//! In short: after a TCP connect both sides state their protocol version, run a Noise
//! handshake keyed by the network secret, and from then on every byte is encrypted and
//! authenticated. Inside, both send `Hello` (protocol version, author, fresh nonce) and then
//! `Auth`, a signature over a tagged message binding both authors, both nonces and the
//! channel. Then each side sends the fork proofs it knows, the two reconcile their feed
//! states (author, length, head per feed) by fingerprints of author ranges, each computes its
//! [`plan`] from its own states and the peer's, and sends the entries the peer lacks in feed
//! order in bounded `Entries` batches, plus one-entry witnesses where heads reveal a fork. The session then stays open: new entries and new proofs are pushed as they appear.
//! Frames are a u32 big-endian length and a bincode 2 body, capped at
//! [`limits::MAX_FRAME_BYTES`]; entries inside travel in their fixed encoding.
//!
//! Pure core:
//! - [`message`]: the messages and the protocol version (the limits re-exported).
//! - [`limits`]: the protocol's limits and timeouts, below every message and frame.
//! - [`feed_have`]: what a side states about one feed it holds, for [`reconcile`] and [`plan`].
//! - [`raw`]: authors, hashes, signatures and nonces as byte strings of their raw bytes.
//! - [`subtrees`]: the v4 copy-search messages, `WantSubtrees` and `Subtrees`, and their shapes.
//! - [`frame`]: message <-> frame bytes, with the size cap checked before allocating.
//! - [`opening`]: the versions a node speaks, the responder's answer, each version's Noise prologue.
//! - [`handshake`]: Hello/Auth construction and verification.
//! - [`plan`]: what to send, what to expect, which forks the heads reveal, the own-feed fence.
//! - [`reconcile`]: range-based reconciliation of feed states by fingerprints of author ranges.
//! - [`batch`]: checking a received `Entries` batch as a unit before anything is stored.
//! - [`backoff`]: the reconnect delay.
//! - [`checkpoint_book`]: what a v3 session needs from the node's checkpoints (a trait);
//!   [`memory_book`]: one in memory, the test double; [`checkpoint_gossip`]: what a session
//!   keeps to push notes, and the bound on the notes it takes.
//! - [`copy_searches`]: what a v4 session needs to answer `WantSubtrees` and to search a
//!   peer's tree for an author's copies (a trait); [`search_slot`]: a session's running
//!   search; [`peer_wants`]: the bound on the peer's wants.
//! - [`pins`]: which key each configured peer must prove (`AUTHOR@HOST:PORT`, or learned on
//!   first use); [`claims`]: claims of a longer own feed, by key, across sessions;
//!   [`budget`]: stranger sources and their budgets; [`eviction`]: which stranger session
//!   makes room when the slots are full; [`policy`]: the operator's flags.
//!
//! Networking (tokio):
//! - [`transport`]: the version opening, the Noise handshake and the encrypted records.
//! - [`admission`]: trust by key, allow-list, author policy, one session per key, stranger
//!   slots, budgets, claims, refusals.
//! - [`pin_file`]: the learned pins in `DATA_DIR/peer-pins`.
//! - [`config`]: timeouts, caps, the network key and the policy ([`SyncConfig`]).
//! - [`net`]: what carries the bytes: TCP, or an in-memory network in the simulation.
//! - [`connection`]: frames on and off a socket with the idle, frame and write timeouts.
//! - [`self_probe`]: a proven self-connection, told from a peer that only says our name.
//! - [`session`]: one session: handshake, then [`inbound`] and [`outbound`] side by side.
//! - [`inbound`]: the receiving half: checks and stores entries and proofs; its part in
//!   copy searches is `inbound_search.rs`.
//! - [`outbound`]: the sending half: reconciliation, the plan's ranges, live pushes, resyncs.
//! - [`listener`]: accepting under the connection cap, with backoff on accept errors.
//! - [`peers`]: dialers, the startup fence's events (the fence is [`crate::fence`]), `POST /sync`, shutdown ([`SyncHandle`]).
//! - [`shared`]: the state the listener and the dialers share ([`shared::SyncShared`]).
//! - [`status`]: the per-peer records `GET /peers` shows.
//! - [`error`]: why a session ended and which `Bye` it sends.

pub mod admission;
pub mod backoff;
pub mod batch;
pub mod budget;
pub mod checkpoint_book;
pub mod checkpoint_gossip;
pub mod claims;
pub mod config;
pub mod connection;
pub mod copy_searches;
pub mod error;
pub mod eviction;
pub mod feed_have;
pub mod frame;
pub mod handshake;
pub mod inbound;
mod inbound_search;
pub mod limits;
pub mod listener;
pub mod memory_book;
pub mod message;
pub mod net;
pub mod opening;
pub mod outbound;
pub mod peer_wants;
pub mod peers;
pub mod pin_file;
pub mod pins;
pub mod plan;
pub mod policy;
pub mod raw;
pub mod reconcile;
pub mod search_slot;
pub mod self_probe;
pub mod session;
pub mod shared;
pub mod status;
pub mod subtrees;
pub mod transport;

pub use config::SyncConfig;
pub use peers::{start, start_on, AddedPeer, SyncError, SyncHandle, SyncRound};
pub use status::PeerInfo;
