//! Why a session ended, and which `Bye` reason (if any) the peer is sent.

use std::io;

use super::batch::BatchError;
use super::frame::{FrameError, ReadFrameError};
use super::handshake::HandshakeError;
use super::message::ByeReason;

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
    #[error("invalid fork proof: {0}")]
    BadProof(String),
    #[error("more than {limit} want requests")]
    TooManyWants { limit: usize },
    #[error("peer said bye: {0:?}")]
    PeerBye(ByeReason),
    #[error("connection cap reached")]
    Busy,
    #[error("shutting down")]
    Shutdown,
    #[error("node error: {0}")]
    Node(String),
    /// The sending half's view when the receiving half ended first (with this `Bye`).
    #[error("the receiving half ended")]
    ReceiverEnded(Option<ByeReason>),
}

impl From<ReadFrameError> for SessionError {
    fn from(e: ReadFrameError) -> Self {
        match e {
            ReadFrameError::Frame(f) => SessionError::Frame(f),
            ReadFrameError::ClosedMidFrame { buffered } => {
                SessionError::ClosedMidFrame { buffered }
            }
            ReadFrameError::Io(e) => SessionError::Io(e),
        }
    }
}

impl SessionError {
    /// The reason to send before closing; `None` when the peer is gone or said bye itself.
    pub fn bye_reason(&self) -> Option<ByeReason> {
        match self {
            SessionError::Frame(_)
            | SessionError::OutOfOrder { .. }
            | SessionError::BadProof(_)
            | SessionError::TooManyWants { .. } => Some(ByeReason::ProtocolViolation),
            SessionError::Batch(_) => Some(ByeReason::InvalidEntry),
            SessionError::Timeout { .. } => Some(ByeReason::Timeout),
            SessionError::Handshake(h) => Some(h.bye_reason()),
            SessionError::Busy => Some(ByeReason::Busy),
            SessionError::Shutdown | SessionError::Node(_) => Some(ByeReason::Shutdown),
            SessionError::ReceiverEnded(reason) => *reason,
            SessionError::ClosedMidFrame { .. }
            | SessionError::Closed
            | SessionError::Io(_)
            | SessionError::PeerBye(_) => None,
        }
    }

    /// Whether the end is worth a `warn` (a violation or failure) rather than `info`.
    pub fn is_problem(&self) -> bool {
        !matches!(
            self,
            SessionError::Closed
                | SessionError::Shutdown
                | SessionError::ReceiverEnded(_)
                | SessionError::PeerBye(ByeReason::Shutdown)
        )
    }
}
