//! C2SP transparency-log formats: notes, checkpoints, cosignatures, proofs, policies (pure, no I/O).

pub mod checkpoint;
pub mod cosignature;
pub mod ed25519;
pub mod note;
pub mod policy;
pub mod proof;
pub mod vkey;
