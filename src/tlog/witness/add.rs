//! The witness's decision on an `add-checkpoint` request: cosign, or refuse with the status
//! tlog-witness prescribes.

use ed25519_dalek::SigningKey;

use crate::tlog::cosignature::{cosign, cosigner_name};
use crate::tlog::ed25519::Ed25519Verifier;
use crate::tlog::merkle::{self, EMPTY_ROOT, MAX_TREE_SIZE};
use crate::tlog::note::{NoteSignature, NoteVerifier, VerifyError};
use crate::tlog::vkey::{check_key_name, KeyNameError, KeyType, VerifierKey};

use super::request::{AddCheckpointRequest, RequestError};
use super::state::{CosignedTree, StateEntry, WitnessedLogs};

/// The `Content-Type` of a 409 Conflict answer, whose body is the witness's latest size.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// The `Content-Type` of every other refusal's body (a one-line reason) and of a 200
/// answer's cosignature lines, which are note text.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// A witness identity: the cosigner name and its key. The name is checked once, here, so
/// cosigning can only fail on the clock.
#[derive(Clone)]
pub struct Cosigner {
    name: String,
    key: SigningKey,
}

impl Cosigner {
    /// A cosigner named `name`, which must be a valid note key name.
    pub fn new(name: &str, key: SigningKey) -> Result<Self, KeyNameError> {
        check_key_name(name)?;
        Ok(Cosigner {
            name: name.to_owned(),
            key,
        })
    }
    /// The node's cosigner: named `kappalog/node/<hex key>` after its own key.
    pub fn for_node(key: SigningKey) -> Self {
        Cosigner {
            name: cosigner_name(key.verifying_key().as_bytes()),
            key,
        }
    }
    /// The cosigner name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The vkey verifiers put in their policy to check this cosigner (type 0x04).
    pub fn vkey(&self) -> VerifierKey {
        // The name was checked in the constructors.
        VerifierKey::new(&self.name, KeyType::CosignatureV1, self.key.verifying_key())
            .expect("cosigner names are checked when the cosigner is made")
    }
}

impl std::fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret key.
        write!(f, "Cosigner({:?})", self.name)
    }
}

/// An HTTP status tlog-witness prescribes (pure: the HTTP layer maps [`Status::code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 400: a malformed request, or an old size above the checkpoint's.
    BadRequest,
    /// 403: no valid signature by a key of the log, or a bad one by such a key.
    Forbidden,
    /// 404: the witness does not serve the checkpoint's origin.
    NotFound,
    /// 409: the old size is not the size the witness last cosigned.
    Conflict,
    /// 422: the checkpoint is not consistent with what the witness cosigned, or cannot be.
    UnprocessableEntity,
    /// 500: the witness cannot cosign (its clock); not the client's fault.
    InternalServerError,
}

impl Status {
    /// The numeric HTTP status.
    pub fn code(self) -> u16 {
        match self {
            Status::BadRequest => 400,
            Status::Forbidden => 403,
            Status::NotFound => 404,
            Status::Conflict => 409,
            Status::UnprocessableEntity => 422,
            Status::InternalServerError => 500,
        }
    }
}

