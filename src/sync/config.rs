//! The timing and capacity knobs of the networking layer. The defaults are the protocol's
//! constants (docs/PROTOCOL.md section 10); tests shorten the timeouts so a stalled peer is
//! dropped in well under a second instead of ten.

use std::time::Duration;

use super::message::{
    FRAME_READ_TIMEOUT_MS, HANDSHAKE_TIMEOUT_MS, MAX_PEER_CONNECTIONS, PING_INTERVAL_MS,
    READ_IDLE_TIMEOUT_MS, STARTUP_FENCE_TIMEOUT_MS,
};

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
    /// Sessions at once, inbound and outbound together.
    pub max_connections: usize,
    /// How long a starting node waits for its configured peers before signing.
    pub startup_fence_timeout: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            handshake_timeout: Duration::from_millis(HANDSHAKE_TIMEOUT_MS),
            idle_timeout: Duration::from_millis(READ_IDLE_TIMEOUT_MS),
            frame_timeout: Duration::from_millis(FRAME_READ_TIMEOUT_MS),
            ping_interval: Duration::from_millis(PING_INTERVAL_MS),
            max_connections: MAX_PEER_CONNECTIONS,
            startup_fence_timeout: Duration::from_millis(STARTUP_FENCE_TIMEOUT_MS),
        }
    }
}
