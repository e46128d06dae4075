//! Why a session ended, and which `Bye` reason (if any) the peer is sent.

use std::io;

use super::batch::BatchError;
use super::frame::FrameError;
use super::handshake::HandshakeError;
use super::message::ByeReason;
use super::transport::TransportError;

/// Why a sync session ended. [`SessionError::bye_reason`] maps each to what the peer is told.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The peer sent a frame that does not decode (a protocol violation).
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    /// The peer closed the connection with part of a frame unread.
    #[error("connection closed in the middle of a frame ({buffered} bytes buffered)")]
    ClosedMidFrame {
        /// Bytes of the incomplete frame received.
        buffered: usize,
    },
    /// The peer closed the connection between frames.
    #[error("peer closed the connection")]
    Closed,
    /// Reading or writing the socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The encrypted transport failed: its opening, or a record that does not decrypt.
    #[error("{0}")]
    Transport(#[from] TransportError),
    /// A step had a deadline and the peer missed it.
    #[error("timed out {what}")]
    Timeout {
        /// The step, worded to follow "timed out" (e.g. "waiting for a frame").
        what: &'static str,
    },
    /// The peer did not authenticate (see [`HandshakeError`]).
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// A well-formed message the protocol does not allow at this point.
    #[error("unexpected {got} message {when}")]
    OutOfOrder {
        /// The message's kind.
        got: &'static str,
        /// The session's state, worded to follow the kind (e.g. "after the handshake").
        when: &'static str,
    },
    /// An `Entries` message with an entry that fails its checks.
    #[error("invalid entries batch: {0}")]
    Batch(#[from] BatchError),
    /// The peer's reconciliation frames break the reconciliation rules.
    #[error("reconciliation: {0}")]
    Reconcile(#[from] super::reconcile::ReconcileError),
    /// The peer sent a fork proof that does not check (why, carried).
    #[error("invalid fork proof: {0}")]
    BadProof(String),
    /// A v3 message in a v2 session, or a checkpoint reconciliation frame after that
    /// reconciliation ended.
    #[error("unexpected {got} message {when}")]
    CheckpointOutOfOrder {
        /// The message.
        got: &'static str,
        /// Why it is out of order.
        when: &'static str,
    },
    /// The peer sent a checkpoint note the book refuses as malformed.
    #[error("invalid checkpoint note: {0}")]
    BadCheckpoint(String),
    /// The peer sent checkpoint notes past the session's bucket.
    #[error("more checkpoint notes than {burst} at once and {per_second} a second")]
    TooManyCheckpoints {
        /// The bucket's size, in notes.
        burst: u32,
        /// Its refill, in notes per second.
        per_second: u32,
    },
    /// The checkpoint book failed (ours, not the peer's fault).
    #[error("checkpoint book: {0}")]
    CheckpointBook(String),
    /// The peer sent more `Want` requests than one session answers.
    #[error("more than {limit} want requests")]
    TooManyWants {
        /// The most wants a session answers.
        limit: usize,
    },
    /// A `Subtrees` answer that answers no want of ours, or not the oldest outstanding one
    /// exactly (v4).
    #[error("copy search: {0}")]
    Subtrees(String),
    /// The peer sent `WantSubtrees` past the session's bucket or past the unanswered cap (v4).
    #[error("more subtree wants than {burst} at once, {per_second} a second or {outstanding} unanswered")]
    TooManySubtreeWants {
        /// The bucket's size, in wants.
        burst: u32,
        /// Its refill, in wants per second.
        per_second: u32,
        /// The most wants held unanswered.
        outstanding: usize,
    },
    /// The copy search found the peer's answers break the protocol (why, carried).
    #[error("copy search: the peer's answers are invalid: {0}")]
    CopySearch(String),
    /// The peer ended the session with `Bye` and this reason.
    #[error("peer said bye: {0:?}")]
    PeerBye(ByeReason),
    /// We refused the session: the connection cap is reached.
    #[error("connection cap reached")]
    Busy,
    /// We refused the session: the peer's key (carried) is not allowed here.
    #[error("peer {0} is not on the allow-list")]
    NotAllowed(crate::identity::Author),
    /// We refused the session: one with the same key is already running and is kept.
    #[error("another session with this peer's key is kept (one session per key)")]
    Duplicate,
    /// We dropped the connection to make room for newer pending handshakes.
    #[error("shed while still in the handshake: too many pending handshakes")]
    Shed,
    /// The peer claimed to hold more of our own feed than we do, then never sent it.
    #[error("peer claimed {claimed} entries of our own feed and delivered none for {waited_ms} ms (we hold {held}); claim dropped")]
    ClaimNotDelivered {
        /// The length of our feed the peer claimed to hold.
        claimed: u64,
        /// The length we hold.
        held: u64,
        /// How long we waited for any of the claimed entries, in milliseconds.
        waited_ms: u64,
    },
    /// The dialled address is this node (our own handshake nonce came back).
    #[error("this address reaches this node itself (proven: our own nonce on this channel); not redialling it")]
    OwnAddress,
    /// Another process authenticated with this node's own key (an alarm: see
    /// [`super::status::Alarms`]).
    #[error("peer authenticated with this node's own key: another process holds a copy of it")]
    KeyCopy,
    /// We refused the session: strangers' reconciliation state is at its node-wide budget.
    #[error("the node-wide budget for strangers' reconciliation state is spent ({budget} items and ranges); try again later")]
    ReconcileBudget {
        /// The budget, in items and ranges over all strangers' sessions.
        budget: usize,
    },
    /// The node is shutting down.
    #[error("shutting down")]
    Shutdown,
    /// The node failed to store or read what the session needed.
    #[error("node error: {0}")]
    Node(#[from] crate::node::NodeError),
    /// A task of the session panicked or was cancelled.
    #[error("a session task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Our store could not read an entry it lists (its index and file disagree).
    #[error("{0}")]
    MissingHash(#[from] super::plan::MissingHash),
    /// The sending half's view when the receiving half ended first (with this `Bye`).
    #[error("the receiving half ended")]
    ReceiverEnded(Option<ByeReason>),
}

impl From<crate::store::StoreError> for SessionError {
    fn from(e: crate::store::StoreError) -> Self {
        SessionError::Node(e.into())
    }
}

impl SessionError {
    /// The reason to send before closing; `None` when the peer is gone or said bye itself.
    pub fn bye_reason(&self) -> Option<ByeReason> {
        match self {
            SessionError::Frame(_)
            | SessionError::OutOfOrder { .. }
            | SessionError::BadProof(_)
            | SessionError::Reconcile(_)
            | SessionError::TooManyWants { .. }
            | SessionError::CheckpointOutOfOrder { .. }
            | SessionError::BadCheckpoint(_)
            | SessionError::TooManyCheckpoints { .. }
            | SessionError::Subtrees(_)
            | SessionError::TooManySubtreeWants { .. }
            | SessionError::CopySearch(_) => Some(ByeReason::ProtocolViolation),
            SessionError::CheckpointBook(_) => Some(ByeReason::Shutdown),
            SessionError::Batch(_) => Some(ByeReason::InvalidEntry),
            SessionError::Timeout { .. } => Some(ByeReason::Timeout),
            SessionError::Handshake(h) => Some(h.bye_reason()),
            SessionError::Busy | SessionError::ReconcileBudget { .. } => Some(ByeReason::Busy),
            SessionError::OwnAddress | SessionError::KeyCopy => Some(ByeReason::SelfConnection),
            SessionError::NotAllowed(_) => Some(ByeReason::NotAllowed),
            SessionError::Duplicate => Some(ByeReason::Duplicate),
            SessionError::ClaimNotDelivered { .. } => Some(ByeReason::ClaimNotDelivered),
            SessionError::Shed => None,
            SessionError::Shutdown
            | SessionError::Node(_)
            | SessionError::Task(_)
            | SessionError::MissingHash(_) => Some(ByeReason::Shutdown),
            SessionError::ReceiverEnded(reason) => *reason,
            // Our sending half is intact after a record failed to decrypt: say why.
            SessionError::Transport(
                TransportError::Decrypt { .. } | TransportError::BadRecordLength { .. },
            ) => Some(ByeReason::ProtocolViolation),
            // The opening and the handshake answer (or refuse) by themselves.
            SessionError::Transport(_) => None,
            SessionError::ClosedMidFrame { .. }
            | SessionError::Closed
            | SessionError::Io(_)
            | SessionError::PeerBye(_) => None,
        }
    }

    /// For a session that ended before it was authenticated: the refusal counter it adds to
    /// (`GET /peers`, `/metrics`), if it is one.
    pub fn refusal_counter(&self) -> Option<&'static str> {
        Some(match self {
            // A v2 peer reached by a v3 opening: redialled at once with 2, not refused.
            SessionError::Transport(t) if t.older_version().is_some() => return None,
            SessionError::Transport(TransportError::DifferentNetwork)
            | SessionError::Transport(TransportError::PeerDifferentNetwork) => "different_network",
            SessionError::Transport(TransportError::UnsupportedVersion { .. }) => {
                "unsupported_version"
            }
            SessionError::Transport(TransportError::PeerBye(ByeReason::Busy)) => "peer_busy",
            SessionError::Transport(_) => "bad_transport",
            SessionError::Handshake(_) => "bad_auth",
            SessionError::Timeout { .. } => "handshake_timeout",
            SessionError::Shed => "shed_pending_handshake",
            SessionError::PeerBye(ByeReason::NotAllowed) => "peer_not_allowed",
            SessionError::OwnAddress => "self_connection",
            SessionError::KeyCopy => "key_copy",
            _ => return None,
        })
    }

    /// Whether the end is worth a `warn` (a violation or failure) rather than `info`.
    pub fn is_problem(&self) -> bool {
        !matches!(
            self,
            SessionError::Closed
                | SessionError::Shutdown
                | SessionError::ReceiverEnded(_)
                | SessionError::PeerBye(ByeReason::Shutdown)
                | SessionError::Duplicate
                | SessionError::PeerBye(ByeReason::Duplicate)
        )
    }
}