/// Why the witness did not cosign. [`Refusal::status`], [`Refusal::body`] and
/// [`Refusal::content_type`] are the answer; one variant per rule of tlog-witness.
///
/// [`Refusal::RootMismatch`] and [`Refusal::Inconsistent`] come only after the log's
/// signature verified: with what the witness cosigned, such a checkpoint is evidence of a
/// fork, which the spec lets the witness keep (and kappalog gossips).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 400: the body is malformed.
    #[error("malformed request: {0}")]
    Malformed(#[from] RequestError),
    /// 404: the origin is not a log this witness serves (the client's own origin is not
    /// echoed back).
    #[error("the checkpoint's origin is not a log this witness serves")]
    UnknownOrigin {
        /// The checkpoint's origin.
        origin: String,
    },
    /// 403: no signature by a key of the log verifies, or one by such a key fails.
    #[error("checkpoint not signed by the log: {0}")]
    NotSigned(VerifyError),
    /// 400: the old size is above the checkpoint's size.
    #[error("old size {old} is above the checkpoint size {size}")]
    OldSizeAboveSize {
        /// The request's old size.
        old: u64,
        /// The checkpoint's size.
        size: u64,
    },
    /// 409: the old size is not the latest size cosigned (0 if none); the body tells the
    /// client which size to prove from.
    #[error("old size {old} is not the latest cosigned size {latest}")]
    OldSizeMismatch {
        /// The request's old size.
        old: u64,
        /// The latest cosigned size for this origin.
        latest: u64,
    },
    /// 422: a tree larger than any kappalog can prove anything about.
    #[error("checkpoint size {size} is above the limit of {MAX_TREE_SIZE}")]
    SizeTooLarge {
        /// The checkpoint's size.
        size: u64,
    },
    /// 422: a checkpoint of size 0 whose root is not the empty tree's.
    #[error("a checkpoint of size 0 must have the empty tree's root")]
    EmptyTreeRoot,
    /// 422: a proof sent with old size 0, where the spec wants none.
    #[error("a consistency proof from size 0 must be empty")]
    ProofFromZero,
    /// 422: the latest cosigned checkpoint has this size and another root: a fork.
    #[error("checkpoint has the latest cosigned size and another root")]
    RootMismatch,
    /// 422: the proof does not show the latest cosigned tree is a prefix of this one.
    #[error("consistency proof does not verify: {0}")]
    Inconsistent(merkle::VerifyError),
    /// 500: the clock reads 0 (a cosignature must not omit its timestamp) or past what a
    /// cosignature can carry.
    #[error("cannot cosign at time {now}")]
    Clock {
        /// The time given.
        now: u64,
    },
}

impl Refusal {
    /// The HTTP status tlog-witness prescribes.
    pub fn status(&self) -> Status {
        match self {
            Refusal::Malformed(_) | Refusal::OldSizeAboveSize { .. } => Status::BadRequest,
            Refusal::UnknownOrigin { .. } => Status::NotFound,
            Refusal::NotSigned(_) => Status::Forbidden,
            Refusal::OldSizeMismatch { .. } => Status::Conflict,
            Refusal::SizeTooLarge { .. }
            | Refusal::EmptyTreeRoot
            | Refusal::ProofFromZero
            | Refusal::RootMismatch
            | Refusal::Inconsistent(_) => Status::UnprocessableEntity,
            Refusal::Clock { .. } => Status::InternalServerError,
        }
    }
    /// The answer's body: for 409 the latest cosigned size in decimal and a newline, as the
    /// spec requires; otherwise the reason, one line.
    pub fn body(&self) -> String {
        match self {
            Refusal::OldSizeMismatch { latest, .. } => format!("{latest}\n"),
            other => format!("{other}\n"),
        }
    }
    /// The answer's `Content-Type`.
    pub fn content_type(&self) -> &'static str {
        match self {
            Refusal::OldSizeMismatch { .. } => SIZE_CONTENT_TYPE,
            _ => TEXT_CONTENT_TYPE,
        }
    }
}

/// A cosigned checkpoint: the record to store, and the cosignature to release once it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The origin's new latest cosigned tree.
    pub entry: StateEntry,
    /// The cosignature line, to add to the checkpoint's note or send back.
    pub cosignature: NoteSignature,
}

impl Accepted {
    /// The 200 answer's body: the cosignature line, final newline included.
    pub fn body(&self) -> String {
        self.cosignature.to_line()
    }
}

