//! kappalog: a peer-to-peer, hash-linked log node.
//!
//! # Module map
//!
//! - [`hash`]: the sha256 [`hash::Hash`] newtype.
//! - [`identity`]: authors (public keys), signatures, and the secret [`identity::Identity`].
//! - [`entry`]: what an entry is, its fixed signed byte layout (format v1) and its hash.
//! - [`signature`]: the one acceptance rule for signatures, single and batch.
//! - [`validate`]: when an entry is valid (pure; one error variant per rule).
//! - [`fork`]: fork proofs (two conflicting signed entries), their encoding, the forked set.
//! - [`sync`]: the peer protocol (docs/PROTOCOL.md): messages, framing, handshake, the plan.
//!
//! # Data flow
//!
//! HTTP request, peer frame or CSV line -> decode -> validate -> store append (the single
//! writer) -> views updated -> readers (HTTP, sync sessions, CSV export) read through the node.
#![forbid(unsafe_code)]

pub mod entry;
pub mod fork;
pub mod hash;
pub mod identity;
pub mod signature;
pub mod sync;
pub mod validate;
