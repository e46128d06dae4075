//! Verifiable feeds: every kappalog feed is a C2SP transparency log (issue 22).
//!
//! The entries of one feed, in `seq` order, are the leaves of an RFC 6962 Merkle tree: leaf
//! `i` is the feed's entry at `seq = i + 1`, and its leaf input is that entry's *encoded*
//! bytes (body then signature, docs/FORMAT.md section 2; [`crate::entry::Entry::encode`]),
//! so its leaf hash is `SHA-256(0x00 || body || signature)`. Sizes and indexes are `u64`;
//! hashes are `[u8; 32]`.
//!
//! Names, fixed by the issue:
//!
//! - a feed's **origin** (the first line of its checkpoints, and the name of the author's
//!   note key) is `kappalog/feed/<64 lowercase hex author key>`;
//! - a node's **cosigner name** is `kappalog/node/<64 lowercase hex node key>`.
//!
//! Everything here is pure: formats and algorithms over values and a [`merkle::HashReader`]
//! the caller implements over its storage. Nothing opens a file or a socket.
//!
//! - [`merkle`]: RFC 6962/9162 hashing; the *stored hash* model of Go's `sumdb/tlog` (the
//!   hash of every full subtree, about two per leaf, appended as leaves arrive); tree
//!   hashes, inclusion and consistency proofs and their verification, bounded.
//! - [`tiles`]: tlog-tiles: tiles of height 8, their paths (`tile/<L>/<N>[.p/<W>]`,
//!   `tile/entries/<N>[.p/<W>]`) written and parsed strictly, which tiles a tree of a given
//!   size has, and the bytes of a hash tile and of an entry bundle.
//! - [`note`] and [`vkey`]: C2SP signed notes (strict, bounded) and verifier keys;
//!   [`ed25519`] their Ed25519 signatures.
//! - [`checkpoint`]: tlog-checkpoint bodies and signed checkpoints.
//! - [`cosignature`]: tlog-cosignature v1 (Ed25519), what a witness signs.
//! - [`proof`]: `c2sp.org/tlog-proof@v1` bundles.
//! - [`bundle`]: kappalog's entry bundles: a feed entry proved in its author's checkpoint,
//!   verified offline (`kappalog proof verify`).
//! - [`policy`]: C2SP tlog-policy files: which logs and witnesses a verifier trusts.
//! - [`author_checkpoint`]: a feed checkpoint verified under its author's key and reduced
//!   to the author's line.
//! - [`feed_checkpoints`]: what a node keeps per feed: the newest author checkpoint
//!   consistent with its entries, one pending, and the cosignatures it serves.
//! - [`split_view`]: fork proofs from two inconsistent author checkpoints of one feed.
//! - [`witness`]: C2SP tlog-witness: deciding `add-checkpoint` requests, the witness's
//!   records and their file format.

pub mod author_checkpoint;
pub mod bundle;
pub mod checkpoint;
pub mod cosignature;
pub mod ed25519;
pub mod feed_checkpoints;
pub mod merkle;
pub mod note;
pub mod policy;
pub mod proof;
pub mod split_view;
pub mod tiles;
pub mod vkey;
pub mod witness;