/// Decides an `add-checkpoint` request at `now_secs` (POSIX seconds), in the spec's order:
///
/// 1. the origin must be a log `state` serves (404);
/// 2. a signature by one of its keys must verify, and none by them may fail; other lines
///    are ignored (403);
/// 3. the old size must not exceed the checkpoint's size (400);
/// 4. the old size must be the latest cosigned size, 0 if none (409, body: that size);
/// 5. the tree must fit [`MAX_TREE_SIZE`]; size 0 needs the empty tree's root; old size 0
///    needs an empty proof; equal sizes need equal roots; otherwise the proof must verify
///    from the latest cosigned root (422 for each).
///
/// An equal size with an equal root is cosigned again, as the spec allows. An equal size
/// with another root is 422, not 409: the old size does match, it is the checkpoint that
/// contradicts what was cosigned (a fork, which the spec lets a witness log as evidence).
/// A checkpoint smaller than the latest cosigned never gets as far as 422: sent with the
/// true old size it is 400 (old size above the checkpoint's), with any other it is 409.
///
/// Logs are served by vkey, whose name is the origin, so an origin that cannot be a key
/// name (a space, a `+`, over 256 bytes) is unknown (404); this also keeps every recorded
/// origin writable in the state file ([`super::encode_record`]).
///
/// # The caller's contract
///
/// Nothing is stored here. The caller must, under one lock held from the read of `state`
/// to the end: call this, store [`Accepted::entry`] ([`super::WitnessState::record`] or its
/// own store), make it durable, and only then release [`Accepted::cosignature`]. If storing
/// fails, the cosignature must be dropped. A repeat ([`StateEntry::is_repeat`]) changes
/// nothing and needs no new durable write. Releasing first, or checking twice against one
/// record, is how a witness ends up cosigning two inconsistent checkpoints (tlog-witness's
/// race: a smaller size recorded after a larger one rolls the record back).
pub fn add_checkpoint<S: WitnessedLogs + ?Sized>(
    state: &S,
    request: &AddCheckpointRequest,
    now_secs: u64,
    cosigner: &Cosigner,
) -> Result<Accepted, Refusal> {
    let checkpoint = request.checkpoint().checkpoint();
    let origin = checkpoint.origin();
    let unknown = || Refusal::UnknownOrigin {
        origin: origin.to_owned(),
    };
    check_key_name(origin).map_err(|_| unknown())?;
    let keys = state.log_keys(origin).ok_or_else(unknown)?;
    verify_log_signature(request, keys)?;

    let (old, size, root) = (request.old_size(), checkpoint.size(), *checkpoint.root());
    if old > size {
        return Err(Refusal::OldSizeAboveSize { old, size });
    }
    let latest = state.cosigned(origin);
    let (latest_size, latest_root) = latest.map_or((0, EMPTY_ROOT), |t| (t.size, t.root));
    if old != latest_size {
        return Err(Refusal::OldSizeMismatch {
            old,
            latest: latest_size,
        });
    }
    check_consistency(request, latest_size, &latest_root, size, &root)?;

    if now_secs == 0 {
        return Err(Refusal::Clock { now: now_secs });
    }
    // The name was checked when the cosigner was made, so only the timestamp (past 2^63 - 1)
    // can be refused.
    let cosignature = cosign(&cosigner.name, &cosigner.key, checkpoint.body(), now_secs)
        .map_err(|_| Refusal::Clock { now: now_secs })?;
    Ok(Accepted {
        entry: StateEntry {
            origin: origin.to_owned(),
            previous_size: latest_size,
            tree: CosignedTree { size, root },
        },
        cosignature,
    })
}

/// Step 2: the log's signature, under every key the witness trusts for it.
fn verify_log_signature(
    request: &AddCheckpointRequest,
    keys: Vec<VerifierKey>,
) -> Result<(), Refusal> {
    // Keys of another type were refused when the log was served; a stray one verifies
    // nothing, which is the safe reading.
    let verifiers: Vec<Ed25519Verifier> = keys
        .into_iter()
        .filter_map(|key| Ed25519Verifier::new(key).ok())
        .collect();
    let verifiers: Vec<&dyn NoteVerifier> =
        verifiers.iter().map(|v| v as &dyn NoteVerifier).collect();
    request
        .checkpoint()
        .note()
        .verify(&verifiers)
        .map(|_| ())
        .map_err(Refusal::NotSigned)
}

/// Step 5: the new tree extends the latest cosigned one (size `old`, root `old_root`).
fn check_consistency(
    request: &AddCheckpointRequest,
    old: u64,
    old_root: &merkle::Hash,
    size: u64,
    root: &merkle::Hash,
) -> Result<(), Refusal> {
    if size > MAX_TREE_SIZE {
        return Err(Refusal::SizeTooLarge { size });
    }
    if size == 0 && *root != EMPTY_ROOT {
        return Err(Refusal::EmptyTreeRoot);
    }
    if old == 0 && !request.proof().is_empty() {
        return Err(Refusal::ProofFromZero);
    }
    if old == size && old_root != root {
        return Err(Refusal::RootMismatch);
    }
    merkle::verify_consistency(old, size, old_root, root, request.proof())
        .map_err(Refusal::Inconsistent)
}
