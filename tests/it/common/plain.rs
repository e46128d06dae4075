//! Plaintext frames read off a socket the way a client that never completes the handshake
//! sees them: a refusal (`Bye(Busy)`, a version mismatch) comes before any encryption. The
//! node itself reads frames only through its encrypted `FrameReader`; this is the tests'
//! own small reader over the same decoder ([`decode_frame`]).

use kappalog::sync::frame::decode_frame;
use kappalog::sync::message::Message;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The next frame from `reader`, buffering in `buf` (keep it for the whole connection).
/// `Ok(None)`: closed cleanly between frames; `Err`: a bad frame, a close mid-frame, or a
/// failed read, as text. Timeouts are the caller's.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> Result<Option<Message>, String> {
    loop {
        if let Some(message) = decode_frame(buf).map_err(|e| e.to_string())? {
            return Ok(Some(message));
        }
        let mut chunk = [0u8; 4096];
        let n = reader.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return match buf.is_empty() {
                true => Ok(None),
                false => Err(format!(
                    "closed mid-frame with {} bytes buffered",
                    buf.len()
                )),
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
