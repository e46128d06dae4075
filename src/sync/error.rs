//! Why a session ended, and which `Bye` reason (if any) the peer is sent.

use std::io;

use super::batch::BatchError;
use super::frame::FrameError;
use super::handshake::HandshakeError;
use super::message::ByeReason;
use super::transport::TransportError;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("connection closed in the middle of a frame ({buffered} bytes buffered)")]
    ClosedMidFrame { buffered: usize },
    #[error("peer closed the connection")]
    Closed,
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Transport(#[from] TransportError),
    #[error("timed out {what}")]
    Timeout { what: &'static str },
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("unexpected {got} message {when}")]
    OutOfOrder {
        got: &'static str,
        when: &'static str,
    },
    #[error("invalid entries batch: {0}")]
    Batch(#[from] BatchError),
    #[error("reconciliation: {0}")]
    Reconcile(#[from] super::reconcile::ReconcileError),
    #[error("invalid fork proof: {0}")]
    BadProof(String),
    #[error("more than {limit} want requests")]
    TooManyWants { limit: usize },
    #[error("peer said bye: {0:?}")]
    PeerBye(ByeReason),
    #[error("connection cap reached")]
    Busy,
    #[error("peer {0} is not on the allow-list")]
    NotAllowed(crate::identity::Author),
    #[error("another session with this peer's key is kept (one session per key)")]
    Duplicate,
    #[error("shed while still in the handshake: too many pending handshakes")]
    Shed,
    #[error("peer claimed {claimed} entries of our own feed and delivered none for {waited_ms} ms (we hold {held}); claim dropped")]
    ClaimNotDelivered {
        claimed: u64,
        held: u64,
        waited_ms: u64,
    },
    #[error("this address reaches this node itself (proven: our own nonce on this channel); not redialling it")]
    OwnAddress,
    #[error("peer authenticated with this node's own key: another process holds a copy of it")]
    KeyCopy,
    #[error("the node-wide budget for strangers' reconciliation state is spent ({budget} items and ranges); try again later")]
    ReconcileBudget { budget: usize },
    #[error("shutting down")]
    Shutdown,
    #[error("node error: {0}")]
    Node(#[from] crate::node::NodeError),
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
            | SessionError::TooManyWants { .. } => Some(ByeReason::ProtocolViolation),
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
