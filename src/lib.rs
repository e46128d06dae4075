//! kappalog: a peer-to-peer, hash-linked log node.
//!
//! # Module map
//!
//! - [`hash`]: the sha256 [`hash::Hash`] newtype.
//! - [`identity`]: authors (public keys), signatures, and the secret [`identity::Identity`].
//! - [`entry`]: what an entry is, its fixed signed byte layout (format v1) and its hash.
//! - [`signature`]: the one acceptance rule for signatures, single and batch.
//! - [`validate`]: when an entry is valid (pure; one error variant per rule).
//! - [`keys`]: key files: load, create and check a node's PKCS#8 PEM secret key.
//!
//! # Data flow
//!
//! HTTP request, peer frame or CSV line -> decode -> validate -> store append (the single
//! writer) -> views updated -> readers (HTTP, sync sessions, CSV export) read through the node.
#![forbid(unsafe_code)]

pub mod entry;
pub mod hash;
pub mod identity;
pub mod keys;
pub mod signature;
pub mod validate;
